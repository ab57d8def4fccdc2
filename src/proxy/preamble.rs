//! The connection preamble of `pg2/<service>` tunnels: who the client is,
//! and whether the far side took the connection.
//!
//! With `pg1/<service>` the tunnel is a raw relay, and the dialling site
//! could not tell a dead export from a working one: site 2 closed the
//! connection, site 1 audited `allow` and `close bytes_out=0`, and only
//! site 2's log knew why. `pg2/<service>` adds two small messages at the
//! start of the TLS stream, in-band, so both sites audit the same reason:
//!
//! ## Negotiation (rolling upgrades)
//! The dialler offers ALPN `pg2/<service>` first and `pg1/<service>`
//! second. A gateway that knows `pg2` selects it; an older one does not
//! recognise it and selects `pg1/<service>`, which stays exactly the raw
//! relay it always was. Spool (`pg1-spool`) and control (`pg1-control`)
//! are unchanged.
//!
//! ## Wire (inside TLS, after the handshake)
//! 1. Dialler → acceptor, first bytes: a **PROXY protocol v2 header**, the
//!    standard binary form (HAProxy's `proxy-protocol.txt`, section 2.2):
//!    the 12-byte signature `0D 0A 0D 0A 00 0D 0A 51 55 49 54 0A`, the byte
//!    `0x21` (version 2, command PROXY), `0x11` (TCP over IPv4) or `0x21`
//!    (TCP over IPv6), a big-endian u16 length, then source address,
//!    destination address, source port, destination port (12 or 36 bytes).
//!    Source: the local client (the Front End) that connected to the
//!    tunnel listener. Destination: the tunnel listener's own address (the
//!    address the client dialled). When the two differ in family, or are
//!    unknown, the command is LOCAL (`0x20`, family `0x00`, length 0).
//!    TLVs are allowed and ignored — except one: an `[[intercept]]`
//!    listener sends the connection's **original destination** (the host
//!    the Front End addressed, from `SO_ORIGINAL_DST`) as the destination,
//!    and marks it with the custom TLV [`TLV_ORIGINAL_DESTINATION`]
//!    (`0xE0`, the first of the range PROXY v2 leaves to applications; one
//!    value byte, `0x01`). An `[[export]]` with `destinations` connects that
//!    address; without the TLV the destination is only the tunnel
//!    listener's address and no export connects it. The whole header is at
//!    most [`MAX_PROXY_HEADER`] bytes. The dialler then relays client bytes at
//!    once, without waiting (no extra round trip).
//! 2. Acceptor: reads the header (bounded as above, within
//!    `limits.handshake_timeout`), evaluates the policy, connects the export
//!    target, and then — before any byte from the target — sends one
//!    **status frame**:
//!
//!    | bytes | field |
//!    | --- | --- |
//!    | 4 | magic `PGS1` |
//!    | 1 | length R of the outcome, 1..=64 |
//!    | R | outcome, ASCII `[a-z0-9_]`: `ok`, or an audit reason (`not_paired`, `service_not_allowed`, `export_unreachable`, `bad_preamble`, …) |
//!    | 2 | big-endian length D of the detail, 0..=1024 |
//!    | D | detail, UTF-8 text for the operator (e.g. `export target 10.0.0.5:445 unreachable: Connection refused`) |
//!
//!    After `ok` the target's bytes follow; after anything else the
//!    acceptor closes the connection.
//! 3. The dialler reads the status before it relays any byte towards the
//!    client. `ok`: it audits `allow`. A policy or identity reason: it
//!    audits a `deny` with that reason (the same line site 2 wrote).
//!    `export_unreachable`: both sites audit `allow` and then a `close`
//!    whose `reason` is `export_unreachable`, and count
//!    `pairgate_export_failures_total{direction,service}`. A TLS alert read
//!    instead of the status (the acceptor refused our certificate after a
//!    TLS 1.3 handshake that looked complete to us) is audited with the
//!    alert's reason (`revoked`, `unknown_ca`, …).
//!
//! Both sites' audit lines carry `client_addr`, the Front End's address:
//! the dialler knows it, the acceptor learns it from the PROXY header.

use std::net::SocketAddr;

use ppp::v2;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The longest PROXY v2 header accepted: addresses plus room for TLVs.
pub const MAX_PROXY_HEADER: usize = 256;
/// The status frame's magic.
pub const STATUS_MAGIC: &[u8; 4] = b"PGS1";
/// Longest outcome name in a status frame.
pub const MAX_OUTCOME: usize = 64;
/// Longest detail in a status frame.
pub const MAX_DETAIL: usize = 1024;
/// The outcome of an accepted connection.
pub const OK: &str = "ok";
/// The PROXY v2 TLV type that marks the destination as the client's
/// original destination (`PP2_TYPE_MIN_CUSTOM`).
pub const TLV_ORIGINAL_DESTINATION: u8 = 0xE0;
/// Its value: version 1 of that meaning.
const ORIGINAL_DESTINATION_V1: &[u8] = &[0x01];

/// What a PROXY header said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Command PROXY with TCP addresses.
    Proxied {
        source: SocketAddr,
        destination: SocketAddr,
    },
    /// Command PROXY with TCP addresses and [`TLV_ORIGINAL_DESTINATION`]:
    /// `destination` is where the client was going (an `[[intercept]]`).
    Intercepted {
        source: SocketAddr,
        destination: SocketAddr,
    },
    /// Command LOCAL, or an address family we do not carry.
    Local,
}

impl Origin {
    /// The client's address, when the header carried one.
    pub fn source(&self) -> Option<SocketAddr> {
        match self {
            Origin::Proxied { source, .. } | Origin::Intercepted { source, .. } => Some(*source),
            Origin::Local => None,
        }
    }

    /// The original destination of an intercepted connection.
    pub fn original_destination(&self) -> Option<SocketAddr> {
        match self {
            Origin::Intercepted { destination, .. } => Some(*destination),
            _ => None,
        }
    }
}

/// The acceptor's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// `ok` or an audit reason.
    pub outcome: String,
    pub detail: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PreambleError {
    #[error("not a PROXY protocol v2 header: {0}")]
    Proxy(String),
    #[error("PROXY header of {0} bytes is longer than the {MAX_PROXY_HEADER} accepted")]
    ProxyTooLong(usize),
    #[error("status frame: {0}")]
    Status(&'static str),
}

/// The PROXY v2 header for a client at `source` that connected to `destination`.
pub fn encode_origin(source: Option<SocketAddr>, destination: Option<SocketAddr>) -> Vec<u8> {
    let local = || {
        v2::Builder::new(
            v2::Version::Two | v2::Command::Local,
            v2::AddressFamily::Unspecified | v2::Protocol::Unspecified,
        )
    };
    let builder = match (source, destination) {
        (Some(s), Some(d)) if s.is_ipv4() == d.is_ipv4() => v2::Builder::with_addresses(
            v2::Version::Two | v2::Command::Proxy,
            v2::Protocol::Stream,
            (s, d),
        ),
        _ => local(),
    };
    // Building only fails past 64 KiB of payload; an address pair is 36 bytes.
    builder
        .build()
        .unwrap_or_else(|_| local().build().unwrap_or_default())
}

/// The PROXY v2 header of an intercepted connection: the client at
/// `source` was going to `original` (see [`TLV_ORIGINAL_DESTINATION`]).
/// Falls back to LOCAL when the families differ.
pub fn encode_intercepted(source: SocketAddr, original: SocketAddr) -> Vec<u8> {
    if source.is_ipv4() != original.is_ipv4() {
        return encode_origin(None, None);
    }
    v2::Builder::with_addresses(
        v2::Version::Two | v2::Command::Proxy,
        v2::Protocol::Stream,
        (source, original),
    )
    .write_tlv(TLV_ORIGINAL_DESTINATION, ORIGINAL_DESTINATION_V1)
    .and_then(v2::Builder::build)
    // Building only fails past 64 KiB of payload; this is 36 + 4 bytes.
    .unwrap_or_else(|_| encode_origin(None, None))
}

/// Parses a complete PROXY v2 header (exactly its bytes).
///
/// # Errors
/// [`PreambleError`] for anything but a well-formed v2 header.
pub fn decode_origin(header: &[u8]) -> Result<Origin, PreambleError> {
    if header.len() > MAX_PROXY_HEADER {
        return Err(PreambleError::ProxyTooLong(header.len()));
    }
    let parsed = v2::Header::try_from(header).map_err(|e| PreambleError::Proxy(e.to_string()))?;
    if parsed.len() != header.len() {
        return Err(PreambleError::Proxy("trailing bytes".into()));
    }
    if let Some(Err(e)) = parsed.tlvs().find(Result::is_err) {
        return Err(PreambleError::Proxy(e.to_string()));
    }
    let addresses: Option<(SocketAddr, SocketAddr)> = match (parsed.command, parsed.addresses) {
        (v2::Command::Proxy, v2::Addresses::IPv4(a)) => Some((
            (a.source_address, a.source_port).into(),
            (a.destination_address, a.destination_port).into(),
        )),
        (v2::Command::Proxy, v2::Addresses::IPv6(a)) => Some((
            (a.source_address, a.source_port).into(),
            (a.destination_address, a.destination_port).into(),
        )),
        _ => None,
    };
    let intercepted = parsed
        .tlvs()
        .flatten()
        .find(|t| t.kind == TLV_ORIGINAL_DESTINATION);
    Ok(match (addresses, intercepted) {
        (Some((source, destination)), Some(tlv)) if *tlv.value == *ORIGINAL_DESTINATION_V1 => {
            Origin::Intercepted {
                source,
                destination,
            }
        }
        (Some(_), Some(_)) => {
            return Err(PreambleError::Proxy(
                "original-destination TLV of an unknown version".into(),
            ))
        }
        (Some((source, destination)), None) => Origin::Proxied {
            source,
            destination,
        },
        (None, _) => Origin::Local,
    })
}

/// How many bytes the PROXY header starting with these 16 bytes has in all.
fn proxy_length(fixed: &[u8; 16]) -> Result<usize, PreambleError> {
    if &fixed[..12] != v2::PROTOCOL_PREFIX {
        return Err(PreambleError::Proxy("no PROXY v2 signature".into()));
    }
    let total = 16 + usize::from(u16::from_be_bytes([fixed[14], fixed[15]]));
    if total > MAX_PROXY_HEADER {
        return Err(PreambleError::ProxyTooLong(total));
    }
    Ok(total)
}

/// Reads exactly one PROXY v2 header from `r` (never a byte past it).
///
/// # Errors
/// I/O errors, and [`PreambleError`] as `InvalidData`.
pub async fn read_origin<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Origin> {
    let mut fixed = [0u8; 16];
    r.read_exact(&mut fixed).await?;
    let total = proxy_length(&fixed).map_err(invalid)?;
    let mut header = Vec::with_capacity(total);
    header.extend_from_slice(&fixed);
    header.resize(total, 0);
    r.read_exact(&mut header[16..]).await?;
    decode_origin(&header).map_err(invalid)
}

/// The status frame for `outcome` (clipped to the limits: a detail is cut
/// at a character boundary, an invalid outcome becomes `handshake_failed`).
pub fn encode_status(outcome: &str, detail: &str) -> Vec<u8> {
    let outcome = if valid_outcome(outcome) {
        outcome
    } else {
        "handshake_failed"
    };
    let mut end = detail.len().min(MAX_DETAIL);
    while !detail.is_char_boundary(end) {
        end -= 1;
    }
    let detail = &detail.as_bytes()[..end];
    let mut out = Vec::with_capacity(4 + 1 + outcome.len() + 2 + detail.len());
    out.extend_from_slice(STATUS_MAGIC);
    out.push(outcome.len() as u8);
    out.extend_from_slice(outcome.as_bytes());
    out.extend_from_slice(&(detail.len() as u16).to_be_bytes());
    out.extend_from_slice(detail);
    out
}

fn valid_outcome(outcome: &str) -> bool {
    (1..=MAX_OUTCOME).contains(&outcome.len())
        && outcome
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Parses a status frame from the start of `buf`: `Ok(None)` while more
/// bytes are needed, else the status and the bytes it used.
///
/// # Errors
/// [`PreambleError::Status`] for a frame that can never become valid.
pub fn decode_status(buf: &[u8]) -> Result<Option<(Status, usize)>, PreambleError> {
    let magic_len = buf.len().min(4);
    if buf[..magic_len] != STATUS_MAGIC[..magic_len] {
        return Err(PreambleError::Status("no PGS1 magic"));
    }
    let Some(&r) = buf.get(4) else {
        return Ok(None);
    };
    let r = usize::from(r);
    if r == 0 || r > MAX_OUTCOME {
        return Err(PreambleError::Status("outcome length out of range"));
    }
    let Some(outcome) = buf.get(5..5 + r) else {
        return Ok(None);
    };
    let outcome = std::str::from_utf8(outcome)
        .ok()
        .filter(|o| valid_outcome(o))
        .ok_or(PreambleError::Status("outcome is not [a-z0-9_]"))?;
    let Some(len) = buf.get(5 + r..7 + r) else {
        return Ok(None);
    };
    let d = usize::from(u16::from_be_bytes([len[0], len[1]]));
    if d > MAX_DETAIL {
        return Err(PreambleError::Status("detail longer than 1024 bytes"));
    }
    let Some(detail) = buf.get(7 + r..7 + r + d) else {
        return Ok(None);
    };
    let detail = String::from_utf8_lossy(detail).into_owned();
    let status = Status {
        outcome: outcome.to_owned(),
        detail,
    };
    Ok(Some((status, 7 + r + d)))
}

/// Reads exactly one status frame from `r` (never a byte past it).
///
/// # Errors
/// I/O errors (including a TLS alert from the acceptor), and a malformed
/// frame as `InvalidData`.
pub async fn read_status<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Status> {
    // Each read asks for exactly what the frame still needs, so no byte of
    // the target's stream is consumed here.
    let mut buf = Vec::with_capacity(16);
    let mut want = 5;
    loop {
        let have = buf.len();
        buf.resize(want, 0);
        r.read_exact(&mut buf[have..]).await?;
        match decode_status(&buf).map_err(invalid)? {
            Some((status, _)) => return Ok(status),
            None => {
                want = match buf.len() {
                    5 => 5 + usize::from(buf[4]) + 2,
                    n => {
                        let r = usize::from(buf[4]);
                        n + usize::from(u16::from_be_bytes([buf[5 + r], buf[6 + r]]))
                    }
                };
            }
        }
    }
}

fn invalid(e: PreambleError) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e)
}

#[cfg(test)]
#[path = "preamble_tests.rs"]
mod tests;
