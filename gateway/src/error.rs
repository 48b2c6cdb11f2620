//! The gateway's error model and its one mapping to HTTP: status, stable code,
//! JSON body `{"error":{"code":"…","message":"…"}}`, and the
//! `x-fp-error-source` header naming the proxy that produced it.

use std::borrow::Cow;

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

use crate::grpc;
use crate::policy::Denial;

/// Header naming which proxy produced an error response.
pub const ERROR_SOURCE: &str = "x-fp-error-source";
/// Header repeating the error's stable code (read by the outbound proxy when
/// it relays an inbound proxy's refusal).
pub const ERROR_CODE: &str = "x-fp-error-code";

/// Which proxy role is answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Caller side.
    Outbound,
    /// Callee side.
    Inbound,
    /// The built-in registry.
    Center,
}

impl Role {
    /// Lower-case name, for headers and logs.
    pub fn name(self) -> &'static str {
        match self {
            Role::Outbound => "outbound",
            Role::Inbound => "inbound",
            Role::Center => "center",
        }
    }
}

/// Why a request failed at a proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyError {
    /// The sealed request failed a codec check (parse, signature, replay, body).
    Request(filters::Error),
    /// The sealed response from the inbound proxy failed a codec check.
    Response(filters::Error),
    /// The request itself is unusable (bad target, dot segments, upgrade…).
    BadRequest(&'static str),
    /// No route or service of that name.
    UnknownService,
    /// The caller did not say who it is.
    MissingCaller,
    /// The caller is not configured at this outbound proxy.
    UnknownCaller,
    /// Receiver policy refused the request.
    Denied(Denial),
    /// The body is larger than this proxy accepts.
    BodyTooLarge,
    /// The request head has more or larger headers than this proxy accepts.
    HeadersTooLarge,
    /// The client stopped sending its request body for longer than the body
    /// timeout.
    RequestTimeout,
    /// The caller's deadline passed.
    DeadlineExceeded,
    /// The pool has no backend to try.
    NoHealthyUpstream,
    /// The pool is at its in-flight limit.
    PoolOverloaded,
    /// The listener is at its connection cap (`max_connections`).
    TooManyConnections,
    /// Connecting to or talking with the upstream failed.
    UpstreamFailed,
    /// The upstream did not answer in time.
    UpstreamTimeout,
    /// The inbound proxy answered without sealing a success response.
    UnsealedResponse,
    /// The callee's inbound proxy refused the request without signing its
    /// answer (it could not verify the request, or someone on the path
    /// forged the answer): its status, code and `Retry-After` are not
    /// trusted. Carries what it claimed, for the message only.
    UnverifiedRefusal {
        /// The status it answered with.
        status: u16,
        /// The code it named (`a-z _` only), or `unknown`.
        code: String,
    },
    /// The callee's inbound proxy refused the request with a signed
    /// refusal (PROTOCOL.md §8.1), passed on as an error of this proxy's
    /// own where the caller cannot take the refusal as it is (a gRPC call).
    Refused {
        /// Its status.
        status: u16,
        /// Its code (`a-z _`).
        code: String,
        /// Its signed retry delay, seconds.
        retry_after: Option<u64>,
    },
    /// A bug or resource failure in the proxy itself.
    Internal,
}

impl ProxyError {
    /// HTTP status for this error.
    pub fn status(&self) -> u16 {
        use filters::Error as E;
        match self {
            ProxyError::Request(e) => match e {
                // Anything that fails authentication, header or body.
                E::BadSignature
                | E::StaleTimestamp
                | E::Replay
                | E::UnknownKey(_)
                | E::DisallowedAlgorithm
                | E::CorruptRecord
                | E::Truncated
                | E::LengthMismatch => 401,
                E::TooLarge(filters::Limit::Header) => 431,
                E::TooLarge(_) | E::RecordLimit => 413,
                _ => 400,
            },
            ProxyError::Response(_)
            | ProxyError::UnsealedResponse
            | ProxyError::UnverifiedRefusal { .. }
            | ProxyError::UpstreamFailed => 502,
            ProxyError::BadRequest(_) | ProxyError::MissingCaller => 400,
            ProxyError::UnknownService => 404,
            ProxyError::UnknownCaller => 403,
            ProxyError::Denied(Denial::RateLimited(_)) => 429,
            ProxyError::Denied(_) => 403,
            ProxyError::BodyTooLarge => 413,
            ProxyError::HeadersTooLarge => 431,
            ProxyError::RequestTimeout => 408,
            ProxyError::DeadlineExceeded | ProxyError::UpstreamTimeout => 504,
            ProxyError::NoHealthyUpstream | ProxyError::PoolOverloaded | ProxyError::TooManyConnections => 503,
            ProxyError::Refused { status, .. } => *status,
            ProxyError::Internal => 500,
        }
    }

    /// True when the failure comes from the downstream side of this proxy
    /// (the request, its body or its sender), not from the upstream: such a
    /// failure is never retried and never counts against a backend.
    pub fn is_downstream(&self) -> bool {
        matches!(
            self,
            ProxyError::Request(_)
                | ProxyError::BadRequest(_)
                | ProxyError::UnknownService
                | ProxyError::MissingCaller
                | ProxyError::UnknownCaller
                | ProxyError::Denied(_)
                | ProxyError::BodyTooLarge
                | ProxyError::HeadersTooLarge
                | ProxyError::RequestTimeout
        )
    }

    /// True when the failure must end the request as it is: a downstream
    /// failure ([`ProxyError::is_downstream`]) or an answer from the peer that
    /// a second attempt would only repeat (an unverified refusal). Such a
    /// failure is never retried, nor held against a backend.
    pub fn is_final(&self) -> bool {
        self.is_downstream() || matches!(self, ProxyError::UnverifiedRefusal { .. } | ProxyError::Refused { .. })
    }

    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ProxyError::Request(e) => e.code(),
            ProxyError::Response(_) => "bad_response",
            ProxyError::BadRequest(_) => "bad_request",
            ProxyError::UnknownService => "unknown_service",
            ProxyError::MissingCaller => "missing_caller",
            ProxyError::UnknownCaller => "unknown_caller",
            ProxyError::Denied(Denial::UnknownCaller) => "caller_not_allowed",
            ProxyError::Denied(Denial::KeyNotAllowed) => "key_not_allowed",
            ProxyError::Denied(Denial::EncryptionRequired) => "encryption_required",
            ProxyError::Denied(Denial::NotAllowed) => "forbidden",
            ProxyError::Denied(Denial::RateLimited(_)) => "rate_limited",
            ProxyError::Denied(Denial::IdentityMismatch) => "identity_mismatch",
            ProxyError::BodyTooLarge => "body_too_large",
            ProxyError::HeadersTooLarge => "headers_too_large",
            ProxyError::RequestTimeout => "request_timeout",
            ProxyError::DeadlineExceeded => "deadline_exceeded",
            ProxyError::NoHealthyUpstream => "no_healthy_upstream",
            ProxyError::PoolOverloaded => "pool_overloaded",
            ProxyError::TooManyConnections => "too_many_connections",
            ProxyError::UpstreamFailed => "upstream_failed",
            ProxyError::UpstreamTimeout => "upstream_timeout",
            ProxyError::UnsealedResponse => "unsealed_response",
            ProxyError::UnverifiedRefusal { .. } => "unverified_refusal",
            ProxyError::Refused { .. } => "refused",
            ProxyError::Internal => "internal",
        }
    }

    /// Human-readable message: names the failed check, never secrets or
    /// values from the request.
    pub fn message(&self) -> Cow<'static, str> {
        match self {
            ProxyError::Request(e) => Cow::Owned(e.to_string()),
            ProxyError::Response(e) => Cow::Owned(format!("response from the inbound proxy rejected: {e}")),
            ProxyError::BadRequest(why) => Cow::Borrowed(why),
            ProxyError::UnknownService => Cow::Borrowed("no route to this service"),
            ProxyError::MissingCaller => Cow::Borrowed("the request does not name its caller"),
            ProxyError::UnknownCaller => Cow::Borrowed("this caller is not configured at the outbound proxy"),
            ProxyError::Denied(Denial::UnknownCaller) => Cow::Borrowed("caller not allowed here"),
            ProxyError::Denied(Denial::KeyNotAllowed) => Cow::Borrowed("key not allowed for this caller"),
            ProxyError::Denied(Denial::EncryptionRequired) => Cow::Borrowed("this caller must encrypt"),
            ProxyError::Denied(Denial::NotAllowed) => Cow::Borrowed("caller may not call this endpoint"),
            ProxyError::Denied(Denial::RateLimited(_)) => Cow::Borrowed("rate limit exceeded"),
            ProxyError::Denied(Denial::IdentityMismatch) => {
                Cow::Borrowed("the connection's client certificate does not carry this caller's identity")
            }
            ProxyError::BodyTooLarge => Cow::Borrowed("body exceeds the size limit"),
            ProxyError::HeadersTooLarge => Cow::Borrowed("too many or too large request headers"),
            ProxyError::RequestTimeout => Cow::Borrowed("the request body stopped arriving"),
            ProxyError::DeadlineExceeded => Cow::Borrowed("the caller's deadline passed"),
            ProxyError::NoHealthyUpstream => Cow::Borrowed("no upstream backend available"),
            ProxyError::PoolOverloaded => Cow::Borrowed("too many requests in flight to this upstream"),
            ProxyError::TooManyConnections => Cow::Borrowed("this proxy has as many connections open as it allows"),
            ProxyError::UpstreamFailed => Cow::Borrowed("upstream connection failed"),
            ProxyError::UpstreamTimeout => Cow::Borrowed("upstream did not answer in time"),
            ProxyError::UnsealedResponse => Cow::Borrowed("the inbound proxy sent an unsealed response"),
            ProxyError::UnverifiedRefusal { status, code } => Cow::Owned(format!(
                "the callee's inbound proxy refused the request without signing its answer (it said {status} {code}): it could not verify the request, or the answer was forged on the way"
            )),
            ProxyError::Refused { status, code, .. } => {
                Cow::Owned(format!("the callee's inbound proxy refused the request: {status} {code}"))
            }
            ProxyError::Internal => Cow::Borrowed("internal error"),
        }
    }

    /// The JSON body of the error response.
    pub fn body(&self) -> Bytes {
        let v = serde_json::json!({ "error": { "code": self.code(), "message": self.message() } });
        Bytes::from(v.to_string())
    }

    /// The full error response header.
    pub fn response_header(&self, role: Role, body_len: usize) -> pingora::Result<ResponseHeader> {
        let mut h = ResponseHeader::build(self.status(), Some(4))?;
        h.insert_header("content-type", "application/json")?;
        h.insert_header("content-length", body_len.to_string())?;
        h.insert_header(ERROR_SOURCE, role.name())?;
        h.insert_header(ERROR_CODE, self.code())?;
        if let Some(secs) = self.retry_after() {
            h.insert_header("retry-after", secs.to_string())?;
        }
        Ok(h)
    }

    /// The gRPC status of this error (CONFIG.md, "HTTP/2 and gRPC").
    pub fn grpc_status(&self) -> grpc::Status {
        match self {
            ProxyError::Denied(Denial::RateLimited(_)) => grpc::Status::ResourceExhausted,
            ProxyError::RequestTimeout | ProxyError::PoolOverloaded => grpc::Status::Unavailable,
            e => grpc::status_of_http(e.status()),
        }
    }

    /// The answer to a gRPC caller: a trailers-only response with the
    /// status, and the same `x-fp-error-*` headers as the JSON answer (a
    /// signed refusal names the inbound proxy and its code, as over HTTP).
    pub fn grpc_response(&self, role: Role) -> pingora::Result<ResponseHeader> {
        let (source, code) = match self {
            ProxyError::Refused { code, .. } => ("inbound", code.as_str()),
            e => (role.name(), e.code()),
        };
        let retry = self.retry_after().map(|s| s.to_string());
        let mut extra = vec![(ERROR_SOURCE, source), (ERROR_CODE, code)];
        if let Some(secs) = &retry {
            extra.push(("retry-after", secs.as_str()));
        }
        grpc::trailers_only(self.grpc_status(), &self.message(), &extra)
    }

    /// Seconds the client should wait before trying again, when that is known.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            ProxyError::Denied(Denial::RateLimited(secs)) => Some(*secs),
            ProxyError::Refused { retry_after, .. } => *retry_after,
            ProxyError::TooManyConnections => Some(1),
            _ => None,
        }
    }

    /// The whole error response as HTTP/1.1 bytes, closing the connection: for
    /// answers written before any request is read (no Pingora session yet).
    pub fn close_response(&self, role: Role) -> Vec<u8> {
        let body = self.body();
        let mut out = format!(
            "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{ERROR_SOURCE}: {}\r\n{ERROR_CODE}: {}\r\n",
            self.status(),
            ::http::StatusCode::from_u16(self.status()).ok().and_then(|s| s.canonical_reason()).unwrap_or(""),
            body.len(),
            role.name(),
            self.code(),
        );
        if let Some(secs) = self.retry_after() {
            out.push_str(&format!("retry-after: {secs}\r\n"));
        }
        out.push_str("connection: close\r\n\r\n");
        let mut out = out.into_bytes();
        out.extend_from_slice(&body);
        out
    }
}

/// How long a gRPC error answer waits for the rest of the request.
const GRPC_DRAIN: std::time::Duration = std::time::Duration::from_secs(1);

/// Writes `err` as the whole response. Closes the connection when the request
/// body may be unread (so no leftover bytes are taken for the next request).
pub async fn respond(session: &mut Session, role: Role, err: &ProxyError) -> pingora::Result<()> {
    if crate::grpc::is_grpc(&session.req_header().headers) {
        // A gRPC caller reads its status from `grpc-status`: a trailers-only
        // answer, the connection kept (on HTTP/2 only this stream ends).
        let header = err.grpc_response(role)?;
        if !session.is_body_done() && !session.is_http2() {
            session.set_keepalive(None);
        }
        // As one task ending the stream: HEADERS with END_STREAM on HTTP/2
        // (`write_response_header` would leave the stream open).
        session.write_response_tasks(vec![pingora::protocols::http::HttpTask::Header(Box::new(header), true)]).await?;
        // Read what is left of the request (for at most a second): an HTTP/2
        // stream dropped while the client is still sending is reset
        // (CANCEL), and gRPC clients report the reset, not the status.
        if session.is_http2() && !session.is_body_done() {
            let _ = tokio::time::timeout(GRPC_DRAIN, session.drain_request_body()).await;
        }
        return Ok(());
    }
    let body = err.body();
    let header = err.response_header(role, body.len())?;
    write(session, header, body).await
}

/// Writes an error answer (`header`, then `body` unless the request is a
/// HEAD), closing the connection after it when the request body may be
/// unread (so no leftover bytes are taken for the next request).
pub async fn write(session: &mut Session, header: ResponseHeader, body: Bytes) -> pingora::Result<()> {
    if !session.is_body_done() {
        session.set_keepalive(None);
    }
    let head_only = session.req_header().method == pingora::http::Method::HEAD;
    session.write_response_header(Box::new(header), head_only).await?;
    if !head_only {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(())
}

/// Wraps `err` in a pingora error whose type carries the status, for hooks that
/// must return `Err`; the role's `fail_to_proxy` finds the `ProxyError` in the
/// request context and answers with it.
pub fn to_pingora(err: &ProxyError) -> Box<pingora::Error> {
    pingora::Error::explain(pingora::ErrorType::HTTPStatus(err.status()), err.code())
}

/// Pingora's error for a sealed response that ended with its header section
/// before its records (`roles::headers_end`): the caller sees
/// `bad_response`, as for any truncated body.
pub const ENDED_AT_HEADERS: pingora::ErrorType = pingora::ErrorType::Custom("sealed response ended with its headers");

/// Maps a Pingora failure to the error the caller sees. `decided` is the
/// error a hook already chose, if any; `now_ms` the time (ms since the
/// epoch), to tell a passed deadline.
pub fn classify(
    decided: Option<&ProxyError>,
    e: &pingora::Error,
    deadline_ms: Option<u64>,
    now_ms: u64,
) -> Option<ProxyError> {
    if let Some(d) = decided {
        return Some(d.clone());
    }
    if deadline_ms.is_some_and(|d| now_ms >= d) && e.esource() == &pingora::ErrorSource::Upstream {
        return Some(ProxyError::DeadlineExceeded);
    }
    if e.esource() == &pingora::ErrorSource::Downstream && e.etype() == &pingora::ErrorType::ReadTimedout {
        return Some(ProxyError::RequestTimeout);
    }
    Some(match e.etype() {
        t if *t == ENDED_AT_HEADERS => ProxyError::Response(filters::Error::Truncated),
        pingora::ErrorType::ConnectTimedout
        | pingora::ErrorType::ConnectRefused
        | pingora::ErrorType::ConnectNoRoute
        | pingora::ErrorType::ConnectError
        | pingora::ErrorType::TLSHandshakeFailure
        | pingora::ErrorType::TLSHandshakeTimedout
        | pingora::ErrorType::HandshakeError => ProxyError::UpstreamFailed,
        pingora::ErrorType::ReadTimedout | pingora::ErrorType::WriteTimedout => ProxyError::UpstreamTimeout,
        _ => match e.esource() {
            pingora::ErrorSource::Upstream => ProxyError::UpstreamFailed,
            // The client went away or sent garbage: nobody to answer.
            pingora::ErrorSource::Downstream => match e.etype() {
                pingora::ErrorType::ReadError
                | pingora::ErrorType::WriteError
                | pingora::ErrorType::ConnectionClosed => return None,
                _ => ProxyError::BadRequest("malformed request"),
            },
            _ => ProxyError::Internal,
        },
    })
}
