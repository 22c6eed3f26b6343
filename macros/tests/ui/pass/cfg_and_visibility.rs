//! `#[cfg]` goes to both functions; visibility follows the handler; the handler can be
//! called from the worker of another.
#![deny(warnings)]

mod workers {
    #[cfg(any())]
    #[spotq::worker(queue = "never")]
    pub async fn compiled_out(body: String) {
        let _ = body;
    }

    #[spotq::worker(queue = "crate")]
    pub(crate) async fn crate_visible(body: String) {
        let _ = body;
    }

    #[spotq::worker(queue = "private")]
    async fn private(body: String) {
        let _ = body;
    }

    pub fn all() -> Vec<spotq::WorkerSpec> {
        vec![crate_visible_worker(), private_worker()]
    }
}

// A local `const` named like the expansion's bindings does not change it.
#[allow(non_upper_case_globals)]
const message: u8 = 0;
#[allow(non_upper_case_globals)]
const input: u8 = 0;

#[spotq::worker(queue = "shadowed")]
async fn shadowed(body: String, cx: &spotq::Context) {
    let _ = (body, cx, message, input);
}

fn main() {
    assert_eq!(workers::all().len(), 2);
    let _: spotq::WorkerSpec = workers::crate_visible_worker();
    let _: spotq::WorkerSpec = shadowed_worker();
}
