#[spotq::worker(queue = "orders", concurency = 8)]
async fn handle(_body: String) {}

fn main() {}
