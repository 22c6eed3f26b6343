//! What a handler takes: decoders from a [`Message`] to a handler's input.
//!
//! `#[spotq::worker]` expands to these, and a hand-written handler can use them too.
//! Besides the message itself ([`raw`]), a JSON body ([`json`]) and Lambda's form
//! ([`lambda`]), two inputs unwrap what other AWS services wrap a message in before it
//! reaches the queue: [`Sns<T>`] (an SNS topic's notification, raw delivery or not)
//! and [`EventBridge<T>`] (an EventBridge rule's event).
//! Each returns the input and the message's [`Context`]; a decoder that fails returns
//! [`HandlerError::Decode`], a failure of that one message: counted, retried per the
//! retry policy and, after the queue's `maxReceiveCount`, moved to the dead-letter queue
//! by the queue's redrive policy. It never stops the worker or other messages.
//!
//! ```
//! use spotq::{Context, Message, Outcome, handler::input};
//!
//! #[derive(serde::Deserialize)]
//! struct Order {
//!     id: u64,
//! }
//!
//! async fn handle_order(order: Order, cx: &Context) -> Result<(), std::io::Error> {
//!     println!("order {} (receive #{})", order.id, cx.receive_count());
//!     Ok(())
//! }
//!
//! // What `#[spotq::worker]` writes for `handle_order`.
//! async fn handler(message: Message) -> Outcome {
//!     match input::json::<Order>(message) {
//!         Ok((order, cx)) => spotq::handler::IntoOutcome::into_outcome(handle_order(order, &cx).await),
//!         Err(error) => Outcome::Fail(error),
//!     }
//! }
//! ```

use std::collections::HashMap;
use std::future::Future;

use aws_lambda_events::encodings::Base64Data;
use aws_lambda_events::sqs::{SqsMessage, SqsMessageAttribute};
use serde::de::DeserializeOwned;

pub use crate::api::envelope::{EventBridge, Sns, event_bridge, sns};

use crate::api::batch::{BatchOutcome, IntoBatchOutcome, ItemFailure};
use crate::api::message::{Context, Message};
use crate::backend::{MessageAttribute, ReceiptHandle, ReceivedMessage};
use crate::error::{DecodeError, HandlerError};

/// The body decoded from JSON into `T`. A body that does not decode is a
/// [`HandlerError::Decode`] holding a [`DecodeError`]: its text says where and what kind
/// of error (safe to log), never what the body holds.
pub fn json<T: DeserializeOwned>(message: Message) -> Result<(T, Context), HandlerError> {
    let (body, context) = message.into_parts();
    match serde_json::from_str(&body) {
        Ok(input) => Ok((input, context)),
        Err(error) => Err(HandlerError::Decode(Box::new(DecodeError::json(
            &error,
            std::any::type_name::<T>(),
        )))),
    }
}

/// The message itself, and a copy of its context.
pub fn raw(message: Message) -> Result<(Message, Context), HandlerError> {
    let context = message.context().clone();
    Ok((message, context))
}

/// The message as a Lambda SQS event record.
pub fn lambda(message: Message) -> Result<(SqsMessage, Context), HandlerError> {
    let mut record = SqsMessage::default();
    record.message_id = Some(message.id().to_owned());
    record.receipt_handle = Some(message.receipt_handle().as_str().to_owned());
    record.md5_of_body = message.md5_of_body().map(str::to_owned);
    record.event_source = Some("aws:sqs".to_owned());
    let (body, context) = message.into_parts();
    record.body = Some(body);
    record.attributes = context.attributes().clone();
    record.message_attributes = context
        .message_attributes()
        .iter()
        .map(|(name, value)| (name.clone(), to_lambda_attribute(value)))
        .collect();
    Ok((record, context))
}

/// Runs a batch handler on the decoded messages of a batch. A message that does not
/// decode fails on its own and the handler never sees it; the handler's outcome covers
/// the rest (its failures name messages by [`Message::id`], as Lambda's
/// `batchItemFailures` do).
pub async fn batch<X, F, Fut>(
    messages: Vec<Message>,
    decode: impl Fn(Message) -> Result<(X, Context), HandlerError>,
    handler: F,
) -> BatchOutcome
where
    F: FnOnce(Vec<X>) -> Fut,
    Fut: Future<Output: IntoBatchOutcome>,
{
    let mut inputs = Vec::with_capacity(messages.len());
    let mut decoded = Vec::with_capacity(messages.len());
    let mut failures = Vec::new();
    for message in messages {
        let id = message.id().to_owned();
        match decode(message) {
            Ok((input, _context)) => {
                inputs.push(input);
                decoded.push(id);
            }
            Err(error) => failures.push(ItemFailure {
                message_id: id,
                error,
            }),
        }
    }
    if inputs.is_empty() {
        return BatchOutcome::failures(failures);
    }
    match handler(inputs).await.into_batch_outcome() {
        BatchOutcome::Ack => BatchOutcome::failures(failures),
        BatchOutcome::Partial(more) => BatchOutcome::failures(failures.into_iter().chain(more)),
        BatchOutcome::Fail(error) if failures.is_empty() => BatchOutcome::Fail(error),
        BatchOutcome::Fail(error) => {
            // The batch's error fails every message the handler saw.
            let shared = error.to_string();
            let handled = decoded.into_iter().map(|message_id| ItemFailure {
                message_id,
                error: HandlerError::failed(shared.clone()),
            });
            BatchOutcome::failures(failures.into_iter().chain(handled))
        }
    }
}

/// A Lambda SQS event record as the message a handler takes (a Lambda function runs
/// the same handlers as a worker).
pub fn from_lambda(record: SqsMessage) -> ReceivedMessage {
    ReceivedMessage {
        message_id: record.message_id.unwrap_or_default(),
        receipt_handle: ReceiptHandle::new(record.receipt_handle.unwrap_or_default()),
        body: record.body.unwrap_or_default(),
        md5_of_body: record.md5_of_body,
        attributes: record.attributes,
        message_attributes: record
            .message_attributes
            .into_iter()
            .map(|(name, value)| (name, from_lambda_attribute(value)))
            .collect::<HashMap<_, _>>(),
    }
}

fn to_lambda_attribute(attribute: &MessageAttribute) -> SqsMessageAttribute {
    let mut value = SqsMessageAttribute::default();
    value.data_type = Some(attribute.data_type.clone());
    value.string_value = attribute.string_value.clone();
    value.binary_value = attribute.binary_value.clone().map(|bytes| {
        let mut data = Base64Data::default();
        *data = bytes;
        data
    });
    value
}

fn from_lambda_attribute(value: SqsMessageAttribute) -> MessageAttribute {
    MessageAttribute {
        data_type: value.data_type.unwrap_or_else(|| "String".to_owned()),
        string_value: value.string_value,
        binary_value: value.binary_value.map(|data| data.to_vec()),
    }
}
