//! Starts the real `fastproxy` binary on a generated config and stops it (by
//! its PID) when dropped.

use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A listener on a free loopback port (kept open until handed over).
pub fn listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").expect("bind")
}

/// Ports [`free_port`] handed out in this process.
static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A free loopback port, never one handed out before in this process (the
/// OS may offer a port again once its listener closed, and two tests of one
/// run must not be told the same port). Another process can still take it
/// before the proxy binds it: [`Proxy::start_with`] checks the proxy itself
/// listens.
pub fn free_port() -> u16 {
    loop {
        let port = listener().local_addr().expect("addr").port();
        if GIVEN.lock().unwrap_or_else(|p| p.into_inner()).insert(port) {
            return port;
        }
    }
}

/// True when process `pid` holds a socket listening on 127.0.0.1:`port`: a
/// successful connect only says that someone listens there. The listening
/// sockets come from `ss` (netlink: only the listening table is read), or
/// from `/proc/net/tcp` where `ss` is missing; their inodes are looked up
/// among the process's descriptors.
pub fn listens(pid: u32, port: u16) -> bool {
    let sockets = listening_inodes(port);
    if sockets.is_empty() {
        return false;
    }
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return false };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path())
            .is_ok_and(|target| sockets.iter().any(|inode| target.as_os_str() == format!("socket:[{inode}]").as_str()))
    })
}

/// Inodes of the sockets listening on TCP `port`.
fn listening_inodes(port: u16) -> Vec<String> {
    let ss = Command::new("ss").args(["-ltnHe", &format!("sport = :{port}")]).stderr(Stdio::null()).output();
    if let Some(out) = ss.ok().filter(|o| o.status.success()) {
        // "LISTEN 0 128 127.0.0.1:PORT 0.0.0.0:* ino:123 sk:…"
        return String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|field| field.strip_prefix("ino:").map(str::to_owned))
            .collect();
    }
    // "sl: 0100007F:PORT 00000000:0000 0A … inode …": a listening socket
    // has no remote end and state 0A. (This table holds every socket, also
    // the many thousand in TIME_WAIT a test run leaves: slower.)
    let Ok(table) = std::fs::read_to_string("/proc/net/tcp") else { return Vec::new() };
    let needle = format!(":{port:04X} 00000000:0000 0A ");
    table
        .lines()
        .filter(|line| line.contains(&needle))
        .filter_map(|line| line.split_whitespace().nth(9).map(str::to_owned))
        .collect()
}

/// An address where nothing listens: connecting is refused at once. (No test
/// binds 127.0.0.77, so no other test can take the port meanwhile.)
pub fn dead_addr(n: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 77], n))
}

pub fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

pub struct Proxy {
    child: Child,
    log_name: &'static str,
    pub dir: PathBuf,
    _dir: Arc<TempDir>,
}

/// Removes a test directory when the last instance using it is gone.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

impl Proxy {
    /// Starts fastproxy with `config` (fastproxy YAML) and waits until every
    /// port in `ports` accepts connections.
    pub fn start(config: &str, ports: &[u16]) -> Proxy {
        Self::start_with_grace(config, ports, 1)
    }

    /// Like [`Proxy::start`] with Pingora's grace period set to `grace` s.
    pub fn start_with_grace(config: &str, ports: &[u16], grace: u32) -> Proxy {
        Self::start_with(config, ports, grace, "info", 2)
    }

    /// Like [`Proxy::start_with_grace`], logging at `rust_log` (`RUST_LOG`),
    /// with `threads` Pingora threads.
    pub fn start_with(config: &str, ports: &[u16], grace: u32, rust_log: &str, threads: usize) -> Proxy {
        let dir = std::env::temp_dir().join(format!(
            "fastproxy-e2e-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        ));
        // A failed test keeps its directory (to read); a later run whose
        // process id is the same must not start on its journal and files.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let pingora = format!(
            "---\nversion: 1\nthreads: {threads}\nwork_stealing: false\ngrace_period_seconds: {grace}\ngraceful_shutdown_timeout_seconds: 1\npid_file: {0}/fp.pid\nupgrade_sock: {0}/fp_upgrade.sock\n",
            dir.display()
        );
        std::fs::write(dir.join("pingora.yaml"), pingora).expect("write conf");
        std::fs::write(dir.join("fastproxy.yaml"), config).expect("write config");
        let child = spawn(&dir, false, "fastproxy.log", rust_log);
        let mut proxy = Proxy { child, log_name: "fastproxy.log", _dir: Arc::new(TempDir(dir.clone())), dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        for port in ports {
            // This proxy, not another process that took the port meanwhile
            // (its answers would fail the test in puzzling ways).
            while !(TcpStream::connect(addr(*port)).is_ok() && listens(proxy.pid(), *port)) {
                if let Ok(Some(status)) = proxy.child.try_wait() {
                    panic!("fastproxy exited ({status}) during startup:\n{}", proxy.log());
                }
                assert!(
                    Instant::now() < deadline,
                    "fastproxy did not listen on {port} (another process holds it if the log says it is in use):\n{}",
                    proxy.log()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        proxy
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Starts a second instance on the same files with `-u`: it takes the
    /// listeners over once this one gets SIGQUIT.
    pub fn start_upgrade(&self) -> Proxy {
        let child = spawn(&self.dir, true, "fastproxy-new.log", "info");
        Proxy { child, log_name: "fastproxy-new.log", dir: self.dir.clone(), _dir: self._dir.clone() }
    }

    /// Starts a new instance on the same files (after this one stopped),
    /// as a restart would, and waits until `ports` accept connections.
    pub fn start_again(&self, ports: &[u16]) -> Proxy {
        let child = spawn(&self.dir, false, "fastproxy-again.log", "info");
        let proxy = Proxy { child, log_name: "fastproxy-again.log", dir: self.dir.clone(), _dir: self._dir.clone() };
        let deadline = Instant::now() + Duration::from_secs(20);
        for port in ports {
            while TcpStream::connect(addr(*port)).is_err() {
                assert!(Instant::now() < deadline, "fastproxy did not listen on {port}:\n{}", proxy.log());
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        proxy
    }

    /// Sends `signal` (e.g. "TERM", "QUIT") to the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill").arg(format!("-{signal}")).arg(self.pid().to_string()).status();
        assert!(status.is_ok_and(|s| s.success()), "kill -{signal} failed");
    }

    /// Waits up to `timeout` for the process to exit; how long it took.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<Duration> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Ok(Some(_)) = self.child.try_wait() {
                return Some(start.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// True once the process has exited.
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// The config file the process runs on.
    pub fn config_text(&self) -> String {
        std::fs::read_to_string(self.dir.join("fastproxy.yaml")).expect("config file")
    }

    /// Replaces the config file with `yaml` (whole, by rename), sends SIGHUP
    /// and waits until the process has taken it or refused it; returns
    /// `/config` from `admin` then.
    pub fn reload(&self, admin: SocketAddr, yaml: &str) -> serde_json::Value {
        let before = admin_config(admin);
        let tmp = self.dir.join("fastproxy.yaml.new");
        std::fs::write(&tmp, yaml).expect("write config");
        std::fs::rename(&tmp, self.dir.join("fastproxy.yaml")).expect("rename config");
        self.signal("HUP");
        let start = Instant::now();
        loop {
            let now = admin_config(admin);
            let moved = now["generation"]["number"] != before["generation"]["number"]
                || now["last_reload_error"]["at_ms"] != before["last_reload_error"]["at_ms"];
            if moved {
                return now;
            }
            assert!(start.elapsed() < Duration::from_secs(10), "the reload never finished:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join(self.log_name)).unwrap_or_default()
    }

    /// Peak resident memory (VmHWM) in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

/// `/config` from an admin listener.
pub fn admin_config(admin: SocketAddr) -> serde_json::Value {
    let resp = super::client::send(admin, super::client::Request::new("GET", "/config")).expect("/config");
    serde_json::from_slice(&resp.body).expect("/config is JSON")
}

fn spawn(dir: &std::path::Path, upgrade: bool, log: &str, rust_log: &str) -> Child {
    let log = std::fs::File::create(dir.join(log)).expect("log file");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fastproxy"));
    cmd.arg("-c").arg(dir.join("pingora.yaml")).arg("-f").arg(dir.join("fastproxy.yaml"));
    if upgrade {
        cmd.arg("-u");
    }
    cmd.env("RUST_LOG", rust_log).stdout(Stdio::null()).stderr(log).spawn().expect("spawn fastproxy")
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listens_tells_the_owner_of_a_port() {
        let held = listener();
        let port = held.local_addr().expect("addr").port();
        assert!(listens(std::process::id(), port), "this process listens on {port}");
        assert!(!listens(1, port), "init does not");
        drop(held);
        assert!(!listens(std::process::id(), port), "closed");
    }

    #[test]
    fn free_ports_are_never_handed_out_twice() {
        let ports: Vec<u16> = (0..300).map(|_| free_port()).collect();
        let distinct: BTreeSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len());
    }
}
