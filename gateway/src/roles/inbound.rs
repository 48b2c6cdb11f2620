//! The inbound (callee-side) role: verifies a sealed request from the headers
//! (signature, freshness, replay, policy, rate) before touching the body,
//! opens the body, forwards it to the callee's instances, and seals the
//! response.
//!
//! Request path: `request_filter` (verify → policy → small bodies opened whole,
//! so a tampered one never reaches the callee) → `upstream_peer` →
//! `upstream_request_filter` (restore the plain request) →
//! `request_body_filter` (open records as they stream).
//! Response path: `upstream_response_filter` (sign, headers, framing) →
//! `response_body_filter` (seal records).

use std::sync::Arc;

use ::http::HeaderValue;
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use filters::envelope::HEADER;
use filters::{
    Algorithm, Codec, CompressOptions, Envelope, Limits, Nonce, NonceSource, Opener, Protection, Sealer, Target,
};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::modules::http::HttpModules;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, Result};

use super::headers_end::{self, AtEnd};
use super::refuse::{self, ReplyTo};
use super::trailers;
use super::{hex_prefix, Exchange, WIRE};
use crate::config::tls::PeerIdentity;
use crate::config::Name;
use crate::error::{ProxyError, Role};
use crate::http_util::{self as h, now_ms};
use crate::lifecycle::Draining;
use crate::metrics::Metrics;
use crate::opened::OpenBudget;
use crate::policy::Denial;
use crate::pools::Pool;
use crate::replay_state::ReplayState;
use crate::state::{Shared, Snapshot};

/// Path prefix of the inbound proxy's own health endpoint:
/// `/_fastproxy/health` (every service) or `/_fastproxy/health/<service>`.
/// 200 when the service's pool has a backend to send to, else 503. Outbound
/// pools probe it with an HTTP health check.
pub const HEALTH_PATH: &str = "/_fastproxy/health";

/// Sealed bodies of up to this many plaintext bytes (Pingora's retry-buffer
/// size) are read and opened whole before the callee is contacted.
const VERIFY_FIRST_MAX: u64 = 64 * 1024;
/// Most sealed bytes read for such a body: its records plus generous room
/// for flushed (short) records. More is refused.
const VERIFY_FIRST_WIRE_MAX: u64 = 4 * VERIFY_FIRST_MAX;

/// The inbound proxy.
pub struct Inbound {
    shared: Shared,
    replay: Arc<ReplayState>,
    opened: OpenBudget,
    metrics: Arc<Metrics>,
    nonces: Arc<NonceSource>,
    draining: Draining,
}

impl Inbound {
    /// A proxy reading its config from `shared`, remembering nonces in `replay`
    /// (kept across config reloads so a reload never re-opens the window),
    /// holding opened plaintext within `opened`, drawing response nonces from
    /// `nonces`, closing connections after each response once `draining`.
    pub fn new(
        shared: Shared,
        replay: Arc<ReplayState>,
        opened: OpenBudget,
        metrics: Arc<Metrics>,
        nonces: Arc<NonceSource>,
        draining: Draining,
    ) -> Self {
        Inbound { shared, replay, opened, metrics, nonces, draining }
    }
}

/// A request that passed every header check.
pub struct Accepted {
    snap: Arc<Snapshot>,
    /// The verified caller (empty in passthrough).
    caller: Name,
    service: Name,
    pool: Arc<Pool>,
    nonce: Nonce,
    aead: Option<(Name, Algorithm)>,
    sign_key: Name,
    codec: Codec,
    length: Option<u64>,
    /// The plaintext's content type, ready to forward.
    content_type: Option<HeaderValue>,
    /// The caller's signed deadline.
    deadline_ms: Option<u64>,
    /// The deadline enforced here: signed or the pool's total timeout.
    local_deadline_ms: Option<u64>,
    /// Unsealed traffic (`dangerous_passthrough`).
    passthrough: bool,
}

impl Accepted {
    /// The verified caller.
    pub fn caller(&self) -> &str {
        &self.caller
    }

    /// The callee service.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The signed body length, when the sender knew it.
    pub fn length(&self) -> Option<u64> {
        self.length
    }

    /// True when the body arrives encrypted.
    pub fn encrypted(&self) -> bool {
        self.aead.is_some()
    }

    /// True for a gRPC call (by its signed content type).
    pub fn grpc(&self) -> bool {
        self.content_type.as_ref().is_some_and(|ct| crate::grpc::is_grpc_type(ct.as_bytes()))
    }

    /// Whom a signed refusal of this request answers (`None` in passthrough).
    fn reply_to(&self) -> Option<ReplyTo> {
        (!self.passthrough).then(|| ReplyTo {
            service: self.service.to_string(),
            caller: self.caller.to_string(),
            nonce: self.nonce,
            aead: self.aead.as_ref().map(|(k, alg)| (k.to_string(), *alg)),
            sign_key: self.sign_key.to_string(),
            codec: self.codec,
        })
    }

    /// An unverified request (`dangerous_passthrough`).
    fn plain(snap: Arc<Snapshot>, service: Name, pool: Arc<Pool>) -> Self {
        // One empty name for the process, not one per request.
        static EMPTY: std::sync::LazyLock<Name> = std::sync::LazyLock::new(|| Name::from(""));
        Accepted {
            snap,
            caller: EMPTY.clone(),
            service,
            pool,
            nonce: Nonce([0; 16]),
            aead: None,
            sign_key: EMPTY.clone(),
            codec: Codec::None,
            length: None,
            content_type: None,
            deadline_ms: None,
            local_deadline_ms: None,
            passthrough: true,
        }
    }
}

/// How the request body reaches the callee.
// One per request, inline in the context: boxing the opener would only add
// an allocation.
#[allow(clippy::large_enum_variant)]
enum Body {
    /// Opened whole in `request_filter`.
    Verified(Bytes),
    /// Opened record by record as it streams.
    Streaming(Opener),
    /// Signed as empty.
    Empty,
    /// Unsealed (`dangerous_passthrough`): forwarded as it comes.
    Plain,
}

/// Per-request state.
pub struct Ctx {
    ex: Exchange,
    accepted: Option<Accepted>,
    body: Body,
    body_started: bool,
    reply: Option<Sealer>,
    flush_records: bool,
    /// Set when a verified request is refused before it was accepted: its
    /// refusal is signed for it.
    reply_to: Option<ReplyTo>,
}

#[async_trait]
impl ProxyHttp for Inbound {
    type CTX = Ctx;

    /// One downstream module: [`headers_end`], which sees a response end
    /// with its header section. Not Pingora's default (a disabled response
    /// compression module whose per-request context costs allocations): the
    /// codec compresses on the sealed link, and the app link stays as the
    /// callee answered.
    fn init_downstream_modules(&self, modules: &mut HttpModules) {
        modules.add_module(Box::new(headers_end::HeadersEndBuilder));
    }

    fn new_ctx(&self) -> Ctx {
        Ctx {
            ex: Exchange::default(),
            accepted: None,
            body: Body::Empty,
            body_started: false,
            reply: None,
            flush_records: false,
            reply_to: None,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        if let Some(inb) = self.shared.load().config.inbound.as_ref() {
            super::connection_timeouts(session, self.draining.is_on(), inb.idle_timeout_s, inb.body_timeout);
        }
        if let Some(service) = session.req_header().uri.path().strip_prefix(HEALTH_PATH) {
            let service = service.trim_start_matches('/').to_owned();
            self.health(session, &service).await?;
            return Ok(true);
        }
        // After an upgrade: not before the replaced process handed its cache over.
        self.replay.ready().await;
        let snap = self.shared.load_full();
        let peer = crate::tls::peer_identity(session);
        let result =
            match Self::accept(snap, &self.replay, session.req_header(), peer, &mut ctx.ex.known, &mut ctx.reply_to) {
                Ok((accepted, None)) => Ok((accepted, Body::Plain)),
                Ok((accepted, Some(opener))) => {
                    match verify_small_body(session, opener, accepted.length, &self.opened).await {
                        Ok(body) => Ok((accepted, body)),
                        Err(e) => {
                            ctx.reply_to = accepted.reply_to();
                            Err(e)
                        }
                    }
                }
                Err(e) => Err(e),
            };
        match result {
            Ok((accepted, body)) => {
                ctx.ex.route(accepted.pool.clone(), accepted.caller.clone(), accepted.local_deadline_ms);
                ctx.ex.grpc = accepted.grpc();
                ctx.accepted = Some(accepted);
                ctx.body = body;
                Ok(false)
            }
            Err(e) => {
                log::debug!(target: "fastproxy::inbound", "refused: {}", e.code());
                self.refuse(session, ctx, &e).await?;
                ctx.ex.error = Some(e);
                Ok(true)
            }
        }
    }

    async fn upstream_peer(&self, session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        ctx.ex.next_peer(session)
    }

    fn fail_to_connect(&self, _s: &mut Session, _peer: &HttpPeer, ctx: &mut Ctx, e: Box<Error>) -> Box<Error> {
        ctx.ex.connect_failed(e)
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut Ctx,
        client_reused: bool,
    ) -> Box<Error> {
        // A streamed body's opener cannot rewind: once records went out, no retry.
        let rewindable = !matches!(ctx.body, Body::Streaming(_)) || !ctx.body_started;
        let safe = session.req_header().method.is_idempotent() || super::unprocessed(&e);
        let replayable = safe && rewindable && !session.as_ref().retry_buffer_truncated();
        ctx.ex.failed_after_send(peer, session, e, replayable, client_reused)
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        up: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        restore_request(session, up, ctx).map_err(|e| ctx.ex.fail(e))?;
        h::fit_framing_to_version(up);
        Ok(())
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<()> {
        match &mut ctx.body {
            Body::Plain => {}
            Body::Verified(plain) => *body = Some(if end_of_stream { plain.clone() } else { Bytes::new() }),
            Body::Empty => {
                if body.as_ref().is_some_and(|b| !b.is_empty()) {
                    let e = ProxyError::Request(filters::Error::CorruptRecord);
                    return Err(ctx.ex.fail(e));
                }
            }
            Body::Streaming(opener) => {
                ctx.body_started = true;
                // Room for what this chunk can open to, within the process's
                // cap: waits while callees are slow to take what was opened.
                let chunk = body.take();
                let reservation = self.opened.reserve(opener.max_output(chunk.as_ref().map_or(0, Bytes::len))).await;
                let mut out = BytesMut::new();
                if let Err(e) = opener.open_piece(chunk.as_deref(), end_of_stream, &mut out) {
                    // Abort the upstream request: the callee never gets an
                    // unauthenticated byte, nor a complete-looking body.
                    log::warn!(target: "fastproxy::inbound", "aborting request body: {e}");
                    let e = ProxyError::Request(e);
                    return Err(ctx.ex.fail(e));
                }
                *body = if out.is_empty() && end_of_stream { None } else { Some(reservation.hold(out)) };
                self.metrics.set_opened(self.opened.in_use());
            }
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        ctx.ex.attempts.responded(resp.status.as_u16());
        self.seal_response(session, resp, ctx).map_err(|e| ctx.ex.fail(e))
    }

    async fn response_filter(&self, session: &mut Session, _resp: &mut ResponseHeader, _ctx: &mut Ctx) -> Result<()> {
        if self.draining.is_on() {
            session.set_keepalive(None);
        }
        Ok(())
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<Option<std::time::Duration>> {
        let deadline = ctx.ex.deadline_ms();
        super::check_body_deadline(&mut ctx.ex.error, deadline, end_of_stream)?;
        let Some(sealer) = ctx.reply.as_mut() else { return Ok(None) };
        let mut out = BytesMut::new();
        // Without flushed records (an HTTP/1.1 callee of known length) no
        // trailers can follow, so the sealer may hold the last piece.
        let result = sealer.seal_piece(body.take(), end_of_stream, ctx.flush_records, &mut out);
        if let Err(e) = result {
            log::warn!(target: "fastproxy::inbound", "aborting response: {e}");
            let e = ProxyError::UpstreamFailed;
            return Err(ctx.ex.fail(e));
        }
        if !out.is_empty() && log::log_enabled!(target: WIRE, log::Level::Debug) {
            log::debug!(target: WIRE, "sealed response body: {} bytes: {}", out.len(), hex_prefix(&out));
        }
        *body = Some(out.freeze());
        Ok(None)
    }

    /// The callee's trailers end the sealed body as its trailer record
    /// (PROTOCOL.md §6.5): in the `x-fp-trailer` trailer to an HTTP/2 peer,
    /// else as the body's last bytes.
    async fn response_trailer_filter(
        &self,
        session: &mut Session,
        upstream_trailers: &mut ::http::HeaderMap,
        ctx: &mut Ctx,
    ) -> Result<Option<Bytes>> {
        let Some(mut sealer) = ctx.reply.take() else { return Ok(None) };
        let sealed = trailers::seal(&mut sealer, upstream_trailers);
        upstream_trailers.clear();
        let sealed = match sealed {
            Ok(sealed) => sealed,
            Err(e) => {
                // The peer sees the body end without its final record.
                log::warn!(target: "fastproxy::inbound", "aborting response: trailers not sealed: {e}");
                session.as_mut().shutdown().await;
                return Err(ctx.ex.fail(ProxyError::UpstreamFailed));
            }
        };
        if log::log_enabled!(target: WIRE, log::Level::Debug) {
            log::debug!(target: WIRE, "sealed trailer record: {} bytes: {}", sealed.len(), hex_prefix(&sealed));
        }
        if !session.is_http2() {
            return Ok(Some(sealed));
        }
        let value = trailers::carrier_value(&sealed).ok_or_else(|| ctx.ex.fail(ProxyError::Internal))?;
        upstream_trailers.insert(trailers::CARRIER, value);
        Ok(None)
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        // This proxy's own answer ends as it is written, whatever was
        // decided for the upstream response's end.
        headers_end::at_end(session, AtEnd::Pass);
        let Some(err) = ctx.ex.classify(e) else {
            return FailToProxy { error_code: 0, can_reuse_downstream: false };
        };
        if session.response_written().is_none() {
            // The connection closes after this answer: it says so.
            session.set_keepalive(None);
            if let Err(e) = self.refuse(session, ctx, &err).await {
                log::debug!("inbound: could not send error response: {e}");
            }
        }
        FailToProxy { error_code: err.status(), can_reuse_downstream: false }
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut Ctx) {
        self.metrics.set_opened(self.opened.in_use());
        ctx.ex.finish(Role::Inbound, session, &self.metrics);
    }
}

impl Inbound {
    /// Answers `err`, signed for the request when its signature verified
    /// (PROTOCOL.md §8.1).
    async fn refuse(&self, session: &mut Session, ctx: &mut Ctx, err: &ProxyError) -> Result<()> {
        let reply = ctx.reply_to.take().or_else(|| ctx.accepted.as_ref().and_then(Accepted::reply_to));
        let snap = self.shared.load();
        refuse::respond(session, err, reply.as_ref(), &snap.config.keys, &self.nonces).await
    }

    /// Every check that needs only the headers, cheapest first: route, parse,
    /// signature, caller and its keys, freshness and replay, rules and rate,
    /// deadline. Once the signature verified, a refusal is signed: `reply_to`
    /// says for whom.
    ///
    /// Pure but for the replay cache it remembers the nonce in: it reads and
    /// sends nothing, so it can be tested without a server.
    pub fn accept(
        snap: Arc<Snapshot>,
        replay: &ReplayState,
        req: &RequestHeader,
        peer: Option<&PeerIdentity>,
        known: &mut super::Known,
        reply_to: &mut Option<ReplyTo>,
    ) -> Result<(Accepted, Option<Opener>), ProxyError> {
        let inb = snap.config.inbound.as_ref().ok_or(ProxyError::Internal)?;
        if req.headers.contains_key("upgrade") {
            return Err(ProxyError::BadRequest("protocol upgrades are not supported"));
        }
        let path = req.uri.path();
        let (service, below) = h::split_target(path)?;
        h::check_path(path)?;
        let (service_name, pool_name) = inb.services.get_key_value(service).ok_or(ProxyError::UnknownService)?;
        let pool = snap.pools.get(pool_name).ok_or(ProxyError::Internal)?.clone();
        known.service = Some(service_name.clone());
        let query = req.uri.query().unwrap_or("");
        if inb.dangerous_passthrough {
            return Ok((Accepted::plain(snap.clone(), service_name.clone(), pool), None));
        }
        let method = req.method.as_str();
        let header = h::envelope_header(&req.headers).map_err(ProxyError::Request)?;
        let (env, sig) = Envelope::parse_request(header, method, service, below, query).map_err(ProxyError::Request)?;
        let verified = snap.config.keys.verify(&env, &sig).map_err(ProxyError::Request)?;
        // The signature names the caller; with mutual TLS, the connection's
        // certificate must name the same one.
        let admitted = inb
            .callers
            .get(env.caller)
            .map_or(Ok(()), |policy| policy.check_identity(peer).map_err(ProxyError::Denied))
            .and_then(|()| Self::admit(&snap, replay, &env, verified, known, service_name.clone(), pool));
        if admitted.is_err() {
            *reply_to = Some(ReplyTo::of(&env));
        }
        admitted
    }

    /// The checks after the signature verified: caller and keys, freshness and
    /// replay, rules and rate, deadline, size.
    fn admit(
        snap: &Arc<Snapshot>,
        replay: &ReplayState,
        env: &Envelope<'_>,
        verified: filters::Verified,
        known: &mut super::Known,
        service_name: Name,
        pool: Arc<Pool>,
    ) -> Result<(Accepted, Option<Opener>), ProxyError> {
        let inb = snap.config.inbound.as_ref().ok_or(ProxyError::Internal)?;
        let Target::Request { method, path: below, .. } = env.target else { return Err(ProxyError::Internal) };
        // The caller is bound to its keys before its nonce is remembered:
        // otherwise a caller signing with its own key could claim another
        // caller's name and burn that caller's nonces (PROTOCOL.md §7).
        let (caller, policy) =
            inb.callers.get_key_value(env.caller).ok_or(ProxyError::Denied(Denial::UnknownCaller))?;
        policy.check_protection(env).map_err(ProxyError::Denied)?;
        known.caller = Some(caller.clone());
        let now = now_ms();
        replay.check(env.caller, &env.nonce, env.timestamp_ms, now).map_err(ProxyError::Request)?;
        policy.authorize(env.service, below, method).map_err(ProxyError::Denied)?;
        if env.deadline_ms.is_some_and(|d| d <= now) {
            return Err(ProxyError::DeadlineExceeded);
        }
        if env.length.is_some_and(|n| n > inb.max_body) {
            return Err(ProxyError::BodyTooLarge);
        }
        // The policy allowed these key ids, so it holds them: share its copies.
        let key_name = |id: &str| policy.keys.get(id).cloned().ok_or(ProxyError::Internal);
        let aead = match env.protection {
            Protection::Encrypt { alg, key } => Some((key_name(key)?, alg)),
            Protection::SignOnly => None,
        };
        let content_type = h::restored_content_type(env.content_type).map_err(ProxyError::Request)?;
        let local_deadline_ms = super::effective_deadline(env.deadline_ms, &pool, now);
        let accepted = Accepted {
            passthrough: false,
            local_deadline_ms,
            caller: caller.clone(),
            service: service_name,
            pool,
            nonce: env.nonce,
            aead,
            sign_key: key_name(env.sign_key)?,
            codec: env.codec,
            length: env.length,
            content_type,
            deadline_ms: env.deadline_ms,
            snap: snap.clone(),
        };
        Ok((accepted, Some(verified.opener(Limits { max_body: inb.max_body }))))
    }

    /// Answers the health endpoint: can `service` (or every service, when
    /// empty) be served now?
    async fn health(&self, session: &mut Session, service: &str) -> Result<()> {
        let snap = self.shared.load_full();
        let Some(inb) = snap.config.inbound.as_ref() else { return Ok(()) };
        let pools: Vec<(&str, bool)> = inb
            .services
            .iter()
            .filter(|(name, _)| service.is_empty() || &***name == service)
            .map(|(name, pool)| (&**name, snap.pools.get(pool).is_some_and(|p| p.has_available())))
            .collect();
        let ok = !pools.is_empty() && pools.iter().all(|(_, up)| *up);
        let body = serde_json::json!({
            "status": if ok { "ok" } else { "unavailable" },
            "services": pools.iter().map(|(n, up)| (*n, *up)).collect::<std::collections::BTreeMap<_, _>>(),
        })
        .to_string();
        let mut h = ResponseHeader::build(if ok { 200 } else { 503 }, Some(3))?;
        h.insert_header("content-type", "application/json")?;
        h.insert_header("content-length", body.len().to_string())?;
        h.insert_header("cache-control", "no-store")?;
        session.write_response_header(Box::new(h), false).await?;
        session.write_response_body(Some(Bytes::from(body)), true).await
    }

    /// Signs the callee's response (bound to the request's nonce), replaces
    /// its framing, and prepares the sealer.
    fn seal_response(&self, session: &mut Session, resp: &mut ResponseHeader, ctx: &mut Ctx) -> Result<(), ProxyError> {
        let acc = ctx.accepted.as_ref().ok_or(ProxyError::Internal)?;
        if acc.passthrough {
            h::strip_hop_by_hop(resp);
            return Ok(());
        }
        let status = resp.status.as_u16();
        let method = &session.req_header().method;
        let (bodyless, head) = (h::bodyless_response(method, status), *method == pingora::http::Method::HEAD);
        // A gRPC response with its status in the header section is
        // trailers-only: it ended with its headers, it has no body.
        let h2 = resp.version == ::http::Version::HTTP_2;
        let trailers_only = h2 && resp.headers.contains_key("grpc-status");
        let length = match h::content_length(&resp.headers) {
            _ if trailers_only => Some(0),
            // An empty HTTP/2 body may still end in trailers, which a body
            // signed as empty could not carry (PROTOCOL.md §6.5): its length
            // is left out. If the response ends with its headers instead, it
            // goes out signed as empty after all (below).
            Some(0) if h2 && !bodyless => None,
            length => length,
        };
        // A type that is not text is dropped, as it always was.
        let value = resp.headers.get(::http::header::CONTENT_TYPE).filter(|v| v.to_str().is_ok());
        let content_type = h::sealable_content_type(value).map_err(|_| ProxyError::UpstreamFailed)?.unwrap_or_default();
        // The refusal type is this proxy's own (PROTOCOL.md §8.1): a callee
        // may not speak for it.
        if content_type.starts_with(filters::refusal::REFUSAL_TYPE) {
            return Err(ProxyError::UpstreamFailed);
        }
        let content_type = content_type.to_owned();
        h::strip_fp_headers(resp);
        h::strip_hop_by_hop(resp);
        resp.remove_header("content-length");
        resp.remove_header("content-type");

        let protection = super::protection(&acc.aead);
        let env = Envelope {
            target: Target::Response { status, request_nonce: acc.nonce },
            service: &acc.service,
            caller: &acc.caller,
            content_type: &content_type,
            codec: acc.codec,
            protection,
            sign_key: &acc.sign_key,
            timestamp_ms: now_ms(),
            nonce: self.nonces.next_nonce(),
            length,
            deadline_ms: None,
        };
        let keys = &acc.snap.config.keys;
        let (sig, sealer) = keys.seal(&env, CompressOptions::default()).map_err(ProxyError::Request)?;
        let value = env.header_value(&sig);
        log::debug!(target: WIRE, "sealed response: {status}\n  {HEADER}: {value}");
        resp.insert_header(HEADER, value).map_err(|_| ProxyError::Internal)?;
        // Unknown length: a streaming response (events, long poll, gRPC) —
        // every chunk goes out as its own record at once. So does every
        // HTTP/2 response, which may end in trailers: nothing is held back
        // when the trailer record is written.
        ctx.flush_records = length.is_none() || h2;
        // An HTTP/2 callee may end a response of unknown length with its
        // headers: then it goes out signed as what it is, empty.
        if length.is_none() && !bodyless && h2 {
            let empty = Envelope { length: Some(0), nonce: self.nonces.next_nonce(), ..env };
            let sig = keys.sign_empty(&empty).map_err(ProxyError::Request)?;
            let value = HeaderValue::from_str(&empty.header_value(&sig)).map_err(|_| ProxyError::Internal)?;
            headers_end::at_end(session, AtEnd::SendEmpty(value));
        }
        if bodyless {
            if let (Some(n), true) = (length, head) {
                h::set_framing(resp, Some(n))?;
            }
        } else {
            // The sealed size is known only when records are cut at fixed
            // points: not when they leave as the callee's chunks come, nor
            // when a trailer record may end them.
            let exact = match (length, acc.codec) {
                (Some(0), _) => Some(0),
                (Some(n), Codec::None) if !ctx.flush_records => Some(filters::sealed_len(n)),
                _ => None,
            };
            // A response always says its length, an empty one too.
            h::set_framing(resp, exact)?;
            if length != Some(0) {
                resp.insert_header("content-type", h::SEALED_CONTENT_TYPE).map_err(|_| ProxyError::Internal)?;
            }
        }
        ctx.reply = (!bodyless).then_some(sealer);
        Ok(())
    }
}

/// Rewrites the upstream request to what the caller sent: path below the
/// service, original content type and length, the verified caller identity.
fn restore_request(session: &Session, up: &mut RequestHeader, ctx: &mut Ctx) -> Result<(), ProxyError> {
    let acc = ctx.accepted.as_ref().ok_or(ProxyError::Internal)?;
    h::keep_authority(up)?;
    up.set_uri(h::below_service(&up.uri, &acc.service)?);
    h::strip_fp_headers(up);
    h::strip_hop_by_hop(up);
    if acc.passthrough {
        return Ok(());
    }
    up.remove_header("content-length");
    up.remove_header("content-type");
    let mut r = up.insert_header(h::FORWARDED_CALLER, &*acc.caller);
    if let Some(d) = acc.deadline_ms {
        r = r.and(up.insert_header(h::FORWARDED_DEADLINE, d.to_string()));
    }
    if crate::grpc::wants_trailers(&session.req_header().headers) {
        r = r.and(up.insert_header(::http::header::TE, "trailers"));
    }
    // A gRPC callee learns the deadline from `grpc-timeout`: what is left of
    // the signed one, never the unsigned header the sender may have added.
    up.remove_header(crate::grpc::TIMEOUT);
    if let (true, Some(d)) = (acc.grpc(), acc.deadline_ms) {
        let left = d.saturating_sub(now_ms()).max(1);
        r = r.and(up.insert_header(crate::grpc::TIMEOUT, crate::grpc::format_timeout(left)));
    }
    if let Some(ct) = &acc.content_type {
        r = r.and(up.insert_header(::http::header::CONTENT_TYPE, ct.clone()));
    }
    let length = match &ctx.body {
        Body::Verified(plain) => Some(plain.len() as u64),
        Body::Empty => Some(0),
        Body::Streaming(_) | Body::Plain => acc.length,
    };
    r.map_err(|_| ProxyError::Internal)?;
    if length == Some(0) && !h::method_has_body(&session.req_header().method) {
        return Ok(());
    }
    h::set_framing(up, length)
}

/// Opens a small sealed body whole before the callee is contacted, so the
/// callee never sees a byte of a body that later fails: a body signed as
/// empty (`l=0`), a body whose signed length is at most [`VERIFY_FIRST_MAX`],
/// and an unsized body whose sealed `Content-Length` is at most that. Larger
/// or unsized chunked bodies stream.
async fn verify_small_body(
    session: &mut Session,
    mut opener: Opener,
    length: Option<u64>,
    opened: &OpenBudget,
) -> Result<Body, ProxyError> {
    if opener.is_done() {
        // Signed as empty: no records may follow. Any body byte is refused
        // here, before the callee is contacted (PROTOCOL.md §6.1).
        if !session.is_body_empty() {
            while let Some(chunk) = read_body_chunk(session).await? {
                if !chunk.is_empty() {
                    return Err(ProxyError::Request(filters::Error::CorruptRecord));
                }
            }
        }
        return Ok(Body::Empty);
    }
    let wire_len = h::content_length(&session.req_header().headers);
    let small = match length {
        Some(n) => n <= VERIFY_FIRST_MAX,
        None => wire_len.is_some_and(|n| n > 0 && n <= VERIFY_FIRST_MAX),
    };
    if !small {
        return Ok(Body::Streaming(opener));
    }
    session.as_mut().enable_retry_buffering();
    // The sealed body first (at most VERIFY_FIRST_WIRE_MAX bytes), then room
    // for what it can open to, then the plaintext.
    let mut sealed = BytesMut::new();
    while let Some(chunk) = read_body_chunk(session).await? {
        sealed.extend_from_slice(&chunk);
        if wire_len.is_some_and(|len| sealed.len() as u64 > len) {
            return Err(ProxyError::BadRequest("request body longer than its Content-Length"));
        }
        if sealed.len() as u64 > VERIFY_FIRST_WIRE_MAX {
            // Records that open to nothing, sent to hold the connection.
            return Err(ProxyError::Request(filters::Error::TooLarge(filters::Limit::Body)));
        }
    }
    let bound = opener.max_output(sealed.len()).min(length.map_or(usize::MAX, |n| n as usize));
    let reservation = opened.reserve(bound).await;
    let mut plain = BytesMut::with_capacity(length.unwrap_or(0) as usize);
    opener.open(&sealed, &mut plain).map_err(ProxyError::Request)?;
    opener.finish().map_err(ProxyError::Request)?;
    Ok(Body::Verified(reservation.hold(plain)))
}

/// The next piece of the request body.
async fn read_body_chunk(session: &mut Session) -> Result<Option<Bytes>, ProxyError> {
    session.read_request_body().await.map_err(|e| match e.etype() {
        pingora::ErrorType::ReadTimedout => ProxyError::RequestTimeout,
        _ => ProxyError::BadRequest("request body read failed"),
    })
}
