#[spotq::worker(concurrency = 8)]
async fn handle(_body: String) {}

fn main() {}
