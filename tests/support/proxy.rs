//! `spotq-fault-proxy` as a child process in front of the emulator: start it with
//! rules, point an SQS client at it, read its stats and change its rules while a
//! worker runs.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};

use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use spotq::SqsBackend;

use super::emulator_endpoint;

/// A running fault proxy; killed when dropped.
pub struct FaultProxy {
    child: Child,
    addr: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// What the proxy counted: requests by action, and faults injected by action and fault
/// (`throttle`, `500`, `503`, `reset`, `lost`, `slow`, `partial`, `no_spot`, `unlisted`,
/// `down`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Requests by action, faulted or not.
    pub requests: BTreeMap<String, u64>,
    /// Faults injected, by action and fault.
    pub faults: BTreeMap<String, BTreeMap<String, u64>>,
    /// Client connections the proxy accepted.
    pub connections: u64,
}

impl ProxyStats {
    /// Requests that named `action`, faulted or not.
    pub fn requests(&self, action: &str) -> u64 {
        self.requests.get(action).copied().unwrap_or(0)
    }

    /// `fault`s injected into requests that named `action`.
    pub fn faults(&self, action: &str, fault: &str) -> u64 {
        self.faults
            .get(action)
            .and_then(|faults| faults.get(fault))
            .copied()
            .unwrap_or(0)
    }
}

impl FaultProxy {
    /// Starts the proxy in front of the emulator (`AWS_ENDPOINT_URL`) with `rules`, its
    /// rates drawn from `seed`, and waits until it listens.
    pub fn start(rules: &[&str], seed: u64) -> Self {
        let upstream = emulator_endpoint();
        let mut command = Command::new(env!("CARGO_BIN_EXE_spotq-fault-proxy"));
        command
            .args(["--listen", "127.0.0.1:0", "--upstream", &upstream])
            .args(["--seed", &seed.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        for rule in rules {
            command.args(["--rule", rule]);
        }
        let mut child = command.spawn().expect("start spotq-fault-proxy");
        let stdout = child.stdout.take().expect("the proxy's stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the proxy's first line");
        let addr = line
            .trim()
            .strip_prefix("listening ")
            .unwrap_or_else(|| panic!("the proxy printed {line:?}, not `listening ADDR`"))
            .to_owned();
        Self {
            child,
            addr,
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// `http://127.0.0.1:PORT`, for an SDK endpoint override.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The same queue as `queue`, reached through the proxy: a client with the
    /// standard configuration whose endpoint is the proxy.
    pub async fn backend(&self, queue: &SqsBackend) -> SqsBackend {
        let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let sqs = aws_sdk_sqs::config::Builder::from(&config)
            .endpoint_url(self.endpoint())
            .build();
        SqsBackend::new(aws_sdk_sqs::Client::from_conf(sqs), queue.queue_url())
    }

    /// An ECS client with the standard configuration whose endpoint is the proxy.
    pub async fn ecs_client(&self) -> aws_sdk_ecs::Client {
        let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let ecs = aws_sdk_ecs::config::Builder::from(&config)
            .endpoint_url(self.endpoint())
            .build();
        aws_sdk_ecs::Client::from_conf(ecs)
    }

    async fn call(&self, method: Method, path: &str, body: String) -> (u16, Bytes) {
        let request = Request::builder()
            .method(method)
            .uri(format!("http://{}/__proxy/{path}", self.addr))
            .body(Full::new(Bytes::from(body)))
            .expect("a control request");
        let response = self
            .client
            .request(request)
            .await
            .expect("the proxy's control endpoint answers");
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("the control answer's body")
            .to_bytes();
        (status, body)
    }

    /// `GET /__proxy/stats`.
    pub async fn stats(&self) -> ProxyStats {
        let (status, body) = self.call(Method::GET, "stats", String::new()).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let value: serde_json::Value = serde_json::from_slice(&body).expect("stats JSON");
        let numbers = |value: &serde_json::Value| -> BTreeMap<String, u64> {
            value
                .as_object()
                .into_iter()
                .flatten()
                .map(|(key, count)| (key.clone(), count.as_u64().unwrap_or(0)))
                .collect()
        };
        ProxyStats {
            requests: numbers(&value["requests"]),
            faults: value["faults"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(action, faults)| (action.clone(), numbers(faults)))
                .collect(),
            connections: value["connections"].as_u64().unwrap_or(0),
        }
    }

    /// `GET /__proxy/bodies`: the bodies of the last requests that named `action`,
    /// oldest first.
    pub async fn bodies(&self, action: &str) -> Vec<String> {
        let (status, body) = self.call(Method::GET, "bodies", String::new()).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let value: serde_json::Value = serde_json::from_slice(&body).expect("bodies JSON");
        value[action]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|body| body.as_str().map(str::to_owned))
            .collect()
    }

    /// `PUT /__proxy/rules`: replaces the rules (`&[]` clears them).
    pub async fn set_rules(&self, rules: &[&str]) {
        let body = serde_json::to_string(rules).expect("rules as JSON");
        let (status, answer) = self.call(Method::PUT, "rules", body).await;
        assert_eq!(status, 204, "{}", String::from_utf8_lossy(&answer));
    }

    /// `PUT /__proxy/down`: every forwarded request fails as if the endpoint were gone.
    pub async fn down(&self) {
        let (status, _) = self.call(Method::PUT, "down", String::new()).await;
        assert_eq!(status, 204);
    }

    /// `PUT /__proxy/up`: forwards again.
    pub async fn up(&self) {
        let (status, _) = self.call(Method::PUT, "up", String::new()).await;
        assert_eq!(status, 204);
    }

    /// Stops the proxy with SIGTERM and returns whether it exited 0.
    pub fn stop(mut self) -> bool {
        super::process::signal(self.child.id(), "TERM");
        self.child.wait().expect("wait for the proxy").success()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
