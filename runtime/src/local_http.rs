//! Plain-HTTP calls to the endpoints ECS serves inside a task: the agent (task
//! protection) and task metadata. Link-local, unauthenticated, JSON.

use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::{Method, Request, Uri, header};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::error::BoxError;

/// The most of an answer read; the endpoints answer with a few hundred bytes.
const MAX_BODY: usize = 64 * 1024;

/// A call that got no answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ExchangeError {
    /// The endpoint could not be reached, or the connection broke.
    #[error("{message}")]
    Transport {
        /// What went wrong, with its causes.
        message: String,
        #[source]
        source: BoxError,
    },
    /// No answer in time.
    #[error("no answer within {0:?}")]
    TimedOut(Duration),
}

/// A client for the task-local endpoints.
#[derive(Clone, Debug)]
pub(crate) struct LocalHttp {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl LocalHttp {
    pub(crate) fn new() -> Self {
        // A fresh connection per call: calls are seconds to minutes apart, and a pooled
        // connection the endpoint has since closed would only fail the next call.
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build(HttpConnector::new());
        Self { client }
    }

    /// Sends `method` to `uri` with an optional JSON body; returns the status and body.
    pub(crate) async fn exchange(
        &self,
        method: Method,
        uri: Uri,
        json: Option<String>,
        timeout: Duration,
    ) -> Result<(u16, Bytes), ExchangeError> {
        let mut request = Request::builder().method(method).uri(uri);
        if json.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(Bytes::from(json.unwrap_or_default())))
            .map_err(transport)?;
        let exchange = async {
            let response = self.client.request(request).await.map_err(transport)?;
            let status = response.status().as_u16();
            let body = Limited::new(response.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(transport)?
                .to_bytes();
            Ok::<_, ExchangeError>((status, body))
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_elapsed| ExchangeError::TimedOut(timeout))?
    }
}

/// A transport error, with its causes in the message: hyper's own message alone ("client
/// error (Connect)") does not say what happened.
fn transport(error: impl Into<BoxError>) -> ExchangeError {
    let source = error.into();
    let mut message = source.to_string();
    let mut cause = source.source();
    while let Some(error) = cause {
        message.push_str(": ");
        message.push_str(&error.to_string());
        cause = error.source();
    }
    ExchangeError::Transport { message, source }
}
