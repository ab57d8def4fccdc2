//! Field readiness (issue 12): what operators found running the gateways —
//! reloads that revert or lie, status that says `steady` while a service is
//! dead, counters that appear only after their first event, clock skew.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use crate::harness::*;

/// A second pair in the policy, so a reloaded policy is recognisable.
const NEW_PAIR: &str =
    "\n[[pair]]\npools = [\"pool05.site5.example\", \"pool06.site6.example\"]\nservices = [\"cms-smb\"]\n";

fn mkfifo(path: &Path) {
    let _ = std::fs::remove_file(path);
    let status = Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("run mkfifo");
    assert!(status.success(), "mkfifo {}", path.display());
}

/// A SIGHUP policy reload that lands while a (slow) TLS reload is loading
/// its files must survive that TLS reload's publication. The CRL is a FIFO,
/// so the TLS reload blocks inside `Material::load` — after it looked at the
/// live state — until the test writes the CRL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_reload_during_a_slow_tls_reload_is_not_reverted() {
    let (dir, pki, mut spec) = site_on_disk();
    let crl = pki.0.dir.join("ca.crl");
    std::fs::write(&crl, b"").unwrap();
    spec.crl = Some(crl.clone());
    let config = spec.write(dir.path()).unwrap();
    let (config, policy, material) = pairgate::gateway::load(&config).unwrap();
    let audit = pairgate::audit::AuditLog::open(&config.audit.path).unwrap();
    let running = Arc::new(
        pairgate::gateway::start(config, policy, material, audit)
            .await
            .unwrap(),
    );

    mkfifo(&crl);
    let tls = {
        let running = running.clone();
        std::thread::spawn(move || running.reload_tls("watch"))
    };
    // Opening the FIFO for writing returns once the TLS reload opened it
    // for reading: it is inside Material::load now.
    let writer = {
        let crl = crl.clone();
        tokio::task::spawn_blocking(move || std::fs::OpenOptions::new().write(true).open(crl))
            .await
            .unwrap()
            .unwrap()
    };
    std::fs::write(
        dir.path().join("policy.toml"),
        format!("{POLICY}{NEW_PAIR}"),
    )
    .unwrap();
    let policy_ok = {
        let running = running.clone();
        tokio::task::spawn_blocking(move || running.reload_policy("signal"))
    };
    // The policy reload must not wait for the TLS reload to publish.
    let policy_ok = tokio::time::timeout(Duration::from_secs(30), policy_ok)
        .await
        .ok()
        .map(|r| r.unwrap());
    drop(writer); // an empty CRL: the TLS reload completes
    assert!(tls.join().unwrap(), "the TLS reload succeeds");
    let policy_ok = match policy_ok {
        Some(ok) => ok,
        None => panic!("the policy reload waited for the TLS reload"),
    };
    assert!(policy_ok, "the policy reload succeeds");
    assert_eq!(
        running
            .ctx
            .snapshot()
            .policy
            .peer_of("pool05.site5.example"),
        Some("pool06.site6.example"),
        "the policy published by the reload was reverted by the TLS reload"
    );
    running.ctx.shutdown.stop_token().cancel();
}

/// The audit events of `kind` (e.g. `config_reload`) in file order, with their index.
fn events(gw: &Gateway, kind: &str) -> Vec<(usize, serde_json::Value)> {
    gw.audit_lines()
        .into_iter()
        .enumerate()
        .filter(|(_, v)| v["event"] == kind)
        .collect()
}

/// Waits until `gw` audited `n` events of `kind`; returns them.
fn wait_events(gw: &Gateway, kind: &str, n: usize) -> Vec<(usize, serde_json::Value)> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let found = events(gw, kind);
        if found.len() >= n {
            return found;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {n} {kind} in {}: {:#?}",
            gw.audit_path().display(),
            gw.audit_lines()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// SIGHUP re-reads the config file: garbage is refused as a whole (no
/// policy or certificate reload claims success), a listener change is
/// refused as needing a restart with the key named, and the gateway keeps
/// serving with its running configuration throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_with_a_broken_or_restart_needing_config_reloads_nothing_and_says_why() {
    let pair = Pairing::start().await;
    let config = pair.site2.config();
    let good = std::fs::read_to_string(&config).unwrap();

    std::fs::write(
        &config,
        "[gateway]\npool = \"pool02.site2.example\"\nthis is not toml\n",
    )
    .unwrap();
    pair.site2.0.hangup().unwrap();
    let refused = wait_events(&pair.site2, "config_reload", 1).remove(0).1;
    assert_eq!(refused["ok"], false, "{refused}");
    let error = refused["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("site2.toml:3"),
        "names file and line: {error}"
    );
    assert_eq!(round_trip(pair.tunnel, b"ok").await.unwrap(), b"ok");

    let peer_listen = format!("127.0.0.1:{}", pair.site2_spec.peer_listen);
    let moved = good.replace(&peer_listen, &format!("127.0.0.1:{}", free_port()));
    std::fs::write(&config, moved).unwrap();
    pair.site2.0.hangup().unwrap();
    let restart = wait_events(&pair.site2, "config_reload", 2).remove(1).1;
    assert_eq!(restart["ok"], false, "{restart}");
    assert_eq!(
        restart["restart_needed"],
        serde_json::json!(["peer.listen"])
    );
    assert!(
        restart["error"]
            .as_str()
            .unwrap_or_default()
            .contains("restart"),
        "{restart}"
    );
    assert_eq!(round_trip(pair.tunnel, b"ok").await.unwrap(), b"ok");

    std::fs::write(&config, &good).unwrap();
    pair.site2.0.hangup().unwrap();
    let reloads = wait_events(&pair.site2, "config_reload", 3);
    assert_eq!(reloads[2].1["ok"], true, "{:?}", reloads[2]);
    let policy = wait_events(&pair.site2, "policy_reload", 1);
    let certs = wait_events(&pair.site2, "cert_reload", 1);
    // Only the third SIGHUP reloaded policy and certificates.
    assert_eq!(policy.len(), 1, "{policy:?}");
    assert!(policy[0].0 > reloads[2].0 && policy[0].1["ok"] == true);
    assert!(certs
        .iter()
        .filter(|(_, v)| v["trigger"] == "signal")
        .all(|(i, v)| *i > reloads[2].0 && v["ok"] == true));
    assert_eq!(round_trip(pair.tunnel, b"ok").await.unwrap(), b"ok");
}
