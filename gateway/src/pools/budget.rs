//! A per-pool retry budget: retries over the last 10 seconds may not exceed
//! `min + ratio × requests` over the same window, so during an outage retries
//! add at most `ratio` to the load instead of multiplying it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

const WINDOW_SECS: u64 = 10;

/// One second's counts.
#[derive(Default)]
struct Bucket {
    second: AtomicU64,
    requests: AtomicU64,
    retries: AtomicU64,
}

/// Lock-free sliding-window retry budget.
pub struct RetryBudget {
    base: Instant,
    ratio: f64,
    min: u64,
    buckets: [Bucket; WINDOW_SECS as usize],
}

impl RetryBudget {
    /// A budget of `min + ratio × requests` retries per 10 s.
    pub fn new(ratio: f64, min: u32) -> Self {
        RetryBudget { base: Instant::now(), ratio, min: u64::from(min), buckets: Default::default() }
    }

    fn bucket(&self, now: u64) -> &Bucket {
        let b = &self.buckets[(now % WINDOW_SECS) as usize];
        let seen = b.second.load(Ordering::Relaxed);
        if seen != now && b.second.compare_exchange(seen, now, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
            // This slot held an older second: start it over.
            b.requests.store(0, Ordering::Relaxed);
            b.retries.store(0, Ordering::Relaxed);
        }
        b
    }

    fn now(&self) -> u64 {
        // Second 0 is reserved for "never used".
        self.base.elapsed().as_secs() + 1
    }

    fn totals(&self, now: u64) -> (u64, u64) {
        self.buckets
            .iter()
            .filter(|b| now - b.second.load(Ordering::Relaxed).min(now) < WINDOW_SECS)
            .fold((0, 0), |(q, r), b| (q + b.requests.load(Ordering::Relaxed), r + b.retries.load(Ordering::Relaxed)))
    }

    /// Counts a new request.
    pub fn request(&self) {
        self.bucket(self.now()).requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes one retry from the budget, if any is left.
    pub fn try_retry(&self) -> bool {
        let now = self.now();
        let (requests, retries) = self.totals(now);
        if (retries as f64) < self.min as f64 + self.ratio * requests as f64 {
            self.bucket(now).retries.fetch_add(1, Ordering::Relaxed);
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_retries_at_ratio_plus_floor() {
        let b = RetryBudget::new(0.2, 10);
        for _ in 0..100 {
            b.request();
        }
        let granted = (0..1000).filter(|_| b.try_retry()).count();
        assert_eq!(granted, 30, "10 + 0.2 × 100");
    }
}
