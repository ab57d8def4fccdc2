//! CRLs on real gateways: an older CRL is refused (on reload and at
//! start), an overdue CRL is visible and, under `crl_overdue = "deny"`,
//! refuses peers until it is refreshed.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pairgate::pki::{self, Validity};
use serde_json::Value;
use time::OffsetDateTime;

use super::{json_of, pairgate};
use crate::harness::*;

/// Signs the next CRL of the pairing CA in `ca_dir` (dated `now`, next
/// update 30 days later) and returns its PEM bytes.
fn next_crl(ca_dir: &Path, now: OffsetDateTime) -> Vec<u8> {
    pki::refresh_crl(ca_dir, 30, now).unwrap();
    std::fs::read(ca_dir.join(pki::CRL_FILE)).unwrap()
}

fn crl_numbers(v: &Value) -> Vec<u64> {
    v["crls"]
        .as_array()
        .map(|a| a.iter().filter_map(|c| c["number"].as_u64()).collect())
        .unwrap_or_default()
}

fn wait_reload(gw: &Gateway, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    gw.wait_audit(what, |v| v["event"] == "cert_reload" && pred(v))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_crl_is_refused_on_reload_and_at_start_and_audited() {
    // site2 starts with an empty CRL file (nothing revoked), then gets CRL 1,
    // then CRL 2, then CRL 1 again.
    let crl_dir = tempfile::tempdir().unwrap();
    let site2_crl: PathBuf = crl_dir.path().join("site2.crl");
    std::fs::write(&site2_crl, b"").unwrap();
    let mut pair = Pairing::start_with(|_, site2| site2.crl = Some(site2_crl.clone())).await;
    let ca_dir = pair.pki.0.dir.clone();
    let now = OffsetDateTime::now_utc();
    let crl1 = next_crl(&ca_dir, now);
    // CRL 2 revokes a certificate of another pool: nothing this pair uses.
    let (other, _) = pair.pki.issue("site3", POOL3, Validity::days_from_now(30));
    pki::revoke(
        &pki::RevokeRequest {
            ca_dir: &ca_dir,
            cert: &other,
            reason: pki::RevokeReason::KeyCompromise,
            next_update_days: 30,
        },
        now,
    )
    .unwrap();
    let crl2 = std::fs::read(ca_dir.join(pki::CRL_FILE)).unwrap();

    std::fs::write(&site2_crl, &crl1).unwrap();
    wait_reload(&pair.site2, "CRL 1 loaded", |v| {
        v["ok"] == true && crl_numbers(v) == [1]
    });

    std::fs::write(&site2_crl, &crl2).unwrap();
    wait_reload(&pair.site2, "CRL 2 loaded", |v| {
        v["ok"] == true && crl_numbers(v) == [2]
    });

    // Back to CRL 1: refused, audited, CRL 2 stays in force.
    std::fs::write(&site2_crl, &crl1).unwrap();
    let refused = wait_reload(&pair.site2, "CRL 1 refused", |v| v["ok"] == false);
    let error = refused["error"].as_str().unwrap();
    assert!(
        error.contains("CRL number 1") && error.contains("number 2 in force"),
        "{error}"
    );
    assert_eq!(crl_numbers(&refused), [2], "the CRL in force is recorded");
    let back = round_trip(pair.tunnel, b"still paired").await.unwrap();
    assert_eq!(back, b"still paired");

    // `check` sees the rollback too (it reads the kept copy).
    let config = pair.site2.config();
    let out = pairgate(&["check", "--json", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let doc = json_of(&out);
    assert!(doc["crl"]["refused"]
        .as_str()
        .unwrap()
        .contains("CRL number 1"));
    assert_eq!(crl_numbers(&doc["crl"]), [2]);

    // A restart does not forget: CRL 2 is enforced, the refusal audited.
    pair.site2.terminate();
    pair.site2 = Gateway::start(&config);
    let at_start = wait_reload(&pair.site2, "refused at start", |v| {
        v["trigger"] == "start" && v["ok"] == false
    });
    assert_eq!(crl_numbers(&at_start), [2]);
    let back = round_trip(pair.tunnel, b"after restart").await.unwrap();
    assert_eq!(back, b"after restart");
}

/// Writes `crl_overdue = "deny"` into a site's `[tls]` section.
fn deny_overdue(config: &Path) {
    let text = std::fs::read_to_string(config).unwrap();
    let text = text.replacen("[tls]\n", "[tls]\ncrl_overdue = \"deny\"\n", 1);
    std::fs::write(config, text).unwrap();
}

async fn gauge(admin: SocketAddr, name: &str) -> Option<f64> {
    let reply = pairgate::admin::client::get(admin, "/metrics")
        .await
        .unwrap();
    let lines = reply.body.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).unwrap();
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name)
        .and_then(|s| match s.value {
            prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => Some(v),
            _ => None,
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overdue_crl_is_visible_and_refuses_peers_under_deny() {
    let admin_port = free_port();
    let mut pair = Pairing::start_with(|site1, _| {
        site1.extra = format!("\n[admin]\nlisten = \"127.0.0.1:{admin_port}\"\n");
    })
    .await;
    let ca_dir = pair.pki.0.dir.clone();
    // Issued 40 days ago, due 10 days ago.
    let overdue = next_crl(
        &ca_dir,
        OffsetDateTime::now_utc() - time::Duration::days(40),
    );
    let crl = pair.dir.path().join("overdue.crl");
    std::fs::write(&crl, &overdue).unwrap();
    for site in [&mut pair.site1_spec, &mut pair.site2_spec] {
        site.crl = Some(crl.clone());
        site.write(pair.dir.path()).unwrap();
    }
    pair.site1.terminate();
    pair.site2.terminate();
    pair.site2 = Gateway::start(&pair.site2_spec.write(pair.dir.path()).unwrap());
    pair.site1 = Gateway::start(&pair.site1_spec.write(pair.dir.path()).unwrap());

    // Under "warn" (the default): traffic flows, the overdue CRL shows.
    let back = round_trip(pair.tunnel, b"warn only").await.unwrap();
    assert_eq!(back, b"warn only");
    let site1_config = pair.site1.config();
    let out = pairgate(&[
        "check",
        "--json",
        "--config",
        site1_config.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let doc = json_of(&out);
    assert_eq!(doc["crl"]["overdue"], true, "{doc:#}");
    assert_eq!(doc["crl"]["crl_overdue"], "warn");
    assert_eq!(doc["crl"]["crls"][0]["overdue"], true);
    assert!(String::from_utf8_lossy(&out.stderr).contains("OVERDUE"));
    let admin: SocketAddr = ([127, 0, 0, 1], admin_port).into();
    let next_update = gauge(admin, "pairgate_crl_next_update_seconds")
        .await
        .expect("the CRL gauge");
    let now = OffsetDateTime::now_utc().unix_timestamp() as f64;
    assert!(next_update < now - 9.0 * 86_400.0, "{next_update} vs {now}");
    // …and in `/status` and `pairgate status` (both forms).
    let reply = pairgate::admin::client::get(admin, "/status")
        .await
        .unwrap();
    let status: Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(status["crl"]["overdue"], true, "{status:#}");
    assert_eq!(status["crl"]["crl_overdue"], "warn");
    assert_eq!(status["crl"]["crls"][0]["overdue"], true);
    assert_eq!(status["crl"]["crls"][0]["number"], 1);
    let config = site1_config.to_str().unwrap();
    let out = pairgate(&["status", "--json", "--config", config]);
    assert_eq!(json_of(&out)["crl"]["overdue"], true, "{out:?}");
    let out = pairgate(&["status", "--config", config]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("number 1") && text.contains("OVERDUE"),
        "{text}"
    );

    // Under "deny" at site2: site1's connections are refused, audited.
    pair.site2.terminate();
    let site2_config = pair.site2_spec.write(pair.dir.path()).unwrap();
    deny_overdue(&site2_config);
    pair.site2 = Gateway::start(&site2_config);
    let back = round_trip(pair.tunnel, b"refused")
        .await
        .unwrap_or_default();
    assert!(back.is_empty());
    let v = pair.site2.wait_audit("crl_overdue denial", |v| {
        v["event"] == "connection" && v["reason"] == "crl_overdue"
    });
    assert_eq!(v["decision"], "deny");
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("revocation list expired"),
        "{v}"
    );

    // A fresh CRL (a higher number) lifts it without a restart.
    let fresh = next_crl(&ca_dir, OffsetDateTime::now_utc());
    std::fs::write(&crl, &fresh).unwrap();
    pair.site2.wait_audit("fresh CRL", |v| {
        v["event"] == "cert_reload" && v["ok"] == true
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if round_trip(pair.tunnel, b"fresh").await.unwrap_or_default() == b"fresh" {
            break;
        }
        assert!(Instant::now() < deadline, "still refused after a fresh CRL");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
