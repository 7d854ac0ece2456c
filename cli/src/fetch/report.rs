//! What happened, for machines (`--report`: JSON Lines, one row per input entry, in list order)
//! and for people (the one-line summary).

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::args::format_size;

/// One input entry's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Row {
    /// The list the entry came from (`<stdin>`, `<args>` for URL arguments); shared with the
    /// entry, not copied into every row.
    #[serde(serialize_with = "shared_str")]
    pub(crate) source: Arc<str>,
    /// Line of the entry in that list.
    pub(crate) line: usize,
    pub(crate) url: String,
    /// Where the page was finally fetched from, after redirects (null unless saved).
    pub(crate) final_url: Option<String>,
    /// The entry's name: its NAME, or the one derived from its URL (the saved file, with any
    /// extension from the Content-Type, is `path`).
    pub(crate) name: String,
    /// Path of the saved (or, with `--skip-existing`, already present) file; null on failure.
    pub(crate) path: Option<String>,
    /// HTTP status of the final response, if one arrived.
    pub(crate) status: Option<u16>,
    /// Body bytes written by this run (decoded).
    pub(crate) bytes: u64,
    /// Bytes a previous run left that `--continue` resumed after.
    pub(crate) resumed_from: u64,
    pub(crate) attempts: u32,
    pub(crate) elapsed_ms: u64,
    /// Null on success, else what went wrong.
    pub(crate) error: Option<String>,
    /// True when `--skip-existing` found the file and nothing was fetched.
    pub(crate) skipped: bool,
    /// True when `--update` asked and the server said 304: the file was left as it was.
    pub(crate) not_modified: bool,
}

fn shared_str<S: serde::Serializer>(text: &Arc<str>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(text)
}

impl Row {
    pub(crate) fn is_failure(&self) -> bool {
        self.error.is_some()
    }
}

/// Totals of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Summary {
    /// One row per entry, in list order, when the run kept them (a report was asked for);
    /// `None` otherwise: at 5,000 entries they were an eighth of the run's memory.
    pub(crate) rows: Option<Vec<Row>>,
    /// What the summary line says, counted as the rows came in.
    pub(crate) counts: Counts,
    pub(crate) elapsed: Duration,
    /// True if Ctrl-C stopped the run.
    pub(crate) interrupted: bool,
}

/// The figures of the summary line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) saved: usize,
    pub(crate) failed: usize,
    pub(crate) skipped: usize,
    pub(crate) not_modified: usize,
    /// Body bytes written by this run (skipped entries wrote none).
    pub(crate) bytes: u64,
}

impl Counts {
    pub(crate) fn add(&mut self, row: &Row) {
        if row.is_failure() {
            self.failed += 1;
        } else if row.skipped {
            self.skipped += 1;
        } else if row.not_modified {
            self.not_modified += 1;
        } else {
            self.saved += 1;
        }
        if !row.skipped {
            self.bytes += row.bytes;
        }
    }
}

impl Summary {
    pub(crate) fn saved(&self) -> usize {
        self.counts.saved
    }

    pub(crate) fn not_modified(&self) -> usize {
        self.counts.not_modified
    }

    pub(crate) fn skipped(&self) -> usize {
        self.counts.skipped
    }

    pub(crate) fn failed(&self) -> usize {
        self.counts.failed
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.counts.bytes
    }

    /// `saved 198, failed 2, 1.9 MiB in 1.02 s (194 pages/s)`.
    pub(crate) fn line(&self) -> String {
        let seconds = self.elapsed.as_secs_f64();
        let rate = if seconds > 0.0 {
            self.saved() as f64 / seconds
        } else {
            0.0
        };
        // A slow run must not read "(0 pages/s)" when it saved something.
        let rate = if rate == 0.0 || rate >= 9.95 {
            format!("{rate:.0}")
        } else if rate >= 0.095 {
            format!("{rate:.1}")
        } else {
            format!("{rate:.2}")
        };
        let skipped = match self.skipped() {
            0 => String::new(),
            n => format!(", skipped {n}"),
        };
        let skipped = match self.not_modified() {
            0 => skipped,
            n => format!("{skipped}, not modified {n}"),
        };
        let interrupted = if self.interrupted {
            " — interrupted"
        } else {
            ""
        };
        format!(
            "saved {}, failed {}{skipped}, {} in {seconds:.2} s ({rate} pages/s){interrupted}",
            self.saved(),
            self.failed(),
            format_size(self.bytes()),
        )
    }
}

/// Where the report goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ReportTarget {
    Stdout,
    File(PathBuf),
}

impl ReportTarget {
    pub(crate) fn from_arg(path: &Path) -> ReportTarget {
        if path == Path::new("-") {
            ReportTarget::Stdout
        } else {
            ReportTarget::File(path.to_owned())
        }
    }

    /// Refuses a file whose directory does not exist, before anything is fetched.
    pub(crate) fn check(&self) -> Result<(), String> {
        if let ReportTarget::File(path) = self {
            let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
            if parent.is_some_and(|p| !p.is_dir()) {
                return Err(format!(
                    "cannot write the report {}: its directory does not exist",
                    path.display()
                ));
            }
            if path.is_dir() {
                return Err(format!(
                    "cannot write the report {}: it is a directory",
                    path.display()
                ));
            }
        }
        Ok(())
    }

    /// Writes every row as one JSON line; a file is written beside its final name and renamed,
    /// like the pages.
    pub(crate) fn write(&self, rows: &[Row]) -> io::Result<()> {
        match self {
            ReportTarget::Stdout => write_rows(io::stdout().lock(), rows),
            ReportTarget::File(path) => {
                let mut partial = path.clone().into_os_string();
                partial.push(format!(".{}.part", std::process::id()));
                let partial = PathBuf::from(partial);
                let written = File::create(&partial)
                    .and_then(|file| write_rows(file, rows))
                    .and_then(|()| fs::rename(&partial, path));
                if written.is_err() {
                    let _ = fs::remove_file(&partial);
                }
                written
            }
        }
    }
}

fn write_rows(out: impl Write, rows: &[Row]) -> io::Result<()> {
    let mut out = BufWriter::new(out);
    for row in rows {
        serde_json::to_writer(&mut out, row)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A row of entry `http://h/` named `index`: saved unless `error`.
    pub(crate) fn row(error: Option<&str>, skipped: bool, bytes: u64) -> Row {
        Row {
            source: "list.txt".into(),
            line: 1,
            url: "http://h/".into(),
            final_url: None,
            name: "index".into(),
            path: error.is_none().then(|| "out/index.html".into()),
            status: Some(200),
            bytes,
            resumed_from: 0,
            attempts: 1,
            elapsed_ms: 5,
            error: error.map(str::to_owned),
            skipped,
            not_modified: false,
        }
    }

    #[test]
    fn summary_counts_and_reads_well() {
        let mut counts = Counts::default();
        for row in [
            row(None, false, 1024),
            row(None, false, 1024),
            row(Some("HTTP 404 Not Found"), false, 0),
            row(None, true, 0),
        ] {
            counts.add(&row);
        }
        let summary = Summary {
            rows: None,
            counts,
            elapsed: Duration::from_secs(2),
            interrupted: false,
        };
        assert_eq!(
            (summary.saved(), summary.failed(), summary.skipped()),
            (2, 1, 1)
        );
        assert_eq!(
            summary.line(),
            "saved 2, failed 1, skipped 1, 2 KiB in 2.00 s (1.0 pages/s)"
        );
        let slow = Summary {
            elapsed: Duration::from_secs(4),
            ..summary
        };
        assert!(slow.line().contains("(0.5 pages/s)"), "{}", slow.line());
    }

    #[test]
    fn rows_are_json_lines_with_every_field() {
        let mut out = Vec::new();
        write_rows(
            &mut out,
            &[row(None, false, 3), row(Some("boom"), false, 0)],
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        for key in [
            "source",
            "line",
            "url",
            "final_url",
            "name",
            "path",
            "status",
            "bytes",
            "resumed_from",
            "attempts",
            "elapsed_ms",
            "error",
            "skipped",
            "not_modified",
        ] {
            assert!(lines[0].get(key).is_some(), "missing {key}");
        }
        // --help documents every field a row has, under its own name.
        let documented = super::super::args::AFTER_HELP;
        for key in lines[0].as_object().unwrap().keys() {
            assert!(
                documented.contains(&format!("\n  {key} ")),
                "--help does not list the report field {key}"
            );
        }
        assert_eq!(lines[1]["path"], serde_json::Value::Null);
        assert_eq!(lines[1]["error"], "boom");
    }
}
