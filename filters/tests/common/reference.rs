//! An independent implementation of docs/PROTOCOL.md, written from the
//! document with `ring` only (no code from the crate under test). The tests use
//! it to check the crate against the spec and to forge records an honest
//! sender would never produce (reordered, bombs).
#![allow(dead_code)]

use ring::{aead, hkdf, hmac};

pub fn prk(secret: &[u8]) -> hkdf::Prk {
    hkdf::Salt::new(hkdf::HKDF_SHA256, b"fastproxy/1").extract(secret)
}

struct Len(usize);
impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

fn expand(secret: &[u8], info: &[&[u8]]) -> [u8; 32] {
    let mut out = [0u8; 32];
    prk(secret).expand(info, Len(32)).unwrap().fill(&mut out).unwrap();
    out
}

pub fn k_sign(secret: &[u8]) -> [u8; 32] {
    expand(secret, &[b"fastproxy/1 sign"])
}

pub fn k_body(aead_secret: &[u8], sig: &[u8]) -> [u8; 32] {
    expand(aead_secret, &[b"fastproxy/1 body", sig])
}

pub fn k_bmac(sign_secret: &[u8], sig: &[u8]) -> [u8; 32] {
    expand(sign_secret, &[b"fastproxy/1 body-mac", sig])
}

/// Canonical form: each field as u32 big-endian length + bytes.
pub fn canonical(fields: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in fields {
        out.extend_from_slice(&(f.len() as u32).to_be_bytes());
        out.extend_from_slice(f);
    }
    out
}

pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data);
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

pub enum RecordKey {
    Aead(&'static aead::Algorithm, [u8; 32]),
    Mac([u8; 32]),
}

fn nonce(seq: u64) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&seq.to_be_bytes());
    n
}

/// One record: flags, u24 length, payload (encrypted or clear), 16-byte tag.
pub fn record(key: &RecordKey, seq: u64, flags: u8, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let hdr = [flags, (len >> 16) as u8, (len >> 8) as u8, len as u8];
    let mut out = hdr.to_vec();
    match key {
        RecordKey::Aead(alg, k) => {
            let key = aead::LessSafeKey::new(aead::UnboundKey::new(alg, k).unwrap());
            let mut buf = payload.to_vec();
            let tag = key
                .seal_in_place_separate_tag(
                    aead::Nonce::assume_unique_for_key(nonce(seq)),
                    aead::Aad::from(hdr),
                    &mut buf,
                )
                .unwrap();
            out.extend_from_slice(&buf);
            out.extend_from_slice(tag.as_ref());
        }
        RecordKey::Mac(k) => {
            let mut data = nonce(seq).to_vec();
            data.extend_from_slice(&hdr);
            data.extend_from_slice(payload);
            out.extend_from_slice(payload);
            out.extend_from_slice(&hmac_sha256(k, &data)[..16]);
        }
    }
    out
}

/// A trailer block (PROTOCOL.md §6.5): u16be count, then each name and value
/// with a u16be length.
pub fn trailer_block(fields: &[(String, String)]) -> Vec<u8> {
    let mut out = (fields.len() as u16).to_be_bytes().to_vec();
    for (name, value) in fields {
        out.extend_from_slice(&(name.len() as u16).to_be_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&(value.len() as u16).to_be_bytes());
        out.extend_from_slice(value.as_bytes());
    }
    out
}
