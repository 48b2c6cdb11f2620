//! Request and response authentication of the center's API
//! (docs/CENTER.md, "Authentication"): each request carries
//! `Authorization: FP-Center node=…,t=…,n=…,sig=…`, an HMAC-SHA256 over the
//! method, target, time, nonce and body digest under the client's center
//! key; each answer carries `x-fp-center-sig`, an HMAC over the request's
//! signature, the status and the body digest, so a client accepts only the
//! center's answer to its own request.

use ring::hmac;

/// The request header's scheme.
pub const SCHEME: &str = "FP-Center";
/// The response signature header.
pub const RESPONSE_HEADER: &str = "x-fp-center-sig";
/// Accepted clock difference between client and center, either way.
pub const MAX_SKEW_MS: u64 = 30_000;

fn body_digest(body: &[u8]) -> String {
    filters::hex::encode(ring::digest::digest(&ring::digest::SHA256, body).as_ref())
}

/// The bytes a request signature covers.
pub fn request_string(method: &str, target: &str, t_ms: u64, nonce: &str, body: &[u8]) -> String {
    format!("fastproxy-center/1 request\n{method}\n{target}\n{t_ms}\n{nonce}\n{}", body_digest(body))
}

/// The bytes a response signature covers.
pub fn response_string(request_sig: &str, status: u16, body: &[u8]) -> String {
    format!("fastproxy-center/1 response\n{request_sig}\n{status}\n{}", body_digest(body))
}

/// Hex HMAC of `text` under `key`.
pub fn sign(key: &hmac::Key, text: &str) -> String {
    filters::hex::encode(hmac::sign(key, text.as_bytes()).as_ref())
}

/// Constant-time check of hex signature `sig` over `text`.
pub fn verify(key: &hmac::Key, text: &str, sig: &str) -> bool {
    match filters::hex::decode(sig) {
        Some(raw) => hmac::verify(key, text.as_bytes(), &raw).is_ok(),
        None => false,
    }
}

/// The fields of an `Authorization: FP-Center …` header.
#[derive(Debug, PartialEq, Eq)]
pub struct Credentials<'a> {
    /// The client's name.
    pub node: &'a str,
    /// Its clock, ms since the epoch.
    pub t_ms: u64,
    /// 32 hex digits, fresh per request.
    pub nonce: &'a str,
    /// 64 hex digits.
    pub sig: &'a str,
}

/// Parses an `Authorization` value: `FP-Center node=N,t=T,n=NONCE,sig=SIG`,
/// fields in that order.
pub fn parse(value: &str) -> Option<Credentials<'_>> {
    let rest = value.strip_prefix(SCHEME)?.strip_prefix(' ')?;
    let mut parts = rest.split(',');
    let mut field = |name: &str| parts.next().and_then(|p| p.strip_prefix(name)).and_then(|p| p.strip_prefix('='));
    let node = field("node")?;
    let t_ms = field("t")?.parse().ok()?;
    let nonce = field("n")?;
    let sig = field("sig")?;
    if parts.next().is_some()
        || nonce.len() != 32
        || sig.len() != 64
        || !nonce.bytes().chain(sig.bytes()).all(|b| b.is_ascii_hexdigit())
    {
        return None;
    }
    Some(Credentials { node, t_ms, nonce, sig })
}

/// The `Authorization` value for a request by `node` (and its signature,
/// to check the answer with).
pub fn authorization(
    key: &hmac::Key,
    node: &str,
    method: &str,
    target: &str,
    body: &[u8],
) -> Result<(String, String), String> {
    let mut raw = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut raw).map_err(|_| "no randomness")?;
    let nonce = filters::hex::encode(&raw);
    let t_ms = crate::http_util::now_ms();
    let sig = sign(key, &request_string(method, target, t_ms, &nonce, body));
    Ok((format!("{SCHEME} node={node},t={t_ms},n={nonce},sig={sig}"), sig))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test vector of docs/CENTER.md ("Test vector").
    #[test]
    fn the_documented_vector_holds() {
        let mut secret = [0u8; 32];
        for (i, b) in secret.iter_mut().enumerate() {
            *b = 0x80 + i as u8;
        }
        let key = filters::SignKey::new("center-token-inbound", &secret)
            .and_then(|k| k.purpose_key(crate::config::registry::CENTER_KEY_LABEL))
            .expect("key");
        let body = br#"{"addr":"127.0.0.1:8033","ttl_ms":10000}"#;
        let text = request_string(
            "PUT",
            "/v1/services/token_service/instances/127.0.0.1:8033",
            1_764_900_000_000,
            "000102030405060708090a0b0c0d0e0f",
            body,
        );
        let sig = sign(&key, &text);
        let answer = br#"{"lease":"1","revision":1,"ttl_ms":10000}"#;
        let response = sign(&key, &response_string(&sig, 200, answer));
        assert_eq!(
            (sig.as_str(), response.as_str()),
            (REQUEST_SIG, RESPONSE_SIG),
            "request {sig}, response {response}"
        );
    }

    const REQUEST_SIG: &str = "f8e2606126e73a82427baa9ccdbe47adec5161560e3324c796234dfd2c13c65d";
    const RESPONSE_SIG: &str = "4405d9402e32d68ce868795d0df001771bb2595019044278213a988cb6aa1b9a";

    #[test]
    fn a_signed_request_parses_and_verifies_and_a_changed_one_does_not() {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &[7; 32]);
        let (value, sig) = authorization(&key, "in-a", "PUT", "/v1/services/x/instances/a", b"{}").expect("sign");
        let c = parse(&value).expect("parses");
        assert_eq!((c.node, c.sig), ("in-a", sig.as_str()));
        let text = request_string("PUT", "/v1/services/x/instances/a", c.t_ms, c.nonce, b"{}");
        assert!(verify(&key, &text, c.sig));
        let changed = request_string("PUT", "/v1/services/y/instances/a", c.t_ms, c.nonce, b"{}");
        assert!(!verify(&key, &changed, c.sig));
        assert!(parse(&value.replace("node=", "nod=")).is_none());
        assert!(parse(&format!("{value},x=1")).is_none());
    }
}
