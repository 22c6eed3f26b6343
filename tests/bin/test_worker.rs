//! A worker binary for the process tests: handles messages whose body is
//! `NAME:MILLIS` by waiting MILLIS ms, and records each handler's start and success in a
//! log file, so a test can tell which messages were processed. A body
//! `NAME:MILLIS:fail` waits as long and then fails (recorded as `fail`): a poison
//! message, which the queue's redrive policy moves to its dead-letter queue. A body
//! `NAME:MILLIS:retry=SECS` answers `Outcome::RetryAfter(SECS s)` on its first receive
//! (recorded as `retry`) and succeeds on the next.
//!
//! Settings come from the environment: `SPOTQ_QUEUE` (name or URL; the AWS chain, with
//! `AWS_ENDPOINT_URL`, finds it), `SPOTQ_EVENTS` (the log file), `SPOTQ_CONCURRENCY`,
//! `SPOTQ_STOP_TIMEOUT_SECS`, `SPOTQ_GRACE_SECS`, `SPOTQ_RUNNING_TASKS`, `SPOTQ_HTTP_ADDR`
//! (serve /metrics, /health, /ready), `SPOTQ_RETRY_BASE_MS` and `SPOTQ_RETRY_MAX_MS`
//! (the retry backoff; the runtime's default without them), `SPOTQ_CALL_ATTEMPT_TIMEOUT_MS`
//! (the SQS client's attempt timeout; spotq's default without it); logs as `SPOTQ_LOG_FORMAT`
//! says. It runs until SIGTERM or SIGINT, or as a job task does, until its queue is
//! drained: with `SPOTQ_EXIT_AFTER_EMPTY_RECEIVES`, once that many of its receives in a
//! row found the queue empty with nothing held (run to completion). It exits with its
//! run's exit code (`RunReport::exit_code`: 0 unless the run ended on a
//! fatal error).
//!
//! Event lines are `EVENT BODY` (`start`, `done`, `fail`, `retry`, `listening ADDR`), or with
//! `SPOTQ_EVENTS_FORMAT=json` one JSON object a line with the message id, its receive
//! count, the worker's pid and the time (`at_ms`, milliseconds since the Unix epoch),
//! plus `ready` once the worker is built and `exit` once `run` has returned (every
//! message settled or released): what the chaos run's verifier reads.
//!
//! With `SPOTQ_CALLS_IN_TURN` set, its receives go to the queue one at a time and so do
//! its deletes (`tests/support/in_turn.rs`): moto's calls as atomic as SQS's, for the
//! tests that count a message's receives.

use std::fs::OpenOptions;
use std::io::Write;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use spotq::backend::Backend;
use spotq::{Message, Outcome, SqsBackend, Worker, shutdown::ShutdownHandle};

#[path = "../support/in_turn.rs"]
mod in_turn;

fn env_number(name: &str, default: u64) -> anyhow::Result<u64> {
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .with_context(|| format!("{name} must be a whole number")),
        Err(_) => Ok(default),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    spotq::telemetry::logging::init(spotq::telemetry::logging::LogFormat::from_env());
    let queue = std::env::var("SPOTQ_QUEUE").context("SPOTQ_QUEUE is required")?;
    let events = std::env::var("SPOTQ_EVENTS").context("SPOTQ_EVENTS is required")?;
    let events = Arc::new(Mutex::new(
        OpenOptions::new().create(true).append(true).open(&events)?,
    ));
    let json = std::env::var("SPOTQ_EVENTS_FORMAT").is_ok_and(|format| format == "json");
    let pid = std::process::id();
    // `message`: the id and receive count of the message the event is about.
    let record = move |event: &str, body: &str, message: Option<(&str, u32)>| {
        let line = if json {
            let at_ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |since| since.as_millis());
            let mut line = serde_json::json!({
                "event": event, "body": body, "pid": pid, "at_ms": at_ms,
            });
            if let Some((id, receive)) = message {
                line["id"] = id.into();
                line["receive"] = receive.into();
            }
            format!("{line}\n")
        } else {
            format!("{event} {body}\n")
        };
        if let Ok(mut file) = events.lock() {
            // One write per line, so lines from concurrent handlers never interleave.
            let _ = file.write_all(line.as_bytes());
        }
    };

    // `SPOTQ_HTTP_ADDR` (port 0 allowed): /metrics, /health and /ready; the bound address
    // goes to the event log as `listening ADDR`.
    let health = spotq::telemetry::health::Health::default();
    let server = match std::env::var_os(spotq::telemetry::serve::ADDR_VAR) {
        Some(_) => {
            let server = spotq::telemetry::serve::serve(
                spotq::telemetry::serve::addr_from_env()?,
                health.clone(),
            )
            .await?;
            record("listening", &server.local_addr().to_string(), None);
            Some(server)
        }
        None => None,
    };

    // `SPOTQ_CALL_ATTEMPT_TIMEOUT_MS`: the SDK client's attempt timeout (spotq's default,
    // 10 s, without it), so a call the fault proxy never answers is tried again soon.
    let mut aws = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Ok(millis) = std::env::var("SPOTQ_CALL_ATTEMPT_TIMEOUT_MS") {
        let millis = millis.parse().context("SPOTQ_CALL_ATTEMPT_TIMEOUT_MS")?;
        aws = aws.timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .operation_attempt_timeout(Duration::from_millis(millis))
                .build(),
        );
    }
    let client = aws_sdk_sqs::Client::new(&aws.load().await);
    let backend = SqsBackend::connect(client, &queue).await?;
    let backend: Arc<dyn Backend> = if std::env::var_os("SPOTQ_CALLS_IN_TURN").is_some() {
        Arc::new(in_turn::InTurn::new(&backend))
    } else {
        Arc::new(backend)
    };
    let shutdown = ShutdownHandle::new();
    shutdown.on_termination_signals()?;
    let mut worker = Worker::builder(backend)
        .health(health)
        .backlog_interval(Some(Duration::from_secs(1)));
    if let Ok(tasks) = std::env::var("SPOTQ_RUNNING_TASKS") {
        worker = worker.running_tasks(tasks.parse().context("SPOTQ_RUNNING_TASKS")?);
    }
    if let (Ok(base), Ok(max)) = (
        std::env::var("SPOTQ_RETRY_BASE_MS"),
        std::env::var("SPOTQ_RETRY_MAX_MS"),
    ) {
        let base = base.parse().context("SPOTQ_RETRY_BASE_MS")?;
        let max = max.parse().context("SPOTQ_RETRY_MAX_MS")?;
        worker = worker.retry_backoff(Duration::from_millis(base), Duration::from_millis(max));
    }
    if let Ok(receives) = std::env::var("SPOTQ_EXIT_AFTER_EMPTY_RECEIVES") {
        worker = worker.exit_after_empty_receives(
            receives
                .parse()
                .context("SPOTQ_EXIT_AFTER_EMPTY_RECEIVES")?,
        );
    }
    let exit_record = record.clone();
    if json {
        record("ready", "", None);
    }
    // The worker logs its report as it stops.
    let report = worker
        .concurrency(usize::try_from(env_number("SPOTQ_CONCURRENCY", 16)?)?)
        .wait_time(Duration::from_secs(1))
        .stop_timeout(Duration::from_secs(env_number(
            "SPOTQ_STOP_TIMEOUT_SECS",
            30,
        )?))
        .shutdown_grace(Duration::from_secs(env_number("SPOTQ_GRACE_SECS", 25)?))
        .handler(move |message: Message| {
            let record = record.clone();
            async move {
                let body = message.body().to_owned();
                let about = Some((message.id(), message.receive_count()));
                let mut fields = body.split(':');
                let Some(millis) = fields.nth(1).and_then(|ms| ms.parse().ok()) else {
                    // Never the body in an error: it is logged.
                    return Outcome::fail("malformed body: not NAME:MILLIS");
                };
                let then = fields.next();
                let poison = then == Some("fail");
                let retry_after = then
                    .and_then(|then| then.strip_prefix("retry="))
                    .and_then(|secs| secs.parse().ok())
                    .filter(|_| message.receive_count() == 1)
                    .map(Duration::from_secs);
                record("start", &body, about);
                tokio::time::sleep(Duration::from_millis(millis)).await;
                if poison {
                    record("fail", &body, about);
                    return Outcome::fail("a poison message fails every time");
                }
                if let Some(delay) = retry_after {
                    record("retry", &body, about);
                    return Outcome::RetryAfter(delay);
                }
                record("done", &body, about);
                Outcome::Ack
            }
        })
        .run_with(shutdown)
        .await?;
    if json {
        exit_record("exit", "", None);
    }
    if let Some(server) = server {
        server.shutdown().await;
    }
    Ok(report.exit_code())
}
