#[spotq::worker(queue = "orders", batch_size = 11)]
async fn handle(body: String) {}

fn main() {}
