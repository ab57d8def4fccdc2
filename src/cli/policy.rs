//! `pairgate policy …`. SKELETON — the policy helper fills this in.

use clap::Subcommand;

use super::Failure;

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {}

pub fn policy(command: PolicyCommand) -> Result<(), Failure> {
    match command {}
}
