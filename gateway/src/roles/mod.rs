//! The two `ProxyHttp` roles and what they share: upstream attempts, failure
//! classification, error responses, access logs.

pub mod inbound;
pub mod outbound;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use pingora::proxy::{FailToProxy, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorSource, ErrorType};

use crate::error::{self, ProxyError, Role};
use crate::http::now_ms;
use crate::pools::Pool;

/// Upstream attempts of one request.
#[derive(Debug, Default)]
pub struct Attempts {
    /// Attempts started.
    pub tries: u32,
    /// Backends that failed to connect during this request.
    pub failed: Vec<SocketAddr>,
    /// The backend of the current attempt.
    pub current: Option<SocketAddr>,
}

impl Attempts {
    /// Picks a backend for the next attempt and builds its peer; the read
    /// timeout is capped at what remains of the deadline.
    pub fn next_peer(&mut self, pool: &Pool, deadline_ms: Option<u64>) -> Result<Box<HttpPeer>, ProxyError> {
        let remaining = match deadline_ms {
            Some(d) => match d.checked_sub(now_ms()) {
                Some(ms) if ms > 0 => Some(Duration::from_millis(ms)),
                _ => return Err(ProxyError::DeadlineExceeded),
            },
            None => None,
        };
        let addr = pool.select(&self.failed).ok_or(ProxyError::NoHealthyUpstream)?;
        self.tries += 1;
        self.current = Some(addr);
        Ok(Box::new(pool.peer(addr, remaining)))
    }

    /// A connect failure: nothing was sent, so any method may be retried on
    /// another backend while one is left.
    pub fn connect_failed(&mut self, pool_len: usize, mut e: Box<Error>) -> Box<Error> {
        if let Some(addr) = self.current {
            self.failed.push(addr);
        }
        e.set_retry(self.failed.len() < pool_len);
        e
    }
}

/// Remembers `e` for `fail_to_proxy` and the access log, and returns the
/// Pingora error a hook must return.
pub fn fail(slot: &mut Option<ProxyError>, e: ProxyError) -> Box<Error> {
    let pe = error::to_pingora(&e);
    *slot = Some(e);
    pe
}

/// Maps a Pingora failure to the error the caller sees. `decided` is the
/// error a hook already chose, if any.
pub fn classify(decided: Option<&ProxyError>, e: &Error, deadline_ms: Option<u64>) -> Option<ProxyError> {
    if let Some(d) = decided {
        return Some(d.clone());
    }
    if deadline_ms.is_some_and(|d| now_ms() >= d) && e.esource() == &ErrorSource::Upstream {
        return Some(ProxyError::DeadlineExceeded);
    }
    Some(match e.etype() {
        ErrorType::ConnectTimedout
        | ErrorType::ConnectRefused
        | ErrorType::ConnectNoRoute
        | ErrorType::ConnectError
        | ErrorType::TLSHandshakeFailure
        | ErrorType::TLSHandshakeTimedout
        | ErrorType::HandshakeError => ProxyError::UpstreamFailed,
        ErrorType::ReadTimedout | ErrorType::WriteTimedout => ProxyError::UpstreamTimeout,
        _ => match e.esource() {
            ErrorSource::Upstream => ProxyError::UpstreamFailed,
            // The client went away or sent garbage: nobody to answer.
            ErrorSource::Downstream => match e.etype() {
                ErrorType::ReadError | ErrorType::WriteError | ErrorType::ConnectionClosed => return None,
                _ => ProxyError::BadRequest("malformed request"),
            },
            _ => ProxyError::Internal,
        },
    })
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
    if let Err(e) = error::respond(session, role, &err).await {
        log::debug!("{}: could not send error response: {e}", role.name());
    }
    FailToProxy { error_code: err.status(), can_reuse_downstream: false }
}

/// Writes one access-log line (target `fastproxy::access`): never a body,
/// a secret, or a query string.
#[allow(clippy::too_many_arguments)]
pub fn access_log(
    role: Role,
    session: &Session,
    caller: &str,
    service: &str,
    started: Instant,
    attempts: &Attempts,
    error: Option<&ProxyError>,
) {
    if !log::log_enabled!(target: "fastproxy::access", log::Level::Info) {
        return;
    }
    let req = session.req_header();
    let status = session.response_written().map_or(0, |r| r.status.as_u16());
    let upstream = attempts.current.map(|a| a.to_string());
    log::info!(
        target: "fastproxy::access",
        "role={} caller={} service={} method={} path={} status={} ms={} tries={} upstream={} error={}",
        role.name(),
        if caller.is_empty() { "-" } else { caller },
        if service.is_empty() { "-" } else { service },
        req.method,
        req.uri.path(),
        status,
        started.elapsed().as_millis(),
        attempts.tries,
        upstream.as_deref().unwrap_or("-"),
        error.map_or("-", |e| e.code()),
    );
}
