//! Record protection: the two AEAD algorithms, and the per-message body key that
//! seals or authenticates one record at a time.
//!
//! Every message gets its own body key (derived in [`crate::keys`]), so record
//! nonces are a plain counter: `00 00 00 00 || seq (u64, big-endian)`. A nonce
//! can therefore never repeat under a key, across processes or restarts.

use ring::{aead, hmac};

use crate::error::{Error, Result};

/// Length of a record's authentication tag, for every protection mode.
pub const TAG_LEN: usize = 16;

/// An AEAD algorithm a message may be encrypted with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// AES-256-GCM: the default; fastest on CPUs with AES-NI.
    Aes256Gcm,
    /// ChaCha20-Poly1305: for CPUs without AES acceleration.
    ChaCha20Poly1305,
}

impl Algorithm {
    /// The algorithm's name on the wire and in configuration.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Aes256Gcm => "aes-256-gcm",
            Algorithm::ChaCha20Poly1305 => "chacha20-poly1305",
        }
    }

    /// Parses a wire/config name; `None` for anything else (including `"none"`).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "aes-256-gcm" => Some(Algorithm::Aes256Gcm),
            "chacha20-poly1305" => Some(Algorithm::ChaCha20Poly1305),
            _ => None,
        }
    }

    pub(crate) fn ring(self) -> &'static aead::Algorithm {
        match self {
            Algorithm::Aes256Gcm => &aead::AES_256_GCM,
            Algorithm::ChaCha20Poly1305 => &aead::CHACHA20_POLY1305,
        }
    }
}

/// The 12-byte nonce of record `seq`.
pub(crate) fn record_nonce(seq: u64) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&seq.to_be_bytes());
    n
}

/// A per-message key protecting the body records.
// Boxing the larger variant would cost an allocation per message for nothing:
// a body key lives inline in its sealer or opener.
#[allow(clippy::large_enum_variant)]
pub(crate) enum BodyKey {
    /// Encrypt-then-authenticate each record with an AEAD.
    Aead(aead::LessSafeKey),
    /// Sign-only mode: records travel in clear, each with a truncated HMAC tag.
    Mac(hmac::Key),
}

impl BodyKey {
    /// Seals `payload` in place as record `seq` with header `hdr`; returns the tag.
    pub(crate) fn seal(&self, seq: u64, hdr: &[u8; 4], payload: &mut [u8]) -> Result<[u8; TAG_LEN]> {
        let nonce = record_nonce(seq);
        match self {
            BodyKey::Aead(key) => {
                let tag = key
                    .seal_in_place_separate_tag(
                        aead::Nonce::assume_unique_for_key(nonce),
                        aead::Aad::from(hdr),
                        payload,
                    )
                    .map_err(|_| Error::RecordLimit)?;
                let mut out = [0u8; TAG_LEN];
                out.copy_from_slice(tag.as_ref());
                Ok(out)
            }
            BodyKey::Mac(key) => Ok(mac_tag(key, &nonce, hdr, payload)),
        }
    }

    /// Authenticates (and decrypts in place) record `seq`.
    pub(crate) fn open(&self, seq: u64, hdr: &[u8; 4], payload: &mut [u8], tag: &[u8]) -> Result<()> {
        let nonce = record_nonce(seq);
        match self {
            BodyKey::Aead(key) => {
                let tag = aead::Tag::try_from(tag).map_err(|_| Error::CorruptRecord)?;
                key.open_in_place_separate_tag(
                    aead::Nonce::assume_unique_for_key(nonce),
                    aead::Aad::from(hdr),
                    tag,
                    payload,
                    0..,
                )
                .map(|_| ())
                .map_err(|_| Error::CorruptRecord)
            }
            BodyKey::Mac(key) => {
                let expected = mac_tag(key, &nonce, hdr, payload);
                if crate::ct_eq(&expected, tag) {
                    Ok(())
                } else {
                    Err(Error::CorruptRecord)
                }
            }
        }
    }
}

/// `HMAC-SHA256(key, nonce || hdr || payload)` truncated to 16 bytes.
fn mac_tag(key: &hmac::Key, nonce: &[u8; 12], hdr: &[u8; 4], payload: &[u8]) -> [u8; TAG_LEN] {
    let mut ctx = hmac::Context::with_key(key);
    ctx.update(nonce);
    ctx.update(hdr);
    ctx.update(payload);
    let full = ctx.sign();
    let mut out = [0u8; TAG_LEN];
    out.copy_from_slice(&full.as_ref()[..TAG_LEN]);
    out
}
