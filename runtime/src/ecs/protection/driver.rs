//! The driver: holds protection while handlers run, drops it when idle or stopping.

use tokio::time::{Instant, MissedTickBehavior, interval};
use tokio_util::sync::CancellationToken;

use super::{ProtectionConfig, ProtectionError, TaskProtection};
use crate::backoff::Backoff;

/// What the protection driver did during one run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProtectionReport {
    /// Calls made to the agent, including failed ones.
    pub calls: u64,
    /// Calls that failed. The answer that the task is standalone is not a failure.
    pub failures: u64,
    /// Times protection went on (from off, or from a state a failed call left unknown).
    pub enabled: u64,
    /// Times protection was renewed while on.
    pub renewed: u64,
    /// Times protection went off.
    pub disabled: u64,
    /// Whether the driver stopped calling after an answer that retrying cannot change:
    /// the task is not in a service (`TASK_NOT_VALID`), or its role may not change its
    /// protection (`AccessDeniedException`).
    pub gave_up: bool,
    /// Whether the task is standalone (started by `RunTask`, not by a service): ECS
    /// answered `TASK_NOT_VALID`, protection does not apply, and the driver gave up.
    pub standalone: bool,
}

/// What the driver knows of the task's protection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Held {
    Off,
    /// On until `expires_at` at the earliest: both instants count from before the call
    /// was sent, and the agent counts from when it got it, so the renewal is early, not
    /// late.
    On {
        renew_at: Instant,
        expires_at: Instant,
    },
    /// A call failed or was abandoned: protection may be on, until `until` at the latest.
    Unknown {
        until: Instant,
    },
}

impl TaskProtection {
    /// Holds protection while handlers run, until `stop` fires; returns what it did.
    ///
    /// Every poll interval (200 ms) it reads `in_flight`, the number of handlers running
    /// (it should be cheap: an atomic load), and then:
    ///
    /// - handlers run and protection is off, or on with less than
    ///   [`renew_before`](ProtectionConfig::renew_before) left: turns it on, which also
    ///   restarts its expiry;
    /// - no handler has run for [`idle_release`](ProtectionConfig::idle_release) and
    ///   protection is on: turns it off;
    /// - `stop` fires: turns protection off if it may be on, and returns. A call in
    ///   progress is abandoned, so this takes at most one request timeout (3 s).
    ///
    /// A failed call is logged and counted, never fatal: the next call waits out a
    /// backoff (2 s doubling up to 30 s) so a dead agent is not hammered. After an answer
    /// that retrying cannot change (the task is not in a service, or its role may not
    /// change its protection) it makes no more calls and waits for `stop`. A standalone
    /// task (`RunTask`; ECS answers `TASK_NOT_VALID`) is no failure: protection does not
    /// apply to it, which is logged once, at info level.
    pub async fn run(
        self,
        in_flight: impl Fn() -> usize,
        stop: CancellationToken,
    ) -> ProtectionReport {
        let mut driver = Driver::new(self.config, self.retry);
        let mut ticks = interval(self.poll_interval);
        // After a slow call, carry on at the poll interval rather than catch up.
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            if driver.report.gave_up {
                stop.cancelled().await;
                break;
            }
            tokio::select! {
                biased;
                () = stop.cancelled() => break,
                _ = ticks.tick() => {}
            }
            let Some(enable) = driver.next_call(in_flight() > 0, Instant::now()) else {
                continue;
            };
            let sent = Instant::now();
            let result = tokio::select! {
                biased;
                () = stop.cancelled() => {
                    driver.abandoned(enable, Instant::now());
                    break;
                }
                result = self.set(enable) => result,
            };
            driver.record(enable, sent, Instant::now(), result);
        }
        if driver.may_hold(Instant::now()) {
            let sent = Instant::now();
            let result = self.set(false).await;
            driver.record(false, sent, Instant::now(), result);
        }
        driver.report
    }
}

/// The driver's decisions, apart from the calls and the clock so they can be tested.
#[derive(Debug)]
struct Driver {
    config: ProtectionConfig,
    retry: Backoff,
    held: Held,
    /// The last poll that saw a handler running.
    last_busy: Option<Instant>,
    /// No call before this: the backoff after a failure.
    not_before: Option<Instant>,
    /// Failed calls since the last success, for the backoff.
    failures_in_row: u32,
    report: ProtectionReport,
}

impl Driver {
    fn new(config: ProtectionConfig, retry: Backoff) -> Self {
        Self {
            config,
            retry,
            held: Held::Off,
            last_busy: None,
            not_before: None,
            failures_in_row: 0,
            report: ProtectionReport::default(),
        }
    }

    /// The call to make now, if any: `Some(true)` to turn protection on (or renew it),
    /// `Some(false)` to turn it off.
    fn next_call(&mut self, busy: bool, now: Instant) -> Option<bool> {
        if self.report.gave_up {
            return None;
        }
        if busy {
            self.last_busy = Some(now);
        }
        self.forget_lapsed(now);
        let recently_busy = self
            .last_busy
            .is_some_and(|at| now.saturating_duration_since(at) < self.config.idle_release);
        let wanted = busy || (matches!(self.held, Held::On { .. }) && recently_busy);
        let call = match (wanted, self.held) {
            (true, Held::On { renew_at, .. }) if now < renew_at => None,
            (true, _) => Some(true),
            (false, Held::Off) => None,
            (false, _) => Some(false),
        };
        if call.is_some() && self.not_before.is_some_and(|at| now < at) {
            return None;
        }
        call
    }

    /// Protection that has certainly expired is off, whatever the driver last knew.
    fn forget_lapsed(&mut self, now: Instant) {
        match self.held {
            Held::On { expires_at, .. } if now >= expires_at => {
                tracing::warn!("task scale-in protection lapsed before it could be renewed");
                self.held = Held::Off;
            }
            Held::Unknown { until } if now >= until => self.held = Held::Off,
            _ => {}
        }
    }

    /// Whether protection may be on: what a stopping driver turns off.
    fn may_hold(&mut self, now: Instant) -> bool {
        self.forget_lapsed(now);
        !self.report.gave_up && self.held != Held::Off
    }

    /// A call cut short by `stop`: the agent may still have acted on it.
    fn abandoned(&mut self, enable: bool, now: Instant) {
        self.report.calls += 1;
        if enable {
            self.may_be_on(now);
        }
    }

    /// After a call to enable whose outcome is unknown.
    fn may_be_on(&mut self, now: Instant) {
        let until = now + self.config.expires_in;
        self.held = match self.held {
            // A failed renewal leaves the protection already granted in place.
            on @ Held::On { .. } => on,
            Held::Unknown { until: before } => Held::Unknown {
                until: until.max(before),
            },
            Held::Off => Held::Unknown { until },
        };
    }

    /// Takes in the outcome of a call sent at `sent` and answered at `now`.
    fn record(
        &mut self,
        enable: bool,
        sent: Instant,
        now: Instant,
        result: Result<(), ProtectionError>,
    ) {
        self.report.calls += 1;
        let error = match result {
            Ok(()) => {
                self.failures_in_row = 0;
                self.not_before = None;
                if !enable {
                    self.report.disabled += 1;
                    tracing::info!("task scale-in protection off");
                    self.held = Held::Off;
                    return;
                }
                if matches!(self.held, Held::On { .. }) {
                    self.report.renewed += 1;
                    tracing::debug!(expires_in = ?self.config.expires_in, "task scale-in protection renewed");
                } else {
                    self.report.enabled += 1;
                    tracing::info!(expires_in = ?self.config.expires_in, "task scale-in protection on");
                }
                self.held = Held::On {
                    renew_at: sent
                        + self
                            .config
                            .expires_in
                            .saturating_sub(self.config.renew_before),
                    expires_at: sent + self.config.expires_in,
                };
                return;
            }
            Err(error) => error,
        };
        if error.is_standalone_task() {
            // Not a failure: scale-in never stops a standalone task, so there is nothing
            // to protect it from.
            self.report.standalone = true;
            self.report.gave_up = true;
            self.held = Held::Off;
            tracing::info!(
                "task scale-in protection does not apply: this is a standalone task, not \
                 one of an ECS service; not asking again"
            );
            return;
        }
        self.report.failures += 1;
        if enable {
            self.may_be_on(now);
        } else if let Held::On { expires_at, .. } = self.held {
            self.held = Held::Unknown { until: expires_at };
        }
        if !error.is_retryable() {
            self.report.gave_up = true;
            tracing::warn!(
                %error,
                "task scale-in protection is not available to this task; not asking again \
                 (its task role must allow ecs:UpdateTaskProtection)"
            );
            return;
        }
        self.failures_in_row = self.failures_in_row.saturating_add(1);
        let delay = self.retry.delay(self.failures_in_row);
        self.not_before = Some(now + delay);
        tracing::warn!(%error, enable, retry_in = ?delay, "task scale-in protection call failed");
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn driver() -> Driver {
        let config = ProtectionConfig {
            expires_in: Duration::from_secs(60),
            renew_before: Duration::from_secs(10),
            idle_release: Duration::from_secs(5),
        };
        let retry = Backoff {
            base: Duration::from_secs(2),
            max: Duration::from_secs(8),
            jitter: false,
        };
        Driver::new(config, retry)
    }

    fn failed() -> Result<(), ProtectionError> {
        Err(ProtectionError::Status {
            status: 500,
            body: String::new(),
        })
    }

    #[test]
    fn an_idle_worker_makes_no_calls() {
        let mut driver = driver();
        let start = Instant::now();
        for second in 0..100 {
            assert_eq!(driver.next_call(false, start + SECOND * second), None);
        }
        assert!(!driver.may_hold(start + SECOND * 100));
    }

    #[test]
    fn enables_when_busy_and_renews_only_when_due() {
        let mut driver = driver();
        let t0 = Instant::now();
        assert_eq!(driver.next_call(true, t0), Some(true));
        driver.record(true, t0, t0, Ok(()));
        // Renewal is due 50 s after the call was sent (60 s expiry, 10 s before).
        assert_eq!(driver.next_call(true, t0 + SECOND), None);
        assert_eq!(driver.next_call(true, t0 + SECOND * 49), None);
        assert_eq!(driver.next_call(true, t0 + SECOND * 50), Some(true));
        driver.record(true, t0 + SECOND * 50, t0 + SECOND * 50, Ok(()));
        assert_eq!(driver.next_call(true, t0 + SECOND * 51), None);
        assert_eq!(driver.report.enabled, 1);
        assert_eq!(driver.report.renewed, 1);
    }

    #[test]
    fn disables_only_after_idle_release() {
        let mut driver = driver();
        let t0 = Instant::now();
        assert_eq!(driver.next_call(true, t0), Some(true));
        driver.record(true, t0, t0, Ok(()));
        assert_eq!(driver.next_call(false, t0 + SECOND * 4), None);
        // Busy again before the idle period ran out: stays on.
        assert_eq!(driver.next_call(true, t0 + SECOND * 4), None);
        assert_eq!(driver.next_call(false, t0 + SECOND * 8), None);
        assert_eq!(driver.next_call(false, t0 + SECOND * 9), Some(false));
        driver.record(false, t0 + SECOND * 9, t0 + SECOND * 9, Ok(()));
        assert_eq!(driver.next_call(false, t0 + SECOND * 10), None);
        assert_eq!(driver.report.disabled, 1);
    }

    #[test]
    fn failed_calls_back_off_and_leave_the_state_unknown() {
        let mut driver = driver();
        let t0 = Instant::now();
        assert_eq!(driver.next_call(true, t0), Some(true));
        driver.record(true, t0, t0, failed());
        // 2 s, then 4 s between attempts, however often the driver polls.
        assert_eq!(driver.next_call(true, t0 + SECOND), None);
        assert_eq!(driver.next_call(true, t0 + SECOND * 2), Some(true));
        driver.record(true, t0 + SECOND * 2, t0 + SECOND * 2, failed());
        assert_eq!(driver.next_call(true, t0 + SECOND * 5), None);
        // The handler finished: protection may have been turned on, so turn it off.
        assert_eq!(driver.next_call(false, t0 + SECOND * 6), Some(false));
        driver.record(false, t0 + SECOND * 6, t0 + SECOND * 6, Ok(()));
        assert_eq!(driver.report.failures, 2);
        assert_eq!(driver.report.calls, 3);
        assert!(!driver.may_hold(t0 + SECOND * 7));
    }

    #[test]
    fn an_unknown_state_is_forgotten_once_protection_would_have_expired() {
        let mut driver = driver();
        let t0 = Instant::now();
        driver.record(true, t0, t0, failed());
        assert!(driver.may_hold(t0 + SECOND * 59));
        assert!(!driver.may_hold(t0 + SECOND * 60));
        assert_eq!(driver.next_call(false, t0 + SECOND * 61), None);
    }

    #[test]
    fn a_failed_renewal_keeps_protection_until_it_expires() {
        let mut driver = driver();
        let t0 = Instant::now();
        driver.record(true, t0, t0, Ok(()));
        let due = t0 + SECOND * 50;
        assert_eq!(driver.next_call(true, due), Some(true));
        driver.record(true, due, due, failed());
        assert!(matches!(driver.held, Held::On { .. }));
        assert_eq!(driver.next_call(true, due + SECOND * 2), Some(true));
        driver.record(true, due + SECOND * 2, due + SECOND * 2, Ok(()));
        assert_eq!(driver.report.renewed, 1);
        assert_eq!(driver.report.enabled, 1);
    }

    #[test]
    fn gives_up_on_an_answer_that_will_not_change() {
        let mut driver = driver();
        let t0 = Instant::now();
        let denied = ProtectionError::Agent {
            status: 400,
            code: "AccessDeniedException".to_owned(),
            message: "not allowed".to_owned(),
        };
        driver.record(true, t0, t0, Err(denied));
        assert!(driver.report.gave_up);
        assert!(!driver.report.standalone);
        assert_eq!(driver.report.failures, 1, "a role without the permission");
        assert_eq!(driver.next_call(true, t0 + SECOND * 100), None);
        assert!(!driver.may_hold(t0 + SECOND * 100));
    }

    #[test]
    fn a_standalone_task_is_no_failure() {
        let mut driver = driver();
        let t0 = Instant::now();
        let standalone = ProtectionError::Failure {
            reason: "TASK_NOT_VALID".to_owned(),
            detail: None,
        };
        driver.record(true, t0, t0, Err(standalone));
        assert!(driver.report.gave_up && driver.report.standalone);
        assert_eq!((driver.report.calls, driver.report.failures), (1, 0));
        assert_eq!(driver.next_call(true, t0 + SECOND * 100), None);
        assert!(!driver.may_hold(t0 + SECOND * 100));
    }
}
