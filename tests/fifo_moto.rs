//! FIFO queues through the real `aws-sdk-sqs` against moto server on loopback: two
//! workers on one queue run the messages of each group one at a time in send order;
//! a failure in the middle of a group sends the rest of the group back to run after the
//! retry; a worker shut down mid-group deletes a prefix of each group and releases the
//! rest, and the next worker takes each group from its first unprocessed message.
//!
//! moto blocks a message group while one of its messages is in flight and hands a group
//! out in send order, as SQS does. Where it differs, and what these tests do about it:
//! - When several in-flight messages of a group lapse at once (their visibility timeout
//!   runs out), moto hands out the group's last one first (it drops each lapsed message
//!   from its in-flight set only as it reaches it, so the earlier ones still see their
//!   group blocked by the later ones); SQS hands them out from the first. No message
//!   lapses here: a worker that let the messages waiting behind a group's running one
//!   lapse would show up as a group run out of order, not as a hang, and the visibility
//!   timeouts are short for that.
//! - Its calls are not atomic, as SQS's are: two receives at once can both take the same
//!   message (each checks that it is visible and its group free before either marks it
//!   taken), and two deletes at once can put a deleted message back (each rebuilds the
//!   queue's list of messages without its own and stores it; the last store wins),
//!   though both answer success. The workers reach moto through
//!   [`InTurn`](support::in_turn::InTurn), which sends receives one at a time and
//!   deletes one at a time.
//! - A long poll on a FIFO queue whose visible messages all belong to blocked groups
//!   spins for its whole wait (its wait ends as soon as any message is visible), and a
//!   few of them at once slow every other call to moto to seconds, so that messages
//!   lapse before their deletes land. The workers short-poll ([`POLL`]).

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use spotq::{
    Message, SqsBackend, Worker, config::Backoff, config::RetryPolicy, shutdown::ShutdownHandle,
};
use support::in_turn::InTurn;
use support::{counts, create_queue, send_to_groups, unique, until};
use tokio::time::sleep;

/// The workers' receive wait: none (see the module docs).
const POLL: Duration = Duration::ZERO;

/// A FIFO queue with content-based deduplication and a short visibility timeout.
async fn fifo_queue(prefix: &str, visibility_timeout: Duration) -> SqsBackend {
    create_queue(
        &format!("{}.fifo", unique(prefix)),
        &[
            (QueueAttributeName::FifoQueue, "true".to_owned()),
            (
                QueueAttributeName::ContentBasedDeduplication,
                "true".to_owned(),
            ),
            (
                QueueAttributeName::VisibilityTimeout,
                visibility_timeout.as_secs().to_string(),
            ),
        ],
    )
    .await
}

/// Sends `per_group` messages to each of `groups` groups, bodies `"g<group>:<n>"`, in
/// bursts of `burst` messages of a group, the groups' bursts interleaved (as producers
/// would send).
async fn fill(queue: &SqsBackend, groups: usize, per_group: usize, burst: usize) {
    let messages = (0..per_group).step_by(burst).flat_map(|from| {
        (0..groups).flat_map(move |group| {
            (from..per_group.min(from + burst))
                .map(move |n| (format!("g{group}"), format!("g{group}:{n}")))
        })
    });
    send_to_groups(queue, messages).await;
}

fn parse(body: &str) -> (String, usize) {
    let (group, n) = body.split_once(':').expect("group:n");
    (group.to_owned(), n.parse().expect("n"))
}

/// One handler call: its message and the worker that ran it.
#[derive(Clone, Debug)]
struct Call {
    group: String,
    n: usize,
    worker: usize,
}

/// Every handler call of a test's workers, in the order the calls started, and which
/// ran at once.
#[derive(Clone, Default)]
struct Calls(Arc<Mutex<Log>>);

#[derive(Default)]
struct Log {
    started: Vec<Call>,
    ended: usize,
    running: HashMap<String, usize>,
    /// Calls running now, and the most that ran at once, by worker.
    now: HashMap<usize, usize>,
    most: HashMap<usize, usize>,
    /// Calls that started while another message of their group ran.
    overlaps: Vec<Call>,
}

/// A call in progress; it ends when dropped (also when the handler panics or is
/// cancelled).
struct Running {
    calls: Calls,
    group: String,
    worker: usize,
}

impl Calls {
    fn begin(&self, message: &Message, worker: usize) -> Running {
        let (group, n) = parse(message.body());
        let call = Call {
            group: group.clone(),
            n,
            worker,
        };
        let mut log = self.0.lock().expect("lock");
        let running = log.running.entry(group.clone()).or_default();
        *running += 1;
        if *running > 1 {
            log.overlaps.push(call.clone());
        }
        log.started.push(call);
        let now = log.now.entry(worker).or_default();
        *now += 1;
        let now = *now;
        let most = log.most.entry(worker).or_default();
        *most = (*most).max(now);
        Running {
            calls: self.clone(),
            group,
            worker,
        }
    }

    /// Calls that have ended.
    fn ended(&self) -> usize {
        self.0.lock().expect("lock").ended
    }

    /// Most calls that `worker` ran at once, across groups.
    fn most(&self, worker: usize) -> usize {
        self.0
            .lock()
            .expect("lock")
            .most
            .get(&worker)
            .copied()
            .unwrap_or(0)
    }

    /// Whether a call of message `n` of `group` has started.
    fn has_started(&self, group: &str, n: usize) -> bool {
        let log = self.0.lock().expect("lock");
        log.started
            .iter()
            .any(|call| call.group == group && call.n == n)
    }

    /// The calls of each group that `of` picks, in the order they started; panics if
    /// two messages of a group ever ran at once.
    fn per_group(&self, of: impl Fn(&Call) -> bool) -> HashMap<String, Vec<usize>> {
        let log = self.0.lock().expect("lock");
        assert!(
            log.overlaps.is_empty(),
            "messages of one group ran at once: {:?}",
            log.overlaps
        );
        let mut groups: HashMap<String, Vec<usize>> = HashMap::new();
        for call in log.started.iter().filter(|call| of(call)) {
            groups.entry(call.group.clone()).or_default().push(call.n);
        }
        groups
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let mut log = self.calls.0.lock().expect("lock");
        *log.running.get_mut(&self.group).expect("ran") -= 1;
        *log.now.get_mut(&self.worker).expect("ran") -= 1;
        log.ended += 1;
    }
}

fn all(_: &Call) -> bool {
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_run_each_group_in_send_order_one_message_at_a_time() {
    const GROUPS: usize = 20;
    const PER_GROUP: usize = 10;
    let queue = fifo_queue("fifo-order", Duration::from_secs(5)).await;
    // In bursts: most receives hold several messages of a group.
    fill(&queue, GROUPS, PER_GROUP, 5).await;
    let calls = Calls::default();
    let receiving = InTurn::new(&queue);
    // Fewer slots than groups in each worker, so neither can hold every group.
    let worker = |id: usize| {
        let (recorder, done) = (calls.clone(), calls.clone());
        Worker::builder(receiving.clone())
            .concurrency(8)
            .wait_time(POLL)
            .handler(move |message: Message| {
                let running = recorder.begin(&message, id);
                let work = Duration::from_millis(fastrand::u64(0..=60));
                async move {
                    sleep(work).await;
                    drop(running);
                }
            })
            .run_until(until(Duration::from_secs(60), move || {
                done.ended() >= GROUPS * PER_GROUP
            }))
    };
    let (first, second) = tokio::join!(worker(0), worker(1));
    let (first, second) = (first.expect("first worker"), second.expect("second worker"));

    assert_eq!(first.failed + second.failed, 0);
    assert_eq!(
        first.deleted + second.deleted,
        (GROUPS * PER_GROUP) as u64,
        "{first:?} {second:?}"
    );
    assert!(
        first.succeeded > 0 && second.succeeded > 0,
        "both workers did work: {} and {}",
        first.succeeded,
        second.succeeded
    );
    let per_group = calls.per_group(all);
    assert_eq!(per_group.len(), GROUPS);
    for (group, ns) in &per_group {
        assert_eq!(
            ns,
            &(0..PER_GROUP).collect::<Vec<_>>(),
            "group {group} in send order, each message once"
        );
    }
    for worker in 0..2 {
        assert!(
            calls.most(worker) >= 2,
            "worker {worker} ran groups in parallel: at most {} at once",
            calls.most(worker)
        );
    }
    assert_eq!(counts(&queue).await, (0, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_sends_the_rest_of_its_group_back_to_run_after_the_retry_in_order() {
    let queue = fifo_queue("fifo-fail", Duration::from_secs(2)).await;
    fill(&queue, 3, 8, 1).await;
    let calls = Calls::default();
    let (recorder, done) = (calls.clone(), calls.clone());
    let report = Worker::builder(InTurn::new(&queue))
        .wait_time(POLL)
        .retry(RetryPolicy::Backoff(Backoff::new(
            Duration::ZERO,
            Duration::ZERO,
        )))
        .handler(move |message: Message| {
            let running = recorder.begin(&message, 0);
            let fails = message.body() == "g0:4" && message.receive_count() == 1;
            async move {
                sleep(Duration::from_millis(20)).await;
                drop(running);
                if fails {
                    return Err("g0:4 fails on its first receive");
                }
                Ok(())
            }
        })
        // 24 messages and the one retry.
        .run_until(until(Duration::from_secs(30), move || done.ended() >= 25))
        .await
        .expect("worker runs");

    assert_eq!((report.succeeded, report.failed), (24, 1), "{report:?}");
    let per_group = calls.per_group(all);
    assert_eq!(per_group["g0"], vec![0, 1, 2, 3, 4, 4, 5, 6, 7]);
    assert_eq!(per_group["g1"], (0..8).collect::<Vec<_>>());
    assert_eq!(per_group["g2"], (0..8).collect::<Vec<_>>());
    assert_eq!(counts(&queue).await, (0, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_mid_group_deletes_a_prefix_and_the_next_worker_takes_the_rest_in_order() {
    const GROUPS: usize = 2;
    const PER_GROUP: usize = 10;
    let queue = fifo_queue("fifo-handover", Duration::from_secs(2)).await;
    fill(&queue, GROUPS, PER_GROUP, 1).await;
    let calls = Calls::default();
    let worker = |id: usize, work: Duration| {
        let recorder = calls.clone();
        Worker::builder(InTurn::new(&queue))
            .concurrency(10)
            .wait_time(POLL)
            .handler(move |message: Message| {
                let running = recorder.begin(&message, id);
                async move {
                    sleep(work).await;
                    drop(running);
                }
            })
    };

    // The first worker: shutdown begins while each group's third message runs (1 s
    // handlers, well within the grace period); nothing after it starts.
    let shutdown = ShutdownHandle::new();
    let stopper = shutdown.clone();
    let watcher = calls.clone();
    tokio::spawn(async move {
        until(Duration::from_secs(30), || {
            (0..GROUPS).all(|group| watcher.has_started(&format!("g{group}"), 2))
        })
        .await;
        sleep(Duration::from_millis(200)).await;
        stopper.begin();
    });
    let first = worker(0, Duration::from_secs(1))
        .run_with(shutdown)
        .await
        .expect("first worker");

    let ran_first = calls.per_group(|call| call.worker == 0);
    assert_eq!(ran_first.len(), GROUPS);
    for (group, ns) in &ran_first {
        assert_eq!(ns, &(0..ns.len()).collect::<Vec<_>>(), "{group}: a prefix");
        assert!(ns.len() < PER_GROUP, "{group}: stopped mid-group, {ns:?}");
    }
    let deleted: usize = ran_first.values().map(Vec::len).sum();
    assert_eq!(first.deleted, deleted as u64, "{first:?}");
    assert_eq!(first.failed, 0, "{first:?}");
    assert!(first.released > 0, "held messages were released: {first:?}");
    assert_eq!(
        first.released,
        first.received - first.deleted,
        "every message received and not deleted was released: {first:?}"
    );
    assert_eq!(
        counts(&queue).await,
        ((GROUPS * PER_GROUP - deleted) as u64, 0, 0),
        "the rest visible at once, none left to its visibility timeout"
    );

    // The next worker takes each group from its first unprocessed message.
    let done = calls.clone();
    worker(1, Duration::from_millis(50))
        .run_until(until(Duration::from_secs(30), move || {
            done.ended() >= GROUPS * PER_GROUP
        }))
        .await
        .expect("second worker");
    let ran_second = calls.per_group(|call| call.worker == 1);
    for (group, first_ns) in &ran_first {
        assert_eq!(
            ran_second[group],
            (first_ns.len()..PER_GROUP).collect::<Vec<_>>(),
            "{group}"
        );
    }
    assert_eq!(counts(&queue).await, (0, 0, 0));
}
