//! Service discovery: registries (the built-in center, etcd) behind one
//! trait, the followers that keep pools' members in step with them, and the
//! registration an inbound proxy keeps alive while it serves.
//!
//! - [`Registry`]: register / keepalive / deregister / list / watch, one
//!   implementation per engine (`center_client`, `etcd`);
//! - `follow`: one task per discovered service, feeding live pools, with a
//!   cache file for cold starts (what it learnt is kept in
//!   [`crate::membership`]);
//! - `center_auth`: the signatures of the center's API (client and server);
//! - `register`: an inbound proxy's own registrations, and the stop signal
//!   handling that deregisters before the listeners close.

pub mod center_auth;
pub mod center_client;
pub mod etcd;
pub mod follow;
pub mod http;
pub mod register;

use std::sync::Arc;
use std::time::Duration;

use crate::config::registry::{Registry as RegistrySettings, RegistryKind};
pub use crate::membership::{Instance, Listing};

/// A registration's lease, as the registry names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease(pub String);

/// Why a registry call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// No answer, or one that is not the registry's (network, timeout,
    /// malformed, bad signature).
    Unreachable(String),
    /// The registry answered with a refusal.
    Refused {
        /// HTTP status.
        status: u16,
        /// Stable error code.
        code: String,
        /// Its message.
        message: String,
    },
    /// The lease is gone (expired or revoked): register again.
    LeaseGone,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Unreachable(m) => write!(f, "unreachable: {m}"),
            Error::Refused { status, code, message } => write!(f, "refused ({status} {code}): {message}"),
            Error::LeaseGone => f.write_str("the lease is gone"),
        }
    }
}

/// A registry engine.
#[async_trait::async_trait]
pub trait Registry: Send + Sync {
    /// Registers `instance` under `service` with a lease of `ttl`; a
    /// registration of the same id replaces the previous one (an upgraded
    /// process takes over its predecessor's without a gap).
    async fn register(&self, service: &str, instance: &Instance, ttl: Duration) -> Result<Lease, Error>;
    /// Renews `lease`; [`Error::LeaseGone`] when it already expired.
    async fn keepalive(&self, lease: &Lease) -> Result<(), Error>;
    /// Ends `lease` and the registrations under it.
    async fn deregister(&self, lease: &Lease) -> Result<(), Error>;
    /// The instances of `service` now.
    async fn list(&self, service: &str) -> Result<Listing, Error>;
    /// Follows `service` from `after`: each [`Watch::next`] returns once its
    /// members changed.
    async fn watch(&self, service: &str, after: Listing) -> Result<Box<dyn Watch>, Error>;
}

/// A running watch of one service.
#[async_trait::async_trait]
pub trait Watch: Send {
    /// The next listing whose members differ from the last one returned;
    /// an error when the watch broke (list and watch again).
    async fn next(&mut self) -> Result<Listing, Error>;
}

/// The client for a configured registry.
pub fn connect(settings: &RegistrySettings) -> Arc<dyn Registry> {
    match &settings.kind {
        RegistryKind::Center { authority, node, key, .. } => {
            Arc::new(center_client::CenterClient::new(authority.clone(), node.clone(), key.clone(), settings.timeout))
        }
        RegistryKind::Etcd { authority, prefix } => {
            Arc::new(etcd::Etcd::new(authority.clone(), prefix.clone(), settings.timeout))
        }
    }
}
