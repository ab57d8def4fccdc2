//! A two-site pairing on loopback, for the demo, the integration tests and
//! the benchmark: mint a PKI, write both site configs on free ports, start
//! the real `pairgate run` processes, and drive traffic through them.
//!
//! Nothing here is used by a production gateway; it lives in the library so
//! that the demo, the tests and the bench share one implementation.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::pki::{Ca, LeafRequest, PkiError, Validity};

pub const POOL1: &str = "pool01.site1.example";
pub const POOL2: &str = "pool02.site2.example";

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error("gateway {config} did not become ready: {detail}")]
    NotReady { config: PathBuf, detail: String },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LabError {
    let what = what.into();
    move |source| LabError::Io { what, source }
}

/// A free port on 127.0.0.1 (bound, then released for the gateway to take).
///
/// # Errors
/// When no loopback port can be bound.
pub fn free_port() -> Result<u16, LabError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(io("bind 127.0.0.1:0"))?;
    Ok(listener.local_addr().map_err(io("local address"))?.port())
}

/// A CA and the gateway certificates issued from it, in one folder.
pub struct Pki {
    pub dir: PathBuf,
    pub ca: Ca,
}

impl Pki {
    /// A fresh CA written to `dir/ca.crt` and `dir/ca.key`.
    ///
    /// # Errors
    /// When the CA cannot be generated or written.
    pub fn create(dir: &Path, name: &str) -> Result<Pki, LabError> {
        let ca = Ca::generate(name, Validity::days_from_now(30))?;
        ca.write_new(dir)?;
        Ok(Pki {
            dir: dir.to_owned(),
            ca,
        })
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// Issues `dir/<file>.crt` and `.key` for `pool`.
    ///
    /// # Errors
    /// When issuing or writing fails.
    pub fn issue(
        &self,
        file: &str,
        pool: &str,
        validity: Validity,
    ) -> Result<(PathBuf, PathBuf), LabError> {
        let req = LeafRequest {
            pool: pool.to_owned(),
            dns: vec![],
            ips: vec![],
            validity,
        };
        Ok(self.ca.issue(&req)?.write(&self.dir.join(file))?)
    }
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

/// A running `pairgate run` child process; killed when dropped.
pub struct GatewayProcess {
    pub child: Child,
    pub config: PathBuf,
    pub audit: PathBuf,
    /// The `ready …` line it printed.
    pub ready: String,
}

impl GatewayProcess {
    /// Starts `exe run --config config` and waits for its `ready` line.
    /// Diagnostics go to `stderr_to` when given, else are inherited.
    ///
    /// # Errors
    /// When the process cannot start or exits before it is ready.
    pub fn start(
        exe: &Path,
        config: &Path,
        stderr_to: Option<&Path>,
    ) -> Result<GatewayProcess, LabError> {
        let stderr = match stderr_to {
            Some(path) => Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(io(format!("open {}", path.display())))?,
            ),
            None => Stdio::inherit(),
        };
        let mut child = Command::new(exe)
            .args(["run", "--config"])
            .arg(config)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(io(format!("start {}", exe.display())))?;
        let stdout = child.stdout.take().ok_or_else(|| LabError::NotReady {
            config: config.to_owned(),
            detail: "no stdout".into(),
        })?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let ready = loop {
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(line) if line.starts_with("ready ") => break line,
                Ok(_) => continue,
                Err(e) => {
                    let _ = child.kill();
                    let status = child.wait().ok();
                    return Err(LabError::NotReady {
                        config: config.to_owned(),
                        detail: format!("{e}; exit status {status:?}"),
                    });
                }
            }
        };
        let stem = config
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("site");
        let audit = config.with_file_name(format!("{stem}-audit.jsonl"));
        Ok(GatewayProcess {
            child,
            config: config.to_owned(),
            audit,
            ready,
        })
    }

    fn signal(&self, name: &str) -> Result<(), LabError> {
        Command::new("kill")
            .args([format!("-{name}"), self.child.id().to_string()])
            .status()
            .map_err(io("run kill"))?;
        Ok(())
    }

    /// SIGTERM, then wait for the exit.
    ///
    /// # Errors
    /// When the signal cannot be sent or waited for.
    pub fn terminate(&mut self) -> Result<std::process::ExitStatus, LabError> {
        self.signal("TERM")?;
        self.child.wait().map_err(io("wait for gateway"))
    }

    /// SIGHUP: reload policy and certificates.
    ///
    /// # Errors
    /// When the signal cannot be sent.
    pub fn hangup(&self) -> Result<(), LabError> {
        self.signal("HUP")
    }

    /// Every audit line written so far, parsed.
    pub fn audit_lines(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(&self.audit).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback server that echoes every connection, half-close included.
///
/// # Errors
/// When it cannot bind.
pub async fn echo_backend() -> Result<SocketAddr, LabError> {
    serve_backend(|stream| async move {
        let (mut r, mut w) = stream.into_split();
        let _ = tokio::io::copy(&mut r, &mut w).await;
        let _ = w.shutdown().await;
    })
    .await
}

/// A loopback server that reads each connection to EOF (the client's
/// half-close), then answers with the SHA-256 of what it got and closes.
///
/// # Errors
/// When it cannot bind.
pub async fn digest_backend() -> Result<SocketAddr, LabError> {
    serve_backend(|mut stream| async move {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => ctx.update(&buf[..n]),
                Err(_) => return,
            }
        }
        let _ = stream.write_all(ctx.finish().as_ref()).await;
        let _ = stream.shutdown().await;
    })
    .await
}

async fn serve_backend<F, Fut>(handle: F) -> Result<SocketAddr, LabError>
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(io("bind backend"))?;
    let addr = listener.local_addr().map_err(io("backend address"))?;
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(handle(stream));
                }
                // e.g. a connection reset while it waited to be accepted:
                // keep serving the others.
                Err(e) => {
                    eprintln!("lab backend: accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
            }
        }
    });
    Ok(addr)
}

/// Sends `payload`, half-closes, and returns everything that comes back.
///
/// # Errors
/// When the connection fails.
pub async fn round_trip(addr: SocketAddr, payload: &[u8]) -> std::io::Result<Vec<u8>> {
    let stream = TcpStream::connect(addr).await?;
    round_trip_on(stream, payload).await
}

/// [`round_trip`] on a stream the caller connected (e.g. from a chosen source).
///
/// # Errors
/// When the connection fails.
pub async fn round_trip_on(stream: TcpStream, payload: &[u8]) -> std::io::Result<Vec<u8>> {
    let _ = stream.set_nodelay(true);
    let (mut r, mut w) = stream.into_split();
    let send = async {
        w.write_all(payload).await?;
        w.shutdown().await
    };
    let recv = async {
        let mut back = Vec::new();
        r.read_to_end(&mut back).await.map(|_| back)
    };
    let (sent, back) = tokio::join!(send, recv);
    sent?;
    back
}

/// Streams `total` bytes of a fixed pattern, half-closes, and returns the
/// answer (with [`digest_backend`]: the SHA-256 of the stream).
///
/// # Errors
/// When the connection fails.
pub async fn stream_bulk(addr: SocketAddr, total: u64) -> std::io::Result<Vec<u8>> {
    let stream = TcpStream::connect(addr).await?;
    let (mut r, mut w) = stream.into_split();
    let chunk = pattern(256 * 1024);
    let send = async {
        let mut left = total;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            w.write_all(&chunk[..n]).await?;
            left -= n as u64;
        }
        w.shutdown().await
    };
    let recv = async {
        let mut back = Vec::new();
        r.read_to_end(&mut back).await.map(|_| back)
    };
    let (sent, back) = tokio::join!(send, recv);
    sent?;
    back
}

/// The SHA-256 that [`stream_bulk`] of `total` bytes should get back.
pub fn bulk_digest(total: u64) -> Vec<u8> {
    let chunk = pattern(256 * 1024);
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut left = total;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        ctx.update(&chunk[..n]);
        left -= n as u64;
    }
    ctx.finish().as_ref().to_vec()
}

/// Deterministic, non-repeating-looking test bytes.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

/// A loopback server that reads each connection to EOF (the client's
/// half-close), counting the bytes without looking at them, then answers the
/// count as a big-endian `u64` and closes. Cheap on purpose: the benchmark
/// measures the path in front of it, not the backend.
///
/// # Errors
/// When it cannot bind.
pub async fn discard_backend() -> Result<SocketAddr, LabError> {
    serve_backend(|mut stream| async move {
        let mut buf = vec![0u8; 256 * 1024];
        let mut total: u64 = 0;
        loop {
            match stream.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => total += n as u64,
                Err(_) => return,
            }
        }
        let _ = stream.write_all(&total.to_be_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await
}
