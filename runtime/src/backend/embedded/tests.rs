//! Behaviour of the embedded queue that the engine and users rely on, on paused time.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::{Context as _, Result, bail, ensure};
use tokio::time::{Instant, advance, sleep};

use super::*;
use crate::backend::MessageAttribute;
use crate::error::ConfigError;

const SECOND: Duration = Duration::from_secs(1);

fn secs(seconds: u64) -> Duration {
    Duration::from_secs(seconds)
}

fn request(max_messages: usize, wait_time: Duration) -> ReceiveRequest {
    ReceiveRequest {
        max_messages,
        wait_time,
        visibility_timeout: None,
        attempt_id: None,
    }
}

/// A receive that does not wait.
fn poll(max_messages: usize) -> ReceiveRequest {
    request(max_messages, Duration::ZERO)
}

fn counts(visible: u64, not_visible: u64, delayed: u64) -> QueueCounts {
    QueueCounts {
        visible,
        not_visible,
        delayed,
    }
}

async fn receive_one(queue: &EmbeddedQueue, request: ReceiveRequest) -> Result<ReceivedMessage> {
    let mut messages = queue.receive(request).await?;
    ensure!(
        messages.len() == 1,
        "expected one message, got {messages:?}"
    );
    messages.pop().context("one message")
}

fn change(handle: &ReceiptHandle, timeout: Duration) -> VisibilityChange {
    VisibilityChange {
        receipt_handle: handle.clone(),
        timeout,
    }
}

fn error_kinds(results: &[EntryResult]) -> Vec<Option<EntryErrorKind>> {
    results
        .iter()
        .map(|result| result.as_ref().err().map(|error| error.kind))
        .collect()
}

fn rejected_code(result: Result<impl std::fmt::Debug, BackendError>) -> Result<String> {
    match result {
        Err(BackendError::Rejected { code, .. }) => Ok(code),
        other => bail!("expected a rejected call, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn lapsed_visibility_redelivers_with_a_new_handle_and_stales_the_old_one() -> Result<()> {
    let queue = EmbeddedQueue::new("jobs");
    let id = queue.send("payload");

    let first = receive_one(&queue, poll(10)).await?;
    assert_eq!(first.message_id, id);
    assert_eq!(first.body, "payload");
    assert_eq!(first.receive_count(), 1);
    assert!(queue.receive(poll(10)).await?.is_empty(), "in flight");

    advance(secs(30)).await;
    let second = receive_one(&queue, poll(10)).await?;
    assert_eq!(second.message_id, id);
    assert_eq!(second.receive_count(), 2);
    assert_ne!(second.receipt_handle, first.receipt_handle);

    let stale = queue
        .delete_batch(std::slice::from_ref(&first.receipt_handle))
        .await?;
    assert_eq!(
        error_kinds(&stale),
        [Some(EntryErrorKind::InvalidReceiptHandle)]
    );
    if let [Err(error)] = stale.as_slice() {
        assert_eq!(error.code, "ReceiptHandleIsInvalid");
    }
    assert_eq!(
        queue.counts(),
        counts(0, 1, 0),
        "the stale delete deleted nothing"
    );
    let stale = queue
        .change_visibility_batch(&[change(&first.receipt_handle, Duration::ZERO)])
        .await?;
    assert_eq!(
        error_kinds(&stale),
        [Some(EntryErrorKind::InvalidReceiptHandle)]
    );

    let current = queue.delete_batch(&[second.receipt_handle]).await?;
    assert_eq!(error_kinds(&current), [None]);
    assert_eq!(queue.counts(), counts(0, 0, 0));
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn system_attributes_are_reported() -> Result<()> {
    let queue = EmbeddedQueue::new("jobs");
    queue.send("payload");
    let message = receive_one(&queue, poll(1)).await?;
    for name in [
        "ApproximateReceiveCount",
        "SentTimestamp",
        "ApproximateFirstReceiveTimestamp",
        "SenderId",
    ] {
        assert!(message.attributes.contains_key(name), "{name} missing");
    }
    let sent: u64 = message.attributes["SentTimestamp"].parse()?;
    let first: u64 = message.attributes["ApproximateFirstReceiveTimestamp"].parse()?;
    assert!(
        sent > 0 && first >= sent,
        "sent {sent}, first received {first}"
    );
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn user_attributes_come_back_with_every_receive() -> Result<()> {
    let queue = EmbeddedQueue::new("jobs");
    queue.send_with(
        SendMessage::new("payload").attribute("tenant", MessageAttribute::string("a")),
    )?;
    let message = receive_one(
        &queue,
        ReceiveRequest {
            visibility_timeout: Some(Duration::ZERO),
            ..poll(1)
        },
    )
    .await?;
    assert_eq!(
        message.message_attributes["tenant"],
        MessageAttribute::string("a")
    );
    let again = receive_one(&queue, poll(1)).await?;
    assert_eq!(again.message_attributes, message.message_attributes);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn changing_visibility_to_zero_makes_the_message_receivable_at_once() -> Result<()> {
    let queue = EmbeddedQueue::new("jobs");
    queue.send("payload");
    let first = receive_one(&queue, poll(1)).await?;

    let results = queue
        .change_visibility_batch(&[change(&first.receipt_handle, Duration::ZERO)])
        .await?;
    assert_eq!(error_kinds(&results), [None]);
    assert_eq!(queue.counts(), counts(1, 0, 0));

    let again = receive_one(&queue, poll(1)).await?;
    assert_eq!(again.message_id, first.message_id);
    assert_eq!(again.receive_count(), 2);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn changed_visibility_counts_from_the_call() -> Result<()> {
    let queue = EmbeddedQueue::new("jobs");
    queue.send("payload");
    let message = receive_one(&queue, poll(1)).await?; // in flight until t = 30 s

    advance(secs(20)).await;
    let results = queue
        .change_visibility_batch(&[change(&message.receipt_handle, secs(30))])
        .await?;
    assert_eq!(error_kinds(&results), [None]);

    advance(secs(29)).await; // t = 49 s: past the original 30 s, before 20 + 30
    assert!(queue.receive(poll(1)).await?.is_empty());
    assert_eq!(queue.counts(), counts(0, 1, 0));
    advance(SECOND).await; // t = 50 s
    assert_eq!(receive_one(&queue, poll(1)).await?.receive_count(), 2);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn fractional_timeouts_round_up_to_whole_seconds() -> Result<()> {
    let queue = EmbeddedQueue::new("jobs");
    queue.send("payload");
    let visibility = ReceiveRequest {
        visibility_timeout: Some(Duration::from_millis(1_100)),
        ..poll(1)
    };
    receive_one(&queue, visibility).await?;
    advance(Duration::from_millis(1_999)).await;
    assert!(
        queue.receive(poll(1)).await?.is_empty(),
        "1.1 s counts as 2 s"
    );
    advance(Duration::from_millis(1)).await;
    receive_one(&queue, poll(1)).await?;
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn the_12_hour_cap_counts_from_the_receive_and_is_not_reset() -> Result<()> {
    let hour = secs(3600);
    let queue = EmbeddedQueue::new("jobs");
    queue.send("payload");
    let message = receive_one(&queue, poll(1)).await?;
    let handle = &message.receipt_handle;

    advance(hour).await;
    let results = queue
        .change_visibility_batch(&[
            change(handle, 11 * hour + SECOND),
            change(handle, 11 * hour),
        ])
        .await?;
    assert_eq!(
        error_kinds(&results),
        [Some(EntryErrorKind::Rejected), None]
    );
    if let [Err(error), _] = results.as_slice() {
        assert_eq!(error.code, "InvalidParameterValue");
    }

    // A later extension still counts from the receive, not from the last change.
    advance(hour).await;
    let results = queue
        .change_visibility_batch(&[
            change(handle, 10 * hour + SECOND),
            change(handle, 10 * hour),
        ])
        .await?;
    assert_eq!(
        error_kinds(&results),
        [Some(EntryErrorKind::Rejected), None]
    );
    let results = queue
        .change_visibility_batch(&[change(handle, 13 * hour)])
        .await?;
    assert_eq!(error_kinds(&results), [Some(EntryErrorKind::Rejected)]);
    assert_eq!(
        queue.counts(),
        counts(0, 1, 0),
        "rejected changes changed nothing"
    );
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_lapsed_message_keeps_its_handle_until_received_again() -> Result<()> {
    let queue = EmbeddedQueue::new("jobs");
    queue.send("a");
    queue.send("b");
    let messages = queue.receive(poll(2)).await?;
    let [a, b] = messages.as_slice() else {
        bail!("expected two messages, got {messages:?}");
    };
    advance(secs(30)).await;
    assert_eq!(
        queue.counts(),
        counts(2, 0, 0),
        "lapsed messages count as visible"
    );

    let hidden = queue
        .change_visibility_batch(&[change(&a.receipt_handle, secs(60))])
        .await?;
    assert_eq!(error_kinds(&hidden), [None]);
    let deleted = queue
        .delete_batch(std::slice::from_ref(&b.receipt_handle))
        .await?;
    assert_eq!(error_kinds(&deleted), [None]);
    assert_eq!(queue.counts(), counts(0, 1, 0));
    assert!(queue.receive(poll(10)).await?.is_empty());
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_delay_hides_a_message_until_it_passes() -> Result<()> {
    let queue = EmbeddedQueue::builder("jobs").delay(secs(10)).build()?;
    queue.send("queue delay");
    queue.send_with(SendMessage::new("own delay").delay(secs(5)))?;
    queue.send_with(SendMessage::new("no delay").delay(Duration::ZERO))?;
    assert_eq!(queue.counts(), counts(1, 0, 2));
    assert_eq!(receive_one(&queue, poll(10)).await?.body, "no delay");

    advance(secs(4)).await;
    assert!(queue.receive(poll(10)).await?.is_empty());
    advance(SECOND).await;
    assert_eq!(receive_one(&queue, poll(10)).await?.body, "own delay");
    assert_eq!(queue.counts(), counts(0, 2, 1));

    // A long poll wakes when the delay passes.
    let start = Instant::now();
    let message = receive_one(&queue, request(10, secs(20))).await?;
    assert_eq!(message.body, "queue delay");
    assert_eq!(start.elapsed(), secs(5));
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_long_poll_wakes_on_a_send_from_another_task() -> Result<()> {
    let queue = EmbeddedQueue::new("jobs");
    let producer = queue.clone();
    let send = tokio::spawn(async move {
        sleep(secs(3)).await;
        producer.send("late")
    });

    let start = Instant::now();
    let message = receive_one(&queue, request(10, secs(20))).await?;
    assert_eq!(start.elapsed(), secs(3));
    assert_eq!(message.message_id, send.await?);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_long_poll_returns_empty_when_the_wait_runs_out() -> Result<()> {
    let queue = EmbeddedQueue::new("jobs");
    let start = Instant::now();
    let messages = queue.receive(request(10, secs(20))).await?;
    assert!(messages.is_empty());
    assert_eq!(start.elapsed(), secs(20));
    let stats = queue.stats();
    assert_eq!((stats.receive_calls, stats.empty_receives), (1, 1));
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_long_poll_wakes_when_a_visibility_timeout_lapses() -> Result<()> {
    let queue = EmbeddedQueue::builder("jobs")
        .visibility_timeout(secs(5))
        .build()?;
    queue.send("payload");
    receive_one(&queue, poll(1)).await?;

    let start = Instant::now();
    let message = receive_one(&queue, request(10, secs(20))).await?;
    assert_eq!(start.elapsed(), secs(5));
    assert_eq!(message.receive_count(), 2);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_long_poll_wakes_when_another_task_releases_or_shortens_a_visibility() -> Result<()> {
    let queue = EmbeddedQueue::new("jobs");
    queue.send("released");
    queue.send("shortened");
    let messages = queue.receive(poll(2)).await?;
    let [released, shortened] = messages.as_slice() else {
        bail!("expected two messages, got {messages:?}");
    };

    let other = queue.clone();
    let handle = released.receipt_handle.clone();
    tokio::spawn(async move {
        sleep(secs(2)).await;
        other
            .change_visibility_batch(&[change(&handle, Duration::ZERO)])
            .await
    });
    let start = Instant::now();
    let message = receive_one(&queue, request(1, secs(20))).await?;
    assert_eq!(
        (message.body.as_str(), start.elapsed()),
        ("released", secs(2))
    );

    // The poll below first sleeps towards the 30 s deadline of `shortened`; a change
    // to 3 s must wake it to sleep towards the new, earlier deadline.
    let other = queue.clone();
    let handle = shortened.receipt_handle.clone();
    tokio::spawn(async move {
        sleep(SECOND).await;
        other
            .change_visibility_batch(&[change(&handle, secs(3))])
            .await
    });
    let start = Instant::now();
    let message = receive_one(&queue, request(1, secs(20))).await?;
    assert_eq!(
        (message.body.as_str(), start.elapsed()),
        ("shortened", secs(4))
    );
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn redrive_moves_a_message_to_the_dead_letter_queue_on_the_receive_past_the_max() -> Result<()>
{
    let dead_letters = EmbeddedQueue::new("jobs-dlq");
    let queue = EmbeddedQueue::builder("jobs")
        .redrive(&dead_letters, 2)
        .build()?;
    let id = queue
        .send_with(SendMessage::new("poison").attribute("tenant", MessageAttribute::string("a")))?;
    let again = ReceiveRequest {
        visibility_timeout: Some(Duration::ZERO),
        ..poll(10)
    };
    assert_eq!(receive_one(&queue, again).await?.receive_count(), 1);
    assert_eq!(receive_one(&queue, again).await?.receive_count(), 2);

    assert!(
        queue.receive(again).await?.is_empty(),
        "third receive redrives"
    );
    assert_eq!(queue.counts(), counts(0, 0, 0));
    assert_eq!(dead_letters.counts(), counts(1, 0, 0));
    assert_eq!(queue.stats().messages_dead_lettered, 1);

    let dead = receive_one(&dead_letters, poll(10)).await?;
    assert_eq!(dead.message_id, id);
    assert_eq!(dead.body, "poison");
    assert_eq!(
        dead.message_attributes["tenant"],
        MessageAttribute::string("a")
    );
    assert_eq!(dead.receive_count(), 1);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_long_poll_on_the_dead_letter_queue_wakes_on_a_redrive() -> Result<()> {
    let dead_letters = EmbeddedQueue::new("jobs-dlq");
    let queue = EmbeddedQueue::builder("jobs")
        .visibility_timeout(secs(5))
        .redrive(&dead_letters, 1)
        .build()?;
    queue.send("poison");
    receive_one(&queue, poll(1)).await?;

    let source = queue.clone();
    tokio::spawn(async move {
        sleep(secs(6)).await;
        source.receive(poll(1)).await
    });
    let start = Instant::now();
    assert_eq!(
        receive_one(&dead_letters, request(1, secs(20))).await?.body,
        "poison"
    );
    assert_eq!(start.elapsed(), secs(6));
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn counts_and_attributes_report_visible_in_flight_and_delayed() -> Result<()> {
    let dead_letters = EmbeddedQueue::new("jobs-dlq");
    let queue = EmbeddedQueue::builder("jobs")
        .visibility_timeout(secs(45))
        .redrive(&dead_letters, 5)
        .build()?;
    assert_eq!(queue.send_many(["a", "b", "c"]), 3);
    queue.send_with(SendMessage::new("later").delay(secs(60)))?;
    receive_one(&queue, poll(1)).await?;

    assert_eq!(queue.counts(), counts(2, 1, 1));
    let attributes = queue.attributes().await?;
    assert_eq!(attributes.counts, counts(2, 1, 1));
    assert_eq!(attributes.visibility_timeout, secs(45));
    assert_eq!(
        attributes.redrive_policy,
        Some(RedrivePolicy {
            dead_letter_target: "jobs-dlq".to_owned(),
            max_receive_count: 5,
        })
    );
    assert!(!attributes.fifo);

    advance(secs(60)).await;
    assert_eq!(queue.counts(), counts(4, 0, 0));
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn receive_returns_at_most_max_messages_oldest_first() -> Result<()> {
    let queue = EmbeddedQueue::new("jobs");
    queue.send_many((0..25).map(|n| n.to_string()));
    let first = queue.receive(request(10, secs(20))).await?;
    let bodies: Vec<_> = first.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]);
    assert_eq!(queue.receive(request(10, secs(20))).await?.len(), 10);
    assert_eq!(queue.receive(request(10, secs(20))).await?.len(), 5);
    let ids: HashSet<_> = first.iter().map(|m| &m.message_id).collect();
    let handles: HashSet<_> = first.iter().map(|m| &m.receipt_handle).collect();
    assert_eq!(
        (ids.len(), handles.len()),
        (10, 10),
        "ids and handles are unique"
    );
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn batch_results_come_back_per_entry_in_request_order() -> Result<()> {
    let queue = EmbeddedQueue::new("jobs");
    let other = EmbeddedQueue::new("other");
    queue.send_many(["a", "b", "c"]);
    other.send("x");
    let messages = queue.receive(poll(3)).await?;
    let [a, b, c] = messages.as_slice() else {
        bail!("expected three messages, got {messages:?}");
    };
    let foreign = receive_one(&other, poll(1)).await?.receipt_handle;

    let results = queue
        .change_visibility_batch(&[
            change(&a.receipt_handle, secs(60)),
            change(&foreign, secs(60)),
            change(&b.receipt_handle, secs(13 * 3600)),
            change(&ReceiptHandle::new("garbage"), secs(60)),
        ])
        .await?;
    use EntryErrorKind::{InvalidReceiptHandle, Rejected};
    assert_eq!(
        error_kinds(&results),
        [
            None,
            Some(InvalidReceiptHandle),
            Some(Rejected),
            Some(InvalidReceiptHandle)
        ]
    );

    let results = queue
        .delete_batch(&[
            a.receipt_handle.clone(),
            foreign.clone(),
            c.receipt_handle.clone(),
            a.receipt_handle.clone(),
        ])
        .await?;
    assert_eq!(
        error_kinds(&results),
        [
            None,
            Some(InvalidReceiptHandle),
            None,
            Some(InvalidReceiptHandle)
        ]
    );
    assert_eq!(queue.counts(), counts(0, 1, 0), "only b is left");
    assert_eq!(
        other.counts(),
        counts(0, 1, 0),
        "a foreign handle touches nothing"
    );
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn invalid_requests_are_rejected_as_sqs_rejects_them() -> Result<()> {
    let queue = EmbeddedQueue::new("jobs");
    queue.send("payload");
    for bad in [
        poll(0),
        poll(11),
        request(1, secs(21)),
        request(1, secs(20) + Duration::from_millis(1)),
        ReceiveRequest {
            visibility_timeout: Some(MAX_VISIBILITY + SECOND),
            ..poll(1)
        },
        ReceiveRequest {
            visibility_timeout: Some(Duration::MAX),
            ..poll(1)
        },
    ] {
        assert_eq!(
            rejected_code(queue.receive(bad).await)?,
            "InvalidParameterValue"
        );
    }
    assert_eq!(queue.counts(), counts(1, 0, 0), "nothing was received");

    let handle = receive_one(&queue, poll(1)).await?.receipt_handle;
    assert_eq!(
        rejected_code(queue.delete_batch(&[]).await)?,
        "EmptyBatchRequest"
    );
    let eleven = vec![handle.clone(); 11];
    assert_eq!(
        rejected_code(queue.delete_batch(&eleven).await)?,
        "TooManyEntriesInBatchRequest"
    );
    assert_eq!(
        rejected_code(queue.change_visibility_batch(&[]).await)?,
        "EmptyBatchRequest"
    );
    let eleven = vec![change(&handle, Duration::ZERO); 11];
    assert_eq!(
        rejected_code(queue.change_visibility_batch(&eleven).await)?,
        "TooManyEntriesInBatchRequest"
    );
    assert_eq!(
        queue.counts(),
        counts(0, 1, 0),
        "rejected batches changed nothing"
    );

    let too_late = queue.send_with(SendMessage::new("x").delay(secs(15 * 60 + 1)));
    assert_eq!(rejected_code(too_late)?, "InvalidParameterValue");
    assert_eq!(queue.counts().total(), 1, "nothing was sent");
    Ok(())
}

#[test]
fn invalid_settings_are_named() -> Result<()> {
    let dead_letters = EmbeddedQueue::new("dlq");
    let setting = |result: Result<EmbeddedQueue, ConfigError>| match result {
        Err(error) => Some(error.setting),
        Ok(_) => None,
    };
    let builder = || EmbeddedQueue::builder("jobs");
    let hours_12 = secs(12 * 3600);
    assert_eq!(
        setting(
            builder()
                .visibility_timeout(hours_12 + Duration::from_millis(1))
                .build()
        ),
        Some("visibility_timeout")
    );
    assert_eq!(setting(builder().delay(secs(901)).build()), Some("delay"));
    assert_eq!(
        setting(builder().redrive(&dead_letters, 0).build()),
        Some("max_receive_count")
    );
    assert_eq!(
        setting(builder().redrive(&dead_letters, 1001).build()),
        Some("max_receive_count")
    );
    let limits = builder()
        .visibility_timeout(hours_12)
        .delay(secs(900))
        .redrive(&dead_letters, 1000)
        .build();
    ensure!(
        limits.is_ok(),
        "the limits themselves are allowed: {limits:?}"
    );
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn dropping_a_pending_receive_loses_nothing() -> Result<()> {
    use futures_util::FutureExt as _;

    let queue = EmbeddedQueue::new("jobs");
    let mut pending = queue.receive(request(10, secs(20)));
    assert!(
        (&mut pending).now_or_never().is_none(),
        "waits: the queue is empty"
    );
    // The send wakes the pending receive, which is dropped before it runs again.
    let id = queue.send("payload");
    drop(pending);
    assert_eq!(queue.counts(), counts(1, 0, 0));

    // A receive cut short by a timeout loses nothing either.
    let cut_short = tokio::time::timeout(secs(1), queue.receive(request(10, secs(20)))).await;
    let message = match cut_short {
        Ok(received) => received?.pop().context("the message was visible")?,
        Err(elapsed) => bail!("the message was visible, yet the receive waited: {elapsed}"),
    };
    assert_eq!((message.receive_count(), message.message_id), (1, id));

    let late = queue.clone();
    tokio::spawn(async move {
        sleep(secs(5)).await;
        late.send("late")
    });
    let timed_out = tokio::time::timeout(secs(2), queue.receive(request(10, secs(20)))).await;
    assert!(timed_out.is_err(), "nothing was visible within 2 s");
    sleep(secs(5)).await;
    assert_eq!(receive_one(&queue, poll(10)).await?.body, "late");
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn call_faults_fire_once_per_armed_call_and_are_counted() -> Result<()> {
    let queue = EmbeddedQueue::new("jobs");
    queue.send("payload");
    let faults = queue.faults();

    faults.throttle_next(Operation::Receive, 2);
    for _ in 0..2 {
        match queue.receive(poll(1)).await {
            Err(BackendError::Throttled { operation, .. }) => {
                assert_eq!(operation, "ReceiveMessage");
            }
            other => bail!("expected a throttle, got {other:?}"),
        }
    }
    assert_eq!(
        queue.counts(),
        counts(1, 0, 0),
        "a throttled receive took nothing"
    );
    let message = receive_one(&queue, poll(1)).await?;
    assert_eq!(faults.injected(Operation::Receive).throttled, 2);

    faults.fail_next(Operation::DeleteBatch, 1);
    let failed = queue
        .delete_batch(std::slice::from_ref(&message.receipt_handle))
        .await;
    assert!(
        matches!(failed, Err(BackendError::Transient { .. })),
        "expected a transient failure, got {failed:?}"
    );
    assert!(failed.is_err_and(|error| error.is_retryable()));
    assert_eq!(
        queue.counts(),
        counts(0, 1, 0),
        "a failed delete deleted nothing"
    );

    faults.reject_next(Operation::ChangeVisibilityBatch, 1);
    let rejected = queue
        .change_visibility_batch(&[change(&message.receipt_handle, Duration::ZERO)])
        .await;
    assert_eq!(rejected_code(rejected)?, "AccessDenied");

    faults.throttle_next(Operation::Attributes, 1);
    assert!(matches!(
        queue.attributes().await,
        Err(BackendError::Throttled { .. })
    ));
    assert!(queue.attributes().await.is_ok(), "one throttle was armed");

    assert_eq!(
        faults.injected(Operation::DeleteBatch),
        InjectedFaults {
            failed: 1,
            ..InjectedFaults::default()
        }
    );
    assert_eq!(
        faults.injected(Operation::ChangeVisibilityBatch).rejected,
        1
    );
    assert_eq!(faults.injected(Operation::Attributes).throttled, 1);
    let stats = queue.stats();
    assert_eq!(
        (
            stats.receive_calls,
            stats.delete_batch_calls,
            stats.attributes_calls
        ),
        (3, 1, 2),
        "failed calls count as calls"
    );

    faults.fail_next(Operation::DeleteBatch, 5);
    faults.clear();
    let deleted = queue.delete_batch(&[message.receipt_handle]).await?;
    assert_eq!(error_kinds(&deleted), [None], "clear disarmed the faults");
    assert_eq!(
        faults.injected(Operation::DeleteBatch).failed,
        1,
        "counts are kept"
    );
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn entry_faults_fail_the_next_entries_inside_a_successful_call() -> Result<()> {
    let queue = EmbeddedQueue::new("jobs");
    queue.send_many(["a", "b", "c"]);
    let messages = queue.receive(poll(3)).await?;
    let handles: Vec<_> = messages.iter().map(|m| m.receipt_handle.clone()).collect();

    queue.faults().fail_next_entries(Operation::DeleteBatch, 2);
    let results = queue.delete_batch(&handles).await?;
    use EntryErrorKind::Internal;
    assert_eq!(
        error_kinds(&results),
        [Some(Internal), Some(Internal), None]
    );
    if let Some(Err(error)) = results.first() {
        assert_eq!(error.code, "InternalError");
        assert!(error.is_retryable());
    }
    assert_eq!(
        queue.counts(),
        counts(0, 2, 0),
        "failed entries were not applied"
    );
    let retried = queue.delete_batch(&handles[..2]).await?;
    assert_eq!(error_kinds(&retried), [None, None]);

    queue.send("d");
    let handle = receive_one(&queue, poll(1)).await?.receipt_handle;
    queue
        .faults()
        .fail_next_entries(Operation::ChangeVisibilityBatch, 1);
    let results = queue
        .change_visibility_batch(&[
            change(&handle, Duration::ZERO),
            change(&handle, Duration::ZERO),
        ])
        .await?;
    assert_eq!(error_kinds(&results), [Some(Internal), None]);

    let faults = queue.faults();
    assert_eq!(faults.injected(Operation::DeleteBatch).failed_entries, 2);
    assert_eq!(
        faults
            .injected(Operation::ChangeVisibilityBatch)
            .failed_entries,
        1
    );
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn added_latency_slows_every_call_until_removed() -> Result<()> {
    let queue = EmbeddedQueue::new("jobs");
    queue.send("payload");
    let faults = queue.faults();
    faults.set_latency(Operation::Receive, Some(Duration::from_millis(250)));
    faults.set_latency(Operation::Attributes, Some(Duration::from_millis(100)));

    let start = Instant::now();
    receive_one(&queue, poll(1)).await?;
    assert!(queue.receive(poll(1)).await?.is_empty());
    queue.attributes().await?;
    assert_eq!(start.elapsed(), Duration::from_millis(600));
    assert_eq!(faults.injected(Operation::Receive).delayed, 2);

    faults.set_latency(Operation::Receive, Some(Duration::ZERO));
    faults.set_latency(Operation::Attributes, None);
    let start = Instant::now();
    queue.receive(poll(1)).await?;
    queue.attributes().await?;
    assert_eq!(start.elapsed(), Duration::ZERO);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn stats_count_calls_entries_and_messages() -> Result<()> {
    let queue = EmbeddedQueue::new("jobs");
    queue.send_many(["a", "b", "c"]);
    queue.send("d");
    let messages = queue.receive(poll(10)).await?;
    let handles: Vec<_> = messages.iter().map(|m| m.receipt_handle.clone()).collect();
    queue
        .change_visibility_batch(&[change(&handles[0], secs(60))])
        .await?;
    queue.delete_batch(&handles[1..]).await?;
    queue.delete_batch(&handles[1..2]).await?; // stale: counts as an entry, not a delete
    queue.receive(poll(10)).await?;
    queue.attributes().await?;

    assert_eq!(
        queue.stats(),
        RequestStats {
            receive_calls: 2,
            empty_receives: 1,
            delete_batch_calls: 2,
            delete_batch_entries: 4,
            change_visibility_batch_calls: 1,
            change_visibility_batch_entries: 1,
            attributes_calls: 1,
            messages_sent: 4,
            messages_received: 4,
            messages_deleted: 3,
            messages_dead_lettered: 0,
            deduplicated_sends: 0,
            replayed_receives: 0,
        }
    );
    assert_eq!(queue.stats().api_calls(), 6);
    queue.reset_stats();
    assert_eq!(queue.stats(), RequestStats::default());
    Ok(())
}

/// Real threads and real time: producers on OS threads, consumers long-polling on a
/// multi-threaded runtime. Every message is received and deleted exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_producers_and_consumers_lose_and_duplicate_nothing() -> Result<()> {
    const PRODUCERS: usize = 4;
    const PER_PRODUCER: usize = 2_500;
    let queue = EmbeddedQueue::new("jobs");
    // Consumers stop at an empty receive only once every producer is done: a producer
    // thread a loaded machine holds back for a poll's length ends nothing early.
    let produced = Arc::new(std::sync::atomic::AtomicBool::new(false));

    let mut consumers = Vec::new();
    for _ in 0..3 {
        let queue = queue.clone();
        let produced = Arc::clone(&produced);
        consumers.push(tokio::spawn(async move {
            let mut bodies = Vec::new();
            loop {
                let done = produced.load(std::sync::atomic::Ordering::Acquire);
                let messages = queue.receive(request(10, SECOND)).await?;
                if messages.is_empty() {
                    if done {
                        return Ok::<_, anyhow::Error>(bodies);
                    }
                    continue;
                }
                let handles: Vec<_> = messages.iter().map(|m| m.receipt_handle.clone()).collect();
                let results = queue.delete_batch(&handles).await?;
                ensure!(
                    results.iter().all(Result::is_ok),
                    "delete failed: {results:?}"
                );
                bodies.extend(messages.into_iter().map(|m| m.body));
            }
        }));
    }
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|producer| {
            let queue = queue.clone();
            std::thread::spawn(move || {
                for n in 0..PER_PRODUCER {
                    queue.send(format!("{producer}-{n}"));
                }
            })
        })
        .collect();
    for producer in producers {
        if producer.join().is_err() {
            bail!("a producer panicked");
        }
    }
    produced.store(true, std::sync::atomic::Ordering::Release);

    let mut seen = HashSet::new();
    for consumer in consumers {
        for body in consumer.await?? {
            ensure!(seen.insert(body.clone()), "{body} was delivered twice");
        }
    }
    assert_eq!(seen.len(), PRODUCERS * PER_PRODUCER);
    assert_eq!(queue.counts(), counts(0, 0, 0));
    Ok(())
}
