//! Criterion bench for the replay cache at the receiver: one accepted
//! message's check on a cache that is full, as it is under sustained load
//! (the default 256 Ki entries fill in ~20 s at 13 k messages/s, far inside
//! the ±60 s window), so every insert also evicts the oldest entry.
//!
//! Run: `cargo bench -p fastproxy-benches --bench replay`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use filters::replay::{DEFAULT_CAPACITY, DEFAULT_SKEW_MS};
use filters::ReplayGuard;

/// Messages per millisecond of sender clock (13 k/s, the sealed bench's rate).
const PER_MS: u64 = 13;

/// A well-mixed stand-in for the keyed (caller, nonce) digest of message `i`.
fn digest(i: u64) -> u64 {
    let mut x = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn bench_full_cache(c: &mut Criterion) {
    let guard = ReplayGuard::new(DEFAULT_SKEW_MS, DEFAULT_CAPACITY);
    let start = 1_764_115_200_000u64;
    let mut i = 0u64;
    let mut next = || {
        let ts = start + i / PER_MS;
        let d = digest(i);
        i += 1;
        (d, ts)
    };
    // Twice the capacity: the cache is full and has been evicting for a while.
    for _ in 0..2 * DEFAULT_CAPACITY {
        let (d, ts) = next();
        let _ = guard.check_digest(d, ts, ts);
    }
    c.bench_function("replay/check_digest, full cache", |b| {
        b.iter(|| {
            let (d, ts) = next();
            black_box(guard.check_digest(black_box(d), ts, ts))
        })
    });
}

criterion_group!(benches, bench_full_cache);
criterion_main!(benches);
