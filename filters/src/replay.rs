//! Freshness and replay protection for received requests.
//!
//! A request is accepted once: its timestamp must lie within `skew` of the
//! receiver's clock, and its (caller, nonce) pair must not be in the cache of
//! pairs seen inside that window. Entries leave the cache when their timestamp
//! leaves the window, so the cache covers exactly the window.
//!
//! The cache is per caller: it remembers a 64-bit digest of the caller's name
//! and the nonce, keyed with random per-process keys. One caller therefore
//! cannot use up another caller's nonces (senders may use predictable
//! counter nonces, PROTOCOL.md §2), and nobody without the keys can make two
//! pairs collide. An honest pair is wrongly refused as a replay with
//! probability about `entries / 2⁶⁴` (below 10⁻¹³ for a full default cache).
//!
//! Memory is bounded by `capacity` entries (about 40 bytes each). When the
//! cache is full, the entry with the oldest timestamp is evicted and the
//! shard's *floor* rises to that timestamp: from then on, any message at or
//! before the floor is rejected as stale. A full cache therefore narrows the
//! effective window instead of ever accepting a replay (fail closed).
//!
//! Check a message only after its signature verified: otherwise anyone could
//! fill the cache.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Mutex;

use crate::age_index::AgeIndex;
use crate::envelope::Nonce;
use crate::error::{Error, Result};

/// Default freshness window: ±60 s.
pub const DEFAULT_SKEW_MS: u64 = 60_000;
/// Default cache capacity (about 40 bytes per entry: ~10 MiB).
pub const DEFAULT_CAPACITY: usize = 256 * 1024;
/// Shards of a cache of at least [`SHARDED_FROM`] entries (fewer lock waits).
const SHARDS: usize = 16;
/// Smaller caches use one shard, so their capacity is exact.
const SHARDED_FROM: usize = 1024;

/// True when `ts_ms` is within `skew_ms` of `now_ms`, in either direction.
pub fn is_fresh(ts_ms: u64, now_ms: u64, skew_ms: u64) -> bool {
    ts_ms.abs_diff(now_ms) <= skew_ms
}

/// Hashes the already-random 64-bit digests by using them as they are.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

struct Shard {
    /// Digest of (caller, nonce) → timestamp.
    seen: HashMap<u64, u64, BuildHasherDefault<Prehashed>>,
    by_age: AgeIndex,
    floor: Option<u64>,
}

impl Shard {
    fn new(skew_ms: u64) -> Self {
        Shard { seen: HashMap::default(), by_age: AgeIndex::new(skew_ms.saturating_mul(2)), floor: None }
    }

    fn expire(&mut self, oldest_fresh: u64) {
        let seen = &mut self.seen;
        self.by_age.expire(oldest_fresh, |digest| {
            seen.remove(&digest);
        });
    }

    fn evict_oldest(&mut self) {
        if let Some((ts, digest)) = self.by_age.pop_oldest() {
            self.seen.remove(&digest);
            self.floor = Some(self.floor.map_or(ts, |f| f.max(ts)));
        }
    }

    fn insert(&mut self, digest: u64, ts_ms: u64) {
        self.seen.insert(digest, ts_ms);
        self.by_age.push(ts_ms, digest);
    }
}

/// A bounded, sharded, per-caller nonce cache with a freshness window.
/// Thread-safe.
pub struct ReplayGuard {
    skew_ms: u64,
    per_shard: usize,
    shards: Vec<Mutex<Shard>>,
    /// Random keys of the (caller, nonce) digest (SipHash-2-4). A process
    /// that takes over another's entries takes over its keys too.
    keys: [u64; 2],
}

impl ReplayGuard {
    /// A guard accepting timestamps within `skew_ms` of now, remembering at
    /// most about `capacity` (caller, nonce) pairs.
    pub fn new(skew_ms: u64, capacity: usize) -> Self {
        let mut k = [0u8; 16];
        // Without the system's randomness the keys are only less secret:
        // digests still tell nonces apart.
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut k);
        let key = |b: &[u8]| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
        Self::with_keys(skew_ms, capacity, [key(&k[..8]), key(&k[8..])])
    }

    /// A guard whose digests use `keys` (to carry on another process's
    /// entries, see [`ReplayGuard::keys`]).
    pub fn with_keys(skew_ms: u64, capacity: usize, keys: [u64; 2]) -> Self {
        let shards = if capacity >= SHARDED_FROM { SHARDS } else { 1 };
        ReplayGuard {
            skew_ms,
            per_shard: capacity.div_ceil(shards).max(1),
            shards: (0..shards).map(|_| Mutex::new(Shard::new(skew_ms))).collect(),
            keys,
        }
    }

    /// The digest keys (secret: whoever holds them can aim nonces at one
    /// cache slot).
    pub fn keys(&self) -> [u64; 2] {
        self.keys
    }

    /// The 64-bit digest of (`caller`, `nonce`) under this guard's keys.
    pub fn digest(&self, caller: &str, nonce: &Nonce) -> u64 {
        #[allow(deprecated)] // SipHash-2-4 with explicit keys; std keeps it.
        let mut h = std::hash::SipHasher::new_with_keys(self.keys[0], self.keys[1]);
        // Caller names never contain 0xff: the encoding is unambiguous.
        h.write(caller.as_bytes());
        h.write_u8(0xff);
        h.write(&nonce.0);
        h.finish()
    }

    /// The freshness window, in milliseconds either side of now.
    pub fn skew_ms(&self) -> u64 {
        self.skew_ms
    }

    /// Accepts a message from `caller` (timestamp `ts_ms`, nonce `nonce`)
    /// received at `now_ms` exactly once: [`Error::StaleTimestamp`] outside
    /// the window or at or below a full cache's floor, [`Error::Replay`] for a
    /// nonce this caller used before.
    pub fn check(&self, caller: &str, nonce: &Nonce, ts_ms: u64, now_ms: u64) -> Result<()> {
        self.check_digest(self.digest(caller, nonce), ts_ms, now_ms)
    }

    /// [`ReplayGuard::check`] for a digest made with [`ReplayGuard::digest`].
    pub fn check_digest(&self, digest: u64, ts_ms: u64, now_ms: u64) -> Result<()> {
        if !is_fresh(ts_ms, now_ms, self.skew_ms) {
            return Err(Error::StaleTimestamp);
        }
        let shard = &self.shards[(digest >> 32) as usize % self.shards.len()];
        // A poisoned lock only means another thread panicked mid-update; the
        // maps are still consistent enough to keep rejecting replays.
        let mut shard = shard.lock().unwrap_or_else(|p| p.into_inner());
        shard.expire(now_ms.saturating_sub(self.skew_ms));
        if shard.floor.is_some_and(|floor| ts_ms <= floor) {
            return Err(Error::StaleTimestamp);
        }
        if shard.seen.contains_key(&digest) {
            return Err(Error::Replay);
        }
        while shard.seen.len() >= self.per_shard {
            shard.evict_oldest();
        }
        if shard.floor.is_some_and(|floor| ts_ms <= floor) {
            return Err(Error::StaleTimestamp);
        }
        shard.insert(digest, ts_ms);
        Ok(())
    }

    /// Remembers a digest another process accepted at `ts_ms` (no check;
    /// outside the window at `now_ms` it is dropped).
    pub fn remember(&self, digest: u64, ts_ms: u64, now_ms: u64) {
        if !is_fresh(ts_ms, now_ms, self.skew_ms) {
            return;
        }
        let mut shard = self.shard(digest);
        shard.expire(now_ms.saturating_sub(self.skew_ms));
        if shard.seen.contains_key(&digest) {
            return;
        }
        while shard.seen.len() >= self.per_shard {
            shard.evict_oldest();
        }
        shard.insert(digest, ts_ms);
    }

    /// Refuses, as stale, every message timestamped at or before `ts_ms`
    /// (after a start that could not take over the previous process's
    /// entries).
    pub fn raise_floor(&self, ts_ms: u64) {
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            shard.floor = Some(shard.floor.map_or(ts_ms, |f| f.max(ts_ms)));
        }
    }

    /// The highest floor of any shard: timestamps at or below it are refused.
    pub fn floor(&self) -> Option<u64> {
        self.shards.iter().filter_map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).floor).max()
    }

    /// Every remembered (digest, timestamp) pair, for handing over.
    pub fn entries(&self) -> Vec<(u64, u64)> {
        let mut all = Vec::new();
        for shard in &self.shards {
            let shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            all.extend(shard.seen.iter().map(|(d, ts)| (*d, *ts)));
        }
        all
    }

    fn shard(&self, digest: u64) -> std::sync::MutexGuard<'_, Shard> {
        self.shards[(digest >> 32) as usize % self.shards.len()].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Pairs currently remembered.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).seen.len()).sum()
    }

    /// True when nothing is remembered.
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
        // or the 101st in one shard would raise its floor and be refused as
        // stale. Half the capacity leaves room for uneven (random) spread.
        let guard = ReplayGuard::new(DEFAULT_SKEW_MS, 1600);
        let nonces = NonceSource::new(&ring::rand::SystemRandom::new()).unwrap();
        let now = 1_764_115_200_000;
        for i in 0..800 {
            assert_eq!(guard.check("song_service", &nonces.next_nonce(), now, now), Ok(()), "nonce {i}");
        }
        assert_eq!(guard.len(), 800);
    }

    #[test]
    fn one_caller_cannot_use_up_another_callers_nonce() {
        let guard = ReplayGuard::new(DEFAULT_SKEW_MS, 64);
        let (n, now) = (Nonce([7; 16]), 1_764_115_200_000);
        assert_eq!(guard.check("evil_service", &n, now, now), Ok(()));
        assert_eq!(guard.check("song_service", &n, now, now), Ok(()), "another caller's namespace");
        assert_eq!(guard.check("song_service", &n, now, now), Err(Error::Replay));
        assert_eq!(guard.check("evil_service", &n, now, now), Err(Error::Replay));
    }
}
