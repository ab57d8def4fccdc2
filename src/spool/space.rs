//! Free space on the filesystem of a folder, so a receiver can refuse a
//! file it has no room for *before* the sender streams it (`full`, retry
//! later) instead of after — a full disk then costs no re-sent bytes.

use std::path::Path;

/// Bytes available to an unprivileged writer on `dir`'s filesystem;
/// `None` when unknown (the write itself will then tell).
pub(super) fn available(dir: &Path) -> Option<u64> {
    #[cfg(unix)]
    {
        let st = rustix::fs::statvfs(dir).ok()?;
        Some(st.f_bavail.saturating_mul(st.f_frsize))
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        None
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_real_folder_has_some_space_and_a_missing_one_is_unknown() {
        let dir = std::env::temp_dir();
        assert!(super::available(&dir).is_some_and(|n| n > 0));
        assert_eq!(super::available(std::path::Path::new("/no/such/dir")), None);
    }
}
