//! The two entry points: seal a message (sign its envelope, start its body) and
//! verify one (check its signature, prepare to open its body).

use crate::aead::BodyKey;
use crate::codec::CompressOptions;
use crate::envelope::{Envelope, Protection};
use crate::error::{Error, Result};
use crate::keys::{AeadKey, KeyRing, SignKey};
use crate::record::{Limits, Opener, Sealer};
use crate::sign::{self, Signature};

impl KeyRing {
    /// Signs `env` with the keys it names and returns the signature (for
    /// the `sig` field of `x-fp`) and a [`Sealer`] for the body. The body must have
    /// exactly `env.length` bytes when that is set.
    pub fn seal(&self, env: &Envelope<'_>, opts: CompressOptions) -> Result<(Signature, Sealer)> {
        let (sign_key, aead) = self.keys_for(env)?;
        let sig = sign::sign(sign_key, env);
        let key = body_key(sign_key, aead, &sig)?;
        Ok((sig, Sealer::new(key, env.codec, opts, env.length)))
    }

    /// Signs `env` with the keys it names, for a message signed as empty
    /// (`env.length` is `Some(0)`): it has no records, so no body key.
    pub fn sign_empty(&self, env: &Envelope<'_>) -> Result<Signature> {
        if env.length != Some(0) {
            return Err(Error::InvalidState);
        }
        let (sign_key, _) = self.keys_for(env)?;
        Ok(sign::sign(sign_key, env))
    }

    /// Verifies a received envelope's signature, in constant time, with the
    /// keys it names. Freshness and replay are checked separately, after this
    /// (see [`crate::replay::ReplayGuard`]); policy (which keys and
    /// algorithms a caller may use) is the receiver's, before or after.
    pub fn verify(&self, env: &Envelope<'_>, sig: &Signature) -> Result<Verified> {
        let (sign_key, aead) = self.keys_for(env)?;
        sign::verify(sign_key, env, sig)?;
        let key = body_key(sign_key, aead, sig)?;
        // Only responses may end in a trailer record (PROTOCOL.md §6.5).
        let responds = matches!(env.target, crate::envelope::Target::Response { .. });
        Ok(Verified { opener: Opener::new(key, env.codec, env.length, Limits::default()).allowing_trailers(responds) })
    }

    /// The keys `env` names: its sign key and, unless it is sign-only, its
    /// AEAD key (which must be for the algorithm `env` names).
    fn keys_for(&self, env: &Envelope<'_>) -> Result<(&SignKey, Option<&AeadKey>)> {
        Ok((self.sign(env.sign_key)?, self.aead_for(env)?))
    }

    fn aead_for(&self, env: &Envelope<'_>) -> Result<Option<&AeadKey>> {
        match env.protection {
            Protection::SignOnly => Ok(None),
            Protection::Encrypt { alg, key } => {
                let k = self.aead(key)?;
                if k.algorithm() != alg {
                    return Err(Error::DisallowedAlgorithm);
                }
                Ok(Some(k))
            }
        }
    }
}

/// The body key of the message signed `sig` (PROTOCOL.md §3): from the AEAD
/// key, or from the sign key for a sign-only message.
fn body_key(sign_key: &SignKey, aead: Option<&AeadKey>, sig: &Signature) -> Result<BodyKey> {
    match aead {
        Some(k) => k.body_key(&sig.0),
        None => sign_key.body_key(&sig.0),
    }
}

/// A message whose signature verified; its body can now be opened.
pub struct Verified {
    opener: Opener,
}

impl Verified {
    /// The body opener, enforcing `limits`.
    pub fn opener(self, limits: Limits) -> Opener {
        self.opener.with_limits(limits)
    }
}
