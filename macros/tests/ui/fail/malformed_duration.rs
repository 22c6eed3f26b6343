#[spotq::worker(queue = "orders", handler_timeout = "1.5m30s")]
async fn fraction_not_last(_body: String) {}

#[spotq::worker(queue = "orders", handler_timeout = "1.0005s")]
async fn finer_than_a_millisecond(_body: String) {}

#[spotq::worker(queue = "orders", wait_time = 10)]
async fn no_unit(_body: String) {}

#[spotq::worker(queue = "orders", visibility_timeout = "30secs")]
async fn unknown_unit(_body: String) {}

fn main() {}
