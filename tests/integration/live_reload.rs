//! Live reload of what the gateway serves, on real processes: tunnels added,
//! removed and changed by SIGHUP under load; a policy that stops allowing a
//! service closes that service's established connections (audited
//! `policy_changed`) instead of being refused.

use std::time::{Duration, Instant};

use crate::ha::{Load, LongSession};
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

/// The reload test. Under load (a stream of new connections and a
/// long session on one tunnel), one SIGHUP applies a tunnel added, a tunnel
/// removed, a changed `allow_sources`, an unused export removed and changed
/// `[limits]`: no connection attempt on the unchanged listener fails, the
/// long session goes on, the new tunnel serves, the removed one refuses,
/// `/status` says the reload was applied. A broken file is then refused as
/// a whole, and a policy that drops the long session's service closes it
/// (audited `policy_changed`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnels_added_removed_and_changed_live_under_load() {
    let admin = free_port();
    let limits = |max: u32, idle: u32| {
        format!("\n[limits]\nmax_connections = {max}\nidle_timeout_secs = {idle}\nmax_handshakes_per_source = 32\n")
    };
    let mut pair = Pairing::start_with(|s1, _| {
        s1.exports = vec![("cms-smb".into(), "127.0.0.1:9".parse().unwrap())];
        s1.extra = format!(
            "\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n{}",
            limits(512, 1800)
        );
    })
    .await;
    let admin: std::net::SocketAddr = ([127, 0, 0, 1], admin).into();
    let load = Load::start(pair.tunnel);
    load.wait_more(20).await;
    let mut long = LongSession::open(pair.tunnel).await;

    let added = free_port();
    let removed = pair.cms_tunnel;
    let mut spec = pair.site1_spec.clone();
    spec.tunnels[0].2 = vec!["127.0.0.1/32".into(), "127.9.0.0/16".into()];
    spec.tunnels[1] = ("cms-smb".into(), added, vec!["127.0.0.0/8".into()]);
    spec.exports.clear();
    spec.extra = format!("\n[admin]\nlisten = \"{admin}\"\n{}", limits(1024, 900));
    spec.write(pair.dir.path()).unwrap();
    pair.site1_spec = spec;
    pair.site1.0.hangup().unwrap();
    let reload = pair
        .site1
        .wait_audit("the config reloaded", |v| v["event"] == "config_reload");
    assert_eq!(reload["ok"], true, "{reload}");
    assert!(reload.get("restart_needed").is_none(), "{reload}");

    let new_tunnel: std::net::SocketAddr = ([127, 0, 0, 1], added).into();
    assert_eq!(round_trip(new_tunnel, b"new").await.unwrap(), b"new");
    assert!(
        stops_listening(removed).await,
        "the removed tunnel still accepts"
    );
    load.wait_more(30).await;
    for _ in 0..3 {
        long.echo().await.expect("the long session is intact");
    }
    let (ok, failed) = load.finish().await;
    assert!(
        failed.is_empty(),
        "{} of {} attempts failed: {failed:?}",
        failed.len(),
        ok + failed.len() as u64
    );
    let status = last_reload(admin).await;
    assert_eq!(status["ok"], true, "{status}");

    // A config that does not validate is refused as a whole; /status says why.
    let config = pair.site1.config();
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("[[tunnel]]", "[[tunel]]")).unwrap();
    pair.site1.0.hangup().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        let status = last_reload(admin).await;
        if status["ok"] == false {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "/status never showed the refused reload"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        status["error"].as_str().unwrap().contains("tunel"),
        "{status}"
    );
    assert_eq!(round_trip(new_tunnel, b"still").await.unwrap(), b"still");

    // Then the policy drops the long session's service (both sites reload;
    // site 1's config file is valid again).
    std::fs::write(&config, &text).unwrap();
    let policy = POLICY.replacen(
        "services = [\"backup-smb\", \"cms-smb\", \"spool\"]",
        "services = [\"cms-smb\", \"spool\"]",
        1,
    );
    std::fs::write(pair.dir.path().join("policy.toml"), policy).unwrap();
    for gw in [&pair.site1, &pair.site2] {
        gw.0.hangup().unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while long.echo().await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "the dropped service's session lives on"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Audited by the site whose reload closed it first.
    let changed =
        |v: &serde_json::Value| v["event"] == "connection" && v["reason"] == "policy_changed";
    let deadline = Instant::now() + Duration::from_secs(30);
    let closed = loop {
        let lines = [pair.site1.audit_lines(), pair.site2.audit_lines()];
        if let Some(v) = lines.into_iter().flatten().find(|v| changed(v)) {
            break v;
        }
        assert!(Instant::now() < deadline, "no policy_changed close audited");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(closed["service"], "backup-smb", "{closed}");
    assert_eq!(round_trip(new_tunnel, b"cms").await.unwrap(), b"cms");
}

async fn last_reload(admin: std::net::SocketAddr) -> serde_json::Value {
    let reply = pairgate::admin::client::get(admin, "/status")
        .await
        .unwrap();
    let status: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    status["last_config_reload"].clone()
}

/// SIGHUP applies `[[export]]` changes to the next inbound connection: an
/// export removed is no longer served, an export re-pointed at a new target
/// sends new connections there, and a session established through the old
/// target goes on untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_removed_and_repointed_live() {
    let mut pair = Pairing::start().await;
    let mut long = LongSession::open(pair.tunnel).await;
    assert_eq!(round_trip(pair.cms_tunnel, b"cms").await.unwrap(), b"cms");

    // The new target answers with the SHA-256 of what it got, not an echo.
    let new_target = digest_backend().await.unwrap();
    let mut spec = pair.site2_spec.clone();
    spec.exports = vec![("backup-smb".into(), new_target)];
    spec.write(pair.dir.path()).unwrap();
    pair.site2_spec = spec;
    pair.site2.0.hangup().unwrap();
    let reload = pair
        .site2
        .wait_audit("the config reloaded", |v| v["event"] == "config_reload");
    assert_eq!(reload["ok"], true, "{reload}");

    let reply = round_trip(pair.tunnel, b"to the new target").await.unwrap();
    assert_eq!(
        reply,
        ring::digest::digest(&ring::digest::SHA256, b"to the new target").as_ref(),
        "the next connection did not reach the new target"
    );
    for _ in 0..3 {
        long.echo()
            .await
            .expect("the session through the old target is intact");
    }
    let removed = round_trip(pair.cms_tunnel, b"cms again").await;
    assert!(
        !matches!(removed, Ok(ref v) if v == b"cms again"),
        "the removed export still serves: {removed:?}"
    );
}

/// SIGHUP applies `[[intercept]]` changes: a new intercept listener is
/// bound and serves (a connection straight to it is decided by it and
/// audited as its service), a removed one stops accepting. (Root: an
/// intercepting gateway marks its sockets.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intercepts_added_and_removed_live() {
    // The intercept tests' precondition (root: CAP_NET_ADMIN for the mark).
    if let Some(why) = pairgate_lab::netns::unavailable() {
        eprintln!("SKIPPED intercepts_added_and_removed_live: {why}");
        return;
    }
    let (old_port, new_port) = (free_port(), free_port());
    let intercept = |service: &str, port: u16| {
        format!(
            "\n[[intercept]]\nservice = \"{service}\"\nlisten = \"127.0.0.1:{port}\"\n\
             allow_sources = [\"127.0.0.0/8\"]\ndestinations = [\"127.0.0.9\"]\nports = [445]\n"
        )
    };
    let mut pair = Pairing::start_with(|s1, _| s1.extra = intercept("backup-smb", old_port)).await;
    let old: std::net::SocketAddr = ([127, 0, 0, 1], old_port).into();
    let new: std::net::SocketAddr = ([127, 0, 0, 1], new_port).into();
    assert!(tokio::net::TcpStream::connect(old).await.is_ok());

    let mut spec = pair.site1_spec.clone();
    spec.extra = intercept("cms-smb", new_port);
    spec.write(pair.dir.path()).unwrap();
    pair.site1_spec = spec;
    pair.site1.0.hangup().unwrap();
    let reload = pair
        .site1
        .wait_audit("the config reloaded", |v| v["event"] == "config_reload");
    assert_eq!(reload["ok"], true, "{reload}");

    // Straight to the new listener (no original destination): refused by it.
    let _direct = tokio::net::TcpStream::connect(new).await.unwrap();
    let refused = pair.site1.wait_audit("the new intercept decided", |v| {
        v["event"] == "connection"
            && v["service"] == "cms-smb"
            && v["reason"] == "destination_not_allowed"
    });
    assert_eq!(refused["direction"], "outbound", "{refused}");
    assert!(
        stops_listening(old).await,
        "the removed intercept still accepts"
    );
    // The tunnels are untouched.
    assert_eq!(round_trip(pair.tunnel, b"tunnel").await.unwrap(), b"tunnel");
}
