//! `docs/reference.md` stays exact: every config key, audit event, audit
//! field, denial reason and metric the code has is documented there. (The
//! command line is checked by `cli::docs::tests` in the binary, which can
//! walk the clap definitions.)
//!
//! The config keys, events and reasons are read from the source files that
//! define them — the serde structs, the one `as_str` match, the registry's
//! `register` calls — so a new key, event or metric cannot land without its
//! line in the reference; the metrics are also read from a real registry's
//! exposition.

use std::collections::BTreeSet;
use std::path::Path;

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn reference() -> String {
    read("docs/reference.md")
}

/// `GatewayStart` → `gateway_start`.
fn snake(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// The identifier before the first `:` of a `pub name: Type` line.
fn field_name(line: &str) -> Option<&str> {
    let rest = line.trim().strip_prefix("pub ")?;
    let (name, _) = rest.split_once(':')?;
    let name = name.trim();
    name.chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        .then_some(name)
}

fn assert_documented(what: &str, names: &BTreeSet<String>, quoted: impl Fn(&str) -> String) {
    assert!(!names.is_empty(), "found no {what} in the source");
    let doc = reference();
    let missing: Vec<&String> = names.iter().filter(|n| !doc.contains(&quoted(n))).collect();
    assert!(
        missing.is_empty(),
        "{what} missing from docs/reference.md (add a row to its table): {missing:?}"
    );
}

#[test]
fn every_config_key_is_in_the_reference() {
    // `pub(crate) struct RawTls { pub cert: …` → `tls.cert`; the fields of
    // `RawConfig` are the sections themselves.
    let mut keys = BTreeSet::new();
    let mut sections = BTreeSet::new();
    let mut current: Option<String> = None;
    for line in read("src/config/file.rs").lines() {
        if let Some(rest) = line.trim().strip_prefix("pub(crate) struct Raw") {
            let name = rest.trim_end_matches('{').trim();
            current = Some(snake(name));
        } else if line.starts_with('}') {
            current = None;
        } else if let (Some(section), Some(field)) = (&current, field_name(line)) {
            if section == "config" {
                sections.insert(field.to_owned());
            } else {
                keys.insert(format!("{section}.{field}"));
            }
        }
    }
    assert!(keys.contains("tls.cert") && keys.contains("limits.max_connections"));
    assert_documented("config keys", &keys, |k| format!("| `{k}` |"));
    let doc = reference();
    let missing: Vec<&String> = sections
        .iter()
        .filter(|s| !doc.contains(&format!("[{s}]")))
        .collect();
    assert!(missing.is_empty(), "config sections missing: {missing:?}");
}

#[test]
fn every_audit_event_field_and_reason_is_in_the_reference() {
    let source = read("src/audit/event.rs");
    let body = source
        .split_once("pub enum Event {")
        .and_then(|(_, rest)| rest.split_once("\n}"))
        .expect("enum Event in src/audit/event.rs")
        .0;
    let mut events = BTreeSet::new();
    let mut fields = BTreeSet::new();
    for line in body.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if trimmed.starts_with("//") || trimmed.starts_with('#') {
            continue;
        }
        if indent == 4 && trimmed.starts_with(|c: char| c.is_ascii_uppercase()) {
            let name: String = trimmed
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect();
            events.insert(snake(&name));
        } else if indent == 8 {
            // Fields of an inline variant: `pool: String,`.
            if let Some((name, _)) = trimmed.split_once(':') {
                fields.insert(name.trim().to_owned());
            }
        }
    }
    for line in source.lines() {
        if let Some(field) = field_name(line) {
            fields.insert(field.to_owned());
        }
    }
    assert!(events.contains("connection") && events.contains("peer_audit_head"));
    assert!(fields.contains("cert_sha256") && fields.contains("version"));
    assert_documented("audit events", &events, |e| format!("| `{e}` |"));
    assert_documented("audit fields", &fields, |f| format!("`{f}`"));

    let reasons: BTreeSet<String> = read("src/policy/decision.rs")
        .lines()
        .filter(|l| l.contains("DenyReason::") && l.contains("=> \""))
        .filter_map(|l| l.split('"').nth(1).map(str::to_owned))
        .collect();
    assert!(reasons.contains("not_paired") && reasons.contains("peer_unreachable"));
    assert_documented("denial reasons", &reasons, |r| format!("| `{r}` |"));
}

#[test]
fn every_metric_is_in_the_reference() {
    let text = pairgate::admin::Metrics::new().encode();
    let families: BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            let name = parts.next()?;
            let kind = parts.next()?;
            Some(if kind == "counter" {
                format!("{name}_total")
            } else {
                name.to_owned()
            })
        })
        .collect();
    assert!(families.contains("pairgate_up"), "{families:?}");
    assert_documented("metrics", &families, |m| format!("| `{m}` |"));

    // A family shows in the exposition only once it has a series, so also
    // every name registered in the source: `r.register(\n "connections", …`
    // (the registry is built in metrics_register.rs).
    let source = read("src/admin/metrics.rs") + &read("src/admin/metrics_register.rs");
    let registered: BTreeSet<String> = source
        .split(".register(")
        .skip(1)
        .filter_map(|rest| {
            rest.split('"')
                .nth(1)
                .map(|name| format!("pairgate_{name}"))
        })
        .collect();
    assert!(
        registered.contains("pairgate_connections") && registered.contains("pairgate_up"),
        "{registered:?}"
    );
    // Counters are documented with their `_total`: match the name's start.
    assert_documented("metric families", &registered, |m| format!("| `{m}"));
}
