//! Seal → open round trips for every algorithm × codec × body size.
mod common;

use common::*;
use filters::*;
use proptest::prelude::*;

const ALGS: [Option<Algorithm>; 3] = [None, Some(Algorithm::Aes256Gcm), Some(Algorithm::ChaCha20Poly1305)];
const R: usize = RECORD_MAX;

/// Sizes at and around record boundaries, plus the ends of the range.
const EDGE_SIZES: [usize; 12] = [0, 1, 2, 255, 256, R - 1, R, R + 1, 2 * R - 1, 2 * R, 2 * R + 1, 1 << 20];

/// Calls `case(alg, codec, body, length)` for every algorithm, codec and
/// edge size, with the signed length given and not.
fn every_case(mut case: impl FnMut(Option<Algorithm>, Codec, &[u8], Option<u64>)) {
    for alg in ALGS {
        for codec in Codec::ALL {
            for (i, &size) in EDGE_SIZES.iter().enumerate() {
                let data = body(size, i as u64);
                for length in [Some(size as u64), None] {
                    case(alg, codec, &data, length);
                }
            }
        }
    }
}

#[test]
fn every_alg_codec_and_edge_size_round_trips() {
    let keys = ring();
    every_case(|alg, codec, data, length| {
        let env = request(alg, codec, length, 7);
        let (sig, sealed) = seal(&keys, &env, data, 0);
        let opened = open(&keys, &env, &sig, &sealed, 0).unwrap();
        assert_eq!(opened, data, "alg {alg:?} codec {codec:?} size {}", data.len());
    });
}

#[test]
fn sealed_len_is_exact_for_codec_none() {
    let keys = ring();
    for &size in &EDGE_SIZES {
        let env = request(Some(Algorithm::Aes256Gcm), Codec::None, Some(size as u64), 1);
        let (_, sealed) = seal(&keys, &env, &vec![0u8; size], 1000);
        assert_eq!(sealed.len() as u64, sealed_len(size as u64), "size {size}");
    }
}

#[test]
fn compression_shrinks_compressible_bodies() {
    let keys = ring();
    let data = body(256 * 1024, 3);
    for codec in [Codec::Snappy, Codec::Gzip, Codec::Brotli, Codec::Zstd] {
        let env = request(Some(Algorithm::Aes256Gcm), codec, None, 2);
        let (_, sealed) = seal(&keys, &env, &data, 0);
        assert!(sealed.len() < data.len() / 2, "{codec:?}: {} of {}", sealed.len(), data.len());
    }
}

#[test]
fn responses_round_trip_and_bind_to_their_request() {
    let keys = ring();
    let req = request(Some(Algorithm::Aes256Gcm), Codec::Snappy, None, 9);
    let resp = Envelope {
        target: Target::Response { status: 201, request_nonce: req.nonce },
        nonce: Nonce([0xa5; 16]),
        deadline_ms: None,
        ..req
    };
    let data = body(5000, 4);
    let (sig, sealed) = seal(&keys, &resp, &data, 0);
    assert_eq!(open(&keys, &resp, &sig, &sealed, 0).unwrap(), data);

    // The same response presented as the answer to another request fails.
    let other = Envelope { target: Target::Response { status: 201, request_nonce: Nonce([1; 16]) }, ..resp };
    assert_eq!(open(&keys, &other, &sig, &sealed, 0).unwrap_err(), Error::BadSignature);
    // A different status fails.
    let status = Envelope { target: Target::Response { status: 200, request_nonce: req.nonce }, ..resp };
    assert_eq!(open(&keys, &status, &sig, &sealed, 0).unwrap_err(), Error::BadSignature);
}

#[test]
fn flushed_records_stream_small_chunks() {
    let keys = ring();
    let env = request(Some(Algorithm::Aes256Gcm), Codec::Snappy, None, 5);
    let (sig, mut sealer) = keys.seal(&env, CompressOptions::default()).unwrap();
    let mut opener = keys.verify(&env, &sig).unwrap().opener(Limits::default());
    let mut expected = Vec::new();
    let mut plain = bytes::BytesMut::new();
    for i in 0..50u8 {
        let chunk = vec![i; 10 + usize::from(i)];
        expected.extend_from_slice(&chunk);
        let mut wire = bytes::BytesMut::new();
        sealer.seal(&chunk, &mut wire).unwrap();
        sealer.flush(&mut wire).unwrap();
        // Every chunk is readable as soon as it is flushed.
        opener.open(&wire, &mut plain).unwrap();
        assert_eq!(plain.len(), expected.len());
    }
    let mut wire = bytes::BytesMut::new();
    sealer.finish(&mut wire).unwrap();
    opener.open(&wire, &mut plain).unwrap();
    opener.finish().unwrap();
    assert_eq!(&plain[..], &expected[..]);
}

fn alg_strategy() -> impl Strategy<Value = Option<Algorithm>> {
    prop::sample::select(ALGS.to_vec())
}

fn codec_strategy() -> impl Strategy<Value = Codec> {
    prop::sample::select(Codec::ALL.to_vec())
}

/// Sizes: mostly near record boundaries, sometimes anywhere up to 1 MiB.
fn size_strategy() -> impl Strategy<Value = usize> {
    prop_oneof![
        (0usize..=16, -8i64..=8).prop_map(|(k, d)| ((k * R) as i64 + d).max(0) as usize),
        0usize..=(1 << 20),
        0usize..=20_000,
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn seal_open_round_trip(
        alg in alg_strategy(),
        codec in codec_strategy(),
        size in size_strategy(),
        seed in any::<u64>(),
        seal_chunk in prop_oneof![Just(0usize), 1usize..100_000],
        open_chunk in prop_oneof![Just(0usize), 1usize..100_000],
        known_len in any::<bool>(),
    ) {
        let keys = ring();
        let data = body(size, seed);
        let env = request(alg, codec, known_len.then_some(size as u64), seed as u8);
        let (sig, sealed) = seal(&keys, &env, &data, seal_chunk);
        let opened = open(&keys, &env, &sig, &sealed, open_chunk).unwrap();
        prop_assert_eq!(opened, data);
    }

    #[test]
    fn random_bytes_round_trip(alg in alg_strategy(), codec in codec_strategy(), data in prop::collection::vec(any::<u8>(), 0..70_000)) {
        let keys = ring();
        let env = request(alg, codec, Some(data.len() as u64), 3);
        let (sig, sealed) = seal(&keys, &env, &data, 0);
        prop_assert_eq!(open(&keys, &env, &sig, &sealed, 7).unwrap(), data);
    }
}

#[test]
fn a_body_signed_as_empty_has_no_records() {
    let keys = ring();
    let env = request(Some(Algorithm::Aes256Gcm), Codec::None, Some(0), 4);
    let (sig, sealed) = seal(&keys, &env, &[], 0);
    assert!(sealed.is_empty());
    assert_eq!(open(&keys, &env, &sig, &sealed, 0).unwrap(), Vec::<u8>::new());
    // Any byte, even a well-formed empty final record, is refused.
    let unsigned = request(Some(Algorithm::Aes256Gcm), Codec::None, None, 4);
    let (_, with_record) = seal(&keys, &unsigned, &[], 0);
    assert_eq!(with_record.len(), 20);
    assert_eq!(open(&keys, &env, &sig, &with_record, 0), Err(Error::CorruptRecord));
}

#[test]
fn seal_final_writes_what_seal_then_finish_writes() {
    // The one-shot path for bodies known whole must not change the wire:
    // same records, same bytes, for every size, codec and length mode, and
    // the same errors for a length that does not match the signed one.
    let keys = ring();
    every_case(|alg, codec, data, length| {
        let env = request(alg, codec, length, 3);
        let (_, mut two_step) = keys.seal(&env, CompressOptions::default()).unwrap();
        let (_, mut one_shot) = keys.seal(&env, CompressOptions::default()).unwrap();
        let (mut a, mut b) = (bytes::BytesMut::new(), bytes::BytesMut::new());
        two_step.seal(data, &mut a).unwrap();
        two_step.finish(&mut a).unwrap();
        one_shot.seal_final(data, &mut b).unwrap();
        assert!(a == b, "alg {alg:?} codec {codec:?} size {} length {length:?}", data.len());
        // Finished: nothing more may be sealed.
        assert_eq!(one_shot.seal(b"x", &mut b), Err(Error::InvalidState));
    });
    // After a buffered chunk, the rest still follows it.
    let env = request(Some(Algorithm::Aes256Gcm), Codec::None, Some(3000), 4);
    let (sig, mut sealer) = keys.seal(&env, CompressOptions::default()).unwrap();
    let mut wire = bytes::BytesMut::new();
    sealer.seal(&body(1000, 1), &mut wire).unwrap();
    sealer.seal_final(&body(2000, 2), &mut wire).unwrap();
    let mut expected = body(1000, 1);
    expected.extend_from_slice(&body(2000, 2));
    assert_eq!(open(&keys, &env, &sig, &wire, 0).unwrap(), expected);
    // A length other than the signed one fails, as `finish` does.
    for size in [2999, 3001] {
        let (_, mut sealer) = keys.seal(&env, CompressOptions::default()).unwrap();
        let mut wire = bytes::BytesMut::new();
        assert_eq!(sealer.seal_final(&body(size, 1), &mut wire), Err(Error::LengthMismatch));
    }
}

#[test]
fn a_piece_that_completes_the_signed_length_can_end_the_body() {
    // What the proxies do when the last piece arrives before the end is
    // signalled: seal_final on the piece that completes the length, and no
    // finish after it. Same wire as seal + finish.
    let keys = ring();
    let env = request(Some(Algorithm::Aes256Gcm), Codec::None, Some(3000), 6);
    let (sig, mut sealer) = keys.seal(&env, CompressOptions::default()).unwrap();
    let (_, mut reference) = keys.seal(&env, CompressOptions::default()).unwrap();
    let (first, last) = (body(1000, 1), body(2000, 2));
    let mut wire = bytes::BytesMut::new();
    assert!(!sealer.completes(first.len()));
    sealer.seal(&first, &mut wire).unwrap();
    assert!(!sealer.completes(last.len() - 1) && !sealer.completes(last.len() + 1));
    assert!(sealer.completes(last.len()));
    sealer.seal_final(&last, &mut wire).unwrap();
    assert!(!sealer.completes(0), "finished");
    let mut expected = bytes::BytesMut::new();
    reference.seal(&first, &mut expected).unwrap();
    reference.seal(&last, &mut expected).unwrap();
    reference.finish(&mut expected).unwrap();
    assert!(wire == expected);
    let mut plain = first.clone();
    plain.extend_from_slice(&last);
    assert_eq!(open(&keys, &env, &sig, &wire, 0).unwrap(), plain);
    // A body of unknown length is never complete before its end.
    let env = request(Some(Algorithm::Aes256Gcm), Codec::None, None, 7);
    let (_, sealer) = keys.seal(&env, CompressOptions::default()).unwrap();
    assert!(!sealer.completes(0) && !sealer.completes(10));
}

#[test]
fn sign_empty_signs_what_seal_signs_for_an_empty_body_only() {
    let keys = ring();
    for alg in ALGS {
        let env = request(alg, Codec::None, Some(0), 7);
        let (sig, _) = keys.seal(&env, CompressOptions::default()).unwrap();
        assert_eq!(keys.sign_empty(&env).unwrap(), sig, "{alg:?}");
        assert!(keys.verify(&env, &sig).is_ok());
        for length in [None, Some(1)] {
            let env = request(alg, Codec::None, length, 7);
            assert_eq!(keys.sign_empty(&env), Err(Error::InvalidState), "{alg:?} {length:?}");
        }
    }
}
