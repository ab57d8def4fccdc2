//! The operator's TOML files (the config and the policy): the one loader,
//! and turning positions in them into the `file:line` messages operators read.
//!
//! Both files are read by [`load`] / [`parse`]: read the text, deserialize
//! it into the file's serde structs (unknown keys are errors), then hand it
//! to the file's own validation ([`TomlFile`]). Both deserialize with
//! `toml::Spanned` on the fields they may complain about, and report
//! problems as one line: `FILE:LINE: KEY: WHAT IS WRONG — WHAT TO DO`.
//! toml's own errors (syntax, unknown keys, wrong types) carry a byte span;
//! this module converts that span into a line and column and flattens
//! toml's multi-line message into the same one-line shape.

use std::ops::Range;
use std::path::Path;

/// An operator's TOML file: its serde shape, its validated form and its errors.
pub(crate) trait TomlFile: Sized {
    /// The file exactly as written (serde structs, `deny_unknown_fields`).
    type Raw: serde::de::DeserializeOwned;
    type Error;

    /// The file cannot be read.
    fn read_error(path: &Path, error: std::io::Error) -> Self::Error;

    /// The text is not TOML of the expected shape.
    fn syntax_error(path: &Path, problem: TomlProblem) -> Self::Error;

    /// The file's own rules; `text` is there for line numbers.
    fn validate(raw: Self::Raw, text: &str, path: &Path) -> Result<Self, Self::Error>;
}

/// Reads, deserializes and validates the file at `path`.
///
/// # Errors
/// [`TomlFile::read_error`], then as [`parse`].
pub(crate) fn load<F: TomlFile>(path: &Path) -> Result<F, F::Error> {
    let text = std::fs::read_to_string(path).map_err(|e| F::read_error(path, e))?;
    parse(&text, path)
}

/// Deserializes and validates `text`; `path` names the file in messages.
///
/// # Errors
/// [`TomlFile::syntax_error`] for TOML problems (including unknown keys),
/// then the file's own [`TomlFile::validate`] errors.
pub(crate) fn parse<F: TomlFile>(text: &str, path: &Path) -> Result<F, F::Error> {
    let raw: F::Raw =
        toml::from_str(text).map_err(|err| F::syntax_error(path, toml_problem(text, &err)))?;
    F::validate(raw, text, path)
}

/// `path:line` for messages; a line of 0 means "unknown" and prints only the path.
pub(crate) fn at(path: &Path, line: usize) -> String {
    if line == 0 {
        path.display().to_string()
    } else {
        format!("{}:{line}", path.display())
    }
}

/// `path:line:column` for messages; a line of 0 means "unknown" and prints only the path.
pub(crate) fn at_column(path: &Path, line: usize, column: usize) -> String {
    if line == 0 {
        path.display().to_string()
    } else {
        format!("{}:{line}:{column}", path.display())
    }
}

/// `text` with control characters (newline, tab, escape, …) written as escapes
/// (`\n`), so a value quoted in a message cannot break it over several lines
/// or hide part of it.
pub(crate) fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// The 1-based line of byte `offset` in `text` (offsets past the end count as the last line).
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    let end = floor_char_boundary(text, offset);
    text[..end].matches('\n').count() + 1
}

/// Where the lines of one text break, for the many line lookups of one
/// validation (every item's message names its line): counting newlines from
/// the start for each made a config of thousands of tunnels quadratic.
pub(crate) struct LineIndex {
    /// Byte offsets of the `\n`s, in order.
    newlines: Vec<usize>,
}

impl LineIndex {
    pub(crate) fn new(text: &str) -> LineIndex {
        LineIndex {
            newlines: text.match_indices('\n').map(|(i, _)| i).collect(),
        }
    }

    /// The 1-based line of the start of `span` (as [`line_of`]).
    pub(crate) fn line_of_span(&self, span: &Range<usize>) -> usize {
        self.newlines.partition_point(|&nl| nl < span.start) + 1
    }
}

/// The 1-based column (in characters) of byte `offset` in `text`.
fn column_of(text: &str, offset: usize) -> usize {
    let end = floor_char_boundary(text, offset);
    let line_start = text[..end].rfind('\n').map_or(0, |i| i + 1);
    text[line_start..end].chars().count() + 1
}

fn floor_char_boundary(text: &str, offset: usize) -> usize {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    end
}

/// A toml deserialization error flattened to one line, with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TomlProblem {
    /// 1-based line, 0 if toml gave no position.
    pub line: usize,
    /// 1-based column, 0 if toml gave no position.
    pub column: usize,
    /// toml's message on one line, with the table it happened in and a fix when we know one.
    pub message: String,
}

/// Describes a toml error for an operator: position, the table it is in, toml's
/// message on one line, and the fix for the common cases (unknown / missing / duplicate key).
pub(crate) fn toml_problem(text: &str, err: &toml::de::Error) -> TomlProblem {
    let (line, column) = match err.span() {
        Some(span) => (line_of(text, span.start), column_of(text, span.start)),
        None => (0, 0),
    };
    let flat: Vec<&str> = err
        .message()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let flat = flat.join(": ");
    // An unknown key that is itself a header (`[metrics]`, `[gateway.extra]`) belongs to
    // the header's parent table, not to the table above it.
    let unknown = flat.starts_with("unknown field");
    let own_header = text
        .lines()
        .nth(line.saturating_sub(1))
        .and_then(header_name);
    let table = match (line, own_header) {
        (0, _) => None,
        (_, Some(name)) if unknown => name
            .rsplit_once('.')
            .map(|(parent, _)| format!("[{parent}]")),
        _ => table_before(text, line),
    };
    let place = table.map(|t| format!("in {t}: ")).unwrap_or_default();
    let fix = if unknown {
        " — remove it or fix its spelling (keys are case-sensitive)"
    } else if flat.starts_with("missing field") {
        " — add it (see the examples in the policy/ folder)"
    } else if flat.contains("duplicate key") {
        " — keep only one of them"
    } else if is_syntax(&flat) {
        " — fix the TOML syntax there (quotes, brackets, commas, `key = value`)"
    } else {
        ""
    };
    TomlProblem {
        line,
        column,
        message: format!("{place}{flat}{fix}"),
    }
}

/// Whether a toml message is about syntax rather than a value serde rejected.
fn is_syntax(message: &str) -> bool {
    const SERDE: &[&str] = &[
        "invalid type",
        "invalid value",
        "invalid length",
        "unknown variant",
        "missing field",
        "unknown field",
    ];
    !SERDE.iter().any(|prefix| message.starts_with(prefix))
}

/// The `[table]` or `[[array]]` header governing `line`, if any, as written (brackets included).
fn table_before(text: &str, line: usize) -> Option<String> {
    text.lines()
        .take(line)
        .filter_map(|l| header_name(l).map(|_| l.trim()))
        .last()
        .map(|l| l.split('#').next().unwrap_or(l).trim_end().to_owned())
}

/// `Some("tunnel")` for a `[[tunnel]]` line, `Some("gateway")` for `[gateway]`.
fn header_name(line: &str) -> Option<&str> {
    let line = line.trim();
    let line = match line.find('#') {
        Some(i) => line[..i].trim_end(),
        None => line,
    };
    let inner = line.strip_prefix("[[").and_then(|l| l.strip_suffix("]]"));
    let inner = inner.or_else(|| line.strip_prefix('[').and_then(|l| l.strip_suffix(']')))?;
    let inner = inner.trim();
    let is_key = !inner.is_empty()
        && inner
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '"' | ' '));
    is_key.then_some(inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_columns_are_one_based() {
        let text = "a = 1\nbb = 2\n";
        assert_eq!(line_of(text, 0), 1);
        assert_eq!(line_of(text, 6), 2);
        assert_eq!(column_of(text, 9), 4);
        assert_eq!(line_of(text, 999), 3);
        let index = LineIndex::new(text);
        for offset in 0..text.len() + 3 {
            assert_eq!(
                index.line_of_span(&(offset..offset)),
                line_of(text, offset),
                "{offset}"
            );
        }
    }

    #[test]
    fn at_omits_unknown_line() {
        assert_eq!(at(Path::new("x.toml"), 0), "x.toml");
        assert_eq!(at(Path::new("x.toml"), 7), "x.toml:7");
        assert_eq!(at_column(Path::new("x.toml"), 0, 0), "x.toml");
        assert_eq!(at_column(Path::new("x.toml"), 7, 2), "x.toml:7:2");
    }

    #[test]
    fn headers_are_recognised_but_arrays_are_not() {
        assert_eq!(header_name("[[tunnel]]  # comment"), Some("tunnel"));
        assert_eq!(header_name(" [gateway]"), Some("gateway"));
        assert_eq!(header_name("[\"a\", \"b\"]"), None);
        assert_eq!(header_name("pools = [\"a\"]"), None);
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        pool: String,
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Outer {
        gateway: Inner,
    }

    #[test]
    fn unknown_field_names_table_line_and_fix() {
        let text = "# head\n[gateway]\npool = \"a\"\npol = 1\n";
        let err = toml::from_str::<Outer>(text).err();
        let problem = toml_problem(text, &err.expect("must fail"));
        assert_eq!((problem.line, problem.column), (4, 1));
        assert!(problem
            .message
            .starts_with("in [gateway]: unknown field `pol`"));
        assert!(problem.message.contains("remove it"));
        assert!(!problem.message.contains('\n'));
    }

    #[test]
    fn syntax_error_is_one_line() {
        let text = "[gateway]\npool = [\"a\"\n";
        let err = toml::from_str::<Outer>(text).err();
        let problem = toml_problem(text, &err.expect("must fail"));
        assert!(problem.line >= 2, "{problem:?}");
        assert!(!problem.message.contains('\n'), "{}", problem.message);
    }

    #[test]
    fn one_line_escapes_control_characters_only() {
        assert_eq!(one_line("a\nb\t\u{1b}[2J"), "a\\nb\\t\\u{1b}[2J");
        assert_eq!(one_line("pool01.é \"x\""), "pool01.é \"x\"");
    }
}
