#[spotq::worker(queue = "orders", visibility_timeout = "30s", heartbeat = "45s")]
async fn handle(_body: String) {}

fn main() {}
