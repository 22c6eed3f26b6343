#[spotq::worker(queue = "orders", batch_size = 11)]
async fn handle(_body: String) {}

fn main() {}
