//! A stand-in for the ECS agent's task-protection endpoint, on 127.0.0.1: it records
//! each request and answers as told. Point `$ECS_AGENT_URI` (or
//! [`TaskProtection::new`](crate::ecs::protection::TaskProtection::new)) at
//! [`AgentStandIn::uri`].

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, sleep};

/// The endpoint id in the stand-in's `$ECS_AGENT_URI`.
pub const ENDPOINT_ID: &str = "0123abcd-test";
/// The path of the task-protection state under the stand-in.
pub const STATE: &str = "/api/0123abcd-test/task-protection/v1/state";
/// How long [`AgentStandIn::wait_for_calls`] waits.
pub const PATIENCE: Duration = Duration::from_secs(5);

/// What the stand-in answers.
#[derive(Clone, Debug)]
pub enum Reply {
    /// 200 with a `protection` object, as the agent answers a success.
    Ok,
    /// This status with a plain-text body.
    Status(u16, &'static str),
    /// 200 with a `failure` object carrying this reason.
    Failure(&'static str),
    /// This status with an `error` object carrying this code.
    Error(u16, &'static str),
    /// No answer at all.
    Hang,
}

/// One request the stand-in received.
#[derive(Clone, Debug)]
pub struct Call {
    /// The HTTP method.
    pub method: String,
    /// The request path.
    pub path: String,
    /// The `Content-Type` header.
    pub content_type: Option<String>,
    /// The JSON body (`null` when it is not JSON).
    pub body: Value,
    /// When it arrived.
    pub at: Instant,
}

#[derive(Debug)]
struct AgentState {
    calls: Vec<Call>,
    /// Answers for the next calls, in order; then `otherwise`.
    next: VecDeque<Reply>,
    otherwise: Reply,
}

/// A stand-in for the ECS agent: records each request and answers as told.
#[derive(Clone, Debug)]
pub struct AgentStandIn {
    addr: SocketAddr,
    state: Arc<Mutex<AgentState>>,
}

impl AgentStandIn {
    /// Listens on an ephemeral port of 127.0.0.1, answering `Reply::Ok` until told
    /// otherwise.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local address");
        let state = Arc::new(Mutex::new(AgentState {
            calls: Vec::new(),
            next: VecDeque::new(),
            otherwise: Reply::Ok,
        }));
        let shared = Arc::clone(&state);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, Arc::clone(&shared)));
            }
        });
        Self { addr, state }
    }

    /// `$ECS_AGENT_URI` for this agent.
    pub fn uri(&self) -> String {
        format!("http://{}/api/{ENDPOINT_ID}", self.addr)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, AgentState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// Answers every later call with `reply`.
    pub fn answer(&self, reply: Reply) {
        self.lock().otherwise = reply;
    }

    /// Answers the next `times` calls with `reply`, then as before.
    pub fn answer_next(&self, times: usize, reply: Reply) {
        self.lock().next.extend(std::iter::repeat_n(reply, times));
    }

    /// Waits until the agent has received `count` calls; returns them all.
    pub async fn wait_for_calls(&self, count: usize) -> Vec<Call> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let calls = self.calls();
            if calls.len() >= count {
                return calls;
            }
            assert!(
                Instant::now() < deadline,
                "expected {count} calls within {PATIENCE:?}, got {calls:#?}"
            );
            sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Serves one connection: one request, one answer, then close.
async fn serve(mut stream: TcpStream, state: Arc<Mutex<AgentState>>) {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(end) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
            break end + 4;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or_default().split(' ');
    let method = request_line.next().unwrap_or_default().to_owned();
    let path = request_line.next().unwrap_or_default().to_owned();
    let header = |name: &str| {
        head.split("\r\n").skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
    };
    let length: usize = header("content-length")
        .and_then(|value| value.parse().ok())
        .unwrap_or(0);
    while buffer.len() < head_end + length {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    }
    let body = serde_json::from_slice(&buffer[head_end..head_end + length]).unwrap_or(Value::Null);
    let reply = {
        let mut state = state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state.calls.push(Call {
            method,
            path,
            content_type: header("content-type"),
            body,
            at: Instant::now(),
        });
        let otherwise = state.otherwise.clone();
        state.next.pop_front().unwrap_or(otherwise)
    };
    let arn = "arn:aws:ecs:eu-west-1:123456789012:task/cluster/0123abcd";
    let (status, body) = match reply {
        Reply::Ok => (
            200,
            json!({"protection": {
                "ExpirationDate": "2030-01-01T00:00:00Z",
                "ProtectionEnabled": true,
                "TaskArn": arn,
            }})
            .to_string(),
        ),
        Reply::Status(status, text) => (status, text.to_owned()),
        Reply::Failure(reason) => (
            200,
            json!({"failure": {"Arn": arn, "Reason": reason, "Detail": "from the test"}})
                .to_string(),
        ),
        Reply::Error(status, code) => (
            status,
            json!({"error": {"Arn": arn, "Code": code, "Message": "from the test"}}).to_string(),
        ),
        Reply::Hang => {
            sleep(Duration::from_secs(60)).await;
            return;
        }
    };
    let response = format!(
        "HTTP/1.1 {status} Whatever\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}
