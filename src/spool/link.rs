//! Frames over an async byte stream (the IO edge of [`super::wire`]), and
//! the bridges between async frames and the blocking sealer/opener.

use std::io::{self, Read, Write};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::error::SpoolError;
use super::wire::{Decoder, Frame, WireError};

/// Byte counts of one link.
#[derive(Debug, Clone, Copy, Default)]
pub struct LinkStats {
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// How long each side waits, by what it waits for.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Between files (a receiver waiting for the next OFFER).
    pub idle: Duration,
    /// While something is due: an answer, the next part of a file, or
    /// room to send (`[spool] stall_secs`). Passing it means the link is
    /// frozen (no FIN, no RST: a power cut, lost firewall state).
    pub stall: Duration,
}

/// A framed, bidirectional spool link.
pub struct FrameIo<S> {
    stream: S,
    dec: Decoder,
    buf: Vec<u8>,
    out: Vec<u8>,
    timeouts: Timeouts,
    peer: String,
    pub stats: LinkStats,
}

impl<S: AsyncRead + AsyncWrite + Unpin> FrameIo<S> {
    /// Wraps `stream`.
    pub fn new(stream: S, timeouts: Timeouts, peer: &str) -> Self {
        FrameIo {
            stream,
            dec: Decoder::default(),
            buf: vec![0; 64 * 1024],
            out: Vec::with_capacity(70 * 1024),
            timeouts,
            peer: peer.to_owned(),
            stats: LinkStats::default(),
        }
    }

    fn link(&self, detail: impl std::fmt::Display) -> SpoolError {
        SpoolError::Link {
            peer: self.peer.clone(),
            detail: detail.to_string(),
        }
    }

    fn stalled(&self, doing: &'static str) -> SpoolError {
        SpoolError::Stalled {
            peer: self.peer.clone(),
            doing,
            secs: self.timeouts.stall.as_secs(),
        }
    }

    /// The next frame when one is due (an answer, the next part of a
    /// file), or `None` at a clean end of stream.
    ///
    /// # Errors
    /// [`SpoolError::Wire`] on a protocol violation, [`SpoolError::Stalled`]
    /// when nothing arrives within the stall timeout, [`SpoolError::Link`]
    /// on I/O errors.
    pub async fn read_frame(&mut self) -> Result<Option<Frame>, SpoolError> {
        self.read_within(false).await
    }

    /// The next frame between files: waits up to the idle timeout.
    ///
    /// # Errors
    /// As [`FrameIo::read_frame`], with [`SpoolError::Link`] after the idle
    /// timeout.
    pub async fn read_frame_idle(&mut self) -> Result<Option<Frame>, SpoolError> {
        self.read_within(true).await
    }

    async fn read_within(&mut self, idle: bool) -> Result<Option<Frame>, SpoolError> {
        let limit = if idle {
            self.timeouts.idle
        } else {
            self.timeouts.stall
        };
        loop {
            if let Some(frame) = self.dec.next_frame()? {
                return Ok(Some(frame));
            }
            let read = tokio::time::timeout(limit, self.stream.read(&mut self.buf)).await;
            let n = match read {
                Err(_) if idle => return Err(self.link(format!("idle for {limit:?}"))),
                Err(_) => return Err(self.stalled("waiting for the peer")),
                Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => 0,
                Ok(Err(e)) => return Err(self.link(e)),
                Ok(Ok(n)) => n,
            };
            if n == 0 {
                if self.dec.has_partial() {
                    return Err(WireError::Truncated.into());
                }
                return Ok(None);
            }
            self.stats.bytes_in += n as u64;
            self.dec.push(&self.buf[..n]);
        }
    }

    /// Writes one frame; `flush` pushes it out now.
    ///
    /// # Errors
    /// [`SpoolError::Link`].
    pub async fn send(&mut self, frame: &Frame, flush: bool) -> Result<(), SpoolError> {
        self.out.clear();
        frame.encode(&mut self.out)?;
        let write = async {
            self.stream.write_all(&self.out).await?;
            if flush {
                self.stream.flush().await?;
            }
            Ok::<_, io::Error>(())
        };
        match tokio::time::timeout(self.timeouts.stall, write).await {
            Err(_) => return Err(self.stalled("sending")),
            Ok(Err(e)) => return Err(self.link(e)),
            Ok(Ok(())) => {}
        }
        self.stats.bytes_out += self.out.len() as u64;
        Ok(())
    }

    /// Closes the TLS session cleanly (best effort).
    pub async fn close(&mut self) {
        let _ = self.stream.shutdown().await;
    }
}

/// A blocking `Read` fed with chunks from async code; ends when the sender
/// is dropped.
pub struct ChannelReader {
    rx: mpsc::Receiver<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
}

impl ChannelReader {
    pub fn new(rx: mpsc::Receiver<Vec<u8>>) -> Self {
        ChannelReader {
            rx,
            cur: Vec::new(),
            pos: 0,
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.cur.len() {
            match self.rx.blocking_recv() {
                Some(chunk) => {
                    self.cur = chunk;
                    self.pos = 0;
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// A blocking `Write` that hands each write to async code as one chunk.
pub struct ChannelWriter {
    pub tx: mpsc::Sender<Vec<u8>>,
}

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.tx
            .blocking_send(buf.to_vec())
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "spool link closed"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::spool::wire::VERSION;

    const T: Timeouts = Timeouts {
        idle: Duration::from_secs(5),
        stall: Duration::from_secs(5),
    };

    #[tokio::test]
    async fn frames_cross_a_duplex_pipe_and_eof_is_clean_or_truncated() {
        let (a, b) = tokio::io::duplex(1024);
        let mut left = FrameIo::new(a, T, "test");
        let mut right = FrameIo::new(b, T, "test");
        let big = Frame::Data(vec![7; 100_000]);
        let send = async {
            left.send(&Frame::Hello { version: VERSION }, false)
                .await
                .unwrap();
            left.send(&big, true).await.unwrap();
            left.close().await;
            left
        };
        let recv = async {
            let mut got = Vec::new();
            while let Some(f) = right.read_frame().await.unwrap() {
                got.push(f);
            }
            got
        };
        let (left, got) = tokio::join!(send, recv);
        assert_eq!(got, vec![Frame::Hello { version: VERSION }, big]);
        assert_eq!(left.stats.bytes_out, right.stats.bytes_in);

        let (mut a, b) = tokio::io::duplex(64);
        let mut right = FrameIo::new(b, T, "test");
        a.write_all(&[0, 0, 0, 9, 5, 1]).await.unwrap();
        drop(a);
        assert!(matches!(
            right.read_frame().await,
            Err(SpoolError::Wire(WireError::Truncated))
        ));
    }

    /// A frozen peer (nothing arrives, nothing drains, nothing closes) is a
    /// stall after `stall`, both reading and sending; between files only
    /// the (longer) idle timeout applies.
    #[tokio::test(start_paused = true)]
    async fn a_frozen_peer_is_a_stall_within_the_stall_timeout() {
        let t = Timeouts {
            idle: Duration::from_secs(1800),
            stall: Duration::from_secs(30),
        };
        let (a, _frozen) = tokio::io::duplex(1024);
        let mut io = FrameIo::new(a, t, "peer");
        let started = tokio::time::Instant::now();
        let err = io.read_frame().await.unwrap_err();
        assert!(matches!(err, SpoolError::Stalled { secs: 30, .. }), "{err}");
        assert_eq!(started.elapsed(), Duration::from_secs(30));
        // Sending into a full pipe nobody reads.
        let started = tokio::time::Instant::now();
        let err = io
            .send(&Frame::Data(vec![1; 60_000]), true)
            .await
            .unwrap_err();
        assert!(matches!(err, SpoolError::Stalled { .. }), "{err}");
        assert_eq!(started.elapsed(), Duration::from_secs(30));
        // Waiting for the next OFFER is not a stall.
        let started = tokio::time::Instant::now();
        let err = io.read_frame_idle().await.unwrap_err();
        assert!(matches!(err, SpoolError::Link { .. }), "{err}");
        assert_eq!(started.elapsed(), Duration::from_secs(1800));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn channel_reader_and_writer_bridge_blocking_code() {
        let (tx, rx) = mpsc::channel(2);
        let reader = tokio::task::spawn_blocking(move || {
            let mut all = Vec::new();
            ChannelReader::new(rx).read_to_end(&mut all).unwrap();
            all
        });
        let writer = tokio::task::spawn_blocking(move || {
            let mut w = ChannelWriter { tx };
            for i in 0..10u8 {
                w.write_all(&[i; 1000]).unwrap();
            }
        });
        writer.await.unwrap();
        let all = reader.await.unwrap();
        assert_eq!(all.len(), 10_000);
        assert_eq!(all[9_999], 9);
    }
}
