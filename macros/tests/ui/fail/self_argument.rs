struct Handlers;

impl Handlers {
    #[spotq::worker(queue = "orders")]
    async fn handle(&self, _body: String) {}
}

fn main() {}
