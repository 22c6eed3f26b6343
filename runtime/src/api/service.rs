//! Handlers as [`tower::Service`]s, and tower's layers around them.
//!
//! A handler is a service over the message: [`HandlerService`] turns a [`Handler`] (an
//! `async fn`) into one, [`ServiceHandler`] turns any service back into a handler, so a
//! worker takes `tower`'s middleware ([`Timeout`], [`ConcurrencyLimit`], [`RateLimit`]
//! behind a [`Buffer`]) and a user's own, through
//! [`WorkerBuilder::layer`](crate::WorkerBuilder::layer).
//!
//! The service is cloned per call, as tower's users (`tower::buffer`, axum) do: the
//! instance a poller got ready is the one the next message is called on, and a clone
//! takes its place; every other message gets ready on a clone of its own. A message
//! whose instance is ready at once is called as it is handed over, as a plain handler
//! is; one whose instance is not gets ready in its own task. Calls never wait for each
//! other, neither while their service gets ready nor while it runs: a service that
//! sets something up per call while it gets ready (a pooled connection, say) does that
//! for the messages of a receive side by side.
//!
//! So the service must be `Clone`, as every tower middleware is when what it wraps is;
//! one that is not (tower's [`RateLimit`]) goes behind a [`Buffer`] of one, whose task
//! calls it one request at a time ([`ServiceHandler`] says why a bound of 1). Rust
//! cannot pick a path by whether a type is `Clone`, and a second path that locks would
//! be that buffer without its task.
//!
//! Before a poller takes slots it waits until every message already handed to the
//! service has got ready and been called, and then for the service to be ready: a layer
//! that holds messages back (a rate limit) holds receiving back, and the messages of a
//! receive that wait for their turn are heartbeated like running ones.
//!
//! [`Timeout`]: https://docs.rs/tower/latest/tower/timeout/struct.Timeout.html
//! [`ConcurrencyLimit`]: https://docs.rs/tower/latest/tower/limit/struct.ConcurrencyLimit.html
//! [`RateLimit`]: https://docs.rs/tower/latest/tower/limit/struct.RateLimit.html
//! [`Buffer`]: https://docs.rs/tower/latest/tower/buffer/struct.Buffer.html

use std::convert::Infallible;
use std::fmt;
use std::future::{Future, poll_fn};
use std::mem;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use tokio::sync::Notify;
use tower::Service;

use crate::api::batch::{BatchHandler, BatchOutcome, IntoBatchOutcome};
use crate::api::handler::{Handler, IntoOutcome, Outcome};
use crate::api::message::Message;
use crate::error::BoxError;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A [`Handler`] or [`BatchHandler`] as a [`tower::Service`]: always ready, never
/// failing (a handler's failure is its [`Outcome`]). This is what a worker's layers
/// wrap.
pub struct HandlerService<H>(Arc<H>);

impl<H> HandlerService<H> {
    /// The handler as a service.
    pub fn new(handler: H) -> Self {
        Self(Arc::new(handler))
    }
}

impl<H> Clone for HandlerService<H> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<H> fmt::Debug for HandlerService<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HandlerService")
    }
}

impl<H: Handler> Service<Message> for HandlerService<H> {
    type Response = Outcome;
    type Error = Infallible;
    type Future = BoxFuture<Result<Outcome, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, message: Message) -> Self::Future {
        let handling = self.0.handle(message);
        Box::pin(async move { Ok(handling.await) })
    }
}

impl<B: BatchHandler> Service<Vec<Message>> for HandlerService<B> {
    type Response = BatchOutcome;
    type Error = Infallible;
    type Future = BoxFuture<Result<BatchOutcome, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, messages: Vec<Message>) -> Self::Future {
        let handling = self.0.handle(messages);
        Box::pin(async move { Ok(handling.await) })
    }
}

/// A [`tower::Service`] as a handler: a service over [`Message`] is a [`Handler`], one
/// over `Vec<Message>` a [`BatchHandler`]. Its response is what a handler may return
/// ([`IntoOutcome`], [`IntoBatchOutcome`]); its error (a layer's, e.g. tower's timeout)
/// fails the message or the batch, as does an error from `poll_ready`.
///
/// The service is cloned per call, as tower's users do, so it must be `Clone`: the
/// instance a poller got ready is called for the next message and a clone takes its
/// place, and every other message gets ready on a clone of its own, side by side. A
/// service that is not `Clone` (tower's `RateLimit`, which keeps its window in the
/// instance) goes behind tower's `Buffer`, which is:
/// `ServiceBuilder::new().buffer(1).rate_limit(5, Duration::from_secs(1))`. With a bound
/// of 1 the buffer is ready only once the rate limit has taken all but the request it
/// waits with, so a poller, which waits for the service to be ready before it takes
/// permits, still waits for the rate; a larger bound lets that many more messages wait
/// in the buffer, received and heartbeated.
pub struct ServiceHandler<S> {
    next: Mutex<Next<S>>,
    /// Held by the poller that waits for `next` to get ready, so pollers wait one at a
    /// time: a service keeps one waker, and a second poller (or one that only looks,
    /// with a waker that does nothing) would take the first's place in it. Calls never
    /// take it.
    readying: tokio::sync::Mutex<()>,
    queue: Arc<Untaken>,
}

/// The instance the next request is called on.
struct Next<S> {
    service: S,
    /// The poller waiting for `service` to get ready. A request that takes `service`
    /// wakes it, so that it polls the clone left in its place: the instance taken wakes
    /// the request's task from then on.
    poller: Option<Waker>,
}

impl<S> ServiceHandler<S> {
    /// The service as a handler.
    pub fn new(service: S) -> Self {
        Self {
            next: Mutex::new(Next {
                service,
                poller: None,
            }),
            readying: tokio::sync::Mutex::new(()),
            queue: Arc::default(),
        }
    }

    /// The lock is held only for a clone or one `poll_ready`, never across an await. A
    /// panic in either (the service's code) fails one message, not every later one too:
    /// poisoning is ignored, and the instance is used as the panic left it.
    fn next(&self) -> MutexGuard<'_, Next<S>> {
        self.next.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the instance the next request is called on (the one a poller may have got
    /// ready), leaving a clone in its place.
    fn take(&self) -> S
    where
        S: Clone,
    {
        let (service, poller) = {
            let mut next = self.next();
            let clone = next.service.clone();
            (mem::replace(&mut next.service, clone), next.poller.take())
        };
        if let Some(poller) = poller {
            poller.wake();
        }
        service
    }

    /// Calls the service for one request: at once when the instance taken is ready (the
    /// one a poller got ready is), so the message's task holds only the call's future;
    /// otherwise in that task once it is ready, the request counting as waiting until
    /// then.
    fn call<R>(&self, request: R) -> impl Future<Output = Result<S::Response, BoxError>> + use<S, R>
    where
        S: Service<R> + Clone,
        S::Error: Into<BoxError>,
    {
        let mut service = self.take();
        // A look without a waker: a service that is not ready yet is polled again, with
        // the task's, before anything waits for it.
        let ready = service.poll_ready(&mut Context::from_waker(Waker::noop()));
        let started = match ready {
            Poll::Ready(Ok(())) => Started::Called(service.call(request)),
            Poll::Ready(Err(error)) => Started::Failed(error.into()),
            Poll::Pending => {
                let waiting = UntakenCall::new(&self.queue);
                // Boxed, so the tasks of calls made at once have no room for the
                // instance and the request.
                Started::Waiting(Box::pin(async move {
                    poll_fn(|cx| service.poll_ready(cx)).await?;
                    let future = service.call(request);
                    drop(waiting);
                    Ok::<_, S::Error>(future)
                }))
            }
        };
        async move {
            let future = match started {
                Started::Called(future) => future,
                Started::Failed(error) => return Err(error),
                Started::Waiting(getting_ready) => getting_ready.await.map_err(Into::into)?,
            };
            future.await.map_err(Into::into)
        }
    }

    /// Resolves once no request handed to the service waits for it and the service is
    /// ready: what the poller waits for before it takes slots. Without the first
    /// part, a poller would find the service ready again before the messages it just
    /// received had taken that readiness. A service that fails to get ready is left to
    /// fail the next message, which asks again.
    async fn ready<R>(&self)
    where
        S: Service<R>,
    {
        self.queue.drained().await;
        let _readying = self.readying.lock().await;
        // The error is the next call's: it fails that message.
        let _ready = poll_fn(|cx| {
            let mut next = self.next();
            let polled = next.service.poll_ready(cx);
            next.poller = polled.is_pending().then(|| cx.waker().clone());
            polled
        })
        .await;
    }
}

/// How a call to the service began.
enum Started<F, G> {
    /// The service was ready: the call's future.
    Called(F),
    /// It failed to get ready.
    Failed(BoxError),
    /// It was not ready yet: getting it ready and calling it.
    Waiting(Pin<Box<G>>),
}

impl<S> fmt::Debug for ServiceHandler<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ServiceHandler")
    }
}

/// The requests handed to a service that it has not taken yet.
#[derive(Debug, Default)]
struct Untaken {
    waiting: AtomicUsize,
    drained: Notify,
}

impl Untaken {
    async fn drained(&self) {
        loop {
            let drained = self.drained.notified();
            if self.waiting.load(Ordering::Acquire) == 0 {
                return;
            }
            drained.await;
        }
    }
}

/// One request waiting for the service; dropped once the service took it, or when its
/// message is given up.
struct UntakenCall(Arc<Untaken>);

impl UntakenCall {
    fn new(queue: &Arc<Untaken>) -> Self {
        queue.waiting.fetch_add(1, Ordering::AcqRel);
        Self(Arc::clone(queue))
    }
}

impl Drop for UntakenCall {
    fn drop(&mut self) {
        if self.0.waiting.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.drained.notify_waiters();
        }
    }
}

#[diagnostic::do_not_recommend]
impl<S> Handler for ServiceHandler<S>
where
    S: Service<Message> + Clone + Send + 'static,
    S::Response: IntoOutcome,
    S::Error: Into<BoxError>,
    S::Future: Send,
{
    fn handle(&self, message: Message) -> impl Future<Output = Outcome> + Send + 'static {
        let handling = self.call(message);
        async move {
            match handling.await {
                Ok(response) => response.into_outcome(),
                Err(error) => Outcome::fail(error),
            }
        }
    }

    fn ready(&self) -> impl Future<Output = ()> + Send + '_ {
        ServiceHandler::ready::<Message>(self)
    }
}

#[diagnostic::do_not_recommend]
impl<S> BatchHandler for ServiceHandler<S>
where
    S: Service<Vec<Message>> + Clone + Send + 'static,
    S::Response: IntoBatchOutcome,
    S::Error: Into<BoxError>,
    S::Future: Send,
{
    fn handle(
        &self,
        messages: Vec<Message>,
    ) -> impl Future<Output = BatchOutcome> + Send + 'static {
        let handling = self.call(messages);
        async move {
            match handling.await {
                Ok(response) => response.into_batch_outcome(),
                Err(error) => BatchOutcome::fail(error),
            }
        }
    }

    fn ready(&self) -> impl Future<Output = ()> + Send + '_ {
        ServiceHandler::ready::<Vec<Message>>(self)
    }
}
