//! Per-connection rustls configs built from the current [`Material`].
//!
//! Building a config is cheap (Arc clones), and doing it per connection lets
//! the server pick the ALPN the client asked for — so a refused service is
//! refused by policy, with its name in the audit log, rather than by an
//! opaque ALPN mismatch — and lets the verifiers record what the peer showed.

use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, Resumption};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, NoServerSessionStorage, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, Error, ServerConfig,
    SignatureScheme,
};

use super::identity::{identity_of, PeerIdentity};
use super::material::Material;
use super::provider;

/// The certificate a peer presented during one handshake, if any.
#[derive(Debug, Default)]
pub struct Observed {
    leaf: Mutex<Option<Vec<u8>>>,
}

impl Observed {
    fn record(&self, der: &[u8]) {
        if let Ok(mut slot) = self.leaf.lock() {
            *slot = Some(der.to_vec());
        }
    }
    /// Identity of the presented leaf (unverified unless the handshake succeeded).
    pub fn identity(&self) -> Option<PeerIdentity> {
        let slot = self.leaf.lock().ok()?;
        identity_of(slot.as_deref()?).ok()
    }
    /// Fingerprint of the presented leaf, even when it does not parse.
    pub fn fingerprint(&self) -> Option<String> {
        let slot = self.leaf.lock().ok()?;
        slot.as_deref().map(super::fingerprint)
    }
}

#[derive(Debug)]
struct OurCert(Arc<CertifiedKey>);

impl ResolvesServerCert for OurCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

impl ResolvesClientCert for OurCert {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
    fn has_certs(&self) -> bool {
        true
    }
}

#[derive(Debug)]
struct ObservingClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    seen: Arc<Observed>,
    profile: Arc<super::profile::Issuers>,
}

impl ClientCertVerifier for ObservingClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        self.seen.record(end_entity);
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        self.profile.verify(end_entity)?;
        Ok(verified)
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Verifies the server's chain (and CRL) with webpki, then pins its identity:
/// the first DNS SAN must be the peer pool, not merely one of its names.
#[derive(Debug)]
struct PinnedServerVerifier {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    seen: Arc<Observed>,
    peer_pool: String,
    profile: Arc<super::profile::Issuers>,
}

impl ServerCertVerifier for PinnedServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        self.seen.record(end_entity);
        let verified =
            self.inner
                .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)?;
        match identity_of(end_entity) {
            Ok(id) if id.pool.eq_ignore_ascii_case(&self.peer_pool) => {}
            _ => return Err(Error::InvalidCertificate(CertificateError::NotValidForName)),
        }
        self.profile.verify(end_entity)?;
        Ok(verified)
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A server config for one inbound connection that asked for `alpn`.
/// `seen` learns the certificate the client presents.
#[expect(
    clippy::expect_used,
    reason = "the ring provider supports TLS 1.3, the only version we ask for"
)]
pub fn server_config(
    material: &Material,
    alpn: Option<Vec<u8>>,
    seen: &Arc<Observed>,
) -> Arc<ServerConfig> {
    let verifier = Arc::new(ObservingClientVerifier {
        inner: material.client_verifier.clone(),
        seen: seen.clone(),
        profile: material.profile.clone(),
    });
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("the ring provider supports TLS 1.3")
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(OurCert(material.certified.clone())));
    config.alpn_protocols = alpn.into_iter().collect();
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Arc::new(config)
}

/// A client config for one outbound connection to `peer_pool` offering
/// `alpn` (preferred first). `seen` learns the certificate the server presents.
#[expect(
    clippy::expect_used,
    reason = "the ring provider supports TLS 1.3, the only version we ask for"
)]
pub fn client_config(
    material: &Material,
    alpn: Vec<Vec<u8>>,
    peer_pool: &str,
    seen: &Arc<Observed>,
) -> Arc<ClientConfig> {
    let verifier = Arc::new(PinnedServerVerifier {
        inner: material.server_verifier.clone(),
        seen: seen.clone(),
        peer_pool: peer_pool.to_owned(),
        profile: material.profile.clone(),
    });
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("the ring provider supports TLS 1.3")
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_cert_resolver(Arc::new(OurCert(material.certified.clone())));
    config.alpn_protocols = alpn;
    config.resumption = Resumption::disabled();
    Arc::new(config)
}
