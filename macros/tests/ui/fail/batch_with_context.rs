use spotq::{Context, Message};

#[spotq::worker(queue = "orders")]
async fn handle(messages: Vec<Message>, cx: &Context) {}

fn main() {}
