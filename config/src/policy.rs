//! The inbound proxy's receiver-side policy: who may call what, with which keys
//! and protection, how often. Deny by default: a caller without a policy, a
//! request matching no rule, a key or protection not listed, is refused.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use filters::{Envelope, Protection};

/// A caller's compiled policy.
#[derive(Debug)]
pub struct CallerPolicy {
    /// Bodies must be encrypted.
    pub require_encrypt: bool,
    /// Key ids the caller may use (encryption and signing).
    pub keys: HashSet<crate::name::Name>,
    /// Rules, first match wins.
    pub rules: Vec<Rule>,
    /// The identity its connection's client certificate must carry.
    pub identity: Option<crate::tls::Identity>,
}

/// One allow rule.
#[derive(Debug)]
pub struct Rule {
    /// Callee service.
    pub service: String,
    /// Which paths.
    pub path: PathMatch,
    /// Which methods.
    pub methods: Methods,
    /// The configured rate, requests per second.
    pub qps: Option<u32>,
    /// Rate limit on this rule, if any.
    pub limit: Option<RateLimiter>,
}

/// How a rule matches the path below the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    /// The path equals this.
    Exact(String),
    /// The path starts with this.
    Prefix(String),
}

/// Which methods a rule allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Methods {
    /// Any method.
    Any,
    /// These (upper case).
    Listed(Vec<String>),
}

/// Why a verified request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// The caller has no policy here.
    UnknownCaller,
    /// The caller used a key id it may not use.
    KeyNotAllowed,
    /// The caller must encrypt and sent sign-only.
    EncryptionRequired,
    /// No rule allows this service, path and method.
    NotAllowed,
    /// The matching rule's rate is exceeded; retry after this many seconds.
    RateLimited(u64),
    /// The caller must come over mutual TLS with a certificate carrying its
    /// identity, and the connection's certificate does not.
    IdentityMismatch,
}

impl CallerPolicy {
    /// Checks that the connection's client certificate (`peer`, its SANs;
    /// `None` without one) carries the identity the caller must have.
    pub fn check_identity(&self, peer: Option<&crate::tls::PeerIdentity>) -> Result<(), Denial> {
        match &self.identity {
            None => Ok(()),
            Some(id) if peer.is_some_and(|p| p.has(id)) => Ok(()),
            Some(_) => Err(Denial::IdentityMismatch),
        }
    }

    /// Checks the keys and protection a verified envelope used.
    pub fn check_protection(&self, env: &Envelope<'_>) -> Result<(), Denial> {
        if !self.keys.contains(env.sign_key) {
            return Err(Denial::KeyNotAllowed);
        }
        match env.protection {
            Protection::SignOnly if self.require_encrypt => Err(Denial::EncryptionRequired),
            Protection::SignOnly => Ok(()),
            Protection::Encrypt { key, .. } if self.keys.contains(key) => Ok(()),
            Protection::Encrypt { .. } => Err(Denial::KeyNotAllowed),
        }
    }

    /// Finds the first rule allowing `method` on `service` + `path`, and charges
    /// its rate limit.
    pub fn authorize(&self, service: &str, path: &str, method: &str) -> Result<(), Denial> {
        let rule = self.rules.iter().find(|r| r.matches(service, path, method)).ok_or(Denial::NotAllowed)?;
        match &rule.limit {
            Some(limit) => limit.try_acquire().map_err(|wait| Denial::RateLimited(wait.as_secs().max(1))),
            None => Ok(()),
        }
    }
}

impl Rule {
    fn matches(&self, service: &str, path: &str, method: &str) -> bool {
        self.service == service
            && match &self.path {
                PathMatch::Exact(p) => p == path,
                PathMatch::Prefix(p) => path.starts_with(p.as_str()),
            }
            && match &self.methods {
                Methods::Any => true,
                Methods::Listed(m) => m.iter().any(|m| m == method),
            }
    }
}

/// A lock-free GCRA rate limiter: `qps` requests per second, with a burst of up
/// to one second's worth. Memory is fixed (one atomic), so limiters exist only
/// per configured rule, never per request attribute.
#[derive(Debug)]
pub struct RateLimiter {
    base: Instant,
    interval_ns: u64,
    tolerance_ns: u64,
    /// Theoretical arrival time of the next request, ns since `base`.
    tat: AtomicU64,
}

impl RateLimiter {
    /// A limiter allowing `qps` (≥ 1) requests per second.
    pub fn new(qps: u32) -> Self {
        let interval_ns = 1_000_000_000 / u64::from(qps.max(1));
        RateLimiter {
            base: Instant::now(),
            interval_ns,
            tolerance_ns: interval_ns * (u64::from(qps.max(1)) - 1),
            tat: AtomicU64::new(0),
        }
    }

    /// Takes one request's worth, or says how long until one is available.
    pub fn try_acquire(&self) -> Result<(), Duration> {
        let now = self.base.elapsed().as_nanos() as u64;
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let earliest = tat.saturating_sub(self.tolerance_ns);
            if now < earliest {
                return Err(Duration::from_nanos(earliest - now));
            }
            let next = tat.max(now) + self.interval_ns;
            match self.tat.compare_exchange_weak(tat, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return Ok(()),
                Err(actual) => tat = actual,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_rate() {
        let l = RateLimiter::new(50);
        for i in 0..50 {
            assert!(l.try_acquire().is_ok(), "request {i} of the burst");
        }
        let wait = l.try_acquire().unwrap_err();
        assert!(wait <= Duration::from_millis(20), "{wait:?}");
        std::thread::sleep(Duration::from_millis(45));
        assert!(l.try_acquire().is_ok());
    }

    #[test]
    fn rules_match_first_and_deny_by_default() {
        let p = CallerPolicy {
            require_encrypt: true,
            identity: None,
            keys: HashSet::new(),
            rules: vec![
                Rule {
                    service: "a".into(),
                    path: PathMatch::Exact("/x".into()),
                    methods: Methods::Listed(vec!["POST".into()]),
                    qps: None,
                    limit: None,
                },
                Rule {
                    service: "a".into(),
                    path: PathMatch::Prefix("/api/".into()),
                    methods: Methods::Any,
                    qps: None,
                    limit: None,
                },
            ],
        };
        assert_eq!(p.authorize("a", "/x", "POST"), Ok(()));
        assert_eq!(p.authorize("a", "/x", "GET"), Err(Denial::NotAllowed));
        assert_eq!(p.authorize("a", "/x/", "POST"), Err(Denial::NotAllowed));
        assert_eq!(p.authorize("a", "/api/v1", "DELETE"), Ok(()));
        assert_eq!(p.authorize("b", "/api/v1", "GET"), Err(Denial::NotAllowed));
    }
}
