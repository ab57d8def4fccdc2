//! The command line as operators and scripts see it: exit codes (0 ok,
//! 1 problem found, 2 invalid input) and messages that name the file.

use std::path::Path;
use std::process::{Command, Output};

use pairgate::pki::Validity;

use crate::harness::*;

fn pairgate(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .output()
        .expect("run pairgate")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn repo(path: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(path)
        .display()
        .to_string()
}

#[test]
fn policy_check_accepts_the_example_and_rejects_each_broken_manifest() {
    let ok = pairgate(&["policy", "check", &repo("policy/pairing.toml")]);
    assert_eq!(code(&ok), 0, "{}", stderr(&ok));
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policy/tests/invalid");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .expect("# expect: line");
        let out = pairgate(&["policy", "check", path.to_str().unwrap()]);
        let err = stderr(&out);
        assert_eq!(code(&out), 2, "{}: {err}", path.display());
        assert!(
            err.contains(expect.trim()),
            "{}: expected {expect:?} in {err}",
            path.display()
        );
        assert!(
            err.contains(path.file_name().unwrap().to_str().unwrap()),
            "message names the file: {err}"
        );
        assert_eq!(err.trim_end().lines().count(), 1, "one clear line: {err}");
        seen += 1;
    }
    assert!(seen >= 4);
}

/// A valid site on disk (nothing running).
fn setup() -> (tempfile::TempDir, Pki, SiteSpec) {
    site_on_disk()
}

#[test]
fn check_accepts_a_good_site_and_names_what_is_wrong_otherwise() {
    let (dir, pki, mut spec) = setup();
    let config = dir.path().join("site1.toml");
    let config_s = config.to_str().unwrap();
    let ok = pairgate(&["check", "--config", config_s]);
    assert_eq!(code(&ok), 0, "{}", stderr(&ok));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("paired with pool02.site2.example"));

    // A key readable by others: refused with the chmod to run.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&spec.cert.1, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = pairgate(&["check", "--config", config_s]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("chmod 600"), "{}", stderr(&out));
    std::fs::set_permissions(&spec.cert.1, std::fs::Permissions::from_mode(0o600)).unwrap();

    // Another certificate's key.
    let other = pki.issue("other", POOL1, Validity::days_from_now(30));
    spec.cert.1 = other.1.clone();
    spec.write(dir.path()).unwrap();
    let out = pairgate(&["check", "--config", config_s]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("other.key"), "{}", stderr(&out));

    // A certificate for another pool than gateway.pool.
    spec.cert = pki.issue("site2", POOL2, Validity::days_from_now(30));
    spec.write(dir.path()).unwrap();
    let out = pairgate(&["check", "--config", config_s]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("site2.crt") && stderr(&out).contains(POOL1),
        "{}",
        stderr(&out)
    );

    // An expired certificate.
    let now = time::OffsetDateTime::now_utc();
    let expired = Validity {
        not_before: now - time::Duration::days(9),
        not_after: now - time::Duration::days(2),
    };
    spec.cert = pki.issue("old", POOL1, expired);
    spec.write(dir.path()).unwrap();
    let out = pairgate(&["check", "--config", config_s]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("expired") && stderr(&out).contains("old.crt"),
        "{}",
        stderr(&out)
    );

    // A certificate from another CA.
    let rogue = Pki::new(&dir.path().join("rogue"), "rogue");
    spec.cert = rogue.issue("rogue-site1", POOL1, Validity::days_from_now(30));
    spec.write(dir.path()).unwrap();
    let out = pairgate(&["check", "--config", config_s]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("rogue-site1.crt"), "{}", stderr(&out));
}

#[test]
fn config_errors_name_file_line_and_key() {
    let (dir, _pki, spec) = setup();
    let config = dir.path().join("site1.toml");
    let config_s = config.to_str().unwrap();

    // Unknown key, with its line.
    let text = spec
        .toml()
        .replace("[peer]\n", "[peer]\nlisten_backlog = 5\n");
    std::fs::write(&config, &text).unwrap();
    let line = text
        .lines()
        .position(|l| l.starts_with("listen_backlog"))
        .unwrap()
        + 1;
    let out = pairgate(&["check", "--config", config_s]);
    assert_eq!(code(&out), 2);
    let err = stderr(&out);
    assert!(
        err.contains(&format!("site1.toml:{line}")) && err.contains("listen_backlog"),
        "{err}"
    );

    // The gateway is not paired with the peer it names.
    let text = spec.toml().replace(
        &format!("peer_pool = \"{POOL2}\""),
        "peer_pool = \"pool04.site4.example\"",
    );
    std::fs::write(&config, &text).unwrap();
    let out = pairgate(&["check", "--config", config_s]);
    assert_eq!(code(&out), 2);
    let err = stderr(&out);
    assert!(
        err.contains("pool04.site4.example") && err.contains("policy.toml"),
        "{err}"
    );

    // A service the pair does not allow.
    let text = spec.toml().replace(
        "service = \"backup-smb\"\nlisten",
        "service = \"cms-https\"\nlisten",
    );
    std::fs::write(&config, &text).unwrap();
    let out = pairgate(&["check", "--config", config_s]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("cms-https"), "{}", stderr(&out));

    // `run` refuses the same invalid config before binding anything.
    let out = pairgate(&["run", "--config", config_s]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("cms-https"), "{}", stderr(&out));
}

#[test]
fn run_reports_a_taken_address_as_a_problem() {
    let (dir, _pki, spec) = setup();
    let _taken = std::net::TcpListener::bind(("127.0.0.1", spec.peer_listen)).unwrap();
    let out = pairgate(&[
        "run",
        "--config",
        dir.path().join("site1.toml").to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("peer.listen"), "{}", stderr(&out));
}

#[test]
fn ca_and_cert_commands() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca");
    let ca_s = ca.to_str().unwrap();
    assert_eq!(
        code(&pairgate(&[
            "ca", "init", "--dir", ca_s, "--name", "Test CA"
        ])),
        0
    );
    // Never overwrites a CA.
    let again = pairgate(&["ca", "init", "--dir", ca_s]);
    assert_eq!(code(&again), 2);
    assert!(stderr(&again).contains("ca.key") || stderr(&again).contains("ca.crt"));

    let prefix = dir.path().join("site1");
    let out = pairgate(&[
        "cert",
        "issue",
        "--ca-dir",
        ca_s,
        "--pool",
        POOL1,
        "--out",
        prefix.to_str().unwrap(),
        "--dns",
        "gw1.site1.example",
        "--ip",
        "127.0.0.1",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("site1.key"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let mode = std::fs::metadata(ca.join("ca.key"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);

    let out = pairgate(&[
        "cert",
        "inspect",
        dir.path().join("site1.crt").to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code(&out), 0);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["sans"],
        serde_json::json!([POOL1, "gw1.site1.example", "127.0.0.1"])
    );
    assert_eq!(v["sha256"].as_str().unwrap().len(), 64);
    assert!(v["days_left"].as_i64().unwrap() > 300);
    for key in ["subject", "issuer", "serial", "not_before", "not_after"] {
        assert!(v[key].is_string(), "{key}");
    }

    let crt = dir.path().join("site1.crt");
    assert_eq!(
        code(&pairgate(&["cert", "check", crt.to_str().unwrap()])),
        0
    );
    let warn = pairgate(&["cert", "check", "--warn-days", "400", crt.to_str().unwrap()]);
    assert_eq!(code(&warn), 1);
    // The gateway config check accepts what the CLI made.
    let bad = pairgate(&[
        "cert",
        "inspect",
        dir.path().join("nope.crt").to_str().unwrap(),
    ]);
    assert_eq!(code(&bad), 2);
    assert!(stderr(&bad).contains("nope.crt"));
}

#[test]
fn audit_verify_finds_tampering_and_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    {
        let audit = pairgate::audit::AuditLog::open(&log).unwrap();
        for i in 0..5 {
            audit.record(pairgate::audit::Event::GatewayStop {
                reason: format!("test {i}"),
            });
        }
        audit.flush().unwrap();
    }
    let log_s = log.to_str().unwrap();
    assert_eq!(code(&pairgate(&["audit", "verify", "--log", log_s])), 0);
    let text = std::fs::read_to_string(&log).unwrap();
    std::fs::write(&log, text.replacen("test 2", "test X", 1)).unwrap();
    let out = pairgate(&["audit", "verify", "--log", log_s]);
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).contains(":4"),
        "the line after the edit breaks the chain: {}",
        stderr(&out)
    );
}

#[test]
fn version_completions_and_man_pages() {
    let out = pairgate(&["--version"]);
    assert_eq!(code(&out), 0);
    let v = String::from_utf8_lossy(&out.stdout);
    assert!(v.starts_with("pairgate 0.") && v.contains("(git "), "{v}");
    let out = pairgate(&["completions", "bash"]);
    assert_eq!(code(&out), 0);
    assert!(String::from_utf8_lossy(&out.stdout).contains("pairgate"));
    let dir = tempfile::tempdir().unwrap();
    let out = pairgate(&["man", "--out", dir.path().to_str().unwrap()]);
    assert_eq!(code(&out), 0);
    let page = std::fs::read_to_string(dir.path().join("pairgate.1")).unwrap();
    assert!(page.contains(".TH pairgate"));
    assert!(dir.path().join("pairgate-run.1").exists());
}

/// Materialises the PKI and keys an example config refers to (paths as in
/// the example, relative to a copy of its folder), then runs `pairgate check`.
fn check_example(example_dir: &str, configs: &[&str], pki_rel: &str, keys: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(example_dir);
    let copy = tmp.path().join("conf");
    std::fs::create_dir_all(&copy).unwrap();
    for entry in std::fs::read_dir(&src).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "toml") {
            std::fs::copy(&p, copy.join(p.file_name().unwrap())).unwrap();
        }
    }
    let certs = copy.join(pki_rel);
    let certs_s = certs.to_str().unwrap();
    // `ca init` writes the CA's first, empty CRL: the `crl` both examples name.
    assert_eq!(code(&pairgate(&["ca", "init", "--dir", certs_s])), 0);
    for config in configs {
        let text = std::fs::read_to_string(copy.join(config)).unwrap();
        let value: toml::Value = toml::from_str(&text).unwrap();
        let pool = value["gateway"]["pool"].as_str().unwrap();
        let cert = value["tls"]["cert"].as_str().unwrap();
        let prefix = copy.join(cert.trim_end_matches(".crt"));
        let out = pairgate(&[
            "cert",
            "issue",
            "--ca-dir",
            certs_s,
            "--pool",
            pool,
            "--out",
            prefix.to_str().unwrap(),
        ]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
    }
    for key in keys {
        let path = copy.join(key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        assert_eq!(
            code(&pairgate(&[
                "spool",
                "keygen",
                "--out",
                path.to_str().unwrap()
            ])),
            0
        );
    }
    for config in configs {
        let out = pairgate(&["check", "--config", copy.join(config).to_str().unwrap()]);
        assert_eq!(code(&out), 0, "{example_dir}/{config}: {}", stderr(&out));
    }
}

#[test]
fn the_example_configs_under_policy_pass_check() {
    check_example(
        "policy",
        &["site1.toml", "site2.toml"],
        "../certs/ca",
        &["../keys/site1-spool.key", "../keys/site2-spool.key"],
    );
}

#[test]
fn the_operator_guide_example_configs_pass_check() {
    check_example(
        "docs/examples",
        &["site1.toml", "site2.toml"],
        "tls",
        &["keys/site1-spool.key", "keys/site2-spool.key"],
    );
}

#[test]
fn the_demo_runs_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().join("demo");
    let out = pairgate(&["demo", "--dir", demo.to_str().unwrap(), "--bulk-mib", "8"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(code(&out), 0, "{text}\n{}", stderr(&out));
    for shown in [
        "no plaintext on disk",
        "disconnected",
        "carried on to the end, intact",
        "intact,",
    ] {
        assert!(text.contains(shown), "demo output lacks {shown:?}:\n{text}");
    }
    // The interception step runs where a namespace can be made (root, CI),
    // and says plainly why not elsewhere.
    let intercepted = if pairgate_lab::netns::unavailable().is_none() {
        "orig_dst=127.0.20.50:445"
    } else {
        "not shown here"
    };
    assert!(
        text.contains(intercepted),
        "demo output lacks {intercepted:?}:\n{text}"
    );
    // What it leaves behind passes the tools it points to.
    let audit = demo.join("site1-audit.jsonl");
    assert_eq!(
        code(&pairgate(&[
            "audit",
            "verify",
            "--log",
            audit.to_str().unwrap()
        ])),
        0
    );
    let again = pairgate(&["demo", "--dir", demo.to_str().unwrap()]);
    assert_ne!(code(&again), 0, "refuses to reuse a demo folder");
}

#[test]
fn read_commands_speak_json() {
    let (dir, _pki, spec) = setup();
    let config = dir.path().join("site1.toml");
    let out = pairgate(&["check", "--json", "--config", config.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["pool"], POOL1);
    assert_eq!(v["certificate"]["sha256"].as_str().unwrap().len(), 64);

    let policy = dir.path().join("policy.toml");
    let out = pairgate(&["policy", "check", "--json", policy.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["pairs"][0]["pools"], serde_json::json!([POOL1, POOL2]));

    let out = pairgate(&[
        "cert",
        "check",
        "--json",
        "--warn-days",
        "1",
        spec.cert.0.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 0);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["verdict"], "ok");
    assert_eq!(v[1]["index"], 2, "the chain's CA is checked too");

    let log = dir.path().join("audit.jsonl");
    {
        let audit = pairgate::audit::AuditLog::open(&log).unwrap();
        audit.record(pairgate::audit::Event::GatewayStop { reason: "x".into() });
        audit.flush().unwrap();
    }
    let out = pairgate(&["audit", "verify", "--json", "--log", log.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["ok"].clone(), v["lines"].clone()),
        (serde_json::json!(true), serde_json::json!(1))
    );
}
