//! The receive loop.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use tokio::time::{Instant, sleep, timeout_at};

use crate::api::message::Message;
use crate::backend::{ReceiveAttemptId, ReceiveRequest, ReceivedMessage};
use crate::backoff::{Backoff, CALL_RETRY};
use crate::engine::settle::ChangeKind;
use crate::engine::{Dispatch, Shared};
use crate::error::BackendError;
use crate::telemetry::stats::Counters;

/// Receives failed in a row after which the worker reports itself not ready (its queue
/// cannot be reached) until one succeeds.
const UNREACHABLE_AFTER: u32 = 3;

/// Backoff between receives that came back empty at once (short polls, or a backend that
/// does not long-poll), so an idle queue is not polled in a busy loop.
const IDLE: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
/// An empty receive faster than this did not wait: back off before the next.
const EMPTY_TOO_FAST: Duration = Duration::from_millis(50);

/// Takes the slots for one receive once the handler is ready: one (waiting while all are
/// in use), then every free one up to the batch size. When that falls short because
/// handlers hold the rest, it waits up to `flush_interval` for more to come back: under
/// load, receives stay full batches instead of splintering into one-message calls.
/// Pollers take turns, so returning slots fill one poller's batch rather than trickling
/// to all of them. With serial groups (FIFO) a receive needs a slot per group, not per
/// message: one slot is enough and none is waited for beyond it, while the messages held
/// stay below one batch per slot; a poller that finds that at once does not wait for its
/// turn ([`group_slots_now`]). Returns `None` when receiving stops.
async fn take_slots<H: Dispatch>(shared: &Shared<H>, serial_groups: bool) -> Option<usize> {
    let batch = shared.config.batch_size.min(shared.config.concurrency);
    if serial_groups && let Some(taken) = group_slots_now(shared, batch) {
        return Some(taken);
    }
    let _turn = tokio::select! {
        biased;
        () = shared.shutdown.stopping() => return None,
        turn = shared.poller_turn.lock() => turn,
    };
    // A handler that is not ready (a layer's rate limit, say) holds receiving back here,
    // before any slot is taken.
    tokio::select! {
        biased;
        () = shared.shutdown.stopping() => return None,
        () = shared.handler.ready() => {}
    }
    if serial_groups {
        return tokio::select! {
            biased;
            () = shared.shutdown.stopping() => None,
            taken = async {
                shared.capacity.in_tasks_at_most(group_room(shared)).await;
                shared.capacity.take(batch).await
            } => Some(taken),
        };
    }
    gather(shared, batch).await
}

/// With serial groups: the free slots up to `batch`, taken without waiting when the
/// handler is ready, at least one slot is free and the messages held leave room for a
/// batch; `None` when any of that would need waiting, or receiving stops.
///
/// Turns order the pollers that wait; one that need not wait skips its turn. A FIFO
/// receive spawns one task per group where a standard one spawns one per message, so
/// the pollers are most of the work, and handing the turn from poller to poller on every
/// receive kept them waking each other on one thread while the others parked.
fn group_slots_now<H: Dispatch>(shared: &Shared<H>, batch: usize) -> Option<usize> {
    if shared.shutdown.deadlines().is_some()
        || shared.capacity.messages_in_tasks() > group_room(shared)
    {
        return None;
    }
    shared.handler.ready().now_or_never()?;
    let taken = shared.capacity.try_take(batch);
    (taken > 0).then_some(taken)
}

/// With serial groups: the messages held below which a poller may receive a batch, so
/// that what is held stays within one batch per slot.
fn group_room<H>(shared: &Shared<H>) -> usize {
    (shared.config.concurrency - 1) * shared.config.batch_size
}

async fn gather<H>(shared: &Shared<H>, batch: usize) -> Option<usize> {
    let capacity = &shared.capacity;
    let mut taken = tokio::select! {
        biased;
        () = shared.shutdown.stopping() => return None,
        taken = capacity.take(batch) => taken,
    };
    let deadline = Instant::now() + shared.config.flush_interval;
    while taken < batch {
        tokio::select! {
            biased;
            () = shared.shutdown.stopping() => {
                capacity.give_back(taken);
                return None;
            }
            more = timeout_at(deadline, capacity.take(batch - taken)) => match more {
                Ok(more) => taken += more,
                Err(_elapsed) => break,
            },
        }
    }
    Some(taken)
}

/// Receives messages while slots are free, until receiving stops.
pub(crate) async fn poll<H: Dispatch>(shared: Arc<Shared<H>>) {
    let mut errors = 0;
    let mut idle = 0;
    // The attempt id of a receive to send again (FIFO queues).
    let mut retry: Option<ReceiveAttemptId> = None;
    let beat = shared.health.as_ref().map(|health| health.poller());
    let serial_groups = H::serial_groups(shared.fifo);
    loop {
        // Waiting for free slots is waiting for handlers, not being stuck.
        beat.iter().for_each(|beat| beat.waiting());
        let Some(slots) = take_slots(&shared, serial_groups).await else {
            return;
        };
        // Serial groups: a whole batch, whatever the slots (a group needs one).
        let asked = if serial_groups {
            shared.config.batch_size
        } else {
            slots
        };
        beat.iter().for_each(|beat| beat.busy());
        let request = ReceiveRequest {
            max_messages: asked,
            wait_time: shared.config.wait_time,
            visibility_timeout: shared.config.visibility_timeout,
            attempt_id: shared
                .fifo
                .then(|| retry.take().unwrap_or_else(ReceiveAttemptId::random)),
        };
        let started = Instant::now();
        let receive = shared.backend.receive(request);
        tokio::pin!(receive);
        let received = tokio::select! {
            biased;
            () = shared.shutdown.stopping() => {
                finish_receive(&shared, receive.as_mut(), started).await;
                shared.capacity.give_back(slots);
                return;
            }
            received = &mut receive => received,
        };
        let pause = match received {
            Ok(messages) => {
                errors = 0;
                if let Some(health) = &shared.health {
                    health.receiving();
                }
                shared.completion.received(
                    messages.len(),
                    || shared.holds_nothing(),
                    &shared.shutdown,
                );
                let now = Instant::now();
                if messages.is_empty() && now - started < EMPTY_TOO_FAST {
                    idle += 1;
                    shared.capacity.give_back(slots);
                    Some(IDLE.delay(idle))
                } else {
                    idle = 0;
                    hand_out(&shared, messages, asked, slots, now);
                    None
                }
            }
            Err(error) => {
                errors += 1;
                retry = retry_after(&request, &error);
                Counters::add(&shared.counters.receive_errors, 1);
                let delay = CALL_RETRY.delay(errors);
                tracing::warn!(%error, retry_in = ?delay, "receive failed");
                shared.completion.receive_failed(&error, &shared.shutdown);
                if errors >= UNREACHABLE_AFTER
                    && let Some(health) = &shared.health
                {
                    health.unreachable();
                }
                shared.capacity.give_back(slots);
                Some(delay)
            }
        };
        beat.iter().for_each(|beat| beat.busy());
        if let Some(delay) = pause {
            tokio::select! {
                () = shared.shutdown.stopping() => return,
                () = sleep(delay) => {}
            }
        }
    }
}

/// A receive under way when shutdown began may already hold messages: SQS hands them to
/// a request before its response arrives, and to one its client abandons. So it is let
/// finish (as the shutdown contract allows, until its limit) and what it returns is
/// handed back unstarted.
async fn finish_receive<H>(
    shared: &Shared<H>,
    receive: Pin<&mut impl Future<Output = Result<Vec<ReceivedMessage>, BackendError>>>,
    started: Instant,
) {
    if !shared.backend.receive_cancel_safe() {
        let limit = shared.shutdown.deadlines().map_or(started, |deadlines| {
            deadlines.receive_limit(started, shared.config.wait_time)
        });
        match timeout_at(limit, receive).await {
            Ok(Ok(messages)) => {
                if !messages.is_empty() {
                    tracing::info!(
                        messages = messages.len(),
                        "shutdown: releasing messages a receive returned as it stopped"
                    );
                }
                release_unstarted(shared, messages);
            }
            Ok(Err(error)) => tracing::debug!(%error, "the last receive failed"),
            Err(_elapsed) => tracing::warn!(
                "shutdown: a receive did not return by the deadline; messages it \
                     may hold stay invisible until their visibility timeout"
            ),
        }
    }
}

/// Hands the messages of a receive to their tasks: the extras of a retried receive go
/// back at once, the rest are dispatched, and the slots they do not keep go back.
fn hand_out<H: Dispatch>(
    shared: &Arc<Shared<H>>,
    mut messages: Vec<ReceivedMessage>,
    asked: usize,
    slots: usize,
    now: Instant,
) {
    if messages.len() > asked {
        // A retried receive (same attempt id) is answered with the whole
        // earlier set, which may be more than the slots free now: the
        // extras go back at once rather than wait out their visibility.
        let extra = messages.split_off(asked);
        tracing::info!(
            asked,
            got = asked + extra.len(),
            "a receive returned more messages than asked for; releasing the extras"
        );
        release_unstarted(shared, extra);
    }
    Counters::add(&shared.counters.received, messages.len() as u64);
    // The message tasks own the slots they keep from here and hand them
    // back; the slots left over go back now.
    let messages = messages
        .into_iter()
        .map(|message| Message::new(message, Arc::clone(&shared.shutdown), now))
        .collect();
    let kept = H::dispatch(shared, messages, slots);
    shared.capacity.give_back(slots - kept);
}

/// The attempt id of the receive after one that failed with `error`, if it is to be
/// the same (FIFO queues; after a success, each receive gets a fresh one).
///
/// The same after a failure that may have come after the queue took messages (a
/// network failure, a timeout, a server error: [`BackendError::Transient`]): SQS then
/// answers with the messages the lost answer held instead of keeping them invisible
/// until their visibility timeout. A fresh one after throttling or a rejection, which
/// the queue answers without taking any. The retry may have fewer free slots than the
/// lost attempt asked for; it still keeps the id, since the messages the lost attempt
/// took come back with no other id.
fn retry_after(request: &ReceiveRequest, error: &BackendError) -> Option<ReceiveAttemptId> {
    match error {
        BackendError::Transient { .. } => request.attempt_id,
        BackendError::Throttled { .. } | BackendError::Rejected { .. } => None,
    }
}

/// Hands messages no handler will start on (received as shutdown began, or beyond the
/// slots a receive asked for) back to the queue at once.
fn release_unstarted<H>(shared: &Shared<H>, messages: Vec<ReceivedMessage>) {
    Counters::add(&shared.counters.received, messages.len() as u64);
    Counters::add(&shared.counters.released, messages.len() as u64);
    for message in messages {
        shared
            .settler
            .change(message.receipt_handle, Duration::ZERO, ChangeKind::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(attempt_id: Option<ReceiveAttemptId>) -> ReceiveRequest {
        ReceiveRequest {
            max_messages: 10,
            wait_time: Duration::from_secs(20),
            visibility_timeout: None,
            attempt_id,
        }
    }

    fn transient() -> BackendError {
        BackendError::Transient {
            operation: "ReceiveMessage",
            message: "connection reset".to_owned(),
            source: None,
        }
    }

    #[test]
    fn a_receive_lost_to_the_network_is_retried_with_its_attempt_id() {
        let sent = ReceiveAttemptId::random();
        assert_eq!(retry_after(&request(Some(sent)), &transient()), Some(sent));
        // A standard queue's receive has no attempt id to keep.
        assert_eq!(retry_after(&request(None), &transient()), None);
    }

    #[test]
    fn throttling_and_rejection_start_a_fresh_attempt() {
        let sent = Some(ReceiveAttemptId::random());
        let throttled = BackendError::Throttled {
            operation: "ReceiveMessage",
            message: "Rate exceeded".to_owned(),
        };
        let rejected = BackendError::Rejected {
            operation: "ReceiveMessage",
            code: "AccessDenied".to_owned(),
            message: "denied".to_owned(),
        };
        for error in [throttled, rejected] {
            assert_eq!(retry_after(&request(sent), &error), None, "{error}");
        }
    }
}
