//! SNS fan-out into SQS through the real `aws-sdk-sns` and `aws-sdk-sqs` clients against
//! moto server on loopback: a topic with two queues subscribed, one wrapped (SNS's JSON
//! notification) and one with raw message delivery, read by `Sns<Order>` handlers; and a
//! body that claims to be a notification but is not, dead-lettered by the queue's
//! redrive policy. `scripts/test` starts moto (`source scripts/env.sh`).

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_sns::types::MessageAttributeValue;
use aws_sdk_sqs::types::QueueAttributeName;
use spotq::handler::input::Sns;
use spotq::{SqsBackend, WorkerSpec};
use support::{counts, create_queue, emulator_endpoint, unique, until};

#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
struct Order {
    id: u64,
    item: String,
}

/// What a handler saw of one delivery.
#[derive(Clone, Debug, PartialEq)]
struct Seen {
    order: Order,
    topic_arn: Option<String>,
    subject: Option<String>,
    store: Option<String>,
}

type Log = Arc<Mutex<Vec<Seen>>>;

/// A worker on `queue` whose `Sns<Order>` handler logs what it sees.
fn recording(queue: SqsBackend, log: &Log) -> spotq::shutdown::AnyWorker {
    let log = log.clone();
    let handler = move |message: spotq::Message| {
        let decoded = spotq::handler::input::sns::<Order>(message);
        let log = log.clone();
        async move {
            let (order, _cx): (Sns<Order>, _) = match decoded {
                Ok(decoded) => decoded,
                Err(error) => return spotq::Outcome::Fail(error),
            };
            log.lock().expect("lock").push(Seen {
                topic_arn: order.topic_arn().map(str::to_owned),
                subject: order.subject().map(str::to_owned),
                store: order.attribute("store").map(str::to_owned),
                order: order.into_message(),
            });
            spotq::Outcome::Ack
        }
    };
    // Short long polls and backoff, so that a run ends soon after its last message.
    let mut config = spotq::config::WorkerConfig::default();
    config.wait_time = Duration::from_secs(1);
    config.retry = spotq::config::RetryPolicy::Backoff(spotq::config::Backoff::new(
        Duration::ZERO,
        Duration::ZERO,
    ));
    let spec = WorkerSpec::new(spotq::config::QueueSource::name("unused"), config, handler);
    spec.worker(queue).expect("binds")
}

async fn sns_client() -> aws_sdk_sns::Client {
    emulator_endpoint();
    let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    aws_sdk_sns::Client::new(&config)
}

async fn queue_arn(queue: &SqsBackend) -> String {
    let attributes = queue
        .client()
        .get_queue_attributes()
        .queue_url(queue.queue_url())
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("queue attributes");
    attributes
        .attributes()
        .and_then(|attributes| attributes.get(&QueueAttributeName::QueueArn))
        .expect("QueueArn")
        .clone()
}

async fn subscribe(sns: &aws_sdk_sns::Client, topic: &str, queue: &SqsBackend, raw: bool) {
    sns.subscribe()
        .topic_arn(topic)
        .protocol("sqs")
        .endpoint(queue_arn(queue).await)
        .attributes("RawMessageDelivery", raw.to_string())
        .send()
        .await
        .expect("subscribe");
}

/// Runs `worker` until `log` holds `expected` deliveries (or 30 s pass).
async fn run(worker: spotq::shutdown::AnyWorker, log: &Log, expected: usize) {
    let done = log.clone();
    worker
        .run_until(until(Duration::from_secs(30), move || {
            done.lock().expect("lock").len() >= expected
        }))
        .await
        .expect("worker runs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topics_notifications_reach_sns_handlers_wrapped_and_raw() {
    let sns = sns_client().await;
    let topic = sns
        .create_topic()
        .name(unique("orders"))
        .send()
        .await
        .expect("create topic")
        .topic_arn()
        .expect("topic arn")
        .to_owned();
    let wrapped = create_queue(&unique("orders-wrapped"), &[]).await;
    let raw = create_queue(&unique("orders-raw"), &[]).await;
    subscribe(&sns, &topic, &wrapped, false).await;
    subscribe(&sns, &topic, &raw, true).await;

    for id in 1..=3 {
        sns.publish()
            .topic_arn(&topic)
            .subject("order placed")
            .message(format!(r#"{{"id": {id}, "item": "item-{id}"}}"#))
            .message_attributes(
                "store",
                MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value("example_corp")
                    .build()
                    .expect("attribute"),
            )
            .send()
            .await
            .expect("publish");
    }

    let (wrapped_log, raw_log) = (Log::default(), Log::default());
    run(recording(wrapped.clone(), &wrapped_log), &wrapped_log, 3).await;
    run(recording(raw.clone(), &raw_log), &raw_log, 3).await;

    let order = |id: u64| Order {
        id,
        item: format!("item-{id}"),
    };
    let mut wrapped_seen = wrapped_log.lock().expect("lock").clone();
    wrapped_seen.sort_by_key(|seen| seen.order.id);
    let expected: Vec<Seen> = (1..=3)
        .map(|id| Seen {
            order: order(id),
            topic_arn: Some(topic.clone()),
            subject: Some("order placed".to_owned()),
            store: Some("example_corp".to_owned()),
        })
        .collect();
    assert_eq!(wrapped_seen, expected, "wrapped: the notification's fields");

    let mut raw_seen = raw_log.lock().expect("lock").clone();
    raw_seen.sort_by_key(|seen| seen.order.id);
    let expected: Vec<Seen> = (1..=3)
        .map(|id| Seen {
            order: order(id),
            topic_arn: None,
            subject: None,
            store: Some("example_corp".to_owned()),
        })
        .collect();
    assert_eq!(raw_seen, expected, "raw: the body, attributes as SQS's");

    assert_eq!(counts(&wrapped).await, (0, 0, 0), "every delivery deleted");
    assert_eq!(counts(&raw).await, (0, 0, 0), "every delivery deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_is_not_the_notification_it_claims_ends_in_the_dead_letter_queue() {
    let dead_letters = create_queue(&unique("orders-dlq"), &[]).await;
    let policy = format!(
        r#"{{"deadLetterTargetArn": "{}", "maxReceiveCount": "2"}}"#,
        queue_arn(&dead_letters).await
    );
    let queue = create_queue(
        &unique("orders-claims"),
        &[
            (QueueAttributeName::RedrivePolicy, policy),
            (QueueAttributeName::VisibilityTimeout, "1".to_owned()),
        ],
    )
    .await;
    support::send(
        &queue,
        [
            r#"{"Type": "Notification", "TopicArn": "arn:aws:sns:us-east-1:123456789012:t"}"#
                .to_owned(),
        ],
    )
    .await;

    let log = Log::default();
    let report = recording(queue.clone(), &log)
        .run_until(async {
            // Two receives fail it; moto moves it on the third.
            let limit = tokio::time::Instant::now() + Duration::from_secs(30);
            while counts(&dead_letters).await.0 == 0 && tokio::time::Instant::now() < limit {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
        .await
        .expect("worker runs");
    assert!(
        log.lock().expect("lock").is_empty(),
        "the handler never ran"
    );
    assert_eq!(report.failed, 2, "a failure on each receive");
    assert_eq!(counts(&dead_letters).await.0, 1, "dead-lettered");
    assert_eq!(counts(&queue).await, (0, 0, 0));
}
