//! Live configuration: a reload (SIGHUP) swaps the config under load without
//! failing a request, refuses what it cannot apply, and keeps the state that
//! outlives a config (pool health and ejections, the replay cache).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::harness::client::{send, Request};
use crate::harness::config::{caller, Options, Pair};
use crate::harness::load::Load;
use crate::harness::proxy::admin_config;
use crate::harness::seal::{seal, Hand};
use crate::harness::upstream::{Mode, Upstream};

/// Replaces, in the line of `yaml` that starts with `line_start`, `from`
/// with `to` (panics when there is no such line or text).
fn edit_line(yaml: &str, line_start: &str, from: &str, to: &str) -> String {
    let mut found = false;
    let out: Vec<String> = yaml
        .lines()
        .map(|l| {
            if l.starts_with(line_start) && l.contains(from) && !found {
                found = true;
                l.replacen(from, to, 1)
            } else {
                l.to_owned()
            }
        })
        .collect();
    assert!(found, "no line {line_start:?} with {from:?} in:\n{yaml}");
    out.join("\n") + "\n"
}

fn replace(yaml: &str, from: &str, to: &str) -> String {
    assert!(yaml.contains(from), "{from:?} not in:\n{yaml}");
    yaml.replace(from, to)
}

fn metric(admin: SocketAddr, line_start: &str) -> Option<f64> {
    let text = send(admin, Request::new("GET", "/metrics")).expect("metrics").text();
    text.lines().find_map(|l| l.strip_prefix(line_start)).and_then(|v| v.trim().parse().ok())
}

fn generation(admin: SocketAddr) -> u64 {
    admin_config(admin)["generation"]["number"].as_u64().expect("a generation number")
}

#[test]
fn reloads_under_load_take_effect_and_fail_no_request() {
    let pair = Pair::start(Options::default());
    let second = Upstream::start();
    let who = caller("aes", "none");
    let load = Load::start(pair.out_addr, 16, &who, &[200, 429]);
    let start = Instant::now();
    std::thread::sleep(Duration::from_millis(2500));
    let probe =
        |path: &str| send(pair.out_addr, Request::new("GET", path).header("x-fp-caller", &who)).expect("probe").status;

    // 1. A QPS limit on the caller at the inbound proxy: 429s appear.
    let in_base = pair.inbound.config_text();
    let limited = edit_line(&in_base, &format!("    {who}:"), "methods: [\"*\"] }]", "methods: [\"*\"], qps: 50 }]");
    let cfg = pair.inbound.reload(pair.in_admin, &limited);
    assert_eq!(cfg["generation"]["number"], 2, "{cfg}");
    let before = load.too_many.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(1500));
    let limited_429s = load.too_many.load(Ordering::Relaxed) - before;
    assert!(limited_429s > 0, "no 429 after the QPS limit was lowered");

    // 2. A route added at both proxies: served.
    assert_eq!(probe("/extra_service/x"), 404);
    let with_service = replace(
        &edit_line(
            &limited,
            &format!("    {who}:"),
            "}]",
            "}, { service: extra_service, path_prefix: /, methods: [GET] }]",
        ),
        "  services:\n    token_service: { upstream: callee }\n",
        "  services:\n    token_service: { upstream: callee }\n    extra_service: { upstream: callee }\n",
    );
    pair.inbound.reload(pair.in_admin, &with_service);
    let out_base = pair.outbound.config_text();
    let with_route = replace(
        &out_base,
        "  routes:\n    token_service: { upstream: inbound }\n",
        "  routes:\n    token_service: { upstream: inbound }\n    extra_service: { upstream: inbound }\n",
    );
    pair.outbound.reload(pair.out_admin, &with_route);
    assert_eq!(probe("/extra_service/x"), 200, "the added route");
    std::thread::sleep(Duration::from_millis(1000));

    // 3. The route removed again: 404 unknown_service.
    pair.outbound.reload(pair.out_admin, &out_base);
    assert_eq!(probe("/extra_service/x"), 404, "the removed route");
    std::thread::sleep(Duration::from_millis(1000));

    // 4. A backend added to the callee pool: it takes a share of the load.
    let two_backends = replace(
        &with_service,
        &format!("backends: [{{ addr: \"{}\", weight: 1 }}]", pair.callee_addr),
        &format!("backends: [{{ addr: \"{}\", weight: 1 }}, \"{}\"]", pair.callee_addr, second.addr),
    );
    pair.inbound.reload(pair.in_admin, &two_backends);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(second.arrivals() > 0, "the added backend got no request");

    // 5. The QPS limit lifted: no more 429s.
    let unlimited = replace(&two_backends, "methods: [\"*\"], qps: 50 }", "methods: [\"*\"] }");
    let cfg = pair.inbound.reload(pair.in_admin, &unlimited);
    assert_eq!(cfg["generation"]["number"], 5, "{cfg}");
    std::thread::sleep(Duration::from_millis(300));
    let before = load.too_many.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(3000));
    let after_lift = load.too_many.load(Ordering::Relaxed) - before;

    let (sent, statuses, failures) = load.finish();
    let took = start.elapsed();
    eprintln!(
        "{sent} requests in {took:?} through 6 reloads: {statuses:?}; {limited_429s} 429s in the 1.5 s after the limit, {after_lift} in the 3 s after it was lifted; second backend {} requests",
        second.arrivals()
    );
    assert!(took >= Duration::from_secs(10), "the load ran {took:?}");
    assert!(failures.is_empty(), "{} failed requests: {:?}", failures.len(), &failures[..failures.len().min(10)]);
    assert_eq!(after_lift, 0, "429s after the limit was lifted");
    assert_eq!(metric(pair.in_admin, "fastproxy_config_reloads_total{result=\"ok\"}"), Some(4.0));
}

#[test]
fn an_invalid_config_is_refused_and_the_old_one_keeps_serving() {
    let pair = Pair::start(Options::default());
    let who = caller("aes", "none");
    let base = pair.inbound.config_text();
    let load = Load::start(pair.out_addr, 4, &who, &[200]);
    // A syntax error.
    let cfg = pair.inbound.reload(pair.in_admin, &format!("{base}\n  - : [unclosed\n"));
    assert_eq!(cfg["generation"]["number"], 1, "{cfg}");
    assert_eq!(cfg["last_reload_error"]["result"], "invalid", "{cfg}");
    assert_eq!(cfg["last_reload_error"]["trigger"], "SIGHUP", "{cfg}");
    // An unknown key id, named by its field path.
    let unknown_key = edit_line(&base, &format!("    {who}:"), "keys: [room-v2,", "keys: [nope-key,");
    let cfg = pair.inbound.reload(pair.in_admin, &unknown_key);
    assert_eq!(cfg["generation"]["number"], 1, "{cfg}");
    let message = cfg["last_reload_error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(&format!("inbound.callers.{who}.keys")) && message.contains("nope-key"), "{message}");
    assert_eq!(metric(pair.in_admin, "fastproxy_config_reloads_total{result=\"invalid\"}"), Some(2.0));
    std::thread::sleep(Duration::from_millis(500));
    let (sent, statuses, failures) = load.finish();
    assert!(failures.is_empty() && sent > 0, "{statuses:?} {failures:?}");
    // The same file fixed: it loads, and the error is cleared.
    let cfg = pair.inbound.reload(pair.in_admin, &base);
    assert_eq!(cfg["generation"]["number"], 2, "{cfg}");
    assert!(cfg["last_reload_error"].is_null(), "{cfg}");
}

#[test]
fn a_listener_change_is_refused_with_the_way_to_apply_it() {
    let pair = Pair::start(Options::default());
    let base = pair.outbound.config_text();
    let port = pair.out_addr.port();
    let moved = replace(&base, &format!("127.0.0.1:{port}"), &format!("127.0.0.1:{}", port + 1));
    let cfg = pair.outbound.reload(pair.out_admin, &moved);
    assert_eq!(cfg["generation"]["number"], 1, "{cfg}");
    assert_eq!(cfg["last_reload_error"]["result"], "refused", "{cfg}");
    let message = cfg["last_reload_error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("outbound.listen") && message.contains("upgrade"), "{message}");
    assert_eq!(metric(pair.out_admin, "fastproxy_config_reloads_total{result=\"refused\"}"), Some(1.0));
    let resp =
        send(pair.out_addr, Request::new("GET", "/token_service/x").header("x-fp-caller", &caller("aes", "none")));
    assert_eq!(resp.expect("still served").status, 200);
}

#[test]
fn a_pool_added_by_a_reload_is_health_checked_at_once() {
    let pair = Pair::start(Options::default());
    let dead = crate::harness::proxy::dead_addr(7);
    let base = pair.outbound.config_text();
    let with_pool = replace(
        &base,
        "upstreams:\n",
        &format!(
            "upstreams:\n  extra: {{ backends: [\"{dead}\", \"{}\"], health_check: {{ interval: 500ms, fall: 1, rise: 1 }} }}\n",
            pair.in_addr
        ),
    );
    let with_pool = replace(
        &with_pool,
        "  routes:\n    token_service: { upstream: inbound }\n",
        "  routes:\n    token_service: { upstream: inbound }\n    other_service: { upstream: extra }\n",
    );
    let cfg = pair.outbound.reload(pair.out_admin, &with_pool);
    assert_eq!(cfg["generation"]["number"], 2, "{cfg}");
    let reloaded = Instant::now();
    let gauge = format!("fastproxy_upstream_backend_healthy{{backend=\"{dead}\",pool=\"extra\"}}");
    while metric(pair.out_admin, &gauge) != Some(0.0) {
        assert!(
            reloaded.elapsed() < Duration::from_secs(1),
            "not marked down within 2 intervals:\n{}",
            pair.outbound.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("dead backend of the new pool marked down {:?} after the reload", reloaded.elapsed());
    let live = format!("fastproxy_upstream_backend_healthy{{backend=\"{}\",pool=\"extra\"}}", pair.in_addr);
    assert_eq!(metric(pair.out_admin, &live), Some(1.0));
}

#[test]
fn an_unchanged_pool_keeps_its_ejections_across_a_reload() {
    let pair = Pair::start(Options {
        weights: vec![1, 1],
        pool: "outlier: { consecutive_failures: 2, base_ejection: 60s }".into(),
        ..Options::default()
    });
    let who = caller("aes", "none");
    let bad = pair.callees[0].addr;
    pair.callees[0].set_mode(Mode::Status(503));
    let start = Instant::now();
    while !pair.inbound.log().contains(&format!("backend {bad} ejected")) {
        let _ = send(pair.out_addr, Request::new("GET", "/token_service/x").header("x-fp-caller", &who));
        assert!(start.elapsed() < Duration::from_secs(5), "never ejected");
    }
    // A reload that changes something else (a caller's rules), not the pool.
    let base = pair.inbound.config_text();
    let other = edit_line(&base, "    acl:", "path: /api/allowed", "path: /api/allowed2");
    let cfg = pair.inbound.reload(pair.in_admin, &other);
    assert_eq!(cfg["generation"]["number"], 2, "{cfg}");
    assert!(pair.inbound.log().contains("pools kept [\"callee\"]"), "{}", pair.inbound.log());
    let gauge = format!("fastproxy_upstream_backend_ejected{{backend=\"{bad}\",pool=\"callee\"}}");
    assert_eq!(metric(pair.in_admin, &gauge), Some(1.0), "still ejected");
    let arrivals = pair.callees[0].arrivals();
    for _ in 0..20 {
        let resp = send(pair.out_addr, Request::new("GET", "/token_service/x").header("x-fp-caller", &who));
        assert_eq!(resp.expect("response").status, 200);
    }
    assert_eq!(pair.callees[0].arrivals(), arrivals, "the ejected backend got traffic after the reload");
}

#[test]
fn keys_rotate_through_three_reloads_under_load() {
    let pair = Pair::start(Options::default());
    let who = caller("aes", "none");
    let load = Load::start(pair.out_addr, 16, &who, &[200]);
    let started = Instant::now();
    std::thread::sleep(Duration::from_millis(1000));
    let new_key = "    room-v3: { alg: aes-256-gcm, secret: \"0f0e0d0c0b0a09080706050403020100f0e0d0c0b0a090807060504030201000\" }\n";
    // 1. The new key on both sides; the receivers accept it.
    let in0 = pair.inbound.config_text();
    let in1 = replace(
        &replace(&in0, "  aead:\n", &format!("  aead:\n{new_key}")),
        "keys: [room-v2,",
        "keys: [room-v2, room-v3,",
    );
    pair.inbound.reload(pair.in_admin, &in1);
    let out0 = pair.outbound.config_text();
    let out1 = replace(&out0, "  aead:\n", &format!("  aead:\n{new_key}"));
    pair.outbound.reload(pair.out_admin, &out1);
    std::thread::sleep(Duration::from_millis(1000));
    // 2. The senders switch to it.
    let out2 = replace(&out1, "aead_key: room-v2", "aead_key: room-v3");
    pair.outbound.reload(pair.out_admin, &out2);
    std::thread::sleep(Duration::from_millis(1000));
    // 3. The old key retired at the receiver.
    let in3 = replace(
        &replace(&in1, "keys: [room-v2, room-v3,", "keys: [room-v3,"),
        &format!("    room-v2: {{ alg: aes-256-gcm, secret: \"{}\" }}\n", crate::harness::config::ROOM_V2),
        "",
    );
    let cfg = pair.inbound.reload(pair.in_admin, &in3);
    assert_eq!(cfg["generation"]["number"], 3, "{cfg}");
    std::thread::sleep(Duration::from_millis(1000));
    let (sent, statuses, failures) = load.finish();
    eprintln!("{sent} requests in {:?} through 4 reloads: {statuses:?}", started.elapsed());
    assert!(failures.is_empty(), "{} failed: {:?}", failures.len(), &failures[..failures.len().min(10)]);
    // A request under the retired key id is refused.
    let old = seal(&Hand::new("GET", "/x", &who));
    let resp = send(pair.in_addr, Request::new("GET", &old.target).header("x-fp", &old.header)).expect("response");
    assert_eq!((resp.status, resp.header("x-fp-error-code")), (401, Some("unknown_key")), "{}", resp.text());
    assert_eq!(generation(pair.out_admin), 3);
}

#[test]
fn a_replay_across_a_reload_is_refused() {
    let pair = Pair::start(Options::default());
    let sealed = seal(&Hand::new("GET", "/x", &caller("aes", "none")));
    let deliver = || {
        let resp = send(pair.in_addr, Request::new("GET", &sealed.target).header("x-fp", &sealed.header));
        let resp = resp.expect("response");
        (resp.status, resp.header("x-fp-error-code").map(str::to_owned))
    };
    assert_eq!(deliver().0, 200);
    let base = pair.inbound.config_text();
    let other = edit_line(&base, "    acl:", "path: /api/allowed", "path: /api/allowed2");
    assert_eq!(pair.inbound.reload(pair.in_admin, &other)["generation"]["number"], 2);
    assert_eq!(deliver(), (401, Some("replay".to_owned())));
}

#[test]
fn a_watched_config_and_its_secret_files_reload_on_their_own() {
    let pair = Pair::start(Options::default());
    let base = pair.inbound.config_text();
    // Switch the watch on (a reload setting is live), with a secret moved to a file.
    let key_file = pair.inbound.dir.join("chacha.key");
    std::fs::write(&key_file, format!("{}\n", crate::harness::config::CHACHA_V1)).unwrap();
    let watched = replace(
        &format!("{base}reload: {{ watch: true, poll: 200ms }}\n"),
        &format!("secret: \"{}\"", crate::harness::config::CHACHA_V1),
        &format!("secret: \"file:{}\"", key_file.display()),
    );
    assert_eq!(pair.inbound.reload(pair.in_admin, &watched)["generation"]["number"], 2);
    let wait_for = |n: u64| {
        let start = Instant::now();
        while generation(pair.in_admin) != n {
            assert!(start.elapsed() < Duration::from_secs(10), "generation {n} never came:\n{}", pair.inbound.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        start.elapsed()
    };
    // The file changes, no signal: reloaded within a few polls.
    let edited = edit_line(&watched, "    acl:", "path: /api/allowed", "path: /api/allowed2");
    let tmp = pair.inbound.dir.join("fastproxy.yaml.new");
    std::fs::write(&tmp, &edited).unwrap();
    std::fs::rename(&tmp, pair.inbound.dir.join("fastproxy.yaml")).unwrap();
    let took = wait_for(3);
    // A secret file it names changes: reloaded too.
    std::fs::write(&key_file, "0f0e0d0c0b0a09080706050403020100f0e0d0c0b0a090807060504030201000\n").unwrap();
    let took_secret = wait_for(4);
    eprintln!("config change live after {took:?}, secret file change after {took_secret:?}");
    assert!(pair.inbound.log().contains("config reload (watch): generation 4 is live"), "{}", pair.inbound.log());
    // Unchanged files: no more reloads.
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(generation(pair.in_admin), 4);
}

#[test]
fn a_reload_through_the_admin_listener_is_not_applied_again_by_the_watch() {
    let pair = Pair::start(Options::default());
    let base = pair.inbound.config_text();
    let watched = format!("{base}reload: {{ watch: true, poll: 100ms }}\n");
    let stays = |n: u64, why: &str| {
        std::thread::sleep(Duration::from_millis(1000));
        assert_eq!(generation(pair.in_admin), n, "{why}:\n{}", pair.inbound.log());
    };
    // Switched on by a SIGHUP reload: the watch starts from what it read.
    assert_eq!(pair.inbound.reload(pair.in_admin, &watched)["generation"]["number"], 2);
    stays(2, "the watch loaded the file SIGHUP had loaded");

    // An edit applied at once through `POST /reload`: the watch must take
    // the file as applied, not load it a second time.
    let edited = edit_line(&watched, "    acl:", "path: /api/allowed", "path: /api/allowed2");
    let tmp = pair.inbound.dir.join("fastproxy.yaml.new");
    std::fs::write(&tmp, &edited).unwrap();
    std::fs::rename(&tmp, pair.inbound.dir.join("fastproxy.yaml")).unwrap();
    let r = send(pair.in_admin, Request::new("POST", "/reload")).expect("reload");
    assert_eq!((r.status, generation(pair.in_admin)), (200, 3), "{}", r.text());
    stays(3, "the watch loaded the file POST /reload had loaded");
}
