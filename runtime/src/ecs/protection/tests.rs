//! Task protection against a stand-in for the ECS agent on 127.0.0.1.
//!
//! Real sockets, so real time: the driver runs with millisecond settings.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::time::{Instant, sleep};
use tokio_util::sync::CancellationToken;
use tracing::Level;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{self, Layer, SubscriberExt as _};

use super::*;
use crate::ecs::agent::EXCERPT_CHARS;
use crate::testing::{AgentStandIn as Agent, Call, PATIENCE, Reply, STATE};

/// Protection through `agent` with settings in milliseconds.
fn fast(agent: &Agent, config: ProtectionConfig) -> TaskProtection {
    let mut protection = TaskProtection::unchecked(&agent.uri(), config).expect("agent URI");
    protection.poll_interval = Duration::from_millis(10);
    protection.request_timeout = Duration::from_millis(500);
    protection.retry = Backoff {
        base: Duration::from_millis(150),
        max: Duration::from_millis(300),
        jitter: false,
    };
    protection
}

fn fast_config() -> ProtectionConfig {
    ProtectionConfig {
        expires_in: Duration::from_millis(600),
        renew_before: Duration::from_millis(300),
        idle_release: Duration::from_millis(300),
    }
}

/// Runs the driver on `protection` with a counter for the handlers in flight.
fn drive(
    protection: TaskProtection,
) -> (
    Arc<AtomicUsize>,
    CancellationToken,
    tokio::task::JoinHandle<ProtectionReport>,
) {
    let in_flight = Arc::new(AtomicUsize::new(0));
    let stop = CancellationToken::new();
    let driver = tokio::spawn(protection.run(
        {
            let in_flight = Arc::clone(&in_flight);
            move || in_flight.load(Ordering::SeqCst)
        },
        stop.clone(),
    ));
    (in_flight, stop, driver)
}

fn enabled(call: &Call) -> Option<bool> {
    call.body.get("ProtectionEnabled").and_then(Value::as_bool)
}

// ---------------------------------------------------------------------------------------
// set()

#[tokio::test]
async fn set_true_puts_protection_with_its_expiry() {
    let agent = Agent::start().await;
    let protection =
        TaskProtection::new(&agent.uri(), ProtectionConfig::default()).expect("protection");
    protection.set(true).await.expect("set(true)");
    let calls = agent.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].method, "PUT");
    assert_eq!(calls[0].path, STATE);
    assert_eq!(calls[0].content_type.as_deref(), Some("application/json"));
    assert_eq!(
        calls[0].body,
        json!({"ProtectionEnabled": true, "ExpiresInMinutes": 60})
    );
}

#[tokio::test]
async fn set_false_puts_only_protection_enabled_false() {
    let agent = Agent::start().await;
    // A trailing slash on the agent URI must not double up in the path.
    let uri = format!("{}/", agent.uri());
    let protection = TaskProtection::new(&uri, ProtectionConfig::default()).expect("protection");
    protection.set(false).await.expect("set(false)");
    let calls = agent.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].method, "PUT");
    assert_eq!(calls[0].path, STATE);
    // The agent refuses unknown fields, so nothing else may be sent.
    assert_eq!(calls[0].body, json!({"ProtectionEnabled": false}));
}

#[tokio::test]
async fn an_error_status_is_an_error_with_the_body() {
    let agent = Agent::start().await;
    agent.answer(Reply::Status(503, "agent is restarting"));
    let protection = fast(&agent, ProtectionConfig::default());
    match protection.set(true).await {
        Err(ProtectionError::Status { status, body }) => {
            assert_eq!(status, 503);
            assert_eq!(body, "agent is restarting");
        }
        other => panic!("expected a status error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_failure_object_in_a_200_is_an_error() {
    let agent = Agent::start().await;
    agent.answer(Reply::Failure("TASK_NOT_VALID"));
    let protection = fast(&agent, ProtectionConfig::default());
    match protection.set(true).await {
        Err(error @ ProtectionError::Failure { .. }) => {
            let ProtectionError::Failure { reason, detail } = &error else {
                unreachable!()
            };
            assert_eq!(reason, "TASK_NOT_VALID");
            assert_eq!(detail.as_deref(), Some("from the test"));
            assert!(!error.is_retryable());
            assert!(error.to_string().contains("TASK_NOT_VALID"), "{error}");
        }
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[tokio::test]
async fn an_error_object_is_an_error_with_its_code() {
    let agent = Agent::start().await;
    agent.answer_next(1, Reply::Error(200, "ServerException"));
    agent.answer_next(1, Reply::Error(403, "AccessDeniedException"));
    let protection = fast(&agent, ProtectionConfig::default());
    match protection.set(true).await {
        Err(error @ ProtectionError::Agent { status: 200, .. }) => {
            assert!(error.to_string().contains("ServerException"), "{error}");
            assert!(error.is_retryable());
        }
        other => panic!("expected an agent error, got {other:?}"),
    }
    match protection.set(true).await {
        Err(error @ ProtectionError::Agent { status: 403, .. }) => {
            assert!(
                error.to_string().contains("AccessDeniedException"),
                "{error}"
            );
            assert!(!error.is_retryable());
        }
        other => panic!("expected an agent error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_silent_agent_times_out() {
    let agent = Agent::start().await;
    agent.answer(Reply::Hang);
    let mut protection = fast(&agent, ProtectionConfig::default());
    protection.request_timeout = Duration::from_millis(100);
    let started = Instant::now();
    let result = protection.set(true).await;
    assert!(
        matches!(result, Err(ProtectionError::TimedOut(_))),
        "{result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn an_absent_agent_is_a_transport_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local address");
    drop(listener);
    let protection =
        TaskProtection::new(&format!("http://{addr}/api/x"), ProtectionConfig::default())
            .expect("protection");
    let result = protection.set(false).await;
    match result {
        Err(error @ ProtectionError::Transport { .. }) => {
            // The cause is in the message, not just hyper's "client error (Connect)".
            assert!(
                error.to_string().to_lowercase().contains("refused"),
                "{error}"
            );
        }
        other => panic!("expected a transport error, got {other:?}"),
    }
}

#[test]
fn answers_are_read_strictly() {
    let ok = json!({"protection": {"ProtectionEnabled": false, "TaskArn": "arn"}}).to_string();
    assert!(interpret(200, ok.as_bytes()).is_ok());
    assert!(interpret(200, b"").is_ok());
    assert!(matches!(
        interpret(200, b"<html>proxy</html>"),
        Err(ProtectionError::InvalidResponse { .. })
    ));
    assert!(matches!(
        interpret(200, br#"{"failure":{"Reason":"MISSING"}}"#),
        Err(ProtectionError::Failure { .. })
    ));
    // The agent's own error answers come with a 4xx/5xx status and an error object.
    assert!(matches!(
        interpret(
            400,
            br#"{"error":{"Code":"InvalidParameterException","Message":"m"}}"#
        ),
        Err(ProtectionError::Agent { status: 400, .. })
    ));
    let long = "x".repeat(10_000);
    match interpret(500, long.as_bytes()) {
        Err(ProtectionError::Status { status: 500, body }) => {
            assert!(body.chars().count() <= EXCERPT_CHARS + 1, "{}", body.len());
        }
        other => panic!("expected a status error, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// Construction and settings

#[test]
fn the_agent_uri_comes_from_the_environment_when_set() {
    assert_eq!(agent_uri_from(Err(VarError::NotPresent)), Ok(None));
    assert_eq!(agent_uri_from(Ok(String::new())), Ok(None));
    assert_eq!(agent_uri_from(Ok("  ".to_owned())), Ok(None));
    assert_eq!(
        agent_uri_from(Ok("http://169.254.170.2/api/abc\n".to_owned())),
        Ok(Some("http://169.254.170.2/api/abc".to_owned()))
    );
}

#[test]
fn the_agent_uri_must_be_plain_http() {
    for bad in [
        "https://169.254.170.2/api/abc",
        "169.254.170.2/api/abc",
        "not a url",
        "http:///api/abc",
        "http://169.254.170.2/api/abc?x=1",
    ] {
        let error = TaskProtection::new(bad, ProtectionConfig::default())
            .err()
            .unwrap_or_else(|| panic!("{bad:?} was accepted"));
        assert_eq!(error.setting, AGENT_URI_VAR, "{bad:?}");
    }
    let protection =
        TaskProtection::new("http://169.254.170.2/api/abc", ProtectionConfig::default())
            .expect("the agent URI ECS sets");
    assert_eq!(
        protection.endpoint.to_string(),
        "http://169.254.170.2/api/abc/task-protection/v1/state"
    );
}

#[test]
fn settings_out_of_range_name_the_setting() {
    assert_eq!(ProtectionConfig::default().validate(), Ok(()));
    let minutes = |n: u64| Duration::from_secs(n * 60);
    let cases = [
        (
            ProtectionConfig {
                expires_in: Duration::ZERO,
                ..ProtectionConfig::default()
            },
            "protection.expires_in",
        ),
        (
            ProtectionConfig {
                expires_in: minutes(2881),
                ..ProtectionConfig::default()
            },
            "protection.expires_in",
        ),
        (
            ProtectionConfig {
                expires_in: Duration::from_secs(90),
                ..ProtectionConfig::default()
            },
            "protection.expires_in",
        ),
        (
            ProtectionConfig {
                expires_in: minutes(10),
                renew_before: minutes(10),
                ..ProtectionConfig::default()
            },
            "protection.renew_before",
        ),
        (
            ProtectionConfig {
                renew_before: Duration::ZERO,
                ..ProtectionConfig::default()
            },
            "protection.renew_before",
        ),
        (
            ProtectionConfig {
                idle_release: Duration::from_millis(10),
                ..ProtectionConfig::default()
            },
            "protection.idle_release",
        ),
    ];
    for (config, setting) in cases {
        let error = config.validate().expect_err("out of range");
        assert_eq!(error.setting, setting, "{config:?}");
        assert!(error.to_string().contains(setting), "{error}");
        // `new` checks the settings too.
        let error =
            TaskProtection::new("http://169.254.170.2/api/abc", config).expect_err("out of range");
        assert_eq!(error.setting, setting);
    }
    let longest = ProtectionConfig {
        expires_in: minutes(2880),
        ..ProtectionConfig::default()
    };
    assert_eq!(longest.validate(), Ok(()));
    assert_eq!(longest.expires_in_minutes(), 2880);
}

// ---------------------------------------------------------------------------------------
// The driver

#[tokio::test]
async fn the_driver_enables_renews_and_releases_when_idle() {
    let agent = Agent::start().await;
    let (in_flight, stop, driver) = drive(fast(&agent, fast_config()));

    sleep(Duration::from_millis(100)).await;
    assert!(agent.calls().is_empty(), "an idle worker asks for nothing");

    in_flight.store(2, Ordering::SeqCst);
    let calls = agent.wait_for_calls(1).await;
    assert_eq!(enabled(&calls[0]), Some(true));
    assert_eq!(calls[0].body["ExpiresInMinutes"], json!(1));

    // 600 ms protection renewed 300 ms before it lapses: twice more in about 600 ms,
    // and not on every 10 ms poll.
    let calls = agent.wait_for_calls(3).await;
    assert!(
        calls.iter().all(|call| enabled(call) == Some(true)),
        "{calls:#?}"
    );
    for pair in calls.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(
            gap >= Duration::from_millis(250) && gap < Duration::from_millis(600),
            "renewed {gap:?} after the last call"
        );
    }

    let idle_since = Instant::now();
    in_flight.store(0, Ordering::SeqCst);
    let released = loop {
        let calls = agent.calls();
        if let Some(call) = calls.iter().find(|call| enabled(call) == Some(false)) {
            break call.clone();
        }
        assert!(
            idle_since.elapsed() < PATIENCE,
            "never released: {calls:#?}"
        );
        sleep(Duration::from_millis(5)).await;
    };
    let waited = released.at - idle_since;
    assert!(
        waited >= Duration::from_millis(250),
        "released {waited:?} after the last handler, before idle_release"
    );
    assert_eq!(released.body, json!({"ProtectionEnabled": false}));

    // Off and idle: nothing more, and nothing to drop at stop.
    let count = agent.calls().len();
    sleep(Duration::from_millis(200)).await;
    stop.cancel();
    let report = driver.await.expect("driver");
    assert_eq!(agent.calls().len(), count);
    assert_eq!(report.enabled, 1);
    assert!(report.renewed >= 2, "{report:?}");
    assert_eq!(report.disabled, 1);
    assert_eq!(report.failures, 0);
    assert_eq!(report.calls, count as u64);
}

#[tokio::test]
async fn the_driver_drops_protection_when_stopped() {
    let agent = Agent::start().await;
    let config = ProtectionConfig {
        idle_release: Duration::from_secs(60),
        ..fast_config()
    };
    let (in_flight, stop, driver) = drive(fast(&agent, config));
    in_flight.store(1, Ordering::SeqCst);
    agent.wait_for_calls(1).await;
    stop.cancel();
    let report = tokio::time::timeout(PATIENCE, driver)
        .await
        .expect("the driver returns once stopped")
        .expect("driver");
    let calls = agent.calls();
    let last = calls.last().expect("calls");
    assert_eq!(last.body, json!({"ProtectionEnabled": false}), "{calls:#?}");
    assert_eq!(report.enabled, 1);
    assert_eq!(report.disabled, 1);
}

#[tokio::test]
async fn the_driver_stopped_while_never_protected_makes_no_call() {
    let agent = Agent::start().await;
    let (_in_flight, stop, driver) = drive(fast(&agent, fast_config()));
    sleep(Duration::from_millis(50)).await;
    stop.cancel();
    let report = driver.await.expect("driver");
    assert!(agent.calls().is_empty());
    assert_eq!(report, ProtectionReport::default());
}

#[tokio::test]
async fn the_driver_survives_a_failing_agent_and_recovers() {
    let logged = Logged::default();
    let _capture = logged.capture();
    let agent = Agent::start().await;
    agent.answer_next(2, Reply::Status(500, "boom"));
    agent.answer_next(1, Reply::Failure("SERVER_ERROR"));
    let config = ProtectionConfig {
        idle_release: Duration::from_secs(60),
        ..fast_config()
    };
    let (in_flight, stop, driver) = drive(fast(&agent, config));
    in_flight.store(1, Ordering::SeqCst);

    let calls = agent.wait_for_calls(4).await;
    assert!(
        calls.iter().all(|call| enabled(call) == Some(true)),
        "{calls:#?}"
    );
    // 150 ms, then 300 ms, then 300 ms between attempts, not every 10 ms poll.
    for (pair, backoff) in calls.windows(2).zip([150, 300, 300]) {
        let gap = pair[1].at - pair[0].at;
        assert!(
            gap >= Duration::from_millis(backoff - 20),
            "retried {gap:?} after a failure; backoff is {backoff} ms"
        );
    }
    // The agent has answered the fourth call; the driver is stopped once it has read
    // that answer (it says protection is on), however long a loaded machine takes.
    let waiting = Instant::now();
    while !logged
        .events()
        .iter()
        .any(|(_, message)| message.contains("protection on"))
    {
        assert!(
            waiting.elapsed() < PATIENCE,
            "the driver never read the fourth answer: {:?}",
            logged.events()
        );
        sleep(Duration::from_millis(5)).await;
    }

    stop.cancel();
    let report = driver.await.expect("driver");
    let calls = agent.calls();
    assert_eq!(
        calls.last().map(|call| call.body.clone()),
        Some(json!({"ProtectionEnabled": false}))
    );
    assert_eq!(report.failures, 3, "{report:?}");
    assert_eq!(report.enabled, 1, "{report:?}");
    assert_eq!(report.disabled, 1, "{report:?}");
    assert_eq!(report.calls, calls.len() as u64);
    assert!(!report.gave_up);
}

/// What the protection driver logs, captured from the subscriber of this test's thread
/// (a `#[tokio::test]` runs the driver's task there too).
#[derive(Clone, Default)]
struct Logged(Arc<Mutex<Vec<(Level, String)>>>);

impl Logged {
    /// Captures the driver's events until the guard drops.
    fn capture(&self) -> tracing::subscriber::DefaultGuard {
        tracing::subscriber::set_default(tracing_subscriber::registry().with(self.clone()))
    }

    fn events(&self) -> Vec<(Level, String)> {
        self.0.lock().expect("lock").clone()
    }
}

impl<S: tracing::Subscriber> Layer<S> for Logged {
    fn on_event(&self, event: &tracing::Event<'_>, _: layer::Context<'_, S>) {
        if !event
            .metadata()
            .target()
            .starts_with("spotq::ecs::protection")
        {
            return;
        }
        struct Message<'a>(&'a mut String);
        impl Visit for Message<'_> {
            fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    *self.0 = format!("{value:?}");
                }
            }
        }
        let mut message = String::new();
        event.record(&mut Message(&mut message));
        self.0
            .lock()
            .expect("lock")
            .push((*event.metadata().level(), message));
    }
}

#[tokio::test]
async fn the_driver_notes_once_that_a_standalone_task_has_no_protection() {
    let logged = Logged::default();
    let _capture = logged.capture();
    let agent = Agent::start().await;
    agent.answer(Reply::Failure("TASK_NOT_VALID"));
    let (in_flight, stop, driver) = drive(fast(&agent, fast_config()));
    in_flight.store(1, Ordering::SeqCst);
    // Until the driver has read the answer, however long a loaded machine takes.
    let waiting = Instant::now();
    while logged.events().is_empty() {
        assert!(
            waiting.elapsed() < PATIENCE,
            "the driver never read the answer"
        );
        sleep(Duration::from_millis(5)).await;
    }
    // Several retry backoffs (150 ms) of a handler still running: no further call.
    sleep(Duration::from_millis(500)).await;
    stop.cancel();
    let report = driver.await.expect("driver");
    assert_eq!(agent.calls().len(), 1, "asked once");
    assert!(report.gave_up && report.standalone, "{report:?}");
    assert_eq!((report.calls, report.failures), (1, 0), "{report:?}");
    let events = logged.events();
    assert_eq!(events.len(), 1, "logged once: {events:?}");
    assert_eq!(events[0].0, Level::INFO, "{events:?}");
    assert!(events[0].1.contains("standalone task"), "{events:?}");
}

#[tokio::test]
async fn stopping_abandons_a_stuck_call_and_still_releases() {
    let agent = Agent::start().await;
    agent.answer_next(1, Reply::Hang);
    let mut protection = fast(&agent, fast_config());
    protection.request_timeout = Duration::from_secs(30);
    let (in_flight, stop, driver) = drive(protection);
    in_flight.store(1, Ordering::SeqCst);
    agent.wait_for_calls(1).await;
    let stopped = Instant::now();
    stop.cancel();
    let report = tokio::time::timeout(PATIENCE, driver)
        .await
        .expect("the driver returns without waiting out the stuck call")
        .expect("driver");
    assert!(stopped.elapsed() < Duration::from_secs(2));
    // The stuck enable may have reached ECS, so the driver turns protection off.
    let calls = agent.calls();
    assert_eq!(calls.len(), 2, "{calls:#?}");
    assert_eq!(calls[1].body, json!({"ProtectionEnabled": false}));
    assert_eq!(report.calls, 2);
    assert_eq!(report.disabled, 1);
}
