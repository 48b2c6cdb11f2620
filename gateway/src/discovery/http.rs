//! A small HTTP/1.1 client for registries (center and etcd speak JSON over
//! HTTP): one request per connection, bounded bodies, and a line reader for
//! the streaming answers of etcd's watch and keepalive. Built on Pingora's
//! own HTTP/1 client session.

use std::time::Duration;

use bytes::Bytes;
use pingora::http::RequestHeader;
use pingora::protocols::http::v1::client::HttpSession;

/// Largest answer (or line of a streamed answer) read from a registry.
pub const MAX_BODY: usize = 4 << 20;

/// A complete answer.
#[derive(Debug)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Response headers, lower-case names.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Reply {
    /// The first header named `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// One request to send.
pub struct Request<'a> {
    /// `host:port`.
    pub authority: &'a str,
    /// `GET`, `PUT`, `POST`, `DELETE`.
    pub method: &'a str,
    /// Path and query.
    pub target: &'a str,
    /// Extra headers.
    pub headers: Vec<(&'static str, String)>,
    /// JSON body (may be empty).
    pub body: &'a [u8],
}

/// Opens a connection and sends `req`; the session is ready to read the
/// response head.
async fn send(req: &Request<'_>, io_timeout: Duration) -> Result<HttpSession, String> {
    let tcp = tokio::time::timeout(io_timeout, tokio::net::TcpStream::connect(req.authority))
        .await
        .map_err(|_| format!("connecting to {}: timed out", req.authority))?
        .map_err(|e| format!("connecting to {}: {e}", req.authority))?;
    let _ = tcp.set_nodelay(true);
    let stream: pingora::protocols::l4::stream::Stream = tcp.into();
    let mut session = HttpSession::new(Box::new(stream));
    session.read_timeout = Some(io_timeout);
    session.write_timeout = Some(io_timeout);
    let mut head = RequestHeader::build(req.method, req.target.as_bytes(), None).map_err(|e| e.to_string())?;
    let host = req.authority.to_owned();
    head.insert_header("host", host).map_err(|e| e.to_string())?;
    head.insert_header("content-length", req.body.len().to_string()).map_err(|e| e.to_string())?;
    if !req.body.is_empty() {
        head.insert_header("content-type", "application/json").map_err(|e| e.to_string())?;
    }
    for (name, value) in &req.headers {
        head.insert_header(*name, value.as_str()).map_err(|e| e.to_string())?;
    }
    session.write_request_header(Box::new(head)).await.map_err(|e| format!("{}: {e}", req.authority))?;
    if !req.body.is_empty() {
        session.write_body(req.body).await.map_err(|e| format!("{}: {e}", req.authority))?;
    }
    session.finish_body().await.map_err(|e| format!("{}: {e}", req.authority))?;
    Ok(session)
}

fn head_of(session: &HttpSession) -> (u16, Vec<(String, String)>) {
    match session.resp_header() {
        Some(h) => (
            h.status.as_u16(),
            h.headers
                .iter()
                .map(|(n, v)| (n.as_str().to_ascii_lowercase(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
                .collect(),
        ),
        None => (0, Vec::new()),
    }
}

/// Sends `req` and reads the whole answer, all within `total`; each read
/// and write waits at most `total` too.
pub async fn call(req: &Request<'_>, total: Duration) -> Result<Reply, String> {
    tokio::time::timeout(total, async {
        let mut session = send(req, total).await?;
        session.read_response().await.map_err(|e| format!("{}: {e}", req.authority))?;
        let (status, headers) = head_of(&session);
        let mut body = Vec::new();
        while let Some(piece) = session.read_body_bytes().await.map_err(|e| format!("{}: {e}", req.authority))? {
            if body.len() + piece.len() > MAX_BODY {
                return Err(format!("{}: answer over {MAX_BODY} bytes", req.authority));
            }
            body.extend_from_slice(&piece);
        }
        Ok(Reply { status, headers, body })
    })
    .await
    .map_err(|_| format!("{}: no complete answer within {total:?}", req.authority))?
}

/// A streamed answer, read a line at a time.
pub struct Lines {
    session: HttpSession,
    pending: Vec<u8>,
    /// HTTP status of the answer.
    pub status: u16,
}

/// Sends `req` and reads the answer's head within `io_timeout`; the body is
/// then read line by line with [`Lines::next`].
pub async fn stream(req: &Request<'_>, io_timeout: Duration) -> Result<Lines, String> {
    tokio::time::timeout(io_timeout, async {
        let mut session = send(req, io_timeout).await?;
        session.read_response().await.map_err(|e| format!("{}: {e}", req.authority))?;
        let (status, _) = head_of(&session);
        Ok(Lines { session, pending: Vec::new(), status })
    })
    .await
    .map_err(|_| format!("{}: no answer within {io_timeout:?}", req.authority))?
}

impl Lines {
    /// The next non-empty line, waiting at most `wait` for it: `Ok(None)`
    /// when none came in time (the stream stays usable), an error when the
    /// stream ended or broke.
    pub async fn next(&mut self, wait: Duration) -> Result<Option<Bytes>, String> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                let line = line.trim_ascii();
                if line.is_empty() {
                    continue;
                }
                return Ok(Some(Bytes::copy_from_slice(line)));
            }
            self.session.read_timeout = None;
            let piece = match tokio::time::timeout_at(deadline, self.session.read_body_bytes()).await {
                Err(_) => return Ok(None),
                Ok(Err(e)) => return Err(e.to_string()),
                Ok(Ok(None)) => {
                    if self.pending.trim_ascii().is_empty() {
                        return Err("the stream ended".to_owned());
                    }
                    let line = std::mem::take(&mut self.pending);
                    return Ok(Some(Bytes::copy_from_slice(line.trim_ascii())));
                }
                Ok(Ok(Some(piece))) => piece,
            };
            if self.pending.len() + piece.len() > MAX_BODY {
                return Err(format!("a streamed line over {MAX_BODY} bytes"));
            }
            self.pending.extend_from_slice(&piece);
        }
    }
}
