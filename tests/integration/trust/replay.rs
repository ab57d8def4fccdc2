//! Spool replay window: a sealed file created longer ago than the
//! receiver's `spool.max_age_days` (a copy put back into `outgoing/` after
//! the receiver pruned its delivery marker) is refused for good, audited
//! `spool_replayed`, quarantined at the sender and never delivered.

use std::io::Write;

use pairgate::spool::{seal_stream, Area, MasterKey, Metadata, Sealer};

use crate::harness::*;
use crate::spool::{drop_file, spool_pairing, walk};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_file_older_than_the_window_is_refused_and_quarantined() {
    let (mut pair, d1, d2, _root) = spool_pairing().await;
    // A fresh file goes through: the window does not hurt normal traffic.
    drop_file(&d1.outbox, "fresh.bak", b"fresh data");
    pair.site2.wait_audit("fresh delivered", |v| {
        v["event"] == "spool_delivered" && v["name"] == "fresh.bak"
    });

    // An authentic sealed file made 40 days ago, put back into outgoing/.
    pair.site1.terminate();
    let config = pair.site1.config();
    let text = std::fs::read_to_string(&config).unwrap();
    let key_path = text
        .lines()
        .find_map(|l| l.strip_prefix("key = \"").filter(|k| k.contains("spool")))
        .map(|k| k.trim_end_matches('"').to_owned())
        .unwrap();
    let key = MasterKey::load_key_file(std::path::Path::new(&key_path)).unwrap();
    let data = b"last month's payroll export";
    let sha = hex::encode(ring::digest::digest(&ring::digest::SHA256, data));
    let mut meta = Metadata::new("replayed.bak", data.len() as u64, &sha).unwrap();
    meta.created = time::OffsetDateTime::now_utc() - time::Duration::days(40);
    let out = d1
        .spool
        .join(Area::Outgoing.dir())
        .join(format!("{}.pgs", meta.id));
    let mut file = std::fs::File::create(&out).unwrap();
    seal_stream(Sealer::random(&key, &meta).unwrap(), &data[..], &mut file).unwrap();
    file.flush().unwrap();
    drop(file);
    pair.site1 = Gateway::start(&config);

    let refused = pair.site2.wait_audit("spool_replayed", |v| {
        v["event"] == "spool_replayed" && v["name"] == "replayed.bak"
    });
    assert_eq!(refused["id"], meta.id.as_str());
    assert!(
        refused["reason"]
            .as_str()
            .unwrap()
            .contains("max_age_days = 30"),
        "{refused}"
    );
    let quarantined = pair.site1.wait_audit("quarantined at the sender", |v| {
        v["event"] == "spool_quarantined" && v["name"] == "replayed.bak"
    });
    assert!(
        quarantined["reason"]
            .as_str()
            .unwrap()
            .starts_with("replayed"),
        "{quarantined}"
    );
    assert!(!out.exists(), "no longer offered");
    assert!(!walk(&d1.spool.join(Area::Quarantine.dir())).is_empty());
    assert!(!d2.inbox.join("replayed.bak").exists());
    assert!(d2.inbox.join("fresh.bak").exists());
    // Refused for good: offered once, not in a loop.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let offers = pair
        .site2
        .audit_lines()
        .iter()
        .filter(|v| v["event"] == "spool_replayed")
        .count();
    assert_eq!(offers, 1);
}
