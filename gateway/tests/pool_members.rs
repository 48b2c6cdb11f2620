//! Pool backends given by host name (with a resolver the test answers for)
//! or by a registry (members set as a follower would):
//! the pool follows a change of the answer, keeps the state of the backends
//! it keeps, and keeps the last good answer when the name stops resolving.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};

use fastproxy::metrics::Metrics;
use fastproxy::pools::resolve::Resolve;
use fastproxy::pools::{Outcome, Pool};

/// Answers from a list the test changes; an empty list is a failure.
struct Answers(Mutex<Vec<SocketAddr>>);

impl Resolve for Answers {
    fn resolve(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        assert_eq!((host, port), ("token.internal", 8033));
        let now = self.0.lock().unwrap().clone();
        if now.is_empty() {
            return Err(std::io::Error::other("SERVFAIL"));
        }
        Ok(now)
    }
}

fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| Metrics::register().expect("metrics"))
}

fn addr(last: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, last], 8033))
}

/// Every backend the pool picks over `n` selections.
fn picked(pool: &Pool, n: usize) -> Vec<SocketAddr> {
    let mut seen: Vec<SocketAddr> = (0..n).filter_map(|_| pool.select(b"", &[])).collect();
    seen.sort();
    seen.dedup();
    seen
}

#[test]
fn a_pool_follows_its_names_and_keeps_what_it_keeps() {
    let yaml = "inbound:\n  listen: [\"127.0.0.1:1\"]\n  services: { s: { upstream: p } }\n  callers: {}\nupstreams:\n  p: { backends: [\"token.internal:8033\"], outlier: { consecutive_failures: 1, base_ejection: 60s } }\n";
    let config = fastproxy::config::from_yaml(yaml).expect("config");
    let settings = &config.upstreams["p"];
    assert_eq!(settings.names, vec![("token.internal".to_owned(), 8033, 1)]);
    let answers = Arc::new(Answers(Mutex::new(vec![addr(1), addr(2)])));
    let pool = Arc::new(Pool::with_resolver("p", settings, metrics().pool("p"), answers.clone()).expect("pool"));
    assert_eq!(picked(&pool, 10), vec![addr(1), addr(2)]);

    // Backend 2 fails once and is ejected.
    pool.report(addr(2), Outcome::Failure);
    assert_eq!(picked(&pool, 10), vec![addr(1)]);

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    // The answer changes: 1 goes, 3 comes, 2 stays — and stays ejected.
    *answers.0.lock().unwrap() = vec![addr(2), addr(3)];
    rt.block_on(pool.clone().refresh_names());
    assert_eq!(pool.backend_count(), 2);
    assert_eq!(picked(&pool, 10), vec![addr(3)], "2 is still ejected, 1 is gone");

    // The name stops resolving: the last good answer is kept.
    answers.0.lock().unwrap().clear();
    rt.block_on(pool.clone().refresh_names());
    assert_eq!(pool.backend_count(), 2);
    assert_eq!(picked(&pool, 10), vec![addr(3)]);
}

#[test]
fn a_discovered_pool_takes_new_members_and_keeps_the_state_of_those_it_keeps() {
    let yaml = "inbound:\n  listen: [\"127.0.0.1:1\"]\n  services: { s: { upstream: p } }\n  callers: {}\nregistries:\n  r: { etcd: \"http://127.0.0.1:2379\" }\nupstreams:\n  p: { discovery: { registry: r, service: s }, outlier: { consecutive_failures: 1, base_ejection: 60s } }\n";
    let config = fastproxy::config::from_yaml(yaml).expect("config");
    let pool = Arc::new(Pool::new("d", &config.upstreams["p"], metrics().pool("d")).expect("pool"));
    assert_eq!(pool.backend_count(), 0, "nothing known of the service yet");
    assert!(!pool.has_available());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(pool.set_discovered(vec![(addr(1), 1), (addr(2), 1)]));
    assert_eq!(picked(&pool, 10), vec![addr(1), addr(2)]);
    pool.report(addr(2), Outcome::Failure);
    rt.block_on(pool.set_discovered(vec![(addr(2), 1), (addr(3), 1)]));
    assert_eq!(pool.backend_count(), 2);
    assert_eq!(picked(&pool, 10), vec![addr(3)], "2 stays ejected across the change, 1 is gone");
    rt.block_on(pool.set_discovered(Vec::new()));
    assert!(!pool.has_available(), "every instance left");
}
