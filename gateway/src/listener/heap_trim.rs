//! Gives the heap freed by a flood of connections back to the system. The
//! C allocator keeps freed memory for reuse; after thousands of
//! connections (each tens of KiB of task state) are gone, the process would
//! stay at its peak. Every few seconds, if the connections open now are
//! well below the peak since the last look, `malloc_trim` returns the free
//! pages (glibc; nothing to do under mimalloc, which returns them itself).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

/// Client connections open now, all roles.
static OPEN: AtomicUsize = AtomicUsize::new(0);
/// Most client connections open at once since the last look.
static PEAK: AtomicUsize = AtomicUsize::new(0);

/// How often to look.
const PERIOD: Duration = Duration::from_secs(5);
/// Connections that must have gone since the peak before a trim.
const GONE: usize = 256;

/// Counts a connection opened.
pub fn opened() {
    let now = OPEN.fetch_add(1, Ordering::Relaxed) + 1;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

/// Counts a connection closed.
pub fn closed() {
    OPEN.fetch_sub(1, Ordering::Relaxed);
}

/// True when enough connections have gone since the last look; starts the
/// next period's peak at what is open now.
fn flood_gone() -> bool {
    let now = OPEN.load(Ordering::Relaxed);
    let peak = PEAK.swap(now, Ordering::Relaxed);
    peak >= now + GONE
}

/// The background service that trims the heap after a flood.
pub struct HeapTrim;

#[async_trait]
impl BackgroundService for HeapTrim {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(PERIOD);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            if flood_gone() {
                trim();
            }
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu", not(feature = "mimalloc")))]
fn trim() {
    // SAFETY: malloc_trim only returns free heap pages to the system.
    let released = unsafe { libc::malloc_trim(0) };
    log::info!("connections gone: free heap returned to the system ({})", if released == 1 { "some" } else { "none" });
}

#[cfg(not(all(target_os = "linux", target_env = "gnu", not(feature = "mimalloc"))))]
fn trim() {}
