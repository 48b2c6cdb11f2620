//! An inbound proxy's registrations: each of its services is registered
//! under its advertised address once it serves, kept alive at a third of
//! the TTL, and registered again if its lease was lost. A service added or
//! removed by a reload is registered or deregistered at the next renewal.
//!
//! Stopping: on SIGTERM the proxy deregisters **first**, keeps accepting
//! for `deregister_delay` (answering with `Connection: close`) while
//! outbound proxies drop it from their pools, and only then lets Pingora
//! close the listeners ([`StopSignals`]). On SIGQUIT (an upgrade) it does not
//! deregister: the new process has registered the same instance id already,
//! which took the registration over; the old one just stops renewing.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::{ShutdownSignal, ShutdownSignalWatch, ShutdownWatch};
use pingora::services::background::BackgroundService;
use tokio::sync::Mutex;

use super::{Error, Instance, Lease, Registry};
use crate::config::registry::Registration;
use crate::lifecycle::Draining;
use crate::metrics::Metrics;
use crate::state::Shared;

/// Longest wait for the deregistrations on SIGTERM.
const DEREGISTER_WAIT: Duration = Duration::from_secs(2);

/// An inbound proxy's registrations.
pub struct Registrar {
    settings: Registration,
    client: Arc<dyn Registry>,
    shared: Shared,
    metrics: Arc<Metrics>,
    leases: Mutex<BTreeMap<String, Lease>>,
    stopped: AtomicBool,
}

impl Registrar {
    /// The registrations `settings` asks for, through `client`.
    pub fn new(settings: Registration, client: Arc<dyn Registry>, shared: Shared, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Registrar {
            settings,
            client,
            shared,
            metrics,
            leases: Mutex::new(BTreeMap::new()),
            stopped: AtomicBool::new(false),
        })
    }

    fn instance(&self) -> Instance {
        Instance {
            id: self.settings.advertise.to_string(),
            addr: self.settings.advertise,
            weight: self.settings.weight,
            metadata: self.settings.metadata.clone(),
        }
    }

    fn services(&self) -> Vec<String> {
        let snap = self.shared.load();
        let mut out: Vec<String> =
            snap.config.inbound.iter().flat_map(|i| i.services.keys().map(|n| n.to_string())).collect();
        out.sort();
        out
    }

    fn failed(&self, service: &str, what: &str, e: &Error) {
        self.metrics.registration_error(&self.settings.registry, service);
        log::warn!(target: "fastproxy::discovery", "registration of {service} in {}: {what}: {e}", self.settings.registry);
    }

    /// Registers what is not registered, renews what is, deregisters
    /// services the config no longer has.
    async fn renew(&self) {
        let mut leases = self.leases.lock().await;
        if self.stopped.load(Ordering::Acquire) {
            return;
        }
        let services = self.services();
        let registry = &self.settings.registry;
        for gone in leases.keys().filter(|s| !services.contains(s)).cloned().collect::<Vec<_>>() {
            if let Some(lease) = leases.remove(&gone) {
                match self.client.deregister(&lease).await {
                    Ok(()) => {
                        log::info!(target: "fastproxy::discovery", "deregistered {gone} from {registry} (no longer served)")
                    }
                    Err(e) => self.failed(&gone, "deregister", &e),
                }
                self.metrics.set_registered(registry, &gone, false);
            }
        }
        for service in services {
            if let Some(lease) = leases.get(&service) {
                match self.client.keepalive(lease).await {
                    Ok(()) => continue,
                    Err(Error::LeaseGone) => {
                        log::info!(target: "fastproxy::discovery", "the lease of {service} in {registry} was lost: registering again")
                    }
                    Err(e) => {
                        // Keep the lease: the registry may be back before it
                        // expires.
                        self.failed(&service, "keepalive", &e);
                        continue;
                    }
                }
            }
            match self.client.register(&service, &self.instance(), self.settings.ttl).await {
                Ok(lease) => {
                    log::info!(target: "fastproxy::discovery", "registered {service} at {} in {registry} (ttl {:?})", self.settings.advertise, self.settings.ttl);
                    leases.insert(service.clone(), lease);
                    self.metrics.set_registered(registry, &service, true);
                }
                Err(e) => {
                    leases.remove(&service);
                    self.metrics.set_registered(registry, &service, false);
                    self.failed(&service, "register", &e);
                }
            }
        }
    }

    /// Stops renewing and deregisters every service (SIGTERM).
    pub async fn deregister_all(&self) {
        self.stopped.store(true, Ordering::Release);
        let mut leases = self.leases.lock().await;
        for (service, lease) in std::mem::take(&mut *leases) {
            match tokio::time::timeout(DEREGISTER_WAIT, self.client.deregister(&lease)).await {
                Ok(Ok(())) => {
                    log::info!(target: "fastproxy::discovery", "deregistered {service} from {}", self.settings.registry)
                }
                Ok(Err(e)) => self.failed(&service, "deregister", &e),
                Err(_) => self.failed(&service, "deregister", &Error::Unreachable("timed out".to_owned())),
            }
            self.metrics.set_registered(&self.settings.registry, &service, false);
        }
    }

    /// Stops renewing without deregistering (an upgrade: the new process
    /// holds the registrations now).
    pub fn hand_over(&self) {
        self.stopped.store(true, Ordering::Release);
    }
}

/// Registers when the proxy starts serving and renews until it stops.
pub struct RegisterService(pub Arc<Registrar>);

#[async_trait]
impl BackgroundService for RegisterService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let every = (self.0.settings.ttl / 3).max(Duration::from_millis(300));
        let retry = Duration::from_millis(500).min(every);
        loop {
            self.0.renew().await;
            let all_live = self.0.leases.lock().await.len() == self.0.services().len();
            tokio::select! {
                _ = tokio::time::sleep(if all_live { every } else { retry }) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// The process's stop signals, as Pingora's default (SIGQUIT upgrade,
/// SIGTERM graceful stop, SIGINT fast stop), except that SIGTERM first
/// deregisters and waits `deregister_delay` while still serving.
pub struct StopSignals {
    registrar: Option<Arc<Registrar>>,
    draining: Draining,
}

impl StopSignals {
    /// Signals for a process with `registrar` (if it registers).
    pub fn new(registrar: Option<Arc<Registrar>>, draining: Draining) -> Self {
        StopSignals { registrar, draining }
    }
}

#[async_trait]
impl ShutdownSignalWatch for StopSignals {
    async fn recv(&self) -> ShutdownSignal {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut quit), Ok(mut term), Ok(mut int)) =
            (signal(SignalKind::quit()), signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
        else {
            log::error!("cannot listen for stop signals: stopping");
            return ShutdownSignal::FastShutdown;
        };
        tokio::select! {
            _ = quit.recv() => {
                log::info!("SIGQUIT received: handing the listeners over (upgrade)");
                if let Some(r) = &self.registrar {
                    r.hand_over();
                }
                ShutdownSignal::GracefulUpgrade
            }
            _ = term.recv() => {
                log::info!("SIGTERM received: stopping gracefully");
                if let Some(r) = &self.registrar {
                    self.draining.start();
                    r.deregister_all().await;
                    log::info!("deregistered; serving {:?} more before closing the listeners", r.settings.deregister_delay);
                    tokio::time::sleep(r.settings.deregister_delay).await;
                }
                ShutdownSignal::GracefulTerminate
            }
            _ = int.recv() => ShutdownSignal::FastShutdown,
        }
    }
}
