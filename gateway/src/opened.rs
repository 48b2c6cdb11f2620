//! A process-wide cap on opened plaintext that is held in memory and not yet
//! written on: what a compressed body costs once decrypted and decompressed.
//!
//! Opening a sealed chunk first reserves the most it can yield (32 times its
//! sealed bytes, PROTOCOL.md §6.3), waiting while the cap is reached: so a
//! callee that reads slowly slows its senders down instead of letting their
//! bodies pile up. The part of a reservation that the opened bytes use is
//! held by those bytes and given back when they are dropped, i.e. once
//! written to the callee; the rest is given back at once.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Reservations are counted in KiB (a semaphore counts in `u32`).
const UNIT: usize = 1024;

/// The cap, shared by every request of the process.
#[derive(Debug, Clone)]
pub struct OpenBudget {
    permits: Arc<Semaphore>,
    units: u32,
}

impl OpenBudget {
    /// A cap of `bytes` (at least 1 MiB).
    pub fn new(bytes: u64) -> Self {
        let units = (bytes as usize / UNIT).clamp(1024, u32::MAX as usize) as u32;
        OpenBudget { permits: Arc::new(Semaphore::new(units as usize)), units }
    }

    /// Waits until `bound` bytes (at most the whole cap) can be held.
    pub async fn reserve(&self, bound: usize) -> Reservation {
        let want = (bound.div_ceil(UNIT) as u32).clamp(1, self.units);
        // The semaphore is never closed.
        let permit = self.permits.clone().acquire_many_owned(want).await.ok();
        Reservation { permit }
    }

    /// Bytes of the cap in use now.
    pub fn in_use(&self) -> usize {
        (self.units as usize - self.permits.available_permits()) * UNIT
    }
}

/// Room reserved for the output of one opening.
pub struct Reservation {
    permit: Option<OwnedSemaphorePermit>,
}

impl Reservation {
    /// Hands `out` on: it keeps as much of the reservation as it needs until
    /// it is dropped; the rest is given back now.
    pub fn hold(mut self, out: BytesMut) -> Bytes {
        let Some(mut permit) = self.permit.take() else { return out.freeze() };
        // What the bytes occupy, not just their length.
        let keep = (out.capacity().div_ceil(UNIT) as u32).max(1) as usize;
        if permit.num_permits() > keep {
            drop(permit.split(permit.num_permits() - keep));
        }
        if out.is_empty() {
            return Bytes::new();
        }
        Bytes::from_owner(Held { data: out, _permit: permit })
    }
}

/// Opened bytes and the part of the cap they hold.
struct Held {
    data: BytesMut,
    _permit: OwnedSemaphorePermit,
}

impl AsRef<[u8]> for Held {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_bytes_keep_their_share_until_dropped() {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let budget = OpenBudget::new(2 << 20);
            let r = budget.reserve(1 << 20).await;
            assert_eq!(budget.in_use(), 1 << 20);
            let mut out = BytesMut::new();
            out.resize(100 * 1024, 7);
            let held = r.hold(out);
            assert_eq!(budget.in_use(), 100 * 1024, "the unused part came back");
            let copy = held.clone();
            drop(held);
            assert_eq!(budget.in_use(), 100 * 1024, "a clone still holds it");
            drop(copy);
            assert_eq!(budget.in_use(), 0);
            // A bound over the cap takes the whole cap, and waits for it.
            let all = budget.reserve(64 << 20).await;
            assert_eq!(budget.in_use(), 2 << 20);
            drop(all);
        });
    }
}
