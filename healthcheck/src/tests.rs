use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::thread::{self, JoinHandle};

use super::*;

/// A server on an ephemeral loopback port that accepts one connection, reads the request
/// head, answers `answer` (nothing when `None`: it then waits for the client to hang up)
/// and returns the head it read.
fn server(answer: Option<&'static [u8]>) -> (u16, JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    let handle = thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        let mut reader = BufReader::new(stream);
        let mut head = String::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                break;
            }
            head.push_str(&line);
        }
        let mut stream = reader.into_inner();
        match answer {
            Some(answer) => {
                let _ = stream.write_all(answer);
            }
            // Until the client gives up and closes.
            None => while stream.read(&mut [0; 64]).unwrap_or(0) > 0 {},
        }
        head
    });
    (port, handle)
}

fn probe(port: u16, path: &str) -> Probe {
    Probe::parse(&format!("http://127.0.0.1:{port}{path}")).expect("valid URL")
}

#[test]
fn urls_give_host_port_and_path() {
    let parsed = |url: &str| {
        let probe = Probe::parse(url).expect(url);
        (
            probe.host().to_owned(),
            probe.port(),
            probe.path().to_owned(),
        )
    };
    let owned = |host: &str, port, path: &str| (host.to_owned(), port, path.to_owned());
    assert_eq!(
        parsed("http://127.0.0.1:8080/health"),
        owned("127.0.0.1", 8080, "/health")
    );
    assert_eq!(parsed("http://localhost"), owned("localhost", 80, "/"));
    assert_eq!(
        parsed("http://[::1]:9090/ready?x=1"),
        owned("::1", 9090, "/ready?x=1")
    );
    assert_eq!(parsed("http://[::1]/health"), owned("::1", 80, "/health"));
    assert_eq!(parsed(DEFAULT_URL), owned("127.0.0.1", 8080, "/health"));
}

#[test]
fn urls_the_probe_cannot_ask_are_refused_with_a_reason() {
    for (url, reason) in [
        ("https://127.0.0.1:8080/health", "plain HTTP"),
        ("127.0.0.1:8080/health", "plain HTTP"),
        ("http://:8080/health", "no host"),
        ("http:///health", "no host"),
        ("http://127.0.0.1:0/health", "port"),
        ("http://127.0.0.1:99999/health", "port"),
        ("http://127.0.0.1:http/health", "port"),
        ("http://[::1/health", "closing `]`"),
        ("http://[::1]x/health", "after the IPv6"),
        ("http://user@127.0.0.1/health", "user information"),
        ("http://127.0.0.1/health#top", "fragment"),
        ("http://127.0.0.1/he alth", "space"),
    ] {
        match Probe::parse(url) {
            Err(ProbeError::InvalidUrl { reason: got, .. }) => {
                assert!(got.contains(reason), "{url}: {got}");
            }
            other => panic!("{url}: expected InvalidUrl, got {other:?}"),
        }
    }
}

#[test]
fn a_200_is_healthy_and_the_request_is_a_plain_get() {
    let (port, server) = server(Some(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"));
    assert_eq!(
        probe(port, "/health").check(DEFAULT_TIMEOUT).expect("ok"),
        200
    );
    let head = server.join().expect("server");
    assert!(head.starts_with("GET /health HTTP/1.1\r\n"), "{head}");
    assert!(
        head.contains(&format!("Host: 127.0.0.1:{port}\r\n")),
        "{head}"
    );
    assert!(head.contains("Connection: close\r\n"), "{head}");
}

#[test]
fn any_2xx_is_healthy_and_anything_else_is_not() {
    let (port, _server) = server(Some(b"HTTP/1.0 204 No Content\r\n\r\n"));
    assert_eq!(probe(port, "/").check(DEFAULT_TIMEOUT).expect("204"), 204);
    for (answer, status) in [
        (&b"HTTP/1.1 503 Service Unavailable\r\n\r\nstuck"[..], 503),
        (b"HTTP/1.1 404 Not Found\r\n\r\n", 404),
        (
            b"HTTP/1.1 301 Moved Permanently\r\nlocation: /\r\n\r\n",
            301,
        ),
    ] {
        let (port, _server) = server(Some(answer));
        assert_eq!(
            probe(port, "/health")
                .status(DEFAULT_TIMEOUT)
                .expect("answered"),
            status
        );
        let (port, _server) = server(Some(answer));
        match probe(port, "/health").check(DEFAULT_TIMEOUT) {
            Err(ProbeError::Unhealthy { status: got }) => assert_eq!(got, status),
            other => panic!("HTTP {status}: expected Unhealthy, got {other:?}"),
        }
    }
}

#[test]
fn an_answer_that_is_not_http_is_not_healthy() {
    for answer in [
        &b"SSH-2.0-OpenSSH_9.2\r\n"[..],
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/2 200\r\n\r\n",
        b"",
        b"HTTP/1.1 200 OK", // closed before the line ended
    ] {
        let (port, _server) = server(Some(answer));
        match probe(port, "/health").check(DEFAULT_TIMEOUT) {
            Err(ProbeError::NotHttp(_)) => {}
            other => panic!("{answer:?}: expected NotHttp, got {other:?}"),
        }
    }
}

#[test]
fn a_silent_endpoint_times_out() {
    let (port, server) = server(None);
    match probe(port, "/health").check(Duration::from_millis(200)) {
        Err(error @ ProbeError::TimedOut) => {
            assert_eq!(error.to_string(), "no answer within the timeout");
        }
        other => panic!("expected TimedOut, got {other:?}"),
    }
    // The probe hung up, so the server's read ends.
    server.join().expect("server");
}

#[test]
fn a_closed_port_is_unreachable() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("address").port()
    };
    match probe(port, "/health").check(DEFAULT_TIMEOUT) {
        Err(error @ ProbeError::Unreachable { .. }) => {
            let text = error.to_string();
            assert!(
                text.starts_with(&format!("could not reach 127.0.0.1:{port}")),
                "{text}"
            );
            assert!(std::error::Error::source(&error).is_some());
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
}
