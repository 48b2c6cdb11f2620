//! Robustness at the edges of HTTP: what proxies say about their connections,
//! what they log.

use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use crate::harness::client::{send, Request};
use crate::harness::config::{caller, Options, Pair};
use crate::harness::wire::{self, Head};

/// Sends one keep-alive request on `conn` and reads the response head and body.
fn keep_alive_request(conn: &mut TcpStream, target: &str, who: &str) -> (Head, Vec<u8>) {
    write!(conn, "GET {target} HTTP/1.1\r\nhost: x\r\nx-fp-caller: {who}\r\n\r\n").unwrap();
    let mut r = BufReader::new(conn.try_clone().unwrap());
    let head = wire::read_head(&mut r).unwrap().expect("a response");
    let mut body = Vec::new();
    wire::read_body(&mut r, wire::response_framing(&head, "GET"), &mut |b| body.extend_from_slice(b)).unwrap();
    (head, body)
}

#[test]
fn connection_headers_match_what_the_proxy_does() {
    let mut pair =
        Pair::start(Options { dead_callees: Some(vec![crate::harness::proxy::dead_addr(1)]), ..Options::default() });
    let who = caller("aes", "none");
    // The inbound proxy's signed 502 passes through: the app's connection stays
    // open, as its header says.
    let mut conn = TcpStream::connect(pair.out_addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    for _ in 0..2 {
        let (head, _) = keep_alive_request(&mut conn, "/token_service/x", &who);
        assert_eq!((head.status(), head.get("x-fp-error-source")), (502, Some("inbound")), "{head:?}");
        assert_eq!(head.get("connection").map(str::to_ascii_lowercase).as_deref(), Some("keep-alive"));
    }
    // A 502 of the outbound proxy's own (its upstream is gone) closes the
    // connection, and says so.
    pair.inbound.signal("KILL");
    assert!(pair.inbound.wait_exit(Duration::from_secs(5)).is_some());
    let mut conn = TcpStream::connect(pair.out_addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let (head, _) = keep_alive_request(&mut conn, "/token_service/x", &who);
    assert_eq!((head.status(), head.get("x-fp-error-source")), (502, Some("outbound")), "{head:?}");
    assert_eq!(head.get("connection").map(str::to_ascii_lowercase).as_deref(), Some("close"), "{head:?}");
    let mut rest = Vec::new();
    assert_eq!(conn.read_to_end(&mut rest).map(|_| rest.len()).unwrap_or(0), 0, "closed after the answer");
}

/// A callee that answers every request with a header block that does not parse.
fn broken_callee(payload: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let _ = write!(conn, "HTTP/1.1 200 OK\r\nx-card: {payload}\r\nthis line is no header\r\n\r\n");
        }
    });
    addr
}

#[test]
fn payload_bytes_never_reach_the_logs() {
    const PAYLOAD: &str = "4111-1111-SECRET-PAYLOAD";
    let pair = Pair::start(Options { dead_callees: Some(vec![broken_callee(PAYLOAD)]), ..Options::default() });
    let resp =
        send(pair.out_addr, Request::new("GET", "/token_service/x").header("x-fp-caller", &caller("aes", "none")))
            .expect("response");
    assert_eq!(resp.status, 502, "{}", resp.text());
    std::thread::sleep(Duration::from_millis(300));
    let log = pair.inbound.log();
    assert!(log.contains("bytes not logged"), "the callee's bytes were parsed and refused:\n{log}");
    assert!(!log.contains("SECRET-PAYLOAD"), "payload bytes in the inbound log:\n{log}");
    assert!(!pair.outbound.log().contains("SECRET-PAYLOAD"));
}

#[test]
fn the_outbound_proxy_refuses_headers_the_inbound_proxy_would() {
    let pair = Pair::start(Options { relay: true, ..Options::default() });
    let who = caller("aes", "none");
    let with = |extra: &[(String, String)]| {
        let mut req = Request::new("GET", "/token_service/x").header("x-fp-caller", &who);
        for (k, v) in extra {
            req = req.header(k, v);
        }
        send(pair.out_addr, req).expect("response")
    };
    let many: Vec<(String, String)> = (0..250).map(|i| (format!("x-extra-{i}"), "1".to_string())).collect();
    let huge = vec![("x-huge".to_string(), "a".repeat(1000 * 1024))];
    for (what, extra) in [("250 headers", &many), ("a 1000 KiB header", &huge)] {
        let resp = with(extra);
        assert_eq!(resp.status, 431, "{what}: {}", resp.text());
        assert_eq!(resp.header("x-fp-error-code"), Some("headers_too_large"), "{what}");
        assert_eq!(resp.header("x-fp-error-source"), Some("outbound"), "{what}");
    }
    assert!(pair.relay().exchanges().is_empty(), "nothing was sealed and sent");
    // Within the limits (100 headers, 64 KiB) a request goes through.
    let fine: Vec<(String, String)> = (0..90).map(|i| (format!("x-extra-{i}"), "1".repeat(300))).collect();
    assert_eq!(with(&fine).status, 200);
}

#[test]
fn a_client_that_goes_away_is_never_sent_again() {
    use crate::harness::upstream::Mode;
    let pair = Pair::start(Options::default());
    pair.callee().set_mode(Mode::Delay(Duration::from_millis(1500)));
    let who = caller("aes", "none");
    let n = 32;
    let clients: Vec<_> = (0..n)
        .map(|i| {
            let (addr, who) = (pair.out_addr, who.clone());
            std::thread::spawn(move || {
                let mut conn = TcpStream::connect(addr).unwrap();
                write!(conn, "GET /token_service/slow/{i} HTTP/1.1\r\nhost: x\r\nx-fp-caller: {who}\r\n\r\n").unwrap();
                // In flight at the callee, then gone.
                std::thread::sleep(Duration::from_millis(400));
                drop(conn);
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    std::thread::sleep(Duration::from_millis(3000));
    let arrivals = pair.callee().arrivals();
    assert!(arrivals <= n, "{arrivals} requests reached the callee for {n} clients that went away");
    let log = pair.outbound.log() + &pair.inbound.log();
    assert!(!log.contains("retries=1") && !log.contains("retries=2"), "a retry was logged:\n{log}");
}

/// Sends a GET for `len` generated bytes; the body when it came whole with
/// the right bytes, or why not.
fn get_generated(addr: SocketAddr, len: u64) -> Result<u16, String> {
    use crate::harness::wire::pattern_byte;
    let resp = send(
        addr,
        Request::new("GET", "/token_service/big")
            .header("x-fp-caller", &caller("aes", "none"))
            .header("x-test-response-len", &len.to_string()),
    )
    .map_err(|e| format!("cut short: {e}"))?;
    if resp.body_len != len {
        return Err(format!("{} of {len} bytes", resp.body_len));
    }
    let wrong = resp.body.iter().enumerate().position(|(i, b)| *b != pattern_byte(i as u64));
    assert_eq!(wrong, None, "status {} with spliced bytes", resp.status);
    Ok(resp.status)
}

#[test]
fn a_response_that_dies_mid_body_is_never_retried_nor_spliced() {
    use crate::harness::relay::Tamper;
    use crate::harness::upstream::Mode;
    // The link between the proxies is cut after 300 000 response bytes.
    let pair = Pair::start(Options { relay: true, ..Options::default() });
    pair.relay().tamper_next(Tamper::CutResponseAfter(300_000));
    let outcome = get_generated(pair.out_addr, 1_000_000);
    assert!(outcome.is_err(), "a cut response arrived whole: {outcome:?}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(pair.relay().exchanges().len(), 1, "the outbound proxy sent the GET again");
    assert_eq!(pair.callee().arrivals(), 1);
    // The callee dies once mid-way through a 2 MB body: the app gets a cut
    // response, or (when nothing had reached it yet) the one a second try
    // got, whole; never a mix. At most one more try, not 3 or 9.
    pair.callee().set_mode(Mode::DieMidBodyOnce(700_000));
    let outcome = get_generated(pair.out_addr, 2_000_000);
    std::thread::sleep(Duration::from_millis(300));
    let arrivals = pair.callee().arrivals() - 1;
    eprintln!("callee died mid-body: {outcome:?} after {arrivals} attempt(s)");
    assert!(arrivals <= 2, "{arrivals} attempts");
    // Whole responses still pass.
    assert_eq!(get_generated(pair.out_addr, 1_000_000), Ok(200));
}

#[test]
fn the_deadline_covers_the_response_body() {
    let pair = Pair::start(Options::default());
    // 2 MiB in 64 KiB pieces, 100 ms apart (3.2 s), against a 1 s deadline.
    let start = std::time::Instant::now();
    let resp = send(
        pair.out_addr,
        Request::new("GET", "/token_service/slow-body")
            .header("x-fp-caller", &caller("aes", "none"))
            .header("x-fp-timeout-ms", "1000")
            .header("x-test-response-len", "2097152")
            .header("x-test-chunk-delay-ms", "100"),
    );
    let took = start.elapsed();
    if let Ok(resp) = &resp {
        assert!(resp.body_len < 2_097_152, "the whole body came after the deadline");
    }
    assert!(took < Duration::from_millis(2500), "cut at the deadline, not at the end: {took:?}");
    std::thread::sleep(Duration::from_millis(300));
    assert!(pair.outbound.log().contains("error=deadline_exceeded"), "{}", pair.outbound.log());
}

#[test]
fn the_inbound_proxy_closes_after_refusing_an_unverified_request() {
    let pair = Pair::start(Options::default());
    let mut conn = TcpStream::connect(pair.in_addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let (head, _) = keep_alive_request(&mut conn, "/token_service/x", "nobody");
    assert_eq!(head.status(), 400, "{head:?}");
    assert_eq!(head.get("connection").map(str::to_ascii_lowercase).as_deref(), Some("close"), "{head:?}");
    let mut rest = Vec::new();
    assert_eq!(conn.read_to_end(&mut rest).map(|_| rest.len()).unwrap_or(0), 0, "closed after the answer");
}

#[test]
fn retries_of_a_slow_get_stay_within_its_deadline() {
    use crate::harness::upstream::Mode;
    // The callee takes 5 s; both pools time a read out in well under a
    // second and may try 3 times; the app allows 1 s.
    let pair = Pair::start(Options {
        pool: "read_timeout: 300ms".into(),
        outbound_pool: "read_timeout: 400ms".into(),
        ..Options::default()
    });
    pair.callee().set_mode(Mode::Delay(Duration::from_secs(5)));
    let start = std::time::Instant::now();
    let resp = send(
        pair.out_addr,
        Request::new("GET", "/token_service/slow")
            .header("x-fp-caller", &caller("aes", "none"))
            .header("x-fp-timeout-ms", "1000"),
    )
    .expect("response");
    let took = start.elapsed();
    assert_eq!(resp.status, 504, "{}", resp.text());
    assert!(took < Duration::from_millis(1600), "the deadline bounds every attempt: {took:?}");
    assert!(pair.callee().arrivals() <= 3, "{} attempts", pair.callee().arrivals());
}

#[test]
fn idle_keep_alive_connections_are_closed() {
    let pair = Pair::start(Options { idle_timeout: "1s", ..Options::default() });
    for addr in [pair.out_addr, pair.in_addr] {
        let mut conn = TcpStream::connect(addr).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let (head, _) = keep_alive_request(&mut conn, "/_fastproxy/health", "x");
        let start = std::time::Instant::now();
        assert_eq!(head.get("connection").map(str::to_ascii_lowercase).as_deref(), Some("keep-alive"), "{head:?}");
        let mut rest = Vec::new();
        let closed = conn.read_to_end(&mut rest).map(|_| rest.len()).unwrap_or(0);
        let idle = start.elapsed();
        assert_eq!(closed, 0, "{addr}: closed without another byte");
        assert!(idle >= Duration::from_millis(900) && idle < Duration::from_millis(2500), "{addr}: after {idle:?}");
    }
}

#[test]
fn a_request_body_that_stops_arriving_is_timed_out() {
    let pair = Pair::start(Options { body_timeout: "1s", ..Options::default() });
    let who = caller("aes", "none");
    let body = vec![b'x'; 200_000];
    let sealed = crate::harness::seal::seal(&crate::harness::seal::Hand::new("POST", "/upload", &who).body(&body));
    let app =
        format!("POST /token_service/upload HTTP/1.1\r\nhost: x\r\nx-fp-caller: {who}\r\ncontent-length: 1000\r\n\r\n");
    let peer = format!(
        "POST {} HTTP/1.1\r\nhost: x\r\nx-fp: {}\r\ncontent-length: {}\r\n\r\n",
        sealed.target,
        sealed.header,
        sealed.body.len()
    );
    for (addr, head, part) in [(pair.out_addr, app, &b"0123456789"[..]), (pair.in_addr, peer, &sealed.body[..70_000])] {
        let mut conn = TcpStream::connect(addr).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        conn.write_all(head.as_bytes()).unwrap();
        conn.write_all(part).unwrap();
        let start = std::time::Instant::now();
        let mut answer = Vec::new();
        let _ = conn.read_to_end(&mut answer);
        let took = start.elapsed();
        let text = String::from_utf8_lossy(&answer);
        eprintln!("{addr}: {took:?}: {}", text.lines().next().unwrap_or("(closed)"));
        assert!(took >= Duration::from_millis(900), "{addr}: answered before the body timeout: {text}");
        // Through the outbound proxy, the inbound proxy's own body timeout may
        // answer (its 408 passes through): within two timeouts either way.
        assert!(took < Duration::from_millis(3500), "{addr}: the stalled body held the connection {took:?}");
        assert!(text.is_empty() || text.starts_with("HTTP/1.1 408"), "{addr}: {text}");
    }
}
