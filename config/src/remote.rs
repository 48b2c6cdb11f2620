//! Remote config settings: a source (etcd, a center, Apollo) that holds the
//! config, layered over the local file (`crate::layers`). The local file
//! says where the remote is (`remote:`, with `registries` and `keys` for
//! its credentials); the remote holds the rest.

use std::collections::BTreeMap;
use std::sync::Arc;

use zeroize::Zeroizing;

use crate::check::Check;
use crate::registry::{self, Registry, RegistryKind};
use crate::{schema, secret};

/// Where the remote config lives and how it is read.
#[derive(Clone)]
pub struct Remote {
    /// The source.
    pub source: Source,
    /// File keeping the last good remote config.
    pub cache: Option<String>,
    /// Inline secrets from the source are accepted.
    pub dangerous_inline_secrets: bool,
}

/// A remote config source.
#[derive(Clone)]
pub enum Source {
    /// etcd: one key holding the whole config, or one key per section.
    Etcd {
        /// The registry entry naming the cluster.
        registry: Registry,
        /// Where the config is.
        layout: Layout,
    },
    /// A fastproxy center: a config document by name.
    Center {
        /// The registry entry naming the center (and the credentials).
        registry: Registry,
        /// The document's name.
        name: String,
    },
    /// An Apollo config service.
    Apollo(Apollo),
}

/// How a config is laid out in etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// The whole config under one key.
    Key(String),
    /// Each top-level section under `<prefix><section>`.
    Prefix(String),
}

/// An Apollo config service and the namespace that holds the config.
#[derive(Clone)]
pub struct Apollo {
    /// `host:port`.
    pub authority: String,
    /// appId.
    pub app_id: String,
    /// Cluster.
    pub cluster: String,
    /// Namespace (its `content` is the YAML).
    pub namespace: String,
    /// Access key secret, when requests are signed.
    pub secret: Option<Arc<Zeroizing<String>>>,
}

impl Remote {
    /// One line naming the source, for logs and `/config`.
    pub fn describe(&self) -> String {
        match &self.source {
            Source::Etcd { registry, layout } => {
                let RegistryKind::Etcd { authority, .. } = &registry.kind else { return String::new() };
                match layout {
                    Layout::Key(k) => format!("etcd http://{authority} key {k}"),
                    Layout::Prefix(p) => format!("etcd http://{authority} prefix {p}"),
                }
            }
            Source::Center { registry, name } => {
                let RegistryKind::Center { authority, .. } = &registry.kind else { return String::new() };
                format!("center http://{authority} config {name}")
            }
            Source::Apollo(a) => {
                format!("apollo http://{} {}/{}/{}", a.authority, a.app_id, a.cluster, a.namespace)
            }
        }
    }
}

impl PartialEq for Remote {
    fn eq(&self, other: &Self) -> bool {
        self.describe() == other.describe()
            && self.cache == other.cache
            && self.dangerous_inline_secrets == other.dangerous_inline_secrets
    }
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote").field("source", &self.describe()).field("cache", &self.cache).finish()
    }
}

/// Checks `remote` against the checked `registries`.
pub(crate) fn check(c: &mut Check, r: &schema::Remote, registries: &BTreeMap<String, Registry>) -> Option<Remote> {
    let source = match (&r.registry, &r.apollo) {
        (Some(name), None) => {
            let Some(registry) = registries.get(name).cloned() else {
                c.fail("remote.registry", format!("{name:?} is not in registries"));
                return None;
            };
            match (&registry.kind, &r.key, &r.prefix) {
                (RegistryKind::Etcd { .. }, Some(key), None) => {
                    Source::Etcd { registry, layout: Layout::Key(key.clone()) }
                }
                (RegistryKind::Etcd { .. }, None, Some(prefix)) => {
                    if !prefix.ends_with('/') {
                        c.fail("remote.prefix", "must end with /");
                    }
                    Source::Etcd { registry, layout: Layout::Prefix(prefix.clone()) }
                }
                (RegistryKind::Etcd { .. }, _, _) => {
                    c.fail("remote", "with an etcd registry set exactly one of key or prefix");
                    return None;
                }
                (RegistryKind::Center { .. }, Some(name), None) => {
                    c.name("remote.key", name, "config");
                    Source::Center { registry, name: name.clone() }
                }
                (RegistryKind::Center { .. }, _, _) => {
                    c.fail("remote.key", "with a center registry set key (the config's name), not prefix");
                    return None;
                }
            }
        }
        (None, Some(a)) => {
            if r.key.is_some() || r.prefix.is_some() {
                c.fail("remote", "key and prefix apply to a registry, not to apollo");
            }
            for (field, value) in [("app_id", &a.app_id), ("namespace", &a.namespace)] {
                if value.is_empty() || value.contains(['/', '?', '&', '#']) {
                    c.fail(format!("remote.apollo.{field}"), "must be set, without / ? & #");
                }
            }
            let secret = match &a.secret {
                Some(s) => match secret::resolve_text(s) {
                    Ok(t) => Some(Arc::new(t)),
                    Err(e) => {
                        c.fail("remote.apollo.secret", e);
                        None
                    }
                },
                None => None,
            };
            Source::Apollo(Apollo {
                authority: registry::authority(c, "remote.apollo.url", &a.url),
                app_id: a.app_id.clone(),
                cluster: a.cluster.clone().unwrap_or_else(|| "default".to_owned()),
                namespace: a.namespace.clone(),
                secret,
            })
        }
        _ => {
            c.fail("remote", "set exactly one of registry or apollo");
            return None;
        }
    };
    Some(Remote {
        source,
        cache: r.cache.clone(),
        dangerous_inline_secrets: r.dangerous_inline_secrets.unwrap_or(false),
    })
}
