//! A load of keep-alive clients that never re-send: each request without a
//! complete response, or with a status not allowed, is a failure (a client
//! that retried or reconnected on its own would hide what a user sees).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::client::KeepAlive;

/// Keep-alive clients that never re-send, each sending GETs through the
/// outbound proxy until stopped; statuses counted by value, failures (no
/// complete response, or a status not in `allowed`) kept with their time.
pub struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    statuses: Arc<Mutex<std::collections::BTreeMap<u16, usize>>>,
    pub failures: Arc<Mutex<Vec<String>>>,
    pub sent: Arc<AtomicUsize>,
    pub too_many: Arc<AtomicUsize>,
}

impl Load {
    pub fn start(addr: SocketAddr, clients: usize, who: &str, allowed: &'static [u16]) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let statuses = Arc::new(Mutex::new(std::collections::BTreeMap::new()));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let sent = Arc::new(AtomicUsize::new(0));
        let too_many = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let threads = (0..clients)
            .map(|_| {
                let (stop, statuses, failures, sent, too_many) =
                    (stop.clone(), statuses.clone(), failures.clone(), sent.clone(), too_many.clone());
                let who = who.to_owned();
                std::thread::spawn(move || {
                    let mut client = KeepAlive::new(addr);
                    while !stop.load(Ordering::Relaxed) {
                        sent.fetch_add(1, Ordering::Relaxed);
                        match client.request("GET", "/token_service/load", &[("x-fp-caller", &who)], b"") {
                            Ok(status) => {
                                *statuses.lock().unwrap().entry(status).or_insert(0) += 1;
                                if status == 429 {
                                    too_many.fetch_add(1, Ordering::Relaxed);
                                    std::thread::sleep(Duration::from_millis(5));
                                }
                                if !allowed.contains(&status) {
                                    failures.lock().unwrap().push(format!("{:?}: status {status}", started.elapsed()));
                                }
                            }
                            Err(e) => failures.lock().unwrap().push(format!("{:?}: {e}", started.elapsed())),
                        }
                    }
                })
            })
            .collect();
        Load { stop, threads, statuses, failures, sent, too_many }
    }

    pub fn finish(self) -> (usize, std::collections::BTreeMap<u16, usize>, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        let statuses = self.statuses.lock().unwrap().clone();
        let failures = self.failures.lock().unwrap().clone();
        (self.sent.load(Ordering::Relaxed), statuses, failures)
    }
}
