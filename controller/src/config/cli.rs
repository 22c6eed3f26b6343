//! The command line: the flags of `spotq-controller`, each with an environment
//! fallback, and the binding they give.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use super::duration::parse_duration;
use super::file::{DurationValue, FileBinding, FileJob};
use super::{DEFAULT_STOP_TIMEOUT, InvalidSetting, LocalConfig};

/// The command line of `spotq-controller`. Every flag has an environment fallback,
/// `SPOTQ_CONTROLLER_<FLAG>`.
#[derive(Clone, Debug, Default, Parser)]
#[command(
    name = "spotq-controller",
    version,
    about = "Scales ECS services (or local worker processes) with their SQS queues, down to zero"
)]
pub struct Cli {
    /// A TOML file with `[[binding]]` entries and `[defaults]`.
    #[arg(long, env = "SPOTQ_CONTROLLER_CONFIG")]
    pub config: Option<PathBuf>,
    /// Decide and log, but change nothing.
    #[arg(long, env = "SPOTQ_CONTROLLER_DRY_RUN")]
    pub dry_run: bool,
    /// Where to serve `/metrics` and `/health` [default: 0.0.0.0:9090].
    #[arg(long, env = "SPOTQ_CONTROLLER_HTTP_ADDR")]
    pub http_addr: Option<SocketAddr>,

    /// The queue of a binding given by flags: a name or a URL.
    #[arg(long, env = "SPOTQ_CONTROLLER_QUEUE")]
    pub queue: Option<String>,
    /// The binding's name in logs and metrics [default: the queue's name].
    #[arg(long, env = "SPOTQ_CONTROLLER_NAME")]
    pub name: Option<String>,
    /// The ECS cluster (name or ARN) of the service to scale.
    #[arg(long, env = "SPOTQ_CONTROLLER_CLUSTER")]
    pub cluster: Option<String>,
    /// The ECS service (name or ARN) to scale.
    #[arg(long, env = "SPOTQ_CONTROLLER_SERVICE")]
    pub service: Option<String>,
    /// Scale local worker processes running this program instead of an ECS service.
    #[arg(long, env = "SPOTQ_CONTROLLER_LOCAL_COMMAND")]
    pub local_command: Option<String>,
    /// An argument for the local program (repeat for more).
    #[arg(long = "local-arg", allow_hyphen_values = true)]
    pub local_args: Vec<String>,
    /// `KEY=VALUE` for the local program's environment (repeat for more).
    #[arg(long = "local-env")]
    pub local_env: Vec<String>,
    /// How long a local worker gets between SIGTERM and SIGKILL [default: 30s].
    #[arg(long, env = "SPOTQ_CONTROLLER_LOCAL_STOP_TIMEOUT", value_parser = parse_duration)]
    pub local_stop_timeout: Option<Duration>,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub scaling: ScalingFlags,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub job: JobFlags,
}

/// The flags of a job binding: standalone tasks started for the backlog, which exit by
/// themselves. Any of them makes the binding given by flags a job binding (ECS tasks in
/// `--cluster`, or with `--local-command` local processes).
#[derive(Clone, Debug, Default, clap::Args)]
pub struct JobFlags {
    /// Start standalone tasks of this task definition (family, family:revision or ARN)
    /// in --cluster for the backlog, instead of scaling a service.
    #[arg(
        long = "job-task-definition",
        env = "SPOTQ_CONTROLLER_JOB_TASK_DEFINITION"
    )]
    pub task_definition: Option<String>,
    /// A subnet of the job tasks (repeat, or separate with commas).
    #[arg(
        long = "job-subnets",
        env = "SPOTQ_CONTROLLER_JOB_SUBNETS",
        value_delimiter = ','
    )]
    pub subnets: Vec<String>,
    /// A security group of the job tasks (repeat, or separate with commas) [default: the
    /// VPC's default group].
    #[arg(
        long = "job-security-groups",
        env = "SPOTQ_CONTROLLER_JOB_SECURITY_GROUPS",
        value_delimiter = ','
    )]
    pub security_groups: Vec<String>,
    /// Give the job tasks a public IP address.
    #[arg(
        long = "job-assign-public-ip",
        env = "SPOTQ_CONTROLLER_JOB_ASSIGN_PUBLIC_IP",
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub assign_public_ip: Option<bool>,
    /// The capacity provider the job tasks run on [default: FARGATE_SPOT].
    #[arg(
        long = "job-capacity-provider",
        env = "SPOTQ_CONTROLLER_JOB_CAPACITY_PROVIDER"
    )]
    pub capacity_provider: Option<String>,
    /// Start a job task on FARGATE when FARGATE_SPOT has no capacity for it.
    #[arg(
        long = "job-spot-fallback",
        env = "SPOTQ_CONTROLLER_JOB_SPOT_FALLBACK",
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub spot_fallback: Option<bool>,
    /// Waiting messages one job task is started for [default: 10].
    #[arg(
        long = "job-messages-per-task",
        env = "SPOTQ_CONTROLLER_JOB_MESSAGES_PER_TASK"
    )]
    pub messages_per_task: Option<u64>,
    /// How long a started job task counts as active while ListTasks does not list it
    /// yet [default: 60s].
    #[arg(
        long = "job-start-grace",
        env = "SPOTQ_CONTROLLER_JOB_START_GRACE",
        value_parser = parse_duration
    )]
    pub start_grace: Option<Duration>,
}

impl JobFlags {
    /// The flags as a `[binding.job]` table, if any is given.
    fn table(&self) -> Option<FileJob> {
        let given = self.task_definition.is_some()
            || !self.subnets.is_empty()
            || !self.security_groups.is_empty()
            || self.assign_public_ip.is_some()
            || self.capacity_provider.is_some()
            || self.spot_fallback.is_some()
            || self.messages_per_task.is_some()
            || self.start_grace.is_some();
        let list = |values: &Vec<String>| (!values.is_empty()).then(|| values.clone());
        given.then(|| FileJob {
            task_definition: self.task_definition.clone(),
            subnets: list(&self.subnets),
            security_groups: list(&self.security_groups),
            assign_public_ip: self.assign_public_ip,
            capacity_provider: self.capacity_provider.clone(),
            spot_fallback: self.spot_fallback,
            messages_per_task: self.messages_per_task,
            // Parsed already, to the millisecond: as seconds, it reads back the same.
            start_grace: self
                .start_grace
                .map(|grace| DurationValue::Seconds(grace.as_secs_f64())),
        })
    }
}

/// Binding settings as flags: for the binding given by flags, and the defaults of the
/// bindings in the file (`--metrics-url` only for one binding: a list of workers is one
/// binding's).
#[derive(Clone, Debug, Default, clap::Args)]
pub struct ScalingFlags {
    /// The fewest tasks [default: 0].
    #[arg(long, env = "SPOTQ_CONTROLLER_MIN")]
    pub min: Option<u32>,
    /// The most tasks [default: 10].
    #[arg(long, env = "SPOTQ_CONTROLLER_MAX")]
    pub max: Option<u32>,
    /// Messages (waiting or in flight) per task to aim at [default: 10].
    #[arg(long, env = "SPOTQ_CONTROLLER_BACKLOG_PER_TASK")]
    pub backlog_per_task: Option<f64>,
    /// Size for this latency instead: backlog per task = goal × per-task throughput.
    #[arg(long, env = "SPOTQ_CONTROLLER_LATENCY_GOAL", value_parser = parse_duration)]
    pub latency_goal: Option<Duration>,
    /// With --latency-goal: how long one message takes to process.
    #[arg(long, env = "SPOTQ_CONTROLLER_MESSAGE_TIME", value_parser = parse_duration)]
    pub message_time: Option<Duration>,
    /// With --latency-goal: messages one task processes at once [default: 1].
    #[arg(long, env = "SPOTQ_CONTROLLER_CONCURRENCY")]
    pub concurrency: Option<u32>,
    /// Waiting messages at or below this do not wake a service at zero [default: 0].
    #[arg(long, env = "SPOTQ_CONTROLLER_ACTIVATION")]
    pub activation: Option<u64>,
    /// How often to read the queue and the service [default: 5s].
    #[arg(long, env = "SPOTQ_CONTROLLER_POLL_INTERVAL", value_parser = parse_duration)]
    pub poll_interval: Option<Duration>,
    /// How long a lower target must last before scaling in, and the queue must read
    /// empty before going to zero [default: 60s].
    #[arg(long, env = "SPOTQ_CONTROLLER_SCALE_IN_COOLDOWN", value_parser = parse_duration)]
    pub scale_in_cooldown: Option<Duration>,
    /// Consecutive empty polls before going to zero [default: 3].
    #[arg(long, env = "SPOTQ_CONTROLLER_EMPTY_POLLS")]
    pub empty_polls: Option<u32>,
    /// The largest change of one decision [default: no limit].
    #[arg(long, env = "SPOTQ_CONTROLLER_MAX_STEP")]
    pub max_step: Option<u32>,
    /// Count delayed messages as waiting.
    #[arg(
        long,
        env = "SPOTQ_CONTROLLER_COUNT_DELAYED",
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub count_delayed: Option<bool>,
    /// Polls with messages only in flight before those wake a service at zero
    /// [default: 3].
    #[arg(long, env = "SPOTQ_CONTROLLER_IN_FLIGHT_WAKE_POLLS")]
    pub in_flight_wake_polls: Option<u32>,
    /// Changes smaller than this fraction of the current count are not made
    /// [default: 0.1].
    #[arg(long, env = "SPOTQ_CONTROLLER_TOLERANCE")]
    pub tolerance: Option<f64>,
    /// A worker's `/metrics` URL to measure throughput and messages held from (repeat,
    /// or separate with commas); the workers of one binding only: refused when more than
    /// one binding (or none) would read them.
    #[arg(
        long = "metrics-url",
        env = "SPOTQ_CONTROLLER_METRICS_URLS",
        value_delimiter = ','
    )]
    pub metrics_urls: Vec<String>,
    /// The port the workers of an ECS service serve `/metrics` on: the controller reads
    /// every task of the service at its private address (instead of --metrics-url).
    #[arg(long, env = "SPOTQ_CONTROLLER_METRICS_PORT")]
    pub metrics_port: Option<u16>,
}

impl Cli {
    /// The binding the flags give, as an entry like the file's plus its local
    /// command: `None` unless `--queue`, `--cluster`, `--service`, `--local-command` or
    /// a `--job-*` flag is given.
    pub(super) fn binding(
        &self,
    ) -> Result<Option<(FileBinding, Option<LocalConfig>)>, InvalidSetting> {
        let job = self.job.table();
        if self.queue.is_none()
            && self.cluster.is_none()
            && self.service.is_none()
            && self.local_command.is_none()
            && job.is_none()
        {
            return Ok(None);
        }
        let entry = FileBinding {
            name: self.name.clone(),
            queue: self.queue.clone(),
            cluster: self.cluster.clone(),
            service: self.service.clone(),
            job,
            ..FileBinding::default()
        };
        let local = match &self.local_command {
            Some(program) => {
                let mut env = Vec::new();
                for pair in &self.local_env {
                    let (key, value) = pair.split_once('=').ok_or_else(|| {
                        InvalidSetting::new("--local-env", format!("{pair:?} is not KEY=VALUE"))
                    })?;
                    env.push((key.to_owned(), value.to_owned()));
                }
                let mut command = vec![program.clone()];
                command.extend(self.local_args.iter().cloned());
                Some(LocalConfig {
                    command,
                    env,
                    stop_timeout: self.local_stop_timeout.unwrap_or(DEFAULT_STOP_TIMEOUT),
                })
            }
            None => None,
        };
        Ok(Some((entry, local)))
    }
}
