struct Order {
    id: u64,
}

#[spotq::worker(queue = "orders")]
async fn handle(order: Order) {
    let _ = order.id;
}

fn main() {}
