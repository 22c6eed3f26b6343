//! Precedence and checks: each binding setting from the binding's entry, then the
//! flags, then the file's `[defaults]`, then the built-in default; a value out of range
//! fails naming where it was given. Across bindings: distinct names, one binding per
//! ECS service, and a shared list of workers for one binding only.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use super::cli::ScalingFlags;
use super::file::{FileBinding, FileJob};
use super::{
    Binding, DEFAULT_HTTP_ADDR, DEFAULT_MESSAGES_PER_TASK, DEFAULT_POLL_INTERVAL,
    DEFAULT_START_GRACE, DEFAULT_STOP_TIMEOUT, EcsJobConfig, FARGATE_SPOT, InvalidSetting,
    JobConfig, JobRunner, LocalConfig, MIN_POLL_INTERVAL, TargetConfig, queue_name,
};
use crate::decision::{BacklogTarget, Policy};

/// Where one binding's settings come from, in precedence order.
struct Sources<'a> {
    /// `binding[N]` for an entry of the file; empty for the binding given by flags.
    prefix: &'a str,
    entry: &'a FileBinding,
    flags: &'a ScalingFlags,
    defaults: &'a FileBinding,
}

impl Sources<'_> {
    /// How an error names a setting: `--max-step` for the flags' binding,
    /// `binding[1].max_step` for an entry of the file.
    fn setting(&self, name: &str) -> String {
        setting(self.prefix, name)
    }
}

/// How an error names the setting `name` of the binding `prefix` (`binding[N]`, or
/// empty for the binding given by flags).
fn setting(prefix: &str, name: &str) -> String {
    match (prefix, name) {
        ("", METRICS_URLS) => METRICS_URL_FLAG.to_owned(),
        ("", _) => format!("--{}", name.replace(['_', '.'], "-")),
        _ => format!("{prefix}.{name}"),
    }
}

/// How errors name a binding: `binding[N]`, or the one given by flags.
fn binding_called(prefix: &str) -> &str {
    if prefix.is_empty() {
        "the binding given by flags"
    } else {
        prefix
    }
}

const METRICS_URLS: &str = "metrics_urls";
/// The flag of `metrics_urls` (one URL a flag, repeated).
const METRICS_URL_FLAG: &str = "--metrics-url";
/// `metrics_urls` in the file's `[defaults]`.
const DEFAULT_METRICS_URLS: &str = "defaults.metrics_urls";

/// A binding, checked on its own, with what the checks across bindings need.
pub(super) struct Resolved {
    /// `binding[N]` for an entry of the file; empty for the binding given by flags.
    pub(super) prefix: String,
    pub(super) binding: Binding,
    /// The list of workers the binding took from `--metrics-url` or
    /// `defaults.metrics_urls` (settings every binding may take), if it did.
    pub(super) shared_metrics_urls: Option<&'static str>,
}

/// One binding setting, with the name to report it by.
struct Layered<'a, T> {
    value: Option<T>,
    setting: &'static str,
    sources: &'a Sources<'a>,
}

impl<T> Layered<'_, T> {
    fn name(&self) -> String {
        self.sources.setting(self.setting)
    }
}

/// A setting by precedence: the entry's own value, then the flag, then the file's
/// default.
macro_rules! layer {
    ($sources:expr, $field:ident) => {{
        let sources: &Sources<'_> = $sources;
        Layered {
            value: sources
                .entry
                .$field
                .clone()
                .or_else(|| sources.flags.$field.clone().map(Into::into))
                .or_else(|| sources.defaults.$field.clone()),
            setting: stringify!($field),
            sources,
        }
    }};
}

/// A duration setting by the same precedence; a value from the file is parsed here,
/// so an error names where it was written.
macro_rules! duration {
    ($sources:expr, $field:ident) => {{
        let sources: &Sources<'_> = $sources;
        match (
            &sources.entry.$field,
            sources.flags.$field,
            &sources.defaults.$field,
        ) {
            (Some(value), _, _) => Some(value.to_duration(&sources.setting(stringify!($field)))?),
            (None, Some(flag), _) => Some(flag),
            (None, None, Some(value)) => {
                Some(value.to_duration(concat!("defaults.", stringify!($field)))?)
            }
            (None, None, None) => None,
        }
    }};
}

/// Where to serve `/metrics` and `/health`: the flag, then the file, then the default.
pub(super) fn http_addr(
    flag: Option<SocketAddr>,
    file: Option<&str>,
) -> Result<SocketAddr, InvalidSetting> {
    match (flag, file) {
        (Some(addr), _) => Ok(addr),
        (None, Some(text)) => text.parse().map_err(|error| {
            InvalidSetting::new("http_addr", format!("{text:?} is not an address: {error}"))
        }),
        (None, None) => DEFAULT_HTTP_ADDR
            .parse()
            .map_err(|_| InvalidSetting::new("http_addr", "the default does not parse")),
    }
}

/// The checks of the file's `[defaults]`: of a binding's own settings (what it reads
/// and what it scales), only `cluster` has a default; `queue`, `name` and `service` would
/// be every binding's, and a binding runs local processes or job tasks by its own
/// `[binding.local]` or `[binding.job]` table, never by default.
pub(super) fn check_defaults(defaults: &FileBinding) -> Result<(), InvalidSetting> {
    let own = [
        (
            "defaults.queue",
            defaults.queue.is_some(),
            "each binding names its own queue",
        ),
        (
            "defaults.name",
            defaults.name.is_some(),
            "each binding has its own name (by default its queue's name)",
        ),
        (
            "defaults.service",
            defaults.service.is_some(),
            "each binding names its own service: two bindings on one service would fight \
             over its desired count",
        ),
        (
            "defaults.local",
            defaults.local.is_some(),
            "a binding runs local processes by its own [binding.local] table, not by default",
        ),
        (
            "defaults.job",
            defaults.job.is_some(),
            "a binding is a job binding by its own [binding.job] table, not by default",
        ),
    ];
    match own.into_iter().find(|(_, given, _)| *given) {
        Some((setting, _, message)) => Err(InvalidSetting::new(setting, message)),
        None => Ok(()),
    }
}

/// The checks across bindings: there is at least one, no two share a name (it labels
/// their logs and metrics, and a job binding's tasks: `startedBy`), no two set one ECS
/// service's desired count (they would fight: the idle one at zero, the busy one
/// waking), and a list of workers from `--metrics-url` or `defaults.metrics_urls` is
/// one binding's (a list given that no binding takes is refused too).
pub(super) fn check_bindings(
    resolved: &[Resolved],
    flags: &ScalingFlags,
    defaults: &FileBinding,
) -> Result<(), InvalidSetting> {
    if resolved.is_empty() {
        return Err(InvalidSetting::new(
            "--queue",
            "no binding: give --queue with --cluster and --service (or --local-command), \
             or [[binding]] entries in a --config file",
        ));
    }
    let mut names = BTreeSet::new();
    for Resolved {
        prefix, binding, ..
    } in resolved
    {
        if !names.insert(binding.name.as_str()) {
            return Err(InvalidSetting::new(
                setting(prefix, "name"),
                format!("{:?} names two bindings; give each a `name`", binding.name),
            ));
        }
    }
    let mut services = BTreeMap::new();
    for Resolved {
        prefix, binding, ..
    } in resolved
    {
        let TargetConfig::Ecs { cluster, service } = &binding.target else {
            continue;
        };
        let key = (ecs_name(cluster), ecs_name(service));
        if let Some((first_prefix, first)) = services.insert(key, (prefix, binding)) {
            return Err(InvalidSetting::new(
                setting(prefix, "service"),
                format!(
                    "{} ({:?}) scales service {:?} of cluster {:?} already: with {:?} too, the \
                     two would fight over its desired count (one decides 0, the other wakes \
                     it); give a service one binding",
                    binding_called(first_prefix),
                    first.name,
                    key.1,
                    key.0,
                    binding.name,
                ),
            ));
        }
    }
    let shared_lists = [
        (METRICS_URL_FLAG, !flags.metrics_urls.is_empty()),
        (DEFAULT_METRICS_URLS, defaults.metrics_urls.is_some()),
    ];
    for (shared, given) in shared_lists {
        let takers: Vec<&str> = resolved
            .iter()
            .filter(|resolved| resolved.shared_metrics_urls == Some(shared))
            .map(|resolved| resolved.binding.name.as_str())
            .collect();
        if given && takers.is_empty() {
            return Err(InvalidSetting::new(
                shared,
                "no binding reads these workers: each has its own `metrics_urls` or is a \
                 job binding (which reads no workers)",
            ));
        }
        if takers.len() > 1 {
            return Err(InvalidSetting::new(
                shared,
                format!(
                    "one list of workers for {} bindings ({takers:?}): the workers of one \
                     binding are not another's; give each binding its own `metrics_urls` \
                     (or an ECS service `metrics_port`)",
                    takers.len()
                ),
            ));
        }
    }
    Ok(())
}

/// An ECS cluster's or service's name: the last part of an ARN
/// (`arn:aws:ecs:REGION:ACCOUNT:service/CLUSTER/NAME`), or the name itself.
fn ecs_name(name_or_arn: &str) -> &str {
    name_or_arn.rsplit('/').next().unwrap_or(name_or_arn)
}

/// One binding from its entry, the flags and the file's defaults, checked.
pub(super) fn binding(
    prefix: &str,
    entry: &FileBinding,
    flags: &ScalingFlags,
    defaults: &FileBinding,
    local_from_flags: Option<LocalConfig>,
) -> Result<Resolved, InvalidSetting> {
    let sources = Sources {
        prefix,
        entry,
        flags,
        defaults,
    };
    let queue = entry
        .queue
        .clone()
        .filter(|queue| !queue.trim().is_empty())
        .ok_or_else(|| InvalidSetting::new(sources.setting("queue"), "a binding needs a queue"))?;
    let name = entry
        .name
        .clone()
        .unwrap_or_else(|| queue_name(&queue).to_owned());
    let target = target(&sources, local_from_flags)?;
    if let TargetConfig::Job(job) = &target {
        for_a_job(&sources, job, &name)?;
    }
    let (min, max) = bounds(&sources)?;
    let sizing = sizing(&sources)?;
    let poll_interval = poll_interval(&sources)?;
    let policy = Policy {
        min,
        max,
        target: sizing,
        ..pace(&sources)?
    };
    let (metrics_urls, shared_metrics_urls) = metrics_urls(&sources, &target)?;
    let metrics_port = metrics_port(&sources, &target, &metrics_urls)?;
    Ok(Resolved {
        prefix: prefix.to_owned(),
        binding: Binding {
            name,
            queue,
            target,
            policy,
            poll_interval,
            metrics_urls,
            metrics_port,
        },
        shared_metrics_urls,
    })
}

/// What the binding scales: an ECS service (cluster and service), local processes
/// (the entry's `[binding.local]`, or the flags' `--local-command`), or, with a
/// `[binding.job]` table (or `--job-*` flags), job tasks in either place. A binding
/// without local processes and without a `cluster` of its own takes the `cluster` of
/// the file's `[defaults]`.
fn target(
    sources: &Sources<'_>,
    local_from_flags: Option<LocalConfig>,
) -> Result<TargetConfig, InvalidSetting> {
    let entry = sources.entry;
    let local = match (&entry.local, local_from_flags) {
        (Some(local), _) => {
            let stop_timeout = match &local.stop_timeout {
                Some(value) => value.to_duration(&sources.setting("local.stop_timeout"))?,
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
    let cluster = match (&entry.cluster, &local) {
        (Some(cluster), _) => Some(cluster),
        (None, None) => sources.defaults.cluster.as_ref(),
        (None, Some(_)) => None,
    };
    if let Some(job) = &entry.job {
        return job_target(sources, job, cluster, local);
    }
    match (cluster, &entry.service, local) {
        (None, None, Some(local)) => {
            check_local(sources, &local)?;
            Ok(TargetConfig::Local(local))
        }
        (Some(cluster), Some(service), None) => Ok(TargetConfig::Ecs {
            cluster: cluster.clone(),
            service: service.clone(),
        }),
        (Some(_), Some(_), Some(_)) => Err(InvalidSetting::new(
            sources.setting("local"),
            "a binding scales an ECS service or local processes, not both",
        )),
        (None, _, _) => Err(InvalidSetting::new(
            sources.setting("cluster"),
            "a binding needs an ECS cluster and service (or a local command)",
        )),
        (Some(_), None, _) => Err(InvalidSetting::new(
            sources.setting("service"),
            "a binding needs an ECS service with its cluster",
        )),
    }
}

/// A local command names a program, and its stop timeout is more than 0.
fn check_local(sources: &Sources<'_>, local: &LocalConfig) -> Result<(), InvalidSetting> {
    if local
        .command
        .first()
        .is_none_or(|program| program.is_empty())
    {
        return Err(InvalidSetting::new(
            sources.setting("local.command"),
            "names no program to run",
        ));
    }
    if local.stop_timeout.is_zero() {
        return Err(InvalidSetting::new(
            sources.setting("local.stop_timeout"),
            "must be more than 0",
        ));
    }
    Ok(())
}

/// A job binding's tasks: ECS tasks in the binding's `cluster`, or local processes;
/// what each is started for.
fn job_target(
    sources: &Sources<'_>,
    job: &FileJob,
    cluster: Option<&String>,
    local: Option<LocalConfig>,
) -> Result<TargetConfig, InvalidSetting> {
    let entry = sources.entry;
    if entry.service.is_some() {
        return Err(InvalidSetting::new(
            sources.setting("service"),
            "a job binding starts standalone tasks, not a service's: leave out `service`",
        ));
    }
    let messages_per_task = job.messages_per_task.unwrap_or(DEFAULT_MESSAGES_PER_TASK);
    if messages_per_task == 0 {
        return Err(InvalidSetting::new(
            sources.setting("job.messages_per_task"),
            "must be at least 1",
        ));
    }
    let start_grace = match &job.start_grace {
        Some(value) => value.to_duration(&sources.setting("job.start_grace"))?,
        None => DEFAULT_START_GRACE,
    };
    if start_grace.is_zero() {
        return Err(InvalidSetting::new(
            sources.setting("job.start_grace"),
            "must be more than 0: a task ECS does not list yet would be started again",
        ));
    }
    let runner = match (local, cluster) {
        (Some(local), None) => {
            check_local(sources, &local)?;
            if let Some((name, _)) = job.ecs_settings().into_iter().find(|(_, given)| *given) {
                return Err(InvalidSetting::new(
                    sources.setting(&format!("job.{name}")),
                    "a local job runs processes on this machine: ECS settings do not apply",
                ));
            }
            JobRunner::Local(local)
        }
        (Some(_), Some(_)) => {
            return Err(InvalidSetting::new(
                sources.setting("local"),
                "a job binding runs ECS tasks in its cluster or local processes, not both",
            ));
        }
        (None, Some(cluster)) => JobRunner::Ecs(ecs_job(sources, cluster, job)?),
        (None, None) => {
            return Err(InvalidSetting::new(
                sources.setting("cluster"),
                "a job binding needs the ECS cluster to start its tasks in (or a local command)",
            ));
        }
    };
    Ok(TargetConfig::Job(JobConfig {
        runner,
        messages_per_task,
        start_grace,
    }))
}

/// How to start a job binding's ECS tasks: a task definition, `awsvpc` subnets (1 to
/// 16) and security groups (up to 5), a capacity provider; Spot fallback only from
/// `FARGATE_SPOT`.
fn ecs_job(
    sources: &Sources<'_>,
    cluster: &str,
    job: &FileJob,
) -> Result<EcsJobConfig, InvalidSetting> {
    let task_definition = job
        .task_definition
        .clone()
        .filter(|name| !name.trim().is_empty())
        .ok_or_else(|| {
            InvalidSetting::new(
                sources.setting("job.task_definition"),
                "a job binding needs the task definition to run (family, family:revision or ARN)",
            )
        })?;
    let ids = |name: &str, prefix: &str, most: usize, values: Vec<String>| {
        if values.len() > most {
            return Err(InvalidSetting::new(
                sources.setting(name),
                format!("at most {most}, are {}", values.len()),
            ));
        }
        match values.iter().find(|id| !id.starts_with(prefix)) {
            Some(id) => Err(InvalidSetting::new(
                sources.setting(name),
                format!("{id:?} is not an id `{prefix}…`"),
            )),
            None => Ok(values),
        }
    };
    let subnets = ids(
        "job.subnets",
        "subnet-",
        16,
        job.subnets.clone().unwrap_or_default(),
    )?;
    if subnets.is_empty() {
        return Err(InvalidSetting::new(
            sources.setting("job.subnets"),
            "job tasks need at least one subnet (Fargate tasks use awsvpc networking)",
        ));
    }
    let security_groups = ids(
        "job.security_groups",
        "sg-",
        5,
        job.security_groups.clone().unwrap_or_default(),
    )?;
    let capacity_provider = job
        .capacity_provider
        .clone()
        .unwrap_or_else(|| FARGATE_SPOT.to_owned());
    if capacity_provider.trim().is_empty() {
        return Err(InvalidSetting::new(
            sources.setting("job.capacity_provider"),
            "names no capacity provider",
        ));
    }
    let spot_fallback = job.spot_fallback.unwrap_or(false);
    if spot_fallback && capacity_provider != FARGATE_SPOT {
        return Err(InvalidSetting::new(
            sources.setting("job.spot_fallback"),
            format!(
                "falls back from {FARGATE_SPOT} to FARGATE, but the tasks run on {capacity_provider}"
            ),
        ));
    }
    Ok(EcsJobConfig {
        cluster: cluster.to_owned(),
        task_definition,
        subnets,
        security_groups,
        assign_public_ip: job.assign_public_ip.unwrap_or(false),
        capacity_provider,
        spot_fallback,
    })
}

/// A job binding takes `max`, `max_step`, `count_delayed` and `poll_interval` of the
/// binding's settings; a service's own settings on the entry are refused. An ECS job
/// names its tasks by the binding's name in a tag, which limits the name's characters.
fn for_a_job(sources: &Sources<'_>, job: &JobConfig, name: &str) -> Result<(), InvalidSetting> {
    let entry = sources.entry;
    let service_settings = [
        ("min", entry.min.is_some()),
        ("backlog_per_task", entry.backlog_per_task.is_some()),
        ("latency_goal", entry.latency_goal.is_some()),
        ("message_time", entry.message_time.is_some()),
        ("concurrency", entry.concurrency.is_some()),
        ("activation", entry.activation.is_some()),
        ("scale_in_cooldown", entry.scale_in_cooldown.is_some()),
        ("empty_polls", entry.empty_polls.is_some()),
        ("in_flight_wake_polls", entry.in_flight_wake_polls.is_some()),
        ("tolerance", entry.tolerance.is_some()),
        ("metrics_urls", entry.metrics_urls.is_some()),
        ("metrics_port", entry.metrics_port.is_some()),
    ];
    if let Some((setting, _)) = service_settings.into_iter().find(|(_, given)| *given) {
        return Err(InvalidSetting::new(
            sources.setting(setting),
            "does not apply to a job binding: its tasks are started for the backlog \
             (messages_per_task, max, max_step) and exit by themselves",
        ));
    }
    let tag_safe = |c: char| c.is_alphanumeric() || c == ' ' || "_.:/=+-@".contains(c);
    if matches!(job.runner, JobRunner::Ecs(_))
        && (name.chars().count() > 256 || !name.chars().all(tag_safe))
    {
        return Err(InvalidSetting::new(
            sources.setting("name"),
            format!(
                "{name:?} cannot tag ECS tasks: up to 256 letters, digits, spaces and _ . : / = + - @"
            ),
        ));
    }
    Ok(())
}

/// The fewest and the most tasks: `max` at least 1 and at least `min`.
fn bounds(sources: &Sources<'_>) -> Result<(u32, u32), InvalidSetting> {
    let base = Policy::default();
    let min = layer!(sources, min).value.unwrap_or(base.min);
    let max_layer = layer!(sources, max);
    let max = max_layer.value.unwrap_or(base.max);
    if max == 0 {
        return Err(InvalidSetting::new(max_layer.name(), "must be at least 1"));
    }
    if min > max {
        return Err(InvalidSetting::new(
            max_layer.name(),
            format!("must be at least min ({min}), is {max}"),
        ));
    }
    Ok((min, max))
}

/// How many messages a task should have: a fixed `backlog_per_task`, or a
/// `latency_goal` with the `message_time` and `concurrency` behind it. A binding's own
/// choice of kind wins over the other kind from the flags or the defaults.
fn sizing(sources: &Sources<'_>) -> Result<BacklogTarget, InvalidSetting> {
    let (entry, flags, defaults) = (sources.entry, sources.flags, sources.defaults);
    let backlog = layer!(sources, backlog_per_task);
    let latency_goal = duration!(sources, latency_goal);
    let message_time = duration!(sources, message_time);
    let concurrency = layer!(sources, concurrency);
    let both = |from: &str| {
        InvalidSetting::new(
            from.to_owned(),
            "give backlog_per_task or latency_goal, not both",
        )
    };
    if entry.latency_goal.is_some() && entry.backlog_per_task.is_some() {
        return Err(both(&sources.setting("latency_goal")));
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
    match (by_latency, latency_goal, backlog.value) {
        (true, Some(goal), _) => {
            let message_time = message_time.ok_or_else(|| {
                InvalidSetting::new(
                    sources.setting("message_time"),
                    "latency_goal needs the time one message takes",
                )
            })?;
            if goal.is_zero() {
                return Err(InvalidSetting::new(
                    sources.setting("latency_goal"),
                    "must be more than 0",
                ));
            }
            if message_time.is_zero() {
                return Err(InvalidSetting::new(
                    sources.setting("message_time"),
                    "must be more than 0",
                ));
            }
            let concurrency_value = concurrency.value.unwrap_or(1);
            if concurrency_value == 0 {
                return Err(InvalidSetting::new(
                    concurrency.name(),
                    "must be at least 1",
                ));
            }
            Ok(BacklogTarget::Latency {
                goal,
                message_time,
                concurrency: concurrency_value,
            })
        }
        (_, _, Some(per_task)) => {
            if !(per_task.is_finite() && per_task > 0.0) {
                return Err(InvalidSetting::new(
                    backlog.name(),
                    format!("must be a number above 0, is {per_task}"),
                ));
            }
            Ok(BacklogTarget::PerTask(per_task))
        }
        _ => Ok(Policy::default().target),
    }
}

/// How often to read the queue and the target: at least [`MIN_POLL_INTERVAL`].
fn poll_interval(sources: &Sources<'_>) -> Result<Duration, InvalidSetting> {
    let poll_interval = duration!(sources, poll_interval).unwrap_or(DEFAULT_POLL_INTERVAL);
    if poll_interval < MIN_POLL_INTERVAL {
        return Err(InvalidSetting::new(
            sources.setting("poll_interval"),
            format!("must be at least {MIN_POLL_INTERVAL:?}, is {poll_interval:?}"),
        ));
    }
    Ok(poll_interval)
}

/// The pace of the policy: when to wake, when and how far to scale in; the bounds and
/// the sizing are the built-in defaults here, for [`binding`] to fill in.
fn pace(sources: &Sources<'_>) -> Result<Policy, InvalidSetting> {
    let base = Policy::default();
    let scale_in_cooldown = duration!(sources, scale_in_cooldown).unwrap_or(base.scale_in_cooldown);
    let empty_polls = layer!(sources, empty_polls);
    let empty_polls_value = empty_polls.value.unwrap_or(base.empty_polls);
    if empty_polls_value == 0 {
        return Err(InvalidSetting::new(
            empty_polls.name(),
            "must be at least 1",
        ));
    }
    let max_step = layer!(sources, max_step);
    if max_step.value == Some(0) {
        return Err(InvalidSetting::new(max_step.name(), "must be at least 1"));
    }
    let wake_polls = layer!(sources, in_flight_wake_polls);
    let wake_polls_value = wake_polls.value.unwrap_or(base.in_flight_wake_polls);
    if wake_polls_value == 0 {
        return Err(InvalidSetting::new(wake_polls.name(), "must be at least 1"));
    }
    let tolerance = layer!(sources, tolerance);
    let tolerance_value = tolerance.value.unwrap_or(base.tolerance);
    if !(0.0..1.0).contains(&tolerance_value) {
        return Err(InvalidSetting::new(
            tolerance.name(),
            format!("must be at least 0 and below 1, is {tolerance_value}"),
        ));
    }
    Ok(Policy {
        activation: layer!(sources, activation).value.unwrap_or(base.activation),
        scale_in_cooldown,
        empty_polls: empty_polls_value,
        max_step: max_step.value,
        count_delayed: layer!(sources, count_delayed)
            .value
            .unwrap_or(base.count_delayed),
        in_flight_wake_polls: wake_polls_value,
        tolerance: tolerance_value,
        ..base
    })
}

/// Workers' `/metrics` URLs: the entry's list, else the flags', else the defaults'
/// (with where a shared list came from, for [`check_bindings`]); each an `http://` URL.
/// A job binding reads no workers: it takes no shared list (its entry's own is refused).
fn metrics_urls(
    sources: &Sources<'_>,
    target: &TargetConfig,
) -> Result<(Vec<String>, Option<&'static str>), InvalidSetting> {
    let flags = &sources.flags.metrics_urls;
    let (metrics_urls, shared, setting) = match (&sources.entry.metrics_urls, target) {
        (Some(own), _) => (own.clone(), None, sources.setting(METRICS_URLS)),
        (None, TargetConfig::Job(_)) => return Ok((Vec::new(), None)),
        (None, _) if !flags.is_empty() => (
            flags.clone(),
            Some(METRICS_URL_FLAG),
            METRICS_URL_FLAG.to_owned(),
        ),
        (None, _) => match &sources.defaults.metrics_urls {
            Some(urls) => (
                urls.clone(),
                Some(DEFAULT_METRICS_URLS),
                DEFAULT_METRICS_URLS.to_owned(),
            ),
            None => return Ok((Vec::new(), None)),
        },
    };
    for url in &metrics_urls {
        if !url.starts_with("http://") {
            return Err(InvalidSetting::new(
                setting,
                format!("{url:?} is not an http:// URL"),
            ));
        }
    }
    Ok((metrics_urls, shared))
}

/// The port of the workers' `/metrics` on an ECS service's tasks: not 0, for an ECS
/// service only (local workers are read at `metrics_urls`; a job binding reads no
/// workers, and refuses its own entry's), and not with `metrics_urls`.
fn metrics_port(
    sources: &Sources<'_>,
    target: &TargetConfig,
    metrics_urls: &[String],
) -> Result<Option<u16>, InvalidSetting> {
    let port = layer!(sources, metrics_port);
    let Some(value) = port.value else {
        return Ok(None);
    };
    if matches!(target, TargetConfig::Job(_)) {
        return Ok(None);
    }
    if value == 0 {
        return Err(InvalidSetting::new(
            port.name(),
            "must be a port, 1 to 65535",
        ));
    }
    if matches!(target, TargetConfig::Local(_)) {
        return Err(InvalidSetting::new(
            port.name(),
            "finds the tasks of an ECS service; give local workers' metrics_urls instead",
        ));
    }
    if !metrics_urls.is_empty() {
        return Err(InvalidSetting::new(
            port.name(),
            "give metrics_urls or metrics_port, not both",
        ));
    }
    Ok(Some(value))
}
