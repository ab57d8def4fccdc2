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

use super::file::{RawConfig, RawExport, RawGateway, RawLimits, RawSpool, RawTunnel};
use super::values::{check_host_port, clash, parse_source};
use super::{
    Admin, Audit, Config, ConfigError, ConfigLines, CrlOverdue, Export, Gateway, Limits, Peer,
    Spool, Tls, Tunnel,
};
use crate::names::{PoolName, ServiceName};
use crate::source::{line_of_span, one_line};

/// Validates a parsed config file; `text` is its text (for line numbers), `path` its
/// location (for messages, and whose folder relative paths resolve against).
pub(crate) fn validate(raw: RawConfig, text: &str, path: &Path) -> Result<Config, ConfigError> {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let base = absolute
        .parent()
        .map_or_else(|| absolute.clone(), Path::to_path_buf);
    let v = Validator { text, path, base };

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
    text: &'a str,
    path: &'a Path,
    base: PathBuf,
}

impl Validator<'_> {
    fn line<T>(&self, value: &Spanned<T>) -> usize {
        line_of_span(self.text, &value.span())
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
            line: line_of_span(self.text, span),
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

    fn spool(&self, raw: &RawSpool) -> Result<Spool, ConfigError> {
        let max_bytes = match &raw.max_bytes {
            Some(m) if *m.get_ref() == 0 => {
                return Err(self.invalid(
                    &m.span(),
                    "spool.max_bytes",
                    "is 0, so nothing could ever be spooled".into(),
                    "set a size in bytes, or remove the key for no limit",
                ));
            }
            other => other.as_ref().map(|m| *m.get_ref()),
        };
        let settle_ms = match &raw.settle_ms {
            Some(v) if *v.get_ref() > Spool::MAX_SETTLE_MS => {
                return Err(self.invalid(
                    &v.span(),
                    "spool.settle_ms",
                    format!("is {} ms, more than ten minutes", v.get_ref()),
                    format!(
                        "set it between 0 and {} (default {}): how long an outbox file must stay unchanged before it is taken",
                        Spool::MAX_SETTLE_MS,
                        Spool::DEFAULT_SETTLE_MS
                    ),
                ));
            }
            Some(v) => *v.get_ref(),
            None => Spool::DEFAULT_SETTLE_MS,
        };
        let stall_secs = match &raw.stall_secs {
            Some(v) if *v.get_ref() == 0 || *v.get_ref() > Spool::MAX_STALL_SECS => {
                return Err(self.invalid(
                    &v.span(),
                    "spool.stall_secs",
                    format!("is {}, outside 1..={}", v.get_ref(), Spool::MAX_STALL_SECS),
                    format!(
                        "set the seconds a transfer may make no progress before the link is dropped (default {}; keep it well under the 2-minute sync interval)",
                        Spool::DEFAULT_STALL_SECS
                    ),
                ));
            }
            Some(v) => *v.get_ref(),
            None => Spool::DEFAULT_STALL_SECS,
        };
        let max_age_days = match &raw.max_age_days {
            Some(v) if *v.get_ref() == 0 || *v.get_ref() > Spool::MAX_MAX_AGE_DAYS => {
                return Err(self.invalid(
                    &v.span(),
                    "spool.max_age_days",
                    format!(
                        "is {}, outside 1..={}",
                        v.get_ref(),
                        Spool::MAX_MAX_AGE_DAYS
                    ),
                    format!(
                        "set the days after which a received file counts as a replay (default {}; \
                         longer than the longest outage the spool must ride out)",
                        Spool::DEFAULT_MAX_AGE_DAYS
                    ),
                ));
            }
            Some(v) => *v.get_ref(),
            None => Spool::DEFAULT_MAX_AGE_DAYS,
        };
        Ok(Spool {
            max_age: Duration::from_secs(max_age_days * 86_400),
            settle: Duration::from_millis(settle_ms),
            stall: Duration::from_secs(stall_secs),
            dir: self.file_path("spool.dir", &raw.dir)?,
            key: self.file_path("spool.key", &raw.key)?,
            outbox: self.file_path("spool.outbox", &raw.outbox)?,
            inbox: self.file_path("spool.inbox", &raw.inbox)?,
            max_bytes,
            old_keys: raw
                .old_keys
                .iter()
                .map(|k| self.file_path("spool.old_keys", k))
                .collect::<Result<_, _>>()?,
        })
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

    fn limits(&self, raw: &RawLimits) -> Result<Limits, ConfigError> {
        let d = Limits::default();
        let positive = |key: &str, value: &Option<Spanned<u64>>, default: u64| match value {
            Some(v) if *v.get_ref() == 0 => Err(self.invalid(
                &v.span(),
                key,
                "is 0".into(),
                "use a positive number, or remove the key for the default",
            )),
            Some(v) => Ok(*v.get_ref()),
            None => Ok(default),
        };
        let handshake = positive(
            "limits.handshake_timeout_secs",
            &raw.handshake_timeout_secs,
            d.handshake_timeout.as_secs(),
        )?;
        let idle = positive(
            "limits.idle_timeout_secs",
            &raw.idle_timeout_secs,
            d.idle_timeout.as_secs(),
        )?;
        let max = positive(
            "limits.max_connections",
            &raw.max_connections,
            Limits::DEFAULT_MAX_CONNECTIONS as u64,
        )?;
        let max_connections = usize::try_from(max).map_err(|_| {
            let span = raw.max_connections.as_ref().map_or(0..0, Spanned::span);
            self.invalid(
                &span,
                "limits.max_connections",
                format!("{max} is too large"),
                "use a smaller number",
            )
        })?;
        let per_source = positive(
            "limits.max_handshakes_per_source",
            &raw.max_handshakes_per_source,
            Limits::DEFAULT_MAX_HANDSHAKES_PER_SOURCE as u64,
        )?;
        let per_peer = positive(
            "limits.max_handshakes_per_peer",
            &raw.max_handshakes_per_peer,
            Limits::DEFAULT_MAX_HANDSHAKES_PER_PEER as u64,
        )?;
        let grace = raw
            .shutdown_grace_secs
            .as_ref()
            .map_or(d.shutdown_grace.as_secs(), |g| *g.get_ref());
        Ok(Limits {
            handshake_timeout: Duration::from_secs(handshake),
            idle_timeout: Duration::from_secs(idle),
            max_connections,
            max_handshakes_per_source: usize::try_from(per_source).unwrap_or(usize::MAX),
            max_handshakes_per_peer: usize::try_from(per_peer).unwrap_or(usize::MAX),
            shutdown_grace: Duration::from_secs(grace),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A complete, valid config; tests edit it. Line numbers matter for the assertions.
    pub(crate) const BASE: &str = r#"[gateway]
pool = "pool01.site1.example"
peer_pool = "pool02.site2.example"
policy = "pairing.toml"

[tls]
cert = "certs/site1.crt"
key = "/etc/pairgate/site1.key"
ca = "certs/ca.crt"

[peer]
listen = "127.0.0.1:7443"
connect = "127.0.0.1:7444"

[admin]
listen = "127.0.0.1:9101"

[audit]
path = "audit/site1.jsonl"

[[tunnel]]
service = "backup-smb"
listen = "127.0.0.1:8445"
allow_sources = ["127.0.0.0/8", "10.1.2.3", "::1"]

[[export]]
service = "backup-smb"
target = "127.0.0.1:4450"
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/srv/pg/site1.toml"))
    }

    /// The one-line message of the error `text` must produce.
    fn error(text: &str) -> String {
        match parse(text) {
            Ok(_) => panic!("config should be invalid:\n{text}"),
            Err(e) => {
                let message = e.to_string();
                assert!(!message.contains('\n'), "one line: {message}");
                message
            }
        }
    }

    fn edit(from: &str, to: &str) -> String {
        assert!(BASE.contains(from), "BASE lacks {from}");
        BASE.replacen(from, to, 1)
    }

    #[test]
    fn base_parses_with_resolved_paths_and_defaults() {
        let config = parse(BASE).map_err(|e| e.to_string());
        let config = config.expect("BASE is valid");
        assert_eq!(config.path, Path::new("/srv/pg/site1.toml"));
        assert_eq!(config.gateway.policy, Path::new("/srv/pg/pairing.toml"));
        assert_eq!(config.tls.cert, Path::new("/srv/pg/certs/site1.crt"));
        assert_eq!(config.tls.key, Path::new("/etc/pairgate/site1.key"));
        assert_eq!(config.tls.crl, None);
        assert!(config.spool.is_none());
        let sources: Vec<String> = config.tunnels[0]
            .allow_sources
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(sources, ["127.0.0.0/8", "10.1.2.3/32", "::1/128"]);
        assert_eq!(config.limits.idle_timeout, Duration::from_secs(1800));
        assert_eq!(config.limits.max_connections, 4096);
        assert_eq!(config.limits.max_handshakes_per_source, 64);
        assert_eq!(config.limits.max_handshakes_per_peer, 2048);
        assert_eq!(config.lines.pool, 2);
        assert_eq!(config.lines.tunnels, [22]);
        assert_eq!(config.lines.exports, [27]);
        assert!(config.exports_service("backup-smb"));
        assert!(!config.exports_service("spool"));
    }

    #[test]
    fn spool_settle_and_stall_are_checked() {
        let spool = |extra: &str| {
            format!(
                "{BASE}\n[spool]\ndir = \"s\"\nkey = \"k\"\noutbox = \"o\"\ninbox = \"i\"\n{extra}"
            )
        };
        let config = parse(&spool("settle_ms = 0\nstall_secs = 5\n")).expect("valid");
        let s = config.spool.expect("spool");
        assert_eq!(
            (s.settle, s.stall),
            (Duration::ZERO, Duration::from_secs(5))
        );
        for (extra, key) in [
            ("stall_secs = 0\n", "spool.stall_secs"),
            ("stall_secs = 7200\n", "spool.stall_secs"),
            ("settle_ms = 700000\n", "spool.settle_ms"),
        ] {
            let message = parse(&spool(extra)).unwrap_err().to_string();
            assert!(message.contains(key), "{message}");
        }
    }

    #[test]
    fn relative_config_path_still_gives_absolute_paths() {
        let config = Config::parse(BASE, Path::new("site1.toml")).map_err(|e| e.to_string());
        let config = config.expect("BASE is valid");
        assert!(config.path.is_absolute() && config.audit.path.is_absolute());
    }

    #[test]
    fn optional_sections_and_limits() {
        let text = format!(
            "{}\n[spool]\ndir = \"s\"\nkey = \"k\"\noutbox = \"o\"\ninbox = \"i\"\nmax_bytes = 1000\n\n[limits]\nidle_timeout_secs = 60\nmax_connections = 8\nmax_handshakes_per_peer = 5\nshutdown_grace_secs = 0\n",
            BASE.replace("[admin]\nlisten = \"127.0.0.1:9101\"\n", "")
        );
        let config = parse(&text).map_err(|e| e.to_string());
        let config = config.expect("valid");
        assert!(config.admin.is_none());
        let spool = config.spool.as_ref().expect("spool section");
        assert_eq!(
            (spool.inbox.as_path(), spool.max_bytes),
            (Path::new("/srv/pg/i"), Some(1000))
        );
        assert_eq!(config.lines.spool, 28);
        assert_eq!(
            (spool.settle, spool.stall),
            (Duration::from_millis(1000), Duration::from_secs(30))
        );
        assert_eq!(config.limits.idle_timeout, Duration::from_secs(60));
        assert_eq!(config.limits.handshake_timeout, Duration::from_secs(10));
        assert_eq!(
            (config.limits.max_connections, config.limits.shutdown_grace),
            (8, Duration::ZERO)
        );
        assert_eq!(config.limits.max_handshakes_per_peer, 5);
    }

    #[test]
    fn unknown_key_names_line_table_and_fix() {
        let message = error(&edit(
            "connect = \"127.0.0.1:7444\"\n",
            "connect = \"127.0.0.1:7444\"\ntimeout = 5\n",
        ));
        assert!(message.starts_with("/srv/pg/site1.toml:14:1: in [peer]: unknown field `timeout`, expected one of `listen`, `connect`, `heartbeat_secs` — remove it"), "{message}");
        let message = error(&format!("{BASE}\n[metrics]\nlisten = \"127.0.0.1:1\"\n"));
        assert!(
            message.starts_with("/srv/pg/site1.toml:30:2: unknown field `metrics`"),
            "{message}"
        );
    }

    #[test]
    fn toml_syntax_and_type_errors_carry_line_and_column() {
        let message = error(&edit(
            "listen = \"127.0.0.1:7443\"",
            "listen = \"127.0.0.1:7443",
        ));
        assert!(message.starts_with("/srv/pg/site1.toml:12:"), "{message}");
        let message = error(&edit(
            "[[export]]",
            "[limits]\nmax_connections = -1\n\n[[export]]",
        ));
        assert!(
            message.contains("site1.toml:27:19: in [limits]: invalid value: integer `-1`"),
            "{message}"
        );
        let message = error(&BASE.replace("[audit]\npath = \"audit/site1.jsonl\"\n", ""));
        assert!(
            message.contains("missing field `audit` — add it"),
            "{message}"
        );
    }

    #[test]
    fn bad_cidr_names_entry_and_example() {
        let message = error(&edit("\"10.1.2.3\"", "\"10.0.0.300/8\""));
        assert_eq!(
            message,
            "/srv/pg/site1.toml:24: tunnel[0].allow_sources: \"10.0.0.300/8\" is not a CIDR network — write it like \"10.1.2.0/24\" (a bare address like \"10.1.2.3\" means that one host)"
        );
        let message = error(&edit("\"10.1.2.3\"", "\"10.1.2.3/24\""));
        assert!(message.contains("has host bits set — write the network, \"10.1.2.0/24\", or the single host \"10.1.2.3\""), "{message}");
        let message = error(&edit(
            "allow_sources = [\"127.0.0.0/8\", \"10.1.2.3\", \"::1\"]",
            "allow_sources = []",
        ));
        assert!(
            message.contains("site1.toml:24: tunnel[0].allow_sources: is empty"),
            "{message}"
        );
    }

    #[test]
    fn duplicate_listeners_name_both() {
        let message = error(&edit(
            "listen = \"127.0.0.1:8445\"",
            "listen = \"127.0.0.1:7443\"",
        ));
        assert_eq!(
            message,
            "/srv/pg/site1.toml:23: tunnel[0].listen: 127.0.0.1:7443 is already used by peer.listen (line 12) — give each listener its own address or port"
        );
        let message = error(&edit(
            "listen = \"127.0.0.1:9101\"",
            "listen = \"0.0.0.0:7443\"",
        ));
        assert!(
            message.contains(
                "site1.toml:16: admin.listen: 0.0.0.0:7443 is already used by peer.listen"
            ),
            "{message}"
        );
        // Port 0 ("any free port", used by tests) never clashes.
        let text = BASE
            .replace(":7443\"", ":0\"")
            .replace(":9101\"", ":0\"")
            .replace(":8445\"", ":0\"");
        assert!(parse(&text).is_ok());
    }

    #[test]
    fn one_tunnel_and_one_export_per_service() {
        let tunnel = "\n[[tunnel]]\nservice = \"backup-smb\"\nlisten = \"127.0.0.1:8446\"\nallow_sources = [\"10.0.0.0/8\"]\n";
        let message = error(&format!("{BASE}{tunnel}"));
        assert!(message.contains("site1.toml:31: tunnel[1].service: \"backup-smb\" already has a [[tunnel]]: tunnel[0] at line 22"), "{message}");
        let export = "\n[[export]]\nservice = \"backup-smb\"\ntarget = \"fs01:445\"\n";
        let message = error(&format!("{BASE}{export}"));
        assert!(
            message.contains(
                "site1.toml:31: export[1].service: \"backup-smb\" already has a [[export]]"
            ),
            "{message}"
        );
    }

    #[test]
    fn service_names() {
        let message = error(&edit(
            "service = \"backup-smb\"\nlisten",
            "service = \"Backup_SMB\"\nlisten",
        ));
        assert!(message.contains("site1.toml:22: tunnel[0].service: \"Backup_SMB\" is not a valid service name — use lower-case"), "{message}");
        let message = error(&edit(
            "service = \"backup-smb\"\ntarget",
            "service = \"spool\"\ntarget",
        ));
        assert!(
            message.contains("export[0].service: \"spool\" cannot be an [[export]]")
                && message.contains("[spool] section"),
            "{message}"
        );
    }

    #[test]
    fn pools() {
        let message = error(&edit(
            "peer_pool = \"pool02.site2.example\"",
            "peer_pool = \"POOL01.site1.example\"",
        ));
        assert!(message.contains("site1.toml:3: gateway.peer_pool: is the local pool \"pool01.site1.example\" itself"), "{message}");
        let message = error(&edit("pool = \"pool01.site1.example\"", "pool = \"\""));
        assert!(
            message.contains("site1.toml:2: gateway.pool: \"\" is not a valid pool name"),
            "{message}"
        );
    }

    #[test]
    fn addresses() {
        let message = error(&edit(
            "listen = \"127.0.0.1:9101\"",
            "listen = \"localhost:9101\"",
        ));
        assert!(
            message.contains(
                "site1.toml:16: admin.listen: \"localhost:9101\" is not an IP address with a port"
            ),
            "{message}"
        );
        for (bad, problem) in [
            ("127.0.0.1", "has no port"),
            ("127.0.0.1:0", "has no valid port"),
            ("127.0.0.1:70000", "has no valid port"),
            (":445", "has no host"),
            ("::1:445", "looks like an IPv6 address without brackets"),
            ("[::g]:445", "has an invalid IPv6"),
            ("a b:445", "has an invalid host name"),
        ] {
            let message = error(&edit(
                "target = \"127.0.0.1:4450\"",
                &format!("target = \"{bad}\""),
            ));
            assert!(
                message.contains(&format!(
                    "site1.toml:28: export[0].target: \"{bad}\" {problem}"
                )),
                "{message}"
            );
        }
        for good in [
            "fs01.site1.example:445",
            "[::1]:445",
            "10.0.0.1:1",
            "fs_01:445",
        ] {
            let result = parse(&edit(
                "target = \"127.0.0.1:4450\"",
                &format!("target = \"{good}\""),
            ));
            assert_eq!(result.is_ok(), good != "fs_01:445", "{good}");
        }
    }

    #[test]
    fn limits_and_paths() {
        let message = error(&format!("{BASE}\n[limits]\nhandshake_timeout_secs = 0\n"));
        assert!(
            message.contains(
                "site1.toml:31: limits.handshake_timeout_secs: is 0 — use a positive number"
            ),
            "{message}"
        );
        let message = error(&edit("ca = \"certs/ca.crt\"", "ca = \"~/ca.crt\""));
        assert!(
            message.contains("site1.toml:9: tls.ca: \"~/ca.crt\" starts with '~'"),
            "{message}"
        );
        let message = error(&edit("path = \"audit/site1.jsonl\"", "path = \" \""));
        assert!(
            message.contains("site1.toml:19: audit.path: is empty"),
            "{message}"
        );
    }

    #[test]
    fn missing_file_is_a_read_error() {
        let dir = tempfile::tempdir().map_err(|e| e.to_string());
        let dir = dir.expect("temp dir");
        let path = dir.path().join("absent.toml");
        let message = Config::load(&path)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            message.contains("absent.toml: cannot read the config file"),
            "{message}"
        );
    }
}
