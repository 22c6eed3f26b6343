//! FIFO queues: the messages of one message group run one at a time, in the order
//! received; different groups run in parallel.
//!
//! SQS hands out nothing more of a group while one of its messages is in flight, so the
//! messages of a group that one worker holds all came in one receive. Each group of a
//! receive gets one task, which keeps one slot of the capacity (one handler in flight)
//! for the whole group; the messages waiting behind the running one hold no slot but
//! count as held, and are heartbeated with it so their visibility does not lapse while
//! they wait.
//!
//! When a message fails (an error, a panic, a timeout, a retry-after) or is released at
//! shutdown, the group's later messages are released unprocessed: the queue then hands
//! the group out again from the failed message, so nothing runs out of order. Once
//! shutdown begins, no further message of a group starts.
//!
//! A message's delete (or its continuation's send and then its delete) is applied
//! before the group's next message starts: a delete given up would let the queue hand
//! the message out again after the next one ran, so it fails the group's turn instead.
//! Waiting for a slot, a delete or a send is no handler time: the handler timeout counts
//! from each handler's start.

use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use futures_util::FutureExt;

use crate::api::handler::{Handler, Outcome};
use crate::api::message::Message;
use crate::engine::Shared;
use crate::engine::capacity::GroupSlot;
use crate::engine::task::{
    Clock, Delivery, Ending, PerMessage, Settled, Verdict, finish, release, start, supervise,
};

/// Starts one task per message group of a receive; returns the slots they keep (one
/// each, of the `slots` the poller took). A group beyond those waits for a slot, its
/// messages heartbeated meanwhile. Messages without a group (none should be, on a FIFO
/// queue) run alone.
pub(super) fn dispatch<H: Handler>(
    shared: &Arc<Shared<PerMessage<H>>>,
    messages: Vec<Message>,
    slots: usize,
) -> usize {
    let groups = by_group(messages, |message| {
        message
            .context()
            .attributes()
            .get("MessageGroupId")
            .cloned()
    });
    let kept = groups.len().min(slots);
    for (index, group) in groups.into_iter().enumerate() {
        tokio::spawn(process_group(Arc::clone(shared), group, index < kept));
    }
    kept
}

/// Splits messages into their groups, each in the order received, the groups in the
/// order of their first message. `None` is a group of one.
fn by_group<T, K: PartialEq>(items: Vec<T>, key: impl Fn(&T) -> Option<K>) -> Vec<Vec<T>> {
    let mut groups: Vec<(Option<K>, Vec<T>)> = Vec::new();
    for item in items {
        let group = key(&item);
        match groups
            .iter_mut()
            .find(|(other, _)| group.is_some() && *other == group)
        {
            Some((_, members)) => members.push(item),
            None => groups.push((group, vec![item])),
        }
    }
    groups.into_iter().map(|(_, members)| members).collect()
}

/// Runs the messages of one group one at a time, settling each before the next starts;
/// first waits for a slot unless the poller gave it one.
async fn process_group<H: Handler>(
    shared: Arc<Shared<PerMessage<H>>>,
    messages: Vec<Message>,
    slotted: bool,
) {
    let mut deliveries: VecDeque<Delivery> = messages
        .iter()
        .map(|message| Delivery::of(&shared, message))
        .collect();
    let Some(first) = deliveries.front() else {
        return;
    };
    let mut clock = Clock::new(&shared, first.received_at);
    let slot = if slotted {
        Some(GroupSlot(&shared.capacity))
    } else {
        wait_for_slot(&shared, &mut deliveries, &mut clock).await
    };
    let mut cause = "shutdown began while the group waited for a slot";
    if slot.is_some() {
        for message in messages {
            if shared.shutdown.deadlines().is_some() {
                // Shutdown began: this message and the rest go back unstarted.
                cause = "shutdown began";
                break;
            }
            clock.started = Some(tokio::time::Instant::now());
            let verdict = run(&shared, message, &mut deliveries, &mut clock).await;
            shared.capacity.message_settled();
            cause = match verdict {
                Verdict::Done => continue,
                Verdict::Failed => "an earlier message of the group failed",
                Verdict::Released => "an earlier message of the group was released",
            };
            break;
        }
    }
    // What is left was not started: back to the queue, so the group starts again from
    // its first unprocessed message.
    if let Some(next) = deliveries.front() {
        tracing::info!(
            messages = deliveries.len(),
            next = %next.message_id,
            group = next.group_id.as_deref().unwrap_or_default(),
            cause,
            "releasing the rest of a FIFO group unstarted"
        );
    }
    for delivery in deliveries {
        release(&shared, delivery);
        shared.capacity.message_settled();
    }
    drop(slot);
}

/// Waits for a slot, the group's messages heartbeated meanwhile (the wait is no handler
/// time: no handler timeout runs). `None` when shutdown began first: then the group goes
/// back unstarted.
async fn wait_for_slot<'a, H>(
    shared: &'a Shared<H>,
    deliveries: &mut VecDeque<Delivery>,
    clock: &mut Clock,
) -> Option<GroupSlot<'a>> {
    clock.started = None;
    let slot = async {
        tokio::select! {
            biased;
            () = shared.shutdown.stopping() => false,
            () = shared.capacity.take_for_group() => true,
        }
    };
    tokio::pin!(slot);
    match supervise(shared, slot, deliveries.make_contiguous(), clock).await {
        Ending::Returned(true) => Some(GroupSlot(&shared.capacity)),
        _ => None,
    }
}

/// Runs the handler for the group's first message (the front of `deliveries`), with
/// the rest heartbeated while it runs, and settles it. A handler that finishes on its
/// first poll is settled inside that poll, without a timer.
async fn run<H: Handler>(
    shared: &Shared<PerMessage<H>>,
    message: Message,
    deliveries: &mut VecDeque<Delivery>,
    clock: &mut Clock,
) -> Verdict {
    let handler = start(|| shared.handler.0.handle(message), Outcome::Fail);
    let handler = AssertUnwindSafe(handler).catch_unwind();
    tokio::pin!(handler);
    let first = poll_fn(|cx| Poll::Ready(handler.as_mut().poll(cx))).await;
    let ending = match first {
        Poll::Ready(result) => Ending::Returned(result),
        Poll::Pending => supervise(shared, handler, deliveries.make_contiguous(), clock).await,
    };
    let Some(mut delivery) = deliveries.pop_front() else {
        return Verdict::Released;
    };
    delivery.followed = !deliveries.is_empty();
    match finish(shared, delivery, ending) {
        Settled::Now(verdict) => verdict,
        // A continuation's send, or the delete the next message waits for: the rest of
        // the group is heartbeated meanwhile, and the wait is no handler time.
        Settled::Later(mut settling) => {
            clock.started = None;
            match supervise(
                shared,
                Pin::new(&mut settling),
                deliveries.make_contiguous(),
                clock,
            )
            .await
            {
                Ending::Returned(verdict) => verdict,
                Ending::Cancelled | Ending::TimedOut(_) => Verdict::Released,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_keep_the_receive_order_and_ungrouped_items_stand_alone() {
        let items = vec![
            ("a", 1),
            ("b", 2),
            ("a", 3),
            ("", 4),
            ("", 5),
            ("b", 6),
            ("c", 7),
        ];
        let groups = by_group(items, |(group, _)| {
            (!group.is_empty()).then(|| (*group).to_owned())
        });
        let numbers: Vec<Vec<i32>> = groups
            .iter()
            .map(|group| group.iter().map(|(_, n)| *n).collect())
            .collect();
        assert_eq!(
            numbers,
            vec![vec![1, 3], vec![2, 6], vec![4], vec![5], vec![7]]
        );
    }
}
