//! Registries for the discovery tests: a real etcd (Debian's `etcd-server`)
//! and the real `fastproxy center`, each on ports from the OS with its data
//! in a temporary directory, stopped by PID when dropped.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::config::{center_key, keys_yaml, CENTER_NODES};
use super::proxy::{self, Proxy};

/// A real etcd.
pub struct Etcd {
    child: Option<Child>,
    pub addr: SocketAddr,
    peer: u16,
    dir: PathBuf,
}

impl Etcd {
    /// Starts etcd on free ports with an empty data directory.
    pub fn start() -> Etcd {
        let dir = std::env::temp_dir().join(format!("fastproxy-etcd-{}-{}", std::process::id(), proxy::free_port()));
        std::fs::create_dir_all(&dir).expect("etcd dir");
        let mut etcd = Etcd { child: None, addr: proxy::addr(proxy::free_port()), peer: proxy::free_port(), dir };
        etcd.run();
        etcd
    }

    fn run(&mut self) {
        let peer = format!("http://127.0.0.1:{}", self.peer);
        let client = format!("http://{}", self.addr);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("etcd.log")).expect("log");
        let child = Command::new("etcd")
            .args(["--name", "default", "--data-dir"])
            .arg(self.dir.join("data"))
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("default={peer}")])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("etcd (Debian's etcd-server; scripts/deps.sh installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if TcpStream::connect(self.addr).is_ok() {
                // Answering, not just listening.
                let probe = super::client::send(
                    self.addr,
                    super::client::Request::new("POST", "/v3/kv/range")
                        .body(super::client::Body::Bytes(b"{\"key\":\"AA==\"}".to_vec())),
                );
                if probe.is_ok_and(|r| r.status == 200) {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "etcd did not start:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("etcd.log")).unwrap_or_default()
    }

    /// Kills etcd (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts etcd again on the same ports and data.
    pub fn restart(&mut self) {
        self.kill();
        self.run();
    }

    /// `registries:` YAML naming this etcd `reg`.
    pub fn registries_yaml(&self, cache: Option<&str>) -> String {
        let cache = cache.map_or(String::new(), |c| format!(", cache: \"{c}\""));
        format!("registries:\n  reg: {{ etcd: \"http://{}\", timeout: 1s{cache} }}\n", self.addr)
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The config of a center on `port` keeping its state in `state_file`:
/// `inbound-node` may register `token_service` and `conformance`,
/// `outbound-node` may only read, `other-node` may register `other`.
pub fn center_yaml(port: u16, admin: u16, state_file: &str) -> String {
    let mut y = keys_yaml(false);
    y.push_str(&format!("admin:\n  listen: [\"127.0.0.1:{admin}\"]\n"));
    y.push_str(&format!("center:\n  listen: [\"127.0.0.1:{port}\"]\n  state_file: \"{state_file}\"\n  clients:\n"));
    let may = [("inbound-node", "[token_service, conformance]"), ("outbound-node", "[]"), ("other-node", "[other]")];
    for (node, register) in may {
        assert!(CENTER_NODES.contains(&node));
        let publish = if node == "inbound-node" { "[song]" } else { "[]" };
        y.push_str(&format!("    {node}: {{ key: {}, register: {register}, publish: {publish} }}\n", center_key(node)));
    }
    y
}

/// A running center.
pub struct Center {
    pub proxy: Proxy,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub state_file: PathBuf,
}

impl Center {
    /// Starts a center with its state in a new temporary file.
    pub fn start() -> Center {
        Self::start_on(proxy::free_port())
    }

    /// [`Center::start`] on `port`.
    pub fn start_on(port: u16) -> Center {
        let admin = proxy::free_port();
        let state = std::env::temp_dir().join(format!("fastproxy-center-{}-{port}.json", std::process::id()));
        let yaml = center_yaml(port, admin, &state.display().to_string());
        let proxy = Proxy::start(&yaml, &[port, admin]);
        Center { proxy, addr: proxy::addr(port), admin: proxy::addr(admin), state_file: state }
    }

    /// Stops it (SIGKILL, if it runs) and starts it again on the same
    /// config and state.
    pub fn restart(&mut self) {
        self.kill();
        self.proxy = self.proxy.start_again(&[self.addr.port(), self.admin.port()]);
    }

    /// Kills the center process (SIGKILL) and waits for it to exit.
    pub fn kill(&mut self) {
        if !self.proxy.exited() {
            self.proxy.signal("KILL");
            self.proxy.wait_exit(Duration::from_secs(10));
        }
    }

    /// `registries:` YAML naming this center `reg`, signing as `node`.
    pub fn registries_yaml(&self, node: &str, cache: Option<&str>) -> String {
        let cache = cache.map_or(String::new(), |c| format!(", cache: \"{c}\""));
        format!(
            "registries:\n  reg: {{ center: \"http://{}\", node: {node}, key: {}, timeout: 1s{cache} }}\n",
            self.addr,
            center_key(node)
        )
    }
}

impl Drop for Center {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.state_file);
    }
}
