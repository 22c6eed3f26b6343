//! Raw messages, with and without the context, returning an explicit outcome.
#![deny(warnings)]

use std::time::Duration;

use spotq::{Context, Message, Outcome};

#[spotq::worker(queue = "raw")]
async fn plain(message: Message) -> Outcome {
    match message.body() {
        "later" => Outcome::RetryAfter(Duration::from_secs(30)),
        "" => Outcome::fail("empty body"),
        _ => Outcome::Ack,
    }
}

#[spotq::worker(queue = "raw")]
async fn with_context(message: spotq::Message, cx: &Context) -> Result<Outcome, std::io::Error> {
    if cx.receive_count() > 3 {
        return Err(std::io::Error::other(message.into_body()));
    }
    Ok(Outcome::Ack)
}

#[spotq::worker(queue = "raw")]
async fn with_full_path(message: ::spotq::Message, cx: &::spotq::Context) {
    let _ = (message, cx);
}

fn main() {
    let _: spotq::WorkerSpec = plain_worker();
    let _: spotq::WorkerSpec = with_context_worker();
    let _: spotq::WorkerSpec = with_full_path_worker();
    assert!(!plain_worker().is_batch());
    assert!(plain_worker().handler().is_some());
}
