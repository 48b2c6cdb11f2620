//! Open-file limits: a proxy raises its soft limit to the hard one at start
//! (as Go programs and nginx's `worker_rlimit_nofile` do), and lowers a
//! role's connection cap when the limit cannot hold it, so that the
//! health endpoint, the upstream connections and the logs keep the
//! descriptors they need when a listener is flooded.

use crate::config::ConnectionLimits;

/// Descriptors kept for everything but client connections: listeners, the
/// admin endpoint, health checks, logs, the replay journal.
const RESERVE: u64 = 128;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the soft limit
/// in force afterwards (`None` when it cannot be read).
pub fn raise() -> Option<u64> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return None;
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
        // SAFETY: setrlimit reads the struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return Some(raised.rlim_cur);
        }
    }
    Some(lim.rlim_cur)
}

/// The largest connection cap per role that `nofile` descriptors hold for
/// `roles` roles: each client connection may need a second descriptor for
/// its upstream connection.
pub fn share(nofile: u64, roles: usize) -> usize {
    let per_role = nofile.saturating_sub(RESERVE) / 2 / roles.max(1) as u64;
    usize::try_from(per_role).unwrap_or(usize::MAX).max(1)
}

/// Lowers `limits.max_connections` to `share` when it is above it, saying so.
pub fn fit(limits: &mut ConnectionLimits, role: &str, share: usize, nofile: u64) {
    if limits.max_connections > share {
        log::warn!(
            "{role}.max_connections {} needs more open files than the limit of {nofile} allows: using {share} (raise `ulimit -n` or LimitNOFILE= to allow more)",
            limits.max_connections
        );
        limits.max_connections = share;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_share_leaves_the_reserve_and_a_descriptor_upstream() {
        assert_eq!(share(1024, 1), 448);
        assert_eq!(share(1024, 2), 224);
        assert_eq!(share(1_048_576, 1), 524_224);
        assert_eq!(share(10, 1), 1);
    }
}
