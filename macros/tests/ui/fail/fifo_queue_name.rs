#[spotq::worker(queue = "orders", fifo = true)]
async fn handle(_body: String) {}

fn main() {}
