//! The controller's settings: command-line flags (each with an environment fallback)
//! and a TOML file, checked at start so that a bad value fails naming its setting.
//!
//! Precedence, per binding setting: the binding's own entry in the file, then the flags
//! (or their environment variables), then the file's `[defaults]`, then the built-in
//! default. `--queue` with `--cluster` and `--service` (or `--local-command`, or
//! `--job-*` flags) adds one binding to those of the file.
//!
//! `[defaults]` takes the scaling settings, `metrics_port` and `cluster` (the cluster of
//! every service or job binding that names none; local processes have none). A
//! binding's `queue`, `name` and `service`, and its `[binding.local]` and
//! `[binding.job]` tables, are its own: `[defaults]` refuses them. A list of workers is
//! one binding's: `metrics_urls` in `[defaults]` (or `--metrics-url`) is refused unless
//! exactly one binding takes it (the others have their own, or are job bindings). Two
//! bindings on one ECS service (by name or ARN) are refused: they would fight over its
//! desired count.
//!
//! ```toml
//! http_addr = "0.0.0.0:9090"
//!
//! [defaults]
//! poll_interval = "5s"
//! scale_in_cooldown = "2m"
//!
//! [[binding]]
//! queue = "orders"
//! cluster = "jobs"
//! service = "orders-worker"
//! max = 20
//! backlog_per_task = 50
//!
//! [[binding]]
//! name = "thumbnails"
//! queue = "https://sqs.eu-west-1.amazonaws.com/123456789012/thumbnails"
//! cluster = "jobs"
//! service = "thumbnailer"
//! latency_goal = "30s"
//! message_time = "800ms"
//! concurrency = 8
//!
//! # A job binding: standalone tasks (RunTask) started for the backlog, which exit by
//! # themselves once the queue is drained; `max` and `max_step` bound them.
//! [[binding]]
//! name = "reports"
//! queue = "reports"
//! cluster = "jobs"
//! max = 8
//! max_step = 4
//! [binding.job]
//! task_definition = "report-job"
//! subnets = ["subnet-0a1b2c3d", "subnet-4e5f6a7b"]
//! security_groups = ["sg-0a1b2c3d"]
//! messages_per_task = 200
//! spot_fallback = true
//! ```
//!
//! A binding is a job binding when it has a `[binding.job]` table (flags: any `--job-*`
//! flag). Its tasks run on `capacity_provider` (`FARGATE_SPOT` by default) in the
//! binding's `cluster`, or, with a `[binding.local]` table instead, as local processes.
//! Of the binding's own settings it takes `max` (the most tasks at once), `max_step`
//! (the most started in one poll), `count_delayed` and `poll_interval`; the others are
//! a service's and refused on a job binding.
//!
//! A duration, in a flag, its variable or the file, is spotq's one duration syntax
//! (`spotq_settings::duration`: `"250ms"`, `"1.5s"`, `"1m30s"`, `"1h2m3.5s"`) or a bare
//! number of seconds (`"30"`, `30`, `0.5`), to the millisecond.
//!
//! The parts: `cli` (the flags), `file` (the TOML file), `duration` (how both write a
//! duration) and `resolve` (the precedence and the checks of each binding).

mod cli;
mod duration;
mod file;
mod resolve;

use std::net::SocketAddr;
use std::time::Duration;

pub use cli::{Cli, JobFlags, ScalingFlags};
pub use duration::parse_duration;

use crate::decision::Policy;
use crate::decision::job::JobPolicy;
use file::FileConfig;

/// The default address of `/metrics` and `/health`.
pub const DEFAULT_HTTP_ADDR: &str = "0.0.0.0:9090";
/// The default poll interval.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(5);
/// The default time a local worker process gets between SIGTERM and SIGKILL.
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// The shortest poll interval allowed: GetQueueAttributes and DescribeServices are
/// rate-limited per account.
pub const MIN_POLL_INTERVAL: Duration = Duration::from_millis(100);
/// The default waiting messages a job task is started for.
pub const DEFAULT_MESSAGES_PER_TASK: u64 = 10;
/// The default time a job task counts as active while `ListTasks` does not list it.
pub const DEFAULT_START_GRACE: Duration = Duration::from_secs(60);
/// The default capacity provider of job tasks.
pub const FARGATE_SPOT: &str = "FARGATE_SPOT";
/// The on-demand capacity provider a job task falls back to when Spot has no capacity.
pub const FARGATE: &str = "FARGATE";
/// The longest wait between starts that fall short (the first waits one poll
/// interval, each next one twice as long).
pub const MAX_START_BACKOFF: Duration = Duration::from_secs(300);

/// A setting that is missing, malformed or out of range.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid setting `{setting}`: {message}")]
pub struct InvalidSetting {
    /// The setting: a flag (`--max`), or a path in the file (`binding[1].max`).
    pub setting: String,
    /// What is wrong with it.
    pub message: String,
}

impl InvalidSetting {
    fn new(setting: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            setting: setting.into(),
            message: message.into(),
        }
    }
}

/// Everything the controller runs with.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Where to serve `/metrics` and `/health`.
    pub http_addr: SocketAddr,
    /// Decide and log, but change nothing.
    pub dry_run: bool,
    /// The queues and what they scale.
    pub bindings: Vec<Binding>,
}

/// One queue and the tasks it scales.
#[derive(Clone, Debug, PartialEq)]
pub struct Binding {
    /// The name in logs and metric labels.
    pub name: String,
    /// The queue: a name or a URL.
    pub queue: String,
    /// What to scale.
    pub target: TargetConfig,
    /// How to scale it.
    pub policy: Policy,
    /// How often to read the queue and the target.
    pub poll_interval: Duration,
    /// Workers' `/metrics` URLs to read (per-task throughput, messages held), of which
    /// the series of the binding's queue are read.
    pub metrics_urls: Vec<String>,
    /// For an ECS service: the port its tasks' workers serve `/metrics` on, read at each
    /// task's private address (instead of `metrics_urls`).
    pub metrics_port: Option<u16>,
}

/// What a binding scales.
#[derive(Clone, Debug, PartialEq)]
pub enum TargetConfig {
    /// An ECS service's desired count.
    Ecs {
        /// The cluster, name or ARN.
        cluster: String,
        /// The service, name or ARN.
        service: String,
    },
    /// Worker processes on this machine.
    Local(LocalConfig),
    /// Standalone tasks started for the backlog, which exit by themselves.
    Job(JobConfig),
}

/// A job binding's tasks: where they run and what each is started for.
#[derive(Clone, Debug, PartialEq)]
pub struct JobConfig {
    /// Where the tasks run.
    pub runner: JobRunner,
    /// Waiting messages one task is started for.
    pub messages_per_task: u64,
    /// How long a started task counts as active while the target does not list it.
    pub start_grace: Duration,
}

/// Where a job binding's tasks run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobRunner {
    /// ECS tasks, started with `RunTask`.
    Ecs(EcsJobConfig),
    /// Processes on this machine.
    Local(LocalConfig),
}

/// How to start a job binding's ECS tasks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EcsJobConfig {
    /// The cluster, name or ARN.
    pub cluster: String,
    /// The task definition: `family`, `family:revision` or an ARN.
    pub task_definition: String,
    /// The subnets of the tasks' network interfaces (`awsvpc`).
    pub subnets: Vec<String>,
    /// Their security groups (none: the VPC's default group).
    pub security_groups: Vec<String>,
    /// Whether the tasks get a public IP address.
    pub assign_public_ip: bool,
    /// The capacity provider the tasks run on (`FARGATE_SPOT` by default).
    pub capacity_provider: String,
    /// Whether a task Spot has no capacity for is started on `FARGATE` instead.
    pub spot_fallback: bool,
}

/// How to run local worker processes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalConfig {
    /// The program and its arguments.
    pub command: Vec<String>,
    /// More environment for the program.
    pub env: Vec<(String, String)>,
    /// How long a worker gets between SIGTERM and SIGKILL.
    pub stop_timeout: Duration,
}

impl Binding {
    /// How a job binding sizes its tasks ([`JobConfig::policy`]); `None` for a binding
    /// that is not a job binding.
    pub fn job_policy(&self) -> Option<JobPolicy> {
        match &self.target {
            TargetConfig::Job(job) => Some(job.policy(&self.policy, self.poll_interval)),
            _ => None,
        }
    }
}

impl JobConfig {
    /// The sizing of these tasks: their own settings with the binding's `max`,
    /// `max_step` and `count_delayed` (from `policy`); a start that fell short is
    /// retried after one poll interval, then twice as long each time in a row (up to
    /// [`MAX_START_BACKOFF`]).
    pub fn policy(&self, policy: &Policy, poll_interval: Duration) -> JobPolicy {
        JobPolicy {
            messages_per_task: self.messages_per_task,
            max_tasks: policy.max,
            max_step: policy.max_step,
            count_delayed: policy.count_delayed,
            start_grace: self.start_grace,
            retry: spotq::config::Backoff {
                base: poll_interval,
                max: MAX_START_BACKOFF.max(poll_interval),
                jitter: false,
            },
        }
    }
}

impl Config {
    /// Reads the file `cli.config` names (if any) and combines it with the flags.
    pub fn load(cli: &Cli) -> Result<Self, InvalidSetting> {
        let file = match &cli.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|error| {
                    InvalidSetting::new(
                        "--config",
                        format!("cannot read {}: {error}", path.display()),
                    )
                })?;
                Some(text)
            }
            None => None,
        };
        Self::from_parts(cli, file.as_deref())
    }

    /// Combines the flags with the text of a config file.
    pub fn from_parts(cli: &Cli, file: Option<&str>) -> Result<Self, InvalidSetting> {
        let file = match file {
            Some(text) => FileConfig::parse(text, cli.config.as_deref())?,
            None => FileConfig::default(),
        };
        let http_addr = resolve::http_addr(cli.http_addr, file.http_addr.as_deref())?;
        resolve::check_defaults(&file.defaults)?;
        let mut resolved = Vec::new();
        for (index, entry) in file.bindings.iter().enumerate() {
            let prefix = format!("binding[{index}]");
            resolved.push(resolve::binding(
                &prefix,
                entry,
                &cli.scaling,
                &file.defaults,
                None,
            )?);
        }
        if let Some((entry, local)) = cli.binding()? {
            resolved.push(resolve::binding(
                "",
                &entry,
                &cli.scaling,
                &file.defaults,
                local,
            )?);
        }
        resolve::check_bindings(&resolved, &cli.scaling, &file.defaults)?;
        Ok(Self {
            http_addr,
            dry_run: cli.dry_run || file.dry_run.unwrap_or(false),
            bindings: resolved
                .into_iter()
                .map(|resolved| resolved.binding)
                .collect(),
        })
    }
}

/// The queue's name: the last path segment of a URL, or the name itself.
pub fn queue_name(queue: &str) -> &str {
    queue
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(queue)
}

#[cfg(test)]
mod tests;
