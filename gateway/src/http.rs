//! HTTP helpers shared by both roles: request-target parsing, path safety,
//! header hygiene, body framing.

use ::http::{HeaderMap, HeaderName, Method};
use pingora::http::{RequestHeader, ResponseHeader};

use crate::error::ProxyError;

/// Hop-by-hop headers (RFC 9110 §7.6.1), never forwarded.
pub const HOP_BY_HOP: [HeaderName; 8] = [
    ::http::header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    ::http::header::TE,
    ::http::header::TRAILER,
    ::http::header::TRANSFER_ENCODING,
    ::http::header::UPGRADE,
    ::http::header::PROXY_AUTHENTICATE,
];

/// Content type of a sealed body on the wire.
pub const SEALED_CONTENT_TYPE: &str = "application/x-fastproxy-records";

/// Splits `/<service><path>` into the service name and the path below it
/// (`/` when empty).
pub fn split_target(path: &str) -> Result<(&str, &str), ProxyError> {
    let rest = path.strip_prefix('/').ok_or(ProxyError::BadRequest("request target must start with /"))?;
    let (service, below) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if service.is_empty() {
        return Err(ProxyError::UnknownService);
    }
    Ok((service, below))
}

/// Refuses paths a callee could resolve differently from our policy match:
/// `.`/`..` segments (literal or percent-encoded), backslashes, NUL.
pub fn check_path(path: &str) -> Result<(), ProxyError> {
    let bad = path.split('/').any(|seg| {
        let lower = seg.to_ascii_lowercase();
        let decoded = lower.replace("%2e", ".");
        decoded == "." || decoded == ".."
    }) || path.contains('\\')
        || path.to_ascii_lowercase().contains("%5c")
        || path.to_ascii_lowercase().contains("%2f")
        || path.contains('\0')
        || path.to_ascii_lowercase().contains("%00");
    if bad {
        Err(ProxyError::BadRequest("path contains dot segments or encoded separators"))
    } else {
        Ok(())
    }
}

/// The hop-by-hop headers present, and those the `Connection` header
/// nominates: what a proxy must not forward.
pub fn hop_by_hop_names(headers: &HeaderMap) -> Vec<HeaderName> {
    // Static names: no allocation unless a Connection header nominates others.
    let mut names: Vec<HeaderName> = headers
        .get_all("connection")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty() && !t.eq_ignore_ascii_case("close") && !t.eq_ignore_ascii_case("keep-alive"))
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .collect();
    names.extend(HOP_BY_HOP.iter().filter(|n| headers.contains_key(*n)).cloned());
    names
}

/// Removes hop-by-hop headers from a request through its case-preserving API.
pub fn strip_request_hop_by_hop(req: &mut RequestHeader) {
    for name in hop_by_hop_names(&req.headers) {
        req.remove_header(&name);
    }
}

/// Removes hop-by-hop headers from a response through its case-preserving API.
pub fn strip_response_hop_by_hop(resp: &mut ResponseHeader) {
    for name in hop_by_hop_names(&resp.headers) {
        resp.remove_header(&name);
    }
}

/// Names of all `x-fp-*` headers present (protocol headers must never be
/// taken from an app or an unverified peer).
pub fn fp_header_names(headers: &HeaderMap) -> Vec<HeaderName> {
    headers.keys().filter(|k| k.as_str().starts_with("x-fp-")).cloned().collect()
}

/// A header's value as text, when present and visible ASCII.
pub fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The body length a request or response declares: `Some(n)` for a valid
/// `Content-Length` without `Transfer-Encoding`, `None` otherwise.
pub fn content_length(headers: &HeaderMap) -> Option<u64> {
    if headers.contains_key("transfer-encoding") {
        return None;
    }
    let mut values = headers.get_all("content-length").iter();
    let first = values.next()?.to_str().ok()?.trim().parse().ok()?;
    // Repeated Content-Length headers must agree (RFC 9110 §8.6).
    values.all(|v| v.to_str().ok().and_then(|s| s.trim().parse::<u64>().ok()) == Some(first)).then_some(first)
}

/// True when a response to `method` with `status` has no body by definition.
pub fn bodyless_response(method: &Method, status: u16) -> bool {
    *method == Method::HEAD || status == 204 || status == 304 || (100..200).contains(&status)
}

/// True for methods whose requests normally carry a body, so an empty one is
/// still framed with `Content-Length: 0`.
pub fn method_has_body(method: &Method) -> bool {
    *method == Method::POST || *method == Method::PUT || *method == Method::PATCH
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(split_target("/token_service/api/x").ok(), Some(("token_service", "/api/x")));
        assert_eq!(split_target("/token_service").ok(), Some(("token_service", "/")));
        assert_eq!(split_target("/token_service/").ok(), Some(("token_service", "/")));
        assert!(split_target("//x").is_err());
        assert!(split_target("x").is_err());
    }

    #[test]
    fn unsafe_paths() {
        for p in ["/a/../b", "/a/./b", "/a/%2e%2E/b", "/a/.%2e", "/a\\b", "/a%2fb", "/a%5cb", "/a%00"] {
            assert!(check_path(p).is_err(), "{p}");
        }
        for p in ["/", "/api/v1/x.json", "/a/..b/c", "/a/b.", "/%41"] {
            assert!(check_path(p).is_ok(), "{p}");
        }
    }

    #[test]
    fn hop_by_hop() {
        let mut h = HeaderMap::new();
        h.insert("connection", "close, x-secret".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert("keep-alive", "5".parse().unwrap());
        h.append("x-multi", "a".parse().unwrap());
        h.append("x-multi", "b".parse().unwrap());
        let mut names: Vec<String> = hop_by_hop_names(&h).iter().map(|n| n.to_string()).collect();
        names.sort();
        assert_eq!(names, ["connection", "keep-alive", "x-secret"]);
    }

    #[test]
    fn lengths() {
        let mut h = HeaderMap::new();
        h.insert("content-length", "12".parse().unwrap());
        assert_eq!(content_length(&h), Some(12));
        h.append("content-length", "13".parse().unwrap());
        assert_eq!(content_length(&h), None);
    }
}
