//! The signed metadata of one message, and its mapping to `x-fp-*` headers.
//!
//! An [`Envelope`] borrows its strings from the HTTP request or response it
//! describes, so building or parsing one allocates nothing. Header values are
//! formatted into stack buffers handed to a callback.

use crate::aead::Algorithm;
use crate::codec::Codec;
use crate::error::{Error, Limit, Result};
use crate::sign::Signature;

/// The protocol version this crate speaks, as carried in `x-fp-version`.
pub const VERSION: &str = "1";
/// Length of a message nonce in bytes.
pub const NONCE_LEN: usize = 16;
/// Longest service or caller name the protocol accepts.
pub const MAX_NAME_LEN: usize = 128;
/// Longest `x-fp-content-type` value the protocol accepts.
pub const MAX_CONTENT_TYPE_LEN: usize = 256;

/// Names of the protocol headers (lower case, as HTTP/2 requires).
pub mod header {
    /// Protocol version; always `1` here.
    pub const VERSION: &str = "x-fp-version";
    /// Calling service's identity (requests only).
    pub const CALLER: &str = "x-fp-caller";
    /// AEAD algorithm name, or `none` in sign-only mode.
    pub const ALG: &str = "x-fp-alg";
    /// Encryption key id (absent in sign-only mode).
    pub const KEY: &str = "x-fp-key";
    /// Signing key id.
    pub const SIGN_KEY: &str = "x-fp-sign-key";
    /// Compression codec of the records.
    pub const CODEC: &str = "x-fp-codec";
    /// Sender's clock, Unix time in milliseconds.
    pub const TIMESTAMP: &str = "x-fp-timestamp";
    /// 16 random bytes, 32 lower-case hex digits.
    pub const NONCE: &str = "x-fp-nonce";
    /// Plaintext body length in bytes, when the sender knows it.
    pub const LENGTH: &str = "x-fp-length";
    /// Caller's deadline, Unix time in milliseconds (requests only, optional).
    pub const DEADLINE: &str = "x-fp-deadline";
    /// The plaintext's original `Content-Type` (absent when it had none).
    pub const CONTENT_TYPE: &str = "x-fp-content-type";
    /// HMAC-SHA256 over the canonical metadata, 64 lower-case hex digits.
    pub const SIGNATURE: &str = "x-fp-signature";
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
    /// The value of `x-fp-alg`.
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
    /// Calls `put(name, value)` for every protocol header of this message,
    /// including `x-fp-signature`. Nothing is allocated.
    pub fn write_headers(&self, sig: &Signature, mut put: impl FnMut(&'static str, &str)) {
        let mut num = [0u8; 20];
        put(header::VERSION, VERSION);
        if let Target::Request { .. } = self.target {
            put(header::CALLER, self.caller);
        }
        put(header::ALG, self.protection.alg_name());
        if let Protection::Encrypt { key, .. } = self.protection {
            put(header::KEY, key);
        }
        put(header::SIGN_KEY, self.sign_key);
        put(header::CODEC, self.codec.name());
        put(header::TIMESTAMP, fmt_u64(self.timestamp_ms, &mut num));
        let mut nonce = [0u8; 2 * NONCE_LEN];
        put(header::NONCE, crate::hex::encode_into(&self.nonce.0, &mut nonce));
        if let Some(len) = self.length {
            put(header::LENGTH, fmt_u64(len, &mut num));
        }
        if let (Target::Request { .. }, Some(deadline)) = (self.target, self.deadline_ms) {
            put(header::DEADLINE, fmt_u64(deadline, &mut num));
        }
        if !self.content_type.is_empty() {
            put(header::CONTENT_TYPE, self.content_type);
        }
        let mut hex = [0u8; 64];
        put(header::SIGNATURE, crate::hex::encode_into(&sig.0, &mut hex));
    }

    /// Reads a request's envelope from its headers (`get` looks one up by its
    /// lower-case name) and request line. `service`, `path` and `query` come
    /// from the request target `/<service><path>?<query>`.
    pub fn parse_request(
        get: impl Fn(&str) -> Option<&'a str>,
        method: &'a str,
        service: &'a str,
        path: &'a str,
        query: &'a str,
    ) -> Result<(Self, Signature)> {
        let caller = get(header::CALLER).ok_or(Error::Malformed(header::CALLER))?;
        if !crate::valid_token(caller, MAX_NAME_LEN) {
            return Err(Error::Malformed(header::CALLER));
        }
        if !crate::valid_token(service, MAX_NAME_LEN) {
            return Err(Error::Malformed("service"));
        }
        let deadline_ms = optional_u64(&get, header::DEADLINE)?;
        let target = Target::Request { method, path, query };
        parse_common(&get, target, service, caller, deadline_ms)
    }

    /// Reads a response's envelope from its headers and status, for the
    /// request `request` it answers. A response must use the request's
    /// protection and keys; anything else is [`Error::DisallowedAlgorithm`].
    pub fn parse_response(
        get: impl Fn(&str) -> Option<&'a str>,
        status: u16,
        request: &Envelope<'a>,
    ) -> Result<(Self, Signature)> {
        let target = Target::Response { status, request_nonce: request.nonce };
        let (env, sig) = parse_common(&get, target, request.service, request.caller, None)?;
        if env.protection != request.protection || env.sign_key != request.sign_key {
            return Err(Error::DisallowedAlgorithm);
        }
        Ok((env, sig))
    }
}

fn parse_common<'a>(
    get: &impl Fn(&str) -> Option<&'a str>,
    target: Target<'a>,
    service: &'a str,
    caller: &'a str,
    deadline_ms: Option<u64>,
) -> Result<(Envelope<'a>, Signature)> {
    match get(header::VERSION) {
        Some(VERSION) => {}
        Some(_) => return Err(Error::UnsupportedVersion),
        None => return Err(Error::Malformed(header::VERSION)),
    }
    let protection = match get(header::ALG).ok_or(Error::Malformed(header::ALG))? {
        "none" => match get(header::KEY) {
            None => Protection::SignOnly,
            Some(_) => return Err(Error::Malformed(header::KEY)),
        },
        name => {
            let alg = Algorithm::from_name(name).ok_or(Error::DisallowedAlgorithm)?;
            let key = key_id(get, header::KEY)?;
            Protection::Encrypt { alg, key }
        }
    };
    let sign_key = key_id(get, header::SIGN_KEY)?;
    let codec = get(header::CODEC).ok_or(Error::Malformed(header::CODEC))?;
    let codec = Codec::from_name(codec).ok_or(Error::BadCodec)?;
    let timestamp_ms = optional_u64(get, header::TIMESTAMP)?.ok_or(Error::Malformed(header::TIMESTAMP))?;
    let nonce = get(header::NONCE).and_then(Nonce::from_hex).ok_or(Error::Malformed(header::NONCE))?;
    let length = optional_u64(get, header::LENGTH)?;
    let content_type = match get(header::CONTENT_TYPE) {
        None => "",
        Some(ct) if ct.len() > MAX_CONTENT_TYPE_LEN => return Err(Error::TooLarge(Limit::Header)),
        Some(ct) if !ct.is_empty() && ct.bytes().all(|b| (0x20..0x7f).contains(&b)) => ct,
        Some(_) => return Err(Error::Malformed(header::CONTENT_TYPE)),
    };
    let mut sig = Signature([0u8; 32]);
    let hex = get(header::SIGNATURE).ok_or(Error::Malformed(header::SIGNATURE))?;
    if !crate::hex::decode_into(hex, &mut sig.0) {
        return Err(Error::Malformed(header::SIGNATURE));
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

fn key_id<'a>(get: &impl Fn(&str) -> Option<&'a str>, name: &'static str) -> Result<&'a str> {
    match get(name) {
        Some(id) if crate::keys::valid_key_id(id) => Ok(id),
        _ => Err(Error::Malformed(name)),
    }
}

/// A header holding a canonical decimal `u64`: 1–20 digits, no sign, no
/// leading zero (except `0` itself), no overflow.
fn optional_u64<'a>(get: &impl Fn(&str) -> Option<&'a str>, name: &'static str) -> Result<Option<u64>> {
    let Some(text) = get(name) else { return Ok(None) };
    let canonical = !text.is_empty()
        && text.len() <= 20
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    if !canonical {
        return Err(Error::Malformed(name));
    }
    text.parse().map(Some).map_err(|_| Error::Malformed(name))
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
