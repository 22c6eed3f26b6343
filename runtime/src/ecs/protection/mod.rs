//! ECS task scale-in protection, held while handlers run.
//!
//! When an ECS service scales in, or a deployment replaces its tasks, ECS picks tasks to
//! stop and sends them SIGTERM, busy or not. A task with *scale-in protection* is passed
//! over. [`TaskProtection`] asks the ECS agent for protection while handlers run, renews
//! it before it lapses, and drops it once the worker has been idle for a while: a busy
//! task is not picked, an idle one is free to go. Protection does not guard against a
//! Spot interruption; the SIGTERM shutdown is what handles that.
//!
//! The agent serves `$ECS_AGENT_URI/task-protection/v1/state` (plain HTTP) inside every
//! task. It calls ECS with the task role's credentials, so the task needs a task role
//! allowed `ecs:UpdateTaskProtection`, and the task must belong to a service: a standalone
//! task (a batch job started by `RunTask`) gets a `TASK_NOT_VALID` failure. That is no
//! fault: scale-in never stops a standalone task, so the worker's driver notes it once
//! (at info level) and asks no more.
//!
//! ```no_run
//! use spotq::ecs::protection::{ProtectionConfig, TaskProtection};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! // `None` outside ECS, where there is no agent to ask.
//! if let Some(protection) = TaskProtection::from_env(ProtectionConfig::default())? {
//!     protection.set(true).await?;
//!     // … work that scale-in must not interrupt …
//!     protection.set(false).await?;
//! }
//! # Ok(())
//! # }
//! ```

mod driver;
#[cfg(test)]
mod tests;

use std::env::VarError;
use std::time::Duration;

use hyper::{Method, Uri};
use serde_json::{Value, json};

use crate::backoff::Backoff;
use crate::ecs::agent::{ExchangeError, LocalHttp, base_uri_from, endpoint, excerpt};
use crate::error::{BoxError, ConfigError};

pub use driver::ProtectionReport;

/// The environment variable the ECS agent sets in every container of a task.
pub const AGENT_URI_VAR: &str = "ECS_AGENT_URI";

/// The longest protection ECS grants in one call: 2,880 minutes (48 hours).
pub const MAX_EXPIRES_IN: Duration = Duration::from_secs(2880 * 60);

/// The agent's task protection resource, below `$ECS_AGENT_URI`.
const STATE_PATH: &str = "/task-protection/v1/state";

/// How long one call to the agent may take. The agent answers from the task's own host
/// but calls ECS in turn; a few seconds bounds a stuck call without cutting off a slow
/// one, and keeps the last call at shutdown well inside the stop timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// How often the driver looks at the handlers in flight: an atomic load, so cheap.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// Backoff after failed calls, so that a dead or throttled agent is asked at most once
/// every few seconds. Every call the agent gets becomes an ECS API call, throttled per
/// account.
const RETRY: Backoff = Backoff::new(Duration::from_secs(2), Duration::from_secs(30));

/// How a worker holds task scale-in protection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProtectionConfig {
    /// How long each call protects the task: whole minutes, 1 minute to 48 hours.
    /// Default 60 minutes. Calling again restarts the period, which is how the driver
    /// renews it; if the worker dies without dropping protection, ECS drops it after
    /// this long.
    pub expires_in: Duration,
    /// Renew protection when less than this remains. Above 0 and below `expires_in`.
    /// Default 10 minutes.
    pub renew_before: Duration,
    /// Drop protection once no handler has run for this long, at least 1 s. Default
    /// 30 s: long enough that a steady trickle of messages does not flip protection on
    /// and off (each flip is an ECS API call), short enough that an idle task can be
    /// scaled in soon.
    pub idle_release: Duration,
}

impl Default for ProtectionConfig {
    fn default() -> Self {
        Self {
            expires_in: Duration::from_secs(60 * 60),
            renew_before: Duration::from_secs(10 * 60),
            idle_release: Duration::from_secs(30),
        }
    }
}

impl ProtectionConfig {
    /// Checks every setting; the error names the setting and what is allowed.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let whole_minutes =
            self.expires_in.subsec_nanos() == 0 && self.expires_in.as_secs().is_multiple_of(60);
        if !whole_minutes || self.expires_in.is_zero() || self.expires_in > MAX_EXPIRES_IN {
            return Err(ConfigError::new(
                "protection.expires_in",
                self.expires_in,
                "whole minutes, from 1 minute to 2880 minutes (48 h)",
            ));
        }
        if self.renew_before.is_zero() || self.renew_before >= self.expires_in {
            return Err(ConfigError::new(
                "protection.renew_before",
                self.renew_before,
                format!(
                    "above 0 s and below protection.expires_in ({:?})",
                    self.expires_in
                ),
            ));
        }
        if self.idle_release < Duration::from_secs(1) {
            return Err(ConfigError::new(
                "protection.idle_release",
                self.idle_release,
                "at least 1 s",
            ));
        }
        Ok(())
    }

    /// `ExpiresInMinutes` as ECS takes it. Exact for a validated config; rounded up and
    /// clamped otherwise (tests run the driver with sub-minute periods).
    fn expires_in_minutes(&self) -> u64 {
        self.expires_in
            .as_secs()
            .div_ceil(60)
            .clamp(1, MAX_EXPIRES_IN.as_secs() / 60)
    }
}

/// A call to the ECS agent's task protection endpoint that did not succeed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProtectionError {
    /// The agent could not be reached, or the connection broke.
    #[error("could not reach the ECS agent: {message}")]
    Transport {
        /// What went wrong, with its causes.
        message: String,
        /// The underlying error.
        #[source]
        source: BoxError,
    },
    /// The agent did not answer in time.
    #[error("the ECS agent did not answer within {0:?}")]
    TimedOut(Duration),
    /// The agent answered with an HTTP error status and no error object.
    #[error("the ECS agent answered HTTP {status}: {body}")]
    Status {
        /// The HTTP status code.
        status: u16,
        /// The start of the answer's body.
        body: String,
    },
    /// The agent answered with an `error` object: it could not make the ECS call, or ECS
    /// refused it (e.g. `AccessDeniedException` when the task role may not call
    /// `ecs:UpdateTaskProtection`).
    #[error("the ECS agent answered HTTP {status} with error {code}: {message}")]
    Agent {
        /// The HTTP status code.
        status: u16,
        /// The error code, e.g. `AccessDeniedException` or `ServerException`.
        code: String,
        /// What the agent said.
        message: String,
    },
    /// ECS refused to change this task's protection (a `failure` object), e.g.
    /// `TASK_NOT_VALID` for a task that does not belong to a service.
    #[error("ECS refused task protection: {reason}{}", in_parentheses(detail))]
    Failure {
        /// The failure reason, e.g. `TASK_NOT_VALID`.
        reason: String,
        /// More about the failure, where ECS gave it.
        detail: Option<String>,
    },
    /// The agent answered with a success status and a body that is not JSON.
    #[error("the ECS agent answered with a body that is not JSON: {body}")]
    InvalidResponse {
        /// The start of the answer's body.
        body: String,
    },
}

impl ProtectionError {
    /// Whether the same call may succeed later. A task outside a service, or one whose
    /// role may not change its protection, gets the same answer every time.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Failure { .. } => !self.is_standalone_task(),
            Self::Agent { code, .. } => !matches!(
                code.as_str(),
                "AccessDeniedException" | "InvalidParameterException"
            ),
            _ => true,
        }
    }

    /// Whether ECS answered that the task belongs to no service (`TASK_NOT_VALID`): a
    /// standalone task, started by `RunTask`, which scale-in never stops and protection
    /// does not apply to.
    pub fn is_standalone_task(&self) -> bool {
        matches!(self, Self::Failure { reason, .. } if reason == "TASK_NOT_VALID")
    }
}

/// Task scale-in protection through the ECS agent of the task this process runs in.
///
/// [`set`](Self::set) turns protection on or off once; [`run`](Self::run) holds it
/// while handlers run. Cloning is cheap.
#[derive(Clone, Debug)]
pub struct TaskProtection {
    /// `$ECS_AGENT_URI/task-protection/v1/state`.
    endpoint: Uri,
    config: ProtectionConfig,
    client: LocalHttp,
    /// How long one call may take.
    pub(crate) request_timeout: Duration,
    /// How often the driver reads the handlers in flight.
    pub(crate) poll_interval: Duration,
    /// The wait between failed calls.
    pub(crate) retry: Backoff,
}

impl TaskProtection {
    /// Protection through the agent named by `$ECS_AGENT_URI`, or `None` when that is
    /// unset or empty: the process is not in an ECS task (or its agent predates task
    /// protection), and there is nothing to protect.
    ///
    /// Fails when `config` is out of range or `$ECS_AGENT_URI` is not a plain `http://`
    /// URL.
    pub fn from_env(config: ProtectionConfig) -> Result<Option<Self>, ConfigError> {
        agent_uri_from(std::env::var(AGENT_URI_VAR))?
            .map(|uri| Self::new(&uri, config))
            .transpose()
    }

    /// Protection through the agent at `agent_uri` (the value of `$ECS_AGENT_URI`, e.g.
    /// `http://169.254.170.2/api/0123…`).
    ///
    /// Fails when `config` is out of range or `agent_uri` is not a plain `http://` URL.
    pub fn new(agent_uri: &str, config: ProtectionConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Self::unchecked(agent_uri, config)
    }

    /// As [`new`](Self::new) without checking `config`, so tests can renew in
    /// milliseconds rather than minutes.
    pub(crate) fn unchecked(
        agent_uri: &str,
        config: ProtectionConfig,
    ) -> Result<Self, ConfigError> {
        let endpoint = state_endpoint(agent_uri)?;
        Ok(Self {
            endpoint,
            config,
            client: LocalHttp::new(),
            request_timeout: REQUEST_TIMEOUT,
            poll_interval: POLL_INTERVAL,
            retry: RETRY,
        })
    }

    /// The settings.
    pub fn config(&self) -> &ProtectionConfig {
        &self.config
    }

    /// Turns protection on for [`expires_in`](ProtectionConfig::expires_in) (restarting
    /// that period if it is on already), or off.
    ///
    /// An error status, or a success status that carries the agent's `failure` or
    /// `error` object, is an error. A call takes at most a few seconds.
    pub async fn set(&self, enabled: bool) -> Result<(), ProtectionError> {
        let body = if enabled {
            json!({
                "ProtectionEnabled": true,
                "ExpiresInMinutes": self.config.expires_in_minutes(),
            })
        } else {
            // The agent refuses unknown fields; ExpiresInMinutes means nothing here.
            json!({ "ProtectionEnabled": false })
        };
        let (status, body) = self
            .client
            .exchange(
                Method::PUT,
                self.endpoint.clone(),
                Some(body.to_string()),
                self.request_timeout,
            )
            .await
            .map_err(|error| match error {
                ExchangeError::Transport { message, source } => {
                    ProtectionError::Transport { message, source }
                }
                ExchangeError::TimedOut(timeout) => ProtectionError::TimedOut(timeout),
            })?;
        interpret(status, &body)
    }
}

/// `$ECS_AGENT_URI` as read from the environment: `None` when unset or blank.
fn agent_uri_from(value: Result<String, VarError>) -> Result<Option<String>, ConfigError> {
    base_uri_from(AGENT_URI_VAR, value)
}

/// The protection resource below the agent URI.
fn state_endpoint(agent_uri: &str) -> Result<Uri, ConfigError> {
    endpoint(AGENT_URI_VAR, agent_uri, STATE_PATH)
}

/// Reads the agent's answer: an error status, or an `error` or `failure` object in any
/// answer, is an error.
fn interpret(status: u16, body: &[u8]) -> Result<(), ProtectionError> {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    let object = |key: &str| {
        json.as_ref()
            .and_then(|json| json.get(key))
            .filter(|value| value.is_object())
    };
    if let Some(error) = object("error") {
        return Err(ProtectionError::Agent {
            status,
            code: text(error, "Code").unwrap_or_else(|| "(no code)".to_owned()),
            message: text(error, "Message").unwrap_or_else(|| error.to_string()),
        });
    }
    if let Some(failure) = object("failure") {
        return Err(ProtectionError::Failure {
            reason: text(failure, "Reason").unwrap_or_else(|| failure.to_string()),
            detail: text(failure, "Detail"),
        });
    }
    if !(200..300).contains(&status) {
        return Err(ProtectionError::Status {
            status,
            body: excerpt(body),
        });
    }
    if json.is_none() && !body.trim_ascii().is_empty() {
        return Err(ProtectionError::InvalidResponse {
            body: excerpt(body),
        });
    }
    Ok(())
}

/// ` (detail)`, or nothing.
fn in_parentheses(detail: &Option<String>) -> String {
    detail
        .as_deref()
        .map(|detail| format!(" ({detail})"))
        .unwrap_or_default()
}

/// A string field of a JSON object, if present and not empty.
fn text(object: &Value, key: &str) -> Option<String> {
    object
        .get(key)
        .and_then(Value::as_str)
        .filter(|text| !text.is_empty())
        .map(str::to_owned)
}
