//! A demo callee for `scripts/demo.sh`: the end-to-end tests' HTTP server,
//! echoing each request's body and describing what it received in
//! `x-echo-*` headers.
//!
//! Usage: `demo_callee [ADDR]` (default 127.0.0.1:8101).

#[path = "../../tests/e2e/harness/mod.rs"]
mod harness;

fn main() {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:8101".to_string());
    let listener = match std::net::TcpListener::bind(&addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("demo_callee: cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    };
    let _callee = harness::upstream::Upstream::start_on(listener);
    eprintln!("demo_callee: echoing on {addr}");
    loop {
        std::thread::park();
    }
}
