//! The config in an Apollo namespace, through Apollo's client protocol:
//! - `GET /configs/{appId}/{cluster}/{namespace}?releaseKey=…` → 200 with
//!   `configurations.content` (the YAML) and `releaseKey`, or 304;
//! - `GET /notifications/v2?appId&cluster&notifications=[…]`, held up to
//!   60 s: 200 with the namespace's new `notificationId` when it changed,
//!   304 when the hold ended;
//! - with an access key: `Authorization: Apollo {appId}:{base64(HMAC-SHA1(
//!   secret, timestamp + "\n" + pathWithQuery))}` and `Timestamp` (ms).

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::Value;

use super::{ConfigSource, Doc};
use crate::config::remote::Apollo;
use crate::discovery::http::{self, Request};

/// How long Apollo holds a notification poll (its own limit is 60 s).
const HOLD: Duration = Duration::from_secs(60);

/// A namespace of an Apollo config service.
pub struct ApolloConfig {
    settings: Apollo,
    timeout: Duration,
    /// The last notificationId seen (-1: none yet).
    notification: AtomicI64,
}

/// `text` with every byte outside `A-Z a-z 0-9 - _ . ~` percent-encoded.
fn encode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl ApolloConfig {
    /// A client of `settings`' namespace; each fetch waits at most `timeout`.
    pub fn new(settings: Apollo, timeout: Duration) -> Self {
        ApolloConfig { settings, timeout, notification: AtomicI64::new(-1) }
    }

    /// The signature headers of a request for `path_with_query`, if signed.
    fn signed(&self, path_with_query: &str) -> Vec<(&'static str, String)> {
        let Some(secret) = &self.settings.secret else { return Vec::new() };
        let timestamp = crate::http_util::now_ms().to_string();
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret.as_bytes());
        let tag = ring::hmac::sign(&key, format!("{timestamp}\n{path_with_query}").as_bytes());
        vec![
            ("authorization", format!("Apollo {}:{}", self.settings.app_id, B64.encode(tag.as_ref()))),
            ("timestamp", timestamp),
        ]
    }

    async fn get(&self, target: &str, total: Duration) -> Result<http::Reply, String> {
        let req = Request {
            authority: &self.settings.authority,
            method: "GET",
            target,
            headers: self.signed(target),
            body: b"",
        };
        http::call(&req, total).await
    }

    async fn config(&self, release_key: &str) -> Result<Option<Doc>, String> {
        let a = &self.settings;
        let target = format!(
            "/configs/{}/{}/{}?releaseKey={}",
            encode(&a.app_id),
            encode(&a.cluster),
            encode(&a.namespace),
            encode(release_key)
        );
        let reply = self.get(&target, self.timeout).await?;
        match reply.status {
            304 => Ok(None),
            200 => {
                let value: Value =
                    serde_json::from_slice(&reply.body).map_err(|e| format!("apollo: the answer is not JSON: {e}"))?;
                let text = value["configurations"]["content"]
                    .as_str()
                    .ok_or("apollo: the namespace has no content (it must be a yaml namespace)")?;
                let release = value["releaseKey"].as_str().unwrap_or("").to_owned();
                Ok(Some(Doc::parsed(text, release)))
            }
            s => Err(format!("apollo {target}: status {s}")),
        }
    }
}

#[async_trait::async_trait]
impl ConfigSource for ApolloConfig {
    async fn fetch(&self) -> Result<Doc, String> {
        self.config("").await?.ok_or_else(|| "apollo answered 304 to a first fetch".to_owned())
    }

    async fn next(&self, current: &Doc) -> Result<Option<Doc>, String> {
        let a = &self.settings;
        let known = self.notification.load(Ordering::Relaxed);
        let notifications = serde_json::json!([{ "namespaceName": a.namespace, "notificationId": known }]).to_string();
        let target = format!(
            "/notifications/v2?appId={}&cluster={}&notifications={}",
            encode(&a.app_id),
            encode(&a.cluster),
            encode(&notifications)
        );
        let reply = self.get(&target, HOLD + self.timeout).await?;
        match reply.status {
            304 => Ok(None),
            200 => {
                let value: Value =
                    serde_json::from_slice(&reply.body).map_err(|e| format!("apollo: the answer is not JSON: {e}"))?;
                let id = value
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|n| n["namespaceName"].as_str() == Some(a.namespace.as_str()))
                    .and_then(|n| n["notificationId"].as_i64());
                if let Some(id) = id {
                    self.notification.store(id, Ordering::Relaxed);
                }
                self.config(&current.revision).await
            }
            s => Err(format!("apollo notifications: status {s}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(encode("[{\"a\":-1}]"), "%5B%7B%22a%22%3A-1%7D%5D");
        assert_eq!(encode("fastproxy.yaml"), "fastproxy.yaml");
    }
}
