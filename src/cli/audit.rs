//! `pairgate audit …`. SKELETON — the audit helper fills this in.

use clap::Subcommand;

use super::Failure;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {}

pub fn audit(command: AuditCommand) -> Result<(), Failure> {
    match command {}
}
