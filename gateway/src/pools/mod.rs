//! Upstream pools: weighted backends behind Pingora's load balancer, with
//! active health checks, passive outlier ejection, a retry budget and an
//! in-flight limit. Both roles use them: the outbound proxy for a callee's
//! inbound proxies, the inbound proxy for the callee's instances.
//!
//! - `select`: the algorithm (round robin, random, Ketama) over Pingora's LB;
//! - `health`: TCP/HTTP probes, run by one background service
//!   ([`HealthDriver`]) for whatever pools the current generation holds;
//! - `outlier`: per-backend ejection with exponential backoff, half-open;
//! - `budget`: retries as a share of requests over a 10 s window.

mod budget;
mod health;
mod outlier;
pub mod resolve;
mod select;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pingora::upstreams::peer::HttpPeer;

use crate::config::{HashKey, RetryPolicy, Selection, Upstream};
use crate::metrics::{Metrics, PoolMetrics};
use budget::RetryBudget;
use outlier::{Outlier, Transition};
use select::Selector;

/// How an attempt on a backend ended, for ejection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A response that is not a failure status.
    Success,
    /// Connect error, reset, timeout, or a failure status.
    Failure,
}

struct Member {
    addr: SocketAddr,
    weight: u32,
    outlier: Outlier,
}

/// A pool's current backends, swapped whole when its names resolve anew.
type MemberList = Arc<arc_swap::ArcSwap<Vec<Arc<Member>>>>;

/// One pool.
pub struct Pool {
    name: String,
    settings: Upstream,
    selector: Selector,
    members: MemberList,
    resolver: Arc<dyn resolve::Resolve>,
    /// The last good answer for each host name.
    resolved: std::sync::Mutex<BTreeMap<(String, u16), Vec<SocketAddr>>>,
    /// The members a registry gave (`discovery` pools).
    discovered: std::sync::Mutex<Vec<(SocketAddr, u32)>>,
    /// Serialises changes of the member list.
    applying: tokio::sync::Mutex<()>,
    /// TLS to the backends, when configured.
    tls: Option<crate::tls::PoolTls>,
    /// When the names are next resolved, and whether that is running.
    next_resolve: std::sync::Mutex<Instant>,
    resolving: std::sync::atomic::AtomicBool,
    budget: RetryBudget,
    inflight: AtomicUsize,
    metrics: PoolMetrics,
    /// When the next health check is due (at once for a new pool).
    next_check: std::sync::Mutex<Instant>,
    /// A health check is running.
    checking: std::sync::atomic::AtomicBool,
}

/// Holds one request's place in a pool's in-flight count.
pub struct InFlight(Arc<Pool>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::Relaxed);
        self.0.metrics.inflight.dec();
    }
}

impl Pool {
    /// Builds a pool; its health checks are run by the [`HealthDriver`], the
    /// first one at once. Host names are resolved now (through the system's
    /// resolver), then every `resolve_interval`.
    pub fn new(name: &str, settings: &Upstream, metrics: PoolMetrics) -> std::io::Result<Self> {
        Self::with_resolver(name, settings, metrics, Arc::new(resolve::System))
    }

    /// [`Pool::new`] with another resolver.
    pub fn with_resolver(
        name: &str,
        settings: &Upstream,
        metrics: PoolMetrics,
        resolver: Arc<dyn resolve::Resolve>,
    ) -> std::io::Result<Self> {
        let resolved = resolve_names(name, &settings.names, &*resolver, &BTreeMap::new());
        // A discovered pool starts with what the registry (or its cache)
        // last said.
        let discovered = settings
            .discovery
            .as_ref()
            .and_then(|r| crate::membership::directory().feed(r).listing())
            .map(|l| l.backends())
            .unwrap_or_default();
        let backends = backend_list(settings, &resolved, &discovered);
        let members: MemberList = Arc::new(arc_swap::ArcSwap::from_pointee(
            backends
                .iter()
                .map(|(addr, weight)| Arc::new(Member { addr: *addr, weight: *weight, outlier: Outlier::default() }))
                .collect(),
        ));
        let tls = settings.tls.as_ref().map(crate::tls::PoolTls::new);
        let selector = Selector::new(settings, &backends, |lb| {
            if let Some(h) = &settings.health {
                let (members, pool, metrics) = (members.clone(), name.to_owned(), metrics.clone());
                let on_change: health::OnChange = Box::new(move |addr, healthy| {
                    metrics.set_healthy(&addr.to_string(), healthy);
                    let cleared = healthy && members.load().iter().any(|m| m.addr == addr && m.outlier.clear());
                    if cleared {
                        metrics.set_ejected(&addr.to_string(), false);
                        log::info!(target: "fastproxy::pool", "pool {pool}: backend {addr} readmitted by health check");
                    }
                });
                lb.set_check(health::build(name, h, tls.as_ref(), on_change), h.interval);
            }
        })?;
        let RetryPolicy { budget_ratio, budget_min, .. } = settings.retry;
        for (addr, _) in &backends {
            metrics.set_healthy(&addr.to_string(), true);
            metrics.set_ejected(&addr.to_string(), false);
        }
        Ok(Pool {
            metrics,
            name: name.to_owned(),
            settings: settings.clone(),
            selector,
            members,
            resolver,
            resolved: std::sync::Mutex::new(resolved),
            discovered: std::sync::Mutex::new(discovered),
            applying: tokio::sync::Mutex::new(()),
            tls,
            next_resolve: std::sync::Mutex::new(Instant::now() + settings.resolve_interval),
            resolving: std::sync::atomic::AtomicBool::new(false),
            budget: RetryBudget::new(budget_ratio, budget_min),
            inflight: AtomicUsize::new(0),
            next_check: std::sync::Mutex::new(Instant::now()),
            checking: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Claims the resolution of the pool's host names if it is due at
    /// `now` (none without names).
    fn claim_resolve(&self, now: Instant) -> bool {
        if self.settings.names.is_empty() {
            return false;
        }
        let Ok(mut next) = self.next_resolve.lock() else { return false };
        if *next > now || self.resolving.swap(true, Ordering::AcqRel) {
            return false;
        }
        *next = now + self.settings.resolve_interval;
        true
    }

    /// Resolves the host names again (off the async workers) and, when the
    /// answer changed, balances over the new set: backends kept keep their
    /// health, ejection and in-flight state. A name that does not resolve
    /// keeps its last good answer.
    pub async fn refresh_names(self: Arc<Self>) {
        let pool = self.clone();
        let done = tokio::task::spawn_blocking(move || {
            let last = pool.resolved.lock().map(|m| m.clone()).unwrap_or_default();
            resolve_names(&pool.name, &pool.settings.names, &*pool.resolver, &last)
        })
        .await;
        if let Ok(resolved) = done {
            self.apply_resolved(resolved).await;
        }
        self.resolving.store(false, Ordering::Release);
    }

    /// Makes `resolved` the pool's answer for its names.
    async fn apply_resolved(&self, resolved: BTreeMap<(String, u16), Vec<SocketAddr>>) {
        let _one = self.applying.lock().await;
        if let Ok(mut last) = self.resolved.lock() {
            *last = resolved;
        }
        self.apply().await;
    }

    /// Makes `members` (from a registry) the pool's discovered backends;
    /// those kept keep their health, ejection and in-flight state.
    pub async fn set_discovered(&self, members: Vec<(SocketAddr, u32)>) {
        let _one = self.applying.lock().await;
        if let Ok(mut d) = self.discovered.lock() {
            *d = members;
        }
        self.apply().await;
    }

    /// The members a registry gave the pool last.
    pub fn discovered_members(&self) -> Vec<(SocketAddr, u32)> {
        self.discovered.lock().map(|d| d.clone()).unwrap_or_default()
    }

    /// Where the pool's backends come from, when a registry gives them.
    pub fn discovery(&self) -> Option<&crate::config::registry::DiscoveryRef> {
        self.settings.discovery.as_ref()
    }

    /// Balances over the addresses, names and discovered members as they
    /// are now, when that changes the backends.
    async fn apply(&self) {
        let resolved = self.resolved.lock().map(|m| m.clone()).unwrap_or_default();
        let discovered = self.discovered.lock().map(|d| d.clone()).unwrap_or_default();
        let backends = backend_list(&self.settings, &resolved, &discovered);
        let current = self.members.load_full();
        let same = current.len() == backends.len()
            && current.iter().zip(&backends).all(|(m, (a, w))| m.addr == *a && m.weight == *w);
        if same {
            return;
        }
        let next: Vec<Arc<Member>> = backends
            .iter()
            .map(|(addr, weight)| match current.iter().find(|m| m.addr == *addr && m.weight == *weight) {
                Some(m) => m.clone(),
                None => Arc::new(Member { addr: *addr, weight: *weight, outlier: Outlier::default() }),
            })
            .collect();
        for (addr, _) in backends.iter().filter(|(a, _)| !current.iter().any(|m| m.addr == *a)) {
            self.metrics.set_healthy(&addr.to_string(), true);
            self.metrics.set_ejected(&addr.to_string(), false);
        }
        self.members.store(Arc::new(next));
        match self.selector.set_backends(&backends).await {
            Ok(()) => log::info!(
                target: "fastproxy::pool",
                "pool {}: backends now {:?}",
                self.name,
                backends.iter().map(|(a, _)| a.to_string()).collect::<Vec<_>>()
            ),
            Err(e) => log::warn!(target: "fastproxy::pool", "pool {}: cannot take the new backends: {e}", self.name),
        }
    }

    /// Claims the pool's health check if one is due at `now`, scheduling the
    /// next one interval later; false when none is due (or none configured).
    fn claim_health_check(&self, now: Instant) -> bool {
        let Some(h) = &self.settings.health else { return false };
        let Ok(mut next) = self.next_check.lock() else { return false };
        if *next > now || self.checking.swap(true, Ordering::AcqRel) {
            return false;
        }
        *next = now + h.interval;
        true
    }

    /// Runs the health check claimed by [`Pool::claim_health_check`].
    async fn run_health_check(&self) {
        self.selector.run_health_check().await;
        self.checking.store(false, Ordering::Release);
    }

    /// Admits a new request: counts it for the retry budget and the
    /// in-flight limit. `None` when the pool is at its limit.
    pub fn admit(self: &Arc<Self>) -> Option<InFlight> {
        let now = self.inflight.fetch_add(1, Ordering::Relaxed) + 1;
        self.metrics.inflight.inc();
        let guard = InFlight(self.clone());
        if self.settings.max_inflight.is_some_and(|max| now > max) {
            return None;
        }
        self.budget.request();
        Some(guard)
    }

    /// What consistent hashing keys on, if it is used.
    pub fn hash_key(&self) -> Option<&HashKey> {
        match &self.settings.selection {
            Selection::Consistent(k) => Some(k),
            _ => None,
        }
    }

    /// Picks a backend for `key`: healthy, not ejected, not in `exclude`.
    pub fn select(&self, key: &[u8], exclude: &[SocketAddr]) -> Option<SocketAddr> {
        let now = Instant::now();
        let members = self.members.load();
        let max_iter = members.iter().map(|m| m.weight as usize).sum::<usize>() + 1;
        let backend = self.selector.select(key, max_iter, |b| {
            let Some(addr) = b.addr.as_inet() else { return false };
            !exclude.contains(addr) && members.iter().find(|m| m.addr == *addr).is_none_or(|m| m.outlier.available(now))
        })?;
        backend.addr.as_inet().copied()
    }

    /// True when some backend could take a request now.
    pub fn has_available(&self) -> bool {
        self.select(b"", &[]).is_some()
    }

    /// A peer for `addr` with this pool's timeouts; the read timeout is capped
    /// at `remaining` (what is left of the request's deadline). It speaks
    /// HTTP/2 when the pool does or `h2` asks for it (a request that needs
    /// trailers), else HTTP/1.1.
    pub fn peer(&self, addr: SocketAddr, remaining: Option<Duration>, h2: bool) -> HttpPeer {
        let mut peer = HttpPeer::new(addr, false, String::new());
        let s = &self.settings;
        if h2 || s.protocol == crate::config::Protocol::H2 {
            // HTTP/2 only: ALPN h2 over TLS, h2c prior knowledge in the clear.
            peer.options.set_http_version(2, 2);
            peer.options.max_h2_streams = s.max_h2_streams;
            peer.options.h2_stream_window_size = Some(crate::http_util::H2_STREAM_WINDOW);
            peer.options.h2_connection_window_size = Some(crate::http_util::H2_CONNECTION_WINDOW);
        }
        let read = remaining.map_or(s.read_timeout, |cap| cap.min(s.read_timeout));
        peer.options.connection_timeout = Some(s.connect_timeout.min(read));
        peer.options.read_timeout = Some(read);
        peer.options.write_timeout = Some(s.write_timeout.min(read.max(s.connect_timeout)));
        peer.options.idle_timeout = Some(s.idle_timeout);
        if let Some(tls) = &self.tls {
            tls.apply(&mut peer);
        }
        peer
    }

    /// The pool's total timeout, if set.
    pub fn total_timeout(&self) -> Option<Duration> {
        self.settings.total_timeout
    }

    /// Most attempts per request.
    pub fn max_attempts(&self) -> u32 {
        self.settings.retry.attempts
    }

    /// Backends in the pool.
    pub fn backend_count(&self) -> usize {
        self.members.load().len()
    }

    /// Takes a retry from the budget.
    pub fn try_retry(&self) -> bool {
        let ok = self.budget.try_retry();
        if ok {
            self.metrics.retries.inc();
        } else {
            log::debug!(target: "fastproxy::pool", "pool {}: retry budget exhausted", self.name);
        }
        ok
    }

    /// True when `status` from a backend counts as a failure for ejection.
    pub fn is_failure_status(&self, status: u16) -> bool {
        self.settings.outlier.as_ref().is_some_and(|o| o.statuses.contains(&status))
    }

    /// Records how an attempt on `addr` ended.
    pub fn report(&self, addr: SocketAddr, outcome: Outcome) {
        let members = self.members.load();
        let (Some(policy), Some(member)) = (&self.settings.outlier, members.iter().find(|m| m.addr == addr)) else {
            return;
        };
        let now = Instant::now();
        let transition = match outcome {
            Outcome::Success => member.outlier.success(),
            Outcome::Failure => {
                let ejected = members.iter().filter(|m| m.outlier.is_ejected(now)).count();
                let may_eject = (ejected + 1) * 100 <= members.len() * policy.max_ejected_percent as usize;
                member.outlier.failure(policy, may_eject, now)
            }
        };
        match transition {
            Transition::None => {}
            Transition::Ejected(time) => {
                self.metrics.ejections.inc();
                self.metrics.set_ejected(&addr.to_string(), true);
                log::info!(target: "fastproxy::pool", "pool {}: backend {addr} ejected for {time:?}", self.name)
            }
            Transition::Readmitted => {
                self.metrics.set_ejected(&addr.to_string(), false);
                log::info!(target: "fastproxy::pool", "pool {}: backend {addr} readmitted", self.name)
            }
        }
    }
}

/// Resolves `names`, keeping `last`'s answer for a name that fails now.
fn resolve_names(
    pool: &str,
    names: &[(String, u16, u32)],
    resolver: &dyn resolve::Resolve,
    last: &BTreeMap<(String, u16), Vec<SocketAddr>>,
) -> BTreeMap<(String, u16), Vec<SocketAddr>> {
    let mut out = BTreeMap::new();
    for (host, port, _) in names {
        let key = (host.clone(), *port);
        match resolver.resolve(host, *port) {
            Ok(addrs) => {
                out.insert(key, addrs);
            }
            Err(e) => {
                let kept = last.get(&key).cloned().unwrap_or_default();
                log::warn!(target: "fastproxy::pool", "pool {pool}: {host} does not resolve ({e}): keeping its last answer {kept:?}");
                out.insert(key, kept);
            }
        }
    }
    out
}

/// The pool's backends: its addresses, the discovered members, then each
/// name's, in order, each address once (a name's weight applies to each of
/// its addresses).
fn backend_list(
    settings: &Upstream,
    resolved: &BTreeMap<(String, u16), Vec<SocketAddr>>,
    discovered: &[(SocketAddr, u32)],
) -> Vec<(SocketAddr, u32)> {
    let mut out: Vec<(SocketAddr, u32)> = settings.backends.clone();
    for (addr, weight) in discovered {
        if !out.iter().any(|(a, _)| a == addr) {
            out.push((*addr, *weight));
        }
    }
    for (host, port, weight) in &settings.names {
        for addr in resolved.get(&(host.clone(), *port)).into_iter().flatten() {
            if !out.iter().any(|(a, _)| a == addr) {
                out.push((*addr, *weight));
            }
        }
    }
    out
}

/// Every pool, by name.
#[derive(Default)]
pub struct Pools {
    by_name: BTreeMap<String, Arc<Pool>>,
}

/// What a reconciliation did, pool by pool (for the reload's log line).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Pools kept as they were, with their state.
    pub kept: Vec<String>,
    /// Pools rebuilt with new settings.
    pub changed: Vec<String>,
    /// Pools new in this config.
    pub added: Vec<String>,
    /// Pools no longer configured (they drain: requests in flight finish).
    pub removed: Vec<String>,
}

impl Pools {
    /// Builds every configured pool.
    pub fn build(upstreams: &BTreeMap<String, Upstream>, metrics: &Metrics) -> std::io::Result<Self> {
        Self::reconcile(&Pools::default(), upstreams, metrics).map(|(pools, _)| pools)
    }

    /// The pools for `upstreams`, reusing from `old` every pool whose
    /// settings did not change, so that it keeps its health, ejections,
    /// retry budget and in-flight count. A changed pool is built anew (its
    /// requests in flight finish on the old one); a removed pool is dropped
    /// once its last request in flight ends.
    pub fn reconcile(
        old: &Pools,
        upstreams: &BTreeMap<String, Upstream>,
        metrics: &Metrics,
    ) -> std::io::Result<(Self, Reconciled)> {
        let mut by_name = BTreeMap::new();
        let mut report = Reconciled::default();
        for (name, settings) in upstreams {
            let pool = match old.by_name.get(name) {
                Some(p) if p.settings == *settings => {
                    report.kept.push(name.clone());
                    p.clone()
                }
                previous => {
                    if previous.is_some() { &mut report.changed } else { &mut report.added }.push(name.clone());
                    Arc::new(Pool::new(name, settings, metrics.pool(name))?)
                }
            };
            by_name.insert(name.clone(), pool);
        }
        report.removed = old.by_name.keys().filter(|n| !upstreams.contains_key(*n)).cloned().collect();
        Ok((Pools { by_name }, report))
    }

    /// The pool named `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Pool>> {
        self.by_name.get(name)
    }

    /// Every pool.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Pool>> {
        self.by_name.values()
    }
}

/// The one background service that runs the health checks of whatever
/// pools the current generation holds: a pool added by a reload is checked
/// at once, a removed one no longer.
pub struct HealthDriver<F> {
    current: F,
}

/// How often the driver looks for due checks.
const HEALTH_TICK: Duration = Duration::from_millis(100);

impl<F> HealthDriver<F>
where
    F: Fn() -> Vec<Arc<Pool>> + Send + Sync,
{
    /// A driver over the pools `current` returns at each look.
    pub fn new(current: F) -> Self {
        HealthDriver { current }
    }
}

#[async_trait::async_trait]
impl<F> pingora::services::background::BackgroundService for HealthDriver<F>
where
    F: Fn() -> Vec<Arc<Pool>> + Send + Sync,
{
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        let mut tick = tokio::time::interval(HEALTH_TICK);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            let now = Instant::now();
            for pool in (self.current)() {
                if pool.claim_resolve(now) {
                    tokio::spawn(pool.clone().refresh_names());
                }
                if pool.claim_health_check(now) {
                    // Each check runs on its own task, so that a slow probe
                    // delays no other pool; the next is scheduled an interval
                    // after this one started.
                    tokio::spawn(async move { pool.run_health_check().await });
                }
            }
        }
    }
}
