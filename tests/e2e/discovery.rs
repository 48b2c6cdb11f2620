//! Service discovery with real registries: one conformance suite run
//! against the built-in center and a real etcd, then the wiring through
//! real proxies (inbound proxies register, the outbound proxy's pool
//! follows): joining, leaving (SIGTERM and kill -9), the registry down or
//! restarted under load, a cold start from the cache file.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fastproxy::config::registry::{Registry as Settings, RegistryKind, CENTER_KEY_LABEL};
use fastproxy::discovery::{self, Error, Instance, Listing, Registry};

use crate::harness::client::{send, Body, Request};
use crate::harness::config::{caller, center_key, inbound_yaml, outbound_yaml, sign_secret, Options};
use crate::harness::load::Load;
use crate::harness::proxy::{self, admin_config, Proxy};
use crate::harness::registry::{Center, Etcd};
use crate::harness::upstream::Upstream;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

fn center_client(center: SocketAddr, node: &str) -> Arc<dyn Registry> {
    let mut secret = [0u8; 32];
    assert!(filters::hex::decode_into(&sign_secret(node), &mut secret));
    let key =
        filters::SignKey::new(&center_key(node), &secret).expect("key").purpose_key(CENTER_KEY_LABEL).expect("derive");
    discovery::connect(&Settings {
        name: "reg".into(),
        kind: RegistryKind::Center {
            authority: center.to_string(),
            node: node.into(),
            key: Arc::new(key),
            key_id: center_key(node),
        },
        timeout: Duration::from_secs(2),
        cache: None,
    })
}

fn etcd_client(etcd: SocketAddr) -> Arc<dyn Registry> {
    discovery::connect(&Settings {
        name: "reg".into(),
        kind: RegistryKind::Etcd { authority: etcd.to_string(), prefix: "/fastproxy-test/".into() },
        timeout: Duration::from_secs(2),
        cache: None,
    })
}

fn instance(id: &str, port: u16) -> Instance {
    Instance {
        id: id.into(),
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        weight: 1,
        metadata: [("zone".to_owned(), "a".to_owned())].into(),
    }
}

fn ids(l: &Listing) -> Vec<&str> {
    l.instances.iter().map(|i| i.id.as_str()).collect()
}

/// The conformance suite: what every registry engine must do.
/// `restart` stops the registry and starts it again on the same data.
fn conformance(client: Arc<dyn Registry>, restart: &mut dyn FnMut()) {
    let rt = runtime();
    let svc = "conformance";
    let ttl = Duration::from_secs(2);
    rt.block_on(async {
        let empty = client.list(svc).await.expect("list");
        assert!(empty.instances.is_empty(), "a new registry lists nothing: {empty:?}");
        let mut watch = client.watch(svc, empty).await.expect("watch");

        // register → the watch sees it well under a second after.
        let t = Instant::now();
        let a = client.register(svc, &instance("a", 1001), ttl).await.expect("register a");
        let seen =
            tokio::time::timeout(Duration::from_secs(2), watch.next()).await.expect("watch in time").expect("watch");
        let latency = t.elapsed();
        assert_eq!(ids(&seen), ["a"]);
        assert_eq!(seen.instances[0].metadata["zone"], "a");
        assert!(latency < Duration::from_millis(900), "a registration reached the watch after {latency:?}");
        eprintln!("registration seen by the watch after {latency:?}");

        let b = client.register(svc, &instance("b", 1002), ttl).await.expect("register b");
        let seen = tokio::time::timeout(Duration::from_secs(2), watch.next()).await.expect("in time").expect("watch");
        assert_eq!(ids(&seen), ["a", "b"]);
        assert_eq!(ids(&client.list(svc).await.expect("list")), ["a", "b"]);

        // deregister → gone.
        client.deregister(&b).await.expect("deregister b");
        let seen = tokio::time::timeout(Duration::from_secs(2), watch.next()).await.expect("in time").expect("watch");
        assert_eq!(ids(&seen), ["a"]);

        // keepalive holds a lease past its TTL…
        for _ in 0..6 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            client.keepalive(&a).await.expect("keepalive");
        }
        assert_eq!(ids(&client.list(svc).await.expect("list")), ["a"], "kept alive past its TTL");
        // …and without it the lease expires and the watch sees it go.
        let t = Instant::now();
        let seen =
            tokio::time::timeout(Duration::from_secs(6), watch.next()).await.expect("expiry in time").expect("watch");
        assert!(seen.instances.is_empty(), "{seen:?}");
        eprintln!("lease of {ttl:?} expired after {:?} without keepalive", t.elapsed());
        assert_eq!(client.keepalive(&a).await, Err(Error::LeaseGone));
    });

    // A restart keeps registrations, and their leases resume.
    let c = rt.block_on(client.register(svc, &instance("c", 1003), Duration::from_secs(10))).expect("register c");
    restart();
    rt.block_on(async {
        let listing = client.list(svc).await.expect("list after the restart");
        assert_eq!(ids(&listing), ["c"], "registrations survive a restart");
        client.keepalive(&c).await.expect("the lease resumed after the restart");
        let mut watch = client.watch(svc, listing).await.expect("watch after the restart");
        client.register(svc, &instance("d", 1004), ttl).await.expect("register d");
        let seen = tokio::time::timeout(Duration::from_secs(2), watch.next()).await.expect("in time").expect("watch");
        assert_eq!(ids(&seen), ["c", "d"]);
        client.deregister(&c).await.expect("deregister c");
    });
}

#[test]
fn the_center_passes_the_conformance_suite() {
    let mut center = Center::start();
    let client = center_client(center.addr, "inbound-node");
    let addr = center.addr;
    conformance(client, &mut || center.restart());
    assert!(std::fs::metadata(&center.state_file).is_ok_and(|m| m.len() > 0), "state kept on disk");
    let _ = addr;
}

#[test]
fn etcd_passes_the_conformance_suite() {
    let mut etcd = Etcd::start();
    let client = etcd_client(etcd.addr);
    conformance(client, &mut || etcd.restart());
}

#[test]
fn the_center_authenticates_every_request_and_allows_only_a_clients_own_services() {
    let center = Center::start();
    let rt = runtime();
    // No credentials.
    let plain = send(center.addr, Request::new("GET", "/v1/services/conformance")).expect("answer");
    assert_eq!(plain.status, 401, "{}", plain.text());
    assert!(plain.text().contains("unauthenticated"));
    rt.block_on(async {
        // A key the center does not know for the node.
        let mut forged = [0u8; 32];
        forged[0] = 1;
        let key = filters::SignKey::new("forged", &forged).expect("key").purpose_key(CENTER_KEY_LABEL).expect("derive");
        let intruder = discovery::connect(&Settings {
            name: "reg".into(),
            kind: RegistryKind::Center {
                authority: center.addr.to_string(),
                node: "inbound-node".into(),
                key: Arc::new(key),
                key_id: "forged".into(),
            },
            timeout: Duration::from_secs(2),
            cache: None,
        });
        let refused = intruder.register("token_service", &instance("x", 2000), Duration::from_secs(5)).await;
        assert!(matches!(refused, Err(Error::Unreachable(ref m)) if m.contains("401")), "{refused:?}");

        // A reader may not register; a node may register only its services.
        let reader = center_client(center.addr, "outbound-node");
        let refused = reader.register("token_service", &instance("x", 2000), Duration::from_secs(5)).await;
        assert!(matches!(refused, Err(Error::Refused { status: 403, .. })), "{refused:?}");
        let other = center_client(center.addr, "other-node");
        let refused = other.register("token_service", &instance("x", 2000), Duration::from_secs(5)).await;
        assert!(matches!(refused, Err(Error::Refused { status: 403, .. })), "{refused:?}");
        other.register("other", &instance("y", 2001), Duration::from_secs(5)).await.expect("its own service");

        // Nobody ends another client's lease.
        let owner = center_client(center.addr, "inbound-node");
        let lease = owner.register("token_service", &instance("z", 2002), Duration::from_secs(5)).await.expect("own");
        let refused = other.deregister(&lease).await;
        assert!(matches!(refused, Err(Error::Refused { status: 403, .. })), "{refused:?}");
        assert_eq!(ids(&reader.list("token_service").await.expect("list")), ["z"]);
    });
    let metrics = send(center.admin, Request::new("GET", "/metrics")).expect("metrics").text();
    for line in [
        "fastproxy_center_requests_total{result=\"unauthenticated\"} 2",
        "fastproxy_center_requests_total{result=\"forbidden\"} 3",
    ] {
        assert!(metrics.contains(line), "{line} in:\n{metrics}");
    }
}

/// One inbound proxy with its own callee, registering `token_service`.
struct Member {
    proxy: Proxy,
    callee: Upstream,
    addr: SocketAddr,
}

fn start_inbound(registries: &str, ttl: &str) -> Member {
    let callee = Upstream::start();
    let (port, admin) = (proxy::free_port(), proxy::free_port());
    let opts = Options {
        registries: registries.to_owned(),
        register: Some(format!(
            "{{ registry: reg, advertise: \"127.0.0.1:{port}\", ttl: {ttl}, deregister_delay: 1s }}"
        )),
        ..Options::default()
    };
    let yaml = inbound_yaml(port, admin, &format!("\"{}\"", callee.addr), &opts);
    let proxy = Proxy::start(&yaml, &[port, admin]);
    Member { proxy, callee, addr: proxy::addr(port) }
}

struct Outbound {
    _proxy: Proxy,
    addr: SocketAddr,
    admin: SocketAddr,
}

fn start_outbound(registries: &str) -> Outbound {
    let (port, admin) = (proxy::free_port(), proxy::free_port());
    let opts = Options {
        registries: registries.to_owned(),
        outbound_discovery: Some("{ registry: reg, service: token_service }".to_owned()),
        ..Options::default()
    };
    let yaml = outbound_yaml(port, admin, proxy::addr(1), &opts);
    let proxy = Proxy::start(&yaml, &[port, admin]);
    Outbound { _proxy: proxy, addr: proxy::addr(port), admin: proxy::addr(admin) }
}

fn members(out: &Outbound) -> usize {
    let view = admin_config(out.admin);
    view["discovery"]["reg"]["token_service"]["members"].as_array().map_or(0, Vec::len)
}

fn wait_members(out: &Outbound, n: usize, within: Duration) -> Duration {
    let t = Instant::now();
    while members(out) != n {
        assert!(
            t.elapsed() < within,
            "the outbound proxy did not see {n} member(s) within {within:?}: {}",
            admin_config(out.admin)["discovery"]
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    t.elapsed()
}

fn get(out: &Outbound) -> u16 {
    let who = caller("aes", "none");
    send(out.addr, Request::new("GET", "/token_service/x").header("x-fp-caller", &who)).map_or(0, |r| r.status)
}

#[test]
fn a_new_inbound_instance_gets_traffic_within_two_seconds_of_starting() {
    let center = Center::start();
    let first = start_inbound(&center.registries_yaml("inbound-node", None), "2s");
    let out = start_outbound(&center.registries_yaml("outbound-node", None));
    wait_members(&out, 1, Duration::from_secs(5));
    assert_eq!(get(&out), 200);
    let started = Instant::now();
    let second = start_inbound(&center.registries_yaml("inbound-node", None), "2s");
    while second.callee.arrivals() == 0 {
        assert!(started.elapsed() < Duration::from_secs(2), "no traffic to the new instance within 2 s");
        assert_eq!(get(&out), 200);
    }
    eprintln!("the new instance got its first request {:?} after its process started", started.elapsed());
    assert!(first.callee.arrivals() > 0);
    let view = admin_config(out.admin);
    assert_eq!(view["discovery"]["reg"]["token_service"]["from"], "registry");
    assert!(view["discovery"]["reg"]["token_service"]["revision"].as_u64().is_some_and(|r| r > 0));
    let metrics = send(out.admin, Request::new("GET", "/metrics")).expect("metrics").text();
    assert!(metrics.contains("fastproxy_discovery_members{registry=\"reg\",service=\"token_service\"} 2"), "{metrics}");
    let _ = second.addr;
}

/// Three instances under load; one leaves by SIGTERM (0 failed), another
/// by kill -9 (≤ 0.5 % failed, none once its lease expired).
fn leaving(registries_in: &str, registries_out: &str) {
    let ttl = Duration::from_secs(2);
    let mut fleet: Vec<Member> = (0..3).map(|_| start_inbound(registries_in, "2s")).collect();
    let out = start_outbound(registries_out);
    wait_members(&out, 3, Duration::from_secs(5));
    let load = Load::start(out.addr, 8, &caller("aes", "none"), &[200]);
    std::thread::sleep(Duration::from_secs(2));

    let before = load.sent.load(std::sync::atomic::Ordering::Relaxed);
    fleet[0].proxy.signal("TERM");
    assert!(fleet[0].proxy.wait_exit(Duration::from_secs(15)).is_some(), "the stopped instance exited");
    wait_members(&out, 2, Duration::from_secs(1));
    std::thread::sleep(Duration::from_secs(1));
    let failed_term = load.failures.lock().unwrap().clone();
    let sent_term = load.sent.load(std::sync::atomic::Ordering::Relaxed) - before;
    assert!(failed_term.is_empty(), "SIGTERM of an instance failed requests: {failed_term:?}");
    eprintln!("SIGTERM: {sent_term} requests around it, 0 failed");

    let before = load.sent.load(std::sync::atomic::Ordering::Relaxed);
    fleet[1].proxy.signal("KILL");
    fleet[1].proxy.wait_exit(Duration::from_secs(5));
    wait_members(&out, 1, ttl + Duration::from_secs(3));
    std::thread::sleep(Duration::from_millis(500));
    let failed_kill = load.failures.lock().unwrap().len();
    let sent_kill = load.sent.load(std::sync::atomic::Ordering::Relaxed) - before;
    std::thread::sleep(Duration::from_secs(2));
    let (sent, _, failures) = load.finish();
    let after_ttl = failures.len() - failed_kill;
    eprintln!("kill -9: {failed_kill} failed of {sent_kill} until its lease expired, {after_ttl} after; {sent} requests in all");
    assert!(failed_kill * 200 <= sent_kill, "kill -9 failed {failed_kill} of {sent_kill} (> 0.5 %): {failures:?}");
    assert_eq!(after_ttl, 0, "failures after the lease expired: {failures:?}");
    assert!(fleet[2].callee.arrivals() > 0);
    fleet.truncate(3);
}

#[test]
fn instances_leave_under_load_through_the_center() {
    let center = Center::start();
    leaving(&center.registries_yaml("inbound-node", None), &center.registries_yaml("outbound-node", None));
}

#[test]
fn instances_leave_under_load_through_etcd() {
    let etcd = Etcd::start();
    leaving(&etcd.registries_yaml(None), &etcd.registries_yaml(None));
}

#[test]
fn the_center_down_for_ten_seconds_under_load_fails_no_request_and_a_cold_start_uses_the_cache() {
    let mut center = Center::start();
    let cache =
        std::env::temp_dir().join(format!("fastproxy-cache-{}-{}.json", std::process::id(), center.addr.port()));
    let cache = cache.display().to_string();
    let _fleet: Vec<Member> =
        (0..2).map(|_| start_inbound(&center.registries_yaml("inbound-node", None), "2s")).collect();
    let out = start_outbound(&center.registries_yaml("outbound-node", Some(&cache)));
    wait_members(&out, 2, Duration::from_secs(5));
    let load = Load::start(out.addr, 8, &caller("aes", "none"), &[200]);
    std::thread::sleep(Duration::from_secs(1));
    center.kill();
    std::thread::sleep(Duration::from_secs(10));
    let view = admin_config(out.admin);
    assert!(!view["discovery"]["reg"]["token_service"]["last_error"].is_null(), "the error shows: {view}");
    assert_eq!(members(&out), 2, "the last known members keep serving");
    center.restart();
    std::thread::sleep(Duration::from_secs(3));
    let (sent, _, failures) = load.finish();
    eprintln!("center down 10 s: {sent} requests, {} failed", failures.len());
    assert!(failures.is_empty(), "{failures:?}");
    assert!(admin_config(out.admin)["discovery"]["reg"]["token_service"]["last_error"].is_null(), "recovered");

    // Cold start with the center down: the cache serves.
    drop(out);
    center.kill();
    let out = start_outbound(&center.registries_yaml("outbound-node", Some(&cache)));
    assert_eq!(members(&out), 2);
    assert_eq!(admin_config(out.admin)["discovery"]["reg"]["token_service"]["from"], "cache");
    assert_eq!(get(&out), 200, "served from the cached members");
    let _ = std::fs::remove_file(&cache);
}

#[test]
fn proxies_recover_when_etcd_restarts_under_load() {
    let mut etcd = Etcd::start();
    let regs = etcd.registries_yaml(None);
    let _first = start_inbound(&regs, "3s");
    let out = start_outbound(&regs);
    wait_members(&out, 1, Duration::from_secs(5));
    let load = Load::start(out.addr, 8, &caller("aes", "none"), &[200]);
    std::thread::sleep(Duration::from_secs(1));
    etcd.kill();
    std::thread::sleep(Duration::from_secs(2));
    etcd.restart();
    // A new instance registered after the restart reaches the outbound
    // proxy's pool: both proxies recovered on their own.
    let second = start_inbound(&regs, "3s");
    let took = wait_members(&out, 2, Duration::from_secs(10));
    let t = Instant::now();
    while second.callee.arrivals() == 0 {
        assert!(t.elapsed() < Duration::from_secs(3), "no traffic to the instance registered after the restart");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (sent, _, failures) = load.finish();
    eprintln!("etcd restart: new member seen after {took:?}; {sent} requests, {} failed", failures.len());
    assert!(failures.is_empty(), "{failures:?}");
}

#[test]
fn an_upgrade_hands_the_registration_over_without_a_gap() {
    let center = Center::start();
    let mut inbound = start_inbound(&center.registries_yaml("inbound-node", None), "2s");
    let out = start_outbound(&center.registries_yaml("outbound-node", None));
    wait_members(&out, 1, Duration::from_secs(5));
    let load = Load::start(out.addr, 4, &caller("aes", "none"), &[200]);
    let new = inbound.proxy.start_upgrade();
    std::thread::sleep(Duration::from_millis(500));
    inbound.proxy.signal("QUIT");
    let t = Instant::now();
    // Until the old process is gone and a whole TTL after it, the instance
    // stays listed: the new process took the registration over.
    let mut gone_at = None;
    while gone_at.is_none_or(|g: Duration| t.elapsed() < g + Duration::from_secs(3)) {
        assert_eq!(members(&out), 1, "the instance left the pool {:?} after SIGQUIT", t.elapsed());
        if gone_at.is_none() && inbound.proxy.exited() {
            gone_at = Some(t.elapsed());
        }
        assert!(t.elapsed() < Duration::from_secs(20), "the old process did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (sent, _, failures) = load.finish();
    eprintln!("upgrade: old process gone {:?} after SIGQUIT; {sent} requests, {} failed", gone_at, failures.len());
    assert!(failures.is_empty(), "{failures:?}");
    assert!(new.log().contains("registered token_service"), "the new process registered");
}

#[test]
fn a_discovered_pool_without_members_refuses_cleanly_until_the_registry_answers() {
    // The outbound proxy starts before its registry, with no cache.
    let port = proxy::free_port();
    let regs = format!(
        "registries:\n  reg: {{ center: \"http://127.0.0.1:{port}\", node: outbound-node, key: {}, timeout: 1s }}\n",
        center_key("outbound-node")
    );
    let out = start_outbound(&regs);
    let who = caller("aes", "none");
    let refused = send(out.addr, Request::new("GET", "/token_service/x").header("x-fp-caller", &who)).expect("answer");
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert!(refused.text().contains("no_healthy_upstream"), "{}", refused.text());
    assert!(!admin_config(out.admin)["discovery"]["reg"]["token_service"]["last_error"].is_null());
    // The registry comes up and an instance registers: the pool fills.
    let center = Center::start_on(port);
    let _member = start_inbound(&center.registries_yaml("inbound-node", None), "2s");
    let took = wait_members(&out, 1, Duration::from_secs(8));
    eprintln!("members arrived {took:?} after the instance started");
    assert_eq!(get(&out), 200);
}

#[test]
fn an_etcd_watch_behind_a_compaction_lists_again_and_reports_the_difference() {
    let etcd = Etcd::start();
    let client = etcd_client(etcd.addr);
    let rt = runtime();
    rt.block_on(async {
        let before = client.list("compacted").await.expect("list");
        let lease =
            client.register("compacted", &instance("a", 3001), Duration::from_secs(10)).await.expect("register");
        client.register("compacted", &instance("b", 3002), Duration::from_secs(10)).await.expect("register");
        client.deregister(&lease).await.expect("deregister");
        let now = client.list("compacted").await.expect("list");
        assert_eq!(ids(&now), ["b"]);
        // Compact everything up to now: a watch from `before` cannot replay the events.
        let compact = format!("{{\"revision\":\"{}\",\"physical\":true}}", now.revision);
        let r = send(
            etcd.addr,
            Request::new("POST", "/v3/kv/compaction").body(crate::harness::client::Body::Bytes(compact.into_bytes())),
        )
        .expect("compaction");
        assert_eq!(r.status, 200, "{}", r.text());
        let mut watch = client.watch("compacted", before).await.expect("watch from a compacted revision");
        let seen =
            tokio::time::timeout(Duration::from_secs(3), watch.next()).await.expect("in time").expect("listed again");
        assert_eq!(ids(&seen), ["b"], "the difference since the old listing");
        // And it follows on from there.
        client.register("compacted", &instance("c", 3003), Duration::from_secs(10)).await.expect("register");
        let seen = tokio::time::timeout(Duration::from_secs(3), watch.next()).await.expect("in time").expect("watch");
        assert_eq!(ids(&seen), ["b", "c"]);
    });
}

#[test]
fn the_center_answers_malformed_input_with_json_errors_and_stays_up() {
    let center = Center::start();
    let big = vec![b'x'; 2 << 20];
    let cases: Vec<(Request, u16, &str)> = vec![
        (Request::new("GET", "/v1/services/a").header("authorization", "FP-Center nonsense"), 401, "unauthenticated"),
        (
            Request::new("GET", "/v1/services/a").header(
                "authorization",
                &format!("FP-Center node=inbound-node,t=1,n={},sig={}", "0".repeat(32), "0".repeat(64)),
            ),
            401,
            "unauthenticated",
        ),
        (Request::new("GET", "/nowhere"), 401, "unauthenticated"),
    ];
    // Unauthenticated: refused before the body is read (the client may find
    // the connection closed while it still sends).
    match send(center.addr, Request::new("PUT", "/v1/services/a/instances/b").body(Body::Bytes(big.clone()))) {
        Ok(r) => assert_eq!(r.status, 401, "{}", r.text()),
        Err(e) => {
            assert!(matches!(e.kind(), std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset), "{e}")
        }
    }
    for (req, status, code) in cases {
        let r = send(center.addr, req).expect("an answer");
        assert_eq!(r.status, status, "{}", r.text());
        let body: serde_json::Value = serde_json::from_str(&r.text()).expect("JSON");
        assert_eq!(body["error"]["code"], code, "{body}");
    }
    // Authenticated but malformed: bad JSON, unknown fields, bad address,
    // weight and TTL out of range, a bad id, an unknown path.
    let rt = runtime();
    let client = center_client(center.addr, "inbound-node");
    let mut secret = [0u8; 32];
    assert!(filters::hex::decode_into(&sign_secret("inbound-node"), &mut secret));
    let key = filters::SignKey::new(&center_key("inbound-node"), &secret)
        .expect("key")
        .purpose_key(CENTER_KEY_LABEL)
        .expect("derive");
    let raw = fastproxy::discovery::center_client::CenterClient::new(
        center.addr.to_string(),
        "inbound-node".into(),
        Arc::new(key),
        Duration::from_secs(2),
    );
    let bodies: [(&str, &str, &str); 7] = [
        ("PUT", "/v1/services/conformance/instances/a", "{"),
        ("PUT", "/v1/services/conformance/instances/a", r#"{"addr":"127.0.0.1:1","ttl_ms":5000,"evil":1}"#),
        ("PUT", "/v1/services/conformance/instances/a", r#"{"addr":"nowhere","ttl_ms":5000}"#),
        ("PUT", "/v1/services/conformance/instances/a", r#"{"addr":"127.0.0.1:1","weight":0,"ttl_ms":5000}"#),
        ("PUT", "/v1/services/conformance/instances/a", r#"{"addr":"127.0.0.1:1","ttl_ms":99999999}"#),
        ("PUT", "/v1/services/conformance/instances/a%2Fb", r#"{"addr":"127.0.0.1:1","ttl_ms":5000}"#),
        ("GET", "/v1/services/conformance?index=x", ""),
    ];
    rt.block_on(async {
        for (method, target, body) in bodies {
            let reply =
                raw.call(method, target, body.as_bytes(), Duration::from_secs(2)).await.expect("a signed answer");
            assert_eq!(reply.status, 400, "{method} {target} {body}: {}", String::from_utf8_lossy(&reply.body));
        }
        let reply = raw.call("DELETE", "/v1/services", b"", Duration::from_secs(2)).await.expect("answer");
        assert_eq!(reply.status, 405);
        // Authenticated: a registration over 64 KiB, a config over 1 MiB.
        // (A 2 MiB body may meet a closed connection before it reads the 413.)
        for (target, size) in [("/v1/services/conformance/instances/a", 70_000), ("/v1/config/song", 2 << 20)] {
            let err = raw.call("PUT", target, &big[..size], Duration::from_secs(5)).await;
            assert!(matches!(&err, Err(fastproxy::discovery::Error::Unreachable(_))), "{target}: {err:?}");
            if size < 100_000 {
                assert!(format!("{err:?}").contains("413"), "{err:?}");
            }
        }
        assert!(client.list("conformance").await.expect("still serving").instances.is_empty());
    });
    let health = send(center.addr, Request::new("GET", "/healthz")).expect("alive");
    assert_eq!(health.status, 200);
}
