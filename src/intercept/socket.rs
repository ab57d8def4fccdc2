//! The kernel side of interception: where a redirected connection was
//! going, the mark it arrived with, transparent listeners, and marked
//! outbound connections. Everything goes through socket2's safe wrappers
//! (`SockRef` over tokio's sockets), so the crate stays free of `unsafe`.

use std::io;
use std::net::SocketAddr;

use socket2::SockRef;
use tokio::net::{TcpListener, TcpSocket, TcpStream};

use super::destination::{unmapped, Arrival};

/// How an intercept listener receives its connections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Capture {
    /// nftables/iptables `redirect` or `dnat`: the original destination is
    /// in conntrack, read with `SO_ORIGINAL_DST` / `IP6T_SO_ORIGINAL_DST`.
    #[default]
    Redirect,
    /// nftables/iptables `tproxy`: the listener is `IP_TRANSPARENT`, and an
    /// accepted socket's local address *is* the original destination.
    Tproxy,
}

impl Capture {
    pub fn as_str(self) -> &'static str {
        match self {
            Capture::Redirect => "redirect",
            Capture::Tproxy => "tproxy",
        }
    }
}

/// Binds an intercept listener (as `proxy::bind`, plus `IP_TRANSPARENT`
/// for [`Capture::Tproxy`], which needs `CAP_NET_ADMIN`).
///
/// # Errors
/// When the socket cannot be made transparent, or the address bound.
pub fn bind_listener(
    addr: SocketAddr,
    backlog: usize,
    capture: Capture,
) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    if capture == Capture::Tproxy {
        // Linux accepts IP_TRANSPARENT on IPv6 sockets too (same flag).
        set_transparent(&socket)?;
    }
    socket.bind(addr)?;
    socket.listen(u32::try_from(backlog).unwrap_or(u32::MAX).max(128))
}

/// What the kernel knows about an accepted connection: its original
/// destination (`None` when there is no record) and its mark.
///
/// # Errors
/// Only for failures other than "no record" (which is `original: None`).
pub fn arrival(stream: &TcpStream, capture: Capture) -> io::Result<Arrival> {
    let original = match capture {
        Capture::Tproxy => Some(unmapped(stream.local_addr()?)),
        Capture::Redirect => original_destination(stream)?,
    };
    Ok(Arrival {
        original,
        mark: mark_of(stream)?,
    })
}

/// `SO_ORIGINAL_DST` (IPv4, and IPv4-mapped on a dual-stack listener) or
/// `IP6T_SO_ORIGINAL_DST` (IPv6); `Ok(None)` when conntrack has no entry
/// (`ENOENT`) or conntrack is not loaded (`ENOPROTOOPT`).
///
/// # Errors
/// Any other getsockopt failure.
pub fn original_destination(stream: &TcpStream) -> io::Result<Option<SocketAddr>> {
    let local = stream.local_addr()?;
    let socket = SockRef::from(stream);
    let result = if unmapped(local).is_ipv4() {
        original_dst_v4(&socket)
    } else {
        original_dst_v6(&socket)
    };
    match result {
        Ok(addr) => Ok(addr.as_socket().map(unmapped)),
        Err(e) if no_record(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

fn no_record(e: &io::Error) -> bool {
    // ENOENT: conntrack has no entry; ENOPROTOOPT: no conntrack module.
    matches!(e.raw_os_error(), Some(2) | Some(92))
}

/// Connects to `target` (`host:port`, every resolved address in turn, as
/// `TcpStream::connect` does) from a socket carrying `SO_MARK = mark`
/// (0: no mark), so the operator's nftables rules can tell the gateway's
/// own connections from the ones to intercept.
///
/// # Errors
/// Resolution, marking (needs `CAP_NET_ADMIN`) and connection errors; the
/// last address's error when none connects.
pub async fn connect(target: &str, mark: u32) -> io::Result<TcpStream> {
    let mut last = None;
    for addr in tokio::net::lookup_host(target).await? {
        match connect_addr(addr, mark).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{target} resolves to no address"),
        )
    }))
}

/// [`connect`] to one address.
///
/// # Errors
/// Marking and connection errors.
pub async fn connect_addr(addr: SocketAddr, mark: u32) -> io::Result<TcpStream> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if mark != 0 {
        set_mark(&socket, mark).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("setting SO_MARK {mark:#x} on the connection to {addr}: {e} (needs CAP_NET_ADMIN)"),
            )
        })?;
    }
    socket.connect(addr).await
}

/// Whether this process may put `mark` on its sockets: checked once at
/// start when interception is configured, so a missing capability is one
/// clear error instead of every connection failing.
///
/// # Errors
/// The error of setting the mark on a fresh socket (`EPERM` without
/// `CAP_NET_ADMIN`).
pub fn check_mark(mark: u32) -> io::Result<()> {
    if mark == 0 {
        return Ok(());
    }
    set_mark(&TcpSocket::new_v4()?, mark)
}

/// Whether this process may make listeners transparent (TPROXY).
///
/// # Errors
/// As [`check_mark`], for `IP_TRANSPARENT`.
pub fn check_transparent() -> io::Result<()> {
    set_transparent(&TcpSocket::new_v4()?)
}

#[cfg(target_os = "linux")]
fn original_dst_v4(socket: &SockRef<'_>) -> io::Result<socket2::SockAddr> {
    socket.original_dst()
}

#[cfg(target_os = "linux")]
fn original_dst_v6(socket: &SockRef<'_>) -> io::Result<socket2::SockAddr> {
    socket.original_dst_ipv6()
}

#[cfg(target_os = "linux")]
fn mark_of(stream: &TcpStream) -> io::Result<u32> {
    SockRef::from(stream).mark()
}

#[cfg(target_os = "linux")]
fn set_mark(socket: &TcpSocket, mark: u32) -> io::Result<()> {
    SockRef::from(socket).set_mark(mark)
}

#[cfg(target_os = "linux")]
fn set_transparent(socket: &TcpSocket) -> io::Result<()> {
    SockRef::from(socket).set_ip_transparent(true)
}

#[cfg(not(target_os = "linux"))]
fn unsupported<T>() -> io::Result<T> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "transparent interception needs Linux (conntrack, SO_MARK, IP_TRANSPARENT)",
    ))
}

#[cfg(not(target_os = "linux"))]
fn original_dst_v4(_: &SockRef<'_>) -> io::Result<socket2::SockAddr> {
    unsupported()
}

#[cfg(not(target_os = "linux"))]
fn original_dst_v6(_: &SockRef<'_>) -> io::Result<socket2::SockAddr> {
    unsupported()
}

#[cfg(not(target_os = "linux"))]
fn mark_of(_: &TcpStream) -> io::Result<u32> {
    Ok(0)
}

#[cfg(not(target_os = "linux"))]
fn set_mark(_: &TcpSocket, _: u32) -> io::Result<()> {
    unsupported()
}

#[cfg(not(target_os = "linux"))]
fn set_transparent(_: &TcpSocket) -> io::Result<()> {
    unsupported()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> bool {
        rustix::process::geteuid().is_root()
    }

    #[tokio::test]
    async fn a_direct_connection_has_no_other_destination_than_the_listener() {
        // Without a redirect, conntrack (if loaded) records the listener
        // itself, and without conntrack there is no record at all: either
        // way `decide` refuses (ours / missing).
        let listener =
            bind_listener("127.0.0.1:0".parse().unwrap(), 16, Capture::Redirect).unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = TcpStream::connect(addr).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        let arrival = arrival(&accepted, Capture::Redirect).unwrap();
        assert!(
            arrival.original.is_none() || arrival.original == Some(addr),
            "{arrival:?}"
        );
        assert_eq!(arrival.mark, 0);
        let tproxy = super::arrival(&accepted, Capture::Tproxy).unwrap();
        assert_eq!(tproxy.original, Some(addr), "TPROXY: the local address");
    }

    #[tokio::test]
    async fn marked_connections_need_the_capability_and_carry_the_mark() {
        let listener =
            bind_listener("127.0.0.1:0".parse().unwrap(), 16, Capture::Redirect).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let unmarked = connect(&addr, 0).await.unwrap();
        assert_eq!(mark_of(&unmarked).unwrap(), 0);
        if !root() {
            assert!(check_mark(0x5047).is_err(), "EPERM without CAP_NET_ADMIN");
            let e = connect(&addr, 0x5047).await.unwrap_err();
            assert!(e.to_string().contains("CAP_NET_ADMIN"), "{e}");
            return;
        }
        check_mark(0x5047).unwrap();
        check_transparent().unwrap();
        let marked = connect(&addr, 0x5047).await.unwrap();
        assert_eq!(mark_of(&marked).unwrap(), 0x5047);
        let e = connect("127.0.0.1:1", 0x5047).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
    }
}
