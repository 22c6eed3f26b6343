//! Wrapping a backend: change some of its calls, pass the rest on.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use super::{
    Backend, EntryResult, QueueAttributes, ReceiptHandle, ReceiveRequest, ReceivedMessage,
    SendMessage, VisibilityChange,
};
use crate::error::BackendError;

/// A wrapper around a backend that changes some of its calls: each call it does not
/// write goes on to [`inner`](Self::inner) as it is. Fault injection, recording or a
/// queue under another name take a method or two this way, not all of [`Backend`]'s.
/// A worker runs on it through [`Intercepted`].
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
///
/// use spotq::backend::{Backend, Intercept, Intercepted, ReceiveRequest, ReceivedMessage};
/// use spotq::{backend::BackendError, EmbeddedQueue};
///
/// /// Counts the receives, and leaves the rest to the queue.
/// #[derive(Debug)]
/// struct Counted(EmbeddedQueue, AtomicUsize);
///
/// #[async_trait::async_trait]
/// impl Intercept for Counted {
///     type Inner = EmbeddedQueue;
///
///     fn inner(&self) -> &EmbeddedQueue {
///         &self.0
///     }
///
///     async fn receive(
///         &self,
///         request: ReceiveRequest,
///     ) -> Result<Vec<ReceivedMessage>, BackendError> {
///         self.1.fetch_add(1, Ordering::Relaxed);
///         self.0.receive(request).await
///     }
/// }
///
/// let backend = Intercepted(Counted(EmbeddedQueue::new("jobs"), AtomicUsize::new(0)));
/// # let _ = spotq::Worker::builder(backend);
/// ```
#[async_trait]
pub trait Intercept: Send + Sync + fmt::Debug + 'static {
    /// The backend the calls go on to.
    type Inner: Backend;

    /// The wrapped backend.
    fn inner(&self) -> &Self::Inner;

    /// [`Backend::name`].
    fn name(&self) -> &str {
        self.inner().name()
    }

    /// [`Backend::receive_cancel_safe`].
    fn receive_cancel_safe(&self) -> bool {
        self.inner().receive_cancel_safe()
    }

    /// [`Backend::receive`].
    async fn receive(&self, request: ReceiveRequest) -> Result<Vec<ReceivedMessage>, BackendError> {
        self.inner().receive(request).await
    }

    /// [`Backend::delete_batch`].
    async fn delete_batch(
        &self,
        handles: &[ReceiptHandle],
    ) -> Result<Vec<EntryResult>, BackendError> {
        self.inner().delete_batch(handles).await
    }

    /// [`Backend::change_visibility_batch`].
    async fn change_visibility_batch(
        &self,
        changes: &[VisibilityChange],
    ) -> Result<Vec<EntryResult>, BackendError> {
        self.inner().change_visibility_batch(changes).await
    }

    /// [`Backend::attributes`].
    async fn attributes(&self) -> Result<QueueAttributes, BackendError> {
        self.inner().attributes().await
    }

    /// [`Backend::send`].
    async fn send(&self, message: SendMessage) -> Result<String, BackendError> {
        self.inner().send(message).await
    }
}

/// The [`Backend`] an [`Intercept`] makes.
#[derive(Clone, Debug)]
pub struct Intercepted<I>(pub I);

#[async_trait]
impl<I: Intercept> Backend for Intercepted<I> {
    fn name(&self) -> &str {
        self.0.name()
    }

    fn receive_cancel_safe(&self) -> bool {
        self.0.receive_cancel_safe()
    }

    async fn receive(&self, request: ReceiveRequest) -> Result<Vec<ReceivedMessage>, BackendError> {
        self.0.receive(request).await
    }

    async fn delete_batch(
        &self,
        handles: &[ReceiptHandle],
    ) -> Result<Vec<EntryResult>, BackendError> {
        self.0.delete_batch(handles).await
    }

    async fn change_visibility_batch(
        &self,
        changes: &[VisibilityChange],
    ) -> Result<Vec<EntryResult>, BackendError> {
        self.0.change_visibility_batch(changes).await
    }

    async fn attributes(&self) -> Result<QueueAttributes, BackendError> {
        self.0.attributes().await
    }

    async fn send(&self, message: SendMessage) -> Result<String, BackendError> {
        self.0.send(message).await
    }
}

/// A shared wrapper, so a test can keep it to look at what it recorded.
#[async_trait]
impl<I: Intercept + ?Sized> Intercept for Arc<I> {
    type Inner = I::Inner;

    fn inner(&self) -> &I::Inner {
        (**self).inner()
    }

    fn name(&self) -> &str {
        (**self).name()
    }

    fn receive_cancel_safe(&self) -> bool {
        (**self).receive_cancel_safe()
    }

    async fn receive(&self, request: ReceiveRequest) -> Result<Vec<ReceivedMessage>, BackendError> {
        (**self).receive(request).await
    }

    async fn delete_batch(
        &self,
        handles: &[ReceiptHandle],
    ) -> Result<Vec<EntryResult>, BackendError> {
        (**self).delete_batch(handles).await
    }

    async fn change_visibility_batch(
        &self,
        changes: &[VisibilityChange],
    ) -> Result<Vec<EntryResult>, BackendError> {
        (**self).change_visibility_batch(changes).await
    }

    async fn attributes(&self) -> Result<QueueAttributes, BackendError> {
        (**self).attributes().await
    }

    async fn send(&self, message: SendMessage) -> Result<String, BackendError> {
        (**self).send(message).await
    }
}
