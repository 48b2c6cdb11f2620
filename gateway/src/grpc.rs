//! What the proxies need to know about gRPC: how to recognise a call, its
//! `grpc-timeout`, and how a proxy's own error reaches a gRPC caller (a
//! trailers-only response with a `grpc-status`, not a JSON body).
//!
//! Nothing here parses gRPC messages: a call's body is opaque bytes that the
//! proxies seal record by record like any stream.

use pingora::http::ResponseHeader;

/// `grpc-timeout`, the caller's deadline as a duration (gRPC over HTTP/2).
pub const TIMEOUT: &str = "grpc-timeout";

/// True for a gRPC call: `content-type` is `application/grpc`, alone or
/// with a `+format` or `;parameters` suffix.
pub fn is_grpc(headers: &http::HeaderMap) -> bool {
    headers.get(http::header::CONTENT_TYPE).is_some_and(|v| is_grpc_type(v.as_bytes()))
}

/// True for a gRPC content type ([`is_grpc`]).
pub fn is_grpc_type(v: &[u8]) -> bool {
    let prefix = b"application/grpc";
    v.len() >= prefix.len()
        && v[..prefix.len()].eq_ignore_ascii_case(prefix)
        && matches!(v.get(prefix.len()), None | Some(b'+') | Some(b';'))
}

/// True when the request says it accepts trailers (`te: trailers`, which
/// gRPC requires): the only `te` value that crosses the proxies.
pub fn wants_trailers(headers: &http::HeaderMap) -> bool {
    headers
        .get_all(http::header::TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("trailers")))
}

/// Parses a `grpc-timeout` value (`1*8DIGIT unit`, unit one of `H M S m u
/// n`) into milliseconds, rounded up so a deadline is never earlier than
/// asked. `None` when it is not of that form.
pub fn parse_timeout_ms(value: &str) -> Option<u64> {
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    let ms = match unit {
        "H" => n * 3_600_000,
        "M" => n * 60_000,
        "S" => n * 1_000,
        "m" => n,
        "u" => n.div_ceil(1_000),
        "n" => n.div_ceil(1_000_000),
        _ => return None,
    };
    Some(ms)
}

/// A `grpc-timeout` value for `ms` milliseconds (at most 8 digits).
pub fn format_timeout(ms: u64) -> String {
    if ms <= 99_999_999 {
        format!("{ms}m")
    } else {
        format!("{}S", (ms.div_ceil(1_000)).min(99_999_999))
    }
}

/// gRPC status codes the proxies answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// 4: the deadline passed.
    DeadlineExceeded = 4,
    /// 7: policy refused the caller.
    PermissionDenied = 7,
    /// 8: a size or rate limit.
    ResourceExhausted = 8,
    /// 12: no route to the callee.
    Unimplemented = 12,
    /// 13: anything else (a malformed request, a proxy fault).
    Internal = 13,
    /// 14: no backend, a failed hop, an answer that did not verify.
    Unavailable = 14,
    /// 16: the request's authentication failed at the inbound proxy.
    Unauthenticated = 16,
}

/// The gRPC status of an HTTP error status (gRPC's own mapping, with 429,
/// 413 and 431 as RESOURCE_EXHAUSTED and 504 as DEADLINE_EXCEEDED).
pub fn status_of_http(status: u16) -> Status {
    match status {
        401 => Status::Unauthenticated,
        403 => Status::PermissionDenied,
        404 => Status::Unimplemented,
        413 | 429 | 431 => Status::ResourceExhausted,
        504 => Status::DeadlineExceeded,
        502 | 503 => Status::Unavailable,
        _ => Status::Internal,
    }
}

/// `grpc-message` encoding: percent-encoding of every byte outside
/// printable ASCII, and of `%` itself.
pub fn encode_message(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for b in message.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A trailers-only response (HTTP 200, the status in the header section,
/// no body): `status`, `message` (percent-encoded here), then `extra`
/// headers.
pub fn trailers_only(status: Status, message: &str, extra: &[(&'static str, &str)]) -> pingora::Result<ResponseHeader> {
    let mut h = ResponseHeader::build(200, Some(4 + extra.len()))?;
    h.insert_header("content-type", "application/grpc")?;
    h.insert_header("content-length", "0")?;
    h.insert_header("grpc-status", (status as u8).to_string())?;
    h.insert_header("grpc-message", encode_message(message))?;
    for (name, value) in extra {
        h.insert_header(*name, value.to_string())?;
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_parse_as_the_spec_says() {
        assert_eq!(parse_timeout_ms("500m"), Some(500));
        assert_eq!(parse_timeout_ms("2S"), Some(2_000));
        assert_eq!(parse_timeout_ms("1H"), Some(3_600_000));
        assert_eq!(parse_timeout_ms("1500u"), Some(2));
        assert_eq!(parse_timeout_ms("1n"), Some(1));
        for bad in ["", "m", "123456789m", "5x", "-5m", "5 m", "5"] {
            assert_eq!(parse_timeout_ms(bad), None, "{bad:?}");
        }
        assert_eq!(format_timeout(250), "250m");
        assert_eq!(parse_timeout_ms(&format_timeout(123_456_789_000)), Some(99_999_999_000));
    }

    #[test]
    fn grpc_calls_are_told_by_their_content_type() {
        let mut h = http::HeaderMap::new();
        for (ct, yes) in [
            ("application/grpc", true),
            ("application/grpc+proto", true),
            ("Application/GRPC;x=1", true),
            ("application/grpc-web", false),
            ("application/json", false),
        ] {
            h.insert("content-type", ct.parse().unwrap());
            assert_eq!(is_grpc(&h), yes, "{ct}");
        }
        h.insert("te", "gzip, trailers".parse().unwrap());
        assert!(wants_trailers(&h));
        h.insert("te", "gzip".parse().unwrap());
        assert!(!wants_trailers(&h));
    }

    #[test]
    fn messages_are_percent_encoded() {
        assert_eq!(encode_message("100% ok\n"), "100%25 ok%0A");
    }
}
