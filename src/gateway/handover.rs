//! Seamless upgrade: a new `pairgate run --takeover` takes the listening
//! sockets of the running instance, so no connection attempt is refused
//! while the binary (or anything that needs a restart) changes.
//!
//! Why fd passing and not `SO_REUSEPORT`: with two sockets bound to one
//! port, the kernel spreads new connections over both accept queues, and
//! closing the old socket resets the connections waiting in its queue. A
//! passed descriptor is the *same* socket — one accept queue that outlives
//! the old process — which is how HAProxy and Envoy hand over (HAProxy's
//! `expose-fd listeners`). The descriptors travel as `SCM_RIGHTS` over a
//! unix socket ([`socket_path`]: next to the audit log, mode 0600, and the
//! connecting process must run as the same user).
//!
//! The exchange (one line each way, then the descriptors):
//! 1. new → old: `pairgate-handover 1`
//! 2. old → new: `{"listeners":["ADDR",…]}` with one descriptor per address
//!    attached (peer, tunnels, intercepts, admin);
//! 3. the new instance serves every listener of its config — inherited
//!    where the address matches, bound fresh otherwise — and answers `ready`;
//! 4. the old instance stops accepting at once, drains its established
//!    connections up to `limits.shutdown_grace`, records `gateway_stop`
//!    with `reason: "handover"`, flushes and exits.
//!
//! Both instances accept on the shared sockets between 3 and 4; neither
//! closes them while the other needs them. If the new instance dies
//! before `ready`, the old one goes on serving as if nothing happened.
//!
//! The audit log and the spool dir are owned by one process at a time
//! ([`crate::exclusive`]). The old instance hands its spool over when asked,
//! before it sends the sockets (its intake, forwarder and delivery stop, a
//! batch in flight is finished, the lock is released); the new instance
//! opens the spool (recovery included) before it serves. The peer retries
//! spool transfers meanwhile; nothing is lost. If the new instance then
//! fails, the old one goes on serving its tunnels but runs no spool until
//! it is restarted (logged). The audit log stays with the old instance
//! until it exits: the new one queues its audit lines in memory until then.

use std::io::{self, BufRead, BufReader, IoSlice, IoSliceMut, Read, Write};
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rustix::net::{
    recvmsg, sendmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use serde::{Deserialize, Serialize};

/// The request line.
pub const PROTOCOL: &str = "pairgate-handover 1";
/// Most listening sockets handed over at once.
pub const MAX_LISTENERS: usize = 64;
/// How long the old instance waits for the new one to say `ready`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum HandoverError {
    #[error("cannot reach the running instance at {path}: {source} — is it running with this config? (it listens there once started)")]
    Connect {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("handover over {path}: {detail}")]
    Protocol { path: PathBuf, detail: String },
    #[error("handover over {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

#[derive(Serialize, Deserialize)]
struct Header {
    listeners: Vec<SocketAddr>,
}

/// The unix socket of the instance that owns `audit_path`
/// (`<audit.path>.handover`).
pub fn socket_path(audit_path: &Path) -> PathBuf {
    let mut name = audit_path.as_os_str().to_owned();
    name.push(".handover");
    PathBuf::from(name)
}

/// The listening sockets a running instance can hand over: duplicates of
/// its listeners' descriptors, kept until it stops.
#[derive(Default)]
pub struct Offer {
    fds: Mutex<Option<Vec<(SocketAddr, OwnedFd)>>>,
}

impl Offer {
    /// Keeps a duplicate of each listener (address, socket).
    ///
    /// # Errors
    /// When a descriptor cannot be duplicated (out of descriptors).
    pub fn new<'a>(
        listeners: impl IntoIterator<Item = &'a tokio::net::TcpListener>,
    ) -> io::Result<Offer> {
        let mut fds = Vec::new();
        for listener in listeners {
            fds.push((
                listener.local_addr()?,
                listener.as_fd().try_clone_to_owned()?,
            ));
        }
        Ok(Offer {
            fds: Mutex::new(Some(fds)),
        })
    }

    /// Offers one more listener (a tunnel added by a live reload).
    ///
    /// # Errors
    /// When the descriptor cannot be duplicated.
    pub fn add(&self, listener: &tokio::net::TcpListener) -> io::Result<()> {
        let entry = (
            listener.local_addr()?,
            listener.as_fd().try_clone_to_owned()?,
        );
        if let Ok(mut fds) = self.fds.lock() {
            if let Some(fds) = fds.as_mut() {
                fds.push(entry);
            }
        }
        Ok(())
    }

    /// Stops offering the listener at `addr` (removed by a live reload).
    pub fn remove(&self, addr: SocketAddr) {
        if let Ok(mut fds) = self.fds.lock() {
            if let Some(fds) = fds.as_mut() {
                fds.retain(|(a, _)| *a != addr);
            }
        }
    }

    /// Closes the duplicates (on stop: a socket nobody accepts on must
    /// close, so that connection attempts are refused, not left hanging).
    pub fn withdraw(&self) {
        if let Ok(mut fds) = self.fds.lock() {
            fds.take();
        }
    }
}

/// Binds the handover socket (replacing a stale one), mode 0600.
///
/// # Errors
/// When the socket cannot be bound.
pub fn listen(path: &Path) -> Result<UnixListener, HandoverError> {
    let err = |source| HandoverError::Io {
        path: path.to_owned(),
        source,
    };
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    let listener = UnixListener::bind(path).map_err(err)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    }
    Ok(listener)
}

/// Serves one takeover request on `stream` (blocking): once the request
/// is valid, runs `prepare` (hand the spool over), sends the offered
/// sockets and waits for `ready`. Returns true when the new instance is
/// ready, so this one must stop accepting and drain.
///
/// # Errors
/// A broken exchange; this instance then goes on serving.
pub fn answer(
    stream: UnixStream,
    path: &Path,
    offer: &Offer,
    prepare: impl FnOnce(),
) -> Result<bool, HandoverError> {
    let io_err = |source| HandoverError::Io {
        path: path.to_owned(),
        source,
    };
    let proto = |detail: String| HandoverError::Protocol {
        path: path.to_owned(),
        detail,
    };
    same_user(&stream).map_err(|e| proto(e.to_string()))?;
    stream
        .set_read_timeout(Some(READY_TIMEOUT))
        .map_err(io_err)?;
    let mut reader = BufReader::new(stream.try_clone().map_err(io_err)?);
    let mut line = String::new();
    reader
        .by_ref()
        .take(256)
        .read_line(&mut line)
        .map_err(io_err)?;
    if line.trim_end() != PROTOCOL {
        return Err(proto(format!("unexpected request {:?}", line.trim_end())));
    }
    prepare();
    {
        let guard = offer
            .fds
            .lock()
            .map_err(|_| proto("offer poisoned".into()))?;
        let Some(fds) = guard.as_ref() else {
            return Err(proto("this instance is stopping".into()));
        };
        let header = Header {
            listeners: fds.iter().map(|(addr, _)| *addr).collect(),
        };
        let mut text = serde_json::to_vec(&header).map_err(|e| proto(e.to_string()))?;
        text.push(b'\n');
        let borrowed: Vec<_> = fds.iter().map(|(_, fd)| fd.as_fd()).collect();
        let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_LISTENERS))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        if !control.push(SendAncillaryMessage::ScmRights(&borrowed)) {
            return Err(proto(format!("more than {MAX_LISTENERS} listeners")));
        }
        let sent = sendmsg(
            &stream,
            &[IoSlice::new(&text)],
            &mut control,
            SendFlags::empty(),
        )
        .map_err(|e| io_err(e.into()))?;
        let mut writer = &stream;
        writer.write_all(&text[sent..]).map_err(io_err)?;
    }
    line.clear();
    match reader.take(64).read_line(&mut line) {
        Ok(_) if line.trim_end() == "ready" => Ok(true),
        Ok(_) => Err(proto(format!(
            "the new instance did not become ready ({:?}); still serving",
            line.trim_end()
        ))),
        Err(e) => Err(io_err(e)),
    }
}

/// What a new instance took over: the listening sockets by address, and
/// the line to the old instance (say [`Inherited::ready`] when serving).
#[derive(Default)]
pub struct Inherited {
    listeners: Vec<(SocketAddr, std::net::TcpListener)>,
    line: Option<(PathBuf, UnixStream)>,
}

impl Inherited {
    /// Asks the instance listening on `path` for its sockets (blocking).
    ///
    /// # Errors
    /// When it cannot be reached or the exchange breaks.
    pub fn take(path: &Path) -> Result<Inherited, HandoverError> {
        let io_err = |source| HandoverError::Io {
            path: path.to_owned(),
            source,
        };
        let proto = |detail: String| HandoverError::Protocol {
            path: path.to_owned(),
            detail,
        };
        let mut stream = UnixStream::connect(path).map_err(|source| HandoverError::Connect {
            path: path.to_owned(),
            source,
        })?;
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(io_err)?;
        stream
            .write_all(format!("{PROTOCOL}\n").as_bytes())
            .map_err(io_err)?;
        let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_LISTENERS))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let mut buf = vec![0u8; 64 * 1024];
        let got = recvmsg(
            &stream,
            &mut [IoSliceMut::new(&mut buf)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        )
        .map_err(|e| io_err(e.into()))?;
        let mut fds: Vec<OwnedFd> = Vec::new();
        for message in control.drain() {
            if let RecvAncillaryMessage::ScmRights(received) = message {
                fds.extend(received);
            }
        }
        let mut text = buf[..got.bytes].to_vec();
        while !text.contains(&b'\n') {
            let mut more = [0u8; 4096];
            let n = stream.read(&mut more).map_err(io_err)?;
            if n == 0 || text.len() > buf.len() {
                return Err(proto("the running instance closed the line".into()));
            }
            text.extend_from_slice(&more[..n]);
        }
        let end = text.iter().position(|b| *b == b'\n').unwrap_or(text.len());
        let header: Header =
            serde_json::from_slice(&text[..end]).map_err(|e| proto(e.to_string()))?;
        if header.listeners.len() != fds.len() {
            return Err(proto(format!(
                "{} addresses but {} sockets",
                header.listeners.len(),
                fds.len()
            )));
        }
        let mut listeners = Vec::new();
        for (addr, fd) in header.listeners.into_iter().zip(fds) {
            let listener = std::net::TcpListener::from(fd);
            listener.set_nonblocking(true).map_err(io_err)?;
            listeners.push((addr, listener));
        }
        Ok(Inherited {
            listeners,
            line: Some((path.to_owned(), stream)),
        })
    }

    /// The inherited listener bound to `addr`, if any (taken once).
    ///
    /// # Errors
    /// When it cannot be registered with the runtime.
    pub fn claim(&mut self, addr: SocketAddr) -> io::Result<Option<tokio::net::TcpListener>> {
        let Some(i) = self.listeners.iter().position(|(a, _)| *a == addr) else {
            return Ok(None);
        };
        let (_, listener) = self.listeners.swap_remove(i);
        tokio::net::TcpListener::from_std(listener).map(Some)
    }

    /// Whether sockets were inherited (this is a takeover).
    pub fn is_takeover(&self) -> bool {
        self.line.is_some()
    }

    /// Tells the old instance this one serves: it stops accepting and
    /// drains. Sockets of addresses this config no longer has are closed.
    ///
    /// # Errors
    /// When the old instance cannot be told (it then keeps serving too).
    pub fn ready(&mut self) -> Result<(), HandoverError> {
        for (addr, _) in self.listeners.drain(..) {
            tracing::info!(%addr, "inherited listener not in the new config: closed");
        }
        if let Some((path, mut stream)) = self.line.take() {
            stream
                .write_all(b"ready\n")
                .map_err(|source| HandoverError::Io { path, source })?;
        }
        Ok(())
    }
}

/// The peer of a handover socket must be this process's user.
fn same_user(stream: &UnixStream) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        let peer = rustix::net::sockopt::socket_peercred(stream)?;
        let me = rustix::process::getuid();
        if peer.uid != me {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "refused a takeover from uid {} (this gateway runs as uid {})",
                    peer.uid.as_raw(),
                    me.as_raw()
                ),
            ));
        }
    }
    let _ = stream;
    Ok(())
}
