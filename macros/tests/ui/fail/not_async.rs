#[spotq::worker(queue = "orders")]
fn handle(body: String) {}

fn main() {}
