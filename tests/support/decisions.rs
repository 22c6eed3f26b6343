//! Reading a running controller's decisions in the controller's tests.

use std::time::Duration;

use spotq_controller::run::DecisionEvent;
use tokio::sync::broadcast::Receiver;
use tokio::time::{Instant, timeout};

/// Waits for the first poll that began once the messages were sent, and returns the
/// decision that woke the service (that poll's, or an earlier one's that already saw
/// part of a send of several batches) and that poll's.
pub async fn woken_by_first_poll_after(
    events: &mut Receiver<DecisionEvent>,
    sent: Instant,
    limit: Duration,
) -> (DecisionEvent, DecisionEvent) {
    timeout(limit, async {
        let mut woken = None;
        loop {
            let event = events.recv().await.expect("decisions");
            if woken.is_none() && event.decision.current == 0 && event.decision.desired > 0 {
                woken = Some(event.clone());
            }
            if event.polled_at >= sent {
                let woken = woken.unwrap_or_else(|| panic!("not woken by {event:?}"));
                return (woken, event);
            }
        }
    })
    .await
    .expect("a poll after the send")
}

/// The next decision that changed the count (skipping holds), within `limit`.
pub async fn next_change(events: &mut Receiver<DecisionEvent>, limit: Duration) -> DecisionEvent {
    timeout(limit, async {
        loop {
            let event = events.recv().await.expect("decisions");
            if event.decision.change().is_some() {
                return event;
            }
        }
    })
    .await
    .expect("a change of the desired count")
}
