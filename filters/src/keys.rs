//! Named keys, their derivations, and the key ring that holds them.
//!
//! A configured secret is never kept: it is run through HKDF-Extract once, at
//! load, and only the derived material lives on (inside `ring`'s key types,
//! which never print it). Every per-message key is an HKDF-Expand of that.
//!
//! ```text
//! PRK      = HKDF-Extract(salt = "fastproxy/1", IKM = secret)
//! K_sign   = HKDF-Expand(PRK_sign, "fastproxy/1 sign", 32)               HMAC-SHA256 key for signatures
//! K_body   = HKDF-Expand(PRK_aead, "fastproxy/1 body" || signature, 32)  AEAD key for one message's records
//! K_bmac   = HKDF-Expand(PRK_sign, "fastproxy/1 body-mac" || signature, 32)  sign-only record MAC key
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use ring::{aead, hkdf, hmac};

use crate::aead::{Algorithm, BodyKey};
use crate::error::{Error, KeyKind, Result};

/// Length of every secret: 32 bytes (256 bits).
pub const SECRET_LEN: usize = 32;
/// Longest key id the protocol accepts.
pub const MAX_KEY_ID_LEN: usize = 64;

pub(crate) const EXTRACT_SALT: &[u8] = b"fastproxy/1";
pub(crate) const INFO_SIGN: &[u8] = b"fastproxy/1 sign";
pub(crate) const INFO_BODY: &[u8] = b"fastproxy/1 body";
pub(crate) const INFO_BODY_MAC: &[u8] = b"fastproxy/1 body-mac";

/// True when `id` is a valid key id: 1–64 bytes of `A-Z a-z 0-9 . _ -`.
pub fn valid_key_id(id: &str) -> bool {
    crate::valid_token(id, MAX_KEY_ID_LEN)
}

fn extract(secret: &[u8]) -> Result<hkdf::Prk> {
    if secret.len() != SECRET_LEN {
        return Err(Error::BadKey);
    }
    Ok(hkdf::Salt::new(hkdf::HKDF_SHA256, EXTRACT_SALT).extract(secret))
}

/// An encryption key: its id, its algorithm, and its extracted PRK.
pub struct AeadKey {
    id: String,
    alg: Algorithm,
    prk: hkdf::Prk,
}

impl AeadKey {
    /// Builds a key from a 32-byte secret. Fails on a bad id or secret length.
    pub fn new(id: &str, alg: Algorithm, secret: &[u8]) -> Result<Self> {
        if !valid_key_id(id) {
            return Err(Error::Malformed("key id"));
        }
        Ok(AeadKey { id: id.to_owned(), alg, prk: extract(secret)? })
    }

    /// The key's id, as it travels in the `k` field of `x-fp`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The one algorithm this key may be used with.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    pub(crate) fn body_key(&self, signature: &[u8]) -> Result<BodyKey> {
        let info = [INFO_BODY, signature];
        let okm = self.prk.expand(&info, self.alg.ring()).map_err(|_| Error::BadKey)?;
        Ok(BodyKey::Aead(aead::LessSafeKey::new(aead::UnboundKey::from(okm))))
    }
}

impl fmt::Debug for AeadKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AeadKey").field("id", &self.id).field("alg", &self.alg).field("secret", &"<redacted>").finish()
    }
}

/// A signing key: signs message metadata, and in sign-only mode the records.
pub struct SignKey {
    id: String,
    sign: hmac::Key,
    prk: hkdf::Prk,
}

impl SignKey {
    /// Builds a key from a 32-byte secret. Fails on a bad id or secret length.
    pub fn new(id: &str, secret: &[u8]) -> Result<Self> {
        if !valid_key_id(id) {
            return Err(Error::Malformed("key id"));
        }
        let prk = extract(secret)?;
        let okm = prk.expand(&[INFO_SIGN], hmac::HMAC_SHA256).map_err(|_| Error::BadKey)?;
        Ok(SignKey { id: id.to_owned(), sign: hmac::Key::from(okm), prk })
    }

    /// The key's id, as it travels in the `s` field of `x-fp`.
    pub fn id(&self) -> &str {
        &self.id
    }

    pub(crate) fn mac(&self) -> &hmac::Key {
        &self.sign
    }

    /// A MAC key for another use of this key's secret (`label` is the HKDF
    /// info, e.g. `fastproxy/1 center` for the center's request
    /// authentication): independent of the keys that sign and seal messages.
    pub fn purpose_key(&self, label: &[u8]) -> Result<hmac::Key> {
        let info = [label];
        let okm = self.prk.expand(&info, hmac::HMAC_SHA256).map_err(|_| Error::BadKey)?;
        Ok(hmac::Key::from(okm))
    }

    pub(crate) fn body_key(&self, signature: &[u8]) -> Result<BodyKey> {
        let info = [INFO_BODY_MAC, signature];
        let okm = self.prk.expand(&info, hmac::HMAC_SHA256).map_err(|_| Error::BadKey)?;
        Ok(BodyKey::Mac(hmac::Key::from(okm)))
    }
}

impl fmt::Debug for SignKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignKey").field("id", &self.id).field("secret", &"<redacted>").finish()
    }
}

/// All keys a process knows, by id. Holding several keys of a kind is how a key
/// is rotated: the new key is added everywhere, senders switch to it, then the
/// old one is removed.
///
/// A ring is immutable once built and cheap to share (`Arc` per key); hot
/// reload builds a new ring and swaps it in whole.
#[derive(Debug, Default, Clone)]
pub struct KeyRing {
    aead: HashMap<String, Arc<AeadKey>>,
    sign: HashMap<String, Arc<SignKey>>,
}

impl KeyRing {
    /// An empty ring.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) an encryption key.
    pub fn add_aead(&mut self, key: AeadKey) {
        self.aead.insert(key.id.clone(), Arc::new(key));
    }

    /// Adds (or replaces) a signing key.
    pub fn add_sign(&mut self, key: SignKey) {
        self.sign.insert(key.id.clone(), Arc::new(key));
    }

    /// The encryption key named `id`.
    pub fn aead(&self, id: &str) -> Result<&AeadKey> {
        self.aead.get(id).map(|k| &**k).ok_or(Error::UnknownKey(KeyKind::Aead))
    }

    /// The signing key named `id`.
    pub fn sign(&self, id: &str) -> Result<&SignKey> {
        self.sign.get(id).map(|k| &**k).ok_or(Error::UnknownKey(KeyKind::Sign))
    }
}
