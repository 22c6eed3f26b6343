//! The settings of a spotq worker, declared once: their limits, their defaults, one
//! check per setting, and the one syntax every part of spotq writes durations in.
//!
//! The `#[spotq::worker]` macro checks its arguments with [`check`] when the crate
//! compiles, `spotq::WorkerConfig::validate` checks the same settings with the same
//! functions when a worker starts, and `spotq-controller` reads its durations with
//! [`duration`].
//!
//! ```
//! use std::time::Duration;
//!
//! use spotq_settings::{check, duration, limits};
//!
//! let wait = duration::parse("30s")?;
//! let invalid = check::wait_time(wait).expect_err("longer than SQS allows");
//! assert_eq!(invalid.setting, "wait_time");
//! assert_eq!(invalid.expected, "at most 20s");
//! assert!(check::wait_time(limits::MAX_WAIT).is_ok());
//! assert_eq!(duration::display(Duration::from_millis(1500)), "1.5s");
//! # Ok::<(), spotq_settings::duration::DurationError>(())
//! ```

pub mod check;
pub mod defaults;
pub mod duration;
pub mod limits;

pub use check::Invalid;
pub use duration::DurationError;
