use spotq::handler::input::Sns;

#[spotq::worker(queue = "orders")]
async fn handle(order: Sns) {
    let _ = order;
}

fn main() {}
