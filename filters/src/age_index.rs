//! The replay cache's entries ordered by timestamp, for expiry and eviction.
//!
//! A ring of buckets, each covering `width` milliseconds: an entry goes to
//! the bucket of its timestamp, and the oldest entry is the smallest in the
//! first non-empty bucket. Adding is O(1). The first bucket is sorted (newest
//! first) when an entry is first taken from it, so each further oldest entry
//! is its last: a full cache, which takes the oldest on every insert, pays
//! one sort of ~100 entries per bucket instead of a scan per entry. A binary
//! heap gave the same order, but each pop walked ~14 levels of a shard's 16 K
//! entries, most of them cache misses.
//!
//! The live entries must span fewer than [`BUCKETS`] buckets. The cache
//! keeps them within its freshness window, so the width is chosen for that
//! span; when timestamps further apart arrive anyway (the clock stepped),
//! the buckets are rebuilt twice as wide until they fit.

/// Buckets in the ring.
pub(crate) const BUCKETS: usize = 1024;

/// (timestamp ms, digest) pairs in timestamp buckets.
pub(crate) struct AgeIndex {
    width: u64,
    buckets: Vec<Vec<(u64, u64)>>,
    /// Bucket number (timestamp / width) at or below the oldest entry's.
    lo: u64,
    /// Bucket number of the newest entry.
    hi: u64,
    len: usize,
    /// The bucket number whose entries are sorted newest first, if any.
    sorted: Option<u64>,
}

impl AgeIndex {
    /// An empty index for timestamps spread over about `span_ms`.
    pub(crate) fn new(span_ms: u64) -> Self {
        AgeIndex {
            width: span_ms / BUCKETS as u64 + 1,
            buckets: (0..BUCKETS).map(|_| Vec::new()).collect(),
            lo: 0,
            hi: 0,
            len: 0,
            sorted: None,
        }
    }

    fn slot(&self, bucket: u64) -> usize {
        (bucket % BUCKETS as u64) as usize
    }

    /// Adds an entry.
    pub(crate) fn push(&mut self, ts: u64, digest: u64) {
        let b = ts / self.width;
        if self.len == 0 {
            (self.lo, self.hi) = (b, b);
        } else {
            let (lo, hi) = (self.lo.min(b), self.hi.max(b));
            if hi - lo >= BUCKETS as u64 {
                self.widen(ts);
                return self.push(ts, digest);
            }
            (self.lo, self.hi) = (lo, hi);
        }
        let s = self.slot(b);
        let bucket = &mut self.buckets[s];
        if self.sorted == Some(b) {
            // Keep the sorted bucket sorted: ties go before, so they pop after.
            let at = bucket.partition_point(|e| e.0 > ts);
            bucket.insert(at, (ts, digest));
        } else {
            bucket.push((ts, digest));
        }
        self.len += 1;
    }

    /// Rebuilds with buckets wide enough for every entry and `ts`.
    fn widen(&mut self, ts: u64) {
        let all: Vec<(u64, u64)> = self.buckets.iter_mut().flat_map(|b| b.drain(..)).collect();
        self.sorted = None;
        let lo = all.iter().map(|e| e.0).min().unwrap_or(ts).min(ts);
        let hi = all.iter().map(|e| e.0).max().unwrap_or(ts).max(ts);
        while hi / self.width - lo / self.width >= BUCKETS as u64 {
            self.width = self.width.saturating_mul(2);
        }
        self.len = 0;
        for (t, d) in all {
            self.push(t, d);
        }
    }

    /// The slot of the oldest non-empty bucket.
    fn first(&mut self) -> Option<usize> {
        if self.len == 0 {
            return None;
        }
        // Terminates: every entry lies in a bucket from `lo` to `hi`.
        while self.buckets[self.slot(self.lo)].is_empty() {
            self.lo += 1;
        }
        Some(self.slot(self.lo))
    }

    /// Removes and returns the entry with the oldest timestamp.
    pub(crate) fn pop_oldest(&mut self) -> Option<(u64, u64)> {
        let s = self.first()?;
        let bucket = &mut self.buckets[s];
        if self.sorted != Some(self.lo) {
            bucket.sort_unstable_by_key(|e| std::cmp::Reverse(e.0));
            self.sorted = Some(self.lo);
        }
        let oldest = bucket.pop()?;
        self.len -= 1;
        if bucket.is_empty() {
            release(bucket);
        }
        Some(oldest)
    }

    /// Removes every entry older than `oldest_fresh`, handing each digest to
    /// `gone`.
    pub(crate) fn expire(&mut self, oldest_fresh: u64, mut gone: impl FnMut(u64)) {
        while let Some(s) = self.first() {
            // A bucket that ends before `oldest_fresh` empties whole, and
            // the next may hold stale entries too; otherwise later buckets
            // are all fresh.
            let whole = self.lo.saturating_add(1).saturating_mul(self.width) <= oldest_fresh;
            let bucket = &mut self.buckets[s];
            let before = bucket.len();
            bucket.retain(|&(ts, d)| {
                let fresh = ts >= oldest_fresh;
                if !fresh {
                    gone(d);
                }
                fresh
            });
            self.len -= before - bucket.len();
            if bucket.is_empty() {
                release(bucket);
            }
            if !whole {
                return;
            }
        }
    }

    /// Entries held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Entries the buckets have room for.
    #[cfg(test)]
    fn capacity(&self) -> usize {
        self.buckets.iter().map(Vec::capacity).sum()
    }
}

/// Frees an emptied bucket's memory. The ring turns: each slot is reused a
/// full window later, so kept capacity would add up to the peak of every
/// slot (several times the live entries) instead of following them.
fn release(bucket: &mut Vec<(u64, u64)>) {
    *bucket = Vec::new();
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[derive(Debug, Clone)]
    enum Op {
        Push(u64),
        PopOldest,
        Expire(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            // Mostly within a two-minute window, sometimes far away (a clock step).
            4 => (0u64..120_000).prop_map(Op::Push),
            // A few buckets only: pushes into the sorted first bucket.
            3 => (0u64..1_000).prop_map(Op::Push),
            1 => (0u64..10_000_000).prop_map(Op::Push),
            2 => Just(Op::PopOldest),
            1 => (0u64..10_000_000).prop_map(Op::Expire),
        ]
    }

    proptest! {
        /// Same answers as an ordered set, whatever the order of timestamps.
        #[test]
        fn behaves_as_an_ordered_set(ops in prop::collection::vec(op(), 0..400)) {
            let mut index = AgeIndex::new(120_000);
            let mut model = BTreeSet::new();
            for (digest, op) in ops.into_iter().enumerate() {
                match op {
                    Op::Push(ts) => {
                        index.push(ts, digest as u64);
                        model.insert((ts, digest as u64));
                    }
                    Op::PopOldest => {
                        let got = index.pop_oldest();
                        let want = model.iter().next().copied();
                        // Equal timestamps may leave in either order.
                        prop_assert_eq!(got.map(|e| e.0), want.map(|e| e.0));
                        if let Some(e) = got {
                            prop_assert!(model.remove(&e));
                        }
                    }
                    Op::Expire(fresh) => {
                        let mut gone = Vec::new();
                        index.expire(fresh, |d| gone.push(d));
                        let mut want: Vec<u64> = model.iter().filter(|e| e.0 < fresh).map(|e| e.1).collect();
                        model.retain(|e| e.0 >= fresh);
                        gone.sort_unstable();
                        want.sort_unstable();
                        prop_assert_eq!(gone, want);
                    }
                }
                prop_assert_eq!(index.len(), model.len());
            }
        }
    }

    #[test]
    fn memory_follows_the_live_entries_as_the_ring_turns() {
        // Ten windows of steady traffic, the oldest evicted as a full cache
        // does: what the buckets hold stays near what is live.
        let mut index = AgeIndex::new(120_000);
        let live = 2_000;
        for i in 0..20 * live as u64 {
            let ts = i * 60; // 10 windows of 120 s
            index.push(ts, i);
            if index.len() > live {
                index.pop_oldest();
            }
            assert!(index.capacity() <= 4 * live, "entry {i}: room for {}", index.capacity());
        }
        while index.pop_oldest().is_some() {}
        assert_eq!(index.capacity(), 0);
    }

    #[test]
    fn a_clock_step_widens_the_buckets_and_keeps_the_order() {
        let mut index = AgeIndex::new(120_000);
        index.push(1_000, 1);
        index.push(1_000 + 10 * 3_600_000, 2); // ten hours later
        index.push(500, 3);
        assert_eq!(index.pop_oldest(), Some((500, 3)));
        assert_eq!(index.pop_oldest(), Some((1_000, 1)));
        assert_eq!(index.pop_oldest(), Some((1_000 + 10 * 3_600_000, 2)));
        assert_eq!(index.pop_oldest(), None);
    }
}
