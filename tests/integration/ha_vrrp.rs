//! Active/standby with keepalived, for real (issue 16): two gateway hosts
//! of site 1 (`gw01a`, `gw01b`: network namespaces on one bridged LAN, see
//! `pairgate_lab::hosts`), each running `pairgate run` and keepalived with
//! the operator guide's `keepalived.conf` — read from the guide, with only
//! the addresses, user and paths mapped — over multicast VRRP. The LAN side
//! (this test process) plays the peer site (site 2's gateway and an echo
//! server) and the Front End that dials the virtual address.
//!
//! Outside root, or without keepalived, the test prints why it skipped;
//! with `PAIRGATE_TEST_NETNS=require` (CI) that is a failure.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pairgate::pki::Validity;
use pairgate_lab::hosts::{self, Host, Lan};
use pairgate_lab::keepalived::{self, Keepalived};
use pairgate_lab::{netns, GatewayProcess};

use crate::harness::*;
use crate::spool::wait_until;

/// The LAN side: the peer site's gateway and the Front End.
const LAN: Ipv4Addr = Ipv4Addr::new(127, 1, 0, 1);
const HOST_A: Ipv4Addr = Ipv4Addr::new(127, 1, 0, 2);
const HOST_B: Ipv4Addr = Ipv4Addr::new(127, 1, 0, 3);
/// The virtual address (the guide's 10.1.0.10).
const VIP: Ipv4Addr = Ipv4Addr::new(127, 1, 0, 10);
const GUIDE_VIP: &str = "10.1.0.10";
/// The guide's `sysctl -w …` on each host.
const NONLOCAL_BIND: &str = "net.ipv4.ip_nonlocal_bind=1";
/// Runs `pairgate status --ready` (the guide's `user pairgate`).
const SCRIPT_USER: &str = "nobody";

/// Re-runs `test` in its own network, PID and mount namespace (with its own
/// `/proc`, which `hosts` needs); `true` in that inner run.
fn isolate(test: &str) -> bool {
    if let Some(step) = netns::inside() {
        assert_eq!(step, test, "re-run for another test");
        return true;
    }
    crate::netns::rerun_isolated(
        test,
        hosts::unavailable().or_else(keepalived::unavailable),
        hosts::isolated,
    )
}

/// The guide's `keepalived.conf` for gw01a, as printed there (after the
/// `sysctl` command the test runs too).
fn guide_keepalived_conf() -> String {
    let guide = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/operator-guide.md"),
    )
    .unwrap();
    assert!(guide.contains(&format!("\nsysctl -w {NONLOCAL_BIND}\n")));
    let start = guide
        .find("# /etc/keepalived/keepalived.conf on gw01a")
        .expect("the guide's keepalived.conf block");
    let len = guide[start..].find("\n```").expect("the end of the block");
    guide[start..start + len + 1].to_owned()
}

/// `text` with `from` replaced by `to`, which must occur exactly once.
fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(text.matches(from).count(), 1, "{from:?} in\n{text}");
    text.replacen(from, to, 1)
}

struct Ports {
    site1_peer: u16,
    site2_peer: u16,
    admin: u16,
    tunnel: u16,
}

/// One site-1 instance's config: the listeners on the virtual address, the
/// same for both instances except `audit.path` and `spool.dir` (the
/// guide's rule).
fn site1_config(pki: &Pki, instance: &str, ports: &Ports) -> String {
    let (crt, key) = (pki.0.dir.join("site1.crt"), pki.0.dir.join("site1.key"));
    format!(
        "[gateway]\npool = \"{POOL1}\"\npeer_pool = \"{POOL2}\"\npolicy = \"policy.toml\"\n\n\
         [tls]\ncert = \"{}\"\nkey = \"{}\"\nca = \"{}\"\n\n\
         [peer]\nlisten = \"{VIP}:{}\"\nconnect = \"{LAN}:{}\"\nheartbeat_secs = 1\n\n\
         [admin]\nlisten = \"127.0.0.1:{}\"\n\n\
         [audit]\npath = \"site1{instance}-audit.jsonl\"\n\n\
         [spool]\ndir = \"spool-gw01{instance}\"\nkey = \"spool.key\"\n\
         outbox = \"outbox\"\ninbox = \"inbox\"\n\n\
         [[tunnel]]\nservice = \"backup-smb\"\nlisten = \"{VIP}:{}\"\n\
         allow_sources = [\"{LAN}/32\"]\n",
        crt.display(),
        key.display(),
        pki.ca_path().display(),
        ports.site1_peer,
        ports.site2_peer,
        ports.admin,
        ports.tunnel,
    )
}

/// The peer site: its peer link dials the virtual address.
fn site2_config(pki: &Pki, ports: &Ports, backend: SocketAddr) -> String {
    let (crt, key) = (pki.0.dir.join("site2.crt"), pki.0.dir.join("site2.key"));
    format!(
        "[gateway]\npool = \"{POOL2}\"\npeer_pool = \"{POOL1}\"\npolicy = \"policy.toml\"\n\n\
         [tls]\ncert = \"{}\"\nkey = \"{}\"\nca = \"{}\"\n\n\
         [peer]\nlisten = \"{LAN}:{}\"\nconnect = \"{VIP}:{}\"\n\n\
         [audit]\npath = \"site2-audit.jsonl\"\n\n\
         [[export]]\nservice = \"backup-smb\"\ntarget = \"{backend}\"\n",
        crt.display(),
        key.display(),
        pki.ca_path().display(),
        ports.site2_peer,
        ports.site1_peer,
    )
}

/// One gateway host: its namespace, its gateway and its keepalived
/// (dropped first: keepalived, gateway, then the namespace).
struct GatewayHost {
    keepalived: Option<Keepalived>,
    gateway: Gateway,
    config: PathBuf,
    host: Host,
}

impl GatewayHost {
    /// The host, its `sysctl` (the guide's command) and its gateway.
    fn start(lan: &Lan, name: &str, addr: Ipv4Addr, exe: &Path, config: PathBuf) -> GatewayHost {
        let host = Host::attach(lan, name, addr).unwrap();
        let dir = config.parent().unwrap();
        let wrapper = host.wrapper(exe, &dir.join(format!("in-{name}"))).unwrap();
        // Before the guide's sysctl, the gateway cannot listen on the
        // address it does not hold yet — and says what to do.
        let log = dir.join(format!("refused-{name}.log"));
        assert!(GatewayProcess::start(&wrapper, &config, Some(&log)).is_err());
        let refused = std::fs::read_to_string(&log).unwrap();
        assert!(
            refused.contains(&format!("{VIP}:"))
                && refused.contains(&format!("sysctl -w {NONLOCAL_BIND}")),
            "{refused}"
        );
        // The guide's command: bind the virtual address before holding it.
        host.run("sysctl", &["-w", NONLOCAL_BIND]).unwrap();
        let gateway = Gateway(GatewayProcess::start(&wrapper, &config, None).unwrap());
        GatewayHost {
            keepalived: None,
            gateway,
            config,
            host,
        }
    }

    /// `pairgate status --ready --config …` in this host, as keepalived
    /// runs it: (exit 0, what it printed).
    fn ready(&self) -> (bool, String) {
        let out = self
            .host
            .command(bin())
            .args(["status", "--ready", "--config"])
            .arg(&self.config)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    fn holds_vip(&self) -> bool {
        self.host.holds(VIP).unwrap()
    }

    fn keepalived(&self) -> &Keepalived {
        self.keepalived.as_ref().unwrap()
    }

    /// Tunnelled connections this gateway carried to their end, cleanly.
    fn served(&self) -> usize {
        self.gateway
            .audit_lines()
            .iter()
            .filter(|v| {
                v["event"] == "close"
                    && v["service"] == "backup-smb"
                    && v["direction"] == "outbound"
                    && v["error"].is_null()
            })
            .count()
    }

    /// Waits until this gateway's audit log shows `n` served connections.
    fn wait_served(&self, n: usize) {
        eventually(
            &format!("{n} connections audited by {}", self.host.name),
            || self.served() >= n,
        );
    }
}

impl Drop for GatewayHost {
    /// A failed test shows what keepalived saw.
    fn drop(&mut self) {
        if let (true, Some(k)) = (std::thread::panicking(), &self.keepalived) {
            eprintln!("--- keepalived in {} ---\n{}", self.host.name, k.log_text());
        }
    }
}

/// Waits until `cond` holds (generous: keepalived's timers are seconds and
/// the machine is loaded).
fn eventually(what: &str, cond: impl FnMut() -> bool) {
    wait_until(what, 45, cond);
}

/// A round trip through the virtual address, byte-identical.
fn through_vip(rt: &tokio::runtime::Runtime, port: u16, tag: &str) {
    let payload = [tag.as_bytes(), &pattern(64 * 1024)].concat();
    let addr = SocketAddr::from((VIP, port));
    let back = rt
        .block_on(round_trip(addr, &payload))
        .unwrap_or_else(|e| panic!("{tag}: round trip through {addr}: {e}"));
    assert!(back == payload, "{tag}: the echo differs");
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The guide's keepalived.conf for one host: addresses, user and paths
/// mapped, gw01b with its priority.
fn keepalived_conf(guide: &str, exe: &Path, config: &Path, b: bool) -> String {
    let mut conf = replace_once(guide, "/usr/local/bin/pairgate", exe.to_str().unwrap());
    conf = replace_once(&conf, "/etc/pairgate/site1.toml", config.to_str().unwrap());
    conf = replace_once(&conf, &format!("{GUIDE_VIP}/24"), &format!("{VIP}/24"));
    conf = replace_once(&conf, "user pairgate", &format!("user {SCRIPT_USER}"));
    if b {
        conf = replace_once(&conf, "priority 110", "priority 100");
    }
    conf
}

/// The issue's active/standby: the address lands on the first ready
/// instance and a tunnelled connection to it round-trips; when that
/// instance's peer link goes down it is no longer ready, keepalived moves
/// the address, and a new connection goes through the standby (its audit
/// log shows it); when the link is back, the address stays (`nopreempt`);
/// when the standby's gateway stops, the address goes back.
#[test]
fn keepalived_moves_the_address_to_the_ready_instance() {
    if !isolate("ha_vrrp::keepalived_moves_the_address_to_the_ready_instance") {
        return;
    }
    // keepalived runs the check as SCRIPT_USER: it must reach the binary and
    // read the config (the keys stay 0600; the check does not read them) —
    // so under /tmp, whatever TMPDIR says (it may sit in a private home).
    let root = tempfile::Builder::new()
        .prefix("pairgate-vrrp")
        .tempdir_in("/tmp")
        .unwrap();
    let dir = root.path();
    set_mode(dir, 0o755);
    let exe = dir.join("pairgate");
    std::fs::hard_link(bin(), &exe)
        .or_else(|_| std::fs::copy(bin(), &exe).map(drop))
        .unwrap();
    let pki = Pki::new(&dir.join("pki"), "test pairing CA");
    set_mode(&dir.join("pki"), 0o755);
    pki.issue("site1", POOL1, Validity::days_from_now(30));
    pki.issue("site2", POOL2, Validity::days_from_now(30));
    std::fs::write(dir.join("policy.toml"), POLICY).unwrap();
    pairgate::spool::MasterKey::generate()
        .unwrap()
        .write_key_file(&dir.join("spool.key"))
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let backend = rt.block_on(echo_backend()).unwrap();
    let ports = Ports {
        site1_peer: free_port(),
        site2_peer: free_port(),
        admin: free_port(),
        tunnel: free_port(),
    };
    let configs = ["a", "b"].map(|i| {
        let path = dir.join(format!("site1{i}.toml"));
        std::fs::write(&path, site1_config(&pki, i, &ports)).unwrap();
        path
    });
    let texts = configs.clone().map(|c| std::fs::read_to_string(c).unwrap());
    let differing: Vec<&str> = texts[0]
        .lines()
        .zip(texts[1].lines())
        .filter(|(x, y)| x != y)
        .filter_map(|(x, _)| x.split(" = ").next())
        .collect();
    assert_eq!(
        differing,
        ["path", "dir"],
        "only audit.path, spool.dir differ"
    );

    // The LAN: the peer site and the Front End here, the two hosts on it.
    let lan = Lan::create("lan0", LAN, 24).unwrap();
    std::fs::write(dir.join("site2.toml"), site2_config(&pki, &ports, backend)).unwrap();
    let _site2 = Gateway::start(&dir.join("site2.toml"));
    let [config_a, config_b] = configs;
    let mut a = GatewayHost::start(&lan, "gw01a", HOST_A, &exe, config_a);
    let mut b = GatewayHost::start(&lan, "gw01b", HOST_B, &exe, config_b);
    for gw in [&a, &b] {
        eventually(&format!("{} ready", gw.host.name), || gw.ready().0);
    }

    // 1. gw01a's keepalived first: it takes the address; gw01b then waits
    // as BACKUP and the address stays on gw01a.
    let guide = guide_keepalived_conf();
    for (gw, is_b) in [(&mut a, false), (&mut b, true)] {
        let conf = dir.join(format!("keepalived-{}.conf", gw.host.name));
        std::fs::write(&conf, keepalived_conf(&guide, &exe, &gw.config, is_b)).unwrap();
        gw.keepalived = Some(Keepalived::start(&gw.host, &conf, dir).unwrap());
        if !is_b {
            eventually("gw01a holds the address", || gw.holds_vip());
        }
    }
    eventually("gw01b in BACKUP", || b.keepalived().entered("BACKUP") >= 1);
    assert!(a.holds_vip() && !b.holds_vip(), "the address left gw01a");
    through_vip(&rt, ports.tunnel, "via gw01a");
    a.wait_served(1);
    assert_eq!(b.served(), 0, "gw01b carried a connection");

    // 2. gw01a loses its peer link (a route to the peer site that refuses):
    // it is not ready, keepalived gives the address to gw01b, and a new
    // connection goes through gw01b.
    let peer_site = format!("{LAN}/32");
    a.host
        .run("ip", &["route", "add", "prohibit", &peer_site])
        .unwrap();
    eventually("gw01a not ready: peer_link", || {
        let (ok, text) = a.ready();
        !ok && text.contains("peer_link: down")
    });
    eventually("the address on gw01b", || b.holds_vip() && !a.holds_vip());
    assert!(
        a.keepalived().entered("FAULT") >= 1,
        "{}",
        a.keepalived().log_text()
    );
    through_vip(&rt, ports.tunnel, "via gw01b");
    b.wait_served(1);
    assert_eq!(a.served(), 1, "gw01a carried the connection after failover");

    // 3. The link is back: gw01a is ready and waits as BACKUP; with
    // `nopreempt` the address stays on gw01b, which serves new connections.
    a.host
        .run("ip", &["route", "del", "prohibit", &peer_site])
        .unwrap();
    eventually("gw01a ready again", || a.ready().0);
    eventually("gw01a back in BACKUP", || {
        a.keepalived().state().as_deref() == Some("BACKUP")
    });
    // Without nopreempt gw01a (priority 110) would take the address at
    // gw01b's next advertisement (advert_int 1): watch a few of them.
    let watch = Instant::now() + Duration::from_secs(5);
    while Instant::now() < watch {
        assert!(b.holds_vip() && !a.holds_vip(), "the address moved back");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(b.keepalived().state().as_deref(), Some("MASTER"));
    through_vip(&rt, ports.tunnel, "still via gw01b");
    b.wait_served(2);
    assert_eq!(
        a.served(),
        1,
        "gw01a carried a connection after it came back"
    );

    // 4. gw01b's gateway stops: its check finds nothing to ask, and the
    // address goes back to gw01a, which serves the next connection.
    b.gateway.terminate();
    eventually("the address back on gw01a", || {
        a.holds_vip() && !b.holds_vip()
    });
    assert!(
        b.keepalived().entered("FAULT") >= 1,
        "{}",
        b.keepalived().log_text()
    );
    through_vip(&rt, ports.tunnel, "via gw01a again");
    a.wait_served(2);
}
