//! Receiver policy, rate limits, routing and upstream failures, each with its
//! status and JSON error.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::harness::client::{send, Body, Request};
use crate::harness::config::{caller, Options, Pair};
use crate::harness::proxy;

fn get(pair: &Pair, who: &str, target: &str) -> crate::harness::client::Response {
    send(pair.out_addr, Request::new("GET", target).header("x-fp-caller", who)).expect("request")
}

fn error_code(resp: &crate::harness::client::Response) -> String {
    let v: serde_json::Value = serde_json::from_slice(&resp.body).expect("a JSON error body");
    v["error"]["code"].as_str().expect("error.code").to_string()
}

#[test]
fn the_acl_allows_only_what_it_lists() {
    let pair = Pair::start(Options::default());
    assert_eq!(get(&pair, "acl", "/token_service/api/allowed").status, 200);
    let before = pair.callee().arrivals();
    for target in
        ["/token_service/api/other", "/token_service/api/allowed/x", "/token_service/api/allowed?x=/api/other"]
    {
        let resp = get(&pair, "acl", target);
        if target.contains('?') {
            assert_eq!(resp.status, 200, "a query string does not change the path: {target}");
            continue;
        }
        assert_eq!(resp.status, 403, "{target}");
        assert_eq!(error_code(&resp), "forbidden");
        assert_eq!(resp.header("x-fp-error-source"), Some("inbound"));
    }
    let resp = send(
        pair.out_addr,
        Request::new("POST", "/token_service/api/allowed")
            .header("x-fp-caller", "acl")
            .body(Body::Bytes(b"x".to_vec())),
    )
    .unwrap();
    assert_eq!(resp.status, 403, "method not allowed by the rule");
    assert_eq!(pair.callee().arrivals(), before + 1, "only the query-string request got through");
    // Dot segments are refused before any policy match.
    let resp = get(&pair, "acl", "/token_service/api/allowed/../other");
    assert_eq!(resp.status, 400);
}

#[test]
fn a_burst_over_the_rate_gets_429_with_retry_after() {
    let pair = Pair::start(Options::default());
    let started = Instant::now();
    // The first 50 go one by one: none may be refused.
    for i in 0..50 {
        let resp = get(&pair, "limited", "/token_service/api/x");
        assert_eq!(resp.status, 200, "request {i} of the first 50 was refused");
    }
    // The other 150 as fast as 8 connections go.
    let limited = Arc::new(AtomicUsize::new(0));
    let next = Arc::new(AtomicUsize::new(50));
    let out = pair.out_addr;
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (limited, next) = (limited.clone(), next.clone());
            std::thread::spawn(move || {
                while next.fetch_add(1, Ordering::SeqCst) < 200 {
                    let resp = send(out, Request::new("GET", "/token_service/api/x").header("x-fp-caller", "limited"))
                        .unwrap();
                    match resp.status {
                        200 => {}
                        429 => {
                            assert!(
                                resp.header("retry-after").is_some_and(|v| v.parse::<u64>().is_ok()),
                                "Retry-After"
                            );
                            assert_eq!(error_code(&resp), "rate_limited");
                            limited.fetch_add(1, Ordering::SeqCst);
                        }
                        s => panic!("unexpected status {s}"),
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let elapsed = started.elapsed();
    let n = limited.load(Ordering::SeqCst);
    eprintln!("rate limit qps 50: {n} of 200 requests got 429 in {elapsed:?}");
    assert!(elapsed < Duration::from_secs(1), "the burst took {elapsed:?}");
    assert!((100..=160).contains(&n), "{n} of 200 got 429 in {elapsed:?}");
}

#[test]
fn routing_and_upstream_failures() {
    let pair = Pair::start(Options::default());
    let who = caller("aes", "none");
    // Unknown callee at the outbound proxy.
    let resp = get(&pair, &who, "/nobody/x");
    assert_eq!((resp.status, error_code(&resp).as_str()), (404, "unknown_service"));
    assert_eq!(resp.header("x-fp-error-source"), Some("outbound"));
    // No caller named, unknown caller.
    let resp = send(pair.out_addr, Request::new("GET", "/token_service/x")).unwrap();
    assert_eq!((resp.status, error_code(&resp).as_str()), (400, "missing_caller"));
    let resp = get(&pair, "stranger", "/token_service/x");
    assert_eq!((resp.status, error_code(&resp).as_str()), (403, "unknown_caller"));
    // Deadline passes while the callee thinks.
    let start = Instant::now();
    let resp = send(
        pair.out_addr,
        Request::new("GET", "/token_service/slow")
            .header("x-fp-caller", &who)
            .header("x-fp-timeout-ms", "300")
            .header("x-test-delay-ms", "2000"),
    )
    .unwrap();
    assert_eq!(resp.status, 504, "{}", resp.text());
    assert!(start.elapsed() < Duration::from_millis(1500), "504 came after {:?}", start.elapsed());
    // A body over the outbound limit.
    let small = Pair::start(Options { outbound_max_body: "1KiB", ..Options::default() });
    let resp = send(
        small.out_addr,
        Request::new("POST", "/token_service/x").header("x-fp-caller", &who).body(Body::Bytes(vec![b'x'; 2000])),
    )
    .unwrap();
    assert_eq!((resp.status, error_code(&resp).as_str()), (413, "body_too_large"));
    assert_eq!(small.callee().arrivals(), 0);
}

#[test]
fn a_callee_that_is_down_gets_502() {
    let dead = proxy::dead_addr(1);
    let pair = Pair::start(Options { dead_callees: Some(vec![dead]), ..Options::default() });
    let resp = get(&pair, &caller("aes", "none"), "/token_service/x");
    assert!(resp.status == 502 || resp.status == 503, "{} {}", resp.status, resp.text());
    assert_eq!(resp.header("x-fp-error-source"), Some("inbound"));
    assert_eq!(error_code(&resp), "upstream_failed");
}

#[test]
fn garbage_at_the_inbound_port_gets_400_not_a_crash() {
    let pair = Pair::start(Options::default());
    for headers in [
        vec![],
        vec![("x-fp", "v=1;c=c-aes-none;a=aes-256-gcm")],
        vec![("x-fp", "v=9")],
        vec![("x-fp", "v=1;c=../../etc;a=none")],
        vec![("x-fp", "v=1;v=1;c=c-aes-none")],
        vec![("x-fp", &"v=1;ct=".repeat(300))],
        vec![("x-fp-version", "1"), ("x-fp-caller", "c-aes-none"), ("x-fp-alg", "aes-256-gcm")],
    ] {
        let mut req = Request::new("POST", "/token_service/x").body(Body::Bytes(vec![0xff; 100]));
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let resp = send(pair.in_addr, req).unwrap();
        assert!([400, 401, 431].contains(&resp.status), "{} {}", resp.status, resp.text());
    }
    assert_eq!(pair.callee().arrivals(), 0);
    // Still serving.
    assert_eq!(get(&pair, &caller("aes", "none"), "/token_service/ok").status, 200);
}
