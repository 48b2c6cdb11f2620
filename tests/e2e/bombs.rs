//! Compressed bodies cannot make the inbound proxy hold more than its
//! opened-bytes cap, however many arrive at once and however slowly the
//! callee reads (PROTOCOL.md §6.3, inbound.max_opened_buffer).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::harness::config::{caller, Options, Pair};
use crate::harness::seal::{raw_compressed_records, seal, Hand};
use crate::harness::upstream::Mode;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Sends `n` copies (fresh nonces) of a request built by `build` at once,
/// samples the inbound proxy's RSS for `watch`, and returns the peak (KiB)
/// and the statuses that came back in that time (0: none yet).
fn flood(pair: &Pair, n: usize, watch: Duration, build: impl Fn() -> (String, String, Vec<u8>)) -> (u64, Vec<u16>) {
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for _ in 0..n {
        let (target, header, body) = build();
        let addr = pair.in_addr;
        let stop = stop.clone();
        threads.push(std::thread::spawn(move || {
            let mut conn = TcpStream::connect(addr).expect("connect");
            conn.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
            let head = format!(
                "POST {target} HTTP/1.1\r\nhost: x\r\nx-fp: {header}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = conn.write_all(head.as_bytes());
            let _ = conn.write_all(&body);
            let mut buf = [0u8; 64];
            while !stop.load(Ordering::SeqCst) {
                match conn.read(&mut buf) {
                    Ok(n) if n >= 12 => {
                        return std::str::from_utf8(&buf[9..12]).ok().and_then(|s| s.parse().ok()).unwrap_or(0)
                    }
                    Ok(_) => return 0,
                    Err(_) => {}
                }
            }
            0u16
        }));
    }
    let pid = pair.inbound.pid();
    let (start, mut peak) = (Instant::now(), 0);
    while start.elapsed() < watch {
        peak = peak.max(rss_kib(pid));
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::SeqCst);
    let statuses = threads.into_iter().map(|t| t.join().unwrap_or(0)).collect();
    (peak, statuses)
}

#[test]
fn compressed_bodies_cannot_outgrow_the_opened_bytes_cap() {
    let pair = Pair::start(Options::default());
    pair.callee().set_mode(Mode::SlowRead(1 << 20));
    let who = caller("aes", "zstd");
    let baseline = rss_kib(pair.inbound.pid());

    // 1. The bomb of the report: 240 records of 64 KiB of zeros, each a
    //    ~20-byte zstd frame (~10 KB sealed, 15 MiB signed), 64 at once.
    //    Each record breaks the 32:1 bound and the message is refused.
    let mut z = zstd::bulk::Compressor::new(19).unwrap();
    let frame = z.compress(&vec![0u8; 65536]).unwrap();
    let (peak_bomb, statuses) = flood(&pair, 64, Duration::from_secs(3), || {
        let mut h = Hand::new("POST", "/api/upload", &who);
        h.codec = filters::Codec::Zstd;
        h.length = Some(240 * 65536);
        let s = seal(&h);
        let body = raw_compressed_records(&s, &vec![frame.clone(); 240]);
        (s.target, s.header, body)
    });
    eprintln!("bombs: baseline {baseline} KiB, peak {peak_bomb} KiB, statuses {statuses:?}");
    assert!(statuses.iter().all(|s| *s == 413), "{statuses:?}");

    // 2. Bodies that keep to the bound, about as compressible as it allows:
    //    16 MiB (each 64 KiB: 2000 random bytes, then zeros) sealed to
    //    ~0.5 MiB each, 64 at once, to a callee reading each at 1 MiB/s. What
    //    is opened waits for the callee.
    let mut zeros = vec![0u8; 16 << 20];
    let rng = ring::rand::SystemRandom::new();
    for block in zeros.chunks_mut(65536) {
        ring::rand::SecureRandom::fill(&rng, &mut block[..2000]).unwrap();
    }
    let (peak_max, _) = flood(&pair, 64, Duration::from_secs(5), || {
        let mut h = Hand::new("POST", "/api/upload", &who).body(&zeros);
        h.codec = filters::Codec::Zstd;
        let s = seal(&h);
        assert!(s.body.len() < 1 << 20, "compressed: {}", s.body.len());
        (s.target, s.header, s.body)
    });
    eprintln!("32:1 bodies: baseline {baseline} KiB, peak {peak_max} KiB");
    // The default cap is 16 MiB; buffers of 64 connections and the
    // allocator's slack come on top. (Release build figures: BENCHMARKS.md.)
    for (what, peak) in [("bombs", peak_bomb), ("32:1 bodies", peak_max)] {
        assert!(peak < baseline + 56 * 1024, "{what}: the inbound proxy grew from {baseline} to {peak} KiB");
    }
}
