//! The demo's interception step: a Front End addresses the peer site's
//! File Store by **its own address**, an nftables rule sends the
//! connection to site 1's `[[intercept]]`, and site 2 connects exactly that
//! server. Packet filtering needs a network namespace of its own (root):
//! the step re-runs `pairgate demo` inside one (`crate::netns`), and says
//! plainly when it cannot.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::{io, step, DemoError, POLICY};
use crate::netns::{self, Interception};
use crate::{GatewayProcess, Pairgate, Pki, SiteSpec, POOL1, POOL2};

/// [`netns::INSIDE_ENV`] of the re-run demo.
pub const STEP: &str = "demo-intercept";

const FRONT_END: Ipv4Addr = Ipv4Addr::new(127, 0, 1, 10);
const FILE_STORE: Ipv4Addr = Ipv4Addr::new(127, 0, 20, 50);
const ELSEWHERE: Ipv4Addr = Ipv4Addr::new(127, 0, 30, 1);
const GATEWAY1: Ipv4Addr = Ipv4Addr::new(127, 0, 10, 1);
const MARK: u32 = 0x5047;
const BULK: u64 = 16 << 20;

/// Runs the step in its own namespace under `dir`, or says why not.
///
/// # Errors
/// When the step runs and fails (its output says where).
pub fn show(exe: &Path, dir: &Path) -> Result<(), DemoError> {
    if let Some(why) = netns::unavailable() {
        println!("   not shown here: it needs its own network namespace and nftables — {why}.");
        println!("   Run `sudo pairgate demo` to see a Front End reach the peer's File Store by its own address.");
        return Ok(());
    }
    let log = dir.join("intercept.log");
    let stderr = std::fs::File::create(&log).map_err(io("create intercept.log"))?;
    let status = netns::isolated(exe, STEP)
        .arg("demo")
        .arg("--dir")
        .arg(dir.join("intercept"))
        .stdout(Stdio::inherit())
        .stderr(stderr)
        .status()
        .map_err(io("run unshare"))?;
    if !status.success() {
        return Err(step(format!(
            "the interception step failed ({status}); see {}",
            log.display()
        )));
    }
    Ok(())
}

/// Inside the namespace: two gateways, a File Store on its own address,
/// the nftables rule, one intercepted transfer and one refusal.
pub(super) async fn inner(pairgate: &Pairgate, dir: &Path) -> Result<(), DemoError> {
    std::fs::create_dir_all(dir).map_err(io("create the folder"))?;
    netns::bring_up(&[FRONT_END, FILE_STORE, ELSEWHERE, GATEWAY1])?;
    for server in [FILE_STORE, ELSEWHERE] {
        netns::prefer_source(server, FRONT_END)?;
    }
    let store = crate::digest_backend_at(SocketAddr::from((FILE_STORE, 445))).await?;
    let listen = SocketAddr::from((GATEWAY1, 15445));
    let gateways = start_sites(pairgate, dir, listen)?;
    let rule = Interception {
        servers: vec![FILE_STORE, ELSEWHERE],
        port: 445,
        listener: listen,
        mark: MARK,
    };
    rule.apply()?;
    println!(
        "   nftables (in a namespace of its own): TCP 445 to {FILE_STORE}, {ELSEWHERE} → site1's [[intercept]] {listen}"
    );

    let t = Instant::now();
    let digest = crate::stream_bulk(store, BULK)
        .await
        .map_err(io("stream to the File Store"))?;
    if digest != crate::bulk_digest(BULK) {
        return Err(step("the File Store received different bytes"));
    }
    println!(
        "   a Front End ({FRONT_END}) sent {} MiB to the File Store's own address {store} in {:.2} s: \
         intercepted at site1, carried over mTLS, connected by site2, SHA-256 checked",
        BULK >> 20,
        t.elapsed().as_secs_f64()
    );
    let refused = tokio::net::TcpStream::connect((ELSEWHERE, 445)).await;
    if let Ok(mut stream) = refused {
        use tokio::io::AsyncReadExt;
        let mut byte = [0u8; 1];
        let _ = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut byte)).await;
    }
    let [site1, site2] = &gateways;
    let denial = wait_line(site1, |v| v["reason"] == "destination_not_allowed").await?;
    println!(
        "   a connection to {ELSEWHERE}:445 (not in the intercept's destinations) was refused: {} — {}",
        denial["reason"].as_str().unwrap_or("?"),
        denial["detail"].as_str().unwrap_or("")
    );
    let want = SocketAddr::from((FILE_STORE, 445)).to_string();
    for (name, gateway) in [("site1", site1), ("site2", site2)] {
        let close = wait_line(gateway, |v| {
            v["event"] == "close" && v["orig_dst"] == want.as_str()
        })
        .await?;
        println!(
            "   {name} audit: close {} client_addr={} orig_dst={} bytes_in={}",
            close["direction"].as_str().unwrap_or("?"),
            close["client_addr"].as_str().unwrap_or("-"),
            close["orig_dst"].as_str().unwrap_or("-"),
            close["bytes_in"]
        );
    }
    Ok(())
}

fn start_sites(
    pairgate: &Pairgate,
    dir: &Path,
    listen: SocketAddr,
) -> Result<[GatewayProcess; 2], DemoError> {
    let pki = Pki::create(pairgate, &dir.join("certs"), "pairgate demo pairing CA")?;
    std::fs::write(dir.join("policy.toml"), POLICY).map_err(io("write the policy"))?;
    let ports = [crate::free_port()?, crate::free_port()?];
    let site = |i: usize, name: &str, pool: &str, peer: &str, extra: String| {
        Ok::<_, DemoError>(SiteSpec {
            name: name.into(),
            pool: pool.into(),
            peer_pool: peer.into(),
            cert: pki.issue(name, pool, 397)?,
            ca: pki.ca_path(),
            crl: None,
            peer_listen: ports[i],
            peer_connect: ports[1 - i],
            tunnels: vec![],
            exports: vec![],
            extra,
        })
    };
    let site1 = site(
        0,
        "site1",
        POOL1,
        POOL2,
        format!(
            "\n[[intercept]]\nservice = \"backup-smb\"\nlisten = \"{listen}\"\n\
             allow_sources = [\"{FRONT_END}\"]\ndestinations = [\"127.0.20.0/24\"]\nports = [445]\n"
        ),
    )?;
    let site2 = site(
        1,
        "site2",
        POOL2,
        POOL1,
        "\n[[export]]\nservice = \"backup-smb\"\ndestinations = [\"127.0.20.0/24\"]\nports = [445]\n"
            .into(),
    )?;
    let mut started = Vec::new();
    for spec in [site2, site1] {
        let config = spec.write(dir)?;
        let log = dir.join(format!("{}.log", spec.name));
        started.push(GatewayProcess::start(pairgate.exe(), &config, Some(&log))?);
    }
    let site1 = started.pop().ok_or_else(|| step("site1 did not start"))?;
    let site2 = started.pop().ok_or_else(|| step("site2 did not start"))?;
    println!("   site1 {}", site1.ready);
    Ok([site1, site2])
}

async fn wait_line(
    gateway: &GatewayProcess,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> Result<serde_json::Value, DemoError> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(line) = gateway.audit_lines().into_iter().find(|v| pred(v)) {
            return Ok(line);
        }
        if Instant::now() > deadline {
            return Err(step(format!(
                "no such audit line in {}",
                gateway.audit.display()
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
