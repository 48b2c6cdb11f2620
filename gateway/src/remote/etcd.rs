//! The config in etcd: the whole YAML under one key, or each top-level
//! section's YAML under `<prefix><section>`. A change is seen through one
//! watch from the next revision; on any event (or a compaction) the config
//! is read again whole.

use std::time::Duration;

use serde_json::Value;

use super::{tree_of, ConfigSource, Doc};
use crate::config::remote::Layout;
use crate::discovery::etcd::Etcd;

/// How long one wait for a change lasts.
const WAIT: Duration = Duration::from_secs(30);

/// A config held in etcd.
pub struct EtcdConfig {
    client: Etcd,
    layout: Layout,
}

impl EtcdConfig {
    /// The config at `layout` in the etcd `client` talks to.
    pub fn new(client: Etcd, layout: Layout) -> Self {
        EtcdConfig { client, layout }
    }

    fn key(&self) -> (&str, bool) {
        match &self.layout {
            Layout::Key(k) => (k, false),
            Layout::Prefix(p) => (p, true),
        }
    }
}

#[async_trait::async_trait]
impl ConfigSource for EtcdConfig {
    async fn fetch(&self) -> Result<Doc, String> {
        let (key, prefix) = self.key();
        let (kvs, revision) = self.client.range(key, prefix).await.map_err(|e| e.to_string())?;
        let revision = revision.to_string();
        if !prefix {
            let (_, v) = kvs.into_iter().next().ok_or_else(|| format!("etcd holds no key {key}"))?;
            return Ok(Doc::parsed(&String::from_utf8_lossy(&v), revision));
        }
        let mut map = serde_json::Map::new();
        for (k, v) in kvs {
            let section = k.strip_prefix(key).unwrap_or(&k).to_owned();
            match tree_of(&String::from_utf8_lossy(&v)) {
                Ok(value) => {
                    map.insert(section, value);
                }
                Err(e) => {
                    let mut doc = Doc::parsed("", revision);
                    doc.invalid = Some(format!("etcd key {k}: {e}"));
                    return Ok(doc);
                }
            }
        }
        Ok(Doc::of_tree(Value::Object(map), revision))
    }

    async fn next(&self, current: &Doc) -> Result<Option<Doc>, String> {
        let (key, prefix) = self.key();
        let from = current.revision.parse::<u64>().unwrap_or(0) + 1;
        let mut lines = self.client.watch_stream(key, prefix, from).await.map_err(|e| e.to_string())?;
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Some(line) = lines.next(left).await? else { return Ok(None) };
            let value: Value = serde_json::from_slice(&line).map_err(|e| format!("etcd watch: {e}"))?;
            let result = &value["result"];
            let events = result["events"].as_array().is_some_and(|e| !e.is_empty());
            // An event, or a compaction that hides them: read it all again.
            if events || result["canceled"].as_bool() == Some(true) {
                let doc = self.fetch().await?;
                let changed = doc.tree != current.tree || doc.invalid != current.invalid;
                return Ok(changed.then_some(doc));
            }
            if !value["error"].is_null() {
                return Err(format!("etcd watch: {}", value["error"]));
            }
        }
    }
}
