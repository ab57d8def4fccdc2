//! One site's config file, written the way an operator would write it, on
//! free loopback ports.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::{io, LabError};

/// A free port on 127.0.0.1 (bound, then released for the gateway to take).
///
/// # Errors
/// When no loopback port can be bound.
pub fn free_port() -> Result<u16, LabError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(io("bind 127.0.0.1:0"))?;
    Ok(listener.local_addr().map_err(io("local address"))?.port())
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
