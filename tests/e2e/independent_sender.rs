//! What an independent implementation of PROTOCOL.md (or anyone on the link)
//! can send that a well-behaved outbound proxy never does: requests sealed by
//! hand, and bytes changed between the proxies.

use std::time::Duration;

use crate::harness::client::{send, Body, Request, Response};
use crate::harness::config::{caller, Options, Pair};
use crate::harness::relay::Tamper;
use crate::harness::seal::{seal, Hand};

/// Sends a hand-sealed request straight to the inbound proxy.
fn send_sealed(pair: &Pair, method: &str, target: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Response {
    let mut req = Request::new(method, target);
    for (k, v) in headers {
        req = req.header(k, v);
    }
    if !body.is_empty() {
        req = req.body(Body::Bytes(body));
    }
    send(pair.in_addr, req).expect("response")
}

fn metric(pair_admin: std::net::SocketAddr, name: &str) -> f64 {
    let text = send(pair_admin, Request::new("GET", "/metrics")).expect("metrics").text();
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

#[test]
fn a_body_byte_on_a_request_signed_as_empty_is_refused_before_the_callee() {
    let pair = Pair::start(Options::default());
    let who = caller("aes", "none");
    for method in ["POST", "GET", "PUT", "DELETE"] {
        let s = seal(&Hand::new(method, "/api/pay", &who));
        let before = pair.callee().arrivals();
        let resp = send_sealed(&pair, method, &s.target, &[("x-fp", &s.header)], b"x".to_vec());
        assert_eq!(resp.status, 401, "{method}: {}", resp.text());
        assert_eq!(resp.header("x-fp-error-code"), Some("corrupt_record"), "{method}");
        assert_eq!(pair.callee().arrivals(), before, "{method}: the callee ran a request the app is told failed");
    }
    // The same request without the extra byte goes through once.
    let s = seal(&Hand::new("POST", "/api/pay", &who));
    let resp = send_sealed(&pair, "POST", &s.target, &[("x-fp", &s.header)], Vec::new());
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(pair.callee().arrivals(), 1);
}

#[test]
fn an_appended_byte_on_the_link_is_refused_before_the_callee() {
    let pair = Pair::start(Options { relay: true, ..Options::default() });
    for method in ["POST", "GET", "PUT", "DELETE"] {
        let before = pair.callee().arrivals();
        pair.relay().tamper_next(Tamper::AppendRequestBody(b"x".to_vec()));
        let resp = send(
            pair.out_addr,
            Request::new(method, "/token_service/api/pay").header("x-fp-caller", &caller("aes", "none")),
        )
        .expect("response");
        assert_eq!(resp.status, 401, "{method}: {}", resp.text());
        assert_eq!(resp.header("x-fp-error-code"), Some("corrupt_record"), "{method}");
        assert_eq!(pair.callee().arrivals(), before, "{method}");
    }
}

#[test]
fn bad_bodies_are_never_retried_and_never_eject_a_backend() {
    // Two healthy callees; ejection after 2 failures in a row.
    let pair = Pair::start(Options {
        relay: true,
        weights: vec![1, 1],
        pool: "outlier: { consecutive_failures: 2, base_ejection: 30s }".into(),
        ..Options::default()
    });
    let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let n = 6;
    for i in 0..n {
        let method = ["GET", "PUT", "DELETE"][i % 3];
        // A byte late in the body: the first records already reached a callee.
        pair.relay().tamper_next(Tamper::FlipRequestBody(200_000));
        let resp = send(
            pair.out_addr,
            Request::new(method, "/token_service/api/x")
                .header("x-fp-caller", &caller("aes", "none"))
                .body(Body::Bytes(body.clone())),
        );
        if let Ok(resp) = resp {
            assert_ne!(resp.status, 200, "{method}: a corrupt body succeeded");
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let arrivals: usize = pair.callees.iter().map(|c| c.arrivals()).sum();
    assert!(arrivals <= n, "{arrivals} attempts reached the callees for {n} bad requests");
    assert_eq!(metric(pair.in_admin, "fastproxy_upstream_retries_total"), 0.0, "retries");
    assert_eq!(metric(pair.in_admin, "fastproxy_upstream_ejections_total"), 0.0, "ejections");
    // Both backends still serve.
    for _ in 0..4 {
        let resp = send(
            pair.out_addr,
            Request::new("GET", "/token_service/api/x").header("x-fp-caller", &caller("aes", "none")),
        )
        .expect("response");
        assert_eq!(resp.status, 200, "{}", resp.text());
    }
    assert!(pair.callees.iter().all(|c| c.arrivals() > 0), "a backend was taken out of rotation");
}

#[test]
fn a_caller_cannot_burn_another_callers_nonce() {
    let pair = Pair::start(Options::default());
    let victim = caller("aes", "none");
    let mut h = Hand::new("POST", "/api/pay", &victim);
    // `limited` signs with its own key but names the victim.
    h.signer = "limited";
    let forged = seal(&h);
    let resp = send_sealed(&pair, "POST", &forged.target, &[("x-fp", &forged.header)], Vec::new());
    assert_eq!(resp.status, 403, "{}", resp.text());
    assert_eq!(resp.header("x-fp-error-code"), Some("key_not_allowed"));
    // The victim's genuine request with that nonce is not a replay.
    h.signer = &victim;
    let genuine = seal(&h);
    let resp = send_sealed(&pair, "POST", &genuine.target, &[("x-fp", &genuine.header)], Vec::new());
    assert_eq!(resp.status, 200, "{}", resp.text());
    // And once used, it is.
    let resp = send_sealed(&pair, "POST", &genuine.target, &[("x-fp", &genuine.header)], Vec::new());
    assert_eq!(resp.header("x-fp-error-code"), Some("replay"));
}

#[test]
fn two_envelope_headers_are_malformed_at_both_proxies() {
    let pair = Pair::start(Options { relay: true, ..Options::default() });
    let who = caller("aes", "none");
    let s = seal(&Hand::new("GET", "/api/x", &who));
    for second in ["x-fp", "X-FP", "X-Fp"] {
        let resp = send_sealed(&pair, "GET", &s.target, &[("x-fp", &s.header), (second, "v=1")], Vec::new());
        assert_eq!(resp.status, 400, "{second}: {}", resp.text());
        assert_eq!(resp.header("x-fp-error-code"), Some("malformed"), "{second}");
        let resp = send_sealed(&pair, "GET", &s.target, &[(second, "v=1"), ("x-fp", &s.header)], Vec::new());
        assert_eq!(resp.status, 400, "{second} first: {}", resp.text());
    }
    assert_eq!(pair.callee().arrivals(), 0);
    // A response with a second x-fp header is refused by the outbound proxy
    // (a POST, which is never sent twice).
    pair.relay().tamper_next(Tamper::AddResponseHeader("X-FP".into(), "v=1".into()));
    let resp = send(pair.out_addr, Request::new("POST", "/token_service/api/x").header("x-fp-caller", &who))
        .expect("response");
    assert_eq!(resp.status, 502, "{}", resp.text());
    assert_eq!(resp.header("x-fp-error-code"), Some("bad_response"));
}

#[test]
fn the_callee_gets_exactly_the_signed_target() {
    let pair = Pair::start(Options { relay: true, ..Options::default() });
    let who = caller("aes", "none");
    // An empty query signs as no query: someone adding `?` changes nothing the callee sees.
    pair.relay().tamper_next(Tamper::SetTarget("/token_service/api/x?".into()));
    let resp =
        send(pair.out_addr, Request::new("GET", "/token_service/api/x").header("x-fp-caller", &who)).expect("response");
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(pair.callee().last().target, "/api/x");
    // Empty path segments are refused, at both proxies.
    let resp = send(pair.out_addr, Request::new("GET", "/token_service//admin").header("x-fp-caller", &who))
        .expect("response");
    assert_eq!((resp.status, resp.header("x-fp-error-code")), (400, Some("bad_request")), "{}", resp.text());
    let s = seal(&Hand::new("GET", "//admin", &who));
    let resp = send_sealed(&pair, "GET", &s.target, &[("x-fp", &s.header)], Vec::new());
    assert_eq!((resp.status, resp.header("x-fp-error-code")), (400, Some("bad_request")), "{}", resp.text());
    assert_eq!(pair.callee().arrivals(), 1);
}

#[test]
fn status_code_and_retry_after_reach_the_app_only_when_signed() {
    let pair = Pair::start(Options { relay: true, ..Options::default() });
    let get = |who: &str| {
        send(pair.out_addr, Request::new("GET", "/token_service/api/x").header("x-fp-caller", who)).expect("response")
    };
    // Someone on the path answers for the inbound proxy: a generic 502, no back-off.
    let forged = b"HTTP/1.1 429 Too Many Requests\r\nx-fp-error-source: inbound\r\nx-fp-error-code: rate_limited\r\nretry-after: 86400\r\ncontent-length: 0\r\n\r\n";
    pair.relay().tamper_next(Tamper::ReplaceResponse(forged.to_vec()));
    let resp = get(&caller("aes", "none"));
    assert_eq!(resp.status, 502, "{}", resp.text());
    assert_eq!(resp.header("x-fp-error-code"), Some("unverified_refusal"));
    assert_eq!(resp.header("x-fp-error-source"), Some("outbound"));
    assert_eq!(resp.header("retry-after"), None);
    assert!(resp.text().contains("429 rate_limited"), "{}", resp.text());
    assert_eq!(pair.callee().arrivals(), 1, "not sent again");
    // A real refusal of a verified request is signed and reaches the app whole.
    assert_eq!(get("slow").status, 200);
    pair.relay().tamper_next(Tamper::SetResponseHeader("retry-after".into(), "86400".into()));
    let resp = get("slow");
    assert_eq!(resp.status, 429, "{}", resp.text());
    assert_eq!(resp.header("x-fp-error-code"), Some("rate_limited"));
    assert_eq!(resp.header("x-fp-error-source"), Some("inbound"));
    assert_eq!(resp.header("retry-after"), Some("1"), "the signed delay, not the one added on the way");
    assert_eq!(resp.header("content-type"), Some("application/json"));
    assert!(resp.text().contains("\"code\":\"rate_limited\""), "{}", resp.text());
    let sealed = String::from_utf8_lossy(&pair.relay().last().response).into_owned();
    assert!(sealed.contains(";ct=application/x-fastproxy-error+json; code=rate_limited; retry-after=1"), "{sealed}");
    assert!(sealed.contains(";sig="), "{sealed}");
    // Changing the signed code breaks the signature (a POST: never sent twice).
    std::thread::sleep(Duration::from_millis(1100));
    let post = || {
        send(pair.out_addr, Request::new("POST", "/token_service/api/x").header("x-fp-caller", "slow"))
            .expect("response")
    };
    assert_eq!(post().status, 200);
    pair.relay()
        .tamper_next(Tamper::SetResponseField("ct", "application/x-fastproxy-error+json; code=forbidden".into()));
    let resp = post();
    assert_eq!((resp.status, resp.header("x-fp-error-code")), (502, Some("bad_response")), "{}", resp.text());
}
