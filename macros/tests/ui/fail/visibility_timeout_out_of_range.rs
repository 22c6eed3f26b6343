#[spotq::worker(queue = "orders", visibility_timeout = "13h")]
async fn too_long(_body: String) {}

#[spotq::worker(queue = "orders", visibility_timeout = "500ms")]
async fn too_short(_body: String) {}

fn main() {}
