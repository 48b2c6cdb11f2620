//! Assembles a gateway: the config becomes the first generation, the roles
//! it asks for become Pingora services behind their connection limits, and
//! the background services that outlive any one generation (lifecycle, heap
//! trim, health checks, reload triggers) are added beside them.
//!
//! ```no_run
//! # fn main() -> Result<(), String> {
//! let mut server = pingora::server::Server::new(None).map_err(|e| e.to_string())?;
//! server.bootstrap();
//! let yaml = std::fs::read_to_string("conf/fastproxy.yaml").map_err(|e| e.to_string())?;
//! let gateway = fastproxy::Gateway::load(fastproxy::Source::Yaml(yaml))?;
//! let handle = gateway.add_to(&mut server)?;
//! // later, from any thread: handle.reload_yaml(&new_yaml)
//! # drop(handle);
//! server.run_forever();
//! # }
//! ```

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use pingora::listeners::ListenerConfig;
use pingora::protocols::l4::stream::L4BufferSettings;
use pingora::proxy::http_proxy;
use pingora::server::Server;
use pingora::services::background::background_service;

use crate::config::{self, Config, ConnectionLimits};
use crate::error::Role;
use crate::metrics::Metrics;
use crate::reload::{Failure, Reloader};
use crate::state::{Origin, Shared, Snapshot};
use crate::{
    admin, center, discovery, fd_limit, lifecycle, listener, opened, pools, reload, remote, replay_state, roles,
};

/// Where a gateway's config comes from.
pub enum Source {
    /// A config file: reloaded from it on SIGHUP, `POST /reload`, or (with
    /// `reload.watch`) when it changes.
    File(String),
    /// Config YAML given by the application; reloaded through the
    /// [`Handle`] only.
    Yaml(String),
    /// A checked config built in code (e.g. with
    /// [`config::from_yaml_with_env`]); reloaded through the [`Handle`] only.
    Config(Box<Config>),
}

/// A loaded gateway, not yet added to a server.
pub struct Gateway {
    shared: Shared,
    metrics: Arc<Metrics>,
    path: Option<String>,
    /// The remote config source and the version in force, if any.
    remote: Option<(config::remote::Remote, remote::Doc)>,
}

/// Reloads a running gateway (cheap to clone, usable from any thread).
#[derive(Clone)]
pub struct Handle {
    reloader: Arc<Reloader>,
    registrar: Option<Arc<discovery::register::Registrar>>,
    draining: lifecycle::Draining,
}

impl Handle {
    /// The stop signals to run the server with
    /// (`server.run(RunArgs { shutdown_signal: handle.stop_signals() })`):
    /// Pingora's, except that SIGTERM deregisters from the registry before
    /// the listeners close.
    pub fn stop_signals(&self) -> Box<dyn pingora::server::ShutdownSignalWatch> {
        Box::new(discovery::register::StopSignals::new(self.registrar.clone(), self.draining.clone()))
    }

    /// Reads the config file again (a gateway loaded from a file).
    pub fn reload(&self) -> Result<u64, Failure> {
        self.reloader.reload("handle")
    }

    /// Applies config YAML; returns the new generation's number.
    pub fn reload_yaml(&self, text: &str) -> Result<u64, Failure> {
        self.reloader.reload_yaml(text, "handle")
    }

    /// Applies a checked config built in code.
    pub fn reload_config(&self, config: Config) -> Result<u64, Failure> {
        self.reloader.reload_config(config, "handle")
    }

    /// The running generation and the last failed reload (as in `/config`).
    pub fn status(&self) -> serde_json::Value {
        self.reloader.status()
    }
}

impl Gateway {
    /// Loads and checks the config (environment overrides applied to file and
    /// YAML sources) and builds its first generation. Registers the
    /// gateway's metrics in the process's Prometheus registry: one gateway
    /// per process.
    pub fn load(source: Source) -> Result<Self, String> {
        let mut remote = None;
        let (config, text, path) = match source {
            Source::File(path) => {
                let text = reload::read_config(&path)?;
                let bootstrap = config::layers::bootstrap(&text, std::env::vars())
                    .map_err(|p| format!("{path}: {} problem(s)\n{p}", p.0.len()))?;
                match bootstrap {
                    None => (checked(&text, &path)?, text, Some(path)),
                    Some(settings) => {
                        let (config, doc) = layered(&text, &path, &settings)?;
                        remote = Some((settings, doc));
                        (config, text, Some(path))
                    }
                }
            }
            Source::Yaml(yaml) => {
                let text = zeroize::Zeroizing::new(yaml);
                (checked(&text, "config")?, text, None)
            }
            Source::Config(config) => (*config, zeroize::Zeroizing::new(String::new()), None),
        };
        let metrics = Arc::new(Metrics::register().map_err(|e| format!("registering metrics: {e}"))?);
        discovery::follow::seed_from_caches(&config);
        let origin = Origin::new(1, text.as_bytes());
        drop(text);
        let snapshot = Snapshot::new(config, origin, &metrics).map_err(|e| format!("building upstream pools: {e}"))?;
        Ok(Gateway { shared: Arc::new(ArcSwap::from_pointee(snapshot)), metrics, path, remote })
    }

    /// True when the config has a `center:` section (the process serves the
    /// built-in registry).
    pub fn serves_center(&self) -> bool {
        self.shared.load().config.center.is_some()
    }

    /// Adds the roles the config asks for, its admin listener and the
    /// background services to `server` (bootstrapped, not yet running);
    /// returns the handle that reloads them.
    pub fn add_to(self, server: &mut Server) -> Result<Handle, String> {
        let Gateway { shared, metrics, path, remote } = self;
        if path.is_some() {
            reload::ignore_sighup_until_ready();
        }
        let mut reloader = Reloader::new(path.as_deref(), shared.clone(), metrics.clone());
        let mut follower = None;
        if let Some((settings, doc)) = remote {
            let source = remote::connect(&settings)?;
            reloader = reloader.with_remote(settings, doc);
            follower = Some(source);
        }
        let reloader = Arc::new(reloader);
        if let Some(source) = follower {
            let follow = remote::follow::RemoteFollower::new(source, reloader.clone(), metrics.clone());
            server.add_service(background_service("remote config", follow));
        }
        let snap = shared.load();
        let rng = ring::rand::SystemRandom::new();
        let nonces = Arc::new(filters::NonceSource::new(&rng).map_err(|e| format!("seeding nonces: {e}"))?);
        let draining = lifecycle::Draining::default();
        let nofile = fd_limit::raise();
        let role_count = usize::from(snap.config.outbound.is_some())
            + usize::from(snap.config.inbound.is_some())
            + usize::from(snap.config.center.is_some());
        let fitted = |mut limits: ConnectionLimits, role: &str| {
            if let Some(n) = nofile {
                fd_limit::fit(&mut limits, role, fd_limit::share(n, role_count), n);
            }
            limits
        };
        let mut replay = None;
        if let Some(out) = &snap.config.outbound {
            let role =
                roles::outbound::Outbound::new(shared.clone(), metrics.clone(), nonces.clone(), draining.clone());
            let limits = fitted(out.connections, "outbound");
            let idle = Duration::from_secs(out.idle_timeout_s);
            add_role(server, Role::Outbound, role, &out.listen, &|| Ok(None), (limits, idle), &metrics)?;
            if out.dangerous_passthrough {
                log::warn!("outbound.dangerous_passthrough is on: requests leave UNSEALED (benchmarks only)");
            }
        }
        if let Some(inb) = &snap.config.inbound {
            let journal = match &inb.replay_journal {
                Some(path) => path.clone(),
                None => journal_path(&server.configuration.pid_file),
            };
            let state = replay_state::ReplayState::open(&journal, inb.max_skew_ms, inb.replay_cache)?;
            replay = Some(state.clone());
            let opened = opened::OpenBudget::new(inb.max_opened_buffer);
            let role =
                roles::inbound::Inbound::new(shared.clone(), state, opened, metrics.clone(), nonces, draining.clone());
            let mutual = inb.tls.as_ref().map(|t| t.client_ca.is_some());
            let tls_shared = shared.clone();
            let tls = move || mutual.map(|m| crate::tls::listener_settings(&tls_shared, m)).transpose();
            let limits = fitted(inb.connections, "inbound");
            let idle = Duration::from_secs(inb.idle_timeout_s);
            add_role(server, Role::Inbound, role, &inb.listen, &tls, (limits, idle), &metrics)?;
            if inb.dangerous_passthrough {
                log::warn!("inbound.dangerous_passthrough is on: requests are NOT verified (benchmarks only)");
            }
        }
        let watch = lifecycle::Lifecycle::new(draining.clone(), replay, server.watch_execution_phase());
        server.add_service(background_service("lifecycle", watch));
        server.add_service(background_service("heap trim", listener::heap_trim::HeapTrim));
        if let Some(listen) = &snap.config.admin {
            let mut svc = pingora::services::listening::Service::new(
                "fastproxy admin".to_owned(),
                admin::server(shared.clone(), reloader.clone()),
            );
            for addr in listen {
                svc.add_tcp(&addr.to_string());
            }
            server.add_service(svc);
            log::info!("admin listening on {listen:?}");
        }
        if let Some(settings) = &snap.config.center {
            let state = center::server::Center::open(settings, shared.clone(), metrics.clone())?;
            let app = pingora::apps::http_app::HttpServer::new_app(center::server::App(state.clone()));
            let limits = ConnectionLimits { max_connections: 1024, header_timeout: std::time::Duration::from_secs(10) };
            let guarded =
                listener::Guarded::new(app, Role::Center, fitted(limits, "center"), metrics.listener(Role::Center));
            let mut svc = pingora::services::listening::Service::new("fastproxy center".to_owned(), guarded);
            for addr in &settings.listen {
                svc.add_tcp(&addr.to_string());
            }
            server.add_service(svc);
            server.add_service(background_service("center lease sweeper", center::server::Sweeper(state)));
            log::info!("center listening on {:?}", settings.listen);
        }
        if !snap.config.registries.is_empty() {
            let follower = Arc::new(discovery::follow::Follower::new(shared.clone(), metrics.clone(), &snap.config));
            server.add_service(background_service("discovery", discovery::follow::FollowService(follower)));
        }
        let registrar =
            match snap.config.inbound.as_ref().and_then(|i| i.register.as_ref()) {
                Some(reg) => {
                    let client =
                        snap.config.registries.get(&reg.registry).map(discovery::connect).ok_or_else(|| {
                            format!("inbound.register.registry {:?} is not in registries", reg.registry)
                        })?;
                    let registrar =
                        discovery::register::Registrar::new(reg.clone(), client, shared.clone(), metrics.clone());
                    server.add_service(background_service(
                        "registration",
                        discovery::register::RegisterService(registrar.clone()),
                    ));
                    Some(registrar)
                }
                None => None,
            };
        let health_shared = shared.clone();
        let health = pools::HealthDriver::new(move || health_shared.load().pools.iter().cloned().collect());
        server.add_service(background_service("health checks", health));
        if path.is_some() {
            server.add_service(background_service("reload", reload::Triggers::new(reloader.clone())));
        }
        Ok(Handle { reloader, registrar, draining })
    }
}

/// How long a start waits for the remote config source before it serves
/// from the cache.
const REMOTE_START_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The config of the file `text` at `path` layered with its remote source:
/// the source's version if it is valid, else the cached one (a cold start
/// while the source is down, or holds an invalid config).
fn layered(text: &str, path: &str, settings: &config::remote::Remote) -> Result<(Config, remote::Doc), String> {
    let compose = |doc: &remote::Doc| {
        if let Some(why) = &doc.invalid {
            return Err(format!("{path} with remote revision {}: {why}", doc.revision));
        }
        config::layers::from_layers(text, Some((&doc.tree, settings.dangerous_inline_secrets)), std::env::vars())
            .map_err(|p| format!("{path} with remote revision {}: {} problem(s)\n{p}", doc.revision, p.0.len()))
    };
    let doc = remote::initial(settings, REMOTE_START_WAIT)?;
    let (config, doc) = match compose(&doc) {
        Ok((config, overrides)) => {
            for o in &overrides {
                log::info!("config: {} = {} from the environment ({})", o.path, o.shown, o.var);
            }
            (config, doc)
        }
        Err(e) if doc.from == "source" && settings.cache.is_some() => {
            let cache = settings.cache.as_deref().unwrap_or_default();
            log::error!("{e}\nserving the last good remote config from the cache {cache}");
            let cached = remote::read_cache(cache).map_err(|c| format!("{e}\nand {c}"))?;
            let (config, _) = compose(&cached)?;
            (config, cached)
        }
        Err(e) => return Err(e),
    };
    if let (Some(cache), "source") = (&settings.cache, doc.from) {
        remote::write_cache(cache, &doc);
    }
    Ok((config, doc))
}

/// Parses and checks config `text` from `name`, environment overrides
/// applied (and logged).
fn checked(text: &str, name: &str) -> Result<Config, String> {
    let (config, overrides) = config::from_yaml_with_env(text, std::env::vars())
        .map_err(|p| format!("{name}: {} problem(s)\n{p}", p.0.len()))?;
    for o in &overrides {
        log::info!("config: {} = {} from the environment ({})", o.path, o.shown, o.var);
    }
    Ok(config)
}

/// The replay journal's default place: Pingora's pid file name with
/// `.replay` added (one journal per deployment, shared by its old and new
/// processes).
fn journal_path(pid_file: &str) -> String {
    format!("{pid_file}.replay")
}

/// Read buffer of each app/peer connection. Pingora's default is 64 KiB per
/// connection; with 8 KiB the proxies' peak RSS in the benchmark fell from
/// 42-52 to 29-38 MiB at the same throughput for sealed traffic (headers over
/// 8 KiB still pass; a body that arrived with its headers may take one more
/// read). docs/BENCHMARKS.md has the figures.
const DOWNSTREAM_READ_BUFFER: usize = 8 * 1024;

/// Pingora's bounded HTTP/2 server settings (64 KiB of decoded headers, 100
/// concurrent streams) with larger flow-control windows
/// ([`crate::http_util::H2_STREAM_WINDOW`]).
fn h2_server_options() -> pingora::protocols::http::v2::server::H2Options {
    let mut options = pingora::protocols::http::v2::server::default_h2_options();
    options.initial_window_size(crate::http_util::H2_STREAM_WINDOW);
    options.initial_connection_window_size(crate::http_util::H2_CONNECTION_WINDOW);
    options
}

/// The TLS settings of one listener, or none for plain TCP.
type TlsFor<'a> = &'a dyn Fn() -> Result<Option<pingora::listeners::tls::TlsSettings>, String>;

/// Adds a proxy role as a Pingora service listening on `listen` (each
/// listener with TLS when `tls` gives settings), behind its connection
/// limits. Every listener speaks HTTP/1.1 and HTTP/2: h2c (prior knowledge)
/// beside HTTP/1.1 on plain TCP, ALPN `h2`/`http/1.1` on TLS. An HTTP/2
/// connection with no open stream for `h2_idle` is closed.
fn add_role<R>(
    server: &mut Server,
    name: Role,
    role: R,
    listen: &[std::net::SocketAddr],
    tls: TlsFor<'_>,
    (limits, h2_idle): (ConnectionLimits, Duration),
    metrics: &Metrics,
) -> Result<(), String>
where
    R: pingora::proxy::ProxyHttp + Send + Sync + 'static,
    R::CTX: Send + Sync,
{
    let mut proxy = http_proxy(&server.configuration, role);
    let mut options = pingora::apps::HttpServerOptions::default();
    options.h2c = true;
    options.h2_idle_timeout = Some(h2_idle);
    proxy.server_options = Some(options);
    proxy.h2_options = Some(h2_server_options());
    let app = listener::Guarded::new(proxy, name, limits, metrics.listener(name));
    let mut svc = pingora::services::listening::Service::new(format!("fastproxy {}", name.name()), app);
    let mut secure = false;
    for addr in listen {
        let buffers = L4BufferSettings::default().read(DOWNSTREAM_READ_BUFFER);
        let mut endpoint = ListenerConfig::tcp(addr.to_string()).l4_buffer(buffers);
        if let Some(settings) = tls()? {
            endpoint = endpoint.tls(settings);
            secure = true;
        }
        svc.add_listener(endpoint);
    }
    server.add_service(svc);
    log::info!("{} role listening on {listen:?}{}", name.name(), if secure { " (TLS)" } else { "" });
    Ok(())
}
