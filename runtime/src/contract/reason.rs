//! Why a run ended, and the exit code it gives a worker binary.

use std::process::ExitCode;

/// Why a worker's run ended: what began its shutdown. Whatever it was, the shutdown
/// followed the same contract (stop receiving, grace, release, flush); the first cause
/// wins when two come together.
///
/// A fatal error before the worker started (a bad setting, a queue that cannot be read)
/// is no run: [`run`](crate::Worker::run) returns it as an [`Error`](crate::Error).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StopReason {
    /// Run to completion: [`exit_after_empty_receives`](crate::config::WorkerConfig::exit_after_empty_receives)
    /// receives in a row came back empty while the worker held no message.
    Drained,
    /// The worker ran for [`max_run_time`](crate::config::WorkerConfig::max_run_time).
    MaxRunTime,
    /// SIGTERM or SIGINT, through [`Worker::run`](crate::Worker::run), `spotq::run`, or
    /// a [`ShutdownHandle`](crate::shutdown::ShutdownHandle) driven by
    /// [`on_termination_signals`](crate::shutdown::ShutdownHandle::on_termination_signals).
    Signal,
    /// The program asked: the future given to [`run_until`](crate::Worker::run_until)
    /// resolved, or [`ShutdownHandle::begin`](crate::shutdown::ShutdownHandle::begin) or
    /// [`now`](crate::shutdown::ShutdownHandle::now) was called.
    Requested,
    /// A worker running to completion could never finish: the queue refused its
    /// receives (it was deleted, or access to it was revoked) several times in a row.
    Fatal,
}

impl StopReason {
    /// The exit code of a worker binary whose run ended so: failure after a fatal
    /// error, success otherwise (drained, the maximum run time, a signal, a request).
    pub fn exit_code(self) -> ExitCode {
        if self.is_fatal() {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        }
    }

    /// Whether the run ended on a fatal error.
    pub fn is_fatal(self) -> bool {
        self == Self::Fatal
    }
}
