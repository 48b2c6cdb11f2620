//! A real HTTP/1.1 server standing in for the callee: it counts and records
//! every request it receives, and answers as the request's `x-test-*` headers
//! ask (status, delay, generated response body), echoing the body by default.

use std::io::{BufReader, BufWriter, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::wire::{self, Digest, Framing, Head};

/// What the server saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub head: Head,
    /// The first MiB of the body.
    pub body: Vec<u8>,
    pub body_len: u64,
    pub body_sha: String,
    pub framing: Framing,
}

#[derive(Default)]
struct Shared {
    arrivals: AtomicUsize,
    seen: Mutex<Vec<Seen>>,
    stop: AtomicBool,
}

pub struct Upstream {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Upstream {
    pub fn start() -> Self {
        Self::start_on(TcpListener::bind("127.0.0.1:0").expect("bind upstream"))
    }

    pub fn start_on(listener: TcpListener) -> Self {
        let addr = listener.local_addr().expect("addr");
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.stop.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let s = s.clone();
                std::thread::spawn(move || {
                    let _ = serve(conn, &s);
                });
            }
        });
        Upstream { addr, shared }
    }

    /// Requests whose head arrived (counted before the body is read).
    pub fn arrivals(&self) -> usize {
        self.shared.arrivals.load(Ordering::SeqCst)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }

    pub fn last(&self) -> Seen {
        self.seen().pop().expect("the upstream saw a request")
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve(conn: TcpStream, shared: &Shared) -> std::io::Result<()> {
    conn.set_nodelay(true)?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut writer = BufWriter::new(conn);
    while let Some(head) = wire::read_head(&mut reader)? {
        shared.arrivals.fetch_add(1, Ordering::SeqCst);
        let (method, target) = head.request_parts();
        let framing = wire::request_framing(&head);
        let mut body = Vec::new();
        let mut len = 0u64;
        let mut digest = Digest::new();
        wire::read_body(&mut reader, framing, &mut |b| {
            len += b.len() as u64;
            digest.update(b);
            if body.len() < 1 << 20 {
                body.extend_from_slice(&b[..b.len().min((1 << 20) - body.len())]);
            }
        })?;
        let seen = Seen {
            method: method.clone(),
            target: target.clone(),
            head: head.clone(),
            body,
            body_len: len,
            body_sha: digest.hex(),
            framing,
        };
        shared.seen.lock().unwrap().push(seen.clone());
        respond(&mut writer, &seen)?;
        writer.flush()?;
    }
    Ok(())
}

fn respond(w: &mut impl Write, seen: &Seen) -> std::io::Result<()> {
    let h = &seen.head;
    if let Some(ms) = h.get("x-test-delay-ms").and_then(|v| v.parse().ok()) {
        std::thread::sleep(Duration::from_millis(ms));
    }
    let status: u16 = h.get("x-test-status").and_then(|v| v.parse().ok()).unwrap_or(200);
    let generated: Option<u64> = h.get("x-test-response-len").and_then(|v| v.parse().ok());
    let chunked = h.get("x-test-response-chunked").is_some();
    let body_len = generated.unwrap_or(seen.body.len() as u64);
    let bodyless = seen.method == "HEAD" || status == 204 || status == 304;
    let mut head = format!("HTTP/1.1 {status} Test\r\n");
    let framing_desc = match seen.framing {
        Framing::Length(n) => format!("length {n}"),
        Framing::Chunked => "chunked".to_string(),
        _ => "none".to_string(),
    };
    for (k, v) in [
        ("x-echo-method", seen.method.clone()),
        ("x-echo-target", seen.target.clone()),
        ("x-echo-body-len", seen.body_len.to_string()),
        ("x-echo-body-sha", seen.body_sha.clone()),
        ("x-echo-framing", framing_desc),
        ("x-echo-caller", h.get("x-fp-caller").unwrap_or("-").to_string()),
        ("x-multi", "a".to_string()),
        ("x-multi", "b".to_string()),
        ("content-type", h.get("content-type").unwrap_or("application/octet-stream").to_string()),
    ] {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if status != 204 && status != 304 {
        if chunked && !bodyless {
            head.push_str("transfer-encoding: chunked\r\n");
        } else {
            head.push_str(&format!("content-length: {body_len}\r\n"));
        }
    }
    head.push_str("\r\n");
    w.write_all(head.as_bytes())?;
    if bodyless {
        return Ok(());
    }
    match generated {
        None if chunked => {
            wire::write_chunk(w, &seen.body)?;
            w.write_all(b"0\r\n\r\n")
        }
        None => w.write_all(&seen.body),
        Some(n) => {
            let mut buf = vec![0u8; 64 * 1024];
            let mut sent = 0u64;
            while sent < n {
                let take = ((n - sent) as usize).min(buf.len());
                wire::fill_pattern(&mut buf[..take], sent);
                if chunked {
                    wire::write_chunk(w, &buf[..take])?;
                } else {
                    w.write_all(&buf[..take])?;
                }
                sent += take as u64;
            }
            if chunked {
                w.write_all(b"0\r\n\r\n")?;
            }
            Ok(())
        }
    }
}
