//! `spotq-controller` through the real `aws-sdk-sqs` and `aws-sdk-ecs` clients against
//! moto server on loopback: messages arriving raise a moto ECS service's desired count,
//! and the drained queue brings it back to zero after the cooldown.
//!
//! moto places no tasks: its `runningCount` follows `UpdateService`'s desired count.

mod support;

use std::time::Duration;

use spotq_controller::config::{Cli, Config};
use spotq_controller::decision::Reason;
use spotq_controller::run::{Controller, StartError};
use spotq_controller::targets::TargetError;
use support::decisions::{next_change, woken_by_first_poll_after};
use support::ecs::{Service, desired_count, service_at_zero};
use support::unique;
use tokio::time::{Instant, timeout};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_raise_a_moto_service_and_an_empty_queue_returns_it_to_zero() {
    let queue = support::create_queue(&unique("ctl-ecs"), &[]).await;
    let client = support::ecs::client().await;
    let Service {
        cluster, service, ..
    } = service_at_zero(&client, "ctl").await;
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
    support::drain(&queue).await;

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
    let client = support::ecs::client().await;
    let Service {
        cluster, service, ..
    } = service_at_zero(&client, "ctl").await;
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
