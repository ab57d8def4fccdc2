//! The rival proxy pairs the benchmark compares pairgate with: HAProxy and
//! stunnel from the distribution, configured as the same two-site pairing.
//!
//! Site A takes plaintext on a loopback port per service and connects to
//! site B with TLS 1.3 only, presenting its lab certificate and verifying
//! site B's chain against the lab CA and its name (`pool02.site2.example`,
//! also sent as SNI). Site B requires and verifies site A's certificate and
//! forwards to the same backends pairgate's exports use. Like pairgate
//! (which turns resumption off on both sides), the rivals do a full
//! handshake per connection: HAProxy with `no-ssl-reuse` / `no-tls-tickets`,
//! stunnel with `sessionResume = no` / `options = NO_TICKET`.
//!
//! The config writers are pure functions (tested below); [`RivalProcess`]
//! owns a running process and kills it when dropped, so an error anywhere in
//! the benchmark leaves nothing running.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::BenchError;

/// The rival proxies the benchmark knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Rival {
    Haproxy,
    Stunnel,
}

impl Rival {
    pub fn name(self) -> &'static str {
        match self {
            Rival::Haproxy => "haproxy",
            Rival::Stunnel => "stunnel",
        }
    }

    /// The executable to look for on `PATH`.
    pub fn program(self) -> &'static str {
        match self {
            Rival::Haproxy => "haproxy",
            Rival::Stunnel => "stunnel",
        }
    }

    /// The Debian package that provides it.
    pub fn package(self) -> &'static str {
        match self {
            Rival::Haproxy => "haproxy",
            Rival::Stunnel => "stunnel4",
        }
    }

    /// Arguments that print the version (first line is enough).
    fn version_args(self) -> &'static [&'static str] {
        match self {
            Rival::Haproxy => &["-v"],
            Rival::Stunnel => &["-version"],
        }
    }
}

/// One proxied service: plaintext in at site A, out to `target` at site B.
#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    /// Site A's plaintext listener.
    pub front: SocketAddr,
    /// Site B's TLS listener.
    pub peer: SocketAddr,
    /// The backend site B forwards to.
    pub target: SocketAddr,
}

/// Certificates for one site, from the lab PKI.
#[derive(Debug, Clone)]
pub struct SiteFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Certificate chain and key in one PEM (what HAProxy's `crt` wants).
    pub combined: PathBuf,
    pub ca: PathBuf,
}

/// HAProxy's global and defaults sections, shared by both sites.
fn haproxy_head() -> String {
    "global\n    maxconn 8192\n    ssl-server-verify required\n\n\
     defaults\n    mode tcp\n    maxconn 8192\n    timeout connect 5s\n    timeout client 1h\n    timeout server 1h\n"
        .to_owned()
}

/// HAProxy config for site A: plaintext frontends, TLS 1.3 client to site B.
pub fn haproxy_site_a(routes: &[Route], files: &SiteFiles, peer_pool: &str) -> String {
    let mut s = haproxy_head();
    for r in routes {
        s += &format!(
            "\nfrontend {name}\n    bind {front}\n    default_backend {name}-peer\n\n\
             backend {name}-peer\n    server site-b {peer} ssl verify required ca-file {ca} crt {crt} \
             sni str({peer_pool}) verifyhost {peer_pool} ssl-min-ver TLSv1.3 no-ssl-reuse\n",
            name = r.name,
            front = r.front,
            peer = r.peer,
            ca = files.ca.display(),
            crt = files.combined.display(),
        );
    }
    s
}

/// HAProxy config for site B: TLS 1.3 listeners requiring a client
/// certificate from the lab CA; like pairgate, only the paired pool (the
/// certificate's CN here, which the lab sets to the pool) gets through.
/// Plaintext to the backends.
pub fn haproxy_site_b(routes: &[Route], files: &SiteFiles, client_pool: &str) -> String {
    let mut s = haproxy_head();
    for r in routes {
        s += &format!(
            "\nfrontend {name}\n    bind {peer} ssl crt {crt} ca-file {ca} verify required \
             ssl-min-ver TLSv1.3 no-tls-tickets\n\
             \x20   tcp-request session reject unless {{ ssl_c_s_dn(CN) -m str {client_pool} }}\n\
             \x20   default_backend {name}-target\n\n\
             backend {name}-target\n    server target {target}\n",
            name = r.name,
            peer = r.peer,
            crt = files.combined.display(),
            ca = files.ca.display(),
            target = r.target,
        );
    }
    s
}

/// stunnel's global options, shared by both sites.
fn stunnel_head() -> String {
    "foreground = yes\npid =\ndebug = 3\n".to_owned()
}

/// stunnel config for site A (client mode).
pub fn stunnel_site_a(routes: &[Route], files: &SiteFiles, peer_pool: &str) -> String {
    let mut s = stunnel_head();
    for r in routes {
        s += &format!(
            "\n[{name}]\nclient = yes\naccept = {front}\nconnect = {peer}\n\
             cert = {cert}\nkey = {key}\nCAfile = {ca}\nverifyChain = yes\n\
             checkHost = {peer_pool}\nsni = {peer_pool}\nsslVersionMin = TLSv1.3\nsessionResume = no\n",
            name = r.name,
            front = r.front,
            peer = r.peer,
            cert = files.cert.display(),
            key = files.key.display(),
            ca = files.ca.display(),
        );
    }
    s
}

/// stunnel config for site B (server mode); like pairgate it also checks
/// that the client certificate names the paired pool.
pub fn stunnel_site_b(routes: &[Route], files: &SiteFiles, client_pool: &str) -> String {
    let mut s = stunnel_head();
    for r in routes {
        s += &format!(
            "\n[{name}]\naccept = {peer}\nconnect = {target}\n\
             cert = {cert}\nkey = {key}\nCAfile = {ca}\nverifyChain = yes\nrequireCert = yes\n\
             checkHost = {client_pool}\nsslVersionMin = TLSv1.3\noptions = NO_TICKET\n",
            name = r.name,
            peer = r.peer,
            target = r.target,
            cert = files.cert.display(),
            key = files.key.display(),
            ca = files.ca.display(),
        );
    }
    s
}

/// Writes `cert` + `key` into one PEM at `out`, readable by the owner only.
///
/// # Errors
/// When a file cannot be read or written.
pub fn write_combined_pem(cert: &Path, key: &Path, out: &Path) -> Result<(), BenchError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let read = |p: &Path| {
        std::fs::read(p).map_err(|source| BenchError::Io {
            what: format!("read {}", p.display()),
            source,
        })
    };
    let mut pem = read(cert)?;
    if !pem.ends_with(b"\n") {
        pem.push(b'\n');
    }
    pem.extend(read(key)?);
    let write = |source| BenchError::Io {
        what: format!("write {}", out.display()),
        source,
    };
    let _ = std::fs::remove_file(out);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .and_then(|mut f| f.write_all(&pem))
        .map_err(write)
}

/// The rival's version line, or why it cannot run.
///
/// # Errors
/// When the program is not installed.
pub fn version(rival: Rival) -> Result<String, BenchError> {
    let out = Command::new(rival.program())
        .args(rival.version_args())
        .output()
        .map_err(|_| BenchError::RivalMissing {
            program: rival.program(),
            package: rival.package(),
        })?;
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    Ok(text
        .lines()
        .find(|l| l.to_lowercase().contains(rival.name()))
        .unwrap_or_default()
        .trim()
        .to_owned())
}

/// A running rival process; killed and reaped when dropped.
pub struct RivalProcess {
    pub child: Child,
    pub log: PathBuf,
}

impl RivalProcess {
    /// Writes `config` to `config_path` and starts the rival on it, its
    /// diagnostics appended to `log`; waits until every address in
    /// `listens` accepts connections.
    ///
    /// # Errors
    /// When the program is missing, exits early, or does not listen in time.
    pub fn start(
        rival: Rival,
        config: &str,
        config_path: &Path,
        listens: &[SocketAddr],
        log: &Path,
    ) -> Result<RivalProcess, BenchError> {
        std::fs::write(config_path, config).map_err(|source| BenchError::Io {
            what: format!("write {}", config_path.display()),
            source,
        })?;
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|source| BenchError::Io {
                what: format!("open {}", log.display()),
                source,
            })?;
        let stdout = stderr.try_clone().map_err(|source| BenchError::Io {
            what: format!("open {}", log.display()),
            source,
        })?;
        let mut command = Command::new(rival.program());
        match rival {
            Rival::Haproxy => command.arg("-db").arg("-f").arg(config_path),
            Rival::Stunnel => command.arg(config_path),
        };
        let child = command
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .map_err(|_| BenchError::RivalMissing {
                program: rival.program(),
                package: rival.package(),
            })?;
        let mut process = RivalProcess {
            child,
            log: log.to_owned(),
        };
        process.wait_listening(rival, listens)?;
        Ok(process)
    }

    fn wait_listening(&mut self, rival: Rival, listens: &[SocketAddr]) -> Result<(), BenchError> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let not_ready = |detail: String| BenchError::RivalNotReady {
            rival: rival.name(),
            log: self.log.clone(),
            detail,
        };
        for addr in listens {
            loop {
                if let Ok(Some(status)) = self.child.try_wait() {
                    return Err(not_ready(format!("it exited with {status}")));
                }
                if std::net::TcpStream::connect_timeout(addr, Duration::from_millis(200)).is_ok() {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(not_ready(format!("nothing listens on {addr} after 10 s")));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for RivalProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes() -> Vec<Route> {
        let a = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
        vec![
            Route {
                name: "echo".into(),
                front: a(1001),
                peer: a(2001),
                target: a(3001),
            },
            Route {
                name: "discard".into(),
                front: a(1002),
                peer: a(2002),
                target: a(3002),
            },
        ]
    }

    fn files(site: &str) -> SiteFiles {
        SiteFiles {
            cert: format!("/l/{site}.crt").into(),
            key: format!("/l/{site}.key").into(),
            combined: format!("/l/{site}.pem").into(),
            ca: "/l/ca.crt".into(),
        }
    }

    #[test]
    fn haproxy_site_a_is_a_verifying_tls13_client() {
        let cfg = haproxy_site_a(&routes(), &files("site1"), "pool02.site2.example");
        assert!(cfg.contains("frontend echo\n    bind 127.0.0.1:1001\n"));
        assert!(cfg.contains("frontend discard\n    bind 127.0.0.1:1002\n"));
        assert!(cfg.contains(
            "server site-b 127.0.0.1:2001 ssl verify required ca-file /l/ca.crt crt /l/site1.pem \
             sni str(pool02.site2.example) verifyhost pool02.site2.example ssl-min-ver TLSv1.3 no-ssl-reuse\n"
        ));
        assert!(cfg.contains("mode tcp"));
        assert!(!cfg.contains("3001"), "site A never talks to the backends");
    }

    #[test]
    fn haproxy_site_b_requires_client_certificates() {
        let cfg = haproxy_site_b(&routes(), &files("site2"), "pool01.site1.example");
        assert!(cfg.contains(
            "bind 127.0.0.1:2002 ssl crt /l/site2.pem ca-file /l/ca.crt verify required ssl-min-ver TLSv1.3"
        ));
        assert!(cfg.contains("server target 127.0.0.1:3002\n"));
        assert_eq!(
            cfg.matches("tcp-request session reject unless { ssl_c_s_dn(CN) -m str pool01.site1.example }\n")
                .count(),
            2
        );
        assert_eq!(cfg.matches("ca.crt verify required ssl-min-ver").count(), 2);
        assert!(!cfg.contains("1001"));
    }

    #[test]
    fn stunnel_configs() {
        let a = stunnel_site_a(&routes(), &files("site1"), "pool02.site2.example");
        assert!(a.starts_with("foreground = yes\n"));
        assert!(
            a.contains("[echo]\nclient = yes\naccept = 127.0.0.1:1001\nconnect = 127.0.0.1:2001\n")
        );
        for line in [
            "cert = /l/site1.crt",
            "key = /l/site1.key",
            "CAfile = /l/ca.crt",
            "verifyChain = yes",
            "checkHost = pool02.site2.example",
            "sni = pool02.site2.example",
            "sslVersionMin = TLSv1.3",
            "sessionResume = no",
        ] {
            assert_eq!(a.matches(&format!("{line}\n")).count(), 2, "{line}");
        }
        let b = stunnel_site_b(&routes(), &files("site2"), "pool01.site1.example");
        assert!(b.contains("[discard]\naccept = 127.0.0.1:2002\nconnect = 127.0.0.1:3002\n"));
        assert!(!b.contains("client = yes"));
        assert_eq!(b.matches("requireCert = yes\n").count(), 2);
        assert_eq!(b.matches("checkHost = pool01.site1.example\n").count(), 2);
    }

    #[test]
    fn combined_pem_is_cert_then_key_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (cert, key, out) = (
            dir.path().join("a.crt"),
            dir.path().join("a.key"),
            dir.path().join("a.pem"),
        );
        std::fs::write(&cert, "CERT").unwrap();
        std::fs::write(&key, "KEY\n").unwrap();
        write_combined_pem(&cert, &key, &out).unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "CERT\nKEY\n");
        let mode = std::fs::metadata(&out).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // Rewriting (next round) replaces it.
        write_combined_pem(&cert, &key, &out).unwrap();
        assert!(write_combined_pem(&dir.path().join("missing"), &key, &out).is_err());
    }
}
