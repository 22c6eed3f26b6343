//! How the layers of a [`WorkerBuilder`](crate::WorkerBuilder) wrap its handler.

use tower::Service;
use tower::layer::Layer;
use tower::layer::util::{Identity, Stack};

use crate::api::batch::{BatchHandler, IntoBatchOutcome};
use crate::api::handler::{Handler, IntoOutcome};
use crate::api::message::Message;
use crate::api::service::{HandlerService, ServiceHandler};
use crate::engine::dispatch::Dispatch;
use crate::engine::task::{PerBatch, PerMessage};
use crate::error::BoxError;

/// Layers that wrap a handler of kind `D` ([`PerMessage`] or [`PerBatch`]). Without
/// layers the handler is called as it is; with layers it is called as a
/// [`HandlerService`] inside them, through a [`ServiceHandler`].
#[diagnostic::on_unimplemented(
    message = "these layers do not wrap a `{D}`",
    note = "a per-message worker's layers must take a `tower::Service<spotq::Message>`, \
            a batch worker's a `tower::Service<Vec<spotq::Message>>`; the service they \
            make must be `Clone + Send + 'static` with a `Send` future, respond with what a \
            handler may return and fail with an error that converts into `BoxError`",
    note = "the service is cloned per call: a layer whose service is not `Clone` (tower's \
            `RateLimit`) goes behind `tower::buffer::BufferLayer`, e.g. \
            `ServiceBuilder::new().buffer(1).rate_limit(..)`"
)]
pub trait Wrap<D> {
    /// The handler the worker calls.
    type Dispatch: Dispatch;

    /// Wraps the handler.
    fn wrap(self, handler: D) -> Self::Dispatch;
}

impl<H: Handler> Wrap<PerMessage<H>> for Identity {
    type Dispatch = PerMessage<H>;

    fn wrap(self, handler: PerMessage<H>) -> PerMessage<H> {
        handler
    }
}

impl<B: BatchHandler> Wrap<PerBatch<B>> for Identity {
    type Dispatch = PerBatch<B>;

    fn wrap(self, handler: PerBatch<B>) -> PerBatch<B> {
        handler
    }
}

impl<H, Inner, Outer, S> Wrap<PerMessage<H>> for Stack<Inner, Outer>
where
    H: Handler,
    Self: Layer<HandlerService<H>, Service = S>,
    S: Service<Message> + Clone + Send + 'static,
    S::Response: IntoOutcome,
    S::Error: Into<BoxError>,
    S::Future: Send,
{
    type Dispatch = PerMessage<ServiceHandler<S>>;

    fn wrap(self, handler: PerMessage<H>) -> Self::Dispatch {
        PerMessage(ServiceHandler::new(
            self.layer(HandlerService::new(handler.0)),
        ))
    }
}

impl<B, Inner, Outer, S> Wrap<PerBatch<B>> for Stack<Inner, Outer>
where
    B: BatchHandler,
    Self: Layer<HandlerService<B>, Service = S>,
    S: Service<Vec<Message>> + Clone + Send + 'static,
    S::Response: IntoBatchOutcome,
    S::Error: Into<BoxError>,
    S::Future: Send,
{
    type Dispatch = PerBatch<ServiceHandler<S>>;

    fn wrap(self, handler: PerBatch<B>) -> Self::Dispatch {
        PerBatch(ServiceHandler::new(
            self.layer(HandlerService::new(handler.0)),
        ))
    }
}
