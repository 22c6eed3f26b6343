//! Starting a shutdown: from a handle, or from SIGTERM and SIGINT.
//!
//! ECS stops a task with SIGTERM and, `stopTimeout` later, SIGKILL. The first signal
//! begins a graceful shutdown; a second one (an impatient operator, or a stop in a
//! hurry) gives up on running handlers at once and releases their messages.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures_util::StreamExt;
use signal_hook::consts::{SIGINT, SIGTERM};
use tokio_util::sync::CancellationToken;

use crate::contract::StopReason;

/// Starts a worker's shutdown from anywhere: tests, an embedding program, a signal.
///
/// [`begin`](Self::begin) stops receiving and lets running handlers finish until the
/// grace deadline; [`now`](Self::now) also cancels the running handlers at once and
/// releases their messages. Clones share one state.
#[derive(Clone, Debug, Default)]
pub struct ShutdownHandle {
    graceful: CancellationToken,
    immediate: CancellationToken,
    /// A termination signal began the shutdown.
    signalled: Arc<AtomicBool>,
}

impl ShutdownHandle {
    /// A handle that has not fired.
    pub fn new() -> Self {
        Self::default()
    }

    /// Begins a graceful shutdown.
    pub fn begin(&self) {
        self.graceful.cancel();
    }

    /// Shuts down without waiting for running handlers: they are cancelled and their
    /// messages released (visibility 0).
    pub fn now(&self) {
        self.graceful.cancel();
        self.immediate.cancel();
    }

    /// Whether shutdown has begun.
    pub fn has_begun(&self) -> bool {
        self.graceful.is_cancelled()
    }

    /// Waits until shutdown has begun (by [`begin`](Self::begin), [`now`](Self::now) or
    /// a signal): for a program that runs its own loops beside, or instead of, a worker.
    pub async fn begun(&self) {
        self.graceful.cancelled().await;
    }

    pub(crate) async fn immediate(&self) {
        self.immediate.cancelled().await;
    }

    /// Why the shutdown this handle began ends a run: a signal, or the program's request.
    pub(crate) fn reason(&self) -> StopReason {
        if self.signalled.load(Ordering::Acquire) {
            StopReason::Signal
        } else {
            StopReason::Requested
        }
    }

    /// Drives this handle from SIGTERM and SIGINT: the first signal begins a graceful
    /// shutdown, the second shuts down now. Installs the handlers at once (so a signal
    /// that arrives while the worker starts is not lost) and listens in a task.
    pub fn on_termination_signals(&self) -> std::io::Result<()> {
        let mut signals = signal_hook_tokio::Signals::new([SIGTERM, SIGINT])?;
        let handle = self.clone();
        tokio::spawn(async move {
            let mut count = 0;
            while let Some(signal) = signals.next().await {
                count += 1;
                let name = if signal == SIGTERM {
                    "SIGTERM"
                } else {
                    "SIGINT"
                };
                if count == 1 {
                    tracing::info!(signal = name, "shutting down: finishing running handlers");
                    if !handle.has_begun() {
                        handle.signalled.store(true, Ordering::Release);
                    }
                    handle.begin();
                } else {
                    tracing::warn!(signal = name, "second signal: releasing every message now");
                    handle.now();
                    break;
                }
            }
        });
        Ok(())
    }
}
