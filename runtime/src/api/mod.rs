//! What user code sees: the [`Message`](crate::Message) and its
//! [`Context`](crate::Context), the [`Handler`](crate::handler::Handler) and its
//! [`Outcome`](crate::Outcome), batch handlers, handlers as tower services, and the input decoders.

pub(crate) mod batch;
mod envelope;
pub(crate) mod handler;
pub mod input;
pub(crate) mod message;
pub(crate) mod service;
