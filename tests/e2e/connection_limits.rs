//! What anyone who can reach a listener can hold, without credentials: a
//! request head sent slowly is cut at `header_timeout`, connections above
//! `max_connections` get a clean refusal, and legitimate requests are served
//! meanwhile.

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::harness::client::{send, Request};
use crate::harness::config::{caller, Options, Pair};
use crate::harness::wire;

/// Sends `head` one byte every `gap` until the proxy closes the connection;
/// returns how long that took (or `None` after `give_up`).
fn trickle_until_closed(conn: &mut TcpStream, head: &[u8], gap: Duration, give_up: Duration) -> Option<Duration> {
    conn.set_read_timeout(Some(Duration::from_millis(1))).unwrap();
    let start = Instant::now();
    for b in head.iter().cycle() {
        if start.elapsed() > give_up {
            return None;
        }
        if conn.write_all(&[*b]).is_err() {
            return Some(start.elapsed());
        }
        let mut one = [0u8; 1];
        match conn.read(&mut one) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => panic!("the proxy answered a head it never received whole"),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return Some(start.elapsed()),
        }
        std::thread::sleep(gap);
    }
    None
}

/// One keep-alive request that each listener serves with 200 (a call
/// through the outbound proxy, the inbound proxy's health check).
fn served(pair: &Pair, addr: std::net::SocketAddr, conn: &mut TcpStream) -> wire::Head {
    if addr == pair.out_addr {
        let who = caller("aes", "none");
        write!(conn, "GET /token_service/ok HTTP/1.1\r\nhost: x\r\nx-fp-caller: {who}\r\n\r\n").unwrap();
    } else {
        write!(conn, "GET /_fastproxy/health HTTP/1.1\r\nhost: x\r\n\r\n").unwrap();
    }
    let mut r = BufReader::new(conn.try_clone().unwrap());
    let head = wire::read_head(&mut r).unwrap().expect("a response");
    wire::read_body(&mut r, wire::response_framing(&head, "GET"), &mut |_| {}).unwrap();
    head
}

#[test]
fn a_request_head_sent_slowly_is_cut_at_the_header_timeout() {
    let pair = Pair::start(Options { header_timeout: "1s", ..Options::default() });
    let who = caller("aes", "none");
    for addr in [pair.out_addr, pair.in_addr] {
        let head =
            format!("GET /token_service/x HTTP/1.1\r\nhost: x\r\nx-fp-caller: {who}\r\nx-pad: {}", "a".repeat(64));
        // On a new connection, and on a keep-alive connection after one
        // request was served; in both cases a second byte-by-byte sender is
        // running, and a legitimate request is served meanwhile.
        let mut fresh = TcpStream::connect(addr).unwrap();
        let mut reused = TcpStream::connect(addr).unwrap();
        reused.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(served(&pair, addr, &mut reused).status(), 200);
        let slow = std::thread::spawn(move || {
            trickle_until_closed(&mut fresh, head.as_bytes(), Duration::from_millis(100), Duration::from_secs(6))
        });
        let head2 = format!("GET /token_service/y HTTP/1.1\r\nhost: x\r\nx-pad: {}", "b".repeat(64));
        let slow2 = std::thread::spawn(move || {
            trickle_until_closed(&mut reused, head2.as_bytes(), Duration::from_millis(100), Duration::from_secs(6))
        });
        std::thread::sleep(Duration::from_millis(300));
        let resp = send(pair.out_addr, Request::new("GET", "/token_service/served").header("x-fp-caller", &who))
            .expect("a legitimate request");
        assert_eq!(resp.status, 200, "{}", resp.text());
        for (what, t) in [("new", slow.join().unwrap()), ("keep-alive", slow2.join().unwrap())] {
            let t = t.unwrap_or_else(|| panic!("{addr}: a {what} connection sending its head slowly was never closed"));
            eprintln!("{addr}: {what} connection closed after {t:?}");
            assert!(t >= Duration::from_millis(900) && t < Duration::from_millis(2500), "{addr} {what}: {t:?}");
        }
    }
}

#[test]
fn a_body_sent_slowly_is_not_cut_by_the_header_timeout() {
    let pair = Pair::start(Options { header_timeout: "1s", ..Options::default() });
    let who = caller("aes", "none");
    let mut conn = TcpStream::connect(pair.out_addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        conn,
        "POST /token_service/upload HTTP/1.1\r\nhost: x\r\nx-fp-caller: {who}\r\ntransfer-encoding: chunked\r\n\r\n"
    )
    .unwrap();
    for i in 0..5 {
        write!(conn, "5\r\npart{i}\r\n").unwrap();
        std::thread::sleep(Duration::from_millis(600));
    }
    write!(conn, "0\r\n\r\n").unwrap();
    let mut r = BufReader::new(conn.try_clone().unwrap());
    let head = wire::read_head(&mut r).unwrap().expect("a response");
    assert_eq!(head.status(), 200, "{head:?}");
    assert_eq!(pair.callee().last().body, b"part0part1part2part3part4");
}

/// Waits until the proxy counts `n` open connections on `role`'s listener.
fn wait_for_open(admin: std::net::SocketAddr, role: &str, n: usize) {
    let want = format!("fastproxy_connections{{role=\"{role}\"}} {n}\n");
    let start = Instant::now();
    loop {
        let metrics = send(admin, Request::new("GET", "/metrics")).expect("metrics").text();
        if metrics.contains(&want) {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "never {want}: {metrics}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn connections_above_the_cap_get_a_clean_refusal() {
    for role in ["outbound", "inbound"] {
        // A pair each: calls through the outbound proxy leave a pooled
        // connection at the inbound one, which counts against its cap.
        let pair = Pair::start(Options { max_connections: 4, ..Options::default() });
        let (addr, admin) =
            if role == "outbound" { (pair.out_addr, pair.out_admin) } else { (pair.in_addr, pair.in_admin) };
        let mut held: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(addr).unwrap()).collect();
        wait_for_open(admin, role, 4);
        let mut extra = TcpStream::connect(addr).unwrap();
        extra.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(extra, "GET /_fastproxy/health HTTP/1.1\r\nhost: x\r\n\r\n").unwrap();
        let mut answer = Vec::new();
        extra.read_to_end(&mut answer).expect("an answer, then a clean close");
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 503 "), "{addr}: {text}");
        assert!(text.to_ascii_lowercase().contains("\r\nconnection: close\r\n"), "{addr}: {text}");
        assert!(text.contains("\"code\":\"too_many_connections\""), "{addr}: {text}");
        let body_at = text.find("\r\n\r\n").unwrap() + 4;
        let len: usize = text
            .lines()
            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length: ").map(|v| v.parse().unwrap()))
            .expect("a content-length");
        assert_eq!(answer.len() - body_at, len, "{addr}: {text}");
        // A held connection is served, and once one goes, a new one is too.
        held[0].set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(served(&pair, addr, &mut held[0]).status(), 200, "{addr}");
        held.pop();
        wait_for_open(admin, role, 3);
        let mut next = TcpStream::connect(addr).unwrap();
        next.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(served(&pair, addr, &mut next).status(), 200, "{addr}: served once below the cap");
        let metrics = send(admin, Request::new("GET", "/metrics")).expect("metrics").text();
        assert!(metrics.contains(&format!("fastproxy_connections_refused_total{{role=\"{role}\"}} 1")), "{metrics}");
    }
}

#[test]
fn http2_connections_are_not_timed_as_heads_but_close_when_idle() {
    let server = crate::harness::grpc::GrpcServer::start();
    let pair = Pair::start(Options {
        header_timeout: "1s",
        idle_timeout: "2s",
        dead_callees: Some(vec![server.addr]),
        ..Options::default()
    });
    // A gRPC stream of 40 messages 50 ms apart (2 s) on h2c connections at
    // both listeners: longer than header_timeout, never cut.
    let v =
        crate::harness::grpc::call(pair.out_addr, "token_service", &caller("aes", "none"), "serve", "40", Some(10.0));
    assert_eq!(v["code"], "OK", "{v}");
    assert_eq!(v["responses"].as_array().map(Vec::len), Some(40));

    for addr in [pair.out_addr, pair.in_addr] {
        // The preface and an empty SETTINGS frame, then nothing: closed once
        // idle_timeout passes with no stream open.
        let mut conn = TcpStream::connect(addr).unwrap();
        conn.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00").unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(6))).unwrap();
        let start = Instant::now();
        let mut buf = [0u8; 4096];
        loop {
            match conn.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        let t = start.elapsed();
        assert!(
            t >= Duration::from_millis(1500) && t < Duration::from_millis(5500),
            "{addr}: idle h2 closed after {t:?}"
        );

        // Fewer bytes than the HTTP/2 preface, sent slowly: Pingora waits
        // for 24 bytes to tell h2c from HTTP/1.1, and that wait is on the
        // head clock too.
        let mut short = TcpStream::connect(addr).unwrap();
        let t =
            trickle_until_closed(&mut short, b"GET / HTTP/1.1\r\n", Duration::from_millis(150), Duration::from_secs(6))
                .unwrap_or_else(|| panic!("{addr}: a short head sent slowly was never closed"));
        assert!(t < Duration::from_millis(2500), "{addr}: closed after {t:?}");
    }
}
