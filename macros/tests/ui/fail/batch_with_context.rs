use spotq::{Context, Message};

#[spotq::worker(queue = "orders")]
async fn handle(_messages: Vec<Message>, _cx: &Context) {}

fn main() {}
