//! `futurepool fetch`: the parallel page downloader of the `concurrent.futures` example, made into
//! a tool — on futurepool's own [`ThreadPool`](futurepool::ThreadPool), one blocking request per worker.
//!
//! Layout:
//! - `args.rs`: the command line;
//! - `list.rs`: reading and validating the list (everything is checked before anything is fetched);
//! - `naming.rs`: safe file names and extensions; `url.rs`: which URLs and redirects are followed;
//! - `download.rs`: one entry — timeouts, redirects, retries (`retry.rs`), size limit;
//!   `resolver.rs`: name lookups without a thread per request; `stale.rs`: telling a pooled
//!   connection the server closed from a failing server;
//! - `output.rs`: partial files and atomic renames; `interrupt.rs`: Ctrl-C;
//! - `run.rs`: the orchestration on the pool; `schedule.rs`: list order under `--per-host`;
//! - `report.rs`: the JSON Lines report and the summary; `progress.rs`: the progress bar.
//!
//! [`run()`] is the entry point other commands reuse (the demo fetches its own pages through it).

mod args;
mod download;
mod interrupt;
mod list;
mod naming;
mod output;
mod polite;
mod progress;
mod proxy;
mod report;
mod resolver;
mod retry;
mod run;
mod schedule;
mod stale;
mod state;
mod url;

use std::fs;
use std::io::{self, IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub(crate) use self::args::FetchArgs;
pub(crate) use self::download::{DownloadSettings, Timeouts};
pub(crate) use self::interrupt::Interrupt;
use self::list::LineError;
pub(crate) use self::list::{parse as parse_list, Entry};
use self::proxy::Proxies;
pub(crate) use self::report::Summary;
pub(crate) use self::run::run;

use self::report::ReportTarget;

/// Exit status for a run stopped by Ctrl-C (128 + SIGINT, what shells expect).
const EXIT_INTERRUPTED: u8 = 130;

/// How a run behaves, apart from what it fetches.
#[derive(Debug, Clone)]
pub(crate) struct FetchOptions {
    /// Where every file goes; must exist.
    pub(crate) dir: PathBuf,
    /// Worker threads: concurrent requests.
    pub(crate) jobs: usize,
    /// Concurrent requests to one host; `None` for no cap below `jobs`.
    pub(crate) per_host: Option<usize>,
    pub(crate) skip_existing: bool,
    /// Show a progress bar (when stderr is a terminal) and report failures as they happen.
    pub(crate) progress: bool,
    /// Conditional requests from the state file (`state.rs`), which is then brought up to date.
    pub(crate) update: bool,
    /// Keep every entry's row for a report; without one only the summary's counts are kept.
    pub(crate) keep_rows: bool,
    pub(crate) download: DownloadSettings,
}

/// An entry and the name it is saved under, decided before anything is fetched.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) entry: Entry,
    pub(crate) name: naming::EntryName,
}

/// Gives every entry its file name (see [`naming::assign_names`]).
pub(crate) fn plan(entries: Vec<Entry>) -> Vec<Target> {
    let names = naming::assign_names(&entries);
    entries
        .into_iter()
        .zip(names)
        .map(|(entry, name)| Target { entry, name })
        .collect()
}

/// `futurepool fetch`: parse, validate, fetch, report; returns the exit status.
pub(crate) fn main(args: FetchArgs) -> ExitCode {
    fewer_malloc_arenas();
    match prepare(&args) {
        Ok((options, targets, report)) => {
            let interrupt = Interrupt::from_ctrl_c();
            let quiet = args.quiet;
            let summary = run(&options, targets, &interrupt);
            finish(&summary, report.as_ref(), quiet)
        }
        Err(message) => {
            eprintln!("{message}");
            ExitCode::from(2)
        }
    }
}

type Prepared = (FetchOptions, Vec<Target>, Option<ReportTarget>);

/// Everything that can be refused before the first request: exit status 2.
fn prepare(args: &FetchArgs) -> Result<Prepared, String> {
    let (entries, errors) = read_inputs(&args.inputs)?;
    if !errors.is_empty() {
        return Err(list_problems(&errors));
    }
    let report = args.report.as_deref().map(ReportTarget::from_arg);
    if let Some(report) = &report {
        report.check().map_err(|e| format!("futurepool: {e}"))?;
    }
    let proxies = match &args.proxy {
        Some(proxy) => Proxies::given(proxy),
        None => Proxies::from_env(),
    }
    .map_err(|e| format!("futurepool: {e}"))?;
    create_output_dir(&args.output)?;
    let jobs = args.jobs as usize;
    let per_host = args.per_host.map(|n| n as usize);
    let options = FetchOptions {
        dir: args.output.clone(),
        jobs,
        per_host,
        skip_existing: args.skip_existing,
        progress: !args.quiet,
        update: args.update,
        keep_rows: args.report.is_some(),
        download: DownloadSettings {
            timeouts: Timeouts {
                connect: args.connect_timeout,
                stall: args.stall_timeout,
                total: args.timeout,
            },
            retries: args.retries,
            backoff: args.backoff,
            max_size: args.max_size,
            headers: args.headers.clone(),
            idle_connections: per_host.unwrap_or(jobs).min(jobs),
            resume: args.resume,
            rate: args.rate,
            limit_rate: args.limit_rate,
            proxies,
        },
    };
    Ok((options, plan(entries), report))
}

/// Entries from every input, in order: URL arguments (those with `://`), LIST files, and
/// standard input for `-` or when there is no input at all. Names are checked against each
/// other across all of them.
fn read_inputs(inputs: &[String]) -> Result<(Vec<Entry>, Vec<LineError>), String> {
    let mut entries = Vec::new();
    let mut errors = Vec::new();
    let urls: Vec<&str> = inputs
        .iter()
        .map(String::as_str)
        .filter(|i| i.contains("://"))
        .collect();
    let (from_args, bad_args) = list::from_arguments(&urls);
    entries.extend(from_args);
    errors.extend(bad_args);
    let mut lists: Vec<&str> = inputs
        .iter()
        .map(String::as_str)
        .filter(|i| !i.contains("://"))
        .collect();
    if inputs.is_empty() {
        lists.push("-");
    }
    if lists.iter().filter(|l| **l == "-").count() > 1 {
        return Err("futurepool: `-` (standard input) is given more than once".to_owned());
    }
    for list in lists {
        let (source, input) = if list == "-" {
            ("<stdin>", read_stdin())
        } else {
            (list, fs::read(list))
        };
        let input = input.map_err(|e| format!("futurepool: cannot read the list {source}: {e}"))?;
        let (found, problems) = list::parse_source(source, &input);
        entries.extend(found);
        errors.extend(problems);
    }
    errors.extend(list::duplicates(&entries));
    Ok((entries, errors))
}

/// Enough to fix the lists in one pass without burying the terminal.
fn list_problems(errors: &[LineError]) -> String {
    const SHOWN: usize = 50;
    let mut message: Vec<String> = errors
        .iter()
        .take(SHOWN)
        .map(|e| {
            if &*e.list == list::ARGS {
                format!("futurepool: URL argument {}: {}", e.line, e.problem)
            } else {
                format!("futurepool: {}:{}: {}", e.list, e.line, e.problem)
            }
        })
        .collect();
    if errors.len() > SHOWN {
        message.push(format!("futurepool: … and {} more", errors.len() - SHOWN));
    }
    let mut seen = std::collections::HashSet::new();
    let sources: Vec<&str> = errors
        .iter()
        .map(|e| &*e.list)
        .filter(|list| seen.insert(*list))
        .collect();
    message.push(format!(
        "futurepool: {} problem{} in {}; nothing was fetched",
        errors.len(),
        if errors.len() == 1 { "" } else { "s" },
        sources.join(", ")
    ));
    message.join("\n")
}

fn read_stdin() -> io::Result<Vec<u8>> {
    let stdin = io::stdin();
    if stdin.is_terminal() {
        // Otherwise a user who forgot the LIST argument sees a command that seems to hang.
        eprintln!(
            "futurepool: reading the list from the terminal: one URL or `NAME URL` per line, \
             then Ctrl-D (or give URLs or a LIST file as arguments; see --help)"
        );
    }
    let mut input = Vec::new();
    stdin.lock().read_to_end(&mut input)?;
    Ok(input)
}

/// glibc gives threads up to 8 malloc arenas per core, and each keeps the high-water mark of
/// the per-request garbage of the threads using it: with -j 64 that was about 1 MB of the
/// peak. Two arenas hold it to two high-water marks; the per-thread caches in front of them
/// keep the workers from contending (no slowdown measured at -j 64 over 5,000 pages).
fn fewer_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a tuning parameter of glibc's allocator; it is called before
    // this command starts any thread, and a refusal (return value 0) changes nothing.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

fn create_output_dir(dir: &Path) -> Result<(), String> {
    if dir.exists() && !dir.is_dir() {
        return Err(format!(
            "futurepool: the output {} exists and is not a directory",
            dir.display()
        ));
    }
    fs::create_dir_all(dir).map_err(|e| {
        format!(
            "futurepool: cannot create the output directory {}: {e}",
            dir.display()
        )
    })
}

/// Writes the report, prints the summary, and picks the exit status.
fn finish(summary: &Summary, report: Option<&ReportTarget>, quiet: bool) -> ExitCode {
    let mut report_failed = false;
    if let Some(report) = report {
        let rows = (summary.rows.as_deref()).expect("`prepare` keeps the rows for a report");
        if let Err(e) = report.write(rows) {
            eprintln!("futurepool: cannot write the report: {e}");
            report_failed = true;
        }
    }
    if !quiet {
        eprintln!("{}", summary.line());
    }
    if summary.interrupted {
        ExitCode::from(EXIT_INTERRUPTED)
    } else if summary.failed() > 0 || report_failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
