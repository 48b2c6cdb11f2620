//! Seals requests by hand with the codec, as an independent sender would:
//! any caller name, any key, any nonce, any body bytes after sealing. For
//! tests that must send what a well-behaved outbound proxy never sends.

use filters::{Algorithm, CompressOptions, Envelope, KeyRing, Nonce, Protection, Target};

use super::config::{sign_key, sign_secret, ROOM_V2};

fn bytes32(hex: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    assert!(filters::hex::decode_into(hex, &mut out), "test secret");
    out
}

/// A request to seal.
pub struct Hand<'a> {
    pub method: &'a str,
    /// The path below the service.
    pub path: &'a str,
    pub query: &'a str,
    /// The caller named in `c`.
    pub caller: &'a str,
    /// Whose sign key signs it (the caller's own by default).
    pub signer: &'a str,
    pub nonce: [u8; 16],
    pub body: &'a [u8],
    /// The signed length `l` (the body's by default; `Some(0)` for bodyless).
    pub length: Option<u64>,
    pub timestamp_ms: Option<u64>,
    pub codec: filters::Codec,
}

impl<'a> Hand<'a> {
    pub fn new(method: &'a str, path: &'a str, caller: &'a str) -> Self {
        let mut nonce = [0u8; 16];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce).expect("random");
        Hand {
            method,
            path,
            query: "",
            caller,
            signer: caller,
            nonce,
            body: b"",
            length: Some(0),
            timestamp_ms: None,
            codec: filters::Codec::None,
        }
    }

    pub fn body(mut self, body: &'a [u8]) -> Self {
        self.body = body;
        self.length = Some(body.len() as u64);
        self
    }
}

/// A sealed request: its `x-fp` value, target and sealed body.
pub struct Sealed {
    pub header: String,
    pub target: String,
    pub body: Vec<u8>,
}

/// Seals `h` for `token_service` with AES-256-GCM under `room-v2`.
pub fn seal(h: &Hand<'_>) -> Sealed {
    let mut ring = KeyRing::new();
    ring.add_aead(filters::AeadKey::new("room-v2", Algorithm::Aes256Gcm, &bytes32(ROOM_V2)).expect("key"));
    let sk = sign_key(h.signer);
    ring.add_sign(filters::SignKey::new(&sk, &bytes32(&sign_secret(h.signer))).expect("key"));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let env = Envelope {
        target: Target::Request { method: h.method, path: h.path, query: h.query },
        service: "token_service",
        caller: h.caller,
        content_type: "",
        codec: h.codec,
        protection: Protection::Encrypt { alg: Algorithm::Aes256Gcm, key: "room-v2" },
        sign_key: &sk,
        timestamp_ms: h.timestamp_ms.unwrap_or(now),
        nonce: Nonce(h.nonce),
        length: h.length,
        deadline_ms: None,
    };
    let (sig, mut sealer) = ring.seal(&env, CompressOptions::default()).expect("seal");
    let mut body = bytes::BytesMut::new();
    // A signed length other than the body's: the caller brings its own records.
    if h.length.is_none_or(|n| n == h.body.len() as u64) {
        sealer.seal(h.body, &mut body).expect("seal body");
        sealer.finish(&mut body).expect("finish");
    }
    let target = if h.query.is_empty() {
        format!("/token_service{}", h.path)
    } else {
        format!("/token_service{}?{}", h.path, h.query)
    };
    Sealed { header: env.header_value(&sig), target, body: body.to_vec() }
}

/// A sealed body built from raw record payloads, each marked COMPRESSED and
/// encrypted under the message's body key (PROTOCOL.md §2, §6) with no
/// check of what they decompress to: what a hostile sender can send.
pub fn raw_compressed_records(sealed: &Sealed, payloads: &[Vec<u8>]) -> Vec<u8> {
    use ring::{aead, hkdf};
    struct Len(usize);
    impl hkdf::KeyType for Len {
        fn len(&self) -> usize {
            self.0
        }
    }
    let sig_hex = sealed.header.split(";sig=").nth(1).expect("sig").split(';').next().expect("sig");
    let mut sig = [0u8; 32];
    assert!(filters::hex::decode_into(sig_hex, &mut sig));
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"fastproxy/1").extract(&bytes32(ROOM_V2));
    let mut k_body = [0u8; 32];
    prk.expand(&[b"fastproxy/1 body", &sig], Len(32)).expect("expand").fill(&mut k_body).expect("fill");
    let key = aead::LessSafeKey::new(aead::UnboundKey::new(&aead::AES_256_GCM, &k_body).expect("key"));
    let mut out = Vec::new();
    for (seq, payload) in payloads.iter().enumerate() {
        let flags = if seq + 1 == payloads.len() { 0x03 } else { 0x02 };
        let len = payload.len();
        let hdr = [flags, (len >> 16) as u8, (len >> 8) as u8, len as u8];
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&(seq as u64).to_be_bytes());
        let mut buf = payload.clone();
        let tag = key
            .seal_in_place_separate_tag(aead::Nonce::assume_unique_for_key(nonce), aead::Aad::from(hdr), &mut buf)
            .expect("seal");
        out.extend_from_slice(&hdr);
        out.extend_from_slice(&buf);
        out.extend_from_slice(tag.as_ref());
    }
    out
}
