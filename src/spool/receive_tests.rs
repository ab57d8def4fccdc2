//! Unit tests of [`super`] (receive.rs).

#![allow(clippy::unwrap_used)]

use super::*;
use crate::spool::store::tests::store;
use crate::spool::stream::{decrypt_stream, digest_stream};

async fn exchange(spool: &Spool, frames: Vec<Frame>) -> (Vec<Frame>, Result<(), SpoolError>) {
    let (a, b) = tokio::io::duplex(1 << 20);
    let t = Timeouts {
        idle: Duration::from_secs(5),
        stall: Duration::from_secs(5),
    };
    let mut client = FrameIo::new(a, t, "test");
    let stop = CancellationToken::new();
    let server = spool.receive(b, "pool01.site1.example", Duration::from_secs(5), &stop);
    let client = async move {
        for f in &frames {
            client.send(f, true).await.unwrap();
        }
        client.close().await;
        let mut got = Vec::new();
        while let Ok(Some(f)) = client.read_frame().await {
            got.push(f);
        }
        got
    };
    let ((_, result), got) = tokio::join!(server, client);
    (got, result)
}

fn offer(data: &[u8]) -> Metadata {
    let (size, sha) = digest_stream(data).unwrap();
    Metadata::new("x.bin", size, &sha).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_acks_dedupes_and_refuses_a_bad_digest() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::from_store(store(dir.path()));
    let data: Vec<u8> = (0..150_000u32).map(|i| (i % 13) as u8).collect();
    let m = offer(&data);
    let hello = Frame::Hello { version: VERSION };
    let frames = vec![
        hello.clone(),
        Frame::Offer(m.clone()),
        Frame::Data(data[..70_000].to_vec()),
        Frame::Data(data[70_000..].to_vec()),
        Frame::End,
        Frame::Offer(m.clone()),
    ];
    let (got, result) = exchange(&spool, frames).await;
    result.unwrap();
    assert_eq!(
        got,
        vec![
            hello.clone(),
            Frame::Accept { offset: 0 },
            Frame::Ack { id: m.id.clone() },
            Frame::Already { id: m.id.clone() },
        ]
    );
    let sealed = std::fs::read(spool.store.path(Area::Incoming, &m.id)).unwrap();
    let mut out = Vec::new();
    let meta = decrypt_stream(&sealed[..], &mut out, &spool.store.key).unwrap();
    assert!(out == data);
    assert_eq!(meta.extra["from_pool"], "pool01.site1.example");

    // Same size, different bytes: the digest check refuses it, no ACK.
    let mut lie = offer(b"abc");
    lie.sha256 = m.sha256.clone();
    let frames = vec![
        hello.clone(),
        Frame::Offer(lie.clone()),
        Frame::Data(b"abc".to_vec()),
        Frame::End,
    ];
    let (got, result) = exchange(&spool, frames).await;
    result.unwrap();
    assert!(matches!(got.last(), Some(Frame::Error { .. })), "{got:?}");
    assert!(!spool.store.path(Area::Incoming, &lie.id).exists());
    assert_eq!(
        std::fs::read_dir(spool.store.dirs.root.join("tmp"))
            .unwrap()
            .count(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_violations_close_the_connection_and_leave_no_tmp() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::from_store(store(dir.path()));
    let m = offer(b"abcd");
    let (_, result) = exchange(&spool, vec![Frame::Offer(m.clone())]).await;
    assert!(matches!(
        result,
        Err(SpoolError::Wire(WireError::Sequence { .. }))
    ));
    let frames = vec![
        Frame::Hello { version: VERSION },
        Frame::Offer(m.clone()),
        Frame::Data(b"abcdef".to_vec()),
    ];
    let (got, result) = exchange(&spool, frames).await;
    assert!(matches!(
        result,
        Err(SpoolError::Wire(WireError::Malformed { .. }))
    ));
    assert!(matches!(got.last(), Some(Frame::Error { .. })));
    // Cut off mid-file.
    let frames = vec![
        Frame::Hello { version: VERSION },
        Frame::Offer(m.clone()),
        Frame::Data(b"ab".to_vec()),
    ];
    let (_, result) = exchange(&spool, frames).await;
    assert!(result.is_err());
    assert!(!spool.store.path(Area::Incoming, &m.id).exists());
    assert_eq!(
        std::fs::read_dir(spool.store.dirs.root.join("tmp"))
            .unwrap()
            .count(),
        0
    );
    assert!(spool.store.claims.none_receiving());
}
