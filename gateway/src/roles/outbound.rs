//! The outbound (caller-side) role: takes the app's plain request for
//! `/<callee>/<path>`, seals it, sends it to the callee's inbound proxies, and
//! opens the sealed response.
//!
//! Request path: `request_filter` (route, caller, limits → [`Plan`]) →
//! `upstream_peer` → `upstream_request_filter` (sign, headers, framing; once per
//! attempt, with a fresh nonce) → `request_body_filter` (seal records).
//! Response path: `upstream_response_filter` (verify, restore headers) →
//! `response_body_filter` (open records).

use std::sync::Arc;

use ::http::HeaderValue;
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use filters::envelope::HEADER;
use filters::{Envelope, Limits, Nonce, NonceSource, Opener, Sealer, Target};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::modules::http::HttpModules;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, Result};

use super::headers_end::{self, AtEnd};
use super::{hex_prefix, trailers, Exchange, WIRE};
use crate::config::{Name, Seal};
use crate::error::{self, ProxyError, Role, ERROR_CODE, ERROR_SOURCE};
use crate::http_util::{self as h, now_ms};
use crate::lifecycle::Draining;
use crate::metrics::Metrics;
use crate::pools::Pool;
use crate::state::{Shared, Snapshot};

/// Bodies up to this size are read whole before sealing when compressed, so
/// the sealed request still carries an exact `Content-Length` (and Pingora can
/// replay them on retry: its retry buffer holds 64 KiB).
const PRESEAL_MAX: u64 = 64 * 1024;

/// The outbound proxy.
pub struct Outbound {
    shared: Shared,
    metrics: Arc<Metrics>,
    nonces: Arc<NonceSource>,
    draining: Draining,
}

impl Outbound {
    /// A proxy reading its config from `shared`, counting into `metrics`,
    /// drawing request nonces from `nonces`, closing connections after each
    /// response once `draining`.
    pub fn new(shared: Shared, metrics: Arc<Metrics>, nonces: Arc<NonceSource>, draining: Draining) -> Self {
        Outbound { shared, metrics, nonces, draining }
    }
}

/// What `request_filter` decided for a request.
pub struct Plan {
    snap: Arc<Snapshot>,
    caller: Name,
    service: Name,
    seal: Arc<Seal>,
    pool: Arc<Pool>,
    /// The caller's deadline, signed and sent on.
    deadline_ms: Option<u64>,
    /// The deadline this proxy enforces: the signed one or the pool's total
    /// timeout, whichever comes first.
    local_deadline_ms: Option<u64>,
    length: Option<u64>,
    /// The app's content type (a shared reference to the request's bytes).
    content_type: Option<HeaderValue>,
    max_body: u64,
    max_response_body: u64,
    /// Forward unsealed (benchmarks only).
    passthrough: bool,
    /// A gRPC call: routed by its authority, its whole path sent on.
    grpc: bool,
}

/// How the response body is handled.
// One per request, inline in the context: boxing the opener would only add
// an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Default)]
enum Reply {
    /// No response yet.
    #[default]
    Pending,
    /// A sealed body: open it.
    Open(Opener),
    /// No body by HTTP's rules.
    Bodyless,
    /// Unsealed traffic (`dangerous_passthrough`).
    Plain,
}

/// Per-request state.
pub struct Ctx {
    ex: Exchange,
    plan: Option<Plan>,
    /// Plaintext read up front (compressed small bodies).
    small_body: Option<Bytes>,
    /// The current attempt's whole sealed body, when sealed up front.
    presealed: Option<Bytes>,
    sealer: Option<Sealer>,
    body_in: u64,
    sent_nonce: Option<Nonce>,
    reply: Reply,
}

#[async_trait]
impl ProxyHttp for Outbound {
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
            plan: None,
            small_body: None,
            presealed: None,
            sealer: None,
            body_in: 0,
            sent_nonce: None,
            reply: Reply::Pending,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        if let Some(out) = self.shared.load().config.outbound.as_ref() {
            super::connection_timeouts(session, self.draining.is_on(), out.idle_timeout_s, out.body_timeout);
        }
        let body_empty = session.is_body_empty();
        let result = match plan(self.shared.load_full(), session.req_header(), body_empty, &mut ctx.ex.known) {
            Ok(plan) => read_small_body(session, &plan).await.map(|small| (plan, small)),
            Err(e) => Err(e),
        };
        match result {
            Ok((plan, small)) => {
                ctx.ex.route(plan.pool.clone(), plan.caller.clone(), plan.local_deadline_ms);
                ctx.ex.grpc = plan.grpc;
                ctx.plan = Some(plan);
                ctx.small_body = small;
                Ok(false)
            }
            Err(e) => {
                error::respond(session, Role::Outbound, &e).await?;
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
        // Safe to send again: an idempotent method whose body Pingora can
        // still replay (whole, not truncated), on a pooled connection that was
        // found closed (the inbound proxy never saw the request). A request
        // that did reach an inbound proxy is retried there, next to the
        // callee, and not here too: attempts do not multiply across the hops
        // (OPERATIONS.md "Retries"). A POST that may have reached an inbound
        // proxy never goes twice; one an HTTP/2 peer turned away unprocessed
        // goes again, like a request that could not connect.
        let safe = session.req_header().method.is_idempotent() && client_reused || super::unprocessed(&e);
        let replayable = safe && !session.as_ref().retry_buffer_truncated();
        ctx.ex.failed_after_send(peer, session, e, replayable, client_reused)
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        up: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        self.seal_request(session, up, ctx).map_err(|e| ctx.ex.fail(e))?;
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
        if let Some(sealed) = &ctx.presealed {
            // The body was sealed whole; Pingora replays the plaintext it buffered.
            *body = Some(if end_of_stream { sealed.clone() } else { Bytes::new() });
            return Ok(());
        }
        let (Some(sealer), Some(plan)) = (ctx.sealer.as_mut(), ctx.plan.as_ref()) else { return Ok(()) };
        let mut out = BytesMut::new();
        let result = (|| {
            let chunk = body.take();
            ctx.body_in += chunk.as_ref().map_or(0, |c| c.len() as u64);
            if ctx.body_in > plan.max_body {
                return Err(ProxyError::BodyTooLarge);
            }
            // A body of unknown length is a stream (an upload in pieces, a
            // long poll): what the app sent goes on now, as its own record,
            // instead of waiting for 64 KiB or the end.
            let stream = plan.length.is_none();
            sealer.seal_piece(chunk, end_of_stream, stream, &mut out).map_err(ProxyError::Request)
        })();
        if let Err(e) = result {
            return Err(ctx.ex.fail(e));
        }
        if !out.is_empty() && log::log_enabled!(target: WIRE, log::Level::Debug) {
            log::debug!(target: WIRE, "sealed request body: {} bytes: {}", out.len(), hex_prefix(&out));
        }
        // An empty final chunk is no chunk at all: the upstream body may
        // already be complete (a request signed as empty has no records).
        *body = if out.is_empty() && end_of_stream { None } else { Some(out.freeze()) };
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        ctx.ex.attempts.responded(resp.status.as_u16());
        self.open_response(session, resp, ctx).map_err(|e| ctx.ex.fail(e))
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
        match &mut ctx.reply {
            Reply::Open(opener) => {
                let mut out = BytesMut::new();
                if let Err(e) = opener.open_piece(body.take().as_deref(), end_of_stream, &mut out) {
                    // Headers are already out: abort the stream rather than deliver
                    // an unauthenticated or incomplete body.
                    let e = ProxyError::Response(e);
                    log::warn!(target: "fastproxy::outbound", "aborting response: {}", e.message());
                    return Err(ctx.ex.fail(e));
                }
                *body = Some(out.freeze());
            }
            Reply::Pending | Reply::Bodyless | Reply::Plain => {}
        }
        Ok(None)
    }

    /// The response's trailers, from its verified trailer record (PROTOCOL.md
    /// §6.5), carried in `x-fp-trailer` over HTTP/2. Anything that does not
    /// verify aborts the response: the app never sees a complete-looking
    /// answer whose end was not authenticated.
    async fn response_trailer_filter(
        &self,
        session: &mut Session,
        upstream_trailers: &mut ::http::HeaderMap,
        ctx: &mut Ctx,
    ) -> Result<Option<Bytes>> {
        let Reply::Open(opener) = &mut ctx.reply else {
            if !matches!(ctx.reply, Reply::Plain) {
                upstream_trailers.clear();
            }
            return Ok(None);
        };
        let mut out = BytesMut::new();
        let opened = trailers::carried(upstream_trailers).and_then(|record| {
            if let Some(record) = record {
                opener.open(&record, &mut out)?;
            }
            opener.finish()?;
            // The carrier holds the trailer record, no data.
            if out.is_empty() {
                Ok(())
            } else {
                Err(filters::Error::CorruptRecord)
            }
        });
        if let Err(e) = opened {
            upstream_trailers.clear();
            let e = ProxyError::Response(e);
            log::warn!(target: "fastproxy::outbound", "aborting response: {}", e.message());
            session.as_mut().shutdown().await;
            return Err(ctx.ex.fail(e));
        }
        match opener.take_trailers() {
            Some(fields) => trailers::restore(upstream_trailers, fields),
            None => upstream_trailers.clear(),
        }
        Ok(None)
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        // This proxy's own answer ends as it is written, whatever was
        // decided for the upstream response's end.
        headers_end::at_end(session, AtEnd::Pass);
        let err = ctx.ex.classify(e);
        super::fail_to_proxy(session, Role::Outbound, err).await
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut Ctx) {
        ctx.ex.finish(Role::Outbound, session, &self.metrics);
    }
}

/// Routes an app's request (its head `req`; `body_empty` when it has no
/// body) under generation `snap` and decides how to seal it. Pure: nothing
/// is read or sent, so it can be tested without a server. What it learns of
/// the caller and service is noted in `known`, for the logs, even when it
/// refuses.
pub fn plan(
    snap: Arc<Snapshot>,
    req: &RequestHeader,
    body_empty: bool,
    known: &mut super::Known,
) -> Result<Plan, ProxyError> {
    let out = snap.config.outbound.as_ref().ok_or(ProxyError::Internal)?;
    if req.headers.contains_key("upgrade") {
        return Err(ProxyError::BadRequest("protocol upgrades are not supported"));
    }
    // What the inbound proxy would refuse is refused here, before sealing.
    if req.headers.len() > out.max_header_count || h::head_len(req) > out.max_header_bytes {
        return Err(ProxyError::HeadersTooLarge);
    }
    let path = req.uri.path();
    // A gRPC call's path is its method (`/package.Service/Method`): the
    // callee is named by the authority the client dialled.
    let grpc = crate::grpc::is_grpc(&req.headers);
    let service =
        if grpc { h::authority_host(req).ok_or(ProxyError::UnknownService)? } else { h::split_target(path)?.0 };
    h::check_path(path)?;
    let (service, route) = out.routes.get_key_value(service).ok_or(ProxyError::UnknownService)?;
    known.service = Some(service.clone());
    let pool = snap.pools.get(&route.upstream).ok_or(ProxyError::Internal)?.clone();
    let asked = match &out.caller {
        Some(fixed) => fixed,
        None => h::header_str(&req.headers, &out.caller_header).ok_or(ProxyError::MissingCaller)?,
    };
    let (caller, seal) = out.callers.get_key_value(asked).ok_or(ProxyError::UnknownCaller)?;
    let (caller, seal) = (caller.clone(), seal.clone());
    known.caller = Some(caller.clone());
    let grpc_timeout = grpc.then(|| h::header_str(&req.headers, crate::grpc::TIMEOUT)).flatten();
    let deadline_ms = match (h::header_str(&req.headers, &out.timeout_header), grpc_timeout) {
        (Some(t), _) => {
            let ms: u64 = t.trim().parse().map_err(|_| ProxyError::BadRequest("invalid timeout header"))?;
            Some(now_ms().saturating_add(ms))
        }
        (None, Some(t)) => {
            let ms = crate::grpc::parse_timeout_ms(t).ok_or(ProxyError::BadRequest("invalid grpc-timeout"))?;
            Some(now_ms().saturating_add(ms))
        }
        (None, None) => route.timeout.map(|d| now_ms().saturating_add(d.as_millis() as u64)),
    };
    let length = if body_empty { Some(0) } else { h::content_length(&req.headers) };
    if length.is_some_and(|n| n > out.max_body) {
        return Err(ProxyError::BodyTooLarge);
    }
    let content_type = req.headers.get(::http::header::CONTENT_TYPE);
    h::sealable_content_type(content_type).map_err(ProxyError::BadRequest)?;
    let content_type = content_type.cloned();
    let local_deadline_ms = super::effective_deadline(deadline_ms, &pool, now_ms());
    Ok(Plan {
        local_deadline_ms,
        caller,
        service: service.clone(),
        seal,
        pool,
        deadline_ms,
        length,
        content_type,
        max_body: out.max_body,
        max_response_body: out.max_response_body,
        passthrough: out.dangerous_passthrough,
        grpc,
        snap: snap.clone(),
    })
}

impl Plan {
    /// The caller the request is sealed for.
    pub fn caller(&self) -> &str {
        &self.caller
    }

    /// The callee service.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The pool of inbound proxies it goes to.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The caller's deadline, signed and sent on (ms since the epoch).
    pub fn deadline_ms(&self) -> Option<u64> {
        self.deadline_ms
    }

    /// The body length signed, when known before the body.
    pub fn length(&self) -> Option<u64> {
        self.length
    }
}

impl Outbound {
    /// Signs this attempt's envelope (fresh nonce), writes the protocol
    /// headers and the body framing, and prepares the sealer.
    fn seal_request(&self, session: &Session, up: &mut RequestHeader, ctx: &mut Ctx) -> Result<(), ProxyError> {
        let plan = ctx.plan.as_ref().ok_or(ProxyError::Internal)?;
        let out = plan.snap.config.outbound.as_ref().ok_or(ProxyError::Internal)?;
        if !plan.passthrough {
            for name in out.replaced_headers.iter() {
                up.remove_header(name);
            }
        }
        h::strip_fp_headers(up);
        h::strip_hop_by_hop(up);
        let req = session.req_header();
        if crate::grpc::wants_trailers(&req.headers) {
            up.insert_header(::http::header::TE, "trailers").map_err(|_| ProxyError::Internal)?;
        }
        if plan.grpc {
            // Sent on as `/<callee>/<package.Service>/<Method>`; the deadline
            // travels signed (`d`), the inbound proxy tells the callee.
            h::keep_authority(up)?;
            let target = format!("/{}{}", plan.service, req.uri.path_and_query().map_or("/", |pq| pq.as_str()));
            up.set_uri(target.parse().map_err(|_| ProxyError::BadRequest("invalid request target"))?);
            up.remove_header(crate::grpc::TIMEOUT);
        }
        if plan.passthrough {
            return Ok(());
        }

        let nonce = self.nonces.next_nonce();
        let below = if plan.grpc { req.uri.path() } else { h::split_target(req.uri.path())?.1 };
        let protection = super::protection(&plan.seal.aead);
        let env = Envelope {
            target: Target::Request { method: req.method.as_str(), path: below, query: req.uri.query().unwrap_or("") },
            service: &plan.service,
            caller: &plan.caller,
            content_type: plan.content_type.as_ref().and_then(|v| v.to_str().ok()).unwrap_or(""),
            codec: plan.seal.codec,
            protection,
            sign_key: &plan.seal.sign_key,
            timestamp_ms: now_ms(),
            nonce,
            length: plan.length,
            deadline_ms: plan.deadline_ms,
        };
        let (sig, mut sealer) = plan.snap.config.keys.seal(&env, plan.seal.compress).map_err(ProxyError::Request)?;
        let value = env.header_value(&sig);
        log::debug!(target: WIRE, "sealed request: {} {}\n  {HEADER}: {value}", req.method, req.uri);
        up.insert_header(HEADER, value).map_err(|_| ProxyError::Internal)?;

        ctx.body_in = 0;
        ctx.sent_nonce = Some(nonce);
        ctx.presealed = None;
        ctx.sealer = None;
        if let Some(plain) = &ctx.small_body {
            let mut sealed = BytesMut::with_capacity(plain.len() + filters::record::RECORD_OVERHEAD);
            sealer.seal_final(plain, &mut sealed).map_err(ProxyError::Request)?;
            h::set_sealed_framing(up, Some(sealed.len() as u64))?;
            log::debug!(target: WIRE, "sealed request body: {} bytes: {}", sealed.len(), hex_prefix(&sealed));
            ctx.presealed = Some(sealed.freeze());
        } else {
            let exact = match (plan.length, plan.seal.codec) {
                (Some(n), filters::Codec::None) => Some(filters::sealed_len(n)),
                (Some(0), _) => Some(0),
                _ => None,
            };
            h::set_sealed_framing(up, exact)?;
            ctx.sealer = Some(sealer);
        }
        Ok(())
    }

    /// Verifies the inbound proxy's response and restores the callee's headers.
    fn open_response(&self, session: &mut Session, resp: &mut ResponseHeader, ctx: &mut Ctx) -> Result<(), ProxyError> {
        let plan = ctx.plan.as_ref().ok_or(ProxyError::Internal)?;
        if plan.passthrough {
            h::strip_hop_by_hop(resp);
            ctx.reply = Reply::Plain;
            return Ok(());
        }
        let nonce = ctx.sent_nonce.ok_or(ProxyError::Internal)?;
        let status = resp.status.as_u16();
        if !resp.headers.contains_key(HEADER) {
            return Err(refused(resp));
        }
        let protection = super::protection(&plan.seal.aead);
        let request = Envelope {
            target: Target::Request { method: "", path: "", query: "" },
            service: &plan.service,
            caller: &plan.caller,
            content_type: "",
            codec: plan.seal.codec,
            protection,
            sign_key: &plan.seal.sign_key,
            timestamp_ms: 0,
            nonce,
            length: None,
            deadline_ms: None,
        };
        let header = h::envelope_header(&resp.headers).map_err(ProxyError::Response)?;
        let (env, sig) = Envelope::parse_response(header, status, &request).map_err(ProxyError::Response)?;
        let verified = plan.snap.config.keys.verify(&env, &sig).map_err(ProxyError::Response)?;
        let length = env.length;
        // A signed refusal: its status, code and retry delay are the inbound
        // proxy's, authenticated (PROTOCOL.md §8.1); an unsigned
        // `Retry-After` on it is dropped. (On a callee's response it is an
        // application header like any other, PROTOCOL.md §9.)
        let refusal = filters::refusal::parse(env.content_type)
            .map_err(ProxyError::Response)?
            .map(|r| (r.code.to_owned(), r.retry_after));
        if let (Some((code, retry_after)), true) = (&refusal, plan.grpc) {
            // A gRPC caller reads a status, not a JSON body: answered by
            // `fail_to_proxy` as a trailers-only response.
            return Err(ProxyError::Refused { status, code: code.clone(), retry_after: *retry_after });
        }
        let content_type = match (env.content_type, &refusal) {
            ("", _) => None,
            (_, Some(_)) => Some(HeaderValue::from_static("application/json")),
            (ct, None) => h::restored_content_type(ct).map_err(ProxyError::Response)?,
        };
        let method = &session.req_header().method;
        let (bodyless, head) = (h::bodyless_response(method, status), *method == pingora::http::Method::HEAD);
        ctx.reply = if bodyless {
            Reply::Bodyless
        } else {
            Reply::Open(verified.opener(Limits { max_body: plan.max_response_body }))
        };
        // Records are due unless the body was signed as empty: a response
        // that ends with its headers instead is truncated.
        if !bodyless && length != Some(0) {
            headers_end::at_end(session, AtEnd::Refuse);
        }

        h::strip_fp_headers(resp);
        h::strip_hop_by_hop(resp);
        resp.remove_header("content-length");
        resp.remove_header("content-type");
        if refusal.is_some() {
            resp.remove_header("retry-after");
        }
        let mut r = Ok(());
        if let Some(ct) = content_type {
            r = r.and(resp.insert_header(::http::header::CONTENT_TYPE, ct));
        }
        if let Some((code, retry_after)) = refusal {
            r = r.and(resp.insert_header(ERROR_SOURCE, "inbound"));
            r = r.and(resp.insert_header(ERROR_CODE, code));
            if let Some(secs) = retry_after {
                r = r.and(resp.insert_header("retry-after", secs.to_string()));
            }
        }
        r.map_err(|_| ProxyError::Internal)?;
        match (bodyless, length) {
            (true, Some(n)) if head => h::set_framing(resp, Some(n)),
            (true, _) => Ok(()),
            (false, length) => h::set_framing(resp, length),
        }
    }
}

/// An unsealed response can only be an inbound proxy's refusal of a request
/// it could not verify, or a forgery: its status, code and `Retry-After` are
/// not trusted. The app gets a generic 502 (`unverified_refusal`, or
/// `unsealed_response` for anything that does not even claim to be a
/// refusal), and the request is not sent again.
fn refused(resp: &ResponseHeader) -> ProxyError {
    let status = resp.status.as_u16();
    if status < 400 || h::header_str(&resp.headers, ERROR_SOURCE) != Some("inbound") {
        return ProxyError::UnsealedResponse;
    }
    let code = h::header_str(&resp.headers, ERROR_CODE)
        .filter(|c| !c.is_empty() && c.len() <= 64 && c.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
        .unwrap_or("unknown")
        .to_owned();
    let err = ProxyError::UnverifiedRefusal { status, code };
    log::info!(target: "fastproxy::outbound", "{}", err.message());
    err
}

/// Reads a small compressed body whole (see [`PRESEAL_MAX`]).
async fn read_small_body(session: &mut Session, plan: &Plan) -> Result<Option<Bytes>, ProxyError> {
    let Some(len) = plan.length.filter(|n| *n > 0 && *n <= PRESEAL_MAX) else { return Ok(None) };
    if plan.seal.codec == filters::Codec::None || plan.passthrough {
        return Ok(None);
    }
    session.as_mut().enable_retry_buffering();
    let mut buf = BytesMut::with_capacity(len as usize);
    while let Some(chunk) = session.read_request_body().await.map_err(|e| match e.etype() {
        pingora::ErrorType::ReadTimedout => ProxyError::RequestTimeout,
        _ => ProxyError::BadRequest("request body read failed"),
    })? {
        buf.extend_from_slice(&chunk);
        if buf.len() as u64 > len {
            return Err(ProxyError::BadRequest("request body longer than its Content-Length"));
        }
    }
    Ok(Some(buf.freeze()))
}
