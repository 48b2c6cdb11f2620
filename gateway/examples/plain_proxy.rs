//! The baseline for `scripts/bench.sh`: a minimal Pingora proxy that only
//! implements `upstream_peer` (no sealing, no policy, no pools).
//!
//! Usage: `plain_proxy -c pingora.yaml <listen ip:port> <upstream ip:port> [h2c] [h2-up]`
//!
//! `h2c` serves HTTP/2 with prior knowledge beside HTTP/1.1; `h2-up` speaks
//! h2c to the upstream, with the windows and stream limit fastproxy uses
//! between its proxies: a chain of two with HTTP/2 between them is the
//! like-for-like baseline for fastproxy's default hop.

use async_trait::async_trait;
use pingora::prelude::*;

// With the `alloc-count` feature, count heap allocations like fastproxy does,
// and write the running total to the file named by FP_ALLOC_FILE every 100 ms
// (the benchmark's baseline for allocations per request).
#[cfg(feature = "alloc-count")]
#[path = "../src/alloc.rs"]
mod alloc;

#[cfg(feature = "alloc-count")]
#[global_allocator]
static ALLOCATOR: alloc::Counting = alloc::Counting;

// With the `mimalloc` feature, the same allocator as fastproxy built with it:
// the benchmark compares the chains on the same allocator.
#[cfg(all(feature = "mimalloc", not(feature = "alloc-count")))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Plain {
    upstream: String,
    h2_up: bool,
}

#[async_trait]
impl ProxyHttp for Plain {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        let mut peer = HttpPeer::new(self.upstream.as_str(), false, String::new());
        if self.h2_up {
            peer.options.set_http_version(2, 2);
            peer.options.max_h2_streams = 100;
            peer.options.h2_stream_window_size = Some(fastproxy::http_util::H2_STREAM_WINDOW);
            peer.options.h2_connection_window_size = Some(fastproxy::http_util::H2_CONNECTION_WINDOW);
        }
        Ok(Box::new(peer))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (conf, listen, upstream, flags) = match args.as_slice() {
        [_, flag, conf, listen, upstream, flags @ ..] if flag == "-c" => {
            (conf.clone(), listen.clone(), upstream.clone(), flags.to_vec())
        }
        _ => {
            eprintln!("usage: plain_proxy -c pingora.yaml <listen ip:port> <upstream ip:port> [h2c] [h2-up]");
            std::process::exit(2);
        }
    };
    let h2c = flags.iter().any(|f| f == "h2c");
    let h2_up = flags.iter().any(|f| f == "h2-up");
    let opt = Opt { conf: Some(conf), ..Opt::default() };
    let mut server = match Server::new(Some(opt)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("plain_proxy: {e}");
            std::process::exit(2);
        }
    };
    server.bootstrap();
    let mut svc = http_proxy_service(&server.configuration, Plain { upstream, h2_up });
    if let (true, Some(app)) = (h2c, svc.app_logic_mut()) {
        let mut options = pingora::apps::HttpServerOptions::default();
        options.h2c = true;
        app.server_options = Some(options);
        let mut h2 = pingora::protocols::http::v2::server::default_h2_options();
        h2.initial_window_size(fastproxy::http_util::H2_STREAM_WINDOW);
        h2.initial_connection_window_size(fastproxy::http_util::H2_CONNECTION_WINDOW);
        app.h2_options = Some(h2);
    }
    svc.add_tcp(&listen);
    server.add_service(svc);
    #[cfg(feature = "alloc-count")]
    if let Some(path) = std::env::var_os("FP_ALLOC_FILE") {
        // No -d here, so a plain thread survives (Pingora forks only to daemonize).
        std::thread::spawn(move || loop {
            let _ = std::fs::write(&path, alloc::count().to_string());
            std::thread::sleep(std::time::Duration::from_millis(100));
        });
    }
    server.run_forever();
}
