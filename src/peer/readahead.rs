//! A read-ahead buffer under TLS.
//!
//! rustls pulls ciphertext from the socket 4 KiB at a time, so a 16 KiB
//! record costs four `read` syscalls and a bulk transfer spends its time in
//! the kernel. [`ReadAhead`] serves those small reads from one large read.
//! Its buffer exists only while data is flowing: reads go straight into the
//! caller's buffer until one fills it, and the read-ahead buffer is released
//! as soon as a short read (nothing more queued) has been drained — so an
//! idle tunnelled connection, which spends its life waiting for a read,
//! holds none.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::io::poll_read_buf;

/// Size of one read-ahead from the socket.
const CAPACITY: usize = 64 * 1024;

pub struct ReadAhead<S> {
    inner: S,
    /// Read ahead but not yet handed out. Its memory is reserved without
    /// being zeroed, so pages are touched only as data lands in them.
    buf: BytesMut,
    /// Whether data is arriving faster than it is read (the last read
    /// filled its buffer): then reads go through our larger buffer.
    flowing: bool,
}

impl<S> ReadAhead<S> {
    pub fn new(inner: S) -> ReadAhead<S> {
        ReadAhead {
            inner,
            buf: BytesMut::new(),
            flowing: false,
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadAhead<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.buf.is_empty() {
            // Until data arrives faster than the caller reads it, read
            // straight into the caller's buffer: an idle connection, which
            // spends its life waiting here, holds no buffer of ours.
            if !this.flowing || out.remaining() >= CAPACITY {
                let before = out.filled().len();
                ready!(Pin::new(&mut this.inner).poll_read(cx, out))?;
                this.flowing = out.filled().len() > before && out.remaining() == 0;
                return Poll::Ready(Ok(()));
            }
            if this.buf.capacity() < CAPACITY {
                this.buf = BytesMut::with_capacity(CAPACITY);
            }
            let want = this.buf.capacity();
            let n = ready!(poll_read_buf(Pin::new(&mut this.inner), cx, &mut this.buf))?;
            // A short read means nothing more was queued: back to direct reads.
            this.flowing = n == want;
            if n == 0 {
                this.buf = BytesMut::new();
                return Poll::Ready(Ok(()));
            }
        }
        let n = out.remaining().min(this.buf.len());
        out.put_slice(&this.buf.split_to(n));
        if this.buf.is_empty() && !this.flowing {
            this.buf = BytesMut::new();
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ReadAhead<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn small_reads_see_every_byte_in_order_and_the_buffer_goes_away() {
        let (mut w, r) = tokio::io::duplex(256 * 1024);
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let mut ra = ReadAhead::new(r);
        let writer = {
            let data = data.clone();
            tokio::spawn(async move {
                w.write_all(&data).await.unwrap();
                w.shutdown().await.unwrap();
            })
        };
        let mut got = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = ra.read(&mut chunk).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&chunk[..n]);
        }
        writer.await.unwrap();
        assert_eq!(got, data);
        assert_eq!(ra.buf.capacity(), 0, "released at EOF");
    }

    #[tokio::test]
    async fn an_idle_stream_holds_no_buffer() {
        let (mut w, r) = tokio::io::duplex(1024);
        let mut ra = ReadAhead::new(r);
        w.write_all(b"hello").await.unwrap();
        let mut five = [0u8; 5];
        ra.read_exact(&mut five).await.unwrap();
        assert_eq!(&five, b"hello");
        assert_eq!(ra.buf.capacity(), 0, "released once drained");
    }
}
