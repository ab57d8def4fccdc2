//! The `pairgate` binary, run the way an operator runs it: one command at a
//! time, to completion, its exit status checked and its `--json` output read.
//!
//! The lab reaches the gateway only through this (and through the configs,
//! sockets and files of a running `pairgate run`), so whatever the demo, the
//! bench and the tests do, an operator can do with the same commands.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::{io, LabError};

/// The binary under test, by path: `std::env::current_exe()` inside
/// `pairgate demo`/`bench`, `env!("CARGO_BIN_EXE_pairgate")` in the tests.
#[derive(Debug, Clone)]
pub struct Pairgate {
    exe: PathBuf,
}

impl Pairgate {
    pub fn new(exe: impl Into<PathBuf>) -> Pairgate {
        Pairgate { exe: exe.into() }
    }

    pub fn exe(&self) -> &Path {
        &self.exe
    }

    /// `pairgate ARGS…` as text, for error messages.
    fn describe<S: AsRef<OsStr>>(args: &[S]) -> String {
        let mut text = "pairgate".to_owned();
        for a in args {
            text.push(' ');
            text += &a.as_ref().to_string_lossy();
        }
        text
    }

    /// Runs `pairgate ARGS…` and returns its output, whatever the exit status.
    ///
    /// # Errors
    /// When the binary cannot be started.
    pub fn output<S: AsRef<OsStr>>(&self, args: &[S]) -> Result<Output, LabError> {
        Command::new(&self.exe)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(io(format!(
                "start {} ({})",
                self.exe.display(),
                Self::describe(args)
            )))
    }

    /// Runs `pairgate ARGS…`, which must exit 0, and returns its stdout.
    ///
    /// # Errors
    /// When it cannot start or exits non-zero (the error carries its stderr).
    pub fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> Result<String, LabError> {
        let out = self.output(args)?;
        if !out.status.success() {
            return Err(LabError::Command {
                command: Self::describe(args),
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs `pairgate ARGS…` (which must exit 0) and parses its stdout as JSON.
    ///
    /// # Errors
    /// As [`Pairgate::run`], or when the output is not JSON.
    pub fn json<S: AsRef<OsStr>>(&self, args: &[S]) -> Result<Value, LabError> {
        let text = self.run(args)?;
        parse(&text, args)
    }

    /// `pairgate --version`: what is being measured.
    ///
    /// # Errors
    /// When the binary cannot be run.
    pub fn version(&self) -> Result<String, LabError> {
        Ok(self.run(&["--version"])?.trim().to_owned())
    }

    /// `pairgate spool keygen --out FILE`.
    ///
    /// # Errors
    /// When the command fails (e.g. the file exists).
    pub fn spool_keygen(&self, out: &Path) -> Result<(), LabError> {
        self.run(&[
            OsStr::new("spool"),
            "keygen".as_ref(),
            "--out".as_ref(),
            out.as_os_str(),
        ])
        .map(drop)
    }

    /// `pairgate status --config FILE --json`: the running gateway's `/status`.
    ///
    /// # Errors
    /// When the endpoint cannot be read or the answer is not JSON.
    pub fn status(&self, config: &Path) -> Result<Value, LabError> {
        self.json(&[
            OsStr::new("status"),
            "--json".as_ref(),
            "--config".as_ref(),
            config.as_os_str(),
        ])
    }

    /// `pairgate audit verify --json --log FILE`: `{ok, lines, …}` for an
    /// intact chain, `{ok: false, line, fault}` for a broken one.
    ///
    /// # Errors
    /// When the log cannot be read at all (exit 2, no JSON).
    pub fn audit_verify(&self, log: &Path) -> Result<Value, LabError> {
        let args = [
            OsStr::new("audit"),
            "verify".as_ref(),
            "--json".as_ref(),
            "--log".as_ref(),
            log.as_os_str(),
        ];
        let out = self.output(&args)?;
        match out.status.code() {
            Some(0 | 1) => parse(&String::from_utf8_lossy(&out.stdout), &args),
            _ => Err(LabError::Command {
                command: Self::describe(&args),
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            }),
        }
    }

    /// `pairgate cert inspect FILE --json` → the first certificate's SHA-256.
    ///
    /// # Errors
    /// When the file cannot be inspected.
    pub fn cert_sha256(&self, cert: &Path) -> Result<String, LabError> {
        let args = [
            OsStr::new("cert"),
            "inspect".as_ref(),
            "--json".as_ref(),
            cert.as_os_str(),
        ];
        let v = self.json(&args)?;
        v["sha256"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| LabError::Output {
                command: Self::describe(&args),
                detail: "no \"sha256\"".into(),
            })
    }
}

fn parse<S: AsRef<OsStr>>(text: &str, args: &[S]) -> Result<Value, LabError> {
    serde_json::from_str(text).map_err(|e| LabError::Output {
        command: Pairgate::describe(args),
        detail: e.to_string(),
    })
}
