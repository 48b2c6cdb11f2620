//! The canonical form of an [`Envelope`] and its HMAC-SHA256 signature.
//!
//! The canonical form is a fixed sequence of 18 fields, each written as a
//! 4-byte big-endian length followed by the field's bytes, so no two different
//! envelopes share a canonical form. Integers are 8-byte big-endian; optional
//! integers are empty when absent. See `docs/PROTOCOL.md` §4.

use ring::hmac;

use crate::envelope::{Envelope, Target, NONCE_LEN};
use crate::error::{Error, Result};
use crate::keys::SignKey;
pub use crate::signature::Signature;

/// Domain label: the first canonical field.
pub const LABEL: &[u8] = b"fastproxy/1";

/// Where canonical bytes go: a MAC context when signing, a buffer when
/// showing the canonical form (spec, test vectors).
trait Sink {
    fn put(&mut self, bytes: &[u8]);
    fn field(&mut self, bytes: &[u8]) {
        // Every field is far below 4 GiB: names and ids are length-checked.
        self.put(&(bytes.len() as u32).to_be_bytes());
        self.put(bytes);
    }
    fn int(&mut self, v: Option<u64>) {
        match v {
            Some(v) => self.field(&v.to_be_bytes()),
            None => self.field(&[]),
        }
    }
}

/// Feeds a MAC context in blocks: the canonical form is 36 short pieces,
/// and each `update` call has a fixed cost of its own, so they are gathered
/// on the stack and passed on a few hundred bytes at a time.
struct Gathered {
    ctx: hmac::Context,
    buf: [u8; GATHER_LEN],
    len: usize,
}

/// Bytes gathered before they are passed on (a typical canonical form fits).
const GATHER_LEN: usize = 384;

impl Gathered {
    fn new(key: &hmac::Key) -> Self {
        Gathered { ctx: hmac::Context::with_key(key), buf: [0; GATHER_LEN], len: 0 }
    }

    fn sign(mut self) -> hmac::Tag {
        self.ctx.update(&self.buf[..self.len]);
        self.ctx.sign()
    }
}

impl Sink for Gathered {
    fn put(&mut self, bytes: &[u8]) {
        if self.len + bytes.len() > GATHER_LEN {
            self.ctx.update(&self.buf[..self.len]);
            self.len = 0;
        }
        if bytes.len() > GATHER_LEN {
            self.ctx.update(bytes);
        } else {
            self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
            self.len += bytes.len();
        }
    }
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

fn write_canonical(env: &Envelope<'_>, s: &mut impl Sink) {
    s.field(LABEL);
    match env.target {
        Target::Request { method, path, query } => {
            s.field(b"request");
            s.field(method.as_bytes());
            s.field(env.service.as_bytes());
            s.field(path.as_bytes());
            s.field(query.as_bytes());
            s.field(env.caller.as_bytes());
            s.field(&[]);
            s.field(&[]);
        }
        Target::Response { status, request_nonce } => {
            s.field(b"response");
            s.field(&[]);
            s.field(env.service.as_bytes());
            s.field(&[]);
            s.field(&[]);
            s.field(env.caller.as_bytes());
            s.field(&status.to_be_bytes());
            s.field(&request_nonce.0);
        }
    }
    s.field(env.content_type.as_bytes());
    s.field(env.codec.name().as_bytes());
    s.field(env.protection.alg_name().as_bytes());
    s.field(env.protection.key_id().as_bytes());
    s.field(env.sign_key.as_bytes());
    s.int(Some(env.timestamp_ms));
    s.field(&env.nonce.0);
    s.int(env.length);
    s.int(env.deadline_ms);
}

/// The canonical bytes of `env`, exactly as signed.
pub fn canonical(env: &Envelope<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(160 + NONCE_LEN);
    write_canonical(env, &mut out);
    out
}

/// Signs `env` with `key`. The caller checks that `key` is the key `env` names.
pub(crate) fn sign(key: &SignKey, env: &Envelope<'_>) -> Signature {
    let mut sink = Gathered::new(key.mac());
    write_canonical(env, &mut sink);
    let tag = sink.sign();
    let mut sig = [0u8; 32];
    sig.copy_from_slice(tag.as_ref());
    Signature(sig)
}

/// Verifies `sig` over `env` in constant time.
pub(crate) fn verify(key: &SignKey, env: &Envelope<'_>, sig: &Signature) -> Result<()> {
    let expected = sign(key, env);
    if crate::ct_eq(&expected.0, &sig.0) {
        Ok(())
    } else {
        Err(Error::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Codec;
    use crate::envelope::{Nonce, Protection};

    fn env(path: &str) -> Envelope<'_> {
        Envelope {
            target: Target::Request { method: "POST", path, query: "id=7" },
            service: "token_service",
            caller: "song_service",
            content_type: "application/json",
            codec: Codec::None,
            protection: Protection::SignOnly,
            sign_key: "sign",
            timestamp_ms: 1_764_115_200_000,
            nonce: Nonce([9; NONCE_LEN]),
            length: Some(1024),
            deadline_ms: None,
        }
    }

    #[test]
    fn the_signature_is_the_mac_of_the_canonical_form_at_every_length() {
        // Paths from empty to well past the gathering buffer, so that a field
        // ends exactly at, just before and just after its edge, and one field
        // is longer than the buffer itself.
        let key = SignKey::new("sign", &[7; 32]).expect("key");
        let long = "/a".repeat(600);
        for len in 0..long.len() {
            let e = env(&long[..len]);
            let expected = hmac::sign(key.mac(), &canonical(&e));
            assert_eq!(sign(&key, &e).0, expected.as_ref(), "path of {len} bytes");
        }
    }
}
