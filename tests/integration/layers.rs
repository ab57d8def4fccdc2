//! The library's top-level modules form layers: no import cycle between
//! them. Read from the source, as a person would: every `crate::<module>`
//! path in a file of `src/<module>/…` (outside comments, strings and
//! `#[cfg(test)]` code) is an edge from that module to the other; the
//! edges must form no cycle. On failure the message lists each cycle and
//! the files behind its edges.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level module → module it names → files that name it.
type Edges = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

#[test]
fn top_level_modules_form_no_import_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let edges = edges(&src);
    assert!(
        edges.contains_key("proxy") && edges.contains_key("spool"),
        "the scan found no edges of proxy or spool: {edges:?}"
    );
    let cycles = cycles(&edges);
    if !cycles.is_empty() {
        let mut report = String::new();
        for cycle in &cycles {
            report.push_str(&format!("cycle: {}\n", cycle.join(" -> ")));
            for pair in cycle.windows(2) {
                let files = &edges[&pair[0]][&pair[1]];
                report.push_str(&format!("  {} -> {}: {:?}\n", pair[0], pair[1], files));
            }
        }
        panic!("import cycles between top-level modules:\n{report}");
    }
    // The layers the architecture promises, named so a regression reads plainly.
    for (low, high) in [
        ("peer", "proxy"),
        ("peer", "spool"),
        ("tls", "peer"),
        ("admin", "peer"),
    ] {
        assert!(
            !edges.get(low).is_some_and(|e| e.contains_key(high)),
            "{low} must not depend on {high}: {:?}",
            edges[low][high]
        );
    }
    for (a, b) in [("proxy", "spool"), ("spool", "proxy")] {
        assert!(
            !edges.get(a).is_some_and(|e| e.contains_key(b)),
            "{a} must not depend on {b}: {:?}",
            edges[a][b]
        );
    }
}

/// The top-level modules of the library and the edges between them.
fn edges(src: &Path) -> Edges {
    let tops: BTreeSet<String> = std::fs::read_dir(src)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            match name.strip_suffix(".rs") {
                Some(stem) => Some(stem.to_owned()),
                None => src.join(&name).is_dir().then_some(name),
            }
        })
        .filter(|m| !["lib", "main", "cli"].contains(&m.as_str()))
        .collect();
    let mut files = Vec::new();
    for top in &tops {
        let dir = src.join(top);
        if dir.is_dir() {
            rust_files(&dir, &mut files);
        }
        let file = src.join(format!("{top}.rs"));
        if file.is_file() {
            files.push(file);
        }
    }
    let mut test_only = BTreeSet::new();
    let mut code = Vec::new();
    for file in &files {
        let text = strip_comments_and_strings(&std::fs::read_to_string(file).unwrap());
        let (product, test_files) = without_test_code(&text, file);
        test_only.extend(test_files);
        code.push((file.clone(), product));
    }
    let mut edges = Edges::new();
    for (file, text) in code {
        if test_only.contains(&file) {
            continue;
        }
        let rel = file.strip_prefix(src).unwrap();
        let from = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_owned();
        for to in named_modules(&text) {
            if to != from && tops.contains(&to) {
                edges
                    .entry(from.clone())
                    .or_default()
                    .entry(to)
                    .or_default()
                    .insert(rel.display().to_string());
            }
        }
    }
    edges
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The first segment after every `crate::`, including each name of a
/// `use crate::{a, b::c}` group.
fn named_modules(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    for (at, _) in text.match_indices("crate::") {
        let before = text[..at].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue; // `pairgate_crate::` or the like
        }
        let rest = text[at + "crate::".len()..].trim_start();
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0usize;
            let mut start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    c if c.is_whitespace() => {}
                    _ if start && depth == 0 => {
                        out.insert(ident(&group[i..]));
                        start = false;
                    }
                    _ => {}
                }
            }
        } else {
            out.insert(ident(rest));
        }
    }
    out
}

/// `text` without the items under `#[cfg(test)]` (or `#[cfg(all(test, …))]`),
/// and the files of test-only modules it declares (`mod tests;`, with or
/// without `#[path]`).
fn without_test_code(text: &str, file: &Path) -> (String, Vec<PathBuf>) {
    let mut out = String::new();
    let mut test_files = Vec::new();
    let mut rest = text;
    while let Some(at) = find_test_cfg(rest) {
        out.push_str(&rest[..at]);
        let item = &rest[at..];
        // The item ends at the first `;` outside braces, or its closing brace.
        let (mut depth, mut end) = (0usize, item.len());
        for (i, c) in item.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        end = i + 1;
                        break;
                    }
                }
                ';' if depth == 0 && !item[..i].trim_end().ends_with(']') => {
                    end = i + 1;
                    break;
                }
                _ => {}
            }
        }
        let declared = &item[..end];
        if !declared.contains('{') {
            test_files.extend(module_file(declared, file));
        }
        rest = &item[end..];
    }
    out.push_str(rest);
    (out, test_files)
}

/// Where `#[cfg(test)]` or `#[cfg(all(test` starts in `text`.
fn find_test_cfg(text: &str) -> Option<usize> {
    let plain = text.find("#[cfg(test)]");
    let all = text.find("#[cfg(all(test");
    match (plain, all) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The file of a module declared as `mod NAME;` in `file` (after its attributes).
fn module_file(declaration: &str, file: &Path) -> Option<PathBuf> {
    let dir = file.parent()?;
    if let Some(at) = declaration.find("#[path") {
        let quoted = declaration[at..].split('"').nth(1)?;
        return Some(dir.join(quoted));
    }
    // Strings were blanked: without `#[path]` the module is NAME.rs beside a
    // mod.rs/lib.rs, else in the folder named after the file.
    let name = declaration
        .rsplit("mod ")
        .next()?
        .trim_end_matches(';')
        .trim();
    let stem = file.file_stem()?.to_string_lossy();
    let base = if stem == "mod" {
        dir.to_path_buf()
    } else {
        dir.join(&*stem)
    };
    [
        base.join(format!("{name}.rs")),
        base.join(name).join("mod.rs"),
    ]
    .into_iter()
    .find(|p| p.is_file())
}

/// Rust source with comments removed and string/char literals emptied
/// (`""`, `''`); `#[path = "…"]` keeps its string, which names a file.
fn strip_comments_and_strings(src: &str) -> String {
    let chars: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if c == 'r'
            && matches!(next, Some('"' | '#'))
            && !out.chars().next_back().is_some_and(is_ident)
        {
            // Raw string r"…", r#"…"#.
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= chars.len() {
                    break;
                }
                if chars[j] == '"' && (1..=hashes).all(|k| chars.get(j + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            out.push_str("\"\"");
            i = j;
        } else if c == '"' {
            let keep = out.trim_end().ends_with("#[path =") || out.trim_end().ends_with("#[path=");
            let start = i;
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            if keep {
                out.extend(&chars[start..i.min(chars.len())]);
            } else {
                out.push_str("\"\"");
            }
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{…}') or a lifetime ('a).
            if next == Some('\\') {
                i += 2;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
                out.push_str("''");
            } else if chars.get(i + 2) == Some(&'\'') {
                i += 3;
                out.push_str("''");
            } else {
                out.push(c);
                i += 1;
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Each cycle of the graph (one per strongly connected component of more
/// than one module), as a closed path `a -> b -> … -> a`.
fn cycles(edges: &Edges) -> Vec<Vec<String>> {
    let nodes: BTreeSet<&String> = edges
        .iter()
        .flat_map(|(a, tos)| std::iter::once(a).chain(tos.keys()))
        .collect();
    let mut found = Vec::new();
    let mut in_cycle: BTreeSet<String> = BTreeSet::new();
    for start in nodes {
        if in_cycle.contains(start) {
            continue;
        }
        // Shortest path back to `start` (breadth first).
        let mut prev: BTreeMap<String, String> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([start.clone()]);
        let mut closed = None;
        while let Some(node) = queue.pop_front() {
            for next in edges.get(&node).into_iter().flat_map(|e| e.keys()) {
                if next == start {
                    closed = Some(node.clone());
                    break;
                }
                if !prev.contains_key(next) {
                    prev.insert(next.clone(), node.clone());
                    queue.push_back(next.clone());
                }
            }
            if closed.is_some() {
                break;
            }
        }
        if let Some(last) = closed {
            let mut path = vec![last.clone()];
            let mut node = last;
            while node != *start {
                node = prev[&node].clone();
                path.push(node.clone());
            }
            path.reverse();
            path.push(start.clone());
            in_cycle.extend(path.iter().cloned());
            found.push(path);
        }
    }
    found
}

#[test]
fn the_scanner_sees_groups_and_skips_comments_strings_and_test_code() {
    let text = strip_comments_and_strings(
        "use crate::{audit::{self, Event}, tls};\n// crate::spool\nlet s = \"crate::admin\";\n\
         let r = r#\"crate::pki\"#; let c = '\"'; fn f<'a>() {}\n\
         #[cfg(test)]\nmod tests { use crate::config; }\nuse crate::policy::X;\n",
    );
    let (product, _) = without_test_code(&text, Path::new("src/x.rs"));
    let named = named_modules(&product);
    let want: BTreeSet<String> = ["audit", "tls", "policy"].map(String::from).into();
    assert_eq!(named, want);
    let mut e = Edges::new();
    e.entry("a".into())
        .or_default()
        .entry("b".into())
        .or_default();
    e.entry("b".into())
        .or_default()
        .entry("c".into())
        .or_default();
    assert!(cycles(&e).is_empty());
    e.entry("c".into())
        .or_default()
        .entry("a".into())
        .or_default();
    assert_eq!(cycles(&e), vec![vec!["a", "b", "c", "a"]]);
}
