//! What a process does when it starts to stop (SIGTERM) or to hand its
//! listeners to a new process (SIGQUIT): it says `Connection: close` on every
//! response from then on, so clients take their next request to a fresh
//! connection (the new process, or none) instead of having their idle
//! connections cut at the end of the grace period; and the inbound role
//! seals its replay cache for the next process.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::{ExecutionPhase, ShutdownWatch};
use pingora::services::background::BackgroundService;
use tokio::sync::broadcast;

use crate::replay_state::ReplayState;

/// Set once the process has started to stop or hand over.
#[derive(Debug, Clone, Default)]
pub struct Draining(Arc<AtomicBool>);

impl Draining {
    /// True once the process has started to stop or hand over.
    pub fn is_on(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Starts draining: every response from now on closes its connection.
    pub fn start(&self) {
        if !self.0.swap(true, Ordering::Relaxed) {
            log::info!("draining: every response now closes its connection");
        }
    }
}

/// Watches the process's execution phases and shutdown.
pub struct Lifecycle {
    draining: Draining,
    replay: Option<Arc<ReplayState>>,
    phases: Mutex<Option<broadcast::Receiver<ExecutionPhase>>>,
}

impl Lifecycle {
    /// Watches `phases` (from `Server::watch_execution_phase`) for `draining`
    /// and, on an inbound proxy, `replay`.
    pub fn new(
        draining: Draining,
        replay: Option<Arc<ReplayState>>,
        phases: broadcast::Receiver<ExecutionPhase>,
    ) -> Self {
        Lifecycle { draining, replay, phases: Mutex::new(Some(phases)) }
    }

    fn stopping(&self) {
        self.draining.start();
        if let Some(replay) = &self.replay {
            replay.seal();
        }
    }
}

#[async_trait]
impl BackgroundService for Lifecycle {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let phases = self.phases.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(mut phases) = phases else { return };
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tokio::select! {
                phase = phases.recv() => match phase {
                    Ok(ExecutionPhase::GracefulUpgradeTransferringFds | ExecutionPhase::GracefulTerminate) => {
                        self.stopping()
                    }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = shutdown.changed() => {
                    self.stopping();
                    return;
                }
                _ = tick.tick() => {
                    if let Some(replay) = &self.replay {
                        replay.check_previous();
                    }
                }
            }
        }
    }
}
