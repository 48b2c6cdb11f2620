//! What registries said, kept apart from how it is learnt: instances and
//! listings (the data every registry engine and the center share), and the
//! process-wide [`Directory`] of feeds, one per discovered service, that the
//! followers write and the pools and views read. It outlives reloads.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};

use arc_swap::ArcSwapOption;
use serde::{Deserialize, Serialize};

use crate::config::registry::DiscoveryRef;

/// The largest weight an instance may have.
pub const MAX_WEIGHT: u32 = 1000;

/// One registered instance of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    /// Unique within its service (an inbound proxy uses its advertised
    /// address).
    pub id: String,
    /// Where it is reached.
    pub addr: SocketAddr,
    /// Relative share of requests, 1 to 1000.
    pub weight: u32,
    /// Labels (zone, version).
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

/// A service's instances at a registry revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listing {
    /// The registry's revision the listing reflects.
    pub revision: u64,
    /// Instances, sorted by id.
    pub instances: Vec<Instance>,
}

impl Listing {
    /// The backends a pool takes from it.
    /// An instance whose weight is outside 1..=1000 is left out (a
    /// registry the proxy does not control, such as etcd, could hold one; a
    /// huge weight would blow up the balancer's tables).
    pub fn backends(&self) -> Vec<(SocketAddr, u32)> {
        let mut out: Vec<(SocketAddr, u32)> = Vec::new();
        for i in &self.instances {
            if !(1..=MAX_WEIGHT).contains(&i.weight) {
                log::warn!(target: "fastproxy::discovery", "instance {} ({}) left out: weight {} is not 1 to {MAX_WEIGHT}", i.id, i.addr, i.weight);
                continue;
            }
            if !out.iter().any(|(a, _)| *a == i.addr) {
                out.push((i.addr, i.weight));
            }
        }
        out
    }

    /// True when both list the same instances (revisions aside).
    pub fn same_members(&self, other: &Listing) -> bool {
        self.instances == other.instances
    }
}

/// True when `id` may name an instance: 1-128 bytes of `A-Z a-z 0-9 . _ : -`.
pub fn valid_instance_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// What is known of one discovered service: the last listing and the last
/// error, shared by the follower that learns them and the pools and views
/// that read them.
#[derive(Default)]
pub struct Feed {
    listing: ArcSwapOption<Listing>,
    /// Where the current listing came from: `registry` or `cache`.
    origin: Mutex<&'static str>,
    /// The last failure and when (ms since the epoch); cleared on success.
    last_error: Mutex<Option<(String, u64)>>,
}

impl Feed {
    /// The last listing, if any.
    pub fn listing(&self) -> Option<Arc<Listing>> {
        self.listing.load_full()
    }

    /// Records a listing learnt from `origin`.
    pub fn set(&self, listing: Listing, origin: &'static str) {
        self.listing.store(Some(Arc::new(listing)));
        if let Ok(mut o) = self.origin.lock() {
            *o = origin;
        }
    }

    /// Records a failure (the listing is kept).
    pub fn failed(&self, message: String) {
        if let Ok(mut e) = self.last_error.lock() {
            *e = Some((message, crate::http_util::now_ms()));
        }
    }

    /// Clears the last failure.
    pub fn healthy(&self) {
        if let Ok(mut e) = self.last_error.lock() {
            *e = None;
        }
    }

    /// The view for `/config`.
    pub fn view(&self) -> serde_json::Value {
        let listing = self.listing();
        let origin = self.origin.lock().map(|o| *o).unwrap_or("");
        let error = self.last_error.lock().ok().and_then(|e| e.clone());
        serde_json::json!({
            "revision": listing.as_ref().map(|l| l.revision),
            "from": if listing.is_some() { origin } else { "" },
            "members": listing.as_ref().map(|l| l.instances.iter().map(|i| serde_json::json!({
                "id": i.id, "addr": i.addr.to_string(), "weight": i.weight, "metadata": i.metadata,
            })).collect::<Vec<_>>()).unwrap_or_default(),
            "last_error": error.map(|(message, at_ms)| serde_json::json!({ "message": message, "at_ms": at_ms })),
        })
    }
}

/// Every discovered service's feed, process-wide (one gateway per process,
/// as for its metrics): it outlives reloads, so a pool rebuilt by a reload
/// starts with the members already known.
#[derive(Default)]
pub struct Directory {
    feeds: Mutex<HashMap<DiscoveryRef, Arc<Feed>>>,
}

impl Directory {
    /// The feed of `r`, created empty on first use.
    pub fn feed(&self, r: &DiscoveryRef) -> Arc<Feed> {
        let mut feeds = self.feeds.lock().unwrap_or_else(|p| p.into_inner());
        feeds.entry(r.clone()).or_default().clone()
    }

    /// Every feed, by registry and service.
    pub fn all(&self) -> Vec<(DiscoveryRef, Arc<Feed>)> {
        let feeds = self.feeds.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<_> = feeds.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

/// The process's directory.
pub fn directory() -> &'static Directory {
    static DIRECTORY: OnceLock<Directory> = OnceLock::new();
    DIRECTORY.get_or_init(Directory::default)
}

/// The discovery state for `/config`: per registry and service, the
/// revision, members, where they came from and the last error.
pub fn view() -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for (r, feed) in directory().all() {
        let entry = out.entry(r.registry.clone()).or_insert_with(|| serde_json::json!({}));
        if let Some(map) = entry.as_object_mut() {
            map.insert(r.service.clone(), feed.view());
        }
    }
    serde_json::Value::Object(out)
}
