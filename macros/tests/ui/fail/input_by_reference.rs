#[spotq::worker(queue = "orders")]
async fn handle(_body: &str) {}

fn main() {}
