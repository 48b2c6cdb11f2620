//! Shared helpers for the filters integration tests.
#![allow(dead_code)]

pub mod reference;

use bytes::BytesMut;
use filters::*;

pub const AEAD_SECRET: [u8; 32] = [0x11; 32];
pub const CHACHA_SECRET: [u8; 32] = [0x22; 32];
pub const SIGN_SECRET: [u8; 32] = [0x33; 32];
pub const OTHER_SIGN_SECRET: [u8; 32] = [0x44; 32];

/// A ring with `gcm-1` (AES-256-GCM), `chacha-1` (ChaCha20-Poly1305),
/// `sign-1` and `sign-2`.
pub fn ring() -> KeyRing {
    let mut r = KeyRing::new();
    r.add_aead(AeadKey::new("gcm-1", Algorithm::Aes256Gcm, &AEAD_SECRET).unwrap());
    r.add_aead(AeadKey::new("chacha-1", Algorithm::ChaCha20Poly1305, &CHACHA_SECRET).unwrap());
    r.add_sign(SignKey::new("sign-1", &SIGN_SECRET).unwrap());
    r.add_sign(SignKey::new("sign-2", &OTHER_SIGN_SECRET).unwrap());
    r
}

pub fn protection(alg: Option<Algorithm>) -> Protection<'static> {
    match alg {
        None => Protection::SignOnly,
        Some(Algorithm::Aes256Gcm) => Protection::Encrypt { alg: Algorithm::Aes256Gcm, key: "gcm-1" },
        Some(Algorithm::ChaCha20Poly1305) => Protection::Encrypt { alg: Algorithm::ChaCha20Poly1305, key: "chacha-1" },
    }
}

pub const NOW_MS: u64 = 1_764_115_200_000;

/// A request envelope with fixed fields and the given nonce byte.
pub fn request(alg: Option<Algorithm>, codec: Codec, length: Option<u64>, nonce: u8) -> Envelope<'static> {
    Envelope {
        target: Target::Request { method: "POST", path: "/api/service", query: "a=1&b=2" },
        service: "token_service",
        caller: "song_service",
        content_type: "application/json",
        codec,
        protection: protection(alg),
        sign_key: "sign-1",
        timestamp_ms: NOW_MS,
        nonce: Nonce([nonce; 16]),
        length,
        deadline_ms: Some(NOW_MS + 5_000),
    }
}

/// Seals `body` fed in chunks of `chunk` bytes (0 = all at once).
pub fn seal(keys: &KeyRing, env: &Envelope<'_>, body: &[u8], chunk: usize) -> (Signature, Vec<u8>) {
    let (sig, mut sealer) = keys.seal(env, CompressOptions::default()).unwrap();
    let mut out = BytesMut::new();
    if chunk == 0 {
        sealer.seal(body, &mut out).unwrap();
    } else {
        for c in body.chunks(chunk) {
            sealer.seal(c, &mut out).unwrap();
        }
    }
    sealer.finish(&mut out).unwrap();
    (sig, out.to_vec())
}

/// Verifies and opens `sealed` fed in chunks of `chunk` bytes (0 = at once).
pub fn open(keys: &KeyRing, env: &Envelope<'_>, sig: &Signature, sealed: &[u8], chunk: usize) -> Result<Vec<u8>> {
    open_with(keys, env, sig, sealed, chunk, Limits::default())
}

pub fn open_with(
    keys: &KeyRing,
    env: &Envelope<'_>,
    sig: &Signature,
    sealed: &[u8],
    chunk: usize,
    limits: Limits,
) -> Result<Vec<u8>> {
    let mut opener = keys.verify(env, sig)?.opener(limits);
    let mut out = BytesMut::new();
    if chunk == 0 {
        opener.open(sealed, &mut out)?;
    } else {
        for c in sealed.chunks(chunk) {
            opener.open(c, &mut out)?;
        }
    }
    opener.finish()?;
    Ok(out.to_vec())
}

/// Splits a sealed body into its records (header + payload + tag each).
pub fn records(sealed: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = sealed;
    while !rest.is_empty() {
        let len = (usize::from(rest[1]) << 16) | (usize::from(rest[2]) << 8) | usize::from(rest[3]);
        let (rec, tail) = rest.split_at(4 + len + 16);
        out.push(rec.to_vec());
        rest = tail;
    }
    out
}

/// Compressible test data: JSON-ish text, deterministic for a seed.
pub fn body(len: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    while out.len() < len {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let rec = format!("{{\"id\":{},\"name\":\"user{}\",\"ok\":true}},", x >> 40, (x >> 20) & 0xfff);
        out.extend_from_slice(rec.as_bytes());
    }
    out.truncate(len);
    out
}
