//! The record opener under arbitrary chunk boundaries: a plaintext from the
//! input, sealed with the codec the input picks, opened in the pieces the
//! input picks, must come back exactly; the same sealed bytes with one byte
//! changed must never open. Raw input bytes as a body must never panic.
#![no_main]

use bytes::BytesMut;
use filters::{
    AeadKey, Algorithm, Codec, CompressOptions, Envelope, KeyRing, Limits, Nonce, Protection, SignKey, Target,
};
use libfuzzer_sys::fuzz_target;

fn ring() -> KeyRing {
    let mut ring = KeyRing::new();
    ring.add_aead(AeadKey::new("room-v2", Algorithm::Aes256Gcm, &[1; 32]).unwrap());
    ring.add_sign(SignKey::new("sign-v1", &[2; 32]).unwrap());
    ring
}

fn envelope(codec: Codec, length: Option<u64>) -> Envelope<'static> {
    Envelope {
        target: Target::Request { method: "POST", path: "/api", query: "" },
        service: "token_service",
        caller: "song_service",
        content_type: "",
        codec,
        protection: Protection::Encrypt { alg: Algorithm::Aes256Gcm, key: "room-v2" },
        sign_key: "sign-v1",
        timestamp_ms: 1,
        nonce: Nonce([3; 16]),
        length,
        deadline_ms: None,
    }
}

/// Opens `sealed` in pieces whose sizes come from `cuts`.
fn open(
    ring: &KeyRing,
    env: &Envelope<'_>,
    sig: &filters::Signature,
    sealed: &[u8],
    cuts: &[u8],
) -> filters::Result<Vec<u8>> {
    let mut opener = ring.verify(env, sig)?.opener(Limits { max_body: 1 << 20 });
    let mut out = BytesMut::new();
    let mut rest = sealed;
    let mut i = 0;
    while !rest.is_empty() {
        let n = (usize::from(cuts.get(i % cuts.len().max(1)).copied().unwrap_or(255)) * 7 + 1).min(rest.len());
        let (piece, tail) = rest.split_at(n);
        opener.open(piece, &mut out)?;
        rest = tail;
        i += 1;
    }
    opener.finish()?;
    Ok(out.to_vec())
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let codec = Codec::ALL[usize::from(data[0]) % Codec::ALL.len()];
    let cut_len = usize::from(data[1]) % 16;
    let (cuts, plain) = data[2..].split_at(cut_len.min(data.len() - 2));
    let ring = ring();
    let env = envelope(codec, Some(plain.len() as u64));
    let (sig, mut sealer) = ring.seal(&env, CompressOptions { level: 0, min_size: 16 }).unwrap();
    let mut sealed = BytesMut::new();
    sealer.seal(plain, &mut sealed).unwrap();
    sealer.finish(&mut sealed).unwrap();
    assert_eq!(open(&ring, &env, &sig, &sealed, cuts).as_deref(), Ok(plain), "a sealed body opens whole");
    if !sealed.is_empty() {
        let mut bad = sealed.to_vec();
        let at = usize::from(data[1]) * 31 % bad.len();
        bad[at] ^= 0x40;
        assert!(open(&ring, &env, &sig, &bad, cuts).is_err(), "a changed byte never opens");
    }
    // The input itself as a sealed body: refused, never a panic.
    let env = envelope(codec, None);
    let (sig, _) = ring.seal(&env, CompressOptions::default()).unwrap();
    let _ = open(&ring, &env, &sig, data, cuts);
});
