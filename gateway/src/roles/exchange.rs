//! The state every exchange carries through Pingora's hooks, whichever the
//! role, and the hook steps the two roles share: pick a peer, account a
//! failed attempt, classify the failure, record the finished request. Each
//! role's context holds one [`Exchange`] beside what is its own (the plan or
//! the accepted request, the body state).

use std::sync::Arc;
use std::time::Instant;

use pingora::proxy::Session;
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, Result};

use super::{Attempts, Failure, Known};
use crate::config::Name;
use crate::error::{ProxyError, Role};
use crate::metrics::Metrics;
use crate::pools::Pool;

/// Where a routed request goes: known once the role planned or accepted it.
struct Route {
    pool: Arc<Pool>,
    caller: Name,
    /// The deadline enforced here: the signed one or the pool's total
    /// timeout, whichever comes first.
    deadline_ms: Option<u64>,
}

/// One request's shared state.
pub struct Exchange {
    /// When the request arrived.
    pub started: Instant,
    /// Its caller and service, once known to be configured.
    pub known: Known,
    /// Its upstream attempts.
    pub attempts: Attempts,
    /// The error a hook decided, answered by `fail_to_proxy`.
    pub error: Option<ProxyError>,
    /// A gRPC call: its hops speak HTTP/2, whatever the pool's protocol,
    /// since only HTTP/2 carries its trailers across Pingora.
    pub grpc: bool,
    route: Option<Route>,
}

impl Default for Exchange {
    fn default() -> Self {
        Exchange {
            started: Instant::now(),
            known: Known::default(),
            attempts: Attempts::default(),
            error: None,
            grpc: false,
            route: None,
        }
    }
}

impl Exchange {
    /// The request is routed to `pool` for `caller`, under `deadline_ms`.
    pub fn route(&mut self, pool: Arc<Pool>, caller: Name, deadline_ms: Option<u64>) {
        self.route = Some(Route { pool, caller, deadline_ms });
    }

    /// The deadline enforced here, once routed.
    pub fn deadline_ms(&self) -> Option<u64> {
        self.route.as_ref().and_then(|r| r.deadline_ms)
    }

    /// Remembers `e` as the request's error; returns the Pingora error a
    /// hook must return.
    pub fn fail(&mut self, e: ProxyError) -> Box<Error> {
        super::fail(&mut self.error, e)
    }

    /// The peer of the next attempt (`upstream_peer`).
    pub fn next_peer(&mut self, session: &Session) -> Result<Box<HttpPeer>> {
        let Some(route) = &self.route else { return Err(self.fail(ProxyError::Internal)) };
        let key = super::hash_key(&route.pool, &session.req_header().headers, &route.caller);
        let (pool, deadline) = (route.pool.clone(), route.deadline_ms);
        self.attempts.next_peer(&pool, &key, deadline, self.grpc).map_err(|e| self.fail(e))
    }

    /// An attempt could not connect (`fail_to_connect`).
    pub fn connect_failed(&mut self, e: Box<Error>) -> Box<Error> {
        let deadline = self.deadline_ms();
        self.attempts.connect_failed(e, deadline)
    }

    /// An attempt failed after its request was sent (`error_while_proxy`);
    /// `replayable` when the role could send the request again.
    pub fn failed_after_send(
        &mut self,
        peer: &HttpPeer,
        session: &Session,
        e: Box<Error>,
        replayable: bool,
        client_reused: bool,
    ) -> Box<Error> {
        let e = e.more_context(format!("peer: {peer}"));
        let deadline = self.deadline_ms();
        let failure = Failure::new(session, self.error.as_ref(), replayable, client_reused);
        self.attempts.failed_after_send(e, failure, deadline)
    }

    /// The error the caller sees for Pingora's `e` (`fail_to_proxy`),
    /// remembered for the access log; `None` when nobody is left to answer.
    pub fn classify(&mut self, e: &Error) -> Option<ProxyError> {
        let err = crate::error::classify(self.error.as_ref(), e, self.deadline_ms(), crate::http_util::now_ms());
        if self.error.is_none() {
            self.error = err.clone();
        }
        err
    }

    /// Records the finished request (`logging`).
    pub fn finish(&self, role: Role, session: &Session, metrics: &Metrics) {
        super::finish(role, session, self.known.labels(), self.started, &self.attempts, self.error.as_ref(), metrics);
    }
}
