use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusBuilder;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, timeout};

use super::*;

/// How long a test waits for an answer that should come at once.
const PATIENCE: Duration = Duration::from_secs(5);

fn any_port() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
}

/// An endpoint with its own recorder, so tests do not depend on the global one.
async fn start(health: Health) -> Server {
    let handle = PrometheusBuilder::new().build_recorder().handle();
    serve_with(any_port(), health, handle).await.expect("serve")
}

/// One answer, read off a raw HTTP/1.1 connection.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }
}

/// Sends one request on a fresh connection that the server closes after answering.
async fn request(addr: SocketAddr, method: &str, path: &str) -> Answer {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request =
        format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut raw = String::new();
    timeout(PATIENCE, stream.read_to_string(&mut raw))
        .await
        .expect("an answer in time")
        .expect("read");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a head");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    Answer {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

async fn get(addr: SocketAddr, path: &str) -> Answer {
    request(addr, "GET", path).await
}

#[tokio::test]
async fn metrics_shows_a_counter_emitted_through_the_facade() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let server = serve_with(any_port(), Health::default(), recorder.handle())
        .await
        .expect("serve");
    metrics::with_local_recorder(&recorder, || {
        metrics::counter!("spotq_test_received_total", "queue" => "orders").increment(3);
    });

    let answer = get(server.local_addr(), "/metrics").await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert!(
        answer
            .body
            .lines()
            .any(|line| line == r#"spotq_test_received_total{queue="orders"} 3"#),
        "{}",
        answer.body
    );
    server.shutdown().await;
}

#[tokio::test]
async fn serve_installs_the_global_recorder_once_and_reuses_it() {
    let first = serve(any_port(), Health::default()).await.expect("first");
    // Emitted with no local recorder: only the global one can see it.
    metrics::counter!("spotq_test_global_total").increment(2);
    let second = serve(any_port(), Health::default()).await.expect("second");
    assert_ne!(first.local_addr(), second.local_addr());
    for server in [&first, &second] {
        let answer = get(server.local_addr(), "/metrics").await;
        assert_eq!(answer.status, 200);
        assert!(
            answer
                .body
                .lines()
                .any(|line| line == "spotq_test_global_total 2"),
            "{}",
            answer.body
        );
    }
    first.shutdown().await;
    second.shutdown().await;
}

#[tokio::test]
async fn health_is_503_once_a_poller_is_stuck_past_the_limit() {
    let health = Health::new(Duration::from_millis(200));
    let server = start(health.clone()).await;
    let addr = server.local_addr();

    let answer = get(addr, "/health").await;
    assert_eq!((answer.status, answer.body.as_str()), (200, "ok\n"));
    assert_eq!(
        answer.header("content-type"),
        Some("text/plain; charset=utf-8")
    );

    let worker = health.attach();
    let poller = worker.poller();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let answer = get(addr, "/health").await;
    assert_eq!((answer.status, answer.body.as_str()), (503, "not live\n"));

    poller.waiting();
    assert_eq!(
        get(addr, "/health").await.status,
        200,
        "waiting on handlers"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn ready_only_while_every_worker_receives_and_health_answers_during_shutdown() {
    let health = Health::default();
    let server = start(health.clone()).await;
    let addr = server.local_addr();

    let answer = get(addr, "/ready").await;
    assert_eq!((answer.status, answer.body.as_str()), (503, "not ready\n"));
    let worker = health.attach();
    assert_eq!(
        get(addr, "/ready").await.status,
        503,
        "attached, not receiving"
    );
    worker.receiving();
    let answer = get(addr, "/ready").await;
    assert_eq!((answer.status, answer.body.as_str()), (200, "ready\n"));

    worker.stopping();
    assert_eq!(get(addr, "/ready").await.status, 503, "shutdown began");
    assert_eq!(
        get(addr, "/health").await.status,
        200,
        "draining is not dead"
    );
    assert_eq!(get(addr, "/metrics").await.status, 200);
    server.shutdown().await;
}

#[tokio::test]
async fn unknown_paths_are_404_other_methods_405_and_head_has_no_body() {
    let server = start(Health::default()).await;
    let addr = server.local_addr();

    assert_eq!(get(addr, "/nope").await.status, 404);
    assert_eq!(get(addr, "/").await.status, 404);
    assert_eq!(request(addr, "POST", "/nope").await.status, 404);
    assert_eq!(
        get(addr, "/health?verbose=1").await.status,
        200,
        "queries are ignored"
    );

    for path in ["/metrics", "/health", "/ready"] {
        let answer = request(addr, "POST", path).await;
        assert_eq!(answer.status, 405, "{path}");
        assert_eq!(answer.header("allow"), Some("GET, HEAD"), "{path}");
    }
    let answer = request(addr, "DELETE", "/health").await;
    assert_eq!(answer.status, 405);

    let answer = request(addr, "HEAD", "/health").await;
    assert_eq!((answer.status, answer.body.as_str()), (200, ""));
    server.shutdown().await;
}

#[tokio::test]
async fn a_port_in_use_is_a_bind_error() {
    let taken = TcpListener::bind(any_port()).await.expect("bind");
    let addr = taken.local_addr().expect("addr");
    let handle = PrometheusBuilder::new().build_recorder().handle();
    match serve_with(addr, Health::default(), handle).await {
        Err(ServeError::Bind { addr: reported, .. }) => assert_eq!(reported, addr),
        other => panic!("expected a bind error, got {other:?}"),
    }
}

/// Reads until the server closes the connection; true if it did within `PATIENCE`.
async fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut rest = Vec::new();
    timeout(PATIENCE, stream.read_to_end(&mut rest))
        .await
        .is_ok()
}

#[tokio::test]
async fn shutdown_closes_idle_connections_at_once_and_stops_listening() {
    let server = start(Health::default()).await;
    let addr = server.local_addr();

    // A keep-alive connection that has had its answer, as a scraper leaves it.
    let mut kept = TcpStream::connect(addr).await.expect("connect");
    kept.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("send");
    let mut answer = Vec::new();
    while !answer.ends_with(b"ok\n") {
        let mut chunk = [0; 256];
        let read = timeout(PATIENCE, kept.read(&mut chunk))
            .await
            .expect("an answer in time")
            .expect("read");
        assert_ne!(read, 0, "closed before answering");
        answer.extend_from_slice(&chunk[..read]);
    }
    // A connection that never sends anything.
    let mut silent = TcpStream::connect(addr).await.expect("connect");
    // Let the server accept both before it is told to stop.
    assert_eq!(get(addr, "/health").await.status, 200);

    let started = Instant::now();
    server.shutdown().await;
    assert!(
        started.elapsed() < SHUTDOWN_GRACE,
        "idle connections are closed, not waited for: {:?}",
        started.elapsed()
    );
    assert!(closed_by_server(&mut kept).await);
    assert!(closed_by_server(&mut silent).await);
    assert!(TcpStream::connect(addr).await.is_err(), "still listening");
}

#[tokio::test]
async fn dropping_the_server_stops_it() {
    let server = start(Health::default()).await;
    let addr = server.local_addr();
    assert_eq!(get(addr, "/health").await.status, 200);
    drop(server);
    let deadline = Instant::now() + PATIENCE;
    while TcpStream::connect(addr).await.is_ok() {
        assert!(Instant::now() < deadline, "still listening after the drop");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[test]
fn the_address_comes_from_spotq_http_addr_or_defaults_to_port_8080() {
    use std::ffi::OsStr;
    let parsed = |value: Option<&str>| parse_addr(value.map(OsStr::new));
    assert_eq!(
        parsed(None),
        Ok(DEFAULT_HTTP_ADDR.parse().expect("default"))
    );
    assert_eq!(parsed(Some("  ")), parsed(None), "empty: the default");
    assert_eq!(
        parsed(Some("127.0.0.1:9100")),
        Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, 9100)))
    );
    assert_eq!(
        parsed(Some("[::1]:0")).map(|addr| addr.port()),
        Ok(0),
        "IPv6, any free port"
    );
    for bad in ["8080", "localhost:8080", "0.0.0.0:99999", "0.0.0.0"] {
        let error = parsed(Some(bad)).expect_err(bad);
        assert_eq!(error.setting, ADDR_VAR);
        let text = error.to_string();
        assert!(
            text.contains("SPOTQ_HTTP_ADDR") && text.contains(bad),
            "{text}"
        );
    }
}
