//! Controller reaction bench (to come).
fn main() {}
