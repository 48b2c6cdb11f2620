//! A client connection with a clock on its request heads: a head must arrive
//! whole within `header_timeout`, counted from the connection's start (first
//! request) or from the first byte of a keep-alive request. Bodies and idle
//! time between requests are not counted here (`body_timeout` and
//! `idle_timeout` cover them).
//!
//! The proxy tells the clock where a request's head ends
//! ([`head_received`]) and where the request ends ([`request_done`]); the
//! stream finds the start of the next head itself (its first byte).
//!
//! On an HTTP/2 connection the stream also batches its writes
//! ([`super::write_batch`]): the answers of one turn of the connection's task
//! leave in one write.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, Ssl, Stream, UniqueID, UniqueIDType,
};
use pingora::proxy::Session;
use pingora_prometheus::prometheus::IntCounter;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::write_batch::WriteBatch;

/// Reading a request head: the clock runs.
const HEAD: u8 = 0;
/// Past the head (body, response): no clock.
const PAST_HEAD: u8 = 1;
/// Between requests: the clock starts at the next byte.
const BETWEEN: u8 = 2;
/// An HTTP/2 connection (its preface was read): no clock. Its streams are
/// multiplexed, so there is no one request head to time; Pingora closes an
/// HTTP/2 connection that has no open stream for the role's idle timeout,
/// and h2 bounds header blocks and concurrent streams.
const H2: u8 = 3;

/// The HTTP/2 client connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How long an HTTP/2 connection's close waits for the client to close its
/// side ([`HeadClock::poll_shutdown`]).
const H2_LINGER: Duration = Duration::from_secs(1);
/// Most bytes read and dropped while it waits.
const H2_LINGER_BYTES: usize = 1024 * 1024;

/// A client stream whose request heads are timed.
pub struct HeadClock {
    inner: Stream,
    phase: AtomicU8,
    limit: Duration,
    deadline: Pin<Box<Sleep>>,
    timeouts: IntCounter,
    /// While an HTTP/2 connection closes: when it stops waiting, and how
    /// many bytes it dropped.
    linger: Option<(Pin<Box<Sleep>>, usize)>,
    /// An HTTP/2 connection's writes, sent once per turn of its task.
    batch: WriteBatch,
}

impl HeadClock {
    /// Wraps `inner`, whose first head must be in by `first`.
    pub fn new(inner: Stream, limit: Duration, first: Instant, timeouts: IntCounter) -> Self {
        // HTTP/2 chosen by ALPN on a TLS connection: no heads to time.
        let h2 = matches!(inner.selected_alpn_proto(), Some(pingora::protocols::ALPN::H2));
        HeadClock {
            inner,
            phase: AtomicU8::new(if h2 { H2 } else { HEAD }),
            limit,
            deadline: Box::pin(tokio::time::sleep_until(first)),
            timeouts,
            linger: None,
            batch: WriteBatch::new(),
        }
    }
}

/// The clock under a session, when the session runs on one.
fn clock(session: &Session) -> Option<&HeadClock> {
    let stream = session.as_downstream().stream()?;
    (**stream).as_any().downcast_ref::<HeadClock>()
}

/// Stops the clock: the request's head was read whole.
pub fn head_received(session: &Session) {
    if let Some(c) = clock(session) {
        c.phase.store(PAST_HEAD, Ordering::Relaxed);
    }
}

/// The request is over: the next request's clock starts at its first byte.
pub fn request_done(session: &Session) {
    if let Some(c) = clock(session) {
        c.phase.store(BETWEEN, Ordering::Relaxed);
    }
}

impl AsyncRead for HeadClock {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        match this.phase.load(Ordering::Relaxed) {
            HEAD => {
                if this.deadline.as_mut().poll(cx).is_ready() {
                    this.timeouts.inc();
                    log::info!(target: "fastproxy::access", "request head not received within {:?}: connection closed", this.limit);
                    return Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "request head not received within header_timeout",
                    )));
                }
                Pin::new(&mut this.inner).poll_read(cx, buf)
            }
            BETWEEN => {
                let before = buf.filled().len();
                let read = Pin::new(&mut this.inner).poll_read(cx, buf);
                if matches!(read, Poll::Ready(Ok(()))) && buf.filled().len() > before {
                    this.phase.store(HEAD, Ordering::Relaxed);
                    this.deadline.as_mut().reset(Instant::now() + this.limit);
                }
                read
            }
            H2 => {
                // What the last turn wrote goes out first.
                if let Poll::Ready(Err(e)) = this.batch.poll_send(Pin::new(&mut this.inner), cx) {
                    return Poll::Ready(Err(e));
                }
                Pin::new(&mut this.inner).poll_read(cx, buf)
            }
            _ => Pin::new(&mut this.inner).poll_read(cx, buf),
        }
    }
}

impl HeadClock {
    /// HTTP/2 writes are batched ([`WriteBatch`]); HTTP/1.1 writes are not
    /// (Pingora writes a response with its body in one flush already).
    fn batched(&self) -> bool {
        self.phase.load(Ordering::Relaxed) == H2
    }
}

impl AsyncWrite for HeadClock {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if this.batched() {
            return this.batch.poll_write(Pin::new(&mut this.inner), cx, buf);
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        this.batch.poll_flush(Pin::new(&mut this.inner), cx)
    }

    /// An HTTP/2 connection closes after its final GOAWAY; streams the client
    /// opened before that frame reached it may still be arriving. Closing the
    /// socket with their bytes unread makes the kernel send a reset, and the
    /// client can lose the GOAWAY that told it those streams were never
    /// processed (and so are safe to send again): it sees a broken pipe
    /// instead, and a POST fails. So the close lingers, as nginx's does: the
    /// write side is shut (FIN), then what arrives is read and dropped until
    /// the client closes its side, for at most [`H2_LINGER`] and
    /// [`H2_LINGER_BYTES`]. An HTTP/1.1 connection closes at once.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.phase.load(Ordering::Relaxed) != H2 {
            return Pin::new(&mut this.inner).poll_shutdown(cx);
        }
        if this.linger.is_none() {
            std::task::ready!(this.batch.poll_shutdown(Pin::new(&mut this.inner), cx))?;
            this.linger = Some((Box::pin(tokio::time::sleep(H2_LINGER)), 0));
        }
        let Some((until, dropped)) = this.linger.as_mut() else { return Poll::Ready(Ok(())) };
        let mut scratch = [0u8; 4096];
        loop {
            if *dropped >= H2_LINGER_BYTES || until.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Ok(()));
            }
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut this.inner).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if !buf.filled().is_empty() => *dropped += buf.filled().len(),
                // The client closed its side (or the connection failed): done.
                Poll::Ready(_) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if this.batched() {
            return this.batch.poll_write_vectored(Pin::new(&mut this.inner), cx, bufs);
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[async_trait]
impl Shutdown for HeadClock {
    async fn shutdown(&mut self) {
        // What the last turn wrote goes first; a peer that reads nothing
        // more holds the close up for at most the linger time.
        if self.batch.is_holding() {
            let (batch, inner) = (&mut self.batch, &mut self.inner);
            let send = std::future::poll_fn(|cx| batch.poll_send(Pin::new(&mut *inner), cx));
            let _ = tokio::time::timeout(H2_LINGER, send).await;
        }
        self.inner.shutdown().await
    }
}

impl UniqueID for HeadClock {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for HeadClock {
    fn get_ssl(&self) -> Option<&pingora::protocols::tls::TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<std::sync::Arc<pingora::protocols::tls::SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<pingora::protocols::ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for HeadClock {
    fn get_timing_digest(&self) -> Vec<Option<pingora::protocols::TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for HeadClock {
    fn get_proxy_digest(&self) -> Option<std::sync::Arc<pingora::protocols::raw_connect::ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: pingora::protocols::raw_connect::ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for HeadClock {
    fn get_socket_digest(&self) -> Option<std::sync::Arc<pingora::protocols::SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: pingora::protocols::SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

/// Pingora peeks at a new connection's first bytes for the HTTP/2 preface
/// (h2c). The peek waits for as many bytes as the preface has, so it runs on
/// the head clock too: a client trickling a short head would otherwise hold
/// the connection past `header_timeout`. Once the preface is seen, the clock
/// stops for good ([`H2`]).
#[async_trait]
impl Peek for HeadClock {
    async fn try_peek(&mut self, buf: &mut [u8]) -> std::io::Result<bool> {
        if self.phase.load(Ordering::Relaxed) != HEAD {
            return self.inner.try_peek(buf).await;
        }
        let deadline = self.deadline.deadline();
        match tokio::time::timeout_at(deadline, self.inner.try_peek(buf)).await {
            Ok(peeked) => {
                if matches!(peeked, Ok(true)) && buf.starts_with(H2_PREFACE) {
                    self.phase.store(H2, Ordering::Relaxed);
                }
                peeked
            }
            Err(_) => {
                self.timeouts.inc();
                log::info!(target: "fastproxy::access", "request head not received within {:?}: connection closed", self.limit);
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "request head not received within header_timeout",
                ))
            }
        }
    }
}

impl std::fmt::Debug for HeadClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeadClock").field("inner", &self.inner).field("limit", &self.limit).finish()
    }
}
