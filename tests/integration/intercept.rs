//! Transparent interception on a real kernel (issue 14), in a network
//! namespace of its own (see `netns`): site 1's gateway intercepts SMB that
//! a client sends to two Samba "file servers" of the peer site *by their own
//! addresses*; site 2's gateway connects exactly the server addressed.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::harness::*;
use crate::netns::{self, FRONT_END, GATEWAY1, MARK, OUTSIDER, SERVER_A, SERVER_B, UNEXPORTED};

const INTERCEPT_PORT: u16 = 15445;

fn smbclient(work: &Path, server: Ipv4Addr, commands: &str) -> std::process::Output {
    Command::new("smbclient")
        .current_dir(work)
        .arg(format!("//{server}/share"))
        .args(["-N", "-p", "445", "-t", "20", "-c", commands])
        .output()
        .expect("run smbclient")
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn at(ip: Ipv4Addr) -> String {
    SocketAddr::from((ip, 445)).to_string()
}

fn is(v: &Value, event: &str, decision: &str) -> bool {
    v["event"] == event && v["decision"] == decision
}

/// The issue's acceptance test: smbclient put/get of a multi-MB file to
/// both servers by their own addresses, byte-identical; a destination
/// outside `destinations` refused and audited, reaching nothing; both
/// sites' audit logs naming `client_addr` and `orig_dst`; no loop; and a
/// connection that arrives with the gateway's mark, or straight to the
/// listener, refused.
#[test]
fn smb_reaches_both_peer_servers_by_their_own_addresses() {
    if !netns::isolate("intercept::smb_reaches_both_peer_servers_by_their_own_addresses") {
        return;
    }
    for tool in ["smbd", "smbclient"] {
        assert!(
            crate::smb::have(tool),
            "{tool} is not installed (apt-get install samba smbclient)"
        );
    }
    // Accepted sockets carry their SYN's mark: a looped gateway connection shows.
    pairgate_lab::netns::sysctl("net.ipv4.tcp_fwmark_accept", "1").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let fs_dir = dir.path().join("servers");
    let _servers = netns::file_servers(&fs_dir);
    // Hosts outside one site's `destinations`: nothing may reach them.
    let outsider = std::net::TcpListener::bind((OUTSIDER, 445)).unwrap();
    outsider.set_nonblocking(true).unwrap();
    let unexported = std::net::TcpListener::bind((UNEXPORTED, 445)).unwrap();
    unexported.set_nonblocking(true).unwrap();

    let listen = SocketAddr::from((GATEWAY1, INTERCEPT_PORT));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let pair = rt.block_on(Pairing::start_with(|site1, site2| {
        // (The harness's plain tunnels stay; interception needs none.)
        site1.extra = format!(
            "\n[[intercept]]\nservice = \"backup-smb\"\nlisten = \"{listen}\"\n\
             allow_sources = [\"{FRONT_END}\"]\n\
             destinations = [\"{SERVER_A}\", \"{SERVER_B}\", \"{UNEXPORTED}\"]\n\
             ports = [445]\n"
        );
        site2.exports.clear();
        site2.extra = format!(
            "\n[[export]]\nservice = \"backup-smb\"\n\
             destinations = [\"{SERVER_A}\", \"{SERVER_B}\"]\nports = [445]\n"
        );
    }));
    assert!(
        pair.site1
            .0
            .ready
            .contains(&format!("intercept.backup-smb={listen}")),
        "{}",
        pair.site1.0.ready
    );
    netns::interception(listen)
        .apply()
        .expect("load the ruleset");

    // A multi-MB file to each server and back, by the server's own address.
    let payload = pattern(3 * 1024 * 1024 + 17);
    let work = dir.path().join("client");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("package.zip"), &payload).unwrap();
    for server in [SERVER_A, SERVER_B] {
        let out = smbclient(
            &work,
            server,
            &format!("put package.zip; get package.zip back-{server}.zip"),
        );
        assert!(
            out.status.success(),
            "smbclient to {server}: {}",
            text(&out)
        );
        let stored = fs_dir.join(format!("fs-{server}/share/package.zip"));
        assert!(
            std::fs::read(&stored).unwrap() == payload,
            "{server}: stored bytes differ"
        );
        let back = std::fs::read(work.join(format!("back-{server}.zip"))).unwrap();
        assert!(back == payload, "{server}: fetched bytes differ");
    }

    // Outside `destinations`: refused at site 1, audited, nothing reaches it.
    let out = smbclient(&work, OUTSIDER, "ls");
    assert!(
        !out.status.success(),
        "reached the outsider: {}",
        text(&out)
    );
    let refused = pair.site1.wait_audit("destination_not_allowed", |v| {
        v["reason"] == "destination_not_allowed" && v["orig_dst"] == at(OUTSIDER)
    });
    assert_eq!(refused["direction"], "outbound");
    assert!(
        refused["detail"]
            .as_str()
            .unwrap()
            .contains("outside destinations"),
        "{refused}"
    );
    let front_end = format!("{FRONT_END}:");
    assert!(refused["client_addr"]
        .as_str()
        .unwrap()
        .starts_with(&front_end));
    assert!(
        outsider.accept().is_err(),
        "a connection reached the outsider"
    );

    // Inside site 1's lists but not site 2's: the exporting site refuses,
    // both sites audit it, and nothing reaches the host.
    let out = smbclient(&work, UNEXPORTED, "ls");
    assert!(
        !out.status.success(),
        "reached {UNEXPORTED}: {}",
        text(&out)
    );
    for gw in [&pair.site1, &pair.site2] {
        let v = gw.wait_audit("export refusal", |v| {
            v["reason"] == "destination_not_allowed" && v["orig_dst"] == at(UNEXPORTED)
        });
        let detail = v["detail"].as_str().unwrap();
        assert!(detail.contains("export backup-smb"), "{detail}");
        assert!(detail.contains("outside destinations"), "{detail}");
    }
    assert!(
        unexported.accept().is_err(),
        "a connection reached {UNEXPORTED}"
    );

    // Both sites name the Front End and the server for every allowed connection.
    for server in [SERVER_A, SERVER_B] {
        let dest = at(server);
        let s1 = pair
            .site1
            .wait_audit(&format!("site 1 close to {dest}"), |v| {
                v["event"] == "close" && v["orig_dst"] == dest.as_str()
            });
        let s2 = pair
            .site2
            .wait_audit(&format!("site 2 close to {dest}"), |v| {
                v["event"] == "close" && v["orig_dst"] == dest.as_str()
            });
        assert_eq!(s1["direction"], "outbound");
        assert_eq!(s2["direction"], "inbound");
        assert_eq!(s1["client_addr"], s2["client_addr"], "the same Front End");
        assert!(s1["client_addr"].as_str().unwrap().starts_with(&front_end));
        for close in [&s1, &s2] {
            assert!(close["error"].is_null(), "{close}");
            assert!(
                close["bytes_in"].as_u64().unwrap() > payload.len() as u64,
                "{close}"
            );
            assert!(
                close["bytes_out"].as_u64().unwrap() > payload.len() as u64,
                "{close}"
            );
        }
    }

    // `audit query` answers "which Front End wrote to that server" at either site.
    for gw in [&pair.site1, &pair.site2] {
        let out = Command::new(bin())
            .args(["audit", "query", "--json", "--orig-dst"])
            .arg(SERVER_A.to_string())
            .arg("--log")
            .arg(gw.audit_path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert!(
            lines.iter().any(|v| is(v, "connection", "allow")),
            "{lines:?}"
        );
        assert!(lines.iter().any(|v| v["event"] == "close"), "{lines:?}");
        assert!(
            lines.iter().all(|v| v["orig_dst"] == at(SERVER_A)),
            "{lines:?}"
        );
    }

    // No loop: site 2's own (marked) connections to the servers were not
    // intercepted again — every connection site 1 allowed is one site 2
    // allowed, and site 1 saw no connection it did not get from a client.
    let allowed = |gw: &Gateway| {
        gw.audit_lines()
            .iter()
            .filter(|v| is(v, "connection", "allow") && v["service"] == "backup-smb")
            .count()
    };
    let (a1, a2) = (allowed(&pair.site1), allowed(&pair.site2));
    assert!(a1 >= 2, "{a1} intercepted connections");
    assert_eq!(a1, a2, "site 1 allowed {a1}, site 2 {a2}");

    // A connection carrying the gateways' mark (a redirect loop), and one
    // straight to the listener: refused, never forwarded (the 3rd and 4th
    // refusal at site 1, after the outsider and the unexported host).
    rt.block_on(async {
        let looped = pairgate::intercept::socket::connect_addr(listen, MARK).await;
        let direct = tokio::net::TcpStream::connect(listen).await;
        assert!(looped.is_ok() && direct.is_ok());
    });
    let lines = pair.site1.wait_audit_count("refused loops", 4, |v| {
        v["reason"] == "destination_not_allowed"
    });
    let details: Vec<&str> = lines
        .iter()
        .filter(|v| v["reason"] == "destination_not_allowed")
        .filter_map(|v| v["detail"].as_str())
        .collect();
    assert!(
        details.iter().any(|d| d.contains("own mark")),
        "{details:?}"
    );
    assert!(
        details
            .iter()
            .any(|d| d.contains("own listener") || d.contains("no original destination")),
        "{details:?}"
    );
    assert_eq!(allowed(&pair.site2), a2, "nothing more reached site 2");
}

fn run_ok(dir: &Path, args: &[&str]) {
    let out = Command::new(bin())
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run pairgate");
    assert!(out.status.success(), "pairgate {args:?}: {}", text(&out));
}

/// The operator guide's production examples (`docs/examples`, interception
/// in both directions) pass `pairgate check` once the files they name exist.
#[test]
fn the_guides_example_configs_pass_check() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/examples");
    for file in ["site1.toml", "site2.toml", "pairing.toml"] {
        std::fs::copy(examples.join(file), d.join(file)).unwrap();
    }
    run_ok(
        d,
        &["ca", "init", "--dir", "ca", "--name", "contoso pairing CA"],
    );
    std::fs::create_dir_all(d.join("tls")).unwrap();
    std::fs::create_dir_all(d.join("keys")).unwrap();
    for (site, pool) in [
        ("site1", "pool01.contoso.example"),
        ("site2", "pool02.contoso.example"),
    ] {
        let out = format!("tls/{site}");
        run_ok(
            d,
            &[
                "cert", "issue", "--ca-dir", "ca", "--pool", pool, "--out", &out,
            ],
        );
        let key = format!("keys/{site}-spool.key");
        run_ok(d, &["spool", "keygen", "--out", &key]);
    }
    for file in ["ca.crt", "ca.crl"] {
        std::fs::copy(d.join("ca").join(file), d.join("tls").join(file)).unwrap();
    }
    for site in ["site1", "site2"] {
        let out = Command::new(bin())
            .current_dir(d)
            .args(["check", "--json", "--config", &format!("{site}.toml")])
            .output()
            .unwrap();
        assert!(out.status.success(), "{site}: {}", text(&out));
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc["mark"], 0x5047);
        assert_eq!(doc["intercepts"].as_array().unwrap().len(), 2, "{doc}");
        assert_eq!(doc["exports"][0]["ports"], serde_json::json!([445]));
    }
}

/// The nftables rulesets the guide prints (`docs/operator-guide.md`) and
/// ships (`docs/examples/*.nft`) load into a kernel — with their 10.x
/// addresses moved into 127.x, the only addresses tests may use.
#[test]
fn the_guides_rulesets_load() {
    if !netns::isolate("intercept::the_guides_rulesets_load") {
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let guide = std::fs::read_to_string(root.join("docs/operator-guide.md")).unwrap();
    let mut rulesets: Vec<(String, String)> = guide
        .split("```nft\n")
        .skip(1)
        .filter_map(|block| block.split_once("\n```").map(|(r, _)| r.to_owned()))
        .map(|r| ("operator-guide.md".to_owned(), r))
        .collect();
    assert!(!rulesets.is_empty(), "no ```nft block in the guide");
    for site in ["site1", "site2"] {
        let file = format!("docs/examples/pairgate-{site}.nft");
        rulesets.push((
            file.clone(),
            std::fs::read_to_string(root.join(&file)).unwrap(),
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    for (i, (from, ruleset)) in rulesets.iter().enumerate() {
        // 10.a.b.c -> 127.a.b.c: the same syntax, loopback addresses only.
        let loopback = to_loopback(ruleset);
        assert!(!loopback.contains(" 10."), "{loopback}");
        let path = dir.path().join(format!("ruleset-{i}.nft"));
        std::fs::write(&path, &loopback).unwrap();
        for args in [&["-c", "-f"][..], &["-f"][..]] {
            let out = Command::new("nft").args(args).arg(&path).output().unwrap();
            assert!(
                out.status.success(),
                "{from}: nft {args:?}: {}\n{loopback}",
                text(&out)
            );
        }
        let listed = Command::new("nft")
            .args(["list", "table", "inet", "pairgate"])
            .output()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&listed.stdout).contains("meta mark 0x00005047 return"),
            "{from}"
        );
    }
}

/// `ruleset` with every IPv4 address in 10.0.0.0/8 moved to 127.0.0.0/8.
fn to_loopback(ruleset: &str) -> String {
    let mut out = String::with_capacity(ruleset.len());
    let mut rest = ruleset;
    while let Some(at) = rest.find("10.") {
        let before = rest[..at].chars().last();
        out.push_str(&rest[..at]);
        let starts_address = !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '.');
        out.push_str(if starts_address { "127." } else { "10." });
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    out
}

/// An intercepted connection is never handed to a peer gateway that
/// predates the preamble: it could not learn the destination, and would
/// connect its fixed target instead — the wrong server.
#[test]
fn an_intercepted_connection_never_reaches_a_peer_that_cannot_take_its_destination() {
    if !netns::isolate(
        "intercept::an_intercepted_connection_never_reaches_a_peer_that_cannot_take_its_destination",
    ) {
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let listen = SocketAddr::from((GATEWAY1, INTERCEPT_PORT));
    rt.block_on(async {
        let pair = Pairing::start().await;
        let (old, mut seen) = crate::preamble::old_acceptor(&pair).await;
        let mut spec = pair.site1_spec.clone();
        spec.name = "site1-to-old".into();
        spec.peer_connect = old.port();
        spec.peer_listen = free_port();
        for t in &mut spec.tunnels {
            t.1 = free_port();
        }
        spec.extra = format!(
            "\n[[intercept]]\nservice = \"backup-smb\"\nlisten = \"{listen}\"\n\
             allow_sources = [\"{FRONT_END}\"]\ndestinations = [\"{SERVER_A}\"]\nports = [445]\n"
        );
        let gw = Gateway::start(&spec.write(pair.dir.path()).unwrap());
        netns::interception(listen)
            .apply()
            .expect("load the ruleset");
        let mut client = tokio::net::TcpStream::connect((SERVER_A, 445))
            .await
            .unwrap();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let _ = client.write_all(b"SMB negotiate").await;
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(20),
            client.read_to_end(&mut buf),
        )
        .await;
        assert!(buf.is_empty(), "the client got bytes back");
        let denied = gw.wait_audit("pg1 refusal", |v| {
            v["reason"] == "destination_not_allowed" && v["orig_dst"] == at(SERVER_A)
        });
        assert!(
            denied["detail"]
                .as_str()
                .unwrap()
                .contains("predates the pg2 preamble"),
            "{denied}"
        );
        // The old peer saw the TLS connection close before any client byte.
        if let Ok(Some(got)) =
            tokio::time::timeout(std::time::Duration::from_secs(2), seen.recv()).await
        {
            assert!(got.is_empty(), "the old peer got the client's bytes");
        }
    });
}
