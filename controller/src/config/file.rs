//! The TOML file: `http_addr`, `dry_run`, `[defaults]` and `[[binding]]` entries (with
//! their `[binding.local]` and `[binding.job]` tables), read as they are written;
//! `resolve` checks them.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::InvalidSetting;
use super::duration::{from_seconds, parse_duration};

/// The whole file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileConfig {
    pub(super) http_addr: Option<String>,
    pub(super) dry_run: Option<bool>,
    #[serde(default)]
    pub(super) defaults: FileBinding,
    #[serde(default, rename = "binding")]
    pub(super) bindings: Vec<FileBinding>,
}

/// A `[[binding]]` entry, or the `[defaults]` of them all (where `resolve` refuses a
/// binding's own `queue`, `name`, `service`, `local` and `job`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileBinding {
    pub(super) name: Option<String>,
    pub(super) queue: Option<String>,
    pub(super) cluster: Option<String>,
    pub(super) service: Option<String>,
    pub(super) local: Option<FileLocal>,
    pub(super) job: Option<FileJob>,
    pub(super) min: Option<u32>,
    pub(super) max: Option<u32>,
    pub(super) backlog_per_task: Option<f64>,
    pub(super) latency_goal: Option<DurationValue>,
    pub(super) message_time: Option<DurationValue>,
    pub(super) concurrency: Option<u32>,
    pub(super) activation: Option<u64>,
    pub(super) poll_interval: Option<DurationValue>,
    pub(super) scale_in_cooldown: Option<DurationValue>,
    pub(super) empty_polls: Option<u32>,
    pub(super) max_step: Option<u32>,
    pub(super) count_delayed: Option<bool>,
    pub(super) in_flight_wake_polls: Option<u32>,
    pub(super) tolerance: Option<f64>,
    pub(super) metrics_urls: Option<Vec<String>>,
    pub(super) metrics_port: Option<u16>,
}

/// A binding's `[binding.local]` table: worker processes on this machine.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileLocal {
    pub(super) command: Vec<String>,
    #[serde(default)]
    pub(super) env: BTreeMap<String, String>,
    pub(super) stop_timeout: Option<DurationValue>,
}

/// A binding's `[binding.job]` table: standalone tasks started for the backlog (the
/// command line's `--job-*` flags give the same).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileJob {
    pub(super) task_definition: Option<String>,
    pub(super) subnets: Option<Vec<String>>,
    pub(super) security_groups: Option<Vec<String>>,
    pub(super) assign_public_ip: Option<bool>,
    pub(super) capacity_provider: Option<String>,
    pub(super) spot_fallback: Option<bool>,
    pub(super) messages_per_task: Option<u64>,
    pub(super) start_grace: Option<DurationValue>,
}

impl FileJob {
    /// The ECS settings given: `(name, given)`, for the checks of a local job.
    pub(super) fn ecs_settings(&self) -> [(&'static str, bool); 6] {
        [
            ("task_definition", self.task_definition.is_some()),
            ("subnets", self.subnets.is_some()),
            ("security_groups", self.security_groups.is_some()),
            ("assign_public_ip", self.assign_public_ip.is_some()),
            ("capacity_provider", self.capacity_provider.is_some()),
            ("spot_fallback", self.spot_fallback.is_some()),
        ]
    }
}

/// A duration in the file: a text (`"500ms"`, `"1.5s"`, `"1m30s"`, `"1h"`, or `"30"`
/// for seconds) or a number of seconds (`30`, `0.5`).
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum DurationValue {
    Seconds(f64),
    Text(String),
}

impl FileConfig {
    /// Reads the file's text; an error names the file (`path`, else `--config`) and
    /// the line.
    pub(super) fn parse(text: &str, path: Option<&Path>) -> Result<Self, InvalidSetting> {
        toml::from_str(text).map_err(|error| {
            let setting =
                path.map_or_else(|| "--config".to_owned(), |path| path.display().to_string());
            InvalidSetting::new(
                setting,
                error.message().to_owned() + &span_hint(text, &error),
            )
        })
    }
}

impl DurationValue {
    /// The duration, or an error naming `setting`.
    pub(super) fn to_duration(&self, setting: &str) -> Result<Duration, InvalidSetting> {
        let duration = match self {
            Self::Seconds(seconds) => from_seconds(*seconds),
            Self::Text(text) => parse_duration(text),
        };
        duration.map_err(|message| InvalidSetting::new(setting, message))
    }
}

/// ` (line N)` for a TOML error with a position.
fn span_hint(text: &str, error: &toml::de::Error) -> String {
    error.span().map_or_else(String::new, |span| {
        let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
        format!(" (line {line})")
    })
}
