//! pairgate: a security gateway for the replication traffic between two paired
//! Lync / Skype for Business Front End pools.
//!
//! The flow of a connection follows the folder tree:
//! `config` (what the operator wrote) → `policy` (who may talk to whom) →
//! `tls` (who the peer is) → `peer` (the paired gateway: dialer, link, the
//! facts of one connection) → `proxy` (moving bytes live) or `spool`
//! (moving files) → `audit` (what happened). `proxy` and `spool` both build
//! on `peer` and not on each other.
//! `pki` mints and inspects the certificates the `tls` layer trusts, and
//! `gateway` wires one site's pieces together for `pairgate run`; `table`
//! is the one style of every table a command prints.
//!
//! The lab — the demo, the benchmark and the loopback pairing the
//! integration tests use — is not here: it is the workspace member
//! `crates/pairgate-lab`, which drives the `pairgate` binary as an operator
//! does, so the library operators install holds only the gateway.

#![warn(clippy::expect_used, unreachable_pub)]

pub mod admin;
pub mod audit;
pub mod backoff;
pub mod config;
pub mod exclusive;
pub mod fsutil;
pub mod fuzzing;
pub mod gateway;
pub mod intercept;
pub mod names;
pub mod peer;
pub mod pki;
pub mod policy;
pub mod proxy;
pub mod shutdown;
pub(crate) mod source;
pub mod spool;
pub mod table;
pub mod tls;
