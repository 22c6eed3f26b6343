//! `spotq-fault-proxy`: an HTTP proxy on loopback that sits in front of an SQS
//! emulator (moto, fauxqs) and injects faults into the calls a worker makes (and, in
//! front of moto's ECS, into the calls the controller makes).
//!
//! ```text
//! spotq-fault-proxy --listen 127.0.0.1:0 --upstream http://127.0.0.1:PORT \
//!     [--rule ACTION:FAULT:WHEN]... [--seed N]
//! ```
//!
//! It prints one line, `listening 127.0.0.1:PORT`, on stdout once it accepts
//! connections, and serves until SIGTERM or SIGINT (exit 0). Every request is forwarded
//! as it came (method, path, headers including the signed `Host`, body) unless a rule
//! fires for its action (`X-Amz-Target: AmazonSQS.<Action>`, or the query protocol's
//! `Action=`):
//!
//! - `throttle`: HTTP 400 with SQS's throttling error, `RequestThrottled` (the JSON
//!   protocol's `__type` and `x-amzn-query-error`; XML for the query protocol), which
//!   both the AWS SDK's retry classifier and `spotq::backend::classify` treat as
//!   throttling;
//! - `500`, `503`: a server error (`InternalError`, `ServiceUnavailable`);
//! - `reset`: the connection is closed without a response;
//! - `lost`: forwarded, then the queue's answer is dropped and the connection closed,
//!   as when a response is lost on its way back: the queue did what was asked (a
//!   receive took its messages), and the client sees a connection error;
//! - `hang`: read and never answered nor forwarded, as an endpoint that accepts a
//!   connection and goes silent: the call ends only by the client's own timeout;
//! - `slow=MS`: forwarded after MS ms; a client that gives up meanwhile (closes the
//!   connection) is never forwarded, so a late receive takes no message;
//! - `partial`: forwarded, then some entries (about half, at least one) of a successful
//!   JSON batch answer are reported in `Failed` with the retryable `InternalError`
//!   although the queue applied them. A retried delete of a deleted message is
//!   harmless (SQS and moto accept it), a retried visibility change sets the same
//!   timeout again a moment later, a retried `SendMessageBatch` entry is a duplicate.
//!   An answer without successful entries (or not JSON) is left alone and not counted.
//!
//! - `no_spot` (ECS `RunTask`): a request whose capacity provider strategy names
//!   `FARGATE_SPOT` is answered, unforwarded, with HTTP 200, no task and one `failures`
//!   entry a task asked for, reason `Capacity is unavailable at this time. Please try
//!   again later or in a different availability zone`, as ECS reports a Fargate
//!   capacity shortage; any other `RunTask` (`FARGATE`) is forwarded and not counted;
//! - `unlisted` (ECS `ListTasks`): forwarded, then the answer lists no task, as
//!   `ListTasks` does for a moment after `RunTask`.
//!
//! `throttle`, `500`, `503`, `reset` and `no_spot` are answered without forwarding, and
//! `hang` is never answered: the emulator never sees the request, so a faulted receive takes no message and a
//! faulted `RunTask` starts no task.
//!
//! `WHEN` is `N%` (seeded by `--seed`), `count=N` (the first N matching requests) or
//! `always`; the first rule that fires applies. The control endpoint on the same port
//! is never forwarded:
//!
//! - `GET /__proxy/stats`: `{"requests":{"ReceiveMessage":12,…},
//!   "faults":{"ReceiveMessage":{"throttle":3},…},"connections":2}` (requests counts
//!   every forwarded or faulted request by action, faults what was injected, `down` the
//!   requests refused while down; connections the client connections accepted);
//! - `GET /__proxy/bodies`: `{"ReceiveMessage":["{\"QueueUrl\":…}",…],…}`, the bodies
//!   of the last 64 requests of each action, faulted or not, oldest first (to check
//!   what a client sent, e.g. the `ReceiveRequestAttemptId` of its retries);
//! - `GET /__proxy/rules`: the rules in force; `PUT /__proxy/rules` with a JSON list of
//!   rule strings replaces them (`[]` clears; counts start again);
//! - `PUT /__proxy/down`: every request but the control endpoint's has its connection
//!   closed at once, as an unreachable endpoint would; `PUT /__proxy/up` restores.
//!
//! Hop-by-hop headers (`Connection` and those it names, `Keep-Alive`,
//! `Transfer-Encoding`, …) belong to each connection and are not passed on, so a
//! client keeps its connection alive even when the emulator closes every one of its
//! own (moto answers `Connection: close`). It holds at most one request and one
//! response in memory per connection.

#[path = "../fault_proxy/protocol.rs"]
mod protocol;
#[path = "../fault_proxy/rules.rs"]
mod rules;

use std::collections::{BTreeMap, VecDeque};
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use anyhow::Context as _;
use clap::Parser;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

use crate::rules::{Fault, Rule, RuleSet};

/// The largest request body forwarded (an SQS request is at most about 1 MiB).
const MAX_REQUEST: usize = 16 << 20;
/// The largest response body forwarded (ten 1 MiB messages, escaped, with attributes).
const MAX_RESPONSE: usize = 64 << 20;
/// Where the control endpoint lives; never forwarded.
const CONTROL: &str = "/__proxy/";
/// Request bodies kept per action for `GET /__proxy/bodies`.
const BODIES_KEPT: usize = 64;

/// A fault-injecting HTTP proxy in front of an SQS emulator.
#[derive(Debug, Parser)]
#[command(name = "spotq-fault-proxy")]
struct Args {
    /// The address to listen on (port 0: any free port; the line printed names it).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// The emulator, as `http://HOST:PORT`.
    #[arg(long)]
    upstream: String,
    /// A fault rule, `ACTION:FAULT:WHEN`; repeat for several, tried in order.
    #[arg(long = "rule")]
    rules: Vec<String>,
    /// Seeds the generator that draws `N%` rates (random when absent).
    #[arg(long)]
    seed: Option<u64>,
}

/// The answer to a request: a response, or the connection closed without one.
type Answer = Result<Response<Full<Bytes>>, Closed>;

/// The connection is closed without a response (hyper closes a connection whose
/// service fails).
#[derive(Debug)]
struct Closed(&'static str);

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "connection closed: {}", self.0)
    }
}

impl std::error::Error for Closed {}

#[derive(Debug, Default)]
struct Stats {
    requests: BTreeMap<String, u64>,
    faults: BTreeMap<String, BTreeMap<String, u64>>,
    connections: u64,
    /// The last request bodies of each action, oldest first.
    bodies: BTreeMap<String, VecDeque<String>>,
}

struct Proxy {
    upstream: Uri,
    client: Client<HttpConnector, Full<Bytes>>,
    rules: Mutex<RuleSet>,
    stats: Mutex<Stats>,
    down: AtomicBool,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain counters and rules, consistent even if a holder panicked.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Proxy {
    fn count_request(&self, action: &str, body: &[u8]) {
        let mut stats = lock(&self.stats);
        *stats.requests.entry(action.to_owned()).or_default() += 1;
        let bodies = stats.bodies.entry(action.to_owned()).or_default();
        if bodies.len() == BODIES_KEPT {
            bodies.pop_front();
        }
        bodies.push_back(String::from_utf8_lossy(body).into_owned());
    }

    fn count_fault(&self, action: &str, fault: &str) {
        *lock(&self.stats)
            .faults
            .entry(action.to_owned())
            .or_default()
            .entry(fault.to_owned())
            .or_default() += 1;
    }

    async fn handle(self: Arc<Self>, request: Request<Incoming>) -> Answer {
        if request.uri().path().starts_with(CONTROL) {
            return Ok(self.control(request).await);
        }
        let (mut parts, body) = request.into_parts();
        let Ok(body) = Limited::new(body, MAX_REQUEST).collect().await else {
            return Err(Closed("request body unreadable or too large"));
        };
        let body = body.to_bytes();
        let action = protocol::action_of(&parts.headers, &parts.uri, &body)
            .unwrap_or_else(|| "Unknown".to_owned());
        self.count_request(&action, &body);
        if self.down.load(Ordering::Acquire) {
            self.count_fault(&action, "down");
            return Err(Closed("the proxy is down"));
        }
        let fault = lock(&self.rules).pick(&action);
        let query_protocol = protocol::is_query_protocol(&parts.headers);
        match fault {
            Some(Fault::Throttle) => {
                self.count_fault(&action, "throttle");
                return Ok(full(protocol::error_response(400, query_protocol)));
            }
            Some(Fault::Status(status)) => {
                self.count_fault(&action, Fault::Status(status).name());
                return Ok(full(protocol::error_response(status, query_protocol)));
            }
            Some(Fault::Reset) => {
                self.count_fault(&action, "reset");
                return Err(Closed("reset injected"));
            }
            Some(Fault::NoSpot) => {
                if let Some(tasks) = protocol::spot_tasks_asked(&body) {
                    self.count_fault(&action, "no_spot");
                    return Ok(full(protocol::no_spot_answer(tasks)));
                }
            }
            Some(Fault::Hang) => {
                // Accepted and read, never answered nor forwarded: the client's own
                // timeout (or its going away, which drops this future) ends it.
                self.count_fault(&action, "hang");
                std::future::pending::<()>().await;
            }
            Some(Fault::Slow(delay)) => {
                self.count_fault(&action, "slow");
                tokio::time::sleep(delay).await;
                if self.down.load(Ordering::Acquire) {
                    return Err(Closed("the proxy went down during the delay"));
                }
            }
            Some(Fault::Lost | Fault::Partial | Fault::Unlisted) | None => {}
        }

        strip_hop_by_hop(&mut parts.headers);
        let mut target = self.upstream.clone().into_parts();
        target.path_and_query = parts.uri.path_and_query().cloned();
        parts.uri = Uri::from_parts(target).map_err(|_| Closed("unforwardable URI"))?;
        let forwarded = Request::from_parts(parts, Full::new(body));
        let response = match self.client.request(forwarded).await {
            Ok(response) => response,
            Err(error) => {
                eprintln!("spotq-fault-proxy: upstream {action}: {error}");
                return Err(Closed("upstream unreachable"));
            }
        };
        let (mut parts, body) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        let Ok(body) = Limited::new(body, MAX_RESPONSE).collect().await else {
            return Err(Closed("upstream response unreadable or too large"));
        };
        if fault == Some(Fault::Lost) {
            self.count_fault(&action, "lost");
            return Err(Closed("response lost (injected)"));
        }
        let mut body = body.to_bytes();
        if fault == Some(Fault::Partial) && parts.status.is_success() {
            let rewritten = protocol::fail_some_entries(&body, |succeeded| {
                let mut rules = lock(&self.rules);
                // About half the entries, at least one.
                let mut chosen: Vec<usize> =
                    (0..succeeded).filter(|_| rules.below(2) == 0).collect();
                if chosen.is_empty() {
                    chosen.push(rules.below(succeeded));
                }
                chosen
            });
            if let Some((rewritten, _)) = rewritten {
                self.count_fault(&action, "partial");
                parts.headers.remove(CONTENT_LENGTH);
                parts
                    .headers
                    .insert(CONTENT_LENGTH, HeaderValue::from(rewritten.len()));
                body = rewritten;
            }
        }
        if fault == Some(Fault::Unlisted)
            && parts.status.is_success()
            && let Some(rewritten) = protocol::without_tasks(&body)
        {
            self.count_fault(&action, "unlisted");
            parts.headers.remove(CONTENT_LENGTH);
            parts
                .headers
                .insert(CONTENT_LENGTH, HeaderValue::from(rewritten.len()));
            body = rewritten;
        }
        Ok(Response::from_parts(parts, Full::new(body)))
    }

    async fn control(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = request.uri().path().trim_start_matches(CONTROL).to_owned();
        match (request.method().clone(), path.as_str()) {
            (Method::GET, "stats") => {
                let stats = lock(&self.stats);
                json(
                    StatusCode::OK,
                    &serde_json::json!({
                        "requests": stats.requests,
                        "faults": stats.faults,
                        "connections": stats.connections,
                    }),
                )
            }
            (Method::GET, "bodies") => {
                json(StatusCode::OK, &serde_json::json!(lock(&self.stats).bodies))
            }
            (Method::GET, "rules") => json(StatusCode::OK, &lock(&self.rules).texts().into()),
            (Method::PUT, "rules") => {
                let body = match Limited::new(request.into_body(), 1 << 20).collect().await {
                    Ok(body) => body.to_bytes(),
                    Err(error) => return text(StatusCode::BAD_REQUEST, &error.to_string()),
                };
                let texts: Vec<String> = match serde_json::from_slice(&body) {
                    Ok(texts) => texts,
                    Err(error) => {
                        return text(
                            StatusCode::BAD_REQUEST,
                            &format!("expected a JSON list of rule strings: {error}"),
                        );
                    }
                };
                match rules::parse_all(&texts) {
                    Ok(rules) => {
                        lock(&self.rules).replace(rules);
                        empty(StatusCode::NO_CONTENT)
                    }
                    Err(error) => text(StatusCode::BAD_REQUEST, &error.to_string()),
                }
            }
            (Method::PUT, "down") => {
                self.down.store(true, Ordering::Release);
                empty(StatusCode::NO_CONTENT)
            }
            (Method::PUT, "up") => {
                self.down.store(false, Ordering::Release);
                empty(StatusCode::NO_CONTENT)
            }
            _ => text(
                StatusCode::NOT_FOUND,
                "GET /__proxy/stats, GET /__proxy/bodies, GET|PUT /__proxy/rules, \
                 PUT /__proxy/down, PUT /__proxy/up",
            ),
        }
    }
}

/// Headers that describe one connection, not the message (RFC 9110, section 7.6.1).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Drops the hop-by-hop headers, and those `Connection` names. The body is forwarded
/// whole, so hyper writes its length anew.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<String> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .filter(|name| !name.is_empty())
        .collect();
    for name in HOP_BY_HOP
        .iter()
        .copied()
        .chain(named.iter().map(String::as_str))
    {
        headers.remove(name);
    }
}

fn full(response: Response<Bytes>) -> Response<Full<Bytes>> {
    response.map(Full::new)
}

fn empty(status: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}

fn text(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(format!("{message}\n"))));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(value.to_string())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn upstream_uri(upstream: &str) -> anyhow::Result<Uri> {
    let uri: Uri = upstream
        .parse()
        .with_context(|| format!("--upstream {upstream:?} is not a URL"))?;
    anyhow::ensure!(
        uri.scheme_str() == Some("http") && uri.authority().is_some(),
        "--upstream {upstream:?} must be http://HOST:PORT"
    );
    Ok(uri)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let upstream = upstream_uri(&args.upstream)?;
    let rules: Vec<Rule> = rules::parse_all(&args.rules)?;
    let seed = args.seed.unwrap_or_else(|| fastrand::u64(..));
    eprintln!("spotq-fault-proxy: seed {seed}, {} rule(s)", rules.len());

    let proxy = Arc::new(Proxy {
        upstream,
        client: Client::builder(TokioExecutor::new()).build_http(),
        rules: Mutex::new(RuleSet::new(rules, seed)),
        stats: Mutex::default(),
        down: AtomicBool::new(false),
    });
    let mut terminate = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listen on {}", args.listen))?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "listening {}", listener.local_addr()?)?;
    stdout.flush()?;

    loop {
        let stream = tokio::select! {
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of file descriptors, most likely: wait rather than spin.
                    eprintln!("spotq-fault-proxy: accept: {error}");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        lock(&proxy.stats).connections += 1;
        let proxy = Arc::clone(&proxy);
        tokio::spawn(async move {
            let service = service_fn(move |request| Arc::clone(&proxy).handle(request));
            // A connection that ends in an error (a closed one included) needs no report.
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_stay_behind_and_the_rest_pass() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("host", "127.0.0.1:4566"),
            ("x-amz-target", "AmazonSQS.ReceiveMessage"),
            ("authorization", "AWS4-HMAC-SHA256 x"),
            ("content-length", "2"),
            ("connection", "close, X-Private"),
            ("x-private", "1"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
        ] {
            headers.insert(name, HeaderValue::from_static(value));
        }
        strip_hop_by_hop(&mut headers);
        let mut left: Vec<&str> = headers.keys().map(|name| name.as_str()).collect();
        left.sort_unstable();
        assert_eq!(
            left,
            ["authorization", "content-length", "host", "x-amz-target"]
        );
    }

    #[test]
    fn the_upstream_must_be_plain_http_with_an_authority() {
        assert!(upstream_uri("http://127.0.0.1:5055").is_ok());
        assert!(upstream_uri("https://127.0.0.1:5055").is_err());
        assert!(upstream_uri("127.0.0.1:5055").is_err());
    }
}
