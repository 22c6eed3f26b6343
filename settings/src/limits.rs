//! What SQS, ECS and the runtime allow a setting to be.

use std::time::Duration;

/// The most messages one receive may ask for, and the most entries in a batch call.
pub const MAX_BATCH: usize = 10;
/// The longest long poll SQS allows (`WaitTimeSeconds`).
pub const MAX_WAIT: Duration = Duration::from_secs(20);
/// The shortest visibility timeout a worker asks for on receive: 0 would make each
/// message visible again the moment it arrives.
pub const MIN_VISIBILITY: Duration = Duration::from_secs(1);
/// The longest visibility timeout SQS allows, counted from the receive.
pub const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 60 * 60);
/// How far under [`MAX_VISIBILITY`] (counted from the receive) heartbeats and retries
/// stay, so a call in flight never crosses the cap.
pub const CAP_MARGIN: Duration = Duration::from_secs(60);
/// The longest handler timeout: heartbeats stop [`CAP_MARGIN`] short of the 12 h cap, so
/// a handler may not run past that.
pub const MAX_HANDLER_TIMEOUT: Duration = Duration::from_secs(12 * 60 * 60 - 60);
/// The longest ECS `stopTimeout`: the time between SIGTERM and SIGKILL.
pub const MAX_STOP_TIMEOUT: Duration = Duration::from_secs(120);
/// The longest a partial batch waits to fill.
pub const MAX_FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// The longest random delay before a released message is visible again.
pub const MAX_RELEASE_JITTER: Duration = Duration::from_secs(60);
/// The shortest time between two reads of the queue's approximate counts.
pub const MIN_BACKLOG_INTERVAL: Duration = Duration::from_secs(1);
/// The longest time between two reads of the queue's approximate counts.
pub const MAX_BACKLOG_INTERVAL: Duration = Duration::from_secs(60 * 60);
