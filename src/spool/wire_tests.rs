//! Unit tests of [`super`] (wire.rs).

#![allow(clippy::unwrap_used)]

use super::*;

fn meta(size: u64) -> Metadata {
    let sha = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    Metadata::new("f.bak", size, sha).unwrap()
}

fn enc(frames: &[Frame]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in frames {
        f.encode(&mut out).unwrap();
    }
    out
}

fn all_frames() -> Vec<Frame> {
    vec![
        Frame::Hello { version: VERSION },
        Frame::Offer(meta(3)),
        Frame::Accept { offset: 0 },
        Frame::Already {
            id: "abc_-1".into(),
        },
        Frame::Data(vec![1, 2, 3]),
        Frame::Data(vec![9; MAX_FRAME - 1]),
        Frame::End,
        Frame::Ack { id: "abc".into() },
        Frame::Error {
            reason: Refusal::Full,
            message: "disk full".into(),
        },
        Frame::Error {
            reason: Refusal::TooLarge,
            message: String::new(),
        },
    ]
}

#[test]
fn every_frame_round_trips_whole_and_byte_by_byte() {
    let frames = all_frames();
    let bytes = enc(&frames);
    let mut dec = Decoder::default();
    dec.push(&bytes);
    for f in &frames {
        assert_eq!(dec.next_frame().unwrap().as_ref(), Some(f));
    }
    assert_eq!(dec.next_frame().unwrap(), None);
    let mut dec = Decoder::default();
    let mut got = Vec::new();
    for b in &bytes {
        dec.push(std::slice::from_ref(b));
        while let Some(f) = dec.next_frame().unwrap() {
            got.push(f);
        }
    }
    assert_eq!(got, frames);
    assert!(!dec.has_partial());
}

#[test]
fn malformed_frames_are_rejected() {
    let frame = |kind: u8, body: &[u8]| {
        let mut v = ((body.len() + 1) as u32).to_be_bytes().to_vec();
        v.push(kind);
        v.extend_from_slice(body);
        let mut d = Decoder::default();
        d.push(&v);
        d.next_frame()
    };
    let mut d = Decoder::default();
    d.push(&0u32.to_be_bytes());
    assert_eq!(d.next_frame(), Err(WireError::FrameLength { len: 0 }));
    let mut d = Decoder::default();
    d.push(&((MAX_FRAME + 1) as u32).to_be_bytes());
    assert!(matches!(d.next_frame(), Err(WireError::FrameLength { .. })));
    assert_eq!(frame(99, b""), Err(WireError::UnknownType { kind: 99 }));
    assert!(matches!(
        frame(1, b"PGSW\0"),
        Err(WireError::Malformed { .. })
    ));
    assert!(matches!(
        frame(1, b"XXXX\0\x01"),
        Err(WireError::Malformed { .. })
    ));
    assert_eq!(
        frame(1, b"PGSW\0\x01"),
        Err(WireError::Version { version: 1 })
    );
    assert!(matches!(frame(2, b"{}"), Err(WireError::Malformed { .. })));
    let mut evil = meta(1);
    evil.name = "../etc/passwd".into();
    let json = serde_json::to_vec(&evil).unwrap();
    assert!(matches!(frame(2, &json), Err(WireError::Malformed { .. })));
    assert!(matches!(
        frame(3, b"1234"),
        Err(WireError::Malformed { .. })
    ));
    assert!(matches!(frame(4, b""), Err(WireError::Malformed { .. })));
    assert!(matches!(frame(7, b"a/b"), Err(WireError::Malformed { .. })));
    assert!(matches!(frame(5, b""), Err(WireError::Malformed { .. })));
    assert!(matches!(frame(6, b"x"), Err(WireError::Malformed { .. })));
    assert!(matches!(frame(8, b""), Err(WireError::Malformed { .. })));
    assert!(matches!(
        frame(8, b"\x03\xff"),
        Ok(Some(Frame::Error {
            reason: Refusal::TooLarge,
            ..
        }))
    ));
    assert!(matches!(
        frame(8, b"\x63"),
        Ok(Some(Frame::Error {
            reason: Refusal::Other,
            ..
        }))
    ));
}

#[test]
fn refusal_codes_round_trip_and_say_later_or_never() {
    for code in 0..=6u8 {
        assert_eq!(Refusal::from_code(code).code(), code);
    }
    assert!(Refusal::TooLarge.is_permanent());
    assert!(Refusal::BadName.is_permanent());
    for later in [
        Refusal::Busy,
        Refusal::Full,
        Refusal::Failed,
        Refusal::Other,
    ] {
        assert!(!later.is_permanent(), "{later:?}");
    }
}

#[test]
fn receiver_enforces_the_sequence() {
    let m = meta(4);
    let mut r = Receiver::default();
    assert!(r.on_frame(&Frame::Offer(m.clone())).is_err());
    let mut r = Receiver::default();
    r.on_frame(&Frame::Hello { version: VERSION }).unwrap();
    assert!(r.on_frame(&Frame::Data(vec![1])).is_err());
    assert!(r.on_frame(&Frame::End).is_err());
    r.on_frame(&Frame::Offer(m.clone())).unwrap();
    assert!(r.on_frame(&Frame::Data(vec![1])).is_err(), "before ACCEPT");
    let mut r = Receiver {
        state: RecvState::Offered {
            id: m.id.clone(),
            size: 4,
        },
    };
    r.accept();
    r.on_frame(&Frame::Data(vec![1, 2])).unwrap();
    assert!(r.clone().on_frame(&Frame::End).is_err(), "END too early");
    assert!(
        r.clone().on_frame(&Frame::Data(vec![0; 3])).is_err(),
        "too much"
    );
    assert!(r.clone().on_frame(&Frame::Offer(m.clone())).is_err());
    r.on_frame(&Frame::Data(vec![3, 4])).unwrap();
    r.on_frame(&Frame::End).unwrap();
    assert_eq!(r.state, RecvState::Idle);
    r.on_frame(&Frame::Offer(m)).unwrap();
    r.decline();
    assert_eq!(r.state, RecvState::Idle);
}

/// Every committed seed runs through the fuzz entry point.
#[test]
fn seed_corpus_runs_clean() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/spool_wire");
    let mut count = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        fuzz_wire(&std::fs::read(entry.unwrap().path()).unwrap());
        count += 1;
    }
    assert!(count >= 3, "expected seed files in {dir}");
}

/// Writes the seed corpus (run once with `--ignored` after a format change).
#[test]
#[ignore]
fn write_seed_corpus() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/spool_wire");
    std::fs::create_dir_all(dir).unwrap();
    let m = meta(3);
    let session = enc(&[
        Frame::Hello { version: VERSION },
        Frame::Offer(m),
        Frame::Data(vec![1, 2, 3]),
        Frame::End,
    ]);
    std::fs::write(format!("{dir}/session.bin"), &session).unwrap();
    std::fs::write(format!("{dir}/all-frames.bin"), enc(&all_frames()[..5])).unwrap();
    std::fs::write(
        format!("{dir}/huge-length.bin"),
        [0xff, 0xff, 0xff, 0xff, 1],
    )
    .unwrap();
    std::fs::write(format!("{dir}/unknown-type.bin"), [0, 0, 0, 1, 42]).unwrap();
}
