//! The output directory: partial files, atomic renames, and the cleanup Ctrl-C needs.
//!
//! A response is written to `DIR/.futurepool-PID-N.part` and renamed to its final name only once
//! complete, so a file with a final name is always whole. Every partial file is registered here;
//! [`OutputDir::close`] (on Ctrl-C) deletes them all and makes later creates and renames fail,
//! under the same lock the rename takes, so nothing can appear under a final name afterwards.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard};

use super::naming::{EntryName, PARTIAL_PREFIX};

/// Why a response could not be stored.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WriteError {
    #[error("disk full: no space left for {}", path.display())]
    DiskFull { path: PathBuf },
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// The run was interrupted; nothing more is written.
    #[error("interrupted")]
    Closed,
}

impl WriteError {
    fn from_io(action: &'static str, path: &Path, source: io::Error) -> WriteError {
        if is_disk_full(&source) {
            WriteError::DiskFull {
                path: path.to_owned(),
            }
        } else {
            WriteError::Io {
                action,
                path: path.to_owned(),
                source,
            }
        }
    }

    pub(crate) fn is_disk_full(&self) -> bool {
        matches!(self, WriteError::DiskFull { .. })
    }
}

/// ENOSPC, or EDQUOT (a quota is a full disk to its user).
fn is_disk_full(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::ENOSPC) | Some(libc::EDQUOT)
    )
}

/// The directory every file of a run goes to.
///
/// Every step that creates, renames or deletes a partial file holds `gate` shared for the whole
/// step, and [`close`](OutputDir::close) holds it exclusively: so close either runs first (and
/// the step fails [`WriteError::Closed`]) or waits for the step to end and then sees its file
/// registered, and no partial file outlives an interrupt. Shared, the gate lets all workers
/// create and rename at once: one mutex held across those system calls serialized every
/// worker's file operations (at `-j 64` most of its futex calls). `files` is only held to
/// update the two maps, never across a system call.
pub(crate) struct OutputDir {
    dir: PathBuf,
    pid: u32,
    next_partial: AtomicU64,
    /// `true` once closed.
    gate: RwLock<bool>,
    files: Mutex<Files>,
}

#[derive(Default)]
struct Files {
    partials: HashSet<PathBuf>,
    /// Where each entry (by key) was saved, so an interrupt can account for files renamed just
    /// before it whose workers had not reported yet.
    committed: HashMap<usize, PathBuf>,
}

/// The gate, held shared by one step on a partial file.
type OpenGate<'a> = RwLockReadGuard<'a, bool>;

impl OutputDir {
    pub(crate) fn new(dir: PathBuf) -> OutputDir {
        OutputDir {
            dir,
            pid: std::process::id(),
            next_partial: AtomicU64::new(0),
            gate: RwLock::new(false),
            files: Mutex::default(),
        }
    }

    /// An existing file a response for `name` may have been saved under by an earlier run.
    pub(crate) fn existing(&self, name: &EntryName) -> Option<PathBuf> {
        name.possible_names()
            .into_iter()
            .map(|name| self.dir.join(name))
            .find(|path| path.is_file())
    }

    /// Creates a new, empty partial file for the entry `key`.
    pub(crate) fn create_partial(&self, key: usize) -> Result<PartialFile<'_>, WriteError> {
        let id = self.next_partial.fetch_add(1, Ordering::Relaxed);
        let path = self
            .dir
            .join(format!("{PARTIAL_PREFIX}{}-{id}.part", self.pid));
        // Created and registered under the gate (see `OutputDir`).
        let _open = self.enter()?;
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| WriteError::from_io("create", &path, e))?;
        self.files().partials.insert(path.clone());
        Ok(PartialFile {
            out: self,
            key,
            path,
            file: Some(file),
            meta: None,
        })
    }

    /// What `--continue` can resume for the entry named `name`: the bytes a previous run left
    /// and the validators of the response they came from.
    pub(crate) fn resumable(&self, name: &str) -> Option<(u64, ResumeMeta)> {
        let (part, meta) = self.resume_paths(name);
        // Regular files only: a symlink planted under these names must not lead a write
        // outside DIR.
        let regular = |path: &Path| fs::symlink_metadata(path).ok().filter(|m| m.is_file());
        let bytes = read_regular_file(&meta, MAX_META_BYTES).ok()?;
        let meta: ResumeMeta = serde_json::from_slice(&bytes).ok()?;
        // Validators that are no header value would fail every request (If-Range).
        let valid = |v: &Option<String>| v.as_deref().is_none_or(is_header_value);
        if !valid(&meta.etag) || !valid(&meta.last_modified) {
            return None;
        }
        let size = regular(&part)?.len();
        // Another run writing it (two runs on one DIR): its bytes are still growing.
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&part)
            .ok()?;
        if !try_lock(&file, libc::LOCK_SH) {
            return None;
        }
        Some((size, meta))
    }

    /// Opens the partial file `--continue` keeps for the entry named `name`: truncated, or kept
    /// and appended to when `append`. `meta` (the response's URL and validators) is written
    /// beside it first, so a later run knows what the bytes are. Unlike [`create_partial`]'s,
    /// this file survives a failure and Ctrl-C.
    ///
    /// [`create_partial`]: OutputDir::create_partial
    pub(crate) fn open_resumable(
        &self,
        key: usize,
        name: &str,
        append: bool,
        meta: &ResumeMeta,
    ) -> Result<PartialFile<'_>, WriteError> {
        let (path, meta_path) = self.resume_paths(name);
        let open = self.enter()?;
        let text = serde_json::to_vec(meta).expect("plain strings serialize");
        // O_NOFOLLOW: a symlink planted under these names fails the open instead of leading
        // the write outside DIR. The old bytes go (truncate) before the new sidecar is written:
        // a process killed in between leaves an empty file or the old pair, never the new
        // version's sidecar beside the old version's bytes.
        // Locked before it is truncated, so a file another run is writing (two runs on one
        // DIR) is refused intact; the caller then uses an ordinary partial file.
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|e| WriteError::from_io("create", &path, e))?;
        if !try_lock(&file, libc::LOCK_EX) {
            let busy = io::Error::from_raw_os_error(libc::EWOULDBLOCK);
            return Err(WriteError::from_io("lock", &path, busy));
        }
        if !append {
            file.set_len(0)
                .map_err(|e| WriteError::from_io("truncate", &path, e))?;
        }
        OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&meta_path)
            .and_then(|mut file| file.write_all(&text))
            .map_err(|e| WriteError::from_io("write", &meta_path, e))?;
        drop(open);
        Ok(PartialFile {
            out: self,
            key,
            path,
            file: Some(file),
            meta: Some(meta_path),
        })
    }

    /// Drops what `--continue` kept for `name` (the server's page changed, or it is complete).
    pub(crate) fn discard_resumable(&self, name: &str) {
        let (part, meta) = self.resume_paths(name);
        let _ = fs::remove_file(part);
        let _ = fs::remove_file(meta);
    }

    /// `.futurepool-resume-HASH.part` and `.meta`: named by a hash of the entry's name, which
    /// is stable across runs and short whatever the name's length.
    fn resume_paths(&self, name: &str) -> (PathBuf, PathBuf) {
        let stem = format!("{PARTIAL_PREFIX}resume-{:016x}", fnv1a(name.as_bytes()));
        (
            self.dir.join(format!("{stem}.part")),
            self.dir.join(format!("{stem}.meta")),
        )
    }

    /// Deletes every partial file and refuses all later writes and renames.
    pub(crate) fn close(&self) {
        let mut closed = self.gate.write().unwrap_or_else(PoisonError::into_inner);
        *closed = true;
        let partials = std::mem::take(&mut self.files().partials);
        for path in partials {
            let _ = fs::remove_file(path);
        }
    }

    /// Where entry `key`'s file was saved, if it was.
    pub(crate) fn committed(&self, key: usize) -> Option<PathBuf> {
        self.files().committed.get(&key).cloned()
    }

    /// Holds the gate shared for one step on a partial file (see [`OutputDir`]).
    fn enter(&self) -> Result<OpenGate<'_>, WriteError> {
        let open = self.gate.read().unwrap_or_else(PoisonError::into_inner);
        if *open {
            return Err(WriteError::Closed);
        }
        Ok(open)
    }

    fn files(&self) -> MutexGuard<'_, Files> {
        self.files.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// `flock(2)` without waiting; false if another open file holds a conflicting lock. Released
/// when `file` closes (commit or drop).
fn try_lock(file: &File, kind: libc::c_int) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: flock(2) on a descriptor `file` owns and keeps open for the call.
    unsafe { libc::flock(file.as_raw_fd(), kind | libc::LOCK_NB) == 0 }
}

/// A sidecar holds a URL (at most about 8 KiB) and two validators.
const MAX_META_BYTES: u64 = 64 * 1024;

/// Reads `path` if it is a regular file of at most `limit` bytes. Opened without following a
/// symlink and without blocking, so a FIFO, a device or a link to `/dev/zero` planted under
/// one of our names is refused at once instead of hanging the run or filling its memory.
pub(crate) fn read_regular_file(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    let metadata = file.metadata()?;
    if !metadata.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    if metadata.len() > limit {
        return Err(io::Error::other(format!(
            "larger than {} MiB",
            limit as f64 / (1 << 20) as f64
        )));
    }
    let mut bytes = Vec::with_capacity(metadata.len() as usize);
    // Bounded even if the file grows while it is read.
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(io::Error::other("grew while it was read"));
    }
    Ok(bytes)
}

/// Whether `value` can be sent as a header value (no CR, LF or other control characters).
pub(crate) fn is_header_value(value: &str) -> bool {
    ureq::http::HeaderValue::from_str(value).is_ok()
}

/// What a kept partial file holds: the bytes of `url`'s response with these validators.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct ResumeMeta {
    pub(crate) url: String,
    pub(crate) etag: Option<String>,
    pub(crate) last_modified: Option<String>,
}

/// FNV-1a, 64 bits: a hash that, unlike std's, is the same in every build.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A download in progress: deleted on drop unless [`commit`](PartialFile::commit)ted — or,
/// for a `--continue` file, kept for the next run.
pub(crate) struct PartialFile<'a> {
    out: &'a OutputDir,
    key: usize,
    path: PathBuf,
    file: Option<File>,
    /// The sidecar of a file `--continue` keeps; `None` for an ordinary partial file.
    meta: Option<PathBuf>,
}

impl PartialFile<'_> {
    pub(crate) fn write_all(&mut self, bytes: &[u8]) -> Result<(), WriteError> {
        let file = self.file.as_mut().expect("the file is open until commit");
        file.write_all(bytes)
            .map_err(|e| WriteError::from_io("write", &self.path, e))
    }

    /// Renames the complete file to `name` and returns its final path. Names are unique per
    /// entry by construction (`naming::assign_names`), never by which entry renames first.
    pub(crate) fn commit(mut self, name: &str) -> Result<PathBuf, WriteError> {
        // No fsync: the promise is about interrupted and failed downloads (a final name is only
        // ever given to a complete file), not about power loss, and an fsync per page would cost
        // more than the whole download of a small page.
        drop(self.file.take());
        let _open = self.out.enter()?;
        let target = self.out.dir.join(name);
        fs::rename(&self.path, &target).map_err(|e| WriteError::from_io("save", &target, e))?;
        if let Some(meta) = &self.meta {
            let _ = fs::remove_file(meta);
        }
        let mut files = self.out.files();
        files.partials.remove(&self.path);
        files.committed.insert(self.key, target.clone());
        Ok(target)
    }
}

impl Drop for PartialFile<'_> {
    fn drop(&mut self) {
        // Under the gate, so `close` cannot return while this file still exists; whichever of
        // the two takes it out of `partials` deletes it.
        let _gate = self.out.gate.read().unwrap_or_else(PoisonError::into_inner);
        let registered = self.out.files().partials.remove(&self.path);
        if registered {
            let _ = fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("futurepool-output-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_committed_file_appears_whole_under_its_name_and_nothing_else_remains() {
        let dir = temp_dir("commit");
        let out = OutputDir::new(dir.clone());
        let mut partial = out.create_partial(0).unwrap();
        partial.write_all(b"hello").unwrap();
        assert_eq!(listing(&dir).len(), 1, "only the partial file exists");
        let path = partial.commit("page.html").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"hello");
        assert_eq!(out.committed(0), Some(path));
        assert_eq!(listing(&dir), ["page.html"]);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn an_abandoned_partial_file_is_deleted() {
        let dir = temp_dir("drop");
        let out = OutputDir::new(dir.clone());
        let mut partial = out.create_partial(0).unwrap();
        partial.write_all(b"half").unwrap();
        drop(partial);
        assert!(listing(&dir).is_empty());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_resumable_file_survives_failure_and_close_and_is_appended_to() {
        let dir = temp_dir("resume");
        let out = OutputDir::new(dir.clone());
        let meta = ResumeMeta {
            url: "http://h/x".into(),
            etag: Some("\"v1\"".into()),
            last_modified: None,
        };
        let mut partial = out.open_resumable(0, "x", false, &meta).unwrap();
        partial.write_all(b"hel").unwrap();
        drop(partial);
        out.close();
        let out = OutputDir::new(dir.clone());
        assert_eq!(out.resumable("x"), Some((3, meta.clone())));
        assert_eq!(out.resumable("y"), None);
        let mut partial = out.open_resumable(0, "x", true, &meta).unwrap();
        partial.write_all(b"lo").unwrap();
        partial.commit("x.html").unwrap();
        assert_eq!(fs::read(dir.join("x.html")).unwrap(), b"hello");
        assert_eq!(
            listing(&dir),
            ["x.html"],
            "the sidecar goes with the commit"
        );
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_symlink_planted_as_the_resume_file_is_not_followed() {
        let dir = temp_dir("resume-symlink");
        let outside = temp_dir("resume-symlink-target").join("victim");
        fs::write(&outside, b"precious").unwrap();
        let out = OutputDir::new(dir.clone());
        let (part, meta_path) = out.resume_paths("x");
        std::os::unix::fs::symlink(&outside, &part).unwrap();
        let meta = ResumeMeta {
            url: "http://h/x".into(),
            etag: Some("\"v\"".into()),
            last_modified: None,
        };
        fs::write(&meta_path, serde_json::to_vec(&meta).unwrap()).unwrap();
        assert_eq!(out.resumable("x"), None, "a symlink is not a partial file");
        assert!(out.open_resumable(0, "x", true, &meta).is_err());
        assert_eq!(fs::read(&outside).unwrap(), b"precious");
        fs::remove_dir_all(dir).unwrap();
        fs::remove_dir_all(outside.parent().unwrap()).unwrap();
    }

    #[test]
    fn close_deletes_partials_and_refuses_later_commits() {
        let dir = temp_dir("close");
        let out = OutputDir::new(dir.clone());
        let mut partial = out.create_partial(0).unwrap();
        partial.write_all(b"half").unwrap();
        out.close();
        assert!(listing(&dir).is_empty());
        assert!(matches!(partial.commit("x"), Err(WriteError::Closed)));
        assert!(matches!(out.create_partial(0), Err(WriteError::Closed)));
        assert!(listing(&dir).is_empty());
        fs::remove_dir_all(dir).unwrap();
    }

    /// The gate replaced one lock held across every create and rename: a close racing many
    /// workers must still leave no partial file behind, and every entry either saved whole or
    /// refused.
    #[test]
    fn close_racing_workers_that_create_commit_and_abandon_leaves_no_partial_file() {
        let dir = temp_dir("close-race");
        let out = OutputDir::new(dir.clone());
        let saved = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for worker in 0..8 {
                let (out, saved) = (&out, &saved);
                s.spawn(move || {
                    for n in 0..200 {
                        let key = worker * 1000 + n;
                        let Ok(mut partial) = out.create_partial(key) else {
                            return;
                        };
                        partial.write_all(b"page").unwrap();
                        if n % 3 == 0 {
                            drop(partial); // a failed download
                        } else if partial.commit(&format!("p{key}")).is_ok() {
                            saved.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
            out.close();
            let left = listing(&dir);
            assert!(
                left.iter().all(|name| !name.starts_with(PARTIAL_PREFIX)),
                "a partial file outlived close: {left:?}"
            );
        });
        let left = listing(&dir);
        assert!(left.iter().all(|name| !name.starts_with(PARTIAL_PREFIX)));
        assert_eq!(left.len(), saved.into_inner(), "every saved entry is whole");
        for name in &left {
            assert_eq!(fs::read(dir.join(name)).unwrap(), b"page");
        }
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn disk_full_and_quota_errors_are_named_as_such() {
        for errno in [libc::ENOSPC, libc::EDQUOT] {
            let error = WriteError::from_io(
                "write",
                Path::new("d/x"),
                io::Error::from_raw_os_error(errno),
            );
            assert!(error.is_disk_full());
            assert_eq!(error.to_string(), "disk full: no space left for d/x");
        }
        let other = WriteError::from_io(
            "write",
            Path::new("d/x"),
            io::Error::from_raw_os_error(libc::EACCES),
        );
        assert!(!other.is_disk_full());
        assert!(other.to_string().starts_with("cannot write d/x: "));
    }
}
