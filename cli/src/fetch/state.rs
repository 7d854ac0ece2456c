//! `--update`'s memory: `DIR/.futurepool-state.json`, what each entry's last response said
//! about its version, so the next run can ask "has it changed?" instead of fetching it again.
//!
//! Format (version 1): one JSON object on one line, keys sorted so that reruns give the same
//! bytes (shown here spread out):
//!
//! ```json
//! {"version": 1, "entries": {
//!   "python": {"url": "https://docs.python.org/3/", "file": "python.html",
//!              "etag": "\"5e1-63a\"", "last_modified": "Wed, 02 Dec 2026 10:00:00 GMT"}}}
//! ```
//!
//! `entries` is keyed by the entry's name (its NAME, or the one derived from its URL); `file`
//! is the name the page was saved under in DIR; `etag` and `last_modified` are left out when
//! the response had none. An entry is asked conditionally only if its URL is the same, it has
//! a validator and its file is still there. Every file a run saves updates its entry, and a
//! directory that has a state file keeps it up to date on every run, `--update` or not: so
//! the state never says a file holds a page it no longer holds, and `--skip-existing` does
//! not skip a file the state says holds another URL's page (an edited list gave its derived
//! name to another URL). Entries of names not in this run are kept (several lists may share
//! a directory). The file is read only if it is a regular file (no symlink, FIFO or device)
//! of at most 256 MiB, and validators that are no valid header value are dropped. It is
//! replaced atomically (written beside it, then renamed); a missing or unreadable state only
//! means everything is fetched again.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::naming::PARTIAL_PREFIX;
use super::output::{is_header_value, read_regular_file};

/// A state file larger than this is not read (about a million entries): a file planted or
/// grown by mistake must not take the memory of the run.
const MAX_STATE_BYTES: u64 = 256 << 20;

/// Its name starts with the prefix NAMEs may not use, so no entry can overwrite it.
const FILE_NAME: &str = ".futurepool-state.json";
const VERSION: u32 = 1;

/// What the last response for an entry said about its version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Remembered {
    pub(crate) url: String,
    pub(crate) file: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) last_modified: Option<String>,
}

impl Remembered {
    /// Worth asking about: a validator to ask with.
    pub(crate) fn has_validator(&self) -> bool {
        self.etag.is_some() || self.last_modified.is_some()
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct OnDisk {
    version: u32,
    entries: BTreeMap<String, Remembered>,
}

/// The state of one output directory.
#[derive(Debug, Default)]
pub(crate) struct State {
    entries: BTreeMap<String, Remembered>,
}

impl State {
    fn path(dir: &Path) -> PathBuf {
        debug_assert!(FILE_NAME.starts_with(PARTIAL_PREFIX));
        dir.join(FILE_NAME)
    }

    /// Whether DIR has a state file (or something under its name).
    pub(crate) fn exists(dir: &Path) -> bool {
        fs::symlink_metadata(State::path(dir)).is_ok()
    }

    /// Reads DIR's state; a missing file is an empty state, an unreadable one is reported in
    /// the returned message and treated as empty.
    pub(crate) fn load(dir: &Path) -> (State, Option<String>) {
        let path = State::path(dir);
        let bytes = match read_regular_file(&path, MAX_STATE_BYTES) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return (State::default(), None),
            Err(e) => {
                let why = format!("cannot read {}: {e}; fetching everything", path.display());
                return (State::default(), Some(why));
            }
        };
        match serde_json::from_slice::<OnDisk>(&bytes) {
            Ok(mut disk) if disk.version == VERSION => {
                // A validator that is no header value (an edited file, a CR LF) would fail
                // the request instead of merely not matching: it is forgotten.
                for remembered in disk.entries.values_mut() {
                    for validator in [&mut remembered.etag, &mut remembered.last_modified] {
                        if validator.as_deref().is_some_and(|v| !is_header_value(v)) {
                            *validator = None;
                        }
                    }
                }
                (
                    State {
                        entries: disk.entries,
                    },
                    None,
                )
            }
            Ok(disk) => (
                State::default(),
                Some(format!(
                    "{} has version {}, this futurepool writes {VERSION}; fetching everything",
                    path.display(),
                    disk.version
                )),
            ),
            Err(e) => (
                State::default(),
                Some(format!(
                    "{} is not a valid state file ({e}); fetching everything",
                    path.display()
                )),
            ),
        }
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Remembered> {
        self.entries.get(name)
    }

    pub(crate) fn set(&mut self, name: &str, remembered: Remembered) {
        self.entries.insert(name.to_owned(), remembered);
    }

    /// Writes the state beside its final name and renames it into place.
    pub(crate) fn save(&self, dir: &Path) -> io::Result<()> {
        let path = State::path(dir);
        let partial = dir.join(format!("{FILE_NAME}.{}.part", std::process::id()));
        let disk = OnDisk {
            version: VERSION,
            entries: self.entries.clone(),
        };
        let text = serde_json::to_vec(&disk).map_err(io::Error::other)?;
        // A leftover of a crashed run with the same pid goes first; then the file must be
        // new, so a symlink planted under its name is never written through.
        let _ = fs::remove_file(&partial);
        let written = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&partial)
            .and_then(|mut file| file.write_all(&text))
            .and_then(|()| fs::rename(&partial, &path));
        if written.is_err() {
            let _ = fs::remove_file(&partial);
        }
        written
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_survives_a_round_trip_and_a_bad_file_is_only_a_warning() {
        let dir = std::env::temp_dir().join(format!("futurepool-state-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let (empty, warning) = State::load(&dir);
        assert!(empty.entries.is_empty() && warning.is_none());
        let mut state = State::default();
        let python = Remembered {
            url: "http://h/python".into(),
            file: "python.html".into(),
            etag: Some("\"v1\"".into()),
            last_modified: None,
        };
        state.set("python", python.clone());
        state.save(&dir).unwrap();
        let (loaded, warning) = State::load(&dir);
        assert_eq!((loaded.get("python"), warning), (Some(&python), None));
        let names: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, [FILE_NAME], "no temporary file is left");
        fs::write(dir.join(FILE_NAME), "{not json").unwrap();
        let (loaded, warning) = State::load(&dir);
        assert!(loaded.entries.is_empty());
        assert!(warning.unwrap().contains("not a valid state file"));
        fs::remove_dir_all(dir).unwrap();
    }
}
