//! TLS and mutual TLS between the proxies, with a CA made at test time by
//! `fastproxy certs`: a round trip whose link shows nothing in clear, client
//! certificates from another CA or expired refused in the handshake, a
//! caller's certificate that cannot sign as another caller, and the server
//! certificate rotated under load.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::harness::client::{send, Body, Request};
use crate::harness::config::{caller, Options, Pair};
use crate::harness::load::Load;

const SERVER_NAME: &str = "token.inbound.internal";

fn certs(dir: &Path, name: &str, args: &[&str]) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fastproxy"))
        .args(["certs", "--dir"])
        .arg(dir)
        .args(["--name", name])
        .args(args)
        .output()
        .expect("fastproxy certs");
    assert!(out.status.success(), "certs {name}: {}", String::from_utf8_lossy(&out.stderr));
}

fn identity(who: &str) -> String {
    format!("spiffe://test.fastproxy/{who}")
}

/// A CA, another CA, the inbound proxy's certificate and caller certificates.
fn pki() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "fastproxy-pki-{}-{}",
        std::process::id(),
        crate::harness::proxy::free_port()
    ));
    certs(&dir, "ca", &[]);
    certs(&dir, "other-ca", &[]);
    certs(&dir, "inbound", &["--ca", "ca", "--dns", SERVER_NAME]);
    for who in [caller("aes", "none"), "limited".to_owned()] {
        certs(&dir, &who, &["--ca", "ca", "--uri", &identity(&who)]);
    }
    certs(&dir, "stranger", &["--ca", "other-ca", "--uri", &identity(&caller("aes", "none"))]);
    certs(&dir, "expired", &["--ca", "ca", "--uri", &identity(&caller("aes", "none")), "--expired"]);
    dir
}

fn tls_pair(dir: &Path, client: &str, tap: bool) -> Pair {
    Pair::start(tls_options(dir, client, tap))
}

fn tls_options(dir: &Path, client: &str, tap: bool) -> Options {
    let d = dir.display();
    Options {
        tap,
        inbound_tls: Some(format!("{{ cert: \"{d}/inbound.crt\", key: \"{d}/inbound.key\", client_ca: \"{d}/ca.crt\" }}")),
        identities: vec![
            (caller("aes", "none"), identity(&caller("aes", "none"))),
            ("limited".to_owned(), identity("limited")),
        ],
        // The health check probes the inbound proxy's health endpoint over
        // the same mutual TLS.
        outbound_pool: format!(
            "tls: {{ ca: \"{d}/ca.crt\", server_name: {SERVER_NAME}, cert: \"{d}/{client}.crt\", key: \"{d}/{client}.key\" }}, health_check: {{ http: {{ path: /_fastproxy/health/token_service }}, interval: 300ms }}"
        ),
        ..Options::default()
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn an_mtls_round_trip_works_and_the_link_shows_no_plaintext() {
    let dir = pki();
    let pair = tls_pair(&dir, &caller("aes", "none"), true);
    let who = caller("aes", "none");
    let r = send(
        pair.out_addr,
        Request::new("POST", "/token_service/path-marker-7f3a?q=query-marker-9c1d")
            .header("x-fp-caller", &who)
            .header("x-marker", "header-marker-5e2b")
            .body(Body::Bytes(b"body-marker-41aa".to_vec())),
    )
    .expect("answer");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(pair.callee().last().head.get("x-fp-caller"), Some(who.as_str()));
    let link = pair.tap.as_ref().expect("tap").bytes();
    assert!(link.len() > 1000, "bytes crossed: {}", link.len());
    assert_eq!(link[0], 0x16, "the link starts with a TLS handshake record");
    for marker in [
        "path-marker-7f3a",
        "query-marker-9c1d",
        "header-marker-5e2b",
        "body-marker-41aa",
        "token_service",
        "x-fp",
        &who,
    ] {
        assert!(!contains(&link, marker.as_bytes()), "{marker} crossed the link in clear");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A rustls client config trusting the test CA, presenting `client` (none:
/// no certificate).
fn client_config(dir: &Path, client: Option<&str>) -> Arc<rustls::ClientConfig> {
    let pem = |name: &str| std::fs::read(dir.join(name)).expect("pem");
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut &pem("ca.crt")[..]) {
        roots.add(c.expect("ca")).expect("root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    Arc::new(match client {
        Some(name) => {
            let chain: Vec<_> =
                rustls_pemfile::certs(&mut &pem(&format!("{name}.crt"))[..]).map(|c| c.expect("c")).collect();
            let key = rustls_pemfile::private_key(&mut &pem(&format!("{name}.key"))[..]).expect("k").expect("key");
            builder.with_client_auth_cert(chain, key).expect("client cert")
        }
        None => builder.with_no_client_auth(),
    })
}

fn connect(addr: SocketAddr, dir: &Path, client: Option<&str>) -> (rustls::ClientConnection, TcpStream) {
    let name = rustls::pki_types::ServerName::try_from(SERVER_NAME).expect("name");
    let conn = rustls::ClientConnection::new(client_config(dir, client), name).expect("conn");
    let sock = TcpStream::connect(addr).expect("connect");
    sock.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    (conn, sock)
}

/// A TLS client of the inbound proxy presenting `client`; the first bytes
/// of its answer to a plain GET, or the error.
fn handshake(addr: SocketAddr, dir: &Path, client: Option<&str>) -> Result<Vec<u8>, String> {
    let (mut conn, mut sock) = connect(addr, dir, client);
    let mut tls = rustls::Stream::new(&mut conn, &mut sock);
    tls.write_all(b"GET /_fastproxy/health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut out = vec![0u8; 64];
    let n = tls.read(&mut out).map_err(|e| e.to_string())?;
    if n == 0 {
        return Err("closed without an answer".to_owned());
    }
    out.truncate(n);
    Ok(out)
}

/// The DER of the certificate the inbound proxy presents now.
fn presented(addr: SocketAddr, dir: &Path) -> Vec<u8> {
    let (mut conn, mut sock) = connect(addr, dir, Some(&caller("aes", "none")));
    while conn.is_handshaking() {
        conn.complete_io(&mut sock).expect("handshake");
    }
    conn.peer_certificates().and_then(|c| c.first()).map(|c| c.as_ref().to_vec()).expect("a certificate")
}

#[test]
fn client_certificates_from_another_ca_or_expired_or_missing_are_refused_in_the_handshake() {
    let dir = pki();
    let pair = tls_pair(&dir, &caller("aes", "none"), false);
    let ok = handshake(pair.in_addr, &dir, Some(&caller("aes", "none"))).expect("a valid certificate is accepted");
    assert!(ok.starts_with(b"HTTP/1.1 "), "{}", String::from_utf8_lossy(&ok));
    for (who, what) in [(Some("stranger"), "another CA"), (Some("expired"), "expired"), (None, "no certificate")] {
        let refused = handshake(pair.in_addr, &dir, who);
        assert!(
            refused.is_err(),
            "a certificate from {what} got an answer: {:?}",
            refused.map(|b| String::from_utf8_lossy(&b).into_owned())
        );
        eprintln!("{what}: {}", refused.err().unwrap_or_default());
    }
    // And through the proxies: an outbound proxy presenting another CA's
    // certificate cannot reach the inbound proxy.
    let stranger = tls_pair(&dir, "stranger", false);
    let who = caller("aes", "none");
    let r =
        send(stranger.out_addr, Request::new("GET", "/token_service/x").header("x-fp-caller", &who)).expect("answer");
    // 502 when the request's own handshake fails, 503 once the health check
    // (refused the same way) has marked the inbound proxy down.
    assert!([502, 503].contains(&r.status), "{} {}", r.status, r.text());
    assert_eq!(stranger.callee().arrivals(), 0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_callers_certificate_cannot_sign_as_another_caller() {
    let dir = pki();
    // The outbound proxy presents c-aes-none's certificate for every caller.
    let pair = tls_pair(&dir, &caller("aes", "none"), false);
    let own =
        send(pair.out_addr, Request::new("GET", "/token_service/x").header("x-fp-caller", &caller("aes", "none")))
            .expect("answer");
    assert_eq!(own.status, 200, "{}", own.text());
    let other =
        send(pair.out_addr, Request::new("GET", "/token_service/x").header("x-fp-caller", "limited")).expect("answer");
    assert_eq!(other.status, 403, "{}", other.text());
    assert!(other.text().contains("identity_mismatch"), "{}", other.text());
    assert_eq!(pair.callee().arrivals(), 1, "only the caller's own request reached the callee");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_server_certificate_rotates_under_load_without_a_failed_request() {
    let dir = pki();
    let pair = tls_pair(&dir, &caller("aes", "none"), false);
    let before = presented(pair.in_addr, &dir);
    let serial = |admin| crate::harness::proxy::admin_config(admin)["inbound"]["tls"]["certificate"]["serial"].clone();
    let serial_before = serial(pair.in_admin);
    assert!(serial_before.is_string(), "/config shows the certificate");
    let load = Load::start(pair.out_addr, 8, &caller("aes", "none"), &[200]);
    std::thread::sleep(Duration::from_secs(1));
    certs(&dir, "inbound-next", &["--ca", "ca", "--dns", SERVER_NAME]);
    for ext in ["key", "crt"] {
        let tmp = dir.join(format!("inbound.{ext}.new"));
        std::fs::copy(dir.join(format!("inbound-next.{ext}")), &tmp).expect("copy");
        std::fs::rename(&tmp, dir.join(format!("inbound.{ext}"))).expect("rename");
    }
    pair.inbound.signal("HUP");
    let next = rustls_pemfile::certs(&mut &std::fs::read(dir.join("inbound-next.crt")).expect("crt")[..])
        .next()
        .expect("a cert")
        .expect("pem")
        .as_ref()
        .to_vec();
    let t = Instant::now();
    while presented(pair.in_addr, &dir) != next {
        assert!(t.elapsed() < Duration::from_secs(5), "new connections still get the old certificate");
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("new handshakes present the new certificate {:?} after SIGHUP", t.elapsed());
    assert_ne!(before, next);
    assert_ne!(serial(pair.in_admin), serial_before, "/config shows the new certificate");
    std::thread::sleep(Duration::from_secs(1));
    let (sent, _, failures) = load.finish();
    eprintln!("rotation under load: {sent} requests, {} failed", failures.len());
    assert!(failures.is_empty(), "{failures:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn http2_runs_between_the_proxies_over_mutual_tls() {
    let dir = pki();
    let who = caller("aes", "none");
    // Plain HTTP over a pool that speaks h2 (ALPN) to the inbound proxy.
    let mut o = tls_options(&dir, &who, true);
    o.outbound_pool.push_str(", protocol: h2");
    let pair = Pair::start(o);
    let r = send(
        pair.out_addr,
        Request::new("POST", "/token_service/h2").header("x-fp-caller", &who).body(Body::Bytes(vec![7; 100_000])),
    )
    .expect("answer");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(pair.callee().last().body_len, 100_000);
    let link = pair.tap.as_ref().expect("tap").bytes();
    assert!(contains(&link, b"\x02h2"), "the client hello offers ALPN h2");
    drop(pair);

    // gRPC over mutual TLS: its trailers arrive only if the hop is HTTP/2.
    let server = crate::harness::grpc::GrpcServer::start();
    let mut o = tls_options(&dir, &who, false);
    o.dead_callees = Some(vec![server.addr]);
    let pair = Pair::start(o);
    let v = crate::harness::grpc::call(pair.out_addr, "token_service", &who, "serve", "3", Some(10.0));
    assert_eq!(v["code"], "OK", "{v}");
    assert_eq!(v["trailers"]["x-echo-trailer"], "serve", "{v}");
    let _ = std::fs::remove_dir_all(&dir);
}
