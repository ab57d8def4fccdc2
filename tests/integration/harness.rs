//! The test harness: `pairgate_lab` (the loopback pairing shared with the
//! demo and the bench) plus what only tests need — panicking helpers, a PKI
//! minted in-process with any validity window (`pairgate::pki`), a standard
//! pairing, audit waits, generated audit logs, and a raw TLS client that
//! plays a (possibly hostile) peer gateway.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pairgate::pki::{Ca, LeafRequest, Validity};
use pairgate_lab::GatewayProcess;
pub use pairgate_lab::{
    digest_backend, echo_backend, pattern, round_trip, round_trip_on, SiteSpec, POOL1, POOL2,
};
use rustls::pki_types::ServerName;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A pool of another pair, with a valid certificate from the same CA.
pub const POOL3: &str = "pool03.site3.example";

pub const POLICY: &str = r#"
[[pair]]
pools = ["pool01.site1.example", "pool02.site2.example"]
services = ["backup-smb", "cms-smb", "spool"]

[[pair]]
pools = ["pool03.site3.example", "pool04.site4.example"]
services = ["backup-smb"]
"#;

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_pairgate")
}

pub fn free_port() -> u16 {
    pairgate_lab::free_port().expect("free port")
}

/// A CA and the gateway certificates issued from it, in one folder, minted
/// in-process so that a test can choose any validity window (expired, not
/// yet valid) — which `pairgate cert issue` rightly does not offer.
pub struct LabPki {
    pub dir: PathBuf,
    pub ca: Ca,
}

impl LabPki {
    /// A fresh CA written to `dir/ca.crt` and `dir/ca.key`.
    pub fn create(dir: &Path, name: &str) -> Result<LabPki, pairgate::pki::PkiError> {
        let ca = Ca::generate(name, Validity::days_from_now(30))?;
        ca.write_new(dir)?;
        Ok(LabPki {
            dir: dir.to_owned(),
            ca,
        })
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// Issues `dir/<file>.crt` and `.key` for `pool`.
    pub fn issue(
        &self,
        file: &str,
        pool: &str,
        validity: Validity,
    ) -> Result<(PathBuf, PathBuf), pairgate::pki::PkiError> {
        let req = LeafRequest {
            pool: pool.to_owned(),
            dns: vec![],
            ips: vec![],
            validity,
        };
        self.ca.issue(&req)?.write(&self.dir.join(file))
    }
}

pub struct Pki(pub LabPki);

impl Pki {
    pub fn new(dir: &Path, name: &str) -> Pki {
        Pki(LabPki::create(dir, name).expect("create CA"))
    }
    pub fn ca_path(&self) -> PathBuf {
        self.0.ca_path()
    }
    pub fn issue(&self, file: &str, pool: &str, validity: Validity) -> (PathBuf, PathBuf) {
        self.0.issue(file, pool, validity).expect("issue")
    }
}

/// A running gateway process with test helpers.
pub struct Gateway(pub GatewayProcess);

impl Gateway {
    pub fn start(config: &Path) -> Gateway {
        Gateway(GatewayProcess::start(Path::new(bin()), config, None).expect("start gateway"))
    }

    pub fn config(&self) -> PathBuf {
        self.0.config.clone()
    }

    pub fn audit_path(&self) -> &Path {
        &self.0.audit
    }

    pub fn terminate(&mut self) -> std::process::ExitStatus {
        self.0.terminate().expect("terminate")
    }

    pub fn audit_lines(&self) -> Vec<Value> {
        self.0.audit_lines()
    }

    /// Waits (generously) until at least `n` audit lines match `pred` — the
    /// log is written by a group-commit thread, so a line may land a moment
    /// after the traffic it records — and returns all lines.
    pub fn wait_audit_count(
        &self,
        what: &str,
        n: usize,
        pred: impl Fn(&Value) -> bool,
    ) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let lines = self.audit_lines();
            let found = lines.iter().filter(|v| pred(v)).count();
            if found >= n {
                return lines;
            }
            if Instant::now() > deadline {
                panic!(
                    "{found} audit lines for {what} in {}, want {n}",
                    self.0.audit.display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits (generously) until an audit line matches `pred` and returns it.
    pub fn wait_audit(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(v) = self.audit_lines().into_iter().find(|v| pred(v)) {
                return v;
            }
            if Instant::now() > deadline {
                panic!(
                    "no audit line for {what} in {}:\n{:#?}",
                    self.0.audit.display(),
                    self.audit_lines()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// One valid site on disk, nothing running: a fresh CA, site1's certificate,
/// the test policy and `site1.toml` (one tunnel for 127.1.0.0/16, one export).
pub fn site_on_disk() -> (tempfile::TempDir, Pki, SiteSpec) {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new(&dir.path().join("pki"), "test pairing CA");
    std::fs::write(dir.path().join("policy.toml"), POLICY).expect("policy");
    let spec = SiteSpec {
        name: "site1".into(),
        pool: POOL1.into(),
        peer_pool: POOL2.into(),
        cert: pki.issue("site1", POOL1, Validity::days_from_now(30)),
        ca: pki.ca_path(),
        crl: None,
        peer_listen: free_port(),
        peer_connect: free_port(),
        tunnels: vec![(
            "backup-smb".into(),
            free_port(),
            vec!["127.1.0.0/16".into()],
        )],
        exports: vec![("backup-smb".into(), ([127, 0, 0, 1], 4450).into())],
        extra: String::new(),
    };
    spec.write(dir.path()).expect("write site1.toml");
    (dir, pki, spec)
}

/// The standard two-site pairing: site1 tunnels backup-smb and cms-smb to
/// site2, which exports both to an echo backend.
pub struct Pairing {
    pub dir: tempfile::TempDir,
    pub pki: Pki,
    pub site1: Gateway,
    pub site2: Gateway,
    pub backend: SocketAddr,
    pub tunnel: SocketAddr,
    pub cms_tunnel: SocketAddr,
    pub site1_spec: SiteSpec,
    pub site2_spec: SiteSpec,
}

impl Pairing {
    pub async fn start() -> Pairing {
        Self::start_with(|_, _| {}).await
    }

    /// Like `start`, letting the test adjust both specs first.
    pub async fn start_with(adjust: impl FnOnce(&mut SiteSpec, &mut SiteSpec)) -> Pairing {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = Pki::new(&dir.path().join("pki"), "test pairing CA");
        std::fs::write(dir.path().join("policy.toml"), POLICY).expect("policy");
        let backend = echo_backend().await.expect("echo backend");
        let (p1, p2) = (free_port(), free_port());
        let mut site1 = SiteSpec {
            name: "site1".into(),
            pool: POOL1.into(),
            peer_pool: POOL2.into(),
            cert: pki.issue("site1", POOL1, Validity::days_from_now(30)),
            ca: pki.ca_path(),
            crl: None,
            peer_listen: p1,
            peer_connect: p2,
            tunnels: vec![
                (
                    "backup-smb".into(),
                    free_port(),
                    vec!["127.0.0.1/32".into()],
                ),
                ("cms-smb".into(), free_port(), vec!["127.0.0.0/8".into()]),
            ],
            exports: vec![],
            extra: String::new(),
        };
        let mut site2 = SiteSpec {
            name: "site2".into(),
            pool: POOL2.into(),
            peer_pool: POOL1.into(),
            cert: pki.issue("site2", POOL2, Validity::days_from_now(30)),
            ca: pki.ca_path(),
            crl: None,
            peer_listen: p2,
            peer_connect: p1,
            tunnels: vec![],
            exports: vec![("backup-smb".into(), backend), ("cms-smb".into(), backend)],
            extra: String::new(),
        };
        adjust(&mut site1, &mut site2);
        let site2_gw = Gateway::start(&site2.write(dir.path()).expect("write site2"));
        let site1_gw = Gateway::start(&site1.write(dir.path()).expect("write site1"));
        let tunnel = site1.tunnel_addr(0).expect("a tunnel");
        let cms_tunnel = site1.tunnel_addr(1).unwrap_or(tunnel);
        Pairing {
            dir,
            pki,
            site1: site1_gw,
            site2: site2_gw,
            backend,
            tunnel,
            cms_tunnel,
            site1_spec: site1,
            site2_spec: site2,
        }
    }

    pub fn site2_peer(&self) -> SocketAddr {
        self.site2_spec.peer_addr()
    }
}

/// A TLS client that talks to a gateway's peer port directly, as a (possibly
/// hostile) peer gateway would.
pub struct RawPeer {
    pub ca: PathBuf,
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

impl RawPeer {
    pub async fn connect(
        &self,
        addr: SocketAddr,
        server_pool: &str,
        alpn: &[u8],
    ) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in pairgate::tls::load_certs(&self.ca).expect("ca") {
            roots.add(cert).expect("root");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("tls13")
            .with_root_certificates(roots);
        let mut config = match &self.client_cert {
            None => builder.with_no_client_auth(),
            Some((crt, key)) => {
                let chain = pairgate::tls::load_certs(crt).expect("client chain");
                let key_bytes = std::fs::read(key).expect("client key");
                let key = rustls_pemfile::private_key(&mut key_bytes.as_slice())
                    .expect("pem")
                    .expect("key");
                builder
                    .with_client_auth_cert(chain, key)
                    .expect("client auth")
            }
        };
        config.alpn_protocols = vec![alpn.to_vec()];
        let tcp = TcpStream::connect(addr).await?;
        let name = ServerName::try_from(server_pool.to_owned()).expect("name");
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
    }

    /// Connects, sends a probe, and reports whether the gateway relayed it
    /// back from the echo backend (true) or refused the connection (false).
    pub async fn relays(&self, addr: SocketAddr, server_pool: &str, alpn: &[u8]) -> bool {
        let Ok(mut stream) = self.connect(addr, server_pool, alpn).await else {
            return false;
        };
        if stream.write_all(b"probe").await.is_err() || stream.flush().await.is_err() {
            return false;
        }
        let mut buf = [0u8; 5];
        matches!(
            tokio::time::timeout(Duration::from_secs(20), stream.read_exact(&mut buf)).await,
            Ok(Ok(_)) if &buf == b"probe"
        )
    }
}

/// Writes a new, valid audit log of `n_lines` events (connections and their
/// closes, a denial every fourth), 10 ms apart from `start`, chained with
/// the library's own `render_line`; returns the bytes written.
pub fn synthetic_log(
    path: &Path,
    n_lines: u64,
    start: time::OffsetDateTime,
) -> std::io::Result<u64> {
    use pairgate::audit::{line_hash, render_line, Close, Connection, Direction, Event, GENESIS};
    use pairgate::policy::{DenyReason, Verdict};
    let mut out = String::new();
    let mut prev = GENESIS;
    for i in 0..n_lines {
        let k = i / 2;
        let peer_addr = format!("127.0.0.{}:{}", 2 + k % 50, 40000 + k);
        let denied = k % 4 == 3;
        let event = if i % 2 == 0 || denied {
            Event::Connection(Connection {
                conn_id: k,
                direction: Direction::Inbound,
                peer_addr,
                peer_pool: Some(POOL2.to_owned()),
                cert_sha256: Some(format!("{k:064x}")),
                service: Some("backup-smb".to_owned()),
                decision: if denied {
                    Verdict::Deny
                } else {
                    Verdict::Allow
                },
                reason: denied.then_some(DenyReason::ServiceNotAllowed),
                detail: None,
                client_addr: None,
                orig_dst: None,
                claimed_pool: None,
            })
        } else {
            Event::Close(Close {
                conn_id: k,
                direction: Direction::Inbound,
                peer_addr,
                peer_pool: Some(POOL2.to_owned()),
                cert_sha256: Some(format!("{k:064x}")),
                service: Some("backup-smb".to_owned()),
                decision: Verdict::Allow,
                bytes_in: 1000 + k,
                bytes_out: 500 + k,
                duration_ms: k,
                error: None,
                reason: None,
                client_addr: None,
                orig_dst: None,
            })
        };
        let ts = start + time::Duration::milliseconds(i as i64 * 10);
        let line = render_line(ts, &event, &prev);
        prev = line_hash(line.as_bytes());
        out += &line;
        out.push('\n');
    }
    std::fs::write(path, &out)?;
    Ok(out.len() as u64)
}

/// Whether `addr` refuses connections within a few seconds: a listener a
/// reload removed stops accepting as soon as its accept task sees the stop,
/// a moment after the reload is audited.
pub async fn stops_listening(addr: SocketAddr) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if TcpStream::connect(addr).await.is_err() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}
