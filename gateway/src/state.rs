//! The generation both roles read: the checked config, the pools built from
//! it (reconciled with the previous generation's), and where it came from.
//! Held in an `ArcSwap`, so a reload replaces it whole and in-flight requests
//! finish on the generation they started with. State that outlives a reload
//! (metrics, nonces, the replay cache, the opened-bytes budget, connection
//! counts) is not in it.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::pools::{Pools, Reconciled};

/// Where a generation came from.
#[derive(Debug, Clone)]
pub struct Origin {
    /// 1 for the config the process started with, then +1 per reload.
    pub number: u64,
    /// SHA-256 of the config file's bytes, hex.
    pub sha256: String,
    /// When it was loaded, ms since the Unix epoch.
    pub loaded_at_ms: u64,
}

impl Origin {
    /// The origin of generation `number`, loaded now from `source`.
    pub fn new(number: u64, source: &[u8]) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, source);
        Origin { number, sha256: filters::hex::encode(digest.as_ref()), loaded_at_ms: crate::http_util::now_ms() }
    }
}

/// One consistent generation of config and pools.
pub struct Snapshot {
    /// The checked config.
    pub config: Config,
    /// Pools built from `config.upstreams`.
    pub pools: Pools,
    /// Where it came from.
    pub origin: Origin,
    /// The rustls objects of `config.inbound.tls`.
    pub tls: crate::tls::Built,
}

impl Snapshot {
    /// The first generation: builds the pools for `config`.
    pub fn new(config: Config, origin: Origin, metrics: &Metrics) -> std::io::Result<Self> {
        let pools = Pools::build(&config.upstreams, metrics)?;
        let tls = tls_of(&config)?;
        Ok(Snapshot { config, pools, origin, tls })
    }

    /// The generation after `self` for `config`: pools whose settings did
    /// not change are carried over with their state.
    pub fn next(&self, config: Config, origin: Origin, metrics: &Metrics) -> std::io::Result<(Self, Reconciled)> {
        let (pools, report) = Pools::reconcile(&self.pools, &config.upstreams, metrics)?;
        let tls = tls_of(&config)?;
        Ok((Snapshot { config, pools, origin, tls }, report))
    }
}

fn tls_of(config: &Config) -> std::io::Result<crate::tls::Built> {
    crate::tls::Built::new(config.inbound.as_ref().and_then(|i| i.tls.as_ref())).map_err(std::io::Error::other)
}

/// The shared, swappable current snapshot.
pub type Shared = Arc<ArcSwap<Snapshot>>;
