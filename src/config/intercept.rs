//! `[[intercept]]` listeners and `[[export]]`s that connect the destination
//! the peer carried (`destinations` + `ports` instead of `target`), and the
//! `[gateway] mark` of the gateway's own sockets — the config side of
//! `crate::intercept`.
//!
//! Both lists are checked at both ends: the intercepting gateway forwards
//! only what its `destinations`/`ports` cover, the exporting gateway
//! connects only what *its* lists cover. Each site decides for its own
//! servers.

use std::fmt;
use std::net::SocketAddr;

use ipnet::IpNet;
use toml::Spanned;

use super::file::{RawExport, RawIntercept};
use super::validate::Validator;
use super::values::parse_source;
use super::ConfigError;
use crate::intercept::{Capture, Destinations};

/// One `[[intercept]]`: connections an nftables rule redirected here, sent
/// to the peer with their original destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intercept {
    pub service: crate::names::ServiceName,
    pub listen: SocketAddr,
    pub allow_sources: Vec<IpNet>,
    /// Where the original destination must lie (`destinations`, `ports`).
    pub destinations: Destinations,
    /// How the listener gets its connections (`capture`, default `redirect`).
    pub capture: Capture,
}

/// Where an `[[export]]` connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportTarget {
    /// `target = "host:port"`: every connection of the service goes there.
    Fixed(String),
    /// `destinations` + `ports`: the destination the peer carried in its
    /// PROXY header, when inside these lists.
    Carried(Destinations),
}

impl ExportTarget {
    /// The fixed `host:port`, if this export has one.
    pub fn fixed(&self) -> Option<&str> {
        match self {
            ExportTarget::Fixed(target) => Some(target),
            ExportTarget::Carried(_) => None,
        }
    }
}

impl fmt::Display for ExportTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExportTarget::Fixed(target) => f.write_str(target),
            ExportTarget::Carried(d) => {
                let nets: Vec<String> = d.nets.iter().map(ToString::to_string).collect();
                let ports: Vec<String> = d.ports.iter().map(ToString::to_string).collect();
                write!(
                    f,
                    "destinations [{}] ports [{}]",
                    nets.join(", "),
                    ports.join(", ")
                )
            }
        }
    }
}

type Nets = Spanned<Vec<Spanned<String>>>;
type Ports = Spanned<Vec<Spanned<u16>>>;

impl Validator<'_> {
    pub(super) fn intercept(
        &self,
        index: usize,
        raw: &RawIntercept,
    ) -> Result<Intercept, ConfigError> {
        let key = |field: &str| format!("intercept[{index}].{field}");
        let service = self.service(&key("service"), &raw.service, "[[intercept]]")?;
        let listen = self.listen(&key("listen"), &raw.listen)?;
        let allow_sources = self.networks(
            &key("allow_sources"),
            &raw.allow_sources,
            "is empty, so no client could use this listener",
            "list the networks of the local Lync servers, e.g. allow_sources = [\"10.1.10.0/24\"]",
        )?;
        let destinations =
            self.destinations(&key("destinations"), &raw.destinations, "intercept")?;
        let ports = self.ports(&key("ports"), &raw.ports)?;
        let capture =
            match &raw.capture {
                None => Capture::Redirect,
                Some(c) => match c.get_ref().as_str() {
                    "redirect" => Capture::Redirect,
                    "tproxy" => Capture::Tproxy,
                    other => return Err(self.invalid(
                        &c.span(),
                        &key("capture"),
                        format!("{other:?} is not \"redirect\" or \"tproxy\""),
                        "write capture = \"redirect\" (nftables redirect/dnat, the default) or \
                         \"tproxy\" (nftables tproxy; needs CAP_NET_ADMIN)",
                    )),
                },
            };
        Ok(Intercept {
            service,
            listen,
            allow_sources,
            destinations: Destinations {
                nets: destinations,
                ports,
            },
            capture,
        })
    }

    /// The target of `[[export]]` number `index`: `target`, or
    /// `destinations` and `ports` — one or the other.
    pub(super) fn export_target(
        &self,
        index: usize,
        raw: &RawExport,
    ) -> Result<ExportTarget, ConfigError> {
        let key = |field: &str| format!("export[{index}].{field}");
        match (&raw.target, &raw.destinations, &raw.ports) {
            (Some(target), None, None) => Ok(ExportTarget::Fixed(self.host_port(
                &key("target"),
                target,
                "fs01.site1.example:445",
            )?)),
            (None, Some(nets), Some(ports)) => Ok(ExportTarget::Carried(Destinations {
                nets: self.destinations(&key("destinations"), nets, "export")?,
                ports: self.ports(&key("ports"), ports)?,
            })),
            (Some(target), _, _) => Err(self.invalid(
                &target.span(),
                &key("target"),
                "is given together with destinations/ports".into(),
                "keep target (one fixed host:port) or destinations and ports (the host the \
                 peer's [[intercept]] carried), not both",
            )),
            (None, Some(nets), None) => Err(self.invalid(
                &nets.span(),
                &key("ports"),
                "is missing next to destinations".into(),
                "add the ports the export may connect, e.g. ports = [445]",
            )),
            (None, None, Some(ports)) => Err(self.invalid(
                &ports.span(),
                &key("destinations"),
                "is missing next to ports".into(),
                "add the networks the export may connect, e.g. destinations = [\"10.1.20.0/24\"]",
            )),
            (None, None, None) => Err(self.invalid(
                &raw.service.span(),
                &key("target"),
                "is missing".into(),
                "add target = \"host:port\" (a fixed local server), or destinations = [CIDRs] \
                 and ports = [445] (the host the peer's [[intercept]] carried)",
            )),
        }
    }

    fn destinations(
        &self,
        key: &str,
        raw: &Nets,
        section: &str,
    ) -> Result<Vec<IpNet>, ConfigError> {
        let empty = format!("is empty, so this [[{section}]] could reach no host");
        self.networks(
            key,
            raw,
            &empty,
            "list the networks (or single hosts) of the Lync servers and File Stores, e.g. \
             destinations = [\"10.2.20.50\", \"10.2.10.0/24\"]; leave domain controllers out",
        )
    }

    fn networks(
        &self,
        key: &str,
        raw: &Nets,
        empty: &str,
        fix: &str,
    ) -> Result<Vec<IpNet>, ConfigError> {
        if raw.get_ref().is_empty() {
            return Err(self.invalid(&raw.span(), key, empty.to_owned(), fix));
        }
        raw.get_ref()
            .iter()
            .map(|s| {
                parse_source(s.get_ref())
                    .map_err(|(problem, fix)| self.invalid(&s.span(), key, problem, fix))
            })
            .collect()
    }

    fn ports(&self, key: &str, raw: &Ports) -> Result<Vec<u16>, ConfigError> {
        if raw.get_ref().is_empty() {
            return Err(self.invalid(
                &raw.span(),
                key,
                "is empty, so no connection could match".into(),
                "list the destination ports, e.g. ports = [445]",
            ));
        }
        let mut ports = Vec::new();
        for port in raw.get_ref() {
            if *port.get_ref() == 0 {
                return Err(self.invalid(
                    &port.span(),
                    key,
                    "contains 0".into(),
                    "use ports 1-65535, e.g. ports = [445]",
                ));
            }
            ports.push(*port.get_ref());
        }
        Ok(ports)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::intercept::Capture;

    const BASE: &str = r#"[gateway]
pool = "pool01.site1.example"
peer_pool = "pool02.site2.example"
policy = "pairing.toml"

[tls]
cert = "c.crt"
key = "c.key"
ca = "ca.crt"

[peer]
listen = "127.0.0.1:7443"
connect = "127.0.0.1:7444"

[audit]
path = "audit.jsonl"
"#;

    fn parse(extra: &str) -> Result<Config, String> {
        Config::parse(
            &format!("{BASE}{extra}"),
            std::path::Path::new("/srv/pg/site1.toml"),
        )
        .map_err(|e| e.to_string())
    }

    const INTERCEPT: &str = "\n[[intercept]]\nservice = \"backup-smb\"\nlisten = \"127.1.0.10:15445\"\n\
        allow_sources = [\"127.1.10.0/24\"]\ndestinations = [\"127.2.20.50\", \"127.2.10.0/24\"]\nports = [445]\n";

    #[test]
    fn an_intercept_and_a_carried_export_parse_with_defaults() {
        let extra = format!(
            "{INTERCEPT}\n[[export]]\nservice = \"backup-smb\"\ndestinations = [\"127.1.0.0/16\"]\nports = [445, 139]\n"
        );
        let config = parse(&extra).unwrap();
        assert_eq!(config.gateway.mark, crate::intercept::DEFAULT_MARK);
        let i = &config.intercepts[0];
        assert_eq!(i.listen, "127.1.0.10:15445".parse().unwrap());
        assert_eq!(i.capture, Capture::Redirect);
        assert_eq!(i.destinations.ports, [445]);
        assert_eq!(i.destinations.nets.len(), 2);
        assert_eq!(
            config.exports[0].target.to_string(),
            "destinations [127.1.0.0/16] ports [445, 139]"
        );
        assert_eq!(config.lines.intercepts, [19]);
        assert!(config.intercepting());
        let fixed =
            parse("\n[[export]]\nservice = \"backup-smb\"\ntarget = \"fs01:445\"\n").unwrap();
        assert_eq!(fixed.exports[0].target.fixed(), Some("fs01:445"));
        assert!(!fixed.intercepting(), "a plain gateway sets no mark");
        let off = parse(INTERCEPT).unwrap();
        assert!(off.intercepting());
        let text = format!("{BASE}{INTERCEPT}").replace(
            "policy = \"pairing.toml\"",
            "policy = \"pairing.toml\"\nmark = 0",
        );
        let no_mark = Config::parse(&text, std::path::Path::new("/srv/pg/site1.toml")).unwrap();
        assert_eq!(no_mark.gateway.mark, 0);
        let tproxy = parse(&format!("{INTERCEPT}capture = \"tproxy\"\n")).unwrap();
        assert_eq!(tproxy.intercepts[0].capture, Capture::Tproxy);
    }

    #[test]
    fn bad_intercepts_and_exports_name_the_key_and_the_fix() {
        let cases = [
            (
                INTERCEPT.replace("ports = [445]", "ports = []"),
                "intercept[0].ports: is empty",
            ),
            (
                INTERCEPT.replace("ports = [445]", "ports = [0]"),
                "intercept[0].ports: contains 0",
            ),
            (
                INTERCEPT.replace("[\"127.2.20.50\", \"127.2.10.0/24\"]", "[]"),
                "intercept[0].destinations: is empty",
            ),
            (
                INTERCEPT.replace("\"127.2.20.50\"", "\"127.2.20.500\""),
                "intercept[0].destinations: \"127.2.20.500\" is not a CIDR network",
            ),
            (
                format!("{INTERCEPT}capture = \"nat\"\n"),
                "intercept[0].capture: \"nat\" is not",
            ),
            (
                "\n[[export]]\nservice = \"backup-smb\"\ntarget = \"fs01:445\"\nports = [445]\n"
                    .into(),
                "export[0].target: is given together with destinations/ports",
            ),
            (
                "\n[[export]]\nservice = \"backup-smb\"\ndestinations = [\"127.0.0.0/8\"]\n".into(),
                "export[0].ports: is missing next to destinations",
            ),
            (
                "\n[[export]]\nservice = \"backup-smb\"\n".into(),
                "export[0].target: is missing",
            ),
            (
                format!("{INTERCEPT}{}", INTERCEPT.replace("15445", "15446")),
                "intercept[1].service: \"backup-smb\" already has a [[intercept]]",
            ),
            (
                INTERCEPT.replace("127.1.0.10:15445", "127.0.0.1:7443"),
                "intercept[0].listen: 127.0.0.1:7443 is already used by peer.listen",
            ),
        ];
        for (extra, want) in cases {
            let message = parse(&extra).unwrap_err();
            assert!(message.contains(want), "{want}\n got: {message}");
            assert!(message.starts_with("/srv/pg/site1.toml:"), "{message}");
        }
        let negative = BASE.replace(
            "policy = \"pairing.toml\"",
            "policy = \"pairing.toml\"\nmark = -1",
        );
        let message = Config::parse(&negative, std::path::Path::new("/srv/pg/site1.toml"))
            .unwrap_err()
            .to_string();
        assert!(message.contains("site1.toml:5"), "{message}");
    }
}
