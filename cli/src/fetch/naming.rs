//! File names: checking the ones users give, deriving safe ones from URLs, and the extension a
//! response's `Content-Type` adds.
//!
//! Every name that reaches the file system is a single path component checked here, which is what
//! keeps `fetch` from ever writing outside its output directory.

use std::collections::HashSet;
use std::path::Path;

use super::list::Entry;
use super::url::{percent_decode, HttpUrl};

/// Partial downloads are named `.futurepool-….part`; user names may not look like them.
pub(crate) const PARTIAL_PREFIX: &str = ".futurepool-";

/// Longest name most file systems accept, in bytes.
const MAX_NAME_BYTES: usize = 255;

/// Derived names are cut shorter, leaving room for a `-N` counter and an extension.
const MAX_DERIVED_BYTES: usize = 200;

/// The longest suffix a Content-Type can add (`.xhtml`).
const MAX_EXTENSION_BYTES: usize = 6;

/// A name without an extension gets one from the Content-Type; it must leave room for it.
const MAX_BARE_NAME_BYTES: usize = MAX_NAME_BYTES - MAX_EXTENSION_BYTES;

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
    #[error("name {name:?} is {bytes} bytes long (the limit is {limit}{})", if *limit < MAX_NAME_BYTES { ", leaving room for an extension from the Content-Type" } else { "" })]
    TooLong {
        name: String,
        bytes: usize,
        limit: usize,
    },
    #[error("name {name:?} contains U+{:04X}, an invisible or text-direction character that would disguise the name", *character as u32)]
    InvisibleCharacter { name: String, character: char },
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
    if let Some(character) = name.chars().find(|&c| is_invisible(c)) {
        return Err(NameError::InvisibleCharacter {
            name: name.to_owned(),
            character,
        });
    }
    // Checked now, with room for the extension a response may add, not when the file is
    // renamed after the download.
    let limit = if split_extension(name).1.is_some() {
        MAX_NAME_BYTES
    } else {
        MAX_BARE_NAME_BYTES
    };
    if name.len() > limit {
        return Err(NameError::TooLong {
            name: name.to_owned(),
            bytes: name.len(),
            limit,
        });
    }
    if name.starts_with(PARTIAL_PREFIX) {
        return Err(NameError::Reserved(name.to_owned()));
    }
    Ok(())
}

/// Format characters that show nothing or reorder what follows: bidirectional overrides and
/// isolates (`invoice\u{202e}gpj.exe` displays as `invoiceexe.jpg`), zero-width characters, the
/// byte-order mark, soft hyphen and the like. A file name has no use for any of them.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{17B4}'
            | '\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{E0000}'..='\u{E007F}'
    )
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

fn truncate_at_char(s: &mut String, max_bytes: usize) {
    if s.len() > max_bytes {
        let mut cut = max_bytes;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}

/// The name of every entry, decided before anything is fetched, in list order: the user's NAME,
/// or a name derived from the URL and numbered (`page`, `page-2`, …) around every NAME, so that
/// no two entries share one. Deterministic, so a rerun finds the files of the previous run.
pub(crate) fn assign_names(entries: &[Entry]) -> Vec<EntryName> {
    let mut taken: HashSet<String> = entries.iter().filter_map(|e| e.name.clone()).collect();
    let bases: Vec<String> = entries
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
        .collect();
    // An extension from the Content-Type may only produce a name no other entry has: which
    // response finishes first must never decide which file holds what.
    bases
        .into_iter()
        .map(|base| {
            let blocked = if split_extension(&base).1.is_some() {
                Vec::new()
            } else {
                distinct_extensions()
                    .filter(|ext| taken.contains(&format!("{base}.{ext}")))
                    .collect()
            };
            EntryName { base, blocked }
        })
        .collect()
}

/// An entry's file name: `base`, plus the Content-Type's extension when `base` has none and the
/// result is no other entry's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EntryName {
    pub(crate) base: String,
    /// Extensions that would give another entry's name.
    pub(crate) blocked: Vec<&'static str>,
}

impl EntryName {
    /// The name a response with `content_type` is saved under (`python` + `text/html` →
    /// `python.html`, as in the classic example).
    pub(crate) fn final_name(&self, content_type: Option<&str>) -> String {
        if split_extension(&self.base).1.is_some() {
            return self.base.clone();
        }
        match content_type.and_then(extension_for) {
            Some(ext) if !self.blocked.contains(&ext) => format!("{}.{ext}", self.base),
            _ => self.base.clone(),
        }
    }

    /// Every name a response for this entry could have been saved under, and no other
    /// entry's: what `--skip-existing` looks for.
    pub(crate) fn possible_names(&self) -> Vec<String> {
        let mut names = vec![self.base.clone()];
        if split_extension(&self.base).1.is_none() {
            names.extend(
                distinct_extensions()
                    .filter(|ext| !self.blocked.contains(ext))
                    .map(|ext| format!("{}.{ext}", self.base)),
            );
        }
        names
    }
}

fn distinct_extensions() -> impl Iterator<Item = &'static str> {
    let mut seen = HashSet::new();
    EXTENSIONS
        .iter()
        .map(|(_, ext)| *ext)
        .filter(move |ext| seen.insert(*ext))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(line: usize, name: Option<&str>, url: &str) -> Entry {
        Entry {
            source: "list".into(),
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
    fn names_are_checked_with_room_for_the_extension() {
        assert!(validate_name(&"x".repeat(MAX_BARE_NAME_BYTES)).is_ok());
        let error = validate_name(&"x".repeat(MAX_BARE_NAME_BYTES + 1)).unwrap_err();
        assert!(
            error.to_string().contains("room for an extension"),
            "{error}"
        );
        let with_extension = format!("{}.txt", "x".repeat(MAX_NAME_BYTES - 4));
        assert!(validate_name(&with_extension).is_ok());
    }

    #[test]
    fn invisible_and_direction_characters_are_refused() {
        for bad in [
            "invoice\u{202e}gpj.exe",
            "a\u{200b}b",
            "a\u{200d}b",
            "\u{feff}x",
            "a\u{2066}b",
            "a\u{2069}b",
            "a\u{200f}b",
        ] {
            let error = validate_name(bad).unwrap_err();
            assert!(
                matches!(error, NameError::InvisibleCharacter { .. }),
                "{bad:?}: {error}"
            );
        }
        let error = validate_name("invoice\u{202e}gpj.exe").unwrap_err();
        assert!(error.to_string().contains("U+202E"), "{error}");
        assert!(validate_name("日本語.txt").is_ok());
    }

    fn bases(names: &[EntryName]) -> Vec<&str> {
        names.iter().map(|n| n.base.as_str()).collect()
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
            bases(&assign_names(&entries)),
            ["page", "page-2", "page-3", "a.html", "a-2.html"]
        );
    }

    #[test]
    fn an_extension_never_takes_another_entrys_name() {
        let entries = [
            entry(1, Some("x"), "http://h/1"),
            entry(2, Some("x.html"), "http://h/2"),
            entry(3, None, "http://h/x"),
        ];
        let names = assign_names(&entries);
        assert_eq!(bases(&names), ["x", "x.html", "x-2"]);
        let html = Some("text/html");
        assert_eq!(names[0].final_name(html), "x", "x.html is line 2's");
        assert_eq!(names[0].final_name(Some("application/json")), "x.json");
        assert_eq!(names[1].final_name(html), "x.html");
        assert_eq!(names[2].final_name(html), "x-2.html");
        assert!(!names[0].possible_names().contains(&"x.html".to_owned()));
    }

    fn plain(base: &str) -> EntryName {
        EntryName {
            base: base.to_owned(),
            blocked: Vec::new(),
        }
    }

    #[test]
    fn content_type_adds_an_extension_only_when_missing() {
        let final_name = |base: &str, ct: Option<&str>| plain(base).final_name(ct);
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
        let names = plain("python").possible_names();
        assert!(names.contains(&"python".to_owned()) && names.contains(&"python.html".to_owned()));
        assert_eq!(plain("a.txt").possible_names(), ["a.txt"]);
    }
}
