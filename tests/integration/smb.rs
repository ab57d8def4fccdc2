//! A real SMB client (smbclient) through the tunnel to a real Samba server.
//! Skips, saying why, when Samba is not installed (`.ci/run` installs it).

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;

pub struct Smbd(Child);

impl Drop for Smbd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn have(tool: &str) -> bool {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .any(|d| Path::new(d).join(tool).exists())
}

fn start_smbd(dir: &Path, port: u16) -> Smbd {
    start_smbd_at(dir, Ipv4Addr::LOCALHOST, port)
}

/// A Samba server with one guest-writable `share` (at `dir/share`) on
/// `ip:port`; `ip` must be an address of an interface (Samba binds its
/// interfaces only).
pub fn start_smbd_at(dir: &Path, ip: Ipv4Addr, port: u16) -> Smbd {
    let share = dir.join("share");
    for sub in ["share", "private", "lock", "state", "cache", "pid"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    // Samba's guest user must reach the share.
    use std::os::unix::fs::PermissionsExt;
    let mut p = dir.to_path_buf();
    while p.starts_with(std::env::temp_dir()) && p != std::env::temp_dir() {
        let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755));
        p.pop();
    }
    std::fs::set_permissions(&share, std::fs::Permissions::from_mode(0o777)).unwrap();
    let d = dir.display();
    let conf = format!(
        "[global]\n workgroup = PAIRGATE\n server role = standalone server\n interfaces = {ip}\n\
         bind interfaces only = yes\n smb ports = {port}\n private dir = {d}/private\n lock directory = {d}/lock\n\
         state directory = {d}/state\n cache directory = {d}/cache\n pid directory = {d}/pid\n\
         log file = {d}/smbd.log\n map to guest = Bad User\n guest account = nobody\n disable netbios = yes\n\
         load printers = no\n printing = bsd\n printcap name = /dev/null\n disable spoolss = yes\n\
         [share]\n path = {}\n guest ok = yes\n read only = no\n",
        share.display()
    );
    let conf_path = dir.join("smb.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let child = Command::new("smbd")
        .args(["--foreground", "--no-process-group", "--configfile"])
        .arg(&conf_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start smbd");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect((ip, port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "smbd did not listen on {ip}:{port}; see {d}/smbd.log"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Smbd(child)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smbclient_put_and_get_through_the_tunnel() {
    if !have("smbd") || !have("smbclient") {
        eprintln!("SKIPPED smbclient_put_and_get_through_the_tunnel: Samba is not installed (apt-get install samba smbclient)");
        return;
    }
    let smb_dir = tempfile::tempdir().unwrap();
    let smb_port = free_port();
    let _smbd = start_smbd(smb_dir.path(), smb_port);
    let target = std::net::SocketAddr::from(([127, 0, 0, 1], smb_port));
    let pair =
        Pairing::start_with(|_, site2| site2.exports = vec![("backup-smb".into(), target)]).await;

    let work = pair.dir.path().join("smbwork");
    std::fs::create_dir_all(&work).unwrap();
    let payload = pattern(5 * 1024 * 1024 + 123);
    std::fs::write(work.join("package.zip"), &payload).unwrap();
    let tunnel_port = pair.tunnel.port().to_string();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("smbclient")
            .current_dir(&work)
            .args([
                "//127.0.0.1/share",
                "-N",
                "-p",
                &tunnel_port,
                "-c",
                "put package.zip; get package.zip back.zip",
            ])
            .output()
            .map(|o| (o, work))
    })
    .await
    .unwrap()
    .expect("run smbclient");
    let (out, work) = out;
    assert!(
        out.status.success(),
        "smbclient failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The file reached the share through the tunnel, and came back identical.
    assert!(std::fs::read(smb_dir.path().join("share/package.zip")).unwrap() == payload);
    assert!(std::fs::read(work.join("back.zip")).unwrap() == payload);
    let close = pair
        .site2
        .wait_audit("smb close", |v| v["event"] == "close");
    assert!(close["bytes_in"].as_u64().unwrap() > payload.len() as u64);
    assert!(close["bytes_out"].as_u64().unwrap() > payload.len() as u64);
}
