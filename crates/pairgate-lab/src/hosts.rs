//! Several lab "hosts" on one LAN segment, each a network namespace of its
//! own: for what needs more than one machine — two gateway hosts handing a
//! virtual address to each other with keepalived (VRRP), as seen from a
//! third party (the peer site, the Front Ends) on the same segment.
//!
//! ## How
//! The test re-runs itself under [`isolated`] (`unshare --net --pid --fork
//! --kill-child --mount-proc`, [`netns::INSIDE_ENV`] naming the step). That
//! namespace is the LAN side: a bridge ([`Lan`]) with an address of its own.
//! Each [`Host`] is a child `unshare --net sleep infinity` whose namespace
//! gets one end of a veth pair (named `eth0` in there, the other end on the
//! bridge); commands run in it under `nsenter --net=/proc/<pid>/ns/net`.
//! When the re-run test ends — normally, by panic, or killed — the kernel
//! kills every process of its PID namespace (the holders, gateways,
//! keepalived) and the namespaces, veths and the bridge disappear with them.
//!
//! `--mount-proc` is not optional: without a `/proc` of the new PID
//! namespace, `/proc/<pid>` names a process of the *machine*, and `nsenter`
//! would configure the machine's real network. [`Host::attach`] refuses
//! unless `/proc/self` is this process and the holder's namespace is a new
//! one.
//!
//! ## 127.x on a real interface (found with kernel 6.18, keepalived 2.2.7)
//! The lab uses 127.0.0.0/8 only, even here. The kernel drops 127/8 arriving
//! on (or leaving by) a non-loopback interface as martian unless
//! `net.ipv4.conf.<if>.route_localnet = 1`, and gives a 127/8 address `scope
//! host` unless told `scope global`. With both, in every namespace, TCP, ARP
//! (gratuitous ARP included) and VRRP's multicast advertisements
//! (224.0.0.18, protocol 112) cross the bridge like on any LAN. (The routed
//! *NAT* case of [`netns`] still does not work with 127.x; nothing here is
//! NATed.)

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::netns;
use crate::{io, LabError};

/// `exe` under `unshare` in a new network, PID and mount namespace with its
/// own `/proc`, told by [`netns::INSIDE_ENV`] that it is `step`.
pub fn isolated(exe: &Path, step: &str) -> Command {
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--net",
        "--pid",
        "--fork",
        "--kill-child",
        "--mount-proc",
        "--",
    ])
    .arg(exe)
    .env(netns::INSIDE_ENV, step);
    cmd
}

/// Why this process cannot build hosts (`None`: it can).
pub fn unavailable() -> Option<String> {
    if let Some(why) = netns::unavailable() {
        return Some(why);
    }
    let nsenter = Command::new("nsenter").arg("--version").output();
    if !nsenter.is_ok_and(|out| out.status.success()) {
        return Some("`nsenter` is not installed (apt-get install util-linux)".into());
    }
    let probe = Command::new("unshare")
        .args([
            "--net",
            "--pid",
            "--fork",
            "--kill-child",
            "--mount-proc",
            "true",
        ])
        .output();
    match probe {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(format!(
            "`unshare --mount-proc` is refused here ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Some(format!("cannot run unshare: {e}")),
    }
}

/// The LAN segment: a bridge in this (the lab's) namespace, with an address.
pub struct Lan {
    pub bridge: String,
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Lan {
    /// Brings `lo` up and creates the bridge `name` with `addr/prefix`.
    ///
    /// # Errors
    /// Outside a lab namespace, for a non-loopback address, or when `ip`
    /// or `sysctl` fail.
    pub fn create(name: &str, addr: Ipv4Addr, prefix: u8) -> Result<Lan, LabError> {
        guard(&format!("create the bridge {name}"), addr)?;
        run(None, "ip", &["link", "set", "lo", "up"])?;
        run(None, "ip", &["link", "add", name, "type", "bridge"])?;
        run(None, "ip", &["link", "set", name, "up"])?;
        localnet(None, name)?;
        let cidr = format!("{addr}/{prefix}");
        run(
            None,
            "ip",
            &["addr", "add", &cidr, "scope", "global", "dev", name],
        )?;
        Ok(Lan {
            bridge: name.to_owned(),
            addr,
            prefix,
        })
    }
}

/// A host on the [`Lan`]: a network namespace with `lo` and `eth0`.
pub struct Host {
    pub name: String,
    pub addr: Ipv4Addr,
    holder: Child,
    ns: PathBuf,
}

impl Host {
    /// A new namespace, its `eth0` (one end of a veth pair, the other end on
    /// the bridge) holding `addr` with the LAN's prefix.
    ///
    /// # Errors
    /// Outside a lab namespace, when `/proc` is not this PID namespace's,
    /// or when a command fails.
    pub fn attach(lan: &Lan, name: &str, addr: Ipv4Addr) -> Result<Host, LabError> {
        guard(&format!("attach host {name}"), addr)?;
        let holder = Command::new("unshare")
            .args(["--net", "--", "sleep", "infinity"])
            .stdin(Stdio::null())
            .spawn()
            .map_err(io(format!("start the namespace of host {name}")))?;
        let ns = PathBuf::from(format!("/proc/{}/ns/net", holder.id()));
        let mut host = Host {
            name: name.to_owned(),
            addr,
            holder,
            ns,
        };
        host.wait_for_namespace()?;
        let outer: String = format!("v-{name}").chars().take(15).collect();
        let pid = host.holder.id().to_string();
        run(
            None,
            "ip",
            &[
                "link", "add", &outer, "type", "veth", "peer", "name", "eth0", "netns", &pid,
            ],
        )?;
        run(None, "ip", &["link", "set", &outer, "master", &lan.bridge])?;
        run(None, "ip", &["link", "set", &outer, "up"])?;
        host.run("ip", &["link", "set", "lo", "up"])?;
        host.run("ip", &["link", "set", "eth0", "up"])?;
        localnet(Some(&host), "eth0")?;
        let cidr = format!("{addr}/{}", lan.prefix);
        host.run(
            "ip",
            &["addr", "add", &cidr, "scope", "global", "dev", "eth0"],
        )?;
        Ok(host)
    }

    /// Until the holder has its own namespace (it unshares after the spawn
    /// returns): never hand out a path to this namespace or the machine's.
    fn wait_for_namespace(&mut self) -> Result<(), LabError> {
        let what = format!("the namespace of host {}", self.name);
        let own = std::fs::read_link("/proc/self/ns/net").map_err(io("read /proc/self/ns/net"))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(theirs) = std::fs::read_link(&self.ns) {
                if theirs != own {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(LabError::Io {
                    what,
                    source: std::io::Error::other("the holder never left our namespace"),
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `program` to be run inside this host's namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.ns.display()))
            .arg("--")
            .arg(program)
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `tool ARGS…` in this host, which must exit 0; returns its stdout.
    ///
    /// # Errors
    /// When it cannot start or exits non-zero (the error carries its stderr).
    pub fn run(&self, tool: &str, args: &[&str]) -> Result<String, LabError> {
        run(Some(self), tool, args)
    }

    /// Whether `eth0` holds `addr` now.
    ///
    /// # Errors
    /// When `ip` fails.
    pub fn holds(&self, addr: Ipv4Addr) -> Result<bool, LabError> {
        let out = self.run("ip", &["-4", "-o", "addr", "show", "dev", "eth0"])?;
        Ok(out.contains(&format!(" {addr}/")))
    }

    /// An executable script at `path` that runs `exe` with its arguments in
    /// this host (`exec`, so its process id is the program's): for code that
    /// starts a program by path, such as [`crate::GatewayProcess`].
    ///
    /// # Errors
    /// When the script cannot be written.
    pub fn wrapper(&self, exe: &Path, path: &Path) -> Result<PathBuf, LabError> {
        use std::os::unix::fs::PermissionsExt;
        let script = format!(
            "#!/bin/sh\nexec nsenter --net={} -- {} \"$@\"\n",
            self.ns.display(),
            exe.display()
        );
        std::fs::write(path, script).map_err(io(format!("write {}", path.display())))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
            .map_err(io(format!("chmod {}", path.display())))?;
        Ok(path.to_owned())
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// Refuses outside a lab namespace whose `/proc` is its own, and for
/// addresses outside 127.0.0.0/8.
fn guard(what: &str, addr: Ipv4Addr) -> Result<(), LabError> {
    let refuse = |why: &str| LabError::Io {
        what: what.to_owned(),
        source: std::io::Error::other(why.to_owned()),
    };
    if netns::inside().is_none() {
        return Err(refuse("refusing outside a lab namespace"));
    }
    let self_pid = std::fs::read_link("/proc/self")
        .ok()
        .and_then(|p| p.to_str().and_then(|s| s.parse::<u32>().ok()));
    if self_pid != Some(std::process::id()) {
        return Err(refuse(
            "/proc is not this PID namespace's (run under `unshare --mount-proc`, see hosts::isolated)",
        ));
    }
    if !addr.is_loopback() {
        return Err(refuse("the lab uses 127.0.0.0/8 only"));
    }
    Ok(())
}

/// 127/8 may cross `dev` (and every interface: `all`) of `host` (or ours).
fn localnet(host: Option<&Host>, dev: &str) -> Result<(), LabError> {
    for key in [
        "net.ipv4.conf.all.route_localnet=1".to_owned(),
        format!("net.ipv4.conf.{dev}.route_localnet=1"),
    ] {
        run(host, "sysctl", &["-qw", &key])?;
    }
    Ok(())
}

fn run(host: Option<&Host>, tool: &str, args: &[&str]) -> Result<String, LabError> {
    let mut cmd = match host {
        Some(h) => h.command(tool),
        None => Command::new(tool),
    };
    let out = cmd.args(args).output().map_err(io(format!("run {tool}")))?;
    let place = host.map_or(String::new(), |h| format!(" (in host {})", h.name));
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    Err(LabError::Command {
        command: format!("{tool} {}{place}", args.join(" ")),
        status: out.status.to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_configured_outside_a_namespace() {
        if netns::inside().is_some() {
            return;
        }
        assert!(Lan::create("lan-test", Ipv4Addr::new(127, 1, 0, 1), 24).is_err());
    }
}
