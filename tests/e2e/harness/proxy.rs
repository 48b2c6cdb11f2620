//! Starts the real `fastproxy` binary on a generated config and stops it (by
//! its PID) when dropped.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A listener on a free loopback port (kept open until handed over).
pub fn listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").expect("bind")
}

/// A free loopback port (the listener is closed again: tiny race, retried by
/// the caller's startup wait).
pub fn free_port() -> u16 {
    listener().local_addr().expect("addr").port()
}

pub fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

pub struct Proxy {
    child: Child,
    pub dir: PathBuf,
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

impl Proxy {
    /// Starts fastproxy with `config` (fastproxy YAML) and waits until every
    /// port in `ports` accepts connections.
    pub fn start(config: &str, ports: &[u16]) -> Proxy {
        let dir = std::env::temp_dir().join(format!(
            "fastproxy-e2e-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let pingora = format!(
            "---\nversion: 1\nthreads: 2\ngrace_period_seconds: 1\ngraceful_shutdown_timeout_seconds: 1\npid_file: {0}/fp.pid\nupgrade_sock: {0}/fp_upgrade.sock\n",
            dir.display()
        );
        std::fs::write(dir.join("pingora.yaml"), pingora).expect("write conf");
        std::fs::write(dir.join("fastproxy.yaml"), config).expect("write config");
        let log = std::fs::File::create(dir.join("fastproxy.log")).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_fastproxy"))
            .arg("-c")
            .arg(dir.join("pingora.yaml"))
            .arg("-f")
            .arg(dir.join("fastproxy.yaml"))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn fastproxy");
        let mut proxy = Proxy { child, dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        for port in ports {
            while TcpStream::connect(addr(*port)).is_err() {
                if let Ok(Some(status)) = proxy.child.try_wait() {
                    panic!("fastproxy exited ({status}) during startup:\n{}", proxy.log());
                }
                assert!(Instant::now() < deadline, "fastproxy did not listen on {port}:\n{}", proxy.log());
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        proxy
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("fastproxy.log")).unwrap_or_default()
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

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
