//! Signed refusals: how a receiver that verified a request says "no" in a way
//! the sender can trust.
//!
//! A refusal is an ordinary sealed response (status 4xx/5xx, bound to the
//! request's nonce) whose plaintext is a JSON error and whose content type,
//! which the signature covers (canonical field 10), names the error code and
//! any retry delay:
//!
//! ```text
//! application/x-fastproxy-error+json; code=<code>[; retry-after=<seconds>]
//! ```
//!
//! `<code>` is 1–64 bytes of `a-z` and `_`; `<seconds>` is 1–10 digits. The
//! sender's proxy passes status, code and retry delay to its app only from
//! such a verified refusal (PROTOCOL.md §8.1).

use crate::error::{Error, Result};

/// The media type of a refusal's plaintext.
pub const REFUSAL_TYPE: &str = "application/x-fastproxy-error+json";

/// What a verified refusal says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal<'a> {
    /// The error code.
    pub code: &'a str,
    /// Seconds the sender should wait before trying again.
    pub retry_after: Option<u64>,
}

fn valid_code(code: &str) -> bool {
    !code.is_empty() && code.len() <= 64 && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
}

impl Refusal<'_> {
    /// The content type that carries this refusal. `None` when the code is
    /// not of the allowed form.
    pub fn content_type(&self) -> Option<String> {
        if !valid_code(self.code) {
            return None;
        }
        Some(match self.retry_after {
            Some(s) => format!("{REFUSAL_TYPE}; code={}; retry-after={s}", self.code),
            None => format!("{REFUSAL_TYPE}; code={}", self.code),
        })
    }
}

/// Reads a verified response's content type: `Ok(None)` for an ordinary
/// response, the refusal for a refusal, [`Error::Malformed`] for the
/// refusal type with parameters not of the form above.
pub fn parse(content_type: &str) -> Result<Option<Refusal<'_>>> {
    let Some(params) = content_type.strip_prefix(REFUSAL_TYPE) else { return Ok(None) };
    let malformed = || Error::Malformed("refusal content type");
    let rest = params.strip_prefix("; code=").ok_or_else(malformed)?;
    let (code, retry) = match rest.split_once("; retry-after=") {
        Some((code, secs)) => (code, Some(secs)),
        None => (rest, None),
    };
    if !valid_code(code) {
        return Err(malformed());
    }
    let retry_after = match retry {
        None => None,
        Some(s) if !s.is_empty() && s.len() <= 10 && s.bytes().all(|b| b.is_ascii_digit()) => {
            Some(s.parse().map_err(|_| malformed())?)
        }
        Some(_) => return Err(malformed()),
    };
    Ok(Some(Refusal { code, retry_after }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_strictness() {
        let r = Refusal { code: "rate_limited", retry_after: Some(3) };
        let ct = r.content_type().unwrap();
        assert_eq!(ct, "application/x-fastproxy-error+json; code=rate_limited; retry-after=3");
        assert_eq!(parse(&ct), Ok(Some(r)));
        assert_eq!(parse("application/json"), Ok(None));
        let plain = Refusal { code: "forbidden", retry_after: None };
        assert_eq!(parse(&plain.content_type().unwrap()), Ok(Some(plain)));
        for bad in [
            "application/x-fastproxy-error+json",
            "application/x-fastproxy-error+json; code=",
            "application/x-fastproxy-error+json; code=Bad",
            "application/x-fastproxy-error+json; code=x; retry-after=",
            "application/x-fastproxy-error+json; code=x; retry-after=12345678901",
            "application/x-fastproxy-error+json; code=x; retry-after=1; more=2",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Refusal { code: "no-dash", retry_after: None }.content_type(), None);
    }
}
