//! The runtime's layers, checked against ARCHITECTURE.md.
//!
//! ARCHITECTURE.md lists the layers of `runtime/src` in a ```` ```layers ```` block, top
//! first, each with its modules (the first path segment under `src`: a directory `x/` or
//! a file `x.rs`; `lib` for `lib.rs`). A file may use its own module or a module of a
//! lower layer; no file uses a higher layer, nor another module of its own layer; and no
//! files use each other in a circle. A parent module's `pub use` of its own descendant
//! only gives the descendant's item its path, so it is no dependency for the circles (it
//! is still held to the layers).
//!
//! The check reads the source as text and needs no dependency. Comments, string and
//! character literals and test code (files `tests.rs` and `*_tests.rs`, items under
//! `#[cfg(test)]`) are blanked first, so neither a doc link nor a test's import counts.
//! Every leaf of a `use` tree, and every path in code, that starts at `crate`, `self`,
//! `super`, a child module or a module imported by name is resolved to the file of its
//! longest prefix that is a module. Not followed: a path that starts at a name a glob
//! import brought in (the glob itself counts), a `#[path]` module, and `#[cfg(test)]` on
//! a struct field or a match arm (only items and statements are skipped).
//!
//! `SPOTQ_ARCH_SRC`, when set, points the check at another `runtime/src` (another
//! checkout), still against this tree's ARCHITECTURE.md.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// One line of the layer list: a layer and its modules.
#[derive(Debug)]
struct Layer {
    name: String,
    modules: Vec<String>,
}

/// The layers of the ```` ```layers ```` block in `doc`, top first.
fn parse_layers(doc: &str) -> Result<Vec<Layer>, String> {
    let mut lines = doc.lines();
    lines
        .by_ref()
        .find(|line| line.trim() == "```layers")
        .ok_or("no ```layers block")?;
    let mut layers = Vec::new();
    for line in lines {
        let line = line.trim();
        if line.starts_with("```") {
            return Ok(layers);
        }
        if line.is_empty() {
            continue;
        }
        let (name, modules) = line
            .split_once(':')
            .ok_or_else(|| format!("`{line}` is not `name: module module ...`"))?;
        layers.push(Layer {
            name: name.trim().to_string(),
            modules: modules.split_whitespace().map(String::from).collect(),
        });
    }
    Err("the ```layers block is not closed".to_string())
}

/// Every `.rs` file under `dir`, by its path relative to `dir` (`/`-separated).
fn read_sources(dir: &Path) -> BTreeMap<String, String> {
    let mut sources = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let entries = fs::read_dir(&current)
            .unwrap_or_else(|error| panic!("reading {}: {error}", current.display()));
        for entry in entries {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|extension| extension == "rs") {
                let relative = path.strip_prefix(dir).expect("a file under the directory");
                let name = relative
                    .components()
                    .map(|part| part.as_os_str().to_string_lossy())
                    .collect::<Vec<_>>()
                    .join("/");
                let text = fs::read_to_string(&path)
                    .unwrap_or_else(|error| panic!("reading {}: {error}", path.display()));
                sources.insert(name, text);
            }
        }
    }
    sources
}

/// Test code, which the layers do not bind: `tests.rs` and `*_tests.rs`.
fn is_test_file(file: &str) -> bool {
    let name = file.rsplit('/').next().unwrap_or(file);
    name == "tests.rs" || name.ends_with("_tests.rs")
}

/// The module a file declares, from the crate root: `lib.rs` is `[]`, `a/b.rs` and
/// `a/b/mod.rs` are `[a, b]`.
fn module_of(file: &str) -> Vec<String> {
    if file == "lib.rs" {
        return Vec::new();
    }
    let stem = file.strip_suffix(".rs").unwrap_or(file);
    let mut parts: Vec<String> = stem.split('/').map(String::from).collect();
    if parts.last().is_some_and(|last| last == "mod") {
        parts.pop();
    }
    parts
}

/// The layer list's name for a file's module: its first path segment, `lib` for `lib.rs`.
fn top_module(file: &str) -> &str {
    let first = file.split('/').next().unwrap_or(file);
    first.strip_suffix(".rs").unwrap_or(first)
}

/// Whether `ch` can be part of an identifier (or of a number).
fn is_ident(ch: char) -> bool {
    ch.is_alphanumeric() || ch == '_'
}

/// `source` with its comments (doc comments too) and its string and character literals
/// turned to spaces; newlines stay, so line numbers still hold.
fn blank_comments_and_literals(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut blanked = String::with_capacity(source.len());
    let mut i = 0;
    while i < chars.len() {
        match comment_or_literal_end(&chars, i) {
            Some(end) => {
                for &ch in &chars[i..end] {
                    blanked.push(if ch == '\n' { '\n' } else { ' ' });
                }
                i = end;
            }
            None => {
                blanked.push(chars[i]);
                i += 1;
            }
        }
    }
    blanked
}

/// Where the comment or literal that starts at `i` ends (exclusive), if one starts there.
fn comment_or_literal_end(chars: &[char], i: usize) -> Option<usize> {
    let next = chars.get(i + 1).copied();
    match chars[i] {
        '/' if next == Some('/') => Some(
            chars[i..]
                .iter()
                .position(|&ch| ch == '\n')
                .map_or(chars.len(), |offset| i + offset),
        ),
        '/' if next == Some('*') => Some(block_comment_end(chars, i)),
        '"' => Some(string_end(chars, i)),
        '\'' => char_literal_end(chars, i),
        'r' => raw_string_end(chars, i),
        _ => None,
    }
}

/// The end of a block comment; they nest.
fn block_comment_end(chars: &[char], start: usize) -> usize {
    let mut depth = 0;
    let mut i = start;
    while i < chars.len() {
        let pair = (chars[i], chars.get(i + 1).copied());
        if pair == ('/', Some('*')) {
            depth += 1;
            i += 2;
        } else if pair == ('*', Some('/')) {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    chars.len()
}

/// The end of a string literal (`b"…"` and `c"…"` too: the prefix stays, a lone letter).
fn string_end(chars: &[char], start: usize) -> usize {
    let mut i = start + 1;
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 2,
            '"' => return i + 1,
            _ => i += 1,
        }
    }
    chars.len()
}

/// The end of a character literal (`'x'`, `'\n'`, `'\''`), or None for a lifetime or a
/// label (`'a`).
fn char_literal_end(chars: &[char], start: usize) -> Option<usize> {
    if chars.get(start + 1) == Some(&'\\') {
        let close = chars.get(start + 3..)?.iter().position(|&ch| ch == '\'')?;
        Some(start + 3 + close + 1)
    } else if chars.get(start + 2) == Some(&'\'') {
        Some(start + 3)
    } else {
        None
    }
}

/// The end of a raw string (`r"…"`, `r#"…"#`, also after `b` or `c`), or None: the `r`
/// is part of a word or starts a raw identifier (`r#type`).
fn raw_string_end(chars: &[char], start: usize) -> Option<usize> {
    let word_start = match start.checked_sub(1).map(|before| chars[before]) {
        Some('b' | 'c') => start - 1,
        _ => start,
    };
    if word_start > 0 && is_ident(chars[word_start - 1]) {
        return None;
    }
    let hashes = chars[start + 1..]
        .iter()
        .take_while(|&&ch| ch == '#')
        .count();
    let open = start + 1 + hashes;
    if chars.get(open) != Some(&'"') {
        return None;
    }
    let closes = |i: usize| {
        chars[i] == '"' && chars[i + 1..].iter().take_while(|&&ch| ch == '#').count() >= hashes
    };
    Some(
        (open + 1..chars.len())
            .find(|&i| closes(i))
            .map_or(chars.len(), |close| close + 1 + hashes),
    )
}

/// A token of source whose comments and literals are blanked.
#[derive(Clone, Debug, PartialEq)]
enum Tok {
    /// A word: an identifier, a keyword or a number.
    Ident(String),
    /// `::`.
    PathSep,
    Punct(char),
}

#[derive(Clone, Debug)]
struct Token {
    tok: Tok,
    line: usize,
}

impl Token {
    fn is(&self, punct: char) -> bool {
        self.tok == Tok::Punct(punct)
    }

    fn is_path_sep(&self) -> bool {
        self.tok == Tok::PathSep
    }

    fn ident(&self) -> Option<&str> {
        match &self.tok {
            Tok::Ident(word) => Some(word),
            _ => None,
        }
    }

    fn text(&self) -> String {
        match &self.tok {
            Tok::Ident(word) => word.clone(),
            Tok::PathSep => "::".to_string(),
            Tok::Punct(ch) => ch.to_string(),
        }
    }
}

fn tokenize(text: &str) -> Vec<Token> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < chars.len() {
        let ch = chars[i];
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if is_ident(ch) {
            let len = chars[i..].iter().take_while(|&&c| is_ident(c)).count();
            let word = chars[i..i + len].iter().collect();
            tokens.push(Token {
                tok: Tok::Ident(word),
                line,
            });
            i += len;
        } else if ch == ':' && chars.get(i + 1) == Some(&':') {
            tokens.push(Token {
                tok: Tok::PathSep,
                line,
            });
            i += 2;
        } else {
            tokens.push(Token {
                tok: Tok::Punct(ch),
                line,
            });
            i += 1;
        }
    }
    tokens
}

/// Whether `tokens` start with `#[cfg(test)]` or `#[cfg(all(test, …))]`.
fn starts_cfg_test(tokens: &[Token]) -> bool {
    let text: String = tokens.iter().take(8).map(Token::text).collect();
    text.starts_with("#[cfg(test)]") || text.starts_with("#[cfg(all(test,")
}

/// The index of the bracket that closes the one at `open` (or the end).
fn closing(tokens: &[Token], open: usize) -> usize {
    let mut depth = 0usize;
    for (k, token) in tokens.iter().enumerate().skip(open) {
        if token.is('(') || token.is('[') || token.is('{') {
            depth += 1;
        } else if token.is(')') || token.is(']') || token.is('}') {
            depth -= 1;
            if depth == 0 {
                return k;
            }
        }
    }
    tokens.len()
}

/// Where the item (or statement) that starts at `start` ends: after its `;` or its
/// closing brace, or before the brace that closes the block around it.
fn item_end(tokens: &[Token], start: usize) -> usize {
    let mut depth = 0usize;
    for (k, token) in tokens.iter().enumerate().skip(start) {
        if token.is('(') || token.is('[') || token.is('{') {
            depth += 1;
        } else if token.is(')') || token.is(']') || token.is('}') {
            if depth == 0 {
                return k;
            }
            depth -= 1;
            if depth == 0 && token.is('}') {
                return k + 1;
            }
        } else if token.is(';') && depth == 0 {
            return k + 1;
        }
    }
    tokens.len()
}

/// `tokens` without the items under `#[cfg(test)]` or `#[cfg(all(test, …))]` (and the
/// other attributes on them).
fn without_test_items(tokens: &[Token]) -> Vec<Token> {
    let mut kept = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        if starts_cfg_test(&tokens[i..]) {
            let mut item = i;
            while tokens.get(item).is_some_and(|t| t.is('#'))
                && tokens.get(item + 1).is_some_and(|t| t.is('['))
            {
                item = closing(tokens, item + 1) + 1;
            }
            i = item_end(tokens, item);
        } else {
            kept.push(tokens[i].clone());
            i += 1;
        }
    }
    kept
}

/// A path as written in a file, which may point into the crate.
#[derive(Debug)]
struct RawPath {
    /// The module it is written in: the file's, and any inline `mod` it is inside.
    scope: Vec<String>,
    segments: Vec<String>,
    /// The name a `use` leaf binds (its `as` name, or its last segment); None for a glob
    /// and for a path in code.
    binds: Option<String>,
    /// From a `use` that is `pub` or `pub(…)`: a re-export.
    public_use: bool,
    line: usize,
}

/// One leaf of a `use` tree: its full path and the name it binds.
struct Leaf {
    segments: Vec<String>,
    binds: Option<String>,
    line: usize,
}

/// Reads the `use` tree at `tokens[*at..]` (after `use`, before `;`), below `prefix`.
fn use_tree(tokens: &[Token], at: &mut usize, prefix: Vec<String>, leaves: &mut Vec<Leaf>) {
    let mut segments = prefix;
    let mut line = tokens.get(*at).map_or(0, |token| token.line);
    while let Some(token) = tokens.get(*at) {
        match &token.tok {
            // A leading `::` (another crate) or the one between segments.
            Tok::PathSep => *at += 1,
            Tok::Ident(word) if word != "as" => {
                segments.push(word.clone());
                line = token.line;
                *at += 1;
            }
            Tok::Punct('{') => {
                *at += 1;
                while tokens.get(*at).is_some_and(|t| !t.is('}')) {
                    use_tree(tokens, at, segments.clone(), leaves);
                    if tokens.get(*at).is_some_and(|t| t.is(',')) {
                        *at += 1;
                    } else {
                        break;
                    }
                }
                *at += 1;
                return;
            }
            Tok::Punct('*') => {
                *at += 1;
                leaves.push(Leaf {
                    segments,
                    binds: None,
                    line,
                });
                return;
            }
            _ => break,
        }
    }
    if segments.last().is_some_and(|last| last == "self") {
        segments.pop();
    }
    let mut binds = segments.last().cloned();
    if tokens.get(*at).and_then(Token::ident) == Some("as") {
        binds = tokens.get(*at + 1).and_then(Token::ident).map(String::from);
        *at += 2;
    }
    leaves.push(Leaf {
        segments,
        binds,
        line,
    });
}

/// Whether the `use` at `at` has a visibility: `pub`, `pub(crate)`, `pub(super)`,
/// `pub(in …)`.
fn is_public_use(tokens: &[Token], at: usize) -> bool {
    let Some(before) = at.checked_sub(1) else {
        return false;
    };
    if tokens[before].ident() == Some("pub") {
        return true;
    }
    tokens[before].is(')')
        && (0..before)
            .rev()
            .find(|&k| tokens[k].is('('))
            .is_some_and(|open| open > 0 && tokens[open - 1].ident() == Some("pub"))
}

/// Whether a path in code starts at `i`: a word, `::` and another word, not itself after
/// a `::`, and not the path of a visibility `pub(in …)`.
fn starts_path(tokens: &[Token], i: usize) -> bool {
    let at = |k: usize| tokens.get(k);
    let after_sep = i > 0 && tokens[i - 1].is_path_sep();
    let visibility = i > 1 && tokens[i - 1].ident() == Some("in") && tokens[i - 2].is('(');
    tokens[i].ident().is_some()
        && at(i + 1).is_some_and(Token::is_path_sep)
        && at(i + 2).is_some_and(|t| t.ident().is_some())
        && !after_sep
        && !visibility
}

/// Every leaf of every `use` and every path in code of a file whose module is `module`.
fn raw_paths(tokens: &[Token], module: &[String]) -> Vec<RawPath> {
    let mut paths = Vec::new();
    // The inline `mod name { … }` blocks open at this point, with their brace depth.
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0;
    let mut i = 0;
    while i < tokens.len() {
        let scope: Vec<String> = module
            .iter()
            .cloned()
            .chain(inline.iter().map(|(name, _)| name.clone()))
            .collect();
        let token = &tokens[i];
        if token.is('{') {
            depth += 1;
            if i >= 2
                && tokens[i - 2].ident() == Some("mod")
                && let Some(name) = tokens[i - 1].ident()
            {
                inline.push((name.to_string(), depth));
            }
            i += 1;
        } else if token.is('}') {
            if inline.last().is_some_and(|&(_, open)| open == depth) {
                inline.pop();
            }
            depth = depth.saturating_sub(1);
            i += 1;
        } else if token.ident() == Some("use") && !tokens.get(i + 1).is_some_and(|t| t.is('<')) {
            // `use` declarations hold no `;`; their braces are balanced, so the depth
            // stays right when the whole declaration is skipped.
            let end = tokens[i..]
                .iter()
                .position(|t| t.is(';'))
                .map_or(tokens.len(), |offset| i + offset);
            let public_use = is_public_use(tokens, i);
            let mut leaves = Vec::new();
            use_tree(&tokens[i + 1..end], &mut 0, Vec::new(), &mut leaves);
            for leaf in leaves {
                paths.push(RawPath {
                    scope: scope.clone(),
                    segments: leaf.segments,
                    binds: leaf.binds,
                    public_use,
                    line: leaf.line,
                });
            }
            i = end + 1;
        } else if starts_path(tokens, i) {
            let mut segments = Vec::new();
            let mut k = i;
            while let Some(word) = tokens.get(k).and_then(Token::ident) {
                segments.push(word.to_string());
                let more = tokens.get(k + 1).is_some_and(Token::is_path_sep)
                    && tokens.get(k + 2).is_some_and(|t| t.ident().is_some());
                if !more {
                    break;
                }
                k += 2;
            }
            paths.push(RawPath {
                scope,
                segments,
                binds: None,
                public_use: false,
                line: token.line,
            });
            i = k + 1;
        } else {
            i += 1;
        }
    }
    paths
}

/// The crate's modules, each with the file that declares it.
type Modules<'a> = BTreeMap<Vec<String>, &'a str>;

/// The module path from the crate root that `segments`, written in `scope`, names; None
/// for a path that does not start in the crate (another crate, a type, a local name).
fn absolute(
    segments: &[String],
    scope: &[String],
    modules: &Modules,
    imported: &BTreeMap<String, Vec<String>>,
) -> Option<Vec<String>> {
    let (first, rest) = segments.split_first()?;
    let mut base = match first.as_str() {
        "crate" => Vec::new(),
        "self" => scope.to_vec(),
        "super" => {
            let mut up = scope.to_vec();
            up.pop()?;
            up
        }
        name => {
            let child = [scope, &[name.to_string()]].concat();
            if modules.contains_key(&child) {
                child
            } else {
                imported.get(name)?.clone()
            }
        }
    };
    let mut rest = rest.iter().peekable();
    while let Some(word) = rest.next_if(|word| *word == "super" || *word == "self") {
        if word == "super" {
            base.pop()?;
        }
    }
    base.extend(rest.cloned());
    Some(base)
}

/// The modules a file imports by name (`use crate::engine;`, `use super::task as t;`),
/// so a path in code that starts at that name resolves.
fn imported_modules(paths: &[RawPath], modules: &Modules) -> BTreeMap<String, Vec<String>> {
    let mut imported = BTreeMap::new();
    // A `use` may start at a name another `use` imports: repeat until nothing is new.
    loop {
        let known = imported.len();
        for path in paths {
            let Some(name) = &path.binds else { continue };
            if let Some(target) = absolute(&path.segments, &path.scope, modules, &imported)
                && modules.contains_key(&target)
            {
                imported.insert(name.clone(), target);
            }
        }
        if imported.len() == known {
            return imported;
        }
    }
}

/// The file of the longest prefix of `path` that is a module.
fn file_of<'a>(path: &[String], modules: &Modules<'a>) -> Option<&'a str> {
    (0..=path.len())
        .rev()
        .find_map(|len| modules.get(&path[..len]).copied())
}

/// The imports of one file by another.
#[derive(Debug, Default)]
struct Edge {
    lines: BTreeSet<usize>,
    /// False when every import is a parent module's re-export of its own descendant: a
    /// declaration of the descendant's path, not a use of it.
    dependency: bool,
}

/// Every import of a file by another, outside test code, by (from, to).
fn imports(sources: &BTreeMap<String, String>) -> BTreeMap<(String, String), Edge> {
    let code: BTreeMap<&str, &str> = sources
        .iter()
        .filter(|(file, _)| !is_test_file(file))
        .map(|(file, source)| (file.as_str(), source.as_str()))
        .collect();
    let modules: Modules = code.keys().map(|&file| (module_of(file), file)).collect();
    let mut edges: BTreeMap<(String, String), Edge> = BTreeMap::new();
    for (&file, &source) in &code {
        let module = module_of(file);
        let tokens = without_test_items(&tokenize(&blank_comments_and_literals(source)));
        let paths = raw_paths(&tokens, &module);
        let imported = imported_modules(&paths, &modules);
        for path in &paths {
            let Some(target) = absolute(&path.segments, &path.scope, &modules, &imported) else {
                continue;
            };
            let Some(to) = file_of(&target, &modules) else {
                continue;
            };
            if to == file {
                continue;
            }
            let to_module = module_of(to);
            let declaration =
                path.public_use && to_module.len() > module.len() && to_module.starts_with(&module);
            let edge = edges.entry((file.to_string(), to.to_string())).or_default();
            edge.lines.insert(path.line);
            edge.dependency |= !declaration;
        }
    }
    edges
}

/// The files that import each other in a circle: every strongly connected component of
/// more than one file in the graph of dependencies, each sorted.
fn circles(edges: &BTreeMap<(String, String), Edge>) -> Vec<Vec<String>> {
    let mut next: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for ((from, to), edge) in edges {
        if edge.dependency {
            next.entry(from).or_default().insert(to);
            next.entry(to).or_default();
        }
    }
    // The crate has tens of files: reachability from each is cheap and plainly right.
    let reach: BTreeMap<&str, BTreeSet<&str>> = next
        .keys()
        .map(|&start| {
            let mut seen = BTreeSet::new();
            let mut pending = vec![start];
            while let Some(file) = pending.pop() {
                for &to in &next[file] {
                    if seen.insert(to) {
                        pending.push(to);
                    }
                }
            }
            (start, seen)
        })
        .collect();
    let mut placed: BTreeSet<String> = BTreeSet::new();
    let mut found = Vec::new();
    for &file in next.keys() {
        if placed.contains(file) {
            continue;
        }
        let component: Vec<String> = next
            .keys()
            .filter(|&&other| {
                other == file || (reach[file].contains(other) && reach[other].contains(file))
            })
            .map(|other| other.to_string())
            .collect();
        placed.extend(component.iter().cloned());
        if component.len() > 1 {
            found.push(component);
        }
    }
    found
}

/// `[line 3]`, `[lines 3, 9]`.
fn lines_note(lines: &BTreeSet<usize>) -> String {
    let list: Vec<String> = lines.iter().map(usize::to_string).collect();
    let noun = if list.len() == 1 { "line" } else { "lines" };
    format!("[{noun} {}]", list.join(", "))
}

/// What the check found.
struct Findings {
    /// Files read, outside test code.
    files: usize,
    /// Pairs of files where one imports the other.
    edges: usize,
    /// Each module out of the list, import against the layers and circle.
    problems: Vec<String>,
}

fn check(layers: &[Layer], sources: &BTreeMap<String, String>) -> Findings {
    let mut problems = Vec::new();
    // Each module's layer: its index (0 at the top) and name.
    let mut layer_of: BTreeMap<&str, (usize, &str)> = BTreeMap::new();
    for (index, layer) in layers.iter().enumerate() {
        for module in &layer.modules {
            if let Some((_, other)) = layer_of.insert(module, (index, &layer.name)) {
                problems.push(format!(
                    "module {module} is listed in layer {other} and in layer {}",
                    layer.name
                ));
            }
        }
    }
    let present: BTreeSet<&str> = sources.keys().map(|file| top_module(file)).collect();
    for module in &present {
        if !layer_of.contains_key(module) {
            problems.push(format!(
                "module {module} is in no layer of ARCHITECTURE.md's list"
            ));
        }
    }
    for module in layer_of.keys() {
        if !present.contains(module) {
            problems.push(format!(
                "ARCHITECTURE.md's list names module {module}, which is not in the source"
            ));
        }
    }

    let edges = imports(sources);
    for ((from, to), edge) in &edges {
        let (source, target) = (top_module(from), top_module(to));
        if source == target {
            continue;
        }
        let (Some(&(from_index, from_layer)), Some(&(to_index, to_layer))) =
            (layer_of.get(source), layer_of.get(target))
        else {
            continue;
        };
        if to_index <= from_index {
            problems.push(format!(
                "{from} -> {to} (layer {from_layer} imports layer {to_layer}) {}",
                lines_note(&edge.lines)
            ));
        }
    }
    for circle in circles(&edges) {
        let mut text = format!("circle of {} files: {}", circle.len(), circle.join(", "));
        for ((from, to), edge) in &edges {
            if edge.dependency && circle.contains(from) && circle.contains(to) {
                text.push_str(&format!("\n    {from} -> {to} {}", lines_note(&edge.lines)));
            }
        }
        problems.push(text);
    }
    Findings {
        files: sources.keys().filter(|file| !is_test_file(file)).count(),
        edges: edges.len(),
        problems,
    }
}

#[test]
fn layers_point_down_and_no_files_import_each_other_in_a_circle() {
    let runtime = Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = std::env::var_os("SPOTQ_ARCH_SRC").map_or_else(|| runtime.join("src"), PathBuf::from);
    let doc = fs::read_to_string(runtime.join("../ARCHITECTURE.md"))
        .expect("ARCHITECTURE.md at the repository root");
    let layers = parse_layers(&doc).unwrap_or_else(|error| panic!("ARCHITECTURE.md: {error}"));
    assert!(
        layers.len() >= 5,
        "ARCHITECTURE.md lists {} layers; the runtime has more",
        layers.len()
    );

    let findings = check(&layers, &read_sources(&src));
    assert!(
        findings.files >= 50,
        "read {} files under {}: not the runtime's source",
        findings.files,
        src.display()
    );
    assert!(
        findings.edges >= 100,
        "found {} imports between files: the parser misses them",
        findings.edges
    );
    assert!(
        findings.problems.is_empty(),
        "{} problems with ARCHITECTURE.md's layers ({} files, {} imports between files):\n{}",
        findings.problems.len(),
        findings.files,
        findings.edges,
        findings.problems.join("\n")
    );
}

/// Sources from (file, text) pairs.
fn sources(files: &[(&str, &str)]) -> BTreeMap<String, String> {
    files
        .iter()
        .map(|&(file, text)| (file.to_string(), text.to_string()))
        .collect()
}

/// The files that `from` imports, among `files`.
fn imported_by(files: &[(&str, &str)], from: &str) -> BTreeSet<String> {
    imports(&sources(files))
        .into_keys()
        .filter(|(source, _)| source == from)
        .map(|(_, target)| target)
        .collect()
}

fn set(files: &[&str]) -> BTreeSet<String> {
    files.iter().map(|file| file.to_string()).collect()
}

/// A small crate: a root, two files, a module with two children and one with one.
const MODULES: [(&str, &str); 8] = [
    ("lib.rs", ""),
    ("a.rs", ""),
    ("b.rs", ""),
    ("c/mod.rs", ""),
    ("c/d.rs", ""),
    ("c/e.rs", ""),
    ("g/mod.rs", ""),
    ("g/h.rs", ""),
];

/// [`MODULES`] with `files` added, or in place of those of the same name.
fn with(files: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    MODULES
        .iter()
        .copied()
        .filter(|(file, _)| files.iter().all(|(other, _)| other != file))
        .chain(files.iter().copied())
        .collect()
}

#[test]
fn a_grouped_nested_use_resolves_each_leaf_to_its_file() {
    let x =
        "pub use crate::{\n    a::Thing,\n    c::{d, e as renamed},\n    g::{self, h::*},\n};\n";
    let files = with(&[("x.rs", x)]);
    assert_eq!(
        imported_by(&files, "x.rs"),
        set(&["a.rs", "c/d.rs", "c/e.rs", "g/mod.rs", "g/h.rs"])
    );
}

#[test]
fn super_and_self_resolve_from_the_files_own_module() {
    let d = "use super::e::Thing;\nuse super::super::a::A;\n";
    let c = "mod d;\nmod e;\nuse super::b::B;\nuse self::d::D;\n";
    let files = with(&[("c/d.rs", d), ("c/mod.rs", c)]);
    assert_eq!(imported_by(&files, "c/d.rs"), set(&["c/e.rs", "a.rs"]));
    assert_eq!(imported_by(&files, "c/mod.rs"), set(&["b.rs", "c/d.rs"]));
}

#[test]
fn paths_in_code_resolve_through_a_module_imported_by_name() {
    let x = "use crate::c;\nuse crate::g::h as hours;\n\
             fn f(value: crate::a::A) -> Vec<hours::Hour> { c::d::run::<u8>(value) }\n";
    let files = with(&[("x.rs", x)]);
    assert_eq!(
        imported_by(&files, "x.rs"),
        set(&["c/mod.rs", "g/h.rs", "a.rs", "c/d.rs"])
    );
}

#[test]
fn paths_in_comments_doc_comments_and_literals_do_not_count() {
    let x = r##"//! See [`Thing`](crate::a::Thing).
/// Calls [`crate::b::run`].
/* crate::c::e /* nested */ crate::g::Thing */
fn f<'a>(name: &'a str) -> crate::g::h::T {
    let quote = '"';
    let escaped = '\'';
    let text = "crate::a::Thing \" crate::c::e";
    let raw = r#"crate::c::e " crate::b"#;
    crate::c::d::run(quote, escaped, text, raw, name)
}
"##;
    let files = with(&[("x.rs", x)]);
    assert_eq!(imported_by(&files, "x.rs"), set(&["g/h.rs", "c/d.rs"]));
}

#[test]
fn test_code_does_not_count() {
    let c = "mod d;\n\
             #[cfg(test)]\n#[allow(unused)]\nmod tests {\n    use crate::a::A;\n    fn f() { crate::b::run() }\n}\n\
             #[cfg(all(test, feature = \"sqs\"))]\nuse crate::g::h;\n\
             pub fn after(value: crate::c::d::D) {}\n";
    let files = with(&[("c/mod.rs", c), ("c/tests.rs", "use crate::a::A;\n")]);
    assert_eq!(imported_by(&files, "c/mod.rs"), set(&["c/d.rs"]));
    assert_eq!(imported_by(&files, "c/tests.rs"), set(&[]));
}

/// The layers `surface: lib`, `top: a`, `bottom: b c`, `pieces: g`.
fn small_layers() -> Vec<Layer> {
    parse_layers("# Layers\n\n```layers\nsurface: lib\ntop: a\n\nbottom: b c\npieces: g\n```\n")
        .expect("a layer list")
}

#[test]
fn the_layer_list_is_read_top_first() {
    let layers = small_layers();
    let names: Vec<&str> = layers.iter().map(|layer| layer.name.as_str()).collect();
    assert_eq!(names, ["surface", "top", "bottom", "pieces"]);
    assert_eq!(layers[2].modules, ["b", "c"]);
    assert!(parse_layers("no list here").is_err());
    assert!(parse_layers("```layers\ntop a\n```").is_err());
}

#[test]
fn an_import_of_a_higher_layer_or_a_sibling_module_is_an_offence() {
    let files = sources(&[
        ("lib.rs", "pub use crate::a::A;\n"),
        ("a.rs", "use crate::b::B;\n"),
        (
            "b.rs",
            "use crate::g::G;\n\npub fn f() { crate::a::run() }\n",
        ),
        ("c/mod.rs", "use crate::b::B;\n"),
        ("g/mod.rs", ""),
    ]);
    let findings = check(&small_layers(), &files);
    assert_eq!(
        findings.problems,
        [
            "b.rs -> a.rs (layer bottom imports layer top) [line 3]",
            "c/mod.rs -> b.rs (layer bottom imports layer bottom) [line 1]",
            "circle of 2 files: a.rs, b.rs\n    a.rs -> b.rs [line 1]\n    b.rs -> a.rs [line 3]",
        ]
    );
    assert_eq!(findings.files, 5);
    assert_eq!(findings.edges, 5);
}

#[test]
fn a_module_missing_from_the_list_or_not_in_the_source_is_named() {
    let files = sources(&[
        ("lib.rs", ""),
        ("a.rs", ""),
        ("b.rs", ""),
        ("c.rs", ""),
        ("new/mod.rs", ""),
    ]);
    assert_eq!(
        check(&small_layers(), &files).problems,
        [
            "module new is in no layer of ARCHITECTURE.md's list",
            "ARCHITECTURE.md's list names module g, which is not in the source",
        ]
    );
}

#[test]
fn a_circle_of_two_files_is_found_and_a_parents_reexport_is_no_dependency() {
    let parent =
        "mod a;\nmod b;\npub use a::A;\npub(crate) use crate::m::b::B;\npub struct Root;\n";
    let a = "use super::Root;\nuse super::b::B;\n";
    let b = "pub fn f() -> crate::m::a::A {}\n";
    let files = sources(&[
        ("lib.rs", ""),
        ("m/mod.rs", parent),
        ("m/a.rs", a),
        ("m/b.rs", b),
    ]);
    let edges = imports(&files);
    assert_eq!(edges.len(), 5);
    assert_eq!(circles(&edges), [["m/a.rs", "m/b.rs"]]);

    // The same import without `pub` is a use of `a`, which uses the parent back.
    let private = parent.replace("pub use a::A", "use a::A");
    let files = sources(&[
        ("lib.rs", ""),
        ("m/mod.rs", &private),
        ("m/a.rs", a),
        ("m/b.rs", b),
    ]);
    assert_eq!(
        circles(&imports(&files)),
        [["m/a.rs", "m/b.rs", "m/mod.rs"]]
    );
}

/// The names `lib.rs` makes public at the crate root: each `pub mod` and each name a
/// `pub use` binds (with or without `pub(crate)`: only a bare `pub` counts), whatever
/// their `cfg`.
fn root_names(lib: &str) -> BTreeSet<String> {
    let tokens = without_test_items(&tokenize(&blank_comments_and_literals(lib)));
    let mut names = BTreeSet::new();
    for (i, token) in tokens.iter().enumerate() {
        let bare_pub = i > 0 && tokens[i - 1].ident() == Some("pub");
        if !bare_pub {
            continue;
        }
        match token.ident() {
            Some("mod") => {
                if let Some(name) = tokens.get(i + 1).and_then(Token::ident) {
                    names.insert(name.to_string());
                }
            }
            Some("use") => {
                let mut at = i + 1;
                let mut leaves = Vec::new();
                use_tree(&tokens, &mut at, Vec::new(), &mut leaves);
                names.extend(leaves.into_iter().filter_map(|leaf| leaf.binds));
            }
            _ => {}
        }
    }
    names
}

#[test]
fn the_crate_root_is_the_users_path_in_twenty_names_or_fewer() {
    let lib = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs"))
        .expect("runtime/src/lib.rs");
    let names = root_names(&lib);
    // The parser finds what is there: the names every user writes are among them.
    for expected in [
        "Worker",
        "Message",
        "Outcome",
        "EmbeddedQueue",
        "backend",
        "handler",
    ] {
        assert!(
            names.contains(expected),
            "{expected} not found at the root: {names:?}"
        );
    }
    assert!(
        names.len() <= 20,
        "{} names at the crate root (at most 20): {names:?}",
        names.len()
    );
}

#[test]
fn root_names_counts_modules_and_the_names_uses_bind() {
    let lib = "pub mod a;\nmod hidden;\npub(crate) use hidden::X;\n\
               pub use b::{C, d::E as F};\n#[cfg(feature = \"x\")]\npub use g::H;\n\
               // pub use not::This;\n";
    let names: Vec<_> = root_names(lib).into_iter().collect();
    assert_eq!(names, ["C", "F", "H", "a"]);
}
