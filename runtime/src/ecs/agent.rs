//! Plain-HTTP calls to the endpoints ECS serves inside a task: the agent (task
//! protection) and task metadata. Link-local, unauthenticated, JSON.

use std::env::VarError;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::{Method, Request, Uri, header};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::error::{BoxError, ConfigError};

/// The most of an unexpected answer kept in an error.
pub(crate) const EXCERPT_CHARS: usize = 300;

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

/// A task-local endpoint's base URI as read from its environment variable `var`: `None`
/// when unset or blank.
pub(crate) fn base_uri_from(
    var: &'static str,
    value: Result<String, VarError>,
) -> Result<Option<String>, ConfigError> {
    match value {
        Ok(uri) if uri.trim().is_empty() => Ok(None),
        Ok(uri) => Ok(Some(uri.trim().to_owned())),
        Err(VarError::NotPresent) => Ok(None),
        Err(VarError::NotUnicode(raw)) => Err(ConfigError::new(var, raw, "a plain http:// URL")),
    }
}

/// The resource `path` below `base` (the value of `var`), checked to be plain HTTP: the
/// endpoints ECS serves in a task are plain HTTP on a link-local address, anything else
/// is a mistake, and the connector would refuse https anyway.
pub(crate) fn endpoint(var: &'static str, base: &str, path: &str) -> Result<Uri, ConfigError> {
    let invalid = || ConfigError::new(var, base, "a plain http:// URL");
    let trimmed = base.trim().trim_end_matches('/');
    let uri: Uri = format!("{trimmed}{path}").parse().map_err(|_| invalid())?;
    if uri.scheme_str() != Some("http")
        || uri.host().is_none_or(str::is_empty)
        || uri.query().is_some()
    {
        return Err(invalid());
    }
    Ok(uri)
}

/// The start of a body, for an error message.
pub(crate) fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(EXCERPT_CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}
