use super::*;

const fn secs(secs: u64) -> Duration {
    Duration::from_secs(secs)
}

const fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

/// Nothing known of the other settings but the default concurrency.
const ALONE: Others = Others {
    concurrency: 16,
    visibility_timeout: None,
    heartbeat_off: false,
};

/// The setting a failed check names, or `None` for a value that passes.
fn named(result: Result<(), Invalid>) -> Option<&'static str> {
    result.err().map(|invalid| invalid.setting)
}

#[test]
fn each_limit_is_allowed_and_one_past_it_is_not() {
    let cases: [(Result<(), Invalid>, Option<&str>); 39] = [
        (concurrency(1), None),
        (concurrency(0), Some("concurrency")),
        (pollers(1, 1), None),
        (pollers(16, 16), None),
        (pollers(0, 16), Some("pollers")),
        (pollers(17, 16), Some("pollers")),
        (batch_size(1), None),
        (batch_size(MAX_BATCH), None),
        (batch_size(0), Some("batch_size")),
        (batch_size(MAX_BATCH + 1), Some("batch_size")),
        (wait_time(Duration::ZERO), None),
        (wait_time(MAX_WAIT), None),
        (wait_time(MAX_WAIT + secs(1)), Some("wait_time")),
        (wait_time(ms(1_500)), Some("wait_time")),
        (visibility_timeout(MIN_VISIBILITY), None),
        (visibility_timeout(MAX_VISIBILITY), None),
        (visibility_timeout(ms(999)), Some("visibility_timeout")),
        (
            visibility_timeout(MAX_VISIBILITY + secs(1)),
            Some("visibility_timeout"),
        ),
        (visibility_timeout(ms(1_500)), Some("visibility_timeout")),
        (handler_timeout(ms(1), &ALONE), None),
        (handler_timeout(MAX_HANDLER_TIMEOUT, &ALONE), None),
        (
            handler_timeout(Duration::ZERO, &ALONE),
            Some("handler_timeout"),
        ),
        (
            handler_timeout(MAX_HANDLER_TIMEOUT + ms(1), &ALONE),
            Some("handler_timeout"),
        ),
        // Heartbeats stop a minute short of the cap: the handler must too.
        (
            handler_timeout(MAX_VISIBILITY, &ALONE),
            Some("handler_timeout"),
        ),
        (heartbeat(ms(1), None), None),
        (heartbeat(Duration::ZERO, None), Some("heartbeat")),
        (retry_backoff(Duration::ZERO, MAX_VISIBILITY), None),
        (
            retry_backoff(secs(1), MAX_VISIBILITY + secs(1)),
            Some("retry_backoff.max"),
        ),
        (retry_backoff(secs(2), secs(1)), Some("retry_backoff.base")),
        (
            flush_interval(MAX_FLUSH_INTERVAL + ms(1)),
            Some("flush_interval"),
        ),
        (stop_timeout(MAX_STOP_TIMEOUT + ms(1)), Some("stop_timeout")),
        (
            release_jitter(MAX_RELEASE_JITTER + ms(1)),
            Some("release_jitter"),
        ),
        (
            backlog_interval(MIN_BACKLOG_INTERVAL - ms(1)),
            Some("backlog_interval"),
        ),
        (
            backlog_interval(MAX_BACKLOG_INTERVAL + ms(1)),
            Some("backlog_interval"),
        ),
        (name(""), Some("name")),
        (exit_after_empty_receives(1), None),
        (
            exit_after_empty_receives(0),
            Some("exit_after_empty_receives"),
        ),
        (max_run_time(ms(1)), None),
        (max_run_time(Duration::ZERO), Some("max_run_time")),
    ];
    for (index, (result, setting)) in cases.into_iter().enumerate() {
        assert_eq!(named(result), setting, "case {index}");
    }
    for result in [
        flush_interval(MAX_FLUSH_INTERVAL),
        stop_timeout(MAX_STOP_TIMEOUT),
        release_jitter(MAX_RELEASE_JITTER),
        backlog_interval(MIN_BACKLOG_INTERVAL),
        backlog_interval(MAX_BACKLOG_INTERVAL),
        name("orders"),
    ] {
        assert_eq!(result, Ok(()));
    }
}

#[test]
fn settings_that_depend_on_the_visibility_timeout() {
    assert_eq!(heartbeat(secs(29), Some(secs(30))), Ok(()));
    assert_eq!(
        named(heartbeat(secs(30), Some(secs(30)))),
        Some("heartbeat")
    );
    assert_eq!(
        handler_timeout_without_heartbeat(secs(29), secs(30)),
        Ok(())
    );
    assert_eq!(
        named(handler_timeout_without_heartbeat(secs(30), secs(30))),
        Some("handler_timeout")
    );
    // The same rule, where the handler timeout's check knows the others.
    let off = |visibility| Others {
        visibility_timeout: visibility,
        heartbeat_off: true,
        ..ALONE
    };
    assert_eq!(handler_timeout(secs(29), &off(Some(secs(30)))), Ok(()));
    assert_eq!(
        named(handler_timeout(secs(30), &off(Some(secs(30))))),
        Some("handler_timeout")
    );
    // Without a visibility timeout of its own, the queue's is checked at start.
    assert_eq!(handler_timeout(secs(30), &off(None)), Ok(()));
    let on = Others {
        visibility_timeout: Some(secs(30)),
        ..ALONE
    };
    assert_eq!(handler_timeout(secs(30), &on), Ok(()));
}

#[test]
fn the_error_names_the_setting_the_value_and_the_rule() {
    let invalid = batch_size(11).expect_err("11");
    assert_eq!(invalid.setting, "batch_size");
    assert_eq!(invalid.value, "11");
    assert_eq!(invalid.expected, "1 to 10");
    assert_eq!(
        invalid.to_string(),
        "`batch_size` must be 1 to 10: SQS returns at most 10 messages per receive"
    );
    assert_eq!(
        invalid.allowed(),
        "1 to 10 (SQS returns at most 10 messages per receive)"
    );
    // Durations in the syntax the attribute and the flags take.
    let invalid = wait_time(secs(21)).expect_err("21s");
    assert_eq!(
        (invalid.value.as_str(), invalid.expected.as_str()),
        ("21s", "at most 20s")
    );
    let invalid = visibility_timeout(ms(1_500)).expect_err("1.5s");
    assert_eq!(
        (invalid.value.as_str(), invalid.expected.as_str()),
        ("1.5s", "whole seconds")
    );
    let invalid = heartbeat(secs(45), Some(secs(30))).expect_err("45s");
    assert_eq!(
        invalid.to_string(),
        "`heartbeat` must be shorter than the visibility timeout (30s): \
         each heartbeat extends the visibility before it runs out"
    );
    let invalid = retry_backoff(secs(600), secs(60)).expect_err("base above cap");
    assert_eq!(
        invalid.to_string(),
        "`retry_backoff.base` must be at most the cap, `retry_backoff.max` (1m)"
    );
    assert_eq!(
        invalid.allowed(),
        invalid.expected,
        "no reason, nothing added"
    );
    assert_eq!(name("").expect_err("empty").value, "\"\"");
}
