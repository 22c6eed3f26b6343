//! The process-level chaos run at test size: `spotq-chaos` (the same binary
//! `scripts/chaos` runs at 10,000 messages) with 300 messages against fauxqs, four
//! worker processes of the controller's local target behind the fault proxy, random
//! SIGTERMs and SIGKILLs. Nothing may be lost or stranded, the dead-letter queue holds
//! exactly the poison messages, what a SIGKILL leaves invisible comes back within the
//! visibility timeout, and the signals and faults did happen.

use std::process::Command;

/// The queue's visibility timeout for the run, seconds.
const VISIBILITY_TIMEOUT_SECS: u64 = 6;

fn fauxqs_endpoint() -> String {
    let endpoint = std::env::var("SPOTQ_FAUXQS_ENDPOINT").unwrap_or_default();
    assert!(
        endpoint.starts_with("http://127.0.0.1:") || endpoint.starts_with("http://localhost:"),
        "SPOTQ_FAUXQS_ENDPOINT must name fauxqs on loopback (got {endpoint:?}): run the \
         tests through scripts/test, which starts it, or export the endpoint that \
         `scripts/fauxqs.sh start` prints"
    );
    endpoint
}

#[test]
fn three_hundred_messages_through_faults_and_signals_lose_and_strand_nothing() {
    let endpoint = fauxqs_endpoint();
    let dir = std::env::temp_dir().join(format!("spotq-chaos-test-{}", std::process::id()));
    let json = dir.with_extension("json");
    let output = Command::new(env!("CARGO_BIN_EXE_spotq-chaos"))
        // 15 messages a second, as the workers' capacity allows under the signals.
        .args(["--messages", "300", "--workers", "4", "--concurrency", "8"])
        .args(["--duration", "20s", "--seed", "500", "--fault-rate", "4"])
        // A signal a second, 60 % SIGTERM; a quarter of the handlers outlast the 1 s
        // grace period, so SIGTERMs find messages to release.
        .args(["--signal-every", "1s", "--sigkill-share", "0.4"])
        .args(["--long-share", "0.25", "--poison-share", "0.02"])
        // Each SIGTERM release and each SIGKILL costs a receive, and so does a receive
        // released unstarted at a shutdown; the run spares a worker handling a healthy
        // message at its last two allowed receives, so no healthy message reaches the
        // dead-letter queue by the run's own signals. A poison message's five failed
        // receives take a few seconds of retry backoff.
        .args(["--max-receive-count", "5"])
        .args(["--visibility-timeout", &VISIBILITY_TIMEOUT_SECS.to_string()])
        .args(["--drain-timeout", "60s", "--endpoint", &endpoint])
        .arg("--worker")
        .arg(env!("CARGO_BIN_EXE_spotq-test-worker"))
        .arg("--proxy")
        .arg(env!("CARGO_BIN_EXE_spotq-fault-proxy"))
        .arg("--work-dir")
        .arg(&dir)
        .arg("--json")
        .arg(&json)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .output()
        .expect("run spotq-chaos");
    let table = String::from_utf8_lossy(&output.stdout);
    eprintln!("{table}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap_or_else(|error| {
            panic!(
                "spotq-chaos wrote no figures ({error}); it said:\n{}",
                String::from_utf8_lossy(&output.stderr)
            )
        }))
        .expect("the figures as JSON");
    let figures = &report["figures"];
    let number = |name: &str| {
        figures[name]
            .as_u64()
            .unwrap_or_else(|| panic!("figure {name} in {report}"))
    };
    let context = format!(
        "{table}\nfailures: {}\nrun directory (event log, worker logs): {}",
        report["failures"],
        dir.display()
    );

    assert_eq!(number("sent"), 300, "{context}");
    assert_eq!(number("poison"), 6, "{context}");
    assert_eq!(report["drained"], true, "the queue drained; {context}");
    assert_eq!(number("lost"), 0, "{context}");
    assert_eq!(number("stranded"), 0, "{context}");
    assert_eq!(number("handled"), 294, "{context}");
    assert_eq!(number("dead_lettered"), 6, "{context}");
    assert_eq!(number("dead_lettered_not_poison"), 0, "{context}");
    assert_eq!(number("left_in_queue"), 0, "{context}");
    // Whatever a SIGKILL leaves invisible waits out the visibility timeout counted from
    // its last receive or heartbeat, and is received within a poll or two after it.
    assert!(
        number("longest_invisible_after_sigkill_ms") <= (VISIBILITY_TIMEOUT_SECS + 3) * 1000,
        "{context}"
    );
    // The chaos did happen: both signals, messages held by the signalled workers, and
    // faults on the workers' calls.
    assert!(number("sigterms_sent") > 0, "{context}");
    assert!(number("sigkills_sent") > 0, "{context}");
    assert!(
        number("sigterm_exits") >= number("sigterms_sent"),
        "{context}"
    );
    assert!(number("held_at_sigkills") > 0, "{context}");
    assert!(number("held_at_sigterm_exits") > 0, "{context}");
    assert!(
        report["faults_total"].as_u64().unwrap_or(0) > 0,
        "{context}"
    );
    assert_eq!(number("other_exits"), 0, "{context}");
    assert_eq!(report["killed_by_controller"], 0, "{context}");
    assert!(output.status.success(), "{context}");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&json);
}
