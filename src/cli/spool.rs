//! `pairgate spool keygen|ls|verify|rekey|requeue`.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context as _};
use clap::{Args, Subcommand};

use pairgate::config::Config;
use pairgate::spool::{quarantine, tools, MasterKey, Store};

use super::Failure;

#[derive(Debug, Subcommand)]
pub enum SpoolCommand {
    /// Write a new spool master key (0600; refuses to overwrite).
    Keygen(KeygenArgs),
    /// List the files in the spool (outgoing, incoming, quarantine).
    Ls(LsArgs),
    /// Authenticate every spool file in full (exit 1 naming each bad file).
    Verify(VerifyArgs),
    /// Re-encrypt the spool under a new key (stop the gateway first; safe
    /// to interrupt and run again). Then point `spool.key` at the new key.
    Rekey(RekeyArgs),
    /// Move quarantined files back to where they came from (outgoing/ or
    /// incoming/) once the cause is fixed; a running gateway picks them up
    /// within 30 s. A file that is still bad is quarantined again.
    Requeue(LsArgs),
}

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Where to write the key file.
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// The site's gateway config (TOML) with a [spool] section.
    #[arg(long)]
    pub config: PathBuf,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// One JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// One JSON object (`config`, `ok`, `good`, `bad`: path and reason of
    /// each bad file) instead of text; the exit code is the same.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RekeyArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// The new key file (from `pairgate spool keygen`).
    #[arg(long)]
    pub new_key: PathBuf,
}

pub fn spool(command: SpoolCommand) -> Result<(), Failure> {
    match command {
        SpoolCommand::Keygen(a) => keygen(&a.out),
        SpoolCommand::Ls(a) => ls(&a.config.config, a.json),
        SpoolCommand::Verify(a) => verify(&a.config.config, a.json),
        SpoolCommand::Rekey(a) => rekey(&a.config.config, &a.new_key),
        SpoolCommand::Requeue(a) => requeue(&a.config.config, a.json),
    }
}

fn keygen(out: &Path) -> Result<(), Failure> {
    // `--out keys/site1-spool.key` in a fresh folder means "make keys/".
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        pairgate::pki::create_dir_private(dir).map_err(|e| {
            Failure::Invalid(anyhow!(
                "--out {}: {e} — choose a path whose folders can be created",
                out.display()
            ))
        })?;
    }
    let key = MasterKey::generate()?;
    key.write_key_file(out)?;
    println!("wrote {} (key id {})", out.display(), key.key_id());
    Ok(())
}

fn open(config: &Path) -> Result<Store, Failure> {
    let config = Config::load(config)?;
    let spool = config.spool.as_ref().ok_or_else(|| {
        Failure::Invalid(anyhow!(
            "{}: has no [spool] section; add one (dir, key, outbox, inbox) to use the spool",
            config.path.display()
        ))
    })?;
    Ok(Store::open(spool, None)?)
}

fn ls(config: &Path, json: bool) -> Result<(), Failure> {
    let store = open(config)?;
    let files = tools::list(&store)?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&files).context("render JSON")?
        );
        return Ok(());
    }
    let mut table = pairgate::table::new();
    table.set_header(["state", "id", "name", "size", "created", "age", "problem"]);
    for f in &files {
        table.add_row([
            serde_json::to_value(f.state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            f.id.clone(),
            f.name.clone().unwrap_or_default(),
            f.size.map(|s| s.to_string()).unwrap_or_default(),
            f.created.clone().unwrap_or_default(),
            f.age_s.map(|s| format!("{s}s")).unwrap_or_default(),
            f.problem.clone().unwrap_or_default(),
        ]);
    }
    println!("{table}");
    println!("{} file(s)", files.len());
    Ok(())
}

fn verify(config: &Path, json: bool) -> Result<(), Failure> {
    let store = open(config)?;
    let (good, bad) = tools::verify(&store)?;
    if json {
        let doc = serde_json::json!({
            "config": config,
            "ok": bad.is_empty(),
            "good": good,
            "bad": bad.iter().map(|b| serde_json::json!({ "path": b.path, "reason": b.reason })).collect::<Vec<_>>(),
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&doc).context("render JSON")?
        );
    } else {
        for b in &bad {
            eprintln!("BAD {}: {}", b.path.display(), b.reason);
        }
        println!("{good} good, {} bad", bad.len());
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(Failure::problem(format!(
            "{} spool file(s) failed authentication: {}; move them to quarantine/ (the gateway \
             does this itself) and have the sender re-send them",
            bad.len(),
            bad.iter()
                .map(|b| b.path.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }
}

fn rekey(config: &Path, new_key: &Path) -> Result<(), Failure> {
    let store = open(config)?;
    let new = MasterKey::load_key_file(new_key)?;
    let report = tools::rekey(&store, &new)?;
    println!(
        "rekeyed {}, already under the new key {}, failed {}",
        report.rekeyed,
        report.skipped,
        report.failed.len()
    );
    for b in &report.failed {
        eprintln!("FAILED {}: {}", b.path.display(), b.reason);
    }
    if !report.failed.is_empty() {
        return Err(Failure::problem(
            "some files could not be re-encrypted (listed above); check them with `pairgate spool verify`",
        ));
    }
    println!(
        "now set spool.key = \"{}\" in {} and start the gateway",
        new_key.display(),
        config.display()
    );
    Ok(())
}

fn requeue(config: &Path, json: bool) -> Result<(), Failure> {
    let store = open(config)?;
    let done = quarantine::requeue(&store)?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&done).context("render JSON")?
        );
    } else {
        for d in &done {
            let name = d.name.as_deref().unwrap_or("(name unknown)");
            match (&d.to, &d.problem) {
                (Some(to), _) => println!(
                    "requeued {name}: {} -> {}{}",
                    d.from.display(),
                    to.display(),
                    d.reason
                        .as_ref()
                        .map(|r| format!(" (was quarantined: {r})"))
                        .unwrap_or_default()
                ),
                (None, problem) => eprintln!(
                    "left {name} in quarantine ({}): {}",
                    d.from.display(),
                    problem.as_deref().unwrap_or("unknown problem")
                ),
            }
        }
        println!(
            "{} requeued, {} left in quarantine",
            done.iter().filter(|d| d.to.is_some()).count(),
            done.iter().filter(|d| d.to.is_none()).count()
        );
    }
    if done.iter().any(|d| d.to.is_none()) {
        return Err(Failure::problem(
            "some quarantined files were left in place (listed above); see `pairgate spool ls`",
        ));
    }
    Ok(())
}
