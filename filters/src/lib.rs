//! # fastproxy filters: the sealing codec
//!
//! The pure part of fastproxy: everything needed to seal an HTTP message for
//! the wire and to open it again, with no I/O, no async and no HTTP server.
//!
//! A message is an [`Envelope`] (signed metadata, carried in the `x-fp`
//! header) and a body of records ([`record`]): compressed, then encrypted
//! with a per-message key (or, in sign-only mode, authenticated with a
//! per-message MAC key). The wire format is specified byte by byte in
//! `docs/PROTOCOL.md`.
//!
//! Sending:
//! 1. build an [`Envelope`] (fresh [`Nonce`], current timestamp);
//! 2. [`KeyRing::seal`] → signature for the `x-fp` header and a [`Sealer`];
//! 3. feed body chunks to [`Sealer::seal`], end with [`Sealer::finish`].
//!
//! Receiving:
//! 1. [`Envelope::parse_request`] (or `parse_response`) from the `x-fp` header;
//! 2. [`KeyRing::verify`] → [`Verified`];
//! 3. [`ReplayGuard::check`] for requests (freshness + per-caller nonce cache);
//! 4. [`Verified::opener`] → feed the body to [`Opener::open`], end with
//!    [`Opener::finish`].
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod aead;
mod age_index;
pub mod codec;
pub mod envelope;
pub mod error;
pub mod hex;
pub mod keys;
pub mod message;
pub mod record;
pub mod refusal;
pub mod replay;
pub mod sign;
pub mod signature;
pub mod trailers;

pub use aead::Algorithm;
pub use codec::{Codec, CompressOptions};
pub use envelope::{Envelope, Nonce, NonceSource, Protection, Target};
pub use error::{Error, KeyKind, Limit, Result};
pub use keys::{AeadKey, KeyRing, SignKey};
pub use message::Verified;
pub use record::{sealed_len, Limits, Opener, Sealer, MAX_EXPANSION, RECORD_MAX};
pub use replay::ReplayGuard;
pub use signature::Signature;

/// Compares two byte strings in time that depends only on their lengths
/// (`subtle`, which keeps the optimiser from short-circuiting the loop).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// True when `s` is 1 to `max` bytes of `A-Z a-z 0-9 . _ -`: the alphabet of
/// service names, caller names and key ids.
pub fn valid_token(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}
