#[spotq::worker(queue = "orders", fifo = true)]
async fn handle(body: String) {}

fn main() {}
