//! The examples read as a path: each is named by its level (`basic-*` before
//! `advanced-*`), opens with what it shows and the exact command that runs it, and has
//! one line in `examples/README.md`, in the order `examples/Cargo.toml` declares them;
//! the README's first command and the images' default worker name examples that exist.

use std::path::{Path, PathBuf};

/// One `[[example]]` of `examples/Cargo.toml`.
#[derive(Debug)]
struct Example {
    name: String,
    path: String,
    features: Vec<String>,
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &str) -> String {
    let path = root().join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// The value of `key = …` in a TOML table's text, unquoted.
fn value<'a>(table: &'a str, key: &str) -> Option<&'a str> {
    table.lines().find_map(|line| {
        let (name, value) = line.split_once('=')?;
        (name.trim() == key).then(|| value.trim().trim_matches('"'))
    })
}

/// The examples, in the order `examples/Cargo.toml` declares them.
fn examples() -> Vec<Example> {
    let manifest = read("examples/Cargo.toml");
    let examples: Vec<Example> = manifest
        .split("[[example]]")
        .skip(1)
        .map(|table| {
            let field = |key| value(table, key).unwrap_or_else(|| panic!("{key} in {table}"));
            let features = value(table, "required-features")
                .unwrap_or("[]")
                .trim_matches(['[', ']'])
                .split(',')
                .map(|feature| feature.trim().trim_matches('"').to_owned())
                .filter(|feature| !feature.is_empty())
                .collect();
            Example {
                name: field("name").to_owned(),
                path: field("path").to_owned(),
                features,
            }
        })
        .collect();
    assert!(examples.len() >= 2, "{examples:?}");
    examples
}

/// The first `` `…` `` span of `line`.
fn first_code(line: &str) -> Option<&str> {
    let (_, rest) = line.split_once('`')?;
    Some(rest.split_once('`')?.0)
}

/// The command of the example's `//! Run with:` line, which is in its opening `//!`
/// paragraph.
fn run_command(example: &Example) -> String {
    let source = read(&format!("examples/{}", example.path));
    let header: Vec<&str> = source
        .lines()
        .take_while(|line| line.starts_with("//!"))
        .collect();
    assert!(
        header.first().is_some_and(|line| line.len() > "//! ".len()),
        "{}: opens with a `//!` paragraph saying what it shows",
        example.path
    );
    let run_with = header
        .iter()
        .find_map(|line| line.strip_prefix("//! Run with: "))
        .unwrap_or_else(|| panic!("{}: a `//! Run with:` line in its header", example.path));
    first_code(run_with)
        .unwrap_or_else(|| {
            panic!(
                "{}: `Run with:` gives the command in backticks",
                example.path
            )
        })
        .to_owned()
}

#[test]
fn examples_are_named_by_their_level_basic_ones_first() {
    let examples = examples();
    let levels: Vec<&str> = examples
        .iter()
        .map(|example| {
            assert_eq!(example.path, format!("{}.rs", example.name), "{example:?}");
            ["basic-", "advanced-"]
                .into_iter()
                .find(|level| example.name.starts_with(level))
                .unwrap_or_else(|| panic!("{}: named basic-* or advanced-*", example.name))
        })
        .collect();
    let first_advanced = levels.iter().position(|level| *level == "advanced-");
    assert!(
        first_advanced.is_some_and(|at| at > 0 && levels[at..].iter().all(|l| *l == "advanced-")),
        "basic examples first, then advanced ones: {examples:?}"
    );
}

#[test]
fn every_example_opens_with_the_command_that_runs_it() {
    for example in examples() {
        let command = run_command(&example);
        assert!(
            command.contains("cargo ")
                && command
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .windows(2)
                    .any(|pair| pair == ["--example", example.name.as_str()]),
            "{}: `{command}` runs it",
            example.name
        );
        for feature in &example.features {
            assert!(
                command.contains(&format!("--features {feature}")),
                "{}: `{command}` turns on its required feature {feature}",
                example.name
            );
        }
        if example.features.is_empty() {
            assert!(
                !command.contains("--features"),
                "{}: `{command}`",
                example.name
            );
        }
    }
}

#[test]
fn the_index_lists_every_example_once_in_order_with_its_command() {
    let index = read("examples/README.md");
    let lines: Vec<&str> = index
        .lines()
        .filter(|line| line.starts_with("- [`"))
        .collect();
    let examples = examples();
    let listed: Vec<&str> = lines.iter().filter_map(|line| first_code(line)).collect();
    let names: Vec<&str> = examples
        .iter()
        .map(|example| example.name.as_str())
        .collect();
    assert_eq!(
        listed, names,
        "examples/README.md lists the examples in order"
    );
    for (line, example) in lines.iter().zip(&examples) {
        assert!(
            line.contains(&format!("]({})", example.path)),
            "{line}: links {}",
            example.path
        );
        let command = run_command(example);
        let indexed = line
            .rsplit_once(" — ")
            .and_then(|(_, tail)| first_code(tail))
            .unwrap_or_else(|| panic!("{line}: ends with ` — `command``"));
        assert!(
            command.starts_with(indexed),
            "{line}: the command of its `Run with:` line, `{command}`"
        );
    }
}

#[test]
fn the_readme_s_first_command_runs_the_first_example_with_no_feature() {
    let readme = read("README.md");
    let first_command = readme
        .split_once("```sh\n")
        .and_then(|(_, block)| block.lines().find(|line| !line.starts_with('#')))
        .expect("the README opens with a sh block");
    let first = &examples()[0];
    assert_eq!(
        first_command,
        format!("cargo run --release --example {}", first.name)
    );
    assert!(first.features.is_empty(), "{first:?} runs on the defaults");
}

#[test]
fn the_images_default_worker_is_an_example() {
    let dockerfile = read("Dockerfile");
    let script = read("scripts/image");
    let in_dockerfile = dockerfile
        .lines()
        .find_map(|line| line.strip_prefix("ARG WORKER="))
        .expect("ARG WORKER= in the Dockerfile");
    let in_script = script
        .lines()
        .find_map(|line| line.strip_prefix("WORKER=\"${WORKER:-"))
        .and_then(|rest| rest.strip_suffix("}\""))
        .expect("WORKER's default in scripts/image");
    assert_eq!(in_dockerfile, in_script, "one default worker");
    let examples = examples();
    assert!(
        examples.iter().any(|example| example.name == in_dockerfile),
        "{in_dockerfile} is not an example: {examples:?}"
    );
}
