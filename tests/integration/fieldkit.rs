//! Tools for the field tests of the spool (`spool_field`, `spool_faults`):
//! CPU time of a process, gateways started inside their own mount
//! namespace (a small tmpfs) or without the root bypass of file
//! permissions, a TCP relay whose connections can be frozen, and admin
//! endpoint readers.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pairgate_lab::GatewayProcess;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::harness::*;

/// utime + stime of a process, in clock ticks (`/proc/PID/stat` fields 14, 15).
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    // The command name (field 2) may hold spaces: fields follow the last ')'.
    let rest = &stat[stat.rfind(')').expect("')' in stat") + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state); utime is field 14, stime field 15.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Voluntary context switches of all threads of `pid` so far: each is a
/// thread going to sleep, so their rate counts a process's wake-ups.
pub fn wakeups(pid: u32) -> u64 {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("read /proc/PID/task");
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
        .flat_map(|status| {
            status
                .lines()
                .filter_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                .filter_map(|v| v.trim().parse::<u64>().ok())
                .collect::<Vec<_>>()
        })
        .sum()
}

/// Clock ticks per second (`getconf CLK_TCK`, 100 on Linux).
pub fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// Whether this process runs as root (the tmpfs and capability tests
/// need it; CI runs as root).
pub fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// How a gateway process is wrapped.
#[derive(Default)]
pub struct Wrap {
    /// (folder, size) pairs: a tmpfs of that size is mounted over each
    /// folder in the gateway's own mount namespace.
    pub tmpfs: Vec<(PathBuf, &'static str)>,
    /// Start without CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH, so that file
    /// modes apply even to root.
    pub honour_modes: bool,
}

/// Starts `pairgate run --config config` through a shell wrapper that
/// applies `wrap` (root only), its stderr going to `stderr`.
pub fn start_wrapped(config: &Path, wrap: &Wrap, stderr: &Path) -> Gateway {
    let mut script = String::from("#!/bin/sh\nset -e\n");
    for (dir, size) in &wrap.tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        script += &format!("mount -t tmpfs -o size={size} tmpfs '{}'\n", dir.display());
    }
    let mut exec = String::from("exec ");
    if wrap.honour_modes {
        exec += "setpriv --bounding-set=-dac_override,-dac_read_search ";
    }
    exec += &format!("'{}' \"$@\"\n", bin());
    script += &exec;
    let inner = config.with_extension("inner.sh");
    std::fs::write(&inner, script).unwrap();
    let outer = config.with_extension("wrap.sh");
    let body = if wrap.tmpfs.is_empty() {
        format!("#!/bin/sh\nexec sh '{}' \"$@\"\n", inner.display())
    } else {
        format!(
            "#!/bin/sh\nexec unshare -m --propagation private sh '{}' \"$@\"\n",
            inner.display()
        )
    };
    std::fs::write(&outer, body).unwrap();
    let status = std::process::Command::new("chmod")
        .arg("+x")
        .arg(&outer)
        .status()
        .unwrap();
    assert!(status.success());
    Gateway(GatewayProcess::start(&outer, config, Some(stderr)).expect("start wrapped gateway"))
}

/// A path as the gateway process sees it (through its mount namespace).
pub fn seen_by(gw: &Gateway, path: &Path) -> PathBuf {
    let rel = path.strip_prefix("/").unwrap_or(path);
    PathBuf::from(format!("/proc/{}/root", gw.0.child.id())).join(rel)
}

/// The JSON of `GET path` on an admin endpoint.
pub async fn admin_json(admin: SocketAddr, path: &str) -> serde_json::Value {
    let reply = pairgate::admin::client::get(admin, path).await.unwrap();
    serde_json::from_str(&reply.body).unwrap()
}

/// The text of `GET /metrics`.
pub async fn metrics_text(admin: SocketAddr) -> String {
    pairgate::admin::client::get(admin, "/metrics")
        .await
        .unwrap()
        .body
}

/// The value of one metric series in an exposition, if present.
pub fn metric(text: &str, name: &str, label: Option<(&str, &str)>) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric_name, labels) = match series.split_once('{') {
                Some((n, l)) => (n, l),
                None => (series, ""),
            };
            if metric_name != name {
                return None;
            }
            if let Some((k, v)) = label {
                if !labels.contains(&format!("{k}=\"{v}\"")) {
                    return None;
                }
            }
            value.parse().ok()
        })
}

/// Waits (up to 20 s: metrics are refreshed every 2 s) until a metric
/// satisfies `ok`; returns the exposition.
pub async fn wait_metric(
    admin: SocketAddr,
    name: &str,
    label: Option<(&str, &str)>,
    ok: impl Fn(f64) -> bool,
) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let text = metrics_text(admin).await;
        if metric(&text, name, label).is_some_and(&ok) {
            return text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{name} {label:?} never as expected:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A TCP relay on loopback in front of `target`. Once a connection has
/// carried more than `freeze_after` bytes towards the target, that one
/// connection is frozen: nothing more is forwarded either way and nothing
/// is closed (a black-holed flow, as after a firewall's state loss).
/// Later connections are relayed normally.
pub struct Relay {
    pub frozen: Arc<AtomicBool>,
    pub connections: Arc<AtomicU64>,
    /// Sockets of frozen connections, kept open until the relay is dropped.
    held: Arc<Mutex<Vec<(TcpStream, TcpStream)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
        self.held.lock().unwrap().clear();
    }
}

impl Relay {
    pub async fn start(port: u16, target: SocketAddr, freeze_after: u64) -> Relay {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let frozen = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(AtomicU64::new(0));
        let held = Arc::new(Mutex::new(Vec::new()));
        let (f, c, h) = (frozen.clone(), connections.clone(), held.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                c.fetch_add(1, Ordering::Relaxed);
                let (f, h) = (f.clone(), h.clone());
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else {
                        return;
                    };
                    relay_one(client, server, freeze_after, f, h).await;
                });
            }
        });
        Relay {
            frozen,
            connections,
            held,
            task,
        }
    }
}

async fn relay_one(
    mut client: TcpStream,
    mut server: TcpStream,
    freeze_after: u64,
    frozen: Arc<AtomicBool>,
    held: Arc<Mutex<Vec<(TcpStream, TcpStream)>>>,
) {
    let mut up = 0u64;
    let (mut a, mut b) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    loop {
        let freeze_now = up > freeze_after && !frozen.swap(true, Ordering::SeqCst);
        if freeze_now {
            held.lock().unwrap().push((client, server));
            return;
        }
        tokio::select! {
            n = client.read(&mut a) => match n {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    up += n as u64;
                    if server.write_all(&a[..n]).await.is_err() { return; }
                }
            },
            n = server.read(&mut b) => match n {
                Ok(0) | Err(_) => return,
                Ok(n) => if client.write_all(&b[..n]).await.is_err() { return; },
            },
        }
    }
}

/// Waits up to `secs` for `pred` on the gateway's audit log.
pub fn audit_count(gw: &Gateway, pred: impl Fn(&serde_json::Value) -> bool) -> usize {
    gw.audit_lines().iter().filter(|v| pred(v)).count()
}

/// Sleeps on the test runtime.
pub async fn pause(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}
