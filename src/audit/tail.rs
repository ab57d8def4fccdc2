//! Reading the end of a log backwards: find the chain head without reading
//! the whole file, and cut off a torn last line.
//!
//! The writer always appends whole lines ending in `\n`, so a file whose last
//! byte is not a newline was cut short by a crash (or disk full) in the middle
//! of a write. Those trailing bytes can never verify; they are removed, and
//! their length and SHA-256 are returned so the caller can record the repair.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};

use ring::digest;

use super::chain::{line_hash, GENESIS};

const CHUNK: u64 = 64 * 1024;

/// What [`recover_tail`] found at the end of a log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tail {
    /// Hash of the last complete line ([`GENESIS`] if there is none).
    pub head: [u8; 32],
    /// Bytes of a torn last line that were cut off.
    pub truncated_bytes: u64,
    /// SHA-256 of those bytes (of the empty string if none).
    pub truncated_sha256: [u8; 32],
}

/// Cuts a torn last line off `file` (which must be open for reading and
/// writing) and returns the hash of the last complete line.
///
/// # Errors
/// Reading, truncating or syncing the file.
pub fn recover_tail(file: &mut File) -> io::Result<Tail> {
    let len = file.metadata()?.len();
    let end = line_start(file, len)?;
    let mut truncated_sha256 = [0u8; 32];
    truncated_sha256.copy_from_slice(digest::digest(&digest::SHA256, b"").as_ref());
    if end < len {
        truncated_sha256 = hash_range(file, end, len)?;
        file.set_len(end)?;
        file.sync_data()?;
    }
    let head = if end == 0 {
        GENESIS
    } else {
        // `end - 1` is the last line's newline, which the hash leaves out.
        let start = line_start(file, end - 1)?;
        hash_range(file, start, end - 1)?
    };
    Ok(Tail {
        head,
        truncated_bytes: len - end,
        truncated_sha256,
    })
}

/// The offset just after the last `\n` before `upto`, or 0 if there is none.
fn line_start(file: &mut File, upto: u64) -> io::Result<u64> {
    let mut buf = vec![0u8; CHUNK as usize];
    let mut end = upto;
    while end > 0 {
        let start = end.saturating_sub(CHUNK);
        let chunk = &mut buf[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        if let Some(pos) = chunk.iter().rposition(|&b| b == b'\n') {
            return Ok(start + pos as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// SHA-256 of the bytes `start..end`, streamed.
fn hash_range(file: &mut File, start: u64, end: u64) -> io::Result<[u8; 32]> {
    if end - start <= CHUNK {
        let mut bytes = vec![0u8; (end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut bytes)?;
        return Ok(line_hash(&bytes));
    }
    let mut ctx = digest::Context::new(&digest::SHA256);
    let mut buf = vec![0u8; CHUNK as usize];
    let mut pos = start;
    file.seek(SeekFrom::Start(start))?;
    while pos < end {
        let n = (end - pos).min(CHUNK) as usize;
        file.read_exact(&mut buf[..n])?;
        ctx.update(&buf[..n]);
        pos += n as u64;
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;
    use std::io::Write;

    fn tail_of(content: &[u8]) -> (Tail, Vec<u8>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log");
        std::fs::write(&path, content).expect("write");
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&path)
            .expect("open");
        let tail = recover_tail(&mut file).expect("recover");
        file.write_all(b"X").expect("append after truncation");
        (tail, std::fs::read(&path).expect("read back"))
    }

    #[test]
    fn empty_and_clean_files_are_untouched() {
        let (tail, after) = tail_of(b"");
        assert_eq!(
            (tail.head, tail.truncated_bytes, after),
            (GENESIS, 0, b"X".to_vec())
        );
        let (tail, after) = tail_of(b"a\nbc\n");
        assert_eq!(tail.head, line_hash(b"bc"));
        assert_eq!((tail.truncated_bytes, after), (0, b"a\nbc\nX".to_vec()));
        let (tail, _) = tail_of(b"only\n");
        assert_eq!(tail.head, line_hash(b"only"));
    }

    #[test]
    fn torn_tail_is_cut_and_hashed() {
        let (tail, after) = tail_of(b"a\nbc\n{\"ts\":");
        assert_eq!(tail.head, line_hash(b"bc"));
        assert_eq!(tail.truncated_bytes, 6);
        assert_eq!(tail.truncated_sha256, line_hash(b"{\"ts\":"));
        assert_eq!(after, b"a\nbc\nX".to_vec());
        let (tail, after) = tail_of(b"no newline at all");
        assert_eq!(
            (tail.head, tail.truncated_bytes, after),
            (GENESIS, 17, b"X".to_vec())
        );
    }

    #[test]
    fn lines_longer_than_a_chunk() {
        let long = vec![b'x'; CHUNK as usize * 2 + 17];
        let mut content = b"first\n".to_vec();
        content.extend_from_slice(&long);
        content.push(b'\n');
        content.extend_from_slice(&long);
        let (tail, after) = tail_of(&content);
        assert_eq!(tail.head, line_hash(&long));
        assert_eq!(tail.truncated_bytes, long.len() as u64);
        assert_eq!(tail.truncated_sha256, line_hash(&long));
        assert_eq!(after.len(), 6 + long.len() + 2);
    }
}
