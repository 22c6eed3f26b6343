use spotq::Context;

#[spotq::worker(queue = "orders")]
async fn handle(body: String, cx: &Context, extra: u32) {}

fn main() {}
