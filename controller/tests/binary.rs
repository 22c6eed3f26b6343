//! The `spotq-controller` binary as a process: bad settings stop it at start naming the
//! setting; a running controller serves `/health` and `/metrics`, counts failed queue
//! reads, and exits 0 on SIGTERM. No AWS call leaves the machine: the endpoint is a
//! closed port on loopback.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const BINARY: &str = env!("CARGO_BIN_EXE_spotq-controller");

/// The binary with an environment that can reach no AWS endpoint.
fn controller() -> Command {
    // A port nothing listens on: every call fails fast, as a transient error.
    let closed = TcpListener::bind("127.0.0.1:0").expect("bind");
    let endpoint = format!("http://{}", closed.local_addr().expect("address"));
    drop(closed);
    let mut command = Command::new(BINARY);
    command
        .env_clear()
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null());
    command
}

fn run(args: &[&str]) -> Output {
    controller()
        .args(args)
        .output()
        .expect("run the controller")
}

#[test]
fn a_bad_setting_stops_the_controller_at_start_naming_it() {
    let ecs = [
        "--queue",
        "http://127.0.0.1:1/000000000000/jobs",
        "--cluster",
        "c",
        "--service",
        "s",
    ];
    for (extra, setting) in [
        (&["--max", "0"][..], "--max"),
        (&["--min", "4", "--max", "2"][..], "--max"),
        (&["--poll-interval", "never"][..], "--poll-interval"),
        (&["--config", "/nonexistent/spotq.toml"][..], "--config"),
    ] {
        let output = run(&[&ecs[..], extra].concat());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{extra:?} was accepted");
        assert!(stderr.contains(setting), "{extra:?}: {stderr}");
    }
    let output = run(&[]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("no binding"));

    let job = [
        "--queue",
        "http://127.0.0.1:1/000000000000/jobs",
        "--cluster",
        "c",
        "--job-task-definition",
        "t",
    ];
    for (extra, setting) in [
        (
            &["--job-subnets", "subnet-1", "--job-messages-per-task", "0"][..],
            "--job-messages-per-task",
        ),
        (&[][..], "--job-subnets"),
        (
            &["--job-subnets", "subnet-1", "--job-start-grace", "never"][..],
            "--job-start-grace",
        ),
    ] {
        let output = run(&[&job[..], extra].concat());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{extra:?} was accepted");
        assert!(stderr.contains(setting), "{extra:?}: {stderr}");
    }
}

#[test]
fn the_help_names_every_environment_variable() {
    let output = run(&["--help"]);
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for variable in [
        "SPOTQ_CONTROLLER_CONFIG",
        "SPOTQ_CONTROLLER_DRY_RUN",
        "SPOTQ_CONTROLLER_QUEUE",
        "SPOTQ_CONTROLLER_MAX",
        "SPOTQ_CONTROLLER_POLL_INTERVAL",
        "SPOTQ_CONTROLLER_JOB_TASK_DEFINITION",
        "SPOTQ_CONTROLLER_JOB_SPOT_FALLBACK",
    ] {
        assert!(help.contains(variable), "{variable} missing from --help");
    }
}

/// `GET path` on `addr`: the status and the body.
fn get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n")?.1.to_owned();
    Some((status, body))
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_running_controller_serves_health_and_metrics_and_stops_on_sigterm() {
    let free = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = free.local_addr().expect("address").to_string();
    drop(free);
    let child = controller()
        .args([
            "--http-addr",
            &addr,
            "--queue",
            "http://127.0.0.1:1/000000000000/jobs",
            "--cluster",
            "c",
            "--service",
            "s",
            "--poll-interval",
            "100ms",
            "--dry-run",
        ])
        .stderr(Stdio::null())
        .spawn()
        .expect("start the controller");
    let mut running = Running(child);

    let start = Instant::now();
    let metrics = loop {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no failed read counted in /metrics"
        );
        if let Some((200, body)) = get(&addr, "/metrics")
            && body.contains("spotq_controller_errors_total{")
            && body.contains("operation=\"GetQueueAttributes\"")
        {
            break body;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        metrics.contains("spotq_controller_polls_total{binding=\"jobs\"}"),
        "{metrics}"
    );
    assert_eq!(get(&addr, "/health").map(|(status, _)| status), Some(200));
    assert_eq!(
        get(&addr, "/ready").map(|(status, _)| status),
        Some(200),
        "ready while its loops run"
    );

    let pid = i32::try_from(running.0.id()).expect("pid");
    kill(Pid::from_raw(pid), Signal::SIGTERM).expect("SIGTERM");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = running.0.try_wait().expect("wait") {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "still running after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
}
