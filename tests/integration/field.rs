//! Field readiness (issue 12): what operators found running the gateways —
//! reloads that revert or lie, status that says `steady` while a service is
//! dead, counters that appear only after their first event, clock skew.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

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
            .peer
            .snapshot()
            .policy
            .peer_of("pool05.site5.example"),
        Some("pool06.site6.example"),
        "the policy published by the reload was reverted by the TLS reload"
    );
    running.ctx.peer.shutdown.stop_token().cancel();
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

pub async fn admin_get(addr: SocketAddr, path: &str) -> String {
    let reply = pairgate::admin::client::get(addr, path)
        .await
        .expect("admin endpoint");
    assert_eq!(reply.status, 200, "{path}: {}", reply.body);
    reply.body
}

async fn status_of(addr: SocketAddr) -> Value {
    serde_json::from_str(&admin_get(addr, "/status").await).unwrap()
}

/// Polls /status until `pred` holds.
pub async fn wait_status(addr: SocketAddr, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = status_of(addr).await;
        if pred(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "status never showed {what}: {s:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// (metric, sorted labels, value) of one scalar sample.
type Sample = (String, Vec<(String, String)>, f64);

/// Every scalar sample, and the declared families.
fn scrape(text: &str) -> (Vec<Sample>, Vec<String>) {
    let families = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let parsed = prometheus_parse::Scrape::parse(lines).expect("valid exposition");
    let samples = parsed
        .samples
        .into_iter()
        .map(|s| {
            let v = match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => 0.0,
            };
            let mut labels: Vec<(String, String)> = s
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            labels.sort();
            (s.metric, labels, v)
        })
        .collect();
    (samples, families)
}

pub fn value_of(text: &str, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut want: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    want.sort();
    scrape(text)
        .0
        .into_iter()
        .find(|(m, l, _)| m == metric && *l == want)
        .map(|(_, _, v)| v)
}

pub fn with_admin(spec: &mut SiteSpec) -> SocketAddr {
    let port = free_port();
    spec.extra += &format!("\n[admin]\nlisten = \"127.0.0.1:{port}\"\n");
    ([127, 0, 0, 1], port).into()
}

/// A fresh gateway shows every series an `increase()` alert needs at 0:
/// each denial reason per direction, each reload outcome, each configured
/// service's connections — so the first intruder is an increase, not the
/// birth of a series. And no family is empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_gateway_exposes_its_known_series_at_zero() {
    let (dir, _pki, mut spec) = site_on_disk();
    let admin = with_admin(&mut spec);
    let site1 = Gateway::start(&spec.write(dir.path()).unwrap());
    let text = admin_get(admin, "/metrics").await;
    let (samples, families) = scrape(&text);
    for family in &families {
        assert!(
            samples
                .iter()
                .any(|(m, _, _)| m.starts_with(family.as_str())),
            "family {family} has no series on a fresh gateway:\n{text}"
        );
    }
    let reasons = [
        "no_client_cert",
        "bad_certificate",
        "unknown_ca",
        "expired",
        "not_yet_valid",
        "revoked",
        "not_paired",
        "service_not_allowed",
        "source_not_allowed",
        "handshake_timeout",
        "too_many_connections",
        "handshake_failed",
        "peer_unreachable",
    ];
    for direction in ["inbound", "outbound"] {
        for reason in reasons {
            let labels = [("direction", direction), ("reason", reason)];
            assert_eq!(
                value_of(&text, "pairgate_denials_total", &labels),
                Some(0.0),
                "{labels:?}"
            );
        }
        let labels = [("direction", direction), ("reason", "unknown_ca")];
        assert_eq!(
            value_of(&text, "pairgate_handshake_failures_total", &labels),
            Some(0.0)
        );
    }
    for what in ["policy", "certificates", "config"] {
        for result in ["ok", "error"] {
            let labels = [("what", what), ("result", result)];
            assert_eq!(
                value_of(&text, "pairgate_reloads_total", &labels),
                Some(0.0),
                "{labels:?}"
            );
        }
    }
    // site1 tunnels backup-smb (outbound) and exports it (inbound).
    for direction in ["outbound", "inbound"] {
        for decision in ["allow", "deny"] {
            let labels = [
                ("direction", direction),
                ("service", "backup-smb"),
                ("decision", decision),
            ];
            assert_eq!(
                value_of(&text, "pairgate_connections_total", &labels),
                Some(0.0),
                "{labels:?}"
            );
        }
        for result in ["ok", "failed"] {
            let labels = [
                ("direction", direction),
                ("service", "backup-smb"),
                ("result", result),
            ];
            assert_eq!(
                value_of(&text, "pairgate_sessions_total", &labels),
                Some(0.0),
                "{labels:?}"
            );
        }
    }
    drop(site1);
}

/// `steady` covers the spool only: each tunnelled and exported service has
/// its own row — last success (time, bytes), last failure (time, reason),
/// sessions in the last interval — so a dead SMB path shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_whether_each_service_works() {
    let dead_target: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let mut admins = (None, None);
    let mut pair = Pairing::start_with(|site1, site2| {
        admins.0 = Some(with_admin(site1));
        admins.1 = Some(with_admin(site2));
        site2.exports[1].1 = dead_target; // cms-smb: nothing listens
    })
    .await;
    let (admin1, admin2) = (admins.0.unwrap(), admins.1.unwrap());
    let fresh = status_of(admin1).await;
    let row = |s: &Value, service: &str, direction: &str| -> Value {
        s["services"]
            .as_array()
            .and_then(|rows| {
                rows.iter()
                    .find(|r| r["service"] == service && r["direction"] == direction)
                    .cloned()
            })
            .unwrap_or_else(|| panic!("no {direction} row for {service}: {s:#}"))
    };
    assert_eq!(row(&fresh, "backup-smb", "outbound")["state"], "idle");
    assert_eq!(row(&fresh, "backup-smb", "outbound")["role"], "tunnel");

    let payload = pattern(10_000);
    assert_eq!(round_trip(pair.tunnel, &payload).await.unwrap(), payload);
    let s = wait_status(admin1, "a backup-smb success", |s| {
        row(s, "backup-smb", "outbound")["state"] == "ok"
    })
    .await;
    let ok = row(&s, "backup-smb", "outbound");
    assert_eq!(ok["last_success"]["bytes_in"], 10_000, "{ok:#}");
    assert_eq!(ok["sessions_in_interval"]["ok"], 1, "{ok:#}");
    assert!(ok["last_failure"].is_null(), "{ok:#}");

    // The export target of cms-smb is down: site2's export row says so.
    let _ = round_trip(pair.cms_tunnel, b"anyone?").await;
    let s = wait_status(admin2, "a cms-smb failure", |s| {
        row(s, "cms-smb", "inbound")["state"] == "failing"
    })
    .await;
    let failing = row(&s, "cms-smb", "inbound");
    assert_eq!(failing["role"], "export");
    assert!(failing["last_failure"]["reason"].is_string(), "{failing:#}");
    assert!(failing["last_failure"]["at"].is_string(), "{failing:#}");
    assert_eq!(failing["sessions_in_interval"]["failed"], 1, "{failing:#}");
    assert_eq!(row(&s, "backup-smb", "inbound")["state"], "ok");
    let metrics = admin_get(admin2, "/metrics").await;
    let failed = [
        ("direction", "inbound"),
        ("service", "cms-smb"),
        ("result", "failed"),
    ];
    assert_eq!(
        value_of(&metrics, "pairgate_sessions_total", &failed),
        Some(1.0)
    );
    let last = [("direction", "inbound"), ("service", "cms-smb")];
    assert!(
        value_of(
            &metrics,
            "pairgate_session_last_failure_timestamp_seconds",
            &last
        )
        .is_some_and(|t| t > 1.0e9),
        "{metrics}"
    );

    // The peer gateway is gone: site1's tunnel row turns failing, with the reason.
    pair.site2.terminate();
    let _ = round_trip(pair.tunnel, b"anyone?").await;
    let s = wait_status(admin1, "a backup-smb failure", |s| {
        row(s, "backup-smb", "outbound")["state"] == "failing"
    })
    .await;
    let failing = row(&s, "backup-smb", "outbound");
    assert_eq!(
        failing["last_failure"]["reason"], "peer_unreachable",
        "{failing:#}"
    );
    assert_eq!(
        failing["last_success"]["bytes_in"], 10_000,
        "the success is kept"
    );
}
