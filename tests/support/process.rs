//! Worker binaries as child processes: start, watch their handlers, signal them.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use spotq::SqsBackend;
use tokio::time::{Instant, sleep};

use super::unique;

/// A worker binary run as a child process.
pub struct WorkerProcess {
    child: Child,
    events: PathBuf,
    log: PathBuf,
}

/// How to run the worker binary.
pub struct Settings {
    /// `shutdown_grace`.
    pub grace_secs: u64,
    /// `stop_timeout`.
    pub stop_timeout_secs: u64,
    /// Runs the worker as PID 1 of a fresh PID namespace.
    pub pid1: bool,
    /// `$ECS_AGENT_URI`: where task scale-in protection goes.
    pub agent_uri: Option<String>,
    /// Handlers running at once.
    pub concurrency: usize,
    /// Serves /metrics, /health and /ready on an ephemeral loopback port.
    pub http: bool,
    /// More environment for the worker.
    pub env: Vec<(String, String)>,
    /// Logs as JSON lines into a file (see [`WorkerProcess::log_lines`]) rather than to
    /// the test's stderr.
    pub json_logs: bool,
    /// Sends the worker's receives one at a time and its deletes one at a time
    /// (`SPOTQ_CALLS_IN_TURN`, [`InTurn`](super::in_turn::InTurn)): moto's calls as
    /// atomic as SQS's, for a test that counts a message's receives.
    pub in_turn: bool,
}

impl Default for Settings {
    /// A 3 s grace period in a 6 s stop timeout, 16 handlers, nothing else.
    fn default() -> Self {
        Self {
            grace_secs: 3,
            stop_timeout_secs: 6,
            pid1: false,
            agent_uri: None,
            concurrency: 16,
            json_logs: false,
            http: false,
            env: Vec::new(),
            in_turn: false,
        }
    }
}

impl WorkerProcess {
    pub fn start(queue: &SqsBackend, settings: &Settings) -> Self {
        let events = std::env::temp_dir().join(format!("{}.events", unique("spotq-worker")));
        let binary = env!("CARGO_BIN_EXE_spotq-test-worker");
        let mut command = if settings.pid1 {
            let mut command = Command::new("unshare");
            command.args(["--pid", "--fork", "--mount-proc", binary]);
            command
        } else {
            Command::new(binary)
        };
        command
            .env("SPOTQ_QUEUE", queue.queue_url())
            .env("SPOTQ_EVENTS", &events)
            .env("SPOTQ_CONCURRENCY", settings.concurrency.to_string())
            .env("SPOTQ_GRACE_SECS", settings.grace_secs.to_string())
            .env(
                "SPOTQ_STOP_TIMEOUT_SECS",
                settings.stop_timeout_secs.to_string(),
            )
            .env("RUST_LOG", "warn")
            .env_remove("ECS_AGENT_URI")
            .env_remove("ECS_CONTAINER_METADATA_URI_V4")
            .stdin(Stdio::null());
        if let Some(uri) = &settings.agent_uri {
            command.env("ECS_AGENT_URI", uri);
        }
        command.envs(settings.env.iter().map(|(key, value)| (key, value)));
        if settings.http {
            command.env("SPOTQ_HTTP_ADDR", "127.0.0.1:0");
        }
        if settings.in_turn {
            command.env("SPOTQ_CALLS_IN_TURN", "1");
        }
        let log = events.with_extension("log");
        if settings.json_logs {
            let file = std::fs::File::create(&log).expect("log file");
            command
                .env("SPOTQ_LOG_FORMAT", "json")
                .env("RUST_LOG", "info")
                .stderr(file);
        }
        let child = command.spawn().expect("start the worker");
        Self { child, events, log }
    }

    /// The worker's log lines, when it logs to a file.
    pub fn log_lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// `(event, body)` lines the handlers wrote.
    pub fn events(&self) -> Vec<(String, String)> {
        std::fs::read_to_string(&self.events)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| line.split_once(' '))
            .map(|(event, body)| (event.to_owned(), body.to_owned()))
            .collect()
    }

    pub fn bodies(&self, event: &str) -> BTreeSet<String> {
        self.events()
            .into_iter()
            .filter(|(kind, _)| kind == event)
            .map(|(_, body)| body)
            .collect()
    }

    pub async fn wait_for(&self, event: &str, count: usize) {
        let start = Instant::now();
        while self.bodies(event).len() < count {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{count} `{event}` events never came"
            );
            sleep(Duration::from_millis(20)).await;
        }
    }

    /// The address of the worker's `/metrics`, `/health` and `/ready`, once it listens.
    pub async fn http_addr(&self) -> String {
        self.wait_for("listening", 1).await;
        self.bodies("listening")
            .into_iter()
            .next()
            .expect("the address it listens on")
    }

    /// The pid that receives the signal: the worker itself, also when `unshare` wraps it.
    pub fn worker_pid(&self, pid1: bool) -> u32 {
        let pid = self.child.id();
        if !pid1 {
            return pid;
        }
        let children = format!("/proc/{pid}/task/{pid}/children");
        for _ in 0..500 {
            if let Some(child) = std::fs::read_to_string(&children).ok().and_then(|list| {
                list.split_whitespace()
                    .next()
                    .and_then(|pid| pid.parse().ok())
            }) {
                return child;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("unshare started no child");
    }

    /// Whether the worker has not exited yet.
    pub fn running(&mut self) -> bool {
        self.child
            .try_wait()
            .expect("wait for the worker")
            .is_none()
    }

    pub async fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the worker") {
                return status;
            }
            if start.elapsed() > limit {
                let _ = self.child.kill();
                panic!("the worker did not exit within {limit:?}");
            }
            sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = std::fs::remove_file(&self.events);
        let _ = std::fs::remove_file(&self.log);
    }
}

pub fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid}");
}

/// `GET http://{addr}{path}` with curl, as an ECS health check does: status and body.
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    let output = Command::new("curl")
        .args(["-s", "--max-time", "5", "-w", "\n%{http_code}"])
        .arg(format!("http://{addr}{path}"))
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    (status.trim().parse().unwrap_or(0), body.to_owned())
}
