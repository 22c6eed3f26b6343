#[spotq::worker(queue = "orders")]
struct Handler;

fn main() {}
