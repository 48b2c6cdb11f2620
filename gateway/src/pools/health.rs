//! Active health checks (TCP or HTTP) built from a pool's settings; every
//! change of a backend's health is logged.

use std::net::SocketAddr;

use async_trait::async_trait;
use pingora::http::RequestHeader;
use pingora::lb::health_check::{HealthCheck, HealthObserve, HttpHealthCheck, TcpHealthCheck};
use pingora::lb::Backend;

use crate::config::{Health, Probe};

/// Called with a backend's address and its new health.
pub type OnChange = Box<dyn Fn(SocketAddr, bool) + Send + Sync>;

/// Logs health changes of one pool's backends and passes them on.
struct Changes {
    pool: String,
    on_change: OnChange,
}

#[async_trait]
impl HealthObserve for Changes {
    async fn observe(&self, target: &Backend, healthy: bool) {
        let state = if healthy { "healthy" } else { "unhealthy" };
        log::info!(target: "fastproxy::pool", "pool {}: backend {} marked {state} by health check", self.pool, target.addr);
        if let Some(addr) = target.addr.as_inet() {
            (self.on_change)(*addr, healthy);
        }
    }
}

/// The health check for `health`, logging changes under `pool`'s name and
/// reporting them to `on_change`; an HTTP probe of a TLS pool speaks TLS
/// like its requests (verified, with the pool's client certificate).
pub fn build(
    pool: &str,
    health: &Health,
    tls: Option<&crate::tls::PoolTls>,
    on_change: OnChange,
) -> Box<dyn HealthCheck + Send + Sync> {
    let observer = Box::new(Changes { pool: pool.to_owned(), on_change });
    match &health.probe {
        Probe::Tcp => {
            let mut check = TcpHealthCheck::new();
            check.consecutive_success = health.rise;
            check.consecutive_failure = health.fall;
            check.peer_template.options.connection_timeout = Some(health.timeout);
            check.peer_template.options.total_connection_timeout = Some(health.timeout);
            check.health_changed_callback = Some(observer);
            check
        }
        Probe::Http { path, status, host } => {
            let mut check = HttpHealthCheck::new(host, tls.is_some());
            if let Some(tls) = tls {
                tls.apply(&mut check.peer_template);
            }
            check.consecutive_success = health.rise;
            check.consecutive_failure = health.fall;
            check.peer_template.options.connection_timeout = Some(health.timeout);
            check.peer_template.options.read_timeout = Some(health.timeout);
            if let Ok(mut req) = RequestHeader::build("GET", path.as_bytes(), None) {
                if req.insert_header("host", host.as_str()).is_ok() {
                    check.req = req;
                }
            }
            let expected = *status;
            check.validator = Some(Box::new(move |resp| {
                if resp.status.as_u16() == expected {
                    Ok(())
                } else {
                    Err(pingora::Error::explain(
                        pingora::ErrorType::HTTPStatus(resp.status.as_u16()),
                        "unexpected status",
                    ))
                }
            }));
            check.health_changed_callback = Some(observer);
            Box::new(check)
        }
    }
}
