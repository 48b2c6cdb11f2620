//! The inbound proxy's replay cache across restarts and upgrades
//! (PROTOCOL.md §7.1): no nonce accepted by one process is accepted again by
//! the next.
//!
//! The processes of one deployment share a small journal file (next to
//! Pingora's pid file unless `inbound.replay_journal` says otherwise):
//!
//! - A process that stops (SIGTERM) or hands its listeners over (SIGQUIT)
//!   **seals**: it writes every (caller, nonce) digest it remembers, its floor
//!   and a SEALED mark, and from then on journals each nonce it accepts.
//! - A process that starts reads the journal: the entries, the digest keys
//!   and the floor carry on. If the previous process is still running (an
//!   upgrade), it answers no sealed request before that process sealed, and
//!   until that process is gone both journal every nonce they accept, under a
//!   file lock, each reading the other's first: a nonce is accepted once
//!   across both. If the previous process died without sealing (a crash,
//!   SIGKILL), or there is no journal at all (a first start, a reboot that
//!   wiped it), everything timestamped up to the start is refused as stale.
//! - With no other process alive, nothing is journaled per request.
//!
//! Record: kind (1) · 0 (3) · pid (u32) · a (u64) · b (u64), little-endian.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use filters::{Nonce, ReplayGuard};

use crate::http_util::now_ms;

const MAGIC: &[u8; 8] = b"FPRJ0001";
const HEADER_LEN: u64 = 24;
const RECORD_LEN: usize = 24;
/// How long a starting process waits for the one it replaces to seal.
const SEAL_WAIT: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// a = digest, b = timestamp.
    Entry = 1,
    /// a = start time.
    Start = 2,
    /// The process wrote all it remembers and journals from now on.
    Sealed = 3,
    /// a = floor timestamp.
    Floor = 4,
}

fn record(kind: Kind, pid: u32, a: u64, b: u64) -> [u8; RECORD_LEN] {
    let mut r = [0u8; RECORD_LEN];
    r[0] = kind as u8;
    r[4..8].copy_from_slice(&pid.to_le_bytes());
    r[8..16].copy_from_slice(&a.to_le_bytes());
    r[16..24].copy_from_slice(&b.to_le_bytes());
    r
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

/// True while `pid` runs (not gone, not a zombie).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit(')').next().and_then(|s| s.split_whitespace().next()) != Some("Z"),
        Err(_) => false,
    }
}

/// The journal file and where this process has read it to.
struct Journal {
    file: File,
    read_to: u64,
}

impl Journal {
    /// Applies the records others appended since the last read.
    fn catch_up(&mut self, guard: &ReplayGuard, seen: &mut Peers) -> std::io::Result<()> {
        let len = self.file.metadata()?.len();
        if len <= self.read_to {
            return Ok(());
        }
        let mut buf = vec![0u8; (len - self.read_to) as usize];
        self.file.read_exact_at(&mut buf, self.read_to)?;
        let whole = buf.len() / RECORD_LEN * RECORD_LEN;
        let now = now_ms();
        for r in buf[..whole].chunks_exact(RECORD_LEN) {
            let pid = u32::from_le_bytes([r[4], r[5], r[6], r[7]]);
            let (a, b) = (u64_at(r, 8), u64_at(r, 16));
            match r[0] {
                1 => guard.remember(a, b, now),
                2 => {
                    seen.started.insert(pid);
                    seen.sealed.remove(&pid);
                    seen.last_start = Some(pid);
                }
                3 => {
                    seen.sealed.insert(pid);
                }
                4 => guard.raise_floor(a),
                _ => {}
            }
        }
        self.read_to += whole as u64;
        Ok(())
    }

    fn append(&self, records: &[u8]) -> std::io::Result<()> {
        (&self.file).write_all(records)
    }
}

/// What a process learned of the others from the journal.
#[derive(Default)]
struct Peers {
    started: HashSet<u32>,
    sealed: HashSet<u32>,
    last_start: Option<u32>,
}

struct Inner {
    journal: Journal,
    peers: Peers,
    /// The previous process, while it still runs.
    previous: Option<u32>,
    sealed: bool,
}

/// The replay cache of an inbound process and its handover.
pub struct ReplayState {
    guard: ReplayGuard,
    pid: u32,
    /// Journal every accepted nonce (another process is alive).
    shared: AtomicBool,
    /// No sealed request is answered before the previous process sealed.
    waiting: AtomicBool,
    inner: Mutex<Inner>,
}

impl ReplayState {
    /// Opens (or creates) the journal at `path` and takes over what it holds.
    pub fn open(path: &str, skew_ms: u64, capacity: usize) -> Result<Arc<Self>, String> {
        let fail = |what: &str, e: std::io::Error| format!("replay journal {path}: {what}: {e}");
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| fail("open", e))?;
        file.lock().map_err(|e| fail("lock", e))?;
        let mut header = [0u8; HEADER_LEN as usize];
        let valid = file.metadata().map(|m| m.len()).unwrap_or(0) >= HEADER_LEN
            && file.read_exact_at(&mut header, 0).is_ok()
            && &header[..8] == MAGIC;
        if !valid {
            let mut k = [0u8; 16];
            ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut k)
                .map_err(|_| format!("replay journal {path}: no randomness for its keys"))?;
            header[..8].copy_from_slice(MAGIC);
            header[8..].copy_from_slice(&k);
            file.set_len(0).map_err(|e| fail("truncate", e))?;
            (&file).write_all(&header).map_err(|e| fail("write", e))?;
        }
        let keys = [u64_at(&header, 8), u64_at(&header, 16)];
        let guard = ReplayGuard::with_keys(skew_ms, capacity, keys);
        if !valid {
            // No journal: a first start, or one lost (a reboot wiped /run, a
            // new path). Nothing accepted before may pass either way.
            guard.raise_floor(now_ms());
        }
        let mut journal = Journal { file, read_to: HEADER_LEN };
        let mut peers = Peers::default();
        journal.catch_up(&guard, &mut peers).map_err(|e| fail("read", e))?;
        let pid = std::process::id();
        let now = now_ms();
        let previous = peers.last_start.filter(|p| *p != pid);
        let running = previous.filter(|p| alive(*p));
        let unsealed = previous.is_some_and(|p| !peers.sealed.contains(&p));
        if running.is_none() {
            if unsealed {
                // It died without handing over: nothing it accepted may pass.
                log::warn!(target: "fastproxy::replay", "the previous inbound process stopped without sealing its replay cache: refusing timestamps up to now");
                guard.raise_floor(now);
            }
            // Alone: start the journal afresh (what it held is in memory).
            journal.file.set_len(HEADER_LEN).map_err(|e| fail("truncate", e))?;
            journal.read_to = HEADER_LEN;
            peers = Peers::default();
        }
        journal.append(&record(Kind::Start, pid, now, 0)).map_err(|e| fail("write", e))?;
        journal.read_to += RECORD_LEN as u64;
        let _ = journal.file.unlock();
        let waiting = running.is_some_and(|p| !peers.sealed.contains(&p));
        if let Some(p) = running {
            log::info!(target: "fastproxy::replay", "taking over from inbound process {p}: sharing the replay journal until it exits");
        }
        Ok(Arc::new(ReplayState {
            guard,
            pid,
            shared: AtomicBool::new(running.is_some()),
            waiting: AtomicBool::new(waiting),
            inner: Mutex::new(Inner { journal, peers, previous: running, sealed: false }),
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits, at most [`SEAL_WAIT`], for the process this one replaces to
    /// seal its cache; immediate when there is none.
    pub async fn ready(&self) {
        if !self.waiting.load(Ordering::Acquire) {
            return;
        }
        let start = std::time::Instant::now();
        loop {
            {
                let mut inner = self.lock();
                let Inner { journal, peers, previous, .. } = &mut *inner;
                let _ = journal.file.lock();
                let _ = journal.catch_up(&self.guard, peers);
                let _ = journal.file.unlock();
                if previous.is_none_or(|p| peers.sealed.contains(&p)) {
                    self.waiting.store(false, Ordering::Release);
                    return;
                }
                if start.elapsed() >= SEAL_WAIT {
                    log::warn!(target: "fastproxy::replay", "the previous inbound process did not seal its replay cache in time: refusing timestamps up to now");
                    self.guard.raise_floor(now_ms());
                    self.waiting.store(false, Ordering::Release);
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Accepts `nonce` from `caller` once (PROTOCOL.md §7.1), across this
    /// process and any other sharing the journal.
    pub fn check(&self, caller: &str, nonce: &Nonce, ts_ms: u64, now: u64) -> filters::Result<()> {
        let digest = self.guard.digest(caller, nonce);
        if !self.shared.load(Ordering::Acquire) {
            return self.guard.check_digest(digest, ts_ms, now);
        }
        let mut inner = self.lock();
        if !self.shared.load(Ordering::Acquire) {
            return self.guard.check_digest(digest, ts_ms, now);
        }
        let Inner { journal, peers, .. } = &mut *inner;
        let result = (|| {
            journal.file.lock()?;
            journal.catch_up(&self.guard, peers)?;
            let checked = self.guard.check_digest(digest, ts_ms, now);
            if checked.is_ok() {
                journal.append(&record(Kind::Entry, self.pid, digest, ts_ms))?;
            }
            Ok::<_, std::io::Error>(checked)
        })();
        let _ = journal.file.unlock();
        result.unwrap_or_else(|e| {
            // Fail closed: a nonce the other process cannot see is not taken.
            log::error!(target: "fastproxy::replay", "replay journal: {e}");
            Err(filters::Error::StaleTimestamp)
        })
    }

    /// Writes all this process remembers to the journal and journals every
    /// later acceptance (on stop or upgrade, before the next process answers).
    pub fn seal(&self) {
        let mut inner = self.lock();
        if inner.sealed {
            return;
        }
        let Inner { journal, peers, .. } = &mut *inner;
        let result = (|| {
            journal.file.lock()?;
            journal.catch_up(&self.guard, peers)?;
            let entries = self.guard.entries();
            let mut out = Vec::with_capacity((entries.len() + 2) * RECORD_LEN);
            if let Some(floor) = self.guard.floor() {
                out.extend_from_slice(&record(Kind::Floor, self.pid, floor, 0));
            }
            for (digest, ts) in &entries {
                out.extend_from_slice(&record(Kind::Entry, self.pid, *digest, *ts));
            }
            out.extend_from_slice(&record(Kind::Sealed, self.pid, now_ms(), 0));
            journal.append(&out)?;
            Ok::<_, std::io::Error>(entries.len())
        })();
        let _ = journal.file.unlock();
        match result {
            Ok(n) => log::info!(target: "fastproxy::replay", "replay cache sealed: {n} entries handed over"),
            Err(e) => log::error!(target: "fastproxy::replay", "sealing the replay cache failed: {e}"),
        }
        inner.sealed = true;
        self.shared.store(true, Ordering::Release);
    }

    /// Once the replaced process is gone, stops journaling.
    pub fn check_previous(&self) {
        let mut inner = self.lock();
        let Some(p) = inner.previous else { return };
        if alive(p) || inner.sealed {
            return;
        }
        let Inner { journal, peers, .. } = &mut *inner;
        let _ = journal.file.lock();
        let _ = journal.catch_up(&self.guard, peers);
        let _ = journal.file.unlock();
        if !peers.sealed.contains(&p) {
            self.guard.raise_floor(now_ms());
        }
        inner.previous = None;
        self.shared.store(false, Ordering::Release);
        log::info!(target: "fastproxy::replay", "inbound process {p} is gone: replay journal no longer shared");
    }
}
