//! The engine: pollers that receive only what they can start, one task per message, and
//! a settle loop that batches deletes and visibility changes.
//!
//! Permits bound the handlers in flight. A poller first takes one permit (waiting if all
//! are in use), then as many more as are free, up to the batch size, and asks the queue
//! for that many messages: a message is never received that cannot start at once, so no
//! received message waits while its visibility clock runs. Each message runs in its own
//! task, which owns the message's fate: delete, retry, heartbeat, release.

pub(crate) mod capacity;
mod dispatch;
pub(crate) mod metrics;
mod poller;
mod report;
pub(crate) mod settle;
pub(crate) mod stats;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::backend::{Backend, MAX_VISIBILITY, QueueAttributes};
use crate::config::{Resolved, WorkerConfig};
use crate::engine::capacity::Capacity;
use crate::engine::metrics::WorkerMetrics;
use crate::engine::settle::Settler;
use crate::engine::stats::Counters;
use crate::health::WorkerHealth;

pub use dispatch::{Dispatch, PerBatch, PerMessage};
pub(crate) use poller::poll;
pub(crate) use report::{emf_record, report};

/// How far under the 12 h visibility cap (counted from the receive) heartbeats and
/// retries stay, so a call in flight never crosses it.
const CAP_MARGIN: Duration = Duration::from_secs(60);

/// What every task of one worker shares.
#[derive(Debug)]
pub struct Shared<H> {
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) handler: H,
    pub(crate) config: WorkerConfig,
    pub(crate) resolved: Resolved,
    /// Whether the queue is a FIFO queue (continuations keep their message's group).
    pub(crate) fifo: bool,
    pub(crate) counters: Arc<Counters>,
    pub(crate) settler: Arc<Settler>,
    /// The bound on handlers in flight.
    pub(crate) capacity: Capacity,
    /// Held by the poller gathering slots for its next receive.
    pub(crate) poller_turn: tokio::sync::Mutex<()>,
    /// Cancelled when shutdown begins: pollers stop, releasing what a receive under way
    /// returns.
    pub(crate) stop_receiving: CancellationToken,
    /// What handlers see of shutdown, through their [`Context`](crate::Context).
    pub(crate) shutdown: Arc<ShutdownState>,
    pub(crate) metrics: WorkerMetrics,
    pub(crate) health: Option<WorkerHealth>,
    /// The backlog sampler's last sample, for the EMF lines.
    pub(crate) last_backlog: std::sync::Mutex<Option<(QueueAttributes, Option<u64>)>>,
}

/// The shutdown state handlers can observe.
#[derive(Debug, Default)]
pub(crate) struct ShutdownState {
    /// Cancelled when shutdown begins.
    pub(crate) stopping: CancellationToken,
    /// Cancelled at the shutdown deadline: running handlers are dropped and their
    /// messages released.
    pub(crate) cancel_handlers: CancellationToken,
    /// Set when shutdown begins.
    pub(crate) deadline: OnceLock<Instant>,
}

impl<H> Shared<H> {
    /// How long a message received at `received_at` may still be kept invisible from
    /// `now`: under the 12 h cap, and not past the shutdown deadline once there is one.
    pub(crate) fn visibility_room(&self, received_at: Instant, now: Instant) -> Duration {
        let cap = (received_at + MAX_VISIBILITY - CAP_MARGIN).saturating_duration_since(now);
        match self.shutdown.deadline.get() {
            Some(deadline) => cap.min(deadline.saturating_duration_since(now)),
            None => cap,
        }
    }
}
