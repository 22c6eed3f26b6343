//! One message's task: run the handler, keep the message invisible while it runs, and
//! settle it by the outcome.

use std::any::Any;
use std::future::{Future, poll_fn};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use futures_util::FutureExt;
use tokio::time::{Instant, sleep_until};

use crate::backend::{Backend, ReceiptHandle, SendMessage};
use crate::backoff::CALL_RETRY;
use crate::config::RetryPolicy;
use crate::engine::Shared;
use crate::engine::capacity::Slot;
use crate::engine::settle::ChangeKind;
use crate::engine::stats::Counters;
use crate::error::{BackendError, HandlerError};

/// Attempts at sending a continuation before the message counts as failed.
const SEND_ATTEMPTS: u32 = 5;
use crate::handler::{Handler, Outcome};
use crate::message::Message;

/// How a handler's run ended.
enum Ending {
    Returned(Outcome),
    /// The shutdown deadline passed while the handler ran.
    Cancelled,
}

/// Runs the handler for one message and settles the message. The message's slot goes
/// back once the message is settled (handed to the settler), so shutdown, waiting for
/// every slot, knows no message is left unsettled.
pub(crate) async fn process<H: Handler>(shared: Arc<Shared<H>>, message: Message) {
    let _slot = Slot(&shared.capacity);
    let receipt = message.received().receipt_handle.clone();
    let receive_count = message.receive_count();
    let received_at = message.context().received_at();
    let message_id = message.id().to_owned();
    let group_id = shared
        .fifo
        .then(|| message.attributes().get("MessageGroupId").cloned())
        .flatten();
    // The handler's future is built here, not in a nested `async fn`, so the message is
    // moved once and the task stays small.
    let handler = AssertUnwindSafe(shared.handler.handle(message)).catch_unwind();
    tokio::pin!(handler);
    // A handler that finishes on its first poll never touches a timer; the others move
    // on to `supervise`, whose timers live in a box of their own.
    let ending = match poll_fn(|cx| Poll::Ready(handler.as_mut().poll(cx))).await {
        Poll::Ready(result) => Ending::Returned(outcome_of(result)),
        Poll::Pending => Box::pin(supervise(&shared, handler, &receipt, received_at)).await,
    };
    if let Ending::Returned(_) = ending {
        shared
            .metrics
            .handler_duration
            .record(received_at.elapsed());
    }

    let counters = &shared.counters;
    let outcome = match ending {
        Ending::Cancelled => {
            // Handed back at once (or after a little jitter) so another task takes it.
            Counters::add(&counters.released, 1);
            let delay = jittered(shared.config.release_jitter);
            shared.settler.change(receipt, delay, ChangeKind::Release);
            return;
        }
        Ending::Returned(outcome) => outcome,
    };
    let error = match outcome {
        Outcome::Ack => {
            Counters::add(&counters.succeeded, 1);
            shared.settler.delete(receipt);
            return;
        }
        Outcome::RetryAfter(delay) => {
            Counters::add(&counters.retried, 1);
            let delay = delay.min(shared.visibility_room(received_at, Instant::now()));
            shared.settler.change(receipt, delay, ChangeKind::Retry);
            return;
        }
        Outcome::Continue(mut next) => {
            if next.group_id.is_none() {
                next.group_id = group_id;
            }
            match send(&*shared.backend, next).await {
                Ok(continuation_id) => {
                    Counters::add(&counters.continued, 1);
                    tracing::debug!(%message_id, %continuation_id, "handed on");
                    shared.settler.delete(receipt);
                    return;
                }
                // Nothing is deleted: the message itself comes back.
                Err(error) => HandlerError::failed(error),
            }
        }
        Outcome::Fail(error) => error,
    };
    // A failure, of the handler or of sending its continuation.
    Counters::add(&counters.failed, 1);
    tracing::warn!(
        message_id = %message_id,
        receive_count,
        kind = error.kind(),
        %error,
        "handler failed"
    );
    if let RetryPolicy::Backoff(backoff) = shared.config.retry {
        Counters::add(&counters.retried, 1);
        let delay = backoff
            .delay(receive_count)
            .min(shared.visibility_room(received_at, Instant::now()));
        shared.settler.change(receipt, delay, ChangeKind::Retry);
    }
}

/// Sends a continuation, retrying what may succeed later.
async fn send(backend: &dyn Backend, message: SendMessage) -> Result<String, BackendError> {
    let mut attempt = 1;
    loop {
        match backend.send(message.clone()).await {
            Err(error) if error.is_retryable() && attempt < SEND_ATTEMPTS => {
                tracing::debug!(%error, attempt, "sending a continuation failed; retrying");
                tokio::time::sleep(CALL_RETRY.delay(attempt)).await;
                attempt += 1;
            }
            result => return result,
        }
    }
}

/// A uniform pick in `[0, max]`; zero when `max` is zero.
fn jittered(max: Duration) -> Duration {
    if max.is_zero() {
        return Duration::ZERO;
    }
    let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(fastrand::u64(0..=nanos))
}

/// Runs a handler that did not finish on its first poll to its end, the handler
/// timeout or the shutdown deadline, whichever comes first, extending the message's
/// visibility on every heartbeat.
async fn supervise<H: Handler, F>(
    shared: &Shared<H>,
    mut handler: Pin<&mut F>,
    receipt: &ReceiptHandle,
    received_at: Instant,
) -> Ending
where
    F: Future<Output = std::thread::Result<Outcome>>,
{
    let heartbeat = shared.resolved.heartbeat;
    let timeout = shared.config.handler_timeout;
    let far = received_at + Duration::from_secs(86_400 * 365);
    let timed_out = sleep_until(timeout.map_or(far, |timeout| received_at + timeout));
    tokio::pin!(timed_out);
    let next_beat = sleep_until(heartbeat.map_or(far, |interval| received_at + interval));
    tokio::pin!(next_beat);

    loop {
        tokio::select! {
            biased;
            result = handler.as_mut() => return Ending::Returned(outcome_of(result)),
            () = shared.shutdown.cancel_handlers.cancelled() => return Ending::Cancelled,
            () = &mut timed_out => {
                let timeout = timeout.unwrap_or_default();
                return Ending::Returned(Outcome::Fail(HandlerError::TimedOut(timeout)));
            }
            () = &mut next_beat => {
                let now = Instant::now();
                let room = shared.visibility_room(received_at, now);
                let extension = shared.resolved.visibility.min(room);
                if extension.is_zero() {
                    // At the cap (or the shutdown deadline): nothing more to extend.
                    next_beat.as_mut().reset(far);
                } else {
                    shared.settler.change(receipt.clone(), extension, ChangeKind::Heartbeat);
                    let interval = heartbeat.unwrap_or(extension);
                    next_beat.as_mut().reset(now + interval);
                }
            }
        }
    }
}

fn outcome_of(result: std::thread::Result<Outcome>) -> Outcome {
    result.unwrap_or_else(|panic| Outcome::Fail(HandlerError::Panicked(panic_message(&*panic))))
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(message) = panic.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = panic.downcast_ref::<String>() {
        message.clone()
    } else {
        "a panic without a message".to_owned()
    }
}
