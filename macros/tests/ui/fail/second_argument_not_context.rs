#[spotq::worker(queue = "orders")]
async fn handle(body: String, retries: u32) {}

fn main() {}
