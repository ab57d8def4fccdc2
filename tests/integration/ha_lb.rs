//! Two gateways per site, active/active behind a layer-4 load balancer
//! (issue 16): HAProxy in TCP mode in front of two site-1 instances, its
//! health check on each instance's `/readyz` — the configuration the
//! operator guide prints ("Active/active behind a layer-4 load balancer").
//! Both ready instances take connections; a third that is alive but not
//! ready (its peer link is down: it accepts, but could not tunnel) gets
//! none; one stopped for maintenance (SIGTERM: not ready at once, drains,
//! exits) and every new connection goes to the other, with none failing.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::ha::Load;
use crate::harness::*;

/// The operator guide's HAProxy configuration (the block that starts with
/// `# /etc/haproxy/haproxy.cfg`), with the test's addresses in its `bind`
/// line and one `server` line per instance in place of the guide's.
pub(crate) fn haproxy_config(
    front: SocketAddr,
    servers: &[(&str, SocketAddr, SocketAddr)],
) -> String {
    let guide = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/operator-guide.md"),
    )
    .unwrap();
    let start = guide
        .find("# /etc/haproxy/haproxy.cfg")
        .expect("the guide's HAProxy block");
    let block = &guide[start..];
    let block = &block[..block.find("```").expect("the block's end")];
    let mut cfg = String::new();
    let mut servers_written = false;
    for line in block.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.first() {
            Some(&"bind") => cfg += &format!("    bind {front}\n"),
            Some(&"server") if !servers_written => {
                for (name, tunnel, admin) in servers {
                    cfg += &format!("    server {name} {tunnel} check port {}\n", admin.port());
                }
                servers_written = true;
            }
            Some(&"server") => {}
            _ => cfg += &format!("{line}\n"),
        }
    }
    assert!(
        servers_written,
        "the guide's block has no server line:\n{block}"
    );
    cfg
}

struct Haproxy(Child);

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn haproxy(config: &Path) -> Option<Haproxy> {
    let found = Command::new("haproxy").arg("-v").output().is_ok();
    if !found {
        let required = std::env::var("PAIRGATE_TEST_NETNS").is_ok_and(|v| v == "require");
        assert!(
            !required,
            "haproxy is not installed (apt-get install haproxy)"
        );
        eprintln!("SKIPPED ha_lb: haproxy is not installed");
        return None;
    }
    let check = Command::new("haproxy")
        .args(["-c", "-f"])
        .arg(config)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "haproxy -c refused the guide's configuration: {}",
        String::from_utf8_lossy(&check.stdout)
    );
    let child = Command::new("haproxy")
        .args(["-db", "-f"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Some(Haproxy(child))
}

fn allowed_in(gw: &Gateway) -> usize {
    gw.audit_lines()
        .iter()
        .filter(|v| v["event"] == "connection" && v["decision"] == "allow")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_behind_haproxy_share_the_load_and_one_leaves_without_a_failure() {
    let (admin_a, admin_b, admin_c) = (free_port(), free_port(), free_port());
    let mut pair = Pairing::start_with(|s1, _| {
        s1.tunnels.truncate(1);
        // The guide: a delay above the balancer's time to mark it down.
        s1.extra = format!(
            "\n[admin]\nlisten = \"127.0.0.1:{admin_a}\"\n\n[limits]\nshutdown_delay_secs = 3\nshutdown_grace_secs = 5\n"
        );
    })
    .await;
    let mut b = pair.site1_spec.clone();
    b.name = "site1b".into();
    b.peer_listen = free_port();
    b.tunnels[0].1 = free_port();
    b.extra = format!("\n[admin]\nlisten = \"127.0.0.1:{admin_b}\"\n");
    let site1b = Gateway::start(&b.write(pair.dir.path()).unwrap());
    // Alive, listening, but its peer is unreachable: /readyz says 503.
    let mut c = b.clone();
    c.name = "site1c".into();
    c.peer_listen = free_port();
    c.peer_connect = free_port();
    c.tunnels[0].1 = free_port();
    c.extra = format!("\n[admin]\nlisten = \"127.0.0.1:{admin_c}\"\n");
    let site1c = Gateway::start(&c.write(pair.dir.path()).unwrap());
    let local = |port| SocketAddr::from(([127, 0, 0, 1], port));
    let front = local(free_port());
    let config = pair.dir.path().join("haproxy.cfg");
    std::fs::write(
        &config,
        haproxy_config(
            front,
            &[
                ("gw01a", pair.tunnel, local(admin_a)),
                ("gw01b", b.tunnel_addr(0).unwrap(), local(admin_b)),
                ("gw01c", c.tunnel_addr(0).unwrap(), local(admin_c)),
            ],
        ),
    )
    .unwrap();
    let Some(_haproxy) = haproxy(&config) else {
        return;
    };

    // HAProxy starts with every server up and marks one down after
    // `fall` failed checks: wait until the not-ready one is out (30
    // successes in a row) and both ready ones took connections.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut in_a_row = 0;
    while in_a_row < 30 || allowed_in(&pair.site1) == 0 || allowed_in(&site1b) == 0 {
        assert!(
            Instant::now() < deadline,
            "the balancer never settled on the two ready instances"
        );
        match round_trip(front, b"which one?").await {
            Ok(back) if back == b"which one?" => in_a_row += 1,
            _ => in_a_row = 0,
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let count = |gw: &Gateway| {
        gw.audit_lines()
            .into_iter()
            .filter(|v| v["event"] == "connection")
            .count()
    };
    let c_before = count(&site1c);
    // Several clients at once, so that connections are in flight (and in
    // the kernel's accept queue) whenever the instance leaves.
    let loads: Vec<Load> = (0..8).map(|_| Load::start(front)).collect();
    for load in &loads {
        load.wait_more(5).await;
    }
    // Maintenance: instance A is stopped (`systemctl stop`): not ready at
    // once, accepting for shutdown_delay_secs while the balancer moves
    // away, then draining and gone.
    let served_by_b = allowed_in(&site1b);
    assert!(pair.site1.terminate().success());
    for load in &loads {
        load.wait_more(10).await;
    }
    let (mut ok, mut failed) = (0, Vec::new());
    for load in loads {
        let (o, f) = load.finish().await;
        ok += o;
        failed.extend(f);
    }
    assert!(
        failed.is_empty(),
        "{} of {} connections failed while an instance left: {failed:?}",
        failed.len(),
        ok + failed.len() as u64
    );
    assert!(
        allowed_in(&site1b) >= served_by_b + 80,
        "the remaining instance did not take over"
    );
    assert_eq!(
        count(&site1c),
        c_before,
        "the balancer sent connections to an instance that was not ready"
    );
}
