//! How a receive's messages are handed to the handler: [`Dispatch`], one task per
//! message ([`PerMessage`]; a FIFO group's messages in one task, through
//! [`group`](super::group)) or one per receive ([`PerBatch`]).

use std::future::{Future, poll_fn};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use futures_util::FutureExt;
use futures_util::future::ready;
use tokio::time::Instant;

use crate::engine::Shared;
use crate::engine::capacity::Slot;
use crate::engine::group;
use crate::engine::task::*;
use crate::error::HandlerError;
use crate::telemetry::stats::Counters;

use crate::api::batch::{BatchHandler, BatchOutcome};
use crate::api::handler::{Handler, Outcome};
use crate::api::message::Message;
/// How the handlers of a worker are called: [`PerMessage`] or [`PerBatch`]. The
/// engine's pollers hand every receive to it; it spawns the tasks that own the messages.
pub trait Dispatch: Send + Sync + Sized + 'static {
    /// Starts handling the messages of one receive, which the poller took a slot of the
    /// capacity for each; returns how many of those slots the tasks keep (the poller
    /// gives back the rest). Every message counts as held until it is settled.
    #[doc(hidden)]
    fn dispatch(shared: &Arc<Shared<Self>>, messages: Vec<Message>, slots: usize) -> usize;

    /// Whether the messages of one group run one after another in one task (a FIFO
    /// queue's per-message handlers): then a receive asks for a whole batch on one slot,
    /// since one group's messages need one handler.
    #[doc(hidden)]
    fn serial_groups(fifo: bool) -> bool {
        let _ = fifo;
        false
    }

    /// Resolves once the handler can take more messages; pollers wait for it before
    /// they take slots.
    #[doc(hidden)]
    fn ready(&self) -> impl Future<Output = ()> + Send + '_;
}

impl<H: Handler> Dispatch for PerMessage<H> {
    fn dispatch(shared: &Arc<Shared<Self>>, messages: Vec<Message>, slots: usize) -> usize {
        shared.capacity.hand_to_messages(messages.len());
        if shared.fifo {
            return group::dispatch(shared, messages, slots);
        }
        let slots = messages.len().min(slots);
        for message in messages {
            let delivery = Delivery::of(shared, &message);
            // Started here, so the task holds the message once, inside the handler's
            // future. A call that panics before any future exists fails its message
            // through a task of another type, so the common one has no room for an
            // outcome: a task's state is copied at every spawn, and an outcome is large.
            match call(|| shared.handler.0.handle(message)) {
                Ok(handler) => {
                    let handler = AssertUnwindSafe(handler).catch_unwind();
                    tokio::spawn(process(Arc::clone(shared), Some(delivery), handler));
                }
                Err(error) => {
                    let failed = ready(Ok(Outcome::Fail(error)));
                    tokio::spawn(process(Arc::clone(shared), Some(delivery), failed));
                }
            }
        }
        slots
    }

    fn serial_groups(fifo: bool) -> bool {
        fifo
    }

    fn ready(&self) -> impl Future<Output = ()> + Send + '_ {
        self.0.ready()
    }
}

impl<B: BatchHandler> Dispatch for PerBatch<B> {
    fn dispatch(shared: &Arc<Shared<Self>>, messages: Vec<Message>, slots: usize) -> usize {
        let slots = messages.len().min(slots);
        shared.capacity.hand_to_messages(slots);
        if slots > 0 {
            tokio::spawn(process_batch(Arc::clone(shared), messages));
        }
        slots
    }

    fn ready(&self) -> impl Future<Output = ()> + Send + '_ {
        self.0.ready()
    }
}

/// Runs the handler for one message and settles the message. The message's slot goes
/// back once the message is settled (handed to the settler), so shutdown, waiting for
/// every slot, knows no message is left unsettled.
// An async block rather than an async fn: its captures are the task's state as they
// are, where an async fn's arguments would be stored twice (and copied at every spawn).
#[allow(clippy::manual_async_fn)]
fn process<H: Send + Sync>(
    shared: Arc<Shared<H>>,
    mut delivery: Option<Delivery>,
    handler: impl Future<Output = std::thread::Result<Outcome>>,
) -> impl Future<Output = ()> {
    async move {
        let _slot = Slot(&shared.capacity);
        tokio::pin!(handler);
        // A handler that finishes on its first poll is settled inside that poll: it never
        // touches a timer, and its outcome never takes room in the task. The others move on
        // to `supervise`, whose timers live in a box of their own.
        let first = poll_fn(|cx| {
            Poll::Ready(match handler.as_mut().poll(cx) {
                Poll::Ready(result) => match delivery.take() {
                    Some(delivery) => {
                        First::Finished(finish(&shared, delivery, Ending::Returned(result)))
                    }
                    None => First::Finished(Settled::Now(Verdict::Released)),
                },
                Poll::Pending => First::Running,
            })
        })
        .await;
        let settled = match first {
            First::Finished(settled) => settled,
            First::Running => {
                // Built in its own statement, so the delivery moved into the box takes no
                // room in this task while the box runs.
                let Some(rest) = delivery
                    .take()
                    .map(|delivery| Box::pin(supervised(&shared, handler, delivery)))
                else {
                    return;
                };
                rest.await
            }
        };
        if let Settled::Later(handing_on) = settled {
            handing_on.await;
        }
    }
}

/// The rest of a message task whose handler did not finish on its first poll: the
/// handler runs supervised (heartbeats, timeout, cancellation), then its message is
/// settled. Boxed by the caller, so its timers and state take no room in the tasks of
/// handlers that finish at once.
async fn supervised<'a, H: Send + Sync, F: Future<Output = std::thread::Result<Outcome>>>(
    shared: &'a Shared<H>,
    handler: Pin<&mut F>,
    delivery: Delivery,
) -> Settled<'a> {
    let mut clock = Clock::new(shared, delivery.received_at);
    let ending = supervise(shared, handler, std::slice::from_ref(&delivery), &mut clock).await;
    finish(shared, delivery, ending)
}

/// Runs a batch handler for the messages of one receive and settles each message by
/// the batch's outcome. Each message's slot goes back as that message is settled.
async fn process_batch<B: BatchHandler>(shared: Arc<Shared<PerBatch<B>>>, messages: Vec<Message>) {
    let slots: Vec<_> = messages.iter().map(|_| Slot(&shared.capacity)).collect();
    let deliveries: Vec<_> = messages
        .iter()
        .map(|message| Delivery::of(&shared, message))
        .collect();
    let handler = start(|| shared.handler.0.handle(messages), BatchOutcome::Fail);
    let handler = AssertUnwindSafe(handler).catch_unwind();
    tokio::pin!(handler);
    let received_at = deliveries.first().map(|delivery| delivery.received_at);
    let mut clock = Clock::new(&shared, received_at.unwrap_or_else(Instant::now));
    let outcome = match supervise(&shared, handler, &deliveries, &mut clock).await {
        Ending::Returned(result) => {
            for delivery in &deliveries {
                record_duration(&shared, delivery);
            }
            result.unwrap_or_else(|panic| {
                BatchOutcome::Fail(HandlerError::Panicked(panic_message(&*panic)))
            })
        }
        Ending::TimedOut(timeout) => BatchOutcome::Fail(HandlerError::TimedOut(timeout)),
        Ending::Cancelled => {
            for delivery in deliveries {
                release(&shared, delivery);
            }
            return;
        }
    };
    let outcome = outcome.within(|id| deliveries.iter().any(|delivery| delivery.message_id == id));
    let mut failures = match outcome {
        BatchOutcome::Ack => Vec::new(),
        BatchOutcome::Partial(failures) => failures,
        BatchOutcome::Fail(error) => {
            tracing::warn!(messages = deliveries.len(), kind = error.kind(), %error, "batch failed");
            for (delivery, slot) in deliveries.into_iter().zip(slots) {
                fail(&shared, delivery, &error, false);
                drop(slot);
            }
            return;
        }
    };
    // On a FIFO queue a failed item holds back the items of its group that follow it in
    // the batch: they go back to the queue (released, not deleted), so the group starts
    // again from the failed one.
    let mut held_back: Vec<Option<String>> = Vec::new();
    for (delivery, slot) in deliveries.into_iter().zip(slots) {
        let failure = failures
            .iter()
            .position(|failure| failure.message_id == delivery.message_id)
            .map(|index| failures.swap_remove(index));
        if let Some(failure) = failure {
            if shared.fifo {
                held_back.push(delivery.group_id.clone());
            }
            fail(&shared, delivery, &failure.error, true);
        } else if held_back.contains(&delivery.group_id) {
            release(&shared, delivery);
        } else {
            Counters::add(&shared.counters.succeeded, 1);
            delete(&shared, delivery);
        }
        drop(slot);
    }
}
