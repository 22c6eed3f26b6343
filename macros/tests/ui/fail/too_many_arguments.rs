use spotq::Context;

#[spotq::worker(queue = "orders")]
async fn handle(_body: String, _cx: &Context, _extra: u32) {}

fn main() {}
