#[spotq::worker(queue = "orders", retry_backoff = ("10m", "1m"))]
async fn handle(_body: String) {}

fn main() {}
