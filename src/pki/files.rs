//! The PKI's files: keys and certificates written and checked with the
//! rules of [`crate::fsutil`], with errors in the PKI's words.
//!
//! Keys are written 0600 and never pass through a world-readable moment;
//! replacement is tmp file → fsync → rename → fsync of the directory, so a
//! crash leaves either the old or the new file, never a torn one, and a
//! running gateway that watches the file sees one atomic switch. The TLS
//! loader checks keys with [`check_key_permissions`]; the spool's key file
//! and store, and the audit log, use the same `fsutil` underneath.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

use super::PkiError;
use crate::fsutil::{self, FsError, KeyFileError};

pub(super) use crate::fsutil::{PUBLIC_MODE, SECRET_MODE};

impl From<FsError> for PkiError {
    fn from(e: FsError) -> PkiError {
        PkiError::Io {
            path: e.path,
            action: e.action,
            err: e.source,
        }
    }
}

impl From<KeyFileError> for PkiError {
    fn from(e: KeyFileError) -> PkiError {
        match e {
            KeyFileError::Mode { path, mode } => PkiError::KeyPermissions { path, mode },
            KeyFileError::Owner { path, owner, uid } => PkiError::KeyOwner { path, owner, uid },
            KeyFileError::Folder { dir, key, problem } => {
                PkiError::KeyDirectory { dir, key, problem }
            }
            KeyFileError::Io(e) => e.into(),
        }
    }
}

/// Refuses a key file that is not private to the user running pairgate:
/// group or others may read or write it, another user owns it, or its folder
/// lets someone else replace it ([`fsutil::check_private_key`]).
///
/// # Errors
/// [`PkiError::KeyPermissions`] (with the `chmod 600` to run) when
/// `mode & 0o077 != 0`; [`PkiError::KeyOwner`] (with the `chown`) when the
/// file belongs to another user; [`PkiError::KeyDirectory`] (with the
/// `chmod go-w` or `chown`) for a group/world-writable folder or one owned by
/// another user; [`PkiError::Io`] when the file cannot be examined.
/// Always `Ok` on non-unix platforms, where modes and owners do not exist in
/// this form (see `docs/security.md`).
pub fn check_key_permissions(path: &Path) -> Result<(), PkiError> {
    Ok(fsutil::check_private_key(path)?)
}

/// Atomically writes (or replaces) a private file with mode 0600.
///
/// # Errors
/// [`PkiError::Io`] naming the file when the directory, the temporary file,
/// the fsync or the rename fails; the temporary file is removed on failure.
pub fn write_secret_file(path: &Path, bytes: &[u8]) -> Result<(), PkiError> {
    Ok(fsutil::write_atomic(path, bytes, SECRET_MODE)?)
}

/// Atomically writes (or replaces) a public file (certificates, CRLs) with mode 0644.
///
/// # Errors
/// As [`write_secret_file`].
pub fn write_public_file(path: &Path, bytes: &[u8]) -> Result<(), PkiError> {
    Ok(fsutil::write_atomic(path, bytes, PUBLIC_MODE)?)
}

/// Reads a text file (PEM), naming the file on failure.
///
/// # Errors
/// [`PkiError::Io`] when the file cannot be read or is not UTF-8.
pub fn read_text(path: &Path) -> Result<String, PkiError> {
    fs::read_to_string(path).map_err(PkiError::io(path, "read"))
}

/// `PREFIX` + `suffix` without touching dots already in the name
/// (`certs/pool01.site1.example` + `.crt`).
pub fn suffixed(prefix: &Path, suffix: &str) -> PathBuf {
    let mut s: OsString = prefix.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Creates `path` (which must not exist) with `mode`, writes `bytes` and fsyncs.
///
/// # Errors
/// [`PkiError::Io`]; `ErrorKind::AlreadyExists` when the file exists.
pub(crate) fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), PkiError> {
    Ok(fsutil::write_new(path, bytes, mode)?)
}

/// Creates `dir` and its parents if missing; new directories get 0700 (the
/// parents of keys should not be listable by others). Existing directories
/// keep their mode.
///
/// # Errors
/// [`PkiError::Io`] naming the directory.
pub fn create_dir_private(dir: &Path) -> Result<(), PkiError> {
    Ok(fsutil::create_dir_private(dir)?)
}

/// Fsyncs a directory so that renames and creations in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), PkiError> {
    fsutil::sync_dir(dir).map_err(PkiError::io(dir, "fsync the folder"))
}

#[cfg(all(test, unix))]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0)
    }

    #[test]
    fn secret_file_is_0600_and_replaced_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/dir/site.key");
        write_secret_file(&path, b"one").unwrap();
        assert_eq!(mode(&path), 0o600);
        write_secret_file(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(mode(&path), 0o600);
        // No temporary file left behind.
        let names: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(names.len(), 1);
        check_key_permissions(&path).unwrap();
    }

    #[test]
    fn public_file_is_0644() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.crt");
        write_public_file(&path, b"x").unwrap();
        assert_eq!(mode(&path), 0o644);
    }

    #[test]
    fn readable_key_is_refused_with_chmod_hint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.key");
        fs::write(&path, b"k").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = check_key_permissions(&path).unwrap_err();
        assert!(matches!(err, PkiError::KeyPermissions { mode: 0o644, .. }));
        assert!(err
            .to_string()
            .contains(&format!("chmod 600 {}", path.display())));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        assert!(check_key_permissions(&path).is_err());
    }

    #[test]
    fn key_in_a_folder_others_may_write_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        fs::create_dir(&keys).unwrap();
        let path = keys.join("k.key");
        write_secret_file(&path, b"k").unwrap();
        fs::set_permissions(&keys, fs::Permissions::from_mode(0o700)).unwrap();
        check_key_permissions(&path).unwrap();
        for mode in [0o770, 0o707, 0o1777] {
            fs::set_permissions(&keys, fs::Permissions::from_mode(mode)).unwrap();
            let err = check_key_permissions(&path).unwrap_err();
            assert!(
                matches!(err, PkiError::KeyDirectory { .. }),
                "{mode:o}: {err}"
            );
            assert!(
                err.to_string()
                    .contains(&format!("chmod go-w {}", keys.display())),
                "{err}"
            );
        }
        // Readable by group, but not writable: fine (only replacement matters).
        fs::set_permissions(&keys, fs::Permissions::from_mode(0o750)).unwrap();
        check_key_permissions(&path).unwrap();
    }

    #[test]
    fn key_of_another_user_is_refused_with_chown_hint() {
        let me = rustix::process::geteuid().as_raw();
        if me != 0 {
            eprintln!("skipped: giving a file to another user needs root (running as uid {me})");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.key");
        write_secret_file(&path, b"k").unwrap();
        std::os::unix::fs::chown(&path, Some(4242), None).unwrap();
        let err = check_key_permissions(&path).unwrap_err();
        assert!(
            matches!(
                err,
                PkiError::KeyOwner {
                    owner: 4242,
                    uid: 0,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err
            .to_string()
            .contains(&format!("chown 0 {}", path.display())));
        // A folder of another ordinary user is refused too; root's is fine.
        std::os::unix::fs::chown(&path, Some(0), None).unwrap();
        std::os::unix::fs::chown(dir.path(), Some(4242), None).unwrap();
        let err = check_key_permissions(&path).unwrap_err();
        assert!(matches!(err, PkiError::KeyDirectory { .. }), "{err}");
        std::os::unix::fs::chown(dir.path(), Some(0), None).unwrap();
        check_key_permissions(&path).unwrap();
    }

    #[test]
    fn write_new_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.key");
        write_new(&path, b"first", SECRET_MODE).unwrap();
        let err = write_new(&path, b"second", SECRET_MODE).unwrap_err();
        assert!(matches!(err, PkiError::Io { ref err, .. }
            if err.kind() == std::io::ErrorKind::AlreadyExists));
        assert_eq!(fs::read(&path).unwrap(), b"first");
    }

    #[test]
    fn suffix_keeps_dots_in_prefix() {
        let p = suffixed(Path::new("certs/pool01.site1.example"), ".crt");
        assert_eq!(p, Path::new("certs/pool01.site1.example.crt"));
    }
}
