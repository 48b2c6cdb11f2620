//! A plain HTTP/1.1 client (one connection per request) that says exactly what
//! it sends and records exactly what comes back.

use std::io::{BufReader, BufWriter, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::wire::{self, Digest, Head};

#[derive(Clone)]
pub enum Body {
    None,
    /// Sent with Content-Length.
    Bytes(Vec<u8>),
    /// Sent chunked, in these pieces.
    Chunked(Vec<Vec<u8>>),
    /// `len` pattern bytes, streamed with Content-Length.
    Pattern(u64),
}

#[derive(Clone)]
pub struct Request {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Body,
}

impl Request {
    pub fn new(method: &str, target: &str) -> Self {
        Request { method: method.into(), target: target.into(), headers: Vec::new(), body: Body::None }
    }
    pub fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }
    pub fn body(mut self, b: Body) -> Self {
        self.body = b;
        self
    }
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub head: Head,
    /// The body, up to 16 MiB.
    pub body: Vec<u8>,
    pub body_len: u64,
    pub body_sha: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.get(name)
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub fn send(addr: SocketAddr, req: Request) -> std::io::Result<Response> {
    let conn = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    conn.set_read_timeout(Some(Duration::from_secs(60)))?;
    conn.set_nodelay(true)?;
    let mut w = BufWriter::new(conn.try_clone()?);
    let mut head = format!("{} {} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n", req.method, req.target);
    for (k, v) in &req.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    match &req.body {
        Body::None => {}
        Body::Bytes(b) => head.push_str(&format!("content-length: {}\r\n", b.len())),
        Body::Chunked(_) => head.push_str("transfer-encoding: chunked\r\n"),
        Body::Pattern(n) => head.push_str(&format!("content-length: {n}\r\n")),
    }
    head.push_str("\r\n");
    w.write_all(head.as_bytes())?;
    match &req.body {
        Body::None => {}
        Body::Bytes(b) => w.write_all(b)?,
        Body::Chunked(pieces) => {
            for p in pieces {
                wire::write_chunk(&mut w, p)?;
            }
            w.write_all(b"0\r\n\r\n")?;
        }
        Body::Pattern(n) => {
            let mut buf = vec![0u8; 64 * 1024];
            let mut sent = 0u64;
            while sent < *n {
                let take = ((*n - sent) as usize).min(buf.len());
                wire::fill_pattern(&mut buf[..take], sent);
                w.write_all(&buf[..take])?;
                sent += take as u64;
            }
        }
    }
    w.flush()?;
    let mut r = BufReader::new(conn);
    let head = wire::read_head(&mut r)?.ok_or_else(|| std::io::Error::other("no response"))?;
    let framing = wire::response_framing(&head, &req.method);
    let (mut body, mut len, mut digest) = (Vec::new(), 0u64, Digest::new());
    wire::read_body(&mut r, framing, &mut |b| {
        len += b.len() as u64;
        digest.update(b);
        if body.len() < 16 << 20 {
            body.extend_from_slice(b);
        }
    })?;
    Ok(Response { status: head.status(), head, body, body_len: len, body_sha: digest.hex() })
}

/// A client on one keep-alive connection, as a browser or wrk keeps one: it
/// opens a new connection only when the server closed the last one after a
/// response (`Connection: close`), and never sends a request twice. A request
/// that gets no complete response is an error.
pub struct KeepAlive {
    addr: SocketAddr,
    conn: Option<(BufWriter<TcpStream>, BufReader<TcpStream>)>,
    /// Connections opened so far.
    pub connects: usize,
}

impl KeepAlive {
    pub fn new(addr: SocketAddr) -> Self {
        KeepAlive { addr, conn: None, connects: 0 }
    }

    /// Sends `method target` with `headers` and `body`; the status.
    pub fn request(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<u16, String> {
        if self.conn.is_none() {
            let conn =
                TcpStream::connect_timeout(&self.addr, Duration::from_secs(5)).map_err(|e| format!("connect: {e}"))?;
            conn.set_read_timeout(Some(Duration::from_secs(30))).map_err(|e| e.to_string())?;
            conn.set_nodelay(true).map_err(|e| e.to_string())?;
            let r = BufReader::new(conn.try_clone().map_err(|e| e.to_string())?);
            self.conn = Some((BufWriter::new(conn), r));
            self.connects += 1;
        }
        let result = self.exchange(method, target, headers, body);
        match &result {
            Ok((_, true)) | Err(_) => self.conn = None,
            Ok((_, false)) => {}
        }
        result.map(|(status, _)| status)
    }

    fn exchange(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(u16, bool), String> {
        let (w, r) = self.conn.as_mut().ok_or("no connection")?;
        let mut head = format!("{method} {target} HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n", body.len());
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        w.write_all(head.as_bytes())
            .and_then(|_| w.write_all(body))
            .and_then(|_| w.flush())
            .map_err(|e| format!("send: {e}"))?;
        let resp = wire::read_head(r).map_err(|e| format!("response head: {e}"))?.ok_or("closed without a response")?;
        wire::read_body(r, wire::response_framing(&resp, method), &mut |_| {})
            .map_err(|e| format!("response body: {e}"))?;
        let close = resp.get("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
        Ok((resp.status(), close))
    }
}
