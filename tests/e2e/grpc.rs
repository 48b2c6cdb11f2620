//! HTTP/2 and gRPC through the sealed path: a real gRPC server and client
//! (grpcio) at either end, h2c on the listeners beside HTTP/1.1, trailers
//! carried in the authenticated trailer record, `grpc-timeout` as the signed
//! deadline, and the proxies' own errors as gRPC statuses.

use std::time::{Duration, Instant};

use crate::harness::config::{caller, Options, Pair};
use crate::harness::grpc::{call, curl, frame, GrpcServer};
use crate::harness::h2_callee::{h2_get, H2Callee, H2Response};
use crate::harness::h2_relay::TrailerTamper;

const CALLEE: &str = "token_service";

fn grpc_pair(server: &GrpcServer, opts: Options) -> Pair {
    Pair::start(Options { dead_callees: Some(vec![server.addr]), ..opts })
}

fn code(v: &serde_json::Value) -> &str {
    v["code"].as_str().unwrap_or_default()
}

#[test]
fn unary_and_streaming_calls_keep_their_messages_trailers_and_status() {
    let server = GrpcServer::start();
    let pair = grpc_pair(&server, Options::default());
    let who = caller("aes", "none");

    let v = call(pair.out_addr, CALLEE, &who, "unary", "hi", Some(10.0));
    if code(&v) != "OK" {
        eprintln!("OUT {}\nIN {}", pair.outbound.log(), pair.inbound.log());
    }
    assert_eq!(code(&v), "OK", "{v}");
    assert_eq!(v["responses"][0], "echo:hi");
    assert_eq!(v["trailers"]["x-echo-trailer"], "unary", "the callee's trailer crossed: {v}");

    // Server streaming: each message is forwarded as it is made (50 ms
    // apart), not when the call ends.
    let v = call(pair.out_addr, CALLEE, &who, "serve", "5", Some(10.0));
    assert_eq!(code(&v), "OK", "{v}");
    assert_eq!(v["responses"].as_array().map(Vec::len), Some(5), "{v}");
    assert_eq!(v["trailers"]["x-echo-trailer"], "serve");
    let arrivals: Vec<f64> = v["arrivals"].as_array().unwrap().iter().filter_map(|a| a.as_f64()).collect();
    assert!(arrivals[4] - arrivals[0] >= 0.15, "messages arrived together: {arrivals:?}");

    // Client streaming.
    let v = call(pair.out_addr, CALLEE, &who, "collect", "6", Some(10.0));
    assert_eq!(code(&v), "OK", "{v}");
    assert_eq!(v["responses"][0], "got:6:126");
    assert_eq!(v["trailers"]["x-echo-trailer"], "collect");

    // Bidirectional: the client sends each message only after the answer
    // to the previous one came back, so the call completes only if both
    // directions flow record by record.
    let v = call(pair.out_addr, CALLEE, &who, "chat", "4", Some(10.0));
    assert_eq!(code(&v), "OK", "{v}");
    assert_eq!(v["responses"], serde_json::json!(["re:hello-0", "re:hello-1", "re:hello-2", "re:hello-3"]));
    assert_eq!(v["trailers"]["x-echo-trailer"], "chat");

    // A status from the callee (trailers-only) reaches the caller.
    let v = call(pair.out_addr, CALLEE, &who, "unary", "fail", Some(10.0));
    assert_eq!(code(&v), "NOT_FOUND", "{v}");
    assert_eq!(v["details"], "no such thing");

    // Every caller setting: sign-only, ChaCha, compressed.
    for who in [caller("none", "none"), caller("chacha", "zstd"), caller("aes", "snappy")] {
        let v = call(pair.out_addr, CALLEE, &who, "serve", "2", Some(10.0));
        assert_eq!((code(&v), &v["trailers"]["x-echo-trailer"]), ("OK", &serde_json::json!("serve")), "{who}: {v}");
    }
}

#[test]
fn a_changed_dropped_or_forged_trailer_never_reaches_the_caller() {
    let server = GrpcServer::start();
    let pair = grpc_pair(&server, Options { h2_relay: true, ..Options::default() });
    let relay = pair.h2_relay.as_ref().expect("relay");
    let who = caller("aes", "none");

    let v = call(pair.out_addr, CALLEE, &who, "unary", "hi", Some(10.0));
    assert_eq!(code(&v), "OK", "through the relay, untouched: {v}");
    assert!(relay.seen.lock().unwrap().iter().all(|t| t.contains_key("x-fp-trailer") && t.len() == 1));

    for (tamper, what) in [
        (TrailerTamper::FlipRecordByte(0), "flags"),
        (TrailerTamper::FlipRecordByte(9), "block"),
        (TrailerTamper::FlipRecordByte(usize::MAX), "tag"),
        (TrailerTamper::DropRecord, "dropped"),
    ] {
        relay.set(tamper);
        let v = call(pair.out_addr, CALLEE, &who, "unary", "hi", Some(10.0));
        assert_ne!(code(&v), "OK", "{what}: a tampered trailer record was accepted: {v}");
        assert!(v["trailers"].get("x-echo-trailer").is_none(), "{what}: {v}");
    }
    assert!(pair.outbound.log().contains("aborting response"), "the outbound proxy says why");

    // Unsigned trailers beside the record are dropped: the caller sees the
    // callee's status and trailers only.
    relay.set(TrailerTamper::AddForgedStatus);
    let v = call(pair.out_addr, CALLEE, &who, "unary", "fail", Some(10.0));
    assert_eq!(code(&v), "NOT_FOUND", "{v}");
    let v = call(pair.out_addr, CALLEE, &who, "unary", "hi", Some(10.0));
    assert_eq!(code(&v), "OK", "{v}");
    assert_eq!(v["details"], "", "the forged grpc-message was dropped: {v}");
    assert_eq!(v["trailers"]["x-echo-trailer"], "unary");
}

#[test]
fn a_grpc_timeout_becomes_the_signed_deadline_and_is_enforced() {
    let server = GrpcServer::start();
    let pair = grpc_pair(&server, Options::default());
    let who = caller("aes", "none");
    let url = format!("http://{}/test.Echo/Unary", pair.out_addr);
    let body = frame(b"sleep:3000");
    std::fs::write(std::env::temp_dir().join("fp-grpc-sleep"), &body).expect("body file");
    let data = format!("@{}", std::env::temp_dir().join("fp-grpc-sleep").display());
    let headers = [
        "--http2-prior-knowledge",
        "-H",
        "content-type: application/grpc",
        "-H",
        "te: trailers",
        "-H",
        "host: token_service",
    ];
    // curl has no deadline of its own: what ends the call is the proxies.
    let started = Instant::now();
    let mut args: Vec<&str> = headers.to_vec();
    let caller_header = format!("x-fp-caller: {who}");
    args.extend(["-H", &caller_header, "-H", "grpc-timeout: 700m", "--data-binary", &data, &url]);
    let r = curl(&args);
    let took = started.elapsed();
    assert_eq!(r.version, "HTTP/2");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("grpc-status"), Some("4"), "DEADLINE_EXCEEDED: {:?}", r.headers);
    assert!(took >= Duration::from_millis(650) && took < Duration::from_millis(2500), "ended after {took:?}");

    // The callee sees the deadline that was signed (what is left of it),
    // not a header anyone could change on the way.
    let v = call(pair.out_addr, CALLEE, &who, "unary", "sleep:10", Some(5.0));
    assert_eq!(code(&v), "OK", "{v}");
    let seen: f64 = v["responses"][0]
        .as_str()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no deadline seen: {v}"));
    assert!(seen > 4.0 && seen <= 5.0, "callee saw {seen} s left of 5");

    // A malformed grpc-timeout is refused as a gRPC status, not JSON.
    let mut args: Vec<&str> = headers.to_vec();
    args.extend(["-H", &caller_header, "-H", "grpc-timeout: soon", "--data-binary", &data, &url]);
    let r = curl(&args);
    assert_eq!((r.status, r.header("grpc-status")), (200, Some("13")), "{:?}", r.headers);
    assert_eq!(r.header("x-fp-error-code"), Some("bad_request"));
}

#[test]
fn the_proxies_own_errors_reach_a_grpc_caller_as_statuses() {
    let server = GrpcServer::start();
    let pair = grpc_pair(&server, Options::default());
    // Routed by authority: a name with no route.
    let v = call(pair.out_addr, "nobody", &caller("aes", "none"), "unary", "hi", Some(10.0));
    assert_eq!(code(&v), "UNIMPLEMENTED", "{v}");
    assert_eq!(v["trailers"]["x-fp-error-code"], "unknown_service", "{v}");
    // Unknown caller at the outbound proxy.
    let v = call(pair.out_addr, CALLEE, "stranger", "unary", "hi", Some(10.0));
    assert_eq!(code(&v), "PERMISSION_DENIED", "{v}");
    // The inbound proxy's signed refusals: a path the caller may not call,
    // and its rate limit.
    let v = call(pair.out_addr, CALLEE, "acl", "unary", "hi", Some(10.0));
    assert_eq!(code(&v), "PERMISSION_DENIED", "{v}");
    assert_eq!(v["trailers"]["x-fp-error-code"], "forbidden", "{v}");
    let mut codes = Vec::new();
    for _ in 0..3 {
        codes.push(code(&call(pair.out_addr, CALLEE, "slow", "unary", "hi", Some(10.0))).to_string());
    }
    assert!(codes.iter().any(|c| c == "RESOURCE_EXHAUSTED"), "{codes:?}");

    // No callee left: UNAVAILABLE.
    drop(server);
    let v = call(pair.out_addr, CALLEE, &caller("aes", "none"), "unary", "hi", Some(10.0));
    assert_eq!(code(&v), "UNAVAILABLE", "{v}");
}

#[test]
fn h2c_and_http1_share_each_port_and_h2_can_run_between_the_proxies() {
    for outbound_pool in ["", "protocol: h2"] {
        let pair = Pair::start(Options { outbound_pool: outbound_pool.to_string(), ..Options::default() });
        let url = format!("http://{}/token_service/api/x?q=1", pair.out_addr);
        let caller_header = format!("x-fp-caller: {}", caller("aes", "none"));
        for version in ["--http2-prior-knowledge", "--http1.1"] {
            let r = curl(&[version, "-H", &caller_header, "--data-binary", "hello", &url]);
            assert_eq!(r.status, 200, "{outbound_pool:?} {version}: {:?}", r.headers);
            let expect = if version == "--http1.1" { "HTTP/1.1" } else { "HTTP/2" };
            assert_eq!(r.version, expect);
            assert_eq!(r.header("x-echo-body-len"), Some("5"), "{:?}", r.headers);
        }
        // The inbound listener speaks both too (an unsealed request is
        // refused either way).
        let url = format!("http://{}/token_service/api/x", pair.in_addr);
        for version in ["--http2-prior-knowledge", "--http1.1"] {
            let r = curl(&[version, &url]);
            assert_eq!(r.status, 400, "{version}");
            assert_eq!(r.header("x-fp-error-code"), Some("malformed"));
        }
    }
}

/// A GET of `path` below the service over h2c through `pair`, as `who`.
fn h2_call(pair: &Pair, who: &str, path: &str) -> H2Response {
    let r = h2_get(pair.out_addr, &format!("/{CALLEE}/{path}"), &[("x-fp-caller", who)]);
    r.unwrap_or_else(|e| panic!("{path}: {e}\n{}\n{}", pair.outbound.log(), pair.inbound.log()))
}

/// Pairs in front of an HTTP/2 callee (`hop`: the protocol between the
/// proxies), through an HTTP/2 relay when asked.
fn h2_callee_pair(callee: &H2Callee, hop: &str, h2_relay: bool) -> Pair {
    Pair::start(Options {
        dead_callees: Some(vec![callee.addr]),
        pool: "protocol: h2".into(),
        outbound_pool: format!("protocol: {hop}"),
        h2_relay,
        ..Options::default()
    })
}

#[test]
fn an_http2_callee_s_empty_responses_reach_the_caller() {
    let callee = H2Callee::start();
    let who = caller("aes", "none");
    for hop in ["h2", "http1"] {
        let pair = h2_callee_pair(&callee, hop, false);
        // Over an HTTP/1.1 hop trailers cannot reach an HTTP/2 caller
        // (CONFIG.md); the bodies still do.
        let trailer = (hop == "h2").then_some("yes");
        for (path, body, trailer, why) in [
            ("hello", &b"hello"[..], trailer, "a body with trailers: both cross (the trailer record)"),
            ("no-trailers", b"hello", None, "a body of known length"),
            // The length is left out of the signature, so the trailers
            // cross in the trailer record like any others.
            ("empty-then-trailers", b"", trailer, "content-length: 0, then trailers"),
            ("empty-data", b"", None, "content-length: 0, then an empty DATA frame with END_STREAM"),
            ("ends-with-headers", b"", None, "END_STREAM on the headers, no length: empty, not truncated"),
        ] {
            let r = h2_call(&pair, &who, path);
            let got = r.trailers.as_ref().and_then(|t| t.get("x-done")).and_then(|v| v.to_str().ok());
            assert_eq!((r.status, r.body.as_slice(), got), (200, body, trailer), "{hop}, {why}: {:?}", r.headers);

            // The same for an HTTP/1.1 caller, who gets no trailers.
            use crate::harness::client::{send, Request};
            let r = send(pair.out_addr, Request::new("GET", &format!("/{CALLEE}/{path}")).header("x-fp-caller", &who));
            let r = r.unwrap_or_else(|e| panic!("{path}: {e}"));
            assert_eq!((r.status, r.body.as_slice()), (200, body), "{hop}, {why}, HTTP/1.1: {:?}", r.text());
        }
    }
}

#[test]
fn a_sealed_response_cut_after_its_headers_is_refused() {
    let callee = H2Callee::start();
    let pair = h2_callee_pair(&callee, "h2", true);
    let relay = pair.h2_relay.as_ref().expect("relay");
    let who = caller("aes", "none");
    let get = |path: &str| h2_call(&pair, &who, path);
    assert_eq!(get("no-trailers").body, b"hello", "through the relay, untouched");

    // The relay ends the sealed response with its headers: its records
    // never come, so the caller must not get an empty 200 for it.
    relay.set(TrailerTamper::CutAfterHeaders);
    for path in ["no-trailers", "hello"] {
        let r = get(path);
        assert_eq!(r.status, 502, "{path}: {:?} {:?}", r.headers, String::from_utf8_lossy(&r.body));
        assert_eq!(r.headers.get("x-fp-error-code").map(|v| v.as_bytes()), Some(&b"bad_response"[..]), "{path}");
    }

    // A response the callee ended with its headers is signed as empty, so
    // the same cut changes nothing.
    let r = get("ends-with-headers");
    assert_eq!((r.status, r.body.len()), (200, 0), "{:?}", r.headers);
}
