//! `pairgate run`, `check` and `demo`.

use std::path::PathBuf;

use clap::Args;

use super::Failure;

#[derive(Debug, Args)]
pub struct RunArgs {
    #[arg(long)]
    pub config: PathBuf,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[arg(long)]
    pub config: PathBuf,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where to build the two sites (default: a fresh temporary folder).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

pub fn run(_args: RunArgs) -> Result<(), Failure> {
    Err(Failure::problem("not yet"))
}

pub fn check(_args: CheckArgs) -> Result<(), Failure> {
    Err(Failure::problem("not yet"))
}

pub fn demo(_args: DemoArgs) -> Result<(), Failure> {
    Err(Failure::problem("not yet"))
}
