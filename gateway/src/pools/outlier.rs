//! Passive outlier ejection per backend: after `consecutive_failures` failures
//! in a row a backend is ejected for `base × 2^(n-1)` (capped), then gets
//! traffic again half-open: one success readmits it, one failure ejects it
//! again for longer. The pool never ejects more than its configured share.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::OutlierPolicy;

/// What happened to a backend's state, for logging and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Nothing changed.
    None,
    /// Ejected for this long.
    Ejected(Duration),
    /// A half-open backend succeeded and is back.
    Readmitted,
}

#[derive(Debug, Default)]
struct State {
    consecutive: u32,
    ejections: u32,
    ejected_until: Option<Instant>,
    /// Ejection expired; the next outcome decides.
    half_open: bool,
}

/// One backend's ejection state.
#[derive(Debug, Default)]
pub struct Outlier {
    state: Mutex<State>,
}

impl Outlier {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// True when the backend may receive traffic now.
    pub fn available(&self, now: Instant) -> bool {
        let mut s = self.lock();
        match s.ejected_until {
            Some(until) if now < until => false,
            Some(_) => {
                s.ejected_until = None;
                s.half_open = true;
                true
            }
            None => true,
        }
    }

    /// True while ejected.
    pub fn is_ejected(&self, now: Instant) -> bool {
        self.lock().ejected_until.is_some_and(|until| now < until)
    }

    /// Forgets any ejection: an active health check saw the backend come
    /// back, which is better evidence than the ejection timer. True when it
    /// was ejected.
    pub fn clear(&self) -> bool {
        let mut s = self.lock();
        let was = s.ejected_until.is_some() || s.half_open;
        *s = State::default();
        was
    }

    /// Records a success.
    pub fn success(&self) -> Transition {
        let mut s = self.lock();
        s.consecutive = 0;
        if s.half_open {
            s.half_open = false;
            s.ejections = 0;
            return Transition::Readmitted;
        }
        Transition::None
    }

    /// Records a failure; ejects when the policy says so and `may_eject`
    /// (the pool is under its ejection share).
    pub fn failure(&self, policy: &OutlierPolicy, may_eject: bool, now: Instant) -> Transition {
        let mut s = self.lock();
        s.consecutive = s.consecutive.saturating_add(1);
        let due = s.half_open || s.consecutive >= policy.consecutive_failures;
        if !due || !may_eject || s.ejected_until.is_some_and(|u| now < u) {
            return Transition::None;
        }
        s.ejections = s.ejections.saturating_add(1);
        let factor = 1u32 << (s.ejections - 1).min(16);
        let time = policy.base_ejection.saturating_mul(factor).min(policy.max_ejection);
        s.ejected_until = Some(now + time);
        s.half_open = false;
        s.consecutive = 0;
        Transition::Ejected(time)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> OutlierPolicy {
        OutlierPolicy {
            consecutive_failures: 3,
            base_ejection: Duration::from_secs(10),
            max_ejection: Duration::from_secs(25),
            max_ejected_percent: 50,
            statuses: vec![503],
        }
    }

    #[test]
    fn ejects_backs_off_and_readmits() {
        let (o, p, t0) = (Outlier::default(), policy(), Instant::now());
        assert_eq!(o.failure(&p, true, t0), Transition::None);
        assert_eq!(o.failure(&p, true, t0), Transition::None);
        assert_eq!(o.failure(&p, true, t0), Transition::Ejected(Duration::from_secs(10)));
        assert!(!o.available(t0 + Duration::from_secs(9)));
        // Half-open after the ejection: one failure ejects again, twice as long.
        assert!(o.available(t0 + Duration::from_secs(11)));
        let t1 = t0 + Duration::from_secs(11);
        assert_eq!(o.failure(&p, true, t1), Transition::Ejected(Duration::from_secs(20)));
        assert!(o.available(t1 + Duration::from_secs(21)));
        assert_eq!(o.failure(&p, true, t1 + Duration::from_secs(21)), Transition::Ejected(Duration::from_secs(25)));
        // Half-open success readmits and resets the backoff.
        assert!(o.available(t1 + Duration::from_secs(50)));
        assert_eq!(o.success(), Transition::Readmitted);
        assert_eq!(o.success(), Transition::None);
    }

    #[test]
    fn respects_the_pool_share() {
        let (o, p, t0) = (Outlier::default(), policy(), Instant::now());
        for _ in 0..10 {
            assert_eq!(o.failure(&p, false, t0), Transition::None);
        }
        assert!(o.available(t0));
    }
}
