//! No replay is accepted across a restart, an upgrade or a crash of the
//! inbound proxy (PROTOCOL.md §7.1): the replay cache is handed from one
//! process to the next through the replay journal.

use std::time::{Duration, Instant};

use crate::harness::client::{send, Request};
use crate::harness::config::{caller, Options, Pair};
use crate::harness::proxy::Proxy;
use crate::harness::seal::{seal, Hand, Sealed};

/// Status and error code of `s` sent to the inbound proxy.
fn deliver(pair: &Pair, s: &Sealed) -> (u16, Option<String>) {
    let resp = send(pair.in_addr, Request::new("POST", &s.target).header("x-fp", &s.header)).expect("response");
    (resp.status, resp.header("x-fp-error-code").map(str::to_owned))
}

fn fresh() -> Sealed {
    std::thread::sleep(Duration::from_millis(2));
    seal(&Hand::new("POST", "/api/pay", &caller("aes", "none")))
}

fn assert_replays_refused(pair: &Pair, sent: &[Sealed], when: &str) {
    for (i, s) in sent.iter().enumerate() {
        let (status, code) = deliver(pair, s);
        assert_eq!(status, 401, "{when}: request {i} replayed");
        assert!(matches!(code.as_deref(), Some("replay" | "stale_timestamp")), "{when}: {code:?}");
    }
}

fn wait_gone(p: &mut Proxy, what: &str) {
    assert!(p.wait_exit(Duration::from_secs(15)).is_some(), "{what} did not exit:\n{}", p.log());
}

#[test]
fn no_replay_is_accepted_across_an_upgrade_a_restart_or_a_crash() {
    let mut pair = Pair::start(Options::default());
    let ports = [pair.in_addr.port(), pair.in_admin.port()];
    let mut sent = vec![fresh()];
    assert_eq!(deliver(&pair, &sent[0]).0, 200);
    assert_replays_refused(&pair, &sent, "same process");

    // Upgrade: the new process takes the listeners over on SIGQUIT.
    let new = pair.inbound.start_upgrade();
    std::thread::sleep(Duration::from_millis(500));
    pair.inbound.signal("QUIT");
    let t = Instant::now();
    // While both run (the old one for Pingora's 5 s close timeout and its
    // grace period), whichever answers refuses the replay, and fresh
    // requests pass.
    while t.elapsed() < Duration::from_secs(3) {
        assert_replays_refused(&pair, &sent, "during the upgrade");
        let s = fresh();
        assert_eq!(deliver(&pair, &s), (200, None), "a fresh request during the upgrade");
        sent.push(s);
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_gone(&mut pair.inbound, "the old process");
    pair.inbound = new;
    assert_replays_refused(&pair, &sent, "after the upgrade");
    let s = fresh();
    assert_eq!(deliver(&pair, &s), (200, None), "a fresh request after the upgrade");
    sent.push(s);
    assert!(pair.inbound.log().contains("taking over from inbound process"), "{}", pair.inbound.log());

    // Restart: SIGTERM, then a new process on the same files.
    pair.inbound.signal("TERM");
    wait_gone(&mut pair.inbound, "the stopped process");
    pair.inbound = pair.inbound.start_again(&ports);
    assert_replays_refused(&pair, &sent, "after a restart");
    let s = fresh();
    assert_eq!(deliver(&pair, &s), (200, None), "a fresh request after a restart");
    sent.push(s);

    // Crash: SIGKILL leaves no handover; everything until the new start is refused.
    pair.inbound.signal("KILL");
    wait_gone(&mut pair.inbound, "the killed process");
    pair.inbound = pair.inbound.start_again(&ports);
    assert_replays_refused(&pair, &sent, "after a crash");
    let s = fresh();
    assert_eq!(deliver(&pair, &s), (200, None), "a fresh request after a crash");
    assert_eq!(pair.callee().arrivals(), sent.len() + 1, "each request reached the callee once");
}
