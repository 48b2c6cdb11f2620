//! The signed metadata of one message, and its encoding as the single
//! `x-fp` header.
//!
//! An [`Envelope`] borrows its strings from the HTTP request or response it
//! describes, so parsing one allocates nothing; writing one appends to a
//! caller-supplied buffer.
//!
//! The header value is a fixed-order list of `key=value` fields separated by
//! `;` (see [`Field`]); `ct` (the content type, which may itself contain `;`)
//! is always last and runs to the end of the value. One header instead of one
//! per field keeps the per-message cost of HTTP header handling small.

use crate::aead::Algorithm;
use crate::codec::Codec;
use crate::error::{Error, Limit, Result};
use crate::signature::Signature;

/// The protocol version this crate speaks, as carried in the `v` field.
pub const VERSION: &str = "1";
/// Length of a message nonce in bytes.
pub const NONCE_LEN: usize = 16;
/// Longest service or caller name the protocol accepts.
pub const MAX_NAME_LEN: usize = 128;
/// Longest content type (`ct` field) the protocol accepts.
pub const MAX_CONTENT_TYPE_LEN: usize = 256;
/// Longest `x-fp` header value the protocol accepts.
pub const MAX_HEADER_LEN: usize = 1024;
/// Name of the protocol header (lower case, as HTTP/2 requires).
pub const HEADER: &str = "x-fp";

/// A field of the `x-fp` header, declared in wire order: each appears at
/// most once, and in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// `v`: protocol version; always `1` here.
    Version,
    /// `c`: calling service's identity (requests only).
    Caller,
    /// `a`: AEAD algorithm name, or `none` in sign-only mode.
    Alg,
    /// `k`: encryption key id (absent in sign-only mode).
    Key,
    /// `s`: signing key id.
    SignKey,
    /// `z`: compression codec of the records.
    Codec,
    /// `t`: sender's clock, Unix time in milliseconds.
    Timestamp,
    /// `n`: the message nonce, 32 lower-case hex digits.
    Nonce,
    /// `l`: plaintext body length in bytes, when the sender knows it.
    Length,
    /// `d`: caller's deadline, Unix time in milliseconds (requests only, optional).
    Deadline,
    /// `sig`: HMAC-SHA256 over the canonical metadata, 64 lower-case hex digits.
    Signature,
    /// `ct`: the plaintext's original `Content-Type` (absent when it had
    /// none); always last, its value runs to the end of the header.
    ContentType,
}

impl Field {
    /// Every field, in wire order.
    pub const ALL: [Field; 12] = [
        Field::Version,
        Field::Caller,
        Field::Alg,
        Field::Key,
        Field::SignKey,
        Field::Codec,
        Field::Timestamp,
        Field::Nonce,
        Field::Length,
        Field::Deadline,
        Field::Signature,
        Field::ContentType,
    ];

    /// The field's key on the wire.
    pub const fn key(self) -> &'static str {
        match self {
            Field::Version => "v",
            Field::Caller => "c",
            Field::Alg => "a",
            Field::Key => "k",
            Field::SignKey => "s",
            Field::Codec => "z",
            Field::Timestamp => "t",
            Field::Nonce => "n",
            Field::Length => "l",
            Field::Deadline => "d",
            Field::Signature => "sig",
            Field::ContentType => "ct",
        }
    }

    /// The error for this field missing or malformed, naming it for people.
    fn malformed(self) -> Error {
        Error::Malformed(match self {
            Field::Version => "x-fp version",
            Field::Caller => "x-fp caller",
            Field::Alg => "x-fp alg",
            Field::Key => "x-fp key",
            Field::SignKey => "x-fp sign-key",
            Field::Codec => "x-fp codec",
            Field::Timestamp => "x-fp timestamp",
            Field::Nonce => "x-fp nonce",
            Field::Length => "x-fp length",
            Field::Deadline => "x-fp deadline",
            Field::Signature => "x-fp signature",
            Field::ContentType => "x-fp content-type",
        })
    }
}

/// The fields of one `x-fp` header value, split but not yet interpreted.
#[derive(Debug, Clone, Copy, Default)]
pub struct Fields<'a>([Option<&'a str>; 12]);

impl<'a> Fields<'a> {
    /// Splits a header value into its fields. Unknown keys, repeated keys,
    /// keys out of order and empty fields are [`Error::Malformed`].
    pub fn parse(value: &'a str) -> Result<Self> {
        if value.len() > MAX_HEADER_LEN {
            return Err(Error::TooLarge(Limit::Header));
        }
        let mut out = [None; 12];
        let mut next = 0; // index in Field::ALL of the earliest field still allowed
        let mut rest = value;
        while !rest.is_empty() {
            let (key, after) = rest.split_once('=').ok_or(Error::Malformed(HEADER))?;
            let at = Field::ALL[next..].iter().position(|f| f.key() == key).ok_or(Error::Malformed(HEADER))? + next;
            let (val, tail) = if Field::ALL[at] == Field::ContentType {
                (after, "")
            } else {
                match after.split_once(';') {
                    Some((v, t)) if !t.is_empty() => (v, t),
                    Some(_) => return Err(Error::Malformed(HEADER)),
                    None => (after, ""),
                }
            };
            out[at] = Some(val);
            next = at + 1;
            rest = tail;
        }
        Ok(Fields(out))
    }

    /// The value of `field`, if present.
    pub fn get(&self, field: Field) -> Option<&'a str> {
        self.0[field as usize]
    }
}

/// Which way a message travels, with the fields that only that way has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// Caller → callee.
    Request {
        /// HTTP method, as on the request line.
        method: &'a str,
        /// Path below the service segment, starting with `/`, as on the wire.
        path: &'a str,
        /// Query string without `?`, exactly as on the wire; empty when none.
        query: &'a str,
    },
    /// Callee → caller.
    Response {
        /// HTTP status code.
        status: u16,
        /// The nonce of the request this answers: binds the two together.
        request_nonce: Nonce,
    },
}

/// How the body records are protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protection<'a> {
    /// Records travel in clear, each authenticated by an HMAC tag.
    SignOnly,
    /// Records are encrypted and authenticated with `alg` under key `key`.
    Encrypt {
        /// The AEAD algorithm.
        alg: Algorithm,
        /// The encryption key's id.
        key: &'a str,
    },
}

impl Protection<'_> {
    /// The value of the `a` (algorithm) field.
    pub fn alg_name(&self) -> &'static str {
        match self {
            Protection::SignOnly => "none",
            Protection::Encrypt { alg, .. } => alg.name(),
        }
    }

    /// The encryption key id, empty in sign-only mode.
    pub fn key_id(&self) -> &str {
        match self {
            Protection::SignOnly => "",
            Protection::Encrypt { key, .. } => key,
        }
    }
}

/// A message's 128-bit nonce: unique per message, never reused.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Nonce(pub [u8; NONCE_LEN]);

impl Nonce {
    /// A fresh nonce from the operating system's CSPRNG.
    pub fn random(rng: &dyn ring::rand::SecureRandom) -> Result<Self> {
        let mut n = [0u8; NONCE_LEN];
        rng.fill(&mut n).map_err(|_| Error::InvalidState)?;
        Ok(Nonce(n))
    }

    /// Parses 32 lower-case hex digits.
    pub fn from_hex(s: &str) -> Option<Self> {
        let mut n = [0u8; NONCE_LEN];
        crate::hex::decode_into(s, &mut n).then_some(Nonce(n))
    }
}

/// A source of unique message nonces that needs no system call per message:
/// 128 random bits drawn once, the low 64 of them then counting up. Two
/// sources (processes) overlap only if their random starting points fall
/// within each other's count, negligible for 128-bit starts.
pub struct NonceSource {
    prefix: [u8; 8],
    counter: std::sync::atomic::AtomicU64,
}

impl NonceSource {
    /// A source starting at a fresh random point from `rng`.
    pub fn new(rng: &dyn ring::rand::SecureRandom) -> Result<Self> {
        let start = Nonce::random(rng)?.0;
        let (prefix, count) = start.split_at(8);
        let mut p = [0u8; 8];
        p.copy_from_slice(prefix);
        let mut c = [0u8; 8];
        c.copy_from_slice(count);
        Ok(NonceSource { prefix: p, counter: std::sync::atomic::AtomicU64::new(u64::from_be_bytes(c)) })
    }

    /// The next nonce; never the same twice from one source (the counter
    /// would need 2⁶⁴ messages to come around).
    pub fn next_nonce(&self) -> Nonce {
        let n = self.counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut out = [0u8; NONCE_LEN];
        out[..8].copy_from_slice(&self.prefix);
        out[8..].copy_from_slice(&n.to_be_bytes());
        Nonce(out)
    }
}

impl std::fmt::Debug for NonceSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NonceSource")
    }
}

impl std::fmt::Debug for Nonce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut buf = [0u8; 2 * NONCE_LEN];
        f.write_str(crate::hex::encode_into(&self.0, &mut buf))
    }
}

/// Everything a message's signature covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// Direction and its direction-specific fields.
    pub target: Target<'a>,
    /// The callee service.
    pub service: &'a str,
    /// The calling service.
    pub caller: &'a str,
    /// The plaintext's `Content-Type`; empty when it had none.
    pub content_type: &'a str,
    /// Compression applied to records before protection.
    pub codec: Codec,
    /// Encryption or sign-only, with algorithm and key id.
    pub protection: Protection<'a>,
    /// Id of the signing key.
    pub sign_key: &'a str,
    /// Sender's clock, Unix milliseconds.
    pub timestamp_ms: u64,
    /// Per-message nonce.
    pub nonce: Nonce,
    /// Plaintext body length, when known before the body is sent.
    pub length: Option<u64>,
    /// Caller's deadline, Unix milliseconds (requests only).
    pub deadline_ms: Option<u64>,
}

impl<'a> Envelope<'a> {
    /// Appends this message's `x-fp` header value, signature included, to
    /// `out`.
    pub fn write_header(&self, sig: &Signature, out: &mut String) {
        self.write_fields(sig, |k, v| {
            if !out.is_empty() {
                out.push(';');
            }
            out.push_str(k);
            out.push('=');
            out.push_str(v);
        });
    }

    /// The `x-fp` header value as a new string, allocated once at its exact
    /// size (so an HTTP library can take it over without another allocation).
    pub fn header_value(&self, sig: &Signature) -> String {
        let mut len = 0;
        self.write_fields(sig, |k, v| len += usize::from(len > 0) + k.len() + 1 + v.len());
        let mut out = String::with_capacity(len);
        self.write_header(sig, &mut out);
        out
    }

    /// Calls `put(key, value)` for every field of this message's `x-fp`
    /// header, in wire order, including the signature.
    pub fn write_fields(&self, sig: &Signature, mut put: impl FnMut(&'static str, &str)) {
        let mut num = [0u8; 20];
        put(Field::Version.key(), VERSION);
        if let Target::Request { .. } = self.target {
            put(Field::Caller.key(), self.caller);
        }
        put(Field::Alg.key(), self.protection.alg_name());
        if let Protection::Encrypt { key, .. } = self.protection {
            put(Field::Key.key(), key);
        }
        put(Field::SignKey.key(), self.sign_key);
        put(Field::Codec.key(), self.codec.name());
        put(Field::Timestamp.key(), fmt_u64(self.timestamp_ms, &mut num));
        let mut nonce = [0u8; 2 * NONCE_LEN];
        put(Field::Nonce.key(), crate::hex::encode_into(&self.nonce.0, &mut nonce));
        if let Some(len) = self.length {
            put(Field::Length.key(), fmt_u64(len, &mut num));
        }
        if let (Target::Request { .. }, Some(deadline)) = (self.target, self.deadline_ms) {
            put(Field::Deadline.key(), fmt_u64(deadline, &mut num));
        }
        let mut hex = [0u8; 64];
        put(Field::Signature.key(), crate::hex::encode_into(&sig.0, &mut hex));
        if !self.content_type.is_empty() {
            put(Field::ContentType.key(), self.content_type);
        }
    }

    /// Reads a request's envelope from its `x-fp` header value (`None` when
    /// the request has none) and request line. `service`, `path` and `query`
    /// come from the request target `/<service><path>?<query>`.
    pub fn parse_request(
        header: Option<&'a str>,
        method: &'a str,
        service: &'a str,
        path: &'a str,
        query: &'a str,
    ) -> Result<(Self, Signature)> {
        let f = Fields::parse(header.ok_or(Error::Malformed(HEADER))?)?;
        let caller = f.get(Field::Caller).ok_or(Field::Caller.malformed())?;
        if !crate::valid_token(caller, MAX_NAME_LEN) {
            return Err(Field::Caller.malformed());
        }
        if !crate::valid_token(service, MAX_NAME_LEN) {
            return Err(Error::Malformed("service"));
        }
        let deadline_ms = optional_u64(&f, Field::Deadline)?;
        let target = Target::Request { method, path, query };
        parse_common(&f, target, service, caller, deadline_ms)
    }

    /// Reads a response's envelope from its `x-fp` header value and status,
    /// for the request `request` it answers. A response must use the
    /// request's protection and keys; anything else is
    /// [`Error::DisallowedAlgorithm`].
    pub fn parse_response(header: Option<&'a str>, status: u16, request: &Envelope<'a>) -> Result<(Self, Signature)> {
        let f = Fields::parse(header.ok_or(Error::Malformed(HEADER))?)?;
        if f.get(Field::Caller).is_some() || f.get(Field::Deadline).is_some() {
            return Err(Error::Malformed(HEADER));
        }
        let target = Target::Response { status, request_nonce: request.nonce };
        let (env, sig) = parse_common(&f, target, request.service, request.caller, None)?;
        if env.protection != request.protection || env.sign_key != request.sign_key {
            return Err(Error::DisallowedAlgorithm);
        }
        if env.codec != request.codec {
            return Err(Error::BadCodec);
        }
        Ok((env, sig))
    }
}

fn parse_common<'a>(
    f: &Fields<'a>,
    target: Target<'a>,
    service: &'a str,
    caller: &'a str,
    deadline_ms: Option<u64>,
) -> Result<(Envelope<'a>, Signature)> {
    match f.get(Field::Version) {
        Some(VERSION) => {}
        Some(_) => return Err(Error::UnsupportedVersion),
        None => return Err(Field::Version.malformed()),
    }
    let protection = match f.get(Field::Alg).ok_or(Field::Alg.malformed())? {
        "none" => match f.get(Field::Key) {
            None => Protection::SignOnly,
            Some(_) => return Err(Field::Key.malformed()),
        },
        name => {
            let alg = Algorithm::from_name(name).ok_or(Error::DisallowedAlgorithm)?;
            let key = key_id(f, Field::Key)?;
            Protection::Encrypt { alg, key }
        }
    };
    let sign_key = key_id(f, Field::SignKey)?;
    let codec = f.get(Field::Codec).ok_or(Field::Codec.malformed())?;
    let codec = Codec::from_name(codec).ok_or(Error::BadCodec)?;
    let timestamp_ms = optional_u64(f, Field::Timestamp)?.ok_or(Field::Timestamp.malformed())?;
    let nonce = f.get(Field::Nonce).and_then(Nonce::from_hex).ok_or(Field::Nonce.malformed())?;
    let length = optional_u64(f, Field::Length)?;
    let content_type = match f.get(Field::ContentType) {
        None => "",
        Some(ct) if ct.len() > MAX_CONTENT_TYPE_LEN => return Err(Field::ContentType.malformed()),
        Some(ct) if !ct.is_empty() && ct.bytes().all(|b| (0x20..0x7f).contains(&b)) => ct,
        Some(_) => return Err(Field::ContentType.malformed()),
    };
    let mut sig = Signature([0u8; 32]);
    let hex = f.get(Field::Signature).ok_or(Field::Signature.malformed())?;
    if !crate::hex::decode_into(hex, &mut sig.0) {
        return Err(Field::Signature.malformed());
    }
    let env = Envelope {
        target,
        service,
        caller,
        content_type,
        codec,
        protection,
        sign_key,
        timestamp_ms,
        nonce,
        length,
        deadline_ms,
    };
    Ok((env, sig))
}

fn key_id<'a>(f: &Fields<'a>, field: Field) -> Result<&'a str> {
    match f.get(field) {
        Some(id) if crate::keys::valid_key_id(id) => Ok(id),
        _ => Err(field.malformed()),
    }
}

/// A field holding a canonical decimal `u64`: 1–20 digits, no sign, no
/// leading zero (except `0` itself), no overflow.
fn optional_u64(f: &Fields<'_>, field: Field) -> Result<Option<u64>> {
    let Some(text) = f.get(field) else { return Ok(None) };
    let canonical = !text.is_empty()
        && text.len() <= 20
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    if !canonical {
        return Err(field.malformed());
    }
    text.parse().map(Some).map_err(|_| field.malformed())
}

/// Formats `v` as decimal into `buf` and returns it as text.
fn fmt_u64(mut v: u64, buf: &mut [u8; 20]) -> &str {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    // Only ASCII digits were written.
    std::str::from_utf8(&buf[i..]).unwrap_or("0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_source_counts_up_from_a_random_start() {
        let rng = ring::rand::SystemRandom::new();
        let (a, b) = (NonceSource::new(&rng).unwrap(), NonceSource::new(&rng).unwrap());
        let (a1, a2, b1) = (a.next_nonce(), a.next_nonce(), b.next_nonce());
        assert_eq!(a1.0[..8], a2.0[..8], "one prefix per source");
        let count = |n: &Nonce| u64::from_be_bytes(n.0[8..].try_into().unwrap());
        assert_eq!(count(&a2), count(&a1).wrapping_add(1));
        assert_ne!(a1, b1, "two sources start apart");
        let seen: std::collections::HashSet<Nonce> = (0..10_000).map(|_| a.next_nonce()).collect();
        assert_eq!(seen.len(), 10_000);
    }
}
