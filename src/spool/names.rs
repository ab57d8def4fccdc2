//! File names between an outbox and an inbox.
//!
//! - **Ignored names**: a leading `.` (in-progress files, ours included),
//!   and `*.tmp` / `*.partial` (any case): producers write those and
//!   rename them when finished.
//! - **Names that are not UTF-8** (a Latin-1 name from an old tool) keep
//!   their bytes: the metadata's `name` is a readable UTF-8 rendering
//!   (U+FFFD for bad bytes), and `name_b64` holds the raw bytes (standard
//!   base64); delivery on Unix uses the raw bytes.
//! - **Clashes and long names**: when the inbox already holds a different
//!   file of that name, the file arrives as `<name>.<id>` — or, when that
//!   would exceed the filesystem's limit (255 bytes on most), as
//!   `<name cut short>~.<id>.<ext>`: deterministic, keeping the extension
//!   (so the consumer still knows the type) and the id (so it is unique).

use std::ffi::{OsStr, OsString};

use base64::Engine as _;

use super::metadata::Metadata;

/// The metadata field holding a non-UTF-8 name's raw bytes.
pub const RAW_NAME_FIELD: &str = "name_b64";
/// Longest file name on the usual Linux filesystems, in bytes.
pub const NAME_MAX: usize = 255;
/// A shorter limit tried when a filesystem refuses 255 (eCryptfs: 143).
pub const NAME_MAX_SMALL: usize = 143;
/// Longest extension kept when a name is shortened.
const MAX_EXT: usize = 24;

/// Whether intake leaves this outbox name alone (in progress).
pub fn is_ignored(name: &OsStr) -> bool {
    let text = name.to_string_lossy();
    let lower = text.to_ascii_lowercase();
    text.starts_with('.') || lower.ends_with(".tmp") || lower.ends_with(".partial")
}

/// The bytes of an OS file name (lossy UTF-8 outside Unix).
pub fn bytes_of(name: &OsStr) -> Vec<u8> {
    #[cfg(unix)]
    {
        std::os::unix::ffi::OsStrExt::as_bytes(name).to_vec()
    }
    #[cfg(not(unix))]
    {
        name.to_string_lossy().as_bytes().to_vec()
    }
}

/// An OS file name from its bytes (lossy UTF-8 outside Unix).
pub fn os_name(bytes: &[u8]) -> OsString {
    os_of(bytes)
}

fn os_of(bytes: &[u8]) -> OsString {
    #[cfg(unix)]
    {
        <OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(bytes).to_owned()
    }
    #[cfg(not(unix))]
    {
        OsString::from(String::from_utf8_lossy(bytes).into_owned())
    }
}

/// The metadata `name` for an outbox name, and the raw bytes (base64)
/// when it is not UTF-8. The rendering is cut to 255 bytes if the
/// replacement characters made it longer.
pub fn describe(name: &OsStr) -> (String, Option<String>) {
    if let Some(text) = name.to_str() {
        return (text.to_owned(), None);
    }
    let raw = bytes_of(name);
    let mut shown = String::from_utf8_lossy(&raw).into_owned();
    cut_to(&mut shown, NAME_MAX);
    (
        shown,
        Some(base64::engine::general_purpose::STANDARD.encode(raw)),
    )
}

fn cut_to(text: &mut String, max: usize) {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
}

/// The name to deliver a file under: the raw bytes from `name_b64` when
/// present and acceptable as a bare file name, else `name`.
pub fn delivery_name(meta: &Metadata) -> Vec<u8> {
    let raw = meta
        .extra
        .get(RAW_NAME_FIELD)
        .and_then(|v| v.as_str())
        .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
        .filter(|raw| is_bare_name(raw));
    raw.unwrap_or_else(|| meta.name.as_bytes().to_vec())
}

/// A single path component: 1–255 bytes, no `/`, no NUL, not `.`/`..`.
fn is_bare_name(raw: &[u8]) -> bool {
    !raw.is_empty()
        && raw.len() <= NAME_MAX
        && raw != b"."
        && raw != b".."
        && !raw.iter().any(|b| *b == b'/' || *b == 0)
}

/// The `n`-th name to try for `name` in the inbox: `n = 0` the name itself,
/// then `<name>.<id>`, `<name>.<id>.<n>`, each shortened as in the module
/// doc when longer than `limit` bytes.
pub fn candidate(name: &[u8], id: &str, n: u32, limit: usize) -> OsString {
    let suffix = match n {
        0 if name.len() <= limit => return os_of(name),
        0 | 1 => format!(".{id}"),
        n => format!(".{id}.{n}"),
    };
    if name.len() + suffix.len() <= limit {
        let mut out = name.to_vec();
        out.extend_from_slice(suffix.as_bytes());
        return os_of(&out);
    }
    let (stem, ext) = split_ext(name);
    let room = limit.saturating_sub(suffix.len() + ext.len() + 1);
    let mut out = cut_bytes(stem, room).to_vec();
    out.push(b'~');
    out.extend_from_slice(suffix.as_bytes());
    out.extend_from_slice(ext);
    os_of(&out)
}

/// `("report.final", ".zip")` for `report.final.zip`; no extension when
/// there is no dot after the first byte or it is longer than 24 bytes.
fn split_ext(name: &[u8]) -> (&[u8], &[u8]) {
    match name.iter().rposition(|b| *b == b'.') {
        Some(dot) if dot > 0 && name.len() - dot <= MAX_EXT => name.split_at(dot),
        _ => (name, &[]),
    }
}

/// The first `max` bytes of `bytes`, not splitting a UTF-8 character when
/// the bytes are UTF-8.
fn cut_bytes(bytes: &[u8], max: usize) -> &[u8] {
    if bytes.len() <= max {
        return bytes;
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => {
            let mut end = max;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            &bytes[..end]
        }
        Err(_) => &bytes[..max],
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn in_progress_names_are_ignored() {
        for n in [
            ".x",
            ".pg-1.tmp",
            "a.tmp",
            "A.TMP",
            "b.partial",
            "c.Partial",
        ] {
            assert!(is_ignored(OsStr::new(n)), "{n}");
        }
        for n in ["a.bin", "tmp", "partial.zip", "a.tmp.zip"] {
            assert!(!is_ignored(OsStr::new(n)), "{n}");
        }
    }

    #[test]
    fn short_names_keep_the_historic_clash_form() {
        assert_eq!(candidate(b"report.zip", ID, 0, 255), "report.zip");
        assert_eq!(
            candidate(b"report.zip", ID, 1, 255),
            OsString::from(format!("report.zip.{ID}"))
        );
        assert_eq!(
            candidate(b"report.zip", ID, 3, 255),
            OsString::from(format!("report.zip.{ID}.3"))
        );
    }

    #[test]
    fn long_names_are_cut_keeping_extension_and_id_deterministically() {
        let long = format!("{}.bak", "x".repeat(246));
        assert_eq!(long.len(), 250);
        let a = candidate(long.as_bytes(), ID, 1, 255);
        let b = candidate(long.as_bytes(), ID, 1, 255);
        assert_eq!(a, b);
        let text = a.to_str().unwrap();
        assert!(text.len() <= 255, "{}", text.len());
        assert!(text.ends_with(&format!("~.{ID}.bak")), "{text}");
        assert!(text.starts_with("xxxx"));
        // A smaller limit, and the name itself too long for it.
        let small = candidate(long.as_bytes(), ID, 0, 143);
        assert_eq!(small.len(), 143);
        // Multi-byte characters are not split.
        let wide = format!("{}.txt", "é".repeat(125));
        let cut = candidate(wide.as_bytes(), ID, 2, 255);
        let cut = cut.to_str().expect("still UTF-8");
        assert!(cut.len() <= 255 && cut.ends_with(&format!("~.{ID}.2.txt")));
        // No usable extension: id last.
        let plain = "y".repeat(250);
        let c = candidate(plain.as_bytes(), ID, 1, 255);
        assert!(c.to_str().unwrap().ends_with(&format!("~.{ID}")));
    }

    #[cfg(unix)]
    #[test]
    fn non_utf8_names_keep_their_bytes() {
        use std::os::unix::ffi::OsStrExt;
        let latin1 = OsStr::from_bytes(b"caf\xe9-\xfcbersicht.txt");
        let (shown, raw) = describe(latin1);
        assert_eq!(shown, "caf\u{fffd}-\u{fffd}bersicht.txt");
        let mut meta = Metadata::new(
            &shown,
            0,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        )
        .unwrap();
        meta.extra
            .insert(RAW_NAME_FIELD.into(), serde_json::Value::from(raw.unwrap()));
        assert_eq!(delivery_name(&meta), latin1.as_bytes());
        // A raw name that is a path is not used.
        meta.extra.insert(
            RAW_NAME_FIELD.into(),
            serde_json::Value::from(base64::engine::general_purpose::STANDARD.encode(b"../x")),
        );
        assert_eq!(delivery_name(&meta), shown.as_bytes());
        // UTF-8 names carry no raw copy; a rendering longer than 255 bytes is cut.
        assert_eq!(describe(OsStr::new("plain")), ("plain".into(), None));
        let (long, _) = describe(OsStr::from_bytes(&[0xff; 200]));
        assert!(long.len() <= 255);
    }
}
