//! The CA key at rest, optionally under a passphrase.
//!
//! # Why
//!
//! `ca.key` signs every certificate and CRL of the pairing. Kept offline it
//! is safe; but backups, a shared admin workstation or a copied folder put a
//! plain PEM key one `cp` away from anyone. `pairgate ca init --encrypt`
//! stores it as a PKCS#8 `EncryptedPrivateKeyInfo` (RFC 5958, PEM label
//! `ENCRYPTED PRIVATE KEY`): PBES2 with scrypt (log₂N = 14, r = 8, p = 1)
//! and AES-256-CBC, from the RustCrypto `pkcs8` crate — the standard format
//! OpenSSL reads too (`openssl pkcs8 -in ca.key`). No cryptography is
//! written here; the salt and IV come from ring's system RNG.
//!
//! # Where the passphrase comes from
//!
//! Every command that uses the CA key takes a [`Passphrase`] source; the
//! CLI's tries `--passphrase-file`, then `PAIRGATE_CA_PASSPHRASE`, then a
//! prompt on the terminal. A loaded [`Ca`](super::Ca) remembers the
//! passphrase (zeroized on drop) so that `ca rotate` stores the new CA key
//! and the moved previous one under the same passphrase.

use std::path::{Path, PathBuf};

use pkcs8::pkcs5::{pbes2, scrypt};
use pkcs8::{EncryptedPrivateKeyInfo, LineEnding, PrivateKeyInfo};
use ring::rand::SecureRandom;
use zeroize::Zeroizing;

use super::PkiError;

/// The PEM label of an encrypted PKCS#8 key.
pub(super) const ENCRYPTED_LABEL: &str = "ENCRYPTED PRIVATE KEY";

/// scrypt cost: N = 2^14, r = 8, p = 1 (16 MiB, a fraction of a second) —
/// OpenSSL's own default for `openssl pkcs8 -scrypt`, and within its 32 MiB
/// limit, so the key opens without pairgate too (disaster recovery). 2^15
/// would exceed that limit.
const SCRYPT_LOG_N: u8 = 14;

/// The shortest passphrase `ca init --encrypt` accepts.
pub const MIN_PASSPHRASE_LEN: usize = 8;

/// Supplies the passphrase of an encrypted key file when one is read.
pub trait Passphrase: std::fmt::Debug {
    /// The passphrase for the encrypted key at `key`.
    ///
    /// # Errors
    /// A [`PkiError`] saying why there is none (no source, unreadable file).
    fn passphrase(&self, key: &Path) -> Result<Zeroizing<String>, PkiError>;
}

/// No passphrase available: an encrypted key is refused, naming the ways
/// to give one.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoPassphrase;

impl Passphrase for NoPassphrase {
    fn passphrase(&self, key: &Path) -> Result<Zeroizing<String>, PkiError> {
        Err(PkiError::KeyEncrypted {
            path: key.to_path_buf(),
        })
    }
}

/// A passphrase already at hand (tests, tools that asked once).
#[derive(Clone)]
pub struct Given(pub Zeroizing<String>);

impl std::fmt::Debug for Given {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Given(<redacted>)")
    }
}

impl Passphrase for Given {
    fn passphrase(&self, _key: &Path) -> Result<Zeroizing<String>, PkiError> {
        Ok(self.0.clone())
    }
}

/// Whether a key file's text is an encrypted PKCS#8 key.
pub fn is_encrypted(pem_text: &str) -> bool {
    pem_text.contains(&format!("-----BEGIN {ENCRYPTED_LABEL}-----"))
}

/// Encrypts a plain PKCS#8 key (PEM `PRIVATE KEY`) under `passphrase`.
///
/// # Errors
/// [`PkiError::Random`] when the RNG fails, [`PkiError::BadKey`] (naming
/// `path`) when the key or the encryption is refused by `pkcs8`.
pub(super) fn seal(
    plain_pem: &str,
    passphrase: &str,
    path: &Path,
) -> Result<Zeroizing<String>, PkiError> {
    let bad = |reason: String| PkiError::BadKey {
        path: path.to_path_buf(),
        reason,
    };
    let plain = pem::parse(plain_pem).map_err(|e| bad(e.to_string()))?;
    let der = Zeroizing::new(plain.into_contents());
    let info = PrivateKeyInfo::try_from(der.as_slice()).map_err(|e| bad(e.to_string()))?;
    let rng = ring::rand::SystemRandom::new();
    let mut salt = [0u8; 16];
    let mut iv = [0u8; 16];
    rng.fill(&mut salt).map_err(|_| PkiError::Random)?;
    rng.fill(&mut iv).map_err(|_| PkiError::Random)?;
    let cost = scrypt::Params::new(SCRYPT_LOG_N, 8, 1, 32).map_err(|e| bad(e.to_string()))?;
    let params =
        pbes2::Parameters::scrypt_aes256cbc(cost, &salt, &iv).map_err(|e| bad(e.to_string()))?;
    let sealed = info
        .encrypt_with_params(params, passphrase.as_bytes())
        .map_err(|e| bad(format!("cannot encrypt: {e}")))?;
    sealed
        .to_pem(ENCRYPTED_LABEL, LineEnding::LF)
        .map_err(|e| bad(e.to_string()))
}

/// Decrypts an encrypted PKCS#8 key (PEM `ENCRYPTED PRIVATE KEY`) into the
/// plain PKCS#8 PEM rcgen reads.
///
/// # Errors
/// [`PkiError::WrongPassphrase`] when the passphrase does not open it (the
/// padding or the key inside does not check out), [`PkiError::BadKey`] when
/// the file is not such a key.
pub(super) fn open(
    sealed_pem: &str,
    passphrase: &str,
    path: &Path,
) -> Result<Zeroizing<String>, PkiError> {
    let bad = |reason: String| PkiError::BadKey {
        path: path.to_path_buf(),
        reason,
    };
    let block = pem::parse(sealed_pem).map_err(|e| bad(e.to_string()))?;
    if block.tag() != ENCRYPTED_LABEL {
        return Err(bad(format!(
            "a {:?} PEM block, not {ENCRYPTED_LABEL:?}",
            block.tag()
        )));
    }
    let info =
        EncryptedPrivateKeyInfo::try_from(block.contents()).map_err(|e| bad(e.to_string()))?;
    let plain = info
        .decrypt(passphrase.as_bytes())
        .map_err(|_| wrong(path))?;
    // A wrong passphrase can still unpad by chance: the key must parse.
    PrivateKeyInfo::try_from(plain.as_bytes()).map_err(|_| wrong(path))?;
    let text = pem::encode_config(
        &pem::Pem::new("PRIVATE KEY", plain.as_bytes().to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    );
    Ok(Zeroizing::new(text))
}

fn wrong(path: &Path) -> PkiError {
    PkiError::WrongPassphrase {
        path: PathBuf::from(path),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;

    fn plain_key() -> String {
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .unwrap()
            .serialize_pem()
    }

    #[test]
    fn sealed_key_opens_with_the_passphrase_only() {
        let plain = plain_key();
        let path = Path::new("ca.key");
        let sealed = seal(&plain, "correct horse", path).unwrap();
        assert!(is_encrypted(&sealed));
        assert!(!is_encrypted(&plain));
        assert!(sealed.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"));
        // Not readable as a plain key.
        assert!(rcgen::KeyPair::from_pem(&sealed).is_err());
        let opened = open(&sealed, "correct horse", path).unwrap();
        let a = rcgen::KeyPair::from_pem(&opened).unwrap();
        let b = rcgen::KeyPair::from_pem(&plain).unwrap();
        assert_eq!(a.public_key_der(), b.public_key_der());
        let err = open(&sealed, "wrong horse", path).unwrap_err();
        assert!(matches!(err, PkiError::WrongPassphrase { .. }), "{err}");
        // Fresh salt and IV each time.
        assert_ne!(*seal(&plain, "correct horse", path).unwrap(), *sealed);
    }

    #[test]
    fn garbage_is_a_bad_key_not_a_panic() {
        let path = Path::new("ca.key");
        for text in [
            "",
            "junk",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        ] {
            assert!(open(text, "x", path).is_err());
            assert!(seal(text, "x", path).is_err());
        }
        assert!(matches!(
            NoPassphrase.passphrase(path),
            Err(PkiError::KeyEncrypted { .. })
        ));
        assert!(!format!("{:?}", Given(Zeroizing::new("secret".into()))).contains("secret"));
    }
}
