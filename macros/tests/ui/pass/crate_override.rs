//! `crate = "..."`: spotq reached through another path, with no `spotq` in scope.
#![deny(warnings)]

extern crate spotq as queue_workers;

mod facade {
    pub use ::queue_workers::*;
}

#[queue_workers::worker(queue = "orders", crate = "crate::facade", heartbeat = false)]
async fn handle(order: u64, cx: &facade::Context) -> Result<(), String> {
    let _ = (order, cx);
    Ok(())
}

#[queue_workers::worker(queue = "orders", crate = "queue_workers", retry_backoff = ("1s", "1m"))]
async fn handle_batch(orders: Vec<u64>) {
    let _ = orders;
}

fn main() {
    let spec: facade::WorkerSpec = handle_worker();
    assert_eq!(spec.config().heartbeat, queue_workers::config::Heartbeat::Off);
    assert!(handle_batch_worker().is_batch());
}
