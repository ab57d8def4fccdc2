//! The spool master key and its key file.
//!
//! One 256-bit master key per site encrypts every spool file (each file then
//! derives its own AES-256-GCM key from a random salt, see [`super::codec`]).
//! The key lives in a text file of 64 hex characters and a newline, written
//! 0600 with create-new so an existing key is never overwritten, and refused
//! at load time when group or others can access it: a leaked master key
//! decrypts every spooled file, past and future.
//!
//! [`MasterKey`] zeroizes its bytes on drop and never prints them; its
//! `Debug` shows only the [`KeyId`], the first 8 bytes of SHA-256(key), which
//! is also what every spool header carries to tell which key sealed it.

use std::fmt;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::fsutil;

/// Length of a master key in bytes.
pub const KEY_LEN: usize = 32;
/// Length of a [`KeyId`] in bytes.
pub const KEY_ID_LEN: usize = 8;

/// Longest key file we read: 64 hex characters, a newline and some slack so a
/// slightly wrong file still gets a precise message instead of a huge read.
const MAX_KEY_FILE_LEN: u64 = 4096;

/// Errors loading, parsing, generating or writing a key file.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file could not be opened, read or written.
    #[error(
        "key file {path}: {source}; check that the path exists and is accessible",
        path = path.display()
    )]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file exists and is not a key file.
    #[error(
        "key file {path} is not a pairgate spool key: {reason}; it must hold exactly 64 hex \
         characters and an optional newline (create one with `pairgate spool keygen --out FILE`)",
        path = path.display()
    )]
    Malformed { path: PathBuf, reason: String },
    /// Group or others may access the key file.
    #[error(
        "key file {path} is accessible by group or others (mode {mode:03o}); \
         run `chmod 600 {path}` and retry",
        path = path.display()
    )]
    Permissions { path: PathBuf, mode: u32 },
    /// `write_key_file` refuses to replace an existing file.
    #[error(
        "key file {path} already exists; refusing to overwrite a key (files sealed with it \
         would become unreadable) — choose another path or remove it deliberately",
        path = path.display()
    )]
    Exists { path: PathBuf },
    /// The operating system's random number generator failed.
    #[error("the system random number generator failed; cannot generate a key")]
    Random,
}

/// Which master key sealed a spool file: the first 8 bytes of SHA-256(key).
/// Displays as 16 lower-case hex characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; KEY_ID_LEN]);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// A 256-bit spool master key. Zeroized on drop; `Debug` is redacted.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct MasterKey([u8; KEY_LEN]);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey(<redacted> id={})", self.key_id())
    }
}

impl MasterKey {
    /// Wraps raw key bytes (tests, known-answer vectors, rekey tooling).
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// A fresh random key from the operating system's CSPRNG.
    ///
    /// # Errors
    /// [`KeyError::Random`] if the system generator fails.
    pub fn generate() -> Result<Self, KeyError> {
        let mut bytes = [0u8; KEY_LEN];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| KeyError::Random)?;
        let key = Self(bytes);
        bytes.zeroize();
        Ok(key)
    }

    /// The key's identifier: first 8 bytes of SHA-256(key).
    pub fn key_id(&self) -> KeyId {
        let hash = digest::digest(&digest::SHA256, &self.0);
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&hash.as_ref()[..KEY_ID_LEN]);
        KeyId(id)
    }

    /// The raw key bytes, for key derivation inside the spool module only.
    pub(crate) fn expose(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// Parses key file contents: exactly 64 hex characters (either case),
    /// optionally followed by one `\n`. `path` only names the file in errors.
    ///
    /// # Errors
    /// [`KeyError::Malformed`] saying what is wrong with the contents.
    pub fn parse_key_file(contents: &[u8], path: &Path) -> Result<Self, KeyError> {
        let malformed = |reason: String| KeyError::Malformed {
            path: path.to_path_buf(),
            reason,
        };
        let body = contents.strip_suffix(b"\n").unwrap_or(contents);
        if body.len() != 2 * KEY_LEN {
            return Err(malformed(format!(
                "it holds {} bytes before the final newline, expected 64",
                body.len()
            )));
        }
        if let Some(pos) = body.iter().position(|b| !b.is_ascii_hexdigit()) {
            return Err(malformed(format!(
                "byte {pos} is not a hex digit (whitespace, CR or a second line are not allowed)"
            )));
        }
        let mut bytes = [0u8; KEY_LEN];
        hex::decode_to_slice(body, &mut bytes)
            .map_err(|e| malformed(format!("invalid hex: {e}")))?;
        let key = Self(bytes);
        bytes.zeroize();
        Ok(key)
    }

    /// Loads a key file, refusing one that group or others can access.
    ///
    /// # Errors
    /// [`KeyError::Io`] if it cannot be read, [`KeyError::Permissions`]
    /// (message contains `chmod 600 <path>`) if its mode allows group/other
    /// access, [`KeyError::Malformed`] if the contents are not a key.
    pub fn load_key_file(path: &Path) -> Result<Self, KeyError> {
        let io = |source| KeyError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        check_private(&file, path)?;
        let mut contents = Zeroizing::new(Vec::with_capacity(2 * KEY_LEN + 1));
        file.take(MAX_KEY_FILE_LEN)
            .read_to_end(&mut contents)
            .map_err(io)?;
        Self::parse_key_file(&contents, path)
    }

    /// Writes the key as 64 lower-case hex characters and a newline to a new
    /// file with mode 0600, fsyncs it and its folder. Never overwrites.
    ///
    /// # Errors
    /// [`KeyError::Exists`] if `path` exists, [`KeyError::Io`] on any write
    /// failure (a partly written file is removed).
    pub fn write_key_file(&self, path: &Path) -> Result<(), KeyError> {
        let io = |source| KeyError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = match fsutil::create_new(path, fsutil::SECRET_MODE) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(KeyError::Exists {
                    path: path.to_path_buf(),
                })
            }
            Err(e) => return Err(io(e)),
        };
        let mut text = Zeroizing::new(hex::encode(self.0));
        text.push('\n');
        let written = file
            .write_all(text.as_bytes())
            .and_then(|()| file.sync_all());
        if let Err(e) = written {
            drop(file);
            let _ = std::fs::remove_file(path);
            return Err(io(e));
        }
        fsutil::sync_dir(fsutil::parent_of(path)).map_err(io)
    }
}

/// Refuses a key file that is not a regular file or whose mode grants any
/// access to group or others ([`fsutil::key_mode_problem`], on the open
/// file). Owner and folder are checked too when the gateway loads its
/// config (`fsutil::check_private_key`).
fn check_private(file: &File, path: &Path) -> Result<(), KeyError> {
    let meta = file.metadata().map_err(|source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if !meta.is_file() {
        return Err(KeyError::Malformed {
            path: path.to_path_buf(),
            reason: "it is not a regular file".into(),
        });
    }
    match fsutil::key_mode_problem(&meta) {
        Some(mode) => Err(KeyError::Permissions {
            path: path.to_path_buf(),
            mode,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn key_id_is_sha256_prefix_and_debug_is_redacted() {
        let key = MasterKey::parse_key_file(HEX.as_bytes(), Path::new("k")).unwrap();
        // SHA-256(00..1f) = 630dcd2966c4336691125448bbb25b4ff412a49c732db2c8abc1b8581bd710dd
        assert_eq!(key.key_id().to_string(), "630dcd2966c43366");
        let dbg = format!("{key:?}");
        assert_eq!(dbg, "MasterKey(<redacted> id=630dcd2966c43366)");
        assert!(!dbg.contains("0001020304"));
    }

    #[test]
    fn parse_accepts_one_newline_and_rejects_everything_else() {
        let p = Path::new("/etc/pg/spool.key");
        assert!(MasterKey::parse_key_file(format!("{HEX}\n").as_bytes(), p).is_ok());
        assert!(MasterKey::parse_key_file(HEX.to_uppercase().as_bytes(), p).is_ok());
        for bad in [
            format!("{HEX}\n\n"),
            format!("{HEX}\r\n"),
            format!(" {HEX}"),
            HEX[..62].to_string(),
            format!("{}zz", &HEX[..62]),
            String::new(),
        ] {
            let err = MasterKey::parse_key_file(bad.as_bytes(), p).unwrap_err();
            assert!(matches!(err, KeyError::Malformed { .. }), "{bad:?}");
            assert!(err.to_string().contains("/etc/pg/spool.key"), "{err}");
        }
    }

    #[test]
    fn write_then_load_round_trips_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spool.key");
        let key = MasterKey::generate().unwrap();
        key.write_key_file(&path).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.len(), 65);
        assert!(text.ends_with('\n'));
        let loaded = MasterKey::load_key_file(&path).unwrap();
        assert_eq!(loaded.expose(), key.expose());
    }

    #[test]
    fn write_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spool.key");
        std::fs::write(&path, "keep me").unwrap();
        let err = MasterKey::generate()
            .unwrap()
            .write_key_file(&path)
            .unwrap_err();
        assert!(matches!(err, KeyError::Exists { .. }), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "keep me");
    }

    #[test]
    fn load_refuses_group_or_world_readable_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spool.key");
        std::fs::write(&path, format!("{HEX}\n")).unwrap();
        for mode in [0o644, 0o640, 0o604, 0o620] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = MasterKey::load_key_file(&path).unwrap_err();
            assert!(matches!(err, KeyError::Permissions { .. }), "{err}");
            let expected = format!("chmod 600 {}", path.display());
            assert!(err.to_string().contains(&expected), "{err}");
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert!(MasterKey::load_key_file(&path).is_ok());
    }

    #[test]
    fn load_reports_missing_file_and_garbage_with_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing.key");
        let err = MasterKey::load_key_file(&path).unwrap_err();
        assert!(matches!(err, KeyError::Io { .. }));
        assert!(err.to_string().contains("missing.key"));
        let big = dir.path().join("big.key");
        std::fs::write(&big, vec![b'a'; 10_000]).unwrap();
        std::fs::set_permissions(&big, std::fs::Permissions::from_mode(0o600)).unwrap();
        let err = MasterKey::load_key_file(&big).unwrap_err();
        assert!(matches!(err, KeyError::Malformed { .. }), "{err}");
        let err = MasterKey::load_key_file(dir.path()).unwrap_err();
        assert!(matches!(err, KeyError::Malformed { .. }), "{err}");
    }
}
