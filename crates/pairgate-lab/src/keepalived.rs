//! A keepalived (VRRP only) running in a lab [`Host`], stopped when dropped.
//!
//! It runs in the foreground (`--dont-fork`) with its log on the console,
//! sent to a file the test reads to see the state changes
//! (`(<instance>) Entering MASTER STATE`). Its pid files go next to that
//! log, never to the machine's `/run`.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::hosts::Host;
use crate::{io, LabError};

/// Why keepalived cannot run here (`None`: it can).
pub fn unavailable() -> Option<String> {
    let out = std::process::Command::new("keepalived")
        .arg("--version")
        .output();
    match out {
        Ok(out) if out.status.success() => None,
        _ => Some("`keepalived` is not installed (apt-get install keepalived)".into()),
    }
}

/// A running `keepalived --vrrp` in one host.
pub struct Keepalived {
    child: Child,
    pub log: PathBuf,
}

impl Keepalived {
    /// Starts keepalived in `host` with the configuration file `config`;
    /// its log and pid files go to `dir/keepalived-<host>.*`.
    ///
    /// # Errors
    /// When it cannot start, or exits at once (a configuration it refuses).
    pub fn start(host: &Host, config: &Path, dir: &Path) -> Result<Keepalived, LabError> {
        let base = dir.join(format!("keepalived-{}", host.name));
        let log = base.with_extension("log");
        let file = std::fs::File::create(&log).map_err(io(format!("create {}", log.display())))?;
        let err = file
            .try_clone()
            .map_err(io(format!("reopen {}", log.display())))?;
        let pid = |what: &str| base.with_extension(format!("{what}.pid"));
        let mut child = host
            .command("keepalived")
            .args(["--dont-fork", "--log-console", "--log-detail", "--vrrp"])
            .arg("--use-file")
            .arg(config)
            .arg("--pid")
            .arg(pid("main"))
            .arg("--vrrp_pid")
            .arg(pid("vrrp"))
            .stdout(Stdio::from(file))
            .stderr(Stdio::from(err))
            .spawn()
            .map_err(io(format!("start keepalived in host {}", host.name)))?;
        std::thread::sleep(Duration::from_millis(300));
        if let Ok(Some(status)) = child.try_wait() {
            return Err(LabError::Command {
                command: format!("keepalived --use-file {}", config.display()),
                status: status.to_string(),
                stderr: std::fs::read_to_string(&log).unwrap_or_default(),
            });
        }
        Ok(Keepalived { child, log })
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// How often it logged entering `state` (`MASTER`, `BACKUP`, `FAULT`).
    pub fn entered(&self, state: &str) -> usize {
        let needle = format!("Entering {state} STATE");
        self.log_text()
            .lines()
            .filter(|l| l.contains(&needle))
            .count()
    }

    /// The state it entered last, if any.
    pub fn state(&self) -> Option<String> {
        self.log_text().lines().rev().find_map(|l| {
            let (_, rest) = l.split_once("Entering ")?;
            rest.strip_suffix(" STATE").map(str::to_owned)
        })
    }
}

impl Drop for Keepalived {
    /// SIGTERM (it gives the address away and stops its VRRP child), then
    /// SIGKILL if it has not exited within a few seconds.
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
