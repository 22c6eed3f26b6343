//! Bad input through the real SDK against moto on loopback: bodies at the size limit
//! and one byte over, empty bodies, bodies that are not the typed handler's JSON
//! (dead-lettered by the redrive policy while the rest flow on), unusual attributes and
//! characters; real worker processes whose logs, at the default level, hold the failures
//! but neither the bodies nor the credentials; bad settings and missing environment
//! stopping a worker binary at start, naming the setting.
//!
//! moto accepts some messages SQS refuses (an empty body, characters outside SQS's set,
//! more than 10 attributes): the embedded queue refuses those as SQS does, tested in
//! `runtime/tests/bad_input.rs`.

mod support;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use aws_sdk_sqs::types::{MessageAttributeValue, QueueAttributeName};
use serde_json::Value;
use spotq::backend::{Backend, MessageAttribute, ReceiveRequest};
use spotq::{SqsBackend, backend::BackendError, backend::SendMessage};
use support::process::signal;
use support::{counts, create_queue, send, unique};
use tokio::time::{Instant, sleep};

/// The largest message SQS takes (and moto: it counts the body alone).
const MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// What bodies that must never be logged carry.
const BODY_SECRET: &str = "hunter2-body-do-not-log";
/// The credentials the worker runs with, which must never be logged either.
const SECRET_KEY: &str = "secret-key-do-not-log";
const SESSION_TOKEN: &str = "session-token-do-not-log";

fn receive_request() -> ReceiveRequest {
    ReceiveRequest {
        max_messages: 10,
        wait_time: Duration::from_secs(1),
        visibility_timeout: Some(Duration::from_secs(60)),
        attempt_id: None,
    }
}

/// Every body in `queue` (received and left invisible: nobody else reads it).
async fn bodies(queue: &SqsBackend) -> BTreeSet<String> {
    let mut bodies = BTreeSet::new();
    loop {
        let messages = queue.receive(receive_request()).await.expect("receive");
        if messages.is_empty() {
            return bodies;
        }
        bodies.extend(messages.into_iter().map(|message| message.body));
    }
}

/// A main queue whose failures go to a dead-letter queue after `max_receives`, with a
/// short visibility timeout.
async fn queue_with_dead_letters(prefix: &str, max_receives: u32) -> (SqsBackend, SqsBackend) {
    let dead_letters = create_queue(&unique(&format!("{prefix}-dlq")), &[]).await;
    let arn = dead_letters
        .client()
        .get_queue_attributes()
        .queue_url(dead_letters.queue_url())
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("DLQ attributes")
        .attributes()
        .and_then(|attributes| attributes.get(&QueueAttributeName::QueueArn).cloned())
        .expect("DLQ ARN");
    let redrive =
        format!(r#"{{"deadLetterTargetArn":"{arn}","maxReceiveCount":"{max_receives}"}}"#);
    let queue = create_queue(
        &unique(prefix),
        &[
            (QueueAttributeName::RedrivePolicy, redrive),
            (QueueAttributeName::VisibilityTimeout, "2".to_owned()),
        ],
    )
    .await;
    (queue, dead_letters)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_largest_body_sqs_takes_round_trips_and_one_byte_more_is_refused_on_send() {
    let queue = create_queue(&unique("large"), &[]).await;
    let largest: String = (0..MAX_MESSAGE_BYTES)
        .map(|n| char::from(b'a' + (n % 26) as u8))
        .collect();
    queue
        .send(SendMessage::new(largest.clone()))
        .await
        .expect("1 MiB is the limit, inclusive");
    let received = queue.receive(receive_request()).await.expect("receive");
    assert_eq!(received.len(), 1);
    assert!(received[0].body == largest, "received intact");

    let over = SendMessage::new("x".repeat(MAX_MESSAGE_BYTES + 1));
    match queue.send(over).await {
        Err(BackendError::Rejected {
            operation,
            code,
            message,
        }) => {
            assert_eq!(
                (operation, code.as_str()),
                ("SendMessage", "InvalidParameterValue")
            );
            assert!(
                message.contains("1048576 bytes"),
                "a clear error: {message}"
            );
        }
        other => panic!("one byte over is refused as invalid, got {other:?}"),
    }
    assert_eq!(counts(&queue).await, (0, 1, 0), "only the first was queued");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusual_attributes_and_characters_round_trip_through_the_sdk() {
    let queue = create_queue(&unique("unusual"), &[]).await;
    // The edges of the characters SQS allows, and text that needs escaping in XML/JSON.
    let body = "\t\n\r \u{D7FF}\u{E000}\u{FFFD}\u{10000}\u{10FFFF} ünïcødé 🚀 \"q\" <x/>&amp; \\";
    let binary: Vec<u8> = (0..=255).collect();
    let mut message = SendMessage::new(body)
        .attribute(
            "blob",
            MessageAttribute {
                data_type: "Binary".to_owned(),
                string_value: None,
                binary_value: Some(binary.clone()),
            },
        )
        .attribute(
            "count",
            MessageAttribute {
                data_type: "Number.int".to_owned(),
                string_value: Some("-12345678901234567890".to_owned()),
                binary_value: None,
            },
        )
        .attribute("note", MessageAttribute::string(body));
    for n in 3..10 {
        message = message.attribute(format!("attr.{n}-x_y"), MessageAttribute::string("v"));
    }
    queue.send(message).await.expect("ten attributes");

    let mut received = queue.receive(receive_request()).await.expect("receive");
    assert_eq!(received.len(), 1);
    let received = received.remove(0);
    assert_eq!(received.body, body);
    let attributes = &received.message_attributes;
    assert_eq!(attributes.len(), 10, "{attributes:?}");
    assert_eq!(attributes["blob"].data_type, "Binary");
    assert_eq!(
        attributes["blob"].binary_value.as_deref(),
        Some(binary.as_slice())
    );
    assert_eq!(attributes["count"].data_type, "Number.int");
    assert_eq!(
        attributes["count"].string_value.as_deref(),
        Some("-12345678901234567890")
    );
    assert_eq!(attributes["note"].string_value.as_deref(), Some(body));
    assert_eq!(attributes["attr.9-x_y"].string_value.as_deref(), Some("v"));
}

/// A worker binary run as a child process, logging to a file.
struct Process {
    child: Child,
    log: PathBuf,
}

impl Process {
    /// `binary` with the emulator's endpoint, `env` and the secret credentials; JSON
    /// logs at the default level (`RUST_LOG` unset).
    fn start(binary: &str, env: &[(&str, &str)]) -> Self {
        let log = std::env::temp_dir().join(format!("{}.log", unique("spotq-bad-input")));
        let file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(binary)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .env("AWS_SESSION_TOKEN", SESSION_TOKEN)
            .env("SPOTQ_LOG_FORMAT", "json")
            .env("SPOTQ_HTTP_ADDR", "127.0.0.1:0")
            .env_remove("RUST_LOG")
            .env_remove("ECS_AGENT_URI")
            .env_remove("ECS_CONTAINER_METADATA_URI_V4")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .spawn()
            .expect("start the worker");
        Self { child, log }
    }

    fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// SIGTERM, then the exit, within `limit`.
    async fn stop(&mut self, limit: Duration) {
        signal(self.child.id(), "TERM");
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(status.success(), "{status}: {:#?}", self.lines());
                return;
            }
            assert!(start.elapsed() < limit, "no exit: {:#?}", self.lines());
            sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Sends each body on its own; returns the message ids.
async fn send_each(queue: &SqsBackend, bodies: &BTreeSet<String>) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    for body in bodies {
        ids.insert(
            queue
                .send(SendMessage::new(body.clone()))
                .await
                .expect("send"),
        );
    }
    ids
}

/// Waits until `queue` is empty and `dead_letters` holds `dead` messages.
async fn settled(queue: &SqsBackend, dead_letters: &SqsBackend, dead: u64, worker: &Process) {
    let start = Instant::now();
    loop {
        let (visible, not_visible, _) = counts(dead_letters).await;
        if counts(queue).await == (0, 0, 0) && visible + not_visible == dead {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "queue {:?}, dead letters {:?}; log: {:#?}",
            counts(queue).await,
            counts(dead_letters).await,
            worker.lines()
        );
        sleep(Duration::from_millis(100)).await;
    }
}

/// No body and no credential in any line; each failed id logged as a failure of `kind`
/// on each of its `receives`.
fn check_logs(lines: &[String], failed: &BTreeSet<String>, kind: &str, receives: usize) {
    for secret in [BODY_SECRET, SECRET_KEY, SESSION_TOKEN] {
        let leaks: Vec<_> = lines.iter().filter(|line| line.contains(secret)).collect();
        assert!(leaks.is_empty(), "{secret} in the logs: {leaks:#?}");
    }
    let events: Vec<Value> = lines
        .iter()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("a JSON line: {line}")))
        .collect();
    for id in failed {
        let failures = events
            .iter()
            .filter(|event| event["message"] == "handler failed" && event["message_id"] == **id)
            .inspect(|event| assert_eq!(event["kind"], kind, "{event}"))
            .count();
        assert_eq!(failures, receives, "{id} in {lines:#?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typed_worker_dead_letters_what_does_not_decode_and_logs_neither_bodies_nor_credentials()
{
    // The typed worker has one poller (concurrency 8): its receives reach moto one at
    // a time, so each failure is one receive.
    let (queue, dead_letters) = queue_with_dead_letters("typed", 2).await;
    let bad: BTreeSet<String> = [
        format!(r#"{{"name":"job","millis":"{BODY_SECRET}"}}"#),
        format!(r#"{{"name":"{BODY_SECRET}","millis":-1}}"#),
        format!(r#"{{"name":"{BODY_SECRET}""#),
        format!("{{{BODY_SECRET}}}"),
        BODY_SECRET.to_owned(),
        // moto takes an empty body (SQS would not): it does not decode either.
        String::new(),
    ]
    .into_iter()
    .collect();
    let ids = send_each(&queue, &bad).await;
    send(
        &queue,
        (0..40).map(|n| format!(r#"{{"name":"{BODY_SECRET}-{n}","millis":5}}"#)),
    )
    .await;

    let mut worker = Process::start(
        env!("CARGO_BIN_EXE_spotq-typed-worker"),
        &[("SPOTQ_QUEUE", queue.queue_url())],
    );
    settled(&queue, &dead_letters, bad.len() as u64, &worker).await;
    worker.stop(Duration::from_secs(30)).await;

    assert_eq!(bodies(&dead_letters).await, bad, "exactly the bad ones");
    let lines = worker.lines();
    check_logs(&lines, &ids, "decode", 2);
    // What the failure says instead: the kind of error and where.
    assert!(
        lines
            .iter()
            .any(|line| line.contains("the JSON does not fit") && line.contains("line 1 column")),
        "{lines:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_test_worker_logs_its_failures_without_bodies_or_credentials() {
    let (queue, dead_letters) = queue_with_dead_letters("failing", 2).await;
    let bad: BTreeSet<String> = [
        format!("{BODY_SECRET}-malformed"),
        format!("{BODY_SECRET}:10:fail"),
    ]
    .into_iter()
    .collect();
    let ids = send_each(&queue, &bad).await;
    send(&queue, (0..20).map(|n| format!("{BODY_SECRET}-{n}:5"))).await;
    let events = std::env::temp_dir().join(format!("{}.events", unique("spotq-bad-input")));

    // Its two pollers' receives go to moto one at a time: two at once could both take
    // a message and fail it twice on one receive count.
    let mut worker = Process::start(
        env!("CARGO_BIN_EXE_spotq-test-worker"),
        &[
            ("SPOTQ_QUEUE", queue.queue_url()),
            ("SPOTQ_EVENTS", events.to_str().expect("a UTF-8 path")),
            ("SPOTQ_RETRY_BASE_MS", "100"),
            ("SPOTQ_RETRY_MAX_MS", "100"),
            ("SPOTQ_CALLS_IN_TURN", "1"),
        ],
    );
    settled(&queue, &dead_letters, bad.len() as u64, &worker).await;
    worker.stop(Duration::from_secs(30)).await;
    let _ = std::fs::remove_file(&events);

    assert_eq!(bodies(&dead_letters).await, bad);
    check_logs(&worker.lines(), &ids, "failed", 2);
}

/// A worker binary's start that must fail.
struct BadStart<'a> {
    binary: &'a str,
    /// Its environment (beyond the emulator's endpoint and credentials).
    env: Vec<(&'a str, &'a str)>,
    /// A variable it must run without.
    unset: Option<&'a str>,
    /// What its output must say.
    said: &'a [&'a str],
}

/// Runs the binary until it exits, which it must do at once, unsuccessfully: its output.
fn failed_start(start: &BadStart<'_>) -> String {
    let mut command = Command::new(start.binary);
    command
        .env("SPOTQ_HTTP_ADDR", "127.0.0.1:0")
        .envs(start.env.iter().copied())
        .stdin(Stdio::null());
    if let Some(name) = start.unset {
        command.env_remove(name);
    }
    let Output {
        status,
        stdout,
        stderr,
    } = command.output().expect("run the worker");
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&stdout),
        String::from_utf8_lossy(&stderr)
    );
    assert!(!status.success(), "a bad start exits non-zero: {output}");
    output
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_settings_and_missing_environment_stop_a_worker_binary_at_start_naming_them() {
    // A message a worker that started would receive: none may.
    let queue = create_queue(&unique("bad-start"), &[]).await;
    send(&queue, ["untouched:1".to_owned()]).await;
    let url = queue.queue_url();
    let events = std::env::temp_dir().join(format!("{}.events", unique("spotq-bad-start")));
    let events = events.to_str().expect("a UTF-8 path");
    let test_worker = env!("CARGO_BIN_EXE_spotq-test-worker");
    let typed_worker = env!("CARGO_BIN_EXE_spotq-typed-worker");
    let cases = [
        BadStart {
            binary: test_worker,
            env: vec![
                ("SPOTQ_QUEUE", url),
                ("SPOTQ_EVENTS", events),
                ("SPOTQ_CONCURRENCY", "many"),
            ],
            unset: None,
            said: &["SPOTQ_CONCURRENCY"],
        },
        BadStart {
            binary: test_worker,
            env: vec![
                ("SPOTQ_QUEUE", url),
                ("SPOTQ_EVENTS", events),
                ("SPOTQ_CONCURRENCY", "0"),
            ],
            unset: None,
            said: &["invalid setting `concurrency`", "0"],
        },
        BadStart {
            binary: test_worker,
            env: vec![("SPOTQ_EVENTS", events)],
            unset: Some("SPOTQ_QUEUE"),
            said: &["SPOTQ_QUEUE"],
        },
        BadStart {
            binary: test_worker,
            env: vec![
                ("SPOTQ_QUEUE", url),
                ("SPOTQ_EVENTS", events),
                ("SPOTQ_HTTP_ADDR", "nowhere:80"),
            ],
            unset: None,
            said: &["invalid setting `SPOTQ_HTTP_ADDR`", "nowhere:80"],
        },
        BadStart {
            binary: typed_worker,
            env: vec![],
            unset: Some("SPOTQ_QUEUE"),
            said: &["invalid setting `queue`", "SPOTQ_QUEUE"],
        },
        BadStart {
            binary: typed_worker,
            env: vec![("SPOTQ_QUEUE", url), ("SPOTQ_HTTP_ADDR", "8080")],
            unset: None,
            said: &["invalid setting `SPOTQ_HTTP_ADDR`", "8080"],
        },
        BadStart {
            binary: typed_worker,
            env: vec![("SPOTQ_QUEUE", "no-such-queue-here")],
            unset: None,
            said: &["NonExistentQueue", "no-such-queue-here"],
        },
    ];
    for case in cases {
        let output = failed_start(&case);
        for text in case.said {
            assert!(
                output.contains(text),
                "{:?} without {:?}: {output}",
                case.env,
                case.unset
            );
        }
    }
    let _ = std::fs::remove_file(events);
    let received: Vec<(String, u32)> = queue
        .receive(receive_request())
        .await
        .expect("receive")
        .into_iter()
        .map(|message| (message.body.clone(), message.receive_count()))
        .collect();
    assert_eq!(
        received,
        [("untouched:1".to_owned(), 1)],
        "visible and never received before: no bad start received it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_and_string_attributes_set_through_the_sdk_reach_a_handler() {
    // Sent the way another producer sends: the SDK's own types, not spotq's.
    let queue = create_queue(&unique("sdk-attributes"), &[]).await;
    queue
        .client()
        .send_message()
        .queue_url(queue.queue_url())
        .message_body("with attributes")
        .message_attributes(
            "blob",
            MessageAttributeValue::builder()
                .data_type("Binary.png")
                .binary_value(aws_sdk_sqs::primitives::Blob::new(vec![0u8, 1, 255]))
                .build()
                .expect("attribute"),
        )
        .message_attributes(
            "empty-looking",
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value(" ")
                .build()
                .expect("attribute"),
        )
        .send()
        .await
        .expect("send");
    let received = queue.receive(receive_request()).await.expect("receive");
    assert_eq!(received.len(), 1);
    let attributes = &received[0].message_attributes;
    assert_eq!(attributes["blob"].data_type, "Binary.png");
    assert_eq!(
        attributes["blob"].binary_value.as_deref(),
        Some(&[0u8, 1, 255][..])
    );
    assert_eq!(
        attributes["empty-looking"].string_value.as_deref(),
        Some(" ")
    );
}
