//! Host names of pool backends, resolved through the system's resolver
//! (`getaddrinfo`: /etc/hosts, DNS) and resolved again every
//! `resolve_interval`; when a name does not resolve, its last good answer is
//! kept. The resolver is a trait, so that tests can answer for it.

use std::net::SocketAddr;

/// Answers for host names.
pub trait Resolve: Send + Sync {
    /// Every address `host` has, with `port`.
    fn resolve(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>>;
}

/// The system's resolver.
pub struct System;

impl Resolve for System {
    fn resolve(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        use std::net::ToSocketAddrs;
        let mut addrs: Vec<SocketAddr> = (host, port).to_socket_addrs()?.collect();
        addrs.sort();
        addrs.dedup();
        if addrs.is_empty() {
            return Err(std::io::Error::other(format!("{host} has no address")));
        }
        Ok(addrs)
    }
}
