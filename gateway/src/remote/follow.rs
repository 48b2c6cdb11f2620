//! Follows the remote config source: each new version goes through the
//! reload pipeline (validated whole, refused if invalid or if it changes
//! what needs an upgrade); a refused version is not asked for again until
//! the source changes once more. When the source cannot be reached, the
//! config in force keeps serving and the error shows in `/config` and
//! `fastproxy_remote_config_errors_total`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use super::{ConfigSource, Doc};
use crate::metrics::Metrics;
use crate::reload::Reloader;

/// Longest pause between attempts while the source fails.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The background service that follows the remote source.
pub struct RemoteFollower {
    source: Box<dyn ConfigSource>,
    reloader: Arc<Reloader>,
    metrics: Arc<Metrics>,
}

impl RemoteFollower {
    /// Follows `source` into `reloader`.
    pub fn new(source: Box<dyn ConfigSource>, reloader: Arc<Reloader>, metrics: Arc<Metrics>) -> Self {
        RemoteFollower { source, reloader, metrics }
    }

    fn failed(&self, e: &str) {
        self.metrics.remote_config_error();
        log::warn!(target: "fastproxy::remote", "remote config: {e}; the config in force keeps serving");
        if let Some(mut r) = self.reloader.remote() {
            r.last_error = Some((e.to_owned(), crate::http_util::now_ms()));
        }
    }

    fn healthy(&self) {
        if let Some(mut r) = self.reloader.remote() {
            r.last_error = None;
        }
    }

    /// Hands `doc` to the reload pipeline (off the async workers: it reads
    /// files).
    async fn apply(&self, doc: Doc) {
        let reloader = self.reloader.clone();
        let _ = tokio::task::spawn_blocking(move || reloader.reload_remote(doc)).await;
    }
}

#[async_trait]
impl BackgroundService for RemoteFollower {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Some(in_force) = self.reloader.remote().map(|r| r.doc.clone()) else { return };
        // The last version seen, applied or refused.
        let mut seen = in_force;
        let mut backoff = Duration::from_millis(250);
        loop {
            let step = async {
                if seen.from == "cache" {
                    // Started from the cache: read the source as soon as it answers.
                    let doc = self.source.fetch().await?;
                    return Ok::<_, String>(Some(doc));
                }
                self.source.next(&seen).await
            };
            let outcome = tokio::select! {
                outcome = step => outcome,
                _ = shutdown.changed() => return,
            };
            match outcome {
                Ok(Some(doc)) => {
                    backoff = Duration::from_millis(250);
                    self.healthy();
                    let changed = doc.tree != seen.tree || doc.invalid != seen.invalid || seen.from == "cache";
                    seen = doc.clone();
                    if changed {
                        self.apply(doc).await;
                    }
                }
                Ok(None) => {
                    backoff = Duration::from_millis(250);
                    self.healthy();
                }
                Err(e) => {
                    self.failed(&e);
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => return,
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}
