//! Parsers for the config's small value types: `host:port` targets, `allow_sources`
//! entries, and whether two listen addresses clash. Pure functions returning the
//! problem (and fix) as text; `validate` adds the file, line and key.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

use crate::names::is_valid_pool_name;

/// Two listen addresses that could not both be bound.
pub(crate) fn clash(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// Checks `host:port`: a non-empty host (IPv6 in brackets) and a port 1–65535.
pub(crate) fn check_host_port(value: &str) -> Result<(), &'static str> {
    let Some((host, port)) = value.rsplit_once(':') else {
        return Err("has no port");
    };
    match port.parse::<u16>() {
        Ok(0) | Err(_) => return Err("has no valid port (1-65535)"),
        Ok(_) => {}
    }
    if host.is_empty() {
        return Err("has no host");
    }
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner
            .parse::<std::net::Ipv6Addr>()
            .map(|_| ())
            .map_err(|_| "has an invalid IPv6 address in brackets");
    }
    if host.contains(':') {
        return Err("looks like an IPv6 address without brackets");
    }
    if host.parse::<IpAddr>().is_ok() || is_valid_pool_name(host) {
        Ok(())
    } else {
        Err("has an invalid host name")
    }
}

/// The private, loopback and link-local ranges a front end server's address
/// is expected in (RFC 1918, RFC 6598 shared space, RFC 4193 unique local).
const PRIVATE_RANGES: [&str; 9] = [
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "fc00::/7",
    "fe80::/10",
    "::1/128",
];

/// Why an `allow_sources` network is wider than a site's own front end
/// servers should need, or `None` when it lies inside a private range.
/// A tunnel listener is plaintext: whoever the list admits reaches the
/// peer's service through the gateway's certificate.
pub fn wide_source(net: &IpNet) -> Option<String> {
    if net.prefix_len() == 0 {
        return Some(format!("{net} admits every address"));
    }
    let private = PRIVATE_RANGES
        .iter()
        .filter_map(|r| r.parse::<IpNet>().ok())
        .any(|range| range.contains(net));
    (!private).then(|| format!("{net} is not inside a private range"))
}

/// One `allow_sources` entry: a CIDR network, or a bare address meaning that host only.
pub(crate) fn parse_source(value: &str) -> Result<IpNet, (String, String)> {
    let value = value.trim();
    if let Ok(net) = value.parse::<IpNet>() {
        if net.trunc() != net {
            return Err((
                format!("\"{value}\" has host bits set"),
                format!(
                    "write the network, \"{}\", or the single host \"{}\"",
                    net.trunc(),
                    net.addr()
                ),
            ));
        }
        return Ok(net);
    }
    if let Ok(ip) = value.parse::<IpAddr>() {
        return Ok(IpNet::from(ip));
    }
    Err((
        format!("\"{value}\" is not a CIDR network"),
        "write it like \"10.1.2.0/24\" (a bare address like \"10.1.2.3\" means that one host)"
            .into(),
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn wide_sources_are_named_private_ones_are_not() {
        let wide = |s: &str| wide_source(&s.parse().unwrap());
        for private in [
            "10.1.2.0/24",
            "127.0.0.0/8",
            "192.168.1.5/32",
            "fd00::/8",
            "::1/128",
        ] {
            assert_eq!(wide(private), None, "{private}");
        }
        assert!(wide("0.0.0.0/0").unwrap().contains("every address"));
        assert!(wide("::/0").unwrap().contains("every address"));
        for public in ["8.8.8.0/24", "10.0.0.0/7", "172.0.0.0/8", "2001:db8::/32"] {
            assert!(
                wide(public).unwrap().contains("not inside a private range"),
                "{public}"
            );
        }
    }

    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn listeners_clash_on_same_port_and_overlapping_ip() {
        assert!(clash(addr("127.0.0.1:1"), addr("127.0.0.1:1")));
        assert!(clash(addr("0.0.0.0:1"), addr("127.0.0.1:1")));
        assert!(clash(addr("127.0.0.2:1"), addr("[::]:1")));
        assert!(!clash(addr("127.0.0.1:1"), addr("127.0.0.2:1")));
        assert!(!clash(addr("127.0.0.1:1"), addr("127.0.0.1:2")));
        assert!(!clash(addr("127.0.0.1:0"), addr("127.0.0.1:0")));
    }

    #[test]
    fn sources_are_networks_or_single_hosts() {
        let net = |s: &str| {
            parse_source(s)
                .map(|n| n.to_string())
                .map_err(|(problem, _)| problem)
        };
        assert_eq!(net("127.1.2.0/24"), Ok("127.1.2.0/24".into()));
        assert_eq!(net(" 127.1.2.3 "), Ok("127.1.2.3/32".into()));
        assert_eq!(net("fd00::1"), Ok("fd00::1/128".into()));
        assert_eq!(net("0.0.0.0/0"), Ok("0.0.0.0/0".into()));
        assert!(net("127.1.2.3/24").is_err_and(|p| p.contains("host bits")));
        for bad in [
            "",
            "127.0.0.300/8",
            "127.0.0.0/33",
            "host.example",
            "127.0.0.0/",
        ] {
            assert!(
                net(bad).is_err_and(|p| p.contains("is not a CIDR network")),
                "{bad}"
            );
        }
    }

    #[test]
    fn host_port_needs_host_and_port() {
        for good in [
            "a:1",
            "gw2.site2.example:65535",
            "[::1]:7444",
            "127.0.0.1:7444",
        ] {
            assert_eq!(check_host_port(good), Ok(()), "{good}");
        }
        for bad in [
            "a", "a:", "a:0", "a:65536", ":1", "::1:1", "[zz]:1", "a/b:1", "a..b:1",
        ] {
            assert!(check_host_port(bad).is_err(), "{bad}");
        }
    }
}
