//! Service discovery settings: the registries a process talks to
//! (`registries`), where its pools find their backends
//! (`upstreams.*.discovery`), how an inbound proxy registers itself
//! (`inbound.register`), and the built-in registry it may serve (`center`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use filters::KeyRing;

use crate::check::Check;
use crate::schema;

/// HKDF info of the center's request-signing key (docs/CENTER.md).
pub const CENTER_KEY_LABEL: &[u8] = b"fastproxy/1 center";

/// A registry client's settings.
#[derive(Clone)]
pub struct Registry {
    /// The entry's name under `registries`.
    pub name: String,
    /// Which engine, and how to reach it.
    pub kind: RegistryKind,
    /// Longest wait for each request.
    pub timeout: Duration,
    /// File of the last members seen per service.
    pub cache: Option<String>,
}

/// A registry engine.
#[derive(Clone)]
pub enum RegistryKind {
    /// A fastproxy center.
    Center {
        /// `host:port` of its listener.
        authority: String,
        /// The client name requests are signed as.
        node: String,
        /// The signing key (derived from `keys.hmac.<key>`).
        key: Arc<ring::hmac::Key>,
        /// The key's id, for the config view.
        key_id: String,
    },
    /// An etcd v3 cluster through its JSON gateway.
    Etcd {
        /// `host:port` of its client URL.
        authority: String,
        /// Key prefix of registrations.
        prefix: String,
    },
}

impl PartialEq for Registry {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
            && self.timeout == other.timeout
            && self.cache == other.cache
            && match (&self.kind, &other.kind) {
                (
                    RegistryKind::Center { authority: a, node: n, key_id: k, .. },
                    RegistryKind::Center { authority: b, node: m, key_id: l, .. },
                ) => a == b && n == m && k == l,
                (RegistryKind::Etcd { authority: a, prefix: p }, RegistryKind::Etcd { authority: b, prefix: q }) => {
                    a == b && p == q
                }
                _ => false,
            }
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (engine, authority) = match &self.kind {
            RegistryKind::Center { authority, .. } => ("center", authority),
            RegistryKind::Etcd { authority, .. } => ("etcd", authority),
        };
        f.debug_struct("Registry").field("name", &self.name).field(engine, authority).finish()
    }
}

/// Where a pool's backends come from, when a registry gives them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DiscoveryRef {
    /// `registries` entry.
    pub registry: String,
    /// Service name in it.
    pub service: String,
}

/// How an inbound proxy registers its services.
#[derive(Debug, Clone, PartialEq)]
pub struct Registration {
    /// `registries` entry.
    pub registry: String,
    /// The address registered for each service.
    pub advertise: SocketAddr,
    /// Lease time.
    pub ttl: Duration,
    /// Relative share of requests.
    pub weight: u32,
    /// Labels registered with each instance.
    pub metadata: BTreeMap<String, String>,
    /// How long to keep accepting after deregistering on SIGTERM.
    pub deregister_delay: Duration,
}

/// The built-in registry's settings.
#[derive(Clone)]
pub struct Center {
    /// Listen addresses.
    pub listen: Vec<SocketAddr>,
    /// Where registrations are kept across restarts.
    pub state_file: String,
    /// Longest lease a client may ask for.
    pub max_ttl: Duration,
    /// Clients by name.
    pub clients: BTreeMap<String, CenterClient>,
}

/// One client of the center.
#[derive(Clone)]
pub struct CenterClient {
    /// Its request-signing key (derived from `keys.hmac.<key_id>`).
    pub key: Arc<ring::hmac::Key>,
    /// The key's id.
    pub key_id: String,
    /// Services it may register.
    pub register: Vec<String>,
    /// Config documents it may publish.
    pub publish: Vec<String>,
}

/// Largest lease a registration may ask for, and the shortest.
pub const MIN_TTL: Duration = Duration::from_secs(1);

/// `host:port` of an `http://host:port` URL (nothing after it but `/`).
pub(crate) fn authority(c: &mut Check, path: &str, url: &str) -> String {
    let rest = url.strip_prefix("http://");
    match rest.map(|r| r.strip_suffix('/').unwrap_or(r)) {
        Some(a)
            if !a.is_empty()
                && !a.contains('/')
                && a.rsplit_once(':').is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0)) =>
        {
            a.to_owned()
        }
        _ => {
            c.fail(path, format!("{url:?} must be http://host:port (https is not supported yet: keep the registry on a private network)"));
            String::new()
        }
    }
}

/// The center signing key of hmac key `id`.
fn center_key(c: &mut Check, path: &str, id: &str, ring: &KeyRing) -> Arc<ring::hmac::Key> {
    match ring.sign(id).ok().and_then(|k| k.purpose_key(CENTER_KEY_LABEL).ok()) {
        Some(k) => Arc::new(k),
        None => {
            c.fail(path, format!("{id:?} is not a key of keys.hmac"));
            Arc::new(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &[0; 32]))
        }
    }
}

/// Checks `registries`.
pub(crate) fn registries(
    c: &mut Check,
    regs: &BTreeMap<String, schema::Registry>,
    ring: &KeyRing,
) -> BTreeMap<String, Registry> {
    let mut out = BTreeMap::new();
    for (name, r) in regs {
        let path = format!("registries.{name}");
        c.name(&path, name, "registry");
        let kind = match (&r.center, &r.etcd) {
            (Some(url), None) => {
                for (field, set) in [("prefix", r.prefix.is_some())] {
                    if set {
                        c.fail(format!("{path}.{field}"), "applies to etcd only");
                    }
                }
                let node = r.node.clone().unwrap_or_default();
                if node.is_empty() {
                    c.fail(format!("{path}.node"), "a center registry needs the client name this proxy signs as");
                } else {
                    c.name(&format!("{path}.node"), &node, "node");
                }
                let key_id = r.key.clone().unwrap_or_default();
                let key = center_key(c, &format!("{path}.key"), &key_id, ring);
                RegistryKind::Center { authority: authority(c, &format!("{path}.center"), url), node, key, key_id }
            }
            (None, Some(url)) => {
                for (field, set) in [("node", r.node.is_some()), ("key", r.key.is_some())] {
                    if set {
                        c.fail(format!("{path}.{field}"), "applies to a center only");
                    }
                }
                let prefix = r.prefix.clone().unwrap_or_else(|| "/fastproxy/services/".to_owned());
                if !prefix.ends_with('/') {
                    c.fail(format!("{path}.prefix"), "must end with /");
                }
                RegistryKind::Etcd { authority: authority(c, &format!("{path}.etcd"), url), prefix }
            }
            _ => {
                c.fail(&path, "set exactly one of center or etcd");
                continue;
            }
        };
        let timeout = r.timeout.map_or(Duration::from_secs(2), |d| d.0);
        if timeout.is_zero() {
            c.fail(format!("{path}.timeout"), "must be greater than zero");
        }
        out.insert(name.clone(), Registry { name: name.clone(), kind, timeout, cache: r.cache.clone() });
    }
    out
}

/// Checks `upstreams.<name>.discovery`.
pub(crate) fn discovery(
    c: &mut Check,
    path: &str,
    d: &schema::Discovery,
    regs: &BTreeMap<String, schema::Registry>,
) -> DiscoveryRef {
    if !regs.contains_key(&d.registry) {
        c.fail(format!("{path}.registry"), format!("{:?} is not in registries", d.registry));
    }
    c.name(&format!("{path}.service"), &d.service, "service");
    DiscoveryRef { registry: d.registry.clone(), service: d.service.clone() }
}

/// Checks `inbound.register`.
pub(crate) fn registration(
    c: &mut Check,
    r: &schema::Register,
    regs: &BTreeMap<String, schema::Registry>,
) -> Registration {
    let path = "inbound.register";
    if !regs.contains_key(&r.registry) {
        c.fail(format!("{path}.registry"), format!("{:?} is not in registries", r.registry));
    }
    let advertise = r.advertise.parse::<SocketAddr>().unwrap_or_else(|_| {
        c.fail(format!("{path}.advertise"), format!("{:?} is not an ip:port address", r.advertise));
        SocketAddr::from(([0, 0, 0, 0], 0))
    });
    if advertise.ip().is_unspecified() {
        c.fail(format!("{path}.advertise"), "must be the address callers reach, not 0.0.0.0 or ::");
    }
    let ttl = r.ttl.map_or(Duration::from_secs(10), |d| d.0);
    if ttl < MIN_TTL {
        c.fail(format!("{path}.ttl"), "must be at least 1s");
    }
    let weight = r.weight.unwrap_or(1);
    if weight == 0 || weight > 1000 {
        c.fail(format!("{path}.weight"), "must be 1 to 1000");
    }
    metadata(c, &format!("{path}.metadata"), &r.metadata);
    Registration {
        registry: r.registry.clone(),
        advertise,
        ttl,
        weight,
        metadata: r.metadata.clone(),
        deregister_delay: r.deregister_delay.map_or(Duration::from_secs(1), |d| d.0),
    }
}

/// Most metadata labels per instance, and the longest key or value.
pub const MAX_METADATA: usize = 16;
/// Longest metadata key or value, in bytes.
pub const MAX_METADATA_LEN: usize = 256;

fn metadata(c: &mut Check, path: &str, m: &BTreeMap<String, String>) {
    if m.len() > MAX_METADATA {
        c.fail(path, format!("at most {MAX_METADATA} labels"));
    }
    for (k, v) in m {
        if k.is_empty() || k.len() > MAX_METADATA_LEN || v.len() > MAX_METADATA_LEN {
            c.fail(
                format!("{path}.{k}"),
                format!("keys must be 1-{MAX_METADATA_LEN} bytes, values at most {MAX_METADATA_LEN}"),
            );
        }
    }
}

/// Checks `center`.
pub(crate) fn center(c: &mut Check, s: &schema::Center, ring: &KeyRing) -> Center {
    let listen = c.addrs("center.listen", &s.listen);
    if s.state_file.is_empty() {
        c.fail("center.state_file", "must name a file");
    }
    let max_ttl = s.max_ttl.map_or(Duration::from_secs(60), |d| d.0);
    if max_ttl < MIN_TTL {
        c.fail("center.max_ttl", "must be at least 1s");
    }
    if s.clients.is_empty() {
        c.fail("center.clients", "list at least one client: every request to the center is signed");
    }
    let mut clients = BTreeMap::new();
    for (name, cl) in &s.clients {
        let path = format!("center.clients.{name}");
        c.name(&path, name, "client");
        let key = center_key(c, &format!("{path}.key"), &cl.key, ring);
        for (i, svc) in cl.register.iter().enumerate() {
            if svc != "*" {
                c.name(&format!("{path}.register[{i}]"), svc, "service");
            }
        }
        for (i, doc) in cl.publish.iter().enumerate() {
            if doc != "*" {
                c.name(&format!("{path}.publish[{i}]"), doc, "config");
            }
        }
        clients.insert(
            name.clone(),
            CenterClient { key, key_id: cl.key.clone(), register: cl.register.clone(), publish: cl.publish.clone() },
        );
    }
    Center { listen, state_file: s.state_file.clone(), max_ttl, clients }
}

#[cfg(test)]
mod tests {
    const KEYS: &str =
        "keys:\n  hmac:\n    c1: { secret: \"808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f\" }\n";

    fn problems(yaml: &str) -> Vec<String> {
        match crate::from_yaml(&format!("{KEYS}{yaml}")) {
            Ok(_) => Vec::new(),
            Err(p) => p.0.into_iter().map(|p| format!("{}: {}", p.path, p.message)).collect(),
        }
    }

    const OUT: &str = "outbound:\n  listen: [\"127.0.0.1:1\"]\n  callers: { a: { sign_key: c1 } }\n  routes: { s: { upstream: p } }\n";

    #[test]
    fn discovery_settings_are_checked_with_their_paths() {
        let ok = format!(
            "{OUT}registries:\n  r: {{ center: \"http://127.0.0.1:9100\", node: n, key: c1 }}\n  e: {{ etcd: \"http://127.0.0.1:2379/\" }}\nupstreams:\n  p: {{ discovery: {{ registry: r, service: s }} }}\n"
        );
        assert_eq!(problems(&ok), Vec::<String>::new());
        let bad = format!(
            "{OUT}registries:\n  r: {{ center: \"https://x:1\", etcd: \"http://y:2\" }}\n  c: {{ center: \"http://127.0.0.1:9100\", key: nope, prefix: /x/ }}\n  e: {{ etcd: \"http://127.0.0.1\", node: n }}\nupstreams:\n  p: {{ backends: [\"127.0.0.1:2\"], discovery: {{ registry: missing, service: s }} }}\n"
        );
        let found = problems(&bad);
        for expected in [
            "registries.r: set exactly one of center or etcd",
            "registries.c.prefix: applies to etcd only",
            "registries.c.node: a center registry needs",
            "registries.c.key: \"nope\" is not a key of keys.hmac",
            "registries.e.node: applies to a center only",
            "registries.e.etcd: \"http://127.0.0.1\" must be http://host:port",
            "upstreams.p.backends: set backends or discovery, not both",
            "upstreams.p.discovery.registry: \"missing\" is not in registries",
        ] {
            assert!(found.iter().any(|f| f.starts_with(expected)), "missing {expected:?} in {found:#?}");
        }
    }

    #[test]
    fn a_registration_and_a_center_are_checked() {
        let inbound = "inbound:\n  listen: [\"127.0.0.1:3\"]\n  register: { registry: r, advertise: \"0.0.0.0:3\", ttl: 500ms, weight: 0 }\n  services: { s: { upstream: p } }\nupstreams:\n  p: { backends: [\"127.0.0.1:4\"] }\nregistries:\n  r: { etcd: \"http://127.0.0.1:2379\" }\n";
        let found = problems(inbound);
        for expected in [
            "inbound.register.advertise: must be",
            "inbound.register.ttl: must be at least 1s",
            "inbound.register.weight",
        ] {
            assert!(found.iter().any(|f| f.starts_with(expected)), "missing {expected:?} in {found:#?}");
        }
        let center = "center:\n  listen: [\"127.0.0.1:9100\"]\n  state_file: /tmp/x.json\n  clients: { a: { key: nope, register: [\"bad name!\"] } }\n";
        let found = problems(center);
        for expected in ["center.clients.a.key", "center.clients.a.register[0]"] {
            assert!(found.iter().any(|f| f.starts_with(expected)), "missing {expected:?} in {found:#?}");
        }
        let alone = "center:\n  listen: [\"127.0.0.1:9100\"]\n  state_file: /tmp/x.json\n  clients: { a: { key: c1, register: [s] } }\n";
        assert_eq!(problems(alone), Vec::<String>::new(), "a center alone is a valid config");
    }
}
