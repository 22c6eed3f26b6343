use spotq::handler::input::EventBridge;

struct Change {
    state: String,
}

#[spotq::worker(queue = "events")]
async fn handle(event: EventBridge<Change>) {
    let _ = event.detail.state;
}

fn main() {}
