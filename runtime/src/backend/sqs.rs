//! The production backend: Amazon SQS through `aws-sdk-sqs`.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::config::timeout::TimeoutConfig;
use aws_sdk_sqs::primitives::Blob;
use aws_sdk_sqs::types::{
    BatchResultErrorEntry, ChangeMessageVisibilityBatchRequestEntry,
    DeleteMessageBatchRequestEntry, MessageAttributeValue, MessageSystemAttributeName,
    QueueAttributeName,
};

use crate::backend::sdk_error::classify;
use crate::backend::sdk_timeouts;
use crate::backend::{
    Backend, EntryError, EntryErrorKind, EntryResult, MessageAttribute, QueueAttributes,
    QueueCounts, ReceiptHandle, ReceiveRequest, ReceivedMessage, RedrivePolicy, SendMessage,
    VisibilityChange, whole_seconds,
};
use crate::error::BackendError;

/// An SQS queue reached through `aws-sdk-sqs`.
///
/// [`SqsBackend::from_env`] loads the standard AWS configuration chain (environment,
/// profile, container and instance credentials; region), which honours
/// `AWS_ENDPOINT_URL_SQS` and `AWS_ENDPOINT_URL` for a local endpoint.
///
/// Every call is bounded in time by the client's `TimeoutConfig`: the timeouts its
/// configuration sets, and for those it leaves unset 10 s per attempt and 30 s per call
/// ([`ATTEMPT_TIMEOUT`](crate::backend::ATTEMPT_TIMEOUT),
/// [`OPERATION_TIMEOUT`](crate::backend::OPERATION_TIMEOUT)); a receive gets its long
/// poll's wait on top of both. Set your own on the configuration the client is built
/// from (`aws_config::defaults(..).timeout_config(..)`).
#[derive(Clone, Debug)]
pub struct SqsBackend {
    client: Client,
    queue_url: String,
    name: String,
    /// The client's timeouts, for a long poll's to be derived from.
    timeouts: TimeoutConfig,
}

impl SqsBackend {
    /// Uses `client` for the queue at `queue_url`, without any call; the client's calls
    /// get spotq's default timeouts where its configuration sets none.
    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        let queue_url = queue_url.into();
        let name = queue_name(&queue_url).to_owned();
        let timeouts = sdk_timeouts::with_defaults(client.config().timeout_config());
        let client = Client::from_conf(
            client
                .config()
                .to_builder()
                .timeout_config(timeouts.clone())
                .build(),
        );
        Self {
            client,
            queue_url,
            name,
            timeouts,
        }
    }

    /// Uses `client` for `queue`, a queue URL or a queue name (resolved with
    /// `GetQueueUrl`).
    pub async fn connect(client: Client, queue: &str) -> Result<Self, BackendError> {
        if queue.starts_with("https://") || queue.starts_with("http://") {
            return Ok(Self::new(client, queue));
        }
        // Bounded like every later call: the URL is filled in once known.
        let unresolved = Self::new(client, "");
        let output = unresolved
            .client
            .get_queue_url()
            .queue_name(queue)
            .send()
            .await
            .map_err(|error| match classify("GetQueueUrl", error) {
                // SQS's message does not say which queue: with several workers in one
                // process the error must.
                BackendError::Rejected {
                    operation,
                    code,
                    message,
                } => BackendError::Rejected {
                    operation,
                    code,
                    message: format!("{message} (queue `{queue}`)"),
                },
                other => other,
            })?;
        let url = output.queue_url().ok_or_else(|| BackendError::Rejected {
            operation: "GetQueueUrl",
            code: "MissingQueueUrl".to_owned(),
            message: format!("no URL returned for queue {queue}"),
        })?;
        Ok(Self {
            queue_url: url.to_owned(),
            name: queue_name(url).to_owned(),
            ..unresolved
        })
    }

    /// Loads the standard AWS configuration and connects to `queue` (URL or name).
    pub async fn from_env(queue: &str) -> Result<Self, BackendError> {
        let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        Self::connect(Client::new(&config), queue).await
    }

    /// The queue's URL.
    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    /// The SQS client, for calls spotq does not make (sending, creating queues).
    pub fn client(&self) -> &Client {
        &self.client
    }
}

#[async_trait]
impl Backend for SqsBackend {
    fn name(&self) -> &str {
        &self.name
    }

    async fn receive(&self, request: ReceiveRequest) -> Result<Vec<ReceivedMessage>, BackendError> {
        let mut call = self
            .client
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(seconds_i32(request.max_messages as u64))
            .wait_time_seconds(seconds_i32(whole_seconds(request.wait_time)))
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .set_receive_request_attempt_id(request.attempt_id.map(|id| id.as_str().to_owned()));
        if let Some(visibility) = request.visibility_timeout {
            call = call.visibility_timeout(seconds_i32(whole_seconds(visibility)));
        }
        let timeouts = sdk_timeouts::for_long_poll(&self.timeouts, request.wait_time);
        let output = call
            .customize()
            .config_override(aws_sdk_sqs::config::Builder::default().timeout_config(timeouts))
            .send()
            .await
            .map_err(|error| classify("ReceiveMessage", error))?;
        Ok(output
            .messages
            .unwrap_or_default()
            .into_iter()
            .filter_map(received_message)
            .collect())
    }

    async fn delete_batch(
        &self,
        handles: &[ReceiptHandle],
    ) -> Result<Vec<EntryResult>, BackendError> {
        let mut call = self
            .client
            .delete_message_batch()
            .queue_url(&self.queue_url);
        for (index, handle) in handles.iter().enumerate() {
            let entry = DeleteMessageBatchRequestEntry::builder()
                .id(index.to_string())
                .receipt_handle(handle.as_str())
                .build()
                .map_err(|error| build_error("DeleteMessageBatch", error))?;
            call = call.entries(entry);
        }
        let output = call
            .send()
            .await
            .map_err(|error| classify("DeleteMessageBatch", error))?;
        Ok(entry_results(handles.len(), output.failed()))
    }

    async fn change_visibility_batch(
        &self,
        changes: &[VisibilityChange],
    ) -> Result<Vec<EntryResult>, BackendError> {
        let mut call = self
            .client
            .change_message_visibility_batch()
            .queue_url(&self.queue_url);
        for (index, change) in changes.iter().enumerate() {
            let entry = ChangeMessageVisibilityBatchRequestEntry::builder()
                .id(index.to_string())
                .receipt_handle(change.receipt_handle.as_str())
                .visibility_timeout(seconds_i32(whole_seconds(change.timeout)))
                .build()
                .map_err(|error| build_error("ChangeMessageVisibilityBatch", error))?;
            call = call.entries(entry);
        }
        let output = call
            .send()
            .await
            .map_err(|error| classify("ChangeMessageVisibilityBatch", error))?;
        Ok(entry_results(changes.len(), output.failed()))
    }

    async fn send(&self, message: SendMessage) -> Result<String, BackendError> {
        let mut call = self
            .client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(message.body)
            .set_message_group_id(message.group_id)
            .set_message_deduplication_id(message.deduplication_id);
        if let Some(delay) = message.delay {
            call = call.delay_seconds(seconds_i32(whole_seconds(delay)));
        }
        for (name, attribute) in message.attributes {
            let value = MessageAttributeValue::builder()
                .data_type(attribute.data_type)
                .set_string_value(attribute.string_value)
                .set_binary_value(attribute.binary_value.map(Blob::new))
                .build()
                .map_err(|error| build_error("SendMessage", error))?;
            call = call.message_attributes(name, value);
        }
        let output = call
            .send()
            .await
            .map_err(|error| classify("SendMessage", error))?;
        Ok(output.message_id.unwrap_or_default())
    }

    async fn attributes(&self) -> Result<QueueAttributes, BackendError> {
        let output = self
            .client
            .get_queue_attributes()
            .queue_url(&self.queue_url)
            .attribute_names(QueueAttributeName::All)
            .send()
            .await
            .map_err(|error| classify("GetQueueAttributes", error))?;
        let attributes = output.attributes.unwrap_or_default();
        let number = |name: QueueAttributeName| -> u64 {
            attributes
                .get(&name)
                .and_then(|value| value.parse().ok())
                .unwrap_or(0)
        };
        let flag = |name: QueueAttributeName| attributes.get(&name).is_some_and(|on| on == "true");
        Ok(QueueAttributes {
            counts: QueueCounts {
                visible: number(QueueAttributeName::ApproximateNumberOfMessages),
                not_visible: number(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
                delayed: number(QueueAttributeName::ApproximateNumberOfMessagesDelayed),
            },
            visibility_timeout: Duration::from_secs(number(QueueAttributeName::VisibilityTimeout)),
            redrive_policy: attributes
                .get(&QueueAttributeName::RedrivePolicy)
                .and_then(|policy| parse_redrive_policy(policy)),
            fifo: flag(QueueAttributeName::FifoQueue),
            content_based_deduplication: flag(QueueAttributeName::ContentBasedDeduplication),
        })
    }
}

/// The last path segment of a queue URL is the queue's name.
fn queue_name(queue_url: &str) -> &str {
    queue_url
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(queue_url)
}

fn seconds_i32(seconds: u64) -> i32 {
    i32::try_from(seconds).unwrap_or(i32::MAX)
}

fn received_message(message: aws_sdk_sqs::types::Message) -> Option<ReceivedMessage> {
    let (Some(message_id), Some(receipt_handle)) = (message.message_id, message.receipt_handle)
    else {
        tracing::warn!("SQS returned a message without id or receipt handle; skipped");
        return None;
    };
    let attributes = message
        .attributes
        .unwrap_or_default()
        .into_iter()
        .map(|(name, value)| (name.as_str().to_owned(), value))
        .collect();
    let message_attributes = message
        .message_attributes
        .unwrap_or_default()
        .into_iter()
        .map(|(name, value)| {
            let attribute = MessageAttribute {
                data_type: value.data_type,
                string_value: value.string_value,
                binary_value: value.binary_value.map(|blob| blob.into_inner()),
            };
            (name, attribute)
        })
        .collect();
    Some(ReceivedMessage {
        message_id,
        receipt_handle: ReceiptHandle::new(receipt_handle),
        body: message.body.unwrap_or_default(),
        md5_of_body: message.md5_of_body,
        attributes,
        message_attributes,
    })
}

/// One result per request entry (ids are the entries' indexes), from the failed list.
fn entry_results(len: usize, failed: &[BatchResultErrorEntry]) -> Vec<EntryResult> {
    let mut results: Vec<EntryResult> = vec![Ok(()); len];
    for failure in failed {
        let Some(result) = failure
            .id()
            .parse::<usize>()
            .ok()
            .and_then(|index| results.get_mut(index))
        else {
            tracing::warn!(
                id = failure.id(),
                "SQS reported a failure for an unknown batch entry"
            );
            continue;
        };
        let code = failure.code();
        let kind = if code.ends_with("ReceiptHandleIsInvalid") {
            EntryErrorKind::InvalidReceiptHandle
        } else if failure.sender_fault() {
            EntryErrorKind::Rejected
        } else {
            EntryErrorKind::Internal
        };
        *result = Err(EntryError {
            kind,
            code: code.to_owned(),
            message: failure.message().unwrap_or_default().to_owned(),
        });
    }
    results
}

fn parse_redrive_policy(policy: &str) -> Option<RedrivePolicy> {
    let value: serde_json::Value = serde_json::from_str(policy).ok()?;
    let target = value.get("deadLetterTargetArn")?.as_str()?.to_owned();
    // SQS writes maxReceiveCount as a string in some responses and a number in others.
    let count = value.get("maxReceiveCount")?;
    let max_receive_count = count
        .as_u64()
        .or_else(|| count.as_str().and_then(|count| count.parse().ok()))?;
    Some(RedrivePolicy {
        dead_letter_target: target,
        max_receive_count: u32::try_from(max_receive_count).ok()?,
    })
}

fn build_error(operation: &'static str, error: impl std::fmt::Display) -> BackendError {
    BackendError::Rejected {
        operation,
        code: "InvalidRequest".to_owned(),
        message: error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_name_is_the_last_url_segment() {
        assert_eq!(
            queue_name("https://sqs.eu-west-1.amazonaws.com/123456789012/orders"),
            "orders"
        );
        assert_eq!(
            queue_name("http://127.0.0.1:5000/000000000000/jobs.fifo/"),
            "jobs.fifo"
        );
    }

    #[test]
    fn redrive_policy_accepts_string_or_number_counts() {
        let expected = RedrivePolicy {
            dead_letter_target: "arn:aws:sqs:us-east-1:123456789012:dlq".to_owned(),
            max_receive_count: 5,
        };
        for policy in [
            r#"{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:123456789012:dlq","maxReceiveCount":"5"}"#,
            r#"{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:123456789012:dlq","maxReceiveCount":5}"#,
        ] {
            assert_eq!(parse_redrive_policy(policy), Some(expected.clone()));
        }
        assert_eq!(parse_redrive_policy("not json"), None);
    }

    #[test]
    fn batch_failures_land_on_their_entries() {
        let failed = [
            BatchResultErrorEntry::builder()
                .id("1")
                .code("ReceiptHandleIsInvalid")
                .sender_fault(true)
                .build()
                .expect("valid entry"),
            BatchResultErrorEntry::builder()
                .id("2")
                .code("InternalError")
                .sender_fault(false)
                .build()
                .expect("valid entry"),
        ];
        let results = entry_results(3, &failed);
        assert!(results[0].is_ok());
        let kinds: Vec<_> = results[1..]
            .iter()
            .map(|result| result.as_ref().expect_err("failed entry").kind)
            .collect();
        assert_eq!(
            kinds,
            [
                EntryErrorKind::InvalidReceiptHandle,
                EntryErrorKind::Internal
            ]
        );
    }
}
