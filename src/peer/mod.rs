//! The paired gateway, as everything that talks to it sees it: where it is
//! and which pool it must prove to be ([`Peer`]), the one snapshot of policy
//! and TLS material a connection decides with ([`Live`]), the dialer every
//! outgoing connection uses ([`Peer::dial`]), whether the link is up, the
//! handshake allowance per source ([`pending`]), the open connections a CRL
//! may cut ([`Registry`]) and the facts an audit record of one connection
//! is made of ([`Track`]).
//!
//! Both ways bytes travel to the peer build on this module and not on each
//! other: `proxy` (tunnels, the peer listener, the control channel) and
//! `spool` (store-and-forward). The peer listener hands a connection for a
//! service it does not relay itself to the [`Service`] registered for it —
//! the spool registers its receiver that way.

mod dial;
pub mod keepalive;
pub mod pending;
mod readahead;
mod registry;
mod service;
mod track;

pub use dial::{DialError, DIALS_IN_FLIGHT};
pub use readahead::ReadAhead;
pub use registry::{Closed, Origin, Registration, Registry};
pub use service::{Accepted, Backlog, Served, Service, Serving};
pub use track::Track;

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use tokio::sync::watch;

use crate::admin::{LinkTracker, Metrics};
use crate::audit::AuditLog;
use crate::config::Limits;
use crate::names::PoolName;
use crate::policy::Policy;
use crate::shutdown::Shutdown;
use crate::tls::Material;

/// The transport under every TLS connection between the gateways.
pub type PeerTcp = ReadAhead<tokio::net::TcpStream>;

/// What a connection decides with: one consistent snapshot of policy and TLS
/// material, swapped as a whole on reload.
#[derive(Debug)]
pub struct Live {
    pub policy: Arc<Policy>,
    pub material: Arc<Material>,
}

/// What a gateway is told about its peer at start ([`Peer::new`]).
pub struct Settings {
    pub local_pool: PoolName,
    pub peer_pool: PoolName,
    /// `host:port` of the peer gateway (`peer.connect`).
    pub peer_connect: String,
    /// `SO_MARK` of the sockets the gateway opens itself (0: none).
    pub mark: u32,
    pub limits: Limits,
    pub live: Live,
    pub audit: AuditLog,
    pub shutdown: Shutdown,
    pub metrics: Arc<Metrics>,
}

/// The paired gateway and what every connection to or from it shares.
pub struct Peer {
    pub local_pool: PoolName,
    pub peer_pool: PoolName,
    /// `host:port` of the peer gateway.
    pub peer_connect: String,
    /// `SO_MARK` of the sockets the gateway opens itself (0: none); see
    /// [`Peer::mark`].
    mark: AtomicU32,
    /// The `[limits]` in force; see [`Peer::limits`].
    limits: RwLock<Limits>,
    /// The current [`Live`] snapshot; reloads publish a new one.
    pub live: watch::Sender<Arc<Live>>,
    pub audit: AuditLog,
    pub shutdown: Shutdown,
    pub metrics: Arc<Metrics>,
    /// Whether the peer gateway is reachable (heartbeats, tunnels, spool).
    pub link: Arc<LinkTracker>,
    /// Established connections and their peers' certificates.
    pub registry: Registry,
    /// Handshakes in progress per source on the peer listener.
    pub pending: pending::Pending,
    /// Turns for handshakes to the peer gateway.
    dials: dial::DialQueue,
    next_id: AtomicU64,
}

impl Peer {
    pub fn new(settings: Settings) -> Peer {
        let pending = pending::Pending::new(
            settings.limits.max_handshakes_per_source,
            settings.limits.max_handshakes_per_peer,
        );
        Peer {
            local_pool: settings.local_pool,
            peer_pool: settings.peer_pool,
            peer_connect: settings.peer_connect,
            mark: AtomicU32::new(settings.mark),
            limits: RwLock::new(settings.limits),
            live: watch::Sender::new(Arc::new(settings.live)),
            audit: settings.audit,
            shutdown: settings.shutdown,
            metrics: settings.metrics,
            link: Arc::new(LinkTracker::new()),
            registry: Registry::default(),
            pending,
            dials: dial::DialQueue::default(),
            next_id: AtomicU64::new(1),
        }
    }

    /// The current policy and TLS material.
    pub fn snapshot(&self) -> Arc<Live> {
        self.live.borrow().clone()
    }

    /// The `[limits]` in force now. Read where a limit is applied — at the
    /// start of a handshake, of a relay, of a dial — so a reload
    /// (`proxy::Context::apply_limits`) reaches what comes next and never
    /// what is already under way.
    pub fn limits(&self) -> Limits {
        match self.limits.read() {
            Ok(limits) => limits.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replaces the limits in force (see `proxy::Context::apply_limits`,
    /// which also resizes what depends on them).
    pub(crate) fn set_limits(&self, new: Limits) {
        match self.limits.write() {
            Ok(mut limits) => *limits = new,
            Err(poisoned) => *poisoned.into_inner() = new,
        }
    }

    /// The `SO_MARK` for sockets opened from now on (0: none). A reload may
    /// switch it on or off once the capability it needs was checked; the
    /// sockets already open keep the mark they were opened with.
    pub fn mark(&self) -> u32 {
        self.mark.load(Ordering::Relaxed)
    }

    /// Sets the mark for sockets opened from now on (checked first with
    /// `intercept::socket::check_mark`).
    pub fn set_mark(&self, mark: u32) {
        let was = self.mark.swap(mark, Ordering::Relaxed);
        if was != mark {
            tracing::info!(
                mark = format_args!("{mark:#x}"),
                was = format_args!("{was:#x}"),
                "socket mark changed for the sockets opened from now on"
            );
        }
    }

    /// The id given to the newest connection so far (0: none yet): every
    /// connection accepted before now has an id at most this.
    pub fn last_id(&self) -> u64 {
        self.next_id.load(Ordering::Relaxed).saturating_sub(1)
    }

    /// A fresh connection id (audit `conn_id`).
    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }
}
