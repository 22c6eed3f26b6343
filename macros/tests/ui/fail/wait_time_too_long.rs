#[spotq::worker(queue = "orders", wait_time = "30s")]
async fn handle(_body: String) {}

fn main() {}
