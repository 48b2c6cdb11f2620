//! A recording relay for the link between the two proxies: it forwards each
//! request and response, keeps a copy of every byte that crossed, and can
//! tamper with the next message or delay it.

use std::collections::VecDeque;
use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::wire::{self, Framing, Head};

/// One change to apply to the next request (or its response).
#[derive(Debug, Clone)]
pub enum Tamper {
    /// XOR a body byte of the request at this offset.
    FlipRequestBody(usize),
    /// Replace the request target.
    SetTarget(String),
    /// Set a request header.
    SetHeader(String, String),
    /// Add a request header line (even if one of that name is there).
    AddHeader(String, String),
    /// Append bytes to the request body (and fix its Content-Length).
    AppendRequestBody(Vec<u8>),
    /// Set one field (`key=value`) of the request's `x-fp` header.
    SetField(&'static str, String),
    /// Hold the request this long before forwarding it.
    Delay(Duration),
    /// XOR a body byte of the response at this offset.
    FlipResponseBody(usize),
    /// Set a response header.
    SetResponseHeader(String, String),
    /// Add a response header line (even if one of that name is there).
    AddResponseHeader(String, String),
    /// Send these bytes to the client instead of the response.
    ReplaceResponse(Vec<u8>),
    /// Pass this many bytes of the response on, then cut both connections.
    CutResponseAfter(usize),
    /// Set one field of the response's `x-fp` header.
    SetResponseField(&'static str, String),
    /// Drop the response's body and say so: `content-length: 0`.
    EmptyResponseBody,
}

/// Replaces (or appends) the field `key` of the `x-fp` header in `head`.
/// Fields are `;`-separated `key=value` pairs; the test keys never include
/// `ct`, the one field whose value may hold `;`.
fn set_field(head: &mut Head, key: &str, value: &str) {
    let old = head.get("x-fp").unwrap_or_default().to_string();
    let mut fields: Vec<String> = old.split(';').map(str::to_string).collect();
    let prefix = format!("{key}=");
    match fields.iter_mut().find(|f| f.starts_with(&prefix)) {
        Some(f) => *f = format!("{prefix}{value}"),
        None => fields.push(format!("{prefix}{value}")),
    }
    head.set("x-fp", &fields.join(";"));
}

/// Everything that crossed for one request.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// The request as the outbound proxy sent it.
    pub request: Vec<u8>,
    /// The response as the inbound proxy sent it.
    pub response: Vec<u8>,
}

#[derive(Default)]
struct State {
    log: Mutex<Vec<Exchange>>,
    tamper: Mutex<VecDeque<Tamper>>,
}

pub struct Relay {
    pub addr: SocketAddr,
    state: Arc<State>,
}

impl Relay {
    pub fn start(listener: TcpListener, target: SocketAddr) -> Self {
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(State::default());
        let s = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let s = s.clone();
                std::thread::spawn(move || {
                    let _ = relay(conn, target, &s);
                });
            }
        });
        Relay { addr, state }
    }

    /// Applies `t` to the next request that crosses.
    pub fn tamper_next(&self, t: Tamper) {
        self.state.tamper.lock().unwrap().push_back(t);
    }

    pub fn exchanges(&self) -> Vec<Exchange> {
        self.state.log.lock().unwrap().clone()
    }

    pub fn last(&self) -> Exchange {
        self.exchanges().pop().expect("something crossed the relay")
    }
}

/// Reads one message (head + body as received) from `r`.
fn read_message(
    r: &mut BufReader<TcpStream>,
    framing_of: impl Fn(&Head) -> Framing,
) -> std::io::Result<Option<(Head, Vec<u8>)>> {
    let Some(head) = wire::read_head(r)? else { return Ok(None) };
    let mut body = Vec::new();
    wire::read_body(r, framing_of(&head), &mut |b| body.extend_from_slice(b))?;
    Ok(Some((head, body)))
}

/// Serialises a message, keeping its framing kind (length or chunked).
fn encode(head: &Head, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    head.write_to(&mut out);
    if head.get("transfer-encoding").is_some() {
        let _ = wire::write_chunk(&mut out, body);
        out.extend_from_slice(b"0\r\n\r\n");
    } else {
        out.extend_from_slice(body);
    }
    out
}

fn relay(client: TcpStream, target: SocketAddr, state: &State) -> std::io::Result<()> {
    let upstream = TcpStream::connect(target)?;
    let mut from_client = BufReader::new(client.try_clone()?);
    let mut to_client = client;
    let mut from_upstream = BufReader::new(upstream.try_clone()?);
    let mut to_upstream = upstream;
    while let Some((mut head, mut body)) = read_message(&mut from_client, wire::request_framing)? {
        let tamper = state.tamper.lock().unwrap().pop_front();
        match &tamper {
            Some(Tamper::FlipRequestBody(i)) if *i < body.len() => body[*i] ^= 0x01,
            Some(Tamper::SetTarget(t)) => {
                let (method, _) = head.request_parts();
                head.line = format!("{method} {t} HTTP/1.1");
            }
            Some(Tamper::SetHeader(k, v)) => head.set(k, v),
            Some(Tamper::AddHeader(k, v)) => head.headers.push((k.clone(), v.clone())),
            Some(Tamper::AppendRequestBody(extra)) => {
                body.extend_from_slice(extra);
                if head.get("transfer-encoding").is_none() {
                    head.set("content-length", &body.len().to_string());
                }
            }
            Some(Tamper::SetField(k, v)) => set_field(&mut head, k, v),
            Some(Tamper::Delay(d)) => std::thread::sleep(*d),
            _ => {}
        }
        let (method, _) = head.request_parts();
        let request = encode(&head, &body);
        to_upstream.write_all(&request)?;
        let Some((mut rhead, mut rbody)) = read_message(&mut from_upstream, |h| wire::response_framing(h, &method))?
        else {
            break;
        };
        match &tamper {
            Some(Tamper::FlipResponseBody(i)) if *i < rbody.len() => rbody[*i] ^= 0x01,
            Some(Tamper::SetResponseHeader(k, v)) => rhead.set(k, v),
            Some(Tamper::AddResponseHeader(k, v)) => rhead.headers.push((k.clone(), v.clone())),
            Some(Tamper::SetResponseField(k, v)) => set_field(&mut rhead, k, v),
            Some(Tamper::EmptyResponseBody) => {
                rbody.clear();
                rhead.headers.retain(|(k, _)| !k.eq_ignore_ascii_case("transfer-encoding"));
                rhead.set("content-length", "0");
            }
            _ => {}
        }
        let response = match &tamper {
            Some(Tamper::ReplaceResponse(forged)) => forged.clone(),
            _ => encode(&rhead, &rbody),
        };
        state.log.lock().unwrap().push(Exchange { request: request.clone(), response: response.clone() });
        if let Some(Tamper::CutResponseAfter(n)) = &tamper {
            to_client.write_all(&response[..(*n).min(response.len())])?;
            let _ = to_client.shutdown(std::net::Shutdown::Both);
            let _ = to_upstream.shutdown(std::net::Shutdown::Both);
            return Ok(());
        }
        to_client.write_all(&response)?;
    }
    Ok(())
}

/// True when `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}
