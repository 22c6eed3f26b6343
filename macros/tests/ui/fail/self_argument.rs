struct Handlers;

impl Handlers {
    #[spotq::worker(queue = "orders")]
    async fn handle(&self, body: String) {}
}

fn main() {}
