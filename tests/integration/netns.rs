//! Tests that need the kernel's packet filter run in a network namespace of
//! their own (`pairgate_lab::netns`): the test re-runs itself under
//! `unshare --net --pid`, and only that inner run touches nftables, `lo`'s
//! addresses and port 445 — all on 127.x, all gone when it ends.
//!
//! Outside root (or without `unshare`/`nft`) such a test prints why it
//! skipped. CI sets `PAIRGATE_TEST_NETNS=require`, which turns that skip
//! into a failure, so the kernel tests cannot silently stop running there.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use pairgate_lab::netns;

/// The peer site's file servers, by their own addresses.
pub const SERVER_A: Ipv4Addr = Ipv4Addr::new(127, 0, 20, 1);
pub const SERVER_B: Ipv4Addr = Ipv4Addr::new(127, 0, 20, 2);
/// A host inside site 1's intercept `destinations` but outside site 2's
/// export `destinations`: the exporting site has the last word.
pub const UNEXPORTED: Ipv4Addr = Ipv4Addr::new(127, 0, 20, 9);
/// A host of the peer site outside the intercept's `destinations`.
pub const OUTSIDER: Ipv4Addr = Ipv4Addr::new(127, 0, 30, 1);
/// The Front End: connections to the servers come from this address.
pub const FRONT_END: Ipv4Addr = Ipv4Addr::new(127, 0, 1, 10);
/// Site 1's gateway host (its intercept listener).
pub const GATEWAY1: Ipv4Addr = Ipv4Addr::new(127, 0, 10, 1);
/// Site 2's gateway host.
pub const GATEWAY2: Ipv4Addr = Ipv4Addr::new(127, 0, 10, 2);
/// Every address the namespace gets on `lo`.
pub const ADDRESSES: [Ipv4Addr; 7] = [
    SERVER_A, SERVER_B, UNEXPORTED, OUTSIDER, GATEWAY1, GATEWAY2, FRONT_END,
];
/// The gateways' mark in these tests (the documented default).
pub const MARK: u32 = 0x5047;

/// Runs the calling test (`test`: its full name, e.g.
/// `netns::the_kernel_redirects_by_destination`) in its own namespace.
/// Returns `true` in that inner run — set up, go ahead — and `false` in the
/// outer one, after the inner run passed (or when skipping).
pub fn isolate(test: &str) -> bool {
    if let Some(step) = netns::inside() {
        assert_eq!(step, test, "re-run for another test");
        netns::bring_up(&ADDRESSES).expect("configure lo in the namespace");
        for server in [SERVER_A, SERVER_B, UNEXPORTED, OUTSIDER] {
            netns::prefer_source(server, FRONT_END).expect("route from the Front End");
        }
        return true;
    }
    rerun_isolated(test, netns::unavailable(), netns::isolated)
}

/// The outer half of a test that runs in namespaces of its own: skips
/// (saying why) when `unavailable` names a reason — a failure when CI
/// requires these tests — else re-runs the test binary on `test` alone
/// through `isolated` and checks it passed there. Always `false`: the
/// outer run has nothing more to do.
pub fn rerun_isolated(
    test: &str,
    unavailable: Option<String>,
    isolated: impl FnOnce(&std::path::Path, &str) -> std::process::Command,
) -> bool {
    if let Some(why) = unavailable {
        let required = std::env::var("PAIRGATE_TEST_NETNS").is_ok_and(|v| v == "require");
        assert!(!required, "{test} cannot run its own namespace: {why}");
        eprintln!("SKIPPED {test}: {why}");
        return false;
    }
    let exe = std::env::current_exe().expect("the test binary");
    let out = isolated(&exe, test)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .output()
        .expect("run unshare");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    eprintln!("--- {test} in its namespace ---\n{stdout}{stderr}--- end of {test} ---");
    assert!(out.status.success(), "{test} failed in its namespace");
    assert!(
        stdout.contains("1 passed"),
        "{test} did not run in its namespace (wrong name?)"
    );
    false
}

/// The lab ruleset: TCP 445 to the two servers and the outsider goes to
/// `listener`, except from sockets carrying [`MARK`].
pub fn interception(listener: SocketAddr) -> netns::Interception {
    netns::Interception {
        servers: vec![SERVER_A, SERVER_B, UNEXPORTED, OUTSIDER],
        port: 445,
        listener,
        mark: MARK,
    }
}

/// Two Samba servers of the peer site on their own addresses, port 445.
pub fn file_servers(dir: &Path) -> [crate::smb::Smbd; 2] {
    [SERVER_A, SERVER_B].map(|ip| {
        let sub = dir.join(format!("fs-{ip}"));
        crate::smb::start_smbd_at(&sub, ip, 445)
    })
}

/// The kernel part of interception, before any gateway: the rule sends a
/// connection to a file server's own address to the intercept listener,
/// which reads where it was going; a socket carrying the gateways' mark
/// passes to the server untouched; a connection straight to the listener
/// has no other destination than the listener itself.
#[test]
fn the_kernel_redirects_by_destination_and_marked_sockets_pass() {
    if !isolate("netns::the_kernel_redirects_by_destination_and_marked_sockets_pass") {
        return;
    }
    if !crate::smb::have("smbd") {
        panic!("smbd is not installed (apt-get install samba)");
    }
    let dir = tempfile::tempdir().unwrap();
    let _servers = file_servers(dir.path());
    let listen = SocketAddr::from((GATEWAY1, 15445));
    interception(listen).apply().expect("load the ruleset");

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        use pairgate::intercept::{self, Capture};
        let listener = intercept::bind_listener(listen, 16, Capture::Redirect).unwrap();
        let _client = tokio::net::TcpStream::connect((SERVER_B, 445))
            .await
            .unwrap();
        let (accepted, from) = listener.accept().await.unwrap();
        let arrival = intercept::socket::arrival(&accepted, Capture::Redirect).unwrap();
        assert_eq!(
            arrival.original,
            Some(SocketAddr::from((SERVER_B, 445))),
            "{from}"
        );
        assert_eq!(arrival.mark, 0);

        // The gateway's own connection (marked) reaches the server itself.
        let marked = intercept::socket::connect_addr((SERVER_A, 445).into(), MARK).await;
        assert!(marked.is_ok(), "marked connection: {marked:?}");
        let stray = tokio::time::timeout(Duration::from_millis(500), listener.accept()).await;
        assert!(stray.is_err(), "a marked connection was redirected");

        // Straight to the listener: nothing but the listener itself.
        let _direct = tokio::net::TcpStream::connect(listen).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        let arrival = intercept::socket::arrival(&accepted, Capture::Redirect).unwrap();
        let own = [listen];
        let lists = intercept::Destinations {
            nets: vec!["127.0.20.0/24".parse().unwrap()],
            ports: vec![445],
        };
        assert!(matches!(
            intercept::decide(arrival, &lists, &own, MARK),
            Err(intercept::Refusal::Ours(_) | intercept::Refusal::Missing)
        ));
    });
}
