//! The shutdown contract's steps (see [`crate::shutdown`] for the plan and its
//! deadlines), carried out on the parts of the engine they drive.

use std::future::Future;
use std::pin::Pin;

use tokio::time::{Instant, timeout_at};
use tokio_util::task::TaskTracker;

use crate::contract::{Contract, Deadlines, RELEASE_WAIT};
use crate::engine::capacity::Capacity;
use crate::engine::settle::Settler;

/// The parts of an engine the shutdown steps drive.
#[derive(Clone, Copy)]
pub(crate) struct Parts<'a> {
    pub capacity: &'a Capacity,
    pub pollers: &'a TaskTracker,
    pub settler: &'a Settler,
}

/// Steps 1 to 5, once `shutdown` has fired (`immediate` when it asked for an
/// immediate shutdown); a later `hurry` (a second signal) cancels running handlers
/// at once. Returns when the worker may return.
pub(crate) async fn carry_out(
    contract: &Contract,
    parts: Parts<'_>,
    immediate: bool,
    hurry: Pin<&mut impl Future>,
) {
    let deadlines = contract.begin(immediate);
    let finished = !immediate && let_handlers_finish(parts, &deadlines, hurry).await;
    if !finished {
        release_running(contract, parts, &deadlines).await;
    }
    wait_for_receives(parts, &deadlines).await;
    flush(parts.settler, &deadlines).await;
}

/// Step 3: waits, until the grace deadline or a second signal, for receives in transit
/// to end and every message to be settled. Whether they all were.
async fn let_handlers_finish(
    parts: Parts<'_>,
    deadlines: &Deadlines,
    hurry: Pin<&mut impl Future>,
) -> bool {
    tracing::info!(
        in_flight = parts.capacity.messages_in_tasks(),
        grace = ?deadlines.grace - deadlines.began,
        "shutdown: receiving stopped, waiting for running handlers"
    );
    let settled = async {
        parts.pollers.wait().await;
        parts.capacity.all_returned().await;
    };
    tokio::select! {
        biased;
        _ = hurry => false,
        settled = timeout_at(deadlines.grace, settled) => settled.is_ok(),
    }
}

/// Step 4: cancels the handlers still running; each releases its message as it drops.
/// Waits for them until [`RELEASE_WAIT`] from now (and the release deadline); a handler
/// that blocks its thread cannot be dropped and is given up.
async fn release_running(contract: &Contract, parts: Parts<'_>, deadlines: &Deadlines) {
    tracing::warn!(
        in_flight = parts.capacity.messages_in_tasks(),
        "shutdown: releasing the messages of running handlers"
    );
    contract.give_up_handlers();
    let give_up = (Instant::now() + RELEASE_WAIT).min(deadlines.release());
    if timeout_at(give_up, parts.capacity.messages_settled())
        .await
        .is_err()
    {
        tracing::error!(
            stuck = parts.capacity.messages_in_tasks(),
            "shutdown: handlers did not stop; their messages stay invisible until their \
             visibility timeout"
        );
    }
}

/// Waits for the receives in transit when shutdown began (each poller bounds its own by
/// [`Deadlines::receive_limit`]), so what they return is released before the flush.
async fn wait_for_receives(parts: Parts<'_>, deadlines: &Deadlines) {
    if timeout_at(deadlines.release(), parts.pollers.wait())
        .await
        .is_err()
    {
        tracing::warn!("shutdown: a receive did not return by the release deadline");
    }
}

/// Step 5: sends every pending delete and visibility change, until the hard deadline.
async fn flush(settler: &Settler, deadlines: &Deadlines) {
    if timeout_at(deadlines.hard, settler.close()).await.is_err() {
        tracing::error!(
            "shutdown: deletes and visibility changes still failing at the stop timeout; \
             their messages will be received again"
        );
        settler.abandon();
    }
}
