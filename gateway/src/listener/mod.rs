//! What a role's listeners allow any client, before credentials: a cap on
//! open connections (above it, a clean 503 `too_many_connections` and a
//! close), and a clock on each request head ([`head_clock`]). HTTP/2
//! connections send the writes of one turn together ([`write_batch`]).
//!
//! [`Guarded`] wraps the role's Pingora app: each accepted connection takes a
//! slot for as long as it stays open, and runs on a [`head_clock::HeadClock`].

pub mod head_clock;
pub mod heap_trim;
pub mod write_batch;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use pingora_prometheus::prometheus::IntGauge;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::ConnectionLimits;
use crate::error::{ProxyError, Role};
use crate::metrics::ListenerMetrics;

/// Connections being refused at once, at most; above this a connection is
/// dropped without an answer (a flood must not hold more of them).
const MAX_REFUSING: usize = 256;
/// How long a refused connection may take to send its request head and to
/// read the answer, each.
const REFUSAL_WAIT: Duration = Duration::from_secs(1);

/// A role's Pingora app behind the connection cap and the head clock.
pub struct Guarded<A> {
    app: Arc<A>,
    role: Role,
    limits: ConnectionLimits,
    open: AtomicUsize,
    refusing: AtomicUsize,
    metrics: ListenerMetrics,
}

impl<A> Guarded<A> {
    /// Puts `app` behind `limits`.
    pub fn new(app: A, role: Role, limits: ConnectionLimits, metrics: ListenerMetrics) -> Self {
        Guarded { app: Arc::new(app), role, limits, open: AtomicUsize::new(0), refusing: AtomicUsize::new(0), metrics }
    }
}

/// One taken slot of a counter (shown on `gauge`); given back when dropped,
/// however the connection's task ends.
struct Slot<'a> {
    count: &'a AtomicUsize,
    gauge: Option<&'a IntGauge>,
}

impl<'a> Slot<'a> {
    fn take(count: &'a AtomicUsize, max: usize, gauge: Option<&'a IntGauge>) -> Option<Self> {
        count.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1)).ok()?;
        if let Some(g) = gauge {
            g.inc();
            heap_trim::opened();
        }
        Some(Slot { count, gauge })
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::AcqRel);
        if let Some(g) = self.gauge {
            g.dec();
            heap_trim::closed();
        }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for Guarded<A> {
    async fn process_new(self: &Arc<Self>, mut stream: Stream, shutdown: &ShutdownWatch) -> Option<Stream> {
        let Some(_slot) = Slot::take(&self.open, self.limits.max_connections, Some(&self.metrics.open)) else {
            self.metrics.refused.inc();
            if let Some(_refusing) = Slot::take(&self.refusing, MAX_REFUSING, None) {
                refuse(stream, self.role).await;
            }
            return None;
        };
        // Wait for the first byte before Pingora sets up the connection's
        // request state (tens of KiB): a connection that never sends costs
        // little, and is closed at the header timeout.
        let first = tokio::time::Instant::now() + self.limits.header_timeout;
        let mut stopping = shutdown.clone();
        let mut one = [0u8; 1];
        let peeked = tokio::select! {
            p = tokio::time::timeout_at(first, stream.try_peek(&mut one)) => p,
            _ = stopping.changed() => return None,
        };
        match peeked {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return None,
            Err(_) => {
                self.metrics.header_timeouts.inc();
                log::info!(target: "fastproxy::access", "no request within {:?}: connection closed", self.limits.header_timeout);
                return None;
            }
        }
        let timed: Stream = Box::new(head_clock::HeadClock::new(
            stream,
            self.limits.header_timeout,
            first,
            self.metrics.header_timeouts.clone(),
        ));
        // HTTP/1 serves every request of the connection inside one call; a
        // stream handed back is served here too, so that it keeps its slot.
        let mut next = self.app.process_new(timed, shutdown).await;
        while let Some(stream) = next {
            next = self.app.process_new(stream, shutdown).await;
        }
        None
    }

    async fn cleanup(&self) {
        self.app.cleanup().await
    }
}

/// Answers a connection above the cap: reads what the client sends first (so
/// that closing does not reset the connection under its unread request),
/// answers 503 `too_many_connections` with `Connection: close`, and closes
/// once the client has read it. Bounded by [`REFUSAL_WAIT`] twice.
async fn refuse(mut stream: Stream, role: Role) {
    let mut scratch = [0u8; 4096];
    let _ = tokio::time::timeout(REFUSAL_WAIT, stream.read(&mut scratch)).await;
    log::info!(target: "fastproxy::access", "{} connection refused: max_connections reached", role.name());
    let answer = ProxyError::TooManyConnections.close_response(role);
    if stream.write_all(&answer).await.is_err() || stream.flush().await.is_err() {
        return;
    }
    let _ = stream.shutdown().await;
    // Wait for the client to close (or for the wait to end), discarding what
    // it still sends.
    let _ = tokio::time::timeout(REFUSAL_WAIT, async {
        while matches!(stream.read(&mut scratch).await, Ok(n) if n > 0) {}
    })
    .await;
}
