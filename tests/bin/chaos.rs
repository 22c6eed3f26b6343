//! `spotq-chaos`: the process-level chaos run. The controller's local target keeps
//! several `spotq-test-worker` processes running against an SQS emulator (fauxqs or
//! moto) while a paced producer sends messages, the fault proxy fails a few percent of
//! the workers' queue calls (throttling, 500, 503), never answers a few per mille and
//! answers as many a second late, and random SIGTERMs and SIGKILLs hit the workers
//! (sparing one that handles a healthy message at its last two allowed
//! receives, so that the run's own signals dead-letter no healthy message). Some messages are poison (their handler always fails) and reach the
//! dead-letter queue through the redrive policy. Once the queue has drained, a verifier
//! reads the dead-letter queue, the queue and the workers' event records, and prints one
//! table; each figure is defined in `tests/chaos/verify.rs`.
//!
//! ```sh
//! scripts/chaos                     # 10,000 messages against fauxqs (starts it)
//! spotq-chaos --messages 500 --duration 30s --endpoint http://127.0.0.1:4566
//! ```
//!
//! With `--fifo-groups N` the queue is a FIFO queue of N message groups, and the
//! verifier checks that no group's messages ran out of order.
//!
//! Exits 0 when lost and stranded are 0, no FIFO group ran out of order, every SIGTERMed
//! worker exited within its stop timeout, the dead-letter queue holds exactly the poison
//! messages, the longest invisible time after a SIGKILL is within the visibility timeout
//! (plus the strand window for the receive), and no worker ended otherwise; 1 when not,
//! with the offending messages and the run's directory (event log, worker logs) named.

#[path = "../chaos/run.rs"]
mod run;
#[path = "../chaos/verify.rs"]
mod verify;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;

/// The process-level chaos run (see the crate docs).
#[derive(Debug, Parser)]
#[command(
    args_override_self = true,
    name = "spotq-chaos",
    about = "The process-level chaos run: workers, faults, signals, one table"
)]
struct Flags {
    /// Messages to send, poison ones included.
    #[arg(long, default_value_t = 10_000)]
    messages: usize,
    /// Worker processes the controller keeps running.
    #[arg(long, default_value_t = 4)]
    workers: u32,
    /// Handlers per worker.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Seeds the bodies, the handler times, the signals and the faults (default: random,
    /// printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Percent of the workers' ReceiveMessage, DeleteMessageBatch,
    /// ChangeMessageVisibilityBatch and GetQueueAttributes calls the proxy fails (with
    /// the hang and slow rates 0 too: no proxy).
    #[arg(long, default_value_t = 3.0)]
    fault_rate: f64,
    /// Percent of those calls the proxy never answers (the workers' SDK attempt timeout
    /// ends each).
    #[arg(long, default_value_t = 0.3)]
    hang_rate: f64,
    /// Percent of those calls the proxy answers a second late.
    #[arg(long, default_value_t = 0.3)]
    slow_rate: f64,
    /// A FIFO queue with this many message groups (the messages taken in turn), rather
    /// than a standard queue; the verifier checks each group's order.
    #[arg(long)]
    fifo_groups: Option<usize>,
    /// How long the producer takes to send everything (signals come meanwhile).
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    duration: Duration,
    /// The mean time between two signals.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    signal_every: Duration,
    /// The share of signals that are SIGKILL (the rest are SIGTERM).
    #[arg(long, default_value_t = 0.5)]
    sigkill_share: f64,
    /// The share of messages that are poison.
    #[arg(long, default_value_t = 0.01)]
    poison_share: f64,
    /// The share of handlers that take 1–2.5 s, longer than the grace period (the rest
    /// take 5 ms–1 s).
    #[arg(long, default_value_t = 0.03)]
    long_share: f64,
    /// The queue's visibility timeout, whole seconds.
    #[arg(long, default_value_t = 8)]
    visibility_timeout: u64,
    /// The redrive policy's maxReceiveCount.
    #[arg(long, default_value_t = 5)]
    max_receive_count: u32,
    /// The workers' grace period after SIGTERM, whole seconds.
    #[arg(long, default_value_t = 1)]
    grace: u64,
    /// The workers' stop timeout, whole seconds.
    #[arg(long, default_value_t = 5)]
    stop_timeout: u64,
    /// How soon after a SIGTERM exit a message it held must be received again.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    strand_window: Duration,
    /// The longest wait for the queue to drain once everything is sent.
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    drain_timeout: Duration,
    /// The emulator (loopback only); the producer and the verifier use it directly.
    #[arg(long, env = "SPOTQ_FAUXQS_ENDPOINT")]
    endpoint: String,
    /// The worker binary (default: `spotq-test-worker` beside this one).
    #[arg(long)]
    worker: Option<PathBuf>,
    /// The fault proxy binary (default: `spotq-fault-proxy` beside this one).
    #[arg(long)]
    proxy: Option<PathBuf>,
    /// Where the event log and worker logs go (default: a new directory in the temp dir).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    spotq_controller::config::parse_duration(text)
}

fn beside_this(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(name)))
        .unwrap_or_else(|| PathBuf::from(name))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let flags = Flags::parse();
    let seed = flags.seed.unwrap_or_else(|| fastrand::u64(..1_000_000));
    let work_dir = flags.work_dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("spotq-chaos-{seed}-{}", std::process::id()))
    });
    let settings = run::Settings {
        messages: flags.messages,
        workers: flags.workers,
        concurrency: flags.concurrency,
        seed,
        fault_rate: flags.fault_rate,
        hang_rate: flags.hang_rate,
        slow_rate: flags.slow_rate,
        fifo_groups: flags.fifo_groups,
        duration: flags.duration,
        signal_every: flags.signal_every,
        sigkill_share: flags.sigkill_share,
        poison_share: flags.poison_share,
        long_share: flags.long_share,
        visibility_timeout_secs: flags.visibility_timeout,
        max_receive_count: flags.max_receive_count,
        grace_secs: flags.grace,
        stop_timeout_secs: flags.stop_timeout,
        strand_window: flags.strand_window,
        drain_timeout: flags.drain_timeout,
        endpoint: flags.endpoint.clone(),
        worker: flags
            .worker
            .clone()
            .unwrap_or_else(|| beside_this("spotq-test-worker")),
        proxy: flags
            .proxy
            .clone()
            .unwrap_or_else(|| beside_this("spotq-fault-proxy")),
        work_dir: work_dir.clone(),
    };
    anyhow::ensure!(
        settings.worker.exists(),
        "no worker binary at {} (build it: `cargo build --release -p spotq-system-tests \
         --bin spotq-test-worker`)",
        settings.worker.display()
    );
    eprintln!(
        "chaos run: seed {seed}, {} messages over {:?}, {} workers × {}, work dir {}",
        settings.messages,
        settings.duration,
        settings.workers,
        settings.concurrency,
        work_dir.display()
    );
    let outcome = run::run(&settings).await?;
    let failures = failures(&settings, &outcome);
    println!("{}", table(&settings, &outcome));
    if let Some(path) = &flags.json {
        let json = serde_json::json!({
            "seed": seed,
            "visibility_timeout_ms": settings.visibility_timeout_secs * 1000,
            "strand_window_ms": u64::try_from(settings.strand_window.as_millis()).unwrap_or(u64::MAX),
            "figures": outcome.figures,
            "faults": outcome.faults,
            "faults_total": outcome.faults_total,
            "proxy_requests": outcome.proxy_requests,
            "killed_by_controller": outcome.killed_by_controller,
            "drained": outcome.drained,
            "wall_ms": u64::try_from(outcome.wall.as_millis()).unwrap_or(u64::MAX),
            "failures": failures,
        });
        std::fs::write(path, serde_json::to_string_pretty(&json)?)
            .with_context(|| format!("write {}", path.display()))?;
    }
    if failures.is_empty() {
        Ok(())
    } else {
        for failure in &failures {
            eprintln!("FAILED: {failure}");
        }
        eprintln!(
            "seed {seed}; event log and worker logs in {}",
            work_dir.display()
        );
        std::process::exit(1);
    }
}

/// What the run must show, as sentences naming what went wrong.
fn failures(settings: &run::Settings, outcome: &run::Outcome) -> Vec<String> {
    let figures = &outcome.figures;
    let mut failures = Vec::new();
    if !outcome.drained {
        failures.push(format!(
            "the queue had not drained within {:?}",
            settings.drain_timeout
        ));
    }
    if figures.lost > 0 {
        failures.push(format!(
            "{} lost: {:?}",
            figures.lost,
            figures.lost_bodies.iter().take(20).collect::<Vec<_>>()
        ));
    }
    if figures.stranded > 0 {
        failures.push(format!(
            "{} stranded after SIGTERM exits (body, pid, received again after ms): {:?}",
            figures.stranded,
            figures
                .stranded_messages
                .iter()
                .take(20)
                .collect::<Vec<_>>()
        ));
    }
    if figures.dead_lettered != figures.poison || figures.dead_lettered_not_poison > 0 {
        failures.push(format!(
            "dead-lettered {} ({} not poison), poison sent {}",
            figures.dead_lettered, figures.dead_lettered_not_poison, figures.poison
        ));
    }
    let bound = settings.visibility_timeout_secs * 1000
        + u64::try_from(settings.strand_window.as_millis()).unwrap_or(u64::MAX);
    if figures.longest_invisible_after_sigkill_ms > bound {
        failures.push(format!(
            "a message stayed invisible {} ms after a SIGKILL (bound {bound} ms)",
            figures.longest_invisible_after_sigkill_ms
        ));
    }
    if figures.fifo_groups_out_of_order > 0 {
        failures.push(format!(
            "{} FIFO groups out of order (group, places in start order): {:?}",
            figures.fifo_groups_out_of_order,
            figures
                .out_of_order_groups
                .iter()
                .take(10)
                .collect::<Vec<_>>()
        ));
    }
    if figures.longest_sigterm_to_exit_ms >= settings.stop_timeout_secs * 1000 {
        failures.push(format!(
            "a worker exited {} ms after its SIGTERM, past its {} s stop timeout",
            figures.longest_sigterm_to_exit_ms, settings.stop_timeout_secs
        ));
    }
    if figures.other_exits > 0 || outcome.killed_by_controller > 0 {
        failures.push(format!(
            "{} workers ended without a clean exit or the run's SIGKILL; {} were killed \
             after their stop timeout",
            figures.other_exits, outcome.killed_by_controller
        ));
    }
    failures
}

/// The proxy's faults summed by kind over the actions: `throttle 40, 500 21, hang 3, …`.
fn fault_kinds(faults: &serde_json::Value) -> String {
    let mut kinds: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
    for by_kind in faults
        .as_object()
        .into_iter()
        .flat_map(|actions| actions.values())
    {
        for (kind, count) in by_kind.as_object().into_iter().flatten() {
            *kinds.entry(kind).or_default() += count.as_u64().unwrap_or(0);
        }
    }
    kinds
        .iter()
        .map(|(kind, count)| format!("{kind} {count}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn seconds(ms: u64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}

/// The one table (Markdown, so it pastes into docs/testing.md as printed).
fn table(settings: &run::Settings, outcome: &run::Outcome) -> String {
    let f = &outcome.figures;
    let rows: Vec<(&str, String, String)> = vec![
        (
            "sent",
            f.sent.to_string(),
            format!("messages the queue accepted, {} of them poison", f.poison),
        ),
        (
            "handled",
            f.handled.to_string(),
            "non-poison messages a handler finished with success".into(),
        ),
        (
            "lost",
            f.lost.to_string(),
            "sent, never handled, not dead-lettered, not left in the queue (must be 0)".into(),
        ),
        (
            "duplicates",
            f.duplicates.to_string(),
            "successful handler runs beyond each message's first (at-least-once)".into(),
        ),
        (
            "dead-lettered",
            f.dead_lettered.to_string(),
            format!(
                "messages in the DLQ after maxReceiveCount {} ({} not poison)",
                settings.max_receive_count, f.dead_lettered_not_poison
            ),
        ),
        (
            "stranded after SIGTERM exits",
            f.stranded.to_string(),
            format!(
                "of {} messages held (handler started, not finished) at {} SIGTERM exits, \
                 not received again within {} of the exit (must be 0); the slowest came back \
                 after {}; {} at their last allowed receive went to the DLQ; {} were taken \
                 by a receive that a SIGKILL cut off",
                f.held_at_sigterm_exits,
                f.sigterm_exits,
                seconds(u64::try_from(settings.strand_window.as_millis()).unwrap_or(0)),
                seconds(f.longest_return_after_sigterm_ms),
                f.held_at_sigterm_exits_redriven,
                f.held_at_sigterm_exits_taken_by_kill
            ),
        ),
        (
            "longest invisible after SIGKILL",
            seconds(f.longest_invisible_after_sigkill_ms),
            format!(
                "from a SIGKILL to the next receive of a message the killed worker held ({} \
                 such; {} more came back through a receive that reached no handler, untimed), \
                 visibility timeout {} s",
                f.held_at_sigkills,
                f.held_at_sigkills_via_unhandled,
                settings.visibility_timeout_secs
            ),
        ),
        (
            "FIFO groups out of order",
            if settings.fifo_groups.is_some() {
                f.fifo_groups_out_of_order.to_string()
            } else {
                "—".to_owned()
            },
            format!(
                "of {} groups: a message started after a later one of its group (must be 0)",
                f.fifo_groups
            ),
        ),
        (
            "longest SIGTERM to exit",
            seconds(f.longest_sigterm_to_exit_ms),
            format!(
                "of the run's SIGTERMs; stop timeout {} s (must stay under)",
                settings.stop_timeout_secs
            ),
        ),
        (
            "signals",
            format!("{} SIGTERM, {} SIGKILL", f.sigterms_sent, f.sigkills_sent),
            format!(
                "sent to {} workers started ({} ended otherwise, {} killed after their stop timeout)",
                f.workers_started, f.other_exits, outcome.killed_by_controller
            ),
        ),
        (
            "faults",
            outcome.faults_total.to_string(),
            format!(
                "the proxy's faults on {} worker requests: {} (rates: {} % errors, {} % \
                 hung, {} % slow)",
                outcome.proxy_requests,
                fault_kinds(&outcome.faults),
                settings.fault_rate,
                settings.hang_rate,
                settings.slow_rate
            ),
        ),
        (
            "receives",
            f.receives.to_string(),
            format!(
                "handler starts, {} left in the queue at the end",
                f.left_in_queue
            ),
        ),
        (
            "receives without a handler",
            f.receives_without_handler.to_string(),
            format!(
                "skipped receive counts: released unstarted at a shutdown, or cut off by a \
                 SIGKILL; the slowest came back {} after the message's previous record",
                seconds(f.longest_return_after_unhandled_ms)
            ),
        ),
        (
            "wall time",
            seconds(u64::try_from(outcome.wall.as_millis()).unwrap_or(0)),
            format!(
                "seed {}, {} workers × {} handlers, sent over {:?}",
                settings.seed, settings.workers, settings.concurrency, settings.duration
            ),
        ),
    ];
    let mut text = String::from("| figure | value | meaning |\n|---|---|---|\n");
    for (figure, value, meaning) in rows {
        text.push_str(&format!("| {figure} | {value} | {meaning} |\n"));
    }
    text
}
