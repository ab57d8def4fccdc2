//! The first five minutes of a new operator: the README's "Running a site"
//! commands, run verbatim in a copy of a fresh clone, and the messages a
//! first mistake gets (missing folders, missing files, a typo in the pool).
//!
//! The README's configs listen on fixed loopback ports, so when the test may
//! (as root, as in CI) it runs every command in a network namespace of its
//! own: nothing else on the machine can hold those ports, and the gateways
//! disturb nothing else.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::harness::*;

/// A private network namespace with loopback up, held open by a `sleep`.
struct NetNs {
    holder: Child,
}

impl NetNs {
    /// `None` when namespaces are not available (not root): the commands then
    /// run in the machine's own namespace.
    fn new() -> Option<NetNs> {
        let mut holder = Command::new("unshare")
            .args([
                "-n",
                "sh",
                "-c",
                "ip link set lo up && echo up && exec sleep 900",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let mut line = String::new();
        let stdout = holder.stdout.take()?;
        let _ = BufReader::new(stdout).read_line(&mut line);
        if line.trim() == "up" {
            Some(NetNs { holder })
        } else {
            let _ = holder.kill();
            let _ = holder.wait();
            None
        }
    }

    fn path(&self) -> String {
        format!("--net=/proc/{}/ns/net", self.holder.id())
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// A copy of the repository as a fresh clone has it: the tracked files only
/// (no keys, certificates or state a developer may have made in the
/// checkout), and `pairgate` on PATH as the binary under test.
pub(crate) struct Clone {
    dir: tempfile::TempDir,
    netns: Option<NetNs>,
}

impl Clone {
    fn new() -> Clone {
        let dir = tempfile::tempdir().unwrap();
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        let listed = Command::new("git")
            .arg("-C")
            .arg(repo)
            .args(["ls-files", "-z"])
            .output()
            .ok()
            .filter(|o| o.status.success() && !o.stdout.is_empty());
        let files: Vec<PathBuf> = match listed {
            Some(out) => out
                .stdout
                .split(|b| *b == 0)
                .filter(|f| !f.is_empty())
                .map(|f| PathBuf::from(String::from_utf8_lossy(f).into_owned()))
                .collect(),
            // A source tarball without git: what the quick start reads.
            None => ["README.md", "policy/pairing.toml", "policy/site1.toml"]
                .into_iter()
                .chain(["policy/site2.toml", "certs/README.md"])
                .map(PathBuf::from)
                .collect(),
        };
        for file in files {
            let from = repo.join(&file);
            if !from.is_file() {
                continue; // deleted in the work tree
            }
            let to = dir.path().join(&file);
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(&from, &to).unwrap();
        }
        let bin_dir = dir.path().join(".test-bin");
        std::fs::create_dir_all(&bin_dir).unwrap();
        std::os::unix::fs::symlink(bin(), bin_dir.join("pairgate")).unwrap();
        let netns = NetNs::new();
        if netns.is_none() {
            eprintln!("note: no network namespace (not root?); using the machine's loopback");
        }
        Clone { dir, netns }
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `sh -c LINE` in the clone, inside the namespace when there is one.
    fn shell(&self, line: &str) -> Command {
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(ns.path()).arg("--").arg("sh");
                c
            }
            None => Command::new("sh"),
        };
        let path = std::env::var("PATH").unwrap_or_default();
        cmd.arg("-c").arg(line).current_dir(self.path()).env(
            "PATH",
            format!("{}:{path}", self.path().join(".test-bin").display()),
        );
        cmd
    }

    /// Runs `line` to completion (output in files, not pipes: a stray
    /// background process cannot hold the test up), killing it after 2 min.
    pub(crate) fn run(&self, line: &str) -> Output {
        let out = tempfile::NamedTempFile::new().unwrap();
        let err = tempfile::NamedTempFile::new().unwrap();
        let mut child = self
            .shell(line)
            .stdin(Stdio::null())
            .stdout(out.reopen().unwrap())
            .stderr(err.reopen().unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("`{line}` did not finish within 2 minutes");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Output {
            status,
            stdout: std::fs::read(out.path()).unwrap(),
            stderr: std::fs::read(err.path()).unwrap(),
        }
    }
}

pub(crate) fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The command part of a README line: without its `# comment`.
fn command_of(line: &str) -> &str {
    line.split_once(" #")
        .map_or(line, |(command, _)| command)
        .trim()
}

/// The commands of the README's first shell block under `heading`.
fn readme_block(heading: &str) -> Vec<String> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let section = readme
        .split_once(heading)
        .unwrap_or_else(|| panic!("README.md has no {heading:?}"))
        .1;
    let block = section
        .split_once("```sh\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .unwrap_or_else(|| panic!("no ```sh block under {heading:?}"))
        .0;
    block
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

/// A gateway the README started in the background (`… &`).
struct Background {
    line: String,
    child: Child,
    stderr: PathBuf,
}

impl Background {
    /// Starts `line` (without its `&`) and waits for the gateway's `ready` line.
    fn start(clone: &Clone, line: &str, index: usize) -> Background {
        let stderr = clone.path().join(format!(".test-bg{index}.log"));
        let mut child = clone
            .shell(&format!("exec {line}"))
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines().map_while(Result::ok) {
                if l.starts_with("ready ") {
                    let _ = tx.send(());
                }
            }
        });
        let mut bg = Background {
            line: line.to_owned(),
            child,
            stderr,
        };
        if rx.recv_timeout(Duration::from_secs(60)).is_err() {
            let status = bg.child.try_wait().ok().flatten();
            panic!("`{line}` never said ready (exit {status:?}):\n{}", bg.log());
        }
        bg
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// SIGTERM, as the README says, and a graceful exit 0.
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "`{}` exit {status:?} on SIGTERM:\n{}",
                    self.line,
                    self.log()
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "`{}` did not stop on SIGTERM",
                self.line
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn readme_running_a_site_works_verbatim_in_a_fresh_clone() {
    let commands = readme_block("## Running a site");
    assert!(commands.len() >= 10, "{commands:#?}");
    let clone = Clone::new();
    let mut background = Vec::new();
    for (i, line) in commands.iter().enumerate() {
        assert!(
            line.starts_with("pairgate "),
            "the quick start runs pairgate only: {line}"
        );
        if let Some(gateway) = command_of(line).strip_suffix('&') {
            background.push(Background::start(&clone, gateway.trim(), i));
            continue;
        }
        let out = clone.run(line);
        let logs: Vec<String> = background.iter().map(Background::log).collect();
        assert!(
            out.status.success(),
            "README command `{line}` failed:\n{}\ngateway logs: {logs:#?}",
            text(&out)
        );
        assert!(
            !String::from_utf8_lossy(&out.stderr).contains("error"),
            "`{line}`: {}",
            text(&out)
        );
    }
    assert!(!background.is_empty(), "the README runs a gateway");
    for bg in background {
        bg.stop();
    }
    // What the quick start made is what the configs name.
    for file in [
        "certs/ca/ca.crt",
        "certs/ca/ca.crl",
        "certs/site1.crt",
        "certs/site2.key",
        "keys/site1-spool.key",
        "keys/site2-spool.key",
        "var/site1/audit.jsonl",
    ] {
        assert!(clone.path().join(file).is_file(), "{file}");
    }
}

#[test]
fn spool_keygen_makes_the_folder_and_an_os_error_is_said_once() {
    let clone = Clone::new();
    let out = clone.run("pairgate spool keygen --out keys/new/site1-spool.key");
    assert!(out.status.success(), "{}", text(&out));
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &str| {
        std::fs::metadata(clone.path().join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("keys/new/site1-spool.key"), 0o600);
    assert_eq!(mode("keys/new"), 0o700);

    // A file where a folder should be: one line, the OS error once.
    std::fs::write(clone.path().join("plain"), b"x").unwrap();
    let out = clone.run("pairgate spool keygen --out plain/site1-spool.key");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert_eq!(err.matches("(os error").count(), 1, "{err}");
    assert!(err.contains("plain/site1-spool.key"), "{err}");
}

/// The quick start's PKI and keys in a clone, without the gateways.
pub(crate) fn prepared_clone() -> Clone {
    let clone = Clone::new();
    for line in readme_block("## Running a site")
        .iter()
        .take_while(|l| !l.starts_with("pairgate check") && !command_of(l).ends_with('&'))
    {
        let out = clone.run(line);
        assert!(out.status.success(), "`{line}`: {}", text(&out));
    }
    let out = clone.run("pairgate check --config policy/site1.toml");
    assert!(out.status.success(), "{}", text(&out));
    clone
}

fn check_site1(clone: &Clone) -> String {
    let out = clone.run("pairgate check --config policy/site1.toml");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    err
}

#[test]
fn a_missing_file_names_its_config_key_and_the_command_that_makes_it() {
    let clone = prepared_clone();
    let config = std::fs::read_to_string(clone.path().join("policy/site1.toml")).unwrap();
    let line_of = |key: &str, value: &str| {
        1 + config
            .lines()
            .position(|l| l.starts_with(key) && l.contains(value))
            .unwrap_or_else(|| panic!("site1.toml has no {key} = {value}"))
    };
    for (file, key, value, fix) in [
        (
            "certs/site1.crt",
            "tls.cert",
            "site1.crt",
            "pairgate cert issue",
        ),
        (
            "certs/site1.key",
            "tls.key",
            "site1.key",
            "pairgate cert issue",
        ),
        ("certs/ca/ca.crt", "tls.ca", "ca.crt", "pairgate ca init"),
        ("certs/ca/ca.crl", "tls.crl", "ca.crl", "pairgate ca crl"),
        (
            "keys/site1-spool.key",
            "spool.key",
            "spool.key",
            "pairgate spool keygen",
        ),
        (
            "policy/pairing.toml",
            "gateway.policy",
            "pairing.toml",
            "pairing.toml",
        ),
    ] {
        let path = clone.path().join(file);
        let saved = clone.path().join("saved");
        std::fs::rename(&path, &saved).unwrap();
        let err = check_site1(&clone);
        let short_key = key.split('.').nth(1).unwrap();
        let at = format!("site1.toml:{}: {key}: ", line_of(short_key, value));
        assert!(err.contains(&at), "{file}: expected {at:?} in {err}");
        assert!(err.contains("does not exist"), "{file}: {err}");
        assert!(err.contains(fix), "{file}: expected {fix:?} in {err}");
        std::fs::rename(&saved, &path).unwrap();
    }
    // The CRL really is optional: without the key, no CRL is read.
    std::fs::remove_file(clone.path().join("certs/ca/ca.crl")).unwrap();
    let without: String = config
        .lines()
        .filter(|l| !l.starts_with("crl "))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(clone.path().join("policy/site1.toml"), without).unwrap();
    let out = clone.run("pairgate check --config policy/site1.toml");
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn a_typo_in_gateway_pool_is_blamed_on_the_pool_not_the_policy() {
    let clone = prepared_clone();
    let path = clone.path().join("policy/site1.toml");
    let config = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        config.replacen(
            "pool = \"pool01.site1.example\"",
            "pool = \"pool01.site1.exmaple\"",
            1,
        ),
    )
    .unwrap();
    let line = 1 + config
        .lines()
        .position(|l| l.starts_with("pool ="))
        .unwrap();
    let err = check_site1(&clone);
    assert!(
        err.contains(&format!("site1.toml:{line}: gateway.pool:")),
        "{err}"
    );
    // The advice that the policy would refuse (pool02 is already paired).
    assert!(!err.contains("add [[pair]]"), "{err}");
    assert!(
        err.contains("certificate") && err.contains("pool01.site1.example"),
        "names the certificate's pool: {err}"
    );
    assert!(err.contains("set pool = \"pool01.site1.example\""), "{err}");
}
