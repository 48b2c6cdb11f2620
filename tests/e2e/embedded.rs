//! The embedded example (`gateway/examples/embedded.rs`): an application's own
//! Pingora server runs both roles from the library, and reloads them
//! through the handle.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::client::{send, Request};
use crate::harness::proxy::{addr, free_port};
use crate::harness::upstream::Upstream;

/// The example's binary, built by `cargo test` beside the test binaries
/// (built here when only this test binary was).
fn example() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let path = dir.join("examples").join("embedded");
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "fastproxy", "--example", "embedded"])
            .status()
            .expect("cargo build --example embedded");
        assert!(status.success(), "building the example failed");
    }
    path
}

/// Kills the example by its PID when the test ends.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_embedded_example_serves_and_reloads_through_its_handle() {
    let callee = Upstream::start();
    let (out_port, in_port) = (free_port(), free_port());
    let work = std::env::temp_dir().join(format!("fastproxy-embedded-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();
    let mut child = Running(
        Command::new(example())
            .args([callee.addr.to_string(), out_port.to_string(), in_port.to_string(), work.display().to_string()])
            .env("RUST_LOG", "info")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the example"),
    );
    let start = Instant::now();
    for port in [out_port, in_port] {
        while TcpStream::connect(addr(port)).is_err() {
            assert!(start.elapsed() < Duration::from_secs(20), "the example never listened on {port}");
            assert!(child.0.try_wait().unwrap().is_none(), "the example exited");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let call = |service: &str| {
        send(addr(out_port), Request::new("POST", &format!("/{service}/x")).header("x-fp-caller", "app"))
            .expect("response")
    };
    let resp = call("token_service");
    assert_eq!(resp.status, 200, "{}", resp.text());
    let seen = callee.last();
    assert_eq!(seen.head.get("x-fp-caller"), Some("app"), "opened by the embedded inbound role");
    assert_eq!(call("extra_service").status, 404);

    // A reload through the handle adds a service at both roles.
    let mut stdin = child.0.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.0.stdout.take().unwrap());
    writeln!(stdin, "extra_service").unwrap();
    let mut line = String::new();
    loop {
        line.clear();
        assert!(stdout.read_line(&mut line).unwrap() > 0, "the example closed its output");
        if line.starts_with("generation") || line.starts_with("reload") {
            break;
        }
    }
    assert_eq!(line.trim(), "generation 2");
    let resp = call("extra_service");
    assert_eq!(resp.status, 200, "{}", resp.text());
    let _ = std::fs::remove_dir_all(&work);
}
