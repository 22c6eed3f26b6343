//! The settings of a spotq worker, declared once: the [table](for_each_setting) of every
//! setting (its type, default, limit, check, doc and attribute key), their limits, their
//! defaults, one check per setting, and the one syntax every part of spotq writes
//! durations in.
//!
//! The runtime declares `spotq::config::WorkerConfig` and the builder's setters from the
//! table; the `#[spotq::worker]` macro takes its keys from it and checks its arguments
//! with the table's checks when the crate compiles, `WorkerConfig::validate` runs the
//! same checks when a worker starts, and `spotq-controller` reads its durations with
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
pub mod table;

pub use check::{Checked, Invalid, Others};
pub use duration::DurationError;
pub use table::{Attribute, SETTINGS, Setting, Syntax};
