#[spotq::worker(queue = "orders")]
async fn handle() {}

fn main() {}
