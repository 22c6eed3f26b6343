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

use std::sync::Arc;

use crate::backend::{Backend, QueueAttributes};
use crate::config::{Resolved, WorkerConfig};
use crate::engine::capacity::Capacity;
use crate::engine::metrics::WorkerMetrics;
use crate::engine::settle::Settler;
use crate::engine::stats::Counters;
use crate::health::WorkerHealth;
use crate::shutdown::Contract;

pub use dispatch::{Dispatch, PerBatch, PerMessage};
pub(crate) use poller::poll;
pub(crate) use report::{emf_record, report};

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
    /// The shutdown contract: what pollers, message tasks and handlers (through their
    /// [`Context`](crate::Context)) ask of shutdown.
    pub(crate) shutdown: Arc<Contract>,
    pub(crate) metrics: WorkerMetrics,
    pub(crate) health: Option<WorkerHealth>,
    /// The backlog sampler's last sample, for the EMF lines.
    pub(crate) last_backlog: std::sync::Mutex<Option<(QueueAttributes, Option<u64>)>>,
}
