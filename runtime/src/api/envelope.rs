//! Envelopes other AWS services wrap a message in before it reaches the queue: an SNS
//! notification (a topic fanned out to the queue) and an EventBridge event (a rule whose
//! target is the queue). Each is an input type that unwraps its envelope and decodes
//! what is inside from JSON, with the envelope's fields beside it.

use std::collections::HashMap;
use std::ops::{Deref, DerefMut};

use aws_lambda_events::eventbridge::EventBridgeEvent;
use aws_lambda_events::sns::{MessageAttribute as SnsAttribute, SnsMessage};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use crate::api::message::{Context, Message};
use crate::backend::MessageAttribute;
use crate::error::{DecodeError, HandlerError};

/// A message an SNS topic delivered to the queue: the published message decoded from
/// JSON as `T`, and the notification's fields.
///
/// It reads both ways a subscription delivers:
///
/// - **wrapped** (the default): the body is SNS's JSON notification (`"Type":
///   "Notification"`, `TopicArn`, `MessageId`, `Message`, …); `T` is decoded from its
///   `Message`, and [`notification`](Self::notification) holds the rest.
/// - **raw** (`RawMessageDelivery` on the subscription): the body is the published
///   message itself, decoded as `T`; SNS sends none of its fields, so `notification` is
///   `None`, and the message attributes arrive as the SQS message's attributes.
///
/// A body is read as a notification when it is a JSON object naming a `TopicArn`. One
/// that names it but is not a notification (a required field missing, or an SNS
/// `SubscriptionConfirmation`, which a queue subscribed from another account receives
/// first) and is not a `T` either fails as [`DecodeErrorKind::Envelope`]: a failure of
/// that message, retried and then dead-lettered like any decode failure.
///
/// [`DecodeErrorKind::Envelope`]: crate::handler::DecodeErrorKind::Envelope
///
/// ```
/// use spotq::handler::input::Sns;
///
/// #[derive(serde::Deserialize)]
/// struct Order {
///     id: u64,
/// }
///
/// async fn handle(order: Sns<Order>) -> Result<(), std::io::Error> {
///     // `Sns<T>` derefs to `T`.
///     println!("order {} from {:?}", order.id, order.topic_arn());
///     Ok(())
/// }
/// # let _ = handle;
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Sns<T> {
    /// The published message, decoded.
    pub message: T,
    /// The notification's fields (topic ARN, SNS message id, subject, timestamp,
    /// signature), or `None` with raw delivery. Its `message` is empty (the text was
    /// decoded into [`message`](Self::message)) and its `message_attributes` are moved to
    /// [`attributes`](Self::attributes).
    pub notification: Option<SnsMessage>,
    /// The message attributes the publisher set, as SNS's notification writes them
    /// (`Type` and `Value`; a binary value in base64). With raw delivery: the SQS message
    /// attributes SNS made of them, written the same way.
    pub attributes: HashMap<String, SnsAttribute>,
}

impl<T> Sns<T> {
    /// The topic the message was published to (wrapped delivery only).
    pub fn topic_arn(&self) -> Option<&str> {
        self.notification.as_ref().map(|n| n.topic_arn.as_str())
    }

    /// SNS's id of the published message (wrapped delivery only): the same on every
    /// delivery of one publish, unlike the SQS message id.
    pub fn message_id(&self) -> Option<&str> {
        self.notification.as_ref().map(|n| n.message_id.as_str())
    }

    /// The subject the publisher set, if any (wrapped delivery only).
    pub fn subject(&self) -> Option<&str> {
        self.notification.as_ref()?.subject.as_deref()
    }

    /// When SNS accepted the publish (wrapped delivery only).
    pub fn timestamp(&self) -> Option<DateTime<Utc>> {
        self.notification.as_ref().map(|n| n.timestamp)
    }

    /// The string value of the message attribute `name` (a binary value in base64).
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes.get(name).map(|value| value.value.as_str())
    }

    /// Takes the published message out.
    pub fn into_message(self) -> T {
        self.message
    }
}

impl<T> Deref for Sns<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.message
    }
}

impl<T> DerefMut for Sns<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.message
    }
}

/// An EventBridge event a rule delivered to the queue: its `detail` decoded from JSON as
/// `T`, and the event's fields (`source`, `detail-type`, `time`, …).
///
/// A body that is not an event (not JSON, or without `source` and `detail-type`) fails
/// as [`DecodeErrorKind::Envelope`]; a `detail` that is not a `T` as a JSON decode error
/// of the detail. Either is a failure of that message, retried and then dead-lettered.
///
/// [`DecodeErrorKind::Envelope`]: crate::handler::DecodeErrorKind::Envelope
///
/// ```
/// use spotq::handler::input::EventBridge;
///
/// #[derive(serde::Deserialize)]
/// struct StateChange {
///     state: String,
/// }
///
/// async fn handle(event: EventBridge<StateChange>) -> Result<(), std::io::Error> {
///     println!("{} from {}: {}", event.detail_type(), event.source(), event.detail.state);
///     Ok(())
/// }
/// # let _ = handle;
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct EventBridge<T> {
    /// The event's `detail`, decoded.
    pub detail: T,
    /// The event's other fields; its own `detail` is `()` (it was decoded into
    /// [`detail`](Self::detail)).
    pub event: EventBridgeEvent<()>,
}

impl<T> EventBridge<T> {
    /// The event's `source` (`aws.ec2`, `com.example.orders`).
    pub fn source(&self) -> &str {
        &self.event.source
    }

    /// The event's `detail-type`.
    pub fn detail_type(&self) -> &str {
        &self.event.detail_type
    }

    /// When the event happened, as its producer says.
    pub fn time(&self) -> Option<DateTime<Utc>> {
        self.event.time
    }

    /// The event's id.
    pub fn id(&self) -> Option<&str> {
        self.event.id.as_deref()
    }

    /// Takes the detail out.
    pub fn into_detail(self) -> T {
        self.detail
    }
}

impl<T> Deref for EventBridge<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.detail
    }
}

impl<T> DerefMut for EventBridge<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.detail
    }
}

/// Where in an envelope a decode error happened, as the errors say it.
const SNS_NOTIFICATION: &str = "an SNS notification";
const SNS_MESSAGE: &str = "the SNS notification's `Message`";
const EVENT: &str = "an EventBridge event";
const EVENT_DETAIL: &str = "the EventBridge event's `detail`";

/// The body as an SNS delivery ([`Sns`]), wrapped or raw, with `T` decoded from the
/// published message.
pub fn sns<T: DeserializeOwned>(message: Message) -> Result<(Sns<T>, Context), HandlerError> {
    let (body, context) = message.into_parts();
    let input_type = std::any::type_name::<T>();
    if names_a_topic(&body) {
        match serde_json::from_str::<SnsMessage>(&body) {
            Ok(notification) => return wrapped(notification, context),
            // A raw message that happens to name a `TopicArn` is still a `T`.
            Err(error) => match serde_json::from_str(&body) {
                Ok(message) => return Ok(raw(message, context)),
                Err(_) => return Err(decode(sns_envelope_error(&body, &error, input_type))),
            },
        }
    }
    match serde_json::from_str(&body) {
        Ok(message) => Ok(raw(message, context)),
        Err(error) => Err(decode(DecodeError::json(&error, input_type))),
    }
}

/// A raw delivery: the body was the published message.
fn raw<T>(message: T, context: Context) -> (Sns<T>, Context) {
    let attributes = from_sqs_attributes(context.message_attributes());
    let sns = Sns {
        message,
        notification: None,
        attributes,
    };
    (sns, context)
}

/// A wrapped delivery: `T` is in the notification's `Message`.
fn wrapped<T: DeserializeOwned>(
    mut notification: SnsMessage,
    context: Context,
) -> Result<(Sns<T>, Context), HandlerError> {
    let input_type = std::any::type_name::<T>();
    if notification.sns_message_type != "Notification" {
        let reason = not_a_notification(&notification.sns_message_type);
        return Err(decode(DecodeError::envelope(
            SNS_NOTIFICATION,
            input_type,
            reason,
            None,
        )));
    }
    let text = std::mem::take(&mut notification.message);
    let message = serde_json::from_str(&text)
        .map_err(|error| decode(DecodeError::json(&error, input_type).inside(SNS_MESSAGE)))?;
    let attributes = std::mem::take(&mut notification.message_attributes);
    let sns = Sns {
        message,
        notification: Some(notification),
        attributes,
    };
    Ok((sns, context))
}

/// The body as an EventBridge event ([`EventBridge`]), with `T` decoded from its
/// `detail`.
pub fn event_bridge<T: DeserializeOwned>(
    message: Message,
) -> Result<(EventBridge<T>, Context), HandlerError> {
    let (body, context) = message.into_parts();
    let input_type = std::any::type_name::<T>();
    let event: EventBridgeEvent<Box<RawValue>> = serde_json::from_str(&body).map_err(|error| {
        let reason = "it is not JSON with the fields of an event".to_owned();
        decode(DecodeError::envelope(
            EVENT,
            input_type,
            reason,
            Some(&error),
        ))
    })?;
    let detail = serde_json::from_str(event.detail.get())
        .map_err(|error| decode(DecodeError::json(&error, input_type).inside(EVENT_DETAIL)))?;
    let mut fields = EventBridgeEvent::<()>::default();
    fields.version = event.version;
    fields.id = event.id;
    fields.detail_type = event.detail_type;
    fields.source = event.source;
    fields.account = event.account;
    fields.time = event.time;
    fields.region = event.region;
    fields.resources = event.resources;
    let event = EventBridge {
        detail,
        event: fields,
    };
    Ok((event, context))
}

/// Whether a body claims to be an SNS notification: a JSON object with a `TopicArn`
/// key. A substring search, so a raw body pays nothing like a second parse.
fn names_a_topic(body: &str) -> bool {
    body.trim_start().starts_with('{') && body.contains("\"TopicArn\"")
}

/// Why a body naming a topic is not a notification: its SNS `Type` when it has another
/// (a `SubscriptionConfirmation` says what to do), else what the parse found missing.
fn sns_envelope_error(
    body: &str,
    error: &serde_json::Error,
    input_type: &'static str,
) -> DecodeError {
    #[derive(Deserialize)]
    struct Kind {
        #[serde(rename = "Type")]
        kind: Option<String>,
    }
    let reason = match serde_json::from_str::<Kind>(body)
        .ok()
        .and_then(|kind| kind.kind)
    {
        Some(kind) if kind != "Notification" => not_a_notification(&kind),
        _ => "it names a `TopicArn` but lacks a notification's fields".to_owned(),
    };
    DecodeError::envelope(SNS_NOTIFICATION, input_type, reason, Some(error))
}

/// Why an SNS message of type `kind` is not a notification (a `SubscriptionConfirmation`
/// says what to do about it).
fn not_a_notification(kind: &str) -> String {
    if kind == "SubscriptionConfirmation" {
        return "it is an SNS SubscriptionConfirmation (a subscription from another account \
                is confirmed by visiting its SubscribeURL)"
            .to_owned();
    }
    format!("its `Type` is {kind:?}, not \"Notification\"")
}

/// The SQS message attributes of a raw delivery, written as SNS writes them.
fn from_sqs_attributes(
    attributes: &HashMap<String, MessageAttribute>,
) -> HashMap<String, SnsAttribute> {
    attributes
        .iter()
        .map(|(name, attribute)| {
            let mut value = SnsAttribute::default();
            // SQS's `String.custom` / `Number.int` are SNS's `String` / `Number`.
            value.data_type = attribute
                .data_type
                .split('.')
                .next()
                .unwrap_or_default()
                .to_owned();
            value.value = match (&attribute.string_value, &attribute.binary_value) {
                (Some(text), _) => text.clone(),
                (None, Some(bytes)) => base64::engine::general_purpose::STANDARD.encode(bytes),
                (None, None) => String::new(),
            };
            (name.clone(), value)
        })
        .collect()
}

fn decode(error: DecodeError) -> HandlerError {
    HandlerError::Decode(Box::new(error))
}
