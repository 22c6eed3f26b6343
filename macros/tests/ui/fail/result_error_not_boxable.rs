#[derive(Debug)]
struct NotAnError;

#[spotq::worker(queue = "orders")]
async fn handle(body: String) -> Result<(), NotAnError> {
    let _ = body;
    Err(NotAnError)
}

fn main() {}
