#[spotq::worker(
    queue = "orders",
    visibility_timeout = "1m",
    handler_timeout = "2m",
    heartbeat = false
)]
async fn handle(_body: String) {}

fn main() {}
