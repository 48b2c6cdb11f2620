//! The roles' pure decisions, through the library, with no process or
//! socket: planning an app's request at the outbound role, accepting a
//! sealed request at the inbound role. Config: the shipped demo config.

use std::sync::{Arc, OnceLock};

use fastproxy::config;
use fastproxy::error::ProxyError;
use fastproxy::metrics::Metrics;
use fastproxy::replay_state::ReplayState;
use fastproxy::roles::{inbound::Inbound, outbound, Known};
use fastproxy::state::{Origin, Snapshot};
use filters::{CompressOptions, Envelope, NonceSource, Protection, Target};
use pingora::http::RequestHeader;

const DEMO: &str = include_str!("../../conf/fastproxy.yaml");

fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| Metrics::register().expect("metrics"))
}

fn generation() -> Arc<Snapshot> {
    let config = config::from_yaml(DEMO).expect("the demo config");
    Arc::new(Snapshot::new(config, Origin::new(1, DEMO.as_bytes()), metrics()).expect("pools"))
}

fn request(method: &str, target: &str, headers: &[(&str, &str)]) -> RequestHeader {
    let mut req = RequestHeader::build(method, target.as_bytes(), None).expect("request");
    for (k, v) in headers {
        req.append_header(k.to_string(), *v).expect("header");
    }
    req
}

fn plan(req: &RequestHeader, body_empty: bool) -> (Result<outbound::Plan, ProxyError>, Known) {
    let mut known = Known::default();
    let result = outbound::plan(generation(), req, body_empty, &mut known);
    (result, known)
}

#[test]
fn the_outbound_role_plans_a_routed_request() {
    let req = request(
        "POST",
        "/token_service/api/pay?x=1",
        &[("x-fp-caller", "song_service"), ("content-length", "10"), ("x-fp-timeout-ms", "500")],
    );
    let before = fastproxy::http_util::now_ms();
    let (plan, known) = plan(&req, false);
    let plan = plan.expect("a plan");
    assert_eq!((plan.caller(), plan.service(), plan.length()), ("song_service", "token_service", Some(10)));
    let deadline = plan.deadline_ms().expect("the caller's deadline");
    assert!(deadline >= before + 500 && deadline <= fastproxy::http_util::now_ms() + 500);
    assert_eq!(known.caller.as_deref(), Some("song_service"));
    // No timeout header: the route's (10 s).
    let (plan, _) = plan_of(&[("x-fp-caller", "song_service")]);
    let deadline = plan.expect("a plan").deadline_ms().expect("the route's timeout");
    assert!(deadline >= before + 10_000);
}

fn plan_of(headers: &[(&str, &str)]) -> (Result<outbound::Plan, ProxyError>, Known) {
    plan(&request("GET", "/token_service/x", headers), true)
}

#[test]
fn the_outbound_role_refuses_before_sealing() {
    let code = |r: Result<outbound::Plan, ProxyError>| r.err().map(|e| e.code());
    assert_eq!(code(plan_of(&[]).0), Some("missing_caller"));
    assert_eq!(code(plan_of(&[("x-fp-caller", "nobody")]).0), Some("unknown_caller"));
    let (r, known) = plan(&request("GET", "/nowhere/x", &[("x-fp-caller", "song_service")]), true);
    assert_eq!((code(r), known.service), (Some("unknown_service"), None));
    let (r, _) = plan(&request("GET", "/token_service/../admin", &[("x-fp-caller", "song_service")]), true);
    assert_eq!(code(r), Some("bad_request"));
    let (r, _) = plan_of(&[("x-fp-caller", "song_service"), ("x-fp-timeout-ms", "soon")]);
    assert_eq!(code(r), Some("bad_request"));
    let (r, _) = plan(
        &request("POST", "/token_service/x", &[("x-fp-caller", "song_service"), ("content-length", "999999999999")]),
        false,
    );
    assert_eq!(code(r), Some("body_too_large"));
    let many: Vec<(String, String)> = (0..120).map(|i| (format!("x-h{i}"), "v".to_owned())).collect();
    let mut headers: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    headers.push(("x-fp-caller", "song_service"));
    assert_eq!(code(plan_of(&headers).0), Some("headers_too_large"));
}

/// A request of `song_service` to `path` below `token_service`, sealed as
/// its outbound proxy would; the value of its `x-fp` header.
fn sealed(snap: &Snapshot, method: &str, path: &str) -> String {
    let nonces = NonceSource::new(&ring::rand::SystemRandom::new()).expect("nonces");
    let env = Envelope {
        target: Target::Request { method, path, query: "" },
        service: "token_service",
        caller: "song_service",
        content_type: "",
        codec: filters::Codec::None,
        protection: Protection::Encrypt { alg: filters::Algorithm::Aes256Gcm, key: "room-v2" },
        sign_key: "sign-v1",
        timestamp_ms: fastproxy::http_util::now_ms(),
        nonce: nonces.next_nonce(),
        length: Some(0),
        deadline_ms: None,
    };
    let (sig, _) = snap.config.keys.seal(&env, CompressOptions::default()).expect("seal");
    env.header_value(&sig)
}

#[test]
fn the_inbound_role_accepts_a_sealed_request_once() {
    let snap = generation();
    let dir = std::env::temp_dir().join(format!("fastproxy-decisions-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let replay = ReplayState::open(&dir.join("replay").display().to_string(), 60_000, 1024).expect("replay state");
    // A fresh journal refuses timestamps up to its opening (PROTOCOL.md §7.1).
    std::thread::sleep(std::time::Duration::from_millis(2));
    let value = sealed(&snap, "GET", "/api/x");
    let req = request("GET", "/token_service/api/x", &[("x-fp", &value)]);
    let accept = |req: &RequestHeader| {
        let (mut known, mut reply_to) = (Known::default(), None);
        Inbound::accept(snap.clone(), &replay, req, None, &mut known, &mut reply_to).map(|(a, _)| a)
    };
    let accepted = accept(&req).expect("accepted");
    assert_eq!((accepted.caller(), accepted.service(), accepted.encrypted()), ("song_service", "token_service", true));
    assert_eq!(accept(&req).err().map(|e| e.code()), Some("replay"), "the same request again");
    // Signed for another path, method or service: the signature fails.
    let moved = request("GET", "/token_service/api/y", &[("x-fp", &sealed(&snap, "GET", "/api/x"))]);
    assert_eq!(accept(&moved).err().map(|e| e.code()), Some("bad_signature"));
    let as_post = request("POST", "/token_service/api/x", &[("x-fp", &sealed(&snap, "GET", "/api/x"))]);
    assert_eq!(accept(&as_post).err().map(|e| e.code()), Some("bad_signature"));
    let other = request("GET", "/other_service/api/x", &[("x-fp", &sealed(&snap, "GET", "/api/x"))]);
    assert_eq!(accept(&other).err().map(|e| e.code()), Some("unknown_service"));
    let unsealed = request("GET", "/token_service/api/x", &[]);
    assert_eq!(accept(&unsealed).err().map(|e| e.code()), Some("malformed"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn pools_of_inbound_proxies_speak_http2_and_pools_of_callees_http1_unless_told() {
    let config = config::from_yaml(DEMO).expect("the demo config");
    assert_eq!(config.upstreams["token-inbound"].protocol, config::Protocol::H2);
    assert_eq!(config.upstreams["token-local"].protocol, config::Protocol::Http1);
    let told = DEMO.replace(
        r#"token-inbound: { backends: ["127.0.0.1:8033"] }"#,
        r#"token-inbound: { backends: ["127.0.0.1:8033"], protocol: http1 }"#,
    );
    assert_ne!(told, DEMO);
    let config = config::from_yaml(&told).expect("config");
    assert_eq!(config.upstreams["token-inbound"].protocol, config::Protocol::Http1);
    let wrong = DEMO.replace(
        r#"token-local: { backends: ["127.0.0.1:8101"], read_timeout: 10s }"#,
        r#"token-local: { backends: ["127.0.0.1:8101"], read_timeout: 10s, protocol: h3 }"#,
    );
    let problems = config::from_yaml(&wrong).err().expect("refused").to_string();
    assert!(problems.contains("upstreams.token-local.protocol"), "{problems}");
}
