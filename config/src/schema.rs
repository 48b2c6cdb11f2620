//! The config file's shape, exactly as written in YAML. Pure data: no I/O and
//! no validation beyond what serde does (unknown fields are rejected
//! everywhere). [`super::validate`] turns it into a checked [`super::Config`].

use std::collections::BTreeMap;

use serde::Deserialize;

/// The whole file.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct File {
    /// Named keys.
    #[serde(default)]
    pub keys: Keys,
    /// The caller-side role.
    pub outbound: Option<Outbound>,
    /// The callee-side role.
    pub inbound: Option<Inbound>,
    /// Named upstream pools.
    #[serde(default)]
    pub upstreams: BTreeMap<String, Upstream>,
    /// The admin listener (metrics, health, config view).
    pub admin: Option<Admin>,
    /// Live reload.
    pub reload: Option<Reload>,
    /// Service registries this process registers in or discovers from, by
    /// name.
    #[serde(default)]
    pub registries: BTreeMap<String, Registry>,
    /// The built-in registry (`fastproxy center`): served by this process.
    pub center: Option<Center>,
    /// A remote config source layered over this file (local file only).
    pub remote: Option<Remote>,
}

/// `remote:` where the rest of the config comes from: exactly one of
/// `registry` (etcd or a center) and `apollo`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Remote {
    /// A `registries` entry (etcd or center) that holds the config.
    pub registry: Option<String>,
    /// etcd: the key holding the whole config; center: the config's name.
    pub key: Option<String>,
    /// etcd: a prefix under which each key `<prefix><section>` holds one
    /// top-level section (instead of `key`).
    pub prefix: Option<String>,
    /// An Apollo config service.
    pub apollo: Option<Apollo>,
    /// File keeping the last good remote config, for a cold start while the
    /// source is down.
    pub cache: Option<String>,
    /// Accept inline secrets from the remote source (default false: a
    /// remote config may name only `env:` and `file:` secrets).
    pub dangerous_inline_secrets: Option<bool>,
}

/// `remote.apollo`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Apollo {
    /// The config service: `http://host:port`.
    pub url: String,
    /// Apollo's appId.
    pub app_id: String,
    /// Cluster (default `default`).
    pub cluster: Option<String>,
    /// The namespace holding the YAML (its `content`), e.g. `fastproxy.yaml`.
    pub namespace: String,
    /// The app's access key secret, if Apollo requires signed requests
    /// (`env:NAME` or `file:PATH`, or inline).
    pub secret: Option<super::secret::Secret>,
}

/// `registries.<name>`: exactly one of `center` or `etcd`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registry {
    /// A fastproxy center: `http://host:port`.
    pub center: Option<String>,
    /// An etcd v3 cluster (its JSON gateway): `http://host:port`.
    pub etcd: Option<String>,
    /// Center: the client name this process signs its requests as.
    pub node: Option<String>,
    /// Center: id of the `keys.hmac` key it signs with.
    pub key: Option<String>,
    /// Etcd: the key prefix of registrations (default `/fastproxy/services/`).
    pub prefix: Option<String>,
    /// Longest wait for each request to the registry (default 2s).
    pub timeout: Option<Duration>,
    /// A file keeping the last members seen of each discovered service, so
    /// that a cold start can serve while the registry is unreachable.
    pub cache: Option<String>,
}

/// `upstreams.<name>.discovery`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Discovery {
    /// Name of a `registries` entry.
    pub registry: String,
    /// The service whose registered instances are the pool's backends.
    pub service: String,
}

/// `inbound.register`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Register {
    /// Name of a `registries` entry.
    pub registry: String,
    /// The `ip:port` outbound proxies reach this inbound proxy at.
    pub advertise: String,
    /// Lease time: the registration ends this long after the last keepalive
    /// (default 10s).
    pub ttl: Option<Duration>,
    /// Relative share of requests (default 1).
    pub weight: Option<u32>,
    /// Free-form labels (zone, version), up to 16.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// On SIGTERM, how long to keep accepting after deregistering, so that
    /// outbound proxies learn of it first (default 1s).
    pub deregister_delay: Option<Duration>,
}

/// `center:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Center {
    /// Listen addresses (`ip:port`).
    pub listen: Vec<String>,
    /// Where registrations are kept across restarts.
    pub state_file: String,
    /// Longest lease a client may ask for (default 60s).
    pub max_ttl: Option<Duration>,
    /// Who may use the center, by the name they sign as.
    pub clients: BTreeMap<String, CenterClient>,
}

/// `center.clients.<name>`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CenterClient {
    /// Id of the `keys.hmac` key the client signs with.
    pub key: String,
    /// Services the client may register instances of (any client may list
    /// and watch).
    #[serde(default)]
    pub register: Vec<String>,
    /// Config documents the client may publish (any client may read and
    /// watch them).
    #[serde(default)]
    pub publish: Vec<String>,
}

/// `reload:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reload {
    /// Reload when the config file or a `file:` secret changes (default
    /// false; SIGHUP always reloads).
    pub watch: Option<bool>,
    /// How often watched files are looked at (default 1s).
    pub poll: Option<Duration>,
}

/// `admin:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    /// Listen addresses; keep them off the data ports and off public networks.
    pub listen: Vec<String>,
}

/// `keys:`
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Keys {
    /// Encryption keys by id.
    #[serde(default)]
    pub aead: BTreeMap<String, AeadKey>,
    /// Signing keys by id.
    #[serde(default)]
    pub hmac: BTreeMap<String, HmacKey>,
}

/// `keys.aead.<id>`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AeadKey {
    /// `aes-256-gcm` or `chacha20-poly1305`.
    pub alg: String,
    /// 32 bytes as 64 hex digits, inline or `env:NAME` or `file:PATH`.
    pub secret: super::secret::Secret,
}

/// `keys.hmac.<id>`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HmacKey {
    /// As for [`AeadKey::secret`].
    pub secret: super::secret::Secret,
}

/// `outbound:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outbound {
    /// Listen addresses (`ip:port`).
    pub listen: Vec<String>,
    /// Fixed identity of the app this sidecar serves; when unset the caller
    /// names itself in `caller_header`.
    pub caller: Option<String>,
    /// Header naming the caller (default `x-fp-caller`; `C_ServiceName` for
    /// apps written for the Go FastProxy).
    pub caller_header: Option<String>,
    /// Header carrying the caller's timeout in milliseconds (default `x-fp-timeout-ms`).
    pub timeout_header: Option<String>,
    /// How long an idle keep-alive connection from an app stays open
    /// (default 60s).
    pub idle_timeout: Option<Duration>,
    /// Longest wait for the next piece of a request body (default 60s).
    pub body_timeout: Option<Duration>,
    /// Longest time to receive a whole request head, from the connection's
    /// start or the first byte of a keep-alive request (default 10s).
    pub header_timeout: Option<Duration>,
    /// Most connections open at once on this role's listeners; more get
    /// 503 `too_many_connections` (default 4096).
    pub max_connections: Option<usize>,
    /// Largest request body accepted from the app (default 64MiB).
    pub max_body: Option<Size>,
    /// Most headers a request from the app may carry (default 100).
    pub max_header_count: Option<usize>,
    /// Largest request head (request line and headers) from the app
    /// (default 64KiB).
    pub max_header_bytes: Option<Size>,
    /// Largest response body accepted from an inbound proxy (default 64MiB).
    pub max_response_body: Option<Size>,
    /// BENCHMARKS ONLY: forward without sealing (measures the proxy's own
    /// cost). Requests cross the network in clear, unauthenticated.
    pub dangerous_passthrough: Option<bool>,
    /// Sealing settings per caller.
    pub callers: BTreeMap<String, OutboundCaller>,
    /// Callee services and the pools of their inbound proxies.
    pub routes: BTreeMap<String, Route>,
}

/// `outbound.callers.<name>`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboundCaller {
    /// Encryption key id; unset means sign-only.
    pub aead_key: Option<String>,
    /// Signing key id.
    pub sign_key: String,
    /// `none` (default), `snappy`, `gzip`, `brotli`, `zstd`.
    pub codec: Option<String>,
    /// Codec level (0 = codec's fast default).
    pub level: Option<u32>,
    /// Bodies smaller than this are not compressed (default 256).
    pub compress_min: Option<Size>,
}

/// `outbound.routes.<service>`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Name of an `upstreams` pool of the callee's inbound proxies.
    pub upstream: String,
    /// Deadline applied when the caller sends no timeout header.
    pub timeout: Option<Duration>,
}

/// `inbound:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inbound {
    /// Listen addresses (`ip:port`).
    pub listen: Vec<String>,
    /// Accepted clock difference either way (default 60s).
    pub max_skew: Option<Duration>,
    /// How long an idle keep-alive connection from an outbound proxy stays
    /// open (default 60s).
    pub idle_timeout: Option<Duration>,
    /// Longest wait for the next piece of a request body (default 60s).
    pub body_timeout: Option<Duration>,
    /// Longest time to receive a whole request head, from the connection's
    /// start or the first byte of a keep-alive request (default 10s).
    pub header_timeout: Option<Duration>,
    /// Most connections open at once on this role's listeners; more get
    /// 503 `too_many_connections` (default 4096).
    pub max_connections: Option<usize>,
    /// Nonces remembered for replay detection (default 262144).
    pub replay_cache: Option<usize>,
    /// Largest opened request body (default 64MiB).
    pub max_body: Option<Size>,
    /// The replay journal shared by this process and the next (default:
    /// Pingora's pid file name + `.replay`).
    pub replay_journal: Option<String>,
    /// Most opened request plaintext held in memory, not yet written to
    /// callees, across all requests (default 16MiB).
    pub max_opened_buffer: Option<Size>,
    /// BENCHMARKS ONLY: accept plain requests without verification or policy.
    pub dangerous_passthrough: Option<bool>,
    /// Local services and the pools of their instances.
    pub services: BTreeMap<String, Service>,
    /// Who may call what. Callers not listed are refused.
    #[serde(default)]
    pub callers: BTreeMap<String, InboundCaller>,
    /// Register this proxy's services in a registry while it serves.
    pub register: Option<Register>,
    /// TLS on the listeners; with `client_ca`, mutual TLS.
    pub tls: Option<ServerTls>,
}

/// `inbound.tls`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTls {
    /// PEM file: the certificate chain, leaf first.
    pub cert: String,
    /// PEM file: its private key.
    pub key: String,
    /// PEM file of CA certificates: when set, every client must present a
    /// certificate they signed (mutual TLS).
    pub client_ca: Option<String>,
}

/// `upstreams.<name>.tls`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientTls {
    /// PEM file of the CA certificates that sign the backends' certificates.
    pub ca: String,
    /// The name the backends' certificates must carry (and the SNI sent).
    pub server_name: String,
    /// PEM file: a client certificate chain to present (mutual TLS).
    pub cert: Option<String>,
    /// PEM file: its private key.
    pub key: Option<String>,
}

/// `inbound.services.<name>`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// Name of an `upstreams` pool of the service's instances.
    pub upstream: String,
}

/// `inbound.callers.<name>`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InboundCaller {
    /// Protection the caller must use.
    #[serde(default)]
    pub require: Require,
    /// Key ids (encryption and signing) the caller may use.
    pub keys: Vec<String>,
    /// What the caller may call. Empty: nothing.
    #[serde(default)]
    pub allow: Vec<Allow>,
    /// With mutual TLS: the identity the connection's client certificate
    /// must carry, a URI SAN (`spiffe://example.org/song_service`) or
    /// `dns:<name>` for a DNS SAN.
    pub identity: Option<String>,
}

/// `inbound.callers.<name>.require`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Require {
    /// Bodies must be encrypted (default true).
    #[serde(default = "yes")]
    pub encrypt: bool,
    /// Messages must be signed (default true; protocol v1 always signs, so
    /// `false` is refused by validation rather than silently ignored).
    #[serde(default = "yes")]
    pub sign: bool,
}

impl Default for Require {
    fn default() -> Self {
        Require { encrypt: true, sign: true }
    }
}

fn yes() -> bool {
    true
}

/// One rule of `inbound.callers.<name>.allow`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Allow {
    /// Callee service name.
    pub service: String,
    /// Exact path (below the service), e.g. `/api/service`.
    pub path: Option<String>,
    /// Path prefix, e.g. `/api/`. Exactly one of `path`, `path_prefix`.
    pub path_prefix: Option<String>,
    /// Allowed methods, upper case; `["*"]` for any.
    pub methods: Vec<String>,
    /// Requests per second allowed on this rule (burst up to one second's worth).
    pub qps: Option<u32>,
}

/// `upstreams.<name>`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    /// Backends: `"ip:port"`, `"host:port"` (resolved through DNS) or
    /// `{ addr: "…", weight: 3 }`. Empty when `discovery` gives them.
    #[serde(default)]
    pub backends: Vec<BackendEntry>,
    /// Backends from a registry: the registered instances of a service.
    pub discovery: Option<Discovery>,
    /// TLS to the backends (verified; optionally with a client certificate).
    pub tls: Option<ClientTls>,
    /// `round_robin` (default), `random`, or `consistent` (Ketama).
    pub selection: Option<String>,
    /// For `consistent`: `caller` (default) or `header:<name>`.
    pub hash_key: Option<String>,
    /// Active health checks; none means backends are assumed up (passive
    /// ejection still applies).
    pub health_check: Option<HealthCheck>,
    /// Retry policy and budget.
    pub retry: Option<Retry>,
    /// Passive outlier ejection (on by default).
    pub outlier: Option<Outlier>,
    /// Most requests in flight to this pool at once (unlimited by default).
    pub max_inflight: Option<usize>,
    /// TCP connect timeout (default 1s).
    pub connect_timeout: Option<Duration>,
    /// Longest wait for each read from the backend (default 30s).
    pub read_timeout: Option<Duration>,
    /// Longest wait for each write to the backend (default 30s).
    pub write_timeout: Option<Duration>,
    /// How long an idle pooled connection is kept (default 55s).
    pub idle_timeout: Option<Duration>,
    /// Longest a request may take through this pool, retries included.
    pub total_timeout: Option<Duration>,
    /// How often backends given by host name are resolved again (default
    /// 10s).
    pub resolve_interval: Option<Duration>,
    /// `http1` (default) or `h2`: HTTP/2 to the backends, over TLS (ALPN)
    /// when `tls` is set, else h2c with prior knowledge.
    pub protocol: Option<String>,
    /// Most concurrent streams on one HTTP/2 connection to a backend
    /// (default 100).
    pub max_h2_streams: Option<usize>,
}

/// One backend of a pool.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum BackendEntry {
    /// `"ip:port"`, weight 1.
    Addr(String),
    /// `{ addr, weight }`.
    Weighted(WeightedBackend),
}

/// `{ addr: "ip:port", weight: 3 }`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightedBackend {
    /// `ip:port`.
    pub addr: String,
    /// Relative share of requests (default 1).
    pub weight: Option<u32>,
}

/// `upstreams.<name>.health_check`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    /// Probe with an HTTP request instead of a TCP connect.
    pub http: Option<HttpCheck>,
    /// Time between probes (default 1s).
    pub interval: Option<Duration>,
    /// Probe timeout (default 1s).
    pub timeout: Option<Duration>,
    /// Consecutive successes to mark a backend up (default 1).
    pub rise: Option<usize>,
    /// Consecutive failures to mark a backend down (default 1).
    pub fall: Option<usize>,
}

/// `upstreams.<name>.health_check.http`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpCheck {
    /// Path to GET (default `/`).
    pub path: Option<String>,
    /// Status that means healthy (default 200).
    pub expect_status: Option<u16>,
    /// `Host` header (default `localhost`).
    pub host: Option<String>,
}

/// `upstreams.<name>.retry`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retry {
    /// Most attempts per request, the first included (default 3).
    pub attempts: Option<u32>,
    /// Retries allowed as a share of requests over the last 10 s (default 0.2).
    pub budget_ratio: Option<f64>,
    /// Retries always allowed per 10 s, whatever the ratio (default 10).
    pub budget_min: Option<u32>,
}

/// `upstreams.<name>.outlier`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outlier {
    /// Set false to disable passive ejection.
    pub enabled: Option<bool>,
    /// Consecutive failures that eject a backend (default 5).
    pub consecutive_failures: Option<u32>,
    /// First ejection time; doubles on each repeat (default 10s).
    pub base_ejection: Option<Duration>,
    /// Longest ejection (default 300s).
    pub max_ejection: Option<Duration>,
    /// Most backends ejected at once, percent of the pool (default 50).
    pub max_ejected_percent: Option<u32>,
    /// Response statuses that count as failures (default [502, 503, 504]).
    pub statuses: Option<Vec<u16>>,
}

/// A duration written as `250ms`, `5s`, `2m`, `1h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Duration(pub std::time::Duration);

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        super::units::parse_duration(&text).map(Duration).map_err(serde::de::Error::custom)
    }
}

/// A size written as a byte count or with a unit: `512`, `64KiB`, `16MiB`, `1GiB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bytes(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Bytes(n) => Ok(Size(n)),
            Raw::Text(t) => super::units::parse_size(&t).map(Size).map_err(serde::de::Error::custom),
        }
    }
}
