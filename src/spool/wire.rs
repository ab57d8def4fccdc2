//! The spool transfer protocol over a `pg1-spool` TLS stream, as a sans-IO
//! codec: bytes in, frames out, and a receiver-side state machine that
//! rejects frames out of sequence.
//!
//! ```text
//! frame   = u32 BE length (of type + body, 1..=MAX_FRAME) | u8 type | body
//! HELLO   1  "PGSW" | u16 BE version (2)          both sides, first
//! OFFER   2  metadata JSON (id, name, size, sha256, created[, name_b64])  sender
//! ACCEPT  3  u64 BE offset (always 0)              receiver: send the data
//! ALREADY 4  id                                    receiver: have it, drop yours
//! DATA    5  1..=MAX_DATA plaintext bytes          sender
//! END     6  (empty)                               sender: that was all
//! ACK     7  id                                    receiver: durable, delete yours
//! ERROR   8  u8 reason | UTF-8 message             either: this file failed
//! ```
//!
//! The plaintext travels inside TLS; the receiver re-encrypts it under its
//! own spool key as it arrives and checks size and SHA-256 against the
//! OFFER before it acknowledges. Any malformed or out-of-sequence frame is a
//! [`WireError`] that closes that one connection — except an OFFER whose
//! metadata the receiver cannot accept: that file is refused (`bad_name`)
//! and the connection goes on.
//!
//! # Version 2 (this one) and version 1
//!
//! Version 2 changed one thing: the ERROR body starts with a reason byte
//! ([`Refusal`]), so a sender can tell a refusal for *now* (`busy`,
//! `full`, `failed`: set the file aside with its own backoff, send the
//! others) from one for *ever* (`too_large`: bigger than the receiver's
//! `max_bytes`; `bad_name`: report it, do not retry in a loop). Both
//! gateways of a pair run the same version; a v1 peer is refused at HELLO
//! with "upgrade the older gateway". Unknown reason bytes read as `other`
//! (a refusal for now). OFFER may carry `name_b64`, the raw bytes of a
//! name that is not UTF-8 (version 1 receivers dropped extra fields).

use super::metadata::Metadata;
pub use super::refusal::Refusal;

/// Largest frame (type + body), 1 MiB.
pub const MAX_FRAME: usize = 1 << 20;
/// DATA body size the sender uses.
pub const DATA_CHUNK: usize = 64 * 1024;
/// The protocol version of this codec (see the module doc for v1 → v2).
pub const VERSION: u16 = 2;
const HELLO_MAGIC: &[u8; 4] = b"PGSW";
const MAX_ERROR_LEN: usize = 4096;

/// One protocol frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Hello { version: u16 },
    Offer(Metadata),
    Accept { offset: u64 },
    Already { id: String },
    Data(Vec<u8>),
    End,
    Ack { id: String },
    Error { reason: Refusal, message: String },
}

/// A protocol violation by the other side.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error(
        "spool protocol: frame of {len} bytes is outside 1..={MAX_FRAME}; closing the connection"
    )]
    FrameLength { len: u64 },
    #[error("spool protocol: unknown frame type {kind}; is the peer a newer pairgate?")]
    UnknownType { kind: u8 },
    #[error("spool protocol: malformed {frame} frame: {reason}")]
    Malformed { frame: &'static str, reason: String },
    #[error("spool protocol: peer speaks version {version}, we speak {VERSION}; upgrade the older gateway")]
    Version { version: u16 },
    #[error("spool protocol: {frame} frame not allowed {state}")]
    Sequence {
        frame: &'static str,
        state: &'static str,
    },
    #[error("spool protocol: connection ended inside a frame")]
    Truncated,
    /// A frame we were about to send could not be encoded (a bug, or
    /// metadata serde cannot write).
    #[error("spool protocol: cannot encode the {frame} frame: {reason}")]
    Encode { frame: &'static str, reason: String },
}

impl Frame {
    /// The frame's name, for errors and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Frame::Hello { .. } => "HELLO",
            Frame::Offer(_) => "OFFER",
            Frame::Accept { .. } => "ACCEPT",
            Frame::Already { .. } => "ALREADY",
            Frame::Data(_) => "DATA",
            Frame::End => "END",
            Frame::Ack { .. } => "ACK",
            Frame::Error { .. } => "ERROR",
        }
    }

    /// Appends the encoded frame to `out`.
    ///
    /// # Errors
    /// [`WireError::Encode`] if the OFFER's metadata does not serialize
    /// (`out` is then left as it was).
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
        let start = out.len();
        out.extend_from_slice(&[0; 4]);
        match self {
            Frame::Hello { version } => {
                out.push(1);
                out.extend_from_slice(HELLO_MAGIC);
                out.extend_from_slice(&version.to_be_bytes());
            }
            Frame::Offer(meta) => {
                // Serialized before anything is written, so a failure
                // leaves `out` untouched.
                let json = serde_json::to_vec(meta).map_err(|e| {
                    out.truncate(start);
                    WireError::Encode {
                        frame: "OFFER",
                        reason: e.to_string(),
                    }
                })?;
                out.push(2);
                out.extend_from_slice(&json);
            }
            Frame::Accept { offset } => {
                out.push(3);
                out.extend_from_slice(&offset.to_be_bytes());
            }
            Frame::Already { id } => {
                out.push(4);
                out.extend_from_slice(id.as_bytes());
            }
            Frame::Data(bytes) => {
                out.push(5);
                out.extend_from_slice(bytes);
            }
            Frame::End => out.push(6),
            Frame::Ack { id } => {
                out.push(7);
                out.extend_from_slice(id.as_bytes());
            }
            Frame::Error { reason, message } => {
                out.push(8);
                out.push(reason.code());
                let mut end = message.len().min(MAX_ERROR_LEN);
                while !message.is_char_boundary(end) {
                    end -= 1;
                }
                out.extend_from_slice(&message.as_bytes()[..end]);
            }
        }
        let len = u32::try_from(out.len() - start - 4).unwrap_or(u32::MAX);
        out[start..start + 4].copy_from_slice(&len.to_be_bytes());
        Ok(())
    }

    /// Decodes one frame from its type byte and body.
    ///
    /// # Errors
    /// [`WireError::UnknownType`], [`WireError::Malformed`], [`WireError::Version`].
    pub fn decode(kind: u8, body: &[u8]) -> Result<Frame, WireError> {
        let bad = |frame, reason: &str| WireError::Malformed {
            frame,
            reason: reason.to_owned(),
        };
        Ok(match kind {
            1 => {
                if body.len() != 6 || &body[..4] != HELLO_MAGIC {
                    return Err(bad("HELLO", "expected \"PGSW\" and a 2-byte version"));
                }
                let version = u16::from_be_bytes([body[4], body[5]]);
                if version != VERSION {
                    return Err(WireError::Version { version });
                }
                Frame::Hello { version }
            }
            2 => {
                Frame::Offer(Metadata::from_record(body).map_err(|e| bad("OFFER", &e.to_string()))?)
            }
            3 => {
                let b: [u8; 8] = body
                    .try_into()
                    .map_err(|_| bad("ACCEPT", "expected an 8-byte offset"))?;
                Frame::Accept {
                    offset: u64::from_be_bytes(b),
                }
            }
            4 => Frame::Already {
                id: parse_id("ALREADY", body)?,
            },
            5 if body.is_empty() => return Err(bad("DATA", "empty")),
            5 => Frame::Data(body.to_vec()),
            6 if !body.is_empty() => return Err(bad("END", "has a body")),
            6 => Frame::End,
            7 => Frame::Ack {
                id: parse_id("ACK", body)?,
            },
            8 => {
                let Some((&code, text)) = body.split_first() else {
                    return Err(bad("ERROR", "expected a reason byte"));
                };
                Frame::Error {
                    reason: Refusal::from_code(code),
                    message: String::from_utf8_lossy(&text[..text.len().min(MAX_ERROR_LEN)])
                        .into_owned(),
                }
            }
            kind => return Err(WireError::UnknownType { kind }),
        })
    }
}

fn parse_id(frame: &'static str, body: &[u8]) -> Result<String, WireError> {
    let ok = !body.is_empty()
        && body.len() <= 64
        && body
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_');
    if !ok {
        return Err(WireError::Malformed {
            frame,
            reason: "id must be 1-64 characters of [0-9A-Za-z_-]".into(),
        });
    }
    Ok(String::from_utf8_lossy(body).into_owned())
}

/// Incremental frame decoder: push bytes, pull frames.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
    pos: usize,
}

impl Decoder {
    /// Adds received bytes.
    pub fn push(&mut self, data: &[u8]) {
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > MAX_FRAME {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// The next complete frame, if any.
    ///
    /// # Errors
    /// [`WireError::FrameLength`] as soon as a bad length prefix is seen
    /// (before buffering the body), or a decode error.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, WireError> {
        let avail = &self.buf[self.pos..];
        let Some(prefix) = avail.get(..4) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
        if len == 0 || len > MAX_FRAME {
            return Err(WireError::FrameLength { len: len as u64 });
        }
        let Some(frame) = avail.get(4..4 + len) else {
            return Ok(None);
        };
        let decoded = Frame::decode(frame[0], &frame[1..]);
        self.pos += 4 + len;
        decoded.map(Some)
    }

    /// Whether bytes of an incomplete frame are buffered.
    pub fn has_partial(&self) -> bool {
        self.pos < self.buf.len()
    }
}

/// Where the receiving side of a connection is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecvState {
    /// Waiting for HELLO.
    Hello,
    /// Waiting for an OFFER.
    Idle,
    /// An OFFER arrived; the receiver must answer it.
    Offered { id: String, size: u64 },
    /// Accepted: DATA until `size` bytes, then END.
    Receiving { id: String, size: u64, got: u64 },
}

/// The receiver's sequence checker.
#[derive(Debug, Clone)]
pub struct Receiver {
    pub state: RecvState,
}

impl Default for Receiver {
    fn default() -> Self {
        Receiver {
            state: RecvState::Hello,
        }
    }
}

impl Receiver {
    /// Checks that `frame` may arrive now and advances the state.
    ///
    /// # Errors
    /// [`WireError::Sequence`] naming the frame and the state, or
    /// [`WireError::Malformed`] for DATA beyond the offered size or END
    /// before it.
    pub fn on_frame(&mut self, frame: &Frame) -> Result<(), WireError> {
        let seq = |state| WireError::Sequence {
            frame: frame.name(),
            state,
        };
        match (&mut self.state, frame) {
            (RecvState::Hello, Frame::Hello { .. }) => self.state = RecvState::Idle,
            (RecvState::Hello, _) => return Err(seq("before HELLO")),
            (RecvState::Idle, Frame::Offer(m)) => {
                self.state = RecvState::Offered {
                    id: m.id.clone(),
                    size: m.size,
                }
            }
            (RecvState::Idle, _) => return Err(seq("between files (expected OFFER)")),
            (RecvState::Offered { .. }, _) => return Err(seq("before our answer to the OFFER")),
            (RecvState::Receiving { size, got, .. }, Frame::Data(d)) => {
                let new = *got + d.len() as u64;
                if new > *size {
                    return Err(WireError::Malformed {
                        frame: "DATA",
                        reason: format!("{new} bytes sent but the OFFER said {size}"),
                    });
                }
                *got = new;
            }
            (RecvState::Receiving { size, got, .. }, Frame::End) => {
                if got != size {
                    return Err(WireError::Malformed {
                        frame: "END",
                        reason: format!("after {got} of {size} bytes"),
                    });
                }
                self.state = RecvState::Idle;
            }
            (RecvState::Receiving { .. }, Frame::Error { .. }) => self.state = RecvState::Idle,
            (RecvState::Receiving { .. }, _) => return Err(seq("during a file")),
        }
        Ok(())
    }

    /// We answered the OFFER with ACCEPT.
    pub fn accept(&mut self) {
        if let RecvState::Offered { id, size } = &self.state {
            self.state = RecvState::Receiving {
                id: id.clone(),
                size: *size,
                got: 0,
            };
        }
    }

    /// We answered the OFFER with ALREADY or ERROR.
    pub fn decline(&mut self) {
        self.state = RecvState::Idle;
    }
}

/// Fuzz entry point (`fuzz/fuzz_targets/spool_wire.rs`): decodes `data` as a
/// frame stream fed in uneven pieces, runs the frames through the receiver
/// state machine (accepting every offer), and checks that every decoded
/// frame re-encodes to bytes that decode to the same frame.
pub fn fuzz_wire(data: &[u8]) {
    let mut dec = Decoder::default();
    let mut recv = Receiver::default();
    let step = data.first().map_or(1, |b| usize::from(*b % 17) + 1);
    for piece in data.chunks(step) {
        dec.push(piece);
        loop {
            match dec.next_frame() {
                Ok(Some(frame)) => {
                    let mut enc = Vec::new();
                    if let Err(e) = frame.encode(&mut enc) {
                        panic!("a decoded frame does not encode again: {e}");
                    }
                    let mut again = Decoder::default();
                    again.push(&enc);
                    assert_eq!(again.next_frame(), Ok(Some(frame.clone())), "re-encode");
                    if recv.on_frame(&frame).is_err() {
                        return;
                    }
                    if matches!(recv.state, RecvState::Offered { .. }) {
                        recv.accept();
                    }
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
