//! The process-level chaos run at test size: `spotq-chaos` (the same binary
//! `scripts/chaos` runs at 10,000 messages) with 300 messages against fauxqs, four
//! worker processes of the controller's local target behind the fault proxy (errors,
//! hung and slow calls), random SIGTERMs and SIGKILLs; on a standard queue and on a FIFO
//! queue of 100 groups. Nothing may be lost or stranded, the dead-letter queue holds
//! exactly the poison messages, what a SIGKILL leaves invisible comes back within the
//! visibility timeout, every SIGTERMed worker exits within its stop timeout, no FIFO
//! group runs out of order, and the signals and faults did happen.

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

/// One chaos run's report (`--json`) and a description of it for failed assertions.
struct Run {
    report: serde_json::Value,
    context: String,
    dir: std::path::PathBuf,
    json: std::path::PathBuf,
    success: bool,
}

impl Run {
    fn number(&self, name: &str) -> u64 {
        self.report["figures"][name]
            .as_u64()
            .unwrap_or_else(|| panic!("figure {name} in {}", self.report))
    }

    /// The faults of one kind the proxy injected, over every action.
    fn faults(&self, kind: &str) -> u64 {
        self.report["faults"]
            .as_object()
            .into_iter()
            .flat_map(|actions| actions.values())
            .filter_map(|by_kind| by_kind[kind].as_u64())
            .sum()
    }

    /// What every run must show: nothing lost or stranded, the poison messages and only
    /// they dead-lettered, every SIGTERMed worker out within its stop timeout, and the
    /// chaos did happen (both signals, messages held by the signalled workers, errors,
    /// hung and slow calls on the workers' requests).
    fn assert_nothing_lost(&self, sent: u64, poison: u64) {
        let context = &self.context;
        assert_eq!(self.number("sent"), sent, "{context}");
        assert_eq!(self.number("poison"), poison, "{context}");
        assert_eq!(self.report["drained"], true, "the queue drained; {context}");
        assert_eq!(self.number("lost"), 0, "{context}");
        assert_eq!(self.number("stranded"), 0, "{context}");
        assert_eq!(self.number("handled"), sent - poison, "{context}");
        assert_eq!(self.number("dead_lettered"), poison, "{context}");
        assert_eq!(self.number("dead_lettered_not_poison"), 0, "{context}");
        assert_eq!(self.number("left_in_queue"), 0, "{context}");
        // Whatever a SIGKILL leaves invisible waits out the visibility timeout counted
        // from its last receive or heartbeat, and is received within a poll or two after.
        assert!(
            self.number("longest_invisible_after_sigkill_ms")
                <= (VISIBILITY_TIMEOUT_SECS + 3) * 1000,
            "{context}"
        );
        assert!(
            self.number("longest_sigterm_to_exit_ms") < STOP_TIMEOUT_SECS * 1000,
            "{context}"
        );
        assert!(self.number("sigterms_sent") > 0, "{context}");
        assert!(self.number("sigkills_sent") > 0, "{context}");
        assert!(
            self.number("sigterm_exits") >= self.number("sigterms_sent"),
            "{context}"
        );
        assert!(self.number("held_at_sigkills") > 0, "{context}");
        assert!(self.number("held_at_sigterm_exits") > 0, "{context}");
        for kind in ["throttle", "hang", "slow"] {
            assert!(self.faults(kind) > 0, "no {kind} fault; {context}");
        }
        assert_eq!(self.number("other_exits"), 0, "{context}");
        assert_eq!(self.report["killed_by_controller"], 0, "{context}");
        assert!(self.success, "{context}");
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if self.success && !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
            let _ = std::fs::remove_file(&self.json);
        }
    }
}

/// The workers' stop timeout for the runs, seconds.
const STOP_TIMEOUT_SECS: u64 = 5;

/// Runs `spotq-chaos` with 300 messages over 20 s (15 a second, as the workers'
/// capacity allows under the signals) and `extra` flags.
fn chaos(name: &str, extra: &[&str]) -> Run {
    let endpoint = fauxqs_endpoint();
    let dir = std::env::temp_dir().join(format!("spotq-chaos-{name}-{}", std::process::id()));
    let json = dir.with_extension("json");
    let output = Command::new(env!("CARGO_BIN_EXE_spotq-chaos"))
        .args(["--messages", "300", "--workers", "4", "--concurrency", "8"])
        .args(["--duration", "20s", "--seed", "500", "--fault-rate", "4"])
        // A few hung and slow calls among the workers' few thousand requests.
        .args(["--hang-rate", "0.5", "--slow-rate", "0.5"])
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
        .args(["--stop-timeout", &STOP_TIMEOUT_SECS.to_string()])
        .args(["--drain-timeout", "60s", "--endpoint", &endpoint])
        .args(extra)
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
    let context = format!(
        "{table}\nfailures: {}\nrun directory (event log, worker logs): {}",
        report["failures"],
        dir.display()
    );
    Run {
        report,
        context,
        dir,
        json,
        success: output.status.success(),
    }
}

#[test]
fn three_hundred_messages_through_faults_and_signals_lose_and_strand_nothing() {
    let run = chaos("standard", &[]);
    run.assert_nothing_lost(300, 6);
}

#[test]
fn a_fifo_queue_of_a_hundred_groups_keeps_each_group_in_order_through_the_chaos() {
    let run = chaos("fifo", &["--fifo-groups", "100"]);
    run.assert_nothing_lost(300, 6);
    assert_eq!(run.number("fifo_groups"), 100, "{}", run.context);
    assert_eq!(run.number("fifo_groups_out_of_order"), 0, "{}", run.context);
}
