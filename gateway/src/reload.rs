//! Live reload: the config file is read again on SIGHUP, on `POST /reload`
//! at the admin listener, or (with `reload.watch`) when it or a `file:`
//! secret it names changes. A reload goes load → validate → refuse what
//! needs new sockets → build (pools reconciled) → swap; anything short of the
//! swap leaves the running generation serving, and the outcome shows in the
//! log, in `fastproxy_config_reloads_total{result}` and in `/config`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use serde_json::json;

use crate::http::now_ms;
use crate::metrics::Metrics;
use crate::state::{Origin, Shared};

/// Largest config file read on a reload.
const MAX_CONFIG_BYTES: u64 = 4 * 1024 * 1024;

/// Why a reload did not take effect.
#[derive(Debug, Clone)]
pub struct Failure {
    /// `invalid` (the file does not load or validate), `refused` (it
    /// changes what needs an upgrade) or `error` (building it failed).
    pub result: &'static str,
    /// What was wrong, field by field.
    pub message: String,
    /// What asked for the reload.
    pub trigger: &'static str,
    /// When, ms since the Unix epoch.
    pub at_ms: u64,
}

/// Reloads the config file into the shared generation.
pub struct Reloader {
    path: String,
    shared: Shared,
    metrics: Arc<Metrics>,
    /// One reload at a time; holds the last failure since the last success.
    last_failure: Mutex<Option<Failure>>,
}

impl Reloader {
    /// A reloader of the file at `path` into `shared`.
    pub fn new(path: &str, shared: Shared, metrics: Arc<Metrics>) -> Self {
        Reloader { path: path.to_owned(), shared, metrics, last_failure: Mutex::new(None) }
    }

    /// Reads the config file again and, if it is valid and can be applied
    /// live, makes it the current generation; returns its number.
    pub fn reload(&self, trigger: &'static str) -> Result<u64, Failure> {
        let mut last = self.last_failure.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let outcome = self.try_reload(trigger);
        match &outcome {
            Ok(number) => {
                *last = None;
                self.metrics.config_reload("ok");
                log::info!("config reload ({trigger}): generation {number} is live");
            }
            Err(f) => {
                *last = Some(f.clone());
                self.metrics.config_reload(f.result);
                log::warn!(
                    "config reload ({trigger}) {}: the running generation keeps serving\n{}",
                    f.result,
                    f.message
                );
            }
        }
        outcome
    }

    fn try_reload(&self, trigger: &'static str) -> Result<u64, Failure> {
        let fail = |result, message: String| Failure { result, message, trigger, at_ms: now_ms() };
        let text = read_config(&self.path).map_err(|e| fail("invalid", e))?;
        let (config, _) =
            config::from_yaml_with_env(&text, std::env::vars()).map_err(|p| fail("invalid", p.to_string()))?;
        let current = self.shared.load();
        let fixed = config::needs_restart(&current.config, &config);
        if !fixed.is_empty() {
            return Err(fail("refused", config::Problems(fixed).to_string()));
        }
        let origin = Origin::new(current.origin.number + 1, text.as_bytes());
        let number = origin.number;
        let (next, report) = current
            .next(config, origin, &self.metrics)
            .map_err(|e| fail("error", format!("building upstream pools: {e}")))?;
        self.shared.store(Arc::new(next));
        log::info!(
            "config reload ({trigger}): pools kept {:?}, changed {:?}, added {:?}, removed {:?}",
            report.kept,
            report.changed,
            report.added,
            report.removed
        );
        Ok(number)
    }

    /// The running generation and the last failed reload since, for
    /// `/config`.
    pub fn status(&self) -> serde_json::Value {
        // The lock first: a reload in progress finishes before both are read.
        let failure = self.last_failure.lock().ok().and_then(|f| f.clone());
        let snap = self.shared.load();
        json!({
            "generation": {
                "number": snap.origin.number,
                "sha256": snap.origin.sha256,
                "loaded_at_ms": snap.origin.loaded_at_ms,
                "file": self.path,
            },
            "last_reload_error": failure.map(|f| json!({
                "result": f.result,
                "message": f.message,
                "trigger": f.trigger,
                "at_ms": f.at_ms,
            })),
        })
    }

    /// The files a watch looks at: the config file and its `file:` secrets.
    fn watched(&self) -> Vec<String> {
        let mut files = vec![self.path.clone()];
        files.extend(self.shared.load().config.secret_files.iter().cloned());
        files
    }
}

/// Reads the config file, bounded. The text may hold inline secrets: wiped
/// when dropped.
pub fn read_config(path: &str) -> Result<zeroize::Zeroizing<String>, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| format!("{path}: cannot read: {e}"))?;
    let mut text = zeroize::Zeroizing::new(String::new());
    file.take(MAX_CONFIG_BYTES + 1).read_to_string(&mut text).map_err(|e| format!("{path}: cannot read: {e}"))?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(format!("{path}: larger than {MAX_CONFIG_BYTES} bytes"));
    }
    Ok(text)
}

/// What a watch compares: each file's length and modification time.
type Fingerprint = Vec<Option<(u64, SystemTime)>>;

fn fingerprint(files: &[String]) -> Fingerprint {
    files.iter().map(|f| std::fs::metadata(f).ok().and_then(|m| Some((m.len(), m.modified().ok()?)))).collect()
}

/// The background service behind the triggers: SIGHUP always, and the file
/// watch when `reload.watch` is on (read from the running generation, so it
/// can be switched by a reload). A change is applied once a poll finds the
/// files as the previous poll did (a write in progress is not loaded half).
pub struct Triggers {
    reloader: Arc<Reloader>,
}

impl Triggers {
    /// The triggers of `reloader`.
    pub fn new(reloader: Arc<Reloader>) -> Self {
        Triggers { reloader }
    }
}

/// Keeps SIGHUP from ending the process before [`Triggers`] listens for it
/// (call once at start, before the server runs).
pub fn ignore_sighup_until_ready() {
    // SAFETY: sets the disposition of SIGHUP to "ignore"; no handler runs.
    unsafe {
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
    }
}

#[async_trait]
impl BackgroundService for Triggers {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                log::error!("cannot listen for SIGHUP ({e}): reload with POST /reload at the admin listener");
                return;
            }
        };
        let mut files = self.reloader.watched();
        let mut applied = fingerprint(&files);
        let mut seen = applied.clone();
        loop {
            let poll = self.reloader.shared.load().config.reload.poll;
            tokio::select! {
                _ = hup.recv() => {
                    let _ = self.reloader.reload("SIGHUP");
                    files = self.reloader.watched();
                    applied = fingerprint(&files);
                    seen = applied.clone();
                    continue;
                }
                _ = tokio::time::sleep(poll.max(Duration::from_millis(100))) => {}
                _ = shutdown.changed() => return,
            }
            if !self.reloader.shared.load().config.reload.watch {
                continue;
            }
            let now = fingerprint(&files);
            if now != applied && now == seen {
                let _ = self.reloader.reload("watch");
                files = self.reloader.watched();
                applied = fingerprint(&files);
            }
            seen = now;
        }
    }
}
