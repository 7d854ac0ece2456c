//! The input list: one entry per line — `URL`, `NAME URL`, or a JSON object
//! `{"name": ..., "url": ...}` — with blank lines and `#` comments ignored.
//!
//! The whole list is validated before anything is fetched; every problem is reported with its line
//! number, so a user fixes the file in one pass.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;

use super::naming::{self, NameError};
use super::url::{HttpUrl, UrlError};

/// One line of the list, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The list it came from: a path, `<stdin>`, or `<args>` for URL arguments.
    pub(crate) source: Arc<str>,
    /// 1-based line number in that list (position among the URL arguments), for messages and
    /// the report.
    pub(crate) line: usize,
    /// The file name the user asked for, if any (already checked by [`naming::validate_name`]).
    pub(crate) name: Option<String>,
    pub(crate) url: HttpUrl,
}

/// What is wrong with one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum LineProblem {
    #[error("not valid UTF-8")]
    NotUtf8,
    #[error("expected `URL` or `NAME URL`, found {0} fields")]
    TooManyFields(usize),
    #[error("malformed JSON entry: {0}")]
    Json(String),
    #[error(transparent)]
    Url(#[from] UrlError),
    #[error(transparent)]
    Name(#[from] NameError),
    #[error("duplicate name {name:?} (first used on {first})")]
    DuplicateName { name: String, first: String },
}

/// A problem and the line it is on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {problem}")]
pub(crate) struct LineError {
    /// The list (named `list`, not `source`, which thiserror reserves for causes).
    pub(crate) list: Arc<str>,
    pub(crate) line: usize,
    pub(crate) problem: LineProblem,
}

/// The JSON form of an entry; unknown keys are refused so a typo (`"nmae"`) is not silently
/// ignored.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonEntry {
    #[serde(default)]
    name: Option<String>,
    url: String,
}

/// The name URL arguments are reported under.
pub(crate) const ARGS: &str = "<args>";

/// Parses and validates a whole list; returns every entry, or every problem found.
pub(crate) fn parse(input: &[u8]) -> Result<Vec<Entry>, Vec<LineError>> {
    let (entries, mut errors) = parse_source("<list>", input);
    errors.extend(duplicates(&entries));
    errors.sort_by_key(|e| e.line);
    if errors.is_empty() {
        Ok(entries)
    } else {
        Err(errors)
    }
}

/// Every entry of one list, and every problem in it (names are not yet checked against each
/// other: see [`duplicates`]).
pub(crate) fn parse_source(source: &str, input: &[u8]) -> (Vec<Entry>, Vec<LineError>) {
    let source: Arc<str> = source.into();
    let input = input.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(input);
    let mut entries = Vec::new();
    let mut errors = Vec::new();
    for (index, raw) in input.split(|&b| b == b'\n').enumerate() {
        let line = index + 1;
        let fail = |problem: LineProblem| LineError {
            list: source.clone(),
            line,
            problem,
        };
        let Ok(text) = std::str::from_utf8(raw) else {
            errors.push(fail(LineProblem::NotUtf8));
            continue;
        };
        let text = text.trim();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        match parse_line(text) {
            Ok((name, url)) => entries.push(Entry {
                source: source.clone(),
                line,
                name,
                url,
            }),
            Err(problem) => errors.push(fail(problem)),
        }
    }
    (entries, errors)
}

/// URL arguments as entries of the pseudo-list `<args>`.
pub(crate) fn from_arguments(urls: &[&str]) -> (Vec<Entry>, Vec<LineError>) {
    let source: Arc<str> = ARGS.into();
    let mut entries = Vec::new();
    let mut errors = Vec::new();
    for (index, url) in urls.iter().enumerate() {
        match HttpUrl::parse(url) {
            Ok(url) => entries.push(Entry {
                source: source.clone(),
                line: index + 1,
                name: None,
                url,
            }),
            Err(e) => errors.push(LineError {
                list: source.clone(),
                line: index + 1,
                problem: e.into(),
            }),
        }
    }
    (entries, errors)
}

/// A NAME used twice, in one list or across several, refused at its second use.
pub(crate) fn duplicates(entries: &[Entry]) -> Vec<LineError> {
    let mut first_use: HashMap<&str, &Entry> = HashMap::new();
    let mut errors = Vec::new();
    for entry in entries {
        let Some(name) = &entry.name else { continue };
        match first_use.get(name.as_str()) {
            Some(first) => errors.push(LineError {
                list: entry.source.clone(),
                line: entry.line,
                problem: LineProblem::DuplicateName {
                    name: name.clone(),
                    first: if first.source == entry.source {
                        format!("line {}", first.line)
                    } else {
                        format!("{}:{}", first.source, first.line)
                    },
                },
            }),
            None => {
                first_use.insert(name, entry);
            }
        }
    }
    errors
}

fn parse_line(text: &str) -> Result<(Option<String>, HttpUrl), LineProblem> {
    let (name, url) = if text.starts_with('{') {
        let entry: JsonEntry =
            serde_json::from_str(text).map_err(|e| LineProblem::Json(e.to_string()))?;
        (entry.name, entry.url)
    } else {
        let fields: Vec<&str> = text.split_whitespace().collect();
        match fields[..] {
            [url] => (None, url.to_owned()),
            [name, url] => (Some(name.to_owned()), url.to_owned()),
            _ => return Err(LineProblem::TooManyFields(fields.len())),
        }
    };
    let url = HttpUrl::parse(&url)?;
    if let Some(name) = &name {
        naming::validate_name(name)?;
    }
    Ok((name, url))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(input: &str) -> Vec<(usize, LineProblem)> {
        parse(input.as_bytes())
            .unwrap_err()
            .into_iter()
            .map(|e| (e.line, e.problem))
            .collect()
    }

    #[test]
    fn reads_all_three_forms_and_skips_comments_and_blanks() {
        let list = "\u{feff}# pages\n\nhttp://h/a\r\n  home   http://h/  \n{\"name\": \"j\", \"url\": \"https://h/j\"}\n{\"url\": \"http://h/k\"}\n";
        let entries = parse(list.as_bytes()).unwrap();
        let summary: Vec<_> = entries
            .iter()
            .map(|e| (e.line, e.name.as_deref(), e.url.to_string()))
            .collect();
        assert_eq!(
            summary,
            [
                (3, None, "http://h/a".to_owned()),
                (4, Some("home"), "http://h/".to_owned()),
                (5, Some("j"), "https://h/j".to_owned()),
                (6, None, "http://h/k".to_owned()),
            ]
        );
    }

    #[test]
    fn every_problem_is_reported_with_its_line() {
        let found = problems(
            "http://ok/\nftp://h/x\na b c\n../x http://h/\n{\"nmae\": \"x\", \"url\": \"http://h/\"}\nx http://h/1\nx http://h/2\n",
        );
        let lines: Vec<usize> = found.iter().map(|(l, _)| *l).collect();
        assert_eq!(lines, [2, 3, 4, 5, 7]);
        assert!(matches!(
            found[0].1,
            LineProblem::Url(UrlError::UnsupportedScheme { .. })
        ));
        assert_eq!(found[1].1, LineProblem::TooManyFields(3));
        assert!(matches!(found[2].1, LineProblem::Name(_)));
        assert!(matches!(&found[3].1, LineProblem::Json(m) if m.contains("nmae")));
        assert_eq!(
            found[4].1,
            LineProblem::DuplicateName {
                name: "x".into(),
                first: "line 6".into()
            }
        );
    }

    #[test]
    fn invalid_utf8_is_a_line_error() {
        let found = parse(b"http://h/\n\xff\xfe http://h/\n").unwrap_err();
        assert_eq!(found[0].line, 2);
        assert_eq!(found[0].problem, LineProblem::NotUtf8);
    }

    #[test]
    fn json_names_are_validated_too() {
        let found = problems("{\"name\": \"/etc/passwd\", \"url\": \"http://h/\"}\n");
        assert!(matches!(found[0].1, LineProblem::Name(_)));
    }

    #[test]
    fn a_name_used_in_two_lists_is_a_duplicate() {
        let (mut entries, _) = parse_source("a.txt", b"x http://h/1\n");
        entries.extend(parse_source("b.txt", b"\nx http://h/2\n").0);
        let found = duplicates(&entries);
        assert_eq!(found.len(), 1);
        assert_eq!((&*found[0].list, found[0].line), ("b.txt", 2));
        assert!(found[0]
            .problem
            .to_string()
            .contains("first used on a.txt:1"));
    }

    #[test]
    fn an_empty_list_is_valid() {
        assert_eq!(parse(b"# nothing\n\n").unwrap(), []);
    }
}
