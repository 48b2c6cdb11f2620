//! The runtime snapshot both roles read: checked config plus the pools built
//! from it. Held in an `ArcSwap`, so a reload replaces it whole and in-flight
//! requests finish on the snapshot they started with.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::pools::Pools;

/// One consistent generation of config and pools.
pub struct Snapshot {
    /// The checked config.
    pub config: Config,
    /// Pools built from `config.upstreams`.
    pub pools: Pools,
}

impl Snapshot {
    /// Builds the pools for `config`.
    pub fn new(config: Config, metrics: &Metrics) -> std::io::Result<Self> {
        let pools = Pools::build(&config.upstreams, metrics)?;
        Ok(Snapshot { config, pools })
    }
}

/// The shared, swappable current snapshot.
pub type Shared = Arc<ArcSwap<Snapshot>>;
