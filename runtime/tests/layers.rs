//! Handlers as tower services, with layers, on the embedded queue under paused tokio
//! time: a rate limit holds the worker to its rate and holds receiving back (messages do
//! not pile up received and waiting, and the few that wait are heartbeated); the
//! messages of a receive get ready on clones of the service side by side, and a poller
//! waiting for readiness goes on when another poller's messages take the instance it
//! waited on; a user's middleware sees every message and its outcome; a layer's error
//! fails the message; batch handlers and worker specs take layers too.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use spotq::{
    EmbeddedQueue, Message, Outcome, Worker, WorkerSpec, backend::SendMessage, config::QueueSource,
    config::RetryPolicy, config::WorkerConfig, handler::BatchOutcome, testing::run_until_drained,
};
use tokio::time::{Instant, Sleep, sleep, timeout};
use tower::layer::layer_fn;
use tower::timeout::TimeoutLayer;
use tower::{Layer, Service, ServiceBuilder, service_fn};

fn no_backoff() -> RetryPolicy {
    RetryPolicy::Backoff(spotq::config::Backoff::new(Duration::ZERO, Duration::ZERO))
}

/// When each message's handler started, and the most messages ever in flight at the
/// queue (received and not yet deleted) that no handler had started on.
#[derive(Clone, Default)]
struct Starts(Arc<Mutex<Vec<(Instant, u32)>>>);

impl Starts {
    fn record(&self, message: &Message) {
        self.0
            .lock()
            .expect("lock")
            .push((Instant::now(), message.receive_count()));
    }

    fn all(&self) -> Vec<(Instant, u32)> {
        self.0.lock().expect("lock").clone()
    }
}

/// The most starts in any window of `width` (half open).
fn busiest(starts: &[Instant], width: Duration) -> usize {
    starts
        .iter()
        .map(|&from| {
            starts
                .iter()
                .filter(|&&at| at >= from && at < from + width)
                .count()
        })
        .max()
        .unwrap_or(0)
}

#[tokio::test(start_paused = true)]
async fn a_rate_limit_holds_the_worker_to_its_rate_and_holds_receiving_back() {
    // A short visibility timeout: messages of one receive that wait for their turn at
    // the rate limit outlive it unless they are heartbeated.
    let queue = EmbeddedQueue::builder("rated")
        .visibility_timeout(Duration::from_secs(2))
        .build()
        .expect("queue");
    queue.send_many((0..60).map(|n| format!("m-{n}")));
    let starts = Starts::default();
    let recorder = starts.clone();
    // Sampled while the worker runs: messages the queue has handed out, less those a
    // handler has started on.
    let waiting_most = Arc::new(AtomicUsize::new(0));
    let sampler = {
        let (queue, starts, most) = (queue.clone(), starts.clone(), Arc::clone(&waiting_most));
        tokio::spawn(async move {
            loop {
                let handed = queue.stats().messages_received as usize;
                let started = starts.all().len();
                most.fetch_max(handed.saturating_sub(started), Ordering::Relaxed);
                sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let began = Instant::now();
    let worker = Worker::builder(queue.clone())
        .concurrency(64)
        // The rate limit is not `Clone`: a buffer of one before it is, and ready only
        // once the rate limit has taken all but the request it waits with.
        .layer(
            ServiceBuilder::new()
                .buffer(1)
                .rate_limit(5, Duration::from_secs(1)),
        )
        .handler(move |message: Message| {
            recorder.record(&message);
            async {}
        });
    let report = run_until_drained(worker, &queue).await.expect("run");
    sampler.abort();

    assert_eq!(report.succeeded, 60);
    let all = starts.all();
    assert_eq!(all.len(), 60, "every message once");
    assert!(
        all.iter().all(|&(_, receive_count)| receive_count == 1),
        "no message outlived its visibility while it waited: {all:?}"
    );
    let at: Vec<_> = all.iter().map(|&(at, _)| at).collect();
    assert!(
        busiest(&at, Duration::from_secs(1)) <= 5,
        "at most 5 starts a second, saw {}",
        busiest(&at, Duration::from_secs(1))
    );
    assert!(
        began.elapsed() >= Duration::from_secs(11),
        "{:?}",
        began.elapsed()
    );
    // Without the readiness gate the pollers fill all 64 permits at once.
    let waiting = waiting_most.load(Ordering::Relaxed);
    assert!(
        waiting <= 10,
        "at most one receive's worth waits received and unstarted, saw {waiting}"
    );
}

/// How long a [`Warmup`] takes to get ready for a call.
const WARMUP: Duration = Duration::from_secs(1);

/// A service that sets something up for each call while it gets ready (a connection
/// from a pool, say), which takes [`WARMUP`]; each clone sets up its own.
struct Warmup<S> {
    inner: S,
    warming: Option<Pin<Box<Sleep>>>,
    warm: bool,
}

impl<S> Warmup<S> {
    fn new(inner: S) -> Self {
        Self {
            inner,
            warming: None,
            warm: false,
        }
    }
}

impl<S: Clone> Clone for Warmup<S> {
    fn clone(&self) -> Self {
        Self::new(self.inner.clone())
    }
}

impl<S: Service<Message>> Service<Message> for Warmup<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        if !self.warm {
            let warming = self.warming.get_or_insert_with(|| Box::pin(sleep(WARMUP)));
            ready!(warming.as_mut().poll(cx));
            self.warming = None;
            self.warm = true;
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, message: Message) -> S::Future {
        self.warm = false;
        self.inner.call(message)
    }
}

#[tokio::test(start_paused = true)]
async fn the_messages_of_a_receive_get_ready_side_by_side() {
    let queue = EmbeddedQueue::new("warming");
    queue.send_many((0..20).map(|n| n.to_string()));
    let starts = Starts::default();
    let recorder = starts.clone();
    let began = Instant::now();
    let worker = Worker::builder(queue.clone())
        .concurrency(20)
        .batch_size(10)
        .layer(layer_fn(Warmup::new))
        .handler(move |message: Message| {
            recorder.record(&message);
            async {}
        });
    let report = run_until_drained(worker, &queue).await.expect("run");
    assert_eq!(report.succeeded, 20);
    let at: Vec<_> = starts.all().iter().map(|&(at, _)| at).collect();
    assert_eq!(at.len(), 20, "every message once");
    // Each receive: the instance a poller got ready goes to the first message, the other
    // nine get ready on clones at once, a second later. Got ready one after another (as
    // behind a lock), the nine would start a second apart, the 20 messages over 20 s.
    assert!(
        busiest(&at, Duration::from_millis(500)) >= 9,
        "the rest of a receive start together: {:?}",
        at.iter().map(|at| *at - began).collect::<Vec<_>>()
    );
    let last = at.iter().max().copied().expect("starts");
    assert!(
        last - began <= 5 * WARMUP,
        "20 messages in 2 receives took {:?}",
        last - began
    );
}

#[tokio::test(start_paused = true)]
async fn a_poller_waiting_for_readiness_goes_on_when_another_pollers_messages_take_the_instance() {
    // Two pollers long-poll an empty queue, both past the readiness gate on the one
    // instance the first got ready. Messages sent then go to one poller, whose first
    // takes that instance; that poller then waits for the clone left in its place to get
    // ready, while the other poller's receive returns the next messages, the first of
    // which takes the instance it waits on.
    let queue = EmbeddedQueue::new("warming-pollers");
    let starts = Starts::default();
    let recorder = starts.clone();
    let sender = {
        let queue = queue.clone();
        tokio::spawn(async move {
            sleep(5 * WARMUP).await;
            queue.send_many((0..10).map(|n| format!("a-{n}")));
            sleep(WARMUP * 3 / 2).await;
            queue.send_many((0..10).map(|n| format!("b-{n}")));
            // Received only if the pollers still take turns.
            sleep(5 * WARMUP).await;
            queue.send_many((0..10).map(|n| format!("c-{n}")));
        })
    };
    let handled = {
        let starts = starts.clone();
        async move {
            while starts.all().len() < 30 {
                sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let run = Worker::builder(queue.clone())
        .concurrency(20)
        .pollers(2)
        .batch_size(10)
        .layer(layer_fn(Warmup::new))
        .handler(move |message: Message| {
            recorder.record(&message);
            async {}
        })
        .run_until(handled);
    let report = timeout(Duration::from_secs(60), run)
        .await
        .unwrap_or_else(|_elapsed| {
            panic!(
                "receiving stopped: {} of 30 messages started",
                starts.all().len()
            )
        })
        .expect("run");
    sender.await.expect("sender");
    assert_eq!(report.succeeded, 30);
}

#[tokio::test(start_paused = true)]
async fn on_a_fifo_queue_a_poller_that_looks_does_not_take_the_place_of_one_that_waits() {
    // With serial groups a poller first looks whether the service is ready, without
    // waiting (and without a waker that wakes anyone), then waits its turn: while one
    // poller waits for the service to get ready, the other looks at the same instance.
    let queue = EmbeddedQueue::builder("warming.fifo")
        .fifo()
        .content_based_deduplication()
        .build()
        .expect("a FIFO queue");
    for n in 0..20 {
        queue
            .send_with(SendMessage::new(n.to_string()).group_id(format!("g{}", n % 10)))
            .expect("sent");
    }
    let starts = Starts::default();
    let recorder = starts.clone();
    let worker = Worker::builder(queue.clone())
        .concurrency(20)
        .pollers(2)
        .layer(layer_fn(Warmup::new))
        .handler(move |message: Message| {
            recorder.record(&message);
            async {}
        });
    let report = timeout(Duration::from_secs(60), run_until_drained(worker, &queue))
        .await
        .unwrap_or_else(|_elapsed| {
            panic!(
                "receiving stopped: {} of 20 messages started",
                starts.all().len()
            )
        })
        .expect("run");
    assert_eq!(report.succeeded, 20);
}

/// A user's middleware: counts the messages it sees and the outcomes that come back.
#[derive(Clone, Default)]
struct Tally {
    seen: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
}

#[derive(Clone)]
struct Tallied<S> {
    inner: S,
    tally: Tally,
}

impl<S> Layer<S> for Tally {
    type Service = Tallied<S>;

    fn layer(&self, inner: S) -> Tallied<S> {
        Tallied {
            inner,
            tally: self.clone(),
        }
    }
}

impl<S> Service<Message> for Tallied<S>
where
    S: Service<Message, Response = Outcome>,
    S::Future: Send + 'static,
{
    type Response = Outcome;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Outcome, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, message: Message) -> Self::Future {
        self.tally.seen.fetch_add(1, Ordering::Relaxed);
        let failed = Arc::clone(&self.tally.failed);
        let outcome = self.inner.call(message);
        Box::pin(async move {
            let outcome = outcome.await?;
            if matches!(outcome, Outcome::Fail(_)) {
                failed.fetch_add(1, Ordering::Relaxed);
            }
            Ok(outcome)
        })
    }
}

#[tokio::test(start_paused = true)]
async fn a_users_middleware_sees_every_message_and_its_outcome() {
    let queue = EmbeddedQueue::new("tallied");
    queue.send_many((0..30).map(|n| n.to_string()));
    let tally = Tally::default();
    let worker = Worker::builder(queue.clone())
        .retry(no_backoff())
        .layer(tally.clone())
        .handler(|message: Message| async move {
            // Every third message fails once.
            let n: u32 = message.body().parse().expect("a number");
            if n.is_multiple_of(3) && message.receive_count() == 1 {
                Err("first try")
            } else {
                Ok(())
            }
        });
    let report = run_until_drained(worker, &queue).await.expect("run");
    assert_eq!(report.succeeded, 30);
    assert_eq!(report.failed, 10);
    assert_eq!(tally.seen.load(Ordering::Relaxed), 40);
    assert_eq!(tally.failed.load(Ordering::Relaxed), 10);
}

#[tokio::test(start_paused = true)]
async fn a_layers_error_fails_the_message_which_comes_back() {
    let queue = EmbeddedQueue::new("timed");
    queue.send("slow once");
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let worker = Worker::builder(queue.clone())
        .retry(no_backoff())
        .layer(TimeoutLayer::new(Duration::from_secs(1)))
        .handler(move |message: Message| {
            counter.fetch_add(1, Ordering::Relaxed);
            async move {
                if message.receive_count() == 1 {
                    sleep(Duration::from_secs(5)).await;
                }
            }
        });
    let report = run_until_drained(worker, &queue).await.expect("run");
    assert_eq!(report.failed, 1, "the timeout layer's error failed it");
    assert_eq!(report.succeeded, 1);
    assert_eq!(calls.load(Ordering::Relaxed), 2);
}

/// Fails to get ready the first `failures` times any of its clones is asked.
#[derive(Clone)]
struct Unready<S> {
    inner: S,
    failures: Arc<AtomicUsize>,
}

impl<S> Service<Message> for Unready<S>
where
    S: Service<Message, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = &'static str;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, &'static str>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), &'static str>> {
        let failing = self
            .failures
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                left.checked_sub(1)
            })
            .is_ok();
        if failing {
            return Poll::Ready(Err("not ready"));
        }
        self.inner.poll_ready(cx).map_err(|never| match never {})
    }

    fn call(&mut self, message: Message) -> Self::Future {
        let call = self.inner.call(message);
        Box::pin(async move { call.await.map_err(|never| match never {}) })
    }
}

#[tokio::test(start_paused = true)]
async fn a_service_that_fails_to_get_ready_fails_the_message_which_comes_back() {
    let queue = EmbeddedQueue::new("unready");
    queue.send("once");
    let failures = Arc::new(AtomicUsize::new(4));
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let unready = {
        let failures = Arc::clone(&failures);
        layer_fn(move |inner| Unready {
            inner,
            failures: Arc::clone(&failures),
        })
    };
    let worker = Worker::builder(queue.clone())
        .retry(no_backoff())
        .layer(unready)
        .handler(move |_message: Message| {
            counter.fetch_add(1, Ordering::Relaxed);
            async {}
        });
    let report = run_until_drained(worker, &queue).await.expect("run");
    // The pollers' asking takes some of the failures (a poller leaves a failure to the
    // next message); the rest fail the message, which comes back until one call finds
    // the service ready.
    assert!(report.failed >= 1, "{report:?}");
    assert_eq!(report.succeeded, 1);
    assert_eq!(calls.load(Ordering::Relaxed), 1, "the handler ran once");
    assert_eq!(failures.load(Ordering::Relaxed), 0);
}

#[tokio::test(start_paused = true)]
async fn a_service_is_a_handler_and_a_batch_handler_takes_layers() {
    let queue = EmbeddedQueue::new("served");
    queue.send_many((0..20).map(|n| n.to_string()));
    let worker = Worker::builder(queue.clone())
        .layer(ServiceBuilder::new().concurrency_limit(4))
        .service(service_fn(|message: Message| async move {
            message.body().parse::<u32>().map(|_| Outcome::Ack)
        }));
    let report = run_until_drained(worker, &queue).await.expect("run");
    assert_eq!(report.succeeded, 20);

    let queue = EmbeddedQueue::new("batched");
    queue.send_many((0..20).map(|n| n.to_string()));
    let batches = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&batches);
    let worker = Worker::builder(queue.clone())
        .batch_size(10)
        .layer(tower::layer::layer_fn(move |inner| {
            let counted = Arc::clone(&counted);
            tower::util::MapRequest::new(inner, move |messages: Vec<Message>| {
                counted.fetch_add(1, Ordering::Relaxed);
                messages
            })
        }))
        .batch_handler(|messages: Vec<Message>| async move {
            assert!(!messages.is_empty());
            BatchOutcome::Ack
        });
    let report = run_until_drained(worker, &queue).await.expect("run");
    assert_eq!(report.succeeded, 20);
    assert!(batches.load(Ordering::Relaxed) >= 2);
}

#[tokio::test(start_paused = true)]
async fn a_spec_takes_a_layer_of_its_kind_and_names_a_misfit() {
    let queue = EmbeddedQueue::new("spec-layered");
    queue.send_many((0..10).map(|n| n.to_string()));
    let tally = Tally::default();
    let spec = WorkerSpec::new(
        QueueSource::name("spec-layered"),
        WorkerConfig::default(),
        |_message: Message| async {},
    )
    .layer(tally.clone());
    let worker = spec.worker(queue.clone()).expect("worker");
    let report = run_until_drained(worker, &queue).await.expect("run");
    assert_eq!(report.succeeded, 10);
    assert_eq!(tally.seen.load(Ordering::Relaxed), 10);

    // A per-message layer on a batch spec fails the start, naming the setting.
    let misfit = WorkerSpec::batch(
        QueueSource::name("spec-layered"),
        WorkerConfig::default(),
        |_messages: Vec<Message>| async {},
    )
    .layer(TimeoutLayer::new(Duration::from_secs(1)));
    let error = misfit.worker(queue).expect_err("a misfit layer");
    assert_eq!(error.setting, "layer", "{error}");
}
