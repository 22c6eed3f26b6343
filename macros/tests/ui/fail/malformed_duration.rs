#[spotq::worker(queue = "orders", handler_timeout = "1.5m")]
async fn fraction(_body: String) {}

#[spotq::worker(queue = "orders", wait_time = 10)]
async fn no_unit(_body: String) {}

#[spotq::worker(queue = "orders", visibility_timeout = "30secs")]
async fn unknown_unit(_body: String) {}

fn main() {}
