//! Standard test deployments: an outbound proxy and an inbound proxy as two
//! processes (optionally with the recording relay between them) in front of a
//! real callee.

use std::net::SocketAddr;

use super::proxy::{self, Proxy};
use super::relay::Relay;
use super::upstream::Upstream;

pub const ALGS: [(&str, Option<&str>); 3] = [("aes", Some("room-v2")), ("chacha", Some("chacha-v1")), ("none", None)];
pub const CODECS: [&str; 5] = ["none", "snappy", "gzip", "brotli", "zstd"];

const ROOM_V2: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const CHACHA_V1: &str = "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f";
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
        let inbound = Proxy::start(&inbound_yaml(in_port, in_admin, &backends.join(", "), &opts), &[in_port, in_admin]);
        let in_addr = proxy::addr(in_port);
        let relay = opts.relay.then(|| Relay::start(proxy::listener(), in_addr));
        let hop = relay.as_ref().map_or(in_addr, |r| r.addr);
        let (out_port, out_admin) = (proxy::free_port(), proxy::free_port());
        let outbound = Proxy::start(&outbound_yaml(out_port, out_admin, hop, &opts), &[out_port, out_admin]);
        Pair {
            outbound,
            inbound,
            out_addr: proxy::addr(out_port),
            in_addr,
            out_admin: proxy::addr(out_admin),
            in_admin: proxy::addr(in_admin),
            relay,
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

fn keys_yaml(ghost: bool) -> String {
    let mut y = format!(
        "keys:\n  aead:\n    room-v2: {{ alg: aes-256-gcm, secret: \"{ROOM_V2}\" }}\n    chacha-v1: {{ alg: chacha20-poly1305, secret: \"{CHACHA_V1}\" }}\n"
    );
    if ghost {
        y.push_str(&format!("    ghost-key: {{ alg: aes-256-gcm, secret: \"{GHOST}\" }}\n"));
    }
    y.push_str(&format!("  hmac:\n    sign-v1: {{ secret: \"{SIGN_V1}\" }}\n"));
    y
}

fn outbound_yaml(port: u16, admin: u16, inbound: SocketAddr, o: &Options) -> String {
    let mut y = keys_yaml(true);
    y.push_str(&format!("admin:\n  listen: [\"127.0.0.1:{admin}\"]\n"));
    y.push_str(&format!(
        "outbound:\n  listen: [\"127.0.0.1:{port}\"]\n  max_body: {}\n  max_response_body: 256MiB\n  callers:\n",
        o.outbound_max_body
    ));
    for (alg, key) in ALGS {
        for codec in CODECS {
            let aead = key.map_or(String::new(), |k| format!("aead_key: {k}, "));
            y.push_str(&format!("    {}: {{ {aead}sign_key: sign-v1, codec: {codec} }}\n", caller(alg, codec)));
        }
    }
    y.push_str("    ghost: { aead_key: ghost-key, sign_key: sign-v1 }\n");
    y.push_str("    limited: { aead_key: room-v2, sign_key: sign-v1 }\n");
    y.push_str("    acl: { aead_key: room-v2, sign_key: sign-v1 }\n");
    y.push_str("    slow: { aead_key: room-v2, sign_key: sign-v1 }\n");
    y.push_str("  routes:\n    token_service: { upstream: inbound }\n");
    let extra = if o.outbound_pool.is_empty() { String::new() } else { format!(", {}", o.outbound_pool) };
    y.push_str(&format!("upstreams:\n  inbound: {{ backends: [\"{inbound}\"], read_timeout: 30s{extra} }}\n"));
    y
}

fn inbound_yaml(port: u16, admin: u16, backends: &str, o: &Options) -> String {
    let mut y = keys_yaml(false);
    y.push_str(&format!("admin:\n  listen: [\"127.0.0.1:{admin}\"]\n"));
    y.push_str(&format!(
        "inbound:\n  listen: [\"127.0.0.1:{port}\"]\n  max_skew: {}\n  max_body: {}\n  services:\n    token_service: {{ upstream: callee }}\n  callers:\n",
        o.max_skew, o.inbound_max_body
    ));
    let any = "[{ service: token_service, path_prefix: /, methods: [\"*\"] }]";
    for (alg, _) in ALGS {
        for codec in CODECS {
            let encrypt = alg != "none";
            y.push_str(&format!(
                "    {}: {{ require: {{ encrypt: {encrypt} }}, keys: [room-v2, chacha-v1, sign-v1], allow: {any} }}\n",
                caller(alg, codec)
            ));
        }
    }
    y.push_str(&format!("    ghost: {{ keys: [room-v2, sign-v1], allow: {any} }}\n"));
    y.push_str("    limited: { keys: [room-v2, sign-v1], allow: [{ service: token_service, path_prefix: /, methods: [\"*\"], qps: 50 }] }\n");
    y.push_str("    acl: { keys: [room-v2, sign-v1], allow: [{ service: token_service, path: /api/allowed, methods: [GET] }] }\n");
    y.push_str("    slow: { keys: [room-v2, sign-v1], allow: [{ service: token_service, path_prefix: /, methods: [\"*\"], qps: 1 }] }\n");
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
    y
}
