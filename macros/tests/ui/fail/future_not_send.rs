use std::rc::Rc;

#[spotq::worker(queue = "orders")]
async fn handle(body: String) {
    let shared = Rc::new(body);
    tokio::task::yield_now().await;
    drop(shared);
}

fn main() {}
