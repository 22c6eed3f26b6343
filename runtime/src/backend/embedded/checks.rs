//! The error of a call that breaks one of the queue's rules, as SQS words it.

use crate::error::BackendError;

/// A call SQS refuses with `InvalidParameterValue`.
pub(super) fn invalid_parameter(operation: &'static str, message: String) -> BackendError {
    BackendError::Rejected {
        operation,
        code: "InvalidParameterValue".to_owned(),
        message,
    }
}
