//! Turns a parsed [`schema::File`] into a checked [`Config`], collecting every
//! problem (with its field path) instead of stopping at the first.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use filters::{AeadKey, Algorithm, Codec, CompressOptions, KeyRing, SignKey};

use super::schema::{self, File};
use super::{
    secret, Config, ConnectionLimits, HashKey, Health, Inbound, Name, Outbound, OutlierPolicy, Probe, Problems, Reload,
    RetryPolicy, Route, Seal, Selection, Upstream,
};
use crate::check::Check;
use crate::policy::{CallerPolicy, Methods, PathMatch, RateLimiter, Rule};
use crate::registry;
use crate::Protocol;

const MIB: u64 = 1 << 20;

pub(crate) fn validate(file: File) -> Result<Config, Problems> {
    let mut c = Check::default();
    let (keys, key_algs) = keys(&mut c, &file.keys);
    let registries = registry::registries(&mut c, &file.registries, &keys);
    let mut tls_files = Vec::new();
    let mut upstreams = upstreams(&mut c, &file.upstreams, &file.registries, &mut tls_files);
    default_protocols(&file, &mut upstreams);
    let outbound = file.outbound.as_ref().map(|o| outbound(&mut c, o, &key_algs, &upstreams));
    let inbound =
        file.inbound.as_ref().map(|i| inbound(&mut c, i, &key_algs, &upstreams, &file.registries, &mut tls_files));
    let center = file.center.as_ref().map(|s| registry::center(&mut c, s, &keys));
    let remote = file.remote.as_ref().and_then(|r| crate::remote::check(&mut c, r, &registries));
    if outbound.is_none() && inbound.is_none() && center.is_none() {
        c.fail("(root)", "configure at least one role: outbound, inbound, center, or several");
    }
    let admin = file.admin.as_ref().map(|a| c.addrs("admin.listen", &a.listen));
    let reload = Reload {
        watch: file.reload.as_ref().and_then(|r| r.watch).unwrap_or(false),
        poll: file.reload.as_ref().and_then(|r| r.poll).map_or(Duration::from_secs(1), |d| d.0),
    };
    if reload.poll < Duration::from_millis(100) {
        c.fail("reload.poll", "must be at least 100ms");
    }
    let mut secret_files: Vec<String> = file
        .keys
        .aead
        .values()
        .map(|k| &k.secret)
        .chain(file.keys.hmac.values().map(|k| &k.secret))
        .filter_map(|s| s.expose().strip_prefix("file:").map(str::to_owned))
        .collect();
    secret_files.extend(tls_files);
    if c.problems.is_empty() {
        Ok(Config {
            keys,
            key_algs,
            outbound,
            inbound,
            upstreams,
            admin,
            reload,
            secret_files,
            registries,
            center,
            remote,
        })
    } else {
        Err(Problems(c.problems))
    }
}

pub(crate) fn keys(c: &mut Check, k: &schema::Keys) -> (KeyRing, BTreeMap<String, Option<Algorithm>>) {
    let mut ring = KeyRing::new();
    let mut algs = BTreeMap::new();
    for (id, key) in &k.aead {
        let path = format!("keys.aead.{id}");
        if !filters::keys::valid_key_id(id) {
            c.fail(&path, "key id must be 1-64 characters of A-Z a-z 0-9 . _ -");
            continue;
        }
        let Some(alg) = Algorithm::from_name(&key.alg) else {
            c.fail(format!("{path}.alg"), format!("{:?} is not aes-256-gcm or chacha20-poly1305", key.alg));
            continue;
        };
        match secret::resolve(&key.secret).and_then(|s| AeadKey::new(id, alg, &s[..]).map_err(|e| e.to_string())) {
            Ok(k) => ring.add_aead(k),
            Err(e) => c.fail(format!("{path}.secret"), e),
        }
        algs.insert(id.clone(), Some(alg));
    }
    for (id, key) in &k.hmac {
        let path = format!("keys.hmac.{id}");
        if !filters::keys::valid_key_id(id) {
            c.fail(&path, "key id must be 1-64 characters of A-Z a-z 0-9 . _ -");
            continue;
        }
        if algs.contains_key(id) {
            c.fail(&path, "an aead key has the same id; key ids must be unique");
            continue;
        }
        match secret::resolve(&key.secret).and_then(|s| SignKey::new(id, &s[..]).map_err(|e| e.to_string())) {
            Ok(k) => ring.add_sign(k),
            Err(e) => c.fail(format!("{path}.secret"), e),
        }
        algs.insert(id.clone(), None);
    }
    (ring, algs)
}

fn upstreams(
    c: &mut Check,
    ups: &BTreeMap<String, schema::Upstream>,
    regs: &BTreeMap<String, schema::Registry>,
    tls_files: &mut Vec<String>,
) -> BTreeMap<String, Upstream> {
    let mut out = BTreeMap::new();
    for (name, u) in ups {
        let path = format!("upstreams.{name}");
        c.name(&path, name, "upstream");
        let mut up = upstream(c, &path, u);
        up.discovery = u.discovery.as_ref().map(|d| registry::discovery(c, &format!("{path}.discovery"), d, regs));
        up.tls = u.tls.as_ref().and_then(|t| crate::tls::client(c, &format!("{path}.tls"), t, tls_files));
        out.insert(name.clone(), up);
    }
    out
}

/// `host:port` with a DNS host name (letters, digits, `-`, dots between
/// labels), lower-cased; `None` when it is not one.
fn host_port(text: &str) -> Option<(String, u16)> {
    let (host, port) = text.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|p| *p > 0)?;
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    (host.len() <= 253 && host.split('.').all(label_ok)).then(|| (host.to_ascii_lowercase(), port))
}

/// A pool without `protocol` speaks HTTP/2 when it holds inbound proxies (an
/// outbound route uses it, no inbound service does): they always accept
/// HTTP/2, and it was the faster hop (docs/BENCHMARKS.md). Any other pool
/// speaks HTTP/1.1, what every callee accepts.
fn default_protocols(file: &File, upstreams: &mut BTreeMap<String, Upstream>) {
    let routed: Vec<&str> = file.outbound.iter().flat_map(|o| o.routes.values().map(|r| r.upstream.as_str())).collect();
    let served: Vec<&str> =
        file.inbound.iter().flat_map(|i| i.services.values().map(|s| s.upstream.as_str())).collect();
    for (name, up) in upstreams.iter_mut() {
        let unset = file.upstreams.get(name).is_some_and(|u| u.protocol.is_none());
        if unset && routed.contains(&name.as_str()) && !served.contains(&name.as_str()) {
            up.protocol = Protocol::H2;
        }
    }
}

fn upstream(c: &mut Check, path: &str, u: &schema::Upstream) -> Upstream {
    let mut backends = Vec::new();
    let mut names = Vec::new();
    match (u.backends.is_empty(), u.discovery.is_some()) {
        (true, false) => c.fail(
            format!("{path}.backends"),
            "must list at least one ip:port address or host:port name, or set discovery",
        ),
        (false, true) => c.fail(format!("{path}.backends"), "set backends or discovery, not both"),
        _ => {}
    }
    for (i, b) in u.backends.iter().enumerate() {
        let (addr, weight) = match b {
            schema::BackendEntry::Addr(a) => (a, 1),
            schema::BackendEntry::Weighted(w) => (&w.addr, w.weight.unwrap_or(1)),
        };
        match addr.parse::<SocketAddr>() {
            Ok(_) if weight == 0 || weight > 1000 => {
                c.fail(format!("{path}.backends[{i}].weight"), "must be 1 to 1000 (remove the backend to drain it)")
            }
            Ok(a) if backends.iter().any(|(b, _)| *b == a) => {
                c.fail(format!("{path}.backends[{i}]"), format!("{a} is listed twice"))
            }
            Ok(a) => backends.push((a, weight)),
            Err(_) => match host_port(addr) {
                Some(_) if weight == 0 || weight > 1000 => {
                    c.fail(format!("{path}.backends[{i}].weight"), "must be 1 to 1000 (remove the backend to drain it)")
                }
                Some((host, port)) if names.iter().any(|(h, p, _)| *h == host && *p == port) => {
                    c.fail(format!("{path}.backends[{i}]"), format!("{addr} is listed twice"))
                }
                Some((host, port)) => names.push((host, port, weight)),
                None => c.fail(
                    format!("{path}.backends[{i}]"),
                    format!("{addr:?} is not an ip:port address nor a host:port name"),
                ),
            },
        }
    }
    let selection = match (u.selection.as_deref().unwrap_or("round_robin"), u.hash_key.as_deref()) {
        ("round_robin", None) => Selection::RoundRobin,
        ("random", None) => Selection::Random,
        ("consistent", key) => match key.unwrap_or("caller") {
            "caller" => Selection::Consistent(HashKey::Caller),
            k => match k.strip_prefix("header:") {
                Some(h) if !h.is_empty() => Selection::Consistent(HashKey::Header(h.to_ascii_lowercase())),
                _ => {
                    c.fail(format!("{path}.hash_key"), "must be caller or header:<name>");
                    Selection::RoundRobin
                }
            },
        },
        ("round_robin" | "random", Some(_)) => {
            c.fail(format!("{path}.hash_key"), "only applies to selection: consistent");
            Selection::RoundRobin
        }
        (other, _) => {
            c.fail(format!("{path}.selection"), format!("{other:?} is not round_robin, random or consistent"));
            Selection::RoundRobin
        }
    };
    let d = |v: Option<schema::Duration>, default: u64| v.map_or(Duration::from_millis(default), |d| d.0);
    let health = u.health_check.as_ref().map(|h| {
        let probe = match &h.http {
            None => Probe::Tcp,
            Some(http) => {
                let p = http.path.clone().unwrap_or_else(|| "/".to_owned());
                if !p.starts_with('/') {
                    c.fail(format!("{path}.health_check.http.path"), "must start with /");
                }
                Probe::Http {
                    path: p,
                    status: http.expect_status.unwrap_or(200),
                    host: http.host.clone().unwrap_or_else(|| "localhost".to_owned()),
                }
            }
        };
        let health = Health {
            probe,
            interval: d(h.interval, 1_000),
            timeout: d(h.timeout, 1_000),
            rise: h.rise.unwrap_or(1),
            fall: h.fall.unwrap_or(1),
        };
        if health.interval.is_zero() || health.timeout.is_zero() {
            c.fail(format!("{path}.health_check"), "interval and timeout must be greater than zero");
        }
        if health.rise == 0 || health.fall == 0 {
            c.fail(format!("{path}.health_check"), "rise and fall must be at least 1");
        }
        health
    });
    let r = u.retry.as_ref();
    let retry = RetryPolicy {
        attempts: r.and_then(|r| r.attempts).unwrap_or(3),
        budget_ratio: r.and_then(|r| r.budget_ratio).unwrap_or(0.2),
        budget_min: r.and_then(|r| r.budget_min).unwrap_or(10),
    };
    if retry.attempts == 0 || retry.attempts > 10 {
        c.fail(format!("{path}.retry.attempts"), "must be 1 (no retries) to 10");
    }
    if !(0.0..=1.0).contains(&retry.budget_ratio) {
        c.fail(format!("{path}.retry.budget_ratio"), "must be between 0 and 1");
    }
    let o = u.outlier.as_ref();
    let outlier = (o.and_then(|o| o.enabled) != Some(false)).then(|| OutlierPolicy {
        consecutive_failures: o.and_then(|o| o.consecutive_failures).unwrap_or(5).max(1),
        base_ejection: d(o.and_then(|o| o.base_ejection), 10_000),
        max_ejection: d(o.and_then(|o| o.max_ejection), 300_000),
        max_ejected_percent: o.and_then(|o| o.max_ejected_percent).unwrap_or(50).min(100),
        statuses: o.and_then(|o| o.statuses.clone()).unwrap_or_else(|| vec![502, 503, 504]),
    });
    let resolve_interval = d(u.resolve_interval, 10_000);
    if resolve_interval < Duration::from_millis(100) {
        c.fail(format!("{path}.resolve_interval"), "must be at least 100ms");
    }
    let protocol = match u.protocol.as_deref() {
        None | Some("http1") => Protocol::Http1,
        Some("h2") => Protocol::H2,
        Some(other) => {
            c.fail(format!("{path}.protocol"), format!("{other:?} is not http1 or h2"));
            Protocol::Http1
        }
    };
    let max_h2_streams = u.max_h2_streams.unwrap_or(100);
    if !(1..=1000).contains(&max_h2_streams) {
        c.fail(format!("{path}.max_h2_streams"), "must be 1 to 1000");
    }
    let up = Upstream {
        protocol,
        max_h2_streams,
        backends,
        names,
        resolve_interval,
        selection,
        health,
        retry,
        outlier,
        max_inflight: u.max_inflight,
        connect_timeout: d(u.connect_timeout, 1_000),
        read_timeout: d(u.read_timeout, 30_000),
        write_timeout: d(u.write_timeout, 30_000),
        idle_timeout: d(u.idle_timeout, 55_000),
        total_timeout: u.total_timeout.map(|t| t.0),
        discovery: None,
        tls: None,
    };
    for (field, v) in [("connect_timeout", up.connect_timeout), ("read_timeout", up.read_timeout)] {
        if v.is_zero() {
            c.fail(format!("{path}.{field}"), "must be greater than zero");
        }
    }
    up
}

/// An idle keep-alive timeout in whole seconds (default 60, at least 1).
fn idle_seconds(c: &mut Check, path: &str, d: Option<std::time::Duration>) -> u64 {
    match d.map_or(60, |d| d.as_secs()) {
        0 => {
            c.fail(path, "must be at least 1s");
            1
        }
        s => s,
    }
}

/// The longest wait for a piece of a request body (default 60 s, not zero).
fn body_wait(c: &mut Check, path: &str, d: Option<std::time::Duration>) -> std::time::Duration {
    let d = d.unwrap_or(std::time::Duration::from_secs(60));
    if d.is_zero() {
        c.fail(path, "must be greater than zero");
    }
    d
}

/// A role's connection limits (defaults: 4096 connections, 10 s per head).
fn connection_limits(
    c: &mut Check,
    role: &str,
    max: Option<usize>,
    header: Option<std::time::Duration>,
) -> ConnectionLimits {
    let max_connections = max.unwrap_or(4096);
    if max_connections == 0 {
        c.fail(format!("{role}.max_connections"), "must be at least 1");
    }
    let header_timeout = header.unwrap_or(std::time::Duration::from_secs(10));
    if header_timeout.is_zero() {
        c.fail(format!("{role}.header_timeout"), "must be greater than zero");
    }
    ConnectionLimits { max_connections, header_timeout }
}

fn upstream_ref(c: &mut Check, path: &str, name: &str, ups: &BTreeMap<String, Upstream>) {
    if !ups.contains_key(name) {
        c.fail(path, format!("no upstream named {name:?} in upstreams"));
    }
}

fn outbound(
    c: &mut Check,
    o: &schema::Outbound,
    key_algs: &BTreeMap<String, Option<Algorithm>>,
    ups: &BTreeMap<String, Upstream>,
) -> Outbound {
    let listen = c.addrs("outbound.listen", &o.listen);
    if let Some(caller) = &o.caller {
        c.name("outbound.caller", caller, "caller");
        if !o.callers.contains_key(caller) {
            c.fail("outbound.caller", format!("{caller:?} has no entry in outbound.callers"));
        }
    }
    let caller_header = c.header_name("outbound.caller_header", o.caller_header.as_deref(), "x-fp-caller");
    let timeout_header = c.header_name("outbound.timeout_header", o.timeout_header.as_deref(), "x-fp-timeout-ms");
    let mut callers = HashMap::new();
    for (name, s) in &o.callers {
        let path = format!("outbound.callers.{name}");
        c.name(&path, name, "caller");
        let aead = match &s.aead_key {
            None => None,
            Some(id) => match key_algs.get(id) {
                Some(Some(alg)) => Some((id.clone(), *alg)),
                Some(None) => {
                    c.fail(format!("{path}.aead_key"), format!("{id:?} is an hmac key, not an aead key"));
                    None
                }
                None => {
                    c.fail(format!("{path}.aead_key"), format!("no aead key {id:?} in keys.aead"));
                    None
                }
            },
        };
        if key_algs.get(&s.sign_key) != Some(&None) {
            c.fail(format!("{path}.sign_key"), format!("no hmac key {:?} in keys.hmac", s.sign_key));
        }
        let codec = match s.codec.as_deref().map_or(Some(Codec::None), Codec::from_name) {
            Some(codec) => codec,
            None => {
                c.fail(format!("{path}.codec"), "must be none, snappy, gzip, brotli or zstd");
                Codec::None
            }
        };
        let compress = CompressOptions {
            level: s.level.unwrap_or(0),
            min_size: s.compress_min.map_or(256, |s| s.0.min(u64::from(u32::MAX)) as usize),
        };
        callers
            .insert(Name::from(name.as_str()), Arc::new(Seal { aead, sign_key: s.sign_key.clone(), codec, compress }));
    }
    let mut routes = HashMap::new();
    for (service, r) in &o.routes {
        let path = format!("outbound.routes.{service}");
        c.name(&path, service, "service");
        upstream_ref(c, &format!("{path}.upstream"), &r.upstream, ups);
        routes.insert(
            Name::from(service.as_str()),
            Route { upstream: r.upstream.clone(), timeout: r.timeout.map(|d| d.0) },
        );
    }
    let replaced_headers = [caller_header.as_str(), timeout_header.as_str(), "content-length", "content-type"]
        .iter()
        .filter_map(|n| ::http::HeaderName::from_bytes(n.as_bytes()).ok())
        .collect();
    Outbound {
        listen,
        replaced_headers,
        caller: o.caller.as_deref().map(Name::from),
        caller_header,
        timeout_header,
        max_body: o.max_body.map_or(64 * MIB, |s| s.0),
        idle_timeout_s: idle_seconds(c, "outbound.idle_timeout", o.idle_timeout.map(|d| d.0)),
        body_timeout: body_wait(c, "outbound.body_timeout", o.body_timeout.map(|d| d.0)),
        connections: connection_limits(c, "outbound", o.max_connections, o.header_timeout.map(|d| d.0)),
        max_response_body: o.max_response_body.map_or(64 * MIB, |s| s.0),
        // Below what an inbound proxy (Pingora: 256 headers, 1 MiB) accepts
        // once the protocol header is added.
        max_header_count: match o.max_header_count.unwrap_or(100) {
            n if n > 200 => {
                c.fail("outbound.max_header_count", "at most 200 (the inbound proxy takes 256 with its own)");
                n
            }
            n => n,
        },
        max_header_bytes: match o.max_header_bytes.map_or(64 * 1024, |s| s.0) {
            n if n > 512 * 1024 => {
                c.fail("outbound.max_header_bytes", "at most 512KiB (the inbound proxy takes 1MiB)");
                n
            }
            n => n,
        },
        dangerous_passthrough: o.dangerous_passthrough.unwrap_or(false),
        callers,
        routes,
    }
}

const METHODS: [&str; 8] = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"];

fn inbound(
    c: &mut Check,
    i: &schema::Inbound,
    key_algs: &BTreeMap<String, Option<Algorithm>>,
    ups: &BTreeMap<String, Upstream>,
    regs: &BTreeMap<String, schema::Registry>,
    tls_files: &mut Vec<String>,
) -> Inbound {
    let listen = c.addrs("inbound.listen", &i.listen);
    let mut services = HashMap::new();
    for (name, s) in &i.services {
        let path = format!("inbound.services.{name}");
        c.name(&path, name, "service");
        if name.starts_with("_fastproxy") {
            c.fail(&path, "names starting with _fastproxy are reserved for the proxy's own endpoints");
        }
        upstream_ref(c, &format!("{path}.upstream"), &s.upstream, ups);
        services.insert(Name::from(name.as_str()), s.upstream.clone());
    }
    let mut callers = HashMap::new();
    // A signature names its caller only if nobody else holds the key: each
    // hmac key may be listed for one caller.
    let mut sign_key_owner: HashMap<&str, &str> = HashMap::new();
    for (name, p) in &i.callers {
        let path = format!("inbound.callers.{name}");
        for (k, id) in p.keys.iter().enumerate() {
            if key_algs.get(id) != Some(&None) {
                continue;
            }
            match sign_key_owner.insert(id, name) {
                Some(other) if other != name => c.fail(
                    format!("{path}.keys[{k}]"),
                    format!(
                        "hmac key {id:?} is also listed for caller {other:?}: a caller is identified by its sign key, so each caller needs its own"
                    ),
                ),
                _ => {}
            }
        }
        c.name(&path, name, "caller");
        if !p.require.sign {
            c.fail(format!("{path}.require.sign"), "protocol v1 always signs; false is not supported");
        }
        let mut keys = HashSet::new();
        for (k, id) in p.keys.iter().enumerate() {
            if !key_algs.contains_key(id) {
                c.fail(format!("{path}.keys[{k}]"), format!("no key {id:?} in keys"));
            }
            keys.insert(Name::from(id.as_str()));
        }
        if !p.keys.iter().any(|id| key_algs.get(id) == Some(&None)) {
            c.fail(format!("{path}.keys"), "must list at least one hmac key the caller signs with");
        }
        let mut rules = Vec::new();
        for (r, a) in p.allow.iter().enumerate() {
            let rp = format!("{path}.allow[{r}]");
            if !i.services.contains_key(&a.service) {
                c.fail(format!("{rp}.service"), format!("no service {:?} in inbound.services", a.service));
            }
            let path_match = match (&a.path, &a.path_prefix) {
                (Some(p), None) if p.starts_with('/') => PathMatch::Exact(p.clone()),
                (None, Some(p)) if p.starts_with('/') => PathMatch::Prefix(p.clone()),
                (Some(_), None) | (None, Some(_)) => {
                    c.fail(&rp, "path and path_prefix must start with /");
                    continue;
                }
                _ => {
                    c.fail(&rp, "set exactly one of path, path_prefix");
                    continue;
                }
            };
            let methods = if a.methods.iter().any(|m| m == "*") {
                Methods::Any
            } else {
                for (m, method) in a.methods.iter().enumerate() {
                    if !METHODS.contains(&method.as_str()) {
                        c.fail(
                            format!("{rp}.methods[{m}]"),
                            format!("{method:?} is not an upper-case HTTP method or *"),
                        );
                    }
                }
                if a.methods.is_empty() {
                    c.fail(format!("{rp}.methods"), "list the allowed methods, or [\"*\"]");
                }
                Methods::Listed(a.methods.clone())
            };
            if a.qps == Some(0) {
                c.fail(format!("{rp}.qps"), "must be at least 1 (remove the rule to deny)");
            }
            rules.push(Rule {
                service: a.service.clone(),
                path: path_match,
                methods,
                qps: a.qps,
                limit: a.qps.map(RateLimiter::new),
            });
        }
        let identity = p.identity.as_ref().map(|id| crate::tls::identity(c, &format!("{path}.identity"), id));
        if identity.is_some() && i.tls.as_ref().is_none_or(|t| t.client_ca.is_none()) {
            c.fail(format!("{path}.identity"), "needs mutual TLS: set inbound.tls.client_ca");
        }
        callers.insert(
            Name::from(name.as_str()),
            CallerPolicy { require_encrypt: p.require.encrypt, keys, rules, identity },
        );
    }
    let max_skew_ms = i.max_skew.map_or(filters::replay::DEFAULT_SKEW_MS, |d| d.0.as_millis() as u64);
    Inbound {
        listen,
        max_skew_ms,
        idle_timeout_s: idle_seconds(c, "inbound.idle_timeout", i.idle_timeout.map(|d| d.0)),
        body_timeout: body_wait(c, "inbound.body_timeout", i.body_timeout.map(|d| d.0)),
        connections: connection_limits(c, "inbound", i.max_connections, i.header_timeout.map(|d| d.0)),
        replay_cache: i.replay_cache.unwrap_or(filters::replay::DEFAULT_CAPACITY),
        max_body: i.max_body.map_or(64 * MIB, |s| s.0),
        replay_journal: i.replay_journal.clone(),
        max_opened_buffer: match i.max_opened_buffer.map_or(16 * MIB, |s| s.0) {
            n if n < MIB => {
                c.fail("inbound.max_opened_buffer", "must be at least 1MiB");
                n
            }
            n => n,
        },
        dangerous_passthrough: i.dangerous_passthrough.unwrap_or(false),
        services,
        callers,
        register: i.register.as_ref().map(|r| registry::registration(c, r, regs)),
        tls: i.tls.as_ref().and_then(|t| crate::tls::server(c, t, tls_files)),
    }
}
