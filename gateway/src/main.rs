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
