#[spotq::worker(concurrency = 8)]
async fn handle(body: String) {}

fn main() {}
