//! Run to completion: the pollers' receives tell when the queue is drained.
//!
//! A receive that comes back empty while the worker holds no message (none running, none
//! waiting behind its FIFO group, no delete or visibility change unsent) is one empty
//! receive; [`exit_after_empty_receives`](crate::config::WorkerConfig::exit_after_empty_receives)
//! of them in a row, from any of the worker's pollers, end the run. A receive that
//! returns messages, or comes back empty while something is held, or fails, starts the
//! count again. The decision is the engine's, made where receives happen, so it needs
//! no call beyond the receives the worker makes anyway.
//!
//! The same receives show a job that cannot finish: a queue that refuses
//! [`REFUSALS_BEFORE_FATAL`] receives in a row (deleted, or access revoked) ends the run
//! as fatal, where a worker that runs until shutdown keeps retrying.

use std::sync::atomic::{AtomicU32, Ordering};

use crate::contract::{Contract, StopReason};
use crate::error::BackendError;

/// Receives refused in a row after which a worker running to completion gives up.
const REFUSALS_BEFORE_FATAL: u32 = 5;

/// What the pollers count towards the end of a run to completion.
#[derive(Debug, Default)]
pub(crate) struct Completion {
    /// `exit_after_empty_receives`: `None` runs until shutdown.
    empty_receives: Option<u32>,
    /// Empty receives in a row, each while nothing was held.
    empty: AtomicU32,
    /// Receives the queue refused in a row.
    refused: AtomicU32,
}

impl Completion {
    pub(crate) fn new(empty_receives: Option<u32>) -> Self {
        Self {
            empty_receives,
            ..Self::default()
        }
    }

    /// After a receive that returned `received` messages: the run ends once enough empty
    /// receives came in a row.
    pub(crate) fn received(
        &self,
        received: usize,
        holds_nothing: impl FnOnce() -> bool,
        shutdown: &Contract,
    ) {
        let completion = self;
        let Some(limit) = completion.empty_receives else {
            return;
        };
        completion.refused.store(0, Ordering::Relaxed);
        if received > 0 || !holds_nothing() {
            completion.empty.store(0, Ordering::Relaxed);
            return;
        }
        let empty = completion.empty.fetch_add(1, Ordering::Relaxed) + 1;
        if empty >= limit {
            tracing::info!(
                empty_receives = empty,
                "run to completion: the queue read empty with no message held; stopping"
            );
            shutdown.end(StopReason::Drained);
        }
    }

    /// After a receive that failed with `error`: a worker running to completion ends its
    /// run once the queue has refused enough receives in a row.
    pub(crate) fn receive_failed(&self, error: &BackendError, shutdown: &Contract) {
        let completion = self;
        if completion.empty_receives.is_none() {
            return;
        }
        completion.empty.store(0, Ordering::Relaxed);
        if error.is_retryable() {
            completion.refused.store(0, Ordering::Relaxed);
            return;
        }
        let refused = completion.refused.fetch_add(1, Ordering::Relaxed) + 1;
        if refused >= REFUSALS_BEFORE_FATAL {
            tracing::error!(
                %error,
                refused,
                "run to completion: the queue refuses every receive, so the job cannot finish; stopping"
            );
            shutdown.end(StopReason::Fatal);
        }
    }
}
