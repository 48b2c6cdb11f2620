//! Configuration: the file's schema, loading, validation, and the checked,
//! immutable [`Config`] the proxy runs on.
//!
//! A `Config` is only ever built whole by [`load`] (or [`from_yaml`]); the
//! roles read it through an `Arc` snapshot, so a reload swaps it atomically.

mod check;
pub mod layers;
mod name;
pub mod overrides;
pub mod policy;
pub mod registry;
pub mod remote;
pub mod schema;
pub mod secret;
pub mod tls;
pub mod units;
mod validate;
pub mod view;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use filters::{Algorithm, Codec, CompressOptions, KeyRing};

use crate::policy::CallerPolicy;

pub use name::Name;

/// A checked configuration.
pub struct Config {
    /// Every key, ready for sealing and verification.
    pub keys: KeyRing,
    /// Key ids with their algorithm (`None` for hmac keys), for the config view.
    pub key_algs: BTreeMap<String, Option<Algorithm>>,
    /// The caller-side role, when configured.
    pub outbound: Option<Outbound>,
    /// The callee-side role, when configured.
    pub inbound: Option<Inbound>,
    /// Upstream pools by name.
    pub upstreams: BTreeMap<String, Upstream>,
    /// Admin listen addresses, when configured.
    pub admin: Option<Vec<SocketAddr>>,
    /// Live reload settings.
    pub reload: Reload,
    /// The files named by `file:` secrets (watched with the config file).
    pub secret_files: Vec<String>,
    /// Registry clients by name.
    pub registries: BTreeMap<String, registry::Registry>,
    /// The built-in registry, when this process serves it.
    pub center: Option<registry::Center>,
    /// The remote config source layered over the local file, if any.
    pub remote: Option<remote::Remote>,
}

/// How the running process picks up a changed config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reload {
    /// Reload on its own when the config file or a `file:` secret it names
    /// changes (SIGHUP always reloads).
    pub watch: bool,
    /// How often the watched files are looked at; a change is applied once
    /// a look finds them unchanged since the previous one.
    pub poll: Duration,
}

/// The caller-side role's settings.
pub struct Outbound {
    /// Listen addresses.
    pub listen: Vec<SocketAddr>,
    /// Fixed caller identity, when this sidecar serves one app.
    pub caller: Option<Name>,
    /// Header naming the caller (lower case).
    pub caller_header: String,
    /// Header carrying the caller's timeout in ms (lower case).
    pub timeout_header: String,
    /// Idle keep-alive timeout of app connections, seconds.
    pub idle_timeout_s: u64,
    /// Longest wait for the next piece of a request body.
    pub body_timeout: std::time::Duration,
    /// Limits on the listeners' connections.
    pub connections: ConnectionLimits,
    /// Headers of the app's request replaced by the sealed form: the caller
    /// and timeout headers, Content-Length and Content-Type (named once at
    /// load, not per request).
    pub replaced_headers: Vec<::http::HeaderName>,
    /// Largest request body accepted from the app.
    pub max_body: u64,
    /// Largest opened response body.
    pub max_response_body: u64,
    /// Most headers in an app's request.
    pub max_header_count: usize,
    /// Largest app request head, bytes.
    pub max_header_bytes: u64,
    /// Forward without sealing (benchmarks only).
    pub dangerous_passthrough: bool,
    /// Sealing settings per caller.
    pub callers: HashMap<Name, Arc<Seal>>,
    /// Routes per callee service.
    pub routes: HashMap<Name, Route>,
}

/// Limits on the connections of one role's listeners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Most connections open at once; more get 503 `too_many_connections`.
    pub max_connections: usize,
    /// Longest time to receive a whole request head.
    pub header_timeout: std::time::Duration,
}

/// How one caller's requests are sealed.
#[derive(Debug, Clone)]
pub struct Seal {
    /// Encryption key id and its algorithm; `None` for sign-only.
    pub aead: Option<(String, Algorithm)>,
    /// Signing key id.
    pub sign_key: String,
    /// Compression codec.
    pub codec: Codec,
    /// Compression level and threshold.
    pub compress: CompressOptions,
}

/// Where requests for one callee go.
#[derive(Debug, Clone)]
pub struct Route {
    /// Pool of the callee's inbound proxies.
    pub upstream: String,
    /// Deadline when the caller sends no timeout header.
    pub timeout: Option<Duration>,
}

/// The callee-side role's settings.
pub struct Inbound {
    /// Listen addresses.
    pub listen: Vec<SocketAddr>,
    /// Accepted clock difference, ms.
    pub max_skew_ms: u64,
    /// Idle keep-alive timeout of peer connections, seconds.
    pub idle_timeout_s: u64,
    /// Longest wait for the next piece of a request body.
    pub body_timeout: std::time::Duration,
    /// Limits on the listeners' connections.
    pub connections: ConnectionLimits,
    /// Replay cache capacity.
    pub replay_cache: usize,
    /// Where the replay journal lives (`None`: beside the pid file).
    pub replay_journal: Option<String>,
    /// Largest opened request body.
    pub max_body: u64,
    /// Most opened plaintext held, not yet written to callees.
    pub max_opened_buffer: u64,
    /// Accept plain requests without verification (benchmarks only).
    pub dangerous_passthrough: bool,
    /// Pool name per local service.
    pub services: HashMap<Name, String>,
    /// Policy per caller; callers not here are refused.
    pub callers: HashMap<Name, CallerPolicy>,
    /// Registration of its services in a registry, when configured.
    pub register: Option<registry::Registration>,
    /// TLS (and mutual TLS) on the listeners, when configured.
    pub tls: Option<tls::ServerTls>,
}

/// The HTTP version a pool speaks to its backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1, one request at a time per pooled connection.
    Http1,
    /// HTTP/2: over TLS with ALPN `h2`, else h2c with prior knowledge;
    /// requests are multiplexed on shared connections.
    H2,
}

impl Protocol {
    /// The config name.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Http1 => "http1",
            Protocol::H2 => "h2",
        }
    }
}

/// One upstream pool's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Upstream {
    /// Backend addresses and weights.
    pub backends: Vec<(SocketAddr, u32)>,
    /// Backends given by host name: host, port, weight; each name stands for
    /// every address it resolves to.
    pub names: Vec<(String, u16, u32)>,
    /// How often the names are resolved again.
    pub resolve_interval: Duration,
    /// How a backend is chosen.
    pub selection: Selection,
    /// Active health checks, when configured.
    pub health: Option<Health>,
    /// Retry limits.
    pub retry: RetryPolicy,
    /// Passive ejection, unless disabled.
    pub outlier: Option<OutlierPolicy>,
    /// Most requests in flight at once.
    pub max_inflight: Option<usize>,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Per-read timeout.
    pub read_timeout: Duration,
    /// Per-write timeout.
    pub write_timeout: Duration,
    /// Idle pooled connection lifetime.
    pub idle_timeout: Duration,
    /// Longest a request may take through the pool, retries included.
    pub total_timeout: Option<Duration>,
    /// Backends from a registry instead of (empty) `backends`/`names`.
    pub discovery: Option<registry::DiscoveryRef>,
    /// The HTTP version spoken to the backends.
    pub protocol: Protocol,
    /// Most concurrent streams on one HTTP/2 connection.
    pub max_h2_streams: usize,
    /// TLS to the backends, when configured.
    pub tls: Option<tls::ClientTls>,
}

/// Backend selection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Weighted round robin.
    RoundRobin,
    /// Weighted random.
    Random,
    /// Ketama consistent hashing on a request key.
    Consistent(HashKey),
}

/// What consistent hashing keys on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    /// The caller's name.
    Caller,
    /// A request header's value (lower-case name).
    Header(String),
}

/// Active health check settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Health {
    /// TCP connect or HTTP request.
    pub probe: Probe,
    /// Time between probes.
    pub interval: Duration,
    /// Probe timeout.
    pub timeout: Duration,
    /// Consecutive successes to mark up.
    pub rise: usize,
    /// Consecutive failures to mark down.
    pub fall: usize,
}

/// What a health probe does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// Open a TCP connection.
    Tcp,
    /// `GET path` with `Host: host`, healthy on `status`.
    Http {
        /// Request path.
        path: String,
        /// Expected status.
        status: u16,
        /// Host header.
        host: String,
    },
}

/// Retry limits of a pool.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Most attempts per request, the first included.
    pub attempts: u32,
    /// Retries allowed as a share of requests in the window.
    pub budget_ratio: f64,
    /// Retries always allowed per window.
    pub budget_min: u32,
}

/// Passive outlier ejection settings.
#[derive(Debug, Clone, PartialEq)]
pub struct OutlierPolicy {
    /// Consecutive failures that eject.
    pub consecutive_failures: u32,
    /// First ejection time (doubles per repeat).
    pub base_ejection: Duration,
    /// Longest ejection.
    pub max_ejection: Duration,
    /// Most backends ejected at once, percent.
    pub max_ejected_percent: u32,
    /// Response statuses counted as failures.
    pub statuses: Vec<u16>,
}

/// The settings of `new` that a running process cannot take from a reload
/// (they are held by its sockets or by state that outlives a reload), each
/// as a problem at its field path; empty when `new` can replace `old` live.
pub fn needs_restart(old: &Config, new: &Config) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut differs = |path: &str, changed: bool| {
        if changed {
            out.push(Problem {
                path: path.to_owned(),
                message: "cannot change on a reload (it needs new sockets or process state): upgrade the process (scripts/upgrade.sh) to apply it".to_owned(),
            });
        }
    };
    differs("admin.listen", old.admin != new.admin);
    differs("registries", old.registries != new.registries);
    differs("remote", old.remote != new.remote);
    differs("center.listen", old.center.as_ref().map(|c| &c.listen) != new.center.as_ref().map(|c| &c.listen));
    differs(
        "center.state_file",
        old.center.as_ref().map(|c| &c.state_file) != new.center.as_ref().map(|c| &c.state_file),
    );
    match (&old.outbound, &new.outbound) {
        (Some(a), Some(b)) => {
            differs("outbound.listen", a.listen != b.listen);
            differs("outbound.max_connections", a.connections.max_connections != b.connections.max_connections);
            differs("outbound.header_timeout", a.connections.header_timeout != b.connections.header_timeout);
        }
        (a, b) => differs("outbound", a.is_some() != b.is_some()),
    }
    match (&old.inbound, &new.inbound) {
        (Some(a), Some(b)) => {
            differs("inbound.listen", a.listen != b.listen);
            differs("inbound.max_connections", a.connections.max_connections != b.connections.max_connections);
            differs("inbound.header_timeout", a.connections.header_timeout != b.connections.header_timeout);
            differs("inbound.max_skew", a.max_skew_ms != b.max_skew_ms);
            differs("inbound.replay_cache", a.replay_cache != b.replay_cache);
            differs("inbound.replay_journal", a.replay_journal != b.replay_journal);
            differs("inbound.max_opened_buffer", a.max_opened_buffer != b.max_opened_buffer);
            differs("inbound.register", a.register != b.register);
            differs("inbound.tls", a.tls.is_some() != b.tls.is_some());
            differs(
                "inbound.tls.client_ca",
                a.tls.as_ref().is_some_and(|t| t.client_ca.is_some())
                    != b.tls.as_ref().is_some_and(|t| t.client_ca.is_some()),
            );
        }
        (a, b) => differs("inbound", a.is_some() != b.is_some()),
    }
    out
}

/// One problem in a config file, with the path of the field it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted field path, e.g. `inbound.callers.song_service.keys[1]`.
    pub path: String,
    /// What is wrong (never a secret's value).
    pub message: String,
}

/// Every problem found in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}: {}", p.path, p.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

/// Reads, parses and validates the config file at `path`.
pub fn load(path: &str) -> Result<Config, Problems> {
    // The text may hold inline secrets: wiped when dropped.
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path)
            .map_err(|e| Problems(vec![Problem { path: path.to_owned(), message: format!("cannot read: {e}") }]))?,
    );
    from_yaml(&text)
}

/// Parses and validates config text.
pub fn from_yaml(text: &str) -> Result<Config, Problems> {
    // serde stops at the first schema error (unknown field, wrong type); the
    // path-tracking wrapper names the field it was in.
    let mut path = String::new();
    let file: schema::File = serde_saphyr::with_deserializer_from_str(text, |de| {
        serde_path_to_error::deserialize(de).map_err(|e| {
            path = e.path().to_string();
            e.into_inner()
        })
    })
    .map_err(|e| schema_problem(&path, e.without_snippet().to_string()))?;
    validate::validate(file)
}

/// Parses config text, applies the environment's overrides
/// ([`overrides`]: `FASTPROXY__…` among `vars`) and validates the result;
/// also returns the overrides applied.
pub fn from_yaml_with_env(
    text: &str,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<(Config, Vec<overrides::Override>), Problems> {
    let vars = overrides::select(vars);
    if vars.is_empty() {
        return from_yaml(text).map(|c| (c, Vec::new()));
    }
    let mut tree: serde_json::Value = serde_saphyr::from_str(text)
        .map_err(|e| Problems(vec![Problem { path: "(root)".to_owned(), message: e.without_snippet().to_string() }]))?;
    let applied = overrides::apply(&mut tree, &vars).map_err(Problems)?;
    let mut path = String::new();
    let file: schema::File = serde_path_to_error::deserialize(tree).map_err(|e| {
        path = e.path().to_string();
        schema_problem(&path, e.into_inner().to_string())
    })?;
    validate::validate(file).map(|c| (c, applied))
}

/// A schema error at `path`. No source snippet: the lines around a mistake
/// may hold inline secrets. Nor the value of a mistyped secret.
pub(crate) fn schema_problem(path: &str, message: String) -> Problems {
    let path = if path.is_empty() || path == "." { "(root)".to_owned() } else { path.to_owned() };
    let message = if path.ends_with(".secret") {
        "must be a string: 64 hex digits, env:NAME or file:PATH".to_owned()
    } else {
        message
    };
    Problems(vec![Problem { path, message }])
}
