//! `[limits]` and the socket mark applied live on SIGHUP, on real
//! processes: `max_connections` raised and lowered under held sessions
//! (established ones never cut, the cap enforced for what comes next),
//! every limit changed under load, the timeouts lowered for the next
//! handshake and connection, and (as root) the socket mark switched on by an
//! export or intercept added live — the new sockets carry it, an arrival
//! carrying it is refused as a loop. Also: a SIGHUP the moment the gateway
//! is ready reloads it and never kills it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::ha::{Load, LongSession};
use crate::harness::*;

/// Opens a long session; a heartbeat of the peer may hold one of a tiny
/// cap's slots for a moment, so a refused attempt is tried again.
async fn open_long(addr: SocketAddr) -> LongSession {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(session) = LongSession::try_open(addr).await {
            return session;
        }
        assert!(Instant::now() < deadline, "no session could be opened");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether a fresh connection through `tunnel` is relayed.
async fn relayed(tunnel: SocketAddr, payload: &[u8]) -> bool {
    matches!(round_trip(tunnel, payload).await, Ok(ref back) if back == payload)
}

/// Rewrites site1's config with `limits` and sends SIGHUP; waits for the
/// `n`th `config_reload` and returns it.
fn reload_site1(pair: &mut Pairing, extra: String, n: usize) -> Value {
    let mut spec = pair.site1_spec.clone();
    spec.extra = extra;
    spec.write(pair.dir.path()).unwrap();
    pair.site1_spec = spec;
    pair.site1.0.hangup().unwrap();
    let lines = pair
        .site1
        .wait_audit_count("the config reloaded", n, |v| v["event"] == "config_reload");
    lines
        .into_iter()
        .filter(|v| v["event"] == "config_reload")
        .nth(n - 1)
        .unwrap()
}

async fn last_reload(admin: SocketAddr) -> Value {
    let reply = pairgate::admin::client::get(admin, "/status")
        .await
        .unwrap();
    let status: Value = serde_json::from_str(&reply.body).unwrap();
    status["last_config_reload"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_raised_and_lowered_live_never_cuts_a_session() {
    let admin = free_port();
    let section = |max: usize| {
        format!("\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n[limits]\nmax_connections = {max}\n")
    };
    let mut pair = Pairing::start_with(|s1, _| s1.extra = section(3)).await;
    let admin: SocketAddr = ([127, 0, 0, 1], admin).into();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(open_long(pair.tunnel).await);
    }
    // The cap is full: a fourth is refused, audited as such.
    assert!(!relayed(pair.tunnel, b"fourth").await, "a 4th got through");
    pair.site1.wait_audit("the refusal", |v| {
        v["event"] == "connection"
            && v["direction"] == "outbound"
            && v["reason"] == "too_many_connections"
    });

    // Raised: the next connection gets through at once, nothing was cut.
    let reload = reload_site1(&mut pair, section(6), 1);
    assert_eq!(reload["ok"], true, "{reload}");
    assert!(relayed(pair.tunnel, b"fourth again").await);
    for session in &mut held {
        session.echo().await.expect("a held session was cut");
    }
    held.push(open_long(pair.tunnel).await);

    // Lowered below what is open: nothing is cut, new ones are refused
    // until enough sessions end, then accepted again.
    let reload = reload_site1(&mut pair, section(2), 2);
    assert_eq!(reload["ok"], true, "{reload}");
    for session in &mut held {
        session
            .echo()
            .await
            .expect("lowering the cap cut a session");
    }
    assert!(!relayed(pair.tunnel, b"over the new cap").await);
    held.truncate(2);
    // Two still open = the new cap: still refused.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!relayed(pair.tunnel, b"at the new cap").await);
    held.truncate(1);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !relayed(pair.tunnel, b"under the new cap").await {
        assert!(Instant::now() < deadline, "never accepted again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    held[0].echo().await.expect("the last session was cut");

    let status = last_reload(admin).await;
    assert_eq!(status["ok"], true, "{status}");
    assert!(
        status
            .get("restart_needed")
            .is_none_or(|keys| keys == &serde_json::json!([])),
        "{status}"
    );
}

/// Issue 16's load test for limits: under a stream of new connections and
/// a long session, every limit changed by SIGHUP (raised, then lowered to
/// values the load stays under) fails no connection attempt and leaves the
/// long session intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_limit_changed_under_load_fails_nothing() {
    let mut pair = Pairing::start().await;
    let load = Load::start(pair.tunnel);
    load.wait_more(20).await;
    let mut long = LongSession::open(pair.tunnel).await;
    let limits = |n: usize, secs: u64| {
        format!(
            "\n[limits]\nhandshake_timeout_secs = {secs}\nidle_timeout_secs = {}\n\
             max_connections = {n}\nmax_handshakes_per_source = {}\n\
             max_handshakes_per_peer = {n}\nshutdown_grace_secs = {secs}\n",
            secs * 60,
            n / 2
        )
    };
    for (n, (max, secs)) in [(8192, 20), (64, 15)].into_iter().enumerate() {
        let reload = reload_site1(&mut pair, limits(max, secs), n + 1);
        assert_eq!(reload["ok"], true, "{reload}");
        load.wait_more(20).await;
        long.echo().await.expect("the long session was cut");
    }
    let (ok, failed) = load.finish().await;
    assert!(
        failed.is_empty(),
        "{} of {} attempts failed: {failed:?}",
        failed.len(),
        ok + failed.len() as u64
    );
}

/// Timeouts lowered live reach the next handshake and the next connection;
/// a session established before keeps the idle timeout it started with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lowered_timeouts_reach_what_comes_next_not_an_established_session() {
    let mut pair = Pairing::start_with(|s1, _| {
        s1.extra = "\n[limits]\nhandshake_timeout_secs = 600\nidle_timeout_secs = 600\n".into();
    })
    .await;
    let mut before = LongSession::open(pair.tunnel).await;
    let reload = reload_site1(
        &mut pair,
        "\n[limits]\nhandshake_timeout_secs = 2\nidle_timeout_secs = 1\n".into(),
        1,
    );
    assert_eq!(reload["ok"], true, "{reload}");

    // A TCP connection that never starts its TLS handshake is closed.
    let mut silent = tokio::net::TcpStream::connect(pair.site1_spec.peer_addr())
        .await
        .unwrap();
    assert_closes(&mut silent, "the silent connection").await;
    pair.site1.wait_audit("the timeout", |v| {
        v["event"] == "connection" && v["reason"] == "handshake_timeout"
    });

    // A session opened now is closed once idle for the new timeout…
    let mut fresh = tokio::net::TcpStream::connect(pair.tunnel).await.unwrap();
    fresh.write_all(b"x").await.unwrap();
    let mut echoed = [0u8; 1];
    tokio::time::timeout(Duration::from_secs(20), fresh.read_exact(&mut echoed))
        .await
        .expect("no echo")
        .unwrap();
    assert_closes(&mut fresh, "the idle new session").await;
    // …while the one from before, idle at least as long, goes on.
    before
        .echo()
        .await
        .expect("the established session lost its idle timeout");
}

/// Waits (generously) until the gateway closes `stream`.
async fn assert_closes(stream: &mut tokio::net::TcpStream, what: &str) {
    let mut buf = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(60), stream.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0) | Err(_))),
        "{what} was not closed: {read:?}"
    );
}

/// As root (`CAP_NET_ADMIN`): an export with `destinations` added live
/// switches the socket mark on; the reload is applied, not refused as
/// `gateway.mark`, the carried export serves the next connection, whose
/// socket to the target carries the mark, while a session opened before
/// keeps its unmarked socket and goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_with_destinations_added_live_switches_the_mark_on() {
    if let Err(e) = pairgate::intercept::socket::check_mark(0x5047) {
        eprintln!("SKIPPED an_export_with_destinations_added_live_switches_the_mark_on: {e}");
        return;
    }
    let mut pair = Pairing::start_with(|_, s2| {
        s2.exports.retain(|(service, _)| service == "backup-smb");
    })
    .await;
    let backend = pair.backend;
    let peer = RawPeer {
        ca: pair.pki.ca_path(),
        client_cert: Some(pair.site1_spec.cert.clone()),
    };
    assert!(
        carried(&peer, &pair, backend).await.is_none(),
        "cms-smb served before"
    );
    let mut before = LongSession::open(pair.tunnel).await;
    let unmarked = marks_towards(backend);

    let mut spec = pair.site2_spec.clone();
    spec.extra = format!(
        "\n[[export]]\nservice = \"cms-smb\"\ndestinations = [\"127.0.0.1\"]\nports = [{}]\n",
        backend.port()
    );
    spec.write(pair.dir.path()).unwrap();
    pair.site2_spec = spec;
    pair.site2.0.hangup().unwrap();
    let reload = pair
        .site2
        .wait_audit("the config reloaded", |v| v["event"] == "config_reload");
    assert_eq!(reload["ok"], true, "{reload}");
    assert!(
        reload
            .get("restart_needed")
            .is_none_or(|r| r == &serde_json::json!([])),
        "{reload}"
    );
    let _open = carried(&peer, &pair, backend)
        .await
        .expect("the carried export is not served");
    if let (Some(unmarked), Some(mut now)) = (unmarked, marks_towards(backend)) {
        assert_eq!(unmarked, [None], "before the reload: no mark");
        now.sort();
        assert_eq!(
            now,
            [None, Some("0x5047".to_owned())],
            "the session from before keeps its socket, the new one is marked"
        );
    }
    before
        .echo()
        .await
        .expect("the session from before was cut");
    // The plain tunnel is untouched.
    assert!(relayed(pair.tunnel, b"tunnel").await);
}

/// The `SO_MARK` (`fwmark:0x…`, or none) of each established connection
/// to `target` on this host — the gateways' sockets to their export target
/// (`ss -e`; the mark shows with `CAP_NET_ADMIN`). `None` when `ss` cannot
/// run here.
fn marks_towards(target: SocketAddr) -> Option<Vec<Option<String>>> {
    let out = std::process::Command::new("ss")
        .args(["-Htne", "state", "established", "dst"])
        .arg(target.to_string())
        .output();
    let out = match out {
        Ok(out) if out.status.success() => out,
        other => {
            eprintln!("SKIPPED the mark check: ss: {other:?}");
            return None;
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    Some(
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                l.split_whitespace()
                    .find_map(|w| w.strip_prefix("fwmark:"))
                    .map(str::to_owned)
            })
            .collect(),
    )
}

/// A `pg2/cms-smb` connection to site2 carrying `destination` in its
/// PROXY header, as an intercepting site1 would send; returned open when
/// the payload came back from there.
async fn carried(
    peer: &RawPeer,
    pair: &Pairing,
    destination: SocketAddr,
) -> Option<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let mut tls = peer
        .connect(pair.site2_peer(), POOL2, b"pg2/cms-smb")
        .await
        .ok()?;
    let source: SocketAddr = ([127, 0, 0, 1], 50000).into();
    let header = pairgate::proxy::preamble::encode_intercepted(source, destination);
    tls.write_all(&header).await.ok()?;
    let status = pairgate::proxy::preamble::read_status(&mut tls)
        .await
        .ok()?;
    if status.outcome != pairgate::proxy::preamble::OK {
        return None;
    }
    tls.write_all(b"carried").await.ok()?;
    tls.flush().await.ok()?;
    let mut back = [0u8; 7];
    let read = tokio::time::timeout(Duration::from_secs(20), tls.read_exact(&mut back)).await;
    matches!(read, Ok(Ok(_)) if &back == b"carried").then_some(tls)
}

/// The mark switched on live is the one an intercept refuses as a loop: in
/// a namespace of its own with `net.ipv4.tcp_fwmark_accept = 1` (so an
/// accepted socket shows its client's mark), an intercept added by SIGHUP
/// to a gateway that started without one refuses a connection carrying the
/// gateway's mark as a redirect loop.
#[test]
fn an_intercept_added_live_refuses_a_marked_arrival_as_a_loop() {
    use crate::netns::{isolate, GATEWAY1, MARK, SERVER_A};
    if !isolate("live_limits::an_intercept_added_live_refuses_a_marked_arrival_as_a_loop") {
        return;
    }
    // Per network namespace: only this test's.
    std::fs::write("/proc/sys/net/ipv4/tcp_fwmark_accept", "1").unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut pair = Pairing::start().await;
        let listen = SocketAddr::from((GATEWAY1, free_port()));
        let extra = format!(
            "\n[[intercept]]\nservice = \"backup-smb\"\nlisten = \"{listen}\"\n\
             allow_sources = [\"127.0.0.0/8\"]\ndestinations = [\"{SERVER_A}\"]\nports = [445]\n"
        );
        let reload = reload_site1(&mut pair, extra, 1);
        assert_eq!(reload["ok"], true, "{reload}");

        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket2::SockRef::from(&socket).set_mark(MARK).unwrap();
        let mut looped = socket.connect(listen).await.unwrap();
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(20), looped.read_to_end(&mut buf)).await;
        let refused = pair.site1.wait_audit("the loop refusal", |v| {
            v["event"] == "connection" && v["reason"] == "destination_not_allowed"
        });
        assert!(
            refused["detail"]
                .as_str()
                .is_some_and(|d| d.contains("own mark 0x5047: a redirect loop")),
            "{refused}"
        );
    });
}

/// A reload asked for the moment the gateway says it is ready (as
/// `systemctl reload` right after a start may) reloads it: SIGHUP's default
/// action, ending the process, is never in force once `ready` is printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sighup_right_after_ready_reloads_and_never_kills_the_gateway() {
    let (dir, _pki, spec) = site_on_disk();
    let config = spec.write(dir.path()).unwrap();
    for round in 1..=40 {
        let mut gw = Gateway::start(&config);
        // At once, not through `kill(1)`: the race was microseconds wide.
        let pid = rustix::process::Pid::from_raw(gw.0.pid() as i32).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::HUP).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = gw.0.child.try_wait().unwrap() {
                panic!("round {round}: the gateway died of SIGHUP: {status:?}");
            }
            let reloads = gw
                .audit_lines()
                .iter()
                .filter(|v| v["event"] == "config_reload")
                .count();
            if reloads >= round {
                break;
            }
            assert!(Instant::now() < deadline, "round {round}: no reload");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        gw.terminate();
    }
}
