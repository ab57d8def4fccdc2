//! Files that must survive a crash, and key files that must stay private:
//! the one place pairgate writes durably and judges a key file.
//!
//! Used alike by `pki` (certificates, CA and gateway keys), the `spool` (its
//! key file, its folders and every move between them) and the `audit` log
//! (creating its file), so one set of rules holds for every file pairgate
//! owns:
//! - **Durable**: a rename or unlink counts only once its folder is fsynced
//!   ([`sync_dir`], [`durable_rename`], [`durable_remove`]); a replaced file
//!   goes tmp → fsync → rename → fsync of the folder ([`write_atomic`]), so
//!   a crash leaves the old or the new file, never a torn one.
//! - **Never overwrite by accident**: [`write_new`] / [`create_new`] fail
//!   when the file exists (a CA key, a spool key).
//! - **Private from the first byte**: the mode is given at creation (umask
//!   can only remove bits), never set after a world-readable moment.
//! - **A private key is private** ([`check_private_key`]): no access for
//!   group or others, owned by the user running pairgate, in a folder nobody
//!   else may write (whoever may write the folder may rename a key of their
//!   own over ours).
//!
//! Errors name the path and what was being done ([`FsError`]); each caller
//! turns them into its own error type with `From`.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Mode of private key files.
pub const SECRET_MODE: u32 = 0o600;
/// Mode of certificate files.
pub const PUBLIC_MODE: u32 = 0o644;

/// A filesystem operation on `path` failed while doing `action`.
#[derive(Debug, thiserror::Error)]
#[error("{}: cannot {action}: {source}", path.display())]
pub struct FsError {
    pub path: PathBuf,
    /// What was being done, as a verb phrase (`create`, `fsync the folder`).
    pub action: &'static str,
    #[source]
    pub source: io::Error,
}

impl FsError {
    /// Wraps an I/O error with its path and action.
    pub fn at(path: &Path, action: &'static str) -> impl FnOnce(io::Error) -> FsError {
        let path = path.to_owned();
        move |source| FsError {
            path,
            action,
            source,
        }
    }
}

/// The folder holding `path` (`.` for a bare file name).
pub fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// fsyncs a folder so a creation, rename or unlink in it is durable. A
/// no-op where folders cannot be opened (not unix).
///
/// # Errors
/// The underlying I/O error.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// [`sync_dir`] of the folder holding `path`, naming it on failure.
///
/// # Errors
/// [`FsError`] naming the folder.
pub fn sync_parent(path: &Path) -> Result<(), FsError> {
    let dir = parent_of(path);
    sync_dir(dir).map_err(FsError::at(dir, "fsync the folder"))
}

/// Renames `from` to `to` and makes it durable (fsync of `to`'s folder).
///
/// # Errors
/// [`FsError`] naming `to` (rename) or its folder (fsync).
pub fn durable_rename(from: &Path, to: &Path) -> Result<(), FsError> {
    fs::rename(from, to).map_err(FsError::at(to, "move into place"))?;
    sync_parent(to)
}

/// Deletes `path` and makes it durable; a file already gone is fine.
///
/// # Errors
/// [`FsError`] naming the file (delete) or its folder (fsync).
pub fn durable_remove(path: &Path) -> Result<(), FsError> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(FsError::at(path, "delete")(e)),
    }
    sync_parent(path)
}

/// Creates `path`, which must not exist, for writing with `mode` (the mode
/// is in force from creation; umask may only remove bits).
///
/// # Errors
/// The I/O error; `ErrorKind::AlreadyExists` when the file exists.
pub fn create_new(path: &Path, mode: u32) -> io::Result<File> {
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

/// Opens (creating with `mode` if missing) a file to read and append to.
///
/// # Errors
/// The I/O error.
pub fn open_append(path: &Path, mode: u32) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true).append(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    options.open(path)
}

/// Creates `path` (which must not exist) with exactly `mode`, writes
/// `bytes` and fsyncs the file; on failure the partial file is removed.
/// The folder is not fsynced (callers writing several files sync once).
///
/// # Errors
/// [`FsError`]; its source has `ErrorKind::AlreadyExists` when the file exists.
pub fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), FsError> {
    let mut file = create_new(path, mode).map_err(FsError::at(path, "create"))?;
    let result = file
        .write_all(bytes)
        .and_then(|()| set_mode(&file, mode))
        .and_then(|()| file.sync_all())
        .map_err(FsError::at(path, "write"));
    if result.is_err() {
        drop(file);
        let _ = fs::remove_file(path);
    }
    result
}

/// Atomically writes (or replaces) `path` with `bytes` and `mode`: a
/// temporary file in the same folder, fsync, rename, fsync of the folder.
/// Missing folders are created private ([`create_dir_private`]).
///
/// # Errors
/// [`FsError`] naming the file or folder; the temporary file is removed.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), FsError> {
    let dir = path.parent().unwrap_or(Path::new(""));
    create_dir_private(dir)?;
    let Some(name) = path.file_name() else {
        let not_a_name = io::Error::new(io::ErrorKind::InvalidInput, "not a file name");
        return Err(FsError::at(path, "write")(not_a_name));
    };
    let mut tmp_name = OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    // A stale tmp file from a crashed run of this same pid is ours to remove.
    let _ = fs::remove_file(&tmp);
    write_new(&tmp, bytes, mode)?;
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(FsError::at(path, "replace")(e));
    }
    sync_parent(path)
}

/// Creates `dir` and its parents if missing; new folders get 0700 (the
/// parents of keys should not be listable by others). Existing folders keep
/// their mode.
///
/// # Errors
/// [`FsError`] naming the folder.
pub fn create_dir_private(dir: &Path) -> Result<(), FsError> {
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
        .map_err(FsError::at(dir, "create the directory"))
}

/// Makes an existing folder private to its owner (0700).
///
/// # Errors
/// [`FsError`] naming the folder.
pub fn restrict_dir(dir: &Path) -> Result<(), FsError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(FsError::at(dir, "restrict permissions of"))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Sets the exact mode (the umask may have removed bits we want, e.g. 0644).
fn set_mode(file: &File, mode: u32) -> io::Result<()> {
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

/// Why a key file is not private.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// Group or others may access it (`mode & 0o077 != 0`).
    #[error("{}: group or others may access it (mode 0{mode:03o})", path.display())]
    Mode { path: PathBuf, mode: u32 },
    /// It belongs to another user than the one running pairgate.
    #[error("{}: belongs to uid {owner}, pairgate runs as uid {uid}", path.display())]
    Owner { path: PathBuf, owner: u32, uid: u32 },
    /// Its folder lets someone else replace it.
    #[error("{} (the folder of {}) {problem}", dir.display(), key.display())]
    Folder {
        dir: PathBuf,
        key: PathBuf,
        problem: String,
    },
    #[error(transparent)]
    Io(#[from] FsError),
}

/// The mode problem of a key file's metadata, if any: a mode granting group
/// or others any access. `None` on non-unix platforms.
pub fn key_mode_problem(meta: &fs::Metadata) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        (mode & 0o077 != 0).then_some(mode)
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        None
    }
}

/// Refuses a key file that is not private to the user running pairgate:
/// group or others may access it, another user owns it, or its folder lets
/// someone else replace it. A folder owned by root is fine (the usual
/// `/etc/pairgate`), one owned by another ordinary user is not.
///
/// Always `Ok` (for an existing file) on non-unix platforms, where modes
/// and owners do not exist in this form (see `docs/security.md`).
///
/// # Errors
/// The [`KeyFileError`] found first: mode, then owner, then folder.
pub fn check_private_key(path: &Path) -> Result<(), KeyFileError> {
    let meta = fs::metadata(path).map_err(FsError::at(path, "read the key file"))?;
    if let Some(mode) = key_mode_problem(&meta) {
        return Err(KeyFileError::Mode {
            path: path.to_owned(),
            mode,
        });
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let me = rustix::process::geteuid().as_raw();
        if meta.uid() != me {
            return Err(KeyFileError::Owner {
                path: path.to_owned(),
                owner: meta.uid(),
                uid: me,
            });
        }
        check_key_folder(path, me)?;
    }
    Ok(())
}

/// The folder holding a key: not group/world-writable, owned by us or root.
#[cfg(unix)]
fn check_key_folder(key: &Path, me: u32) -> Result<(), KeyFileError> {
    use std::os::unix::fs::MetadataExt;
    let dir = parent_of(key);
    let meta = fs::metadata(dir).map_err(FsError::at(dir, "examine the key's folder"))?;
    let mode = meta.mode() & 0o7777;
    let problem = if mode & 0o022 != 0 {
        format!("is writable by group or others (mode 0{mode:03o})")
    } else if meta.uid() != me && meta.uid() != 0 {
        format!(
            "belongs to another user (uid {}; pairgate runs as uid {me})",
            meta.uid()
        )
    } else {
        return Ok(());
    };
    Err(KeyFileError::Folder {
        dir: dir.to_owned(),
        key: key.to_owned(),
        problem,
    })
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
    fn an_atomic_write_replaces_with_the_mode_and_leaves_no_tmp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/dir/site.key");
        write_atomic(&path, b"one", SECRET_MODE).unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(
            mode(path.parent().unwrap()),
            0o700,
            "new folders are private"
        );
        write_atomic(&path, b"two", PUBLIC_MODE).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(mode(&path), 0o644);
        let names: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn write_new_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.key");
        write_new(&path, b"first", SECRET_MODE).unwrap();
        let err = write_new(&path, b"second", SECRET_MODE).unwrap_err();
        assert_eq!(err.source.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&path).unwrap(), b"first");
        assert!(err.to_string().contains("ca.key: cannot create"), "{err}");
    }

    #[test]
    fn a_durable_rename_and_remove_name_the_path_and_a_missing_file_is_removed_already() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        fs::write(&a, b"x").unwrap();
        durable_rename(&a, &b).unwrap();
        assert!(!a.exists() && b.exists());
        durable_remove(&b).unwrap();
        durable_remove(&b).unwrap();
        let err = durable_rename(&a, &b).unwrap_err();
        assert_eq!(err.path, b);
    }

    #[test]
    fn a_key_file_must_be_private_in_a_private_folder() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        create_dir_private(&keys).unwrap();
        let path = keys.join("k.key");
        write_new(&path, b"k", SECRET_MODE).unwrap();
        check_private_key(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        assert!(matches!(
            check_private_key(&path),
            Err(KeyFileError::Mode { mode: 0o640, .. })
        ));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        fs::set_permissions(&keys, fs::Permissions::from_mode(0o770)).unwrap();
        assert!(matches!(
            check_private_key(&path),
            Err(KeyFileError::Folder { .. })
        ));
        let missing = check_private_key(&keys.join("nope")).unwrap_err();
        assert!(matches!(missing, KeyFileError::Io(_)), "{missing}");
    }
}
