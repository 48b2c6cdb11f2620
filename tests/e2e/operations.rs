//! Operations: metrics, readiness, the config view, `fastproxy check`,
//! graceful shutdown and zero-downtime upgrade.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::harness::client::{send, Body, KeepAlive, Request};
use crate::harness::config::{caller, Options, Pair};
use crate::harness::proxy::{self, Proxy};
use crate::harness::upstream::{Mode, Upstream};

fn admin(addr: std::net::SocketAddr, path: &str) -> crate::harness::client::Response {
    send(addr, Request::new("GET", path)).expect("admin request")
}

/// Sums the samples of `name` whose labels include every `(key, value)`.
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, "}"));
            if metric != name {
                return None;
            }
            let have: BTreeMap<&str, &str> = rest
                .trim_end_matches('}')
                .split(',')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k, v.trim_matches('"')))
                .collect();
            labels.iter().all(|(k, v)| have.get(k) == Some(v)).then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

fn call(pair: &Pair, who: &str, method: &str, target: &str) -> u16 {
    let req = Request::new(method, target).header("x-fp-caller", who);
    let req = if method == "POST" { req.body(Body::Bytes(b"{}".to_vec())) } else { req };
    send(pair.out_addr, req).expect("request").status
}

#[test]
fn metrics_count_a_known_mix_exactly() {
    let pair = Pair::start(Options::default());
    let ok = caller("aes", "none");
    for _ in 0..3 {
        assert_eq!(call(&pair, &ok, "GET", "/token_service/a"), 200);
    }
    // Unverifiable at the inbound proxy: its unsigned 401 reaches the app as a generic 502.
    assert_eq!(call(&pair, "ghost", "GET", "/token_service/a"), 502);
    for _ in 0..2 {
        assert_eq!(call(&pair, "acl", "GET", "/token_service/api/other"), 403);
    }
    assert_eq!(call(&pair, "slow", "GET", "/token_service/a"), 200);
    for _ in 0..2 {
        assert_eq!(call(&pair, "slow", "GET", "/token_service/a"), 429);
    }
    pair.callee().set_mode(Mode::DieAfterRequest);
    assert_eq!(call(&pair, &ok, "POST", "/token_service/pay"), 502);

    // A request is counted once its answer is out: give the last one a moment.
    let start = Instant::now();
    let mut text = admin(pair.in_admin, "/metrics").text();
    while metric(&text, "fastproxy_requests_total", &[("role", "inbound")]) < 10.0
        && start.elapsed() < Duration::from_secs(3)
    {
        std::thread::sleep(Duration::from_millis(20));
        text = admin(pair.in_admin, "/metrics").text();
    }
    let inbound =
        |labels: &[(&str, &str)]| metric(&text, "fastproxy_requests_total", &[&[("role", "inbound")], labels].concat());
    let errors = |code: &str| metric(&text, "fastproxy_errors_total", &[("role", "inbound"), ("code", code)]);
    assert_eq!(inbound(&[("caller", &ok), ("service", "token_service"), ("class", "2xx")]), 3.0, "{text}");
    assert_eq!(inbound(&[("caller", &ok), ("class", "5xx")]), 1.0);
    assert_eq!(inbound(&[("caller", "unknown"), ("class", "4xx")]), 1.0, "the forged caller is not a label");
    assert_eq!(inbound(&[("caller", "acl"), ("class", "4xx")]), 2.0);
    assert_eq!(inbound(&[("caller", "slow"), ("class", "2xx")]), 1.0);
    assert_eq!(inbound(&[("caller", "slow"), ("class", "4xx")]), 2.0);
    assert_eq!(inbound(&[]), 10.0, "every request counted once");
    assert_eq!(errors("unknown_key"), 1.0);
    assert_eq!(errors("forbidden"), 2.0);
    assert_eq!(errors("rate_limited"), 2.0);
    assert_eq!(errors("upstream_failed"), 1.0);
    assert_eq!(metric(&text, "fastproxy_errors_total", &[("role", "inbound")]), 6.0);
    assert_eq!(metric(&text, "fastproxy_request_duration_seconds_count", &[("role", "inbound")]), 10.0);
    assert_eq!(metric(&text, "fastproxy_upstream_duration_seconds_count", &[("role", "inbound")]), 4.0);
    assert_eq!(metric(&text, "fastproxy_upstream_backend_healthy", &[("pool", "callee")]), 1.0);

    let mut out = admin(pair.out_admin, "/metrics").text();
    while metric(&out, "fastproxy_requests_total", &[("role", "outbound")]) < 10.0
        && start.elapsed() < Duration::from_secs(3)
    {
        std::thread::sleep(Duration::from_millis(20));
        out = admin(pair.out_admin, "/metrics").text();
    }
    let outbound =
        |labels: &[(&str, &str)]| metric(&out, "fastproxy_requests_total", &[&[("role", "outbound")], labels].concat());
    assert_eq!(outbound(&[("class", "2xx")]), 4.0);
    assert_eq!(outbound(&[("class", "4xx")]), 4.0);
    assert_eq!(outbound(&[("class", "5xx")]), 2.0);
    assert_eq!(outbound(&[("caller", "ghost"), ("class", "5xx")]), 1.0);
    assert_eq!(metric(&out, "fastproxy_errors_total", &[("role", "outbound"), ("code", "unverified_refusal")]), 1.0);
    assert!(metric(&out, "fastproxy_body_bytes_total", &[("role", "outbound"), ("direction", "out")]) > 0.0);
}

#[test]
fn readyz_follows_pool_health_and_healthz_stays_up() {
    let pair =
        Pair::start(Options { pool: "health_check: { interval: 100ms, timeout: 100ms }".into(), ..Options::default() });
    assert_eq!(admin(pair.in_admin, "/readyz").status, 200);
    assert_eq!(admin(pair.out_admin, "/readyz").status, 200);
    pair.callee().kill();
    let start = Instant::now();
    while admin(pair.in_admin, "/readyz").status != 503 {
        assert!(start.elapsed() < Duration::from_secs(5), "never unready");
        std::thread::sleep(Duration::from_millis(20));
    }
    let body = admin(pair.in_admin, "/readyz").text();
    assert!(body.contains("no backend available"), "{body}");
    assert_eq!(admin(pair.in_admin, "/healthz").status, 200);
    pair.callee().revive();
    while admin(pair.in_admin, "/readyz").status != 200 {
        assert!(start.elapsed() < Duration::from_secs(10), "never ready again");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(admin(pair.in_admin, "/nope").status, 404);
}

#[test]
fn the_config_view_shows_no_secret() {
    let pair = Pair::start(Options::default());
    for addr in [pair.in_admin, pair.out_admin] {
        let view = admin(addr, "/config");
        assert_eq!(view.status, 200);
        let text = view.text();
        let v: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(v["keys"]["aead"]["room-v2"]["secret"], "<redacted>");
        assert_eq!(v["keys"]["aead"]["room-v2"]["alg"], "aes-256-gcm");
        // No secret, in hex, in any case, nor a recognisable part of one.
        for secret in [
            "000102030405060708090a0b0c0d0e0f",
            "202122232425262728292a2b2c2d2e2f",
            "404142434445464748494a4b4c4d4e4f",
            "606162636465666768696a6b6c6d6e6f",
        ] {
            assert!(!text.to_lowercase().contains(secret), "a secret leaked into /config");
            assert!(!text.to_lowercase().contains(&secret[..16]));
        }
    }
    // Nor in the logs.
    for log in [pair.inbound.log(), pair.outbound.log()] {
        assert!(!log.contains("0102030405060708"), "a secret leaked into a log");
    }
}

/// Runs `fastproxy check -f path`: exit code and stderr.
fn check(path: &std::path::Path) -> (Option<i32>, String) {
    let out =
        std::process::Command::new(env!("CARGO_BIN_EXE_fastproxy")).args(["check", "-f"]).arg(path).output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn secrets_appear_in_no_log_error_or_view() {
    use crate::harness::config::{sign_secret, ROOM_V2};
    let secrets = [ROOM_V2.to_string(), sign_secret(&caller("aes", "none"))];
    let leaked = |text: &str| secrets.iter().find(|s| text.to_lowercase().contains(&s[..16])).cloned();
    // Trace-level logs of both proxies through sealed traffic and refusals.
    let pair = Pair::start(Options { rust_log: "trace", ..Options::default() });
    let ok = send(
        pair.out_addr,
        Request::new("POST", "/token_service/api")
            .header("x-fp-caller", &caller("aes", "none"))
            .body(Body::Bytes(b"{}".to_vec())),
    )
    .expect("response");
    assert_eq!(ok.status, 200);
    let _ = send(pair.in_addr, Request::new("GET", "/token_service/api").header("x-fp", "v=1;c=x"));
    std::thread::sleep(Duration::from_millis(200));
    for log in [pair.inbound.log(), pair.outbound.log()] {
        assert!(log.len() > 1000, "trace logging is on");
        assert_eq!(leaked(&log), None, "a secret in a trace log");
    }
    for addr in [pair.in_admin, pair.out_admin] {
        assert_eq!(leaked(&admin(addr, "/config").text()), None, "a secret in /config");
    }
    // Config errors on the very line of a secret, and a mistyped secret.
    let dir = std::env::temp_dir().join(format!("fastproxy-check-leak-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let demo = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../conf/fastproxy.yaml")).unwrap();
    let demo = demo.replace("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f", ROOM_V2);
    let line = format!("secret: \"{ROOM_V2}\" }}");
    for (name, broken) in [
        ("extra-field", demo.replace(&line, &format!("secret: \"{ROOM_V2}\", extra: 1 }}"))),
        ("list", demo.replace(&line, &format!("secret: [\"{ROOM_V2}\"] }}"))),
        ("number", demo.replace(&line, "secret: 1234567890123456789012 }")),
        ("bad-hex", demo.replace(&line, &format!("secret: \"{}zz\" }}", &ROOM_V2[..62]))),
    ] {
        assert_ne!(broken, demo, "{name}: the demo config changed shape");
        std::fs::write(dir.join("leak.yaml"), &broken).unwrap();
        let (code, text) = check(&dir.join("leak.yaml"));
        assert_eq!(code, Some(2), "{name}: {text}");
        assert_eq!(leaked(&text), None, "{name}: a secret in a config error:\n{text}");
        assert!(!text.contains("1234567890123456"), "{name}: {text}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn every_config_field_is_documented() {
    let schema = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../config/src/schema.rs")).unwrap();
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/CONFIG.md")).unwrap();
    let mut missing = Vec::new();
    for line in schema.lines() {
        let Some(field) = line.trim().strip_prefix("pub ").and_then(|l| l.split_once(':')).map(|(f, _)| f) else {
            continue;
        };
        if field.contains(' ') || field.contains('(') {
            continue;
        }
        let documented = [format!("`{field}`"), format!(".{field}`"), format!("`{field}.")]
            .iter()
            .any(|form| docs.contains(form.as_str()))
            || docs.contains(&format!("{field}:"));
        if !documented {
            missing.push(field.to_owned());
        }
    }
    assert!(missing.is_empty(), "fields of the schema missing from docs/CONFIG.md: {missing:?}");
    for role in ["## `outbound`", "## `inbound`"] {
        let section = docs.split(role).nth(1).and_then(|s| s.split("\n## ").next()).unwrap();
        assert!(section.contains("`dangerous_passthrough`"), "{role} documents dangerous_passthrough");
    }
}

#[test]
fn check_refuses_a_sign_key_listed_for_two_callers() {
    let dir = std::env::temp_dir().join(format!("fastproxy-check-shared-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let demo = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../conf/fastproxy.yaml")).unwrap();
    // A second caller holding song_service's sign key could sign as song_service.
    let shared = demo.replace(
        "  callers:\n    song_service:\n      require",
        "  callers:\n    other_service: { keys: [sign-v1], allow: [{ service: token_service, path: /x, methods: [GET] }] }\n    song_service:\n      require",
    );
    assert_ne!(shared, demo, "the demo config changed shape");
    std::fs::write(dir.join("shared.yaml"), shared).unwrap();
    let (code, text) = check(&dir.join("shared.yaml"));
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("keys[") && text.contains("\"sign-v1\" is also listed for caller"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn check_reports_every_mistake_with_its_path() {
    let dir = std::env::temp_dir().join(format!("fastproxy-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let demo = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../conf/fastproxy.yaml")).unwrap();
    let broken = demo
        .replace("listen: [\"127.0.0.1:8034\"]", "listen: [\"127.0.0.1:80341\"]")
        .replace("codec: none", "codec: lzma")
        .replace("{ upstream: token-local }", "{ upstream: token-locl }");
    std::fs::write(dir.join("broken.yaml"), broken).unwrap();
    let (code, text) = check(&dir.join("broken.yaml"));
    assert_eq!(code, Some(2), "{text}");
    for path in ["outbound.listen[0]", "outbound.callers.song_service.codec", "inbound.services.token_service.upstream"]
    {
        assert!(text.contains(&format!("{path}:")), "{path} missing in:\n{text}");
    }
    assert!(text.contains("3 problem(s)"), "{text}");
    // A schema mistake names its field path too.
    std::fs::write(
        dir.join("typo.yaml"),
        demo.replace("max_skew", "max_skw")
            .replace("listen: [\"127.0.0.1:8033\"]", "listen: [\"127.0.0.1:8033\"]\n  max_skw: 5s"),
    )
    .unwrap();
    let (code, text) = check(&dir.join("typo.yaml"));
    assert_eq!(code, Some(2));
    assert!(text.contains("inbound.max_skw") || text.contains("inbound:"), "{text}");
    assert!(text.contains("unknown field `max_skw`"), "{text}");
    // Secrets are not echoed when they are wrong.
    std::fs::write(
        dir.join("secret.yaml"),
        demo.replace("404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f", "4041424344454647zz"),
    )
    .unwrap();
    let (_, text) = check(&dir.join("secret.yaml"));
    assert!(text.contains("keys.hmac.sign-v1.secret"), "{text}");
    assert!(!text.contains("4041424344454647"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sigterm_lets_in_flight_requests_finish() {
    let callee = Upstream::start();
    let (port, admin_port) = (proxy::free_port(), proxy::free_port());
    let demo = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../conf/fastproxy.yaml")).unwrap();
    let in_port = proxy::free_port();
    let config = demo
        .replace("127.0.0.1:8034", &format!("127.0.0.1:{port}"))
        .replace("127.0.0.1:8033", &format!("127.0.0.1:{in_port}"))
        .replace("127.0.0.1:8101", &callee.addr.to_string())
        .replace("127.0.0.1:9034", &format!("127.0.0.1:{admin_port}"));
    let grace = 3;
    let mut p = Proxy::start_with_grace(&config, &[port, in_port], grace);
    let out = proxy::addr(port);
    let threads: Vec<_> = (0..5)
        .map(|_| {
            std::thread::spawn(move || {
                send(
                    out,
                    Request::new("GET", "/token_service/slow")
                        .header("x-fp-caller", "song_service")
                        .header("x-test-delay-ms", "1000"),
                )
                .map(|r| r.status)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    p.signal("TERM");
    let statuses: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let exited = p.wait_exit(Duration::from_secs(u64::from(grace) + 4)).expect("did not exit in time");
    eprintln!("SIGTERM: in-flight {statuses:?}; exited {exited:?} after the signal (grace {grace} s)");
    assert!(statuses.iter().all(|s| matches!(s, Ok(200))), "{statuses:?}");
    assert!(exited <= Duration::from_secs(u64::from(grace) + 2), "{exited:?}");
}

#[test]
fn an_upgrade_under_load_loses_no_request() {
    let pair = Pair::start(Options::default());
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let out = pair.out_addr;
    // Eight keep-alive connections, half GET, half POST, that never send a
    // request twice: every request without a complete response is a failure.
    let load: Vec<_> = (0..8)
        .map(|i| {
            let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
            std::thread::spawn(move || {
                let who = caller("aes", "none");
                let mut client = KeepAlive::new(out);
                while !stop.load(Ordering::SeqCst) {
                    let (method, body) = if i % 2 == 0 { ("GET", &b""[..]) } else { ("POST", &[b'x'; 3000][..]) };
                    match client.request(method, "/token_service/item", &[("x-fp-caller", &who)], body) {
                        Ok(200) => ok.fetch_add(1, Ordering::SeqCst),
                        other => {
                            eprintln!("upgrade: {method} failed at {:?}: {other:?}", t0.elapsed());
                            failed.fetch_add(1, Ordering::SeqCst)
                        }
                    };
                    std::thread::sleep(Duration::from_millis(2));
                }
                client.connects
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut timings = Vec::new();
    let mut successors = Vec::new();
    for (name, old) in [("inbound", &pair.inbound), ("outbound", &pair.outbound)] {
        let before = ok.load(Ordering::SeqCst);
        let new = old.start_upgrade();
        std::thread::sleep(Duration::from_millis(500));
        let t = Instant::now();
        eprintln!("upgrade: SIGQUIT to the old {name} at {:?}", t0.elapsed());
        old.signal("QUIT");
        // The old one hands its listeners over, drains, and exits.
        let pid = old.pid();
        while std::path::Path::new(&format!("/proc/{pid}/stat")).exists()
            && !std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default().contains(") Z ")
        {
            assert!(t.elapsed() < Duration::from_secs(15), "old {name} did not exit");
            std::thread::sleep(Duration::from_millis(50));
        }
        timings.push((name, t.elapsed(), ok.load(Ordering::SeqCst) - before));
        assert!(new.log().contains("Starting service") || !new.log().is_empty(), "new {name} log: {}", new.log());
        // The new instance serves from now on; it is stopped at the end.
        successors.push(new);
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    let connects: usize = load.into_iter().map(|t| t.join().unwrap()).sum();
    let (ok, failed) = (ok.load(Ordering::SeqCst), failed.load(Ordering::SeqCst));
    eprintln!("upgrade under load: {ok} ok, {failed} failed, {connects} connections opened; {timings:?}");
    assert!(ok > 100, "the load ran ({ok})");
    if failed > 0 {
        for (name, log) in [("old in", pair.inbound.log()), ("old out", pair.outbound.log())] {
            for l in log.lines().filter(|l| l.contains("ERROR") || l.contains("WARN") || l.contains("error=")) {
                eprintln!("{name}: {l}");
            }
        }
        for (i, s) in successors.iter().enumerate() {
            for l in s.log().lines().filter(|l| l.contains("ERROR") || l.contains("WARN") || l.contains("error=")) {
                eprintln!("new {i}: {l}");
            }
        }
    }
    assert_eq!(failed, 0, "requests failed during the upgrades");
}

#[test]
fn check_shows_the_values_set_from_the_environment() {
    let conf = concat!(env!("CARGO_MANIFEST_DIR"), "/../conf/fastproxy.yaml");
    let run = |vars: &[(&str, &str)]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_fastproxy"))
            .args(["check", "-f", conf])
            .envs(vars.iter().copied())
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
    };
    let secret = "0f0e0d0c0b0a09080706050403020100f0e0d0c0b0a090807060504030201000";
    let (code, text) = run(&[
        ("FASTPROXY__OUTBOUND__CALLERS__song_service__CODEC", "snappy"),
        ("FASTPROXY__OUTBOUND__IDLE_TIMEOUT", "30s"),
        ("FASTPROXY__KEYS__AEAD__room-v2__SECRET", secret),
    ]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("outbound.callers.song_service.codec = snappy  (from the environment: FASTPROXY__OUTBOUND__CALLERS__song_service__CODEC)"),
        "{text}"
    );
    assert!(text.contains("outbound.idle_timeout = 30s"), "{text}");
    assert!(text.contains("keys.aead.room-v2.secret = <redacted>") && !text.contains(secret), "{text}");
    assert!(text.contains("3 value(s) from the environment"), "{text}");
    // An override is checked like the file: a wrong value or field is named.
    let (code, text) = run(&[("FASTPROXY__OUTBOUND__CALLERS__song_service__CODEC", "lzma")]);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("outbound.callers.song_service.codec"), "{text}");
    let (code, text) = run(&[("FASTPROXY__OUTBOUND__IDLE_TIMEUOT", "30s")]);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("idle_timeuot") && text.contains("unknown field"), "{text}");
}
