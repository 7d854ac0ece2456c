//! `futurepool fetch`: the parallel page downloader of the `concurrent.futures` example, made into
//! a tool — on futurepool's own [`ThreadPool`], one blocking request per worker.
//!
//! Layout:
//! - `args.rs`: the command line;
//! - `list.rs`: reading and validating the list (everything is checked before anything is fetched);
//! - `naming.rs`: safe file names and extensions; `url.rs`: which URLs and redirects are followed;
//! - `download.rs`: one entry — timeouts, redirects, retries (`retry.rs`), size limit;
//! - `output.rs`: partial files and atomic renames; `interrupt.rs`: Ctrl-C;
//! - `schedule.rs`: list order under the `--per-host` cap;
//! - `report.rs`: the JSON Lines report and the summary; `progress.rs`: the progress bar.
//!
//! [`run`] is the entry point other commands reuse (the demo fetches its own pages through it).

mod args;
mod download;
mod interrupt;
mod list;
mod naming;
mod output;
mod progress;
mod report;
mod retry;
mod schedule;
mod url;

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use futurepool::{Shutdown, Task, TaskError, ThreadPool};

pub(crate) use self::args::FetchArgs;
pub(crate) use self::download::{DownloadSettings, Timeouts};
pub(crate) use self::interrupt::Interrupt;
pub(crate) use self::list::Entry;
pub(crate) use self::report::{Row, Summary};

use self::download::Downloader;
use self::output::OutputDir;
use self::progress::Progress;
use self::report::ReportTarget;
use self::schedule::Scheduler;

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
    pub(crate) download: DownloadSettings,
}

/// An entry and the base name it is saved under.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) entry: Entry,
    pub(crate) name: String,
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
    // No LIST, or `-`: read standard input.
    let from_stdin = args.list.as_deref().map_or(true, |p| p == Path::new("-"));
    let source = match &args.list {
        Some(path) if !from_stdin => path.display().to_string(),
        _ => "<stdin>".to_owned(),
    };
    let input = read_list(args.list.as_deref().filter(|_| !from_stdin))
        .map_err(|e| format!("futurepool: cannot read the list {source}: {e}"))?;
    let entries = list::parse(&input).map_err(|errors| {
        let mut message: Vec<String> = errors
            .iter()
            .map(|e| format!("futurepool: {source}:{}: {}", e.line, e.problem))
            .collect();
        message.push(format!(
            "futurepool: {} problem{} in {source}; nothing was fetched",
            errors.len(),
            if errors.len() == 1 { "" } else { "s" }
        ));
        message.join("\n")
    })?;
    let report = args.report.as_deref().map(ReportTarget::from_arg);
    if let Some(report) = &report {
        report.check().map_err(|e| format!("futurepool: {e}"))?;
    }
    create_output_dir(&args.output)?;
    let jobs = args.jobs as usize;
    let per_host = args.per_host.map(|n| n as usize);
    let options = FetchOptions {
        dir: args.output.clone(),
        jobs,
        per_host,
        skip_existing: args.skip_existing,
        progress: !args.quiet,
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
        },
    };
    Ok((options, plan(entries), report))
}

fn read_list(path: Option<&Path>) -> io::Result<Vec<u8>> {
    match path {
        Some(path) => fs::read(path),
        None => {
            let mut input = Vec::new();
            io::stdin().lock().read_to_end(&mut input)?;
            Ok(input)
        }
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
        if let Err(e) = report.write(&summary.rows) {
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

/// What the orchestrating thread waits for.
enum Event {
    Done(usize, Result<Outcome, TaskError>),
    Interrupted,
}

/// A worker's answer for one entry.
#[derive(Clone)]
struct Outcome {
    row: Row,
    disk_full: bool,
}

/// Fetches every target into `options.dir` on a [`ThreadPool`] of `options.jobs` workers and
/// returns one row per target, in order. Stops early (promptly, partial files deleted) when
/// `interrupt` triggers, and stops starting new entries once the disk is full.
pub(crate) fn run(
    options: &FetchOptions,
    targets: Vec<Target>,
    interrupt: &Arc<Interrupt>,
) -> Summary {
    let started = Instant::now();
    let total = targets.len();
    let out = Arc::new(OutputDir::new(options.dir.clone()));
    let progress = Progress::new(total, options.progress);
    let mut rows: Vec<Option<Row>> = vec![None; total];

    // --skip-existing: answered before any worker starts.
    let mut to_fetch = Vec::with_capacity(total);
    for (index, target) in targets.iter().enumerate() {
        match out.existing(&target.name).filter(|_| options.skip_existing) {
            Some(path) => {
                rows[index] = Some(skipped_row(target, &path));
                progress.advance(0);
            }
            None => to_fetch.push(index),
        }
    }

    let hosts = targets.iter().map(|t| t.entry.url.host_key()).collect();
    let mut scheduler = Scheduler::new(hosts, to_fetch, options.per_host.unwrap_or(usize::MAX));
    let targets: Arc<[Target]> = targets.into();
    let downloader = Arc::new(Downloader::new(options.download.clone()));
    let pool = ThreadPool::new(options.jobs);
    let (events, inbox) = mpsc::channel();
    let interrupted_events = events.clone();
    interrupt.on_trigger(move || {
        let _ = interrupted_events.send(Event::Interrupted);
    });

    // Keep a few more tasks queued than there are workers, so a worker that finishes picks the
    // next entry at once instead of waiting for this thread to wake up.
    let max_in_flight = options.jobs * 2;
    let mut in_flight: Vec<Option<Task<Outcome>>> = vec![None; total];
    let mut in_flight_count = 0;
    let mut stop_reason: Option<&str> = None;
    let mut interrupted = false;
    loop {
        while stop_reason.is_none() && in_flight_count < max_in_flight {
            let Some(index) = scheduler.next() else { break };
            let task = submit(&pool, index, &targets, &downloader, &out, interrupt);
            let events = events.clone();
            task.add_done_callback(move |task| {
                let _ = events.send(Event::Done(index, task.result()));
            });
            in_flight[index] = Some(task);
            in_flight_count += 1;
        }
        if in_flight_count == 0 {
            break;
        }
        match inbox.recv() {
            Ok(Event::Done(index, result)) => {
                if in_flight[index].take().is_none() {
                    continue;
                }
                in_flight_count -= 1;
                scheduler.finished(index);
                let target = &targets[index];
                let outcome = result.unwrap_or_else(|e| Outcome {
                    row: failed_row(target, &task_error_message(&e, stop_reason)),
                    disk_full: false,
                });
                let row = outcome.row;
                if let Some(error) = &row.error {
                    if options.progress || stop_reason.is_none() {
                        progress.println(&format!(
                            "futurepool: line {}: {}: {error}",
                            row.line, row.url
                        ));
                    }
                }
                progress.advance(row.bytes);
                if outcome.disk_full && stop_reason.is_none() {
                    stop_reason = Some("not attempted: the disk is full");
                    for task in in_flight.iter().flatten() {
                        task.cancel();
                    }
                }
                rows[index] = Some(row);
            }
            Ok(Event::Interrupted) | Err(_) => {
                interrupted = true;
                break;
            }
        }
    }

    if interrupted {
        // Partial files go first, and no worker can rename anything after this.
        out.close();
        pool.shutdown(Shutdown::default().wait(false).cancel_pending(true));
        // Workers still inside a request finish it (bounded by the timeouts), find the output
        // closed and exit on their own; waiting for them would make Ctrl-C slow, so the pool is
        // not joined.
        std::mem::forget(pool);
        for (index, task) in in_flight.iter_mut().enumerate() {
            if task.take().is_some() {
                rows[index] = Some(match out.committed(index) {
                    Some(path) => saved_late_row(&targets[index], &path),
                    None => failed_row(&targets[index], "interrupted"),
                });
            }
        }
    }
    let unstarted = if interrupted {
        "not attempted: interrupted"
    } else {
        stop_reason.unwrap_or("not attempted")
    };
    for index in scheduler.drain_unstarted() {
        rows[index] = Some(failed_row(&targets[index], unstarted));
    }
    progress.finish();
    Summary {
        rows: rows
            .into_iter()
            .enumerate()
            .map(|(index, row)| row.unwrap_or_else(|| failed_row(&targets[index], unstarted)))
            .collect(),
        elapsed: started.elapsed(),
        interrupted,
    }
}

fn submit(
    pool: &ThreadPool,
    index: usize,
    targets: &Arc<[Target]>,
    downloader: &Arc<Downloader>,
    out: &Arc<OutputDir>,
    interrupt: &Arc<Interrupt>,
) -> Task<Outcome> {
    let (targets, downloader, out, interrupt) = (
        targets.clone(),
        downloader.clone(),
        out.clone(),
        interrupt.clone(),
    );
    pool.submit(move || {
        let target = &targets[index];
        let started = Instant::now();
        let fetched = downloader.fetch(index, &target.entry.url, &target.name, &out, &interrupt);
        let elapsed = started.elapsed();
        let disk_full = matches!(&fetched.result, Err(e) if e.is_disk_full());
        let row = match fetched.result {
            Ok(saved) => Row {
                line: target.entry.line,
                url: target.entry.url.to_string(),
                final_url: Some(saved.final_url.to_string()),
                name: file_name(&saved.path),
                path: Some(saved.path.display().to_string()),
                status: Some(saved.status),
                bytes: saved.bytes,
                attempts: fetched.attempts,
                elapsed_ms: millis(elapsed),
                error: None,
                skipped: false,
            },
            Err(error) => Row {
                status: error.status(),
                attempts: fetched.attempts,
                elapsed_ms: millis(elapsed),
                ..failed_row(target, &error.to_string())
            },
        };
        Outcome { row, disk_full }
    })
}

fn task_error_message(error: &TaskError, stop_reason: Option<&str>) -> String {
    match error {
        TaskError::Cancelled => stop_reason.unwrap_or("not attempted").to_owned(),
        TaskError::Panicked(panic) => format!("internal error: {panic}"),
        other => format!("internal error: {other}"),
    }
}

fn failed_row(target: &Target, error: &str) -> Row {
    Row {
        line: target.entry.line,
        url: target.entry.url.to_string(),
        final_url: None,
        name: target.name.clone(),
        path: None,
        status: None,
        bytes: 0,
        attempts: 0,
        elapsed_ms: 0,
        error: Some(error.to_owned()),
        skipped: false,
    }
}

fn skipped_row(target: &Target, path: &Path) -> Row {
    Row {
        name: file_name(path),
        path: Some(path.display().to_string()),
        bytes: fs::metadata(path).map_or(0, |m| m.len()),
        error: None,
        skipped: true,
        ..failed_row(target, "")
    }
}

/// An entry whose file was renamed into place just as Ctrl-C arrived, before its worker
/// reported: saved, though its status and timing were never reported.
fn saved_late_row(target: &Target, path: &Path) -> Row {
    Row {
        name: file_name(path),
        path: Some(path.display().to_string()),
        bytes: fs::metadata(path).map_or(0, |m| m.len()),
        attempts: 1,
        error: None,
        ..failed_row(target, "")
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
