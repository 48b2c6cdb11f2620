//! The running config as JSON for the admin endpoint, with every secret
//! replaced by `<redacted>`. Built from the checked [`Config`], which holds no
//! secret bytes at all: only key ids and algorithms can appear.

use serde_json::{json, Map, Value};

use super::{Config, Probe, Selection};
use crate::policy::{Methods, PathMatch};

const REDACTED: &str = "<redacted>";

fn ms(d: std::time::Duration) -> u64 {
    d.as_millis() as u64
}

/// Renders `config`.
pub fn render(config: &Config) -> Value {
    let mut aead = Map::new();
    let mut hmac = Map::new();
    for (id, alg) in &config.key_algs {
        match alg {
            Some(alg) => aead.insert(id.clone(), json!({ "alg": alg.name(), "secret": REDACTED })),
            None => hmac.insert(id.clone(), json!({ "secret": REDACTED })),
        };
    }
    let outbound = config.outbound.as_ref().map(|o| {
        let callers: Map<String, Value> = o
            .callers
            .iter()
            .map(|(name, s)| {
                let v = json!({
                    "aead_key": s.aead.as_ref().map(|(k, _)| k),
                    "alg": s.aead.as_ref().map_or("none", |(_, a)| a.name()),
                    "sign_key": s.sign_key,
                    "codec": s.codec.name(),
                    "level": s.compress.level,
                    "compress_min": s.compress.min_size,
                });
                (name.to_string(), v)
            })
            .collect();
        let routes: Map<String, Value> = o
            .routes
            .iter()
            .map(|(name, r)| (name.to_string(), json!({ "upstream": r.upstream, "timeout_ms": r.timeout.map(ms) })))
            .collect();
        json!({
            "listen": o.listen,
            "caller": o.caller,
            "caller_header": o.caller_header,
            "timeout_header": o.timeout_header,
            "max_body": o.max_body,
            "max_response_body": o.max_response_body,
            "max_connections": o.connections.max_connections,
            "header_timeout_ms": ms(o.connections.header_timeout),
            "dangerous_passthrough": o.dangerous_passthrough,
            "callers": callers,
            "routes": routes,
        })
    });
    let inbound = config.inbound.as_ref().map(|i| {
        let callers: Map<String, Value> = i
            .callers
            .iter()
            .map(|(name, p)| {
                let mut keys: Vec<&str> = p.keys.iter().map(|k| &**k).collect();
                keys.sort();
                let rules: Vec<Value> = p
                    .rules
                    .iter()
                    .map(|r| {
                        let (kind, path) = match &r.path {
                            PathMatch::Exact(p) => ("path", p),
                            PathMatch::Prefix(p) => ("path_prefix", p),
                        };
                        let methods = match &r.methods {
                            Methods::Any => vec!["*".to_owned()],
                            Methods::Listed(m) => m.clone(),
                        };
                        json!({ "service": r.service, kind: path, "methods": methods, "qps": r.qps })
                    })
                    .collect();
                let identity = p.identity.as_ref().map(|i| i.shown());
                (
                    name.to_string(),
                    json!({ "require_encrypt": p.require_encrypt, "keys": keys, "allow": rules, "identity": identity }),
                )
            })
            .collect();
        json!({
            "listen": i.listen,
            "max_skew_ms": i.max_skew_ms,
            "replay_cache": i.replay_cache,
            "max_connections": i.connections.max_connections,
            "header_timeout_ms": ms(i.connections.header_timeout),
            "max_body": i.max_body,
            "dangerous_passthrough": i.dangerous_passthrough,
            "services": i.services,
            "callers": callers,
            "tls": i.tls.as_ref().map(|t| json!({
                "certificate": crate::tls::describe(&t.cert.chain),
                "mutual": t.client_ca.is_some(),
                "client_ca": t.client_ca.as_ref().map(|cas| cas.iter().map(|c| crate::tls::describe(std::slice::from_ref(c))).collect::<Vec<_>>()),
            })),
        })
    });
    let upstreams: Map<String, Value> = config
        .upstreams
        .iter()
        .map(|(name, u)| {
            let selection = match &u.selection {
                Selection::RoundRobin => "round_robin".to_owned(),
                Selection::Random => "random".to_owned(),
                Selection::Consistent(super::HashKey::Caller) => "consistent (caller)".to_owned(),
                Selection::Consistent(super::HashKey::Header(h)) => format!("consistent (header {h})"),
            };
            let health = u.health.as_ref().map(|h| {
                let probe = match &h.probe {
                    Probe::Tcp => json!("tcp"),
                    Probe::Http { path, status, host } => json!({ "http": { "path": path, "expect_status": status, "host": host } }),
                };
                json!({ "probe": probe, "interval_ms": ms(h.interval), "timeout_ms": ms(h.timeout), "rise": h.rise, "fall": h.fall })
            });
            let outlier = u.outlier.as_ref().map(|o| {
                json!({
                    "consecutive_failures": o.consecutive_failures,
                    "base_ejection_ms": ms(o.base_ejection),
                    "max_ejection_ms": ms(o.max_ejection),
                    "max_ejected_percent": o.max_ejected_percent,
                    "statuses": o.statuses,
                })
            });
            let v = json!({
                "backends": u
                    .backends
                    .iter()
                    .map(|(a, w)| json!({ "addr": a, "weight": w }))
                    .chain(u.names.iter().map(|(h, p, w)| json!({ "addr": format!("{h}:{p}"), "weight": w, "dns": true })))
                    .collect::<Vec<_>>(),
                "resolve_interval_ms": ms(u.resolve_interval),
                "protocol": u.protocol.name(),
                "max_h2_streams": u.max_h2_streams,
                "selection": selection,
                "health_check": health,
                "retry": { "attempts": u.retry.attempts, "budget_ratio": u.retry.budget_ratio, "budget_min": u.retry.budget_min },
                "outlier": outlier,
                "max_inflight": u.max_inflight,
                "connect_timeout_ms": ms(u.connect_timeout),
                "read_timeout_ms": ms(u.read_timeout),
                "write_timeout_ms": ms(u.write_timeout),
                "idle_timeout_ms": ms(u.idle_timeout),
                "total_timeout_ms": u.total_timeout.map(ms),
                "discovery": u.discovery.as_ref().map(|d| json!({ "registry": d.registry, "service": d.service })),
                "tls": u.tls.as_ref().map(|t| json!({
                    "server_name": t.server_name,
                    "ca": t.ca.iter().map(|c| crate::tls::describe(std::slice::from_ref(c))).collect::<Vec<_>>(),
                    "client_certificate": t.client.as_ref().map(|c| crate::tls::describe(&c.chain)),
                })),
            });
            (name.clone(), v)
        })
        .collect();
    json!({
        "keys": { "aead": aead, "hmac": hmac },
        "outbound": outbound,
        "inbound": inbound,
        "upstreams": upstreams,
        "admin": config.admin.as_ref().map(|a| json!({ "listen": a })),
        "registries": config.registries.values().map(|r| {
            let v = match &r.kind {
                crate::registry::RegistryKind::Center { authority, node, key_id, .. } => json!({ "center": format!("http://{authority}"), "node": node, "key": key_id }),
                crate::registry::RegistryKind::Etcd { authority, prefix } => json!({ "etcd": format!("http://{authority}"), "prefix": prefix }),
            };
            let mut v = v;
            v["timeout_ms"] = json!(ms(r.timeout));
            v["cache"] = json!(r.cache);
            (r.name.clone(), v)
        }).collect::<Map<String, Value>>(),
        "register": config.inbound.as_ref().and_then(|i| i.register.as_ref()).map(|r| json!({
            "registry": r.registry, "advertise": r.advertise, "ttl_ms": ms(r.ttl), "weight": r.weight,
            "metadata": r.metadata, "deregister_delay_ms": ms(r.deregister_delay),
        })),
        "center": config.center.as_ref().map(|c| json!({
            "listen": c.listen, "state_file": c.state_file, "max_ttl_ms": ms(c.max_ttl),
            "clients": c.clients.iter().map(|(n, cl)| (n.clone(), json!({ "key": cl.key_id, "register": cl.register }))).collect::<Map<String, Value>>(),
        })),
    })
}
