//! Unit tests of `validate.rs`.

use super::*;

/// A complete, valid config; tests edit it. Line numbers matter for the assertions.
pub(crate) const BASE: &str = r#"[gateway]
pool = "pool01.site1.example"
peer_pool = "pool02.site2.example"
policy = "pairing.toml"

[tls]
cert = "certs/site1.crt"
key = "/etc/pairgate/site1.key"
ca = "certs/ca.crt"

[peer]
listen = "127.0.0.1:7443"
connect = "127.0.0.1:7444"

[admin]
listen = "127.0.0.1:9101"

[audit]
path = "audit/site1.jsonl"

[[tunnel]]
service = "backup-smb"
listen = "127.0.0.1:8445"
allow_sources = ["127.0.0.0/8", "127.1.2.3", "::1"]

[[export]]
service = "backup-smb"
target = "127.0.0.1:4450"
"#;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("/srv/pg/site1.toml"))
}

/// The one-line message of the error `text` must produce.
fn error(text: &str) -> String {
    match parse(text) {
        Ok(_) => panic!("config should be invalid:\n{text}"),
        Err(e) => {
            let message = e.to_string();
            assert!(!message.contains('\n'), "one line: {message}");
            message
        }
    }
}

fn edit(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "BASE lacks {from}");
    BASE.replacen(from, to, 1)
}

#[test]
fn base_parses_with_resolved_paths_and_defaults() {
    let config = parse(BASE).map_err(|e| e.to_string());
    let config = config.expect("BASE is valid");
    assert_eq!(config.path, Path::new("/srv/pg/site1.toml"));
    assert_eq!(config.gateway.policy, Path::new("/srv/pg/pairing.toml"));
    assert_eq!(config.tls.cert, Path::new("/srv/pg/certs/site1.crt"));
    assert_eq!(config.tls.key, Path::new("/etc/pairgate/site1.key"));
    assert_eq!(config.tls.crl, None);
    assert!(config.spool.is_none());
    let sources: Vec<String> = config.tunnels[0]
        .allow_sources
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(sources, ["127.0.0.0/8", "127.1.2.3/32", "::1/128"]);
    assert_eq!(config.limits.idle_timeout, Duration::from_secs(1800));
    assert_eq!(config.limits.max_connections, 4096);
    assert_eq!(config.limits.max_handshakes_per_source, 64);
    assert_eq!(config.limits.max_handshakes_per_peer, 2048);
    assert_eq!(config.lines.pool, 2);
    assert_eq!(config.lines.tunnels, [22]);
    assert_eq!(config.lines.exports, [27]);
    assert!(config.exports_service("backup-smb"));
    assert!(!config.exports_service("spool"));
}

#[test]
fn spool_settle_and_stall_are_checked() {
    let spool = |extra: &str| {
        format!("{BASE}\n[spool]\ndir = \"s\"\nkey = \"k\"\noutbox = \"o\"\ninbox = \"i\"\n{extra}")
    };
    let config = parse(&spool("settle_ms = 0\nstall_secs = 5\n")).expect("valid");
    let s = config.spool.expect("spool");
    assert_eq!(
        (s.settle, s.stall),
        (Duration::ZERO, Duration::from_secs(5))
    );
    for (extra, key) in [
        ("stall_secs = 0\n", "spool.stall_secs"),
        ("stall_secs = 7200\n", "spool.stall_secs"),
        ("settle_ms = 700000\n", "spool.settle_ms"),
    ] {
        let message = parse(&spool(extra)).unwrap_err().to_string();
        assert!(message.contains(key), "{message}");
    }
}

#[test]
fn relative_config_path_still_gives_absolute_paths() {
    let config = Config::parse(BASE, Path::new("site1.toml")).map_err(|e| e.to_string());
    let config = config.expect("BASE is valid");
    assert!(config.path.is_absolute() && config.audit.path.is_absolute());
}

#[test]
fn optional_sections_and_limits() {
    let text = format!(
        "{}\n[spool]\ndir = \"s\"\nkey = \"k\"\noutbox = \"o\"\ninbox = \"i\"\nmax_bytes = 1000\n\n[limits]\nidle_timeout_secs = 60\nmax_connections = 8\nmax_handshakes_per_peer = 5\nshutdown_grace_secs = 0\nshutdown_delay_secs = 3\n",
        BASE.replace("[admin]\nlisten = \"127.0.0.1:9101\"\n", "")
    );
    let config = parse(&text).map_err(|e| e.to_string());
    let config = config.expect("valid");
    assert!(config.admin.is_none());
    let spool = config.spool.as_ref().expect("spool section");
    assert_eq!(
        (spool.inbox.as_path(), spool.max_bytes),
        (Path::new("/srv/pg/i"), Some(1000))
    );
    assert_eq!(config.lines.spool, 28);
    assert_eq!(
        (spool.settle, spool.stall),
        (Duration::from_millis(1000), Duration::from_secs(30))
    );
    assert_eq!(config.limits.idle_timeout, Duration::from_secs(60));
    assert_eq!(config.limits.handshake_timeout, Duration::from_secs(10));
    assert_eq!(
        (config.limits.max_connections, config.limits.shutdown_grace),
        (8, Duration::ZERO)
    );
    assert_eq!(config.limits.max_handshakes_per_peer, 5);
    assert_eq!(config.limits.shutdown_delay, Duration::from_secs(3));
    let long = parse(&text.replace("shutdown_delay_secs = 3", "shutdown_delay_secs = 7200"))
        .unwrap_err()
        .to_string();
    assert!(
        long.contains("limits.shutdown_delay_secs") && long.contains("more than an hour"),
        "{long}"
    );
}

#[test]
fn unknown_key_names_line_table_and_fix() {
    let message = error(&edit(
        "connect = \"127.0.0.1:7444\"\n",
        "connect = \"127.0.0.1:7444\"\ntimeout = 5\n",
    ));
    assert!(message.starts_with("/srv/pg/site1.toml:14:1: in [peer]: unknown field `timeout`, expected one of `listen`, `connect`, `heartbeat_secs` — remove it"), "{message}");
    let message = error(&format!("{BASE}\n[metrics]\nlisten = \"127.0.0.1:1\"\n"));
    assert!(
        message.starts_with("/srv/pg/site1.toml:30:2: unknown field `metrics`"),
        "{message}"
    );
}

#[test]
fn toml_syntax_and_type_errors_carry_line_and_column() {
    let message = error(&edit(
        "listen = \"127.0.0.1:7443\"",
        "listen = \"127.0.0.1:7443",
    ));
    assert!(message.starts_with("/srv/pg/site1.toml:12:"), "{message}");
    let message = error(&edit(
        "[[export]]",
        "[limits]\nmax_connections = -1\n\n[[export]]",
    ));
    assert!(
        message.contains("site1.toml:27:19: in [limits]: invalid value: integer `-1`"),
        "{message}"
    );
    let message = error(&BASE.replace("[audit]\npath = \"audit/site1.jsonl\"\n", ""));
    assert!(
        message.contains("missing field `audit` — add it"),
        "{message}"
    );
}

#[test]
fn bad_cidr_names_entry_and_example() {
    let message = error(&edit("\"127.1.2.3\"", "\"127.0.0.300/8\""));
    assert_eq!(
        message,
        "/srv/pg/site1.toml:24: tunnel[0].allow_sources: \"127.0.0.300/8\" is not a CIDR network — write it like \"10.1.2.0/24\" (a bare address like \"10.1.2.3\" means that one host)"
    );
    let message = error(&edit("\"127.1.2.3\"", "\"127.1.2.3/24\""));
    assert!(message.contains("has host bits set — write the network, \"127.1.2.0/24\", or the single host \"127.1.2.3\""), "{message}");
    let message = error(&edit(
        "allow_sources = [\"127.0.0.0/8\", \"127.1.2.3\", \"::1\"]",
        "allow_sources = []",
    ));
    assert!(
        message.contains("site1.toml:24: tunnel[0].allow_sources: is empty"),
        "{message}"
    );
}

#[test]
fn duplicate_listeners_name_both() {
    let message = error(&edit(
        "listen = \"127.0.0.1:8445\"",
        "listen = \"127.0.0.1:7443\"",
    ));
    assert_eq!(
        message,
        "/srv/pg/site1.toml:23: tunnel[0].listen: 127.0.0.1:7443 is already used by peer.listen (line 12) — give each listener its own address or port"
    );
    let message = error(&edit(
        "listen = \"127.0.0.1:9101\"",
        "listen = \"0.0.0.0:7443\"",
    ));
    assert!(
        message
            .contains("site1.toml:16: admin.listen: 0.0.0.0:7443 is already used by peer.listen"),
        "{message}"
    );
    // Port 0 ("any free port", used by tests) never clashes.
    let text = BASE
        .replace(":7443\"", ":0\"")
        .replace(":9101\"", ":0\"")
        .replace(":8445\"", ":0\"");
    assert!(parse(&text).is_ok());
}

#[test]
fn one_tunnel_and_one_export_per_service() {
    let tunnel = "\n[[tunnel]]\nservice = \"backup-smb\"\nlisten = \"127.0.0.1:8446\"\nallow_sources = [\"127.0.0.0/8\"]\n";
    let message = error(&format!("{BASE}{tunnel}"));
    assert!(message.contains("site1.toml:31: tunnel[1].service: \"backup-smb\" already has a [[tunnel]]: tunnel[0] at line 22"), "{message}");
    let export = "\n[[export]]\nservice = \"backup-smb\"\ntarget = \"fs01:445\"\n";
    let message = error(&format!("{BASE}{export}"));
    assert!(
        message
            .contains("site1.toml:31: export[1].service: \"backup-smb\" already has a [[export]]"),
        "{message}"
    );
}

#[test]
fn service_names() {
    let message = error(&edit(
        "service = \"backup-smb\"\nlisten",
        "service = \"Backup_SMB\"\nlisten",
    ));
    assert!(message.contains("site1.toml:22: tunnel[0].service: \"Backup_SMB\" is not a valid service name — use lower-case"), "{message}");
    let message = error(&edit(
        "service = \"backup-smb\"\ntarget",
        "service = \"spool\"\ntarget",
    ));
    assert!(
        message.contains("export[0].service: \"spool\" cannot be an [[export]]")
            && message.contains("[spool] section"),
        "{message}"
    );
}

#[test]
fn pools() {
    let message = error(&edit(
        "peer_pool = \"pool02.site2.example\"",
        "peer_pool = \"POOL01.site1.example\"",
    ));
    assert!(
        message.contains(
            "site1.toml:3: gateway.peer_pool: is the local pool \"pool01.site1.example\" itself"
        ),
        "{message}"
    );
    let message = error(&edit("pool = \"pool01.site1.example\"", "pool = \"\""));
    assert!(
        message.contains("site1.toml:2: gateway.pool: \"\" is not a valid pool name"),
        "{message}"
    );
}

#[test]
fn addresses() {
    let message = error(&edit(
        "listen = \"127.0.0.1:9101\"",
        "listen = \"localhost:9101\"",
    ));
    assert!(
        message.contains(
            "site1.toml:16: admin.listen: \"localhost:9101\" is not an IP address with a port"
        ),
        "{message}"
    );
    for (bad, problem) in [
        ("127.0.0.1", "has no port"),
        ("127.0.0.1:0", "has no valid port"),
        ("127.0.0.1:70000", "has no valid port"),
        (":445", "has no host"),
        ("::1:445", "looks like an IPv6 address without brackets"),
        ("[::g]:445", "has an invalid IPv6"),
        ("a b:445", "has an invalid host name"),
    ] {
        let message = error(&edit(
            "target = \"127.0.0.1:4450\"",
            &format!("target = \"{bad}\""),
        ));
        assert!(
            message.contains(&format!(
                "site1.toml:28: export[0].target: \"{bad}\" {problem}"
            )),
            "{message}"
        );
    }
    for good in [
        "fs01.site1.example:445",
        "[::1]:445",
        "127.0.0.1:1",
        "fs_01:445",
    ] {
        let result = parse(&edit(
            "target = \"127.0.0.1:4450\"",
            &format!("target = \"{good}\""),
        ));
        assert_eq!(result.is_ok(), good != "fs_01:445", "{good}");
    }
}

#[test]
fn limits_and_paths() {
    let message = error(&format!("{BASE}\n[limits]\nhandshake_timeout_secs = 0\n"));
    assert!(
        message
            .contains("site1.toml:31: limits.handshake_timeout_secs: is 0 — use a positive number"),
        "{message}"
    );
    let message = error(&edit("ca = \"certs/ca.crt\"", "ca = \"~/ca.crt\""));
    assert!(
        message.contains("site1.toml:9: tls.ca: \"~/ca.crt\" starts with '~'"),
        "{message}"
    );
    let message = error(&edit("path = \"audit/site1.jsonl\"", "path = \" \""));
    assert!(
        message.contains("site1.toml:19: audit.path: is empty"),
        "{message}"
    );
}

#[test]
fn missing_file_is_a_read_error() {
    let dir = tempfile::tempdir().map_err(|e| e.to_string());
    let dir = dir.expect("temp dir");
    let path = dir.path().join("absent.toml");
    let message = Config::load(&path)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        message.contains("absent.toml: cannot read the config file"),
        "{message}"
    );
}
