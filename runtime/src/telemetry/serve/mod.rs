//! The one HTTP endpoint of a worker binary: `/metrics`, `/health` and `/ready`.
//!
//! spotq itself only emits through the [`metrics`] facade. A binary that wants the
//! figures scraped calls [`serve`]: it installs a Prometheus recorder as the process's
//! global recorder and answers, on one address:
//!
//! - `GET /metrics`: 200 with the Prometheus text exposition format.
//! - `GET /health`: 200 `ok` while [`Health::is_live`], else 503. Point the ECS container
//!   health check here: a task whose pollers are wedged gets replaced.
//! - `GET /ready`: 200 while [`Health::is_ready`], else 503, as it is from the moment
//!   shutdown begins.
//! - Another method on those paths: 405. `HEAD` is answered as `GET`, without the body.
//! - Any other path: 404.
//!
//! The server keeps answering while the worker shuts down (with `/ready` at 503), until
//! the binary calls [`Server::shutdown`] or drops the [`Server`]: stop it after the
//! worker's run has returned.
//!
//! ```no_run
//! use spotq::telemetry::health::Health;
//! use spotq::telemetry::serve::serve;
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let health = Health::default();
//! let server = serve("0.0.0.0:9090".parse()?, health.clone()).await?;
//! // Hand `health` to the worker (`WorkerBuilder::health`) and run it to completion.
//! server.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! A worker binary reads the address from the environment with [`addr_from_env`]:
//! `SPOTQ_HTTP_ADDR`, default `0.0.0.0:8080`, so a task definition can move it without
//! a rebuild (`examples/basic-sqs-worker.rs` does this).
//!
//! The container health check is then `["CMD-SHELL", "curl -f
//! http://localhost:9090/health || exit 1"]` (the image needs `curl`). A task that is
//! draining stays healthy.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{MissedTickBehavior, interval, sleep, timeout};
use tokio_util::sync::CancellationToken;

use crate::error::ConfigError;
use crate::telemetry::health::Health;
use crate::telemetry::prometheus::{PrometheusHandle, RecorderError, install_recorder};

/// The content type of the Prometheus text exposition format.
const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The content type of the short answers of the other paths.
const TEXT_CONTENT_TYPE: &str = "text/plain; charset=utf-8";

/// How often the recorder's histograms are drained when nobody scrapes: the exporter's
/// own default. Without it a process that is never scraped keeps every sample.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// How long a client may take to send a request's headers. Health checks and scrapes
/// send theirs at once; this bounds a connection that stalls half-way.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long [`Server::shutdown`] lets requests in flight finish. The answers are tiny,
/// so this only matters for a client that stopped reading.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// How long to wait after a failed `accept` (out of file descriptors, say) before the
/// next, so that a persistent failure does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The environment variable that sets where a worker binary serves `/metrics`,
/// `/health` and `/ready` (read by [`addr_from_env`]).
pub const ADDR_VAR: &str = "SPOTQ_HTTP_ADDR";

/// Where a worker binary serves when [`ADDR_VAR`] is unset: every interface, port 8080
/// (the port of the image's health check and of `deploy/worker-task-definition.json`).
pub const DEFAULT_HTTP_ADDR: &str = "0.0.0.0:8080";

/// The address in `$SPOTQ_HTTP_ADDR` (`IP:PORT`, e.g. `127.0.0.1:9100`, `[::]:8080`;
/// port 0 picks a free one), or [`DEFAULT_HTTP_ADDR`] when it is unset or empty.
///
/// # Errors
///
/// A [`ConfigError`] naming `SPOTQ_HTTP_ADDR` when the value is not an address.
pub fn addr_from_env() -> Result<SocketAddr, ConfigError> {
    parse_addr(std::env::var_os(ADDR_VAR).as_deref())
}

fn parse_addr(value: Option<&std::ffi::OsStr>) -> Result<SocketAddr, ConfigError> {
    let invalid = |value: &dyn std::fmt::Debug| {
        ConfigError::new(
            ADDR_VAR,
            value,
            format!("an IP address and port, e.g. {DEFAULT_HTTP_ADDR} (port 0: any free port)"),
        )
    };
    let text = match value {
        None => DEFAULT_HTTP_ADDR,
        Some(value) => value.to_str().ok_or_else(|| invalid(&value))?.trim(),
    };
    let text = if text.is_empty() {
        DEFAULT_HTTP_ADDR
    } else {
        text
    };
    text.parse().map_err(|_| invalid(&text))
}

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The address could not be bound: in use, or not an address of this host.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// Another metrics recorder is already the process's global recorder. Use
    /// [`serve_with`] and a handle to that recorder instead.
    #[error(
        "cannot serve /metrics from spotq's Prometheus recorder (use `serve_with` with a \
         handle to the recorder installed)"
    )]
    Recorder(#[from] RecorderError),
}

/// The running endpoint. It stops when [`shutdown`](Self::shutdown) is awaited or when
/// it is dropped.
#[derive(Debug)]
#[must_use = "the endpoint stops when the `Server` is dropped"]
pub struct Server {
    local_addr: SocketAddr,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Server {
    /// The address the endpoint listens on: the one asked for, with the port the
    /// operating system picked if it was 0.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting connections, lets the requests in flight finish (for at most
    /// two seconds), closes idle connections, and returns once the endpoint is gone.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            // A panic in the server task has nothing left to clean up; the endpoint is
            // gone either way.
            let _ = task.await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // The task winds down on its own, as `shutdown` does, without being awaited.
        self.stop.cancel();
    }
}

/// Installs the Prometheus recorder (see [`install_recorder`]) and serves `/metrics`,
/// `/health` and `/ready` on `addr` in a spawned task.
///
/// Must be called within a Tokio runtime.
///
/// # Errors
///
/// [`ServeError::Recorder`] if another recorder is installed; [`ServeError::Bind`] if
/// `addr` cannot be bound.
pub async fn serve(addr: SocketAddr, health: Health) -> Result<Server, ServeError> {
    let metrics = install_recorder()?;
    serve_with(addr, health, metrics).await
}

/// Serves `/metrics` (rendered from `metrics`), `/health` and `/ready` on `addr` in a
/// spawned task, without touching the global recorder.
///
/// For a binary that installed its own recorder, and for tests. The task also runs the
/// recorder's upkeep every few seconds, which is harmless if something else does too.
///
/// Must be called within a Tokio runtime.
///
/// # Errors
///
/// [`ServeError::Bind`] if `addr` cannot be bound.
pub async fn serve_with(
    addr: SocketAddr,
    health: Health,
    metrics: PrometheusHandle,
) -> Result<Server, ServeError> {
    let bind_error = |source| ServeError::Bind { addr, source };
    let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
    let local_addr = listener.local_addr().map_err(bind_error)?;
    let stop = CancellationToken::new();
    let endpoints = Arc::new(Endpoints { health, metrics });
    let task = tokio::spawn(accept_loop(listener, endpoints, stop.clone()));
    tracing::debug!(%local_addr, "serving /metrics, /health and /ready");
    Ok(Server {
        local_addr,
        stop,
        task: Some(task),
    })
}

/// What the endpoint answers from.
struct Endpoints {
    health: Health,
    metrics: PrometheusHandle,
}

async fn accept_loop(listener: TcpListener, endpoints: Arc<Endpoints>, stop: CancellationToken) {
    // Connections live in the set so that those still open after the grace period are
    // aborted when it is dropped, rather than outliving the server.
    let mut connections = JoinSet::new();
    let mut upkeep = interval(UPKEEP_INTERVAL);
    upkeep.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(connection(stream, Arc::clone(&endpoints), stop.clone()));
                }
                Err(error) => {
                    tracing::warn!(%error, "the metrics endpoint could not accept a connection");
                    sleep(ACCEPT_BACKOFF).await;
                }
            },
            _ = upkeep.tick() => endpoints.metrics.run_upkeep(),
            // Reap finished connections so the set does not grow with every scrape.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    // Stop listening first: a health check that comes now is refused, not left waiting.
    drop(listener);
    let drained = async { while connections.join_next().await.is_some() {} };
    if timeout(SHUTDOWN_GRACE, drained).await.is_err() {
        tracing::debug!(
            open = connections.len(),
            "closing the connections still open at the end of the grace period"
        );
    }
}

async fn connection(stream: TcpStream, endpoints: Arc<Endpoints>, stop: CancellationToken) {
    let service = service_fn(move |request: Request<Incoming>| {
        std::future::ready(Ok::<_, Infallible>(endpoints.respond(&request)))
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = stop.cancelled() => {
            // Finishes the request in progress, if any, then closes; closes at once if idle.
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        // A client that hangs up or sends garbage is its own problem, not the worker's.
        tracing::debug!(%error, "metrics and health connection ended with an error");
    }
}

impl Endpoints {
    fn respond(&self, request: &Request<Incoming>) -> Response<Full<Bytes>> {
        let path = match request.uri().path() {
            "/metrics" => Path::Metrics,
            "/health" => Path::Health,
            "/ready" => Path::Ready,
            _ => return text(StatusCode::NOT_FOUND, "not found\n"),
        };
        if request.method() != Method::GET && request.method() != Method::HEAD {
            let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return response;
        }
        match path {
            Path::Metrics => {
                let mut response = Response::new(Full::new(Bytes::from(self.metrics.render())));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(METRICS_CONTENT_TYPE),
                );
                response
            }
            Path::Health if self.health.is_live() => text(StatusCode::OK, "ok\n"),
            Path::Health => text(StatusCode::SERVICE_UNAVAILABLE, "not live\n"),
            Path::Ready if self.health.is_ready() => text(StatusCode::OK, "ready\n"),
            Path::Ready => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
        }
    }
}

/// The paths the endpoint answers.
enum Path {
    Metrics,
    Health,
    Ready,
}

/// A short plain-text answer.
fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(TEXT_CONTENT_TYPE),
    );
    response
}

#[cfg(test)]
mod tests;
