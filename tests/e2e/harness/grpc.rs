//! A real gRPC server and client: Python's grpcio (Debian's python3-grpcio,
//! installed by scripts/deps.sh) running tests/e2e/grpc/echo.py, and curl
//! speaking h2c for requests grpcio will not send (a `grpc-timeout` with no
//! deadline of the client's own).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

/// The interpreter grpcio is installed for (the system Python, whatever
/// else is first on PATH).
const PYTHON: &str = "/usr/bin/python3";

fn script() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/e2e/grpc/echo.py").to_string()
}

/// The `test.Echo` gRPC server, h2c on 127.0.0.1.
pub struct GrpcServer {
    pub addr: SocketAddr,
    child: Child,
}

impl GrpcServer {
    pub fn start() -> GrpcServer {
        let mut child = Command::new(PYTHON)
            .arg(script())
            .arg("serve")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 with grpcio (scripts/deps.sh installs python3-grpcio)");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().expect("stdout")).read_line(&mut line).expect("server port");
        let port: u16 = line.trim().strip_prefix("port ").and_then(|p| p.parse().ok()).expect("port line");
        GrpcServer { addr: SocketAddr::from(([127, 0, 0, 1], port)), child }
    }
}

impl Drop for GrpcServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One call through grpcio: `kind` is unary, serve, collect or chat (see
/// echo.py), `authority` the callee's name, `caller` sent as `x-fp-caller`.
pub fn call(
    target: SocketAddr,
    authority: &str,
    caller: &str,
    kind: &str,
    arg: &str,
    timeout_s: Option<f64>,
) -> serde_json::Value {
    let mut cmd = Command::new(PYTHON);
    cmd.arg(script()).arg("call").arg(target.to_string()).arg(authority).arg(kind).arg(arg);
    cmd.arg("--caller").arg(caller);
    if let Some(t) = timeout_s {
        cmd.arg("--timeout").arg(t.to_string());
    }
    let out = cmd.output().expect("grpc client");
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        panic!("grpc client output {text:?} ({e}); stderr: {}", String::from_utf8_lossy(&out.stderr))
    })
}

/// What curl saw: the HTTP version, the header lines (lower-cased names),
/// and the body.
pub struct Curl {
    pub version: String,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Curl {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Runs curl with `args` (plus `-s -i --max-time 10`) and parses what it
/// printed.
pub fn curl(args: &[&str]) -> Curl {
    let out = Command::new("curl").args(["-s", "-i", "--max-time", "10"]).args(args).output().expect("curl");
    let raw = out.stdout;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("curl {args:?}: no response ({})", String::from_utf8_lossy(&out.stderr)));
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or_default().to_string();
    let mut parts = status_line.split_whitespace();
    let version = parts.next().unwrap_or_default().to_string();
    let status = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Curl { version, status, headers, body: raw[split + 4..].to_vec() }
}

/// A gRPC message frame: uncompressed, 4-byte length, the bytes.
pub fn frame(message: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    out
}
