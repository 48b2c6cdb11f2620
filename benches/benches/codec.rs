//! Criterion benches for the sealing codec: seal+sign and verify+open per
//! algorithm, codec and body size, with the raw `ring` AEAD on the same buffers
//! as the reference.
//!
//! Run: `cargo bench -p fastproxy-benches` (add `-- --quick` for a short run).

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use filters::{
    AeadKey, Algorithm, Codec, CompressOptions, Envelope, KeyRing, Limits, Nonce, Protection, SignKey, Target,
};
use ring::rand::SystemRandom;

const SIZES: [(usize, &str); 3] = [(1024, "1KiB"), (16 * 1024, "16KiB"), (1024 * 1024, "1MiB")];
const ALGS: [Algorithm; 2] = [Algorithm::Aes256Gcm, Algorithm::ChaCha20Poly1305];

fn keys() -> KeyRing {
    let mut ring = KeyRing::new();
    ring.add_aead(AeadKey::new("gcm", Algorithm::Aes256Gcm, &[1; 32]).expect("key"));
    ring.add_aead(AeadKey::new("chacha", Algorithm::ChaCha20Poly1305, &[2; 32]).expect("key"));
    ring.add_sign(SignKey::new("sign", &[3; 32]).expect("key"));
    ring
}

fn envelope(alg: Algorithm, codec: Codec, len: usize, nonce: Nonce) -> Envelope<'static> {
    let key = match alg {
        Algorithm::Aes256Gcm => "gcm",
        Algorithm::ChaCha20Poly1305 => "chacha",
    };
    Envelope {
        target: Target::Request { method: "POST", path: "/api/service", query: "id=7" },
        service: "token_service",
        caller: "song_service",
        content_type: "application/json",
        codec,
        protection: Protection::Encrypt { alg, key },
        sign_key: "sign",
        timestamp_ms: 1_764_115_200_000,
        nonce,
        length: Some(len as u64),
        deadline_ms: None,
    }
}

/// JSON-like, compressible body.
fn body(len: usize) -> Vec<u8> {
    br#"{"id":12345,"name":"fastproxy","email":"user@example.com","tags":["a","b"]},"#
        .iter()
        .copied()
        .cycle()
        .take(len)
        .collect()
}

fn seal_once(keys: &KeyRing, env: &Envelope<'_>, data: &[u8], out: &mut BytesMut) {
    out.clear();
    let (sig, mut sealer) = keys.seal(env, CompressOptions::default()).expect("seal");
    sealer.seal(data, out).expect("seal");
    sealer.finish(out).expect("finish");
    black_box(sig);
}

fn bench_seal(c: &mut Criterion) {
    let keys = keys();
    let rng = SystemRandom::new();
    let mut group = c.benchmark_group("seal");
    for alg in ALGS {
        for codec in [Codec::None, Codec::Snappy] {
            for (size, label) in SIZES {
                let data = body(size);
                let mut out = BytesMut::with_capacity(size * 2);
                group.throughput(Throughput::Bytes(size as u64));
                let id = BenchmarkId::new(format!("{}/{}", alg.name(), codec.name()), label);
                group.bench_function(id, |b| {
                    b.iter(|| {
                        // A fresh nonce per message, as in production.
                        let nonce = Nonce::random(&rng).expect("rng");
                        seal_once(&keys, &envelope(alg, codec, size, nonce), &data, &mut out);
                    })
                });
            }
        }
    }
    group.finish();
}

fn bench_open(c: &mut Criterion) {
    let keys = keys();
    let mut group = c.benchmark_group("open");
    for alg in ALGS {
        for codec in [Codec::None, Codec::Snappy] {
            for (size, label) in SIZES {
                let data = body(size);
                let env = envelope(alg, codec, size, Nonce([7; 16]));
                let mut sealed = BytesMut::new();
                let (sig, mut sealer) = keys.seal(&env, CompressOptions::default()).expect("seal");
                sealer.seal(&data, &mut sealed).expect("seal");
                sealer.finish(&mut sealed).expect("finish");
                let mut out = BytesMut::with_capacity(size);
                group.throughput(Throughput::Bytes(size as u64));
                let id = BenchmarkId::new(format!("{}/{}", alg.name(), codec.name()), label);
                group.bench_function(id, |b| {
                    b.iter(|| {
                        out.clear();
                        let mut opener = keys.verify(&env, &sig).expect("verify").opener(Limits::default());
                        opener.open(&sealed, &mut out).expect("open");
                        opener.finish().expect("finish");
                    })
                });
            }
        }
    }
    group.finish();
}

/// The floor: `ring` sealing the same buffer in place with a prepared key and
/// no framing, signing, compression or copies.
fn bench_raw_ring(c: &mut Criterion) {
    use ring::aead::{Aad, LessSafeKey, Nonce as RingNonce, UnboundKey, AES_256_GCM, CHACHA20_POLY1305};
    let mut group = c.benchmark_group("raw-ring");
    for (alg, ring_alg) in [(Algorithm::Aes256Gcm, &AES_256_GCM), (Algorithm::ChaCha20Poly1305, &CHACHA20_POLY1305)] {
        let key = LessSafeKey::new(UnboundKey::new(ring_alg, &[9; 32]).expect("key"));
        for (size, label) in SIZES {
            let mut buf = body(size);
            group.throughput(Throughput::Bytes(size as u64));
            group.bench_function(BenchmarkId::new(alg.name(), label), |b| {
                b.iter(|| {
                    let tag = key
                        .seal_in_place_separate_tag(RingNonce::assume_unique_for_key([0; 12]), Aad::empty(), &mut buf)
                        .expect("seal");
                    let _ = black_box(tag);
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench_seal, bench_open, bench_raw_ring);
criterion_main!(benches);
