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

use crate::http_util::now_ms;
use crate::metrics::Metrics;
use crate::remote::Doc;
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

/// Reloads the config into the shared generation: from its file (with its
/// remote layer, when it has one), or (for an embedding application) from
/// YAML text or a [`config::Config`] it built.
pub struct Reloader {
    /// The config file, when the config came from one.
    path: Option<String>,
    shared: Shared,
    metrics: Arc<Metrics>,
    /// One reload at a time; holds the last failure since the last success.
    last_failure: Mutex<Option<Failure>>,
    /// The remote layer, when the file names a remote source.
    remote: Option<Mutex<RemoteState>>,
    /// The files the last reload from the file read, with what they looked
    /// like before it read them, until the watch takes it (whatever
    /// triggered the reload: the watch must not load the same files again).
    last_read: Mutex<Option<(Vec<String>, Fingerprint)>>,
}

/// The remote layer in force and how its source is doing.
pub struct RemoteState {
    /// Where it comes from.
    pub settings: config::remote::Remote,
    /// The version in force.
    pub doc: Doc,
    /// The last failure to reach the source (cleared on success), with
    /// when (ms since the epoch).
    pub last_error: Option<(String, u64)>,
}

impl Reloader {
    /// A reloader into `shared`, of the file at `path` when there is one.
    pub fn new(path: Option<&str>, shared: Shared, metrics: Arc<Metrics>) -> Self {
        Reloader {
            path: path.map(str::to_owned),
            shared,
            metrics,
            last_failure: Mutex::new(None),
            remote: None,
            last_read: Mutex::new(None),
        }
    }

    /// The same, layering the remote config `doc` from `settings` over the
    /// file.
    pub fn with_remote(mut self, settings: config::remote::Remote, doc: Doc) -> Self {
        self.remote = Some(Mutex::new(RemoteState { settings, doc, last_error: None }));
        self
    }

    /// The remote layer's state, when there is one.
    pub fn remote(&self) -> Option<std::sync::MutexGuard<'_, RemoteState>> {
        self.remote.as_ref().map(|r| r.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The config of the file `text` with the remote layer `doc` (if any).
    fn compose(&self, text: &str, doc: Option<&Doc>) -> Result<config::Config, (&'static str, String)> {
        if let Some(why) = doc.and_then(|d| d.invalid.as_ref()) {
            return Err(("invalid", format!("remote revision {}: {why}", doc.map_or("", |d| &d.revision))));
        }
        let allow_inline = self.remote().is_some_and(|r| r.settings.dangerous_inline_secrets);
        let layered = match doc {
            Some(doc) => config::layers::from_layers(text, Some((&doc.tree, allow_inline)), std::env::vars()),
            None => config::from_yaml_with_env(text, std::env::vars()),
        };
        layered.map(|(c, _)| c).map_err(|p| ("invalid", p.to_string()))
    }

    /// Reads the config file again and, if it is valid and can be applied
    /// live, makes it the current generation; returns its number.
    pub fn reload(&self, trigger: &'static str) -> Result<u64, Failure> {
        self.reload_file(None, trigger)
    }

    /// Reads the config file, layers the remote config over it (`doc`, a new
    /// version, or else the one in force, if any) and, if the result is
    /// valid and can be applied live, makes it the current generation.
    fn reload_file(&self, doc: Option<&Doc>, trigger: &'static str) -> Result<u64, Failure> {
        self.reading_files(|| {
            self.record(trigger, || {
                let path = self.path.as_deref().ok_or(("invalid", "the config did not come from a file".to_owned()))?;
                let text = read_config(path).map_err(|e| ("invalid", e))?;
                let in_force = doc.is_none().then(|| self.remote().map(|r| r.doc.clone())).flatten();
                let doc = doc.or(in_force.as_ref());
                let config = self.compose(&text, doc)?;
                self.install(config, &source_bytes(&text, doc), trigger)
            })
        })
    }

    /// Runs `read`, a reload that reads the watched files, and keeps what
    /// they looked like **before** it read them (for the files watched from
    /// now on): a change made while it ran is then still a change to the
    /// watch's next poll, never taken for what was loaded.
    fn reading_files<T>(&self, read: impl FnOnce() -> T) -> T {
        let before: std::collections::HashMap<String, Option<(u64, SystemTime)>> =
            self.watched().into_iter().map(|f| (f.clone(), stat(&f))).collect();
        let out = read();
        let files = self.watched();
        let applied = files.iter().map(|f| before.get(f).copied().unwrap_or_else(|| stat(f))).collect();
        *self.last_read.lock().unwrap_or_else(|p| p.into_inner()) = Some((files, applied));
        out
    }

    /// What the last reload from the file read (see [`Reloader::reading_files`]),
    /// once.
    fn take_last_read(&self) -> Option<(Vec<String>, Fingerprint)> {
        self.last_read.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// Layers `doc`, a new version of the remote config, over the file; if
    /// the result is valid and can be applied live it becomes the current
    /// generation and the remote version in force (written to the cache).
    pub fn reload_remote(&self, doc: Doc) -> Result<u64, Failure> {
        let outcome = self.reload_file(Some(&doc), "remote");
        if outcome.is_ok() {
            if let Some(mut r) = self.remote() {
                log::info!(target: "fastproxy::remote", "remote config revision {} ({}) is live", doc.revision, r.settings.describe());
                if let Some(path) = &r.settings.cache {
                    crate::remote::write_cache(path, &doc);
                }
                r.doc = doc;
            }
        }
        outcome
    }

    /// Makes `text` (config YAML, environment overrides applied) the current
    /// generation, if it is valid and can be applied live.
    pub fn reload_yaml(&self, text: &str, trigger: &'static str) -> Result<u64, Failure> {
        self.record(trigger, || {
            let (config, _) =
                config::from_yaml_with_env(text, std::env::vars()).map_err(|p| ("invalid", p.to_string()))?;
            self.install(config, text.as_bytes(), trigger)
        })
    }

    /// Makes `config` (checked, built in code) the current generation, if it
    /// can be applied live.
    pub fn reload_config(&self, config: config::Config, trigger: &'static str) -> Result<u64, Failure> {
        self.record(trigger, || self.install(config, b"", trigger))
    }

    /// Runs one reload attempt, one at a time, and records its outcome.
    fn record(
        &self,
        trigger: &'static str,
        attempt: impl FnOnce() -> Result<u64, (&'static str, String)>,
    ) -> Result<u64, Failure> {
        let mut last = self.last_failure.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let outcome = attempt().map_err(|(result, message)| Failure { result, message, trigger, at_ms: now_ms() });
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

    /// Refuses what needs an upgrade, builds the next generation, swaps it in.
    fn install(
        &self,
        config: config::Config,
        source: &[u8],
        trigger: &'static str,
    ) -> Result<u64, (&'static str, String)> {
        let current = self.shared.load();
        let fixed = config::needs_restart(&current.config, &config);
        if !fixed.is_empty() {
            return Err(("refused", config::Problems(fixed).to_string()));
        }
        let origin = Origin::new(current.origin.number + 1, source);
        let number = origin.number;
        let (next, report) = current
            .next(config, origin, &self.metrics)
            .map_err(|e| ("error", format!("building upstream pools: {e}")))?;
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

    /// The running generation and the last failed reload since.
    pub fn status(&self) -> serde_json::Value {
        self.view(false)
    }

    /// `/config`: the running config (secrets redacted) with its generation
    /// and the last failed reload.
    pub fn config_view(&self) -> serde_json::Value {
        self.view(true)
    }

    /// The status, with the config view when `with_config`: all read under
    /// the reload lock, so that they describe one generation.
    fn view(&self, with_config: bool) -> serde_json::Value {
        let failure = self.last_failure.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let snap = self.shared.load();
        let mut out = if with_config { config::view::render(&snap.config) } else { json!({}) };
        if let Some(out) = out.as_object_mut() {
            out.insert(
                "generation".to_owned(),
                json!({
                    "number": snap.origin.number,
                    "sha256": snap.origin.sha256,
                    "loaded_at_ms": snap.origin.loaded_at_ms,
                    "file": self.path.as_deref().unwrap_or("(given by the embedding application)"),
                }),
            );
            if let Some(r) = self.remote() {
                out.insert(
                    "remote".to_owned(),
                    json!({
                        "source": r.settings.describe(),
                        "revision": r.doc.revision,
                        "from": r.doc.from,
                        "cache": r.settings.cache,
                        "last_error": r.last_error.as_ref().map(|(m, at)| json!({ "message": m, "at_ms": at })),
                    }),
                );
            }
            if with_config && !snap.config.registries.is_empty() {
                out.insert("discovery".to_owned(), crate::membership::view());
            }
            out.insert(
                "last_reload_error".to_owned(),
                failure.as_ref().map_or(
                    serde_json::Value::Null,
                    |f| json!({ "result": f.result, "message": f.message, "trigger": f.trigger, "at_ms": f.at_ms }),
                ),
            );
        }
        out
    }

    /// The files a watch looks at: the config file and its `file:` secrets.
    fn watched(&self) -> Vec<String> {
        let mut files: Vec<String> = self.path.iter().cloned().collect();
        files.extend(self.shared.load().config.secret_files.iter().cloned());
        files
    }
}

/// What a generation's sha256 covers: the file and the remote layer.
fn source_bytes(text: &str, doc: Option<&Doc>) -> Vec<u8> {
    let mut bytes = text.as_bytes().to_vec();
    if let Some(doc) = doc {
        bytes.extend_from_slice(doc.tree.to_string().as_bytes());
    }
    bytes
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
    files.iter().map(|f| stat(f)).collect()
}

fn stat(file: &str) -> Option<(u64, SystemTime)> {
    std::fs::metadata(file).ok().and_then(|m| Some((m.len(), m.modified().ok()?)))
}

/// Runs `reloader.reload(trigger)` off the async workers.
async fn reload_off_workers(reloader: &Arc<Reloader>, trigger: &'static str) {
    let r = reloader.clone();
    let _ = tokio::task::spawn_blocking(move || r.reload(trigger)).await;
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
                // A reload reads files and resolves host names: off the
                // async workers.
                _ = hup.recv() => reload_off_workers(&self.reloader, "SIGHUP").await,
                _ = tokio::time::sleep(poll.max(Duration::from_millis(100))) => {}
                _ = shutdown.changed() => return,
            }
            // Whatever reloaded the files (SIGHUP, `POST /reload`, the
            // remote source, this watch), they are now as it read them.
            if let Some(read) = self.reloader.take_last_read() {
                (files, applied) = read;
                seen = fingerprint(&files);
                continue;
            }
            if !self.reloader.shared.load().config.reload.watch {
                continue;
            }
            let now = fingerprint(&files);
            if now != applied && now == seen {
                reload_off_workers(&self.reloader, "watch").await;
                continue;
            }
            seen = now;
        }
    }
}
