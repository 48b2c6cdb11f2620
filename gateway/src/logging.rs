//! Logging: env_logger, with payload bytes kept out of Pingora's messages and
//! Pingora's warnings and errors rate-limited.
//!
//! Pingora puts the raw bytes of a message it cannot parse into its errors
//! (`buf: HTTP/1.1 …`), and logs those errors at WARN and ERROR. Those bytes may
//! hold a callee's response body, credentials or personal data: every record
//! from a `pingora` target has them replaced by their length.
//!
//! Pingora also logs an ERROR line per connection it gives up on (a request
//! head cut at the header timeout, a client gone mid-request): a flood of
//! hostile connections would become a flood of log lines. At most
//! [`PER_SECOND`] such lines are written per second; the rest are counted and
//! reported in one line when the next second starts.

use std::sync::atomic::{AtomicU64, Ordering};

/// Where a payload dump starts in Pingora's error contexts.
const DUMP: &str = "buf: ";
/// Where the context that holds it ends (the error's cause follows).
const CAUSE: &str = " cause: ";

/// `message` with every payload dump replaced by its length.
pub fn redact(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find(DUMP) {
        out.push_str(&rest[..at + DUMP.len()]);
        let after = &rest[at + DUMP.len()..];
        let end = after.find(CAUSE).unwrap_or(after.len());
        out.push_str(&format!("<{end} bytes not logged>"));
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// Pingora warnings and errors written per second, at most.
pub const PER_SECOND: u64 = 20;

/// A per-second budget of log lines, lock-free: the current second and how
/// many lines it has seen.
#[derive(Default)]
pub struct Budget {
    /// `second << 32 | lines seen in it`.
    state: AtomicU64,
}

/// What to do with one line.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit {
    /// Write it.
    Write,
    /// Write it, after a line saying how many the previous second dropped.
    WriteAfterDropped(u64),
    /// Drop it (counted).
    Drop,
}

impl Budget {
    /// Takes one line at `second` (seconds since any fixed origin).
    pub fn admit(&self, second: u64, per_second: u64) -> Admit {
        let second = second & 0xffff_ffff;
        let mut current = self.state.load(Ordering::Relaxed);
        loop {
            let (at, seen) = (current >> 32, current & 0xffff_ffff);
            let (next, admit) = if at == second {
                (current + 1, if seen < per_second { Admit::Write } else { Admit::Drop })
            } else {
                let dropped = seen.saturating_sub(per_second);
                (second << 32 | 1, if dropped > 0 { Admit::WriteAfterDropped(dropped) } else { Admit::Write })
            };
            match self.state.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return admit,
                Err(now) => current = now,
            }
        }
    }
}

struct Redacting {
    inner: env_logger::Logger,
    budget: Budget,
    started: std::time::Instant,
}

impl log::Log for Redacting {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        self.inner.enabled(metadata)
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.inner.matches(record) {
            return;
        }
        if !record.target().starts_with("pingora") {
            return self.inner.log(record);
        }
        if record.level() <= log::Level::Warn {
            match self.budget.admit(self.started.elapsed().as_secs(), PER_SECOND) {
                Admit::Write => {}
                Admit::Drop => return,
                Admit::WriteAfterDropped(n) => self.inner.log(
                    &log::Record::builder()
                        .args(format_args!("{n} more Pingora warnings and errors in the previous second were not logged (at most {PER_SECOND} a second)"))
                        .level(log::Level::Warn)
                        .target("fastproxy::logging")
                        .build(),
                ),
            }
        }
        let message = record.args().to_string();
        if !message.contains(DUMP) {
            return self.inner.log(record);
        }
        let clean = redact(&message);
        self.inner.log(
            &log::Record::builder()
                .args(format_args!("{clean}"))
                .level(record.level())
                .target(record.target())
                .module_path(record.module_path())
                .file(record.file())
                .line(record.line())
                .build(),
        );
    }

    fn flush(&self) {
        self.inner.flush();
    }
}

/// Installs the logger: `RUST_LOG` (default `info`), payload dumps redacted.
pub fn init() {
    let logger = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).build();
    let max = logger.filter();
    let logger = Redacting { inner: logger, budget: Budget::default(), started: std::time::Instant::now() };
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_the_budget_is_written_per_second_and_the_rest_reported() {
        let b = Budget::default();
        let first: Vec<Admit> = (0..5).map(|_| b.admit(7, 3)).collect();
        assert_eq!(first, [Admit::Write, Admit::Write, Admit::Write, Admit::Drop, Admit::Drop]);
        assert_eq!(b.admit(8, 3), Admit::WriteAfterDropped(2));
        assert_eq!(b.admit(8, 3), Admit::Write);
        assert_eq!(b.admit(9, 3), Admit::Write, "nothing dropped in second 8");
    }

    #[test]
    fn payload_dumps_are_replaced_by_their_length() {
        let line = "Fail to proxy: Upstream InvalidHTTPHeader context: buf: HTTP/1.1 200 OK\\r\\nx-secret: 42 cause: invalid header; peer: 127.0.0.1:1";
        let clean = redact(line);
        assert!(!clean.contains("x-secret"), "{clean}");
        assert!(clean.contains("buf: <31 bytes not logged> cause: invalid header; peer: 127.0.0.1:1"), "{clean}");
        assert_eq!(redact("nothing to hide"), "nothing to hide");
        assert_eq!(redact("buf: tail"), "buf: <4 bytes not logged>");
    }
}
