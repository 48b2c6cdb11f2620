//! The test vectors in docs/PROTOCOL.md, checked three ways: the crate produces
//! them, an independent implementation of the spec (tests/common/reference.rs)
//! produces them, and the crate opens them.
mod common;

use std::collections::BTreeMap;

use common::reference::{self, RecordKey};
use filters::*;

const SPEC: &str = include_str!("../../docs/PROTOCOL.md");

fn secret(start: u8) -> Vec<u8> {
    (start..start + 32).collect()
}

fn keys() -> KeyRing {
    let mut r = KeyRing::new();
    r.add_aead(AeadKey::new("room-v2", Algorithm::Aes256Gcm, &secret(0x00)).unwrap());
    r.add_aead(AeadKey::new("chacha-v1", Algorithm::ChaCha20Poly1305, &secret(0x20)).unwrap());
    r.add_sign(SignKey::new("sign-v1", &secret(0x40)).unwrap());
    r
}

fn aead_secret(id: &str) -> Vec<u8> {
    match id {
        "room-v2" => secret(0x00),
        "chacha-v1" => secret(0x20),
        _ => panic!("unknown key {id}"),
    }
}

/// Deterministic body bytes: byte i is `i mod 251`.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// One vector's inputs, as written in the spec.
struct Input {
    f: BTreeMap<String, String>,
    /// `trailer <name>: <value>` lines, in order.
    trailers: Vec<(String, String)>,
}

impl Input {
    fn get(&self, k: &str) -> &str {
        self.f.get(k).map(|s| s.as_str()).unwrap_or_else(|| panic!("vector lacks {k}"))
    }
    fn opt_u64(&self, k: &str) -> Option<u64> {
        self.f.get(k).map(|v| v.parse().unwrap())
    }
    fn body(&self) -> Vec<u8> {
        match (self.f.get("body"), self.f.get("body-pattern")) {
            (Some(hex), None) => filters::hex::decode(hex).unwrap(),
            (None, Some(n)) => pattern(n.parse().unwrap()),
            _ => panic!("vector needs one of body, body-pattern"),
        }
    }
    fn envelope(&self) -> Envelope<'_> {
        let protection = match self.get("alg") {
            "none" => Protection::SignOnly,
            alg => Protection::Encrypt { alg: Algorithm::from_name(alg).unwrap(), key: self.get("key") },
        };
        let target = match self.get("direction") {
            "request" => {
                Target::Request { method: self.get("method"), path: self.get("path"), query: self.get("query") }
            }
            _ => Target::Response {
                status: self.get("status").parse().unwrap(),
                request_nonce: Nonce::from_hex(self.get("request-nonce")).unwrap(),
            },
        };
        Envelope {
            target,
            service: self.get("service"),
            caller: self.get("caller"),
            content_type: self.f.get("content-type").map(|s| s.as_str()).unwrap_or(""),
            codec: Codec::from_name(self.get("codec")).unwrap(),
            protection,
            sign_key: self.get("sign-key"),
            timestamp_ms: self.get("timestamp").parse().unwrap(),
            nonce: Nonce::from_hex(self.get("nonce")).unwrap(),
            length: self.opt_u64("length"),
            deadline_ms: self.opt_u64("deadline"),
        }
    }
}

/// The canonical fields, straight from the spec's table (§4), for the
/// reference implementation.
fn reference_fields(i: &Input) -> Vec<Vec<u8>> {
    let s = |k: &str| i.f.get(k).map(|v| v.as_bytes().to_vec()).unwrap_or_default();
    let int = |k: &str| i.opt_u64(k).map(|v| v.to_be_bytes().to_vec()).unwrap_or_default();
    let request = i.get("direction") == "request";
    let nonce = |k: &str| filters::hex::decode(i.get(k)).unwrap();
    vec![
        b"fastproxy/1".to_vec(),
        s("direction"),
        if request { s("method") } else { vec![] },
        s("service"),
        if request { s("path") } else { vec![] },
        if request { s("query") } else { vec![] },
        s("caller"),
        if request { vec![] } else { i.get("status").parse::<u16>().unwrap().to_be_bytes().to_vec() },
        if request { vec![] } else { nonce("request-nonce") },
        s("content-type"),
        s("codec"),
        s("alg"),
        if i.get("alg") == "none" { vec![] } else { s("key") },
        s("sign-key"),
        int("timestamp"),
        nonce("nonce"),
        int("length"),
        int("deadline"),
    ]
}

/// A vector: inputs, and expected outputs (`canonical`, `signature`,
/// `header …` lines, `sealed` or `sealed-sha256`).
struct Vector {
    name: String,
    input: Input,
    expect: BTreeMap<String, String>,
    headers: Vec<(String, String)>,
}

fn parse_vectors() -> Vec<Vector> {
    let mut out = Vec::new();
    let mut lines = SPEC.lines();
    while let Some(line) = lines.next() {
        if line.trim() != "```vector" {
            continue;
        }
        let mut v = Vector {
            name: String::new(),
            input: Input { f: BTreeMap::new(), trailers: vec![] },
            expect: BTreeMap::new(),
            headers: vec![],
        };
        let mut last_key = String::new();
        for line in lines.by_ref() {
            if line.trim() == "```" {
                break;
            }
            if let Some(cont) = line.strip_prefix("    ") {
                // Continuation of a long hex value.
                v.expect.get_mut(&last_key).unwrap().push_str(cont.trim());
                continue;
            }
            let (k, val) = line.split_once(':').unwrap_or_else(|| panic!("bad vector line {line:?}"));
            let (k, val) = (k.trim().to_string(), val.trim().to_string());
            if let Some(h) = k.strip_prefix("header ") {
                v.headers.push((h.to_string(), val));
            } else if let Some(t) = k.strip_prefix("trailer ") {
                v.input.trailers.push((t.to_string(), val));
            } else if let Some(c) = k.strip_prefix("carrier ") {
                v.expect.insert(format!("carrier {c}"), val);
            } else if k == "name" {
                v.name = val;
            } else if ["canonical", "signature", "sealed", "sealed-sha256"].contains(&k.as_str()) {
                last_key = k.clone();
                v.expect.insert(k, val);
            } else {
                v.input.f.insert(k, val);
            }
        }
        out.push(v);
    }
    out
}

fn sha256_hex(data: &[u8]) -> String {
    filters::hex::encode(ring::digest::digest(&ring::digest::SHA256, data).as_ref())
}

fn sealed_by_crate(
    keys: &KeyRing,
    env: &Envelope<'_>,
    body: &[u8],
    trailers: &[(String, String)],
) -> (Signature, Vec<u8>) {
    let (sig, mut sealer) = keys.seal(env, CompressOptions::default()).unwrap();
    let mut out = bytes::BytesMut::new();
    sealer.seal(body, &mut out).unwrap();
    if trailers.is_empty() {
        sealer.finish(&mut out).unwrap();
    } else {
        let block = filters::trailers::encode(trailers.iter().map(|(k, v)| (k.as_str(), v.as_str()))).unwrap();
        sealer.finish_with_trailers(&block, &mut out).unwrap();
    }
    (sig, out.to_vec())
}

/// Standard base64 with padding (RFC 4648 §4), for the trailer carrier.
fn base64(data: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The last record of a sealed body (codec `none`: records are parsed by
/// their length field).
fn last_record(sealed: &[u8]) -> &[u8] {
    let mut at = 0;
    loop {
        let len =
            (usize::from(sealed[at + 1]) << 16) | (usize::from(sealed[at + 2]) << 8) | usize::from(sealed[at + 3]);
        let end = at + 4 + len + 16;
        if end == sealed.len() {
            return &sealed[at..];
        }
        at = end;
    }
}

/// Seals with the reference implementation: codec `none`, full records every
/// 65536 bytes, then a final record.
fn sealed_by_reference(i: &Input, sig: &[u8], body: &[u8]) -> Vec<u8> {
    let key = match i.get("alg") {
        "none" => RecordKey::Mac(reference::k_bmac(&secret(0x40), sig)),
        "aes-256-gcm" => RecordKey::Aead(&ring::aead::AES_256_GCM, reference::k_body(&aead_secret(i.get("key")), sig)),
        _ => RecordKey::Aead(&ring::aead::CHACHA20_POLY1305, reference::k_body(&aead_secret(i.get("key")), sig)),
    };
    let mut out = Vec::new();
    let full = body.len() / RECORD_MAX;
    for seq in 0..full {
        out.extend(reference::record(&key, seq as u64, 0, &body[seq * RECORD_MAX..(seq + 1) * RECORD_MAX]));
    }
    if i.trailers.is_empty() {
        out.extend(reference::record(&key, full as u64, 1, &body[full * RECORD_MAX..]));
        return out;
    }
    // The rest of the body as a record of its own (if any), then the trailer
    // record: FINAL | TRAILERS.
    let mut seq = full as u64;
    if body.len() > full * RECORD_MAX {
        out.extend(reference::record(&key, seq, 0, &body[full * RECORD_MAX..]));
        seq += 1;
    }
    out.extend(reference::record(&key, seq, 0x05, &reference::trailer_block(&i.trailers)));
    out
}

#[test]
fn spec_vectors_match_the_crate_and_the_reference() {
    let vectors = parse_vectors();
    assert!(vectors.len() >= 6, "the spec holds its vectors ({} found)", vectors.len());
    let keys = keys();
    for v in &vectors {
        let env = v.input.envelope();
        let body = v.input.body();
        // Canonical form and signature: crate, reference, spec agree.
        let canonical = filters::hex::encode(&sign::canonical(&env));
        assert_eq!(canonical, v.expect["canonical"], "{}: canonical (crate)", v.name);
        let fields = reference_fields(&v.input);
        let field_refs: Vec<&[u8]> = fields.iter().map(|f| f.as_slice()).collect();
        let ref_canonical = reference::canonical(&field_refs);
        assert_eq!(filters::hex::encode(&ref_canonical), v.expect["canonical"], "{}: canonical (reference)", v.name);
        let ref_sig = reference::hmac_sha256(&reference::k_sign(&secret(0x40)), &ref_canonical);
        assert_eq!(filters::hex::encode(&ref_sig), v.expect["signature"], "{}: signature (reference)", v.name);

        let (sig, sealed) = sealed_by_crate(&keys, &env, &body, &v.input.trailers);
        assert_eq!(filters::hex::encode(&sig.0), v.expect["signature"], "{}: signature (crate)", v.name);
        if let Some(carrier) = v.expect.get("carrier x-fp-trailer") {
            assert_eq!(base64(last_record(&sealed)), *carrier, "{}: trailer carrier", v.name);
        }
        // Headers, in the order the crate writes them.
        let headers = vec![(filters::envelope::HEADER.to_string(), env.header_value(&sig))];
        assert_eq!(headers, v.headers, "{}: headers", v.name);
        // Body bytes.
        let codec_none = v.input.get("codec") == "none";
        match (v.expect.get("sealed"), v.expect.get("sealed-sha256")) {
            (Some(hex), _) => {
                let wire = filters::hex::decode(hex).unwrap();
                assert_eq!(filters::hex::encode(&sealed), *hex, "{}: sealed (crate)", v.name);
                if codec_none {
                    assert_eq!(sealed_by_reference(&v.input, &sig.0, &body), wire, "{}: sealed (reference)", v.name);
                }
            }
            (None, Some(digest)) => {
                assert_eq!(sha256_hex(&sealed), *digest, "{}: sealed digest (crate)", v.name);
                if codec_none {
                    assert_eq!(
                        sha256_hex(&sealed_by_reference(&v.input, &sig.0, &body)),
                        *digest,
                        "{}: (reference)",
                        v.name
                    );
                }
            }
            _ => panic!("{}: no expected body", v.name),
        }
        // The receiver side: parse the headers back, verify, open.
        let get = v.headers.iter().find(|(k, _)| k == filters::envelope::HEADER).map(|(_, val)| val.as_str());
        let (parsed, parsed_sig) = match env.target {
            Target::Request { method, path, query } => {
                Envelope::parse_request(get, method, env.service, path, query).unwrap()
            }
            Target::Response { status, .. } => {
                let req = Envelope {
                    target: Target::Request { method: "GET", path: "/", query: "" },
                    nonce: match env.target {
                        Target::Response { request_nonce, .. } => request_nonce,
                        _ => unreachable!(),
                    },
                    ..env
                };
                Envelope::parse_response(get, status, &req).unwrap()
            }
        };
        assert_eq!(parsed, env, "{}: parsed envelope", v.name);
        let mut opener = keys.verify(&parsed, &parsed_sig).unwrap().opener(Limits::default());
        let mut plain = bytes::BytesMut::new();
        opener.open(&sealed, &mut plain).unwrap();
        opener.finish().unwrap();
        assert_eq!(&plain[..], &body[..], "{}: opened body", v.name);
        let opened_trailers = opener.take_trailers().unwrap_or_default();
        assert_eq!(opened_trailers, v.input.trailers, "{}: opened trailers", v.name);
    }
}

/// Prints the vector blocks for docs/PROTOCOL.md (run with `--ignored --nocapture`).
#[test]
#[ignore]
fn print_vectors() {
    let keys = keys();
    let json = br#"{"user":42,"action":"transfer","amount":"10.00"}"#;
    let big_json: Vec<u8> = br#"{"id":1,"name":"fastproxy","tags":["a","b","c"]},"#.repeat(8);
    let req_nonce = "000102030405060708090a0b0c0d0e0f";
    let base = |name: &str| -> Vec<(&str, String)> { vec![("name", name.to_string())] };
    let mut vectors: Vec<Vec<(&str, String)>> = Vec::new();
    let request =
        |alg: &str, key: &str, codec: &str, method: &str, body: &str, len: Option<usize>, deadline: bool, ct: bool| {
            let mut v: Vec<(&str, String)> = vec![
                ("direction", "request".into()),
                ("method", method.into()),
                ("service", "token_service".into()),
                ("path", "/api/service".into()),
                ("query", "id=7&lang=en".into()),
                ("caller", "song_service".into()),
            ];
            if ct {
                v.push(("content-type", "application/json".into()));
            }
            v.push(("codec", codec.into()));
            v.push(("alg", alg.into()));
            if alg != "none" {
                v.push(("key", key.into()));
            }
            v.push(("sign-key", "sign-v1".into()));
            v.push(("timestamp", "1764115200000".into()));
            v.push(("nonce", req_nonce.into()));
            if let Some(l) = len {
                v.push(("length", l.to_string()));
            }
            if deadline {
                v.push(("deadline", "1764115205000".into()));
            }
            v.push(("body", body.into()));
            v
        };
    let hexj = filters::hex::encode(json);
    let mut v = base("request-aes-256-gcm");
    v.extend(request("aes-256-gcm", "room-v2", "none", "POST", &hexj, Some(json.len()), true, true));
    vectors.push(v);
    let mut v = base("request-chacha20-poly1305-empty");
    v.extend(request("chacha20-poly1305", "chacha-v1", "none", "GET", "", None, false, false));
    vectors.push(v);
    let mut v = base("request-sign-only");
    v.extend(request("none", "", "none", "PUT", &hexj, Some(json.len()), false, true));
    vectors.push(v);
    let mut v = base("request-snappy");
    v.extend(request(
        "aes-256-gcm",
        "room-v2",
        "snappy",
        "POST",
        &filters::hex::encode(&big_json),
        Some(big_json.len()),
        false,
        true,
    ));
    vectors.push(v);
    let mut v = base("request-multi-record");
    let mut r = request("aes-256-gcm", "room-v2", "none", "POST", "", Some(140_000), false, false);
    r.retain(|(k, _)| *k != "body");
    r.push(("body-pattern", "140000".into()));
    v.extend(r);
    vectors.push(v);
    // Responses to the request above: status, content type, signed length, body.
    let response = |name: &str, status: &str, ct: &str, length: Option<usize>, body: String| {
        let mut v: Vec<(&str, String)> = vec![
            ("name", name.into()),
            ("direction", "response".into()),
            ("status", status.into()),
            ("request-nonce", req_nonce.into()),
            ("service", "token_service".into()),
            ("caller", "song_service".into()),
            ("content-type", ct.into()),
            ("codec", "none".into()),
            ("alg", "aes-256-gcm".into()),
            ("key", "room-v2".into()),
            ("sign-key", "sign-v1".into()),
            ("timestamp", "1764115200042".into()),
            ("nonce", "f0e1d2c3b4a5968778695a4b3c2d1e0f".into()),
        ];
        if let Some(l) = length {
            v.push(("length", l.to_string()));
        }
        v.push(("body", body));
        v
    };
    vectors.push(response(
        "response-aes-256-gcm",
        "201",
        "application/json",
        Some(11),
        filters::hex::encode(br#"{"ok":true}"#),
    ));
    // A gRPC response: one length-prefixed message, then the status as trailers.
    let mut v = response("response-trailers", "200", "application/grpc", None, "000000000568656c6c6f".into());
    v.push(("trailer grpc-status", "0".into()));
    v.push(("trailer grpc-message", "done".into()));
    vectors.push(v);
    for fields in vectors {
        let trailers: Vec<(String, String)> =
            fields.iter().filter_map(|(k, v)| k.strip_prefix("trailer ").map(|t| (t.to_string(), v.clone()))).collect();
        let input = Input {
            f: fields
                .iter()
                .filter(|(k, _)| *k != "name" && !k.starts_with("trailer "))
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            trailers: trailers.clone(),
        };
        let env = input.envelope();
        let body = input.body();
        let (sig, sealed) = sealed_by_crate(&keys, &env, &body, &trailers);
        println!("```vector");
        for (k, v) in &fields {
            println!("{k}: {v}");
        }
        wrap("canonical", &filters::hex::encode(&sign::canonical(&env)));
        println!("signature: {}", filters::hex::encode(&sig.0));
        println!("header {}: {}", filters::envelope::HEADER, env.header_value(&sig));
        if sealed.len() > 512 {
            println!("sealed-sha256: {}", sha256_hex(&sealed));
        } else {
            wrap("sealed", &filters::hex::encode(&sealed));
        }
        if !trailers.is_empty() {
            println!("carrier x-fp-trailer: {}", base64(last_record(&sealed)));
        }
        println!("```\n");
    }
}

fn wrap(key: &str, hex: &str) {
    let mut chunks = hex.as_bytes().chunks(64);
    println!("{key}: {}", std::str::from_utf8(chunks.next().unwrap_or_default()).unwrap());
    for c in chunks {
        println!("    {}", std::str::from_utf8(c).unwrap());
    }
}
