//! A local server speaking Apollo's client protocol, for the remote config
//! tests: `GET /configs/{appId}/{cluster}/{namespace}?releaseKey=` (200 with
//! `configurations.content` and `releaseKey`, or 304) and
//! `GET /notifications/v2?…&notifications=[…]` (held until the namespace
//! changes or the hold ends: 200 with its new `notificationId`, or 304).
//! With a secret it checks Apollo's access-key signature and answers 401
//! without it. It can be set to answer 500, or to stop answering.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

/// How the server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Normal,
    /// Every request gets 500.
    Error,
}

struct State {
    content: String,
    release: u64,
    mode: Mode,
    hold: Duration,
    /// Requests by kind: configs 200, configs 304, notifications 200,
    /// notifications 304, refused (401/500).
    counts: [usize; 5],
    stopped: bool,
}

pub struct ApolloServer {
    pub addr: SocketAddr,
    pub app_id: String,
    pub namespace: String,
    secret: Option<String>,
    state: Arc<(Mutex<State>, Condvar)>,
}

impl ApolloServer {
    /// Serves `content` as release 1 of namespace `fastproxy.yaml` of app
    /// `fastproxy`, holding notification polls for `hold`.
    pub fn start(content: &str, hold: Duration, secret: Option<&str>) -> ApolloServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new((
            Mutex::new(State {
                content: content.to_owned(),
                release: 1,
                mode: Mode::Normal,
                hold,
                counts: [0; 5],
                stopped: false,
            }),
            Condvar::new(),
        ));
        let server = ApolloServer {
            addr,
            app_id: "fastproxy".to_owned(),
            namespace: "fastproxy.yaml".to_owned(),
            secret: secret.map(str::to_owned),
            state: state.clone(),
        };
        let (app, ns, key) = (server.app_id.clone(), server.namespace.clone(), server.secret.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                if state.0.lock().unwrap().stopped {
                    return;
                }
                let (state, app, ns, key) = (state.clone(), app.clone(), ns.clone(), key.clone());
                std::thread::spawn(move || serve(conn, &state, &app, &ns, key.as_deref()));
            }
        });
        server
    }

    /// Publishes a new release of the namespace.
    pub fn publish(&self, content: &str) {
        let mut s = self.state.0.lock().unwrap();
        s.content = content.to_owned();
        s.release += 1;
        self.state.1.notify_all();
    }

    pub fn set_mode(&self, mode: Mode) {
        self.state.0.lock().unwrap().mode = mode;
    }

    /// [configs 200, configs 304, notifications 200, notifications 304, refused].
    pub fn counts(&self) -> [usize; 5] {
        self.state.0.lock().unwrap().counts
    }

    /// The `remote:` section of a local config pointing here.
    pub fn remote_yaml(&self, cache: Option<&str>, secret: Option<&str>) -> String {
        let cache = cache.map_or(String::new(), |c| format!("\n  cache: \"{c}\""));
        let secret = secret.map_or(String::new(), |s| format!(", secret: \"{s}\""));
        format!(
            "remote:\n  apollo: {{ url: \"http://{}\", app_id: {}, namespace: {}{secret} }}{cache}\n",
            self.addr, self.app_id, self.namespace
        )
    }
}

impl Drop for ApolloServer {
    fn drop(&mut self) {
        self.state.0.lock().unwrap().stopped = true;
        self.state.1.notify_all();
        let _ = TcpStream::connect(self.addr);
    }
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&text[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn reply(conn: &mut TcpStream, status: u16, body: &str) {
    let reason = match status {
        200 => "OK",
        304 => "Not Modified",
        401 => "Unauthorized",
        _ => "Error",
    };
    let _ = write!(
        conn,
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
}

fn serve(mut conn: TcpStream, state: &(Mutex<State>, Condvar), app: &str, ns: &str, secret: Option<&str>) {
    let mut reader = BufReader::new(conn.try_clone().expect("clone"));
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let target = line.split_whitespace().nth(1).unwrap_or("").to_owned();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    let header = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    if state.0.lock().unwrap().mode == Mode::Error {
        state.0.lock().unwrap().counts[4] += 1;
        return reply(&mut conn, 500, "{\"status\":500}");
    }
    if let Some(secret) = secret {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret.as_bytes());
        let ts = header("timestamp").unwrap_or_default();
        let expected = format!(
            "Apollo {app}:{}",
            B64.encode(ring::hmac::sign(&key, format!("{ts}\n{target}").as_bytes()).as_ref())
        );
        if header("authorization").as_deref() != Some(expected.as_str()) {
            state.0.lock().unwrap().counts[4] += 1;
            return reply(&mut conn, 401, "{\"status\":401,\"message\":\"Unauthorized\"}");
        }
    }
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let param =
        |name: &str| query.split('&').find_map(|p| p.strip_prefix(name).and_then(|v| v.strip_prefix('='))).map(decode);
    if path == format!("/configs/{app}/default/{ns}") {
        let mut s = state.0.lock().unwrap();
        let release = format!("release-{}", s.release);
        if param("releaseKey").as_deref() == Some(release.as_str()) {
            s.counts[1] += 1;
            drop(s);
            return reply(&mut conn, 304, "");
        }
        s.counts[0] += 1;
        let body = serde_json::json!({
            "appId": app, "cluster": "default", "namespaceName": ns,
            "configurations": { "content": s.content }, "releaseKey": release,
        })
        .to_string();
        drop(s);
        return reply(&mut conn, 200, &body);
    }
    if path == "/notifications/v2" && param("appId").as_deref() == Some(app) {
        let known: i64 = param("notifications")
            .and_then(|n| serde_json::from_str::<serde_json::Value>(&n).ok())
            .and_then(|v| v[0]["notificationId"].as_i64())
            .unwrap_or(-1);
        let deadline = Instant::now() + state.0.lock().unwrap().hold;
        let mut s = state.0.lock().unwrap();
        while s.release as i64 <= known && !s.stopped {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                s.counts[3] += 1;
                drop(s);
                return reply(&mut conn, 304, "");
            }
            s = state.1.wait_timeout(s, left).unwrap().0;
        }
        s.counts[2] += 1;
        let body = serde_json::json!([{ "namespaceName": ns, "notificationId": s.release }]).to_string();
        drop(s);
        return reply(&mut conn, 200, &body);
    }
    reply(&mut conn, 404, "{\"status\":404}")
}
