//! Transparent interception: the gateway as the next hop for the peer
//! site, taking the connections an nftables rule redirects to it and
//! carrying each to the host its client actually addressed.
//!
//! ## Why
//! A Front End reaching a name-override tunnel only works for one remote
//! host per listener, and not at all when the remote name is also a
//! registrar (Standard Edition), when the remote hosts are every server of
//! the peer site (CMS `xds-replica`), or when a DFS referral names another
//! host. WAN optimisers and service meshes solve this the same way: the
//! packet filter redirects by destination and port, the proxy reads where
//! the connection was going, and the far side connects exactly there.
//! No name changes; SMB signing, Kerberos and SMB3 encryption stay end to
//! end.
//!
//! ## Flow
//! 1. nftables `redirect`/`dnat` (or `tproxy`) sends TCP 445 to the peer
//!    site's subnets to an `[[intercept]]` listener.
//! 2. [`socket::arrival`] reads the original destination
//!    (`SO_ORIGINAL_DST` / `IP6T_SO_ORIGINAL_DST`, or the local address of
//!    a transparent socket) and the mark the connection arrived with.
//! 3. [`destination::decide`] refuses what is missing, what is this
//!    gateway itself, what arrived carrying our own mark, and what is
//!    outside the listener's `destinations`/`ports` — audited as
//!    `destination_not_allowed`, never forwarded.
//! 4. `proxy::intercepted` takes the connection from there: the allowed one goes to the peer gateway over mTLS with the
//!    original destination in the PROXY v2 header (`proxy::preamble`); the
//!    peer's `[[export]]` checks its own `destinations`/`ports` and the
//!    policy, and connects exactly there.
//!
//! ## Loop safety
//! Every socket the gateway opens itself — to the peer gateway and to
//! export targets — carries `SO_MARK = [gateway] mark` (default
//! [`DEFAULT_MARK`], `0x5047`, "PG"), and the operator's ruleset returns
//! early for that mark (`meta mark 0x5047 return`). Should a rule still
//! send a gateway connection back to a listener, it is refused twice over:
//! its original destination would be one of our own listeners, or (with
//! `net.ipv4.tcp_fwmark_accept = 1`, which makes the kernel give an
//! accepted socket the mark of its SYN) it arrives carrying our mark.

pub mod destination;
pub mod export;
pub mod socket;

pub use destination::{decide, is_ours, Arrival, Destinations, Refusal};
pub use socket::{bind_listener, Capture};

/// The default `SO_MARK` of the gateway's own connections: `0x5047`, the
/// ASCII of "PG".
pub const DEFAULT_MARK: u32 = 0x5047;
