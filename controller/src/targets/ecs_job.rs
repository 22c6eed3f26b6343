//! A job binding's ECS tasks: started with `RunTask`, counted with `ListTasks` and
//! `DescribeTasks`.
//!
//! Each task is started with `startedBy` naming the binding ([`started_by`]) and the tag
//! [`BINDING_TAG`] = the binding's name, on the binding's capacity provider
//! (`FARGATE_SPOT` by default) with its `awsvpc` network configuration. A count is read
//! by `ListTasks` for that `startedBy` (which must be the only filter: its desired
//! status is ECS's default, `RUNNING`, which starting tasks have too), every page of it,
//! then `DescribeTasks` (100 at a time) for each task's `lastStatus`: `PROVISIONING`,
//! `PENDING` and `ACTIVATING` are starting, `RUNNING` is running, the rest are on their
//! way out (ListTasks lists recently stopped tasks for a while).
//!
//! `RunTask` starts at most 10 tasks a call: more are asked for in calls of 10. Each call
//! carries a client token, the same on its retries, so a retried call whose first answer
//! was lost does not start its tasks twice. ECS reports a shortage of Fargate capacity
//! not as an error but in the answer's `failures`, with the reason `Capacity is
//! unavailable at this time. Please try again later or in a different availability
//! zone` (the `arn` of such a failure may name the capacity provider). With
//! `spot_fallback`, the tasks Spot had no capacity for are asked for again on
//! `FARGATE`, logged at warn; the next start tries Spot first again.
//!
//! The controller's role needs `ecs:RunTask` on the task definition (condition
//! `ecs:cluster`), `ecs:TagResource` on the cluster's tasks (for the tag; condition
//! `ecs:CreateAction` = `RunTask`), `iam:PassRole` on the task definition's execution and
//! task roles, `ecs:ListTasks` on the cluster's container instances and
//! `ecs:DescribeTasks` on its tasks: `deploy/controller-task-role-policy.json`.

use async_trait::async_trait;
use aws_sdk_ecs::Client;
use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, CapacityProviderStrategyItem, Failure,
    NetworkConfiguration, Tag,
};
use spotq::backend::BackendError;
use spotq::backend::classify;

use super::{JobTarget, OnError, Started, TargetError};
use crate::config::{EcsJobConfig, FARGATE, FARGATE_SPOT};
use crate::decision::job::JobTasks;
use crate::inputs::CALL_RETRY;

/// The tag key naming a job task's binding; its value is the binding's name.
pub const BINDING_TAG: &str = "spotq:binding";

/// The most tasks one `RunTask` call starts.
pub const RUN_TASK_MAX: u32 = 10;

/// The most tasks one `DescribeTasks` call describes.
const DESCRIBE_TASKS_MAX: usize = 100;

/// The longest `startedBy` ECS takes.
const STARTED_BY_MAX: usize = 36;

/// What every `startedBy` of the controller's begins with.
const STARTED_BY_PREFIX: &str = "spotq/";

/// The `startedBy` of a binding's tasks: `spotq/NAME` when that fits ECS's limits (at
/// most 36 characters, letters, digits, `-`, `_` and `/`). Otherwise the name's first
/// 21 characters, each one ECS does not take replaced by `_`, then `-` and the 32-bit
/// FNV-1a hash of the whole name in hex: the same name always gives the same
/// `startedBy` (across restarts and versions), and names that share a beginning differ.
///
/// ```
/// use spotq_controller::targets::started_by;
///
/// assert_eq!(started_by("nightly-reports"), "spotq/nightly-reports");
/// let long = started_by("thumbnails.for.the.product.catalogue");
/// assert_eq!(long.len(), 36);
/// assert!(long.starts_with("spotq/thumbnails_for_the_pr-"));
/// ```
pub fn started_by(binding: &str) -> String {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '/');
    let plain = format!("{STARTED_BY_PREFIX}{binding}");
    if plain.len() <= STARTED_BY_MAX && binding.chars().all(allowed) {
        return plain;
    }
    // 6 for the prefix, 1 for the `-`, 8 for the hash.
    let kept: String = binding
        .chars()
        .take(STARTED_BY_MAX - STARTED_BY_PREFIX.len() - 9)
        .map(|c| if allowed(c) { c } else { '_' })
        .collect();
    format!(
        "{STARTED_BY_PREFIX}{kept}-{:08x}",
        fnv1a(binding.as_bytes())
    )
}

/// FNV-1a, 32 bits: small, and the same everywhere (unlike `std`'s hasher).
fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5, |hash: u32, byte| {
        (hash ^ u32::from(*byte)).wrapping_mul(0x0100_0193)
    })
}

/// Whether a `RunTask` failure says the capacity provider has no capacity for the
/// task (as opposed to, say, a missing attribute on an EC2 instance).
pub fn is_capacity_failure(failure: &Failure) -> bool {
    let says = |text: Option<&str>| {
        text.is_some_and(|text| {
            let text = text.to_ascii_lowercase();
            text.contains("capacity") && text.contains("unavailable")
        })
    };
    says(failure.reason()) || says(failure.detail())
}

/// A job binding's tasks in an ECS cluster.
#[derive(Clone, Debug)]
pub struct EcsJobTarget {
    client: Client,
    binding: String,
    started_by: String,
    config: EcsJobConfig,
}

/// One `RunTask` answer: the tasks it started, and its failures.
struct RunAnswer {
    tasks: Vec<String>,
    failures: Vec<Failure>,
}

impl EcsJobTarget {
    /// Uses `client` to start and count the tasks of the binding `binding`, without any
    /// call.
    pub fn new(client: Client, binding: &str, config: EcsJobConfig) -> Self {
        Self {
            client,
            started_by: started_by(binding),
            binding: binding.to_owned(),
            config,
        }
    }

    /// The `startedBy` of the binding's tasks.
    pub fn started_by(&self) -> &str {
        &self.started_by
    }

    /// One `RunTask` call for `count` tasks (at most 10) on `provider`, retried with the
    /// same client token.
    async fn run(
        &self,
        count: u32,
        provider: &str,
        on_error: &OnError<'_>,
    ) -> Result<RunAnswer, TargetError> {
        let token = format!("{:032x}", fastrand::u128(..));
        CALL_RETRY
            .run(
                || async { self.run_once(count, provider, &token).await },
                |error: &TargetError| on_error(error),
            )
            .await
    }

    async fn run_once(
        &self,
        count: u32,
        provider: &str,
        token: &str,
    ) -> Result<RunAnswer, TargetError> {
        let unbuildable = |error: aws_sdk_ecs::error::BuildError| {
            TargetError::Api(BackendError::Rejected {
                operation: "RunTask",
                code: "InvalidParameter".to_owned(),
                message: error.to_string(),
            })
        };
        let network = AwsVpcConfiguration::builder()
            .set_subnets(Some(self.config.subnets.clone()))
            .set_security_groups(
                (!self.config.security_groups.is_empty())
                    .then(|| self.config.security_groups.clone()),
            )
            .assign_public_ip(if self.config.assign_public_ip {
                AssignPublicIp::Enabled
            } else {
                AssignPublicIp::Disabled
            })
            .build()
            .map_err(unbuildable)?;
        let strategy = CapacityProviderStrategyItem::builder()
            .capacity_provider(provider)
            .weight(1)
            .build()
            .map_err(unbuildable)?;
        let answer = self
            .client
            .run_task()
            .cluster(&self.config.cluster)
            .task_definition(&self.config.task_definition)
            .count(i32::try_from(count.min(RUN_TASK_MAX)).unwrap_or(1))
            .started_by(&self.started_by)
            .tags(Tag::builder().key(BINDING_TAG).value(&self.binding).build())
            .capacity_provider_strategy(strategy)
            .network_configuration(
                NetworkConfiguration::builder()
                    .awsvpc_configuration(network)
                    .build(),
            )
            .client_token(token)
            .send()
            .await
            .map_err(|error| TargetError::Api(classify("RunTask", error)))?;
        Ok(RunAnswer {
            tasks: answer
                .tasks()
                .iter()
                .filter_map(|task| task.task_arn().map(str::to_owned))
                .collect(),
            failures: answer.failures().to_vec(),
        })
    }

    /// Starts one call's worth (at most 10) on the binding's capacity provider, and
    /// those Spot has no capacity for on `FARGATE` when the binding falls back. Returns
    /// false when the start should not go on (a shortfall without a fallback, or a call
    /// that failed).
    async fn start_batch(&self, count: u32, started: &mut Started, on_error: &OnError<'_>) -> bool {
        let provider = self.config.capacity_provider.as_str();
        let answer = match self.run(count, provider, on_error).await {
            Ok(answer) => answer,
            Err(error) => {
                started.error = Some(error);
                return false;
            }
        };
        let missing = count.saturating_sub(u32::try_from(answer.tasks.len()).unwrap_or(count));
        started.tasks.extend(answer.tasks);
        if missing == 0 {
            return true;
        }
        let no_capacity = answer.failures.iter().any(is_capacity_failure);
        let failures = reasons(&answer.failures);
        if !no_capacity {
            tracing::warn!(
                binding = %self.binding,
                missing,
                %failures,
                "RunTask started fewer job tasks than asked for"
            );
            started.failed += missing;
            return false;
        }
        if !(self.config.spot_fallback && provider == FARGATE_SPOT) {
            started.no_capacity += missing;
            return false;
        }
        tracing::warn!(
            binding = %self.binding,
            tasks = missing,
            %failures,
            "{FARGATE_SPOT} has no capacity: starting the job tasks on {FARGATE} instead"
        );
        let fallback = match self.run(missing, FARGATE, on_error).await {
            Ok(answer) => answer,
            Err(error) => {
                started.error = Some(error);
                return false;
            }
        };
        let fell_back = u32::try_from(fallback.tasks.len()).unwrap_or(missing);
        started.fallbacks += fell_back;
        started.tasks.extend(fallback.tasks);
        let still_missing = missing.saturating_sub(fell_back);
        if still_missing == 0 {
            return true;
        }
        tracing::warn!(
            binding = %self.binding,
            missing = still_missing,
            failures = %reasons(&fallback.failures),
            "{FARGATE} started fewer job tasks than asked for"
        );
        if fallback.failures.iter().any(is_capacity_failure) {
            started.no_capacity += still_missing;
        } else {
            started.failed += still_missing;
        }
        false
    }
}

/// The failures' reasons, for a log line.
fn reasons(failures: &[Failure]) -> String {
    failures
        .iter()
        .map(|failure| {
            format!(
                "{} ({})",
                failure.reason().unwrap_or("no reason"),
                failure.arn().unwrap_or("no arn")
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[async_trait]
impl JobTarget for EcsJobTarget {
    async fn tasks(&self) -> Result<JobTasks, TargetError> {
        let mut listed = Vec::new();
        let mut next_token = None;
        loop {
            let page = self
                .client
                .list_tasks()
                .cluster(&self.config.cluster)
                .started_by(&self.started_by)
                .set_next_token(next_token)
                .send()
                .await
                .map_err(|error| TargetError::Api(classify("ListTasks", error)))?;
            listed.extend(page.task_arns().iter().cloned());
            next_token = page.next_token().map(str::to_owned);
            if next_token.is_none() {
                break;
            }
        }
        let mut tasks = JobTasks {
            listed,
            ..JobTasks::default()
        };
        for chunk in tasks.listed.chunks(DESCRIBE_TASKS_MAX) {
            let described = self
                .client
                .describe_tasks()
                .cluster(&self.config.cluster)
                .set_tasks(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|error| TargetError::Api(classify("DescribeTasks", error)))?;
            for task in described.tasks() {
                if task
                    .desired_status()
                    .is_some_and(|status| status != "RUNNING")
                {
                    continue;
                }
                match task.last_status() {
                    Some("PROVISIONING" | "PENDING" | "ACTIVATING") => tasks.pending += 1,
                    Some("RUNNING") => tasks.running += 1,
                    _ => {}
                }
            }
        }
        Ok(tasks)
    }

    async fn start(&self, count: u32, on_error: &OnError<'_>) -> Started {
        let mut started = Started::default();
        let mut left = count;
        while left > 0 {
            let batch = left.min(RUN_TASK_MAX);
            if !self.start_batch(batch, &mut started, on_error).await {
                break;
            }
            left -= batch;
        }
        started
    }

    fn list_operation(&self) -> &'static str {
        "ListTasks"
    }

    fn start_operation(&self) -> &'static str {
        "RunTask"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn started_by_fits_ecs_and_tells_bindings_apart() {
        assert_eq!(started_by("reports"), "spotq/reports");
        let exactly = "a".repeat(30);
        assert_eq!(started_by(&exactly), format!("spotq/{exactly}"));
        let allowed = |text: &str| {
            text.len() <= 36
                && text
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '/'))
        };
        let names = [
            "a".repeat(31),
            "thumbnails.for.the.product.catalogue".to_owned(),
            "thumbnails.for.the.product.catalogue-2".to_owned(),
            "rapports d'été".to_owned(),
            "a.b".to_owned(),
            "a_b".to_owned(),
        ];
        let mut seen = std::collections::BTreeSet::new();
        for name in &names {
            let value = started_by(name);
            assert!(allowed(&value), "{name:?} → {value:?}");
            assert_eq!(started_by(name), value, "deterministic");
            assert!(seen.insert(value.clone()), "{name:?} collides: {value}");
        }
        // Pinned: the same name gives the same startedBy in every version.
        assert_eq!(
            started_by("thumbnails.for.the.product.catalogue"),
            format!(
                "spotq/thumbnails_for_the_pr-{:08x}",
                fnv1a(b"thumbnails.for.the.product.catalogue")
            )
        );
        assert_eq!(
            fnv1a(b"a"),
            0xe40c_292c,
            "FNV-1a's published value for \"a\""
        );
    }

    #[test]
    fn a_capacity_shortage_is_told_from_other_failures() {
        let failure = |reason: &str| Failure::builder().reason(reason).build();
        assert!(is_capacity_failure(&failure(
            "Capacity is unavailable at this time. Please try again later or in a different \
             availability zone"
        )));
        assert!(is_capacity_failure(
            &Failure::builder()
                .arn("arn:aws:ecs:us-east-1:123456789012:capacity-provider/FARGATE_SPOT")
                .reason("RESOURCE")
                .detail("Capacity is unavailable at this time.")
                .build()
        ));
        assert!(!is_capacity_failure(&failure("RESOURCE:MEMORY")));
        assert!(!is_capacity_failure(&failure("MISSING")));
    }
}
