//! The controller's settings: command-line flags (each with an environment fallback)
//! and a TOML file, checked at start so that a bad value fails naming its setting.
//!
//! Precedence, per binding setting: the binding's own entry in the file, then the flags
//! (or their environment variables), then the file's `[defaults]`, then the built-in
//! default. `--queue` with `--cluster` and `--service` (or `--local-command`) adds one
//! binding to those of the file.
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
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;

use crate::decision::{BacklogTarget, Policy};

/// The default address of `/metrics` and `/health`.
pub const DEFAULT_HTTP_ADDR: &str = "0.0.0.0:9090";
/// The default poll interval.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(5);
/// The default time a local worker process gets between SIGTERM and SIGKILL.
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// The shortest poll interval allowed: GetQueueAttributes and DescribeServices are
/// rate-limited per account.
pub const MIN_POLL_INTERVAL: Duration = Duration::from_millis(100);

/// A setting that is missing, malformed or out of range.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid setting `{setting}`: {message}")]
pub struct ConfigError {
    /// The setting: a flag (`--max`), or a path in the file (`binding[1].max`).
    pub setting: String,
    /// What is wrong with it.
    pub message: String,
}

impl ConfigError {
    fn new(setting: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            setting: setting.into(),
            message: message.into(),
        }
    }
}

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
}

/// Binding settings as flags: for the binding given by flags, and the defaults of the
/// bindings in the file.
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
    /// A worker's `/metrics` URL to measure throughput from (repeat, or separate with
    /// commas).
    #[arg(
        long = "metrics-url",
        env = "SPOTQ_CONTROLLER_METRICS_URLS",
        value_delimiter = ','
    )]
    pub metrics_urls: Vec<String>,
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
    /// Workers' `/metrics` URLs to measure per-task throughput from.
    pub metrics_urls: Vec<String>,
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

/// A duration in the file: `"500ms"`, `"5s"`, `"2m"`, `"1h"`, or a number of seconds.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
enum DurationValue {
    Seconds(f64),
    Text(String),
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    http_addr: Option<String>,
    dry_run: Option<bool>,
    #[serde(default)]
    defaults: FileBinding,
    #[serde(default, rename = "binding")]
    bindings: Vec<FileBinding>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBinding {
    name: Option<String>,
    queue: Option<String>,
    cluster: Option<String>,
    service: Option<String>,
    local: Option<FileLocal>,
    min: Option<u32>,
    max: Option<u32>,
    backlog_per_task: Option<f64>,
    latency_goal: Option<DurationValue>,
    message_time: Option<DurationValue>,
    concurrency: Option<u32>,
    activation: Option<u64>,
    poll_interval: Option<DurationValue>,
    scale_in_cooldown: Option<DurationValue>,
    empty_polls: Option<u32>,
    max_step: Option<u32>,
    count_delayed: Option<bool>,
    in_flight_wake_polls: Option<u32>,
    tolerance: Option<f64>,
    metrics_urls: Option<Vec<String>>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLocal {
    command: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    stop_timeout: Option<DurationValue>,
}

/// One binding setting, with the name to report it by.
struct Layered<'a, T> {
    value: Option<T>,
    setting: &'a str,
    prefix: &'a str,
}

impl<T> Layered<'_, T> {
    fn name(&self) -> String {
        if self.prefix.is_empty() {
            format!("--{}", self.setting.replace('_', "-"))
        } else {
            format!("{}.{}", self.prefix, self.setting)
        }
    }
}

impl Config {
    /// Reads the file `cli.config` names (if any) and combines it with the flags.
    pub fn load(cli: &Cli) -> Result<Self, ConfigError> {
        let file = match &cli.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|error| {
                    ConfigError::new(
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
    pub fn from_parts(cli: &Cli, file: Option<&str>) -> Result<Self, ConfigError> {
        let file: FileConfig = match file {
            Some(text) => toml::from_str(text).map_err(|error| {
                let setting = cli
                    .config
                    .as_ref()
                    .map_or_else(|| "--config".to_owned(), |path| path.display().to_string());
                ConfigError::new(
                    setting,
                    error.message().to_owned() + &span_hint(text, &error),
                )
            })?,
            None => FileConfig::default(),
        };
        let http_addr = match (cli.http_addr, &file.http_addr) {
            (Some(addr), _) => addr,
            (None, Some(text)) => text.parse().map_err(|error| {
                ConfigError::new("http_addr", format!("{text:?} is not an address: {error}"))
            })?,
            (None, None) => DEFAULT_HTTP_ADDR
                .parse()
                .map_err(|_| ConfigError::new("http_addr", "the default does not parse"))?,
        };
        let mut bindings = Vec::new();
        for (index, entry) in file.bindings.iter().enumerate() {
            let prefix = format!("binding[{index}]");
            bindings.push(resolve(&prefix, entry, &cli.scaling, &file.defaults, None)?);
        }
        if cli.queue.is_some()
            || cli.cluster.is_some()
            || cli.service.is_some()
            || cli.local_command.is_some()
        {
            let from_flags = FileBinding {
                name: cli.name.clone(),
                queue: cli.queue.clone(),
                cluster: cli.cluster.clone(),
                service: cli.service.clone(),
                ..FileBinding::default()
            };
            let local = match &cli.local_command {
                Some(program) => {
                    let mut env = Vec::new();
                    for pair in &cli.local_env {
                        let (key, value) = pair.split_once('=').ok_or_else(|| {
                            ConfigError::new("--local-env", format!("{pair:?} is not KEY=VALUE"))
                        })?;
                        env.push((key.to_owned(), value.to_owned()));
                    }
                    let mut command = vec![program.clone()];
                    command.extend(cli.local_args.iter().cloned());
                    Some(LocalConfig {
                        command,
                        env,
                        stop_timeout: cli.local_stop_timeout.unwrap_or(DEFAULT_STOP_TIMEOUT),
                    })
                }
                None => None,
            };
            bindings.push(resolve(
                "",
                &from_flags,
                &cli.scaling,
                &file.defaults,
                local,
            )?);
        }
        if bindings.is_empty() {
            return Err(ConfigError::new(
                "--queue",
                "no binding: give --queue with --cluster and --service (or --local-command), \
                 or [[binding]] entries in a --config file",
            ));
        }
        let mut names = BTreeSet::new();
        for (index, binding) in bindings.iter().enumerate() {
            if !names.insert(binding.name.as_str()) {
                return Err(ConfigError::new(
                    format!("binding[{index}].name"),
                    format!("{:?} names two bindings; give each a `name`", binding.name),
                ));
            }
        }
        Ok(Self {
            http_addr,
            dry_run: cli.dry_run || file.dry_run.unwrap_or(false),
            bindings,
        })
    }
}

/// One binding from its entry, the flags and the file's defaults, checked.
fn resolve(
    prefix: &str,
    entry: &FileBinding,
    flags: &ScalingFlags,
    defaults: &FileBinding,
    local_from_flags: Option<LocalConfig>,
) -> Result<Binding, ConfigError> {
    let setting = |name: &str| {
        if prefix.is_empty() {
            format!("--{}", name.replace('_', "-"))
        } else {
            format!("{prefix}.{name}")
        }
    };
    // The entry's own value, then the flag, then the file's default.
    macro_rules! layer {
        ($field:ident) => {
            Layered {
                value: entry
                    .$field
                    .clone()
                    .or_else(|| flags.$field.clone().map(Into::into))
                    .or_else(|| defaults.$field.clone()),
                setting: stringify!($field),
                prefix,
            }
        };
    }
    macro_rules! duration {
        ($field:ident) => {
            match (&entry.$field, flags.$field, &defaults.$field) {
                (Some(value), _, _) => Some(duration_value(value, &setting(stringify!($field)))?),
                (None, Some(flag), _) => Some(flag),
                (None, None, Some(value)) => Some(duration_value(
                    value,
                    concat!("defaults.", stringify!($field)),
                )?),
                (None, None, None) => None,
            }
        };
    }

    let queue = entry
        .queue
        .clone()
        .filter(|queue| !queue.trim().is_empty())
        .ok_or_else(|| ConfigError::new(setting("queue"), "a binding needs a queue"))?;
    let name = entry
        .name
        .clone()
        .unwrap_or_else(|| queue_name(&queue).to_owned());

    let local = match (&entry.local, local_from_flags) {
        (Some(local), _) => {
            let stop_timeout = match &local.stop_timeout {
                Some(value) => duration_value(value, &setting("local.stop_timeout"))?,
                None => DEFAULT_STOP_TIMEOUT,
            };
            Some(LocalConfig {
                command: local.command.clone(),
                env: local.env.clone().into_iter().collect(),
                stop_timeout,
            })
        }
        (None, local) => local,
    };
    let target = match (&entry.cluster, &entry.service, local) {
        (None, None, Some(local)) => {
            if local
                .command
                .first()
                .is_none_or(|program| program.is_empty())
            {
                return Err(ConfigError::new(
                    setting("local.command"),
                    "names no program to run",
                ));
            }
            if local.stop_timeout.is_zero() {
                return Err(ConfigError::new(
                    setting("local.stop_timeout"),
                    "must be more than 0",
                ));
            }
            TargetConfig::Local(local)
        }
        (Some(cluster), Some(service), None) => TargetConfig::Ecs {
            cluster: cluster.clone(),
            service: service.clone(),
        },
        (Some(_), Some(_), Some(_)) => {
            return Err(ConfigError::new(
                setting("local"),
                "a binding scales an ECS service or local processes, not both",
            ));
        }
        (None, _, _) => {
            return Err(ConfigError::new(
                setting("cluster"),
                "a binding needs an ECS cluster and service (or a local command)",
            ));
        }
        (Some(_), None, _) => {
            return Err(ConfigError::new(
                setting("service"),
                "a binding needs an ECS service with its cluster",
            ));
        }
    };

    let base = Policy::default();
    let min = layer!(min).value.unwrap_or(base.min);
    let max_layer = layer!(max);
    let max = max_layer.value.unwrap_or(base.max);
    if max == 0 {
        return Err(ConfigError::new(max_layer.name(), "must be at least 1"));
    }
    if min > max {
        return Err(ConfigError::new(
            max_layer.name(),
            format!("must be at least min ({min}), is {max}"),
        ));
    }

    let backlog = layer!(backlog_per_task);
    let latency_goal = duration!(latency_goal);
    let message_time = duration!(message_time);
    let concurrency = layer!(concurrency);
    // A binding's own choice of sizing wins over the other kind from the flags or
    // the defaults.
    let both = |from: &str| {
        ConfigError::new(
            from.to_owned(),
            "give backlog_per_task or latency_goal, not both",
        )
    };
    if entry.latency_goal.is_some() && entry.backlog_per_task.is_some() {
        return Err(both(&setting("latency_goal")));
    }
    if flags.latency_goal.is_some() && flags.backlog_per_task.is_some() {
        return Err(both("--latency-goal"));
    }
    let by_latency = if entry.latency_goal.is_some() || entry.backlog_per_task.is_some() {
        entry.latency_goal.is_some()
    } else if flags.latency_goal.is_some() || flags.backlog_per_task.is_some() {
        flags.latency_goal.is_some()
    } else {
        defaults.latency_goal.is_some()
    };
    let target_size = match (by_latency, latency_goal, backlog.value) {
        (true, Some(goal), _) => {
            let message_time = message_time.ok_or_else(|| {
                ConfigError::new(
                    setting("message_time"),
                    "latency_goal needs the time one message takes",
                )
            })?;
            if goal.is_zero() {
                return Err(ConfigError::new(
                    setting("latency_goal"),
                    "must be more than 0",
                ));
            }
            if message_time.is_zero() {
                return Err(ConfigError::new(
                    setting("message_time"),
                    "must be more than 0",
                ));
            }
            let concurrency_value = concurrency.value.unwrap_or(1);
            if concurrency_value == 0 {
                return Err(ConfigError::new(concurrency.name(), "must be at least 1"));
            }
            BacklogTarget::Latency {
                goal,
                message_time,
                concurrency: concurrency_value,
            }
        }
        (_, _, Some(per_task)) => {
            if !(per_task.is_finite() && per_task > 0.0) {
                return Err(ConfigError::new(
                    backlog.name(),
                    format!("must be a number above 0, is {per_task}"),
                ));
            }
            BacklogTarget::PerTask(per_task)
        }
        _ => base.target,
    };

    let poll_interval = duration!(poll_interval).unwrap_or(DEFAULT_POLL_INTERVAL);
    if poll_interval < MIN_POLL_INTERVAL {
        return Err(ConfigError::new(
            setting("poll_interval"),
            format!("must be at least {MIN_POLL_INTERVAL:?}, is {poll_interval:?}"),
        ));
    }
    let scale_in_cooldown = duration!(scale_in_cooldown).unwrap_or(base.scale_in_cooldown);
    let empty_polls = layer!(empty_polls);
    let empty_polls_value = empty_polls.value.unwrap_or(base.empty_polls);
    if empty_polls_value == 0 {
        return Err(ConfigError::new(empty_polls.name(), "must be at least 1"));
    }
    let max_step = layer!(max_step);
    if max_step.value == Some(0) {
        return Err(ConfigError::new(max_step.name(), "must be at least 1"));
    }
    let wake_polls = layer!(in_flight_wake_polls);
    let wake_polls_value = wake_polls.value.unwrap_or(base.in_flight_wake_polls);
    if wake_polls_value == 0 {
        return Err(ConfigError::new(wake_polls.name(), "must be at least 1"));
    }
    let tolerance = layer!(tolerance);
    let tolerance_value = tolerance.value.unwrap_or(base.tolerance);
    if !(0.0..1.0).contains(&tolerance_value) {
        return Err(ConfigError::new(
            tolerance.name(),
            format!("must be at least 0 and below 1, is {tolerance_value}"),
        ));
    }
    let metrics_urls = entry
        .metrics_urls
        .clone()
        .or_else(|| (!flags.metrics_urls.is_empty()).then(|| flags.metrics_urls.clone()))
        .or_else(|| defaults.metrics_urls.clone())
        .unwrap_or_default();
    for url in &metrics_urls {
        if !url.starts_with("http://") {
            return Err(ConfigError::new(
                setting("metrics_urls"),
                format!("{url:?} is not an http:// URL"),
            ));
        }
    }

    Ok(Binding {
        name,
        queue,
        target,
        policy: Policy {
            min,
            max,
            target: target_size,
            activation: layer!(activation).value.unwrap_or(base.activation),
            scale_in_cooldown,
            empty_polls: empty_polls_value,
            max_step: max_step.value,
            count_delayed: layer!(count_delayed).value.unwrap_or(base.count_delayed),
            in_flight_wake_polls: wake_polls_value,
            tolerance: tolerance_value,
        },
        poll_interval,
        metrics_urls,
    })
}

/// The queue's name: the last path segment of a URL, or the name itself.
pub fn queue_name(queue: &str) -> &str {
    queue
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(queue)
}

fn duration_value(value: &DurationValue, setting: &str) -> Result<Duration, ConfigError> {
    match value {
        DurationValue::Seconds(seconds) => Duration::try_from_secs_f64(*seconds)
            .map_err(|error| ConfigError::new(setting, format!("{seconds}: {error}"))),
        DurationValue::Text(text) => {
            parse_duration(text).map_err(|message| ConfigError::new(setting, message))
        }
    }
}

/// Parses `"250ms"`, `"5s"`, `"1.5s"`, `"2m"`, `"1h"`, or a number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 500ms, 5s, 2m or 1h"))?;
    let scale = match unit.trim() {
        "ms" => 0.001,
        "" | "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        other => {
            return Err(format!(
                "{text:?}: unknown unit {other:?} (use ms, s, m or h)"
            ));
        }
    };
    Duration::try_from_secs_f64(number * scale).map_err(|error| format!("{text:?}: {error}"))
}

/// ` (line N)` for a TOML error with a position.
fn span_hint(text: &str, error: &toml::de::Error) -> String {
    error.span().map_or_else(String::new, |span| {
        let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
        format!(" (line {line})")
    })
}

#[cfg(test)]
mod tests;
