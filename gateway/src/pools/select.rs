//! Backend selection over Pingora's load balancer, one type per algorithm,
//! behind one enum so a pool does not care which it has.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use pingora::lb::selection::{BackendIter, BackendSelection, Consistent, Random, RoundRobin};
use pingora::lb::{discovery, Backend, Backends, LoadBalancer};

use crate::config::{Selection, Upstream};

/// A pool's load balancer, whatever its algorithm, and the backends it
/// balances over.
pub struct Selector {
    lb: Balancer,
    members: Members,
}

enum Balancer {
    RoundRobin(Arc<LoadBalancer<RoundRobin>>),
    Random(Arc<LoadBalancer<Random>>),
    Consistent(Arc<LoadBalancer<Consistent>>),
}

/// The backends a balancer discovers, swapped whole when a pool's host
/// names resolve to a new set.
#[derive(Clone, Default)]
pub struct Members(Arc<arc_swap::ArcSwap<BTreeSet<Backend>>>);

impl Members {
    /// The set for `backends` (address, weight).
    fn of(backends: &[(SocketAddr, u32)]) -> std::io::Result<BTreeSet<Backend>> {
        let mut set = BTreeSet::new();
        for (addr, weight) in backends {
            let b = Backend::new_with_weight(&addr.to_string(), *weight as usize)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            set.insert(b);
        }
        Ok(set)
    }
}

#[async_trait::async_trait]
impl discovery::ServiceDiscovery for Members {
    async fn discover(&self) -> pingora::Result<(BTreeSet<Backend>, HashMap<u64, bool>)> {
        Ok(((**self.0.load()).clone(), HashMap::new()))
    }
}

fn build<S>(members: &Members) -> std::io::Result<LoadBalancer<S>>
where
    S: BackendSelection + Send + Sync + 'static,
    S::Iter: BackendIter,
{
    let lb = LoadBalancer::<S>::from_backends(Backends::new(Box::new(members.clone())));
    // The discovery answers at once: one poll completes the first update.
    let first = {
        let mut update = std::pin::pin!(lb.update());
        update.as_mut().poll(&mut Context::from_waker(Waker::noop()))
    };
    match first {
        Poll::Ready(r) => r.map_err(|e| std::io::Error::other(e.to_string()))?,
        Poll::Pending => return Err(std::io::Error::other("the first backend update did not complete")),
    }
    Ok(lb)
}

impl Selector {
    /// Builds the selector over `backends`; `prepare` configures health
    /// checks before the balancer is shared.
    pub fn new(
        settings: &Upstream,
        backends: &[(SocketAddr, u32)],
        prepare: impl Fn(&mut dyn HealthConfig),
    ) -> std::io::Result<Self> {
        let members = Members::default();
        members.0.store(Arc::new(Members::of(backends)?));
        let lb = match settings.selection {
            Selection::RoundRobin => {
                let mut lb = build::<RoundRobin>(&members)?;
                prepare(&mut lb);
                Balancer::RoundRobin(Arc::new(lb))
            }
            Selection::Random => {
                let mut lb = build::<Random>(&members)?;
                prepare(&mut lb);
                Balancer::Random(Arc::new(lb))
            }
            Selection::Consistent(_) => {
                let mut lb = build::<Consistent>(&members)?;
                prepare(&mut lb);
                Balancer::Consistent(Arc::new(lb))
            }
        };
        Ok(Selector { lb, members })
    }

    /// Balances over `backends` from now on: backends kept keep their health.
    pub async fn set_backends(&self, backends: &[(SocketAddr, u32)]) -> std::io::Result<()> {
        self.members.0.store(Arc::new(Members::of(backends)?));
        let updated = match &self.lb {
            Balancer::RoundRobin(lb) => lb.update().await,
            Balancer::Random(lb) => lb.update().await,
            Balancer::Consistent(lb) => lb.update().await,
        };
        updated.map_err(|e| std::io::Error::other(e.to_string()))
    }

    /// The first backend for `key` that is healthy and passes `accept`.
    pub fn select(&self, key: &[u8], max_iter: usize, accept: impl Fn(&Backend) -> bool) -> Option<Backend> {
        let f = |b: &Backend, healthy: bool| healthy && accept(b);
        match &self.lb {
            Balancer::RoundRobin(lb) => lb.select_with(key, max_iter, f),
            Balancer::Random(lb) => lb.select_with(key, max_iter, f),
            Balancer::Consistent(lb) => lb.select_with(key, max_iter, f),
        }
    }

    /// Probes every backend once (in parallel) and records the results.
    pub async fn run_health_check(&self) {
        match &self.lb {
            Balancer::RoundRobin(lb) => lb.backends().run_health_check(true).await,
            Balancer::Random(lb) => lb.backends().run_health_check(true).await,
            Balancer::Consistent(lb) => lb.backends().run_health_check(true).await,
        }
    }
}

/// The health-check knobs of a load balancer, independent of its algorithm.
pub trait HealthConfig {
    /// Installs a health check run every `every`.
    fn set_check(
        &mut self,
        check: Box<dyn pingora::lb::health_check::HealthCheck + Send + Sync>,
        every: std::time::Duration,
    );
}

impl<S> HealthConfig for LoadBalancer<S>
where
    S: BackendSelection + 'static,
    S::Iter: BackendIter,
{
    fn set_check(
        &mut self,
        check: Box<dyn pingora::lb::health_check::HealthCheck + Send + Sync>,
        every: std::time::Duration,
    ) {
        self.set_health_check(check);
        self.health_check_frequency = Some(every);
        self.parallel_health_check = true;
    }
}
