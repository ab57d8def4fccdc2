//! What the read commands print: one table style (Unicode boxes, the
//! style of `pairgate status`) wherever a table is drawn, and `--json` on
//! every read command, with the same exit code as the text form.

use serde_json::Value;

use crate::quickstart::{prepared_clone, text};

fn json_of(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not one JSON document ({e}):\n{}", text(out)))
}

#[test]
fn every_read_command_speaks_json_and_tables_look_alike() {
    let clone = prepared_clone();
    {
        let audit = pairgate::audit::AuditLog::open(&clone.path().join("audit.jsonl")).unwrap();
        audit.record(pairgate::audit::Event::GatewayStop {
            reason: "test".into(),
        });
        audit.flush().unwrap();
    }
    for line in [
        "pairgate check --config policy/site1.toml --json",
        "pairgate policy check policy/pairing.toml --json",
        "pairgate cert inspect certs/site1.crt --json",
        "pairgate cert check certs/site1.crt --json",
        "pairgate ca crl --dir certs/ca --json",
        "pairgate audit verify --log audit.jsonl --json",
        "pairgate audit summary --log audit.jsonl --json",
        "pairgate spool ls --config policy/site1.toml --json",
        "pairgate spool verify --config policy/site1.toml --json",
    ] {
        let out = clone.run(line);
        assert!(out.status.success(), "`{line}`: {}", text(&out));
        json_of(&out);
    }
    // `audit query --json` prints the matching lines verbatim: JSON lines.
    let out = clone.run("pairgate audit query --log audit.jsonl --json");
    assert!(out.status.success(), "{}", text(&out));
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        serde_json::from_str::<Value>(line).unwrap();
    }

    for line in [
        "pairgate spool ls --config policy/site1.toml",
        "pairgate audit summary --log audit.jsonl",
        "pairgate cert inspect certs/site1.crt",
    ] {
        let out = clone.run(line);
        let shown = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "`{line}`: {}", text(&out));
        assert!(
            shown.contains('┌') && shown.contains('└') && !shown.contains("+--"),
            "`{line}` draws the status style:\n{shown}"
        );
    }
}

#[test]
fn spool_verify_json_names_each_bad_file_with_exit_1() {
    let clone = prepared_clone();
    // Opening the spool makes its folders; then a file that is no spool file.
    let out = clone.run("pairgate spool verify --config policy/site1.toml --json");
    assert!(out.status.success(), "{}", text(&out));
    let v = json_of(&out);
    assert_eq!(
        (&v["ok"], &v["good"], &v["bad"]),
        (&Value::Bool(true), &Value::from(0), &Value::Array(vec![]))
    );
    let junk = clone.path().join("var/site1/spool/outgoing/junk.pgs");
    std::fs::write(&junk, b"not a spool file").unwrap();
    let out = clone.run("pairgate spool verify --config policy/site1.toml --json");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let v = json_of(&out);
    assert_eq!(v["ok"], Value::Bool(false));
    let bad = v["bad"].as_array().unwrap();
    assert_eq!(bad.len(), 1, "{v}");
    assert!(
        bad[0]["path"].as_str().unwrap().ends_with("junk.pgs"),
        "{v}"
    );
    assert!(!bad[0]["reason"].as_str().unwrap().is_empty(), "{v}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("junk.pgs"), "{err}");
}

/// The demo's and the bench's tables (drawn by the lab, which does not link
/// the library) look exactly like every other table pairgate prints.
#[test]
fn the_lab_draws_tables_in_the_same_style() {
    let draw = |mut table: comfy_table::Table| {
        table
            .set_header(["site", "allowed", "chain"])
            .add_row(["site1", "12", "intact, 40 lines"])
            .add_row(["site2", "3", "intact, 9 lines"]);
        table.to_string()
    };
    assert_eq!(
        draw(pairgate_lab::table::new()),
        draw(pairgate::table::new())
    );
}
