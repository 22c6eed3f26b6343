//! One message's task: run the handler, keep the message invisible while it runs, and
//! settle it by the outcome.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Instant, sleep_until};

use crate::backend::ReceivedMessage;
use crate::config::RetryPolicy;
use crate::engine::Shared;
use crate::engine::settle::ChangeKind;
use crate::engine::stats::Counters;
use crate::error::HandlerError;
use crate::handler::{Handler, Outcome};
use crate::message::{Context, Message};

/// How a handler's run ended.
enum Ending {
    Returned(Outcome),
    /// The shutdown deadline passed while the handler ran.
    Cancelled,
}

/// Runs the handler for one message and settles the message. The permit is held until
/// the handler is done.
pub(crate) async fn process<H: Handler>(
    shared: Arc<Shared<H>>,
    received: ReceivedMessage,
    received_at: Instant,
    permit: OwnedSemaphorePermit,
) {
    let receipt = received.receipt_handle.clone();
    let receive_count = received.receive_count();
    let message_id = received.message_id.clone();
    let context = Context::new(
        shared.cancel_handlers.clone(),
        Arc::clone(&shared.deadline),
        received_at,
    );
    let ending = run(&shared, Message::new(received, context), received_at).await;
    drop(permit);

    let counters = &shared.counters;
    let outcome = match ending {
        Ending::Cancelled => {
            // Handed back at once so another task can take it.
            Counters::add(&counters.released, 1);
            shared.settler.change(receipt, Duration::ZERO, ChangeKind::Release);
            return;
        }
        Ending::Returned(outcome) => outcome,
    };
    match outcome {
        Outcome::Ack => {
            Counters::add(&counters.succeeded, 1);
            shared.settler.delete(receipt);
        }
        Outcome::RetryAfter(delay) => {
            Counters::add(&counters.retried, 1);
            let delay = delay.min(shared.visibility_room(received_at, Instant::now()));
            shared.settler.change(receipt, delay, ChangeKind::Retry);
        }
        Outcome::Fail(error) => {
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
    }
}

/// Runs the handler to its end, the handler timeout or the shutdown deadline, whichever
/// comes first, extending the message's visibility on every heartbeat.
async fn run<H: Handler>(shared: &Shared<H>, message: Message, received_at: Instant) -> Ending {
    let receipt = message.received().receipt_handle.clone();
    let handler = AssertUnwindSafe(shared.handler.handle(message)).catch_unwind();
    tokio::pin!(handler);

    let heartbeat = shared.resolved.heartbeat;
    let timeout = shared.config.handler_timeout;
    // Sleeps of handlers that finish before their first poll are never registered.
    let far = received_at + Duration::from_secs(86_400 * 365);
    let timed_out = sleep_until(timeout.map_or(far, |timeout| received_at + timeout));
    tokio::pin!(timed_out);
    let next_beat = sleep_until(heartbeat.map_or(far, |interval| received_at + interval));
    tokio::pin!(next_beat);

    loop {
        tokio::select! {
            biased;
            result = &mut handler => {
                return Ending::Returned(match result {
                    Ok(outcome) => outcome,
                    Err(panic) => Outcome::Fail(HandlerError::Panicked(panic_message(&*panic))),
                });
            }
            () = shared.cancel_handlers.cancelled() => return Ending::Cancelled,
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

fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(message) = panic.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = panic.downcast_ref::<String>() {
        message.clone()
    } else {
        "a panic without a message".to_owned()
    }
}
