//! A pairing CA and gateway certificates for the lab, made with the same
//! commands an operator runs (`pairgate ca init`, `cert issue`,
//! `cert rotate`), so the demo and the bench use exactly what the product
//! produces.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use crate::{LabError, Pairgate};

/// A CA and the gateway certificates issued from it, in one folder.
#[derive(Debug, Clone)]
pub struct Pki {
    pub dir: PathBuf,
    pairgate: Pairgate,
}

impl Pki {
    /// `pairgate ca init --dir DIR --name NAME`: `DIR/ca.crt`, `ca.key`, `ca.crl`.
    ///
    /// # Errors
    /// When the command fails (e.g. `dir` already holds a CA).
    pub fn create(pairgate: &Pairgate, dir: &Path, name: &str) -> Result<Pki, LabError> {
        pairgate.run(&[
            OsStr::new("ca"),
            "init".as_ref(),
            "--dir".as_ref(),
            dir.as_os_str(),
            "--name".as_ref(),
            name.as_ref(),
        ])?;
        Ok(Pki {
            dir: dir.to_owned(),
            pairgate: pairgate.clone(),
        })
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// `pairgate cert issue … --out DIR/FILE --days DAYS` for `pool`;
    /// returns `DIR/FILE.crt` and `.key`.
    ///
    /// # Errors
    /// When the command fails.
    pub fn issue(&self, file: &str, pool: &str, days: u32) -> Result<(PathBuf, PathBuf), LabError> {
        let prefix = self.dir.join(file);
        let days = days.to_string();
        self.pairgate.run(&[
            OsStr::new("cert"),
            "issue".as_ref(),
            "--ca-dir".as_ref(),
            self.dir.as_os_str(),
            "--pool".as_ref(),
            pool.as_ref(),
            "--out".as_ref(),
            prefix.as_os_str(),
            "--days".as_ref(),
            days.as_ref(),
        ])?;
        Ok((suffixed(&prefix, ".crt"), suffixed(&prefix, ".key")))
    }

    /// `pairgate cert rotate` of the certificate at `prefix` (`.crt`/`.key`);
    /// returns the SHA-256 of the old and of the new certificate.
    ///
    /// # Errors
    /// When a command fails.
    pub fn rotate(&self, prefix: &Path, days: u32) -> Result<(String, String), LabError> {
        let cert = suffixed(prefix, ".crt");
        let old = self.pairgate.cert_sha256(&cert)?;
        let days = days.to_string();
        self.pairgate.run(&[
            OsStr::new("cert"),
            "rotate".as_ref(),
            "--ca-dir".as_ref(),
            self.dir.as_os_str(),
            "--cert".as_ref(),
            prefix.as_os_str(),
            "--days".as_ref(),
            days.as_ref(),
        ])?;
        let new = self.pairgate.cert_sha256(&cert)?;
        Ok((old, new))
    }
}

/// `prefix` + `suffix`, as `cert issue --out PREFIX` names its files.
fn suffixed(prefix: &Path, suffix: &str) -> PathBuf {
    let mut name = prefix.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}
