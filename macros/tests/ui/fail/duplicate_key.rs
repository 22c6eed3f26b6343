#[spotq::worker(queue = "orders", batch_size = 5, batch_size = 10)]
async fn handle(_body: String) {}

fn main() {}
