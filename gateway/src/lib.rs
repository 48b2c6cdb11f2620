//! fastproxy: a service-to-service security gateway on Pingora, as a
//! library. The `fastproxy` binary is a thin user of it; an application can
//! embed the same outbound and/or inbound roles in its own Pingora
//! [`Server`](pingora::server::Server) through [`Gateway`], and reload them
//! through a [`Handle`] (see `examples/embedded.rs`).
//!
//! Composition happens in [`assemble`], explicitly: config → generation →
//! roles → Pingora services.

pub mod admin;
#[cfg(feature = "alloc-count")]
pub mod alloc;
pub mod assemble;
pub mod center;
pub mod certs;
pub mod discovery;
pub mod error;
pub mod fd_limit;
pub mod grpc;
pub mod http_util;
pub mod lifecycle;
pub mod listener;
pub mod logging;
pub mod membership;
pub mod metrics;
pub mod opened;
pub mod pools;
pub mod reload;
pub mod remote;
pub mod replay_state;
pub mod roles;
pub mod state;
pub mod tls;

pub use ::config;
pub use ::config::policy;
pub use assemble::{Gateway, Handle, Source};
