//! The README's settings table is the table of settings, cell by cell: one row per
//! setting, in the table's order, `| `name` | default | allowed |`. Rows that are not
//! settings (their first cell is not a name in backticks) follow and are left alone.
//!
//! `SPOTQ_BLESS=1 cargo test -p spotq-settings --test readme` rewrites the rows from the
//! table, as `TRYBUILD=overwrite` does for the macro's UI tests.

use std::path::PathBuf;

use spotq_settings::SETTINGS;

fn readme_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../README.md")
}

/// The rows the table gives, in its order.
fn expected_rows() -> Vec<String> {
    SETTINGS
        .iter()
        .map(|setting| {
            format!(
                "| `{}` | {} | {} |",
                setting.name, setting.default, setting.allowed
            )
        })
        .collect()
}

/// The byte range of the README's setting rows: the lines of the table under
/// `## Settings` whose first cell is a name in backticks.
fn setting_rows(readme: &str) -> (usize, usize) {
    let section = readme
        .find("\n## Settings\n")
        .expect("a `## Settings` section")
        + 1;
    let mut offset = section;
    let (mut start, mut end) = (None, None);
    for line in readme[section..].split_inclusive('\n') {
        if line.starts_with("## ") && offset != section {
            break;
        }
        if line.starts_with("| `") {
            assert!(end.is_none(), "the setting rows are not together: {line}");
            start.get_or_insert(offset);
        } else if start.is_some() && end.is_none() {
            end = Some(offset);
        }
        offset += line.len();
    }
    let start = start.expect("setting rows under `## Settings`");
    (start, end.unwrap_or(offset))
}

fn cells(row: &str) -> Vec<&str> {
    row.trim_matches('|').split(" | ").map(str::trim).collect()
}

#[test]
fn the_readme_lists_every_setting_as_the_table_declares_it() {
    let path = readme_path();
    let readme = std::fs::read_to_string(&path).expect("README.md");
    let (start, end) = setting_rows(&readme);
    let expected = expected_rows();
    if std::env::var_os("SPOTQ_BLESS").is_some() {
        let rows: String = expected.iter().map(|row| format!("{row}\n")).collect();
        let blessed = format!("{}{rows}{}", &readme[..start], &readme[end..]);
        std::fs::write(&path, blessed).expect("README.md written");
        return;
    }
    let written: Vec<&str> = readme[start..end].lines().collect();
    let mut mismatches = Vec::new();
    for (index, setting) in SETTINGS.iter().enumerate() {
        let want = [
            format!("`{}`", setting.name),
            setting.default.to_owned(),
            setting.allowed.to_owned(),
        ];
        let have = written.get(index).map(|row| cells(row)).unwrap_or_default();
        if have.len() > want.len() {
            mismatches.push(format!(
                "row {} ({}): {} cells, not {}",
                index + 1,
                setting.name,
                have.len(),
                want.len()
            ));
        }
        for (column, (name, want)) in ["setting", "default", "allowed"]
            .iter()
            .zip(&want)
            .enumerate()
        {
            let cell = have.get(column).copied().unwrap_or("(missing)");
            if cell != want {
                mismatches.push(format!(
                    "row {} ({}), {name}: README has {cell:?}, the table {want:?}",
                    index + 1,
                    setting.name
                ));
            }
        }
    }
    if written.len() > SETTINGS.len() {
        for row in &written[SETTINGS.len()..] {
            mismatches.push(format!("a row the table does not have: {row}"));
        }
    }
    assert!(
        mismatches.is_empty(),
        "README.md's settings table differs from spotq-settings' table \
         (SPOTQ_BLESS=1 rewrites it):\n{}\n\nThe rows, from the table:\n{}",
        mismatches.join("\n"),
        expected.join("\n")
    );
}
