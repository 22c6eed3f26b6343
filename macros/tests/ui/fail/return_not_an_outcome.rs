#[spotq::worker(queue = "orders")]
async fn handle(body: String) -> u32 {
    body.len() as u32
}

fn main() {}
