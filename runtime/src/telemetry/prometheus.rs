//! The Prometheus recorder: what a binary installs to export the figures spotq emits
//! through the [`metrics`] facade.
//!
//! [`serve`](crate::telemetry::serve::serve) installs it and answers `/metrics` from it. A binary
//! with an HTTP server of its own (or none: a push gateway, a test) installs it with
//! [`install_recorder`] and renders the text exposition format with
//! [`PrometheusHandle::render`]; that needs feature `prometheus` only, not `serve`.
//!
//! ```
//! # fn main() -> Result<(), spotq::telemetry::prometheus::RecorderError> {
//! let metrics = spotq::telemetry::prometheus::install_recorder()?;
//! metrics::counter!("jobs_total").increment(1);
//! assert!(metrics.render().contains("jobs_total 1"));
//! # Ok(())
//! # }
//! ```

use std::sync::{Mutex, PoisonError};

use metrics_exporter_prometheus::BuildError;
pub use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Another metrics recorder is already the process's global recorder.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot install the Prometheus recorder: another metrics recorder is already \
     installed in this process"
)]
pub struct RecorderError(#[source] BuildError);

/// Installs the Prometheus recorder as the process's global [`metrics`] recorder, and
/// returns a handle to it.
///
/// The first call installs it; later calls return a handle to the same recorder, so
/// [`serve`](crate::telemetry::serve::serve) may be called more than once in a process. The
/// recorder has the exporter's defaults (histograms rendered as summaries); a binary
/// that wants another configuration builds its own with [`PrometheusBuilder`].
///
/// # Errors
///
/// [`RecorderError`] if a recorder other than this one is already installed.
pub fn install_recorder() -> Result<PrometheusHandle, RecorderError> {
    // Held across the install so that two first calls cannot both try.
    static INSTALLED: Mutex<Option<PrometheusHandle>> = Mutex::new(None);
    let mut installed = INSTALLED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(handle) = installed.as_ref() {
        return Ok(handle.clone());
    }
    let handle = PrometheusBuilder::new()
        .install_recorder()
        .map_err(RecorderError)?;
    *installed = Some(handle.clone());
    Ok(handle)
}
