//! Unit tests of the one-pass and metadata-first [`super::Sealer`].

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use super::*;

fn sealer(size: u64, sha: &str) -> Sealer {
    let meta = format!(
        r#"{{"id":"i","name":"n","size":{size},"sha256":"{sha}","created":"2024-01-01T00:00:00Z"}}"#
    );
    Sealer::new(
        &MasterKey::from_bytes([5; 32]),
        [1; 32],
        [2; 7],
        meta.into_bytes(),
    )
    .unwrap()
}

#[test]
fn enforces_call_order_and_chunk_sizes() {
    let sha = hex::encode(digest::digest(&digest::SHA256, &[0u8; CHUNK_LEN + 1]));
    let mut s = sealer(CHUNK_LEN as u64 + 1, &sha);
    let mut out = Vec::new();
    assert!(matches!(
        s.seal_chunk(&[0], true, &mut out),
        Err(SpoolCodecError::Misuse(_))
    ));
    s.begin(&mut out).unwrap();
    assert_eq!(&out[..8], MAGIC);
    assert_eq!(&out[..HEADER_LEN], s.header());
    let after_begin = out.len() as u64;
    assert!(matches!(s.begin(&mut out), Err(SpoolCodecError::Misuse(_))));
    let err = s.seal_chunk(&[0; 10], false, &mut out).unwrap_err();
    assert!(
        matches!(err, SpoolCodecError::BadChunkSize { record: 1, offset, len: 10 } if offset == after_begin),
        "{err}"
    );
    s.seal_chunk(&[0; CHUNK_LEN], false, &mut out).unwrap();
    assert!(matches!(
        s.seal_chunk(&[], true, &mut out),
        Err(SpoolCodecError::BadChunkSize { record: 2, .. })
    ));
    s.seal_chunk(&[0], true, &mut out).unwrap();
    assert!(s.is_done());
    assert!(matches!(
        s.seal_chunk(&[0], true, &mut out),
        Err(SpoolCodecError::Misuse(_))
    ));
}

#[test]
fn one_pass_reserves_record_0_and_seals_it_last_at_its_place() {
    let master = MasterKey::from_bytes([5; 32]);
    let placeholder = crate::spool::metadata::PLACEHOLDER_SHA256;
    let mut meta = Metadata::new("f", 0, placeholder).unwrap();
    let len = meta.reserved_len().unwrap();
    let mut s = Sealer::reserving(&master, [1; 32], [2; 7], len).unwrap();
    assert_eq!(s.reserved_len(), Some(len));
    let mut out = Vec::new();
    s.begin(&mut out).unwrap();
    assert_eq!(out.len(), HEADER_LEN + 4 + len + TAG_LEN);
    assert!(out[HEADER_LEN..].iter().all(|b| *b == 0), "a placeholder");
    let mut rec = Vec::new();
    assert!(matches!(
        s.seal_metadata(b"{}", &mut rec),
        Err(SpoolCodecError::Misuse(_))
    ));
    let mut file = out.clone();
    s.seal_chunk(&[0; CHUNK_LEN], false, &mut out).unwrap();
    file.extend_from_slice(&out);
    assert!(!s.is_done());
    s.seal_chunk(b"tail", true, &mut out).unwrap();
    file.extend_from_slice(&out);
    let (size, sha) = s.data_digest().unwrap();
    assert_eq!(size, CHUNK_LEN as u64 + 4);
    assert!(!s.is_done(), "record 0 still missing");
    meta.size = size;
    meta.sha256 = hex::encode(sha);
    // Wrong length, wrong size, wrong digest: refused.
    for wrong in [len - 1, len + 1] {
        let err = s
            .seal_metadata(&meta.to_record_padded(wrong).unwrap(), &mut rec)
            .unwrap_err();
        assert!(matches!(err, SpoolCodecError::BadMetadata { .. }), "{err}");
    }
    meta.size -= 1;
    let err = s
        .seal_metadata(&meta.to_record_padded(len).unwrap(), &mut rec)
        .unwrap_err();
    assert!(err.to_string().contains("the data sealed is"), "{err}");
    meta.size += 1;
    meta.sha256 = hex::encode([0u8; 32]);
    assert!(s
        .seal_metadata(&meta.to_record_padded(len).unwrap(), &mut rec)
        .is_err());
    meta.sha256 = hex::encode(sha);
    let at = s
        .seal_metadata(&meta.to_record_padded(len).unwrap(), &mut rec)
        .unwrap();
    assert_eq!((at, rec.len()), (HEADER_LEN as u64, 4 + len + TAG_LEN));
    assert!(s.is_done());
    assert_eq!(s.metadata(), Some(&meta));
    assert!(matches!(
        s.seal_metadata(&meta.to_record_padded(len).unwrap(), &mut rec),
        Err(SpoolCodecError::Misuse(_))
    ));
    // Put in place, the file opens.
    file[HEADER_LEN..HEADER_LEN + rec.len()].copy_from_slice(&rec);
    let mut plain = Vec::new();
    let opened = crate::spool::decrypt_stream(&file[..], &mut plain, &master).unwrap();
    assert_eq!(opened, meta);
    // Neither a metadata-first sealer nor an absurd reservation.
    let mut given = sealer(0, &hex::encode(digest::digest(&digest::SHA256, b"")));
    given.begin(&mut out).unwrap();
    given.seal_chunk(&[], true, &mut out).unwrap();
    assert!(given.is_done());
    assert!(matches!(
        given.seal_metadata(b"{}", &mut rec),
        Err(SpoolCodecError::Misuse(_))
    ));
    assert!(Sealer::reserving(&master, [1; 32], [2; 7], 0).is_err());
    assert!(Sealer::reserving(&master, [1; 32], [2; 7], 65_537).is_err());
}

#[test]
fn refuses_a_last_chunk_that_contradicts_the_metadata() {
    let sha_a = hex::encode(digest::digest(&digest::SHA256, b"a"));
    let mut out = Vec::new();
    let mut s = sealer(1, &sha_a);
    s.begin(&mut out).unwrap();
    assert!(matches!(
        s.seal_chunk(b"b", true, &mut out),
        Err(SpoolCodecError::SourceChanged { .. })
    ));
    let mut s = sealer(2, &sha_a);
    s.begin(&mut out).unwrap();
    assert!(matches!(
        s.seal_chunk(b"a", true, &mut out),
        Err(SpoolCodecError::SourceChanged { .. })
    ));
}
