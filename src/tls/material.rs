//! Loading and validating one site's TLS material: its certificate chain and
//! key, the CA trust bundle and the optional CRL. Validation happens here,
//! before anything is published to the listeners (validate, then publish), so
//! a bad file can never replace a working configuration.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName, UnixTime,
};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;

use super::identity::{identity_of, PeerIdentity};
use super::{provider, verify_error_text};

/// Validated TLS material of one gateway, ready to build configs from.
#[derive(Debug)]
pub struct Material {
    pub certified: Arc<CertifiedKey>,
    /// Our own identity (first DNS SAN of our leaf).
    pub identity: PeerIdentity,
    pub roots: Arc<RootCertStore>,
    /// Expiry (Unix seconds) of each trusted CA certificate, with its fingerprint.
    pub ca_expiry: Vec<(String, i64)>,
    /// Our leaf's validity window (`not_before`, `not_after`), Unix seconds:
    /// to explain a peer that refuses it for its dates.
    pub validity: (i64, i64),
    pub(super) client_verifier: Arc<dyn ClientCertVerifier>,
    pub(super) server_verifier: Arc<WebPkiServerVerifier>,
    /// The same without the CRL-age check (the same Arcs under "warn"):
    /// whether a peer is revoked does not depend on how old the CRL is, and
    /// webpki checks the age before the serial.
    probe_client: Arc<dyn ClientCertVerifier>,
    probe_server: Arc<WebPkiServerVerifier>,
    /// The pairing certificate profile every peer certificate must meet.
    pub(super) profile: Arc<super::profile::Issuers>,
    /// The CRLs in force that a trusted CA signed (see `crl.rs`).
    pub crls: Vec<super::crl::CrlState>,
    /// Why the CRLs of `tls.crl` were not taken (a rollback); the CRLs in
    /// force were kept instead.
    pub crl_refused: Option<String>,
    pub crl_overdue: super::crl::CrlOverdue,
    /// Where the CRLs in force are kept across restarts.
    pub(super) crl_kept: Option<PathBuf>,
    /// Whether this material already logged its CRL as overdue.
    pub(super) crl_overdue_logged: std::sync::atomic::AtomicBool,
    /// The trusted CA certificates (`tls.ca`): offered CRLs must be signed
    /// by one of them (see `crl_offer.rs`).
    pub(super) cas: Vec<CertificateDer<'static>>,
    /// `tls.crl`, where CRLs taken from the peer are written.
    pub(super) crl_path: Option<PathBuf>,
    /// The last CRL offer audited with this material (see `crl_offer.rs`).
    pub(super) crl_offer_last: std::sync::Mutex<Option<String>>,
}

/// Where the material came from, for messages.
#[derive(Debug, Clone)]
pub struct Sources {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
    pub crl: Option<PathBuf>,
    /// The copy of the CRLs in force (see `tls::crl::kept_path`); `None`:
    /// no memory across restarts (tests, tools).
    pub crl_kept: Option<PathBuf>,
    pub crl_overdue: super::crl::CrlOverdue,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: no PEM certificate found — expected the output of `pairgate cert issue`/`pairgate ca init`")]
    NoCertificate { path: PathBuf },
    #[error("{path}: no PEM private key found — expected the PREFIX.key written by `pairgate cert issue`")]
    NoKey { path: PathBuf },
    #[error(transparent)]
    Key(#[from] crate::pki::PkiError),
    #[error("{path}: unusable private key: {detail}")]
    BadKey { path: PathBuf, detail: String },
    #[error("{key}: this key does not belong to the certificate in {cert} — reissue both with `pairgate cert issue`")]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("{path}: {detail}")]
    Certificate { path: PathBuf, detail: String },
    #[error("{0}")]
    CrlRollback(String),
    #[error("{path}: not a valid CRL: {detail} — regenerate it with `pairgate cert revoke`")]
    Crl { path: PathBuf, detail: String },
    #[error("{path}: the certificate identifies pool {found:?} but the config says gateway.pool = {expected:?} — issue a certificate with `pairgate cert issue --pool {expected}`")]
    WrongIdentity {
        path: PathBuf,
        found: String,
        expected: String,
    },
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Every PEM certificate in a file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path)?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut bytes.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Certificate {
            path: path.to_owned(),
            detail: format!("bad PEM: {e}"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    crate::pki::check_key_permissions(path)?;
    let bytes = read(path)?;
    rustls_pemfile::private_key(&mut bytes.as_slice())
        .map_err(|e| TlsError::BadKey {
            path: path.to_owned(),
            detail: format!("bad PEM: {e}"),
        })?
        .ok_or_else(|| TlsError::NoKey {
            path: path.to_owned(),
        })
}

pub(super) fn load_crls(
    path: &Path,
) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let bytes = read(path)?;
    let crls: Vec<_> = rustls_pemfile::crls(&mut bytes.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Crl {
            path: path.to_owned(),
            detail: e.to_string(),
        })?;
    if crls.is_empty() && !bytes.is_empty() {
        // Not PEM: take the file as one DER CRL.
        return Ok(vec![CertificateRevocationListDer::from(bytes)]);
    }
    Ok(crls)
}

impl Material {
    /// Whether this material's CRLs revoke the peer that presented `chain`
    /// (as a client certificate when `as_client`, else as a server's for
    /// `peer_pool`). Other verification failures — an expired certificate,
    /// a CA no longer in the bundle — do not count: established connections
    /// survive rotation, only revocation closes them.
    pub fn is_revoked(
        &self,
        chain: &[CertificateDer<'static>],
        as_client: bool,
        peer_pool: &str,
    ) -> bool {
        let Some((leaf, intermediates)) = chain.split_first() else {
            return false;
        };
        let result = if as_client {
            self.probe_client
                .verify_client_cert(leaf, intermediates, UnixTime::now())
                .map(|_| ())
        } else {
            let Ok(name) = ServerName::try_from(peer_pool.to_owned()) else {
                return false;
            };
            self.probe_server
                .verify_server_cert(leaf, intermediates, &name, &[], UnixTime::now())
                .map(|_| ())
        };
        matches!(
            result,
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Revoked
            ))
        )
    }

    /// Loads and validates the files named in the `[tls]` section for `pool`.
    ///
    /// # Errors
    /// [`TlsError`] naming the file and the fix when a file is unreadable or
    /// malformed, the key does not match, the chain does not verify against the
    /// bundle, the certificate is expired/revoked, or it names another pool.
    pub fn load(src: &Sources, pool: &str) -> Result<Material, TlsError> {
        Material::load_after(src, pool, None)
    }

    /// Like [`Material::load`], with `previous` (the running material) in
    /// force: a CRL older than the one in force — in `previous` or in the
    /// kept copy — is not taken; the one in force stays and
    /// [`Material::crl_refused`] says why (see `tls::crl`).
    ///
    /// # Errors
    /// As [`Material::load`].
    pub fn load_after(
        src: &Sources,
        pool: &str,
        previous: Option<&Material>,
    ) -> Result<Material, TlsError> {
        let chain = load_certs(&src.cert)?;
        let key = load_key(&src.key)?;
        let cas = load_certs(&src.ca)?;
        let crls = match &src.crl {
            Some(path) => load_crls(path)?,
            None => Vec::new(),
        };
        // Without `tls.crl`, the CRLs in force are those taken from the
        // peer (kept beside the audit log, see `crl_offer.rs`), if any.
        let kept = src.crl_kept.as_deref().filter(|p| p.exists());
        let (crls, states, refused) = match (&src.crl, kept) {
            (Some(_), _) => super::revocation::choose(src, &cas, crls, previous),
            (None, Some(kept)) => match load_crls(kept) {
                Ok(ders) => super::revocation::choose(src, &cas, ders, previous),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the kept copy of the CRLs taken from the peer; no CRL in force");
                    (crls, Vec::new(), None)
                }
            },
            (None, None) => (crls, Vec::new(), None),
        };
        let mut material = Material::build(src, chain, key, cas, crls, pool)?;
        material.crls = states;
        material.crl_refused = refused;
        Ok(material)
    }

    fn build(
        src: &Sources,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        cas: Vec<CertificateDer<'static>>,
        crls: Vec<CertificateRevocationListDer<'static>>,
        pool: &str,
    ) -> Result<Material, TlsError> {
        let provider = provider();
        let signing =
            provider
                .key_provider
                .load_private_key(key)
                .map_err(|e| TlsError::BadKey {
                    path: src.key.clone(),
                    detail: e.to_string(),
                })?;
        let certified = CertifiedKey::new(chain.clone(), signing);
        if certified.keys_match().is_err() {
            return Err(TlsError::KeyMismatch {
                cert: src.cert.clone(),
                key: src.key.clone(),
            });
        }

        let mut roots = RootCertStore::empty();
        let mut ca_expiry = Vec::new();
        for ca in &cas {
            roots.add(ca.clone()).map_err(|e| TlsError::Certificate {
                path: src.ca.clone(),
                detail: format!("not a usable CA certificate: {e}"),
            })?;
            if let Ok((_, parsed)) =
                <x509_parser::certificate::X509Certificate as x509_parser::prelude::FromDer<
                    '_,
                    _,
                >>::from_der(ca)
            {
                ca_expiry.push((
                    super::identity::fingerprint(ca),
                    parsed.validity().not_after.timestamp(),
                ));
            }
        }
        let roots = Arc::new(roots);
        let crl_err = |e: rustls::server::VerifierBuilderError| TlsError::Crl {
            path: src.crl.clone().unwrap_or_default(),
            detail: e.to_string(),
        };
        // Our chains are CA → leaf, so only leaves can be revoked; during a CA
        // rollover the CRL of one CA cannot speak for the other's leaves.
        let deny_overdue = src.crl_overdue == super::crl::CrlOverdue::Deny;
        let client_builder = || {
            WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
                .with_crls(crls.clone())
                .only_check_end_entity_revocation()
                .allow_unknown_revocation_status()
        };
        let probe_client = client_builder().build().map_err(crl_err)?;
        let client_verifier = if deny_overdue {
            client_builder()
                .enforce_revocation_expiration()
                .build()
                .map_err(crl_err)?
        } else {
            probe_client.clone()
        };
        let server_builder = || {
            WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
                .with_crls(crls.clone())
                .only_check_end_entity_revocation()
                .allow_unknown_revocation_status()
        };
        // Our own certificate is checked without the CRL's freshness: an
        // overdue CRL under "deny" refuses peers, it must not stop the
        // gateway from starting (and showing why) or from reloading.
        let self_check = server_builder().build().map_err(crl_err)?;
        let server_verifier = if deny_overdue {
            server_builder()
                .enforce_revocation_expiration()
                .build()
                .map_err(crl_err)?
        } else {
            self_check.clone()
        };

        let leaf = &chain[0];
        let validity = <x509_parser::certificate::X509Certificate as x509_parser::prelude::FromDer<
            '_,
            _,
        >>::from_der(leaf)
        .map(|(_, c)| {
            (
                c.validity().not_before.timestamp(),
                c.validity().not_after.timestamp(),
            )
        })
        .unwrap_or((i64::MIN, i64::MAX));
        let identity = identity_of(leaf).map_err(|e| TlsError::Certificate {
            path: src.cert.clone(),
            detail: e.to_string(),
        })?;
        if !identity.pool.eq_ignore_ascii_case(pool) {
            return Err(TlsError::WrongIdentity {
                path: src.cert.clone(),
                found: identity.pool,
                expected: pool.to_owned(),
            });
        }
        // Our own certificate must pass the same check the peer will apply.
        let name = ServerName::try_from(pool.to_owned()).map_err(|e| TlsError::Certificate {
            path: src.cert.clone(),
            detail: format!("pool {pool:?} is not a DNS name: {e}"),
        })?;
        self_check
            .verify_server_cert(leaf, &chain[1..], &name, &[], UnixTime::now())
            .map_err(|e| TlsError::Certificate {
                path: src.cert.clone(),
                detail: format!(
                    "{} (checked against {})",
                    verify_error_text(&e),
                    src.ca.display()
                ),
            })?;

        // Our own certificate must meet the profile the peer will apply.
        let profile = Arc::new(super::profile::Issuers::new(&cas));
        profile.check(leaf).map_err(|v| TlsError::Certificate {
            path: src.cert.clone(),
            detail: format!("{v} — issue the certificate with `pairgate cert issue`"),
        })?;

        Ok(Material {
            certified: Arc::new(certified),
            identity,
            roots,
            ca_expiry,
            validity,
            client_verifier,
            server_verifier,
            probe_client,
            probe_server: self_check,
            profile,
            crls: Vec::new(),
            crl_refused: None,
            crl_overdue: src.crl_overdue,
            crl_kept: src.crl_kept.clone(),
            crl_overdue_logged: std::sync::atomic::AtomicBool::new(false),
            cas,
            crl_path: src.crl.clone(),
            crl_offer_last: std::sync::Mutex::new(None),
        })
    }
}
