//! A running `pairgate run`: started as a child process, ready once it prints
//! its `ready …` line, signalled like a service manager would, killed when
//! dropped so that an error anywhere in the lab leaves nothing running.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{io, LabError};

/// A running `pairgate run` child process; killed when dropped.
pub struct GatewayProcess {
    pub child: Child,
    pub config: PathBuf,
    pub audit: PathBuf,
    /// The `ready …` line it printed.
    pub ready: String,
}

impl GatewayProcess {
    /// Starts `exe run --config config` and waits for its `ready` line.
    /// Diagnostics go to `stderr_to` when given, else are inherited.
    ///
    /// # Errors
    /// When the process cannot start or exits before it is ready.
    pub fn start(
        exe: &Path,
        config: &Path,
        stderr_to: Option<&Path>,
    ) -> Result<GatewayProcess, LabError> {
        GatewayProcess::start_with(exe, config, &[], stderr_to)
    }

    /// [`GatewayProcess::start`] with more arguments to `run` (`--takeover`).
    ///
    /// # Errors
    /// As [`GatewayProcess::start`].
    pub fn start_with(
        exe: &Path,
        config: &Path,
        args: &[&str],
        stderr_to: Option<&Path>,
    ) -> Result<GatewayProcess, LabError> {
        let stderr = match stderr_to {
            Some(path) => Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(io(format!("open {}", path.display())))?,
            ),
            None => Stdio::inherit(),
        };
        let mut child = Command::new(exe)
            .args(["run", "--config"])
            .arg(config)
            .args(args)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(io(format!("start {}", exe.display())))?;
        let stdout = child.stdout.take().ok_or_else(|| LabError::NotReady {
            config: config.to_owned(),
            detail: "no stdout".into(),
        })?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let ready = loop {
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(line) if line.starts_with("ready ") => break line,
                Ok(_) => continue,
                Err(e) => {
                    let _ = child.kill();
                    let status = child.wait().ok();
                    return Err(LabError::NotReady {
                        config: config.to_owned(),
                        detail: format!("{e}; exit status {status:?}"),
                    });
                }
            }
        };
        let stem = config
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("site");
        let audit = config.with_file_name(format!("{stem}-audit.jsonl"));
        Ok(GatewayProcess {
            child,
            config: config.to_owned(),
            audit,
            ready,
        })
    }

    /// The process id, for `/proc/<pid>/…`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn signal(&self, name: &str) -> Result<(), LabError> {
        Command::new("kill")
            .args([format!("-{name}"), self.child.id().to_string()])
            .status()
            .map_err(io("run kill"))?;
        Ok(())
    }

    /// SIGTERM, then wait for the exit.
    ///
    /// # Errors
    /// When the signal cannot be sent or waited for.
    pub fn terminate(&mut self) -> Result<std::process::ExitStatus, LabError> {
        self.signal("TERM")?;
        self.child.wait().map_err(io("wait for gateway"))
    }

    /// SIGHUP: reload policy and certificates.
    ///
    /// # Errors
    /// When the signal cannot be sent.
    pub fn hangup(&self) -> Result<(), LabError> {
        self.signal("HUP")
    }

    /// Every audit line written so far, parsed.
    pub fn audit_lines(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(&self.audit).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
