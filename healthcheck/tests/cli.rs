//! The `spotq-healthcheck` binary as a container runtime runs it: its exit code is the
//! verdict (0 healthy, 1 unhealthy; never Docker's reserved 2).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Command, Output};
use std::thread;

/// A loopback server that answers one request with `answer`; its port.
fn answering(answer: &'static [u8]) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
            line.clear();
        }
        let _ = reader.into_inner().write_all(answer);
    });
    port
}

fn healthcheck(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_spotq-healthcheck"))
        .args(args)
        .output()
        .expect("run spotq-healthcheck")
}

#[test]
fn healthy_exits_0() {
    let port = answering(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
    let url = format!("http://127.0.0.1:{port}/health");
    let output = healthcheck(&[&url]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("healthy: HTTP 200"), "{stdout}");
}

#[test]
fn unhealthy_unreachable_and_misused_exit_1() {
    let port = answering(b"HTTP/1.1 503 Service Unavailable\r\n\r\nstuck");
    let unhealthy = format!("http://127.0.0.1:{port}/health");
    let closed = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        format!(
            "http://127.0.0.1:{}/health",
            listener.local_addr().expect("address").port()
        )
    };
    for (args, says) in [
        (vec![unhealthy.as_str()], "unhealthy: HTTP 503"),
        (vec![closed.as_str()], "could not reach"),
        (vec!["https://127.0.0.1:8080/health"], "plain HTTP"),
        (vec!["--timeout", "-1"], "--timeout"),
    ] {
        let output = healthcheck(&args);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}
