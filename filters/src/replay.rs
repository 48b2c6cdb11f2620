//! Freshness and replay protection for received requests.
//!
//! A request is accepted once: its timestamp must lie within `skew` of the
//! receiver's clock, and its nonce must not be in the cache of nonces seen
//! inside that window. Entries leave the cache when their timestamp leaves the
//! window, so the cache covers exactly the window.
//!
//! Memory is bounded by `capacity` entries. When the cache is full, the entry
//! with the oldest timestamp is evicted and the shard's *floor* rises to that
//! timestamp: from then on, any message at or before the floor is rejected as
//! stale. A full cache therefore narrows the effective window instead of ever
//! accepting a replay (fail closed).
//!
//! Check a message only after its signature verified: otherwise anyone could
//! fill the cache.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Mutex;

use crate::envelope::Nonce;
use crate::error::{Error, Result};

/// Default freshness window: ±60 s.
pub const DEFAULT_SKEW_MS: u64 = 60_000;
/// Default cache capacity (about 60 bytes per entry: ~15 MiB).
pub const DEFAULT_CAPACITY: usize = 256 * 1024;
const SHARDS: usize = 16;

/// True when `ts_ms` is within `skew_ms` of `now_ms`, in either direction.
pub fn is_fresh(ts_ms: u64, now_ms: u64, skew_ms: u64) -> bool {
    ts_ms.abs_diff(now_ms) <= skew_ms
}

#[derive(Default)]
struct Shard {
    seen: HashMap<Nonce, u64>,
    by_age: BinaryHeap<Reverse<(u64, Nonce)>>,
    floor: Option<u64>,
}

impl Shard {
    fn expire(&mut self, oldest_fresh: u64) {
        while let Some(Reverse((ts, nonce))) = self.by_age.peek().copied() {
            if ts >= oldest_fresh {
                break;
            }
            self.by_age.pop();
            self.seen.remove(&nonce);
        }
    }

    fn evict_oldest(&mut self) {
        if let Some(Reverse((ts, nonce))) = self.by_age.pop() {
            self.seen.remove(&nonce);
            self.floor = Some(self.floor.map_or(ts, |f| f.max(ts)));
        }
    }
}

/// A bounded, sharded nonce cache with a freshness window. Thread-safe.
pub struct ReplayGuard {
    skew_ms: u64,
    per_shard: usize,
    shards: Vec<Mutex<Shard>>,
}

impl ReplayGuard {
    /// A guard accepting timestamps within `skew_ms` of now, remembering at
    /// most about `capacity` nonces.
    pub fn new(skew_ms: u64, capacity: usize) -> Self {
        ReplayGuard {
            skew_ms,
            per_shard: capacity.div_ceil(SHARDS).max(1),
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
        }
    }

    /// The freshness window, in milliseconds either side of now.
    pub fn skew_ms(&self) -> u64 {
        self.skew_ms
    }

    /// Accepts a message (timestamp `ts_ms`, nonce `nonce`) received at
    /// `now_ms` exactly once: [`Error::StaleTimestamp`] outside the window or
    /// at or below a full cache's floor, [`Error::Replay`] for a nonce seen
    /// before.
    pub fn check(&self, nonce: &Nonce, ts_ms: u64, now_ms: u64) -> Result<()> {
        if !is_fresh(ts_ms, now_ms, self.skew_ms) {
            return Err(Error::StaleTimestamp);
        }
        // Every nonce byte picks the shard: random nonces and counter-based
        // ones (a fixed random prefix, a counting tail) both spread evenly.
        let fold = nonce.0.iter().fold(0u8, |acc, b| acc ^ b);
        let shard = &self.shards[usize::from(fold) % SHARDS];
        // A poisoned lock only means another thread panicked mid-update; the
        // maps are still consistent enough to keep rejecting replays.
        let mut shard = shard.lock().unwrap_or_else(|p| p.into_inner());
        shard.expire(now_ms.saturating_sub(self.skew_ms));
        if shard.floor.is_some_and(|floor| ts_ms <= floor) {
            return Err(Error::StaleTimestamp);
        }
        if shard.seen.contains_key(nonce) {
            return Err(Error::Replay);
        }
        while shard.seen.len() >= self.per_shard {
            shard.evict_oldest();
        }
        if shard.floor.is_some_and(|floor| ts_ms <= floor) {
            return Err(Error::StaleTimestamp);
        }
        shard.seen.insert(*nonce, ts_ms);
        shard.by_age.push(Reverse((ts_ms, *nonce)));
        Ok(())
    }

    /// Nonces currently remembered.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).seen.len()).sum()
    }

    /// True when no nonce is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::NonceSource;

    #[test]
    fn counter_nonces_from_one_sender_use_the_whole_capacity() {
        // 16 shards of 100: one sender's nonces must spread over all of them,
        // or the 101st would raise a shard's floor and be refused as stale.
        let guard = ReplayGuard::new(DEFAULT_SKEW_MS, 1600);
        let nonces = NonceSource::new(&ring::rand::SystemRandom::new()).unwrap();
        let now = 1_764_115_200_000;
        for i in 0..1500 {
            assert_eq!(guard.check(&nonces.next_nonce(), now, now), Ok(()), "nonce {i}");
        }
        assert_eq!(guard.len(), 1500);
    }
}
