//! A byte-level TCP relay that records everything crossing it both ways,
//! without understanding it (for TLS links, where the HTTP relay cannot
//! read anything).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

pub struct Tap {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<u8>>>,
}

fn pump(mut from: TcpStream, mut to: TcpStream, seen: Arc<Mutex<Vec<u8>>>) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                seen.lock().unwrap().extend_from_slice(&buf[..n]);
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

impl Tap {
    pub fn start(listener: TcpListener, target: SocketAddr) -> Tap {
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let Ok(up) = TcpStream::connect(target) else { continue };
                let (c2, u2) = (conn.try_clone().expect("clone"), up.try_clone().expect("clone"));
                let (s1, s2) = (s.clone(), s.clone());
                std::thread::spawn(move || pump(conn, up, s1));
                std::thread::spawn(move || pump(u2, c2, s2));
            }
        });
        Tap { addr, seen }
    }

    /// Every byte that crossed, both ways, in arrival order.
    pub fn bytes(&self) -> Vec<u8> {
        self.seen.lock().unwrap().clone()
    }
}
