//! fastproxy embedded in an application's own Pingora server: both roles,
//! from config YAML the application builds in code, reloaded through the
//! handle while they serve.
//!
//! Usage: `embedded CALLEE_ADDR OUT_PORT IN_PORT WORK_DIR`
//!
//! The outbound role listens on 127.0.0.1:OUT_PORT and seals requests for
//! `token_service` to the inbound role on 127.0.0.1:IN_PORT, which opens them
//! for the callee at CALLEE_ADDR. Each line read from standard input is a
//! service name: the application adds a route and a service of that name
//! (to the same callee) and reloads; it prints `generation N` or the error.
//! WORK_DIR holds the pid file and the replay journal.

use std::io::BufRead;

use fastproxy::{Gateway, Source};
use pingora::server::configuration::ServerConf;
use pingora::server::Server;

/// Demo keys; a real application reads its secrets from its own store.
const AEAD: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const SIGN: &str = "404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f";

/// The config for both roles, with `services` routed and served.
fn config(callee: &str, out_port: u16, in_port: u16, services: &[String]) -> String {
    let mut y = format!(
        "keys:\n  aead:\n    app-key: {{ alg: aes-256-gcm, secret: \"{AEAD}\" }}\n  hmac:\n    app-sign: {{ secret: \"{SIGN}\" }}\n\
         outbound:\n  listen: [\"127.0.0.1:{out_port}\"]\n  callers:\n    app: {{ aead_key: app-key, sign_key: app-sign }}\n  routes:\n"
    );
    for s in services {
        y.push_str(&format!("    {s}: {{ upstream: inbound }}\n"));
    }
    y.push_str(&format!("inbound:\n  listen: [\"127.0.0.1:{in_port}\"]\n  services:\n"));
    for s in services {
        y.push_str(&format!("    {s}: {{ upstream: callee }}\n"));
    }
    y.push_str("  callers:\n    app:\n      keys: [app-key, app-sign]\n      allow:\n");
    for s in services {
        y.push_str(&format!("        - {{ service: {s}, path_prefix: /, methods: [\"*\"] }}\n"));
    }
    y.push_str(&format!(
        "upstreams:\n  inbound: {{ backends: [\"127.0.0.1:{in_port}\"] }}\n  callee: {{ backends: [\"{callee}\"] }}\n"
    ));
    y
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(callee), Some(out_port), Some(in_port), Some(work)) = (
        args.get(1),
        args.get(2).and_then(|p| p.parse::<u16>().ok()),
        args.get(3).and_then(|p| p.parse::<u16>().ok()),
        args.get(4),
    ) else {
        eprintln!("usage: embedded CALLEE_ADDR OUT_PORT IN_PORT WORK_DIR");
        std::process::exit(2);
    };
    fastproxy::logging::init();

    // The application's own server, its grace periods set.
    let conf = ServerConf {
        threads: 1,
        grace_period_seconds: Some(1),
        graceful_shutdown_timeout_seconds: Some(1),
        pid_file: format!("{work}/embedded.pid"),
        upgrade_sock: format!("{work}/embedded.sock"),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let mut services = vec!["token_service".to_owned()];
    let gateway = match Gateway::load(Source::Yaml(config(callee, out_port, in_port, &services))) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("embedded: {e}");
            std::process::exit(2);
        }
    };
    let handle = match gateway.add_to(&mut server) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("embedded: {e}");
            std::process::exit(2);
        }
    };

    let callee = callee.clone();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(name) = line else { break };
            services.push(name.trim().to_owned());
            match handle.reload_yaml(&config(&callee, out_port, in_port, &services)) {
                Ok(n) => println!("generation {n}"),
                Err(f) => println!("reload {}: {}", f.result, f.message),
            }
        }
    });
    println!("serving on 127.0.0.1:{out_port} (outbound) and 127.0.0.1:{in_port} (inbound)");
    server.run_forever();
}
