//! Upstream pools: a named set of backends and how to reach them.
//!
//! Selection is Pingora's load balancer (round robin over the backends); a
//! backend that refused a connection is skipped for the rest of the request's
//! attempts.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use pingora::lb::{selection::RoundRobin, LoadBalancer};
use pingora::upstreams::peer::HttpPeer;

use crate::config::Upstream;

/// One pool.
pub struct Pool {
    settings: Upstream,
    lb: LoadBalancer<RoundRobin>,
}

impl Pool {
    /// Builds a pool from its settings.
    pub fn new(settings: &Upstream) -> std::io::Result<Self> {
        let lb = LoadBalancer::try_from_iter(settings.backends.iter().map(|a| a.to_string()))?;
        Ok(Pool { settings: settings.clone(), lb })
    }

    /// Number of backends.
    pub fn len(&self) -> usize {
        self.settings.backends.len()
    }

    /// Picks the next backend, skipping `exclude`.
    pub fn select(&self, exclude: &[SocketAddr]) -> Option<SocketAddr> {
        let backend = self.lb.select_with(b"", self.len() * 2 + 1, |b, healthy| {
            healthy && b.addr.as_inet().is_some_and(|a| !exclude.contains(a))
        })?;
        backend.addr.as_inet().copied()
    }

    /// A peer for `addr` with this pool's timeouts; `read_cap` shortens the
    /// read timeout (the caller's remaining deadline).
    pub fn peer(&self, addr: SocketAddr, read_cap: Option<std::time::Duration>) -> HttpPeer {
        let mut peer = HttpPeer::new(addr, false, String::new());
        let s = &self.settings;
        peer.options.connection_timeout = Some(s.connect_timeout);
        let read = read_cap.map_or(s.read_timeout, |cap| cap.min(s.read_timeout));
        peer.options.read_timeout = Some(read);
        peer.options.write_timeout = Some(s.write_timeout.min(read.max(s.connect_timeout)));
        peer.options.idle_timeout = Some(s.idle_timeout);
        peer
    }
}

/// Every pool, by name.
#[derive(Default)]
pub struct Pools {
    by_name: BTreeMap<String, Arc<Pool>>,
}

impl Pools {
    /// Builds every configured pool.
    pub fn build(upstreams: &BTreeMap<String, Upstream>) -> std::io::Result<Self> {
        let mut by_name = BTreeMap::new();
        for (name, settings) in upstreams {
            by_name.insert(name.clone(), Arc::new(Pool::new(settings)?));
        }
        Ok(Pools { by_name })
    }

    /// The pool named `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Pool>> {
        self.by_name.get(name)
    }
}
