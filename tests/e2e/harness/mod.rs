//! The end-to-end harness: a real callee, a raw client, a recording relay, and
//! the real fastproxy binary, all on 127.0.0.1 with ports from the OS.
#![allow(dead_code)]

#[cfg(test)]
pub mod apollo;
pub mod client;
pub mod load;
// Process and deployment helpers need the test binary's path (cargo test only).
#[cfg(test)]
pub mod config;
#[cfg(test)]
pub mod grpc;
pub mod h2_callee;
pub mod h2_relay;
#[cfg(test)]
pub mod proxy;
#[cfg(test)]
pub mod registry;
pub mod relay;
#[cfg(test)]
pub mod seal;
pub mod tap;
pub mod upstream;
pub mod wire;
