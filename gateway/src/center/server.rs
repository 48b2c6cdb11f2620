//! The center's HTTP JSON API (docs/CENTER.md): authenticate → authorize →
//! apply to the [`Store`] → persist → answer (signed). Long polls wait on
//! the revision; a sweeper ends expired leases.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::watch;

use super::store::{Refusal, Store};
use crate::config::registry::{self, Center as Settings};
use crate::discovery::center_auth as auth;
use crate::membership::{valid_instance_id, Instance};
use crate::metrics::Metrics;
use crate::state::Shared;

/// Largest request body (a published config document).
const MAX_REQUEST: usize = 1024 * 1024;
/// Largest registration body.
const MAX_REGISTRATION: usize = 64 * 1024;
/// Longest a watch is held.
const MAX_WAIT: Duration = Duration::from_secs(60);
/// Most nonces remembered (the 2 × 30 s window of a busy center fits).
const MAX_NONCES: usize = 200_000;

/// The center's state and what it shares with its sweeper.
pub struct Center {
    store: Mutex<Store>,
    revision: watch::Sender<u64>,
    file: String,
    written: Mutex<u64>,
    nonces: Mutex<HashMap<(String, String), u64>>,
    shared: Shared,
    metrics: Arc<Metrics>,
}

/// An answer before it is signed.
struct Answer {
    status: u16,
    body: serde_json::Value,
}

fn answer(status: u16, body: serde_json::Value) -> Answer {
    Answer { status, body }
}

fn refuse(status: u16, code: &str, message: impl Into<String>) -> Answer {
    answer(status, json!({ "error": { "code": code, "message": message.into() } }))
}

fn refusal(r: Refusal) -> Answer {
    match r {
        Refusal::LeaseNotFound => {
            refuse(404, "lease_not_found", "no such lease: it expired or was revoked; register again")
        }
        Refusal::NotOwner => refuse(403, "forbidden", "the lease belongs to another client"),
        Refusal::Full => {
            refuse(507, "full", format!("the center holds {} instances already", super::store::MAX_INSTANCES))
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterBody {
    addr: String,
    #[serde(default = "one")]
    weight: u32,
    #[serde(default)]
    metadata: std::collections::BTreeMap<String, String>,
    ttl_ms: u64,
}

fn one() -> u32 {
    1
}

impl Center {
    /// Opens the center's state file (empty state when there is none).
    pub fn open(settings: &Settings, shared: Shared, metrics: Arc<Metrics>) -> Result<Arc<Center>, String> {
        let store = match std::fs::read(&settings.state_file) {
            Ok(bytes) => Store::restore(&bytes, Instant::now())
                .map_err(|e| format!("center.state_file {}: {e}", settings.state_file))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Store::default(),
            Err(e) => return Err(format!("center.state_file {}: {e}", settings.state_file)),
        };
        log::info!(
            "center: {} service(s), revision {} restored from {}",
            store.services().len(),
            store.revision(),
            settings.state_file
        );
        let (revision, _) = watch::channel(store.revision());
        Ok(Arc::new(Center {
            written: Mutex::new(store.revision()),
            store: Mutex::new(store),
            revision,
            file: settings.state_file.clone(),
            nonces: Mutex::new(HashMap::new()),
            shared,
            metrics,
        }))
    }

    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Persists the state (written at most once per revision, newest last)
    /// and wakes the watches.
    async fn changed(self: &Arc<Self>) -> Result<(), String> {
        let (revision, bytes) = {
            let s = self.store();
            (s.revision(), s.save())
        };
        let me = self.clone();
        let written = tokio::task::spawn_blocking(move || {
            let mut last = me.written.lock().unwrap_or_else(|p| p.into_inner());
            if *last >= revision {
                return Ok(());
            }
            let tmp = format!("{}.tmp", me.file);
            std::fs::write(&tmp, &bytes)
                .and_then(|_| std::fs::File::open(&tmp)?.sync_all())
                .and_then(|_| std::fs::rename(&tmp, &me.file))
                .map_err(|e| format!("writing {}: {e}", me.file))?;
            *last = revision;
            Ok(())
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r);
        self.revision.send_replace(revision);
        if let Err(e) = &written {
            log::error!("center: {e}");
        }
        written
    }

    /// The HTTP answer for `a`, signed when `key` is given; counted by result.
    fn answer(&self, a: Answer, key: Option<(&ring::hmac::Key, &str)>) -> Response<Vec<u8>> {
        self.metrics.center_request(a.body["error"]["code"].as_str().unwrap_or("ok"));
        reply(a, key)
    }

    /// Ends expired leases and forgets nonces older than the replay window
    /// (the sweeper calls this).
    pub async fn sweep(self: &Arc<Self>) {
        let now = crate::http_util::now_ms();
        self.nonces.lock().unwrap_or_else(|p| p.into_inner()).retain(|_, t| now.abs_diff(*t) <= auth::MAX_SKEW_MS);
        let ended = self.store().sweep(Instant::now());
        if ended > 0 {
            log::info!("center: {ended} lease(s) expired");
            let _ = self.changed().await;
        }
    }

    /// How much of the request's body may be read before it is
    /// authenticated: nothing when its Authorization names no client, 1 MiB
    /// for a config document from a client that may publish, else 64 KiB.
    fn body_limit(&self, session: &ServerSession, path: &str) -> Result<usize, Answer> {
        let header = session.req_header().headers.get(http::header::AUTHORIZATION);
        let node = header.and_then(|v| v.to_str().ok()).and_then(auth::parse).map(|c| c.node.to_owned());
        let snap = self.shared.load();
        let client = node.as_deref().and_then(|n| snap.config.center.as_ref()?.clients.get(n));
        let Some(client) = client else {
            return Err(refuse(
                401,
                "unauthenticated",
                "an FP-Center Authorization header naming a client is required",
            ));
        };
        let publishing = session.req_header().method == http::Method::PUT && path.starts_with("/v1/config/");
        Ok(if publishing && !client.publish.is_empty() { MAX_REQUEST } else { MAX_REGISTRATION })
    }

    /// Checks the request's credentials; the client's name and key.
    fn authenticate(
        &self,
        session: &ServerSession,
        target: &str,
        body: &[u8],
    ) -> Result<(String, Arc<ring::hmac::Key>, String, Rights), Answer> {
        let unauth = |m: &str| refuse(401, "unauthenticated", m);
        let header = session.req_header().headers.get(http::header::AUTHORIZATION);
        let value = header
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| unauth("an FP-Center Authorization header is required"))?;
        let c = auth::parse(value).ok_or_else(|| unauth("the Authorization header is malformed"))?;
        let snap = self.shared.load();
        let client = snap.config.center.as_ref().and_then(|s| s.clients.get(c.node));
        let Some(client) = client else { return Err(unauth("unknown client")) };
        let method = session.req_header().method.as_str();
        let text = auth::request_string(method, target, c.t_ms, c.nonce, body);
        if !auth::verify(&client.key, &text, c.sig) {
            return Err(unauth("bad signature"));
        }
        let now = crate::http_util::now_ms();
        if now.abs_diff(c.t_ms) > auth::MAX_SKEW_MS {
            return Err(unauth("the request's time is more than 30 s from the center's clock"));
        }
        let mut nonces = self.nonces.lock().unwrap_or_else(|p| p.into_inner());
        if nonces.len() >= MAX_NONCES {
            nonces.retain(|_, t| now.abs_diff(*t) <= auth::MAX_SKEW_MS);
            if nonces.len() >= MAX_NONCES {
                return Err(refuse(503, "busy", "too many requests in the replay window"));
            }
        }
        if nonces.insert((c.node.to_owned(), c.nonce.to_owned()), c.t_ms).is_some() {
            return Err(unauth("replayed request"));
        }
        let rights = Rights { register: client.register.clone(), publish: client.publish.clone() };
        Ok((c.node.to_owned(), client.key.clone(), c.sig.to_owned(), rights))
    }

    async fn route(
        self: &Arc<Self>,
        method: &str,
        path: &str,
        query: &str,
        node: &str,
        may: &Rights,
        body: &[u8],
    ) -> Answer {
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match (method, parts.as_slice()) {
            ("PUT", ["v1", "services", service, "instances", id]) => {
                self.register(node, &may.register, service, id, body).await
            }
            ("PUT", ["v1", "config", name]) => self.publish(node, &may.publish, name, body).await,
            ("GET", ["v1", "config", name]) => self.config(name, query).await,
            ("POST", ["v1", "leases", lease, "keepalive"]) => match lease.parse::<u64>() {
                Ok(lease) => {
                    let renewed = self.store().keepalive(node, lease, Instant::now());
                    match renewed {
                        Ok(ttl) => answer(200, json!({ "lease": lease.to_string(), "ttl_ms": ttl.as_millis() as u64 })),
                        Err(r) => refusal(r),
                    }
                }
                Err(_) => refusal(Refusal::LeaseNotFound),
            },
            ("DELETE", ["v1", "leases", lease]) => match lease.parse::<u64>() {
                Ok(lease) => {
                    let revoked = self.store().revoke(node, lease);
                    match revoked {
                        Ok(()) => match self.changed().await {
                            Ok(()) => answer(200, json!({ "revision": self.store().revision() })),
                            Err(e) => refuse(500, "storage", e),
                        },
                        Err(r) => refusal(r),
                    }
                }
                Err(_) => refusal(Refusal::LeaseNotFound),
            },
            ("GET", ["v1", "services"]) => {
                let s = self.store();
                answer(200, json!({ "revision": s.revision(), "services": s.services() }))
            }
            ("GET", ["v1", "services", service]) => self.list(service, query).await,
            (_, ["v1", ..]) => refuse(405, "method_not_allowed", format!("{method} {path} is not part of the API")),
            _ => refuse(404, "not_found", "the API lives under /v1 (docs/CENTER.md)"),
        }
    }

    async fn register(self: &Arc<Self>, node: &str, may: &[String], service: &str, id: &str, body: &[u8]) -> Answer {
        if !filters::valid_token(service, filters::envelope::MAX_NAME_LEN) || !valid_instance_id(id) {
            return refuse(400, "bad_request", "service must be 1-128 of A-Z a-z 0-9 . _ -, id 1-128 of those and :");
        }
        if !may.iter().any(|s| s == service || s == "*") {
            return refuse(403, "forbidden", format!("client {node} may not register instances of {service}"));
        }
        let b: RegisterBody = match serde_json::from_slice(body) {
            Ok(b) => b,
            Err(e) => return refuse(400, "bad_request", format!("body: {e}")),
        };
        let Ok(addr) = b.addr.parse() else { return refuse(400, "bad_request", "addr must be ip:port") };
        if b.weight == 0 || b.weight > 1000 {
            return refuse(400, "bad_request", "weight must be 1 to 1000");
        }
        if b.metadata.len() > registry::MAX_METADATA
            || b.metadata.iter().any(|(k, v)| {
                k.is_empty() || k.len() > registry::MAX_METADATA_LEN || v.len() > registry::MAX_METADATA_LEN
            })
        {
            return refuse(400, "bad_request", "at most 16 metadata labels of at most 256 bytes");
        }
        let max_ttl = self.shared.load().config.center.as_ref().map_or(MAX_WAIT, |c| c.max_ttl);
        let ttl = Duration::from_millis(b.ttl_ms);
        if ttl < registry::MIN_TTL || ttl > max_ttl {
            return refuse(400, "bad_request", format!("ttl_ms must be 1000 to {}", max_ttl.as_millis()));
        }
        let instance = Instance { id: id.to_owned(), addr, weight: b.weight, metadata: b.metadata };
        let registered = self.store().register(node, service, instance, ttl, Instant::now());
        match registered {
            Ok(lease) => match self.changed().await {
                Ok(()) => {
                    log::info!("center: {node} registered {service}/{id} at {addr} (lease {lease}, ttl {ttl:?})");
                    answer(
                        200,
                        json!({ "lease": lease.to_string(), "ttl_ms": b.ttl_ms, "revision": self.store().revision() }),
                    )
                }
                Err(e) => refuse(500, "storage", e),
            },
            Err(r) => refusal(r),
        }
    }

    async fn publish(self: &Arc<Self>, node: &str, may: &[String], name: &str, body: &[u8]) -> Answer {
        if !filters::valid_token(name, filters::envelope::MAX_NAME_LEN) {
            return refuse(400, "bad_request", "a config name is 1-128 of A-Z a-z 0-9 . _ -");
        }
        if !may.iter().any(|s| s == name || s == "*") {
            return refuse(403, "forbidden", format!("client {node} may not publish config {name}"));
        }
        let Ok(text) = std::str::from_utf8(body) else {
            return refuse(400, "bad_request", "the config is not UTF-8 text");
        };
        let published = self.store().publish(name, text.to_owned());
        match published {
            Ok(revision) => match self.changed().await {
                Ok(()) => {
                    log::info!("center: {node} published config {name} ({} bytes, revision {revision})", body.len());
                    answer(200, json!({ "name": name, "revision": revision }))
                }
                Err(e) => refuse(500, "storage", e),
            },
            Err(r) => refusal(r),
        }
    }

    /// Holds a watch until `changed` is true of the store or `wait` ends.
    async fn hold(&self, wait: Duration, changed: impl Fn(&Store) -> bool) {
        let mut rx = self.revision.subscribe();
        let deadline = tokio::time::Instant::now() + wait;
        while !changed(&self.store()) {
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => break,
            }
        }
    }

    /// Config document `name`; with `index=N`, held like a watch until it
    /// changes after revision N.
    async fn config(self: &Arc<Self>, name: &str, query: &str) -> Answer {
        let (index, wait) = match watch_query(query) {
            Ok(q) => q,
            Err(a) => return a,
        };
        if let Some(index) = index {
            self.hold(wait, |s| s.config(name).is_some_and(|d| d.modified > index)).await;
        }
        let doc = self.store().config(name).cloned();
        match doc {
            Some(d) => answer(200, json!({ "name": name, "revision": d.modified, "text": d.text })),
            None => refuse(404, "not_found", format!("no config {name} was published")),
        }
    }

    /// The listing of `service`; with `index=N`, held until the service
    /// changes after revision N or `wait` (default 30 s, at most 60 s) ends.
    async fn list(self: &Arc<Self>, service: &str, query: &str) -> Answer {
        let (index, wait) = match watch_query(query) {
            Ok(q) => q,
            Err(a) => return a,
        };
        if let Some(index) = index {
            self.hold(wait, |s| s.modified(service) > index).await;
        }
        let listing = self.store().listing(service);
        answer(200, serde_json::to_value(listing).unwrap_or_default())
    }
}

/// What an authenticated client may change.
struct Rights {
    register: Vec<String>,
    publish: Vec<String>,
}

/// `index` and `wait` of a watch's query (wait: default 30 s, at most 60 s).
fn watch_query(query: &str) -> Result<(Option<u64>, Duration), Answer> {
    {
        let mut index = None;
        let mut wait = Duration::from_secs(30);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("index", v)) => match v.parse::<u64>() {
                    Ok(n) => index = Some(n),
                    Err(_) => return Err(refuse(400, "bad_request", "index must be a revision number")),
                },
                Some(("wait", v)) => match crate::config::units::parse_duration(v) {
                    Ok(d) => wait = d.min(MAX_WAIT),
                    Err(e) => return Err(refuse(400, "bad_request", format!("wait: {e}"))),
                },
                _ => return Err(refuse(400, "bad_request", format!("unknown query parameter {pair:?}"))),
            }
        }
        Ok((index, wait))
    }
}

/// The center as an HTTP app.
pub struct App(pub Arc<Center>);

/// Reads the request body, at most `limit` bytes.
async fn read_body(session: &mut ServerSession, limit: usize) -> Result<Vec<u8>, Answer> {
    let mut body = Vec::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(piece)) => {
                if body.len() + piece.len() > limit {
                    return Err(refuse(413, "too_large", format!("this request's body is at most {limit} bytes")));
                }
                body.extend_from_slice(&piece);
            }
            Ok(None) => return Ok(body),
            Err(e) => return Err(refuse(400, "bad_request", format!("reading the body: {e}"))),
        }
    }
}

fn reply(a: Answer, key: Option<(&ring::hmac::Key, &str)>) -> Response<Vec<u8>> {
    let body = a.body.to_string().into_bytes();
    let mut r = Response::new(Vec::new());
    *r.status_mut() = http::StatusCode::from_u16(a.status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    let h = r.headers_mut();
    h.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    h.insert(http::header::CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
    h.insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(body.len()));
    if let Some((key, sig)) = key {
        let signed = auth::sign(key, &auth::response_string(sig, a.status, &body));
        if let Ok(v) = http::HeaderValue::from_str(&signed) {
            h.insert(auth::RESPONSE_HEADER, v);
        }
    }
    *r.body_mut() = body;
    r
}

#[async_trait]
impl ServeHttp for App {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let uri = session.req_header().uri.clone();
        let path = uri.path().to_owned();
        if path == "/healthz" {
            return reply(answer(200, json!({ "status": "alive", "revision": self.0.store().revision() })), None);
        }
        let target = uri.path_and_query().map_or(path.clone(), |p| p.as_str().to_owned());
        // Nothing is buffered for a request that names no client of the
        // center; a config document may be large only for a publisher.
        let limit = match self.0.body_limit(session, &path) {
            Ok(l) => l,
            Err(a) => return self.0.answer(a, None),
        };
        let body = match read_body(session, limit).await {
            Ok(b) => b,
            Err(a) => return self.0.answer(a, None),
        };
        let (node, key, sig, may) = match self.0.authenticate(session, &target, &body) {
            Ok(c) => c,
            Err(a) => {
                // Debug only: anyone can send these (the metric counts them).
                log::debug!("center: refused {} {path}: {}", session.req_header().method, a.body["error"]["message"]);
                return self.0.answer(a, None);
            }
        };
        let method = session.req_header().method.as_str().to_owned();
        let a = self.0.route(&method, &path, uri.query().unwrap_or(""), &node, &may, &body).await;
        if a.status >= 400 {
            log::info!("center: refused {method} {path} from {node}: {}", a.body["error"]["message"]);
        }
        self.0.answer(a, Some((&key, &sig)))
    }
}

/// Ends expired leases every 250 ms.
pub struct Sweeper(pub Arc<Center>);

#[async_trait]
impl pingora::services::background::BackgroundService for Sweeper {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tokio::select! {
                _ = tick.tick() => self.0.sweep().await,
                _ = shutdown.changed() => return,
            }
        }
    }
}
