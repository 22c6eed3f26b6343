#[spotq::worker(queue = "orders", concurrency = 0)]
async fn handle(body: String) {}

fn main() {}
