//! The codec's error model: one enum, one stable machine-readable code per variant.
//!
//! Messages name the failed check and never contain key material, plaintext or
//! attacker-supplied bytes, so they are safe to log and to return to a peer.

use std::fmt;

/// Which configured limit a message exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Limit {
    /// A record's stored or decompressed payload exceeded [`crate::RECORD_MAX`].
    Record,
    /// The opened plaintext exceeded the receiver's maximum body size.
    Body,
    /// A protocol header value was longer than the protocol allows.
    Header,
}

/// Which kind of key a lookup failed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// An encryption (AEAD) key.
    Aead,
    /// A signing (HMAC) key.
    Sign,
}

/// Why a message could not be sealed, verified or opened.
///
/// Every variant maps to a stable code ([`Error::code`]) that the gateway puts in
/// its JSON error bodies and metrics labels.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A protocol header or one of its fields is missing or not of its form;
    /// names it.
    Malformed(&'static str),
    /// The message declares a protocol version this build does not speak.
    UnsupportedVersion,
    /// The HMAC signature over the canonical metadata did not verify.
    BadSignature,
    /// The timestamp is outside the receiver's freshness window.
    StaleTimestamp,
    /// The nonce was already seen inside the freshness window.
    Replay,
    /// The named key is not in the receiver's key ring.
    UnknownKey(KeyKind),
    /// The algorithm is not the one the named key is configured for, or the
    /// receiver does not allow it.
    DisallowedAlgorithm,
    /// A record failed authentication, was reordered, duplicated, spliced from
    /// another message, or its framing is invalid.
    CorruptRecord,
    /// The body ended before its final record.
    Truncated,
    /// A size limit was exceeded.
    TooLarge(Limit),
    /// The codec is unknown, or a compressed record does not decompress.
    BadCodec,
    /// The opened body's length differs from the signed plaintext length.
    LengthMismatch,
    /// The per-message record counter would overflow.
    RecordLimit,
    /// The sealer or opener was used after it finished.
    InvalidState,
    /// A key's secret is not of the required length.
    BadKey,
}

impl Error {
    /// A stable, lower-case code for logs, metrics and JSON error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Malformed(_) => "malformed",
            Error::UnsupportedVersion => "unsupported_version",
            Error::BadSignature => "bad_signature",
            Error::StaleTimestamp => "stale_timestamp",
            Error::Replay => "replay",
            Error::UnknownKey(_) => "unknown_key",
            Error::DisallowedAlgorithm => "disallowed_algorithm",
            Error::CorruptRecord => "corrupt_record",
            Error::Truncated => "truncated",
            Error::TooLarge(_) => "too_large",
            Error::BadCodec => "bad_codec",
            Error::LengthMismatch => "length_mismatch",
            Error::RecordLimit => "record_limit",
            Error::InvalidState => "invalid_state",
            Error::BadKey => "bad_key",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Malformed(what) => write!(f, "{what} is missing or malformed"),
            Error::UnsupportedVersion => f.write_str("unsupported protocol version"),
            Error::BadSignature => f.write_str("signature does not verify"),
            Error::StaleTimestamp => f.write_str("timestamp outside the freshness window"),
            Error::Replay => f.write_str("nonce already seen (replayed message)"),
            Error::UnknownKey(KeyKind::Aead) => f.write_str("unknown encryption key id"),
            Error::UnknownKey(KeyKind::Sign) => f.write_str("unknown signing key id"),
            Error::DisallowedAlgorithm => f.write_str("algorithm not allowed for this key"),
            Error::CorruptRecord => f.write_str("body record failed authentication or framing"),
            Error::Truncated => f.write_str("body ended before its final record"),
            Error::TooLarge(Limit::Record) => f.write_str("record exceeds the record size limit"),
            Error::TooLarge(Limit::Body) => f.write_str("body exceeds the maximum size"),
            Error::TooLarge(Limit::Header) => f.write_str("protocol header value too long"),
            Error::BadCodec => f.write_str("unknown codec or undecodable compressed record"),
            Error::LengthMismatch => f.write_str("body length differs from the signed length"),
            Error::RecordLimit => f.write_str("too many records in one message"),
            Error::InvalidState => f.write_str("codec used after it finished or failed"),
            Error::BadKey => f.write_str("key secret has the wrong length"),
        }
    }
}

impl std::error::Error for Error {}

/// Result alias used throughout the crate.
pub type Result<T> = std::result::Result<T, Error>;
