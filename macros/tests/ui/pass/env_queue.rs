//! A queue named by an environment variable, FIFO.
#![deny(warnings)]

#[spotq::worker(queue = env("SPOTQ_UI_PASS_ORDERS_QUEUE"), fifo = true)]
async fn handle(body: String) {
    let _ = body;
}

#[spotq::worker(queue = "https://sqs.eu-west-1.amazonaws.com/123456789012/orders.fifo", fifo = true)]
async fn handle_fifo_url(body: String) {
    let _ = body;
}

fn main() {
    let spec = handle_worker();
    assert_eq!(spec.queue(), &spotq::config::QueueSource::env("SPOTQ_UI_PASS_ORDERS_QUEUE"));
    // Read when the worker starts: unset here, so resolving names the variable.
    let error = spec.queue().resolve().expect_err("unset");
    assert!(error.to_string().contains("SPOTQ_UI_PASS_ORDERS_QUEUE"), "{error}");
    let spec = handle_fifo_url_worker();
    assert_eq!(
        spec.queue().resolve().expect("a URL"),
        "https://sqs.eu-west-1.amazonaws.com/123456789012/orders.fifo"
    );
}
