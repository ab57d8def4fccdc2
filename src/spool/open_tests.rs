//! Unit tests of `open.rs`.

use super::*;
use crate::spool::codec::{seal_raw, SALT_LEN};
use crate::spool::{decrypt_stream, encrypt_stream, read_metadata, Sealer};
use std::io;

const SHA_EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

fn key() -> MasterKey {
    MasterKey::from_bytes([0x11; 32])
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 256) as u8).collect()
}

fn sha_hex(data: &[u8]) -> String {
    hex::encode(digest::digest(&digest::SHA256, data))
}

/// A sealed file of `plain` and the (start, end) byte span of each record.
fn sealed(plain: &[u8]) -> (Vec<u8>, Vec<(usize, usize)>) {
    let meta = Metadata::new("f.bin", plain.len() as u64, &sha_hex(plain)).unwrap();
    let mut file = Vec::new();
    encrypt_stream(plain, &mut file, &key(), &meta).unwrap();
    let mut spans = Vec::new();
    let mut pos = HEADER_LEN;
    while pos < file.len() {
        let len = u32::from_be_bytes(file[pos..pos + 4].try_into().unwrap()) as usize;
        spans.push((pos, pos + 4 + len));
        pos += 4 + len;
    }
    (file, spans)
}

fn open(file: &[u8]) -> Result<Vec<u8>, SpoolCodecError> {
    let mut out = Vec::new();
    decrypt_stream(file, &mut out, &key()).map(|_| out)
}

/// Header, then record 0 with `meta_json`, then raw `(index, last, data)`.
fn crafted(meta_json: &str, meta_last: bool, records: &[(u32, bool, &[u8])]) -> Vec<u8> {
    let sealer = Sealer::new(&key(), [3; SALT_LEN], [4; 7], Vec::new());
    assert!(sealer.is_err(), "empty metadata must be refused");
    let mut header = [0u8; HEADER_LEN];
    header[..8].copy_from_slice(MAGIC);
    header[8..16].copy_from_slice(&key().key_id().0);
    let mut file = header.to_vec();
    file.extend(seal_raw(&key(), &header, 0, meta_last, meta_json.as_bytes()).unwrap());
    for (index, last, data) in records {
        file.extend(seal_raw(&key(), &header, *index, *last, data).unwrap());
    }
    file
}

fn meta_json(size: u64, sha: &str) -> String {
    format!(
        r#"{{"id":"x","name":"f","size":{size},"sha256":"{sha}","created":"2024-01-01T00:00:00Z"}}"#
    )
}

#[test]
fn tampered_header_bytes_are_detected() {
    let (file, _) = sealed(b"hello");
    for (pos, check) in [
        (0, "magic"),
        (9, "key id"),
        (20, "salt"),
        (50, "nonce prefix"),
    ] {
        let mut bad = file.clone();
        bad[pos] ^= 0x01;
        let err = open(&bad).unwrap_err();
        let ok = match check {
            "magic" => matches!(err, SpoolCodecError::BadMagic { .. }),
            "key id" => matches!(err, SpoolCodecError::WrongKey { .. }),
            _ => matches!(
                err,
                SpoolCodecError::Tampered {
                    record: 0,
                    offset: 55
                }
            ),
        };
        assert!(ok, "{check}: {err}");
    }
    assert!(matches!(
        open(&file[..30]).unwrap_err(),
        SpoolCodecError::ShortHeader { len: 30 }
    ));
}

#[test]
fn tampered_record_bytes_and_lengths_are_detected() {
    let plain = pattern(2 * CHUNK_LEN + 10);
    let (file, spans) = sealed(&plain);
    for (i, &(start, end)) in spans.iter().enumerate() {
        for pos in [start + 4, (start + end) / 2, end - 1] {
            let mut bad = file.clone();
            bad[pos] ^= 0x80;
            let err = open(&bad).unwrap_err();
            assert!(
                matches!(err, SpoolCodecError::Tampered { record, offset }
                    if record as usize == i && offset as usize == start),
                "record {i} byte {pos}: {err}"
            );
        }
        for delta in [1u32, 0x100, 0x0100_0000] {
            let mut bad = file.clone();
            let len = u32::from_be_bytes(bad[start..start + 4].try_into().unwrap());
            bad[start..start + 4].copy_from_slice(&(len ^ delta).to_be_bytes());
            assert!(open(&bad).is_err(), "record {i} length ^ {delta:#x}");
        }
    }
    let mut tiny = file.clone();
    tiny[55..59].copy_from_slice(&15u32.to_be_bytes());
    assert!(matches!(
        open(&tiny).unwrap_err(),
        SpoolCodecError::BadRecordLength {
            record: 0,
            len: 15,
            ..
        }
    ));
}

#[test]
fn truncation_anywhere_is_detected() {
    let plain = pattern(3 * CHUNK_LEN);
    let (file, spans) = sealed(&plain);
    let mut cuts = vec![0, 8, 54, 55, 56, 58, 59];
    for &(start, end) in &spans {
        cuts.extend([
            start,
            start + 1,
            start + 3,
            start + 4,
            start + 5,
            (start + end) / 2,
            end - 1,
        ]);
        cuts.push(end);
    }
    cuts.retain(|&c| c < file.len());
    for cut in cuts {
        let err = open(&file[..cut]).unwrap_err();
        let expected = matches!(
            err,
            SpoolCodecError::Truncated { .. } | SpoolCodecError::ShortHeader { .. }
        );
        assert!(expected, "cut at {cut}: {err}");
    }
    // Dropping the last record (record 3: 3 full chunks) is a clean
    // truncation: the missing record is named.
    assert_eq!(spans.len(), 4);
    let (last_start, _) = spans[3];
    assert!(matches!(
        open(&file[..last_start]).unwrap_err(),
        SpoolCodecError::Truncated { record: 3, offset } if offset as usize == last_start
    ));
    assert!(matches!(
        read_metadata(&file[..spans[0].1 - 1], &key()).unwrap_err(),
        SpoolCodecError::Truncated { record: 0, .. }
    ));
}

#[test]
fn reordered_duplicated_or_dropped_records_are_detected() {
    let plain = pattern(3 * CHUNK_LEN + 1);
    let (file, s) = sealed(&plain);
    let piece = |i: usize| &file[s[i].0..s[i].1];
    let build = |order: &[usize]| {
        let mut f = file[..HEADER_LEN].to_vec();
        order.iter().for_each(|&i| f.extend_from_slice(piece(i)));
        f
    };
    assert_eq!(open(&build(&[0, 1, 2, 3, 4])).unwrap(), plain);
    for order in [
        &[0, 2, 1, 3, 4][..],
        &[0, 1, 1, 2, 3, 4],
        &[0, 1, 3, 4],
        &[1, 0, 2, 3, 4],
        &[0, 1, 2, 3, 4, 4],
    ] {
        assert!(open(&build(order)).is_err(), "order {order:?}");
    }
    assert!(matches!(
        open(&build(&[0, 1, 2, 4])).unwrap_err(),
        SpoolCodecError::Tampered { record: 3, .. }
    ));
}

#[test]
fn wrong_key_is_named_as_such() {
    let (file, _) = sealed(b"secret");
    let other = MasterKey::from_bytes([0x22; 32]);
    let err = decrypt_stream(&file[..], io::sink(), &other).unwrap_err();
    match err {
        SpoolCodecError::WrongKey { expected, found } => {
            assert_eq!(expected, other.key_id());
            assert_eq!(found, key().key_id());
        }
        e => panic!("expected WrongKey, got {e}"),
    }
    assert!(matches!(
        read_metadata(&file[..], &other).unwrap_err(),
        SpoolCodecError::WrongKey { .. }
    ));
}

#[test]
fn trailing_bytes_are_detected() {
    let (file, spans) = sealed(&pattern(CHUNK_LEN + 3));
    let last = file[spans[2].0..spans[2].1].to_vec();
    for extra in [&[0u8][..], &[0, 0, 0], &[0, 0, 0, 16], &[0; 40], &last] {
        let mut bad = file.clone();
        bad.extend_from_slice(extra);
        let err = open(&bad).unwrap_err();
        assert!(
            matches!(err, SpoolCodecError::TrailingData { record: 2, .. }),
            "{} extra bytes: {err}",
            extra.len()
        );
    }
}

#[test]
fn metadata_and_chunk_rules_are_enforced() {
    let one = [b'a'];
    let sha_a = sha_hex(&one);
    type Check = fn(&SpoolCodecError) -> bool;
    let cases: Vec<(Vec<u8>, Check)> = vec![
        (
            crafted(&meta_json(1, SHA_EMPTY), false, &[(1, true, &one)]),
            |e| matches!(e, SpoolCodecError::DigestMismatch { .. }),
        ),
        (
            crafted(&meta_json(2, &sha_a), false, &[(1, true, &one)]),
            |e| {
                matches!(
                    e,
                    SpoolCodecError::SizeMismatch {
                        declared: 2,
                        actual: 1
                    }
                )
            },
        ),
        (
            crafted(&meta_json(0, &sha_a), false, &[(1, true, &one)]),
            |e| {
                matches!(
                    e,
                    SpoolCodecError::SizeMismatch {
                        declared: 0,
                        actual: 1
                    }
                )
            },
        ),
        (crafted(&meta_json(0, SHA_EMPTY), true, &[]), |e| {
            matches!(e, SpoolCodecError::NoDataRecord)
        }),
        (crafted(&meta_json(0, SHA_EMPTY), false, &[]), |e| {
            matches!(e, SpoolCodecError::Truncated { record: 1, .. })
        }),
        (
            crafted(
                &meta_json(2, &sha_a),
                false,
                &[(1, false, &one), (2, true, &one)],
            ),
            |e| {
                matches!(
                    e,
                    SpoolCodecError::BadChunkSize {
                        record: 1,
                        len: 1,
                        ..
                    }
                )
            },
        ),
        (
            crafted(
                &meta_json(1, &sha_a),
                false,
                &[(1, false, &[0; CHUNK_LEN]), (2, true, &[])],
            ),
            |e| {
                matches!(
                    e,
                    SpoolCodecError::SizeMismatch { .. } | SpoolCodecError::BadChunkSize { .. }
                )
            },
        ),
        (crafted("{\"id\":\"x\"}", false, &[(1, true, &one)]), |e| {
            matches!(e, SpoolCodecError::BadMetadata { .. })
        }),
        (
            crafted(
                &meta_json(1, &sha_a).replace("\"f\"", "\"../etc/passwd\""),
                false,
                &[(1, true, &one)],
            ),
            |e| matches!(e, SpoolCodecError::BadMetadata { .. }),
        ),
    ];
    for (i, (file, check)) in cases.iter().enumerate() {
        let err = open(file).unwrap_err();
        assert!(check(&err), "case {i}: {err}");
    }
    let good = crafted(&meta_json(1, &sha_a), false, &[(1, true, &one)]);
    assert_eq!(open(&good).unwrap(), b"a");
}

#[test]
fn opener_refuses_use_after_error_and_finish_before_end() {
    let (file, spans) = sealed(b"xy");
    let mut opener = Opener::new(&key(), &file).unwrap();
    let rec0 = &file[spans[0].0 + 4..spans[0].1];
    assert!(opener.open_record(rec0, true).is_err());
    assert!(matches!(
        opener.open_record(rec0, false).unwrap_err(),
        SpoolCodecError::Misuse(_)
    ));
    let mut opener = Opener::new(&key(), &file).unwrap();
    assert!(matches!(
        opener.open_record(rec0, false).unwrap(),
        Opened::Metadata(_)
    ));
    assert!(matches!(
        opener.finish().unwrap_err(),
        SpoolCodecError::Truncated { record: 1, .. }
    ));
}
