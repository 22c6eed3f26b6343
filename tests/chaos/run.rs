//! The chaos run itself: queues, the fault proxy, the controller's local target with
//! its worker processes, the paced producer, the signals, the drain, and what the
//! verifier reads at the end.

use std::collections::{BTreeSet, HashMap};
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail, ensure};
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, QueueAttributeName, SendMessageBatchRequestEntry,
};
use nix::sys::signal::{Signal as NixSignal, kill};
use nix::unistd::Pid;
use spotq_controller::config::{Cli, Config, TargetConfig};
use spotq_controller::inputs::SqsQueue;
use spotq_controller::run::{BindingLoop, Controller};
use spotq_controller::targets::LocalTarget;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

use crate::verify::{Event, Figures, Inputs, Signal, SignalSent};

/// A worker handling a healthy message at this many receives short of the redrive
/// policy's `maxReceiveCount`, or closer, is not signalled (see [`chaos`]).
const SPARED_RECEIVES: u32 = 2;

/// How late the proxy answers a slowed call: below the workers' attempt timeout
/// ([`ATTEMPT_TIMEOUT_MS`]), so the call succeeds late.
pub const SLOW_MS: u64 = 1_000;
/// The workers' SDK attempt timeout: a call the proxy never answers is tried again after
/// it, within a SIGTERMed worker's stop timeout.
const ATTEMPT_TIMEOUT_MS: u64 = 1_500;

/// The SQS actions a worker makes, each of which the proxy fails at the fault rate.
const FAULTED_ACTIONS: [&str; 4] = [
    "ReceiveMessage",
    "DeleteMessageBatch",
    "ChangeMessageVisibilityBatch",
    "GetQueueAttributes",
];

/// How a run goes.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Messages to send, poison ones included.
    pub messages: usize,
    /// Worker processes the controller keeps running.
    pub workers: u32,
    /// Handlers per worker.
    pub concurrency: usize,
    /// Seeds the bodies, the handler times, the signals and the proxy's faults.
    pub seed: u64,
    /// Percent of the workers' queue calls the proxy fails (0: no proxy).
    pub fault_rate: f64,
    /// Percent of the workers' queue calls the proxy never answers.
    pub hang_rate: f64,
    /// Percent of the workers' queue calls the proxy answers [`SLOW_MS`] late.
    pub slow_rate: f64,
    /// A FIFO queue with this many message groups (`None`: a standard queue).
    pub fifo_groups: Option<usize>,
    /// How long the producer takes to send everything (it is paced).
    pub duration: Duration,
    /// The mean time between two signals while the producer sends.
    pub signal_every: Duration,
    /// The share of signals that are SIGKILL rather than SIGTERM.
    pub sigkill_share: f64,
    /// The share of messages that are poison.
    pub poison_share: f64,
    /// The share of handlers that take 1–2.5 s (the rest take 5 ms–1 s).
    pub long_share: f64,
    /// The queue's visibility timeout (whole seconds).
    pub visibility_timeout_secs: u64,
    /// The redrive policy's `maxReceiveCount`.
    pub max_receive_count: u32,
    /// The workers' grace period after SIGTERM (whole seconds).
    pub grace_secs: u64,
    /// The workers' stop timeout (whole seconds); the controller SIGKILLs a worker that
    /// has not exited twice as long after its SIGTERM.
    pub stop_timeout_secs: u64,
    /// How soon after a SIGTERM exit a message it held must be received again.
    pub strand_window: Duration,
    /// The longest wait for the queue to drain once the producer is done.
    pub drain_timeout: Duration,
    /// The emulator's endpoint (loopback only).
    pub endpoint: String,
    /// The worker binary (`spotq-test-worker`).
    pub worker: PathBuf,
    /// The fault proxy binary (`spotq-fault-proxy`).
    pub proxy: PathBuf,
    /// Where the event log and the workers' logs go.
    pub work_dir: PathBuf,
}

/// What a run measured.
#[derive(Debug)]
pub struct Outcome {
    /// The verifier's figures.
    pub figures: Figures,
    /// Faults the proxy injected, by action and fault.
    pub faults: serde_json::Value,
    /// Faults in total.
    pub faults_total: u64,
    /// Requests the proxy saw, in total.
    pub proxy_requests: u64,
    /// Workers the controller killed after their stop timeout.
    pub killed_by_controller: u32,
    /// False if the queue had not drained within the drain timeout.
    pub drained: bool,
    /// The whole run, start to verdict.
    pub wall: Duration,
}

/// An SDK error with its causes in the message (its `Display` names only the kind).
fn sdk(error: impl std::error::Error + Send + Sync + 'static) -> anyhow::Error {
    anyhow::anyhow!("{}", aws_sdk_sqs::error::DisplayErrorContext(&error))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

/// Runs the chaos run and verifies it.
pub async fn run(settings: &Settings) -> anyhow::Result<Outcome> {
    let began = Instant::now();
    ensure!(
        settings.endpoint.starts_with("http://127.0.0.1:")
            || settings.endpoint.starts_with("http://localhost:"),
        "the endpoint must be an emulator on loopback (got {:?}): start one with \
         `scripts/fauxqs.sh start`",
        settings.endpoint
    );
    std::fs::create_dir_all(&settings.work_dir)
        .with_context(|| format!("create {}", settings.work_dir.display()))?;
    let events_path = settings.work_dir.join("events.jsonl");
    std::fs::File::create(&events_path).context("create the event log")?;

    let aws = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(&settings.endpoint)
        // An emulator on loopback: throwaway credentials, never the environment's.
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "test",
            "test",
            None,
            None,
            "spotq-chaos",
        ))
        .region(aws_config::Region::new("us-east-1"))
        .load()
        .await;
    let client = Client::new(&aws);
    let (queue_url, dlq_url) = create_queues(&client, settings).await.with_context(|| {
        format!(
            "create the queues on {} (is the emulator running? `scripts/fauxqs.sh start`)",
            settings.endpoint
        )
    })?;

    let faulted = settings.fault_rate + settings.hang_rate + settings.slow_rate;
    let mut proxy = if faulted > 0.0 {
        Some(Proxy::start(settings).await?)
    } else {
        None
    };
    let worker_endpoint = proxy
        .as_ref()
        .map_or_else(|| settings.endpoint.clone(), |proxy| proxy.endpoint.clone());

    let (controller, local) = start_controller(
        settings,
        &client,
        &queue_url,
        &worker_endpoint,
        &events_path,
    )
    .await?;

    let mut rng = fastrand::Rng::with_seed(settings.seed);
    let (bodies, poison) = bodies(settings, &mut rng);
    let producer = tokio::spawn(produce(
        client.clone(),
        queue_url.clone(),
        bodies,
        settings.duration,
        settings.fifo_groups.is_some(),
    ));
    let signals = chaos(settings, &local, &events_path, &producer, &poison, &mut rng).await;
    let (sent, sent_at) = producer.await.context("the producer")??;
    let drained = drain(&client, &queue_url, settings.drain_timeout).await;
    controller.stop().await;
    let killed_by_controller = local.killed();

    let (faults, faults_total, proxy_requests) = match proxy.as_mut() {
        Some(proxy) => proxy.stats_and_stop().await?,
        None => (serde_json::Value::Null, 0, 0),
    };

    let dead_lettered = receive_all(&client, &dlq_url).await?;
    let left = receive_all(&client, &queue_url).await?;
    let events = read_events(&events_path)?;
    // The signals beside the event log, for whoever reads a failed run's records.
    let signal_lines: String = signals
        .iter()
        .map(|signal| format!("{}\n", serde_json::json!(signal)))
        .collect();
    std::fs::write(settings.work_dir.join("signals.jsonl"), signal_lines)
        .context("write the signals")?;
    for url in [&queue_url, &dlq_url] {
        let _ = client.delete_queue().queue_url(url).send().await;
    }
    let strand_window_ms = u64::try_from(settings.strand_window.as_millis()).unwrap_or(u64::MAX);
    let figures = crate::verify::verify(&Inputs {
        poison: poison.intersection(&sent).cloned().collect(),
        sent,
        sent_at,
        events,
        signals,
        dead_lettered,
        left,
        strand_window_ms,
        max_receive_count: settings.max_receive_count,
        visibility_timeout_ms: settings.visibility_timeout_secs * 1000,
        fifo: settings.fifo_groups.is_some(),
    });
    Ok(Outcome {
        figures,
        faults,
        faults_total,
        proxy_requests,
        killed_by_controller,
        drained,
        wall: began.elapsed(),
    })
}

/// The dead-letter queue, then the queue that redrives to it.
async fn create_queues(client: &Client, settings: &Settings) -> anyhow::Result<(String, String)> {
    let name = format!("spotq-chaos-{}-{}", std::process::id(), settings.seed);
    // A FIFO queue redrives to a FIFO dead-letter queue; the bodies are unique, so
    // content-based deduplication drops only a producer's retried duplicate.
    let (suffix, fifo) = if settings.fifo_groups.is_some() {
        (".fifo", "true")
    } else {
        ("", "false")
    };
    let fifo_attributes =
        |call: aws_sdk_sqs::operation::create_queue::builders::CreateQueueFluentBuilder| {
            if settings.fifo_groups.is_some() {
                call.attributes(QueueAttributeName::FifoQueue, fifo)
                    .attributes(QueueAttributeName::ContentBasedDeduplication, "true")
            } else {
                call
            }
        };
    let dlq_url = fifo_attributes(client.create_queue())
        .queue_name(format!("{name}-dlq{suffix}"))
        .send()
        .await
        .map_err(sdk)?
        .queue_url
        .context("the dead-letter queue's URL")?;
    let dlq_arn = client
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(sdk)?
        .attributes
        .and_then(|mut attributes| attributes.remove(&QueueAttributeName::QueueArn))
        .context("the dead-letter queue's ARN")?;
    let redrive = serde_json::json!({
        "deadLetterTargetArn": dlq_arn,
        "maxReceiveCount": settings.max_receive_count.to_string(),
    });
    let queue_url = fifo_attributes(client.create_queue())
        .queue_name(format!("{name}{suffix}"))
        .attributes(
            QueueAttributeName::VisibilityTimeout,
            settings.visibility_timeout_secs.to_string(),
        )
        .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string())
        .send()
        .await
        .map_err(sdk)?
        .queue_url
        .context("the queue's URL")?;
    Ok((queue_url, dlq_url))
}

/// A TOML basic string.
fn toml_string(text: &str) -> String {
    // A JSON string (escapes `"`, `\` and control characters) is a TOML basic string.
    serde_json::Value::from(text).to_string()
}

/// The controller with one binding: the queue → `settings.workers` worker processes
/// (min = max, so it neither scales in nor to zero; the signals and the final stop are
/// what ends workers). It reads the queue directly, the workers go through the proxy.
async fn start_controller(
    settings: &Settings,
    client: &Client,
    queue_url: &str,
    worker_endpoint: &str,
    events: &Path,
) -> anyhow::Result<(Controller, Arc<LocalTarget>)> {
    let env = [
        ("SPOTQ_QUEUE", queue_url.to_owned()),
        ("SPOTQ_EVENTS", events.display().to_string()),
        ("SPOTQ_EVENTS_FORMAT", "json".to_owned()),
        ("SPOTQ_CONCURRENCY", settings.concurrency.to_string()),
        ("SPOTQ_GRACE_SECS", settings.grace_secs.to_string()),
        (
            "SPOTQ_STOP_TIMEOUT_SECS",
            settings.stop_timeout_secs.to_string(),
        ),
        ("SPOTQ_RETRY_BASE_MS", "300".to_owned()),
        ("SPOTQ_RETRY_MAX_MS", "1500".to_owned()),
        (
            "SPOTQ_CALL_ATTEMPT_TIMEOUT_MS",
            ATTEMPT_TIMEOUT_MS.to_string(),
        ),
        ("AWS_ENDPOINT_URL", worker_endpoint.to_owned()),
        ("AWS_ENDPOINT_URL_SQS", worker_endpoint.to_owned()),
        ("AWS_ACCESS_KEY_ID", "test".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("RUST_LOG", "warn".to_owned()),
    ];
    let env = env
        .iter()
        .map(|(key, value)| format!("{key} = {}", toml_string(value)))
        .collect::<Vec<_>>()
        .join(", ");
    // Each worker logs into its own file, named by its pid (`exec` keeps the shell's).
    let command = [
        "sh".to_owned(),
        "-c".to_owned(),
        r#"exec "$0" 2>>"$1/worker-$$.log""#.to_owned(),
        settings.worker.display().to_string(),
        settings.work_dir.display().to_string(),
    ]
    .iter()
    .map(|part| toml_string(part))
    .collect::<Vec<_>>()
    .join(", ");
    let file = format!(
        r#"
[[binding]]
name = "chaos"
queue = {queue}
min = {workers}
max = {workers}
poll_interval = "200ms"

[binding.local]
command = [{command}]
stop_timeout = "{kill_after}s"
env = {{ {env} }}
"#,
        queue = toml_string(queue_url),
        workers = settings.workers,
        kill_after = settings.stop_timeout_secs * 2,
    );
    let config = Config::from_parts(&Cli::default(), Some(&file)).context("the binding")?;
    let mut loops = Vec::new();
    let mut targets = Vec::new();
    for binding in config.bindings {
        let TargetConfig::Local(local) = &binding.target else {
            bail!("the chaos binding runs local workers");
        };
        let target = Arc::new(LocalTarget::new(local.clone()));
        let queue = SqsQueue::connect(client.clone(), &binding.queue).await?;
        targets.push((binding.name.clone(), Arc::clone(&target)));
        loops.push(BindingLoop::new(binding, Arc::new(queue), target, false));
    }
    let controller = Controller::spawn(loops, Vec::new(), targets);
    let local = controller
        .local_target("chaos")
        .context("the chaos binding's target")?;
    Ok((controller, local))
}

/// The bodies to send, in order, and the poison ones: `cN:MS` (a handler of MS ms) and
/// `pN:MS:fail` (fails every time, after 5–50 ms); on a FIFO run the name says the group
/// too, `cN.gG` and `pN.gG`, the groups taken in turn (the verifier reads them with
/// [`fifo_place`](crate::verify::fifo_place)). Handler times: `long_share` of them
/// 1–2.5 s (longer than a 1 s grace period, so SIGTERMs cut some handlers), of the rest
/// 85 % 5–200 ms and 15 % 200 ms–1 s.
fn bodies(settings: &Settings, rng: &mut fastrand::Rng) -> (Vec<String>, BTreeSet<String>) {
    // An exact number of poison messages, at random places.
    let poison_count = (settings.messages as f64 * settings.poison_share).round() as usize;
    let mut places: Vec<usize> = (0..settings.messages).collect();
    rng.shuffle(&mut places);
    let poison_places: BTreeSet<usize> = places.into_iter().take(poison_count).collect();
    let mut bodies = Vec::with_capacity(settings.messages);
    let mut poison = BTreeSet::new();
    let group = |n: usize| {
        settings
            .fifo_groups
            .map_or_else(String::new, |groups| format!(".g{}", n % groups.max(1)))
    };
    for n in 0..settings.messages {
        if poison_places.contains(&n) {
            let body = format!("p{n}{}:{}:fail", group(n), rng.u64(5..50));
            poison.insert(body.clone());
            bodies.push(body);
        } else {
            let millis = if rng.f64() < settings.long_share {
                rng.u64(1_000..2_500)
            } else if rng.u32(0..100) < 85 {
                rng.u64(5..200)
            } else {
                rng.u64(200..1_000)
            };
            bodies.push(format!("c{n}{}:{millis}", group(n)));
        }
    }
    (bodies, poison)
}

/// What the producer sent: the bodies the queue accepted, and when.
type Sent = (BTreeSet<String>, HashMap<String, u64>);

/// Sends the bodies in batches of 10, evenly over `duration`. Returns what the queue
/// accepted, and when.
async fn produce(
    client: Client,
    queue_url: String,
    bodies: Vec<String>,
    duration: Duration,
    fifo: bool,
) -> anyhow::Result<Sent> {
    let batches = bodies.len().div_ceil(10).max(1);
    let mut ticker = tokio::time::interval(duration / u32::try_from(batches).unwrap_or(u32::MAX));
    let mut sent = BTreeSet::new();
    let mut sent_at = HashMap::new();
    for chunk in bodies.chunks(10) {
        ticker.tick().await;
        let mut pending: Vec<(usize, &String)> = chunk.iter().enumerate().collect();
        for attempt in 0..10u32 {
            let mut batch = client.send_message_batch().queue_url(&queue_url);
            for (index, body) in &pending {
                // A FIFO run's batch holds one message of each of its groups (they are
                // taken in turn), so an entry sent again keeps its group's order.
                let group = fifo
                    .then(|| crate::verify::fifo_place(body).map(|(group, _)| format!("g{group}")))
                    .flatten();
                batch = batch.entries(
                    SendMessageBatchRequestEntry::builder()
                        .id(index.to_string())
                        .message_body(*body)
                        .set_message_group_id(group)
                        .build()?,
                );
            }
            match batch.send().await {
                Ok(output) => {
                    let at = now_ms();
                    let failed: BTreeSet<&str> =
                        output.failed().iter().map(|entry| entry.id()).collect();
                    for (index, body) in &pending {
                        if !failed.contains(index.to_string().as_str()) {
                            sent.insert((*body).clone());
                            sent_at.insert((*body).clone(), at);
                        }
                    }
                    pending.retain(|(index, _)| failed.contains(index.to_string().as_str()));
                }
                Err(error) if attempt < 9 => {
                    eprintln!("send failed (attempt {attempt}), again: {}", sdk(error));
                }
                Err(error) => return Err(sdk(error)).context("send a batch"),
            }
            if pending.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100 << attempt.min(4))).await;
        }
    }
    Ok((sent, sent_at))
}

/// A worker's event log, read as it grows.
struct EventTail {
    file: std::fs::File,
    offset: u64,
    partial: String,
}

impl EventTail {
    fn open(path: &Path) -> anyhow::Result<Self> {
        Ok(Self {
            file: std::fs::File::open(path).context("open the event log")?,
            offset: 0,
            partial: String::new(),
        })
    }

    /// The events written since the last call.
    fn read_new(&mut self) -> Vec<Event> {
        let mut text = String::new();
        if self.file.seek(SeekFrom::Start(self.offset)).is_err()
            || self.file.read_to_string(&mut text).is_err()
        {
            return Vec::new();
        }
        self.offset += text.len() as u64;
        self.partial.push_str(&text);
        let complete = self.partial.rfind('\n').map_or(0, |end| end + 1);
        let lines: String = self.partial.drain(..complete).collect();
        lines
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }
}

/// While the producer sends: at random intervals, SIGTERM or SIGKILL one worker that
/// has started handlers (so its signal handling is installed) and has not been signalled.
///
/// Each signal costs the messages it cuts off a receive, and the redrive policy
/// dead-letters a message after `maxReceiveCount` of them: a run that cut one healthy
/// message's handler that often would see it dead-lettered by the run's own signals,
/// not by anything the workers did. So a worker is spared while it handles a healthy
/// (not poison) message at its receive `maxReceiveCount −` [`SPARED_RECEIVES`] or later:
/// such a receive ends in the handler's success. (A receive that reaches no handler, a
/// message released unstarted at a shutdown or taken by a receive a SIGKILL cut off,
/// costs a receive unrecorded; the spared receives leave room for that.)
async fn chaos(
    settings: &Settings,
    local: &LocalTarget,
    events: &Path,
    producer: &tokio::task::JoinHandle<anyhow::Result<Sent>>,
    poison: &BTreeSet<String>,
    rng: &mut fastrand::Rng,
) -> Vec<SignalSent> {
    let mut sent = Vec::new();
    let Ok(mut tail) = EventTail::open(events) else {
        return sent;
    };
    let mut working = BTreeSet::new();
    let mut handling = Handling::new(settings.max_receive_count, poison);
    let mut signalled = BTreeSet::new();
    let mean = settings.signal_every.as_secs_f64();
    while !producer.is_finished() {
        // Exponential gaps, clipped to [0.2 mean, 3 mean].
        let gap = (-(1.0 - rng.f64()).ln() * mean).clamp(0.2 * mean, 3.0 * mean);
        let wake = tokio::time::Instant::now() + Duration::from_secs_f64(gap);
        while tokio::time::Instant::now() < wake && !producer.is_finished() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if producer.is_finished() {
            break;
        }
        for event in tail.read_new() {
            if event.event == "start" {
                working.insert(event.pid);
            }
            handling.record(event);
        }
        let candidates: Vec<u32> = local
            .pids()
            .await
            .into_iter()
            .filter(|pid| {
                working.contains(pid) && !signalled.contains(pid) && !handling.spares(*pid)
            })
            .collect();
        if candidates.is_empty() {
            continue;
        }
        let pid = candidates[rng.usize(..candidates.len())];
        let signal = if rng.f64() < settings.sigkill_share {
            Signal::Kill
        } else {
            Signal::Term
        };
        let Ok(raw) = i32::try_from(pid) else {
            continue;
        };
        let nix_signal = match signal {
            Signal::Term => NixSignal::SIGTERM,
            Signal::Kill => NixSignal::SIGKILL,
        };
        let at_ms = now_ms();
        if kill(Pid::from_raw(raw), nix_signal).is_ok() {
            signalled.insert(pid);
            sent.push(SignalSent { pid, signal, at_ms });
        }
    }
    sent
}

/// By worker, the healthy messages whose handler started and has not ended, with the
/// receive count of that start: which workers [`chaos`] spares.
struct Handling<'a> {
    poison: &'a BTreeSet<String>,
    /// The first receive count at which a healthy message's worker is spared.
    spared_from: u32,
    by_worker: HashMap<u32, HashMap<String, u32>>,
}

impl<'a> Handling<'a> {
    fn new(max_receive_count: u32, poison: &'a BTreeSet<String>) -> Self {
        Self {
            poison,
            spared_from: max_receive_count.saturating_sub(SPARED_RECEIVES).max(1),
            by_worker: HashMap::new(),
        }
    }

    /// Takes in a worker's event: a handler's start, or its end.
    fn record(&mut self, event: Event) {
        match event.event.as_str() {
            "start" if !self.poison.contains(&event.body) => {
                self.by_worker
                    .entry(event.pid)
                    .or_default()
                    .insert(event.body, event.receive.unwrap_or(0));
            }
            "done" | "fail" | "retry" => {
                if let Some(bodies) = self.by_worker.get_mut(&event.pid) {
                    bodies.remove(&event.body);
                }
            }
            _ => {}
        }
    }

    /// Whether `pid` handles a healthy message too close to its redrive limit to signal.
    fn spares(&self, pid: u32) -> bool {
        self.by_worker
            .get(&pid)
            .is_some_and(|bodies| bodies.values().any(|receive| *receive >= self.spared_from))
    }
}

/// Waits until the queue reads empty (visible, not visible and delayed all 0) twice in
/// a row, half a second apart. False if it has not within `limit`.
async fn drain(client: &Client, queue_url: &str, limit: Duration) -> bool {
    let start = Instant::now();
    let mut empty_reads = 0;
    while start.elapsed() < limit {
        let attributes = client
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(QueueAttributeName::All)
            .send()
            .await;
        let empty = attributes
            .ok()
            .and_then(|output| output.attributes)
            .is_some_and(|map| {
                [
                    QueueAttributeName::ApproximateNumberOfMessages,
                    QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
                    QueueAttributeName::ApproximateNumberOfMessagesDelayed,
                ]
                .iter()
                .all(|name| map.get(name).is_some_and(|count| count == "0"))
            });
        empty_reads = if empty { empty_reads + 1 } else { 0 };
        if empty_reads >= 2 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    false
}

/// Every body the queue holds now, until two receives in a row come back empty. Each is
/// deleted once read (the run is over): on a FIFO queue a message received and left in
/// flight would hide the rest of its group.
async fn receive_all(client: &Client, queue_url: &str) -> anyhow::Result<Vec<String>> {
    let mut bodies = Vec::new();
    let mut empty = 0;
    while empty < 2 {
        let output = client
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .visibility_timeout(600)
            .wait_time_seconds(0)
            .send()
            .await
            .map_err(sdk)
            .context("receive at the end")?;
        let messages = output.messages.unwrap_or_default();
        empty = if messages.is_empty() { empty + 1 } else { 0 };
        if !messages.is_empty() {
            let mut delete = client.delete_message_batch().queue_url(queue_url);
            for (index, message) in messages.iter().enumerate() {
                delete = delete.entries(
                    DeleteMessageBatchRequestEntry::builder()
                        .id(index.to_string())
                        .set_receipt_handle(message.receipt_handle.clone())
                        .build()?,
                );
            }
            let deleted = delete
                .send()
                .await
                .map_err(sdk)
                .context("delete at the end")?;
            ensure!(
                deleted.failed().is_empty(),
                "deletes at the end failed: {:?}",
                deleted.failed()
            );
        }
        bodies.extend(messages.into_iter().filter_map(|message| message.body));
    }
    Ok(bodies)
}

fn read_events(path: &Path) -> anyhow::Result<Vec<Event>> {
    let text = std::fs::read_to_string(path).context("read the event log")?;
    let mut events = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let event = serde_json::from_str(line)
            .with_context(|| format!("event log line {}: {line:?}", number + 1))?;
        events.push(event);
    }
    Ok(events)
}

/// The fault proxy in front of the emulator, for the workers.
struct Proxy {
    child: Child,
    endpoint: String,
}

impl Proxy {
    /// Starts `spotq-fault-proxy` with throttling, 500 and 503 on `fault_rate` percent
    /// of each faulted action's calls (half throttling, a quarter each 500 and 503),
    /// calls never answered on `hang_rate` percent and answered [`SLOW_MS`] late on
    /// `slow_rate` percent.
    async fn start(settings: &Settings) -> anyhow::Result<Self> {
        ensure!(
            settings.proxy.exists(),
            "no fault proxy at {} (build it: `cargo build --release -p spotq-system-tests \
             --bin spotq-fault-proxy`, or run with --fault-rate 0)",
            settings.proxy.display()
        );
        let rate = settings.fault_rate;
        let mut command = Command::new(&settings.proxy);
        command
            .args(["--listen", "127.0.0.1:0", "--upstream", &settings.endpoint])
            .args(["--seed", &settings.seed.to_string()]);
        let slow = format!("slow={SLOW_MS}");
        for action in FAULTED_ACTIONS {
            for (fault, percent) in [
                ("throttle", rate * 0.5),
                ("500", rate * 0.25),
                ("503", rate * 0.25),
                ("hang", settings.hang_rate),
                (slow.as_str(), settings.slow_rate),
            ] {
                if percent > 0.0 {
                    command.args(["--rule", &format!("{action}:{fault}:{percent}%")]);
                }
            }
        }
        let mut child = command
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("start {}", settings.proxy.display()))?;
        let stdout = child.stdout.take().context("the proxy's stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .context("the proxy did not say where it listens within 10 s")??
            .context("the proxy exited before listening")?;
        let addr = line
            .strip_prefix("listening ")
            .with_context(|| format!("unexpected first line from the proxy: {line:?}"))?;
        Ok(Self {
            child,
            endpoint: format!("http://{}", addr.trim()),
        })
    }

    /// `GET /__proxy/stats`: the faults by action and kind, their total, and the
    /// requests seen; then stops the proxy.
    async fn stats_and_stop(&mut self) -> anyhow::Result<(serde_json::Value, u64, u64)> {
        let stats = http_get_json(&format!("{}/__proxy/stats", self.endpoint)).await;
        let _ = self.child.kill().await;
        let stats = stats.context("the proxy's stats")?;
        let sum = |value: &serde_json::Value| -> u64 {
            fn walk(value: &serde_json::Value) -> u64 {
                match value {
                    serde_json::Value::Number(number) => number.as_u64().unwrap_or(0),
                    serde_json::Value::Object(map) => map.values().map(walk).sum(),
                    _ => 0,
                }
            }
            walk(value)
        };
        let faults = stats.get("faults").cloned().unwrap_or_default();
        let requests = stats.get("requests").map(sum).unwrap_or(0);
        Ok((faults.clone(), sum(&faults), requests))
    }
}

async fn http_get_json(url: &str) -> anyhow::Result<serde_json::Value> {
    use http_body_util::BodyExt as _;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<hyper::body::Bytes>>();
    let response = client.get(url.parse()?).await?;
    ensure!(
        response.status().is_success(),
        "GET {url}: {}",
        response.status()
    );
    let body = response.into_body().collect().await?.to_bytes();
    Ok(serde_json::from_slice(&body)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(event: &str, body: &str, pid: u32, receive: u32) -> Event {
        Event {
            event: event.to_owned(),
            body: body.to_owned(),
            pid,
            at_ms: 0,
            receive: Some(receive),
        }
    }

    #[test]
    fn a_worker_handling_a_healthy_message_near_its_redrive_limit_is_spared_until_it_ends() {
        let poison: BTreeSet<String> = ["p1:10:fail".to_owned()].into();
        // maxReceiveCount 5: spared from receive 3 on.
        let mut handling = Handling::new(5, &poison);
        handling.record(event("start", "c1:2000", 7, 2));
        assert!(!handling.spares(7), "receive 2 of 5 may be cut");
        handling.record(event("start", "c2:2000", 7, 3));
        assert!(handling.spares(7), "receive 3 of 5 is not cut");
        assert!(!handling.spares(8), "another worker");
        handling.record(event("done", "c2:2000", 7, 3));
        assert!(!handling.spares(7), "once it is done");
        handling.record(event("start", "p1:10:fail", 7, 5));
        assert!(
            !handling.spares(7),
            "poison is meant to reach the dead-letter queue"
        );
    }
}
