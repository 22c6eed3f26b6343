//! A container health check for images that have no shell and no `curl`: one
//! `GET http://HOST:PORT/PATH`, healthy on a 2xx answer.
//!
//! The worker image (`FROM scratch`) holds the worker binary, CA certificates and the
//! `spotq-healthcheck` binary built from this crate. The image's `HEALTHCHECK` and the ECS
//! task definition's `healthCheck` both run it in exec form, with no shell:
//!
//! ```text
//! ["CMD", "/usr/local/bin/spotq-healthcheck", "http://127.0.0.1:8080/health"]
//! ```
//!
//! It exits 0 when the answer's status is 2xx (`spotq::telemetry::serve` answers `/health` with 200
//! while the worker is live, and 503 once a poller has been stuck for a minute), and 1
//! otherwise: the connection is refused or times out, the status is anything else, or
//! the answer is not HTTP. (Docker reserves exit code 2, so a bad argument exits 1 too.)
//!
//! The same check from Rust:
//!
//! ```no_run
//! use spotq_healthcheck::{DEFAULT_TIMEOUT, DEFAULT_URL, Probe};
//!
//! # fn main() -> Result<(), spotq_healthcheck::ProbeError> {
//! let probe = Probe::parse(DEFAULT_URL)?;
//! let status = probe.check(DEFAULT_TIMEOUT)?; // Err for anything but 2xx
//! println!("healthy: HTTP {status}");
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// What the binary checks without an argument: `/health` of `spotq::telemetry::serve` on the port the
/// example worker and the task definition use.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080/health";

/// How long the whole check may take without `--timeout`: below the task definition's
/// health check timeout (5 s), so a hung worker is reported unhealthy rather than timed
/// out by the agent.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);

/// The most of the answer that is read while looking for its status line.
const MAX_HEAD: usize = 8 * 1024;

/// A `GET` of one plain-HTTP URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    host: String,
    port: u16,
    path: String,
}

impl Probe {
    /// Reads `url`, an `http://HOST[:PORT][/PATH]` URL (port 80 by default, path `/`).
    /// HOST is a name, an IPv4 address, or an IPv6 address in brackets.
    pub fn parse(url: &str) -> Result<Self, ProbeError> {
        let invalid = |reason: &str| ProbeError::InvalidUrl {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| invalid("not an http:// URL (the health endpoint is plain HTTP)"))?;
        let (authority, path) = match rest.find('/') {
            Some(slash) => rest.split_at(slash),
            None => (rest, "/"),
        };
        if path.contains(['#', ' ', '\r', '\n']) {
            return Err(invalid(
                "the path holds a fragment, a space or a line break",
            ));
        }
        if authority.contains('@') {
            return Err(invalid("user information is not supported"));
        }
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let (host, after) = bracketed
                .split_once(']')
                .ok_or_else(|| invalid("an IPv6 address without its closing `]`"))?;
            match after {
                "" => (host, None),
                _ => match after.strip_prefix(':') {
                    Some(port) => (host, Some(port)),
                    None => return Err(invalid("text after the IPv6 address")),
                },
            }
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(invalid("no host"));
        }
        let port = match port {
            None => 80,
            Some(port) => port
                .parse::<u16>()
                .ok()
                .filter(|port| *port != 0)
                .ok_or_else(|| invalid("the port is not a number from 1 to 65535"))?,
        };
        Ok(Self {
            host: host.to_owned(),
            port,
            path: path.to_owned(),
        })
    }

    /// The host, without brackets.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The path (with its query, if any).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Sends the `GET` and returns the answer's status code, whatever it is. Connecting,
    /// sending and reading the status line together take at most `timeout`.
    pub fn status(&self, timeout: Duration) -> Result<u16, ProbeError> {
        let deadline = Instant::now() + timeout;
        let mut stream = self.connect(deadline)?;
        let host_header = if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        };
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: spotq-healthcheck\r\n\
             Accept: */*\r\nConnection: close\r\n\r\n",
            self.path
        );
        stream
            .set_write_timeout(Some(remaining(deadline)?))
            .map_err(|error| self.io_error(error))?;
        stream
            .write_all(request.as_bytes())
            .map_err(|error| self.io_error(error))?;
        let mut head = Vec::with_capacity(256);
        let mut chunk = [0_u8; 1024];
        loop {
            if let Some(end) = head.windows(2).position(|pair| pair == b"\r\n") {
                return parse_status_line(&head[..end]);
            }
            if head.len() >= MAX_HEAD {
                return Err(ProbeError::NotHttp(excerpt(&head)));
            }
            stream
                .set_read_timeout(Some(remaining(deadline)?))
                .map_err(|error| self.io_error(error))?;
            match stream.read(&mut chunk) {
                Ok(0) if head.is_empty() => {
                    return Err(ProbeError::NotHttp(
                        "the connection closed without an answer".to_owned(),
                    ));
                }
                Ok(0) => return Err(ProbeError::NotHttp(excerpt(&head))),
                Ok(read) => head.extend_from_slice(&chunk[..read]),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(self.io_error(error)),
            }
        }
    }

    /// [`status`](Self::status), and an error unless it is 2xx.
    pub fn check(&self, timeout: Duration) -> Result<u16, ProbeError> {
        let status = self.status(timeout)?;
        if (200..300).contains(&status) {
            Ok(status)
        } else {
            Err(ProbeError::Unhealthy { status })
        }
    }

    fn connect(&self, deadline: Instant) -> Result<TcpStream, ProbeError> {
        let addresses: Vec<SocketAddr> = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|error| ProbeError::Unreachable {
                address: self.address(),
                source: error,
            })?
            .collect();
        let mut last = io::Error::new(io::ErrorKind::NotFound, "the host has no address");
        for address in addresses {
            match TcpStream::connect_timeout(&address, remaining(deadline)?) {
                Ok(stream) => return Ok(stream),
                Err(error) => last = error,
            }
        }
        Err(self.io_error(last))
    }

    fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    fn io_error(&self, error: io::Error) -> ProbeError {
        match error.kind() {
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => ProbeError::TimedOut,
            _ => ProbeError::Unreachable {
                address: self.address(),
                source: error,
            },
        }
    }
}

/// Why a check failed.
#[derive(Debug)]
pub enum ProbeError {
    /// The URL is not one this probe can ask.
    InvalidUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The host could not be resolved or connected to, or the connection broke.
    Unreachable {
        /// `host:port`.
        address: String,
        /// The underlying error.
        source: io::Error,
    },
    /// No status line within the timeout.
    TimedOut,
    /// The answer is not HTTP: the start of what came back.
    NotHttp(String),
    /// The endpoint answered, with a status other than 2xx.
    Unhealthy {
        /// The status code.
        status: u16,
    },
}

impl fmt::Display for ProbeError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidUrl { url, reason } => write!(formatter, "invalid URL {url:?}: {reason}"),
            Self::Unreachable { address, source } => {
                write!(formatter, "could not reach {address}: {source}")
            }
            Self::TimedOut => formatter.write_str("no answer within the timeout"),
            Self::NotHttp(start) => write!(formatter, "the answer is not HTTP: {start:?}"),
            Self::Unhealthy { status } => write!(formatter, "unhealthy: HTTP {status}"),
        }
    }
}

impl std::error::Error for ProbeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Unreachable { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// The time left before `deadline`; [`ProbeError::TimedOut`] once it has passed (a zero
/// timeout means "none" to the socket calls).
fn remaining(deadline: Instant) -> Result<Duration, ProbeError> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|left| !left.is_zero())
        .ok_or(ProbeError::TimedOut)
}

/// The status code of `HTTP/1.x NNN reason`.
fn parse_status_line(line: &[u8]) -> Result<u16, ProbeError> {
    let text = std::str::from_utf8(line).map_err(|_| ProbeError::NotHttp(excerpt(line)))?;
    let mut parts = text.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let code = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") || code.len() != 3 {
        return Err(ProbeError::NotHttp(excerpt(line)));
    }
    code.parse::<u16>()
        .ok()
        .filter(|code| (100..=599).contains(code))
        .ok_or_else(|| ProbeError::NotHttp(excerpt(line)))
}

/// The start of `bytes`, as text, for an error message.
fn excerpt(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(80)]).into_owned()
}

#[cfg(test)]
mod tests;
