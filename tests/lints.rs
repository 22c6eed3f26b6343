//! Every crate of the workspace takes the workspace's lints, so `unsafe_code = "forbid"`
//! (and the rest) cannot be escaped by a crate that forgets them.

use std::path::Path;

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

#[test]
fn every_crate_takes_the_workspace_lints_which_forbid_unsafe_code() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let manifest = read(&root.join("Cargo.toml"));
    let lints = manifest
        .split_once("[workspace.lints.rust]")
        .map(|(_, rest)| rest)
        .expect("[workspace.lints.rust]");
    assert!(
        lints
            .lines()
            .any(|line| line.trim() == r#"unsafe_code = "forbid""#),
        "the workspace forbids unsafe code"
    );
    let members = manifest
        .split_once("members = [")
        .and_then(|(_, rest)| rest.split_once(']'))
        .map(|(list, _)| list)
        .expect("the workspace members");
    let members: Vec<&str> = members
        .split(',')
        .map(|member| member.trim().trim_matches('"'))
        .filter(|member| !member.is_empty())
        .collect();
    assert!(members.len() >= 6, "{members:?}");
    for member in members {
        let crate_manifest = read(&root.join(member).join("Cargo.toml"));
        assert!(
            crate_manifest.contains("\n[lints]\nworkspace = true\n"),
            "{member}/Cargo.toml: add `[lints]` `workspace = true`"
        );
    }
}
