//! moto's calls made as atomic as SQS's, for tests that count deliveries.
//!
//! moto's calls are not atomic, as SQS's are: two receives at once can both take the
//! same message (each checks that it is visible, and its group free, before either
//! marks it taken), and two deletes at once can put a deleted message back (each
//! rebuilds the queue's list of messages without its own and stores it; the last store
//! wins), though both answer success. So a worker with two pollers on moto now and then
//! handles a message twice where SQS would hand it out once. [`InTurn`] sends the
//! receives of all its clones one at a time, and their deletes one at a time.
//!
//! The tests reach it as `support::in_turn`; the test worker binary includes this file
//! by path and runs on it when `SPOTQ_CALLS_IN_TURN` is set
//! (`support::process::Settings::in_turn`).

use std::sync::Arc;

use async_trait::async_trait;
use spotq::backend::{
    Backend, EntryResult, Intercept, Intercepted, ReceiveRequest, ReceivedMessage,
};
use spotq::{SqsBackend, backend::BackendError, backend::ReceiptHandle};

/// A queue whose receives, and whose deletes, from all its clones (every worker, poller
/// and settler that shares it) take turns.
#[derive(Clone, Debug)]
pub struct InTurn {
    queue: SqsBackend,
    receiving: Arc<tokio::sync::Mutex<()>>,
    deleting: Arc<tokio::sync::Mutex<()>>,
}

impl InTurn {
    pub fn new(queue: &SqsBackend) -> Intercepted<Self> {
        Intercepted(Self {
            queue: queue.clone(),
            receiving: Arc::default(),
            deleting: Arc::default(),
        })
    }
}

#[async_trait]
impl Intercept for InTurn {
    type Inner = SqsBackend;

    fn inner(&self) -> &SqsBackend {
        &self.queue
    }

    async fn receive(&self, request: ReceiveRequest) -> Result<Vec<ReceivedMessage>, BackendError> {
        let _turn = self.receiving.lock().await;
        self.queue.receive(request).await
    }

    async fn delete_batch(
        &self,
        handles: &[ReceiptHandle],
    ) -> Result<Vec<EntryResult>, BackendError> {
        let _turn = self.deleting.lock().await;
        self.queue.delete_batch(handles).await
    }
}
