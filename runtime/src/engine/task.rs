//! One message's task: run the handler, keep the message invisible while it runs, and
//! settle it by the outcome. [`dispatch`](super::dispatch) starts the tasks of a
//! receive; [`group`](super::group) runs a FIFO group's messages in one task.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::time::Duration;

use futures_util::future::{Either, Ready, ready};
use tokio::time::{Instant, sleep_until};

use crate::backend::fifo::continuation_deduplication_id;
use crate::backend::{Backend, ReceiptHandle, SendMessage};
use crate::backoff::{CALL_RETRY, retry};
use crate::config::RetryPolicy;
use crate::contract::retry_room;
use crate::engine::Shared;
use crate::engine::settle::ChangeKind;
use crate::error::{BackendError, HandlerError};
use crate::telemetry::stats::Counters;

use crate::api::handler::Outcome;
use crate::api::message::Message;
/// Calls a [`Handler`](crate::handler::Handler) once per message, each message in its own task.
#[derive(Debug)]
pub struct PerMessage<H>(pub H);

/// Calls a [`BatchHandler`](crate::handler::BatchHandler) once per receive, with all its messages, in one task.
#[derive(Debug)]
pub struct PerBatch<B>(pub B);

/// Attempts at sending a continuation before the message counts as failed.
const SEND_ATTEMPTS: u32 = 5;

/// How a handler's run ended.
pub(super) enum Ending<T> {
    Returned(T),
    /// The shutdown deadline passed while the handler ran.
    Cancelled,
    /// The handler ran past its timeout.
    TimedOut(Duration),
}

/// What settling one message needs once its handler has taken the message.
pub(super) struct Delivery {
    receipt: ReceiptHandle,
    pub(super) message_id: String,
    receive_count: u32,
    pub(super) received_at: Instant,
    /// The message group, on FIFO queues: a continuation keeps it.
    pub(super) group_id: Option<String>,
    /// More messages of its FIFO group wait behind it in this worker: they run only once
    /// its delete is applied.
    pub(super) followed: bool,
}

impl Delivery {
    pub(super) fn of<H>(shared: &Shared<H>, message: &Message) -> Self {
        let context = message.context();
        Self {
            receipt: message.receipt_handle().clone(),
            message_id: context.message_id().to_owned(),
            receive_count: context.receive_count(),
            received_at: context.received_at(),
            group_id: shared
                .fifo
                .then(|| context.attributes().get("MessageGroupId").cloned())
                .flatten(),
            followed: false,
        }
    }
}

/// Calls a handler for its future. A panic in the call itself (before any future
/// exists) fails the message like a panic while it runs, instead of unwinding through
/// the poller.
pub(super) fn call<F>(call: impl FnOnce() -> F) -> Result<F, HandlerError> {
    std::panic::catch_unwind(AssertUnwindSafe(call))
        .map_err(|panic| HandlerError::Panicked(panic_message(&*panic)))
}

/// [`call`], with a call that panicked standing for a future that fails at once.
pub(super) fn start<F: Future>(
    handle: impl FnOnce() -> F,
    failed: impl FnOnce(HandlerError) -> F::Output,
) -> Either<F, Ready<F::Output>> {
    match call(handle) {
        Ok(future) => Either::Left(future),
        Err(error) => Either::Right(ready(failed(error))),
    }
}

/// How settling a message came out: what the messages of its group behind it (on a
/// FIFO queue) must do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Deleted (or handed on): the next message of the group may run.
    Done,
    /// Failed or put back for a retry: the rest of the group must wait for it.
    Failed,
    /// Released at shutdown: the rest of the group goes back too.
    Released,
}

/// A message's settling: done now, or a continuation still to send before its message
/// is deleted (boxed, so the send's state stays out of every message task).
pub(super) enum Settled<'a> {
    Now(Verdict),
    Later(Pin<Box<dyn Future<Output = Verdict> + Send + 'a>>),
}

/// What the first poll of a handler came to.
pub(super) enum First<'a> {
    Finished(Settled<'a>),
    Running,
}

/// When a handler started and when its messages' next heartbeat is due; a FIFO group's
/// messages share one, so a group's heartbeats keep their interval from one message to
/// the next.
pub(super) struct Clock {
    /// When the running handler (or continuation send) started, for its timeout; `None`
    /// while nothing runs (a FIFO group waiting for a slot): a wait is not handler time.
    pub(super) started: Option<Instant>,
    next_beat: Instant,
}

impl Clock {
    pub(super) fn new<H>(shared: &Shared<H>, received_at: Instant) -> Self {
        Self {
            started: Some(received_at),
            next_beat: shared
                .resolved
                .heartbeat
                .map_or_else(|| far(received_at), |interval| received_at + interval),
        }
    }
}

/// An instant no timer reaches.
fn far(from: Instant) -> Instant {
    from + Duration::from_secs(86_400 * 365)
}

/// Settles a message whose handler's run ended.
pub(super) fn finish<H: Send + Sync>(
    shared: &Shared<H>,
    delivery: Delivery,
    ending: Ending<std::thread::Result<Outcome>>,
) -> Settled<'_> {
    let outcome = match ending {
        Ending::Returned(result) => {
            record_duration(shared, &delivery);
            outcome_of(result)
        }
        Ending::Cancelled => {
            release(shared, delivery);
            return Settled::Now(Verdict::Released);
        }
        Ending::TimedOut(timeout) => Outcome::Fail(HandlerError::TimedOut(timeout)),
    };
    settle(shared, delivery, outcome)
}

pub(super) fn record_duration<H>(shared: &Shared<H>, delivery: &Delivery) {
    shared
        .metrics
        .handler_duration
        .record(delivery.received_at.elapsed());
}

/// Hands a message whose handler was cancelled at the shutdown deadline back to the
/// queue at once (or after a little jitter), so another task takes it.
pub(super) fn release<H>(shared: &Shared<H>, delivery: Delivery) {
    Counters::add(&shared.counters.released, 1);
    let delay = jittered(shared.config.release_jitter);
    shared
        .settler
        .change(delivery.receipt, delay, ChangeKind::Release);
}

/// Settles one message by its handler's outcome. A continuation must be sent before
/// its message is deleted: that is left to do, boxed.
fn settle<H: Send + Sync>(shared: &Shared<H>, delivery: Delivery, outcome: Outcome) -> Settled<'_> {
    let counters = &shared.counters;
    match outcome {
        Outcome::Ack => {
            Counters::add(&counters.succeeded, 1);
            if delivery.followed {
                return Settled::Later(Box::pin(delete_in_order(shared, delivery)));
            }
            delete(shared, delivery);
            return Settled::Now(Verdict::Done);
        }
        Outcome::RetryAfter(delay) => {
            Counters::add(&counters.retried, 1);
            // Not cut to the shutdown deadline: the queue keeps the timer after the
            // worker exits, and a message back early burns a receive.
            let room = retry_room(delivery.received_at, Instant::now());
            shared
                .settler
                .change(delivery.receipt, delay.min(room), ChangeKind::Retry);
        }
        Outcome::Continue(next) => {
            return Settled::Later(Box::pin(hand_on(shared, delivery, next)));
        }
        Outcome::Fail(error) => fail(shared, delivery, &error, true),
    }
    Settled::Now(Verdict::Failed)
}

/// Sends a message's continuation, then deletes the message; if the send fails (or
/// outlasts the handler timeout), the message itself counts as failed and comes back.
/// While the send runs, the message is heartbeated as while its handler ran. A send
/// still under way when running
/// handlers are given up at shutdown is abandoned and the message released: it comes
/// back at once (its continuation may have been sent too: at least once, except on a
/// FIFO queue within its 5-minute deduplication window).
async fn hand_on<H>(shared: &Shared<H>, delivery: Delivery, mut next: SendMessage) -> Verdict {
    if next.group_id.is_none() {
        next.group_id = delivery.group_id.clone();
    }
    // Always named, content-based deduplication or not: an explicit id overrides the
    // body's hash, so a continuation whose body equals an earlier message's (a job that
    // checkpoints before progressing) is not dropped as that message's duplicate while
    // its message is deleted.
    if shared.fifo && next.deduplication_id.is_none() {
        next.deduplication_id = Some(continuation_deduplication_id(&delivery.message_id));
    }
    // Supervised like a handler: heartbeated (a slow send must not let the message lapse
    // and another consumer hand it on too), bounded by the handler timeout counted from
    // the send's start, and given up at the shutdown deadline.
    let sending = send(&*shared.backend, next);
    tokio::pin!(sending);
    let mut clock = Clock::new(shared, delivery.received_at);
    clock.started = Some(Instant::now());
    let sent = match supervise(shared, sending, std::slice::from_ref(&delivery), &mut clock).await {
        Ending::Returned(sent) => sent,
        Ending::TimedOut(timeout) => {
            fail(shared, delivery, &HandlerError::TimedOut(timeout), true);
            return Verdict::Failed;
        }
        Ending::Cancelled => {
            tracing::warn!(
                message_id = %delivery.message_id,
                "shutdown: a continuation was still being sent; releasing its message"
            );
            release(shared, delivery);
            return Verdict::Released;
        }
    };
    match sent {
        Ok(continuation_id) => {
            Counters::add(&shared.counters.continued, 1);
            tracing::debug!(message_id = %delivery.message_id, %continuation_id, "handed on");
            if delivery.followed {
                return delete_in_order(shared, delivery).await;
            }
            delete(shared, delivery);
            Verdict::Done
        }
        Err(error) => {
            fail(shared, delivery, &HandlerError::failed(error), true);
            Verdict::Failed
        }
    }
}

/// Deletes a message whose handler succeeded. One whose visibility lapsed while its
/// handler ran (heartbeats off) may be another consumer's by now: its delete counts as a
/// stale receipt, not as a delete, even where the queue accepts it.
pub(super) fn delete<H>(shared: &Shared<H>, delivery: Delivery) {
    let lapsed = shared.resolved.heartbeat.is_none()
        && delivery.received_at.elapsed() >= shared.resolved.visibility;
    if lapsed {
        shared.settler.delete_lapsed(delivery.receipt);
    } else {
        shared.settler.delete(delivery.receipt);
    }
}

/// Deletes a FIFO group's message that others of its group follow in this worker, and
/// waits until the delete is applied: the next must not run before, or a delete given up
/// would let the queue hand this one out again after it (the handler would see M1, M2,
/// M1). A delete that cannot be confirmed fails the group's turn: its later messages go
/// back, in order. (The group's last message here needs no wait: until its delete is
/// applied, the queue hands out nothing more of its group.)
async fn delete_in_order<H>(shared: &Shared<H>, delivery: Delivery) -> Verdict {
    match shared.settler.delete_confirmed(delivery.receipt).await {
        Ok(true) => Verdict::Done,
        _ => {
            tracing::warn!(
                message_id = %delivery.message_id,
                group = delivery.group_id.as_deref().unwrap_or_default(),
                "delete not applied; the rest of its FIFO group goes back, in order"
            );
            Verdict::Failed
        }
    }
}

/// A failure of one message (of its handler, its batch, or sending its continuation):
/// counted, logged when `log` (a failed batch logs once for all its messages), and
/// retried per the retry policy.
pub(super) fn fail<H>(shared: &Shared<H>, delivery: Delivery, error: &HandlerError, log: bool) {
    let counters = &shared.counters;
    Counters::add(&counters.failed, 1);
    if log {
        tracing::warn!(
            message_id = %delivery.message_id,
            receive_count = delivery.receive_count,
            kind = error.kind(),
            %error,
            "handler failed"
        );
    }
    if let RetryPolicy::Backoff(backoff) = shared.config.retry {
        Counters::add(&counters.retried, 1);
        let delay = backoff
            .delay(delivery.receive_count)
            .min(retry_room(delivery.received_at, Instant::now()));
        shared
            .settler
            .change(delivery.receipt, delay, ChangeKind::Retry);
    }
}

/// Sends a continuation, retrying what may succeed later.
async fn send(backend: &dyn Backend, message: SendMessage) -> Result<String, BackendError> {
    retry(
        CALL_RETRY,
        SEND_ATTEMPTS,
        BackendError::is_retryable,
        || backend.send(message.clone()),
    )
    .await
}

/// A uniform pick in `[0, max]`; zero when `max` is zero.
fn jittered(max: Duration) -> Duration {
    if max.is_zero() {
        return Duration::ZERO;
    }
    let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(fastrand::u64(0..=nanos))
}

/// Runs a handler to its end, the handler timeout (from `clock.started`) or the shutdown
/// deadline, whichever comes first, extending the visibility of `deliveries` (its
/// messages, and on a FIFO queue the messages of its group waiting behind it) on every
/// heartbeat.
pub(super) async fn supervise<H, F, T>(
    shared: &Shared<H>,
    mut handler: Pin<&mut F>,
    deliveries: &[Delivery],
    clock: &mut Clock,
) -> Ending<T>
where
    F: Future<Output = T>,
{
    let Some(received_at) = deliveries.first().map(|delivery| delivery.received_at) else {
        return Ending::Returned(handler.await);
    };
    let heartbeat = shared.resolved.heartbeat;
    let timeout = shared.config.handler_timeout;
    let timed_out = sleep_until(match (timeout, clock.started) {
        (Some(timeout), Some(started)) => started + timeout,
        _ => far(Instant::now()),
    });
    tokio::pin!(timed_out);
    let next_beat = sleep_until(clock.next_beat);
    tokio::pin!(next_beat);

    loop {
        tokio::select! {
            biased;
            result = handler.as_mut() => return Ending::Returned(result),
            () = shared.shutdown.cancelled() => return Ending::Cancelled,
            () = &mut timed_out => return Ending::TimedOut(timeout.unwrap_or_default()),
            () = &mut next_beat => {
                let now = Instant::now();
                let room = shared.shutdown.heartbeat_room(received_at, now);
                let extension = shared.resolved.visibility.min(room);
                clock.next_beat = if extension.is_zero() {
                    // At the cap (or the shutdown deadline): nothing more to extend.
                    far(now)
                } else {
                    for delivery in deliveries {
                        shared.settler.change(
                            delivery.receipt.clone(),
                            extension,
                            ChangeKind::Heartbeat,
                        );
                    }
                    now + heartbeat.unwrap_or(extension)
                };
                next_beat.as_mut().reset(clock.next_beat);
            }
        }
    }
}

fn outcome_of(result: std::thread::Result<Outcome>) -> Outcome {
    result.unwrap_or_else(|panic| Outcome::Fail(HandlerError::Panicked(panic_message(&*panic))))
}

pub(super) fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(message) = panic.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = panic.downcast_ref::<String>() {
        message.clone()
    } else {
        "a panic without a message".to_owned()
    }
}
