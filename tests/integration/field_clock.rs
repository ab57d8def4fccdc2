//! Field readiness (issue 12), clocks: a peer whose clock is off must be
//! reported as a clock problem (`not_yet_valid`, the measured skew), not as
//! an expired certificate.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pairgate::pki::Validity;
use serde_json::Value;

use crate::field::{admin_get, value_of, wait_status, with_admin};
use crate::harness::*;

/// Verifiers that check certificates against a clock `behind` the real
/// one: a peer gateway whose clock is wrong, for the TLS part.
mod behind {
    use std::sync::Arc;
    use std::time::Duration;

    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
    use rustls::{DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};

    fn shifted(now: UnixTime, behind: Duration) -> UnixTime {
        UnixTime::since_unix_epoch(
            now.as_secs()
                .checked_sub(behind.as_secs())
                .map_or(Duration::ZERO, Duration::from_secs),
        )
    }

    pub fn roots(ca: &std::path::Path) -> Arc<rustls::RootCertStore> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in pairgate::tls::load_certs(ca).unwrap() {
            roots.add(cert).unwrap();
        }
        Arc::new(roots)
    }

    #[derive(Debug)]
    pub struct Client(pub Arc<dyn ClientCertVerifier>, pub Duration);

    impl ClientCertVerifier for Client {
        fn root_hint_subjects(&self) -> &[DistinguishedName] {
            self.0.root_hint_subjects()
        }
        fn verify_client_cert(
            &self,
            end: &CertificateDer<'_>,
            inter: &[CertificateDer<'_>],
            now: UnixTime,
        ) -> Result<ClientCertVerified, Error> {
            self.0.verify_client_cert(end, inter, shifted(now, self.1))
        }
        fn verify_tls12_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            self.0.verify_tls12_signature(m, c, d)
        }
        fn verify_tls13_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            self.0.verify_tls13_signature(m, c, d)
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.supported_verify_schemes()
        }
    }

    #[derive(Debug)]
    pub struct Server(pub Arc<rustls::client::WebPkiServerVerifier>, pub Duration);

    impl ServerCertVerifier for Server {
        fn verify_server_cert(
            &self,
            end: &CertificateDer<'_>,
            inter: &[CertificateDer<'_>],
            name: &ServerName<'_>,
            ocsp: &[u8],
            now: UnixTime,
        ) -> Result<ServerCertVerified, Error> {
            self.0
                .verify_server_cert(end, inter, name, ocsp, shifted(now, self.1))
        }
        fn verify_tls12_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            self.0.verify_tls12_signature(m, c, d)
        }
        fn verify_tls13_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            self.0.verify_tls13_signature(m, c, d)
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.supported_verify_schemes()
        }
    }

    pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    pub fn key(path: &std::path::Path) -> rustls::pki_types::PrivateKeyDer<'static> {
        let bytes = std::fs::read(path).unwrap();
        rustls_pemfile::private_key(&mut bytes.as_slice())
            .unwrap()
            .unwrap()
    }
}

const TWO_HOURS: Duration = Duration::from_secs(7200);

/// A certificate whose validity starts in an hour — what a peer's
/// certificate looks like to a gateway whose clock is behind — is refused
/// as `not_yet_valid`, not `expired`, with the times in the detail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_that_is_not_valid_yet_is_refused_as_not_yet_valid() {
    let (dir, pki, spec) = site_on_disk();
    let site1 = Gateway::start(&spec.write(dir.path()).unwrap());
    let now = time::OffsetDateTime::now_utc();
    let future = pairgate::pki::Validity {
        not_before: now + time::Duration::hours(1),
        not_after: now + time::Duration::days(30),
    };
    let client = RawPeer {
        ca: pki.ca_path(),
        client_cert: Some(pki.issue("early", POOL2, future)),
    };
    assert!(
        !client
            .relays(spec.peer_addr(), POOL1, b"pg1/backup-smb")
            .await
    );
    let refused = site1.wait_audit("a refusal", |v| {
        v["event"] == "connection" && v["decision"] == "deny"
    });
    assert_eq!(refused["reason"], "not_yet_valid", "{refused}");
    let detail = refused["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("not valid yet") && detail.contains("early"),
        "{detail}"
    );
}

/// The peer's clock is 2 h behind: it refuses our 5-minute-old certificate
/// (TLS says only `certificate_expired`). Both places where we learn it —
/// our heartbeat to the peer, and the peer dialling us — report
/// `not_yet_valid` and that the peer's clock is behind, not `expired`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_clock_that_is_behind_is_reported_not_as_expiry() {
    let (dir, pki, spec) = site_on_disk();
    let roots = behind::roots(&pki.ca_path());
    let (crt, key) = pki.issue("site2", POOL2, Validity::days_from_now(30));
    let chain = pairgate::tls::load_certs(&crt).unwrap();

    // The peer gateway, as a TLS server checking client certificates 2 h in the past.
    let inner = rustls::server::WebPkiClientVerifier::builder_with_provider(
        roots.clone(),
        behind::provider(),
    )
    .build()
    .unwrap();
    let mut server = rustls::ServerConfig::builder_with_provider(behind::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_client_cert_verifier(Arc::new(behind::Client(inner, TWO_HOURS)))
        .with_single_cert(chain.clone(), behind::key(&key))
        .unwrap();
    server.alpn_protocols = vec![b"pg1-control".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", spec.peer_connect))
        .await
        .unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = acceptor.accept(tcp).await;
            });
        }
    });

    let site1 = Gateway::start(&spec.write(dir.path()).unwrap());
    let down = site1.wait_audit("peer link down", |v| {
        v["event"] == "peer_link" && v["state"] == "down"
    });
    let error = down["error"].as_str().unwrap_or_default();
    assert!(error.contains("not_yet_valid"), "{error}");
    assert!(error.contains("peer's clock is probably behind"), "{error}");

    // The same peer dials us and refuses our server certificate.
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(roots, behind::provider())
            .build()
            .unwrap();
    let mut client = rustls::ClientConfig::builder_with_provider(behind::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(behind::Server(verifier, TWO_HOURS)))
        .with_client_auth_cert(chain, behind::key(&key))
        .unwrap();
    client.alpn_protocols = vec![b"pg1/backup-smb".to_vec()];
    let tcp = tokio::net::TcpStream::connect(spec.peer_addr())
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from(POOL1).unwrap();
    let refused = tokio_rustls::TlsConnector::from(Arc::new(client))
        .connect(name, tcp)
        .await;
    assert!(refused.is_err(), "the peer's clock refuses our certificate");
    let denied = site1.wait_audit("a refusal", |v| {
        v["event"] == "connection" && v["decision"] == "deny"
    });
    assert_eq!(denied["reason"], "not_yet_valid", "{denied}");
    let detail = denied["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("peer refused our certificate as not yet valid"),
        "{detail}"
    );
}

/// Starts `pairgate run` with extra environment variables.
fn start_with_env(config: &Path, env: &[(&str, &str)]) -> Gateway {
    use std::io::BufRead;
    let mut child = Command::new(bin())
        .args(["run", "--config"])
        .arg(config)
        .envs(env.iter().copied())
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
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
                panic!("{} did not become ready: {e}", config.display());
            }
        }
    };
    let stem = config
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("site");
    Gateway(pairgate_lab::GatewayProcess {
        child,
        config: config.to_owned(),
        audit: config.with_file_name(format!("{stem}-audit.jsonl")),
        ready,
    })
}

/// Each side measures the other's clock from the heartbeat and shows it in
/// /status and /metrics. (The peer's clock is shifted on the control channel
/// with the hidden testing knob PAIRGATE_TEST_CLOCK_OFFSET_SECS.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_peer_clock_skew_is_measured_and_shown() {
    let mut admins = (None, None);
    let mut pair = Pairing::start_with(|site1, site2| {
        admins.0 = Some(with_admin(site1));
        admins.1 = Some(with_admin(site2));
    })
    .await;
    let (admin1, admin2) = (admins.0.unwrap(), admins.1.unwrap());
    let config2 = pair.site2.config();
    pair.site2.terminate();
    pair.site2 = start_with_env(&config2, &[("PAIRGATE_TEST_CLOCK_OFFSET_SECS", "-7200")]);

    let near = |v: &Value, want: f64| v.as_f64().is_some_and(|s| (s - want).abs() < 60.0);
    let s = wait_status(admin1, "site2's clock 2 h behind", |s| {
        near(&s["peer_link"]["clock_skew_secs"], -7200.0)
    })
    .await;
    assert!(s["peer_link"]["clock_skew_measured"].is_string(), "{s:#}");
    let s = wait_status(admin2, "site1's clock 2 h ahead", |s| {
        near(&s["peer_link"]["clock_skew_secs"], 7200.0)
    })
    .await;
    assert_eq!(s["peer_link"]["state"], "up", "{s:#}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let metrics = admin_get(admin1, "/metrics").await;
        let skew = value_of(&metrics, "pairgate_peer_clock_skew_seconds", &[]);
        if skew.is_some_and(|s| (s + 7200.0).abs() < 60.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "metric never showed the skew: {skew:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
