//! The `fastproxy` binary: one process runs the outbound role (seal requests
//! from a local app), the inbound role (verify and open requests for a local
//! service), or both, as its config file says. A thin user of the library
//! (`fastproxy::Gateway`), plus the `check` and `keygen` commands.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use fastproxy::{config, logging, reload, Gateway, Source};
use pingora::server::configuration::Opt;
use pingora::server::Server;

#[cfg(feature = "alloc-count")]
#[global_allocator]
static ALLOCATOR: fastproxy::alloc::Counting = fastproxy::alloc::Counting;

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
    /// Publish FILE as config document NAME of a center (a `registries` entry
    /// of the config file, whose node must be allowed to publish NAME).
    Publish {
        /// The `registries` entry naming the center.
        #[arg(long)]
        registry: String,
        /// The document's name (what proxies name in `remote.key`).
        #[arg(long)]
        name: String,
        /// The YAML file to publish.
        file: String,
    },
    /// Make a CA (without --ca) or a certificate signed by one, for TLS between
    /// the proxies: writes DIR/NAME.crt and DIR/NAME.key (0600), never over a file.
    Certs {
        /// Directory of the files.
        #[arg(long)]
        dir: String,
        /// File name stem of what to make.
        #[arg(long)]
        name: String,
        /// Stem of the CA to sign with (DIR/CA.crt, DIR/CA.key); none makes a CA.
        #[arg(long)]
        ca: Option<String>,
        /// A DNS name to carry (an inbound proxy's server name); repeatable.
        #[arg(long)]
        dns: Vec<String>,
        /// A URI to carry (a caller's identity, spiffe://…); repeatable.
        #[arg(long)]
        uri: Vec<String>,
        /// Days of validity.
        #[arg(long, default_value_t = 365)]
        days: i64,
        /// Make it already expired (tests).
        #[arg(long)]
        expired: bool,
    },
    /// Run the built-in registry (the config's `center:` section; docs/CENTER.md).
    Center {
        #[command(flatten)]
        pingora: Opt,
    },
}

fn main() -> ExitCode {
    logging::init();
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Check) => check(&cli.config),
        Some(Command::Certs { dir, name, ca, dns, uri, days, expired }) => {
            let req = fastproxy::certs::Request {
                dir: std::path::Path::new(&dir),
                name: &name,
                ca: ca.as_deref(),
                dns: &dns,
                uris: &uri,
                days,
                expired,
            };
            match fastproxy::certs::make(&req) {
                Ok(files) => {
                    println!("{}", files.join("\n"));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("fastproxy certs: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Some(Command::Publish { registry, name, file }) => match publish(&cli.config, &registry, &name, &file) {
            Ok(revision) => {
                println!("published {file} as {name} (revision {revision})");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("fastproxy publish: {e}");
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
        Some(Command::Center { pingora }) => match run(&cli.config, pingora, true) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("fastproxy center: {e}");
                ExitCode::from(2)
            }
        },
        None => match run(&cli.config, cli.pingora, false) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("fastproxy: {e}");
                ExitCode::from(2)
            }
        },
    }
}

/// `fastproxy check`: validates the config file, layered with what its
/// remote source (if any) holds now, and lists the environment overrides.
fn check(path: &str) -> ExitCode {
    let problems = |p: config::Problems| {
        eprintln!("{path}: {} problem(s)\n{p}", p.0.len());
        ExitCode::from(2)
    };
    let text = match reload::read_config(path) {
        Ok(t) => t,
        Err(e) => return problems(config::Problems(vec![config::Problem { path: path.to_owned(), message: e }])),
    };
    let remote = match config::layers::bootstrap(&text, std::env::vars()) {
        Ok(r) => r,
        Err(p) => return problems(p),
    };
    let layered = match &remote {
        None => config::from_yaml_with_env(&text, std::env::vars()),
        Some(r) => match fastproxy::remote::fetch_now(r, std::time::Duration::from_secs(5)) {
            Ok(doc) => {
                println!("remote: {} revision {}", r.describe(), doc.revision);
                match &doc.invalid {
                    Some(why) => Err(config::Problems(vec![config::Problem {
                        path: "(remote)".to_owned(),
                        message: why.clone(),
                    }])),
                    None => config::layers::from_layers(
                        &text,
                        Some((&doc.tree, r.dangerous_inline_secrets)),
                        std::env::vars(),
                    ),
                }
            }
            Err(e) => {
                eprintln!("{path}: the remote source cannot be read now: {e}");
                return ExitCode::from(2);
            }
        },
    };
    match layered {
        Ok((_, overrides)) => {
            for o in &overrides {
                println!("{} = {}  (from the environment: {})", o.path, o.shown, o.var);
            }
            let layers = if remote.is_some() {
                "the rest from the file and the remote source"
            } else {
                "the rest from the file"
            };
            println!("{path}: ok ({} value(s) from the environment, {layers})", overrides.len());
            ExitCode::SUCCESS
        }
        Err(p) => problems(p),
    }
}

/// `fastproxy publish`: sends `file` to the center named `registry` as
/// config document `name`; returns the center's revision.
fn publish(path: &str, registry: &str, name: &str, file: &str) -> Result<u64, String> {
    let text = reload::read_config(path)?;
    let (registries, _) = config::layers::bootstrap_with_registries(&text, std::env::vars())
        .map_err(|p| format!("{path}: {} problem(s)\n{p}", p.0.len()))?;
    let reg = registries.get(registry).ok_or_else(|| format!("{path} has no registries.{registry}"))?;
    let config::registry::RegistryKind::Center { authority, node, key, .. } = &reg.kind else {
        return Err(format!("registries.{registry} is not a center (publish to etcd with etcdctl put)"));
    };
    let body = reload::read_config(file)?;
    let client = fastproxy::discovery::center_client::CenterClient::new(
        authority.clone(),
        node.clone(),
        key.clone(),
        reg.timeout,
    );
    let target = format!("/v1/config/{name}");
    fastproxy::remote::block_on(async {
        let reply = client.call("PUT", &target, body.as_bytes(), reg.timeout).await.map_err(|e| e.to_string())?;
        let value = fastproxy::discovery::center_client::CenterClient::json(reply).map_err(|e| e.to_string())?;
        value["revision"].as_u64().ok_or_else(|| "the center's answer names no revision".to_owned())
    })
}

/// Loads the config, builds the roles it asks for, and runs Pingora. The
/// config is checked before Pingora starts (or takes over a running
/// instance's listeners), so a bad config never interrupts one.
/// `center`: the config must have a `center:` section.
fn run(config: &str, pingora: Opt, center: bool) -> Result<(), String> {
    let gateway = Gateway::load(Source::File(config.to_owned()))?;
    if center && !gateway.serves_center() {
        return Err(format!("{config} has no center: section (docs/CONFIG.md, `center`)"));
    }
    let mut server = Server::new(Some(pingora)).map_err(|e| e.to_string())?;
    server.bootstrap();
    let handle = gateway.add_to(&mut server)?;
    server.run(pingora::server::RunArgs { shutdown_signal: handle.stop_signals() });
    Ok(())
}
