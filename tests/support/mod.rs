//! What the emulator-backed tests and benches share: the endpoint check, queues,
//! sending, counts, worker processes, and moto's calls taken in turn.
#![allow(dead_code)] // each test file uses a different part

pub mod decisions;
pub mod ecs;
pub mod in_turn;
pub mod process;
pub mod proxy;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use spotq::backend::Backend;
use spotq::{Message, SqsBackend, handler::Handler};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep};

/// The emulator endpoint the AWS SDK will use, checked to be on loopback: these tests
/// create and delete queues and must never reach a real account.
pub fn emulator_endpoint() -> String {
    let endpoint = std::env::var("AWS_ENDPOINT_URL_SQS")
        .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
        .unwrap_or_default();
    assert!(
        endpoint.starts_with("http://127.0.0.1:") || endpoint.starts_with("http://localhost:"),
        "AWS_ENDPOINT_URL must point at an emulator on loopback (got {endpoint:?}): \
         run the tests through scripts/test, which starts moto"
    );
    endpoint
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}-{:08x}", std::process::id(), fastrand::u32(..))
}

/// Creates a queue through the SDK and connects to it by name, the way a worker does.
pub async fn create_queue(name: &str, attributes: &[(QueueAttributeName, String)]) -> SqsBackend {
    emulator_endpoint();
    let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let client = aws_sdk_sqs::Client::new(&config);
    let mut create = client.create_queue().queue_name(name);
    for (key, value) in attributes {
        create = create.attributes(key.clone(), value);
    }
    create.send().await.expect("create queue");
    SqsBackend::from_env(name).await.expect("connect by name")
}

pub async fn send(queue: &SqsBackend, bodies: impl IntoIterator<Item = String>) {
    send_batches(queue, bodies.into_iter().map(|body| (None, body))).await;
}

/// Sends `(group, body)` pairs, in order, to a FIFO queue with content-based
/// deduplication.
pub async fn send_to_groups(
    queue: &SqsBackend,
    messages: impl IntoIterator<Item = (String, String)>,
) {
    send_batches(
        queue,
        messages
            .into_iter()
            .map(|(group, body)| (Some(group), body)),
    )
    .await;
}

async fn send_batches(
    queue: &SqsBackend,
    messages: impl IntoIterator<Item = (Option<String>, String)>,
) {
    let messages: Vec<_> = messages.into_iter().collect();
    for chunk in messages.chunks(10) {
        let mut batch = queue
            .client()
            .send_message_batch()
            .queue_url(queue.queue_url());
        for (index, (group, body)) in chunk.iter().enumerate() {
            let entry = aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                .id(index.to_string())
                .message_body(body)
                .set_message_group_id(group.clone())
                .build()
                .expect("entry");
            batch = batch.entries(entry);
        }
        let output = batch.send().await.expect("send batch");
        assert!(output.failed().is_empty(), "{:?}", output.failed());
    }
}

/// Resolves once `done` reports true, polling; panics after `limit`.
pub async fn until(limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < limit,
            "condition not met within {limit:?}"
        );
        sleep(Duration::from_millis(20)).await;
    }
}

pub async fn counts(queue: &SqsBackend) -> (u64, u64, u64) {
    let counts = queue.attributes().await.expect("attributes").counts;
    (counts.visible, counts.not_visible, counts.delayed)
}

/// How many times each body was handled, by the handlers [`Seen::handler`] makes.
#[derive(Clone, Debug, Default)]
pub struct Seen(Arc<Mutex<HashMap<String, u32>>>);

impl Seen {
    /// A handler that counts each message's body and acknowledges it.
    pub fn handler(&self) -> impl Handler {
        let seen = self.clone();
        move |message: Message| {
            *seen
                .0
                .lock()
                .expect("lock")
                .entry(message.body().to_owned())
                .or_default() += 1;
            async {}
        }
    }

    /// The bodies handled so far, each with how many times.
    pub fn counts(&self) -> HashMap<String, u32> {
        self.0.lock().expect("lock").clone()
    }
}

/// Takes every message off the queue and deletes it, as workers would.
pub async fn drain(queue: &SqsBackend) {
    loop {
        let received = queue
            .client()
            .receive_message()
            .queue_url(queue.queue_url())
            .max_number_of_messages(10)
            .send()
            .await
            .expect("receive");
        let messages = received.messages();
        if messages.is_empty() {
            break;
        }
        for message in messages {
            queue
                .client()
                .delete_message()
                .queue_url(queue.queue_url())
                .receipt_handle(message.receipt_handle().expect("handle"))
                .send()
                .await
                .expect("delete");
        }
    }
    assert_eq!(counts(queue).await, (0, 0, 0));
}

/// The bodies the test workers recorded as `event` in their shared log file.
pub fn recorded(events: &Path, event: &str) -> BTreeSet<String> {
    std::fs::read_to_string(events)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split_once(' '))
        .filter(|(kind, _)| *kind == event)
        .map(|(_, body)| body.to_owned())
        .collect()
}

/// A plain HTTP `POST path` to the emulator, with `headers` (each ending in `\r\n`) and
/// `body`, for what no SDK client of the workspace sends (moto's own API, EC2): the
/// whole response, head and body.
pub async fn post_to_emulator(path: &str, headers: &str, body: &str) -> String {
    let endpoint = emulator_endpoint();
    let authority = endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\n{headers}\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = TcpStream::connect(&authority)
        .await
        .expect("connect to the emulator");
    stream
        .write_all(request.as_bytes())
        .await
        .unwrap_or_else(|error| panic!("send POST {path}: {error}"));
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .unwrap_or_else(|error| panic!("read POST {path}: {error}"));
    response
}
