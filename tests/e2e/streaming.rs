//! Large bodies stream through both proxies with bounded memory.

use crate::harness::client::{send, Body, Request};
use crate::harness::config::{caller, Options, Pair};
use crate::harness::wire::{fill_pattern, Digest};

const MIB: u64 = 1 << 20;

fn pattern_sha(len: u64) -> String {
    let mut d = Digest::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut done = 0u64;
    while done < len {
        let take = ((len - done) as usize).min(buf.len());
        fill_pattern(&mut buf[..take], done);
        d.update(&buf[..take]);
        done += take as u64;
    }
    d.hex()
}

#[test]
fn a_100_mib_upload_and_download_stream_with_bounded_memory() {
    let pair = Pair::start(Options::default());
    let len = 100 * MIB;
    let who = caller("aes", "none");
    let up = send(
        pair.out_addr,
        Request::new("PUT", "/token_service/blob")
            .header("x-fp-caller", &who)
            .header("x-test-response-len", "2")
            .body(Body::Pattern(len)),
    )
    .expect("upload");
    assert_eq!(up.status, 200, "{}", up.text());
    let seen = pair.callee().last();
    assert_eq!(seen.body_len, len);
    assert_eq!(seen.body_sha, pattern_sha(len));
    assert_eq!(seen.head.get("content-length"), Some(len.to_string().as_str()));

    let down = send(
        pair.out_addr,
        Request::new("GET", "/token_service/blob")
            .header("x-fp-caller", &who)
            .header("x-test-response-len", &len.to_string()),
    )
    .expect("download");
    assert_eq!(down.status, 200);
    assert_eq!(down.body_len, len);
    assert_eq!(down.body_sha, pattern_sha(len));

    let (out_rss, in_rss) = (pair.outbound.peak_rss_kib(), pair.inbound.peak_rss_kib());
    eprintln!("peak RSS after 100 MiB up and down: outbound {} KiB, inbound {} KiB", out_rss, in_rss);
    assert!(out_rss > 0 && out_rss < 64 * 1024, "outbound peak RSS {out_rss} KiB");
    assert!(in_rss > 0 && in_rss < 64 * 1024, "inbound peak RSS {in_rss} KiB");
}

#[test]
fn a_streamed_upload_reaches_the_callee_while_it_is_sent() {
    use std::io::Write;
    let pair = Pair::start(Options::default());
    let mut conn = std::net::TcpStream::connect(pair.out_addr).unwrap();
    conn.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    write!(
        conn,
        "POST /token_service/upload HTTP/1.1\r\nhost: x\r\nx-fp-caller: {}\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n",
        caller("aes", "none")
    )
    .unwrap();
    // Five 100-byte pieces, 0.5 s apart.
    let mut last_sent = std::time::Instant::now();
    for i in 0..5u8 {
        if i > 0 {
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        last_sent = std::time::Instant::now();
        crate::harness::wire::write_chunk(&mut conn, &[b'a' + i; 100]).unwrap();
        conn.flush().unwrap();
    }
    conn.write_all(b"0\r\n\r\n").unwrap();
    let mut r = std::io::BufReader::new(conn);
    let head = crate::harness::wire::read_head(&mut r).unwrap().expect("response");
    assert_eq!(head.status(), 200, "{head:?}");
    let seen = pair.callee().last();
    assert_eq!(seen.body_len, 500);
    let (first, _) = seen.body_at.expect("a body");
    assert!(first + std::time::Duration::from_secs(1) < last_sent, "the first piece waited for the last one");
}
