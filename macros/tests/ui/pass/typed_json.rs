//! A typed JSON handler with its context, in a module, run beside another worker.
#![deny(warnings, missing_docs)]

mod orders {
    use std::fmt;

    /// An order, as the queue carries it.
    #[derive(serde::Deserialize)]
    pub struct Order {
        /// The order's id.
        pub id: u64,
    }

    /// Why an order failed.
    #[derive(Debug)]
    pub struct OrderError;

    impl fmt::Display for OrderError {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("order failed")
        }
    }

    impl std::error::Error for OrderError {}

    /// Handles one order.
    #[spotq::worker(queue = "orders", concurrency = 32)]
    pub async fn handle_order(order: Order, cx: &spotq::Context) -> Result<(), OrderError> {
        if order.id == 0 || cx.message_id().is_empty() {
            return Err(OrderError);
        }
        Ok(())
    }
}

/// A handler without a context, returning nothing.
#[spotq::worker(queue = "invoices")]
async fn handle_invoice(invoice: serde_json::Value) {
    let _ = invoice;
}

fn message(body: &str) -> spotq::Message {
    spotq::Message::detached(spotq::backend::ReceivedMessage {
        message_id: "m-1".to_owned(),
        receipt_handle: spotq::backend::ReceiptHandle::new("r-1"),
        body: body.to_owned(),
        md5_of_body: None,
        attributes: Default::default(),
        message_attributes: Default::default(),
    })
}

fn main() {
    let spec: spotq::WorkerSpec = orders::handle_order_worker();
    assert_eq!(spec.queue(), &spotq::config::QueueSource::name("orders"));
    assert_eq!(spec.config().concurrency, 32);
    assert_eq!(
        spec.config(),
        &spotq::config::WorkerConfig {
            concurrency: 32,
            ..Default::default()
        }
    );
    assert!(!spec.is_batch());

    let spec = handle_invoice_worker();
    assert_eq!(spec.queue(), &spotq::config::QueueSource::name("invoices"));
    assert_eq!(spec.config(), &spotq::config::WorkerConfig::default());

    // Several workers in one process; a future does nothing until awaited.
    let run = spotq::run([orders::handle_order_worker(), handle_invoice_worker()]);
    drop(run);

    // The handler stays callable as written.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let message = message("{}");
    let cx = message.context().clone();
    let result = runtime.block_on(orders::handle_order(orders::Order { id: 7 }, &cx));
    assert!(result.is_ok());
    assert!(runtime.block_on(orders::handle_order(orders::Order { id: 0 }, &cx)).is_err());
    runtime.block_on(handle_invoice(serde_json::json!({ "total": 3 })));
}
