//! Backend selection over Pingora's load balancer, one type per algorithm,
//! behind one enum so a pool does not care which it has.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use pingora::lb::selection::{BackendIter, BackendSelection, Consistent, Random, RoundRobin};
use pingora::lb::{discovery, Backend, Backends, LoadBalancer};

use crate::config::{Selection, Upstream};

/// A pool's load balancer, whatever its algorithm.
pub enum Selector {
    /// Weighted round robin.
    RoundRobin(Arc<LoadBalancer<RoundRobin>>),
    /// Weighted random.
    Random(Arc<LoadBalancer<Random>>),
    /// Ketama consistent hashing.
    Consistent(Arc<LoadBalancer<Consistent>>),
}

fn build<S>(settings: &Upstream) -> std::io::Result<LoadBalancer<S>>
where
    S: BackendSelection + Send + Sync + 'static,
    S::Iter: BackendIter,
{
    let mut set = BTreeSet::new();
    for (addr, weight) in &settings.backends {
        let b = Backend::new_with_weight(&addr.to_string(), *weight as usize)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        set.insert(b);
    }
    let lb = LoadBalancer::<S>::from_backends(Backends::new(discovery::Static::new(set)));
    // Static discovery answers at once: one poll completes the first update.
    let first = {
        let mut update = std::pin::pin!(lb.update());
        update.as_mut().poll(&mut Context::from_waker(Waker::noop()))
    };
    match first {
        Poll::Ready(r) => r.map_err(|e| std::io::Error::other(e.to_string()))?,
        Poll::Pending => return Err(std::io::Error::other("static discovery did not complete")),
    }
    Ok(lb)
}

impl Selector {
    /// Builds the selector; `prepare` configures health checks before the
    /// balancer is shared.
    pub fn new(settings: &Upstream, prepare: impl Fn(&mut dyn HealthConfig)) -> std::io::Result<Self> {
        Ok(match settings.selection {
            Selection::RoundRobin => {
                let mut lb = build::<RoundRobin>(settings)?;
                prepare(&mut lb);
                Selector::RoundRobin(Arc::new(lb))
            }
            Selection::Random => {
                let mut lb = build::<Random>(settings)?;
                prepare(&mut lb);
                Selector::Random(Arc::new(lb))
            }
            Selection::Consistent(_) => {
                let mut lb = build::<Consistent>(settings)?;
                prepare(&mut lb);
                Selector::Consistent(Arc::new(lb))
            }
        })
    }

    /// The first backend for `key` that is healthy and passes `accept`.
    pub fn select(&self, key: &[u8], max_iter: usize, accept: impl Fn(&Backend) -> bool) -> Option<Backend> {
        let f = |b: &Backend, healthy: bool| healthy && accept(b);
        match self {
            Selector::RoundRobin(lb) => lb.select_with(key, max_iter, f),
            Selector::Random(lb) => lb.select_with(key, max_iter, f),
            Selector::Consistent(lb) => lb.select_with(key, max_iter, f),
        }
    }

    /// Probes every backend once (in parallel) and records the results.
    pub async fn run_health_check(&self) {
        match self {
            Selector::RoundRobin(lb) => lb.backends().run_health_check(true).await,
            Selector::Random(lb) => lb.backends().run_health_check(true).await,
            Selector::Consistent(lb) => lb.backends().run_health_check(true).await,
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
