#[spotq::worker(queue = ORDERS_QUEUE)]
async fn queue_not_a_string(_body: String) {}

#[spotq::worker(queue = env(ORDERS_QUEUE))]
async fn env_not_a_string(_body: String) {}

#[spotq::worker(queue = "orders", concurrency = "8")]
async fn count_as_string(_body: String) {}

#[spotq::worker(queue = "orders", fifo = "yes")]
async fn flag_as_string(_body: String) {}

#[spotq::worker(queue = "orders", retry_backoff = "1s")]
async fn backoff_without_cap(_body: String) {}

fn main() {}
