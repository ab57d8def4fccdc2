//! From the raw config file to a typed [`Config`]: addresses, networks, paths, limits.
//!
//! Each value is parsed where it is read, and the error names its line; checks that
//! span several values (listeners on one address, one tunnel/export per service) run
//! last, in file order, so the message points at the later of two clashing lines.

use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::file::{RawConfig, RawExport, RawGateway, RawTunnel};
use super::values::{check_host_port, clash, parse_source};
use super::{
    Admin, Audit, Config, ConfigError, ConfigLines, CrlOverdue, Export, Gateway, Limits, Peer, Tls,
    Tunnel,
};
use crate::names::{PoolName, ServiceName};
use crate::source::{one_line, LineIndex};

/// Validates a parsed config file; `text` is its text (for line numbers), `path` its
/// location (for messages, and whose folder relative paths resolve against).
pub(crate) fn validate(raw: RawConfig, text: &str, path: &Path) -> Result<Config, ConfigError> {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let base = absolute
        .parent()
        .map_or_else(|| absolute.clone(), Path::to_path_buf);
    let v = Validator {
        lines: LineIndex::new(text),
        path,
        base,
    };

    let gateway = v.gateway(raw.gateway.get_ref())?;
    let tls_raw = raw.tls.get_ref();
    let tls =
        Tls {
            cert: v.file_path("tls.cert", &tls_raw.cert)?,
            key: v.file_path("tls.key", &tls_raw.key)?,
            ca: v.file_path("tls.ca", &tls_raw.ca)?,
            crl: tls_raw
                .crl
                .as_ref()
                .map(|c| v.file_path("tls.crl", c))
                .transpose()?,
            crl_overdue: match &tls_raw.crl_overdue {
                None => CrlOverdue::Warn,
                Some(s) => match s.get_ref().as_str() {
                    "warn" => CrlOverdue::Warn,
                    "deny" => CrlOverdue::Deny,
                    other => return Err(v.invalid(
                        &s.span(),
                        "tls.crl_overdue",
                        format!("{other:?} is not \"warn\" or \"deny\""),
                        "write crl_overdue = \"warn\" (the default: keep the last CRL, say so) \
                         or \"deny\" (refuse peers while the CRL is overdue)",
                    )),
                },
            },
        };
    let peer_raw = raw.peer.get_ref();
    let peer = Peer {
        listen: v.listen("peer.listen", &peer_raw.listen)?,
        connect: v.host_port("peer.connect", &peer_raw.connect, "gw2.site2.example:7444")?,
        heartbeat: match &peer_raw.heartbeat_secs {
            Some(h) if *h.get_ref() == 0 => {
                return Err(v.invalid(
                    &h.span(),
                    "peer.heartbeat_secs",
                    "is 0".into(),
                    "use a positive number of seconds, or remove the key for the default (30)",
                ))
            }
            Some(h) => Duration::from_secs(*h.get_ref()),
            None => Duration::from_secs(Peer::DEFAULT_HEARTBEAT_SECS),
        },
    };
    let admin = match &raw.admin {
        Some(a) => Some(Admin {
            listen: v.listen("admin.listen", &a.get_ref().listen)?,
            sync_interval: match &a.get_ref().sync_interval_secs {
                // The Backup Service allows 5 s to 3 h.
                Some(i) if !(5..=10_800).contains(i.get_ref()) => {
                    return Err(v.invalid(
                        &i.span(),
                        "admin.sync_interval_secs",
                        format!("{} is outside the Backup Service's 5 s to 3 h", i.get_ref()),
                        "use the pool pair's sync interval in seconds (default 120)",
                    ))
                }
                Some(i) => Duration::from_secs(*i.get_ref()),
                None => Duration::from_secs(Admin::DEFAULT_SYNC_INTERVAL_SECS),
            },
        }),
        None => None,
    };
    let audit =
        Audit {
            path: v.file_path("audit.path", &raw.audit.get_ref().path)?,
            on_failure: match &raw.audit.get_ref().on_failure {
                None => crate::audit::OnFailure::Refuse,
                Some(s) => match s.get_ref().as_str() {
                    "refuse" => crate::audit::OnFailure::Refuse,
                    "continue" => crate::audit::OnFailure::Continue,
                    other => return Err(v.invalid(
                        &s.span(),
                        "audit.on_failure",
                        format!("{other:?} is not \"refuse\" or \"continue\""),
                        "write on_failure = \"refuse\" (the default: refuse new connections while \
                         the audit log cannot be written) or \"continue\" (carry on unaudited)",
                    )),
                },
            },
        };
    let spool = raw
        .spool
        .as_ref()
        .map(|s| v.spool(s.get_ref()))
        .transpose()?;
    let tunnels = (raw.tunnel.iter().enumerate())
        .map(|(i, t)| v.tunnel(i, t.get_ref()))
        .collect::<Result<Vec<_>, _>>()?;
    let exports = (raw.export.iter().enumerate())
        .map(|(i, e)| v.export(i, e.get_ref()))
        .collect::<Result<Vec<_>, _>>()?;
    let intercepts = (raw.intercept.iter().enumerate())
        .map(|(i, e)| v.intercept(i, e.get_ref()))
        .collect::<Result<Vec<_>, _>>()?;
    let limits = raw
        .limits
        .as_ref()
        .map_or(Ok(Limits::default()), |l| v.limits(l.get_ref()))?;

    v.check_listeners(&raw)?;
    v.check_one_per_service("tunnel", raw.tunnel.iter().map(|t| &t.get_ref().service))?;
    v.check_one_per_service("export", raw.export.iter().map(|e| &e.get_ref().service))?;
    v.check_one_per_service(
        "intercept",
        raw.intercept.iter().map(|e| &e.get_ref().service),
    )?;

    let lines = v.lines(&raw);
    Ok(Config {
        path: absolute,
        gateway,
        tls,
        peer,
        admin,
        audit,
        spool,
        tunnels,
        exports,
        intercepts,
        limits,
        lines,
    })
}

pub(super) struct Validator<'a> {
    lines: LineIndex,
    path: &'a Path,
    base: PathBuf,
}

impl Validator<'_> {
    fn line<T>(&self, value: &Spanned<T>) -> usize {
        self.lines.line_of_span(&value.span())
    }

    /// Where the items later checks point at were written.
    fn lines(&self, raw: &RawConfig) -> ConfigLines {
        let tunnels = raw.tunnel.iter();
        let exports = raw.export.iter();
        let gateway = raw.gateway.get_ref();
        let tls = raw.tls.get_ref();
        let mut paths: Vec<(String, &Spanned<String>)> = vec![
            ("gateway.policy".into(), &gateway.policy),
            ("tls.cert".into(), &tls.cert),
            ("tls.key".into(), &tls.key),
            ("tls.ca".into(), &tls.ca),
            ("audit.path".into(), &raw.audit.get_ref().path),
        ];
        paths.extend(tls.crl.as_ref().map(|c| ("tls.crl".into(), c)));
        if let Some(spool) = &raw.spool {
            let spool = spool.get_ref();
            for (key, value) in [
                ("dir", &spool.dir),
                ("key", &spool.key),
                ("outbox", &spool.outbox),
                ("inbox", &spool.inbox),
            ] {
                paths.push((format!("spool.{key}"), value));
            }
            for (i, old) in spool.old_keys.iter().enumerate() {
                paths.push((format!("spool.old_keys[{i}]"), old));
            }
        }
        ConfigLines {
            paths: paths
                .into_iter()
                .map(|(key, value)| (key, self.line(value)))
                .collect(),
            pool: self.line(&raw.gateway.get_ref().pool),
            peer_pool: self.line(&raw.gateway.get_ref().peer_pool),
            spool: raw.spool.as_ref().map_or(0, |s| self.line(s)),
            tunnels: tunnels.map(|t| self.line(&t.get_ref().service)).collect(),
            exports: exports.map(|e| self.line(&e.get_ref().service)).collect(),
            intercepts: (raw.intercept.iter())
                .map(|e| self.line(&e.get_ref().service))
                .collect(),
        }
    }

    pub(super) fn invalid(
        &self,
        span: &Range<usize>,
        key: &str,
        problem: String,
        fix: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_path_buf(),
            line: self.lines.line_of_span(span),
            key: key.to_owned(),
            problem: one_line(&problem),
            fix: one_line(&fix.into()),
        }
    }

    fn gateway(&self, raw: &RawGateway) -> Result<Gateway, ConfigError> {
        let pool_name = |key: &str, pool: &Spanned<String>| {
            PoolName::new(pool.get_ref()).map_err(|_| {
                self.invalid(
                    &pool.span(),
                    key,
                    format!("\"{}\" is not a valid pool name", pool.get_ref()),
                    "use the pool's DNS name (FQDN), e.g. \"pool01.site1.example\"",
                )
            })
        };
        let pool = pool_name("gateway.pool", &raw.pool)?;
        let peer_pool = pool_name("gateway.peer_pool", &raw.peer_pool)?;
        if pool == peer_pool {
            return Err(self.invalid(
                &raw.peer_pool.span(),
                "gateway.peer_pool",
                format!("is the local pool \"{}\" itself", raw.pool.get_ref()),
                "set it to the paired pool at the other site",
            ));
        }
        Ok(Gateway {
            pool,
            peer_pool,
            policy: self.file_path("gateway.policy", &raw.policy)?,
            mark: raw
                .mark
                .as_ref()
                .map_or(crate::intercept::DEFAULT_MARK, |m| *m.get_ref()),
        })
    }

    /// A path value, resolved against the config file's folder.
    fn file_path(&self, key: &str, value: &Spanned<String>) -> Result<PathBuf, ConfigError> {
        let text = value.get_ref();
        if text.trim().is_empty() {
            return Err(self.invalid(
                &value.span(),
                key,
                "is empty".into(),
                "write a path, relative to this config file's folder or absolute",
            ));
        }
        if text.starts_with('~') {
            return Err(self.invalid(
                &value.span(),
                key,
                format!("\"{text}\" starts with '~', which pairgate does not expand"),
                "write an absolute path, or one relative to this config file's folder",
            ));
        }
        Ok(self.base.join(text))
    }

    pub(super) fn listen(
        &self,
        key: &str,
        value: &Spanned<String>,
    ) -> Result<SocketAddr, ConfigError> {
        value.get_ref().trim().parse().map_err(|_| {
            self.invalid(
                &value.span(),
                key,
                format!("\"{}\" is not an IP address with a port", value.get_ref()),
                "write it like \"127.0.0.1:7443\" (IPv6: \"[::1]:7443\"); host names are not allowed for listeners",
            )
        })
    }

    /// A `host:port` the gateway connects to; kept as written once checked.
    pub(super) fn host_port(
        &self,
        key: &str,
        value: &Spanned<String>,
        example: &str,
    ) -> Result<String, ConfigError> {
        check_host_port(value.get_ref()).map_err(|problem| {
            self.invalid(
                &value.span(),
                key,
                format!("\"{}\" {problem}", value.get_ref()),
                format!("write it as host:port, like \"{example}\" or \"127.0.0.1:7444\" (IPv6: \"[::1]:7444\")"),
            )
        })?;
        Ok(value.get_ref().clone())
    }

    pub(super) fn service(
        &self,
        key: &str,
        value: &Spanned<String>,
        section: &str,
    ) -> Result<ServiceName, ConfigError> {
        let name = value.get_ref();
        let Ok(service) = ServiceName::new(name) else {
            return Err(self.invalid(
                &value.span(),
                key,
                format!("\"{name}\" is not a valid service name"),
                "use lower-case letters, digits and '-', starting with a letter or digit (it becomes the ALPN name pg1/<service>), e.g. \"backup-smb\"",
            ));
        };
        if name == "spool" {
            return Err(self.invalid(
                &value.span(),
                key,
                format!("\"spool\" cannot be an {section}: it is the store-and-forward transfer"),
                "configure it with a [spool] section instead",
            ));
        }
        Ok(service)
    }

    fn tunnel(&self, index: usize, raw: &RawTunnel) -> Result<Tunnel, ConfigError> {
        let key = |field: &str| format!("tunnel[{index}].{field}");
        let service = self.service(&key("service"), &raw.service, "[[tunnel]]")?;
        let listen = self.listen(&key("listen"), &raw.listen)?;
        if raw.allow_sources.get_ref().is_empty() {
            return Err(self.invalid(
                &raw.allow_sources.span(),
                &key("allow_sources"),
                "is empty, so no client could use this tunnel".into(),
                "list the networks of the local front end servers, e.g. allow_sources = [\"10.1.2.0/24\"]",
            ));
        }
        let allow_sources = (raw.allow_sources.get_ref().iter())
            .map(|s| {
                parse_source(s.get_ref()).map_err(|(problem, fix)| {
                    self.invalid(&s.span(), &key("allow_sources"), problem, fix)
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Tunnel {
            service,
            listen,
            allow_sources,
        })
    }

    fn export(&self, index: usize, raw: &RawExport) -> Result<Export, ConfigError> {
        Ok(Export {
            service: self.service(
                &format!("export[{index}].service"),
                &raw.service,
                "[[export]]",
            )?,
            target: self.export_target(index, raw)?,
        })
    }

    /// No two listeners may bind the same address (port 0 means "any free port" and never clashes).
    fn check_listeners(&self, raw: &RawConfig) -> Result<(), ConfigError> {
        let mut listeners: Vec<(String, &Spanned<String>)> =
            vec![("peer.listen".into(), &raw.peer.get_ref().listen)];
        if let Some(admin) = &raw.admin {
            listeners.push(("admin.listen".into(), &admin.get_ref().listen));
        }
        for (i, t) in raw.tunnel.iter().enumerate() {
            listeners.push((format!("tunnel[{i}].listen"), &t.get_ref().listen));
        }
        for (i, t) in raw.intercept.iter().enumerate() {
            listeners.push((format!("intercept[{i}].listen"), &t.get_ref().listen));
        }
        let parsed: Vec<(String, &Spanned<String>, SocketAddr)> = (listeners.into_iter())
            .filter_map(|(key, v)| v.get_ref().trim().parse().ok().map(|a| (key, v, a)))
            .collect();
        for (i, (key, value, addr)) in parsed.iter().enumerate() {
            if let Some((other, other_value, _)) =
                parsed[..i].iter().find(|(_, _, a)| clash(*a, *addr))
            {
                return Err(self.invalid(
                    &value.span(),
                    key,
                    format!(
                        "{addr} is already used by {other} (line {})",
                        self.line(other_value)
                    ),
                    "give each listener its own address or port",
                ));
            }
        }
        Ok(())
    }

    /// At most one `[[tunnel]]` (or `[[export]]`) per service.
    fn check_one_per_service<'s>(
        &self,
        section: &str,
        services: impl Iterator<Item = &'s Spanned<String>>,
    ) -> Result<(), ConfigError> {
        let services: Vec<&Spanned<String>> = services.collect();
        for (i, service) in services.iter().enumerate() {
            if let Some(j) = services[..i]
                .iter()
                .position(|s| s.get_ref() == service.get_ref())
            {
                return Err(self.invalid(
                    &service.span(),
                    &format!("{section}[{i}].service"),
                    format!(
                        "\"{}\" already has a [[{section}]]: {section}[{j}] at line {}",
                        service.get_ref(),
                        self.line(services[j])
                    ),
                    format!(
                        "keep one [[{section}]] per service{}",
                        if section == "tunnel" {
                            " and merge their allow_sources"
                        } else {
                            ""
                        }
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[path = "validate_sections.rs"]
mod sections;

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
