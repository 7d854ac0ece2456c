//! File names: checking the ones users give, deriving safe ones from URLs, and the extension a
//! response's `Content-Type` adds.
//!
//! Every name that reaches the file system is a single path component checked here, which is what
//! keeps `fetch` from ever writing outside its output directory.

use std::collections::HashSet;
use std::path::Path;

use super::list::Entry;
use super::url::HttpUrl;

/// Partial downloads are named `.futurepool-….part`; user names may not look like them.
pub(crate) const PARTIAL_PREFIX: &str = ".futurepool-";

/// Longest name most file systems accept, in bytes.
const MAX_NAME_BYTES: usize = 255;

/// Derived names are cut shorter, leaving room for a `-N` counter and an extension.
const MAX_DERIVED_BYTES: usize = 200;

/// Why a NAME could not be used as a file name inside the output directory.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum NameError {
    #[error("empty name")]
    Empty,
    #[error("name {0:?} would leave the output directory")]
    LeavesDirectory(String),
    #[error("name {0:?} contains a path separator")]
    Separator(String),
    #[error("name {0:?} contains a control character")]
    ControlCharacter(String),
    #[error("name {name:?} is {bytes} bytes long (the limit is {MAX_NAME_BYTES})")]
    TooLong { name: String, bytes: usize },
    #[error("name {0:?} starts with {PARTIAL_PREFIX:?}, which is reserved for partial downloads")]
    Reserved(String),
}

/// Accepts `name` only if it is one ordinary path component.
pub(crate) fn validate_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name == "." || name == ".." {
        return Err(NameError::LeavesDirectory(name.to_owned()));
    }
    if name.contains(['/', '\\']) {
        return Err(NameError::Separator(name.to_owned()));
    }
    if name.chars().any(char::is_control) {
        return Err(NameError::ControlCharacter(name.to_owned()));
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(NameError::TooLong {
            name: name.to_owned(),
            bytes: name.len(),
        });
    }
    if name.starts_with(PARTIAL_PREFIX) {
        return Err(NameError::Reserved(name.to_owned()));
    }
    Ok(())
}

/// A safe name from the URL's last path segment (`/docs/intro.html` → `intro.html`), or `index`
/// for a directory-like path.
pub(crate) fn derive_name(url: &HttpUrl) -> String {
    let segment = url.path().rsplit('/').find(|s| !s.is_empty()).unwrap_or("");
    let decoded = String::from_utf8_lossy(&percent_decode(segment)).into_owned();
    let mut safe: String = decoded
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    // No hidden files, no "." or "..": trim leading dots.
    safe = safe.trim_start_matches('.').to_owned();
    truncate_at_char(&mut safe, MAX_DERIVED_BYTES);
    if safe.is_empty() {
        "index".to_owned()
    } else {
        safe
    }
}

fn percent_decode(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

fn truncate_at_char(s: &mut String, max_bytes: usize) {
    if s.len() > max_bytes {
        let mut cut = max_bytes;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}

/// The base name of every entry, in list order: the user's NAME, or a name derived from the URL
/// and numbered (`page`, `page-2`, …) so it collides with no other entry's. Deterministic, so a
/// rerun with `--skip-existing` finds the files of the previous run.
pub(crate) fn assign_names(entries: &[Entry]) -> Vec<String> {
    let mut taken: HashSet<String> = entries.iter().filter_map(|e| e.name.clone()).collect();
    entries
        .iter()
        .map(|entry| match &entry.name {
            Some(name) => name.clone(),
            None => {
                let derived = derive_name(&entry.url);
                let name = first_free(&derived, |candidate| taken.contains(candidate));
                taken.insert(name.clone());
                name
            }
        })
        .collect()
}

/// `name` itself if free, else the first free `name-2`, `name-3`, ….
pub(crate) fn first_free(name: &str, is_taken: impl Fn(&str) -> bool) -> String {
    if !is_taken(name) {
        return name.to_owned();
    }
    (2..)
        .map(|n| numbered(name, n))
        .find(|candidate| !is_taken(candidate))
        .expect("an unbounded counter finds a free name")
}

/// `page.html` → `page-2.html`; `page` → `page-2`.
fn numbered(name: &str, n: u64) -> String {
    match split_extension(name) {
        (stem, Some(ext)) => format!("{stem}-{n}.{ext}"),
        (stem, None) => format!("{stem}-{n}"),
    }
}

fn split_extension(name: &str) -> (&str, Option<&str>) {
    let path = Path::new(name);
    match (path.file_stem(), path.extension()) {
        (Some(stem), Some(ext)) => (
            stem.to_str().unwrap_or(name),
            Some(ext.to_str().unwrap_or("")),
        ),
        _ => (name, None),
    }
}

/// The extensions a `Content-Type` may add, most common first.
const EXTENSIONS: &[(&str, &str)] = &[
    ("text/html", "html"),
    ("application/xhtml+xml", "xhtml"),
    ("application/json", "json"),
    ("text/plain", "txt"),
    ("text/css", "css"),
    ("text/csv", "csv"),
    ("text/javascript", "js"),
    ("application/javascript", "js"),
    ("application/xml", "xml"),
    ("text/xml", "xml"),
    ("application/pdf", "pdf"),
    ("image/png", "png"),
    ("image/jpeg", "jpg"),
    ("image/gif", "gif"),
    ("image/webp", "webp"),
    ("image/svg+xml", "svg"),
    ("application/zip", "zip"),
    ("application/gzip", "gz"),
];

/// The extension for a `Content-Type` header value (`text/html; charset=utf-8` → `html`).
pub(crate) fn extension_for(content_type: &str) -> Option<&'static str> {
    let essence = content_type.split(';').next()?.trim().to_ascii_lowercase();
    EXTENSIONS
        .iter()
        .find(|(mime, _)| *mime == essence)
        .map(|(_, ext)| *ext)
}

/// The name a response is saved under: `base` plus the Content-Type's extension when `base` has
/// none (`python` + `text/html` → `python.html`, as in the classic example).
pub(crate) fn final_name(base: &str, content_type: Option<&str>) -> String {
    if split_extension(base).1.is_some() {
        return base.to_owned();
    }
    match content_type.and_then(extension_for) {
        Some(ext) => format!("{base}.{ext}"),
        None => base.to_owned(),
    }
}

/// Every name a response for `base` could be saved under: what `--skip-existing` looks for.
pub(crate) fn possible_names(base: &str) -> Vec<String> {
    let mut names = vec![base.to_owned()];
    if split_extension(base).1.is_none() {
        let mut seen = HashSet::new();
        for (_, ext) in EXTENSIONS {
            if seen.insert(*ext) {
                names.push(format!("{base}.{ext}"));
            }
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(line: usize, name: Option<&str>, url: &str) -> Entry {
        Entry {
            line,
            name: name.map(str::to_owned),
            url: HttpUrl::parse(url).unwrap(),
        }
    }

    #[test]
    fn names_that_could_escape_are_refused() {
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "/etc/passwd",
            "a/b",
            "a\\b",
            "a\u{0}b",
            "a\nb",
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?} accepted");
        }
        assert!(validate_name(&"x".repeat(256)).is_err());
        assert!(validate_name(".futurepool-1-2.part").is_err());
        for good in ["python", "index.html", ".hidden", "a b", "ü.txt", "..x"] {
            assert!(validate_name(good).is_ok(), "{good:?} refused");
        }
    }

    #[test]
    fn derived_names_are_safe_single_components() {
        let derive = |u: &str| derive_name(&HttpUrl::parse(u).unwrap());
        assert_eq!(derive("http://h/docs/intro.html"), "intro.html");
        assert_eq!(derive("http://h/docs/"), "docs");
        assert_eq!(derive("http://h/"), "index");
        assert_eq!(derive("http://h"), "index");
        assert_eq!(derive("http://h/a%20b%2Fc"), "a_b_c");
        assert_eq!(derive("http://h/..%2F..%2Fetc"), "_.._etc");
        assert_eq!(derive("http://h/%2e%2e"), "index");
        assert_eq!(derive("http://h/x?q=1"), "x");
        assert_eq!(derive("http://h/%ZZ"), "_ZZ");
        let long = derive(&format!("http://h/{}", "é".repeat(300)));
        assert!(long.len() <= MAX_DERIVED_BYTES && validate_name(&long).is_ok());
    }

    #[test]
    fn derived_names_are_numbered_around_every_other_name() {
        let entries = [
            entry(1, None, "http://h/page"),
            entry(2, Some("page-2"), "http://h/x"),
            entry(3, None, "http://other/page"),
            entry(4, None, "http://h/a.html"),
            entry(5, None, "http://h/b/a.html"),
        ];
        assert_eq!(
            assign_names(&entries),
            ["page", "page-2", "page-3", "a.html", "a-2.html"]
        );
    }

    #[test]
    fn content_type_adds_an_extension_only_when_missing() {
        assert_eq!(
            final_name("python", Some("text/html; charset=UTF-8")),
            "python.html"
        );
        assert_eq!(final_name("python", Some("TEXT/HTML")), "python.html");
        assert_eq!(final_name("data", Some("application/json")), "data.json");
        assert_eq!(final_name("page.htm", Some("text/html")), "page.htm");
        assert_eq!(final_name("blob", Some("application/x-unknown")), "blob");
        assert_eq!(final_name("blob", None), "blob");
    }

    #[test]
    fn possible_names_cover_every_extension() {
        let names = possible_names("python");
        assert!(names.contains(&"python".to_owned()) && names.contains(&"python.html".to_owned()));
        assert_eq!(possible_names("a.txt"), ["a.txt"]);
    }
}
