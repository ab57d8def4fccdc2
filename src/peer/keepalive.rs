//! TCP keepalive on every socket that leaves the gateway's process for
//! another host or service: peer connections (dialled and accepted),
//! tunnel clients and export targets.
//!
//! Without it, a connection whose other end vanished without a FIN or RST
//! (power cut, a firewall that forgot the flow) holds its slot until the
//! idle timeout (30 min by default). With these settings an idle dead
//! connection is detected after [`IDLE`] + [`PROBES`] × [`INTERVAL`] =
//! 110 s. (A *busy* frozen spool transfer is caught sooner by
//! `[spool] stall_secs`.)

use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};
use tokio::net::TcpStream;

/// Idle time before the first probe.
pub const IDLE: Duration = Duration::from_secs(60);
/// Time between probes.
pub const INTERVAL: Duration = Duration::from_secs(10);
/// Unanswered probes before the connection is dropped.
pub const PROBES: u32 = 5;

/// Turns keepalive on for `tcp` (best effort: a failure is logged at debug
/// level; the connection works without it).
pub fn enable(tcp: &TcpStream) {
    let params = TcpKeepalive::new().with_time(IDLE).with_interval(INTERVAL);
    #[cfg(any(
        target_os = "linux",
        target_os = "android",
        target_os = "macos",
        target_os = "freebsd"
    ))]
    let params = params.with_retries(PROBES);
    if let Err(e) = SockRef::from(tcp).set_tcp_keepalive(&params) {
        tracing::debug!(error = %e, "cannot enable TCP keepalive");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keepalive_is_on_with_the_documented_timing() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let (client, (server, _)) = (client.unwrap(), accepted.unwrap());
        for tcp in [&client, &server] {
            assert!(!SockRef::from(tcp).keepalive().unwrap());
            enable(tcp);
            let s = SockRef::from(tcp);
            assert!(s.keepalive().unwrap());
            assert_eq!(s.keepalive_time().unwrap(), IDLE);
            #[cfg(target_os = "linux")]
            {
                assert_eq!(s.keepalive_interval().unwrap(), INTERVAL);
                assert_eq!(s.keepalive_retries().unwrap(), PROBES);
            }
        }
    }
}
