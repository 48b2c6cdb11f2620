//! Minimal HTTP/1.1 wire parsing shared by the test server, client and relay.

use std::io::{self, BufRead, Write};

/// A request or status line with its headers, in wire order.
#[derive(Debug, Clone, Default)]
pub struct Head {
    pub line: String,
    pub headers: Vec<(String, String)>,
}

impl Head {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn get_all(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
    }

    pub fn remove(&mut self, name: &str) {
        self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
    }

    pub fn set(&mut self, name: &str, value: &str) {
        self.remove(name);
        self.headers.push((name.to_string(), value.to_string()));
    }

    /// Method and target of a request line.
    pub fn request_parts(&self) -> (String, String) {
        let mut it = self.line.split(' ');
        (it.next().unwrap_or("").to_string(), it.next().unwrap_or("").to_string())
    }

    /// Status of a status line.
    pub fn status(&self) -> u16 {
        self.line.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
    }

    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.line.as_bytes());
        out.extend_from_slice(b"\r\n");
        for (k, v) in &self.headers {
            out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// Reads a head; `None` on a clean end of stream before any byte.
pub fn read_head(r: &mut impl BufRead) -> io::Result<Option<Head>> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut head = Head { line: line.trim_end().to_string(), headers: Vec::new() };
    loop {
        let mut l = String::new();
        if r.read_line(&mut l)? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "eof in head"));
        }
        let l = l.trim_end();
        if l.is_empty() {
            return Ok(Some(head));
        }
        if let Some((k, v)) = l.split_once(':') {
            head.headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
}

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Length(u64),
    Chunked,
    /// No body (requests without framing, bodyless responses).
    Empty,
    /// Until the connection closes (responses without framing).
    Close,
}

pub fn request_framing(head: &Head) -> Framing {
    if head.get("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
        Framing::Chunked
    } else if let Some(n) = head.get("content-length").and_then(|v| v.parse().ok()) {
        Framing::Length(n)
    } else {
        Framing::Empty
    }
}

pub fn response_framing(head: &Head, request_method: &str) -> Framing {
    let status = head.status();
    if request_method == "HEAD" || status == 204 || status == 304 || (100..200).contains(&status) {
        return Framing::Empty;
    }
    match request_framing(head) {
        Framing::Empty => Framing::Close,
        f => f,
    }
}

/// Reads a body, handing each piece to `sink`.
pub fn read_body(r: &mut impl BufRead, framing: Framing, sink: &mut dyn FnMut(&[u8])) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    match framing {
        Framing::Empty => Ok(()),
        Framing::Length(mut n) => {
            while n > 0 {
                let want = (n as usize).min(buf.len());
                let got = r.read(&mut buf[..want])?;
                if got == 0 {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "body shorter than content-length"));
                }
                sink(&buf[..got]);
                n -= got as u64;
            }
            Ok(())
        }
        Framing::Close => loop {
            let got = r.read(&mut buf)?;
            if got == 0 {
                return Ok(());
            }
            sink(&buf[..got]);
        },
        Framing::Chunked => loop {
            let mut size = String::new();
            if r.read_line(&mut size)? == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "eof in chunk size"));
            }
            let size = usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
            if size == 0 {
                // Trailers, then the blank line.
                loop {
                    let mut l = String::new();
                    if r.read_line(&mut l)? == 0 || l.trim().is_empty() {
                        return Ok(());
                    }
                }
            }
            let mut left = size;
            while left > 0 {
                let want = left.min(buf.len());
                let got = r.read(&mut buf[..want])?;
                if got == 0 {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "eof in chunk"));
                }
                sink(&buf[..got]);
                left -= got;
            }
            let mut crlf = String::new();
            r.read_line(&mut crlf)?;
        },
    }
}

/// Writes `data` as one chunk (nothing for empty data).
pub fn write_chunk(w: &mut impl Write, data: &[u8]) -> io::Result<()> {
    if data.is_empty() {
        return Ok(());
    }
    write!(w, "{:x}\r\n", data.len())?;
    w.write_all(data)?;
    w.write_all(b"\r\n")
}

/// Byte `i` of the deterministic test pattern.
pub fn pattern_byte(i: u64) -> u8 {
    (i % 251) as u8
}

/// Fills `buf` with the pattern starting at offset `start`.
pub fn fill_pattern(buf: &mut [u8], start: u64) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b = pattern_byte(start + i as u64);
    }
}

/// Incremental SHA-256, hex.
pub struct Digest(ring::digest::Context);

impl Digest {
    pub fn new() -> Self {
        Digest(ring::digest::Context::new(&ring::digest::SHA256))
    }
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }
    pub fn hex(self) -> String {
        self.0.finish().as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }
}

pub fn sha256_hex(data: &[u8]) -> String {
    let mut d = Digest::new();
    d.update(data);
    d.hex()
}
