//! A real HTTP/1.1 server standing in for the callee: it counts and records
//! every request it receives, and answers as the request's `x-test-*` headers
//! ask (status, delay, generated response body), echoing the body by default.

use std::io::{BufReader, BufWriter, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
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
    /// When the first and the last body bytes arrived.
    pub body_at: Option<(std::time::Instant, std::time::Instant)>,
}

/// How the server answers, settable while it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// As the request's `x-test-*` headers ask (echo by default).
    #[default]
    Normal,
    /// Every answer has this status.
    Status(u16),
    /// Wait this long before answering.
    Delay(Duration),
    /// Read the request, then close the connection without answering.
    DieAfterRequest,
    /// Read request bodies at most this many bytes per second.
    SlowRead(u64),
    /// For the next request only: send the response head and this many body
    /// bytes, then close the connection.
    DieMidBodyOnce(u64),
    /// Hold every answer until [`Upstream::release`] (for at most 10 s), so
    /// that they leave together. Once released, answers are not held again
    /// until this mode is set anew.
    Hold,
}

#[derive(Default)]
struct Shared {
    arrivals: AtomicUsize,
    seen: Mutex<Vec<Seen>>,
    stop: AtomicBool,
    mode: Mutex<Mode>,
    /// Open connections, so `kill` can reset them.
    conns: Mutex<Vec<TcpStream>>,
    /// Set by [`Upstream::release`]; [`Mode::Hold`] waits on it.
    released: (Mutex<bool>, Condvar),
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
        accept_loop(listener, shared.clone());
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

    pub fn set_mode(&self, mode: Mode) {
        if mode == Mode::Hold {
            *self.shared.released.0.lock().unwrap() = false;
        }
        *self.shared.mode.lock().unwrap() = mode;
    }

    /// Lets the answers held by [`Mode::Hold`] go.
    pub fn release(&self) {
        *self.shared.released.0.lock().unwrap() = true;
        self.shared.released.1.notify_all();
    }

    /// Stops listening and resets every open connection, like a crash.
    pub fn kill(&self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for c in self.shared.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
        // Wait for the accept loop to drop the listener.
        while TcpStream::connect_timeout(&self.addr, Duration::from_millis(50)).is_ok() {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Listens again on the same address after `kill`.
    pub fn revive(&self) {
        let listener = TcpListener::bind(self.addr).expect("rebind upstream");
        self.shared.stop.store(false, Ordering::SeqCst);
        accept_loop(listener, self.shared.clone());
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
    }
}

/// Accepts until `stop` is set, then drops the listener (closing the port).
fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    listener.set_nonblocking(true).expect("nonblocking listener");
    std::thread::spawn(move || {
        while !shared.stop.load(Ordering::SeqCst) {
            match listener.accept() {
                Ok((conn, _)) => {
                    let _ = conn.set_nonblocking(false);
                    if let Ok(copy) = conn.try_clone() {
                        shared.conns.lock().unwrap().push(copy);
                    }
                    let s = shared.clone();
                    std::thread::spawn(move || {
                        let _ = serve(conn, &s);
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(2)),
                Err(_) => std::thread::sleep(Duration::from_millis(2)),
            }
        }
    });
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
        let rate = match *shared.mode.lock().unwrap() {
            Mode::SlowRead(rate) => Some(rate.max(1)),
            _ => None,
        };
        let mut body_at: Option<(std::time::Instant, std::time::Instant)> = None;
        wire::read_body(&mut reader, framing, &mut |b| {
            let now = std::time::Instant::now();
            body_at = Some((body_at.map_or(now, |(first, _)| first), now));
            if let Some(rate) = rate {
                std::thread::sleep(Duration::from_micros(b.len() as u64 * 1_000_000 / rate));
            }
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
            body_at,
        };
        shared.seen.lock().unwrap().push(seen.clone());
        let mode = {
            let mut m = shared.mode.lock().unwrap();
            let mode = *m;
            if let Mode::DieMidBodyOnce(_) = mode {
                *m = Mode::Normal;
            }
            mode
        };
        if mode == Mode::DieAfterRequest {
            let _ = writer.get_ref().shutdown(std::net::Shutdown::Both);
            return Ok(());
        }
        if mode == Mode::Hold {
            let (released, cv) = &shared.released;
            let held = released.lock().unwrap();
            let _ = cv.wait_timeout_while(held, Duration::from_secs(10), |released| !*released).unwrap();
        }
        let server = writer.get_ref().local_addr()?;
        if let Err(e) = respond(&mut writer, &seen, mode, server) {
            let _ = writer.get_ref().shutdown(std::net::Shutdown::Both);
            return Err(e);
        }
        writer.flush()?;
    }
    Ok(())
}

fn respond(w: &mut impl Write, seen: &Seen, mode: Mode, server: SocketAddr) -> std::io::Result<()> {
    let h = &seen.head;
    if let Some(ms) = h.get("x-test-delay-ms").and_then(|v| v.parse().ok()) {
        std::thread::sleep(Duration::from_millis(ms));
    }
    if let Mode::Delay(d) = mode {
        std::thread::sleep(d);
    }
    let status: u16 = match mode {
        Mode::Status(s) => s,
        _ => h.get("x-test-status").and_then(|v| v.parse().ok()).unwrap_or(200),
    };
    let generated: Option<u64> = h.get("x-test-response-len").and_then(|v| v.parse().ok());
    let chunk_delay = h.get("x-test-chunk-delay-ms").and_then(|v| v.parse().ok()).map(Duration::from_millis);
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
        ("x-echo-server", server.to_string()),
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
            let die_at = match mode {
                Mode::DieMidBodyOnce(at) => at,
                _ => u64::MAX,
            };
            while sent < n {
                if sent >= die_at {
                    w.flush()?;
                    return Err(std::io::Error::other("dying mid-body, as asked"));
                }
                if let (Some(d), true) = (chunk_delay, sent > 0) {
                    w.flush()?;
                    std::thread::sleep(d);
                }
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
