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
