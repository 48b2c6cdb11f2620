//! Responses that end with their header section.
//!
//! An HTTP/2 response may end with its HEADERS frame (END_STREAM): it has no
//! body at all. Pingora then calls no body hook of the role, so the inbound
//! proxy never gets to end the sealed body, and the outbound proxy never
//! checks that it ended with its final record. A downstream module is the
//! one place Pingora shows that end. This one carries out what the role
//! decided when it handled the response header:
//!
//! - the outbound proxy, for a verified response whose records must follow,
//!   refuses it: records that never came are a truncated body (PROTOCOL.md
//!   §6), never an empty one;
//! - the inbound proxy, for an HTTP/2 callee's response of unknown length,
//!   holds the same response signed as empty and sends that instead, so an
//!   empty answer crosses as one (PROTOCOL.md §6.1).

use async_trait::async_trait;
use http::HeaderValue;
use pingora::http::ResponseHeader;
use pingora::modules::http::{HttpModule, HttpModuleBuilder, Module};
use pingora::proxy::Session;
use pingora::{Error, ErrorType, Result};

use crate::error::ENDED_AT_HEADERS;
use crate::http_util as h;

/// What to do if the response ends with its header section.
#[derive(Debug, Default)]
pub enum AtEnd {
    /// Nothing: no body was due.
    #[default]
    Pass,
    /// Refuse the response: its body's records were due.
    Refuse,
    /// Send the response as empty: this `x-fp` value signs it so.
    SendEmpty(HeaderValue),
}

/// The per-request module.
#[derive(Debug, Default)]
pub struct HeadersEnd {
    at_end: AtEnd,
}

/// Builds a [`HeadersEnd`] per request (register it in
/// `init_downstream_modules`).
pub struct HeadersEndBuilder;

impl HttpModuleBuilder for HeadersEndBuilder {
    fn init(&self) -> Module {
        Box::new(HeadersEnd::default())
    }
}

/// Decides what happens if this session's response ends with its header
/// section. The role calls it while handling the response header, before
/// the module sees it.
pub fn at_end(session: &mut Session, at_end: AtEnd) {
    if let Some(m) = session.downstream_modules_ctx.get_mut::<HeadersEnd>() {
        m.at_end = at_end;
    }
}

#[async_trait]
impl HttpModule for HeadersEnd {
    async fn response_header_filter(&mut self, resp: &mut ResponseHeader, end_of_stream: bool) -> Result<()> {
        let at_end = std::mem::take(&mut self.at_end);
        if !end_of_stream {
            return Ok(());
        }
        match at_end {
            AtEnd::Pass => Ok(()),
            AtEnd::Refuse => {
                log::warn!(target: "fastproxy::outbound", "refusing response: it ended with its headers, before its records");
                Error::e_explain(ENDED_AT_HEADERS, "the body's records never came")
            }
            AtEnd::SendEmpty(value) => {
                resp.insert_header(filters::envelope::HEADER, value)?;
                resp.remove_header(&http::header::TRANSFER_ENCODING);
                resp.remove_header(&http::header::CONTENT_TYPE);
                h::set_framing(resp, Some(0)).map_err(|_| Error::new(ErrorType::InternalError))
            }
        }
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}
