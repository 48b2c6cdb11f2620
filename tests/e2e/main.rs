//! End-to-end tests: the real fastproxy binary (both roles), a real callee and
//! a raw client, all on 127.0.0.1; assertions are on what crossed the wire.

mod harness;

mod bombs;
mod connection_limits;
mod discovery;
mod embedded;
mod grpc;
mod hop;
mod independent_sender;
mod operations;
mod policy_and_errors;
mod pools;
mod reload;
mod remote;
mod replay_across_processes;
mod robustness;
mod roundtrip;
mod streaming;
mod tls;
mod wire_security;
