//! Compile tests of `#[spotq::worker]`: `ui/pass` must build, `ui/fail` must fail with
//! exactly the `.stderr` beside each case. Refresh the `.stderr` files with
//! `TRYBUILD=overwrite cargo test -p spotq-macros --test ui`, then read each one: the
//! error must point at the offending token.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass/*.rs");
    cases.compile_fail("tests/ui/fail/*.rs");
}
