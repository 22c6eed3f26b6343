//! The embedded queue as an SQS FIFO queue, on paused time: groups, order,
//! deduplication, sequence numbers, redrive, receive attempts.

use std::time::Duration;

use anyhow::{Result, bail, ensure};
use tokio::time::advance;

use super::*;
use crate::backend::fifo::sha256_hex;

const VISIBILITY: Duration = Duration::from_secs(30);

fn secs(seconds: u64) -> Duration {
    Duration::from_secs(seconds)
}

fn fifo_queue(name: &str) -> EmbeddedQueue {
    EmbeddedQueue::builder(format!("{name}.fifo"))
        .fifo()
        .build()
        .expect("a valid FIFO queue")
}

/// Sends `body` in `group`, deduplicated by the body itself.
fn send(queue: &EmbeddedQueue, group: &str, body: &str) -> String {
    queue
        .send_with(
            SendMessage::new(body)
                .group_id(group)
                .deduplication_id(body),
        )
        .expect("accepted")
}

fn poll(max_messages: usize) -> ReceiveRequest {
    ReceiveRequest {
        max_messages,
        wait_time: Duration::ZERO,
        visibility_timeout: None,
        attempt_id: None,
    }
}

fn attempt(max_messages: usize, id: ReceiveAttemptId) -> ReceiveRequest {
    ReceiveRequest {
        attempt_id: Some(id),
        ..poll(max_messages)
    }
}

fn bodies(messages: &[ReceivedMessage]) -> Vec<&str> {
    messages
        .iter()
        .map(|message| message.body.as_str())
        .collect()
}

async fn delete(queue: &EmbeddedQueue, messages: &[ReceivedMessage]) -> Result<()> {
    let handles: Vec<_> = messages
        .iter()
        .map(|message| message.receipt_handle.clone())
        .collect();
    for result in queue.delete_batch(&handles).await? {
        result?;
    }
    Ok(())
}

fn rejected_code(result: Result<String, BackendError>) -> Result<String> {
    match result {
        Err(BackendError::Rejected { code, .. }) => Ok(code),
        other => bail!("expected a rejected send, got {other:?}"),
    }
}

#[test]
fn the_builder_ties_the_fifo_suffix_to_fifo_queues() {
    let error = EmbeddedQueue::builder("orders")
        .fifo()
        .build()
        .expect_err("no suffix");
    assert_eq!(error.setting, "name");
    let error = EmbeddedQueue::builder("orders.fifo")
        .build()
        .expect_err("suffix on a standard queue");
    assert_eq!(error.setting, "name");
    let error = EmbeddedQueue::builder("orders")
        .content_based_deduplication()
        .build()
        .expect_err("content-based deduplication is FIFO only");
    assert_eq!(error.setting, "content_based_deduplication");

    let standard_dlq = EmbeddedQueue::new("dlq");
    let error = EmbeddedQueue::builder("orders.fifo")
        .fifo()
        .redrive(&standard_dlq, 3)
        .build()
        .expect_err("a FIFO queue's dead letters go to a FIFO queue");
    assert_eq!(error.setting, "redrive");
    let error = EmbeddedQueue::builder("orders")
        .redrive(&fifo_queue("dlq"), 3)
        .build()
        .expect_err("a standard queue's dead letters go to a standard queue");
    assert_eq!(error.setting, "redrive");

    assert!(
        EmbeddedQueue::new("by-name.fifo").inner.fifo,
        "the name decides"
    );
    assert!(!EmbeddedQueue::new("by-name").inner.fifo);
}

#[tokio::test(start_paused = true)]
async fn a_fifo_queue_says_so_in_its_attributes() -> Result<()> {
    let plain = fifo_queue("plain");
    let attributes = plain.attributes().await?;
    assert!(attributes.fifo && !attributes.content_based_deduplication);
    let by_content = EmbeddedQueue::builder("content.fifo")
        .fifo()
        .content_based_deduplication()
        .build()?;
    assert!(by_content.attributes().await?.content_based_deduplication);
    assert!(!EmbeddedQueue::new("standard").attributes().await?.fifo);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_group_in_flight_hands_out_nothing_more() -> Result<()> {
    let queue = fifo_queue("blocking");
    for body in ["a1", "a2", "a3"] {
        send(&queue, "a", body);
    }
    let first = queue.receive(poll(1)).await?;
    assert_eq!(bodies(&first), ["a1"]);
    assert!(
        queue.receive(poll(10)).await?.is_empty(),
        "a2 is visible but a1 is in flight"
    );
    send(&queue, "a", "a4");
    assert!(
        queue.receive(poll(10)).await?.is_empty(),
        "a message sent to a group in flight waits too"
    );
    // The blocked messages are still counted as visible, as SQS counts them.
    assert_eq!(
        queue.counts(),
        QueueCounts {
            visible: 3,
            not_visible: 1,
            delayed: 0
        }
    );
    delete(&queue, &first).await?;
    assert_eq!(bodies(&queue.receive(poll(10)).await?), ["a2", "a3", "a4"]);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_long_poll_waiting_on_a_blocked_group_answers_once_the_group_unblocks() -> Result<()> {
    let queue = fifo_queue("unblocking");
    for body in ["a1", "a2"] {
        send(&queue, "a", body);
    }
    let first = queue.receive(poll(1)).await?;
    let waiting = tokio::spawn({
        let queue = queue.clone();
        async move {
            let started = tokio::time::Instant::now();
            let request = ReceiveRequest {
                wait_time: secs(20),
                ..poll(10)
            };
            let messages = queue.receive(request).await.expect("receive");
            (bodies(&messages).join(","), started.elapsed())
        }
    });
    tokio::time::sleep(secs(1)).await;
    delete(&queue, &first).await?;
    let (got, waited) = waiting.await?;
    assert_eq!(got, "a2");
    ensure!(waited < secs(2), "answered only after {waited:?}");
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn groups_are_served_in_order_one_after_another() -> Result<()> {
    let queue = fifo_queue("order");
    for (group, body) in [
        ("a", "a1"),
        ("b", "b1"),
        ("a", "a2"),
        ("b", "b2"),
        ("a", "a3"),
    ] {
        send(&queue, group, body);
    }
    // As many of the first group as it has, in order, then the next group.
    let all = queue.receive(poll(10)).await?;
    assert_eq!(bodies(&all), ["a1", "a2", "a3", "b1", "b2"]);
    for message in &all {
        assert_eq!(
            message.attributes.get("MessageDeduplicationId"),
            Some(&message.body)
        );
    }
    let group = |message: &ReceivedMessage| message.attributes["MessageGroupId"].clone();
    assert_eq!(
        all.iter().map(group).collect::<Vec<_>>(),
        ["a", "a", "a", "b", "b"]
    );
    // Sequence numbers increase in the order the messages were sent.
    let mut by_sequence: Vec<_> = all
        .iter()
        .map(|message| (message.attributes["SequenceNumber"].clone(), &*message.body))
        .collect();
    by_sequence.sort();
    assert_eq!(
        by_sequence
            .iter()
            .map(|(_, body)| *body)
            .collect::<Vec<_>>(),
        ["a1", "b1", "a2", "b2", "a3"]
    );
    assert!(by_sequence.iter().all(|(number, _)| number.len() == 20));
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_short_receive_takes_the_front_of_a_group_and_moves_on_later() -> Result<()> {
    let queue = fifo_queue("short");
    for (group, body) in [("a", "a1"), ("a", "a2"), ("a", "a3"), ("b", "b1")] {
        send(&queue, group, body);
    }
    assert_eq!(bodies(&queue.receive(poll(2)).await?), ["a1", "a2"]);
    // Group a is in flight: its a3 waits, b is next.
    assert_eq!(bodies(&queue.receive(poll(2)).await?), ["b1"]);
    assert!(queue.receive(poll(2)).await?.is_empty());
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_lapsed_visibility_unblocks_the_group_with_the_same_message_first() -> Result<()> {
    let queue = fifo_queue("lapse");
    for body in ["a1", "a2"] {
        send(&queue, "a", body);
    }
    let first = queue.receive(poll(1)).await?;
    assert_eq!(bodies(&first), ["a1"]);
    advance(VISIBILITY - secs(1)).await;
    assert!(queue.receive(poll(10)).await?.is_empty(), "still in flight");
    advance(secs(1)).await;
    let again = queue.receive(poll(1)).await?;
    assert_eq!(bodies(&again), ["a1"], "redelivered before a2");
    assert_eq!(again[0].receive_count(), 2);
    assert_ne!(again[0].receipt_handle, first[0].receipt_handle);

    // A release (visibility 0) unblocks the group at once, in order again.
    let release = VisibilityChange {
        receipt_handle: again[0].receipt_handle.clone(),
        timeout: Duration::ZERO,
    };
    queue.change_visibility_batch(&[release]).await?;
    let both = queue.receive(poll(10)).await?;
    assert_eq!(bodies(&both), ["a1", "a2"]);

    // Releasing a1 alone leaves a2 in flight: the group stays blocked.
    let release = |message: &ReceivedMessage| VisibilityChange {
        receipt_handle: message.receipt_handle.clone(),
        timeout: Duration::ZERO,
    };
    queue.change_visibility_batch(&[release(&both[0])]).await?;
    assert!(queue.receive(poll(10)).await?.is_empty(), "a2 is in flight");
    queue.change_visibility_batch(&[release(&both[1])]).await?;
    assert_eq!(bodies(&queue.receive(poll(10)).await?), ["a1", "a2"]);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_duplicate_within_five_minutes_is_accepted_and_not_stored() -> Result<()> {
    let queue = fifo_queue("dedup");
    let message = || {
        SendMessage::new("charge card")
            .group_id("order-1")
            .deduplication_id("charge-1")
    };
    let original = queue.send_with(message())?;
    advance(secs(4 * 60 + 59)).await;
    assert_eq!(queue.send_with(message())?, original, "a duplicate");
    assert_eq!(queue.counts().total(), 1);
    // The window counts from the first send, not from the duplicate.
    advance(secs(2)).await;
    let later = queue.send_with(message())?;
    assert_ne!(later, original, "5 min 1 s after: a new message");
    assert_eq!(queue.counts().total(), 2);
    let stats = queue.stats();
    assert_eq!((stats.messages_sent, stats.deduplicated_sends), (2, 1));

    // Deleting the original does not end its window.
    let received = queue.receive(poll(10)).await?;
    delete(&queue, &received).await?;
    assert_eq!(queue.send_with(message())?, later);
    assert_eq!(queue.counts().total(), 0);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn content_based_deduplication_uses_the_sha256_of_the_body() -> Result<()> {
    let queue = EmbeddedQueue::builder("content.fifo")
        .fifo()
        .content_based_deduplication()
        .build()?;
    let first = queue.send_with(SendMessage::new("hello").group_id("g"))?;
    // Another group, same body: still a duplicate (deduplication is queue-wide).
    assert_eq!(
        queue.send_with(SendMessage::new("hello").group_id("h"))?,
        first
    );
    // An explicit id takes the body's place.
    let explicit = queue.send_with(
        SendMessage::new("hello")
            .group_id("g")
            .deduplication_id("second"),
    )?;
    assert_ne!(explicit, first);
    let received = queue.receive(poll(10)).await?;
    assert_eq!(received.len(), 2);
    assert_eq!(
        received[0].attributes["MessageDeduplicationId"],
        sha256_hex(b"hello")
    );
    assert_eq!(received[1].attributes["MessageDeduplicationId"], "second");
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn sends_sqs_refuses_on_a_fifo_queue_are_refused() -> Result<()> {
    let queue = fifo_queue("refusals");
    let code = |message: SendMessage| rejected_code(queue.send_with(message));
    assert_eq!(
        code(SendMessage::new("x").deduplication_id("d"))?,
        "MissingParameter",
        "no group"
    );
    assert_eq!(
        code(SendMessage::new("x").group_id("g"))?,
        "InvalidParameterValue",
        "no deduplication id and no content-based deduplication"
    );
    assert_eq!(
        code(
            SendMessage::new("x")
                .group_id("g")
                .deduplication_id("d")
                .delay(secs(5))
        )?,
        "InvalidParameterValue",
        "a delay of its own"
    );
    for bad in ["with space", "", &"g".repeat(129)] {
        assert_eq!(
            code(SendMessage::new("x").group_id(bad).deduplication_id("d"))?,
            "InvalidParameterValue",
            "group {bad:?}"
        );
        assert_eq!(
            code(SendMessage::new("x").group_id("g").deduplication_id(bad))?,
            "InvalidParameterValue",
            "deduplication id {bad:?}"
        );
    }
    assert_eq!(queue.counts().total(), 0);

    let standard = EmbeddedQueue::new("standard");
    assert_eq!(
        rejected_code(standard.send_with(SendMessage::new("x").deduplication_id("d")))?,
        "InvalidParameterValue",
        "a deduplication id on a standard queue"
    );
    Ok(())
}

#[test]
#[should_panic(expected = "MessageGroupId")]
fn sending_a_bare_body_to_a_fifo_queue_panics() {
    fifo_queue("bare").send("no group");
}

#[tokio::test(start_paused = true)]
async fn the_queue_delay_delays_every_message_in_order() -> Result<()> {
    let queue = EmbeddedQueue::builder("delayed.fifo")
        .fifo()
        .delay(secs(10))
        .build()?;
    send(&queue, "a", "a1");
    advance(secs(5)).await;
    send(&queue, "a", "a2");
    assert!(queue.receive(poll(10)).await?.is_empty());
    assert_eq!(queue.counts().delayed, 2);
    advance(secs(5)).await;
    let first = queue.receive(poll(10)).await?;
    assert_eq!(bodies(&first), ["a1"]);
    delete(&queue, &first).await?;
    assert!(
        queue.receive(poll(10)).await?.is_empty(),
        "a2 is still delayed"
    );
    advance(secs(5)).await;
    assert_eq!(bodies(&queue.receive(poll(10)).await?), ["a2"]);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn redrive_keeps_the_order_and_unblocks_the_group() -> Result<()> {
    let dead_letters = fifo_queue("dlq");
    let queue = EmbeddedQueue::builder("poison.fifo")
        .fifo()
        .redrive(&dead_letters, 1)
        .build()?;
    for body in ["a1", "a2"] {
        send(&queue, "a", body);
    }
    assert_eq!(bodies(&queue.receive(poll(2)).await?), ["a1", "a2"]);
    send(&queue, "a", "a3");
    advance(VISIBILITY).await;
    // a1 and a2 were received maxReceiveCount times: the next receive moves them out,
    // and they no longer hold a3 back.
    let after = queue.receive(poll(10)).await?;
    assert_eq!(bodies(&after), ["a3"]);
    assert_eq!(queue.stats().messages_dead_lettered, 2);

    let moved = dead_letters.receive(poll(10)).await?;
    assert_eq!(bodies(&moved), ["a1", "a2"], "in their group's order");
    for message in &moved {
        assert_eq!(message.attributes["MessageGroupId"], "a");
        assert_eq!(message.receive_count(), 1);
    }
    // In the dead-letter queue too, the group is blocked while in flight.
    send(&dead_letters, "a", "direct");
    assert!(dead_letters.receive(poll(10)).await?.is_empty());
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_retried_attempt_gets_the_same_messages_and_handles_back() -> Result<()> {
    let queue = fifo_queue("attempts");
    for body in ["a1", "a2"] {
        send(&queue, "a", body);
    }
    let id = ReceiveAttemptId::random();
    queue.faults().lose_next_responses(Operation::Receive, 1);
    let lost = queue.receive(attempt(1, id)).await;
    ensure!(
        matches!(lost, Err(BackendError::Transient { .. })),
        "{lost:?}"
    );
    assert_eq!(queue.counts().not_visible, 1, "the lost receive took a1");
    // Another attempt finds the group blocked; the retry gets a1 back.
    assert!(
        queue
            .receive(attempt(1, ReceiveAttemptId::random()))
            .await?
            .is_empty()
    );
    advance(VISIBILITY - secs(1)).await;
    let retried = queue.receive(attempt(1, id)).await?;
    assert_eq!(bodies(&retried), ["a1"]);
    assert_eq!(retried[0].receive_count(), 1, "the same receive");
    // Its visibility started again at the retry.
    advance(secs(2)).await;
    assert_eq!(
        queue.counts().not_visible,
        1,
        "not lapsed at the first deadline"
    );
    assert_eq!(queue.stats().replayed_receives, 1);

    // Once a message of the attempt changed, the id is just a new receive.
    delete(&queue, &retried).await?;
    assert_eq!(bodies(&queue.receive(attempt(1, id)).await?), ["a2"]);
    assert_eq!(queue.stats().replayed_receives, 1);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn an_attempt_id_is_forgotten_after_five_minutes() -> Result<()> {
    let queue = EmbeddedQueue::builder("forgotten.fifo")
        .fifo()
        .visibility_timeout(secs(600))
        .build()?;
    send(&queue, "a", "a1");
    let id = ReceiveAttemptId::random();
    assert_eq!(queue.receive(attempt(1, id)).await?.len(), 1);
    advance(secs(5 * 60)).await;
    assert!(queue.receive(attempt(1, id)).await?.is_empty());
    assert_eq!(queue.stats().replayed_receives, 0);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_standard_queue_ignores_attempt_ids() -> Result<()> {
    let queue = EmbeddedQueue::new("standard");
    queue.send("one");
    let id = ReceiveAttemptId::random();
    assert_eq!(queue.receive(attempt(1, id)).await?.len(), 1);
    assert!(queue.receive(attempt(1, id)).await?.is_empty());
    Ok(())
}

#[test]
fn a_sequence_number_is_twenty_digits() {
    assert_eq!(super::sequence_number(0), "00000000000000000000");
    assert_eq!(super::sequence_number(42), "00000000000000000042");
    assert_eq!(super::sequence_number(u64::MAX), u64::MAX.to_string());
}
