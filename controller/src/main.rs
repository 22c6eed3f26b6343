//! `spotq-controller`.
fn main() {}
