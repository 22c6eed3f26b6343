#[spotq::worker(queue = "orders")]
async fn handle(_body: String, _retries: u32) {}

fn main() {}
