#[spotq::worker(queue = "orders")]
async fn handle(body: &str) {}

fn main() {}
