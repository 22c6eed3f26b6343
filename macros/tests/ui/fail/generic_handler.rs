#[spotq::worker(queue = "orders")]
async fn handle<T: serde::de::DeserializeOwned>(body: T) {}

fn main() {}
