//! Every modification of a sealed message is rejected with the right error.
mod common;

use std::collections::HashMap;
use std::io::Write;

use common::reference::{self, RecordKey};
use common::*;
use filters::*;

const GCM: Option<Algorithm> = Some(Algorithm::Aes256Gcm);

/// The fields of a message's `x-fp` header, by key.
fn headers_of(env: &Envelope<'_>, sig: &Signature) -> HashMap<String, String> {
    let mut h = HashMap::new();
    env.write_fields(sig, |k, v| {
        h.insert(k.to_owned(), v.to_owned());
    });
    h
}

/// Encodes fields back into an `x-fp` value, in wire order.
fn encode(h: &HashMap<String, String>) -> String {
    let parts: Vec<String> =
        envelope::Field::ALL.iter().map(|f| f.key()).filter_map(|k| h.get(k).map(|v| format!("{k}={v}"))).collect();
    parts.join(";")
}

/// Parses a request's `x-fp` header and verifies it (the receiver's first steps).
fn verify_value(keys: &KeyRing, value: &str, method: &str, path: &str, query: &str) -> Result<()> {
    let (env, sig) = Envelope::parse_request(Some(value), method, "token_service", path, query)?;
    keys.verify(&env, &sig).map(|_| ())
}

/// [`verify_value`] on fields.
fn verify_headers(keys: &KeyRing, h: &HashMap<String, String>, method: &str, path: &str, query: &str) -> Result<()> {
    verify_value(keys, &encode(h), method, path, query)
}

#[test]
fn every_single_byte_flip_of_a_sealed_body_is_rejected() {
    let keys = ring();
    for alg in [None, GCM, Some(Algorithm::ChaCha20Poly1305)] {
        for codec in [Codec::None, Codec::Snappy] {
            let data = body(300, 1);
            let env = request(alg, codec, None, 1);
            let (sig, sealed) = seal(&keys, &env, &data, 0);
            for i in 0..sealed.len() {
                for bit in [0x01u8, 0x80] {
                    let mut bad = sealed.clone();
                    bad[i] ^= bit;
                    let err = open(&keys, &env, &sig, &bad, 0).unwrap_err();
                    let expected: &[Error] = match i {
                        // flags: an unknown bit, FINAL cleared, or COMPRESSED toggled.
                        0 => &[Error::CorruptRecord, Error::BadCodec, Error::Truncated],
                        // length: longer than sent (truncated), over the limit, or shorter (tag fails).
                        1..=3 => &[Error::Truncated, Error::TooLarge(Limit::Record), Error::CorruptRecord],
                        _ => &[Error::CorruptRecord],
                    };
                    assert!(expected.contains(&err), "alg {alg:?} codec {codec:?} byte {i}: {err:?}");
                }
            }
        }
    }
}

#[test]
fn byte_flips_in_a_multi_record_body_are_rejected() {
    let keys = ring();
    let data = body(3 * RECORD_MAX + 100, 2);
    let env = request(GCM, Codec::None, Some(data.len() as u64), 2);
    let (sig, sealed) = seal(&keys, &env, &data, 0);
    let mut i = 0;
    while i < sealed.len() {
        let mut bad = sealed.clone();
        bad[i] ^= 0x40;
        assert!(open(&keys, &env, &sig, &bad, 4096).is_err(), "flip at {i} accepted");
        i += 997;
    }
}

#[test]
fn each_signed_header_field_is_covered() {
    let keys = ring();
    let env = request(GCM, Codec::Snappy, Some(10), 3);
    let (sig, _) = seal(&keys, &env, &[0u8; 10], 0);
    let good = headers_of(&env, &sig);
    verify_headers(&keys, &good, "POST", "/api/service", "a=1&b=2").unwrap();

    let cases: &[(&str, &str, Error)] = &[
        ("c", "evil_service", Error::BadSignature),
        ("z", "gzip", Error::BadSignature),
        ("z", "lzma", Error::BadCodec),
        ("a", "chacha20-poly1305", Error::DisallowedAlgorithm),
        ("a", "aes-128-gcm", Error::DisallowedAlgorithm),
        ("k", "chacha-1", Error::DisallowedAlgorithm),
        ("k", "gcm-9", Error::UnknownKey(KeyKind::Aead)),
        ("s", "sign-2", Error::BadSignature),
        ("s", "sign-9", Error::UnknownKey(KeyKind::Sign)),
        ("t", "1764115200001", Error::BadSignature),
        ("t", "01764115200000", Error::Malformed("x-fp timestamp")),
        ("n", "04040404040404040404040404040404", Error::BadSignature),
        ("n", "0303", Error::Malformed("x-fp nonce")),
        ("l", "11", Error::BadSignature),
        ("d", "1764115299999", Error::BadSignature),
        ("ct", "text/plain", Error::BadSignature),
        ("v", "2", Error::UnsupportedVersion),
        ("sig", "00", Error::Malformed("x-fp signature")),
    ];
    for (name, value, expected) in cases {
        let mut h = good.clone();
        h.insert(name.to_string(), value.to_string());
        let err = verify_headers(&keys, &h, "POST", "/api/service", "a=1&b=2").unwrap_err();
        assert_eq!(&err, expected, "{name}: {value}");
    }
    // Removing an optional signed field is detected too.
    for name in ["l", "d", "ct"] {
        let mut h = good.clone();
        h.remove(name);
        assert_eq!(
            verify_headers(&keys, &h, "POST", "/api/service", "a=1&b=2").unwrap_err(),
            Error::BadSignature,
            "{name}"
        );
    }
    // A flipped signature bit.
    let mut h = good.clone();
    let s = h["sig"].clone();
    let first = if s.starts_with('0') { '1' } else { '0' };
    let flipped = format!("{first}{}", &s[1..]);
    h.insert("sig".into(), flipped);
    assert_eq!(verify_headers(&keys, &h, "POST", "/api/service", "a=1&b=2").unwrap_err(), Error::BadSignature);
    // The request line: method, path, query.
    for (m, p, q) in [
        ("PUT", "/api/service", "a=1&b=2"),
        ("POST", "/api/other", "a=1&b=2"),
        ("POST", "/api/service", "a=1&b=3"),
        ("POST", "/api/service", ""),
    ] {
        assert_eq!(verify_headers(&keys, &good, m, p, q).unwrap_err(), Error::BadSignature, "{m} {p}?{q}");
    }
    // Another service.
    let value = encode(&good);
    let other = Envelope::parse_request(Some(&value), "POST", "pay_service", "/api/service", "a=1&b=2").unwrap();
    assert_eq!(keys.verify(&other.0, &other.1).err(), Some(Error::BadSignature));
}

#[test]
fn the_header_encoding_is_strict() {
    let keys = ring();
    let env = request(GCM, Codec::None, Some(10), 5);
    let (sig, _) = seal(&keys, &env, &[0u8; 10], 0);
    let good = env.header_value(&sig);
    assert_eq!(good.len(), good.capacity(), "allocated at its exact size");
    verify_value(&keys, &good, "POST", "/api/service", "a=1&b=2").unwrap();
    let malformed = Err(Error::Malformed("x-fp"));
    let t = format!("t={}", env.timestamp_ms);
    let cases = [
        // A field repeated, out of order, unknown, empty-keyed; a trailing separator.
        good.replacen(&t, &format!("{t};{t}"), 1),
        good.replacen("v=1;", "", 1).replacen("a=", "v=1;a=", 1),
        good.replacen("v=1;", "v=1;x=1;", 1),
        good.replacen("v=1;", "v=1;=1;", 1),
        good.replacen("v=1;", "v=1;c", 1),
        good.replacen(";ct=application/json", ";", 1),
    ];
    for bad in &cases {
        assert_eq!(verify_value(&keys, bad, "POST", "/api/service", "a=1&b=2"), malformed, "{bad:?}");
    }
    assert_eq!(verify_value(&keys, "", "POST", "/", "").unwrap_err().code(), "malformed", "empty value");
    assert_eq!(
        Envelope::parse_request(None, "POST", "token_service", "/", "").unwrap_err(),
        Error::Malformed("x-fp"),
        "no header"
    );
    // Over the length limit (a content type of 2000 bytes).
    let long = format!("{good};ct={}", "a".repeat(2000));
    assert_eq!(verify_value(&keys, &long, "POST", "/api/service", "a=1&b=2"), Err(Error::TooLarge(Limit::Header)));
    // A content type over 256 bytes in a header under the limit: malformed, as §3 says.
    let ct = format!("{good};ct={}", "a".repeat(300));
    assert!(ct.len() <= 1024);
    assert_eq!(verify_value(&keys, &ct, "POST", "/api/service", "a=1&b=2"), Err(Error::Malformed("x-fp content-type")));
    // A content type holding `;` and `=` travels intact as the last field.
    let mut env = env;
    env.content_type = "text/plain; charset=utf-8; q=0.5";
    let (sig, _) = seal(&keys, &env, &[0u8; 10], 0);
    let value = env.header_value(&sig);
    assert!(value.ends_with(";ct=text/plain; charset=utf-8; q=0.5"), "{value}");
    let (parsed, _) =
        Envelope::parse_request(Some(&value), "POST", "token_service", "/api/service", "a=1&b=2").unwrap();
    assert_eq!(parsed, env);
}

#[test]
fn a_sign_only_message_changed_to_claim_encryption_fails_and_vice_versa() {
    let keys = ring();
    let env = request(None, Codec::None, None, 4);
    let (sig, _) = seal(&keys, &env, b"x", 0);
    let mut h = headers_of(&env, &sig);
    h.insert("a".into(), "aes-256-gcm".into());
    h.insert("k".into(), "gcm-1".into());
    assert_eq!(verify_headers(&keys, &h, "POST", "/api/service", "a=1&b=2").unwrap_err(), Error::BadSignature);

    let env = request(GCM, Codec::None, None, 4);
    let (sig, _) = seal(&keys, &env, b"x", 0);
    let mut h = headers_of(&env, &sig);
    h.insert("a".into(), "none".into());
    h.remove("k");
    assert_eq!(verify_headers(&keys, &h, "POST", "/api/service", "a=1&b=2").unwrap_err(), Error::BadSignature);
}

fn three_record_message(keys: &KeyRing, nonce: u8) -> (Envelope<'static>, Signature, Vec<Vec<u8>>) {
    let data = body(2 * RECORD_MAX + 10, u64::from(nonce));
    let env = request(GCM, Codec::None, None, nonce);
    let (sig, sealed) = seal(keys, &env, &data, 0);
    let recs = records(&sealed);
    assert_eq!(recs.len(), 3);
    (env, sig, recs)
}

#[test]
fn truncated_reordered_duplicated_and_spliced_records_are_rejected() {
    let keys = ring();
    let (env, sig, r) = three_record_message(&keys, 5);
    let join = |parts: &[&Vec<u8>]| parts.iter().flat_map(|p| p.iter().copied()).collect::<Vec<u8>>();

    assert!(open(&keys, &env, &sig, &join(&[&r[0], &r[1], &r[2]]), 0).is_ok());
    // Truncation: the final record dropped, or cut inside a record, or nothing at all.
    assert_eq!(open(&keys, &env, &sig, &join(&[&r[0], &r[1]]), 0), Err(Error::Truncated));
    let all = join(&[&r[0], &r[1], &r[2]]);
    assert_eq!(open(&keys, &env, &sig, &all[..all.len() - 1], 0), Err(Error::Truncated));
    assert_eq!(open(&keys, &env, &sig, &all[..2], 0), Err(Error::Truncated));
    assert_eq!(open(&keys, &env, &sig, &[], 0), Err(Error::Truncated));
    // Reordering and duplication.
    assert_eq!(open(&keys, &env, &sig, &join(&[&r[1], &r[0], &r[2]]), 0), Err(Error::CorruptRecord));
    assert_eq!(open(&keys, &env, &sig, &join(&[&r[0], &r[0], &r[1], &r[2]]), 0), Err(Error::CorruptRecord));
    // Data after the final record.
    assert_eq!(open(&keys, &env, &sig, &join(&[&r[0], &r[1], &r[2], &r[2]]), 0), Err(Error::CorruptRecord));
    // A record spliced in from another message under the same keys.
    let (_, _, other) = three_record_message(&keys, 6);
    assert_eq!(open(&keys, &env, &sig, &join(&[&r[0], &other[1], &r[2]]), 0), Err(Error::CorruptRecord));
    // A whole body spliced from another message.
    assert_eq!(open(&keys, &env, &sig, &join(&[&other[0], &other[1], &other[2]]), 0), Err(Error::CorruptRecord));
}

#[test]
fn length_mismatch_with_the_signed_length_is_rejected() {
    let keys = ring();
    // An honest sealer refuses to produce it.
    let env = request(GCM, Codec::None, Some(10), 7);
    let (_, mut sealer) = keys.seal(&env, CompressOptions::default()).unwrap();
    let mut out = bytes::BytesMut::new();
    sealer.seal(b"short", &mut out).unwrap();
    assert_eq!(sealer.finish(&mut out), Err(Error::LengthMismatch));
    // A body of 10 bytes verified against a header that says 10 but carrying 11 (forged with the keys).
    let (sig, _) = keys.seal(&env, CompressOptions::default()).unwrap();
    let key = RecordKey::Aead(&ring::aead::AES_256_GCM, reference::k_body(&AEAD_SECRET, &sig.0));
    let forged = reference::record(&key, 0, 0x01, &[1u8; 11]);
    assert_eq!(open(&keys, &env, &sig, &forged, 0), Err(Error::LengthMismatch));
    let forged = reference::record(&key, 0, 0x01, &[1u8; 9]);
    assert_eq!(open(&keys, &env, &sig, &forged, 0), Err(Error::LengthMismatch));
}

#[test]
fn opener_stays_failed_after_an_error() {
    let keys = ring();
    let (env, sig, r) = three_record_message(&keys, 8);
    let mut opener = keys.verify(&env, &sig).unwrap().opener(Limits::default());
    let mut out = bytes::BytesMut::new();
    let mut bad = r[0].clone();
    bad[10] ^= 1;
    assert_eq!(opener.open(&bad, &mut out), Err(Error::CorruptRecord));
    assert!(out.is_empty(), "no unauthenticated plaintext is released");
    assert_eq!(opener.open(&r[1], &mut out), Err(Error::CorruptRecord));
    assert_eq!(opener.finish(), Err(Error::CorruptRecord));
    assert!(out.is_empty());
}

#[test]
fn replayed_nonce_and_stale_timestamp_are_rejected() {
    // Under 1024 entries the cache is one shard: capacity and expiry are exact.
    let guard = ReplayGuard::new(60_000, 16);
    let (caller, n, other) = ("song_service", Nonce([9; 16]), Nonce([8; 16]));
    guard.check(caller, &n, NOW_MS, NOW_MS).unwrap();
    assert_eq!(guard.check(caller, &n, NOW_MS, NOW_MS + 10), Err(Error::Replay));
    assert_eq!(guard.check(caller, &other, NOW_MS - 60_001, NOW_MS), Err(Error::StaleTimestamp));
    assert_eq!(guard.check(caller, &other, NOW_MS + 60_001, NOW_MS), Err(Error::StaleTimestamp));
    guard.check(caller, &other, NOW_MS - 60_000, NOW_MS).unwrap();
    // Once the window has passed, the message is stale whether or not remembered.
    assert_eq!(guard.check(caller, &n, NOW_MS, NOW_MS + 60_001), Err(Error::StaleTimestamp));
    assert_eq!(guard.len(), 2);
    // Entries expire with the window: the next check drops both.
    guard.check(caller, &Nonce([7; 16]), NOW_MS + 60_001, NOW_MS + 60_001).unwrap();
    assert_eq!(guard.len(), 1, "both expired, the new one in");
}

#[test]
fn a_full_replay_cache_narrows_the_window_and_never_accepts_a_replay() {
    // One shard of one entry.
    let guard = ReplayGuard::new(60_000, 1);
    let caller = "song_service";
    let nonce = |i: u8| Nonce([i; 16]);
    guard.check(caller, &nonce(1), NOW_MS - 10, NOW_MS).unwrap();
    // Full: the oldest entry is evicted, the floor rises to its timestamp.
    guard.check(caller, &nonce(2), NOW_MS - 5, NOW_MS).unwrap();
    // The evicted nonce is now refused as stale, never accepted again.
    assert_eq!(guard.check(caller, &nonce(1), NOW_MS - 10, NOW_MS), Err(Error::StaleTimestamp));
    assert_eq!(guard.check(caller, &nonce(2), NOW_MS - 5, NOW_MS), Err(Error::Replay));
    // Newer messages still pass.
    guard.check(caller, &nonce(3), NOW_MS, NOW_MS).unwrap();
    assert_eq!(guard.len(), 1);
}

/// Forges a one-record zstd/gzip/brotli message whose payload inflates far
/// beyond the record limit.
fn bomb(keys: &KeyRing, codec: Codec, compressed: &[u8]) -> Result<Vec<u8>> {
    let env = request(GCM, codec, None, 11);
    let (sig, _) = keys.seal(&env, CompressOptions::default()).unwrap();
    let key = RecordKey::Aead(&ring::aead::AES_256_GCM, reference::k_body(&AEAD_SECRET, &sig.0));
    assert!(compressed.len() <= RECORD_MAX, "{codec:?} bomb is {} bytes", compressed.len());
    let rec = reference::record(&key, 0, 0x01 | 0x02, compressed);
    open(keys, &env, &sig, &rec, 0)
}

#[test]
fn compression_bombs_are_rejected_at_the_record_limit() {
    let keys = ring();
    let zeros = vec![0u8; 1 << 20];
    // 1 GiB of zeros, zstd: ~32 KiB, fits one record.
    let mut z = zstd::stream::Encoder::new(Vec::new(), 1).unwrap();
    z.window_log(18).unwrap();
    for _ in 0..1024 {
        z.write_all(&zeros).unwrap();
    }
    let z = z.finish().unwrap();
    assert_eq!(bomb(&keys, Codec::Zstd, &z), Err(Error::TooLarge(Limit::Record)));
    // 32 MiB of zeros, gzip (its ratio caps near 1000:1).
    let mut g = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    for _ in 0..32 {
        g.write_all(&zeros).unwrap();
    }
    let g = g.finish().unwrap();
    assert_eq!(bomb(&keys, Codec::Gzip, &g), Err(Error::TooLarge(Limit::Record)));
    // 64 MiB of zeros, brotli (in the largest window a record may use).
    let mut b = brotli::CompressorWriter::new(Vec::new(), 4096, 1, 18);
    for _ in 0..64 {
        b.write_all(&zeros).unwrap();
    }
    let b = b.into_inner();
    assert_eq!(bomb(&keys, Codec::Brotli, &b), Err(Error::TooLarge(Limit::Record)));
    // Snappy states its length up front: 1 MiB of zeros is refused before decoding.
    let s = snap::raw::Encoder::new().compress_vec(&zeros).unwrap();
    assert_eq!(bomb(&keys, Codec::Snappy, &s), Err(Error::TooLarge(Limit::Record)));
}

fn zstd_frame(data: &[u8], window_log: u32) -> Vec<u8> {
    let mut z = zstd::stream::Encoder::new(Vec::new(), 1).unwrap();
    z.window_log(window_log).unwrap();
    z.write_all(data).unwrap();
    z.finish().unwrap()
}

fn brotli_stream(data: &[u8], window_log: u32) -> Vec<u8> {
    let mut b = brotli::CompressorWriter::new(Vec::new(), 4096, 5, window_log);
    b.write_all(data).unwrap();
    b.into_inner()
}

fn gzip_member(data: &[u8]) -> Vec<u8> {
    let mut g = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    g.write_all(data).unwrap();
    g.finish().unwrap()
}

#[test]
fn bytes_after_a_compressed_stream_are_bad_codec() {
    let keys = ring();
    let data = b"the same words again and again, the same words again and again".repeat(20);
    for (codec, payload) in [
        (Codec::Gzip, gzip_member(&data)),
        (Codec::Brotli, brotli_stream(&data, 16)),
        (Codec::Zstd, zstd_frame(&data, 16)),
    ] {
        assert_eq!(bomb(&keys, codec, &payload).as_deref(), Ok(&data[..]), "{codec:?} alone opens");
        for tail in [&b"x"[..], &payload[..]] {
            let mut trailing = payload.clone();
            trailing.extend_from_slice(tail);
            assert_eq!(bomb(&keys, codec, &trailing), Err(Error::BadCodec), "{codec:?} + {} bytes", tail.len());
        }
    }
}

#[test]
fn decoder_windows_over_256_kib_are_refused() {
    let keys = ring();
    let data = b"abcdefgh".repeat(100);
    // The codec's own records declare small windows and open.
    let env = request(GCM, Codec::Zstd, None, 14);
    let (sig, sealed) = seal(&keys, &env, &body(200_000, 3), 0);
    assert_eq!(open(&keys, &env, &sig, &sealed, 0).map(|b| b.len()), Ok(200_000));
    let env = request(GCM, Codec::Brotli, None, 15);
    let (sig, sealed) = seal(&keys, &env, &body(200_000, 3), 0);
    assert_eq!(open(&keys, &env, &sig, &sealed, 0).map(|b| b.len()), Ok(200_000));
    // A stream that asks for a larger window is refused before it is decoded.
    for w in [19, 22, 24] {
        assert_eq!(bomb(&keys, Codec::Brotli, &brotli_stream(&data, w)), Err(Error::BadCodec), "brotli 2^{w}");
    }
    for w in [19, 20, 27] {
        assert_eq!(bomb(&keys, Codec::Zstd, &zstd_frame(&data, w)), Err(Error::BadCodec), "zstd 2^{w}");
    }
    assert_eq!(bomb(&keys, Codec::Brotli, &brotli_stream(&data, 18)).map(|b| b.len()), Ok(data.len()));
    assert_eq!(bomb(&keys, Codec::Zstd, &zstd_frame(&data, 18)).map(|b| b.len()), Ok(data.len()));
}

#[test]
fn a_response_must_use_its_requests_codec() {
    let keys = ring();
    let req = request(GCM, Codec::None, None, 16);
    let resp = Envelope {
        target: Target::Response { status: 200, request_nonce: req.nonce },
        nonce: Nonce([0x5a; 16]),
        deadline_ms: None,
        codec: Codec::Snappy,
        ..req
    };
    let (sig, _) = keys.seal(&resp, CompressOptions::default()).unwrap();
    let value = resp.header_value(&sig);
    assert_eq!(Envelope::parse_response(Some(&value), 200, &req).unwrap_err(), Error::BadCodec);
    let same = Envelope { codec: Codec::None, ..resp };
    let (sig, _) = keys.seal(&same, CompressOptions::default()).unwrap();
    assert!(Envelope::parse_response(Some(&same.header_value(&sig)), 200, &req).is_ok());
}

#[test]
fn a_record_may_open_to_at_most_32_times_its_size() {
    let keys = ring();
    for codec in [Codec::Snappy, Codec::Gzip, Codec::Brotli, Codec::Zstd] {
        for n in [500usize, 2048, 65536] {
            let zeros = vec![0u8; n];
            let payload = match codec {
                Codec::Snappy => snap::raw::Encoder::new().compress_vec(&zeros).unwrap(),
                Codec::Gzip => gzip_member(&zeros),
                Codec::Brotli => brotli_stream(&zeros, 16),
                _ => zstd_frame(&zeros, 16),
            };
            let opened = bomb(&keys, codec, &payload);
            if n <= MAX_EXPANSION * (payload.len() + 20) {
                assert_eq!(opened.map(|b| b.len()), Ok(n), "{codec:?} {n} in {}", payload.len());
            } else {
                assert_eq!(opened, Err(Error::TooLarge(Limit::Record)), "{codec:?} {n} in {}", payload.len());
            }
        }
    }
    // The sender keeps to the bound on its own: 4 MiB of zeros seals to at
    // least 1/32 of its size (and still far below it), and opens.
    for codec in [Codec::Snappy, Codec::Gzip, Codec::Brotli, Codec::Zstd] {
        let env = request(GCM, codec, None, 17);
        let data = vec![0u8; 4 << 20];
        let (sig, sealed) = seal(&keys, &env, &data, 0);
        assert!(sealed.len() * MAX_EXPANSION >= data.len(), "{codec:?}: {}", sealed.len());
        assert!(sealed.len() * 16 < data.len(), "{codec:?} still compresses: {}", sealed.len());
        assert_eq!(open(&keys, &env, &sig, &sealed, 1000).map(|b| b.len()), Ok(data.len()), "{codec:?}");
    }
}

#[test]
fn an_endless_stream_of_compressed_zeros_stops_at_the_body_limit() {
    let keys = ring();
    let env = request(GCM, Codec::Zstd, None, 12);
    let (sig, mut sealer) = keys.seal(&env, CompressOptions::default()).unwrap();
    let limit = 16 * 1024 * 1024;
    let mut opener = keys.verify(&env, &sig).unwrap().opener(Limits { max_body: limit });
    let zeros = vec![0u8; RECORD_MAX];
    let (mut wire, mut plain) = (bytes::BytesMut::new(), bytes::BytesMut::new());
    let mut sent = 0u64;
    let err = loop {
        assert!(sent < 1 << 30, "1 GiB went through");
        wire.clear();
        sealer.seal(&zeros, &mut wire).unwrap();
        sent += zeros.len() as u64;
        assert!(wire.len() < 4096, "each 64 KiB of zeros seals small: {}", wire.len());
        assert!(wire.len() * MAX_EXPANSION >= zeros.len(), "at most 32:1");
        if let Err(e) = opener.open(&wire, &mut plain) {
            break e;
        }
        plain.clear();
    };
    assert_eq!(err, Error::TooLarge(Limit::Body));
    assert_eq!(opener.plaintext_len(), limit);
    assert_eq!(sent, limit + RECORD_MAX as u64);
}

#[test]
fn error_messages_name_their_cause_and_carry_no_secrets() {
    let all = [
        Error::Malformed("x-fp nonce"),
        Error::UnsupportedVersion,
        Error::BadSignature,
        Error::StaleTimestamp,
        Error::Replay,
        Error::UnknownKey(KeyKind::Aead),
        Error::UnknownKey(KeyKind::Sign),
        Error::DisallowedAlgorithm,
        Error::CorruptRecord,
        Error::Truncated,
        Error::TooLarge(Limit::Record),
        Error::TooLarge(Limit::Body),
        Error::TooLarge(Limit::Header),
        Error::BadCodec,
        Error::LengthMismatch,
        Error::RecordLimit,
        Error::InvalidState,
        Error::BadKey,
    ];
    let mut codes = std::collections::HashSet::new();
    for e in &all {
        codes.insert(e.code());
        let text = e.to_string();
        assert!(!text.is_empty());
        assert!(!text.contains("3333"), "{text}");
    }
    assert_eq!(codes.len(), 15);
    let key = SignKey::new("sign-1", &SIGN_SECRET).unwrap();
    assert!(!format!("{key:?}").contains("51"), "Debug shows no secret bytes");
}

mod garbage {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// Arbitrary bytes never panic the opener and never open.
        #[test]
        fn random_bodies_are_rejected_without_panic(data in prop::collection::vec(any::<u8>(), 0..4096), codec in prop::sample::select(Codec::ALL.to_vec())) {
            let keys = ring();
            let env = request(GCM, codec, None, 13);
            let (sig, _) = keys.seal(&env, CompressOptions::default()).unwrap();
            prop_assert!(open(&keys, &env, &sig, &data, 3).is_err());
        }

        /// Arbitrary header values never panic the parser.
        #[test]
        fn random_fields_never_panic(values in prop::collection::vec(".{0,80}", 12)) {
            let h: HashMap<String, String> =
                envelope::Field::ALL.iter().map(|f| f.key().to_string()).zip(values).collect();
            let _ = verify_headers(&ring(), &h, "GET", "/", "");
        }

        /// Arbitrary whole header values never panic the parser.
        #[test]
        fn random_header_values_never_panic(value in "[a-z=;0-9]{0,120}|.{0,200}") {
            let _ = verify_value(&ring(), &value, "GET", "/", "");
        }
    }
}

/// A response to `request(GCM, none, …, 1)` with a body and trailers.
fn response_with_trailers(keys: &KeyRing) -> (Envelope<'static>, Signature, Vec<u8>, usize) {
    let env = Envelope {
        target: Target::Response { status: 200, request_nonce: Nonce([1; 16]) },
        content_type: "application/grpc",
        length: None,
        deadline_ms: None,
        ..request(GCM, Codec::None, None, 7)
    };
    let (sig, mut sealer) = keys.seal(&env, CompressOptions::default()).unwrap();
    let mut out = bytes::BytesMut::new();
    sealer.seal(b"\x00\x00\x00\x00\x05hello", &mut out).unwrap();
    let data_len = out.len() + 10 + 20; // the data record, once flushed
    let block = trailers::encode([("grpc-status", "0"), ("grpc-message", "done")]).unwrap();
    sealer.finish_with_trailers(&block, &mut out).unwrap();
    (env, sig, out.to_vec(), data_len)
}

fn open_response(
    keys: &KeyRing,
    env: &Envelope<'_>,
    sig: &Signature,
    sealed: &[u8],
) -> Result<(Vec<u8>, trailers::Fields)> {
    let mut opener = keys.verify(env, sig)?.opener(Limits::default());
    let mut out = bytes::BytesMut::new();
    opener.open(sealed, &mut out)?;
    opener.finish()?;
    Ok((out.to_vec(), opener.take_trailers().unwrap_or_default()))
}

#[test]
fn trailers_open_only_from_an_intact_trailer_record() {
    let keys = ring();
    let (env, sig, sealed, data_len) = response_with_trailers(&keys);
    let (body, fields) = open_response(&keys, &env, &sig, &sealed).unwrap();
    assert_eq!(body, b"\x00\x00\x00\x00\x05hello");
    assert_eq!(fields, vec![("grpc-status".into(), "0".into()), ("grpc-message".into(), "done".into())]);
    assert_eq!(sealed[data_len], 0x05, "the trailer record is FINAL | TRAILERS");
    // Every byte of the trailer record is covered.
    for i in data_len..sealed.len() {
        let mut bad = sealed.clone();
        bad[i] ^= 0x01;
        let err = open_response(&keys, &env, &sig, &bad).unwrap_err();
        assert!([Error::CorruptRecord, Error::Truncated].contains(&err), "byte {i}: {err:?}");
    }
    // Dropped: the data record is not final.
    assert_eq!(open_response(&keys, &env, &sig, &sealed[..data_len]).unwrap_err(), Error::Truncated);
    // Moved to another response (another body key).
    let other = Envelope { nonce: Nonce([8; 16]), ..env };
    let (other_sig, _) = keys.seal(&other, CompressOptions::default()).unwrap();
    assert!(open_response(&keys, &other, &other_sig, &sealed).is_err());
}

#[test]
fn trailer_records_break_no_rule_unnoticed() {
    let keys = ring();
    let block = reference::trailer_block(&[("grpc-status".into(), "0".into())]);
    let response = Envelope {
        target: Target::Response { status: 200, request_nonce: Nonce([1; 16]) },
        length: None,
        deadline_ms: None,
        ..request(GCM, Codec::Snappy, None, 9)
    };
    let (sig, _) = keys.seal(&response, CompressOptions::default()).unwrap();
    let key = RecordKey::Aead(&ring::aead::AES_256_GCM, reference::k_body(&AEAD_SECRET, &sig.0));
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("good", reference::record(&key, 0, 0x05, &block)),
        ("not final", [reference::record(&key, 0, 0x04, &block), reference::record(&key, 1, 0x01, b"")].concat()),
        ("compressed", reference::record(&key, 0, 0x07, &block)),
        ("empty", reference::record(&key, 0, 0x05, b"")),
        ("bad block", reference::record(&key, 0, 0x05, b"\x00\x01\x00\x01A\x00\x00")),
        ("too long", reference::record(&key, 0, 0x05, &vec![0u8; 8193])),
    ];
    for (name, rec) in cases {
        let r = open_response(&keys, &response, &sig, &rec);
        if name == "good" {
            assert_eq!(r.unwrap().1, vec![("grpc-status".into(), "0".into())]);
        } else {
            assert_eq!(r.unwrap_err(), Error::CorruptRecord, "{name}");
        }
    }
    // A request carries no trailers.
    let req = request(GCM, Codec::None, None, 10);
    let (sig, _) = keys.seal(&req, CompressOptions::default()).unwrap();
    let key = RecordKey::Aead(&ring::aead::AES_256_GCM, reference::k_body(&AEAD_SECRET, &sig.0));
    let rec = reference::record(&key, 0, 0x05, &block);
    assert_eq!(open(&keys, &req, &sig, &rec, 0).unwrap_err(), Error::CorruptRecord);
    // Nor does a body signed as empty: the sealer refuses.
    let empty = Envelope { length: Some(0), ..response };
    let (_, mut sealer) = keys.seal(&empty, CompressOptions::default()).unwrap();
    assert!(sealer.finish_with_trailers(&block, &mut bytes::BytesMut::new()).is_err());
}
