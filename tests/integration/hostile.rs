//! Hostile peers and hostile input (issue 7): the TLS configuration as an
//! outside scanner sees it, junk and oversize input on every listener, a
//! crowd of idle sockets, and every kind of broken input file given to the
//! command line.

use std::net::SocketAddr;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::harness::*;

mod files;

/// Deterministic junk (xorshift64*), so a failure replays.
fn junk(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

/// Runs a command with stdin closed, killing it after `secs`.
fn run_for(cmd: &mut Command, secs: u64) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(secs);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `openssl s_client` against `addr` with extra arguments.
fn s_client(addr: SocketAddr, args: &[&str]) -> Output {
    let mut cmd = Command::new("openssl");
    cmd.args([
        "s_client",
        "-connect",
        &addr.to_string(),
        "-servername",
        POOL2,
    ])
    .args(args);
    run_for(&mut cmd, 30)
}

/// Whether this openssl knows a protocol switch (`-ssl3` is often compiled out).
fn openssl_supports(flag: &str) -> bool {
    let out = run_for(
        Command::new("openssl").args(["s_client", flag, "-help"]),
        10,
    );
    !text(&out).contains("nknown option")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_configuration_is_tls13_only_with_client_auth() {
    if !have("openssl") {
        eprintln!("SKIPPED tls_configuration_is_tls13_only_with_client_auth: no `openssl` CLI");
        return;
    }
    let pair = Pairing::start().await;
    let peer = pair.site2_peer();
    let ca = pair.pki.ca_path();
    let ca = ca.to_str().unwrap();

    // Every older protocol is refused, even with all ciphers allowed.
    for flag in ["-tls1_2", "-tls1_1", "-tls1", "-ssl3"] {
        if !openssl_supports(flag) {
            eprintln!("note: this openssl has no {flag}; not tried");
            continue;
        }
        let out = s_client(peer, &[flag, "-cipher", "ALL:@SECLEVEL=0", "-CAfile", ca]);
        let all = text(&out);
        assert!(!out.status.success(), "{flag} handshake succeeded:\n{all}");
        assert!(
            all.contains("Cipher is (NONE)") || all.contains("no peer certificate"),
            "{flag}: expected no negotiated cipher:\n{all}"
        );
    }

    // TLS 1.3 without a client certificate: the server sends its chain and
    // asks for ours, then refuses the empty answer.
    let out = s_client(
        peer,
        &[
            "-tls1_3",
            "-CAfile",
            ca,
            "-alpn",
            "pg1/backup-smb",
            "-state",
        ],
    );
    let all = text(&out);
    assert!(
        all.contains("TLS read server certificate request"),
        "no CertificateRequest:\n{all}"
    );
    assert!(
        all.contains(POOL2),
        "the server's certificate names its pool:\n{all}"
    );
    pair.site2
        .wait_audit("no_client_cert", |v| v["reason"] == "no_client_cert");

    // With site1's certificate: a full TLS 1.3 handshake, no compression, and
    // (TLS 1.3 has none) no renegotiation.
    let (crt, key) = &pair.site1_spec.cert;
    let out = s_client(
        peer,
        &[
            "-tls1_3",
            "-CAfile",
            ca,
            "-alpn",
            "pg1/backup-smb",
            "-cert",
            crt.to_str().unwrap(),
            "-key",
            key.to_str().unwrap(),
        ],
    );
    let all = text(&out);
    assert!(all.contains("New, TLSv1.3"), "no TLS 1.3 session:\n{all}");
    assert!(all.contains("Verify return code: 0 (ok)"), "{all}");
    assert!(all.contains("Compression: NONE"), "{all}");
    assert!(!all.contains("Secure Renegotiation IS supported"), "{all}");
    assert!(all.contains("ALPN protocol: pg1/backup-smb"), "{all}");

    // An outside scanner agrees, when installed (.ci/run installs it).
    if have("sslscan") {
        let out = run_for(
            Command::new("sslscan").args(["--no-colour", &format!("{peer}")]),
            120,
        );
        let all = text(&out);
        for old in ["SSLv2", "SSLv3", "TLSv1.0", "TLSv1.1", "TLSv1.2"] {
            let disabled = all
                .lines()
                .any(|l| l.starts_with(old) && l.trim_end().ends_with("disabled"));
            assert!(disabled, "sslscan: {old} not disabled:\n{all}");
        }
        assert!(
            all.lines()
                .any(|l| l.starts_with("TLSv1.3") && l.trim_end().ends_with("enabled")),
            "sslscan: TLS 1.3 not enabled:\n{all}"
        );
        assert!(
            all.contains("Session renegotiation not supported"),
            "sslscan:\n{all}"
        );
        // Debian's sslscan cannot test compression without zlib; openssl did above.
        assert!(
            all.contains("Compression disabled") || all.contains("does not support compression"),
            "sslscan:\n{all}"
        );
        let accepted: Vec<&str> = all
            .lines()
            .filter(|l| l.starts_with("Accepted") || l.starts_with("Preferred"))
            .collect();
        assert!(!accepted.is_empty(), "sslscan found no cipher:\n{all}");
        assert!(
            accepted.iter().all(|l| l.contains("TLSv1.3")),
            "sslscan: {accepted:?}"
        );
    } else {
        eprintln!(
            "note: `sslscan` not installed (Debian package sslscan); checked with openssl only"
        );
    }
}

/// Sends `bytes` on a fresh connection to `addr`, then closes it. Errors
/// (the gateway hanging up mid-send) are the expected outcome for junk.
async fn send_junk(addr: SocketAddr, bytes: &[u8]) {
    if let Ok(mut s) = TcpStream::connect(addr).await {
        let _ = tokio::time::timeout(Duration::from_secs(20), s.write_all(bytes)).await;
        let _ = s.shutdown().await;
    }
}

/// TLS records of type handshake that look like the start of a ClientHello
/// but claim a 16 MB message, spread over `records` full-size records.
fn huge_client_hello(records: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..records {
        out.extend_from_slice(&[0x16, 0x03, 0x01, 0x40, 0x00]); // 16 KiB record
        let mut body = junk(0x4000, 7 + i as u64);
        if i == 0 {
            body[..4].copy_from_slice(&[0x01, 0xff, 0xff, 0xff]); // ClientHello, 16 MB
            body[4..6].copy_from_slice(&[0x03, 0x03]);
        }
        out.extend_from_slice(&body);
    }
    out
}

fn assert_running(gw: &mut Gateway, name: &str) {
    let status = gw.0.child.try_wait().expect("try_wait");
    assert!(status.is_none(), "{name} exited: {status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_every_listener_leaves_the_gateway_serving() {
    let mut pair = Pairing::start().await;
    let peer = pair.site2_peer();
    let site1_peer = pair.site1_spec.peer_addr();
    let inputs: Vec<Vec<u8>> = vec![
        b"GET / HTTP/1.0\r\n\r\n".to_vec(),
        vec![0; 1],
        junk(1 << 20, 1),
        huge_client_hello(8),
        // A plausible record header with an impossible length.
        vec![0x16, 0x03, 0x03, 0xff, 0xff, 0x01, 0x00, 0x00, 0x10],
        junk(300, 2),
    ];
    for bytes in &inputs {
        send_junk(peer, bytes).await;
        send_junk(site1_peer, bytes).await;
        send_junk(pair.tunnel, bytes).await;
    }
    // All at once as well.
    let crowd: Vec<_> = inputs
        .iter()
        .flat_map(|b| [(peer, b.clone()), (pair.tunnel, b.clone())])
        .map(|(addr, b)| tokio::spawn(async move { send_junk(addr, &b).await }))
        .collect();
    for task in crowd {
        task.await.unwrap();
    }

    let payload = pattern(256 * 1024);
    let back = round_trip(pair.tunnel, &payload)
        .await
        .expect("round trip after junk");
    // Both processes first: a gateway killed by the junk (e.g. by SIGPIPE
    // on a write to a vanished peer) shows up here, not as a short echo.
    assert_running(&mut pair.site1, "site1");
    assert_running(&mut pair.site2, "site2");
    assert!(
        back == payload,
        "echo differs after junk: got {} of {} bytes",
        back.len(),
        payload.len()
    );
    // The junk on the peer port was refused at the handshake and audited.
    let denied = pair.site2.wait_audit("junk refused", |v| {
        v["event"] == "connection" && v["reason"] == "handshake_failed"
    });
    assert_eq!(denied["decision"], "deny");
    assert!(pairgate::audit::verify(std::io::BufReader::new(
        std::fs::File::open(pair.site2.audit_path()).unwrap()
    ))
    .is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_idle_sockets_do_not_block_a_real_connection() {
    let mut pair = Pairing::start_with(|_, site2| {
        site2.extra = "\n[limits]\nhandshake_timeout_secs = 2\n".into();
    })
    .await;
    let peer = pair.site2_peer();
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(TcpStream::connect(peer).await.expect("idle socket"));
    }
    // Half of them start a record and stall (slow loris).
    for s in idle.iter_mut().step_by(2) {
        let _ = s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).await;
    }
    let payload = pattern(64 * 1024);
    let back = round_trip(pair.tunnel, &payload)
        .await
        .expect("round trip beside idle sockets");
    assert!(back == payload);
    // The stalled ones are closed and audited as handshake timeouts.
    pair.site2.wait_audit("handshake_timeout", |v| {
        v["event"] == "connection" && v["reason"] == "handshake_timeout"
    });
    drop(idle);
    let back = round_trip(pair.tunnel, b"again")
        .await
        .expect("second round trip");
    assert_eq!(back, b"again");
    assert_running(&mut pair.site2, "site2");
}
