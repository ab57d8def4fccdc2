//! Errors of the pairing PKI. Every variant names the file (or name) it is
//! about and its message says what to do, because these messages end up on
//! an operator's terminal as the one line explaining an exit code 2.

use std::path::PathBuf;

/// What went wrong while creating, loading, writing or inspecting
/// certificates and keys.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A file or directory could not be read, written or created.
    #[error("{path}: cannot {action}: {err}")]
    Io {
        path: PathBuf,
        action: &'static str,
        err: std::io::Error,
    },

    /// The CA directory holds no CA.
    #[error(
        "{dir} holds no pairing CA ({missing} is missing); create one with \
         `pairgate ca init --dir {dir}` or point --ca-dir at the CA directory"
    )]
    NoCa { dir: PathBuf, missing: PathBuf },

    /// A private key file that group or others may read.
    #[error(
        "{path} is readable by group or others (mode 0{mode:03o}); a private key must be \
         private: run `chmod 600 {path}`"
    )]
    KeyPermissions { path: PathBuf, mode: u32 },

    /// A private key file that belongs to another user.
    #[error(
        "{path} belongs to uid {owner} but pairgate runs as uid {uid}; a private key must \
         belong to the user that uses it: run `chown {uid} {path}` (or run pairgate as its owner)"
    )]
    KeyOwner { path: PathBuf, owner: u32, uid: u32 },

    /// The folder of a private key lets someone else replace the key.
    #[error(
        "{dir} (the folder of the private key {key}) {problem}: whoever may write it can \
         replace the key; run `chmod go-w {dir}` and make it belong to the user running \
         pairgate (or root)"
    )]
    KeyDirectory {
        dir: PathBuf,
        key: PathBuf,
        problem: String,
    },

    /// An encrypted key and no passphrase to open it.
    #[error(
        "{path} is encrypted: give its passphrase with --passphrase-file FILE or the \
         PAIRGATE_CA_PASSPHRASE environment variable, or run the command on a terminal to be asked"
    )]
    KeyEncrypted { path: PathBuf },

    /// The passphrase does not open an encrypted key.
    #[error("{path}: the passphrase does not open this key; check it and try again (the key is unchanged)")]
    WrongPassphrase { path: PathBuf },

    /// `ca init --encrypt` with a passphrase too short to mean anything.
    #[error("the passphrase is shorter than {min} characters; choose a longer one")]
    WeakPassphrase { min: usize },

    /// `ca init` (or another create-new write) found an existing file.
    #[error(
        "refusing to overwrite {path}: a pairing CA already exists there; use \
         `pairgate ca rotate --dir {dir}` to replace it, or choose another --dir"
    )]
    CaExists { path: PathBuf, dir: PathBuf },

    /// A PEM file without any certificate in it.
    #[error("no PEM certificate found in {path}; expected -----BEGIN CERTIFICATE----- blocks")]
    NoCertificate { path: PathBuf },

    /// A PEM file that is not well-formed PEM.
    #[error("{path}: not a valid PEM file: {reason}")]
    BadPem { path: PathBuf, reason: String },

    /// One certificate of a file did not parse.
    #[error("{path}: certificate {index} is not valid DER: {reason}")]
    BadCertificate {
        path: PathBuf,
        /// 1-based position in the file.
        index: usize,
        reason: String,
    },

    /// Bytes that are not a DER X.509 certificate (no file context).
    #[error("not a valid DER X.509 certificate: {reason}")]
    BadDer { reason: String },

    /// A private key that cannot be used.
    #[error(
        "{path}: not a usable private key: {reason}; expected a PKCS#8 PEM key written by pairgate"
    )]
    BadKey { path: PathBuf, reason: String },

    /// `ca.crt` is not a CA certificate rcgen can sign with.
    #[error("{path}: not a usable CA certificate: {reason}; create one with `pairgate ca init`")]
    NotCa { path: PathBuf, reason: String },

    /// A CA name rcgen cannot put in a certificate (empty).
    #[error("invalid CA name {name:?}: {reason}; pass a non-empty --name")]
    InvalidCaName { name: String, reason: String },

    /// `ca.key` does not belong to `ca.crt`.
    #[error(
        "{key} does not match {cert}: the key's public half differs from the certificate's; \
         restore the ca.key that belongs to this ca.crt"
    )]
    KeyMismatch { key: PathBuf, cert: PathBuf },

    /// A pool or DNS name that is not a valid host name.
    #[error("invalid DNS name {name:?}: {reason}; use a fully qualified host name such as pool01.site1.example")]
    InvalidName { name: String, reason: String },

    /// A validity window that ends before it begins.
    #[error("invalid validity: not_after {not_after} is not after not_before {not_before}")]
    InvalidValidity {
        not_before: time::OffsetDateTime,
        not_after: time::OffsetDateTime,
    },

    /// rcgen refused to build or sign a certificate.
    #[error("cannot {action}: {err}")]
    Rcgen {
        action: &'static str,
        err: rcgen::Error,
    },

    /// A CRL file (or one CRL in it) that does not parse.
    #[error(
        "{path}: not a valid CRL: {reason}; restore it from a backup (deleting it would \
         un-revoke every certificate it lists)"
    )]
    BadCrl { path: PathBuf, reason: String },

    /// `cert rotate` found no current certificate to take the SANs from.
    #[error(
        "{path} does not exist: nothing to rotate; issue a first certificate with \
         `pairgate cert issue --ca-dir DIR --pool FQDN --out PREFIX`"
    )]
    NothingToRotate { path: PathBuf },

    /// `cert revoke` got a certificate that neither the current nor the previous CA issued.
    #[error(
        "{cert} was not issued by the pairing CA in {dir} (nor by a previous CA kept in \
         {dir}/previous): its issuer is {issuer:?}; point --ca-dir at the CA directory \
         that issued it"
    )]
    NotIssuedByCa {
        cert: PathBuf,
        dir: PathBuf,
        issuer: String,
    },

    /// `cert revoke` got a CA certificate.
    #[error(
        "{path} is a CA certificate, not a gateway certificate; only gateway certificates \
         are revoked (pass the site's PREFIX.crt); to replace the CA run `pairgate ca rotate`"
    )]
    RevokeCa { path: PathBuf },

    /// `ca rotate` while the previous rotation's overlap is still running.
    #[error(
        "a CA rotation is still in progress in {dir}: {previous} holds the previous CA, which \
         gateway certificates still in use may chain to; dropping it now would cut those \
         gateways off. Finish the rotation first (both sites on certificates from the new CA \
         via `pairgate cert rotate`, tls.ca = ca.crt), then run again with \
         --force-drop-previous"
    )]
    PreviousCaExists { dir: PathBuf, previous: PathBuf },

    /// `ca rotate --name` equal to the name of the CA being replaced.
    #[error(
        "the new CA must not have the same name as the CA it replaces ({name:?}): gateways \
         pick a CRL by issuer name, so two CAs with one name break revocation during the \
         overlap; pass another --name (or none, for {name:?} with a generation number)"
    )]
    SameCaName { name: String },

    /// The operating system's random number generator failed.
    #[error("the system random number generator failed; check /dev/urandom and retry")]
    Random,
}

impl PkiError {
    /// Wraps an I/O error with the path and what we were trying to do.
    pub(crate) fn io(
        path: impl Into<PathBuf>,
        action: &'static str,
    ) -> impl FnOnce(std::io::Error) -> PkiError {
        let path = path.into();
        move |err| PkiError::Io { path, action, err }
    }

    /// Wraps an rcgen error with what we were trying to do.
    pub(crate) fn rcgen(action: &'static str) -> impl FnOnce(rcgen::Error) -> PkiError {
        move |err| PkiError::Rcgen { action, err }
    }
}
