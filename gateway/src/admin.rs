//! The admin listener, separate from the data ports: `/healthz` (the process
//! is alive), `/readyz` (config loaded and every pool in use has a backend to
//! send to), `/metrics` (Prometheus text format), `/config` (the running
//! config, secrets redacted, with its generation and the last failed
//! reload) and `POST /reload` (read the config file again).

use std::sync::Arc;

use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::{HttpServer, ServeHttp};
use pingora::protocols::http::ServerSession;
use serde_json::json;

use crate::reload::Reloader;
use crate::state::{Shared, Snapshot};

/// The admin HTTP app.
pub struct Admin {
    shared: Shared,
    reloader: Arc<Reloader>,
}

/// Builds the admin server for `shared`, reloading through `reloader`.
pub fn server(shared: Shared, reloader: Arc<Reloader>) -> HttpServer<Admin> {
    HttpServer::new_app(Admin { shared, reloader })
}

fn reply(status: u16, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    let mut r = Response::new(body);
    *r.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    r.headers_mut().insert(http::header::CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
    let len = r.body().len();
    r.headers_mut().insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(len));
    r
}

fn json_reply(status: u16, v: serde_json::Value) -> Response<Vec<u8>> {
    reply(status, "application/json", v.to_string().into_bytes())
}

/// Pools the roles route to, with whether each can take a request now.
fn readiness(snap: &Snapshot) -> (bool, serde_json::Map<String, serde_json::Value>) {
    let mut used: Vec<&str> = Vec::new();
    if let Some(o) = &snap.config.outbound {
        used.extend(o.routes.values().map(|r| r.upstream.as_str()));
    }
    if let Some(i) = &snap.config.inbound {
        used.extend(i.services.values().map(String::as_str));
    }
    used.sort_unstable();
    used.dedup();
    let mut pools = serde_json::Map::new();
    let mut ready = true;
    for name in used {
        let up = snap.pools.get(name).is_some_and(|p| p.has_available());
        ready &= up;
        pools.insert(name.to_owned(), json!(if up { "ready" } else { "no backend available" }));
    }
    (ready, pools)
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let path = session.req_header().uri.path().to_owned();
        let post = session.req_header().method == http::Method::POST;
        match path.as_str() {
            "/reload" if post => {
                // The reload reads files: off the async workers.
                let reloader = self.reloader.clone();
                let outcome = tokio::task::spawn_blocking(move || reloader.reload("admin")).await;
                match outcome {
                    Ok(Ok(number)) => json_reply(200, json!({ "result": "ok", "generation": number })),
                    Ok(Err(f)) => json_reply(
                        if f.result == "error" { 500 } else { 422 },
                        json!({ "result": f.result, "error": { "code": format!("reload_{}", f.result), "message": f.message } }),
                    ),
                    Err(_) => json_reply(
                        500,
                        json!({ "result": "error", "error": { "code": "internal", "message": "the reload did not finish" } }),
                    ),
                }
            }
            "/healthz" => json_reply(200, json!({ "status": "alive" })),
            "/readyz" => {
                let snap = self.shared.load();
                let (ready, pools) = readiness(&snap);
                json_reply(if ready { 200 } else { 503 }, json!({ "ready": ready, "pools": pools }))
            }
            "/metrics" => {
                let (content_type, body) = crate::metrics::render();
                reply(200, &content_type, body)
            }
            "/config" => json_reply(200, self.reloader.config_view()),
            _ => json_reply(
                404,
                json!({ "error": { "code": "not_found", "message": "admin paths: /healthz /readyz /metrics /config, POST /reload" } }),
            ),
        }
    }
}
