//! `pairgate completions SHELL` and `pairgate man --out DIR`: generated from
//! the clap definitions, so they never drift from the real command line.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, CommandFactory};
use clap_complete::Shell;

use super::{Cli, Failure};

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    pub shell: Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Folder to write the pages into (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

pub fn completions(args: CompletionsArgs) -> Result<(), Failure> {
    let mut cmd = Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "pairgate", &mut std::io::stdout());
    Ok(())
}

pub fn man(args: ManArgs) -> Result<(), Failure> {
    std::fs::create_dir_all(&args.out).with_context(|| format!("create {}", args.out.display()))?;
    clap_mangen::generate_to(Cli::command(), &args.out)
        .with_context(|| format!("write man pages into {}", args.out.display()))?;
    println!("man pages written to {}", args.out.display());
    Ok(())
}
