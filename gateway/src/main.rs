//! fastproxy: a service-to-service security gateway on Pingora.
//!
//! One binary runs the outbound role (seal requests from a local app), the
//! inbound role (verify and open requests for a local service), or both, as
//! its config file says. Composition happens here, explicitly: config →
//! snapshot → roles → Pingora services.

mod admin;
#[cfg(feature = "alloc-count")]
mod alloc;
mod error;
mod fd_limit;
mod http;
mod lifecycle;
mod listener;
mod logging;
mod metrics;
mod opened;
mod pools;
mod reload;
mod replay_state;
mod roles;
mod state;

use std::process::ExitCode;
use std::sync::Arc;

use arc_swap::ArcSwap;
use clap::{Parser, Subcommand};
use pingora::listeners::ListenerConfig;
use pingora::protocols::l4::stream::L4BufferSettings;
use pingora::proxy::http_proxy;
use pingora::server::configuration::Opt;
use pingora::server::Server;

use ::config;
use ::config::policy;

use crate::error::Role;
use crate::state::Snapshot;

#[cfg(feature = "alloc-count")]
#[global_allocator]
static ALLOCATOR: alloc::Counting = alloc::Counting;

#[cfg(all(feature = "mimalloc", not(feature = "alloc-count")))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// fastproxy: seals service-to-service HTTP (compress → encrypt → sign) on the
/// caller side and opens it on the callee side.
///
/// Run a proxy: `fastproxy -c conf/pingora.yaml --config conf/fastproxy.yaml`.
/// `-c/--conf` is Pingora's server conf (threads, grace periods, pid file,
/// upgrade socket); `-f/--config` is fastproxy's (keys, roles, policy,
/// upstreams). `-d` daemonizes, `-t` tests both configs and exits, `-u` takes
/// over the listeners of a running instance (zero-downtime upgrade).
#[derive(Parser, Debug)]
#[command(name = "fastproxy", version, verbatim_doc_comment)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    /// fastproxy's config file (keys, outbound/inbound roles, upstreams).
    #[arg(
        short = 'f',
        long = "config",
        env = "FASTPROXY_CONFIG",
        default_value = "conf/fastproxy.yaml",
        global = true
    )]
    config: String,

    #[command(flatten)]
    pingora: Opt,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validate the config file: prints every problem with its field path; exit status 2 if any.
    Check,
    /// Print a new random 32-byte key secret (64 hex digits) for the config's `secret:` fields.
    Keygen,
}

fn main() -> ExitCode {
    logging::init();
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Check) => match reload::read_config(&cli.config)
            .map_err(|e| config::Problems(vec![config::Problem { path: cli.config.clone(), message: e }]))
            .and_then(|text| config::from_yaml_with_env(&text, std::env::vars()))
        {
            Ok((_, overrides)) => {
                for o in &overrides {
                    println!("{} = {}  (from the environment: {})", o.path, o.shown, o.var);
                }
                println!(
                    "{}: ok ({} value(s) from the environment, the rest from the file)",
                    cli.config,
                    overrides.len()
                );
                ExitCode::SUCCESS
            }
            Err(problems) => {
                eprintln!("{}: {} problem(s)\n{problems}", cli.config, problems.0.len());
                ExitCode::from(2)
            }
        },
        Some(Command::Keygen) => match config::secret::generate() {
            Ok(secret) => {
                println!("{secret}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("keygen: {e}");
                ExitCode::FAILURE
            }
        },
        None => match run(cli) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("fastproxy: {e}");
                ExitCode::from(2)
            }
        },
    }
}

/// Loads the config, builds the roles it asks for, and runs Pingora.
fn run(cli: Cli) -> Result<(), String> {
    let text = reload::read_config(&cli.config)?;
    let (config, overrides) = config::from_yaml_with_env(&text, std::env::vars())
        .map_err(|p| format!("{}: {} problem(s)\n{p}", cli.config, p.0.len()))?;
    for o in &overrides {
        log::info!("config: {} = {} from the environment ({})", o.path, o.shown, o.var);
    }
    let metrics = Arc::new(metrics::Metrics::register().map_err(|e| format!("registering metrics: {e}"))?);
    let origin = state::Origin::new(1, text.as_bytes());
    drop(text);
    let snapshot = Snapshot::new(config, origin, &metrics).map_err(|e| format!("building upstream pools: {e}"))?;
    let shared = Arc::new(ArcSwap::from_pointee(snapshot));
    let mut server = Server::new(Some(cli.pingora)).map_err(|e| e.to_string())?;
    server.bootstrap();
    reload::ignore_sighup_until_ready();
    let reloader = Arc::new(reload::Reloader::new(&cli.config, shared.clone(), metrics.clone()));

    let snap = shared.load();
    let rng = ring::rand::SystemRandom::new();
    let nonces = Arc::new(filters::NonceSource::new(&rng).map_err(|e| format!("seeding nonces: {e}"))?);
    let draining = lifecycle::Draining::default();
    let nofile = fd_limit::raise();
    let roles = usize::from(snap.config.outbound.is_some()) + usize::from(snap.config.inbound.is_some());
    let fitted = |mut limits: config::ConnectionLimits, role: &str| {
        if let Some(n) = nofile {
            fd_limit::fit(&mut limits, role, fd_limit::share(n, roles), n);
        }
        limits
    };
    let mut replay = None;
    if let Some(out) = &snap.config.outbound {
        let role = roles::outbound::Outbound::new(shared.clone(), metrics.clone(), nonces.clone(), draining.clone());
        add_role(&mut server, Role::Outbound, role, &out.listen, fitted(out.connections, "outbound"), &metrics);
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
        let role = roles::inbound::Inbound::new(
            shared.clone(),
            state,
            opened,
            metrics.clone(),
            nonces.clone(),
            draining.clone(),
        );
        add_role(&mut server, Role::Inbound, role, &inb.listen, fitted(inb.connections, "inbound"), &metrics);
        if inb.dangerous_passthrough {
            log::warn!("inbound.dangerous_passthrough is on: requests are NOT verified (benchmarks only)");
        }
    }
    let watch = lifecycle::Lifecycle::new(draining, replay, server.watch_execution_phase());
    server.add_service(pingora::services::background::background_service("lifecycle", watch));
    server.add_service(pingora::services::background::background_service("heap trim", listener::heap_trim::HeapTrim));
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
    let health_shared = shared.clone();
    let health = pools::HealthDriver::new(move || health_shared.load().pools.iter().cloned().collect());
    server.add_service(pingora::services::background::background_service("health checks", health));
    server.add_service(pingora::services::background::background_service("reload", reload::Triggers::new(reloader)));
    drop(snap);
    server.run_forever()
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

/// Adds a proxy role as a Pingora service listening on `listen`, behind its
/// connection limits.
fn add_role<R>(
    server: &mut Server,
    name: Role,
    role: R,
    listen: &[std::net::SocketAddr],
    limits: config::ConnectionLimits,
    metrics: &metrics::Metrics,
) where
    R: pingora::proxy::ProxyHttp + Send + Sync + 'static,
    R::CTX: Send + Sync,
{
    let app = listener::Guarded::new(http_proxy(&server.configuration, role), name, limits, metrics.listener(name));
    let mut svc = pingora::services::listening::Service::new(format!("fastproxy {}", name.name()), app);
    for addr in listen {
        let buffers = L4BufferSettings::default().read(DOWNSTREAM_READ_BUFFER);
        svc.add_listener(ListenerConfig::tcp(addr.to_string()).l4_buffer(buffers));
    }
    server.add_service(svc);
    log::info!("{} role listening on {listen:?}", name.name());
}
