//! The running spool of a gateway: the [`Store`] plus its three tasks
//! (outbox intake, forwarder, delivery), all tracked by the gateway's
//! shutdown and woken by events and by each other — never by sub-second
//! polling, so an idle gateway does next to nothing. Each task also looks
//! on a slow safety-net timer (events can be lost; `pairgate spool
//! requeue` moves files while the gateway runs).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_rustls::server::TlsStream;

use super::error::SpoolError;
use super::hold::Holds;
use super::intake::Intake;
use super::link::LinkStats;
use super::settle::Tracker;
use super::store::{lock, Depth, Store};
use super::watch::watch_outbox;
use crate::admin::SpoolDepth;
use crate::audit::AuditLog;
use crate::exclusive::{self, Wait};
use crate::peer::{Accepted, Backlog, Peer, PeerTcp, Served, Service, Serving};

/// With a file watch on the outbox, a full look still runs this often
/// (events can be dropped, and network filesystems raise none).
pub const OUTBOX_RESCAN: Duration = Duration::from_secs(10);
/// Without a watch (inotify unavailable or exhausted) the outbox is polled.
pub const OUTBOX_POLL: Duration = Duration::from_secs(1);
/// The forwarder and delivery look at their folders at least this often.
pub const SAFETY_NET: Duration = Duration::from_secs(30);
/// No look is scheduled sooner than this after the previous one.
const MIN_LOOK: Duration = Duration::from_millis(50);

/// A gateway's spool.
pub struct Spool {
    pub store: Arc<Store>,
    /// `spool.key` as configured at start (a change needs a restart).
    pub(crate) key_path: PathBuf,
    pub(crate) wake_forward: Notify,
    pub(crate) wake_deliver: Notify,
    /// Room was freed in the spool: retry refused outbox files now.
    pub(crate) wake_intake: Notify,
    /// `spool.dir/lock`, held exclusively while this spool runs
    /// ([`crate::exclusive`]); dropped by [`Spool::hand_over`].
    owner: std::sync::Mutex<Option<std::fs::File>>,
    /// Stops this spool's tasks (a child of the gateway's stop token once
    /// spawned; cancelled alone by [`Spool::hand_over`]).
    pub(crate) stop: tokio_util::sync::CancellationToken,
    tasks: tokio_util::task::TaskTracker,
}

/// The lock file in `spool.dir` that makes one process its owner.
pub(crate) const LOCK_FILE: &str = "lock";

impl Spool {
    /// Opens the spool of a `[spool]` section and recovers from any crash.
    /// Blocking (file I/O); call it before the gateway serves.
    ///
    /// # Errors
    /// [`SpoolError::Key`] (missing or non-private key), [`SpoolError::Io`].
    pub fn open(cfg: &crate::config::Spool, audit: AuditLog) -> Result<Arc<Spool>, SpoolError> {
        Spool::open_with(cfg, audit, Wait::No)
    }

    /// [`Spool::open`], first taking `spool.dir/lock`: with [`Wait::Block`]
    /// (taking over from a running instance) it waits until the other
    /// process let go, else a spool in use is [`SpoolError::Locked`].
    ///
    /// # Errors
    /// As [`Spool::open`], and [`SpoolError::Locked`].
    pub fn open_with(
        cfg: &crate::config::Spool,
        audit: AuditLog,
        wait: Wait,
    ) -> Result<Arc<Spool>, SpoolError> {
        std::fs::create_dir_all(&cfg.dir).map_err(SpoolError::io("create folder", &cfg.dir))?;
        let path = cfg.dir.join(LOCK_FILE);
        let owner = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(SpoolError::io("open", &path))?;
        match exclusive::lock(&owner, wait) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                return Err(SpoolError::Locked {
                    dir: cfg.dir.clone(),
                })
            }
            Err(e) => return Err(SpoolError::io("lock", &path)(e)),
        }
        let store = Store::open(cfg, Some(audit))?;
        super::recover::recover(&store)?;
        let mut spool = Spool::from_store(store);
        spool.key_path.clone_from(&cfg.key);
        spool.owner = std::sync::Mutex::new(Some(owner));
        Ok(Arc::new(spool))
    }

    /// Wraps an opened store (tests, tools).
    pub fn from_store(store: Store) -> Spool {
        Spool {
            store: Arc::new(store),
            key_path: PathBuf::new(),
            wake_forward: Notify::new(),
            wake_deliver: Notify::new(),
            wake_intake: Notify::new(),
            owner: std::sync::Mutex::new(None),
            stop: tokio_util::sync::CancellationToken::new(),
            tasks: tokio_util::task::TaskTracker::new(),
        }
    }

    /// Waiting files per direction, for metrics and `/status`.
    pub fn depth(&self) -> Depth {
        self.store.depth()
    }

    /// Starts intake, forwarder and delivery on the gateway's tracker.
    pub fn spawn(self: &Arc<Self>, peer: &Arc<Peer>) {
        // The gateway's stop stops the spool too.
        let (gateway, own) = (peer.shutdown.stop_token().clone(), self.stop.clone());
        peer.shutdown.spawn(async move {
            tokio::select! {
                () = gateway.cancelled() => own.cancel(),
                () = own.cancelled() => {}
            }
        });
        let tasks = &self.tasks;
        peer.shutdown
            .spawn(tasks.track_future(self.clone().intake_loop()));
        peer.shutdown
            .spawn(tasks.track_future(self.clone().forward_loop(peer.clone())));
        peer.shutdown
            .spawn(tasks.track_future(self.clone().deliver_loop()));
    }

    /// Hands the spool dir to a new instance taking over (see
    /// `gateway::handover`): stops intake, forwarder and delivery, waits
    /// until they have ended (a batch in flight is finished), then releases
    /// `spool.dir/lock`. Transfers the peer starts from now on are refused
    /// and retried on the new instance.
    pub async fn hand_over(&self) {
        self.stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
        if let Ok(mut owner) = self.owner.lock() {
            owner.take();
        }
        tracing::info!(dir = %self.store.root().display(), "spool handed over to the new instance");
    }

    async fn intake_loop(self: Arc<Self>) {
        let stop = self.stop.clone();
        let tracker = Arc::new(Mutex::new(Tracker::new(self.store.settle)));
        // A writer closing a file (or a rename into the outbox) wakes
        // intake; see `watch` for what does not.
        let woken = Arc::new(Notify::new());
        let watch = watch_outbox(&self.store.dirs.outbox, tracker.clone(), woken.clone());
        let every = if watch.is_some() {
            OUTBOX_RESCAN
        } else {
            OUTBOX_POLL
        };
        loop {
            let (store, t) = (self.store.clone(), tracker.clone());
            let scanned = tokio::task::spawn_blocking(move || {
                super::intake::scan_tracked(&store, &t, Instant::now())
            })
            .await;
            let started = Instant::now();
            let mut next = started + every;
            match scanned {
                Ok(scan) => {
                    if scan.done.iter().any(|d| matches!(d, Intake::Spooled(_))) {
                        self.wake_forward.notify_one();
                    }
                    if let Some(t) = scan.next_look {
                        next = next.min(t.max(started + MIN_LOOK));
                    }
                }
                Err(e) => tracing::error!(error = %e, "outbox scan task failed"),
            }
            tokio::select! {
                () = woken.notified() => {}
                () = self.wake_intake.notified() => {
                    lock(&tracker).retry_failures_now(Instant::now());
                }
                () = tokio::time::sleep_until(next.into()) => {}
                () = stop.cancelled() => return,
            }
        }
    }

    async fn deliver_loop(self: Arc<Self>) {
        let stop = self.stop.clone();
        let holds = Arc::new(Mutex::new(Holds::default()));
        loop {
            let (store, h) = (self.store.clone(), holds.clone());
            let due = tokio::task::spawn_blocking(move || {
                let mut holds = lock(&h);
                match super::deliver::deliver_due(&store, &mut holds, Instant::now()) {
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "delivery scan failed"),
                }
                holds.next_due()
            })
            .await;
            let now = Instant::now();
            let next = match due {
                Ok(Some(t)) => t.max(now + MIN_LOOK).min(now + SAFETY_NET),
                Ok(None) => now + SAFETY_NET,
                Err(e) => {
                    tracing::error!(error = %e, "delivery task failed");
                    now + SAFETY_NET
                }
            };
            tokio::select! {
                () = self.wake_deliver.notified() => {}
                () = tokio::time::sleep_until(next.into()) => {}
                () = stop.cancelled() => return,
            }
        }
    }
}

/// The spool's receiver, as the peer listener sees it: the handler of
/// allowed `pg1-spool` connections ([`Spool::receiver`]).
struct Receiver {
    spool: Arc<Spool>,
    peer: Arc<Peer>,
}

impl Spool {
    /// The handler to register for the `spool` service on the peer listener.
    pub fn receiver(self: &Arc<Self>, peer: &Arc<Peer>) -> Arc<dyn Service> {
        Arc::new(Receiver {
            spool: self.clone(),
            peer: peer.clone(),
        })
    }
}

impl Service for Receiver {
    fn serve(&self, stream: TlsStream<PeerTcp>, accepted: Accepted) -> Serving<'_> {
        Box::pin(async move {
            let peer_pool = accepted.peer_pool.as_str();
            let idle = self.peer.limits().idle_timeout;
            let stop = &self.spool.stop;
            let (stats, result) = tokio::select! {
                r = Box::pin(self.spool.receive(stream, peer_pool, idle, stop)) => r,
                () = accepted.closed.cancelled() => (
                    LinkStats::default(),
                    Err(SpoolError::Link {
                        peer: peer_pool.to_owned(),
                        detail: "closed: peer certificate revoked or grace period over".into(),
                    }),
                ),
            };
            Served {
                bytes_in: stats.bytes_in,
                bytes_out: stats.bytes_out,
                error: result.err().map(|e| e.to_string()),
            }
        })
    }
}

impl Backlog for Spool {
    fn outbound(&self) -> SpoolDepth {
        self.depth().outbound
    }
}
