//! The worker image `scripts/image` builds with buildah, run the way a container runtime
//! runs it: the image's root filesystem, its entrypoint as PID 1 of a fresh PID
//! namespace, its user and environment (plus the task's: queue, credentials, moto's
//! endpoint), on the host's loopback network. The worker inside processes messages from
//! moto, passes the image's own health check, and drains on SIGTERM; a second run of the
//! image finishes the queue, and no message is lost. The controller image, run with the
//! settings of `deploy/controller-task-definition.json`, wakes a moto ECS service from
//! zero and stops on SIGTERM.
//!
//! The tests that run the images are `#[ignore]`d, with the reason, so `scripts/test` on
//! a machine without them does not report them passed: `.ci/run` builds the images
//! (`scripts/image`) and then runs them with `--include-ignored`. Run that way without
//! buildah or without the images, they fail and say to run `scripts/image`.

mod support;

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;
use spotq_healthcheck::{DEFAULT_TIMEOUT, Probe, ProbeError};
use support::process::{Settings, WorkerProcess, signal};
use support::{counts, create_queue, send, unique, until};
use tokio::time::{Instant, sleep};

/// What `scripts/image` tags.
const WORKER_IMAGE: &str = "localhost/spotq-worker:latest";
const CONTROLLER_IMAGE: &str = "localhost/spotq-controller:latest";

/// The bound on the runtime image (decimal megabytes, as image tools print).
const MAX_IMAGE_BYTES: u64 = 25_000_000;

/// The example worker's fixed address for /metrics, /health and /ready.
const WORKER_PORT: u16 = 8080;

/// The health check the images and the task definitions declare, for a port.
fn health_check(port: u16) -> [String; 3] {
    [
        "CMD".to_owned(),
        "/usr/local/bin/spotq-healthcheck".to_owned(),
        format!("http://127.0.0.1:{port}/health"),
    ]
}

/// The controller's `/metrics` and `/health` (`SPOTQ_CONTROLLER_HTTP_ADDR`'s default).
const CONTROLLER_PORT: u16 = 9090;

/// Runs `buildah` with the storage the script uses.
fn buildah(args: &[&str]) -> Output {
    Command::new("buildah")
        .args(["--storage-driver", "vfs"])
        .args(args)
        .output()
        .expect("run buildah")
}

/// Fails, naming the command that prepares it, where buildah is not installed.
fn require_buildah() {
    let installed = Command::new("buildah")
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success());
    assert!(
        installed,
        "buildah is not installed: run scripts/image first (it installs buildah and builds \
         the images)"
    );
}

/// The image's Docker config (`scripts/image` builds in Docker format, which keeps
/// HEALTHCHECK); fails, saying how to build it, when the image is not there.
fn image_config(image: &str) -> Value {
    let output = buildah(&["inspect", "--type", "image", image]);
    assert!(
        output.status.success(),
        "no image {image} in buildah's storage: run scripts/image first ({})",
        String::from_utf8_lossy(&output.stderr).trim()
    );
    let inspected: Value = serde_json::from_slice(&output.stdout).expect("buildah inspect JSON");
    inspected["Docker"]["config"].clone()
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// The runtime settings both images share: a non-root user, SIGTERM, the health probe
/// on the binary's port, and an exec-form entrypoint (no shell: there is none in the
/// image).
fn check_runtime_config(config: &Value, entrypoint: &str, port: u16) {
    assert_eq!(config["User"], "65532:65532", "a non-root user");
    assert_eq!(config["StopSignal"], "SIGTERM");
    assert_eq!(strings(&config["Entrypoint"]), [entrypoint], "exec form");
    assert!(strings(&config["Cmd"]).is_empty(), "{config}");
    assert_eq!(strings(&config["Healthcheck"]["Test"]), health_check(port));
    assert!(
        config["ExposedPorts"].get(format!("{port}/tcp")).is_some(),
        "{}",
        config["ExposedPorts"]
    );
    assert!(
        strings(&config["Env"])
            .contains(&"SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt".to_owned()),
        "{}",
        config["Env"]
    );
}

/// A working container of an image, mounted: its root filesystem. Removed on drop.
struct Container {
    name: String,
    root: PathBuf,
}

impl Container {
    fn of(image: &str) -> Self {
        let name = unique("spotq-image-test");
        let created = buildah(&["from", "--pull-never", "--name", &name, image]);
        assert!(created.status.success(), "buildah from: {created:?}");
        let mounted = buildah(&["mount", &name]);
        assert!(mounted.status.success(), "buildah mount: {mounted:?}");
        let root = PathBuf::from(String::from_utf8_lossy(&mounted.stdout).trim());
        Self { name, root }
    }

    /// Every file in the image, by path, with its size.
    fn files(&self) -> Vec<(String, u64)> {
        fn walk(root: &Path, dir: &Path, files: &mut Vec<(String, u64)>) {
            for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
                let path = entry.path();
                let metadata = entry.metadata().expect("metadata");
                if metadata.is_dir() {
                    walk(root, &path, files);
                } else {
                    let relative = path.strip_prefix(root).expect("below the root");
                    files.push((format!("/{}", relative.display()), metadata.len()));
                }
            }
        }
        let mut files = Vec::new();
        walk(&self.root, &self.root, &mut files);
        files.sort();
        files
    }

    /// `unshare` set up to run `command` the way the image says: chrooted into the
    /// image, as its user, in its working directory, with only its environment (and
    /// the caller's additions); the host's network, so moto on loopback is reachable.
    fn command(&self, config: &Value, pid1: bool) -> Command {
        let user = config["User"].as_str().unwrap_or("0:0");
        let (uid, gid) = user.split_once(':').unwrap_or((user, user));
        let workdir = config["WorkingDir"]
            .as_str()
            .filter(|dir| !dir.is_empty())
            .unwrap_or("/");
        let mut command = Command::new("unshare");
        if pid1 {
            // --kill-child: the worker dies with the unshare process (the test's drop).
            command.args(["--pid", "--fork", "--kill-child"]);
        }
        command
            .arg(format!("--root={}", self.root.display()))
            .arg(format!("--wd={workdir}"))
            .args(["--setuid", uid, "--setgid", gid, "--"])
            .env_clear()
            .envs(
                strings(&config["Env"])
                    .iter()
                    .filter_map(|pair| pair.split_once('=')),
            )
            .stdin(Stdio::null());
        command
    }

    /// The image's HEALTHCHECK command, run in the image as its user: the exit code and
    /// what it printed.
    fn health_check(&self, config: &Value) -> (Option<i32>, String) {
        let test = strings(&config["Healthcheck"]["Test"]);
        assert_eq!(test.first().map(String::as_str), Some("CMD"), "exec form");
        let output = self
            .command(config, false)
            .args(&test[1..])
            .output()
            .expect("run the health check");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.code(), text)
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = buildah(&["umount", &self.name]);
        let _ = buildah(&["rm", &self.name]);
    }
}

/// The image's entrypoint, run as PID 1; its output goes to a file.
struct Task {
    child: Child,
    log: PathBuf,
}

impl Task {
    fn start(container: &Container, config: &Value, env: &[(&str, &str)]) -> Self {
        let log = std::env::temp_dir().join(format!("{}.log", unique("spotq-image-task")));
        let file = std::fs::File::create(&log).expect("log file");
        let child = container
            .command(config, true)
            .args(strings(&config["Entrypoint"]))
            .args(strings(&config["Cmd"]))
            .envs(env.iter().copied())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .spawn()
            .expect("start the image's entrypoint");
        Self { child, log }
    }

    /// The host's pid of the entrypoint (unshare's one child), once it runs.
    async fn entrypoint_pid(&self) -> u32 {
        let pid = self.child.id();
        let children = format!("/proc/{pid}/task/{pid}/children");
        for _ in 0..500 {
            if let Some(child) = std::fs::read_to_string(&children).ok().and_then(|list| {
                list.split_whitespace()
                    .next()
                    .and_then(|child| child.parse().ok())
            }) {
                return child;
            }
            sleep(Duration::from_millis(10)).await;
        }
        panic!("unshare started no child; log: {}", self.output());
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The message ids the handler logged (`handling ID (receive #N)`).
    fn handled(&self) -> BTreeSet<String> {
        self.output()
            .lines()
            .filter_map(|line| line.strip_prefix("handling "))
            .filter_map(|rest| rest.split_whitespace().next())
            .map(str::to_owned)
            .collect()
    }

    /// How many times the handler ran (a message received twice counts twice).
    fn handler_runs(&self) -> u64 {
        let output = self.output();
        output
            .lines()
            .filter(|line| line.starts_with("handling "))
            .count() as u64
    }

    async fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the task") {
                return status;
            }
            assert!(
                start.elapsed() < limit,
                "the task did not exit within {limit:?}; log: {}",
                self.output()
            );
            sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// A count from the `RunReport` the worker logs when it stops (`worker stopped`).
fn run_report(log: &str, field: &str) -> u64 {
    let line = log
        .lines()
        .find(|line| line.contains("worker stopped"))
        .unwrap_or_else(|| panic!("no `worker stopped` line in {log}"));
    let start = line
        .find(&format!(" {field}: "))
        .unwrap_or_else(|| panic!("no {field} in {line}"))
        + field.len()
        + 3;
    line[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap_or_else(|_| panic!("{field} in {line}"))
}

/// `(namespace pid, uid)` of a host process: the last `NSpid` field is its pid in its
/// own PID namespace.
fn pid_and_uid_inside(pid: u32) -> (String, String) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .map(|value| {
                value
                    .split_whitespace()
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    (
        field("NSpid:").last().cloned().unwrap_or_default(),
        field("Uid:").first().cloned().unwrap_or_default(),
    )
}

#[test]
#[ignore = "needs buildah and the images: run scripts/image first"]
fn the_worker_image_is_small_static_and_configured_for_ecs() {
    require_buildah();
    let config = image_config(WORKER_IMAGE);
    check_runtime_config(&config, "/usr/local/bin/worker", WORKER_PORT);

    let container = Container::of(WORKER_IMAGE);
    let files = container.files();
    let paths: Vec<&str> = files.iter().map(|(path, _)| path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/etc/ssl/certs/ca-certificates.crt",
            "/usr/local/bin/spotq-healthcheck",
            "/usr/local/bin/worker",
        ],
        "only the binaries and the CA certificates: no shell, no package manager"
    );
    let size: u64 = files.iter().map(|(_, size)| size).sum();
    eprintln!(
        "worker image: {size} bytes ({:.1} MB) in {} files",
        size as f64 / 1e6,
        files.len()
    );
    assert!(size <= MAX_IMAGE_BYTES, "{size} bytes: {files:?}");
    let certificates =
        std::fs::read_to_string(container.root.join("etc/ssl/certs/ca-certificates.crt"))
            .expect("CA certificates");
    assert!(
        certificates.matches("BEGIN CERTIFICATE").count() >= 100,
        "a full CA bundle for HTTPS to AWS"
    );
}

#[test]
#[ignore = "needs buildah and the images: run scripts/image first"]
fn the_controller_image_is_configured_for_ecs() {
    require_buildah();
    let config = image_config(CONTROLLER_IMAGE);
    check_runtime_config(&config, "/usr/local/bin/spotq-controller", CONTROLLER_PORT);
    let container = Container::of(CONTROLLER_IMAGE);
    let size: u64 = container.files().iter().map(|(_, size)| size).sum();
    eprintln!(
        "controller image: {size} bytes ({:.1} MB)",
        size as f64 / 1e6
    );
    assert!(size <= MAX_IMAGE_BYTES, "{size} bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs buildah and the images: run scripts/image first"]
async fn the_worker_image_processes_messages_and_drains_on_sigterm_as_pid_1() {
    require_buildah();
    let config = image_config(WORKER_IMAGE);
    let container = Container::of(WORKER_IMAGE);
    let endpoint = support::emulator_endpoint();
    let queue = create_queue(&unique("image"), &[]).await;
    let total = 300;
    send(&queue, (0..total).map(|n| format!("message {n}"))).await;

    assert!(
        TcpListener::bind(("0.0.0.0", WORKER_PORT)).is_ok(),
        "port {WORKER_PORT} is taken: the worker in the image listens there"
    );
    let env = [
        ("SPOTQ_QUEUE", queue.queue_url()),
        ("SPOTQ_LOG_FORMAT", "json"),
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
    ];

    // The first task: takes part of the queue, then gets SIGTERM.
    let mut first = Task::start(&container, &config, &env);
    let pid = first.entrypoint_pid().await;
    until(Duration::from_secs(60), || first.handled().len() >= 50).await;
    assert_eq!(
        pid_and_uid_inside(pid),
        ("1".to_owned(), "65532".to_owned()),
        "the entrypoint is PID 1 of its namespace, as the image's user"
    );
    let (code, said) = container.health_check(&config);
    assert_eq!(code, Some(0), "the image's health check: {said}");
    assert!(said.contains("healthy: HTTP 200"), "{said}");

    let signalled = Instant::now();
    signal(pid, "TERM");
    let status = first.wait_exit(Duration::from_secs(120)).await;
    let drained_in = signalled.elapsed();
    let log = first.output();
    assert!(status.success(), "exit status {status}; log: {log}");
    assert!(
        log.lines()
            .any(|line| line.contains("shutting down") && line.contains("SIGTERM")),
        "the worker itself handled SIGTERM as PID 1: {log}"
    );
    let report = |field| run_report(&log, field);
    let (received, deleted, released) = (report("received"), report("deleted"), report("released"));
    assert_eq!(
        received,
        deleted + released,
        "every message the task received was deleted (handled) or released: {log}"
    );
    assert_eq!(
        deleted,
        first.handler_runs(),
        "deleted what its handler finished, nothing else"
    );
    let first_handled = first.handled();
    let (visible, not_visible, _) = counts(&queue).await;
    assert_eq!(
        visible + not_visible + first_handled.len() as u64,
        total as u64,
        "no message lost or deleted unhandled"
    );
    // A receive in flight at the signal is let finish for a moment and what it returns
    // is released unstarted (runtime/src/engine/poller.rs): nothing waits out its
    // visibility timeout.
    assert_eq!(
        not_visible, 0,
        "{not_visible} messages left invisible after the exit; log: {log}"
    );
    eprintln!(
        "first task: handled {} of {total}, released {released}, SIGTERM → exit in \
         {drained_in:?}; {visible} visible again at once, {not_visible} left invisible",
        first_handled.len()
    );

    // The next task finishes the queue, then stops on an idle queue.
    let mut second = Task::start(&container, &config, &env);
    let pid = second.entrypoint_pid().await;
    let start = Instant::now();
    while counts(&queue).await != (0, 0, 0) {
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "the second task did not finish the queue: {:?}; log: {}",
            counts(&queue).await,
            second.output()
        );
        sleep(Duration::from_millis(100)).await;
    }
    eprintln!("second task: emptied the queue in {:?}", start.elapsed());
    signal(pid, "TERM");
    let status = second.wait_exit(Duration::from_secs(120)).await;
    assert!(status.success(), "exit status {status}");
    assert_eq!(counts(&queue).await, (0, 0, 0), "nothing left behind");

    let mut handled = first_handled;
    handled.extend(second.handled());
    assert_eq!(handled.len(), total, "every message handled, none lost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs buildah and the images: run scripts/image first"]
async fn the_controller_image_wakes_a_service_with_the_deployed_settings() {
    require_buildah();
    let config = image_config(CONTROLLER_IMAGE);
    let container = Container::of(CONTROLLER_IMAGE);
    let endpoint = support::emulator_endpoint();
    let ecs = support::ecs::client().await;
    let support::ecs::Service {
        cluster, service, ..
    } = support::ecs::service_at_zero(&ecs, "image-ctl").await;
    let queue = create_queue(&unique("image-ctl"), &[]).await;
    send(&queue, (0..5).map(|n| format!("message {n}"))).await;

    // The task definition's settings, with moto's queue and service for the binding.
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/controller-task-definition.json");
    let task: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("read")).expect("JSON");
    let mut env: Vec<(String, String)> = task["containerDefinitions"][0]["environment"]
        .as_array()
        .expect("environment")
        .iter()
        .map(|pair| {
            let text = |key: &str| pair[key].as_str().expect("a string").to_owned();
            (text("name"), text("value"))
        })
        .collect();
    for (name, value) in env.iter_mut() {
        match name.as_str() {
            "SPOTQ_CONTROLLER_QUEUE" => *value = queue.queue_url().to_owned(),
            "SPOTQ_CONTROLLER_CLUSTER" => value.clone_from(&cluster),
            "SPOTQ_CONTROLLER_SERVICE" => value.clone_from(&service),
            _ => {}
        }
    }
    for (name, value) in [
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
    ] {
        env.push((name.to_owned(), value.to_owned()));
    }
    assert!(
        TcpListener::bind(("0.0.0.0", CONTROLLER_PORT)).is_ok(),
        "port {CONTROLLER_PORT} is taken: the controller in the image listens there"
    );
    let env: Vec<(&str, &str)> = env
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    let mut task = Task::start(&container, &config, &env);
    let pid = task.entrypoint_pid().await;

    let start = Instant::now();
    while support::ecs::desired_count(&ecs, &cluster, &service).await < 1 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the controller did not wake the service; log: {}",
            task.output()
        );
        sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "controller image: service woken {:?} after start",
        start.elapsed()
    );
    assert_eq!(
        pid_and_uid_inside(pid),
        ("1".to_owned(), "65532".to_owned()),
        "the entrypoint is PID 1 of its namespace, as the image's user"
    );
    let (code, said) = container.health_check(&config);
    assert_eq!(code, Some(0), "the image's health check: {said}");

    signal(pid, "TERM");
    let status = task.wait_exit(Duration::from_secs(30)).await;
    assert!(
        status.success(),
        "exit status {status}; log: {}",
        task.output()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_probe_reads_a_real_worker_s_health_endpoint() {
    let queue = create_queue(&unique("probe"), &[]).await;
    let mut worker = WorkerProcess::start(
        &queue,
        &Settings {
            http: true,
            ..Settings::default()
        },
    );
    let addr = worker.http_addr().await;
    let probe = Probe::parse(&format!("http://{addr}/health")).expect("URL");
    assert_eq!(probe.check(DEFAULT_TIMEOUT).expect("live"), 200);
    // /ready turns 200 once the worker runs; the probe follows it.
    let ready = Probe::parse(&format!("http://{addr}/ready")).expect("URL");
    until(Duration::from_secs(30), || {
        ready.check(DEFAULT_TIMEOUT).is_ok()
    })
    .await;
    let missing = Probe::parse(&format!("http://{addr}/healthz")).expect("URL");
    assert!(matches!(
        missing.check(DEFAULT_TIMEOUT),
        Err(ProbeError::Unhealthy { status: 404 })
    ));

    signal(worker.worker_pid(false), "TERM");
    assert!(worker.wait_exit(Duration::from_secs(10)).await.success());
    assert!(matches!(
        probe.check(DEFAULT_TIMEOUT),
        Err(ProbeError::Unreachable { .. })
    ));
}
