//! Whether an intercepted connection may go where its client sent it: a
//! pure function of the original destination, the listener's lists, the
//! gateway's own listeners and the mark the connection arrived with.
//!
//! The same lists decide twice: at the intercepting site before anything is
//! dialled (`[[intercept]]`), and at the exporting site before it connects
//! the destination carried in the PROXY header (`[[export]]` with
//! `destinations`/`ports`). Neither side trusts the other to have checked.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

/// Where connections may go: the original destination must be inside one
/// of `nets` *and* use one of `ports`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destinations {
    pub nets: Vec<IpNet>,
    pub ports: Vec<u16>,
}

/// Why a destination is refused (audited as `destination_not_allowed`,
/// with [`Refusal`]'s text as the detail).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No NAT record and no transparent socket: the client connected to
    /// the listener itself, or the kernel kept no record of where it was
    /// going.
    #[error(
        "no original destination (the connection was not redirected to this listener, or \
         conntrack has no record of it)"
    )]
    Missing,
    /// The destination is one of this gateway's own listeners: forwarding
    /// it would connect the gateway to itself.
    #[error("original destination {0} is this gateway's own listener")]
    Ours(SocketAddr),
    /// The connection arrived carrying the gateway's own mark: it is one of
    /// the gateway's outbound connections, redirected back to it.
    #[error("connection carries the gateway's own mark {0:#x}: a redirect loop")]
    Looping(u32),
    #[error("original destination {0} is outside destinations")]
    OutsideNets(SocketAddr),
    #[error("original destination {0} uses a port outside ports")]
    OutsidePorts(SocketAddr),
}

impl Destinations {
    /// Whether `dest` is inside both lists (an IPv4-mapped IPv6 address
    /// counts as its IPv4 form, as `allow_sources` does).
    ///
    /// # Errors
    /// [`Refusal::OutsideNets`] or [`Refusal::OutsidePorts`].
    pub fn admit(&self, dest: SocketAddr) -> Result<SocketAddr, Refusal> {
        let dest = unmapped(dest);
        if !self.nets.iter().any(|net| net.contains(&dest.ip())) {
            return Err(Refusal::OutsideNets(dest));
        }
        if !self.ports.contains(&dest.port()) {
            return Err(Refusal::OutsidePorts(dest));
        }
        Ok(dest)
    }
}

/// What the intercepting side knows about one accepted connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrival {
    /// From `SO_ORIGINAL_DST`, or the local address of a transparent socket;
    /// `None` when the kernel has no record.
    pub original: Option<SocketAddr>,
    /// The mark the kernel gave the accepted socket (non-zero only with
    /// `net.ipv4.tcp_fwmark_accept = 1`, see `intercept`'s docs).
    pub mark: u32,
}

/// Decides an intercepted connection: forwarded to the returned
/// destination, or refused.
///
/// `own` lists every address this gateway listens on (peer, admin,
/// tunnels, intercepts); a listener on an unspecified address (`0.0.0.0`,
/// `[::]`) owns its port on every address. `mark` is the gateway's own
/// `SO_MARK` (0: marking off, so no arrival counts as looping).
///
/// # Errors
/// The [`Refusal`]: never forwarded when missing, ours, looping, or outside
/// the lists — checked in that order.
pub fn decide(
    arrival: Arrival,
    allowed: &Destinations,
    own: &[SocketAddr],
    mark: u32,
) -> Result<SocketAddr, Refusal> {
    if mark != 0 && arrival.mark == mark {
        return Err(Refusal::Looping(mark));
    }
    let dest = arrival.original.map(unmapped).ok_or(Refusal::Missing)?;
    if is_ours(dest, own) {
        return Err(Refusal::Ours(dest));
    }
    allowed.admit(dest)
}

/// Whether `dest` is one of the listeners in `own`.
pub fn is_ours(dest: SocketAddr, own: &[SocketAddr]) -> bool {
    let dest = unmapped(dest);
    own.iter()
        .map(|l| unmapped(*l))
        .any(|l| l.port() == dest.port() && (l.ip() == dest.ip() || l.ip().is_unspecified()))
}

/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, what a dual-stack
/// listener reports for IPv4 clients) as plain IPv4.
pub fn unmapped(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), addr.port()),
            None => addr,
        },
        IpAddr::V4(_) => addr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn peer_site() -> Destinations {
        Destinations {
            nets: vec![
                "127.2.0.0/16".parse().unwrap(),
                "fd02::/64".parse().unwrap(),
            ],
            ports: vec![445],
        }
    }

    fn arrival(original: Option<&str>) -> Arrival {
        Arrival {
            original: original.map(addr),
            mark: 0,
        }
    }

    const OWN: &[&str] = &["127.1.0.9:15445", "0.0.0.0:7443", "127.0.0.1:9101"];

    fn own() -> Vec<SocketAddr> {
        OWN.iter().map(|s| addr(s)).collect()
    }

    #[test]
    fn a_peer_site_file_server_on_445_is_forwarded() {
        let d = decide(arrival(Some("127.2.3.4:445")), &peer_site(), &own(), 0x5047);
        assert_eq!(d, Ok(addr("127.2.3.4:445")));
        let v6 = decide(arrival(Some("[fd02::7]:445")), &peer_site(), &own(), 0x5047);
        assert_eq!(v6, Ok(addr("[fd02::7]:445")));
        let mapped = decide(
            arrival(Some("[::ffff:127.2.3.4]:445")),
            &peer_site(),
            &own(),
            0x5047,
        );
        assert_eq!(mapped, Ok(addr("127.2.3.4:445")), "dual-stack listener");
    }

    #[test]
    fn every_refusal_has_its_reason() {
        let lists = peer_site();
        let cases = [
            (arrival(None), Refusal::Missing),
            (
                arrival(Some("127.1.0.9:15445")),
                Refusal::Ours(addr("127.1.0.9:15445")),
            ),
            (
                arrival(Some("127.2.0.1:7443")),
                Refusal::Ours(addr("127.2.0.1:7443")),
            ),
            (
                arrival(Some("127.3.0.1:445")),
                Refusal::OutsideNets(addr("127.3.0.1:445")),
            ),
            (
                arrival(Some("127.2.0.1:135")),
                Refusal::OutsidePorts(addr("127.2.0.1:135")),
            ),
            (
                Arrival {
                    original: Some(addr("127.2.3.4:445")),
                    mark: 0x5047,
                },
                Refusal::Looping(0x5047),
            ),
        ];
        for (arrival, want) in cases {
            assert_eq!(
                decide(arrival, &lists, &own(), 0x5047),
                Err(want),
                "{arrival:?}"
            );
        }
    }

    #[test]
    fn marking_off_means_no_arrival_is_a_loop() {
        let a = Arrival {
            original: Some(addr("127.2.3.4:445")),
            mark: 0,
        };
        assert!(decide(a, &peer_site(), &own(), 0).is_ok());
        let other_mark = Arrival { mark: 7, ..a };
        assert!(decide(other_mark, &peer_site(), &own(), 0x5047).is_ok());
    }

    #[test]
    fn own_listeners_match_exactly_or_by_wildcard() {
        let own = own();
        assert!(is_ours(addr("127.1.0.9:15445"), &own));
        assert!(!is_ours(addr("127.1.0.8:15445"), &own), "another host");
        assert!(
            is_ours(addr("192.0.2.1:7443"), &own),
            "0.0.0.0 owns its port"
        );
        assert!(is_ours(addr("[::ffff:127.0.0.1]:9101"), &own));
        assert!(!is_ours(addr("127.0.0.1:9102"), &own));
        assert!(is_ours(addr("[::1]:80"), &[addr("[::]:80")]));
    }

    #[test]
    fn the_lists_apply_to_exports_alone() {
        let lists = peer_site();
        assert!(lists.admit(addr("127.2.255.255:445")).is_ok());
        assert!(lists.admit(addr("127.20.0.1:445")).is_err());
        let none = Destinations {
            nets: vec![],
            ports: vec![445],
        };
        assert!(none.admit(addr("127.2.0.1:445")).is_err(), "empty: nothing");
    }
}
