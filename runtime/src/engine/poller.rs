//! The receive loop.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Instant, sleep, timeout_at};

use crate::backend::ReceiveRequest;
use crate::backoff::{Backoff, CALL_RETRY};
use crate::engine::stats::Counters;
use crate::engine::{Shared, process};
use crate::handler::Handler;
use crate::message::{Context, Message};

/// Backoff between receives that came back empty at once (short polls, or a backend that
/// does not long-poll), so an idle queue is not polled in a busy loop.
const IDLE: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
/// An empty receive faster than this did not wait: back off before the next.
const EMPTY_TOO_FAST: Duration = Duration::from_millis(50);

/// Takes the permits for one receive: one (waiting while all are in use), then every free
/// one up to the batch size. When that falls short because handlers hold the rest, it
/// waits up to `flush_interval` for more to come back: under load, receives stay full
/// batches instead of splintering into one-message calls. Pollers take turns, so
/// returning permits fill one poller's batch rather than trickling to all of them.
/// Returns false when receiving stops.
async fn take_permits<H>(shared: &Shared<H>, permits: &mut Vec<OwnedSemaphorePermit>) -> bool {
    let batch = shared.config.batch_size.min(shared.config.concurrency);
    let _turn = tokio::select! {
        biased;
        () = shared.stop_receiving.cancelled() => return false,
        turn = shared.permit_turn.lock() => turn,
    };
    let first = tokio::select! {
        biased;
        () = shared.stop_receiving.cancelled() => return false,
        permit = Arc::clone(&shared.permits).acquire_owned() => match permit {
            Ok(permit) => permit,
            Err(_closed) => return false,
        },
    };
    permits.push(first);
    while permits.len() < batch {
        match Arc::clone(&shared.permits).try_acquire_owned() {
            Ok(permit) => permits.push(permit),
            Err(_) => break,
        }
    }
    let deadline = Instant::now() + shared.config.flush_interval;
    while permits.len() < batch {
        let permit = tokio::select! {
            biased;
            () = shared.stop_receiving.cancelled() => return false,
            permit = timeout_at(deadline, Arc::clone(&shared.permits).acquire_owned()) => permit,
        };
        match permit {
            Ok(Ok(permit)) => permits.push(permit),
            Ok(Err(_closed)) => return false,
            Err(_elapsed) => break,
        }
    }
    true
}

/// Receives messages while permits are free, until receiving stops.
pub(crate) async fn poll<H: Handler>(shared: Arc<Shared<H>>) {
    let mut errors = 0;
    let mut idle = 0;
    let mut permits: Vec<OwnedSemaphorePermit> = Vec::with_capacity(shared.config.batch_size);
    loop {
        if !take_permits(&shared, &mut permits).await {
            return;
        }
        let request = ReceiveRequest {
            max_messages: permits.len(),
            wait_time: shared.config.wait_time,
            visibility_timeout: shared.config.visibility_timeout,
        };
        let started = Instant::now();
        let received = tokio::select! {
            biased;
            // Dropping the receive cancels the long poll at once. The embedded queue takes
            // messages only as it returns, so it loses none; SQS may have handed a message
            // to the abandoned request, which then waits out its visibility timeout.
            () = shared.stop_receiving.cancelled() => return,
            received = shared.backend.receive(request) => received,
        };
        let pause = match received {
            Ok(messages) => {
                errors = 0;
                let now = Instant::now();
                if messages.is_empty() && now - started < EMPTY_TOO_FAST {
                    idle += 1;
                    Some(IDLE.delay(idle))
                } else {
                    idle = 0;
                    Counters::add(&shared.counters.received, messages.len() as u64);
                    for message in messages {
                        // More messages than permits would be a backend bug; such a
                        // message is left to its visibility timeout.
                        let Some(permit) = permits.pop() else {
                            tracing::error!(id = %message.message_id, "backend returned more messages than asked for");
                            continue;
                        };
                        let context = Context::new(Arc::clone(&shared.shutdown), now);
                        let message = Message::new(message, context);
                        shared
                            .messages
                            .spawn(process(Arc::clone(&shared), message, permit));
                    }
                    None
                }
            }
            Err(error) => {
                errors += 1;
                Counters::add(&shared.counters.receive_errors, 1);
                let delay = CALL_RETRY.delay(errors);
                tracing::warn!(%error, retry_in = ?delay, "receive failed");
                Some(delay)
            }
        };
        permits.clear();
        if let Some(delay) = pause {
            tokio::select! {
                () = shared.stop_receiving.cancelled() => return,
                () = sleep(delay) => {}
            }
        }
    }
}
