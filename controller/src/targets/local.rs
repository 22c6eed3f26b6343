//! Worker processes on this machine, for demos and tests: the desired count is the
//! number of child processes running a worker program.
//!
//! Like an ECS service, the target keeps its count: a worker that exits by itself is
//! started again on the next read. A worker scaled in gets SIGTERM (a spotq worker
//! then releases what it holds and drains), and SIGKILL if it has not exited after the
//! stop timeout, as Fargate does. Stops run in the background, so a slow drain does
//! not hold up the next decision.
//!
//! For a job binding ([`JobTarget`]) the processes are job tasks instead: started for
//! the backlog, never stopped to scale in, and never started again when they exit. Each
//! read reaps the ones that exited, logging their exit status (a failure at warn) and
//! counting them ([`LocalTarget::exits`]). At the controller's stop the ones still
//! running get SIGTERM, as above.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::sync::Mutex;
use tokio_util::task::TaskTracker;

use super::{JobTarget, OnError, Started, Target, TargetError};
use crate::config::LocalConfig;
use crate::decision::ServiceCounts;
use crate::decision::job::JobTasks;

/// Worker processes started and stopped on this machine.
#[derive(Debug)]
pub struct LocalTarget {
    config: LocalConfig,
    workers: Mutex<Vec<Child>>,
    /// Workers sent SIGTERM that have not exited yet.
    stopping: Arc<AtomicU32>,
    /// Workers that had to be killed after the stop timeout.
    killed: Arc<AtomicU32>,
    stops: TaskTracker,
    /// Processes started, ever.
    started: AtomicU32,
    /// Job processes reaped after they exited by themselves.
    exits: std::sync::Mutex<Exits>,
}

/// Job processes that exited by themselves, by how.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Exits {
    /// Exited with status 0.
    pub succeeded: u32,
    /// Exited with another status, or of a signal.
    pub failed: u32,
}

impl LocalTarget {
    /// A target with no worker running.
    pub fn new(config: LocalConfig) -> Self {
        Self {
            config,
            workers: Mutex::new(Vec::new()),
            stopping: Arc::new(AtomicU32::new(0)),
            killed: Arc::new(AtomicU32::new(0)),
            stops: TaskTracker::new(),
            started: AtomicU32::new(0),
            exits: std::sync::Mutex::new(Exits::default()),
        }
    }

    /// Processes started since the target was made (replacements included).
    pub fn started(&self) -> u32 {
        self.started.load(Ordering::Acquire)
    }

    /// Job processes that exited by themselves and were reaped.
    pub fn exits(&self) -> Exits {
        self.exits
            .lock()
            .map_or_else(|poisoned| *poisoned.into_inner(), |exits| *exits)
    }

    /// Workers sent SIGTERM that have not exited yet.
    pub fn stopping(&self) -> u32 {
        self.stopping.load(Ordering::Acquire)
    }

    /// Workers that did not exit within the stop timeout of their SIGTERM and were
    /// killed.
    pub fn killed(&self) -> u32 {
        self.killed.load(Ordering::Acquire)
    }

    /// The process ids of the workers running.
    pub async fn pids(&self) -> Vec<u32> {
        self.workers
            .lock()
            .await
            .iter()
            .filter_map(Child::id)
            .collect()
    }

    fn spawn(&self) -> Result<Child, TargetError> {
        let program = self.config.command.first().cloned().unwrap_or_default();
        let child = Command::new(&program)
            .args(self.config.command.iter().skip(1))
            .envs(self.config.env.iter().map(|(key, value)| (key, value)))
            .stdin(std::process::Stdio::null())
            // A controller that dies takes its workers with it rather than leaving
            // orphans nobody scales.
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| TargetError::Spawn { program, source })?;
        self.started.fetch_add(1, Ordering::AcqRel);
        Ok(child)
    }

    /// Sends every worker SIGTERM and waits for all of them to exit (or be killed after
    /// the stop timeout): what both [`Target::shutdown`] and [`JobTarget::shutdown`] do.
    pub async fn shutdown(&self) {
        if let Err(error) = self.set_desired(0).await {
            tracing::warn!(%error, "could not stop the workers");
        }
        self.stops.close();
        self.stops.wait().await;
    }

    fn stop(&self, child: Child) {
        self.stopping.fetch_add(1, Ordering::AcqRel);
        let stopping = Arc::clone(&self.stopping);
        let killed = Arc::clone(&self.killed);
        let timeout = self.config.stop_timeout;
        self.stops.spawn(async move {
            if !stop_worker(child, timeout).await {
                killed.fetch_add(1, Ordering::AcqRel);
            }
            stopping.fetch_sub(1, Ordering::AcqRel);
        });
    }
}

/// SIGTERM, then SIGKILL after `timeout` if the worker is still there. False if it had
/// to be killed.
async fn stop_worker(mut child: Child, timeout: Duration) -> bool {
    let Some(pid) = child.id().and_then(|pid| i32::try_from(pid).ok()) else {
        // Already exited and reaped.
        return true;
    };
    if let Err(error) = kill(Pid::from_raw(pid), Signal::SIGTERM) {
        tracing::warn!(pid, %error, "could not send SIGTERM to a worker");
    }
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => {
            tracing::info!(pid, %status, "worker stopped");
            true
        }
        Ok(Err(error)) => {
            tracing::warn!(pid, %error, "could not wait for a worker");
            true
        }
        Err(_) => {
            tracing::warn!(
                pid,
                ?timeout,
                "worker still running after the stop timeout: SIGKILL"
            );
            let _ = child.kill().await;
            false
        }
    }
}

#[async_trait]
impl Target for LocalTarget {
    async fn counts(&self) -> Result<ServiceCounts, TargetError> {
        let mut workers = self.workers.lock().await;
        let desired = u32::try_from(workers.len()).unwrap_or(u32::MAX);
        let mut exited = 0;
        for slot in workers.iter_mut() {
            if let Ok(Some(status)) = slot.try_wait() {
                tracing::warn!(%status, "a worker exited by itself; starting another");
                *slot = self.spawn()?;
                exited += 1;
            }
        }
        Ok(ServiceCounts {
            desired,
            running: desired - exited,
            pending: exited,
            deployment_in_progress: false,
        })
    }

    async fn set_desired(&self, desired: u32) -> Result<(), TargetError> {
        let desired = usize::try_from(desired).unwrap_or(usize::MAX);
        let mut workers = self.workers.lock().await;
        while workers.len() < desired {
            let child = self.spawn()?;
            tracing::info!(pid = child.id(), "worker started");
            workers.push(child);
        }
        while workers.len() > desired {
            if let Some(child) = workers.pop() {
                self.stop(child);
            }
        }
        Ok(())
    }

    fn update_operation(&self) -> &'static str {
        "StartStopWorkers"
    }

    async fn shutdown(&self) {
        LocalTarget::shutdown(self).await;
    }
}

#[async_trait]
impl JobTarget for LocalTarget {
    async fn tasks(&self) -> Result<JobTasks, TargetError> {
        let mut workers = self.workers.lock().await;
        let mut tasks = JobTasks::default();
        let mut exits = Exits::default();
        workers.retain_mut(|child| {
            let pid = child.id();
            if let Some(pid) = pid {
                tasks.listed.push(pid.to_string());
            }
            match child.try_wait() {
                Ok(None) => true,
                Ok(Some(status)) if status.success() => {
                    tracing::info!(pid, %status, "job process exited");
                    exits.succeeded += 1;
                    false
                }
                Ok(Some(status)) => {
                    tracing::warn!(pid, %status, "job process failed");
                    exits.failed += 1;
                    false
                }
                Err(error) => {
                    tracing::warn!(pid, %error, "could not read a job process's status");
                    true
                }
            }
        });
        tasks.running = u32::try_from(workers.len()).unwrap_or(u32::MAX);
        tasks.exited = exits.succeeded + exits.failed;
        tasks.failed = exits.failed;
        if let Ok(mut total) = self.exits.lock() {
            total.succeeded += exits.succeeded;
            total.failed += exits.failed;
        }
        Ok(tasks)
    }

    async fn start(&self, count: u32, on_error: &OnError<'_>) -> Started {
        let mut started = Started::default();
        let mut workers = self.workers.lock().await;
        for _ in 0..count {
            match self.spawn() {
                Ok(child) => {
                    tracing::info!(pid = child.id(), "job process started");
                    if let Some(pid) = child.id() {
                        started.tasks.push(pid.to_string());
                    }
                    workers.push(child);
                }
                Err(error) => {
                    on_error(&error);
                    started.error = Some(error);
                    break;
                }
            }
        }
        started
    }

    fn list_operation(&self) -> &'static str {
        "WaitWorkers"
    }

    fn start_operation(&self) -> &'static str {
        "StartWorkers"
    }

    async fn shutdown(&self) {
        LocalTarget::shutdown(self).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(script: &str, stop_timeout: Duration) -> LocalTarget {
        LocalTarget::new(LocalConfig {
            command: vec!["sh".to_owned(), "-c".to_owned(), script.to_owned()],
            env: vec![],
            stop_timeout,
        })
    }

    #[tokio::test]
    async fn starts_and_stops_workers_to_the_desired_count() {
        // `exec` so that SIGTERM reaches sleep, which dies of it.
        let local = target("exec sleep 600", Duration::from_secs(10));
        local.set_desired(3).await.expect("started");
        assert_eq!(local.counts().await.expect("counts").desired, 3);
        assert_eq!(local.pids().await.len(), 3);
        local.set_desired(1).await.expect("stopped two");
        assert_eq!(local.counts().await.expect("counts").desired, 1);
        local.shutdown().await;
        assert_eq!(
            (local.stopping(), local.killed()),
            (0, 0),
            "all exited on SIGTERM"
        );
        assert!(local.pids().await.is_empty());
    }

    #[tokio::test]
    async fn a_worker_that_ignores_sigterm_is_killed_after_the_stop_timeout() {
        let ready = std::env::temp_dir().join(format!("spotq-trap-{}", std::process::id()));
        let script = format!(
            "trap '' TERM; touch {}; while true; do sleep 0.05; done",
            ready.display()
        );
        let local = target(&script, Duration::from_millis(300));
        local.set_desired(1).await.expect("started");
        // The trap is installed before the signal comes.
        while !ready.exists() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        local.set_desired(0).await.expect("stopping");
        assert_eq!(local.stopping(), 1);
        local.shutdown().await;
        assert_eq!((local.stopping(), local.killed()), (0, 1));
        let _ = std::fs::remove_file(ready);
    }

    /// Reads the job processes until none runs; returns every read.
    async fn until_all_exited(local: &LocalTarget) -> Vec<JobTasks> {
        let mut reads = Vec::new();
        for _ in 0..1000 {
            let tasks = JobTarget::tasks(local).await.expect("tasks");
            let running = tasks.running;
            reads.push(tasks);
            if running == 0 {
                return reads;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("job processes still running: {reads:?}");
    }

    #[tokio::test]
    async fn job_processes_that_exit_are_reaped_counted_and_not_restarted() {
        let local = target("sleep 0.2; exit 0", Duration::from_secs(5));
        let errors = std::sync::atomic::AtomicU32::new(0);
        let on_error = |_: &TargetError| {
            errors.fetch_add(1, Ordering::AcqRel);
        };
        let started = JobTarget::start(&local, 2, &on_error).await;
        assert_eq!(started.tasks.len(), 2);
        assert!(!started.fell_short());
        let reads = until_all_exited(&local).await;
        let exited: u32 = reads.iter().map(|read| read.exited).sum();
        assert_eq!(exited, 2, "{reads:?}");
        // The read that reaps a process still lists it, so a start is matched.
        let listed: std::collections::BTreeSet<&String> =
            reads.iter().flat_map(|read| &read.listed).collect();
        assert!(
            started.tasks.iter().all(|pid| listed.contains(pid)),
            "{reads:?}"
        );
        assert_eq!(
            local.exits(),
            Exits {
                succeeded: 2,
                failed: 0
            }
        );
        let after = JobTarget::tasks(&local).await.expect("tasks");
        assert_eq!(
            (after.running, after.exited),
            (0, 0),
            "nothing started again"
        );
        assert_eq!(local.started(), 2);
        assert_eq!(errors.load(Ordering::Acquire), 0);

        let failing = target("exit 3", Duration::from_secs(5));
        JobTarget::start(&failing, 1, &on_error).await;
        let reads = until_all_exited(&failing).await;
        assert_eq!(reads.iter().map(|read| read.failed).sum::<u32>(), 1);
        assert_eq!(
            failing.exits(),
            Exits {
                succeeded: 0,
                failed: 1
            }
        );
    }

    #[tokio::test]
    async fn a_job_process_that_cannot_start_is_an_error_and_the_rest_get_sigterm_at_stop() {
        let missing = LocalTarget::new(LocalConfig {
            command: vec!["/nonexistent/spotq-job".to_owned()],
            env: vec![],
            stop_timeout: Duration::from_secs(1),
        });
        let errors = std::sync::atomic::AtomicU32::new(0);
        let on_error = |_: &TargetError| {
            errors.fetch_add(1, Ordering::AcqRel);
        };
        let started = JobTarget::start(&missing, 3, &on_error).await;
        assert!(started.tasks.is_empty());
        assert!(
            matches!(started.error, Some(TargetError::Spawn { .. })),
            "{started:?}"
        );
        assert_eq!(
            errors.load(Ordering::Acquire),
            1,
            "the start stops at the first"
        );

        let local = target("exec sleep 600", Duration::from_secs(10));
        JobTarget::start(&local, 2, &on_error).await;
        assert_eq!(JobTarget::tasks(&local).await.expect("tasks").running, 2);
        JobTarget::shutdown(&local).await;
        assert!(local.pids().await.is_empty());
        assert_eq!(
            (local.stopping(), local.killed()),
            (0, 0),
            "exited on SIGTERM"
        );
    }

    #[tokio::test]
    async fn a_worker_that_exits_by_itself_is_replaced() {
        let local = target("exit 3", Duration::from_secs(1));
        local.set_desired(1).await.expect("started");
        let first = local.pids().await;
        // Read until a read finds the worker exited, however long its exit takes.
        let waiting = tokio::time::Instant::now();
        let counts = loop {
            let counts = local.counts().await.expect("counts");
            if counts.pending > 0 {
                break counts;
            }
            assert_eq!((counts.desired, counts.running), (1, 1), "{counts:?}");
            assert!(
                waiting.elapsed() < Duration::from_secs(10),
                "the worker never exited: {counts:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert_eq!((counts.desired, counts.pending), (1, 1));
        assert_ne!(local.pids().await, first, "a new process");
        assert_eq!(local.started(), 2, "the first and its replacement");
        local.shutdown().await;
    }
}
