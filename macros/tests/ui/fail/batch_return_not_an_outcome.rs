use spotq::Message;

#[spotq::worker(queue = "orders")]
async fn handle(messages: Vec<Message>) -> Vec<String> {
    messages.iter().map(|message| message.id().to_owned()).collect()
}

fn main() {}
