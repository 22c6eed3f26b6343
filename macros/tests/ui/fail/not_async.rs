#[spotq::worker(queue = "orders")]
fn handle(_body: String) {}

fn main() {}
