//! The baseline for `scripts/bench.sh`: a minimal Pingora proxy that only
//! implements `upstream_peer` (no sealing, no policy, no pools).
//!
//! Usage: `plain_proxy -c pingora.yaml <listen ip:port> <upstream ip:port>`

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

struct Plain {
    upstream: String,
}

#[async_trait]
impl ProxyHttp for Plain {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream.as_str(), false, String::new())))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (conf, listen, upstream) = match args.as_slice() {
        [_, flag, conf, listen, upstream] if flag == "-c" => (conf.clone(), listen.clone(), upstream.clone()),
        _ => {
            eprintln!("usage: plain_proxy -c pingora.yaml <listen ip:port> <upstream ip:port>");
            std::process::exit(2);
        }
    };
    let opt = Opt { conf: Some(conf), ..Opt::default() };
    let mut server = match Server::new(Some(opt)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("plain_proxy: {e}");
            std::process::exit(2);
        }
    };
    server.bootstrap();
    let mut svc = http_proxy_service(&server.configuration, Plain { upstream });
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
