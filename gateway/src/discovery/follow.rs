//! Follows the discovered services of the live pools: one task per
//! (registry, service) lists it, then watches it; each change goes into the
//! [`Feed`](super::Feed), the pools that use it and the registry's cache
//! file. When the registry cannot be reached the last members keep serving;
//! a cold start without the registry serves from the cache file.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use super::Registry;
use crate::config::registry::{DiscoveryRef, Registry as RegistrySettings};
use crate::config::Config;
use crate::membership::{directory, Listing};
use crate::metrics::Metrics;
use crate::state::Shared;

/// How often the live pools are looked at for new discovered services.
const TICK: Duration = Duration::from_millis(200);
/// Longest pause between attempts while a registry fails.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Loads each registry's cache file into the directory (services it has no
/// listing of yet), so that the first generation's pools start with the
/// members last seen.
pub fn seed_from_caches(config: &Config) {
    for reg in config.registries.values() {
        let Some(path) = &reg.cache else { continue };
        let Ok(bytes) = std::fs::read(path) else { continue };
        match serde_json::from_slice::<BTreeMap<String, Listing>>(&bytes) {
            Ok(cached) => {
                for (service, listing) in cached {
                    let feed = directory().feed(&DiscoveryRef { registry: reg.name.clone(), service: service.clone() });
                    if feed.listing().is_none() {
                        log::info!(target: "fastproxy::discovery", "{}/{service}: {} member(s) from the cache {path} until the registry answers", reg.name, listing.instances.len());
                        feed.set(listing, "cache");
                    }
                }
            }
            Err(e) => {
                log::warn!(target: "fastproxy::discovery", "registry {}: ignoring the cache {path}: {e}", reg.name)
            }
        }
    }
}

/// Writes the listings of `registry` to its cache file (whole, atomically).
fn write_cache(reg: &RegistrySettings) {
    let Some(path) = &reg.cache else { return };
    let listings: BTreeMap<String, Listing> = directory()
        .all()
        .into_iter()
        .filter(|(r, _)| r.registry == reg.name)
        .filter_map(|(r, feed)| feed.listing().map(|l| (r.service, (*l).clone())))
        .collect();
    let Ok(bytes) = serde_json::to_vec(&listings) else { return };
    let tmp = format!("{path}.tmp");
    if let Err(e) = std::fs::write(&tmp, bytes).and_then(|_| std::fs::rename(&tmp, path)) {
        log::warn!(target: "fastproxy::discovery", "registry {}: cannot write the cache {path}: {e}", reg.name);
    }
}

/// The background service that follows every discovered service.
pub struct Follower {
    shared: Shared,
    metrics: Arc<Metrics>,
    registries: BTreeMap<String, (RegistrySettings, Arc<dyn Registry>)>,
}

impl Follower {
    /// A follower of the registries `config` names.
    pub fn new(shared: Shared, metrics: Arc<Metrics>, config: &Config) -> Self {
        let registries = config.registries.iter().map(|(n, r)| (n.clone(), (r.clone(), super::connect(r)))).collect();
        Follower { shared, metrics, registries }
    }

    /// Publishes `listing` of `r`: the feed, every live pool using it, the
    /// metrics, the cache file.
    /// The live pools take the members first, then the feed records them:
    /// what `/config` shows as members, the pools balance over.
    async fn publish(&self, reg: &RegistrySettings, r: &DiscoveryRef, listing: Listing) {
        let feed = directory().feed(r);
        let changed = feed.listing().is_none_or(|l| !l.same_members(&listing));
        self.metrics.discovery_listing(&r.registry, &r.service, listing.instances.len(), listing.revision, changed);
        feed.healthy();
        let backends = listing.backends();
        if changed {
            log::info!(target: "fastproxy::discovery", "{}/{}: members now {:?}", r.registry, r.service, backends.iter().map(|(a, _)| a.to_string()).collect::<Vec<_>>());
            let pools: Vec<_> = self.shared.load().pools.iter().filter(|p| p.discovery() == Some(r)).cloned().collect();
            for pool in pools {
                pool.set_discovered(backends.clone()).await;
            }
        }
        feed.set(listing, "registry");
        if changed {
            write_cache(reg);
        }
    }

    fn failed(&self, r: &DiscoveryRef, what: &str, e: &super::Error) {
        self.metrics.discovery_error(&r.registry, &r.service);
        let message = format!("{what}: {e}");
        log::warn!(target: "fastproxy::discovery", "{}/{}: {message}; the last known members keep serving", r.registry, r.service);
        directory().feed(r).failed(message);
    }

    /// Lists and watches `r` until the process stops.
    async fn follow(self: Arc<Self>, r: DiscoveryRef) {
        let Some((reg, client)) = self.registries.get(&r.registry).cloned() else { return };
        let mut backoff = Duration::from_millis(250);
        loop {
            match client.list(&r.service).await {
                Ok(listing) => {
                    backoff = Duration::from_millis(250);
                    self.publish(&reg, &r, listing.clone()).await;
                    match client.watch(&r.service, listing).await {
                        Ok(mut watch) => loop {
                            match watch.next().await {
                                Ok(listing) => self.publish(&reg, &r, listing).await,
                                Err(e) => {
                                    self.failed(&r, "watch", &e);
                                    break;
                                }
                            }
                        },
                        Err(e) => self.failed(&r, "watch", &e),
                    }
                }
                Err(e) => self.failed(&r, "list", &e),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

/// Runs [`Follower`] for every discovered service the live pools use; a
/// service no live pool uses any more (a reload removed it) is no longer
/// followed.
pub struct FollowService(pub Arc<Follower>);

#[async_trait]
impl BackgroundService for FollowService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tasks: HashMap<DiscoveryRef, tokio::task::JoinHandle<()>> = HashMap::new();
        let mut tick = tokio::time::interval(TICK);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => break,
            }
            let live: Vec<_> = self.0.shared.load().pools.iter().filter(|p| p.discovery().is_some()).cloned().collect();
            let mut wanted = HashSet::new();
            for pool in live {
                let Some(r) = pool.discovery().cloned() else { continue };
                // A pool a reload built while a listing was being published
                // catches up here.
                if let Some(listing) = directory().feed(&r).listing() {
                    let backends = listing.backends();
                    if pool.discovered_members() != backends {
                        tokio::spawn(async move { pool.set_discovered(backends).await });
                    }
                }
                wanted.insert(r);
            }
            tasks.retain(|r, task| {
                let keep = wanted.contains(r);
                if !keep {
                    log::info!(target: "fastproxy::discovery", "{}/{}: no pool uses it any more; no longer followed", r.registry, r.service);
                    task.abort();
                }
                keep
            });
            for r in wanted {
                if !tasks.contains_key(&r) {
                    tasks.insert(r.clone(), tokio::spawn(self.0.clone().follow(r)));
                }
            }
        }
        for task in tasks.values() {
            task.abort();
        }
    }
}
