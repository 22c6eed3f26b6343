//! How a failed AWS SDK call becomes a [`BackendError`]: one sorting into throttled,
//! transient and rejected for every AWS service spotq calls (SQS, ECS), so a caller
//! retries the same failures whichever service answered.

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::error::BackendError;

/// Error codes with which AWS services (SQS, KMS behind it, ECS) ask callers to slow
/// down.
const THROTTLING_CODES: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "RequestThrottled",
    "KmsThrottled",
    "OverLimit",
    "TooManyRequestsException",
];

/// Sorts an SDK error into throttled, transient (retry) or rejected (do not retry), as
/// a [`BackendError`] naming `operation`. Public (as `spotq::backend::classify`) for
/// programs that make their own SQS or ECS calls, such as `spotq-controller`.
pub fn classify<E>(operation: &'static str, error: SdkError<E, HttpResponse>) -> BackendError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let message = DisplayErrorContext(&error).to_string();
    match &error {
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let code = service.err().code().unwrap_or("Unknown").to_owned();
            // SQS prefixes some codes (`AWS.SimpleQueueService.RequestThrottled`).
            let short = code.rsplit('.').next().unwrap_or(&code);
            if THROTTLING_CODES.contains(&short) || status == 429 {
                BackendError::Throttled { operation, message }
            } else if status >= 500 {
                BackendError::Transient {
                    operation,
                    message,
                    source: Some(Box::new(error)),
                }
            } else {
                let message = service.err().message().unwrap_or_default().to_owned();
                BackendError::Rejected {
                    operation,
                    code,
                    message,
                }
            }
        }
        SdkError::ConstructionFailure(_) => BackendError::Rejected {
            operation,
            code: "ConstructionFailure".to_owned(),
            message,
        },
        // Timeouts, connection failures and unreadable responses.
        _ => BackendError::Transient {
            operation,
            message,
            source: Some(Box::new(error)),
        },
    }
}

// The SQS and ECS errors of both services, so with both features.
#[cfg(all(test, feature = "sqs", feature = "ecs"))]
mod tests {
    use super::*;

    use aws_sdk_ecs::operation::describe_services::DescribeServicesError;
    use aws_sdk_sqs::error::{ConnectorError, ErrorMetadata};
    use aws_sdk_sqs::operation::receive_message::ReceiveMessageError;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;

    fn raw(status: u16) -> HttpResponse {
        let status = StatusCode::try_from(status).expect("status");
        HttpResponse::new(status, SdkBody::empty())
    }

    fn service_error(status: u16, code: &str) -> BackendError {
        let error =
            ReceiveMessageError::generic(ErrorMetadata::builder().code(code).message("m").build());
        classify(
            "ReceiveMessage",
            SdkError::service_error(error, raw(status)),
        )
    }

    fn ecs_error(status: u16, code: &str) -> BackendError {
        let error = DescribeServicesError::generic(
            ErrorMetadata::builder().code(code).message("m").build(),
        );
        classify(
            "DescribeServices",
            SdkError::service_error(error, raw(status)),
        )
    }

    #[test]
    fn throttling_and_server_errors_are_retryable_and_client_errors_are_not() {
        for code in [
            "ThrottlingException",
            "AWS.SimpleQueueService.RequestThrottled",
            "KmsThrottled",
        ] {
            assert!(
                matches!(service_error(400, code), BackendError::Throttled { .. }),
                "{code}"
            );
        }
        assert!(matches!(
            service_error(429, "Whatever"),
            BackendError::Throttled { .. }
        ));
        assert!(matches!(
            service_error(500, "InternalError"),
            BackendError::Transient { .. }
        ));
        assert!(matches!(
            service_error(503, "ServiceUnavailable"),
            BackendError::Transient { .. }
        ));
        let rejected = service_error(400, "AWS.SimpleQueueService.NonExistentQueue");
        assert!(!rejected.is_retryable());
        assert!(
            rejected.to_string().contains("NonExistentQueue"),
            "{rejected}"
        );
        assert!(!service_error(403, "AccessDenied").is_retryable());
    }

    #[test]
    fn ecs_errors_sort_the_same_way() {
        assert!(matches!(
            ecs_error(400, "ThrottlingException"),
            BackendError::Throttled { .. }
        ));
        assert!(matches!(
            ecs_error(500, "ServerException"),
            BackendError::Transient { .. }
        ));
        for code in [
            "ClientException",
            "ClusterNotFoundException",
            "AccessDeniedException",
        ] {
            let error = ecs_error(400, code);
            assert!(
                matches!(&error, BackendError::Rejected { code: got, .. } if got == code),
                "{error:?}"
            );
            assert_eq!(error.operation(), "DescribeServices");
        }
    }

    #[test]
    fn timeouts_and_connection_failures_are_transient() {
        let timeout: SdkError<ReceiveMessageError, HttpResponse> =
            SdkError::timeout_error("operation timed out");
        assert!(matches!(
            classify("ReceiveMessage", timeout),
            BackendError::Transient { .. }
        ));
        let refused: SdkError<ReceiveMessageError, HttpResponse> =
            SdkError::dispatch_failure(ConnectorError::io("connection refused".into()));
        let error = classify("DeleteMessageBatch", refused);
        assert!(matches!(error, BackendError::Transient { .. }) && error.is_retryable());
        assert_eq!(error.operation(), "DeleteMessageBatch");
    }
}
