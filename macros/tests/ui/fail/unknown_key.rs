#[spotq::worker(queue = "orders", concurency = 8)]
async fn handle(body: String) {}

fn main() {}
