//! No function of the runtime, the controller or the macros runs over 100 lines outside
//! their tests: a function that long does several things a reader has to tell apart, and
//! splitting it into named steps is what tells them apart.
//!
//! A small hand-written scanner rather than `syn`: `syn`'s line numbers need
//! `proc-macro2`'s `span-locations` feature, and cargo would unify that feature into every
//! build of the workspace that has this test package in it. The scanner only needs to know
//! where each `fn` starts and where its body's brace closes, so it reads tokens with
//! strings, characters and comments taken out (a `"}"` must not close a body).

use std::path::{Path, PathBuf};

/// The most lines a function may take, from its `fn` line to its closing brace.
const MAX_LINES: usize = 100;

/// The source directories the limit holds in, from the workspace root.
const CHECKED: [&str; 3] = ["runtime/src", "controller/src", "macros/src"];

#[test]
fn no_function_outside_tests_runs_over_100_lines() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for dir in CHECKED {
        collect_sources(&root.join(dir), &mut files);
    }
    assert!(files.len() >= 10, "too few sources found: {files:?}");
    let mut counted = 0;
    let mut too_long = Vec::new();
    for file in &files {
        let source = std::fs::read_to_string(file)
            .unwrap_or_else(|error| panic!("{}: {error}", file.display()));
        let shown = file
            .strip_prefix(&root)
            .unwrap_or(file)
            .display()
            .to_string();
        for function in functions(&source) {
            counted += 1;
            if function.lines > MAX_LINES {
                too_long.push(format!(
                    "{shown}:{} {} ({} lines)",
                    function.line, function.name, function.lines
                ));
            }
        }
    }
    // A scanner that lost its way would find few functions, and none too long.
    assert!(counted >= 200, "only {counted} functions found");
    assert!(
        too_long.is_empty(),
        "{} functions run over {MAX_LINES} lines; split each into named steps:\n{}",
        too_long.len(),
        too_long.join("\n")
    );
}

/// The `.rs` files under `dir`, test files and `tests/` directories left out.
fn collect_sources(dir: &Path, files: &mut Vec<PathBuf>) {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|error| panic!("{}: {error}", dir.display()));
    let mut paths: Vec<PathBuf> = entries
        .map(|entry| entry.expect("a directory entry").path())
        .collect();
    paths.sort();
    for path in paths {
        let name = path
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or_default();
        if path.is_dir() {
            if name != "tests" {
                collect_sources(&path, files);
            }
        } else if name.ends_with(".rs") && name != "tests.rs" && !name.ends_with("_tests.rs") {
            files.push(path);
        }
    }
}

/// A function found in a source file.
#[derive(Debug, PartialEq)]
struct Function {
    /// `name`, or `Type::name` for a function directly in an `impl` or `trait` block.
    name: String,
    /// The line of its `fn` keyword, from 1.
    line: usize,
    /// Its lines from the `fn` line to the closing brace, both included.
    lines: usize,
}

/// A token of the source with literals and comments taken out: what braces and item
/// keywords are read from.
#[derive(Debug, PartialEq)]
enum Token {
    /// An identifier, keyword or number.
    Word(String),
    /// Any other character outside literals and comments.
    Punct(char),
}

/// Every function with a body in `source`, outside `#[cfg(test)]` items, in the order
/// their bodies close.
fn functions(source: &str) -> Vec<Function> {
    let tokens = tokenize(source);
    let mut found = Vec::new();
    // Bodies still open: (brace depth inside the body, name, line of `fn`).
    let mut open: Vec<(usize, String, usize)> = Vec::new();
    // `impl` and `trait` blocks still open: (brace depth inside the block, type name).
    let mut blocks: Vec<(usize, String)> = Vec::new();
    let mut depth = 0;
    let mut i = 0;
    while i < tokens.len() {
        let (token, line) = &tokens[i];
        match token {
            Token::Punct('#') if is_cfg_test(&tokens, i) => {
                if matches!(tokens.get(i + 1), Some((Token::Punct('!'), _))) {
                    // `#![cfg(test)]`: the whole enclosing module is test code.
                    i = skip_to_close(&tokens, i, depth);
                } else {
                    i = skip_item(&tokens, i);
                }
                continue;
            }
            Token::Word(word) if word == "impl" || word == "trait" => {
                if let Some(body) = header_end(&tokens, i + 1) {
                    let name = if word == "impl" {
                        impl_type(&tokens[i + 1..body])
                    } else {
                        word_at(&tokens, i + 1).unwrap_or_default().to_string()
                    };
                    blocks.push((depth + 1, name));
                    i = body;
                    continue;
                }
            }
            Token::Word(word) if word == "fn" => {
                if let Some(name) = word_at(&tokens, i + 1) {
                    let name = match blocks.last() {
                        Some((inside, block)) if *inside == depth => format!("{block}::{name}"),
                        _ => name.to_string(),
                    };
                    match header_end(&tokens, i + 2) {
                        Some(body) => {
                            open.push((depth + 1, name, *line));
                            i = body;
                        }
                        // A declaration without a body, as in a trait.
                        None => i += 2,
                    }
                    continue;
                }
            }
            Token::Punct('{') => depth += 1,
            Token::Punct('}') => {
                if open.last().is_some_and(|(inside, ..)| *inside == depth) {
                    let (_, name, start) = open.pop().expect("an open body");
                    found.push(Function {
                        name,
                        line: start,
                        lines: line - start + 1,
                    });
                }
                if blocks.last().is_some_and(|(inside, _)| *inside == depth) {
                    blocks.pop();
                }
                depth = depth.saturating_sub(1);
            }
            _ => {}
        }
        i += 1;
    }
    found
}

/// The word at `i`, if there is one.
fn word_at(tokens: &[(Token, usize)], i: usize) -> Option<&str> {
    match tokens.get(i) {
        Some((Token::Word(word), _)) => Some(word),
        _ => None,
    }
}

/// Whether the tokens at `i` are `#[cfg(test)]` or `#![cfg(test)]`.
fn is_cfg_test(tokens: &[(Token, usize)], i: usize) -> bool {
    let start = match tokens.get(i + 1) {
        Some((Token::Punct('!'), _)) => i + 2,
        _ => i + 1,
    };
    let expected = [
        Token::Punct('['),
        Token::Word("cfg".into()),
        Token::Punct('('),
        Token::Word("test".into()),
        Token::Punct(')'),
        Token::Punct(']'),
    ];
    tokens.len() >= start + expected.len()
        && tokens[start..start + expected.len()]
            .iter()
            .zip(&expected)
            .all(|((token, _), expected)| token == expected)
}

/// The index after the item whose attributes start at `i`: after its `;`, or after the
/// brace that closes its block.
fn skip_item(tokens: &[(Token, usize)], mut i: usize) -> usize {
    // The attributes: `#`, an optional `!`, then a bracketed group.
    while matches!(tokens.get(i), Some((Token::Punct('#'), _))) {
        i += 1;
        if matches!(tokens.get(i), Some((Token::Punct('!'), _))) {
            i += 1;
        }
        i = skip_group(tokens, i);
    }
    match header_end(tokens, i) {
        Some(open) => skip_group(tokens, open),
        None => {
            while i < tokens.len() && tokens[i].0 != Token::Punct(';') {
                i += 1;
            }
            i + 1
        }
    }
}

/// The index after the group whose opening bracket is at `i` (`(`, `[` or `{`), or `i`
/// when there is no group there.
fn skip_group(tokens: &[(Token, usize)], i: usize) -> usize {
    let mut depth = 0usize;
    for (offset, (token, _)) in tokens[i.min(tokens.len())..].iter().enumerate() {
        match token {
            Token::Punct('(' | '[' | '{') => depth += 1,
            Token::Punct(')' | ']' | '}') => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return i + offset + 1;
                }
            }
            _ if depth == 0 => return i,
            _ => {}
        }
    }
    tokens.len()
}

/// The index of the `}` that closes the block the tokens at `i` sit in at brace depth
/// `depth` (the end of the file at depth 0).
fn skip_to_close(tokens: &[(Token, usize)], mut i: usize, depth: usize) -> usize {
    let mut inner = 0usize;
    while i < tokens.len() {
        match tokens[i].0 {
            Token::Punct('{') => inner += 1,
            Token::Punct('}') if inner == 0 && depth > 0 => return i,
            Token::Punct('}') => inner = inner.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    i
}

/// The index of the `{` that opens the body of the item whose header starts at `i`, or
/// `None` when a `;` ends the item first (brackets and parentheses skipped: `[u8; 4]`).
fn header_end(tokens: &[(Token, usize)], mut i: usize) -> Option<usize> {
    let mut nested = 0usize;
    while i < tokens.len() {
        match tokens[i].0 {
            Token::Punct('(' | '[') => nested += 1,
            Token::Punct(')' | ']') => nested = nested.saturating_sub(1),
            Token::Punct('{') if nested == 0 => return Some(i),
            Token::Punct(';' | '}') if nested == 0 => return None,
            _ => {}
        }
        i += 1;
    }
    None
}

/// The name of the type an `impl` header (the tokens after `impl`) is for: the last word
/// outside angle brackets, after `for` if there is one (`impl<T> Display for Wrapper<T>`
/// gives `Wrapper`).
fn impl_type(header: &[(Token, usize)]) -> String {
    let mut angle = 0usize;
    let mut name = "";
    let mut previous = None;
    for (token, _) in header {
        match token {
            Token::Punct('<') => angle += 1,
            // The `>` of `->` (in `Fn() -> T`) closes no angle bracket.
            Token::Punct('>') if previous != Some(&Token::Punct('-')) => {
                angle = angle.saturating_sub(1);
            }
            Token::Word(word) if angle == 0 && word == "where" => break,
            Token::Word(word) if angle == 0 && word == "for" => name = "",
            Token::Word(word) if angle == 0 && word != "dyn" && word != "unsafe" => name = word,
            _ => {}
        }
        previous = Some(token);
    }
    name.to_string()
}

/// The source's tokens, each with its line (from 1), with comments, string literals and
/// character literals left out.
fn tokenize(source: &str) -> Vec<(Token, usize)> {
    let chars: Vec<char> = source.chars().collect();
    let mut tokens = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            i = skip_block_comment(&chars, i, &mut line);
        } else if c == '"' {
            i = skip_string(&chars, i + 1, &mut line);
        } else if c == '\'' {
            i = skip_char_or_lifetime(&chars, i, &mut tokens, line);
        } else if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            i = match (word.as_str(), chars.get(i)) {
                // Byte and C strings: `b"…"`, `c"…"`.
                ("b" | "c", Some('"')) => skip_string(&chars, i + 1, &mut line),
                // A byte character: `b'}'`.
                ("b", Some('\'')) => skip_char_or_lifetime(&chars, i, &mut tokens, line),
                // Raw strings, `r#"…"#`; `r#type` is a raw identifier, read on as a word.
                ("r" | "br" | "cr", Some('"' | '#')) if is_raw_string(&chars, i) => {
                    skip_raw_string(&chars, i, &mut line)
                }
                ("r", Some('#')) => i + 1,
                _ => {
                    tokens.push((Token::Word(word), line));
                    i
                }
            };
        } else {
            tokens.push((Token::Punct(c), line));
            i += 1;
        }
    }
    tokens
}

/// The index after the block comment opening at `i` (block comments nest).
fn skip_block_comment(chars: &[char], mut i: usize, line: &mut usize) -> usize {
    let mut depth = 0usize;
    while i < chars.len() {
        match (chars[i], chars.get(i + 1)) {
            ('/', Some('*')) => {
                depth += 1;
                i += 2;
            }
            ('*', Some('/')) => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return i;
                }
            }
            ('\n', _) => {
                *line += 1;
                i += 1;
            }
            _ => i += 1,
        }
    }
    i
}

/// The index after the closing quote of the string whose contents start at `i`.
fn skip_string(chars: &[char], mut i: usize, line: &mut usize) -> usize {
    while i < chars.len() {
        match chars[i] {
            '\\' => {
                // An escaped newline (a line continuation) is still a line.
                if chars.get(i + 1) == Some(&'\n') {
                    *line += 1;
                }
                i += 2;
            }
            '"' => return i + 1,
            '\n' => {
                *line += 1;
                i += 1;
            }
            _ => i += 1,
        }
    }
    i
}

/// Whether the `#`s at `i` (possibly none) are followed by a `"`: a raw string's start.
fn is_raw_string(chars: &[char], mut i: usize) -> bool {
    while chars.get(i) == Some(&'#') {
        i += 1;
    }
    chars.get(i) == Some(&'"')
}

/// The index after the raw string whose `#`s (possibly none) start at `i`.
fn skip_raw_string(chars: &[char], mut i: usize, line: &mut usize) -> usize {
    let mut hashes = 0;
    while chars.get(i) == Some(&'#') {
        hashes += 1;
        i += 1;
    }
    i += 1; // the opening quote
    while i < chars.len() {
        if chars[i] == '"' && (1..=hashes).all(|n| chars.get(i + n) == Some(&'#')) {
            return i + 1 + hashes;
        }
        if chars[i] == '\n' {
            *line += 1;
        }
        i += 1;
    }
    i
}

/// At a `'` (index `i`): skips a character literal (`'}'`, `'\''`, `'\u{7d}'`) whole, or
/// keeps the `'` of a lifetime or label as a token (its name follows as a word).
fn skip_char_or_lifetime(
    chars: &[char],
    i: usize,
    tokens: &mut Vec<(Token, usize)>,
    line: usize,
) -> usize {
    if chars.get(i + 1) == Some(&'\\') {
        let mut end = i + 3;
        while end < chars.len() && chars[end] != '\'' {
            end += 1;
        }
        end + 1
    } else if chars.get(i + 2) == Some(&'\'') {
        i + 3
    } else {
        tokens.push((Token::Punct('\''), line));
        i + 1
    }
}

#[test]
fn the_scanner_counts_from_the_fn_line_to_the_closing_brace() {
    let source = "\
/// Docs are not counted.
#[inline]
pub fn short(
    x: u32,
) -> u32 {
    x
}
";
    assert_eq!(
        functions(source),
        [Function {
            name: "short".into(),
            line: 3,
            lines: 5
        }]
    );
}

#[test]
fn braces_in_literals_and_comments_do_not_close_a_body() {
    let source = r##"fn literals<'a>(x: &'a str) -> char {
    let s = "}";
    let escaped = "\"}";
    let raw = r#"}"#;
    let bytes = b"}";
    let c = '}';
    let quote = '\'';
    let b = b'}';
    // }
    /* } /* } */ } */
    'outer: loop {
        break 'outer;
    }
    c
}
fn after() {}
"##;
    assert_eq!(
        functions(source),
        [
            Function {
                name: "literals".into(),
                line: 1,
                lines: 15
            },
            Function {
                name: "after".into(),
                line: 16,
                lines: 1
            },
        ]
    );
}

#[test]
fn nested_blocks_and_functions_are_inside_their_function() {
    let source = "\
fn outer() {
    if true {
        match 1 {
            _ => {}
        }
    }
    fn inner() {
    }
    let _ = [0u8; 4];
}
";
    assert_eq!(
        functions(source),
        [
            Function {
                name: "inner".into(),
                line: 7,
                lines: 2
            },
            Function {
                name: "outer".into(),
                line: 1,
                lines: 10
            },
        ]
    );
}

#[test]
fn methods_are_named_for_their_type_and_declarations_are_not_functions() {
    let source = "\
trait Decide {
    fn decide(&self) -> u32;
    fn twice(&self) -> u32 {
        self.decide() * 2
    }
}
impl<T: Fn() -> u32> Decide for Scaler<T> where T: Send {
    fn decide(&self) -> u32 { (self.0)() }
}
fn pointer(f: fn(u32) -> u32) -> u32 { f(1) }
";
    assert_eq!(
        functions(source),
        [
            Function {
                name: "Decide::twice".into(),
                line: 3,
                lines: 3
            },
            Function {
                name: "Scaler::decide".into(),
                line: 8,
                lines: 1
            },
            Function {
                name: "pointer".into(),
                line: 10,
                lines: 1
            },
        ]
    );
}

#[test]
fn test_modules_are_skipped() {
    let source = "\
fn kept() {}
#[cfg(test)]
mod tests {
    fn helper() -> &'static str { \"}\" }
    #[test]
    fn long() {
    }
}
#[cfg(test)]
mod declared;
fn also_kept() {
}
";
    assert_eq!(
        functions(source),
        [
            Function {
                name: "kept".into(),
                line: 1,
                lines: 1
            },
            Function {
                name: "also_kept".into(),
                line: 11,
                lines: 2
            },
        ]
    );
}
