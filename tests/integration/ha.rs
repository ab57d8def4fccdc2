//! Two gateways per site: two instances of one site share one outbox, each
//! with its own spool dir; every file is taken by exactly one of them.

use std::collections::BTreeMap;
use std::path::Path;

use crate::harness::*;
use crate::spool::{content, drop_file, files_in, spool_pairing, wait_until};

/// A second instance of `spec`'s site: own ports, own audit log, own spool
/// dir (`spool_dir`), everything else (outbox, inbox, key, certificate) shared.
pub(crate) fn second_instance(spec: &SiteSpec, own_spool: &Path, shared_spool: &Path) -> SiteSpec {
    let mut b = spec.clone();
    b.name = format!("{}b", spec.name);
    b.peer_listen = free_port();
    b.tunnels = spec
        .tunnels
        .iter()
        .map(|(service, _, sources)| (service.clone(), free_port(), sources.clone()))
        .collect();
    b.extra = spec.extra.replace(
        &format!("dir = \"{}\"", shared_spool.display()),
        &format!("dir = \"{}\"", own_spool.display()),
    );
    assert_ne!(b.extra, spec.extra, "the spool dir must differ");
    b
}

fn spooled_names(gw: &Gateway) -> Vec<String> {
    gw.audit_lines()
        .iter()
        .filter(|v| v["event"] == "spool_in")
        .map(|v| v["name"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_outbox_take_each_file_once() {
    let (pair, d1, d2, root) = spool_pairing().await;
    let spool_b = root.path().join("site1b-spool");
    let spec_b = second_instance(&pair.site1_spec, &spool_b, &d1.spool);
    let site1b = Gateway::start(&spec_b.write(pair.dir.path()).unwrap());

    let mut want = BTreeMap::new();
    for i in 0..500 {
        let name = format!("package-{i:03}.zip");
        let data = content(format!("HA-{i:03}").as_bytes(), 1500 + i * 7);
        drop_file(&d1.outbox, &name, &data);
        want.insert(name, data);
    }
    wait_until("500 files in the peer's inbox", 120, || {
        files_in(&d2.inbox).len() >= want.len()
    });
    // Everything settles: both outboxes and both spools empty.
    let spooled = |dir: &Path| crate::spool::walk(&dir.join("outgoing")).len();
    wait_until("both instances' spools drained", 60, || {
        files_in(&d1.outbox).is_empty() && spooled(&d1.spool) == 0 && spooled(&spool_b) == 0
    });
    let got = files_in(&d2.inbox);
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "each file delivered exactly once"
    );
    for (name, data) in &want {
        assert!(got[name] == *data, "{name} differs");
    }
    let mut sealed = spooled_names(&pair.site1);
    let from_a = sealed.len();
    sealed.extend(spooled_names(&site1b));
    let total = sealed.len();
    eprintln!("instance a sealed {from_a} of {total}");
    sealed.sort();
    sealed.dedup();
    assert_eq!(
        (total, sealed.len()),
        (500, 500),
        "each file sealed exactly once (instance a took {from_a})"
    );
}
