//! Sealed round trips: every algorithm × codec, methods, bodies, query strings,
//! repeated headers, statuses, framing.

use crate::harness::client::{send, Body, Request};
use crate::harness::config::{caller, Options, Pair, ALGS, CODECS};
use crate::harness::wire::sha256_hex;

fn json_body(n: usize) -> Vec<u8> {
    let mut s = String::new();
    let mut i = 0;
    while s.len() < n {
        s.push_str(&format!("{{\"id\":{i},\"name\":\"user{i}\",\"active\":true}},"));
        i += 1;
    }
    s.truncate(n);
    s.into_bytes()
}

#[test]
fn every_algorithm_and_codec_round_trips() {
    let pair = Pair::start(Options::default());
    for (alg, _) in ALGS {
        for codec in CODECS {
            let who = caller(alg, codec);
            for size in [0usize, 100, 5000, 70_000, 300_000] {
                let body = json_body(size);
                let resp = send(
                    pair.out_addr,
                    Request::new("POST", "/token_service/api/echo?b=2&a=1&a=3&q=x%20y")
                        .header("x-fp-caller", &who)
                        .header("content-type", "application/json; charset=utf-8")
                        .header("x-custom", "one")
                        .header("x-custom", "two")
                        .body(Body::Bytes(body.clone())),
                )
                .expect("request");
                assert_eq!(resp.status, 200, "{who} size {size}: {}", resp.text());
                assert_eq!(resp.body, body, "{who} size {size}: echoed body");
                let seen = pair.callee().last();
                assert_eq!(seen.method, "POST");
                assert_eq!(
                    seen.target, "/api/echo?b=2&a=1&a=3&q=x%20y",
                    "{who}: path and query reach the callee verbatim"
                );
                assert_eq!(seen.head.get_all("x-custom"), ["one", "two"], "{who}: repeated request headers");
                assert_eq!(seen.head.get("content-type"), Some("application/json; charset=utf-8"));
                assert_eq!(
                    seen.head.get("content-length"),
                    Some(size.to_string().as_str()),
                    "{who}: Content-Length restored"
                );
                assert_eq!(seen.head.get("x-fp-caller"), Some(who.as_str()), "the callee learns the verified caller");
                assert!(seen.head.get("x-fp").is_none(), "no protocol headers reach the callee");
                assert_eq!(resp.head.get_all("x-multi"), ["a", "b"], "{who}: repeated response headers");
                assert_eq!(resp.header("content-length"), Some(size.to_string().as_str()));
                assert_eq!(resp.header("content-type"), Some("application/json; charset=utf-8"));
                assert!(resp.header("x-fp").is_none(), "no protocol headers reach the app");
            }
        }
    }
}

#[test]
fn methods_statuses_and_empty_bodies() {
    let pair = Pair::start(Options::default());
    let who = caller("aes", "none");
    for method in ["GET", "DELETE", "HEAD", "PUT", "POST"] {
        let req = Request::new(method, "/token_service/items/7?verbose=1").header("x-fp-caller", &who);
        let req = if method == "PUT" || method == "POST" { req.body(Body::Bytes(b"{\"v\":1}".to_vec())) } else { req };
        let resp = send(pair.out_addr, req).expect("request");
        assert_eq!(resp.status, 200, "{method}: {}", resp.text());
        let seen = pair.callee().last();
        assert_eq!(seen.method, method);
        assert_eq!(seen.target, "/items/7?verbose=1");
        if method == "HEAD" {
            assert!(resp.body.is_empty());
        }
        if method == "GET" || method == "HEAD" || method == "DELETE" {
            assert_eq!(seen.body_len, 0);
            assert!(seen.head.get("transfer-encoding").is_none(), "{method}: no chunked body invented");
        }
    }
    for status in [200u16, 201, 404, 500, 204] {
        let resp = send(
            pair.out_addr,
            Request::new("GET", "/token_service/status")
                .header("x-fp-caller", &who)
                .header("x-test-status", &status.to_string())
                .header("x-test-response-len", "33"),
        )
        .expect("request");
        assert_eq!(resp.status, status, "callee status passes through");
        assert!(resp.header("x-fp-error-source").is_none(), "{status} comes from the callee, not a proxy");
        let expected = if status == 204 { 0 } else { 33 };
        assert_eq!(resp.body_len, expected, "{status}");
    }
    // HEAD keeps the length the callee announced.
    let resp = send(
        pair.out_addr,
        Request::new("HEAD", "/token_service/x").header("x-fp-caller", &who).header("x-test-response-len", "1234"),
    )
    .expect("request");
    assert_eq!(resp.header("content-length"), Some("1234"));
}

#[test]
fn chunked_bodies_stream_both_ways() {
    let pair = Pair::start(Options::default());
    for codec in ["none", "snappy"] {
        let who = caller("aes", codec);
        let pieces: Vec<Vec<u8>> = (0..20).map(|i| json_body(3000 + i * 500)).collect();
        let all: Vec<u8> = pieces.concat();
        let resp = send(
            pair.out_addr,
            Request::new("POST", "/token_service/upload")
                .header("x-fp-caller", &who)
                .header("x-test-response-chunked", "1")
                .body(Body::Chunked(pieces)),
        )
        .expect("request");
        assert_eq!(resp.status, 200, "{}", resp.text());
        let seen = pair.callee().last();
        assert_eq!(seen.body_len, all.len() as u64);
        assert_eq!(seen.body_sha, sha256_hex(&all));
        assert!(seen.head.get("content-length").is_none(), "a chunked request stays chunked");
        assert_eq!(resp.body, all);
        assert!(resp.header("content-length").is_none() && resp.header("transfer-encoding").is_some());
    }
}

#[test]
fn both_roles_in_one_process() {
    use crate::harness::proxy::{self, Proxy};
    use crate::harness::upstream::Upstream;
    let callee = Upstream::start();
    let (out_port, in_port) = (proxy::free_port(), proxy::free_port());
    let demo =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../conf/fastproxy.yaml")).expect("demo conf");
    let config = demo
        .replace("127.0.0.1:8034", &format!("127.0.0.1:{out_port}"))
        .replace("127.0.0.1:8033", &format!("127.0.0.1:{in_port}"))
        .replace("127.0.0.1:8101", &callee.addr.to_string())
        .replace("127.0.0.1:9034", &format!("127.0.0.1:{}", proxy::free_port()));
    let _proxy = Proxy::start(&config, &[out_port, in_port]);
    let resp = send(
        proxy::addr(out_port),
        Request::new("POST", "/token_service/api/service?id=7")
            .header("x-fp-caller", "song_service")
            .body(Body::Bytes(b"{\"user\":42}".to_vec())),
    )
    .expect("request");
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.body, b"{\"user\":42}");
    assert_eq!(callee.last().target, "/api/service?id=7");
}
