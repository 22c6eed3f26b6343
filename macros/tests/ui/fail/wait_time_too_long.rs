#[spotq::worker(queue = "orders", wait_time = "30s")]
async fn handle(body: String) {}

fn main() {}
