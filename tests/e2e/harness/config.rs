//! Standard test deployments: an outbound proxy and an inbound proxy as two
//! processes (optionally with the recording relay between them) in front of a
//! real callee.

use std::net::SocketAddr;

use super::proxy::{self, Proxy};
use super::relay::Relay;
use super::upstream::Upstream;

pub const ALGS: [(&str, Option<&str>); 3] = [("aes", Some("room-v2")), ("chacha", Some("chacha-v1")), ("none", None)];
pub const CODECS: [&str; 5] = ["none", "snappy", "gzip", "brotli", "zstd"];

pub const ROOM_V2: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
pub const CHACHA_V1: &str = "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f";
const SIGN_V1: &str = "404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f";
const GHOST: &str = "606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f";

/// Name of the test caller sealing with `alg` and `codec`.
pub fn caller(alg: &str, codec: &str) -> String {
    format!("c-{alg}-{codec}")
}

pub struct Options {
    pub relay: bool,
    pub max_skew: &'static str,
    pub outbound_max_body: &'static str,
    pub inbound_max_body: &'static str,
    /// Fixed callee addresses (nothing started there); `None` starts real callees.
    pub dead_callees: Option<Vec<SocketAddr>>,
    /// Weights of the callees to start (one callee of weight 1 by default).
    pub weights: Vec<u32>,
    /// Extra settings of the callee pool, as YAML map entries
    /// (e.g. `selection: consistent`).
    pub pool: String,
    /// Extra settings of the outbound proxy's pool of inbound proxies.
    pub outbound_pool: String,
    /// The proxies' `RUST_LOG`.
    pub rust_log: &'static str,
    /// Both proxies' `idle_timeout`.
    pub idle_timeout: &'static str,
    /// Both proxies' `body_timeout`.
    pub body_timeout: &'static str,
    /// Both proxies' `header_timeout`.
    pub header_timeout: &'static str,
    /// Both proxies' `max_connections`.
    pub max_connections: usize,
    /// Top-level YAML added to both proxies' configs (e.g. `registries:`).
    pub registries: String,
    /// The inbound proxy's `register:` flow map, when it registers.
    pub register: Option<String>,
    /// The outbound pool's `discovery:` flow map instead of its backends.
    pub outbound_discovery: Option<String>,
    /// The inbound proxy's `tls:` flow map.
    pub inbound_tls: Option<String>,
    /// Callers whose client certificate must carry an identity.
    pub identities: Vec<(String, String)>,
    /// A byte-level tap between the proxies (instead of the HTTP relay).
    pub tap: bool,
    /// An HTTP/2 relay between the proxies (instead of the others).
    pub h2_relay: bool,
    /// Pingora threads per proxy (2 here; the shipped default is 1).
    pub threads: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            relay: false,
            max_skew: "60s",
            outbound_max_body: "256MiB",
            inbound_max_body: "256MiB",
            dead_callees: None,
            weights: vec![1],
            pool: String::new(),
            outbound_pool: String::new(),
            rust_log: "info",
            idle_timeout: "60s",
            body_timeout: "60s",
            header_timeout: "10s",
            max_connections: 4096,
            registries: String::new(),
            register: None,
            outbound_discovery: None,
            inbound_tls: None,
            identities: Vec::new(),
            tap: false,
            h2_relay: false,
            threads: 2,
        }
    }
}

pub struct Pair {
    pub outbound: Proxy,
    pub inbound: Proxy,
    pub out_addr: SocketAddr,
    pub in_addr: SocketAddr,
    /// Admin listeners of the outbound and inbound proxy.
    pub out_admin: SocketAddr,
    pub in_admin: SocketAddr,
    pub relay: Option<Relay>,
    pub tap: Option<super::tap::Tap>,
    pub h2_relay: Option<super::h2_relay::H2Relay>,
    pub callees: Vec<Upstream>,
    pub callee_addr: SocketAddr,
}

impl Pair {
    pub fn start(opts: Options) -> Pair {
        let callees: Vec<Upstream> = if opts.dead_callees.is_none() {
            opts.weights.iter().map(|_| Upstream::start()).collect()
        } else {
            Vec::new()
        };
        let backends: Vec<String> = match &opts.dead_callees {
            Some(addrs) => addrs.iter().map(|a| format!("\"{a}\"")).collect(),
            None => callees
                .iter()
                .zip(&opts.weights)
                .map(|(c, w)| format!("{{ addr: \"{}\", weight: {w} }}", c.addr))
                .collect(),
        };
        let callee_addr = opts.dead_callees.as_ref().map_or_else(|| callees[0].addr, |a| a[0]);
        let (in_port, in_admin) = (proxy::free_port(), proxy::free_port());
        let in_yaml = inbound_yaml(in_port, in_admin, &backends.join(", "), &opts);
        let inbound = Proxy::start_with(&in_yaml, &[in_port, in_admin], 1, opts.rust_log, opts.threads);
        let in_addr = proxy::addr(in_port);
        let relay = opts.relay.then(|| Relay::start(proxy::listener(), in_addr));
        let tap = opts.tap.then(|| super::tap::Tap::start(proxy::listener(), in_addr));
        let h2_relay = opts.h2_relay.then(|| super::h2_relay::H2Relay::start(in_addr));
        let hop = relay
            .as_ref()
            .map(|r| r.addr)
            .or(tap.as_ref().map(|t| t.addr))
            .or(h2_relay.as_ref().map(|r| r.addr))
            .unwrap_or(in_addr);
        let (out_port, out_admin) = (proxy::free_port(), proxy::free_port());
        let out_yaml = outbound_yaml(out_port, out_admin, hop, &opts);
        let outbound = Proxy::start_with(&out_yaml, &[out_port, out_admin], 1, opts.rust_log, opts.threads);
        Pair {
            outbound,
            inbound,
            out_addr: proxy::addr(out_port),
            in_addr,
            out_admin: proxy::addr(out_admin),
            in_admin: proxy::addr(in_admin),
            relay,
            tap,
            h2_relay,
            callees,
            callee_addr,
        }
    }

    pub fn callee(&self) -> &Upstream {
        self.callees.first().expect("a started callee")
    }

    pub fn relay(&self) -> &Relay {
        self.relay.as_ref().expect("a relay")
    }
}

/// Every caller of the standard deployment.
pub fn all_callers() -> Vec<String> {
    let mut all: Vec<String> =
        ALGS.iter().flat_map(|(alg, _)| CODECS.iter().map(move |codec| caller(alg, codec))).collect();
    all.extend(["ghost", "limited", "acl", "slow"].map(String::from));
    all
}

/// The id of `caller`'s own sign key: a caller is identified by its sign key,
/// so no two callers share one.
pub fn sign_key(caller: &str) -> String {
    format!("sign-{caller}")
}

/// The secret of `caller`'s sign key (deterministic, for tests only).
pub fn sign_secret(caller: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, format!("{SIGN_V1}/{caller}").as_bytes());
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Nodes of the test center, each with its own key.
pub const CENTER_NODES: [&str; 3] = ["inbound-node", "outbound-node", "other-node"];

/// The hmac key id of center node `node`.
pub fn center_key(node: &str) -> String {
    format!("center-{node}")
}

pub fn keys_yaml(ghost: bool) -> String {
    let mut y = format!(
        "keys:\n  aead:\n    room-v2: {{ alg: aes-256-gcm, secret: \"{ROOM_V2}\" }}\n    chacha-v1: {{ alg: chacha20-poly1305, secret: \"{CHACHA_V1}\" }}\n"
    );
    if ghost {
        y.push_str(&format!("    ghost-key: {{ alg: aes-256-gcm, secret: \"{GHOST}\" }}\n"));
    }
    y.push_str("  hmac:\n");
    for c in all_callers() {
        y.push_str(&format!("    {}: {{ secret: \"{}\" }}\n", sign_key(&c), sign_secret(&c)));
    }
    for node in CENTER_NODES {
        y.push_str(&format!("    {}: {{ secret: \"{}\" }}\n", center_key(node), sign_secret(node)));
    }
    y
}

pub fn outbound_yaml(port: u16, admin: u16, inbound: SocketAddr, o: &Options) -> String {
    let mut y = keys_yaml(true);
    y.push_str(&format!("admin:\n  listen: [\"127.0.0.1:{admin}\"]\n"));
    y.push_str(&format!(
        "outbound:\n  listen: [\"127.0.0.1:{port}\"]\n  idle_timeout: {}\n  body_timeout: {}\n  header_timeout: {}\n  max_connections: {}\n  max_body: {}\n  max_response_body: 256MiB\n  callers:\n",
        o.idle_timeout, o.body_timeout, o.header_timeout, o.max_connections, o.outbound_max_body
    ));
    for (alg, key) in ALGS {
        for codec in CODECS {
            let aead = key.map_or(String::new(), |k| format!("aead_key: {k}, "));
            let who = caller(alg, codec);
            y.push_str(&format!("    {who}: {{ {aead}sign_key: {}, codec: {codec} }}\n", sign_key(&who)));
        }
    }
    for (who, aead) in [("ghost", "ghost-key"), ("limited", "room-v2"), ("acl", "room-v2"), ("slow", "room-v2")] {
        y.push_str(&format!("    {who}: {{ aead_key: {aead}, sign_key: {} }}\n", sign_key(who)));
    }
    y.push_str("  routes:\n    token_service: { upstream: inbound }\n");
    let mut extra = if o.outbound_pool.is_empty() { String::new() } else { format!(", {}", o.outbound_pool) };
    if o.relay && !o.outbound_pool.contains("protocol") {
        // The recording relay speaks HTTP/1.1.
        extra.push_str(", protocol: http1");
    }
    let read = if o.outbound_pool.contains("read_timeout") { "" } else { ", read_timeout: 30s" };
    let members = match &o.outbound_discovery {
        Some(d) => format!("discovery: {d}"),
        None => format!("backends: [\"{inbound}\"]"),
    };
    y.push_str(&format!("upstreams:\n  inbound: {{ {members}{read}{extra} }}\n"));
    y.push_str(&o.registries);
    y
}

pub fn inbound_yaml(port: u16, admin: u16, backends: &str, o: &Options) -> String {
    let mut y = keys_yaml(false);
    y.push_str(&format!("admin:\n  listen: [\"127.0.0.1:{admin}\"]\n"));
    y.push_str(&format!(
        "inbound:\n  listen: [\"127.0.0.1:{port}\"]\n  idle_timeout: {}\n  body_timeout: {}\n  header_timeout: {}\n  max_connections: {}\n  max_skew: {}\n  max_body: {}\n  services:\n    token_service: {{ upstream: callee }}\n  callers:\n",
        o.idle_timeout, o.body_timeout, o.header_timeout, o.max_connections, o.max_skew, o.inbound_max_body
    ));
    let any = "[{ service: token_service, path_prefix: /, methods: [\"*\"] }]";
    for (alg, _) in ALGS {
        for codec in CODECS {
            let encrypt = alg != "none";
            let who = caller(alg, codec);
            y.push_str(&format!(
                "    {who}: {{ require: {{ encrypt: {encrypt} }}, keys: [room-v2, chacha-v1, {}], allow: {any} }}\n",
                sign_key(&who)
            ));
        }
    }
    y.push_str(&format!("    ghost: {{ keys: [room-v2, {}], allow: {any} }}\n", sign_key("ghost")));
    let rules = [
        ("limited", "[{ service: token_service, path_prefix: /, methods: [\"*\"], qps: 50 }]"),
        ("acl", "[{ service: token_service, path: /api/allowed, methods: [GET] }]"),
        ("slow", "[{ service: token_service, path_prefix: /, methods: [\"*\"], qps: 1 }]"),
    ];
    for (who, allow) in rules {
        y.push_str(&format!("    {who}: {{ keys: [room-v2, {}], allow: {allow} }}\n", sign_key(who)));
    }
    let mut settings = vec![format!("backends: [{backends}]")];
    for (key, default) in [("read_timeout", "read_timeout: 10s"), ("connect_timeout", "connect_timeout: 500ms")] {
        if !o.pool.contains(key) {
            settings.push(default.to_string());
        }
    }
    if !o.pool.is_empty() {
        settings.push(o.pool.clone());
    }
    y.push_str(&format!("upstreams:\n  callee: {{ {} }}\n", settings.join(", ")));
    if let Some(r) = &o.register {
        y = y.replacen("  services:\n", &format!("  register: {r}\n  services:\n"), 1);
    }
    if let Some(t) = &o.inbound_tls {
        y = y.replacen("  services:\n", &format!("  tls: {t}\n  services:\n"), 1);
    }
    for (who, identity) in &o.identities {
        let line = format!("    {who}: {{ ");
        assert!(y.contains(&line), "no caller {who}");
        y = y.replacen(&line, &format!("    {who}: {{ identity: \"{identity}\", "), 1);
    }
    y.push_str(&o.registries);
    y
}
