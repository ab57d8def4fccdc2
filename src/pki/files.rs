//! Writing and reading key and certificate files safely.
//!
//! Keys are written 0600 and never pass through a world-readable moment: the
//! temporary file is created with mode 0600 (umask can only remove bits).
//! Replacement is tmp file → fsync → rename → fsync of the directory, so a
//! crash leaves either the old or the new file, never a torn one, and a
//! running gateway that watches the file sees one atomic switch. The TLS
//! loader and the spool call [`check_key_permissions`] and
//! [`write_secret_file`] too, so these rules hold for every key pairgate owns.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::PkiError;

/// Mode of private key files.
pub const SECRET_MODE: u32 = 0o600;
/// Mode of certificate files.
pub const PUBLIC_MODE: u32 = 0o644;

/// Refuses a key file that is not private to the user running pairgate:
/// group or others may read or write it, another user owns it, or its folder
/// lets someone else replace it.
///
/// The folder counts because whoever may write a directory may rename a
/// key of their own over ours: a 0600 key in a group-writable folder is only
/// as private as that group. A folder owned by root is fine (the usual
/// `/etc/pairgate`), one owned by another ordinary user is not.
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
    let meta = fs::metadata(path).map_err(PkiError::io(path, "read the key file"))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let mode = meta.mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(PkiError::KeyPermissions {
                path: path.to_path_buf(),
                mode,
            });
        }
        let me = rustix::process::geteuid().as_raw();
        if meta.uid() != me {
            return Err(PkiError::KeyOwner {
                path: path.to_path_buf(),
                owner: meta.uid(),
                uid: me,
            });
        }
        check_key_directory(path, me)?;
    }
    #[cfg(not(unix))]
    let _ = meta;
    Ok(())
}

/// The folder holding a key: not group/world-writable, owned by us or root.
#[cfg(unix)]
fn check_key_directory(key: &Path, me: u32) -> Result<(), PkiError> {
    use std::os::unix::fs::MetadataExt;
    let parent = match key.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let meta = fs::metadata(&parent).map_err(PkiError::io(&parent, "examine the key's folder"))?;
    let mode = meta.mode() & 0o7777;
    let problem = if mode & 0o022 != 0 {
        Some(format!("is writable by group or others (mode 0{mode:03o})"))
    } else if meta.uid() != me && meta.uid() != 0 {
        Some(format!(
            "belongs to another user (uid {}; pairgate runs as uid {me})",
            meta.uid()
        ))
    } else {
        None
    };
    match problem {
        Some(problem) => Err(PkiError::KeyDirectory {
            dir: parent,
            key: key.to_path_buf(),
            problem,
        }),
        None => Ok(()),
    }
}

/// Atomically writes (or replaces) a private file with mode 0600.
///
/// # Errors
/// [`PkiError::Io`] naming the file when the directory, the temporary file,
/// the fsync or the rename fails; the temporary file is removed on failure.
pub fn write_secret_file(path: &Path, bytes: &[u8]) -> Result<(), PkiError> {
    write_atomic(path, bytes, SECRET_MODE)
}

/// Atomically writes (or replaces) a public file (certificates, CRLs) with mode 0644.
///
/// # Errors
/// As [`write_secret_file`].
pub fn write_public_file(path: &Path, bytes: &[u8]) -> Result<(), PkiError> {
    write_atomic(path, bytes, PUBLIC_MODE)
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
    let mut file = open_new(path, mode).map_err(PkiError::io(path, "create"))?;
    let result = file
        .write_all(bytes)
        .and_then(|()| set_mode(&file, mode))
        .and_then(|()| file.sync_all())
        .map_err(PkiError::io(path, "write"));
    if result.is_err() {
        let _ = fs::remove_file(path);
    }
    result
}

/// Creates `dir` and its parents if missing; new directories get 0700 (the
/// parents of keys should not be listable by others). Existing directories
/// keep their mode.
///
/// # Errors
/// [`PkiError::Io`] naming the directory.
pub fn create_dir_private(dir: &Path) -> Result<(), PkiError> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .map_err(PkiError::io(dir, "create the directory"))
}

/// Fsyncs a directory so that renames and creations in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), PkiError> {
    #[cfg(unix)]
    {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(PkiError::io(dir, "fsync the directory"))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), PkiError> {
    let dir = path.parent().unwrap_or(Path::new(""));
    create_dir_private(dir)?;
    let name = path
        .file_name()
        .ok_or_else(|| PkiError::Io {
            path: path.to_path_buf(),
            action: "write",
            err: std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file name"),
        })?
        .to_owned();
    let mut tmp_name = OsString::from(".");
    tmp_name.push(&name);
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    // A stale tmp file from a crashed run of this same pid is ours to remove.
    let _ = fs::remove_file(&tmp);
    write_new(&tmp, bytes, mode)?;
    if let Err(err) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(PkiError::Io {
            path: path.to_path_buf(),
            action: "replace",
            err,
        });
    }
    sync_dir(dir)
}

fn open_new(path: &Path, mode: u32) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    options.open(path)
}

/// Sets the exact mode (the umask may have removed bits we want, e.g. 0644).
fn set_mode(file: &File, mode: u32) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(mode))
    }
    #[cfg(not(unix))]
    {
        let _ = (file, mode);
        Ok(())
    }
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
