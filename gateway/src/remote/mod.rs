//! Remote config sources, layered over the local file (file < remote <
//! environment; `config::remote`): etcd (one key, or one key per section),
//! a fastproxy center, Apollo. Each source fetches the config as a tree
//! with a revision and waits for the next change; the [`follow`] service
//! feeds every change to the reload pipeline, which validates it whole and
//! refuses what it cannot apply. The last config applied is kept in a cache
//! file, from which a cold start serves while the source is down.

pub mod apollo;
pub mod center;
pub mod etcd;
pub mod follow;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::remote::{Remote, Source};
use crate::discovery;

/// One version of the remote config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Doc {
    /// The config as a tree (the remote layer).
    pub tree: Value,
    /// The source's name for this version (etcd or center revision, Apollo
    /// release key).
    pub revision: String,
    /// `source` when fetched now, `cache` when read from the cache file.
    #[serde(skip, default = "from_source")]
    pub from: &'static str,
    /// Why the source's text is not a config tree (it does not parse): the
    /// reload pipeline refuses such a version as invalid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalid: Option<String>,
}

impl Doc {
    /// A version fetched now from the source: `text` parsed, or marked
    /// invalid when it does not parse.
    pub fn parsed(text: &str, revision: String) -> Doc {
        match tree_of(text) {
            Ok(tree) => Doc { tree, revision, from: "source", invalid: None },
            Err(e) => Doc { tree: Value::Null, revision, from: "source", invalid: Some(e) },
        }
    }

    /// A version fetched now whose tree is already built.
    pub fn of_tree(tree: Value, revision: String) -> Doc {
        Doc { tree, revision, from: "source", invalid: None }
    }
}

fn from_source() -> &'static str {
    "cache"
}

/// A remote config source.
#[async_trait::async_trait]
pub trait ConfigSource: Send + Sync {
    /// The config as the source holds it now.
    async fn fetch(&self) -> Result<Doc, String>;
    /// Waits (a bounded long poll or watch) for a version after `current`;
    /// `Ok(None)` when none came in that time.
    async fn next(&self, current: &Doc) -> Result<Option<Doc>, String>;
}

/// The client for `remote`'s source.
pub fn connect(remote: &Remote) -> Result<Box<dyn ConfigSource>, String> {
    use crate::config::registry::RegistryKind;
    let mismatch = || format!("{}: the registry is of another kind", remote.describe());
    Ok(match &remote.source {
        Source::Etcd { registry, layout } => {
            let RegistryKind::Etcd { authority, prefix } = &registry.kind else { return Err(mismatch()) };
            let client = discovery::etcd::Etcd::new(authority.clone(), prefix.clone(), registry.timeout);
            Box::new(etcd::EtcdConfig::new(client, layout.clone()))
        }
        Source::Center { registry, name } => {
            let RegistryKind::Center { authority, node, key, .. } = &registry.kind else { return Err(mismatch()) };
            let client = discovery::center_client::CenterClient::new(
                authority.clone(),
                node.clone(),
                key.clone(),
                registry.timeout,
            );
            Box::new(center::CenterConfig::new(client, name.clone(), registry.timeout))
        }
        Source::Apollo(a) => Box::new(apollo::ApolloConfig::new(a.clone(), FETCH_TIMEOUT)),
    })
}

/// Longest wait for one fetch from Apollo.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs `work` to completion on a runtime of its own, on a thread of its
/// own (so that it may be called from inside an async runtime too).
pub fn block_on<T: Send>(work: impl std::future::Future<Output = Result<T, String>> + Send) -> Result<T, String> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let rt =
                    tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
                rt.block_on(work)
            })
            .join()
            .map_err(|_| "the call failed".to_owned())?
    })
}

/// The remote config as its source holds it now, within `within`.
pub fn fetch_now(remote: &Remote, within: Duration) -> Result<Doc, String> {
    let source = connect(remote)?;
    block_on(async {
        tokio::time::timeout(within, source.fetch()).await.map_err(|_| format!("no answer within {within:?}"))?
    })
}

/// The remote config for a start: fetched from the source (within
/// `within`), else read from the cache file.
pub fn initial(remote: &Remote, within: Duration) -> Result<Doc, String> {
    match fetch_now(remote, within) {
        Ok(doc) => {
            log::info!(target: "fastproxy::remote", "remote config revision {} from {}", doc.revision, remote.describe());
            Ok(doc)
        }
        Err(e) => {
            let Some(path) = &remote.cache else {
                return Err(format!("remote config {}: {e}; and no cache file is set", remote.describe()));
            };
            let doc = read_cache(path).map_err(|c| format!("remote config {}: {e}; and {c}", remote.describe()))?;
            log::warn!(target: "fastproxy::remote", "remote config {}: {e}; serving revision {} from the cache {path} until it answers", remote.describe(), doc.revision);
            Ok(doc)
        }
    }
}

/// Parses remote config text (YAML or JSON) into a tree.
pub fn tree_of(text: &str) -> Result<Value, String> {
    crate::config::layers::parse(text, "(remote)").map_err(|p| p.to_string())
}

/// Reads the cache file.
pub fn read_cache(path: &str) -> Result<Doc, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cache {path}: {e}"))?;
    let mut doc: Doc = serde_json::from_slice(&bytes).map_err(|e| format!("cache {path}: {e}"))?;
    doc.from = "cache";
    Ok(doc)
}

/// Writes `doc` to the cache file (whole, atomically, mode 0600).
pub fn write_cache(path: &str, doc: &Doc) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let Ok(bytes) = serde_json::to_vec(doc) else { return };
    let tmp = format!("{path}.tmp");
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(&bytes).and_then(|_| f.sync_all()))
        .and_then(|_| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        log::warn!(target: "fastproxy::remote", "cannot write the remote config cache {path}: {e}");
    }
}
