//! Raw messages and plain-text bodies, with and without the context, returning an
//! explicit outcome.
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

#[spotq::worker(queue = "text")]
async fn text(body: String) -> Result<(), std::num::ParseIntError> {
    body.trim().parse::<u64>().map(drop)
}

#[spotq::worker(queue = "text")]
async fn text_with_context(body: std::string::String, cx: Context) -> Outcome {
    if body.is_empty() && cx.receive_count() < 3 {
        return Outcome::RetryAfter(Duration::from_secs(1));
    }
    Outcome::Ack
}

#[spotq::worker(queue = "text")]
async fn texts(bodies: Vec<String>) -> spotq::handler::BatchOutcome {
    let _ = bodies;
    spotq::handler::BatchOutcome::Ack
}

fn main() {
    let _: spotq::WorkerSpec = text_worker();
    let _: spotq::WorkerSpec = text_with_context_worker();
    assert!(texts_worker().is_batch());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    assert!(runtime.block_on(text(" 42 ".to_owned())).is_ok());
    let _: spotq::WorkerSpec = plain_worker();
    let _: spotq::WorkerSpec = with_context_worker();
    let _: spotq::WorkerSpec = with_full_path_worker();
    assert!(!plain_worker().is_batch());
    assert!(plain_worker().handler().is_some());
}
