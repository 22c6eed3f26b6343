//! A worker binary for an ECS task: SQS through the standard AWS configuration, JSON or
//! text logs, `/metrics` + `/health` + `/ready` on `SPOTQ_HTTP_ADDR` (default
//! `0.0.0.0:8080`), and the Spot shutdown contract on SIGTERM. With
//! `SPOTQ_EMF_NAMESPACE` and `SPOTQ_EMF_SERVICE`, CloudWatch EMF lines on stdout too.
//!
//! Run with: `SPOTQ_QUEUE=orders cargo run --features sqs --example basic-sqs-worker`
//! (against a local endpoint: add `AWS_ENDPOINT_URL=http://127.0.0.1:5055` and test
//! credentials, e.g. after `scripts/moto.sh start`).

use std::time::Duration;

use anyhow::Context as _;
use spotq::telemetry::logging::{LogFormat, init};
use spotq::{Message, SqsBackend, Worker, telemetry::emf::EmfSettings, telemetry::health::Health};

async fn handle(message: Message) -> Result<(), std::io::Error> {
    // Log ids and counts, never bodies.
    eprintln!(
        "handling {} (receive #{})",
        message.id(),
        message.receive_count()
    );
    tokio::time::sleep(Duration::from_millis(50)).await; // the real work
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init(LogFormat::from_env());
    let queue =
        std::env::var("SPOTQ_QUEUE").context("SPOTQ_QUEUE names the queue (name or URL)")?;
    let health = Health::default();
    // $SPOTQ_HTTP_ADDR, default 0.0.0.0:8080; a bad value stops the start, naming it.
    let server =
        spotq::telemetry::serve::serve(spotq::telemetry::serve::addr_from_env()?, health.clone())
            .await?;

    // Standard AWS chain; AWS_ENDPOINT_URL(_SQS) points it at a local endpoint.
    let mut worker = Worker::builder(SqsBackend::from_env(&queue).await?)
        .concurrency(64)
        .visibility_timeout(Duration::from_secs(60))
        .retry_backoff(Duration::from_secs(2), Duration::from_secs(300))
        .stop_timeout(Duration::from_secs(120)) // the task definition's stopTimeout
        .health(health);
    // CloudWatch EMF lines on stdout, which deploy/autoscaling/ scales on.
    if let Ok(namespace) = std::env::var("SPOTQ_EMF_NAMESPACE") {
        let service = std::env::var("SPOTQ_EMF_SERVICE")
            .context("SPOTQ_EMF_SERVICE names the ECS service (EMF's ServiceName)")?;
        worker = worker.emf(EmfSettings::new(namespace, service));
    }
    let report = worker
        .handler(handle)
        .run() // until SIGTERM or SIGINT
        .await?;
    eprintln!("{report:?}");
    server.shutdown().await;
    Ok(())
}
