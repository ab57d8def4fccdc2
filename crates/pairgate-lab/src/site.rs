//! One site's config file, written the way an operator would write it, on
//! free loopback ports.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::{io, LabError};

/// A free port on 127.0.0.1 (bound, then released for the gateway to take).
///
/// Ports come from *below* the kernel's ephemeral range
/// (`net.ipv4.ip_local_port_range`, 32768–60999 by default) when there is
/// room: a port from that range, free when checked, can be taken by any
/// outgoing connection (a test opening 2,000 of them) before the gateway
/// binds it — which made tests fail with "address in use" on a loaded
/// machine. Each process walks its own stretch, seeded by its pid, and never
/// hands the same port out twice.
///
/// # Errors
/// When no loopback port can be bound.
pub fn free_port() -> Result<u16, LabError> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static HANDED_OUT: AtomicU32 = AtomicU32::new(0);
    let (low, high) = below_ephemeral();
    if high > low {
        let span = high - low;
        let seed = std::process::id().wrapping_mul(7919) % span;
        for _ in 0..span.min(4096) {
            let n = HANDED_OUT.fetch_add(1, Ordering::Relaxed);
            let port = low + (seed + n) % span;
            let Ok(port) = u16::try_from(port) else {
                continue;
            };
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return Ok(port);
            }
        }
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(io("bind 127.0.0.1:0"))?;
    Ok(listener.local_addr().map_err(io("local address"))?.port())
}

/// The stretch of ports under the ephemeral range this machine uses for
/// outgoing connections; empty when that range starts too low to leave one.
fn below_ephemeral() -> (u32, u32) {
    let first_ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768);
    // Stay above the well-known and commonly configured service ports.
    let low = 12000;
    (low, first_ephemeral.max(low))
}

/// What goes into one site's config file.
#[derive(Debug, Clone)]
pub struct SiteSpec {
    /// File stem: `<dir>/<name>.toml`, audit at `<dir>/<name>-audit.jsonl`.
    pub name: String,
    pub pool: String,
    pub peer_pool: String,
    pub cert: (PathBuf, PathBuf),
    pub ca: PathBuf,
    /// `tls.crl`, if any.
    pub crl: Option<PathBuf>,
    pub peer_listen: u16,
    pub peer_connect: u16,
    /// (service, port, allow_sources)
    pub tunnels: Vec<(String, u16, Vec<String>)>,
    /// (service, target)
    pub exports: Vec<(String, SocketAddr)>,
    /// Appended verbatim (e.g. a `[limits]` section).
    pub extra: String,
}

impl SiteSpec {
    pub fn toml(&self) -> String {
        let mut s = format!(
            "[gateway]\npool = \"{}\"\npeer_pool = \"{}\"\npolicy = \"policy.toml\"\n\n\
             [tls]\ncert = \"{}\"\nkey = \"{}\"\nca = \"{}\"\n\n\
             [peer]\nlisten = \"127.0.0.1:{}\"\nconnect = \"127.0.0.1:{}\"\n\n\
             [audit]\npath = \"{}-audit.jsonl\"\n",
            self.pool,
            self.peer_pool,
            self.cert.0.display(),
            self.cert.1.display(),
            self.ca.display(),
            self.peer_listen,
            self.peer_connect,
            self.name
        );
        if let Some(crl) = &self.crl {
            s = s.replacen(
                "\n\n[peer]",
                &format!("\ncrl = \"{}\"\n\n[peer]", crl.display()),
                1,
            );
        }
        for (service, port, sources) in &self.tunnels {
            let sources: Vec<String> = sources.iter().map(|s| format!("\"{s}\"")).collect();
            s += &format!(
                "\n[[tunnel]]\nservice = \"{service}\"\nlisten = \"127.0.0.1:{port}\"\nallow_sources = [{}]\n",
                sources.join(", ")
            );
        }
        for (service, target) in &self.exports {
            s += &format!("\n[[export]]\nservice = \"{service}\"\ntarget = \"{target}\"\n");
        }
        s + &self.extra
    }

    /// Writes `<dir>/<name>.toml` and returns its path.
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn write(&self, dir: &Path) -> Result<PathBuf, LabError> {
        let path = dir.join(format!("{}.toml", self.name));
        std::fs::write(&path, self.toml()).map_err(io(format!("write {}", path.display())))?;
        Ok(path)
    }

    /// The address of the first tunnel listener.
    pub fn tunnel_addr(&self, index: usize) -> Option<SocketAddr> {
        self.tunnels
            .get(index)
            .map(|t| SocketAddr::from(([127, 0, 0, 1], t.1)))
    }

    pub fn peer_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.peer_listen))
    }
}
