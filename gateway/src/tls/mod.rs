//! TLS between the proxies (and, per pool, to callees), on rustls through
//! Pingora:
//! - `material`: what a generation's config becomes (the listeners'
//!   certificate and client verifier, a pool's CA and client certificate),
//!   with no reference to the running generation;
//! - `listener`: the inbound listeners' TLS, following the current
//!   generation ([`listener::ServerCerts`], [`listener::ClientCerts`]): a
//!   reload rotates both, new handshakes use the new ones, connections in
//!   flight keep theirs; and each handshake's client certificate identities
//!   attached to the connection for the caller check.

pub mod listener;
pub mod material;

pub use listener::{listener_settings, peer_identity};
pub use material::{Built, PoolTls};
