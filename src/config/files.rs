//! Are the files a config names there? Checked before any of them is read,
//! so that a missing file is reported as the config key that names it and
//! the command that makes it — `site1.toml:11: tls.cert: …/site1.crt does
//! not exist — issue it with `pairgate cert issue …`` — instead of a bare
//! "No such file or directory" from whichever loader tripped over it first.
//!
//! Only existence and readability are checked here; what is *in* the files
//! (PEM, key match, chain, expiry) is the `tls` and `spool` loaders' job.
//! Folders the gateway writes (`audit.path`'s, `spool.dir`, outbox, inbox)
//! are made at start and are not checked.

use std::path::{Path, PathBuf};

use super::{Config, ConfigError};
use crate::source::at;

/// A file the config names that is missing or unreadable; reached through
/// [`ConfigError::File`].
#[derive(Debug, thiserror::Error)]
#[error("{}: {key}: {} {problem} — {fix}", at(config, *line), file.display())]
pub struct FileError {
    /// The config file.
    pub config: PathBuf,
    /// The line of `key` in it (0 if unknown).
    pub line: usize,
    /// The config key, e.g. `tls.cert`.
    pub key: String,
    /// The file it names.
    pub file: PathBuf,
    pub problem: String,
    pub fix: String,
}

/// What goes in place of the CA folder in suggested commands: the config
/// does not say where the (offline) CA lives.
const CA_DIR: &str = "CA_DIR";

/// Checks that every file `config` reads exists and can be opened.
///
/// # Errors
/// [`ConfigError::File`] for the first missing or unreadable file, in the
/// order of the config: `gateway.policy`, `tls.*`, `spool.key`, `spool.old_keys`.
pub fn check_files(config: &Config) -> Result<(), ConfigError> {
    let cert_prefix = prefix(&config.tls.cert);
    let relative = "or correct the path (relative paths resolve against the config file's folder)";
    let mut wanted: Vec<(String, &Path, String)> = vec![
        (
            "gateway.policy".into(),
            &config.gateway.policy,
            format!(
                "write the pairing manifest there (the same file at both sites, like the \
                 repository's policy/pairing.toml; check it with `pairgate policy check`), {relative}"
            ),
        ),
        (
            "tls.cert".into(),
            &config.tls.cert,
            format!(
                "issue it with `pairgate cert issue --ca-dir {CA_DIR} --pool {} --out {}` \
                 (writes PREFIX.crt and PREFIX.key), {relative}",
                config.gateway.pool,
                cert_prefix.display()
            ),
        ),
        (
            "tls.key".into(),
            &config.tls.key,
            format!(
                "`pairgate cert issue` writes it next to the certificate; for a lost key, \
                 `pairgate cert rotate --ca-dir {CA_DIR} --cert {}` makes a new key and \
                 certificate; {relative}",
                cert_prefix.display()
            ),
        ),
        (
            "tls.ca".into(),
            &config.tls.ca,
            format!(
                "copy the pairing CA's ca.crt here (`pairgate ca init --dir {CA_DIR}` makes a \
                 new CA), {relative}"
            ),
        ),
    ];
    if let Some(crl) = &config.tls.crl {
        wanted.push((
            "tls.crl".into(),
            crl,
            format!(
                "copy the CA's ca.crl here (`pairgate ca init` writes an empty one, \
                 `pairgate ca crl --dir {CA_DIR} --refresh` makes one for an older CA), \
                 or remove the crl line to run without revocation checks, {relative}"
            ),
        ));
    }
    if let Some(spool) = &config.spool {
        wanted.push((
            "spool.key".into(),
            &spool.key,
            format!(
                "create it with `pairgate spool keygen --out {}` (each site has its own), {relative}",
                spool.key.display()
            ),
        ));
        for (i, old) in spool.old_keys.iter().enumerate() {
            wanted.push((
                format!("spool.old_keys[{i}]"),
                old,
                "restore the old key (files sealed under it cannot be opened without it), \
                 or remove it from old_keys once nothing sealed under it waits"
                    .into(),
            ));
        }
    }
    for (key, file, fix) in wanted {
        if let Some(problem) = unusable(file) {
            let fix = if problem.starts_with("does not exist") {
                fix
            } else {
                "let the gateway's user read it (and only it, for keys), or correct the path".into()
            };
            return Err(ConfigError::File(Box::new(FileError {
                config: config.path.clone(),
                line: config.lines.paths.get(&key).copied().unwrap_or(0),
                key,
                file: file.to_path_buf(),
                problem,
                fix,
            })));
        }
    }
    Ok(())
}

/// Why `file` cannot be read, if it cannot.
fn unusable(file: &Path) -> Option<String> {
    match std::fs::File::open(file) {
        Ok(f) => match f.metadata() {
            Ok(m) if m.is_dir() => Some("is a folder, not a file".into()),
            Ok(_) => None,
            Err(e) => Some(format!("cannot be examined: {e}")),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some("does not exist".into()),
        Err(e) => Some(format!("cannot be read: {e}")),
    }
}

/// `certs/site1` for `certs/site1.crt`: the `--out`/`--cert` PREFIX.
fn prefix(cert: &Path) -> PathBuf {
    match cert.to_str().and_then(|s| s.strip_suffix(".crt")) {
        Some(stem) => PathBuf::from(stem),
        None => cert.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"[gateway]
pool = "pool01.site1.example"
peer_pool = "pool02.site2.example"
policy = "pairing.toml"

[tls]
cert = "certs/site1.crt"
key = "certs/site1.key"
ca = "ca/ca.crt"
crl = "ca/ca.crl"

[peer]
listen = "127.0.0.1:7443"
connect = "127.0.0.1:7444"

[audit]
path = "var/audit.jsonl"

[spool]
dir = "var/spool"
key = "keys/spool.key"
outbox = "var/outbox"
inbox = "var/inbox"
old_keys = ["keys/old.key"]
"#;

    fn message(dir: &Path) -> String {
        let config =
            Config::parse(CONFIG, &dir.join("site1.toml")).unwrap_or_else(|e| panic!("{e}"));
        match check_files(&config) {
            Ok(()) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn each_missing_file_names_line_key_and_fix() {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let dir = tmp.path();
        let d = dir.display();
        for (file, expect) in [
            ("pairing.toml", format!("site1.toml:4: gateway.policy: {d}/pairing.toml does not exist — write the pairing manifest")),
            ("certs/site1.crt", format!("site1.toml:7: tls.cert: {d}/certs/site1.crt does not exist — issue it with `pairgate cert issue --ca-dir CA_DIR --pool pool01.site1.example --out {d}/certs/site1`")),
            ("certs/site1.key", format!("site1.toml:8: tls.key: {d}/certs/site1.key does not exist — `pairgate cert issue` writes it")),
            ("ca/ca.crt", "site1.toml:9: tls.ca: ".to_owned()),
            ("ca/ca.crl", "site1.toml:10: tls.crl: ".to_owned()),
            ("keys/spool.key", format!("site1.toml:21: spool.key: {d}/keys/spool.key does not exist — create it with `pairgate spool keygen --out {d}/keys/spool.key`")),
            ("keys/old.key", "site1.toml:24: spool.old_keys[0]: ".to_owned()),
        ] {
            let got = message(dir);
            assert!(got.contains(&expect), "{file}: expected {expect:?} in {got}");
            assert!(!got.contains('\n'), "{got}");
            let path = dir.join(file);
            std::fs::create_dir_all(path.parent().unwrap_or(dir)).unwrap_or_else(|e| panic!("{e}"));
            std::fs::write(&path, b"x").unwrap_or_else(|e| panic!("{e}"));
        }
        assert_eq!(message(dir), "");
        // A folder where a file belongs.
        std::fs::remove_file(dir.join("ca/ca.crl")).unwrap_or_else(|e| panic!("{e}"));
        std::fs::create_dir(dir.join("ca/ca.crl")).unwrap_or_else(|e| panic!("{e}"));
        let got = message(dir);
        assert!(
            got.contains("tls.crl: ") && got.contains("is a folder"),
            "{got}"
        );
    }

    #[test]
    fn prefix_drops_only_a_crt_suffix() {
        assert_eq!(prefix(Path::new("/a/site1.crt")), Path::new("/a/site1"));
        assert_eq!(prefix(Path::new("/a/site1.pem")), Path::new("/a/site1.pem"));
    }
}
