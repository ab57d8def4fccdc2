//! A network namespace of the lab's own, for what needs the kernel's packet
//! filter: transparent interception redirects TCP 445 with nftables, which
//! must never touch the machine's real network.
//!
//! ## How
//! The process that needs it runs *itself* again (the same test, or the
//! demo's interception step) under
//! `unshare --net --pid --fork --kill-child`, with [`INSIDE_ENV`] naming the
//! step. Inside:
//! - a network namespace: only `lo`, brought up here, with the lab's 127.x
//!   addresses added to it ([`bring_up`]); nothing outside 127.0.0.0/8 is
//!   ever configured, not even in the namespace;
//! - a PID namespace whose first process is the re-run step: when it ends —
//!   normally, by panic, or killed along with `unshare` — the kernel kills
//!   every gateway and `smbd` it started, and the network namespace with its
//!   nftables ruleset disappears with the last of them. Nothing to clean up.
//!
//! ## What the kernel needs (found with kernel 6.x, nftables 1.0)
//! Connections from a process to a 127.x address are routed over `lo` and
//! pass the `nat` `output` hook, where `redirect`/`dnat` to a 127.x listener
//! works with the namespace's defaults: no `route_localnet`, no `rp_filter`
//! change, no `ip_forward`. `SO_ORIGINAL_DST` then reports the address the
//! client dialled. The marked-socket exclusion (`meta mark … return`) works
//! the same way. [`Interception::ruleset`] is that ruleset.
//!
//! A *routed* variant — a client namespace sending 127.x over a veth to a
//! gateway namespace that redirects in `prerouting` — does not work with
//! 127.x: even with `route_localnet = 1` on every interface the kernel
//! drops the packets after NAT (`IP_INVALID_SOURCE`). 127/8 is special on a
//! real interface, and the tests may use no other addresses, so the router
//! placement of the operator guide is checked for syntax (`nft -c`) and its
//! rule body is the one tested here in `output`.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Command;

use crate::{io, LabError};

/// Set, to the name of the step, in the process re-run inside a namespace.
pub const INSIDE_ENV: &str = "PAIRGATE_LAB_NETNS";

/// Why this process cannot make a namespace (`None`: it can).
pub fn unavailable() -> Option<String> {
    if !is_root() {
        return Some("needs root (CAP_SYS_ADMIN for unshare, CAP_NET_ADMIN for nft)".into());
    }
    for tool in ["unshare", "nft", "ip"] {
        if !have(tool) {
            return Some(format!(
                "`{tool}` is not installed (apt-get install util-linux nftables iproute2)"
            ));
        }
    }
    let probe = Command::new("unshare")
        .args(["--net", "--pid", "--fork", "--kill-child", "true"])
        .output();
    match probe {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(format!(
            "`unshare --net --pid` is refused here ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Some(format!("cannot run unshare: {e}")),
    }
}

/// The step this process was re-run for, if it runs inside a namespace.
pub fn inside() -> Option<String> {
    std::env::var(INSIDE_ENV).ok()
}

/// `exe` (to be given its arguments) under `unshare`, in a new network
/// and PID namespace, told by [`INSIDE_ENV`] that it is `step`.
pub fn isolated(exe: &Path, step: &str) -> Command {
    let mut cmd = Command::new("unshare");
    cmd.args(["--net", "--pid", "--fork", "--kill-child", "--"])
        .arg(exe)
        .env(INSIDE_ENV, step);
    cmd
}

/// Brings `lo` up and adds `addrs` (each must be in 127.0.0.0/8) to it,
/// so that servers can bind them and Samba sees them as interfaces.
///
/// # Errors
/// When an address is not loopback, or `ip` fails.
pub fn bring_up(addrs: &[Ipv4Addr]) -> Result<(), LabError> {
    if inside().is_none() {
        return Err(LabError::Io {
            what: "configure lo".into(),
            source: std::io::Error::other("refusing outside a lab namespace"),
        });
    }
    run("ip", &["link", "set", "lo", "up"])?;
    for addr in addrs {
        if !addr.is_loopback() {
            return Err(LabError::Io {
                what: format!("add {addr} to lo"),
                source: std::io::Error::other("the lab uses 127.0.0.0/8 only"),
            });
        }
        run("ip", &["addr", "add", &format!("{addr}/32"), "dev", "lo"])?;
    }
    Ok(())
}

/// Makes connections to `server` (an address on `lo`) come from `client`
/// instead of from `server` itself — the kernel's default for its own
/// addresses — so a lab "Front End" has an address of its own.
///
/// # Errors
/// Outside a namespace, or when `ip` fails.
pub fn prefer_source(server: Ipv4Addr, client: Ipv4Addr) -> Result<(), LabError> {
    if inside().is_none() {
        return Err(LabError::Io {
            what: format!("route {server}"),
            source: std::io::Error::other("refusing outside a lab namespace"),
        });
    }
    let (server, client) = (server.to_string(), client.to_string());
    run(
        "ip",
        &[
            "route", "change", "local", &server, "dev", "lo", "proto", "kernel", "scope", "host",
            "src", &client, "table", "local",
        ],
    )
}

/// Sets a sysctl of the namespace (`net.*` keys are per network namespace,
/// so this never touches the host's).
///
/// # Errors
/// Outside a namespace, or when `sysctl` fails.
pub fn sysctl(key: &str, value: &str) -> Result<(), LabError> {
    if inside().is_none() || !key.starts_with("net.") {
        return Err(LabError::Io {
            what: format!("set {key}"),
            source: std::io::Error::other("only net.* keys, inside a lab namespace"),
        });
    }
    run("sysctl", &["-qw", &format!("{key}={value}")])
}

/// The nftables interception of one lab site: TCP `port` to `servers` goes
/// to the intercept listener, except from sockets carrying `mark`.
#[derive(Debug, Clone)]
pub struct Interception {
    /// The peer site's servers (every address the rule catches).
    pub servers: Vec<Ipv4Addr>,
    pub port: u16,
    /// The `[[intercept]]` listener.
    pub listener: SocketAddr,
    /// The gateways' `[gateway] mark`.
    pub mark: u32,
}

impl Interception {
    /// The ruleset, as `nft -f` takes it: the `output` hook, since the lab's
    /// clients are local processes (a router uses `prerouting` with the
    /// same rule body; see the operator guide).
    pub fn ruleset(&self) -> String {
        let servers: Vec<String> = self.servers.iter().map(Ipv4Addr::to_string).collect();
        format!(
            "table inet pairgate_lab {{\n\
             \x20 chain output {{\n\
             \x20   type nat hook output priority -100; policy accept;\n\
             \x20   meta mark {mark:#x} return\n\
             \x20   ip daddr {{ {servers} }} tcp dport {port} dnat ip to {listener}\n\
             \x20 }}\n\
             }}\n",
            mark = self.mark,
            servers = servers.join(", "),
            port = self.port,
            listener = self.listener,
        )
    }

    /// Loads [`Interception::ruleset`] with `nft -f` (inside a lab
    /// namespace only).
    ///
    /// # Errors
    /// Outside a namespace, or when nft refuses the ruleset.
    pub fn apply(&self) -> Result<(), LabError> {
        if inside().is_none() {
            return Err(LabError::Io {
                what: "load the nftables ruleset".into(),
                source: std::io::Error::other("refusing outside a lab namespace"),
            });
        }
        use std::io::Write;
        let mut child = Command::new("nft")
            .args(["-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(io("run nft"))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(self.ruleset().as_bytes())
                .map_err(io("write the ruleset to nft"))?;
        }
        let out = child.wait_with_output().map_err(io("wait for nft"))?;
        check("nft -f -", &out)
    }
}

fn run(tool: &str, args: &[&str]) -> Result<(), LabError> {
    let out = Command::new(tool)
        .args(args)
        .output()
        .map_err(io(format!("run {tool}")))?;
    check(&format!("{tool} {}", args.join(" ")), &out)
}

fn check(command: &str, out: &std::process::Output) -> Result<(), LabError> {
    if out.status.success() {
        return Ok(());
    }
    Err(LabError::Command {
        command: command.to_owned(),
        status: out.status.to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    })
}

fn have(tool: &str) -> bool {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .any(|d| Path::new(d).join(tool).exists())
}

fn is_root() -> bool {
    // No libc: the effective uid is in /proc/self/status ("Uid: real effective …").
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ruleset_excludes_the_mark_before_it_redirects() {
        let r = Interception {
            servers: vec![Ipv4Addr::new(127, 0, 20, 1), Ipv4Addr::new(127, 0, 20, 2)],
            port: 445,
            listener: "127.0.10.1:15445".parse().unwrap(),
            mark: 0x5047,
        }
        .ruleset();
        let mark = r.find("meta mark 0x5047 return").unwrap();
        let redirect = r
            .find("ip daddr { 127.0.20.1, 127.0.20.2 } tcp dport 445 dnat ip to 127.0.10.1:15445")
            .unwrap();
        assert!(mark < redirect, "{r}");
    }

    #[test]
    fn nothing_is_configured_outside_a_namespace() {
        if inside().is_some() {
            return;
        }
        assert!(bring_up(&[Ipv4Addr::new(127, 0, 20, 1)]).is_err());
        let r = Interception {
            servers: vec![],
            port: 445,
            listener: "127.0.0.1:1".parse().unwrap(),
            mark: 1,
        };
        assert!(r.apply().is_err());
    }
}
