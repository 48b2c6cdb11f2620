//! Upstream pools with three real callees: balancing, health checks, ejection,
//! retries and the retry budget.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::harness::client::{send, Body, Request};
use crate::harness::config::{caller, Options, Pair};
use crate::harness::proxy::{self, Proxy};
use crate::harness::upstream::Mode;

fn who() -> String {
    caller("aes", "none")
}

fn get(pair: &Pair, headers: &[(&str, &str)]) -> crate::harness::client::Response {
    let mut req = Request::new("GET", "/token_service/item").header("x-fp-caller", &who());
    for (k, v) in headers {
        req = req.header(k, v);
    }
    send(pair.out_addr, req).expect("request")
}

/// Which callee served a response.
fn served_by(resp: &crate::harness::client::Response) -> String {
    resp.header("x-echo-server").unwrap_or("-").to_string()
}

/// Polls a proxy's log until `needle` appears; the moment it was seen.
fn wait_for_log(p: &Proxy, needle: &str, timeout: Duration) -> Instant {
    let start = Instant::now();
    loop {
        if p.log().contains(needle) {
            return Instant::now();
        }
        assert!(start.elapsed() < timeout, "no {needle:?} in the log within {timeout:?}:\n{}", p.log());
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn three(weights: [u32; 3], pool: &str) -> Pair {
    Pair::start(Options { weights: weights.to_vec(), pool: pool.to_string(), ..Options::default() })
}

#[test]
fn round_robin_is_even_and_weights_are_honoured() {
    for weights in [[1, 1, 1], [1, 2, 3]] {
        let pair = three(weights, "");
        let total: u32 = weights.iter().sum::<u32>() * 100;
        for _ in 0..total {
            assert_eq!(get(&pair, &[]).status, 200);
        }
        for (callee, w) in pair.callees.iter().zip(weights) {
            let expected = f64::from(w * 100);
            let got = callee.arrivals() as f64;
            eprintln!("weights {weights:?}: weight {w} got {got} of {total}");
            assert!((got - expected).abs() <= expected * 0.1, "weight {w}: {got} requests, expected {expected} ± 10%");
        }
    }
}

#[test]
fn consistent_hashing_keeps_keys_and_moves_about_a_third() {
    let pair =
        three([1, 1, 1], "selection: consistent, hash_key: \"header:x-user\", health_check: { interval: 100ms }");
    let keys: Vec<String> = (0..300).map(|i| format!("user-{i}")).collect();
    // Which backend serves each key (a request that failed outright is asked
    // again: the property under test is placement, not delivery).
    let route = |pair: &Pair| -> HashMap<String, String> {
        keys.iter()
            .map(|k| {
                let mut backend = served_by(&get(pair, &[("x-user", k)]));
                for _ in 0..2 {
                    if backend != "-" {
                        break;
                    }
                    backend = served_by(&get(pair, &[("x-user", k)]));
                }
                (k.clone(), backend)
            })
            .collect()
    };
    let before = route(&pair);
    assert_eq!(route(&pair), before, "the same key goes to the same backend");
    let gone = pair.callees[2].addr.to_string();
    pair.callees[2].kill();
    wait_for_log(&pair.inbound, &format!("backend {gone} marked unhealthy"), Duration::from_secs(5));
    let after = route(&pair);
    let moved = keys.iter().filter(|k| before[*k] != after[*k]).count();
    let wrongly_moved: Vec<_> = keys
        .iter()
        .filter(|k| before[*k] != gone && before[*k] != after[*k])
        .map(|k| (k, &before[k], &after[k]))
        .collect();
    let stayed_elsewhere = wrongly_moved.is_empty();
    eprintln!("consistent hashing: {moved} of {} keys moved when 1 of 3 backends left", keys.len());
    assert!(
        stayed_elsewhere,
        "keys of the remaining backends must not move: {wrongly_moved:?}\n{}",
        pair.inbound.log()
    );
    assert!(after.values().all(|b| *b != gone));
    assert!((60..=140).contains(&moved), "{moved} keys moved, expected about 100 (1/3)");
}

#[test]
fn a_backend_killed_under_load_costs_almost_nothing_and_rejoins() {
    let pair = three([1, 1, 1], "health_check: { interval: 200ms, timeout: 200ms }");
    let out = pair.out_addr;
    let done = Arc::new(AtomicUsize::new(0));
    let results = Arc::new(Mutex::new(Vec::new()));
    let victim = pair.callees[1].addr.to_string();
    let threads: Vec<_> = (0..200)
        .map(|_| {
            let (done, results) = (done.clone(), results.clone());
            std::thread::spawn(move || {
                for _ in 0..10 {
                    let started = Instant::now();
                    let status = send(out, Request::new("GET", "/token_service/item").header("x-fp-caller", &who()))
                        .map_or(0, |r| r.status);
                    results.lock().unwrap().push((started, status));
                    done.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    while done.load(Ordering::SeqCst) < 500 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let killed_at = Instant::now();
    pair.callees[1].kill();
    let marked_down =
        wait_for_log(&pair.inbound, &format!("backend {victim} marked unhealthy"), Duration::from_secs(5));
    for t in threads {
        t.join().unwrap();
    }
    let results = results.lock().unwrap();
    let failed: Vec<_> = results.iter().filter(|(_, s)| *s != 200).collect();
    let after_down = failed.iter().filter(|(t, _)| *t > marked_down).count();
    eprintln!(
        "kill under load: {} of {} requests failed ({} after mark-down); marked down {:?} after the kill",
        failed.len(),
        results.len(),
        after_down,
        marked_down - killed_at
    );
    assert_eq!(results.len(), 2000);
    assert!(failed.len() <= 10, "{} failed (limit 0.5% = 10)", failed.len());
    assert_eq!(after_down, 0, "failures after the health check marked the backend down");

    // It comes back and gets its share again.
    pair.callees[1].revive();
    let revived = Instant::now();
    wait_for_log(&pair.inbound, &format!("backend {victim} marked healthy"), Duration::from_secs(5));
    eprintln!("revived backend marked healthy after {:?}", revived.elapsed());
    let before = pair.callees[1].arrivals();
    for _ in 0..90 {
        assert_eq!(get(&pair, &[]).status, 200);
    }
    let share = pair.callees[1].arrivals() - before;
    assert!((25..=35).contains(&share), "revived backend got {share} of 90");
}

#[test]
fn a_failing_backend_is_ejected_then_readmitted() {
    let pair = three([1, 1, 1], "outlier: { consecutive_failures: 3, base_ejection: 1s }, read_timeout: 300ms");
    let bad = pair.callees[0].addr.to_string();
    pair.callees[0].set_mode(Mode::Status(503));
    let start = Instant::now();
    let mut passed_503 = 0;
    while !pair.inbound.log().contains(&format!("backend {bad} ejected")) {
        if get(&pair, &[]).status == 503 {
            passed_503 += 1;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "never ejected");
    }
    let ejected_after = start.elapsed();
    // While ejected, nobody is sent there.
    let before = pair.callees[0].arrivals();
    for _ in 0..30 {
        assert_eq!(get(&pair, &[]).status, 200);
    }
    assert_eq!(pair.callees[0].arrivals(), before, "an ejected backend got traffic");
    // Healthy again: after the ejection time it is tried half-open and readmitted.
    pair.callees[0].set_mode(Mode::Normal);
    let healed = Instant::now();
    while !pair.inbound.log().contains(&format!("backend {bad} readmitted")) {
        assert_eq!(get(&pair, &[]).status, 200);
        std::thread::sleep(Duration::from_millis(20));
        assert!(healed.elapsed() < Duration::from_secs(5), "never readmitted");
    }
    eprintln!(
        "503 backend: ejected after {ejected_after:?} ({passed_503} answers of 503 reached callers), readmitted {:?} after healing",
        healed.elapsed()
    );
    assert_eq!(passed_503, 3, "exactly consecutive_failures answers before ejection");

    // A backend that times out: GETs are retried elsewhere, and it is ejected.
    pair.callees[2].set_mode(Mode::Delay(Duration::from_secs(3)));
    let slow = pair.callees[2].addr.to_string();
    let start = Instant::now();
    while !pair.inbound.log().contains(&format!("backend {slow} ejected")) {
        let resp = get(&pair, &[("x-fp-timeout-ms", "5000")]);
        assert_eq!(resp.status, 200, "timed-out GETs are retried on another backend");
        assert!(start.elapsed() < Duration::from_secs(20), "never ejected");
    }
    eprintln!("slow backend ejected after {:?}", start.elapsed());
}

#[test]
fn a_post_never_reaches_a_callee_twice_a_get_is_retried() {
    let pair = three([1, 1, 1], "outlier: { enabled: false }");
    pair.callees[0].set_mode(Mode::DieAfterRequest);
    let total = |p: &Pair| p.callees.iter().map(|c| c.arrivals()).sum::<usize>();
    // POSTs until one lands on the dying backend.
    loop {
        let (a, all) = (pair.callees[0].arrivals(), total(&pair));
        let resp = send(
            pair.out_addr,
            Request::new("POST", "/token_service/pay")
                .header("x-fp-caller", &who())
                .body(Body::Bytes(b"{\"amount\":1}".to_vec())),
        )
        .unwrap();
        if pair.callees[0].arrivals() > a {
            assert_eq!(resp.status, 502, "{}", resp.text());
            assert_eq!(total(&pair), all + 1, "the POST arrived exactly once");
            break;
        }
        assert_eq!(resp.status, 200);
    }
    loop {
        let (a, all) = (pair.callees[0].arrivals(), total(&pair));
        let resp = get(&pair, &[]);
        assert_eq!(resp.status, 200, "{}", resp.text());
        if pair.callees[0].arrivals() > a {
            assert_eq!(total(&pair), all + 2, "the GET died on one backend and was answered by another");
            break;
        }
    }
}

#[test]
fn all_backends_down_gets_a_fast_503() {
    let pair = three([1, 1, 1], "health_check: { interval: 100ms, timeout: 100ms }");
    for c in &pair.callees {
        c.kill();
    }
    for c in &pair.callees {
        wait_for_log(&pair.inbound, &format!("backend {} marked unhealthy", c.addr), Duration::from_secs(5));
    }
    let start = Instant::now();
    let resp = get(&pair, &[]);
    let took = start.elapsed();
    eprintln!("all backends down: {} in {took:?}", resp.status);
    assert_eq!(resp.status, 503, "{}", resp.text());
    assert_eq!(resp.header("x-fp-error-code"), Some("no_healthy_upstream"));
    assert!(took < Duration::from_millis(500), "took {took:?}");
    // The inbound's health endpoint says so too.
    let health = send(pair.in_addr, Request::new("GET", "/_fastproxy/health/token_service")).unwrap();
    assert_eq!(health.status, 503);
    pair.callees[0].revive();
    wait_for_log(&pair.inbound, &format!("backend {} marked healthy", pair.callees[0].addr), Duration::from_secs(5));
    let health = send(pair.in_addr, Request::new("GET", "/_fastproxy/health/token_service")).unwrap();
    assert_eq!(health.status, 200, "{}", health.text());
}

#[test]
fn the_retry_budget_caps_retries_in_a_total_outage() {
    // Three dead backends, no health checks, no ejection: only the budget
    // (5 + 20% of requests per 10 s) stops each request retrying twice.
    let dead = (1..=3).map(proxy::dead_addr).collect();
    let pool = "retry: { attempts: 3, budget_ratio: 0.2, budget_min: 5 }, outlier: { enabled: false }".to_string();
    let pair = Pair::start(Options { dead_callees: Some(dead), pool, ..Options::default() });
    let n = 100;
    for _ in 0..n {
        let resp = get(&pair, &[]);
        assert!(resp.status == 502 || resp.status == 503, "{}", resp.status);
    }
    std::thread::sleep(Duration::from_millis(200));
    let log = pair.inbound.log();
    let retries: usize = log
        .lines()
        .filter(|l| l.contains("role=inbound") && l.contains("error=upstream_failed"))
        .filter_map(|l| l.split("retries=").nth(1)?.split(' ').next()?.parse::<usize>().ok())
        .sum();
    eprintln!("total outage: {retries} retries for {n} requests (budget 5 + 20%)");
    assert!(retries > 0, "some retries are allowed");
    assert!(retries <= 5 + n / 5, "{retries} retries exceed the budget");
}

#[test]
fn the_outbound_pool_follows_the_inbound_health_endpoint() {
    let pair = Pair::start(Options {
        pool: "health_check: { interval: 100ms, timeout: 100ms }".into(),
        outbound_pool:
            "health_check: { http: { path: /_fastproxy/health/token_service }, interval: 100ms, timeout: 200ms }".into(),
        ..Options::default()
    });
    assert_eq!(get(&pair, &[]).status, 200);
    pair.callee().kill();
    let inbound = pair.in_addr.to_string();
    wait_for_log(&pair.outbound, &format!("backend {inbound} marked unhealthy"), Duration::from_secs(5));
    let resp = get(&pair, &[]);
    assert_eq!(resp.status, 503, "{}", resp.text());
    assert_eq!(resp.header("x-fp-error-source"), Some("outbound"), "refused before crossing the network");
    pair.callee().revive();
    wait_for_log(&pair.outbound, &format!("backend {inbound} marked healthy"), Duration::from_secs(5));
    assert_eq!(get(&pair, &[]).status, 200);
}

#[test]
fn a_backend_given_by_host_name_is_resolved() {
    let pair = Pair::start(Options::default());
    let base = pair.inbound.config_text();
    let port = pair.callee_addr.port();
    let by_name = base.replace(
        &format!("backends: [{{ addr: \"{}\", weight: 1 }}]", pair.callee_addr),
        &format!("backends: [\"localhost:{port}\"], resolve_interval: 1s"),
    );
    assert_ne!(by_name, base);
    let cfg = pair.inbound.reload(pair.in_admin, &by_name);
    assert_eq!(cfg["generation"]["number"], 2, "{cfg}");
    let shown = &cfg["upstreams"]["callee"]["backends"][0];
    assert_eq!((shown["addr"].as_str(), shown["dns"].as_bool()), (Some(&*format!("localhost:{port}")), Some(true)));
    let before = pair.callee().arrivals();
    for _ in 0..10 {
        assert_eq!(get(&pair, &[]).status, 200);
    }
    assert_eq!(pair.callee().arrivals() - before, 10, "every call reached the callee through the name");
}
