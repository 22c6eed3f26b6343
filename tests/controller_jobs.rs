//! `spotq-controller`'s job bindings end to end: standalone ECS tasks started with
//! `RunTask` through the real `aws-sdk-ecs` client against moto on loopback, Spot
//! capacity shortages and a lagging `ListTasks` injected by `spotq-fault-proxy` in front
//! of moto, and local job processes (`spotq-test-worker` in its drain-and-exit mode)
//! working a moto queue.
//!
//! What moto does differently from ECS, and how the tests live with it:
//! - It starts a `RunTask` task at `RUNNING` at once (no `PROVISIONING`/`PENDING`), and
//!   by default moves it a state towards `STOPPED` every time `DescribeTasks` describes
//!   it: [`support::ecs::keep_tasks_running`] holds its tasks at `RUNNING`, and the tests
//!   stop them with `StopTask` to stand for their exit.
//! - It never runs out of Fargate capacity: the proxy's `no_spot` fault answers a Spot
//!   `RunTask` as ECS does when it has none.
//! - It lists a task as soon as it is started: the proxy's `unlisted` fault empties
//!   `ListTasks` answers, as ECS's do for a moment after `RunTask`.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use spotq_controller::config::{Binding, Cli, Config, JobRunner, TargetConfig};
use spotq_controller::decision::job::JobReason;
use spotq_controller::inputs::{QueueSource, SqsQueue};
use spotq_controller::run::{Controller, JobEvent, JobLoop};
use spotq_controller::targets::{BINDING_TAG, EcsJobTarget, JobTarget, started_by};
use support::proxy::FaultProxy;
use support::unique;
use tokio::sync::broadcast::Receiver;
use tokio::time::{Instant, timeout};

/// The next poll of a job binding, within 10 s.
async fn next_poll(events: &mut Receiver<JobEvent>) -> JobEvent {
    timeout(Duration::from_secs(10), events.recv())
        .await
        .expect("a poll")
        .expect("job decisions")
}

/// Skips to the first poll that began at `since` or later, then checks that the next
/// polls find nothing waiting, nothing active and start nothing.
async fn idle_after(events: &mut Receiver<JobEvent>, since: Instant) {
    while next_poll(events).await.polled_at < since {}
    for _ in 0..5 {
        let event = next_poll(events).await;
        assert_eq!(
            (event.decision.reason, event.decision.active, event.started),
            (JobReason::Idle, 0, 0),
            "{event:?}"
        );
    }
}

/// A job binding's queue and cluster in moto, and its configuration.
struct MotoJob {
    /// The binding's name.
    name: String,
    queue: spotq::SqsBackend,
    client: aws_sdk_ecs::Client,
    cluster: String,
    /// The task definition's family.
    family: String,
    /// One binding: the job binding, with `settings` for the binding and `job` for its
    /// job table (besides the queue, cluster, task definition and subnet).
    config: Config,
}

/// A queue and a cluster with a task definition in moto (its tasks held at `RUNNING`),
/// and a job binding over them.
async fn moto_job(prefix: &str, settings: &str, job: &str) -> MotoJob {
    support::ecs::keep_tasks_running().await;
    let queue = support::create_queue(&unique(&format!("ctl-{prefix}")), &[]).await;
    let client = support::ecs::client().await;
    let (cluster, family) = support::ecs::job_cluster(&client, prefix).await;
    let name = unique(prefix);
    let file = format!(
        "[[binding]]\nname = \"{name}\"\nqueue = \"{queue}\"\ncluster = \"{cluster}\"\n{settings}\n\
         [binding.job]\ntask_definition = \"{family}\"\nsubnets = [\"subnet-12345678\"]\n{job}\n",
        queue = queue.queue_url(),
    );
    let config = Config::from_parts(&Cli::default(), Some(&file)).expect("valid config");
    MotoJob {
        name,
        queue,
        client,
        cluster,
        family,
        config,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_start_moto_job_tasks_once_and_a_drained_queue_starts_none() {
    let MotoJob {
        name,
        queue,
        client,
        cluster,
        family,
        config,
    } = moto_job(
        "jobs",
        "max = 4\npoll_interval = \"200ms\"",
        "security_groups = [\"sg-12345678\"]\nmessages_per_task = 10",
    )
    .await;
    let controller = Controller::start(config).await.expect("started");
    let mut events = controller.job_decisions();
    let started_by = started_by(&name);

    // An idle queue: polls, and no RunTask.
    for _ in 0..3 {
        let event = next_poll(&mut events).await;
        assert_eq!((event.decision.reason, event.started), (JobReason::Idle, 0));
    }

    // 25 messages at 10 a task: 3 tasks, however the polls split the send.
    support::send(&queue, (0..25).map(|n| format!("m{n}"))).await;
    let sent = Instant::now();
    let mut started = 0;
    loop {
        let event = next_poll(&mut events).await;
        started += event.started;
        if event.polled_at >= sent {
            break;
        }
    }
    assert_eq!(started, 3);
    let tasks = support::ecs::tasks_started_by(&client, &cluster, &started_by).await;
    assert_eq!(tasks.len(), 3, "{tasks:?}");
    for task in &tasks {
        assert_eq!(task.started_by(), Some(started_by.as_str()));
        assert_eq!(task.capacity_provider_name(), Some("FARGATE_SPOT"));
        assert!(
            task.task_definition_arn()
                .is_some_and(|arn| arn.contains(&family)),
            "{task:?}"
        );
        assert!(
            task.tags()
                .iter()
                .any(|tag| tag.key() == Some(BINDING_TAG) && tag.value() == Some(name.as_str())),
            "{task:?}"
        );
    }

    // The backlog stays while the tasks run: poll after poll, no task more.
    for _ in 0..10 {
        let event = next_poll(&mut events).await;
        assert_eq!(
            (event.decision.reason, event.decision.active, event.started),
            (JobReason::Enough, 3, 0),
            "{event:?}"
        );
    }

    // The tasks drain the queue and exit.
    support::drain(&queue).await;
    for task in &tasks {
        support::ecs::stop_task(&client, &cluster, task).await;
    }
    idle_after(&mut events, Instant::now()).await;
    assert!(
        support::ecs::tasks_started_by(&client, &cluster, &started_by)
            .await
            .is_empty()
    );
    controller.stop().await;
}

/// The counters recorded on this thread, read at once, as `name{key=value,…}`.
fn counters(snapshotter: &Snapshotter) -> BTreeMap<String, u64> {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter_map(|(key, _, _, value)| {
            let DebugValue::Counter(count) = value else {
                return None;
            };
            let labels: Vec<String> = key
                .key()
                .labels()
                .map(|label| format!("{}={}", label.key(), label.value()))
                .collect();
            Some((
                format!("{}{{{}}}", key.key().name(), labels.join(",")),
                count,
            ))
        })
        .collect()
}

/// A job loop over a moto queue and moto's ECS behind the proxy, polled by hand on
/// this thread (so the metrics recorder of the thread sees its counters).
struct ProxiedJob {
    name: String,
    queue: spotq::SqsBackend,
    client: aws_sdk_ecs::Client,
    cluster: String,
    started_by: String,
    job: JobLoop,
}

async fn proxied_job(proxy: &FaultProxy, spot_fallback: bool) -> ProxiedJob {
    // A long poll interval: the backoff after a shortfall (one interval) outlasts the test.
    let MotoJob {
        name,
        queue,
        client,
        cluster,
        config,
        ..
    } = moto_job(
        "spot",
        "max = 20\npoll_interval = \"1h\"",
        &format!("messages_per_task = 10\nspot_fallback = {spot_fallback}"),
    )
    .await;
    let binding: Binding = config.bindings[0].clone();
    let TargetConfig::Job(job) = &binding.target else {
        panic!("a job binding: {binding:?}");
    };
    let JobRunner::Ecs(tasks) = &job.runner else {
        panic!("ECS tasks: {job:?}");
    };
    let target = EcsJobTarget::new(proxy.ecs_client().await, &binding.name, tasks.clone());
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let source = SqsQueue::connect(aws_sdk_sqs::Client::new(&sdk), queue.queue_url())
        .await
        .expect("the queue");
    let policy = binding.job_policy().expect("a job binding");
    let job = JobLoop::new(
        binding,
        policy,
        Arc::new(source) as Arc<dyn QueueSource>,
        Arc::new(target) as Arc<dyn JobTarget>,
        false,
    );
    ProxiedJob {
        started_by: started_by(&name),
        name,
        queue,
        client,
        cluster,
        job,
    }
}

/// The capacity provider each `RunTask` the proxy saw asked for, oldest first.
async fn run_task_providers(proxy: &FaultProxy) -> Vec<(String, u64)> {
    proxy
        .bodies("RunTask")
        .await
        .iter()
        .map(|body| {
            let request: serde_json::Value = serde_json::from_str(body).expect("JSON");
            (
                request["capacityProviderStrategy"][0]["capacityProvider"]
                    .as_str()
                    .expect("a capacity provider")
                    .to_owned(),
                request["count"].as_u64().expect("a count"),
            )
        })
        .collect()
}

#[tokio::test]
async fn tasks_spot_has_no_capacity_for_start_on_fargate_and_the_next_start_tries_spot() {
    let recorder = DebuggingRecorder::new();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let proxy = FaultProxy::start(&["RunTask:no_spot:always"], 1);
    let mut rig = proxied_job(&proxy, true).await;

    support::send(&rig.queue, (0..15).map(|n| format!("m{n}"))).await;
    let event = rig.job.poll().await;
    assert_eq!(
        (
            event.decision.starts,
            event.started,
            event.fallbacks,
            event.fell_short
        ),
        (2, 2, 2, false),
        "{event:?}"
    );
    assert_eq!(
        run_task_providers(&proxy).await,
        [("FARGATE_SPOT".to_owned(), 2), ("FARGATE".to_owned(), 2)]
    );
    let first: serde_json::Value =
        serde_json::from_str(&proxy.bodies("RunTask").await[0]).expect("JSON");
    assert_eq!(first["startedBy"], rig.started_by.as_str());
    assert_eq!(
        first["networkConfiguration"]["awsvpcConfiguration"]["subnets"],
        serde_json::json!(["subnet-12345678"])
    );
    assert_eq!(
        first["networkConfiguration"]["awsvpcConfiguration"]["assignPublicIp"],
        "DISABLED"
    );
    assert_eq!(first["tags"][0]["key"], BINDING_TAG);
    assert!(
        first["clientToken"]
            .as_str()
            .is_some_and(|token| !token.is_empty())
    );
    assert_eq!(proxy.stats().await.faults("RunTask", "no_spot"), 1);
    let tasks = support::ecs::tasks_started_by(&rig.client, &rig.cluster, &rig.started_by).await;
    assert_eq!(tasks.len(), 2);
    assert!(
        tasks
            .iter()
            .all(|task| task.capacity_provider_name() == Some("FARGATE"))
    );

    // Spot is back: the next start asks it first, and gets it.
    proxy.set_rules(&[]).await;
    support::send(&rig.queue, (15..45).map(|n| format!("m{n}"))).await;
    let event = rig.job.poll().await;
    assert_eq!(
        (event.decision.active, event.started, event.fallbacks),
        (2, 3, 0),
        "{event:?}"
    );
    assert_eq!(
        run_task_providers(&proxy).await[2..],
        [("FARGATE_SPOT".to_owned(), 3)]
    );
    let counted = counters(&recorder.snapshotter());
    let binding = format!("{{binding={}}}", rig.name);
    assert_eq!(
        counted[&format!("spotq_controller_spot_fallbacks_total{binding}")],
        2
    );
    assert_eq!(
        counted[&format!("spotq_controller_job_tasks_started_total{binding}")],
        5
    );
    assert!(proxy.stop());
}

#[tokio::test]
async fn without_a_fallback_a_spot_shortage_is_counted_and_backed_off() {
    let recorder = DebuggingRecorder::new();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let proxy = FaultProxy::start(&["RunTask:no_spot:always"], 2);
    let mut rig = proxied_job(&proxy, false).await;

    // 120 messages at 10 a task: 12 tasks, asked for in calls of at most 10.
    support::send(&rig.queue, (0..120).map(|n| format!("m{n}"))).await;
    let event = rig.job.poll().await;
    assert_eq!(
        (event.decision.starts, event.started, event.fell_short),
        (12, 0, true),
        "{event:?}"
    );
    assert_eq!(
        run_task_providers(&proxy).await,
        [("FARGATE_SPOT".to_owned(), 10)],
        "no fallback, and no second call once Spot had none"
    );
    let counted = counters(&recorder.snapshotter());
    assert_eq!(
        counted[&format!(
            "spotq_controller_job_start_failures_total{{binding={},reason=no_capacity}}",
            rig.name
        )],
        10
    );
    // The next poll comes within the backoff: no RunTask.
    let event = rig.job.poll().await;
    assert_eq!(
        (event.decision.reason, event.decision.starts),
        (JobReason::Backoff, 0)
    );
    assert_eq!(proxy.stats().await.requests("RunTask"), 1);
    assert!(
        support::ecs::tasks_started_by(&rig.client, &rig.cluster, &rig.started_by)
            .await
            .is_empty()
    );
    assert!(proxy.stop());
}

#[tokio::test]
async fn tasks_ecs_does_not_list_yet_are_not_started_again() {
    let proxy = FaultProxy::start(&[], 3);
    let mut rig = proxied_job(&proxy, false).await;
    // 120 messages at 10 a task, max 20: ECS is asked for 12, in calls of 10 and 2.
    support::send(&rig.queue, (0..120).map(|n| format!("m{n}"))).await;
    let event = rig.job.poll().await;
    assert_eq!(event.started, 12, "{event:?}");
    assert_eq!(
        run_task_providers(&proxy).await,
        [
            ("FARGATE_SPOT".to_owned(), 10),
            ("FARGATE_SPOT".to_owned(), 2)
        ]
    );

    // ECS has not caught up: it lists none of them.
    proxy.set_rules(&["ListTasks:unlisted:count=2"]).await;
    for _ in 0..2 {
        let event = rig.job.poll().await;
        assert_eq!(
            (
                event.decision.active,
                event.decision.unlisted,
                event.started
            ),
            (12, 12, 0),
            "{event:?}"
        );
    }
    // Now it does: the tasks it lists are the ones started, counted once.
    let event = rig.job.poll().await;
    assert_eq!(
        (
            event.decision.active,
            event.decision.unlisted,
            event.started
        ),
        (12, 0, 0),
        "{event:?}"
    );
    assert_eq!(proxy.stats().await.faults("ListTasks", "unlisted"), 2);
    assert_eq!(proxy.stats().await.requests("RunTask"), 2);
    assert!(proxy.stop());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_job_processes_drain_the_queue_and_exit_0_and_none_is_started_again() {
    let queue = support::create_queue(
        &unique("ctl-local-jobs"),
        &[(QueueAttributeName::VisibilityTimeout, "30".to_owned())],
    )
    .await;
    let events = std::env::temp_dir().join(format!("{}.events", unique("ctl-local-jobs")));
    let sent: BTreeSet<String> = (0..30).map(|n| format!("m{n}:100")).collect();
    support::send(&queue, sent.iter().cloned()).await;
    let file = format!(
        r#"
[[binding]]
name = "local-jobs"
queue = "{queue}"
max = 3
poll_interval = "200ms"

[binding.local]
command = ["{worker}"]
stop_timeout = "15s"
env = {{ SPOTQ_QUEUE = "{queue}", SPOTQ_EVENTS = "{events}", SPOTQ_CONCURRENCY = "4", SPOTQ_EXIT_AFTER_EMPTY_RECEIVES = "3", SPOTQ_GRACE_SECS = "5", SPOTQ_STOP_TIMEOUT_SECS = "10", RUST_LOG = "warn" }}

[binding.job]
messages_per_task = 10
"#,
        queue = queue.queue_url(),
        worker = env!("CARGO_BIN_EXE_spotq-test-worker"),
        events = events.display(),
    );
    let config = Config::from_parts(&Cli::default(), Some(&file)).expect("valid config");
    let controller = Controller::start(config).await.expect("started");
    let local = controller
        .local_target("local-jobs")
        .expect("a local target");
    let mut decisions = controller.job_decisions();

    // 30 messages at 10 a task: 3 processes, which work the queue until it is drained
    // and then exit by themselves, 0.
    support::until(Duration::from_secs(60), || local.exits().succeeded == 3).await;
    assert_eq!(local.exits().failed, 0);
    assert_eq!(
        local.started(),
        3,
        "no process more than the backlog wanted"
    );
    assert_eq!(
        support::recorded(&events, "done"),
        sent,
        "every message processed"
    );
    assert_eq!(support::counts(&queue).await, (0, 0, 0));

    // Drained: poll after poll, nothing is started again.
    idle_after(&mut decisions, Instant::now()).await;
    assert_eq!(local.started(), 3);
    assert!(local.pids().await.is_empty());
    controller.stop().await;
    assert_eq!(local.killed(), 0);
    let _ = std::fs::remove_file(&events);
}
