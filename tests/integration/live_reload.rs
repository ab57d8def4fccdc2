//! Live reload of what the gateway serves, on real processes: a policy that
//! stops allowing a service closes that service's established connections
//! (audited `policy_changed`) instead of being refused.

use std::time::{Duration, Instant};

use crate::ha::LongSession;
use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_that_drops_a_service_in_use_closes_its_connections() {
    let pair = Pairing::start().await;
    let mut smb = LongSession::open(pair.tunnel).await;
    let mut cms = LongSession::open(pair.cms_tunnel).await;

    // Emergency: backup-smb is switched off in the policy, at both sites.
    let policy = POLICY.replacen(
        "services = [\"backup-smb\", \"cms-smb\", \"spool\"]",
        "services = [\"cms-smb\", \"spool\"]",
        1,
    );
    assert_ne!(policy, POLICY);
    std::fs::write(pair.dir.path().join("policy.toml"), policy).unwrap();
    for gw in [&pair.site1, &pair.site2] {
        gw.0.hangup().unwrap();
        gw.wait_audit("the policy reloaded", |v| {
            v["event"] == "policy_reload" && v["ok"] == true
        });
    }
    // The backup-smb session is closed…
    let deadline = Instant::now() + Duration::from_secs(30);
    while smb.echo().await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "the dropped service's session lives on"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // …audited as closed by the policy change, by the site that reloaded
    // first (the other then sees its peer close the tunnel).
    let closed = pair.site1.wait_audit("a policy_changed close", |v| {
        v["event"] == "connection" && v["reason"] == "policy_changed"
    });
    assert_eq!(closed["service"], "backup-smb");
    assert_eq!(closed["decision"], "deny");
    // The other service's session is untouched, new backup-smb connections are denied.
    cms.echo().await.expect("cms-smb session intact");
    let denied = round_trip(pair.tunnel, b"anyone?").await;
    assert!(
        !matches!(denied, Ok(ref v) if v == b"anyone?"),
        "{denied:?}"
    );
}
