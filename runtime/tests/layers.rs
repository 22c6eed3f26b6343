//! Handlers as tower services, with layers, on the embedded queue under paused tokio
//! time: a rate limit holds the worker to its rate and holds receiving back (messages do
//! not pile up received and waiting, and the few that wait are heartbeated); a user's
//! middleware sees every message and its outcome; a layer's error fails the message;
//! batch handlers and worker specs take layers too.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use spotq::{
    EmbeddedQueue, Message, Outcome, Worker, WorkerSpec, config::QueueSource, config::RetryPolicy,
    config::WorkerConfig, handler::BatchOutcome,
};
use tokio::time::{Instant, sleep};
use tower::limit::RateLimitLayer;
use tower::timeout::TimeoutLayer;
use tower::{Layer, Service, ServiceBuilder, service_fn};

async fn drained(queue: EmbeddedQueue) {
    while queue.counts().total() > 0 {
        sleep(Duration::from_millis(50)).await;
    }
}

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
    let report = Worker::builder(queue.clone())
        .concurrency(64)
        .layer(RateLimitLayer::new(5, Duration::from_secs(1)))
        .handler(move |message: Message| {
            recorder.record(&message);
            async {}
        })
        .run_until(drained(queue.clone()))
        .await
        .expect("run");
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

/// A user's middleware: counts the messages it sees and the outcomes that come back.
#[derive(Clone, Default)]
struct Tally {
    seen: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
}

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
    let report = Worker::builder(queue.clone())
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
        })
        .run_until(drained(queue.clone()))
        .await
        .expect("run");
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
    let report = Worker::builder(queue.clone())
        .retry(no_backoff())
        .layer(TimeoutLayer::new(Duration::from_secs(1)))
        .handler(move |message: Message| {
            counter.fetch_add(1, Ordering::Relaxed);
            async move {
                if message.receive_count() == 1 {
                    sleep(Duration::from_secs(5)).await;
                }
            }
        })
        .run_until(drained(queue.clone()))
        .await
        .expect("run");
    assert_eq!(report.failed, 1, "the timeout layer's error failed it");
    assert_eq!(report.succeeded, 1);
    assert_eq!(calls.load(Ordering::Relaxed), 2);
}

#[tokio::test(start_paused = true)]
async fn a_service_is_a_handler_and_a_batch_handler_takes_layers() {
    let queue = EmbeddedQueue::new("served");
    queue.send_many((0..20).map(|n| n.to_string()));
    let report = Worker::builder(queue.clone())
        .layer(ServiceBuilder::new().concurrency_limit(4))
        .service(service_fn(|message: Message| async move {
            message.body().parse::<u32>().map(|_| Outcome::Ack)
        }))
        .run_until(drained(queue.clone()))
        .await
        .expect("run");
    assert_eq!(report.succeeded, 20);

    let queue = EmbeddedQueue::new("batched");
    queue.send_many((0..20).map(|n| n.to_string()));
    let batches = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&batches);
    let report = Worker::builder(queue.clone())
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
        })
        .run_until(drained(queue.clone()))
        .await
        .expect("run");
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
    let report = spec
        .worker(queue.clone())
        .expect("worker")
        .run_until(drained(queue.clone()))
        .await
        .expect("run");
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
