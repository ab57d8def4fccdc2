//! Two gateways per site: two instances of one site share one outbox, each
//! with its own spool dir; every file is taken by exactly one of them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pairgate_lab::GatewayProcess;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::*;
use crate::spool::{content, drop_file, files_in, spool_pairing, spool_section, wait_until};

/// A second instance of `spec`'s site: own ports, own audit log, own spool
/// dir (`spool_dir`), everything else (outbox, inbox, key, certificate) shared.
pub(crate) fn second_instance(spec: &SiteSpec, own_spool: &Path, shared_spool: &Path) -> SiteSpec {
    let mut b = spec.clone();
    b.name = format!("{}b", spec.name);
    b.peer_listen = free_port();
    b.tunnels = spec
        .tunnels
        .iter()
        .map(|(service, _, sources)| (service.clone(), free_port(), sources.clone()))
        .collect();
    b.extra = spec.extra.replace(
        &format!("dir = \"{}\"", shared_spool.display()),
        &format!("dir = \"{}\"", own_spool.display()),
    );
    assert_ne!(b.extra, spec.extra, "the spool dir must differ");
    b
}

fn spooled_names(gw: &Gateway) -> Vec<String> {
    gw.audit_lines()
        .iter()
        .filter(|v| v["event"] == "spool_in")
        .map(|v| v["name"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_outbox_take_each_file_once() {
    let (pair, d1, d2, root) = spool_pairing().await;
    let spool_b = root.path().join("site1b-spool");
    let spec_b = second_instance(&pair.site1_spec, &spool_b, &d1.spool);
    let site1b = Gateway::start(&spec_b.write(pair.dir.path()).unwrap());

    let mut want = BTreeMap::new();
    for i in 0..500 {
        let name = format!("package-{i:03}.zip");
        let data = content(format!("HA-{i:03}").as_bytes(), 1500 + i * 7);
        drop_file(&d1.outbox, &name, &data);
        want.insert(name, data);
    }
    wait_until("500 files in the peer's inbox", 120, || {
        files_in(&d2.inbox).len() >= want.len()
    });
    // Everything settles: both outboxes and both spools empty.
    let spooled = |dir: &Path| crate::spool::walk(&dir.join("outgoing")).len();
    wait_until("both instances' spools drained", 60, || {
        files_in(&d1.outbox).is_empty() && spooled(&d1.spool) == 0 && spooled(&spool_b) == 0
    });
    let got = files_in(&d2.inbox);
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "each file delivered exactly once"
    );
    for (name, data) in &want {
        assert!(got[name] == *data, "{name} differs");
    }
    let mut sealed = spooled_names(&pair.site1);
    let from_a = sealed.len();
    sealed.extend(spooled_names(&site1b));
    let total = sealed.len();
    eprintln!("instance a sealed {from_a} of {total}");
    sealed.sort();
    sealed.dedup();
    assert_eq!(
        (total, sealed.len()),
        (500, 500),
        "each file sealed exactly once (instance a took {from_a})"
    );
}

/// A stream of new tunnelled connections, one after the other, each a
/// round trip through both gateways; every failure is kept.
pub(crate) struct Load {
    stop: Arc<AtomicBool>,
    pub ok: Arc<AtomicU64>,
    pub failed: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Load {
    pub(crate) fn start(addr: SocketAddr) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(Mutex::new(Vec::new()));
        let (s, o, f) = (stop.clone(), ok.clone(), failed.clone());
        let task = tokio::spawn(async move {
            let mut i = 0u64;
            while !s.load(Ordering::SeqCst) {
                i += 1;
                let payload = format!("request {i}").into_bytes();
                match round_trip(addr, &payload).await {
                    Ok(back) if back == payload => {
                        o.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(back) => f.lock().unwrap().push(format!("{i}: echoed {back:?}")),
                    Err(e) => f.lock().unwrap().push(format!("{i}: {e}")),
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        Load {
            stop,
            ok,
            failed,
            task,
        }
    }

    /// Waits until `more` further connections succeeded.
    pub(crate) async fn wait_more(&self, more: u64) {
        let target = self.ok.load(Ordering::SeqCst) + more;
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.ok.load(Ordering::SeqCst) < target {
            assert!(
                Instant::now() < deadline,
                "the load stalled: {:?}",
                self.failed.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops and returns (succeeded, failures).
    pub(crate) async fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.unwrap();
        let failed = self.failed.lock().unwrap().clone();
        (self.ok.load(Ordering::SeqCst), failed)
    }
}

/// A long-lived tunnelled session: one connection, an echo now and then.
pub(crate) struct LongSession(TcpStream, u32);

impl LongSession {
    pub(crate) async fn open(addr: SocketAddr) -> LongSession {
        let mut s = LongSession(TcpStream::connect(addr).await.unwrap(), 0);
        s.echo().await.unwrap();
        s
    }

    /// [`LongSession::open`], returning the failure (e.g. a refused slot).
    pub(crate) async fn try_open(addr: SocketAddr) -> std::io::Result<LongSession> {
        let mut s = LongSession(TcpStream::connect(addr).await?, 0);
        s.echo().await?;
        Ok(s)
    }

    /// A session whose client connects from `source` (any 127.x).
    pub(crate) async fn open_from(addr: SocketAddr, source: std::net::IpAddr) -> LongSession {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(source, 0)).unwrap();
        let mut s = LongSession(socket.connect(addr).await.unwrap(), 0);
        s.echo().await.unwrap();
        s
    }

    pub(crate) async fn echo(&mut self) -> std::io::Result<()> {
        self.1 += 1;
        let msg = format!("long session round {:06}\n", self.1).into_bytes();
        self.0.write_all(&msg).await?;
        let mut back = vec![0u8; msg.len()];
        tokio::time::timeout(Duration::from_secs(20), self.0.read_exact(&mut back))
            .await
            .map_err(|_| std::io::Error::other("echo timed out"))??;
        assert_eq!(back, msg);
        Ok(())
    }
}

fn wait_exit(gw: &mut Gateway, secs: u64) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(status) = gw.0.child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "the old instance did not exit");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Seamless upgrade under load: a new `pairgate run --takeover` takes the
/// listening sockets; no connection attempt fails, the long session goes
/// on on the old process until it ends, then the old process exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn takeover_under_load_refuses_nothing_and_the_old_instance_drains_and_exits() {
    let admin = free_port();
    let root = tempfile::tempdir().unwrap();
    let (x1, d1) = spool_section(root.path(), "site1");
    let (x2, d2) = spool_section(root.path(), "site2");
    let mut pair = Pairing::start_with(|s1, s2| {
        s1.extra = format!(
            "\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n\n[limits]\nshutdown_grace_secs = 20\n{x1}"
        );
        s2.extra = x2;
    })
    .await;
    let load = Load::start(pair.tunnel);
    load.wait_more(20).await;
    let mut long = LongSession::open(pair.tunnel).await;

    let new = Gateway(
        GatewayProcess::start_with(
            Path::new(bin()),
            &pair.site1.config(),
            &["--takeover"],
            None,
        )
        .expect("the new instance starts"),
    );
    load.wait_more(30).await;
    // The long session lives on the old process, which drains.
    for _ in 0..5 {
        long.echo()
            .await
            .expect("long session intact during the swap");
    }
    assert!(
        pair.site1.0.child.try_wait().unwrap().is_none(),
        "the old instance waits for its open session"
    );
    drop(long);
    let mut old = std::mem::replace(&mut pair.site1, new);
    let status = wait_exit(&mut old, 30);
    assert!(status.success(), "old instance: {status}");
    load.wait_more(30).await;
    let (ok, failed) = load.finish().await;
    eprintln!(
        "{ok} tunnelled connections during the takeover test, {} failed",
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "{} of {} attempts failed: {failed:?}",
        failed.len(),
        ok + failed.len() as u64
    );

    // One audit log, one chain: the old instance's stop, then the new one's lines.
    let lines = pair
        .site1
        .wait_audit_count("the new instance's start", 2, |v| {
            v["event"] == "gateway_start"
        });
    let stop = lines
        .iter()
        .position(|v| v["event"] == "gateway_stop" && v["reason"] == "handover")
        .expect("the old instance audits its stop");
    assert!(
        lines[stop + 1..]
            .iter()
            .any(|v| v["event"] == "gateway_start"),
        "the new instance's start follows"
    );
    let verify = std::process::Command::new(bin())
        .args(["audit", "verify", "--log"])
        .arg(pair.site1.audit_path())
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    // The spool moved to the new instance with the lock: files still flow.
    drop_file(
        &d1.outbox,
        "after-takeover.zip",
        b"spooled by the new instance",
    );
    wait_until("the file through the new instance's spool", 60, || {
        files_in(&d2.inbox).contains_key("after-takeover.zip")
    });
    // The new instance serves and is ready.
    let reply = pairgate::admin::client::get(([127, 0, 0, 1], admin).into(), "/readyz").await;
    assert!(reply.is_ok());
}

/// Two processes on one config (one audit log, one spool dir) would fork
/// the audit chain and undo each other's spool recovery: the second is
/// refused with what to do, and the first goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_instance_on_the_same_audit_log_is_refused() {
    let pair = Pairing::start().await;
    let out = std::process::Command::new(bin())
        .args(["run", "--config"])
        .arg(pair.site1.config())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("in use by another pairgate process") && stderr.contains("--takeover"),
        "{stderr}"
    );
    assert_eq!(
        round_trip(pair.tunnel, b"still here").await.unwrap(),
        b"still here"
    );
}
