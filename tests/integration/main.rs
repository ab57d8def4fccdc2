//! The integration suite: real `pairgate` processes, real sockets on
//! loopback, real TLS with a PKI minted per test, real files.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

mod burst;
mod cli;
mod field;
mod field_clock;
mod fieldkit;
mod ha;
mod ha_lb;
mod ha_vrrp;
mod hostile;
mod intercept;
mod layers;
mod lifecycle;
mod live_drain;
mod live_limits;
mod live_reload;
mod netns;
mod observe;
mod preamble;
mod quickstart;
mod reference;
mod refusals;
mod reports;
mod smb;
mod spool;
mod spool_faults;
mod spool_field;
mod spool_measure;
mod trust;
mod tunnel;
