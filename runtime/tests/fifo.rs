//! FIFO queues on the embedded FIFO queue, under paused tokio time: the messages of a
//! group run one at a time in order while groups run in parallel; a failure or a panic
//! in the middle of a group sends the group's later messages back unprocessed, so they
//! run after the retry, in order; shutdown mid-group hands the rest of the group on in
//! order; a batch handler's failed item holds back the items of its group behind it;
//! a group waiting for a slot gets the next one before any poller, and what the worker
//! holds stays within one batch per slot.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use spotq::{
    EmbeddedQueue, Message, RunReport, Worker, backend::SendMessage, config::RetryPolicy,
    handler::BatchOutcome, handler::ItemFailure, shutdown::ShutdownHandle, testing::Runnable,
    testing::run_until_drained,
};
use tokio::time::sleep;

fn fifo_queue(name: &str) -> EmbeddedQueue {
    EmbeddedQueue::builder(name)
        .fifo()
        .content_based_deduplication()
        .visibility_timeout(Duration::from_secs(30))
        .build()
        .expect("a FIFO queue")
}

/// Sends `per_group` messages to each of `groups` groups, interleaved across groups
/// (as producers would), bodies `"<group>:<n>"`.
fn fill(queue: &EmbeddedQueue, groups: usize, per_group: usize) {
    for n in 0..per_group {
        for group in 0..groups {
            queue
                .send_with(SendMessage::new(format!("g{group}:{n}")).group_id(format!("g{group}")))
                .expect("sent");
        }
    }
}

fn no_backoff() -> RetryPolicy {
    RetryPolicy::Backoff(spotq::config::Backoff::new(Duration::ZERO, Duration::ZERO))
}

fn parse(body: &str) -> (String, usize) {
    let (group, n) = body.split_once(':').expect("group:n");
    (group.to_owned(), n.parse().expect("n"))
}

/// Every handler call, in the order the calls started, and how many ran at once.
#[derive(Clone, Default)]
struct Calls {
    started: Arc<Mutex<Vec<(String, usize)>>>,
    running: Arc<Mutex<HashMap<String, usize>>>,
    now: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
    /// Calls that started while another message of their group ran.
    overlaps: Arc<AtomicUsize>,
}

impl Calls {
    /// Records a call's start, and an overlap if another message of its group runs.
    fn begin(&self, body: &str) -> (String, usize) {
        let (group, n) = parse(body);
        self.started.lock().expect("lock").push((group.clone(), n));
        let mut running = self.running.lock().expect("lock");
        let entry = running.entry(group.clone()).or_default();
        *entry += 1;
        if *entry > 1 {
            self.overlaps.fetch_add(1, Ordering::SeqCst);
        }
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        (group, n)
    }

    fn end(&self, group: &str) {
        *self
            .running
            .lock()
            .expect("lock")
            .get_mut(group)
            .expect("ran") -= 1;
        self.now.fetch_sub(1, Ordering::SeqCst);
    }

    /// The calls of each group, in the order they started; no two of a group at once.
    fn per_group(&self) -> HashMap<String, Vec<usize>> {
        assert_eq!(
            self.overlaps.load(Ordering::SeqCst),
            0,
            "messages of one group ran at once"
        );
        let mut groups: HashMap<String, Vec<usize>> = HashMap::new();
        for (group, n) in self.started.lock().expect("lock").iter() {
            groups.entry(group.clone()).or_default().push(*n);
        }
        groups
    }
}

/// Runs `worker` until the queue is empty; fails the test if it is not within an hour
/// (of paused time): messages that keep failing would otherwise keep it busy for ever.
async fn drain_within_an_hour(
    worker: impl Runnable,
    queue: &EmbeddedQueue,
) -> Result<RunReport, spotq::Error> {
    tokio::time::timeout(Duration::from_secs(3600), run_until_drained(worker, queue))
        .await
        .unwrap_or_else(|_| panic!("not drained in an hour: {:?}", queue.counts()))
}

#[tokio::test(start_paused = true)]
async fn groups_run_in_order_one_message_at_a_time_and_in_parallel_across_groups() {
    let queue = fifo_queue("orders.fifo");
    fill(&queue, 100, 10);
    let calls = Calls::default();
    let recorder = calls.clone();
    fastrand::seed(7);
    let worker = Worker::builder(queue.clone())
        .concurrency(64)
        .handler(move |message: Message| {
            let calls = recorder.clone();
            let (group, _) = calls.begin(message.body());
            let work = Duration::from_millis(fastrand::u64(0..=20));
            async move {
                sleep(work).await;
                calls.end(&group);
            }
        });
    let report = drain_within_an_hour(worker, &queue).await.expect("run");
    assert_eq!(report.succeeded, 1000);
    let per_group = calls.per_group();
    assert_eq!(per_group.len(), 100);
    for (group, ns) in &per_group {
        assert_eq!(
            ns,
            &(0..10).collect::<Vec<_>>(),
            "group {group} out of order"
        );
    }
    let most = calls.most.load(Ordering::SeqCst);
    assert!(most <= 64, "{most} handlers at once");
    assert!(most >= 32, "groups run in parallel: at most {most} at once");
}

/// Runs a worker whose handler fails (or panics) on the first receive of `g0:4` and
/// acks everything else; returns the calls per group.
async fn failing_in_the_middle(panics: bool) -> HashMap<String, Vec<usize>> {
    let queue = fifo_queue(if panics { "panics.fifo" } else { "fails.fifo" });
    fill(&queue, 3, 8);
    let calls = Calls::default();
    let recorder = calls.clone();
    let worker = Worker::builder(queue.clone())
        .concurrency(8)
        .retry(no_backoff())
        .handler(move |message: Message| {
            let calls = recorder.clone();
            let (group, n) = calls.begin(message.body());
            let first = message.receive_count() == 1;
            async move {
                sleep(Duration::from_millis(10)).await;
                calls.end(&group);
                if group == "g0" && n == 4 && first {
                    if panics {
                        panic!("g0:4 panics once");
                    }
                    return Err("g0:4 fails once");
                }
                Ok(())
            }
        });
    let report = drain_within_an_hour(worker, &queue).await.expect("run");
    assert_eq!(report.succeeded, 24);
    assert_eq!(report.failed, 1);
    calls.per_group()
}

#[tokio::test(start_paused = true)]
async fn a_failure_sends_the_rest_of_its_group_back_to_run_after_the_retry_in_order() {
    let per_group = failing_in_the_middle(false).await;
    assert_eq!(per_group["g0"], vec![0, 1, 2, 3, 4, 4, 5, 6, 7]);
    assert_eq!(per_group["g1"], (0..8).collect::<Vec<_>>());
    assert_eq!(per_group["g2"], (0..8).collect::<Vec<_>>());
}

#[tokio::test(start_paused = true)]
async fn a_panic_sends_the_rest_of_its_group_back_to_run_after_the_retry_in_order() {
    let per_group = failing_in_the_middle(true).await;
    assert_eq!(per_group["g0"], vec![0, 1, 2, 3, 4, 4, 5, 6, 7]);
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_holds_its_group_until_it_comes_back() {
    let queue = fifo_queue("later.fifo");
    fill(&queue, 1, 4);
    let calls = Calls::default();
    let recorder = calls.clone();
    let worker = Worker::builder(queue.clone()).handler(move |message: Message| {
        let calls = recorder.clone();
        let (group, n) = calls.begin(message.body());
        let first = message.receive_count() == 1;
        async move {
            calls.end(&group);
            if n == 1 && first {
                spotq::Outcome::RetryAfter(Duration::from_secs(5))
            } else {
                spotq::Outcome::Ack
            }
        }
    });
    drain_within_an_hour(worker, &queue).await.expect("run");
    assert_eq!(calls.per_group()["g0"], vec![0, 1, 1, 2, 3]);
}

#[tokio::test(start_paused = true)]
async fn shutdown_mid_group_hands_the_rest_of_the_group_on_in_order() {
    let queue = fifo_queue("handover.fifo");
    fill(&queue, 2, 10);
    let calls = Calls::default();
    let handler = |calls: Calls| {
        move |message: Message| {
            let calls = calls.clone();
            let (group, _) = calls.begin(message.body());
            async move {
                sleep(Duration::from_secs(1)).await;
                calls.end(&group);
            }
        }
    };
    // The first task: shutdown begins 3.5 s in, during each group's fourth message,
    // which finishes within the grace period; nothing after it starts.
    let shutdown = ShutdownHandle::new();
    let stopper = shutdown.clone();
    tokio::spawn(async move {
        sleep(Duration::from_millis(3500)).await;
        stopper.begin();
    });
    let report = Worker::builder(queue.clone())
        .handler(handler(calls.clone()))
        .run_with(shutdown)
        .await
        .expect("first task");
    assert_eq!(report.succeeded, 8);
    assert_eq!(report.released, 12, "the rest of both groups went back");
    assert_eq!(
        queue.counts().visible,
        12,
        "released at once, deleted none out of order"
    );

    // The next task takes each group from its first unprocessed message.
    let worker = Worker::builder(queue.clone()).handler(handler(calls.clone()));
    drain_within_an_hour(worker, &queue)
        .await
        .expect("next task");
    for group in ["g0", "g1"] {
        assert_eq!(
            calls.per_group()[group],
            (0..10).collect::<Vec<_>>(),
            "{group}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_failed_batch_item_holds_back_the_items_of_its_group_behind_it() {
    let queue = fifo_queue("batches.fifo");
    fill(&queue, 2, 3);
    let batches = Arc::new(Mutex::new(Vec::<Vec<String>>::new()));
    let recorder = Arc::clone(&batches);
    let worker = Worker::builder(queue.clone())
        .retry(no_backoff())
        .batch_handler(move |messages: Vec<Message>| {
            let bodies: Vec<String> = messages.iter().map(|m| m.body().to_owned()).collect();
            recorder.lock().expect("lock").push(bodies);
            // g0:1 fails on its first receive; everything else succeeds.
            let failures = messages
                .iter()
                .filter(|m| m.body() == "g0:1" && m.receive_count() == 1)
                .map(|m| ItemFailure::new(m.id(), "g0:1 fails once"));
            let outcome = BatchOutcome::failures(failures.collect::<Vec<_>>());
            async move { outcome }
        });
    let report = drain_within_an_hour(worker, &queue).await.expect("run");
    assert_eq!(report.failed, 1);
    assert_eq!(report.released, 1, "g0:2 was held back, not deleted");
    // g0:0 and g0:1 ran in order, then g0:1 and g0:2 again after the retry; g1 ran once.
    let runs: Vec<(String, usize)> = batches
        .lock()
        .expect("lock")
        .iter()
        .flatten()
        .map(|body| parse(body))
        .collect();
    let of = |group: &str| -> Vec<usize> {
        runs.iter()
            .filter(|(g, _)| g == group)
            .map(|(_, n)| *n)
            .collect()
    };
    assert_eq!(of("g0"), vec![0, 1, 2, 1, 2]);
    assert_eq!(of("g1"), vec![0, 1, 2]);
}

#[tokio::test(start_paused = true)]
async fn groups_beyond_the_free_slots_wait_heartbeated_for_one() {
    // Ten groups of one message: one receive brings ten groups to a worker with two
    // slots. Eight wait for a slot, longer than the visibility timeout.
    let queue = EmbeddedQueue::builder("narrow.fifo")
        .fifo()
        .content_based_deduplication()
        .visibility_timeout(Duration::from_secs(2))
        .build()
        .expect("a FIFO queue");
    fill(&queue, 10, 1);
    let calls = Calls::default();
    let recorder = calls.clone();
    let receive_counts = Arc::new(Mutex::new(Vec::new()));
    let counts = Arc::clone(&receive_counts);
    let worker = Worker::builder(queue.clone())
        .concurrency(2)
        .handler(move |message: Message| {
            let calls = recorder.clone();
            counts.lock().expect("lock").push(message.receive_count());
            let (group, _) = calls.begin(message.body());
            async move {
                sleep(Duration::from_secs(1)).await;
                calls.end(&group);
            }
        });
    let report = drain_within_an_hour(worker, &queue).await.expect("run");
    assert_eq!(report.succeeded, 10);
    assert_eq!(calls.per_group().len(), 10);
    assert!(calls.most.load(Ordering::SeqCst) <= 2, "two slots");
    assert!(
        receive_counts
            .lock()
            .expect("lock")
            .iter()
            .all(|&count| count == 1),
        "no waiting message outlived its visibility: {:?}",
        receive_counts.lock().expect("lock")
    );
    assert!(report.heartbeats > 0);
}

#[tokio::test(start_paused = true)]
async fn what_the_worker_holds_stays_within_one_batch_per_slot_while_receives_overlap() {
    // Forty groups of ten, receives that take 100 ms and four pollers, whose receives
    // overlap: each asks for a whole batch whatever its slots, so messages pile up
    // behind their groups' running ones, up to one batch per slot and no further.
    let queue = fifo_queue("bounded.fifo");
    fill(&queue, 40, 10);
    queue.faults().set_latency(
        spotq::backend::Operation::Receive,
        Some(Duration::from_millis(100)),
    );
    let most = Arc::new(AtomicUsize::new(0));
    let watch = {
        let (queue, most) = (queue.clone(), Arc::clone(&most));
        async move {
            loop {
                let held = usize::try_from(queue.counts().not_visible).expect("a count");
                most.fetch_max(held, Ordering::SeqCst);
                sleep(Duration::from_millis(5)).await;
            }
        }
    };
    let worker = Worker::builder(queue.clone())
        .concurrency(4)
        .pollers(4)
        .batch_size(10)
        .handler(|_message: Message| sleep(Duration::from_millis(200)));
    let report = tokio::select! {
        report = drain_within_an_hour(worker, &queue) => report.expect("run"),
        () = watch => unreachable!("the watch never ends"),
    };
    assert_eq!(report.succeeded, 400);
    let most = most.load(Ordering::SeqCst);
    assert!(
        most <= 40,
        "held {most} messages with 4 slots of batches of 10"
    );
    assert!(
        most > 20,
        "messages waited behind their groups: held at most {most}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_group_waiting_for_a_slot_gets_it_before_a_poller() {
    // Ten groups of one message come in one receive to a worker with two slots; the
    // queue is empty after it, so a poller that takes a freed slot long-polls with it
    // for 20 s. The eight groups waiting take each freed slot first: five rounds of
    // 1 s handlers, not a long poll between them.
    let queue = fifo_queue("waiting.fifo");
    fill(&queue, 10, 1);
    let started = tokio::time::Instant::now();
    let worker = Worker::builder(queue.clone())
        .concurrency(2)
        .pollers(2)
        .wait_time(Duration::from_secs(20))
        .handler(|_message: Message| sleep(Duration::from_secs(1)));
    let report = drain_within_an_hour(worker, &queue).await.expect("run");
    assert_eq!(report.succeeded, 10);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "drained in {took:?}");
}

#[tokio::test(start_paused = true)]
async fn heartbeats_off_fail_the_start_on_a_fifo_queue_with_a_per_message_handler() {
    let queue = fifo_queue("no-heartbeat.fifo");
    fill(&queue, 1, 3);
    let error = Worker::builder(queue.clone())
        .heartbeat(spotq::config::Heartbeat::Off)
        .handler(|_: Message| async {})
        .run_until(sleep(Duration::from_secs(5)))
        .await
        .expect_err("a group's waiting messages would lapse");
    assert!(
        matches!(&error, spotq::Error::Config(config) if config.setting == "heartbeat"),
        "{error}"
    );
    assert_eq!(queue.counts().visible, 3, "nothing received");
    // A batch handler runs a receive's messages at once: no message waits behind another.
    let worker = Worker::builder(queue.clone())
        .heartbeat(spotq::config::Heartbeat::Off)
        .batch_handler(|_: Vec<Message>| async { BatchOutcome::Ack });
    let report = drain_within_an_hour(worker, &queue)
        .await
        .expect("a batch handler may run without heartbeats");
    assert_eq!(report.deleted, 3);
}

#[tokio::test(start_paused = true)]
async fn a_group_s_wait_for_a_slot_is_not_counted_against_the_handler_timeout() {
    let queue = fifo_queue("slot-wait.fifo");
    // Ten one-message groups in one receive, one slot: the last waits 18 s for its turn.
    fill(&queue, 10, 1);
    let calls = Calls::default();
    let recorder = calls.clone();
    let worker = Worker::builder(queue.clone())
        .concurrency(1)
        .handler_timeout(Duration::from_secs(5))
        .handler(move |message: Message| {
            let recorder = recorder.clone();
            async move {
                let (group, _) = recorder.begin(message.body());
                sleep(Duration::from_secs(2)).await;
                recorder.end(&group);
            }
        });
    let report = drain_within_an_hour(worker, &queue)
        .await
        .expect("worker runs");
    assert_eq!(report.received, 10, "each group received once: {report:?}");
    assert_eq!((report.released, report.failed), (0, 0), "{report:?}");
    assert_eq!(report.deleted, 10);
    assert!(calls.per_group().values().all(|runs| runs == &[0]));
}

#[tokio::test(start_paused = true)]
async fn a_group_s_next_message_waits_until_the_delete_of_the_one_before_is_applied() {
    let queue = fifo_queue("lost-delete.fifo");
    fill(&queue, 1, 3);
    // The first delete is refused for good: g0:0 stays in flight, to come back once its
    // visibility timeout (30 s) lapses.
    queue
        .faults()
        .reject_next(spotq::backend::Operation::DeleteBatch, 1);
    let calls = Calls::default();
    let recorder = calls.clone();
    let worker = Worker::builder(queue.clone()).handler(move |message: Message| {
        let recorder = recorder.clone();
        async move {
            let (group, _) = recorder.begin(message.body());
            recorder.end(&group);
        }
    });
    let report = drain_within_an_hour(worker, &queue)
        .await
        .expect("worker runs");
    let runs = calls.per_group().remove("g0").expect("g0 ran");
    assert!(
        runs.is_sorted(),
        "a message ran after a later one of its group: {runs:?} ({report:?})"
    );
    assert_eq!(runs, [0, 0, 1, 2], "g0:0 again, then the rest in order");
    assert_eq!(report.delete_failed, 1, "{report:?}");
}
