use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};

use super::*;

const TIMESTAMP: u64 = 1_700_000_000_123;

fn orders() -> EmfRecord {
    EmfRecord::new("spotq")
        .dimension("QueueName", "orders")
        .dimension("ServiceName", "queue-processor")
        .metric("BacklogPerTask", Unit::Count, 12.5)
        .metric("Received", Unit::CountPerSecond, 40.0)
        .metric("HandlerP99", Unit::Milliseconds, 0.25)
}

fn parse(line: &str) -> Map<String, Value> {
    match serde_json::from_str(line).expect("a JSON line") {
        Value::Object(root) => root,
        other => panic!("the root is not an object: {other}"),
    }
}

/// Checks `root` against the EMF specification, and returns the metric directive.
fn check_structure(root: &Map<String, Value>, timestamp: u64) -> &Map<String, Value> {
    let metadata = root["_aws"].as_object().expect("`_aws` is an object");
    let keys: BTreeSet<&str> = metadata.keys().map(String::as_str).collect();
    assert_eq!(keys, BTreeSet::from(["CloudWatchMetrics", "Timestamp"]));
    assert_eq!(
        metadata["Timestamp"].as_u64(),
        Some(timestamp),
        "an integer in milliseconds"
    );
    let directives = metadata["CloudWatchMetrics"].as_array().expect("an array");
    assert_eq!(directives.len(), 1);
    let directive = directives[0].as_object().expect("a MetricDirective object");
    let keys: BTreeSet<&str> = directive.keys().map(String::as_str).collect();
    assert_eq!(keys, BTreeSet::from(["Dimensions", "Metrics", "Namespace"]));
    assert!(directive["Namespace"].is_string());

    let mut members = BTreeSet::from(["_aws"]);
    for set in directive["Dimensions"]
        .as_array()
        .expect("an array of sets")
    {
        let set = set.as_array().expect("a DimensionSet is an array");
        assert!(set.len() <= MAX_DIMENSIONS);
        for name in set {
            let name = name.as_str().expect("dimension keys are strings");
            assert!(
                root[name].is_string(),
                "dimension {name} is a string member"
            );
            members.insert(name);
        }
    }
    let metrics = directive["Metrics"].as_array().expect("an array");
    assert!(!metrics.is_empty() && metrics.len() <= MAX_METRICS);
    for definition in metrics {
        let definition = definition.as_object().expect("a MetricDefinition object");
        let name = definition["Name"].as_str().expect("Name is a string");
        assert!(root[name].is_number(), "metric {name} is a number member");
        assert!(definition["Unit"].is_string());
        members.insert(name);
    }
    let all: BTreeSet<&str> = root.keys().map(String::as_str).collect();
    assert_eq!(
        all, members,
        "no member beyond `_aws`, dimensions and metrics"
    );
    directive
}

#[test]
fn a_line_has_the_structure_of_the_emf_specification() {
    let line = orders().to_line(TIMESTAMP).expect("valid");
    assert!(!line.contains('\n'), "one line");
    let root = parse(&line);
    let directive = check_structure(&root, TIMESTAMP);

    assert_eq!(directive["Namespace"], "spotq");
    assert_eq!(
        directive["Dimensions"],
        serde_json::json!([["QueueName", "ServiceName"]])
    );
    assert_eq!(
        directive["Metrics"],
        serde_json::json!([
            {"Name": "BacklogPerTask", "Unit": "Count"},
            {"Name": "Received", "Unit": "Count/Second"},
            {"Name": "HandlerP99", "Unit": "Milliseconds"},
        ])
    );
    assert_eq!(root["QueueName"], "orders");
    assert_eq!(root["ServiceName"], "queue-processor");
    assert_eq!(root["BacklogPerTask"].as_f64(), Some(12.5));
    assert_eq!(root["Received"].as_f64(), Some(40.0));
    assert_eq!(root["HandlerP99"].as_f64(), Some(0.25));
    assert!(line.starts_with(r#"{"_aws":"#), "metadata first: {line}");
}

#[test]
fn a_record_without_dimensions_has_one_empty_dimension_set() {
    let line = EmfRecord::new("spotq")
        .metric("Backlog", Unit::Count, 0.0)
        .to_line(0)
        .expect("valid");
    let root = parse(&line);
    let directive = check_structure(&root, 0);
    assert_eq!(directive["Dimensions"], serde_json::json!([[]]));
    assert_eq!(root["Backlog"].as_f64(), Some(0.0));
}

#[test]
fn strings_are_escaped_and_big_counts_stay_exact() {
    let line = EmfRecord::new("spotq")
        .dimension("Queue \"Name\"", r"a\b")
        .metric("Größe", Unit::Bytes, 9_007_199_254_740_992.0)
        .to_line(u64::MAX)
        .expect("valid");
    let root = parse(&line);
    check_structure(&root, u64::MAX);
    assert_eq!(root["Queue \"Name\""], r"a\b");
    assert_eq!(root["Größe"].as_f64(), Some(9_007_199_254_740_992.0));
}

#[test]
fn units_are_spelled_as_cloudwatch_spells_them() {
    let units = [
        (Unit::Seconds, "Seconds"),
        (Unit::Microseconds, "Microseconds"),
        (Unit::Milliseconds, "Milliseconds"),
        (Unit::Bytes, "Bytes"),
        (Unit::Kilobytes, "Kilobytes"),
        (Unit::Megabytes, "Megabytes"),
        (Unit::Gigabytes, "Gigabytes"),
        (Unit::Terabytes, "Terabytes"),
        (Unit::Bits, "Bits"),
        (Unit::Kilobits, "Kilobits"),
        (Unit::Megabits, "Megabits"),
        (Unit::Gigabits, "Gigabits"),
        (Unit::Terabits, "Terabits"),
        (Unit::Percent, "Percent"),
        (Unit::Count, "Count"),
        (Unit::BytesPerSecond, "Bytes/Second"),
        (Unit::KilobytesPerSecond, "Kilobytes/Second"),
        (Unit::MegabytesPerSecond, "Megabytes/Second"),
        (Unit::GigabytesPerSecond, "Gigabytes/Second"),
        (Unit::TerabytesPerSecond, "Terabytes/Second"),
        (Unit::BitsPerSecond, "Bits/Second"),
        (Unit::KilobitsPerSecond, "Kilobits/Second"),
        (Unit::MegabitsPerSecond, "Megabits/Second"),
        (Unit::GigabitsPerSecond, "Gigabits/Second"),
        (Unit::TerabitsPerSecond, "Terabits/Second"),
        (Unit::CountPerSecond, "Count/Second"),
        (Unit::None, "None"),
    ];
    for (unit, spelled) in units {
        assert_eq!(unit.as_str(), spelled);
        assert_eq!(unit.to_string(), spelled);
    }
}

#[test]
fn the_limits_themselves_are_allowed() {
    let mut record = EmfRecord::new("a".repeat(MAX_NAME_CHARS));
    for index in 0..MAX_DIMENSIONS {
        record = record.dimension(format!("D{index}"), "v".repeat(MAX_DIMENSION_VALUE_CHARS));
    }
    for index in 0..MAX_METRICS {
        record = record.metric(format!("M{index}"), Unit::None, -1.5);
    }
    let line = record.to_line(TIMESTAMP).expect("at the limits");
    check_structure(&parse(&line), TIMESTAMP);
}

fn error_of(record: EmfRecord) -> EmfError {
    let error = record.validate().expect_err("invalid");
    // Compared as text: a NaN in `NotFinite` is not equal to itself.
    let from_line = record.to_line(TIMESTAMP).expect_err("invalid");
    assert_eq!(
        format!("{from_line:?}"),
        format!("{error:?}"),
        "to_line agrees"
    );
    error
}

fn metric(name: &str) -> EmfRecord {
    EmfRecord::new("spotq").metric(name, Unit::Count, 1.0)
}

#[test]
fn values_that_are_not_finite_are_rejected() {
    for value in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let error = error_of(EmfRecord::new("spotq").metric("Ratio", Unit::None, value));
        assert!(
            matches!(&error, EmfError::NotFinite { metric, .. } if metric == "Ratio"),
            "{error}"
        );
    }
}

#[test]
fn too_many_metrics_or_dimensions_are_rejected() {
    let mut record = EmfRecord::new("spotq");
    for index in 0..=MAX_METRICS {
        record = record.metric(format!("M{index}"), Unit::Count, 1.0);
    }
    assert_eq!(error_of(record), EmfError::TooManyMetrics { count: 101 });

    let mut record = metric("Backlog");
    for index in 0..=MAX_DIMENSIONS {
        record = record.dimension(format!("D{index}"), "v");
    }
    assert_eq!(error_of(record), EmfError::TooManyDimensions { count: 31 });

    assert_eq!(error_of(EmfRecord::new("spotq")), EmfError::NoMetrics);
}

#[test]
fn bad_namespaces_are_rejected() {
    let long = "n".repeat(MAX_NAME_CHARS + 1);
    for namespace in [
        "",
        "   ",
        "AWS/SQS",
        ":spotq",
        "spotq!",
        "späti",
        long.as_str(),
    ] {
        let error = error_of(EmfRecord::new(namespace).metric("Backlog", Unit::Count, 1.0));
        let EmfError::InvalidNamespace {
            namespace: given, ..
        } = &error
        else {
            panic!("{namespace:?}: {error}");
        };
        assert_eq!(given, namespace);
    }
    assert!(metric("Backlog").validate().is_ok());
    assert!(
        EmfRecord::new("My App/Workers-1.0_#:x")
            .metric("Backlog", Unit::Count, 1.0)
            .validate()
            .is_ok()
    );
}

#[test]
fn bad_names_are_rejected() {
    let long = "n".repeat(MAX_NAME_CHARS + 1);
    for name in ["", " ", "_aws", "a\nb", long.as_str()] {
        let error = error_of(metric(name));
        let EmfError::InvalidName {
            kind: NameKind::Metric,
            name: given,
            ..
        } = &error
        else {
            panic!("{name:?}: {error}");
        };
        assert_eq!(given, name);
        assert_invalid_dimension_name(name);
    }
    // Allowed for metrics, not for dimensions.
    for name in [":Queue", "Größe"] {
        assert_invalid_dimension_name(name);
    }
}

fn assert_invalid_dimension_name(name: &str) {
    let error = error_of(metric("Backlog").dimension(name, "orders"));
    assert!(
        matches!(
            &error,
            EmfError::InvalidName {
                kind: NameKind::Dimension,
                ..
            }
        ),
        "{name:?}: {error}"
    );
}

#[test]
fn bad_dimension_values_are_rejected() {
    let long = "v".repeat(MAX_DIMENSION_VALUE_CHARS + 1);
    for value in ["", "  ", "ä", "a\tb", long.as_str()] {
        let error = error_of(metric("Backlog").dimension("QueueName", value));
        let EmfError::InvalidDimensionValue { dimension, .. } = &error else {
            panic!("{value:?}: {error}");
        };
        assert_eq!(dimension, "QueueName");
    }
}

#[test]
fn a_name_used_twice_is_rejected() {
    let cases = [
        (
            metric("Backlog").metric("Backlog", Unit::Count, 2.0),
            "Backlog",
        ),
        (
            metric("Backlog")
                .dimension("QueueName", "a")
                .dimension("QueueName", "b"),
            "QueueName",
        ),
        (metric("Backlog").dimension("Backlog", "orders"), "Backlog"),
    ];
    for (record, name) in cases {
        assert_eq!(
            error_of(record),
            EmfError::DuplicateName {
                name: name.to_owned()
            }
        );
    }
}

/// A writer the test can read back.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn lines(&self) -> Vec<String> {
        let bytes = self.0.lock().expect("not poisoned").clone();
        String::from_utf8(bytes)
            .expect("UTF-8")
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .expect("not poisoned")
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

const INTERVAL: Duration = Duration::from_secs(60);

#[tokio::test(start_paused = true)]
async fn the_reporter_writes_a_line_each_interval_and_one_on_stop() {
    let out = Captured::default();
    let stop = CancellationToken::new();
    let mut calls = 0_u32;
    let reporter = spawn_emf_reporter(
        INTERVAL,
        move || {
            calls += 1;
            Some(orders().metric("Call", Unit::Count, f64::from(calls)))
        },
        out.clone(),
        stop.clone(),
    )
    .expect("a valid interval");

    tokio::time::sleep(INTERVAL - Duration::from_millis(1)).await;
    assert!(
        out.lines().is_empty(),
        "the first line comes after one interval"
    );
    tokio::time::sleep(INTERVAL * 2 + Duration::from_millis(2)).await;
    assert_eq!(out.lines().len(), 3, "three intervals, three lines");

    stop.cancel();
    tokio::time::timeout(Duration::from_secs(1), reporter)
        .await
        .expect("the reporter ends on stop")
        .expect("no panic");
    let lines = out.lines();
    assert_eq!(lines.len(), 4, "one last line on stop");
    for (index, line) in lines.iter().enumerate() {
        let root = parse(line);
        let timestamp = root["_aws"]["Timestamp"].as_u64().expect("a timestamp");
        check_structure(&root, timestamp);
        assert_eq!(root["Call"].as_f64(), Some(index as f64 + 1.0));
    }
}

#[tokio::test(start_paused = true)]
async fn the_reporter_skips_intervals_without_a_valid_record() {
    let out = Captured::default();
    let stop = CancellationToken::new();
    let mut calls = 0_u32;
    let reporter = spawn_emf_reporter(
        INTERVAL,
        move || {
            calls += 1;
            match calls {
                1 => None,
                2 => Some(metric("Ratio").metric("Other", Unit::None, f64::NAN)),
                _ => Some(metric("Backlog")),
            }
        },
        out.clone(),
        stop.clone(),
    )
    .expect("a valid interval");
    tokio::time::sleep(INTERVAL * 3 + Duration::from_millis(1)).await;
    stop.cancel();
    reporter.await.expect("no panic");
    let lines = out.lines();
    assert_eq!(lines.len(), 2, "{lines:?}");
    for line in &lines {
        assert_eq!(parse(line)["Backlog"].as_f64(), Some(1.0));
    }
}

#[tokio::test]
async fn a_zero_interval_is_a_config_error() {
    let error = spawn_emf_reporter(
        Duration::ZERO,
        || None,
        Captured::default(),
        CancellationToken::new(),
    )
    .expect_err("zero");
    assert_eq!(error.setting, "spawn_emf_reporter(interval)");
}
