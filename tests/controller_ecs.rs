//! `spotq-controller` through the real `aws-sdk-sqs` and `aws-sdk-ecs` clients against
//! moto server on loopback: messages arriving raise a moto ECS service's desired count,
//! and the drained queue brings it back to zero after the cooldown.
//!
//! moto places no tasks: its `runningCount` follows `UpdateService`'s desired count.

mod support;

use std::time::Duration;

use aws_sdk_ecs::Client;
use aws_sdk_ecs::types::ContainerDefinition;
use spotq_controller::config::{Cli, Config};
use spotq_controller::decision::Reason;
use spotq_controller::run::{Controller, DecisionEvent, StartError};
use spotq_controller::targets::TargetError;
use support::{emulator_endpoint, unique};
use tokio::sync::broadcast::Receiver;
use tokio::time::{Instant, timeout};

/// A cluster, a task definition and a service at desired count 0 in moto; returns the
/// client, the cluster's name and the service's name.
async fn service_at_zero() -> (Client, String, String) {
    emulator_endpoint();
    let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let client = Client::new(&config);
    let cluster = unique("ctl");
    client
        .create_cluster()
        .cluster_name(&cluster)
        .send()
        .await
        .expect("create cluster");
    client
        .register_task_definition()
        .family(&cluster)
        .container_definitions(
            ContainerDefinition::builder()
                .name("worker")
                .image("busybox")
                .memory(64)
                .build(),
        )
        .send()
        .await
        .expect("register task definition");
    let service = format!("{cluster}-worker");
    client
        .create_service()
        .cluster(&cluster)
        .service_name(&service)
        .task_definition(&cluster)
        .desired_count(0)
        .send()
        .await
        .expect("create service");
    (client, cluster, service)
}

async fn desired_count(client: &Client, cluster: &str, service: &str) -> i32 {
    client
        .describe_services()
        .cluster(cluster)
        .services(service)
        .send()
        .await
        .expect("describe services")
        .services()
        .first()
        .expect("the service")
        .desired_count()
}

/// Waits for the first poll that began once the messages were sent, and returns the
/// decision that woke the service (that poll's, or an earlier one's that already saw
/// part of a send of several batches) and that poll's.
async fn woken_by_first_poll_after(
    events: &mut Receiver<DecisionEvent>,
    sent: Instant,
    limit: Duration,
) -> (DecisionEvent, DecisionEvent) {
    timeout(limit, async {
        let mut woken = None;
        loop {
            let event = events.recv().await.expect("decisions");
            if woken.is_none() && event.decision.current == 0 && event.decision.desired > 0 {
                woken = Some(event.clone());
            }
            if event.polled_at >= sent {
                let woken = woken.unwrap_or_else(|| panic!("not woken by {event:?}"));
                return (woken, event);
            }
        }
    })
    .await
    .expect("a poll after the send")
}

/// The next decision that changed the count (skipping holds), within `limit`.
async fn next_change(events: &mut Receiver<DecisionEvent>, limit: Duration) -> DecisionEvent {
    timeout(limit, async {
        loop {
            let event = events.recv().await.expect("decisions");
            if event.decision.change().is_some() {
                return event;
            }
        }
    })
    .await
    .expect("a change of the desired count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_raise_a_moto_service_and_an_empty_queue_returns_it_to_zero() {
    let queue = support::create_queue(&unique("ctl-ecs"), &[]).await;
    let (client, cluster, service) = service_at_zero().await;
    let file = format!(
        r#"
[[binding]]
queue = "{}"
cluster = "{cluster}"
service = "{service}"
max = 5
backlog_per_task = 10
poll_interval = "200ms"
scale_in_cooldown = "1s"
empty_polls = 2
"#,
        queue.queue_url()
    );
    let config = Config::from_parts(&Cli::default(), Some(&file)).expect("valid config");
    let controller = Controller::start(config).await.expect("started");
    let mut events = controller.decisions();

    // An idle queue: polls, and no UpdateService.
    for _ in 0..3 {
        let event = timeout(Duration::from_secs(10), events.recv())
            .await
            .expect("a poll")
            .expect("decisions");
        assert_eq!(
            (event.decision.desired, event.decision.reason),
            (0, Reason::Idle)
        );
        assert!(!event.applied);
    }

    support::send(&queue, (0..25).map(|n| format!("m{n}"))).await;
    let sent = Instant::now();
    let (woken, mut last) =
        woken_by_first_poll_after(&mut events, sent, Duration::from_secs(10)).await;
    assert_eq!((woken.decision.reason, woken.applied), (Reason::Wake, true));
    assert!(woken.decision.desired >= 1, "{woken:?}");
    // 25 messages at 10 a task (a poll during the send may have seen only some).
    while last.decision.desired < 3 {
        last = next_change(&mut events, Duration::from_secs(10)).await;
        assert_eq!(last.decision.reason, Reason::ScaleOut, "{last:?}");
    }
    assert_eq!(last.decision.desired, 3, "{last:?}");
    assert_eq!(desired_count(&client, &cluster, &service).await, 3);

    // Drain the queue as the workers would.
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
    assert_eq!(support::counts(&queue).await, (0, 0, 0));

    while last.decision.desired > 0 {
        let next = next_change(&mut events, Duration::from_secs(10)).await;
        assert!(next.applied, "{next:?}");
        assert!(next.decision.desired < last.decision.desired, "{next:?}");
        last = next;
    }
    assert_eq!(last.decision.reason, Reason::ToZero);
    assert_eq!(desired_count(&client, &cluster, &service).await, 0);

    // Nothing more to do: the next polls hold at zero without calls.
    for _ in 0..3 {
        let event = timeout(Duration::from_secs(10), events.recv())
            .await
            .expect("a poll")
            .expect("decisions");
        assert_eq!(event.decision.change(), None, "{event:?}");
    }
    controller.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_queue_or_service_stops_the_controller_at_start() {
    let queue = support::create_queue(&unique("ctl-missing"), &[]).await;
    let (_, cluster, service) = service_at_zero().await;
    let start = |queue: &str, cluster: &str, service: &str| {
        let file = format!(
            "[[binding]]\nname = \"b\"\nqueue = \"{queue}\"\ncluster = \"{cluster}\"\nservice = \"{service}\"\n"
        );
        let config = Config::from_parts(&Cli::default(), Some(&file)).expect("valid config");
        Controller::start(config)
    };

    let missing_queue = format!("{}-gone", queue.queue_url());
    let error = start(&missing_queue, &cluster, &service)
        .await
        .expect_err("no such queue");
    assert!(
        matches!(&error, StartError::Queue { binding, .. } if binding == "b"),
        "{error:?}"
    );
    assert!(error.to_string().contains("NonExistentQueue"), "{error}");

    let error = start(queue.queue_url(), &cluster, "gone")
        .await
        .expect_err("no such service");
    assert!(
        matches!(&error, StartError::Target { binding, source: TargetError::ServiceNotFound { .. } } if binding == "b"),
        "{error:?}"
    );
    assert!(error.to_string().contains("`service`"), "{error}");

    let controller = start(queue.queue_url(), &cluster, &service)
        .await
        .expect("both exist");
    controller.stop().await;
}
