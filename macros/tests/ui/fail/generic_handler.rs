#[spotq::worker(queue = "orders")]
async fn handle<T: serde::de::DeserializeOwned>(_body: T) {}

fn main() {}
