//! `pairgate policy …`: validate the pairing manifest on its own.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use pairgate::policy::Policy;

use super::Failure;

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate a policy file and print its pairs and services (exit 0, or 2 if invalid).
    Check(CheckArgs),
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The policy file, e.g. policy/pairing.toml.
    pub file: PathBuf,
    /// Print the validated pairs as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn policy(command: PolicyCommand) -> Result<(), Failure> {
    match command {
        PolicyCommand::Check(args) => check(&args),
    }
}

fn check(args: &CheckArgs) -> Result<(), Failure> {
    let policy = Policy::load(&args.file)?;
    if policy.pairs.is_empty() {
        eprintln!(
            "pairgate: warning: {} has no [[pair]], so it denies every connection — add a [[pair]] with pools and services",
            args.file.display()
        );
    }
    if args.json {
        let pairs: Vec<serde_json::Value> = policy
            .pairs
            .iter()
            .map(|p| serde_json::json!({ "pools": p.pools, "services": p.services }))
            .collect();
        let doc = serde_json::json!({ "file": policy.path, "valid": true, "pairs": pairs });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print!("{}", summary(&policy));
    }
    Ok(())
}

/// What `policy check` prints for a valid policy.
fn summary(policy: &Policy) -> String {
    let count = policy.pairs.len();
    let plural = if count == 1 { "" } else { "s" };
    let denied = if count == 0 {
        "every connection"
    } else {
        "everything else"
    };
    let mut out = format!(
        "{}: valid, {count} pair{plural}; {denied} is denied\n",
        policy.path.display()
    );
    for pair in &policy.pairs {
        let services: Vec<&str> = pair.services.iter().map(|s| s.as_str()).collect();
        out.push_str(&format!(
            "  {} <-> {}: {}\n",
            pair.pools[0],
            pair.pools[1],
            services.join(", ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn summary_lists_pairs_and_services() {
        let text = "[[pair]]\npools = [\"a.x\", \"b.x\"]\nservices = [\"spool\", \"backup-smb\"]\n";
        let policy = Policy::parse(text, Path::new("p.toml")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            summary(&policy),
            "p.toml: valid, 1 pair; everything else is denied\n  a.x <-> b.x: backup-smb, spool\n"
        );
    }

    #[test]
    fn invalid_policy_is_exit_2() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let file = dir.path().join("p.toml");
        std::fs::write(
            &file,
            "[[pair]]\npools = [\"a.x\", \"a.x\"]\nservices = [\"spool\"]\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let failure = policy(PolicyCommand::Check(CheckArgs { file, json: false })).err();
        let failure = failure.unwrap_or_else(|| panic!("self-pair must fail"));
        assert_eq!(failure.code(), 2);
        assert!(failure.error().to_string().contains("with itself"));
    }
}
