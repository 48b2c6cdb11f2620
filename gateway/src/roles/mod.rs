//! The two `ProxyHttp` roles and what they share: upstream attempts, failure
//! classification, error responses, access logs.

mod exchange;
pub mod headers_end;
pub mod inbound;
pub mod outbound;
pub mod refuse;
pub mod trailers;

pub use exchange::Exchange;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pingora::proxy::{FailToProxy, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorSource, ErrorType};

use crate::config::{HashKey, Name};
use crate::error::{self, ProxyError, Role};
use crate::http_util::now_ms;
use crate::listener::head_clock;
use crate::metrics::{Metrics, RequestRecord};
use crate::pools::{InFlight, Outcome, Pool};

/// Log target showing what crosses the wire (debug level): protocol headers
/// and the first bytes of sealed bodies. Never plaintext, never keys.
pub const WIRE: &str = "fastproxy::wire";

/// The first 48 bytes of a sealed body, in hex, for the wire log.
pub(crate) fn hex_prefix(data: &[u8]) -> String {
    let shown = &data[..data.len().min(48)];
    let more = if data.len() > shown.len() { "…" } else { "" };
    format!("{}{more}", filters::hex::encode(shown))
}

/// How a message is protected, from its encryption key and algorithm (none:
/// sign-only). One place for the sealing of requests, responses and signed
/// refusals.
pub fn protection<K: AsRef<str>>(aead: &Option<(K, filters::Algorithm)>) -> filters::Protection<'_> {
    match aead {
        Some((key, alg)) => filters::Protection::Encrypt { alg: *alg, key: key.as_ref() },
        None => filters::Protection::SignOnly,
    }
}

/// True when `e` says the peer refused an HTTP/2 stream before processing
/// it: a graceful GOAWAY that left the stream out (its id above the last one
/// the peer processed), or `RST_STREAM` with `REFUSED_STREAM` (RFC 9113
/// §8.7). Such a request may go again, whatever its method: this is how an
/// inbound proxy that is being upgraded turns away the streams it will not
/// serve.
pub fn unprocessed(e: &Error) -> bool {
    let Some(h2) = e.root_cause().downcast_ref::<h2::Error>() else { return false };
    h2.is_remote()
        && ((h2.is_go_away() && h2.reason() == Some(h2::Reason::NO_ERROR))
            || (h2.is_reset() && h2.reason() == Some(h2::Reason::REFUSED_STREAM)))
}

/// Upstream attempts of one request: which backends were tried, the pool's
/// in-flight slot, and the retry decisions (attempt limit, deadline, budget,
/// replayability).
#[derive(Default)]
pub struct Attempts {
    /// Attempts started.
    pub tries: u32,
    /// Retries granted.
    pub retries: u32,
    /// Backends that failed during this request.
    pub failed: Vec<SocketAddr>,
    /// The backend of the current attempt.
    pub current: Option<SocketAddr>,
    pool: Option<Arc<Pool>>,
    _inflight: Option<InFlight>,
    /// When the first attempt started, and how long until a response header.
    upstream_started: Option<Instant>,
    upstream_time: Option<Duration>,
}

impl Attempts {
    /// Picks a backend for the next attempt and builds its peer (HTTP/2 when
    /// `h2`, else as the pool says); the read timeout is capped at what
    /// remains of the deadline.
    pub fn next_peer(
        &mut self,
        pool: &Arc<Pool>,
        key: &[u8],
        deadline_ms: Option<u64>,
        h2: bool,
    ) -> Result<Box<HttpPeer>, ProxyError> {
        let remaining = remaining(deadline_ms)?;
        if self.pool.is_none() {
            self._inflight = Some(pool.admit().ok_or(ProxyError::PoolOverloaded)?);
            self.pool = Some(pool.clone());
            self.upstream_started = Some(Instant::now());
        }
        let addr = pool.select(key, &self.failed).ok_or(ProxyError::NoHealthyUpstream)?;
        self.tries += 1;
        self.current = Some(addr);
        Ok(Box::new(pool.peer(addr, remaining, h2)))
    }

    /// A connect failure: nothing was sent, so any method may be retried on
    /// another backend, within the attempt limit, deadline and budget.
    pub fn connect_failed(&mut self, mut e: Box<Error>, deadline_ms: Option<u64>) -> Box<Error> {
        let retry = self.blame(true) && self.may_retry(deadline_ms);
        e.set_retry(retry);
        e
    }

    /// A failure after the request was (partly) sent. Retried only when the
    /// caller says it is safe (`replayable`: idempotent method, body still
    /// available) and limits allow. A dropped pooled connection says little
    /// about the backend (idle timeout, restart), so it is not held against
    /// it; otherwise the backend is avoided for the retry unless it is the
    /// only one (a restarting single backend, e.g. during an upgrade, is
    /// worth a second try).
    ///
    /// A failure that comes from the downstream side (`decided` is a request
    /// error a hook chose, or Pingora blames the downstream: a bad record,
    /// truncation, a length mismatch, a client that went away) is neither
    /// retried nor held against the backend: otherwise anyone able to send a
    /// bad body could multiply requests and eject healthy backends. Nor is
    /// an unverified refusal, which another attempt would only repeat. Nor is
    /// anything retried once the response has started downstream: a second
    /// attempt's bytes would be appended to the first's.
    pub fn failed_after_send(
        &mut self,
        mut e: Box<Error>,
        failure: Failure<'_>,
        deadline_ms: Option<u64>,
    ) -> Box<Error> {
        let Failure { decided, replayable, reused, response_started } = failure;
        let downstream = e.esource() == &ErrorSource::Downstream || decided.is_some_and(ProxyError::is_final);
        if downstream || response_started {
            if !downstream {
                self.blame(false);
            }
            e.set_retry(false);
            return e;
        }
        let timed_out = matches!(e.etype(), ErrorType::ReadTimedout | ErrorType::WriteTimedout);
        if !reused || timed_out {
            self.blame(false);
        }
        let attempts_left = self.tries < self.pool.as_ref().map_or(0, |p| p.max_attempts());
        let retry = attempts_left && replayable && self.may_retry(deadline_ms);
        e.set_retry(retry);
        e
    }

    /// The backend answered with `status`.
    pub fn responded(&mut self, status: u16) {
        self.upstream_time = self.upstream_started.map(|t| t.elapsed());
        if let (Some(pool), Some(addr)) = (&self.pool, self.current) {
            let outcome = if pool.is_failure_status(status) { Outcome::Failure } else { Outcome::Success };
            pool.report(addr, outcome);
        }
    }

    /// Records a failed attempt against the current backend and excludes it
    /// from this request's next attempts (the last one left only when
    /// `exclude_last`); true when another backend remains.
    fn blame(&mut self, exclude_last: bool) -> bool {
        let (Some(pool), Some(addr)) = (&self.pool, self.current) else { return false };
        pool.report(addr, Outcome::Failure);
        let others_left = self.failed.len() + 1 < pool.backend_count();
        if !self.failed.contains(&addr) && (exclude_last || others_left) {
            self.failed.push(addr);
        }
        others_left && self.tries < pool.max_attempts()
    }

    fn may_retry(&mut self, deadline_ms: Option<u64>) -> bool {
        let in_time = deadline_ms.is_none_or(|d| now_ms() < d);
        let granted = in_time && self.pool.as_ref().is_some_and(|p| p.try_retry());
        if granted {
            self.retries += 1;
        }
        granted
    }
}

/// What `error_while_proxy` knows about a failed attempt.
pub struct Failure<'a> {
    /// The error a hook of this proxy already chose, if any.
    pub decided: Option<&'a ProxyError>,
    /// Safe to send again: idempotent method, body still available.
    pub replayable: bool,
    /// The attempt used a pooled connection.
    pub reused: bool,
    /// Response bytes already went downstream.
    pub response_started: bool,
}

impl<'a> Failure<'a> {
    /// A failed attempt of `session`'s request; `decided` is the error a hook
    /// of this proxy already chose.
    pub fn new(session: &Session, decided: Option<&'a ProxyError>, replayable: bool, reused: bool) -> Self {
        Failure { decided, replayable, reused, response_started: session.response_written().is_some() }
    }
}

fn remaining(deadline_ms: Option<u64>) -> Result<Option<Duration>, ProxyError> {
    match deadline_ms {
        Some(d) => match d.checked_sub(now_ms()) {
            Some(ms) if ms > 0 => Ok(Some(Duration::from_millis(ms))),
            _ => Err(ProxyError::DeadlineExceeded),
        },
        None => Ok(None),
    }
}

/// Sets a downstream connection's timeouts for this request: `idle_s` for
/// the wait for the next request (none while draining: the connection closes
/// after this answer), `body` for each wait for request body bytes; the
/// head is in, so the head clock stops.
pub fn connection_timeouts(session: &mut Session, draining: bool, idle_s: u64, body: Duration) {
    head_clock::head_received(session);
    session.set_keepalive((!draining).then_some(idle_s));
    session.as_mut().set_read_timeout(Some(body));
}

/// Fails a response body still arriving after `deadline_ms`: the deadline
/// covers the whole exchange, body included (a stalled body is cut earlier,
/// by the read timeout, which is capped at what was left of the deadline).
pub fn check_body_deadline(slot: &mut Option<ProxyError>, deadline_ms: Option<u64>, end: bool) -> pingora::Result<()> {
    if !end && deadline_ms.is_some_and(|d| now_ms() > d) {
        log::info!(target: "fastproxy::access", "response body cut at the deadline");
        return Err(fail(slot, ProxyError::DeadlineExceeded));
    }
    Ok(())
}

/// The earlier of the signed deadline and the pool's total timeout.
pub fn effective_deadline(signed: Option<u64>, pool: &Pool, started_ms: u64) -> Option<u64> {
    let total = pool.total_timeout().map(|t| started_ms.saturating_add(t.as_millis() as u64));
    match (signed, total) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The consistent-hashing key of a request: the caller, or a header.
pub fn hash_key(pool: &Pool, headers: &::http::HeaderMap, caller: &str) -> Vec<u8> {
    match pool.hash_key() {
        None => Vec::new(),
        Some(HashKey::Caller) => caller.as_bytes().to_vec(),
        Some(HashKey::Header(name)) => headers.get(name.as_str()).map_or_else(Vec::new, |v| v.as_bytes().to_vec()),
    }
}

/// Remembers `e` for `fail_to_proxy` and the access log, and returns the
/// Pingora error a hook must return.
pub fn fail(slot: &mut Option<ProxyError>, e: ProxyError) -> Box<Error> {
    let pe = error::to_pingora(&e);
    *slot = Some(e);
    pe
}

/// The shared `fail_to_proxy`: answers with the JSON error unless a response
/// already started (then the connection is simply closed).
pub async fn fail_to_proxy(session: &mut Session, role: Role, err: Option<ProxyError>) -> FailToProxy {
    let Some(err) = err else {
        return FailToProxy { error_code: 0, can_reuse_downstream: false };
    };
    if session.response_written().is_some() {
        return FailToProxy { error_code: err.status(), can_reuse_downstream: false };
    }
    // The connection closes after this answer: it says so.
    session.set_keepalive(None);
    if let Err(e) = error::respond(session, role, &err).await {
        log::debug!("{}: could not send error response: {e}", role.name());
    }
    FailToProxy { error_code: err.status(), can_reuse_downstream: false }
}

/// What a finished request is labelled with: configured names only.
pub struct Labels<'a> {
    /// Configured caller, or `unknown`.
    pub caller: &'a str,
    /// Configured service, or `unknown`.
    pub service: &'a str,
}

/// The caller and service of a request, recorded once they are known to be
/// configured (and, at the inbound proxy, the caller once its signature
/// verified): request values never become metric labels.
#[derive(Debug, Default)]
pub struct Known {
    /// The caller.
    pub caller: Option<Name>,
    /// The callee service.
    pub service: Option<Name>,
}

impl Known {
    /// Labels for logs and metrics.
    pub fn labels(&self) -> Labels<'_> {
        Labels {
            caller: self.caller.as_deref().unwrap_or("unknown"),
            service: self.service.as_deref().unwrap_or("unknown"),
        }
    }
}

/// Records a finished request: one access-log line (target
/// `fastproxy::access`; never a body, a secret, or a query string) and its
/// metrics; the next request's head clock starts at its first byte.
pub fn finish(
    role: Role,
    session: &Session,
    labels: Labels<'_>,
    started: Instant,
    attempts: &Attempts,
    error: Option<&ProxyError>,
    metrics: &Metrics,
) {
    head_clock::request_done(session);
    let status = session.response_written().map_or(0, |r| r.status.as_u16());
    let (bytes_in, bytes_out) = (session.body_bytes_read() as u64, session.body_bytes_sent() as u64);
    let total = started.elapsed();
    metrics.request(&RequestRecord {
        role,
        caller: labels.caller,
        service: labels.service,
        status,
        error: error.map(ProxyError::code),
        total,
        upstream: attempts.upstream_time,
        bytes_in,
        bytes_out,
    });
    if !log::log_enabled!(target: "fastproxy::access", log::Level::Info) {
        return;
    }
    let req = session.req_header();
    let upstream = attempts.current.map(|a| a.to_string());
    log::info!(
        target: "fastproxy::access",
        "role={} caller={} service={} method={} path={} status={} ms={} upstream_ms={} in={} out={} tries={} retries={} upstream={} error={}",
        role.name(),
        labels.caller,
        labels.service,
        req.method,
        req.uri.path(),
        status,
        total.as_millis(),
        attempts.upstream_time.map_or(-1, |d| d.as_millis() as i64),
        bytes_in,
        bytes_out,
        attempts.tries,
        attempts.retries,
        upstream.as_deref().unwrap_or("-"),
        error.map_or("-", |e| e.code()),
    );
}
