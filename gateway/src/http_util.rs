//! HTTP helpers shared by both roles (named apart from the `http` crate):
//! request-target parsing, path safety,
//! header hygiene, body framing.

use ::http::{HeaderMap, HeaderName, HeaderValue, Method};
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

/// HTTP/2 flow-control windows of both hops (request bodies received by the
/// listeners, response bodies received from pools). h2's default, 64 KiB per
/// connection, is shared by all of a connection's streams: with 32 requests
/// of 16 KiB in flight on one connection, senders waited for window updates
/// and HTTP/2 between the proxies ran 17 % slower than HTTP/1.1
/// (docs/BENCHMARKS.md). A connection buffers at most this much unread.
pub const H2_STREAM_WINDOW: u32 = 256 * 1024;
/// See [`H2_STREAM_WINDOW`].
pub const H2_CONNECTION_WINDOW: u32 = 1024 * 1024;

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

/// The host the request names (its `:authority`, or `Host` over HTTP/1),
/// without a port: how a gRPC call names its callee.
pub fn authority_host(req: &pingora::http::RequestHeader) -> Option<&str> {
    let authority = match req.uri.authority() {
        Some(a) => a.as_str(),
        None => header_str(&req.headers, "host")?,
    };
    // Service names have no `:`; an IPv6 literal names no service anyway.
    let host = authority.split(':').next().unwrap_or("");
    (!host.is_empty()).then_some(host)
}

/// Moves an HTTP/2 request's `:authority` into `Host` before its target is
/// rewritten to a path: the next hop needs an authority, over HTTP/1.1 or
/// HTTP/2.
pub fn keep_authority(up: &mut pingora::http::RequestHeader) -> Result<(), ProxyError> {
    if up.headers.contains_key(::http::header::HOST) {
        return Ok(());
    }
    let Some(authority) = up.uri.authority().map(|a| a.as_str().to_owned()) else { return Ok(()) };
    up.insert_header(::http::header::HOST, authority).map_err(|_| ProxyError::Internal)
}

/// The request target for the callee: `uri`'s path below the `/<service>`
/// segment (`/` when nothing is left), with its query string unchanged. An
/// empty query (`?` alone) signs like no query (PROTOCOL.md §4), so the callee
/// gets no `?` either: what it receives is exactly what was signed.
pub fn below_service(uri: &::http::Uri, service: &str) -> Result<::http::Uri, ProxyError> {
    let invalid = || ProxyError::BadRequest("invalid request target");
    let full = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let full = if uri.query() == Some("") { full.strip_suffix('?').unwrap_or(full) } else { full };
    let rest = full.strip_prefix('/').and_then(|r| r.strip_prefix(service)).ok_or_else(invalid)?;
    let uri =
        if rest.starts_with('/') { ::http::Uri::try_from(rest) } else { ::http::Uri::try_from(format!("/{rest}")) };
    uri.map_err(|_| invalid())
}

/// Refuses paths a callee could resolve differently from our policy match:
/// `.`/`..` segments (literal or percent-encoded), empty segments (`//`, which
/// many servers merge), backslashes, NUL, and encoded separators. Allocates
/// nothing.
pub fn check_path(path: &str) -> Result<(), ProxyError> {
    let bytes = path.as_bytes();
    let encoded = |i: usize, hex: &[u8; 2]| {
        bytes.get(i) == Some(&b'%')
            && bytes.get(i + 1) == Some(&hex[0])
            && bytes.get(i + 2).is_some_and(|b| b.eq_ignore_ascii_case(&hex[1]))
    };
    let bad_byte = (0..bytes.len())
        .any(|i| matches!(bytes[i], b'\\' | 0) || encoded(i, b"5c") || encoded(i, b"2f") || encoded(i, b"00"));
    let dot_segment = path.split('/').any(|seg| {
        // A segment that decodes to "." or "..": one or two of `.` / `%2e`.
        let mut rest = seg.as_bytes();
        let mut dots = 0;
        while !rest.is_empty() {
            if rest[0] == b'.' {
                rest = &rest[1..];
            } else if rest.len() >= 3 && rest[0] == b'%' && rest[1] == b'2' && rest[2].eq_ignore_ascii_case(&b'e') {
                rest = &rest[3..];
            } else {
                return false;
            }
            dots += 1;
        }
        dots == 1 || dots == 2
    });
    if path.contains("//") {
        Err(ProxyError::BadRequest("path contains an empty segment (//)"))
    } else if bad_byte || dot_segment {
        Err(ProxyError::BadRequest("path contains dot segments or encoded separators"))
    } else {
        Ok(())
    }
}

/// The header maps of Pingora's request and response headers, and their
/// case-preserving removal: what header hygiene needs from either.
pub trait MessageHeaders {
    /// The headers.
    fn map(&self) -> &HeaderMap;
    /// Removes every value of `name`.
    fn remove(&mut self, name: &HeaderName);
    /// Sets `name` to `value`, replacing what it had.
    fn set(&mut self, name: &'static str, value: String) -> pingora::Result<()>;
}

impl MessageHeaders for RequestHeader {
    fn map(&self) -> &HeaderMap {
        &self.headers
    }
    fn remove(&mut self, name: &HeaderName) {
        self.remove_header(name);
    }
    fn set(&mut self, name: &'static str, value: String) -> pingora::Result<()> {
        self.insert_header(name, value)
    }
}

impl MessageHeaders for ResponseHeader {
    fn map(&self) -> &HeaderMap {
        &self.headers
    }
    fn remove(&mut self, name: &HeaderName) {
        self.remove_header(name);
    }
    fn set(&mut self, name: &'static str, value: String) -> pingora::Result<()> {
        self.insert_header(name, value)
    }
}

/// Frames a message's body: `Content-Length` when its `length` is known,
/// chunked when not. One place for every message the proxies rewrite.
pub fn set_framing(m: &mut impl MessageHeaders, length: Option<u64>) -> Result<(), ProxyError> {
    match length {
        Some(n) => m.set("content-length", n.to_string()),
        None => m.set("transfer-encoding", "chunked".to_owned()),
    }
    .map_err(|_| ProxyError::Internal)
}

/// An upstream request over HTTP/2 frames its body itself: a
/// `transfer-encoding` the framing step added (for HTTP/1.1) goes, as
/// HTTP/2 forbids it.
pub fn fit_framing_to_version(up: &mut pingora::http::RequestHeader) {
    if up.version == ::http::Version::HTTP_2 {
        up.remove_header(&::http::header::TRANSFER_ENCODING);
    }
}

/// Frames a sealed body of `length` bytes (chunked when unknown) and types it
/// as sealed records; an empty body gets neither.
pub fn set_sealed_framing(m: &mut impl MessageHeaders, length: Option<u64>) -> Result<(), ProxyError> {
    if length == Some(0) {
        return Ok(());
    }
    set_framing(m, length)?;
    m.set("content-type", SEALED_CONTENT_TYPE.to_owned()).map_err(|_| ProxyError::Internal)
}

/// Headers the `Connection` header nominates as hop-by-hop (besides the
/// `close`/`keep-alive` options). Allocates only when there are some.
pub fn nominated_hop_by_hop(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all("connection")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty() && !t.eq_ignore_ascii_case("close") && !t.eq_ignore_ascii_case("keep-alive"))
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .collect()
}

/// Removes the hop-by-hop headers (RFC 9110 §7.6.1) and those `Connection`
/// nominates: what a proxy must not forward.
pub fn strip_hop_by_hop(m: &mut impl MessageHeaders) {
    for name in nominated_hop_by_hop(m.map()) {
        m.remove(&name);
    }
    for name in &HOP_BY_HOP {
        if m.map().contains_key(name) {
            m.remove(name);
        }
    }
}

/// The protocol header.
const FP_HEADER: HeaderName = HeaderName::from_static(filters::envelope::HEADER);

/// Name of the header carrying the verified caller to the callee.
pub const FORWARDED_CALLER: &str = "x-fp-caller";
/// Name of the header carrying the caller's deadline (Unix ms) to the callee.
pub const FORWARDED_DEADLINE: &str = "x-fp-deadline";

fn is_fp(name: &HeaderName) -> bool {
    let n = name.as_str();
    n == filters::envelope::HEADER || n.starts_with("x-fp-")
}

/// Removes `x-fp` and every `x-fp-*` header: protocol headers are never
/// taken from an app or an unverified peer. Allocates only when `x-fp-*`
/// headers other than `x-fp` are present.
pub fn strip_fp_headers(m: &mut impl MessageHeaders) {
    if m.map().contains_key(&FP_HEADER) {
        m.remove(&FP_HEADER);
    }
    if m.map().keys().any(is_fp) {
        let names: Vec<HeaderName> = m.map().keys().filter(|k| is_fp(k)).cloned().collect();
        for name in names {
            m.remove(&name);
        }
    }
}

/// The size of a request head on the wire: request line and header lines.
pub fn head_len(req: &RequestHeader) -> u64 {
    let target = req.uri.path_and_query().map_or(1, |pq| pq.as_str().len());
    let line = req.method.as_str().len() + target + 12;
    let headers: usize = req.headers.iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum();
    (line + headers + 2) as u64
}

/// A header's value as text, when present and visible ASCII.
pub fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The `x-fp` header's value (`None` when absent or not visible ASCII). The
/// envelope travels in exactly one header (PROTOCOL.md §3): two or more, in
/// any letter case, are [`filters::Error::Malformed`].
pub fn envelope_header(headers: &HeaderMap) -> Result<Option<&str>, filters::Error> {
    let mut values = headers.get_all(&FP_HEADER).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(filters::Error::Malformed(filters::envelope::HEADER));
    }
    Ok(first.and_then(|v| v.to_str().ok()))
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

/// The content type a plain message gives its envelope: none, or at most
/// [`filters::envelope::MAX_CONTENT_TYPE_LEN`] visible ASCII bytes; else
/// why not. Both roles seal with it (requests out, responses back).
pub fn sealable_content_type(value: Option<&HeaderValue>) -> Result<Option<&str>, &'static str> {
    match value {
        None => Ok(None),
        Some(ct) if ct.len() > filters::envelope::MAX_CONTENT_TYPE_LEN => Err("content-type too long"),
        Some(ct) => ct.to_str().map(Some).map_err(|_| "content-type is not visible ASCII"),
    }
}

/// The content type an opened message is given back from its envelope's
/// `ct` (empty: none). Both roles open with it.
pub fn restored_content_type(ct: &str) -> Result<Option<HeaderValue>, filters::Error> {
    match ct {
        "" => Ok(None),
        ct => HeaderValue::from_str(ct).map(Some).map_err(|_| filters::Error::Malformed("x-fp content-type")),
    }
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
    fn target_below_the_service() {
        let below = |t: &str| below_service(&t.parse().unwrap(), "svc").map(|u| u.to_string()).ok();
        assert_eq!(below("/svc/a/b?x=1&y"), Some("/a/b?x=1&y".into()));
        assert_eq!(below("/svc"), Some("/".into()));
        assert_eq!(below("/svc?q=1"), Some("/?q=1".into()));
        assert_eq!(below("/other/a"), None);
    }

    #[test]
    fn unsafe_paths() {
        for p in [
            "/a/../b",
            "/a/./b",
            "/a/%2e%2E/b",
            "/a/.%2e",
            "/a\\b",
            "/a%2fb",
            "/a%5cb",
            "/a%00",
            "/a/%2E%2e",
            "/%2e/x",
            "/a/.",
        ] {
            assert!(check_path(p).is_err(), "{p}");
        }
        for p in ["/", "/api/v1/x.json", "/a/..b/c", "/a/b.", "/%41", "/a/...", "/a/%2e%2e%2e", "/a%2", "/a%"] {
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
        let names: Vec<String> = nominated_hop_by_hop(&h).iter().map(|n| n.to_string()).collect();
        assert_eq!(names, ["x-secret"]);
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        for (k, v) in &h {
            req.append_header(k.clone(), v.clone()).unwrap();
        }
        req.append_header("x-fp", "v=1").unwrap();
        req.append_header("x-fp-caller", "evil").unwrap();
        strip_hop_by_hop(&mut req);
        strip_fp_headers(&mut req);
        let mut left: Vec<&str> = req.headers.keys().map(|k| k.as_str()).collect();
        left.sort();
        assert_eq!(left, ["x-multi"]);
    }

    #[test]
    fn lengths() {
        let mut h = HeaderMap::new();
        h.insert("content-length", "12".parse().unwrap());
        assert_eq!(content_length(&h), Some(12));
        h.append("content-length", "13".parse().unwrap());
        assert_eq!(content_length(&h), None);
    }

    #[test]
    fn two_envelope_headers_are_malformed() {
        let mut r = ResponseHeader::build(200, None).unwrap();
        r.append_header("x-fp", "v=1;a").unwrap();
        assert!(envelope_header(&r.headers).is_ok());
        r.append_header("X-FP", "v=1").unwrap();
        assert!(envelope_header(&r.headers).is_err());
    }
}
