//! Live reload, what happens to what is open and what is bound (issue 16):
//! a removed listener drains (its sessions go on for the grace period, then
//! close, audited `listener_removed`); a narrowed `allow_sources` closes the
//! sessions of clients it no longer admits at once (audited
//! `policy_changed`); a reload is all or nothing — one new listener that
//! cannot bind leaves every other change unapplied; `[admin]` and services
//! added live are served and shown without a restart.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::ha::LongSession;
use crate::harness::*;

const CLIENT_B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 3));

async fn closes(session: &mut LongSession, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while session.echo().await.is_ok() {
        assert!(Instant::now() < deadline, "{what} lives on");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn status(admin: SocketAddr) -> serde_json::Value {
    let reply = pairgate::admin::client::get(admin, "/status")
        .await
        .unwrap();
    serde_json::from_str(&reply.body).unwrap()
}

fn reloaded(gw: &Gateway, n: usize) -> serde_json::Value {
    let lines = gw.wait_audit_count("a config reload", n, |v| v["event"] == "config_reload");
    lines
        .into_iter()
        .filter(|v| v["event"] == "config_reload")
        .nth(n - 1)
        .unwrap()
}

/// Two tunnels, one left unchanged throughout. First SIGHUP narrows the
/// other's `allow_sources`: its session from a client no longer admitted
/// closes at once, the admitted client's goes on. Second SIGHUP removes
/// that tunnel: its session goes on (drain), then closes when the grace
/// period ends. The unchanged tunnel's session is never touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_narrowed_allow_sources_closes_at_once_and_a_removed_tunnel_drains() {
    let mut pair = Pairing::start_with(|s1, _| {
        s1.extra = "\n[limits]\nshutdown_grace_secs = 8\n".into();
    })
    .await;
    let mut unchanged = LongSession::open(pair.tunnel).await;
    let mut admitted = LongSession::open(pair.cms_tunnel).await;
    let mut refused = LongSession::open_from(pair.cms_tunnel, CLIENT_B).await;

    let mut spec = pair.site1_spec.clone();
    spec.tunnels[1].2 = vec!["127.0.0.1/32".into()];
    spec.write(pair.dir.path()).unwrap();
    pair.site1.0.hangup().unwrap();
    assert_eq!(reloaded(&pair.site1, 1)["ok"], true);
    closes(
        &mut refused,
        "a session from a client allow_sources no longer admits",
    )
    .await;
    let cut = pair.site1.wait_audit("the narrowed allow_sources", |v| {
        v["event"] == "connection" && v["reason"] == "policy_changed"
    });
    assert_eq!(cut["service"], "cms-smb", "{cut}");
    assert!(
        cut["client_addr"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.3:"),
        "{cut}"
    );
    assert!(
        cut["detail"].as_str().unwrap().contains("allow_sources"),
        "{cut}"
    );
    admitted
        .echo()
        .await
        .expect("the session of a client still admitted");

    spec.tunnels.pop();
    spec.write(pair.dir.path()).unwrap();
    pair.site1_spec = spec;
    pair.site1.0.hangup().unwrap();
    assert_eq!(reloaded(&pair.site1, 2)["ok"], true);
    // The removed listener accepts no more; its session goes on for now.
    assert!(stops_listening(pair.cms_tunnel).await);
    admitted
        .echo()
        .await
        .expect("a removed listener's session drains, it is not cut at once");
    // The grace period ends: the removed listener's session is closed, audited.
    closes(&mut admitted, "the removed listener's session").await;
    let drained = pair.site1.wait_audit("the drained session", |v| {
        v["event"] == "connection" && v["reason"] == "listener_removed"
    });
    assert_eq!(drained["service"], "cms-smb", "{drained}");
    assert_eq!(drained["decision"], "deny", "{drained}");
    let lines = pair.site1.audit_lines();
    let cut = lines
        .iter()
        .filter(|v| v["reason"] == "policy_changed" || v["reason"] == "listener_removed")
        .count();
    assert_eq!(cut, 2, "only the two sessions were cut: {lines:#?}");
    unchanged
        .echo()
        .await
        .expect("the unchanged tunnel's session");
}

/// A reload is all or nothing: a new tunnel and a moved admin endpoint
/// whose address is taken → refused as a whole (the new tunnel is not
/// bound, the old endpoint serves, `/status` says why). Then a valid move:
/// the endpoint answers at its new address, the old one is gone, the
/// tunnel added for a service new to this gateway serves and has its
/// `/status` row and metric series at once, and the new sync interval is
/// in force.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_binds_everything_first_and_admin_moves_live() {
    let admin_port = free_port();
    let pair = Pairing::start_with(|s1, _| {
        s1.tunnels.truncate(1);
        s1.extra = format!("\n[admin]\nlisten = \"127.0.0.1:{admin_port}\"\n");
    })
    .await;
    let admin: SocketAddr = ([127, 0, 0, 1], admin_port).into();
    let before = status(admin).await;
    assert!(
        !before["services"].to_string().contains("cms-smb"),
        "{before}"
    );

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap();
    let new_tunnel = free_port();
    let mut spec = pair.site1_spec.clone();
    spec.tunnels
        .push(("cms-smb".into(), new_tunnel, vec!["127.0.0.0/8".into()]));
    spec.extra = format!("\n[admin]\nlisten = \"{taken_addr}\"\nsync_interval_secs = 120\n");
    spec.write(pair.dir.path()).unwrap();
    pair.site1.0.hangup().unwrap();
    let refusal = reloaded(&pair.site1, 1);
    assert_eq!(refusal["ok"], false, "{refusal}");
    let error = refusal["error"].as_str().unwrap();
    assert!(error.contains(&taken_addr.to_string()), "{error}");
    let new_tunnel: SocketAddr = ([127, 0, 0, 1], new_tunnel).into();
    assert!(
        tokio::net::TcpStream::connect(new_tunnel).await.is_err(),
        "a refused reload bound its new tunnel anyway"
    );
    let shown = status(admin).await;
    assert_eq!(shown["last_config_reload"]["ok"], false, "{shown}");

    let moved = free_port();
    spec.extra = format!("\n[admin]\nlisten = \"127.0.0.1:{moved}\"\nsync_interval_secs = 120\n");
    spec.write(pair.dir.path()).unwrap();
    pair.site1.0.hangup().unwrap();
    let applied = reloaded(&pair.site1, 2);
    assert_eq!(applied["ok"], true, "{applied}");
    let moved: SocketAddr = ([127, 0, 0, 1], moved).into();
    let now = status(moved).await;
    assert_eq!(now["sync_interval_secs"], 120, "{now}");
    assert!(
        pairgate::admin::client::get(admin, "/status")
            .await
            .is_err(),
        "the old admin address still answers"
    );
    // The new service is shown and counted from 0 before any traffic…
    let row = now["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service"] == "cms-smb")
        .cloned();
    assert!(row.is_some(), "no cms-smb row: {now}");
    let metrics = pairgate::admin::client::get(moved, "/metrics")
        .await
        .unwrap()
        .body;
    assert!(
        metrics.contains(
            "pairgate_connections_total{direction=\"outbound\",service=\"cms-smb\",decision=\"allow\"} 0"
        ),
        "{metrics}"
    );
    // …and serves.
    assert_eq!(round_trip(new_tunnel, b"cms").await.unwrap(), b"cms");
    drop(taken);
}

/// An export removed live drains like a removed listener: the next inbound
/// connection for it is refused, the open session goes on for the grace
/// period and is then closed, audited at the exporting site.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_export_drains_its_open_sessions() {
    let mut pair = Pairing::start_with(|_, s2| {
        s2.extra = "\n[limits]\nshutdown_grace_secs = 4\n".into();
    })
    .await;
    let mut kept = LongSession::open(pair.tunnel).await;
    let mut cms = LongSession::open(pair.cms_tunnel).await;
    let mut spec = pair.site2_spec.clone();
    spec.exports.retain(|(service, _)| service != "cms-smb");
    spec.write(pair.dir.path()).unwrap();
    pair.site2_spec = spec;
    pair.site2.0.hangup().unwrap();
    assert_eq!(reloaded(&pair.site2, 1)["ok"], true);
    cms.echo()
        .await
        .expect("a removed export's session drains, it is not cut at once");
    closes(&mut cms, "the removed export's session").await;
    let drained = pair.site2.wait_audit("the drained export session", |v| {
        v["event"] == "connection" && v["reason"] == "listener_removed"
    });
    assert_eq!(drained["direction"], "inbound", "{drained}");
    assert_eq!(drained["service"], "cms-smb", "{drained}");
    kept.echo().await.expect("the other export's session");
}

/// An intercept's `destinations` narrowed live (own network namespace,
/// real nftables redirect): the open session to the server no longer
/// admitted closes at once, audited `policy_changed` with its `orig_dst`;
/// the session to the server still admitted goes on.
#[test]
fn a_narrowed_intercept_destinations_closes_sessions_to_servers_it_no_longer_admits() {
    use crate::netns::{self, FRONT_END, GATEWAY1, SERVER_A, SERVER_B};
    if !netns::isolate(
        "live_drain::a_narrowed_intercept_destinations_closes_sessions_to_servers_it_no_longer_admits",
    ) {
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        for server in [SERVER_A, SERVER_B] {
            pairgate_lab::echo_backend_at(SocketAddr::from((server, 445)))
                .await
                .unwrap();
        }
        let listen = SocketAddr::from((GATEWAY1, 15445));
        let intercept = |destinations: &str| {
            format!(
                "\n[[intercept]]\nservice = \"backup-smb\"\nlisten = \"{listen}\"\n\
                 allow_sources = [\"{FRONT_END}\"]\ndestinations = [{destinations}]\nports = [445]\n"
            )
        };
        let both = format!("\"{SERVER_A}\", \"{SERVER_B}\"");
        let mut pair = Pairing::start_with(|site1, site2| {
            site1.extra = intercept(&both);
            site2.exports.clear();
            site2.extra = format!(
                "\n[[export]]\nservice = \"backup-smb\"\ndestinations = [{both}]\nports = [445]\n"
            );
        })
        .await;
        netns::interception(listen)
            .apply()
            .expect("load the ruleset");
        let mut to_a = LongSession::open(SocketAddr::from((SERVER_A, 445))).await;
        let mut to_b = LongSession::open(SocketAddr::from((SERVER_B, 445))).await;

        let mut spec = pair.site1_spec.clone();
        spec.extra = intercept(&format!("\"{SERVER_B}\""));
        spec.write(pair.dir.path()).unwrap();
        pair.site1_spec = spec;
        pair.site1.0.hangup().unwrap();
        assert_eq!(reloaded(&pair.site1, 1)["ok"], true);
        closes(&mut to_a, "the session to a server no longer admitted").await;
        let cut = pair.site1.wait_audit("the narrowed destinations", |v| {
            v["event"] == "connection" && v["reason"] == "policy_changed"
        });
        assert_eq!(cut["orig_dst"], format!("{SERVER_A}:445"), "{cut}");
        assert!(cut["detail"].as_str().unwrap().contains("destinations"), "{cut}");
        to_b.echo().await.expect("the session to the server still admitted");
    });
}
