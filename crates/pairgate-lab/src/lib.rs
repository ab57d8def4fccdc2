//! pairgate's lab: a two-site pairing on loopback, for `pairgate demo`,
//! `pairgate bench` and the integration tests — outside the gateway library
//! that operators install.
//!
//! Why it does not link the `pairgate` library: the `pairgate` binary
//! depends on this crate for its `demo` and `bench` commands, so the lab
//! depending on the library would be a package cycle. It also keeps the lab
//! honest: it drives the real binary exactly as an operator does —
//! `pairgate ca init`, `cert issue`, `cert rotate`, `spool keygen`, `run`,
//! `status --json`, `audit verify --json` ([`Pairgate`]) — and sees the
//! gateways only through their configs, sockets, files and `/proc`.
//!
//! The pieces, in the order a lab run uses them:
//! - [`Pairgate`]: one `pairgate` command, run to completion.
//! - [`Pki`]: a pairing CA and gateway certificates, made with the CLI.
//! - [`SiteSpec`]: one site's config file; [`free_port`] for its listeners.
//! - [`GatewayProcess`]: a running `pairgate run`, killed when dropped.
//! - [`backends`]: the echo, digest and discard servers behind the exports,
//!   and the clients that push traffic through a tunnel.
//! - [`netns`], [`hosts`] and [`keepalived`]: network namespaces for what
//!   needs the kernel (packet filter, several hosts on a LAN, VRRP).
//! - [`demo`] and [`bench`]: the two commands built on the above.
//!
//! Things only tests need (certificates with odd validity windows, a hostile
//! TLS peer) live in the integration tests' harness, which may use both this
//! crate and the library.

pub mod backends;
pub mod bench;
pub mod demo;
pub mod hosts;
pub mod keepalived;
pub mod netns;
mod pairgate;
mod pki;
mod process;
mod site;
pub mod table;

use std::path::PathBuf;

pub use backends::{
    bulk_digest, digest_backend, digest_backend_at, discard_backend, echo_backend, echo_backend_at,
    pattern, round_trip, round_trip_on, stream_bulk,
};
pub use pairgate::Pairgate;
pub use pki::Pki;
pub use process::GatewayProcess;
pub use site::{free_port, SiteSpec};

/// The pool of the lab's site 1.
pub const POOL1: &str = "pool01.site1.example";
/// The pool of the lab's site 2.
pub const POOL2: &str = "pool02.site2.example";

/// What went wrong in the lab; each names the step and what to look at.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("`{command}` printed something that is not the JSON expected: {detail}")]
    Output { command: String, detail: String },
    #[error("gateway {config} did not become ready: {detail}")]
    NotReady { config: PathBuf, detail: String },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LabError {
    let what = what.into();
    move |source| LabError::Io { what, source }
}
