//! `pairgate ca …` and `pairgate cert …`. SKELETON — the pki helper fills this in.

use clap::Subcommand;

use super::Failure;

#[derive(Debug, Subcommand)]
pub enum CaCommand {}

#[derive(Debug, Subcommand)]
pub enum CertCommand {}

pub fn ca(command: CaCommand) -> Result<(), Failure> {
    match command {}
}

pub fn cert(command: CertCommand) -> Result<(), Failure> {
    match command {}
}
