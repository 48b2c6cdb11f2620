//! The inbound proxy's refusals. A request whose signature verified is refused
//! with a **signed** response bound to it (PROTOCOL.md §8.1): its outbound
//! proxy then knows the status, code and retry delay really come from here.
//! A request that could not be verified gets a plain JSON error, which the
//! outbound proxy reports as a generic failure.

use bytes::{Bytes, BytesMut};
use filters::envelope::HEADER;
use filters::refusal::Refusal;
use filters::{Algorithm, Codec, CompressOptions, Envelope, KeyRing, Nonce, NonceSource, Protection, Target};
use pingora::proxy::Session;

use crate::error::{self, ProxyError, Role};
use crate::http_util::{self as h, now_ms};
use crate::policy::Denial;

/// What a signed refusal needs of the request it answers: who sent it, with
/// which keys and codec, under which nonce. Built only when refusing.
#[derive(Debug, Clone)]
pub struct ReplyTo {
    /// The callee service.
    pub service: String,
    /// The caller named in the request.
    pub caller: String,
    /// The request's nonce.
    pub nonce: Nonce,
    /// The request's AEAD key id and algorithm (sign-only when `None`).
    pub aead: Option<(String, Algorithm)>,
    /// The request's sign key id.
    pub sign_key: String,
    /// The request's codec.
    pub codec: Codec,
}

impl ReplyTo {
    /// The answer address of a verified request envelope.
    pub fn of(env: &Envelope<'_>) -> Self {
        ReplyTo {
            service: env.service.to_owned(),
            caller: env.caller.to_owned(),
            nonce: env.nonce,
            aead: match env.protection {
                Protection::Encrypt { alg, key } => Some((key.to_owned(), alg)),
                Protection::SignOnly => None,
            },
            sign_key: env.sign_key.to_owned(),
            codec: env.codec,
        }
    }
}

/// Answers `err`: signed when `reply` names a verified request (falls back to
/// a plain error if the keys went away in a reload), plain otherwise.
pub async fn respond(
    session: &mut Session,
    err: &ProxyError,
    reply: Option<&ReplyTo>,
    keys: &KeyRing,
    nonces: &NonceSource,
) -> pingora::Result<()> {
    let sealed = reply.and_then(|r| seal(err, r, keys, nonces, session.req_header().method.as_str()));
    let Some((value, body)) = sealed else {
        // Whoever sent a request that does not verify gets no second one on
        // this connection.
        session.set_keepalive(None);
        return error::respond(session, Role::Inbound, err).await;
    };
    let mut header = err.response_header(Role::Inbound, body.len())?;
    header.insert_header(HEADER, value)?;
    header.insert_header("content-type", h::SEALED_CONTENT_TYPE)?;
    error::write(session, header, body).await
}

/// The `x-fp` value and sealed body of a signed refusal.
fn seal(err: &ProxyError, r: &ReplyTo, keys: &KeyRing, nonces: &NonceSource, method: &str) -> Option<(String, Bytes)> {
    let retry_after = match err {
        ProxyError::Denied(Denial::RateLimited(secs)) => Some(*secs),
        _ => None,
    };
    let content_type = Refusal { code: err.code(), retry_after }.content_type()?;
    let plain = err.body();
    let env = Envelope {
        target: Target::Response { status: err.status(), request_nonce: r.nonce },
        service: &r.service,
        caller: &r.caller,
        content_type: &content_type,
        codec: r.codec,
        protection: super::protection(&r.aead),
        sign_key: &r.sign_key,
        timestamp_ms: now_ms(),
        nonce: nonces.next_nonce(),
        length: Some(plain.len() as u64),
        deadline_ms: None,
    };
    let (sig, mut sealer) = keys.seal(&env, CompressOptions::default()).ok()?;
    let mut body = BytesMut::new();
    if method != "HEAD" {
        sealer.seal_final(&plain, &mut body).ok()?;
    }
    let value = env.header_value(&sig);
    log::debug!(target: super::WIRE, "signed refusal: {}\n  {HEADER}: {value}", err.status());
    Some((value, body.freeze()))
}
