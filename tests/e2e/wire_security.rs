//! What crosses the wire between the proxies, and what happens when someone on
//! that link changes or replays it.

use std::time::Duration;

use crate::harness::client::{send, Body, Request};
use crate::harness::config::{caller, Options, Pair};
use crate::harness::relay::{contains, Tamper};

const MARKER: &[u8] = b"PLAINTEXT-MARKER-4711";

fn marked_body() -> Vec<u8> {
    let mut b = Vec::new();
    for i in 0..200 {
        b.extend_from_slice(MARKER);
        b.extend_from_slice(format!(" record {i};").as_bytes());
    }
    b
}

fn post(pair: &Pair, who: &str, body: Vec<u8>) -> crate::harness::client::Response {
    send(
        pair.out_addr,
        Request::new("POST", "/token_service/api/pay?amount=10").header("x-fp-caller", who).body(Body::Bytes(body)),
    )
    .expect("request")
}

#[test]
fn the_link_carries_no_plaintext() {
    let pair = Pair::start(Options { relay: true, ..Options::default() });
    for who in [caller("aes", "none"), caller("chacha", "snappy"), caller("aes", "zstd")] {
        let body = marked_body();
        let resp = post(&pair, &who, body.clone());
        assert_eq!(resp.status, 200);
        assert_eq!(resp.body, body, "the callee echoed it and the caller got it back");
        let x = pair.relay().last();
        assert!(!contains(&x.request, MARKER), "{who}: plaintext in the sealed request");
        assert!(!contains(&x.response, MARKER), "{who}: plaintext in the sealed response");
        assert!(contains(&x.request, b";sig="), "the relay saw a sealed request");
    }
    // Control: sign-only traffic does carry the plaintext, so the check above can fail.
    let resp = post(&pair, &caller("none", "none"), marked_body());
    assert_eq!(resp.status, 200);
    assert!(contains(&pair.relay().last().request, MARKER));
}

/// Sends one request with `tamper` applied on the link; returns the response
/// and how many requests reached the callee because of it.
fn tampered(pair: &Pair, tamper: Tamper) -> (crate::harness::client::Response, usize) {
    let before = pair.callee().arrivals();
    pair.relay().tamper_next(tamper);
    let resp = post(pair, &caller("aes", "none"), marked_body());
    (resp, pair.callee().arrivals() - before)
}

#[test]
fn tampered_requests_are_refused_and_never_reach_the_callee() {
    let pair = Pair::start(Options { relay: true, max_skew: "2s", ..Options::default() });
    // What the inbound proxy could verify, it refuses with a signed 401 that
    // reaches the app as is; what it could not (a broken signature), the app
    // sees as a generic 502 naming the unverified claim.
    let cases = [
        ("body byte", Tamper::FlipRequestBody(100), 401, "corrupt_record"),
        ("path", Tamper::SetTarget("/token_service/api/refund?amount=10".into()), 502, "bad_signature"),
        ("query", Tamper::SetTarget("/token_service/api/pay?amount=1000".into()), 502, "bad_signature"),
        ("signed header", Tamper::SetField("l", "1".into()), 502, "bad_signature"),
        ("caller", Tamper::SetField("c", "c-chacha-none".into()), 502, "bad_signature"),
        ("timestamp", Tamper::SetField("t", "1".into()), 502, "bad_signature"),
        ("stale", Tamper::Delay(Duration::from_millis(2600)), 401, "stale_timestamp"),
    ];
    for (what, tamper, status, code) in cases {
        let (resp, arrivals) = tampered(&pair, tamper);
        assert_eq!(resp.status, status, "{what}: {}", resp.text());
        if status == 401 {
            assert_eq!(resp.header("x-fp-error-code"), Some(code), "{what}");
            assert_eq!(resp.header("x-fp-error-source"), Some("inbound"), "{what}");
        } else {
            assert_eq!(resp.header("x-fp-error-code"), Some("unverified_refusal"), "{what}");
            assert_eq!(resp.header("x-fp-error-source"), Some("outbound"), "{what}");
            assert!(resp.text().contains(&format!("401 {code}")), "{what}: {}", resp.text());
        }
        assert_eq!(arrivals, 0, "{what}: reached the callee");
        assert!(!contains(&resp.body, MARKER));
    }
    // An untampered request still goes through.
    let (resp, arrivals) = tampered(&pair, Tamper::SetHeader("x-unsigned".into(), "1".into()));
    assert_eq!((resp.status, arrivals), (200, 1));
}

#[test]
fn a_replayed_request_gets_401_and_never_reaches_the_callee() {
    let pair = Pair::start(Options { relay: true, ..Options::default() });
    let resp = post(&pair, &caller("aes", "snappy"), marked_body());
    assert_eq!(resp.status, 200);
    assert_eq!(pair.callee().arrivals(), 1);
    let captured = pair.relay().last().request;
    // Replay the exact bytes straight to the inbound proxy.
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(pair.in_addr).expect("connect");
    conn.write_all(&captured).expect("replay");
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = vec![0u8; 4096];
    let n = conn.read(&mut buf).expect("response");
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 401"), "{text}");
    assert!(text.contains("x-fp-error-code: replay"), "{text}");
    assert_eq!(pair.callee().arrivals(), 1, "the replay never reached the callee");
}

#[test]
fn an_unknown_key_is_an_unverified_refusal() {
    let pair = Pair::start(Options { relay: true, ..Options::default() });
    let resp = post(&pair, "ghost", b"{}".to_vec());
    assert_eq!(resp.status, 502, "{}", resp.text());
    assert_eq!(resp.header("x-fp-error-code"), Some("unverified_refusal"));
    assert!(resp.text().contains("401 unknown_key"), "{}", resp.text());
    assert_eq!(pair.callee().arrivals(), 0);
}

#[test]
fn a_modified_sealed_response_is_rejected_by_the_outbound_proxy() {
    let pair = Pair::start(Options { relay: true, ..Options::default() });
    // A changed signed response header: refused before anything reaches the app.
    pair.relay().tamper_next(Tamper::SetResponseField("l", "3".into()));
    let resp = post(&pair, &caller("aes", "none"), marked_body());
    assert_eq!(resp.status, 502, "{}", resp.text());
    assert_eq!(resp.header("x-fp-error-code"), Some("bad_response"));
    assert_eq!(resp.header("x-fp-error-source"), Some("outbound"));
    assert!(!contains(&resp.body, MARKER));
    // A changed body byte: the stream is aborted; the app never gets the body.
    pair.relay().tamper_next(Tamper::FlipResponseBody(50));
    let body = marked_body();
    match send(
        pair.out_addr,
        Request::new("POST", "/token_service/api/pay")
            .header("x-fp-caller", &caller("aes", "none"))
            .body(Body::Bytes(body.clone())),
    ) {
        Err(_) => {}
        Ok(resp) => {
            assert_ne!(resp.body, body, "a tampered body was delivered whole");
            assert!(resp.body.len() < body.len(), "the stream was cut short");
        }
    }
    std::thread::sleep(Duration::from_millis(200));
    assert!(pair.outbound.log().contains("error=bad_response"), "{}", pair.outbound.log());
    // The body dropped and the length set to 0 (the HTTP/1.1 form of a cut
    // after the headers): its records were due, so it is not an empty answer.
    pair.relay().tamper_next(Tamper::EmptyResponseBody);
    let resp = post(&pair, &caller("aes", "none"), marked_body());
    assert_eq!((resp.status, resp.header("x-fp-error-code")), (502, Some("bad_response")), "{}", resp.text());
}
