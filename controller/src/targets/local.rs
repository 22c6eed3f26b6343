//! Worker processes on this machine, for demos and tests: the desired count is the
//! number of child processes running a worker program.
//!
//! Like an ECS service, the target keeps its count: a worker that exits by itself is
//! started again on the next read. A worker scaled in gets SIGTERM (a spotq worker
//! then releases what it holds and drains), and SIGKILL if it has not exited after the
//! stop timeout, as Fargate does. Stops run in the background, so a slow drain does
//! not hold up the next decision.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::sync::Mutex;
use tokio_util::task::TaskTracker;

use super::{Target, TargetError};
use crate::config::LocalConfig;
use crate::decision::ServiceCounts;

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
        }
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
        Command::new(&program)
            .args(self.config.command.iter().skip(1))
            .envs(self.config.env.iter().map(|(key, value)| (key, value)))
            .stdin(std::process::Stdio::null())
            // A controller that dies takes its workers with it rather than leaving
            // orphans nobody scales.
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| TargetError::Spawn { program, source })
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
        if let Err(error) = self.set_desired(0).await {
            tracing::warn!(%error, "could not stop the workers");
        }
        self.stops.close();
        self.stops.wait().await;
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

    #[tokio::test]
    async fn a_worker_that_exits_by_itself_is_replaced() {
        let local = target("exit 3", Duration::from_secs(1));
        local.set_desired(1).await.expect("started");
        let first = local.pids().await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let counts = local.counts().await.expect("counts");
        assert_eq!((counts.desired, counts.pending), (1, 1));
        assert_ne!(local.pids().await, first, "a new process");
        local.shutdown().await;
    }
}
