//! The context taken by value, with patterns in the signature.
#![deny(warnings)]

use spotq::Context;

#[derive(serde::Deserialize)]
struct Job {
    steps: u32,
}

#[spotq::worker(queue = "jobs")]
async fn run_job(job: Job, cx: Context) -> Result<spotq::Outcome, std::io::Error> {
    for _ in 0..job.steps {
        if cx.is_cancelled() {
            return Ok(spotq::Outcome::fail("cancelled"));
        }
    }
    Ok(spotq::Outcome::Ack)
}

#[spotq::worker(queue = "pairs")]
async fn add((left, right): (u64, u64), _: Context) -> Result<(), std::num::TryFromIntError> {
    u32::try_from(left + right).map(drop)
}

/// A body that is a JSON list: `Vec<String>` as written would mean a batch.
type Words = Vec<String>;

#[spotq::worker(queue = "words")]
async fn sort(mut words: Words, _cx: Context) {
    words.sort();
}

fn main() {
    let _: spotq::WorkerSpec = run_job_worker();
    let _: spotq::WorkerSpec = add_worker();
    let spec: spotq::WorkerSpec = sort_worker();
    assert!(!spec.is_batch());
}
