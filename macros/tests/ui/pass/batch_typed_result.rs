//! A batch of typed JSON bodies returning a `Result`.
#![deny(warnings)]

#[derive(serde::Deserialize)]
struct Invoice {
    cents: u64,
}

#[derive(Debug)]
struct LedgerError;

impl std::fmt::Display for LedgerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ledger unavailable")
    }
}

impl std::error::Error for LedgerError {}

#[spotq::worker(queue = "invoices", batch_size = 5, concurrency = 4)]
async fn book(invoices: Vec<Invoice>) -> Result<(), LedgerError> {
    let total: u64 = invoices.iter().map(|invoice| invoice.cents).sum();
    if total > 1_000_000 {
        return Err(LedgerError);
    }
    Ok(())
}

#[spotq::worker(queue = "invoices")]
async fn book_all(invoices: Vec<Invoice>) {
    let _ = invoices;
}

fn main() {
    let spec: spotq::WorkerSpec = book_worker();
    assert!(spec.is_batch());
    assert_eq!(spec.config().batch_size, 5);
    assert_eq!(spec.config().concurrency, 4);
    let _: spotq::WorkerSpec = book_all_worker();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    assert!(runtime.block_on(book(vec![Invoice { cents: 5 }])).is_ok());
}
