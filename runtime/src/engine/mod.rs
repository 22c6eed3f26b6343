//! The engine: pollers that receive only what they can start, one task per message, and
//! the settler, which batches their deletes and visibility changes.
//!
//! Its public items are the machinery that appears in the types of
//! [`Worker`](crate::Worker) and [`WorkerSpec`](crate::WorkerSpec): how handlers are
//! called ([`PerMessage`], [`PerBatch`], sealed by [`Dispatch`]), how a builder's layers
//! wrap them ([`Wrap`]) and the boxed handlers of a spec. User code names them rarely
//! and implements none of them.
//!
//! Slots bound the handlers in flight. A poller first takes one slot (waiting if all
//! are in use), then as many more as are free, up to the batch size, and asks the queue
//! for that many messages: a message is never received that cannot start at once, so no
//! received message waits while its visibility clock runs. Each message runs in its own
//! task, which owns the message's fate: delete, retry, heartbeat, release.

pub(crate) mod capacity;
mod completion;
mod dispatch;
#[cfg(test)]
mod fifo_tests;
mod group;
mod lifecycle;
mod poller;
pub(crate) mod settle;
mod stop;
mod task;
mod wrap;

use std::sync::Arc;

use crate::backend::Backend;
use crate::config::{Resolved, WorkerConfig};
use crate::contract::Contract;
use crate::engine::capacity::Capacity;
use crate::engine::completion::Completion;
use crate::engine::settle::Settler;
use crate::telemetry::health::WorkerHealth;
use crate::telemetry::metrics::WorkerMetrics;
use crate::telemetry::stats::Counters;

pub use dispatch::Dispatch;
pub(crate) use lifecycle::{Engine, Setup};
pub(crate) use poller::poll;
pub use task::{PerBatch, PerMessage};
pub use wrap::Wrap;

/// What every task of one worker shares.
#[derive(Debug)]
pub struct Shared<H> {
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) handler: H,
    pub(crate) config: WorkerConfig,
    pub(crate) resolved: Resolved,
    /// Whether the queue is a FIFO queue (continuations keep their message's group;
    /// receives carry attempt ids).
    pub(crate) fifo: bool,
    pub(crate) counters: Arc<Counters>,
    pub(crate) settler: Arc<Settler>,
    /// The bound on handlers in flight.
    pub(crate) capacity: Capacity,
    /// Held by the poller gathering slots for its next receive.
    pub(crate) poller_turn: tokio::sync::Mutex<()>,
    /// Run to completion: the empty receives that end the run.
    pub(crate) completion: Completion,
    /// The shutdown contract: what pollers, message tasks and handlers (through their
    /// [`Context`](crate::Context)) ask of shutdown.
    pub(crate) shutdown: Arc<Contract>,
    pub(crate) metrics: Arc<WorkerMetrics>,
    pub(crate) health: Option<WorkerHealth>,
}

impl<H> Shared<H> {
    /// The messages this worker holds: received and not yet deleted, released or put
    /// back. Running, waiting in a FIFO group behind a running one (or for a slot), or
    /// settled by their task with the delete or visibility change not yet applied. A
    /// message put back for a retry (its visibility changed to the backoff) is no longer
    /// held: it is invisible, but nobody has it. The figure of
    /// `spotq_messages_in_flight`.
    pub(crate) fn messages_held(&self) -> usize {
        // A message counts in the capacity until its task has handed it to the settler,
        // so it is never missing from both (it may be in both for a moment).
        self.capacity
            .messages_in_tasks()
            .saturating_add(self.settler.holding())
    }

    /// Whether the worker holds no message: none handed to a task (running, waiting
    /// behind its group, sending its continuation) and no delete or visibility change
    /// unsent. A retry still unsent would make its message visible again.
    pub(crate) fn holds_nothing(&self) -> bool {
        self.capacity.messages_in_tasks() == 0 && self.settler.is_idle()
    }
}
