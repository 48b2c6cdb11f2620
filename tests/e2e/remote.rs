//! Remote config with real sources: a real etcd, the real center, and a
//! local server speaking Apollo's client protocol. Outbound proxies start
//! from a small local file (listeners, admin, where the remote is) and take
//! the rest from the source: a change reaches every proxy, an invalid one
//! is refused everywhere with traffic unaffected, the source down under
//! load fails nothing, and a cold start with the source down serves from
//! the cache.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

use crate::harness::apollo::{self, ApolloServer};
use crate::harness::client::{send, Body, Request};
use crate::harness::config::{caller, center_key, inbound_yaml, sign_key, sign_secret, Options, ROOM_V2};
use crate::harness::load::Load;
use crate::harness::proxy::{self, admin_config, Proxy};
use crate::harness::registry::{Center, Etcd};
use crate::harness::upstream::Upstream;

/// A static inbound proxy in front of a callee, and the key files the
/// remote config names.
struct Callee {
    _inbound: Proxy,
    _callee: Upstream,
    addr: SocketAddr,
    keys: PathBuf,
}

fn callee() -> Callee {
    let upstream = Upstream::start();
    let (port, admin) = (proxy::free_port(), proxy::free_port());
    let yaml = inbound_yaml(port, admin, &format!("\"{}\"", upstream.addr), &Options::default());
    let inbound = Proxy::start(&yaml, &[port, admin]);
    let keys = std::env::temp_dir().join(format!("fastproxy-remote-keys-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&keys).expect("key dir");
    std::fs::write(keys.join("room-v2"), ROOM_V2).expect("key");
    std::fs::write(keys.join("sign"), sign_secret(&caller("aes", "none"))).expect("key");
    Callee { _inbound: inbound, _callee: upstream, addr: proxy::addr(port), keys }
}

impl Drop for Callee {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.keys);
    }
}

/// The remote layer of an outbound proxy calling `c`, its route timeout
/// `timeout` (what the tests change).
fn remote_config(c: &Callee, timeout: &str) -> String {
    let who = caller("aes", "none");
    format!(
        "keys:\n  aead:\n    room-v2: {{ alg: aes-256-gcm, secret: \"file:{0}/room-v2\" }}\n  hmac:\n    {1}: {{ secret: \"file:{0}/sign\" }}\noutbound:\n  callers:\n    {who}: {{ aead_key: room-v2, sign_key: {1} }}\n  routes:\n    token_service: {{ upstream: inbound, timeout: {timeout} }}\nupstreams:\n  inbound: {{ backends: [\"{2}\"] }}\n",
        c.keys.display(),
        sign_key(&who),
        c.addr
    )
}

/// An outbound proxy started from a local file that names its remote.
struct Outbound {
    proxy: Proxy,
    addr: SocketAddr,
    admin: SocketAddr,
}

fn outbound(local_extra: &str) -> Outbound {
    let (port, admin) = (proxy::free_port(), proxy::free_port());
    let yaml = format!(
        "admin: {{ listen: [\"127.0.0.1:{admin}\"] }}\noutbound:\n  listen: [\"127.0.0.1:{port}\"]\n{local_extra}"
    );
    let proxy = Proxy::start(&yaml, &[port, admin]);
    Outbound { proxy, addr: proxy::addr(port), admin: proxy::addr(admin) }
}

fn route_timeout_ms(o: &Outbound) -> u64 {
    admin_config(o.admin)["outbound"]["routes"]["token_service"]["timeout_ms"].as_u64().unwrap_or(0)
}

fn get(o: &Outbound) -> u16 {
    let who = caller("aes", "none");
    send(o.addr, Request::new("GET", "/token_service/x").header("x-fp-caller", &who)).map_or(0, |r| r.status)
}

/// Waits until every proxy runs route timeout `ms`; how long that took.
fn wait_timeout(fleet: &[&Outbound], ms: u64, within: Duration) -> Duration {
    let t = Instant::now();
    while !fleet.iter().all(|o| route_timeout_ms(o) == ms) {
        assert!(t.elapsed() < within, "not every proxy took the change within {within:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
    t.elapsed()
}

fn etcd_put(etcd: SocketAddr, key: &str, value: &str) {
    let body = serde_json::json!({ "key": B64.encode(key), "value": B64.encode(value) }).to_string();
    let r = send(etcd, Request::new("POST", "/v3/kv/put").body(Body::Bytes(body.into_bytes()))).expect("put");
    assert_eq!(r.status, 200, "{}", r.text());
}

fn temp(name: &str) -> String {
    std::env::temp_dir()
        .join(format!("fastproxy-{name}-{}-{}", std::process::id(), proxy::free_port()))
        .display()
        .to_string()
}

#[test]
fn etcd_config_reaches_three_proxies_refuses_an_invalid_change_and_survives_the_source_going_away() {
    let c = callee();
    let mut etcd = Etcd::start();
    let key = "/fastproxy/config/song.yaml";
    etcd_put(etcd.addr, key, &remote_config(&c, "10s"));
    let cache = temp("remote-cache");
    let etcd_addr = etcd.addr;
    let local = |cache: &str| {
        format!(
            "registries:\n  fleet: {{ etcd: \"http://{etcd_addr}\", timeout: 1s }}\nremote:\n  registry: fleet\n  key: {key}\n  cache: \"{cache}\"\n"
        )
    };
    let caches: Vec<String> = (0..3).map(|i| format!("{cache}-{i}")).collect();
    let fleet: Vec<Outbound> = caches.iter().map(|c| outbound(&local(c))).collect();
    let all: Vec<&Outbound> = fleet.iter().collect();
    wait_timeout(&all, 10_000, Duration::from_secs(5));
    assert_eq!(get(&fleet[0]), 200);
    assert_eq!(admin_config(fleet[0].admin)["remote"]["from"], "source");

    let load = Load::start(fleet[0].addr, 8, &caller("aes", "none"), &[200]);
    // A change reaches all three.
    let mut took = Vec::new();
    for timeout in ["7s", "8s", "9s"] {
        let t = Instant::now();
        etcd_put(etcd.addr, key, &remote_config(&c, timeout));
        wait_timeout(&all, timeout.trim_end_matches('s').parse::<u64>().unwrap() * 1000, Duration::from_secs(2));
        took.push(t.elapsed());
    }
    eprintln!("etcd: a change reached all 3 proxies after {took:?}");

    // An invalid change is refused everywhere; the old config keeps serving.
    let generations: Vec<u64> =
        fleet.iter().map(|o| admin_config(o.admin)["generation"]["number"].as_u64().unwrap()).collect();
    etcd_put(etcd.addr, key, "outbound: { routes: [ }\n");
    let t = Instant::now();
    while !fleet.iter().all(|o| !admin_config(o.admin)["last_reload_error"].is_null()) {
        assert!(t.elapsed() < Duration::from_secs(2), "the invalid change was not refused everywhere");
        std::thread::sleep(Duration::from_millis(10));
    }
    for (o, g) in fleet.iter().zip(&generations) {
        let view = admin_config(o.admin);
        assert_eq!(view["generation"]["number"].as_u64(), Some(*g), "no new generation");
        assert_eq!(view["last_reload_error"]["trigger"], "remote");
        assert_eq!(route_timeout_ms(o), 9_000);
    }
    // An inline secret is refused the same way.
    etcd_put(etcd.addr, key, &remote_config(&c, "6s").replace(&format!("file:{}/room-v2", c.keys.display()), ROOM_V2));
    std::thread::sleep(Duration::from_millis(500));
    let refused = admin_config(fleet[1].admin)["last_reload_error"]["message"].to_string();
    assert!(refused.contains("inline secret"), "{refused}");
    assert!(!refused.contains(&ROOM_V2[..16]), "the secret is not repeated: {refused}");
    assert_eq!(route_timeout_ms(&fleet[1]), 9_000);

    // The source down for 10 s under load: nothing fails.
    etcd_put(etcd.addr, key, &remote_config(&c, "5s"));
    wait_timeout(&all, 5_000, Duration::from_secs(2));
    etcd.kill();
    std::thread::sleep(Duration::from_secs(10));
    assert!(!admin_config(fleet[2].admin)["remote"]["last_error"].is_null(), "the error shows");
    etcd.restart();
    etcd_put(etcd.addr, key, &remote_config(&c, "4s"));
    let back = wait_timeout(&all, 4_000, Duration::from_secs(8));
    let (sent, _, failures) = load.finish();
    eprintln!("etcd down 10 s: {sent} requests, {} failed; a change after its restart took {back:?}", failures.len());
    assert!(failures.is_empty(), "{failures:?}");

    // A cold start with the source down serves from the cache.
    etcd.kill();
    let [a, _, _] = <[Outbound; 3]>::try_from(fleet).ok().expect("three");
    drop(a);
    let cold = outbound(&local(&caches[0]));
    let view = admin_config(cold.admin);
    assert_eq!(view["remote"]["from"], "cache", "{}", view["remote"]);
    assert_eq!(route_timeout_ms(&cold), 4_000);
    assert_eq!(get(&cold), 200);
    for c in caches {
        let _ = std::fs::remove_file(c);
    }
}

#[test]
fn per_section_keys_under_a_prefix_make_one_config() {
    let c = callee();
    let etcd = Etcd::start();
    let tree: serde_json::Value = serde_saphyr::from_str(&remote_config(&c, "3s")).expect("yaml");
    for section in ["keys", "outbound", "upstreams"] {
        etcd_put(etcd.addr, &format!("/fp/song/{section}"), &tree[section].to_string());
    }
    let o = outbound(&format!(
        "registries:\n  fleet: {{ etcd: \"http://{}\" }}\nremote: {{ registry: fleet, prefix: /fp/song/ }}\n",
        etcd.addr
    ));
    assert_eq!(route_timeout_ms(&o), 3_000);
    assert_eq!(get(&o), 200);
    let mut outbound_section = tree["outbound"].clone();
    outbound_section["routes"]["token_service"]["timeout"] = "2s".into();
    etcd_put(etcd.addr, "/fp/song/outbound", &outbound_section.to_string());
    let took = wait_timeout(&[&o], 2_000, Duration::from_secs(2));
    eprintln!("a section changed: applied after {took:?}");
}

#[test]
fn apollo_config_follows_releases_through_long_polls_errors_and_a_cold_start() {
    let c = callee();
    let secret = "0123456789abcdef0123456789abcdef";
    let apollo = ApolloServer::start(&remote_config(&c, "10s"), Duration::from_secs(2), Some(secret));
    let keyfile = temp("apollo-secret");
    std::fs::write(&keyfile, secret).expect("secret");
    let cache = temp("apollo-cache");
    let local = |s: &ApolloServer| s.remote_yaml(Some(&cache), Some(&format!("file:{keyfile}")));
    let fleet: Vec<Outbound> = (0..3).map(|_| outbound(&local(&apollo))).collect();
    let all: Vec<&Outbound> = fleet.iter().collect();
    wait_timeout(&all, 10_000, Duration::from_secs(5));
    let load = Load::start(fleet[0].addr, 8, &caller("aes", "none"), &[200]);
    // Holds end in 304 and are asked again; nothing changes meanwhile.
    std::thread::sleep(Duration::from_millis(2500));
    let t = Instant::now();
    apollo.publish(&remote_config(&c, "7s"));
    wait_timeout(&all, 7_000, Duration::from_secs(2));
    eprintln!("apollo: a release reached all 3 proxies after {:?}", t.elapsed());
    let [_, _, _, n304, refused] = apollo.counts();
    assert!(n304 >= 3, "long polls timed out with 304: {:?}", apollo.counts());
    assert_eq!(refused, 0, "every request was signed: {:?}", apollo.counts());

    // Server errors for 10 s: traffic unaffected, the error shown, then back.
    apollo.set_mode(apollo::Mode::Error);
    std::thread::sleep(Duration::from_secs(10));
    assert!(!admin_config(fleet[1].admin)["remote"]["last_error"].is_null());
    apollo.set_mode(apollo::Mode::Normal);
    apollo.publish(&remote_config(&c, "6s"));
    wait_timeout(&all, 6_000, Duration::from_secs(8));
    // An invalid release is refused everywhere.
    apollo.publish("outbound: 3\n");
    std::thread::sleep(Duration::from_millis(800));
    for o in &fleet {
        assert_eq!(route_timeout_ms(o), 6_000);
        assert!(!admin_config(o.admin)["last_reload_error"].is_null());
    }
    let (sent, _, failures) = load.finish();
    eprintln!("apollo errors for 10 s: {sent} requests, {} failed", failures.len());
    assert!(failures.is_empty(), "{failures:?}");

    // Cold start with Apollo gone: from the cache (the last good release).
    let addr = apollo.addr;
    drop(apollo);
    drop(fleet);
    let gone = format!(
        "remote:\n  apollo: {{ url: \"http://{addr}\", app_id: fastproxy, namespace: fastproxy.yaml, secret: \"file:{keyfile}\" }}\n  cache: \"{cache}\"\n"
    );
    let cold = outbound(&gone);
    assert_eq!(admin_config(cold.admin)["remote"]["from"], "cache");
    assert_eq!(route_timeout_ms(&cold), 6_000);
    assert_eq!(get(&cold), 200);
    let _ = std::fs::remove_file(&cache);
    let _ = std::fs::remove_file(&keyfile);
}

#[test]
fn a_center_serves_config_published_with_fastproxy_publish() {
    let c = callee();
    let center = Center::start();
    let regs = center.registries_yaml("inbound-node", None);
    let center_keys = ["inbound-node", "other-node"]
        .map(|n| format!("    {}: {{ secret: \"{}\" }}\n", center_key(n), sign_secret(n)))
        .concat();
    let local = format!("keys:\n  hmac:\n{center_keys}{regs}remote: {{ registry: reg, key: song }}\n");
    let dir = std::env::temp_dir().join(format!("fastproxy-publish-{}", center.addr.port()));
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("local.yaml"), &local).expect("local");
    let publish_as = |local: &str, text: &str| {
        std::fs::write(dir.join("song.yaml"), text).expect("doc");
        std::process::Command::new(env!("CARGO_BIN_EXE_fastproxy"))
            .args(["publish", "--registry", "reg", "--name", "song", "-f"])
            .arg(dir.join(local))
            .arg(dir.join("song.yaml"))
            .output()
            .expect("publish")
    };
    let publish = |timeout: &str| {
        let out = publish_as("local.yaml", &remote_config(&c, timeout));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    publish("10s");
    let o = outbound(&local);
    assert_eq!(route_timeout_ms(&o), 10_000);
    assert_eq!(get(&o), 200);
    let t = Instant::now();
    publish("5s");
    wait_timeout(&[&o], 5_000, Duration::from_secs(2));
    eprintln!("center: a published change applied after {:?} (the publish command included)", t.elapsed());
    // `fastproxy check` validates what the source holds now.
    let check = |path: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_fastproxy"))
            .arg("check")
            .arg("-f")
            .arg(path)
            .output()
            .expect("check")
    };
    std::fs::write(dir.join("full.yaml"), o.proxy.config_text()).expect("full");
    let ok = check(&dir.join("full.yaml"));
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("remote: center"), "{}", String::from_utf8_lossy(&ok.stdout));
    // A node without the right to publish is refused.
    let other =
        local.replace("node: inbound-node, key: center-inbound-node", "node: other-node, key: center-other-node");
    assert_ne!(other, local);
    std::fs::write(dir.join("other.yaml"), other).expect("other");
    let refused = publish_as("other.yaml", &remote_config(&c, "5s"));
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("403"), "{}", String::from_utf8_lossy(&refused.stderr));
    // And fails when the source holds something invalid.
    assert!(publish_as("local.yaml", "outbound: { routes: 7 }\n").status.success());
    let bad = check(&dir.join("full.yaml"));
    assert_eq!(bad.status.code(), Some(2), "{}", String::from_utf8_lossy(&bad.stdout));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("outbound.routes"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
