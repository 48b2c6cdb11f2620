//! `fastproxy center`: the built-in service registry (docs/CENTER.md).
//! Instances register under a service with a lease that they keep alive;
//! clients list and watch (a long poll on the revision); every request is
//! signed with the client's center key and every answer with the same key;
//! registrations survive a restart in `center.state_file`.
//!
//! - the request and response signatures are `discovery::center_auth`
//!   (shared with the client);
//! - `store`: the state machine (leases, revisions, persistence format);
//! - `server`: the HTTP JSON API and the lease sweeper.

pub mod server;
pub mod store;
