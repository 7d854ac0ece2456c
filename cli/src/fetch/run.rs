//! The orchestration: entries go to futurepool's [`ThreadPool`] (one blocking request per
//! worker), outcomes come back through task callbacks, and this thread keeps the rows, the
//! progress bar, the `--per-host` schedule, and reacts to a full disk or Ctrl-C.
//!
//! This thread is woken only when it has something to do — an entry to dispatch, a failure to
//! print, the progress bar to redraw, the end — not once per page: on a fast server every
//! needless wake-up is a context switch per page.

use std::cell::Cell;
use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use futurepool::{Shutdown, Task, TaskError, ThreadPool};

use super::download::{Conditional, Destination, Downloader};
use super::interrupt::Interrupt;
use super::output::OutputDir;
use super::progress::Progress;
use super::report::{Counts, Row, Summary};
use super::schedule::Scheduler;
use super::state::{Remembered, State};
use super::{FetchOptions, Target};

const DISK_FULL_STOP: &str = "not attempted: the disk is full";

/// How long Ctrl-C waits for the report of an entry whose file was already renamed.
const REPORT_GRACE: Duration = Duration::from_secs(1);

/// How often the progress bar is refreshed between wake-ups.
const PROGRESS_TICK: Duration = Duration::from_millis(100);

/// A worker's answer for one entry.
#[derive(Clone)]
struct Outcome {
    row: Row,
    disk_full: bool,
    /// What `--update` should remember of the response.
    remember: Option<Remembered>,
}

/// Where task callbacks leave outcomes for the orchestrating thread.
#[derive(Default)]
struct Board {
    state: Mutex<BoardState>,
    changed: Condvar,
}

#[derive(Default)]
struct BoardState {
    finished: Vec<(usize, Result<Outcome, TaskError>)>,
    /// Submitted tasks whose outcome has not been posted.
    outstanding: usize,
    /// Wake the orchestrator once no more than this many tasks are outstanding (it has entries
    /// waiting to be dispatched); `None` when everything is dispatched.
    refill_at: Option<usize>,
    interrupted: bool,
}

impl Board {
    fn lock(&self) -> MutexGuard<'_, BoardState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn post(&self, index: usize, result: Result<Outcome, TaskError>) {
        let mut state = self.lock();
        let urgent = match &result {
            Ok(outcome) => outcome.row.error.is_some() || outcome.disk_full,
            Err(_) => true,
        };
        state.finished.push((index, result));
        state.outstanding -= 1;
        let refill = state.refill_at.is_some_and(|at| state.outstanding <= at);
        if urgent || refill || state.outstanding == 0 {
            self.changed.notify_one();
        }
    }

    fn interrupt(&self) {
        self.lock().interrupted = true;
        self.changed.notify_one();
    }
}

/// Fetches every target into `options.dir` on a [`ThreadPool`] of `options.jobs` workers and
/// returns one row per target, in list order. Stops early — promptly, partial files deleted — when
/// `interrupt` triggers, and stops starting entries once the disk is full.
pub(crate) fn run(
    options: &FetchOptions,
    targets: Vec<Target>,
    interrupt: &Arc<Interrupt>,
) -> Summary {
    let started = Instant::now();
    let total = targets.len();
    let out = Arc::new(OutputDir::new(options.dir.clone()));
    let progress = Progress::new(total, options.progress);
    let mut rows = Rows::new(total, options.keep_rows);

    // The directory's state: read and written for --update, and whenever an earlier --update
    // left one, so that it never vouches for a file a later run replaced (which
    // --skip-existing and --update both trust it for).
    let mut state = None;
    if options.update || State::exists(&options.dir) {
        let (loaded, warning) = State::load(&options.dir);
        if let Some(warning) = warning {
            progress.println(&format!("futurepool: {warning}"));
        }
        state = Some(loaded);
    }

    // --skip-existing is answered before any worker starts. A file the state says holds
    // another URL's page is not this entry's (an edited list gave its name to another URL):
    // it is fetched again.
    let mut to_fetch = Vec::with_capacity(total);
    for (index, target) in targets.iter().enumerate() {
        let existing = options
            .skip_existing
            .then(|| out.existing(&target.name))
            .flatten()
            .filter(|_| {
                state
                    .as_ref()
                    .and_then(|s| s.get(&target.name.base))
                    .is_none_or(|r| r.url == target.entry.url.to_string())
            });
        match existing {
            Some(path) => {
                rows.set(index, skipped_row(target, &path));
                progress.advance(0);
            }
            None => to_fetch.push(index),
        }
    }

    // --update: ask conditionally for what the state file knows and the directory still has.
    // Empty without --update: one slot per entry is memory a long list does not need.
    let mut conditionals: Vec<Option<Conditional>> = Vec::new();
    if let Some(loaded) = state.as_ref().filter(|_| options.update) {
        conditionals = vec![None; total];
        for (index, target) in targets.iter().enumerate() {
            // Only a file this entry can have been saved under: a state file edited to name
            // `../x` or another entry's file vouches for nothing.
            conditionals[index] = loaded
                .get(&target.name.base)
                .filter(|r| r.url == target.entry.url.to_string() && r.has_validator())
                .filter(|r| target.name.possible_names().contains(&r.file))
                .map(|r| Conditional {
                    path: options.dir.join(&r.file),
                    etag: r.etag.clone(),
                    last_modified: r.last_modified.clone(),
                })
                .filter(|c| c.path.is_file());
        }
    }
    let conditionals: Arc<[Option<Conditional>]> = conditionals.into();

    let mut interned: HashMap<String, Arc<str>> = HashMap::new();
    let hosts = targets
        .iter()
        .map(|t| {
            let key = t.entry.url.host_key();
            interned
                .entry(key)
                .or_insert_with_key(|k| k.as_str().into())
                .clone()
        })
        .collect();
    let mut scheduler = Scheduler::new(hosts, to_fetch, options.per_host.unwrap_or(usize::MAX));
    // Entries are queued a window at a time, never the whole list: 5,000 queued tasks were
    // most of the memory of a run. Without a per-host cap or a rate the window is wide and this
    // thread is woken only when it is half empty, so workers never wait for it and it wakes
    // once per many pages, not once per page. With a cap or a rate, list order and host slots
    // are decided here, so a few more than `jobs` are queued and it is woken for every outcome.
    let (max_in_flight, refill_at) = match (options.per_host, options.download.rate) {
        (None, None) => {
            let window = (options.jobs * 4).max(64);
            (window, window / 2)
        }
        _ => (options.jobs * 2, usize::MAX),
    };
    // Not an `Arc<[Target]>`: that would copy the whole list once more.
    let targets: Arc<Vec<Target>> = Arc::new(targets);
    let live: Arc<[Live]> = (0..total).map(|_| Live::default()).collect();
    let downloader = Arc::new(Downloader::new(options.download.clone()));
    let pool = ThreadPool::new(options.jobs);
    let board = Arc::new(Board::default());
    {
        let board = board.clone();
        interrupt.on_trigger(move || board.interrupt());
    }

    let mut in_flight: Vec<Option<Task<Outcome>>> = vec![None; total];
    let mut in_flight_count = 0;
    let mut stop_reason: Option<&'static str> = None;
    let mut interrupted = false;
    // With --rate, an entry starts only when its host's slot is due, so a host that must wait
    // holds no worker; the slot taken here is the entry's first request's.
    let host_rate = downloader.host_rate();
    let disk_full = Arc::new(AtomicBool::new(false));
    loop {
        let now = Instant::now();
        let slot = |host: &str| host_rate.is_none_or(|r| r.try_acquire(host, now).is_ok());
        let mut dispatched = Vec::new();
        while stop_reason.is_none() && in_flight_count + dispatched.len() < max_in_flight {
            match scheduler.next_when(slot) {
                Some(index) => dispatched.push(index),
                None => break,
            }
        }
        // When the next held-back entry's slot comes due, if nothing wakes this thread first.
        let next_due = host_rate.and_then(|rate| {
            scheduler
                .timed_hosts()
                .filter_map(|host| rate.due(host))
                .min()
        });
        let more_waiting = stop_reason.is_none() && scheduler.has_waiting();
        {
            let mut state = board.lock();
            state.outstanding += dispatched.len();
            state.refill_at = more_waiting.then_some(refill_at);
        }
        for index in dispatched {
            let shared = Shared {
                disk_full: &disk_full,
                targets: &targets,
                conditionals: &conditionals,
                live: &live,
                downloader: &downloader,
                out: &out,
                interrupt,
            };
            let task = submit(&pool, index, &shared);
            let board = board.clone();
            task.add_done_callback(move |task| board.post(index, task.result()));
            in_flight[index] = Some(task);
            in_flight_count += 1;
        }
        if in_flight_count == 0 && (next_due.is_none() || stop_reason.is_some()) {
            break;
        }

        let finished = {
            let mut state = board.lock();
            while state.finished.is_empty() && !state.interrupted {
                let until_due = next_due.map(|due| due.saturating_duration_since(Instant::now()));
                if until_due.is_some_and(|d| d.is_zero()) {
                    break;
                }
                let tick = progress.is_visible().then_some(PROGRESS_TICK);
                state = match tick.into_iter().chain(until_due).min() {
                    Some(timeout) => {
                        board
                            .changed
                            .wait_timeout(state, timeout)
                            .unwrap_or_else(PoisonError::into_inner)
                            .0
                    }
                    None => board
                        .changed
                        .wait(state)
                        .unwrap_or_else(PoisonError::into_inner),
                };
                progress.tick();
            }
            // Outcomes already posted are complete, interrupt or not: their rows and their
            // --update state are kept, not guessed from the output directory.
            interrupted = state.interrupted;
            std::mem::take(&mut state.finished)
        };
        for (index, result) in finished {
            if in_flight[index].take().is_none() {
                continue;
            }
            in_flight_count -= 1;
            scheduler.finished(index);
            let target = &targets[index];
            let cancelled = matches!(result, Err(TaskError::Cancelled));
            let outcome = result.unwrap_or_else(|e| Outcome {
                row: failed_row(target, &task_error_message(&e, stop_reason)),
                disk_full: false,
                remember: None,
            });
            remember(state.as_mut(), target, outcome.remember);
            let row = outcome.row;
            if let (Some(error), false) = (&row.error, cancelled) {
                progress.println(&format!(
                    "futurepool: line {}: {}: {error}",
                    row.line, row.url
                ));
            }
            progress.advance(row.bytes);
            if outcome.disk_full && stop_reason.is_none() {
                stop_reason = Some(DISK_FULL_STOP);
                for task in in_flight.iter().flatten() {
                    task.cancel();
                }
            }
            rows.set(index, row);
        }
        if interrupted {
            break;
        }
    }

    if interrupted {
        // Partial files go first; no worker can create or rename a file after this.
        out.close();
        pool.shutdown(Shutdown::default().wait(false).cancel_pending(true));
        // Workers still inside a request finish it (bounded by the timeouts), find the output
        // closed and exit; joining them would make Ctrl-C wait for the slowest server, so the
        // pool is let go without the join its drop would do.
        std::mem::forget(pool);
        for (index, task) in in_flight.iter_mut().enumerate() {
            if let Some(task) = task.take() {
                // A file renamed just before the interrupt: its worker has nothing left to do
                // but report, so its real row (and --update state) is worth a short wait.
                let committed = out.committed(index);
                if committed.is_some() && task.wait_timeout(REPORT_GRACE) {
                    if let Ok(outcome) = task.result() {
                        remember(state.as_mut(), &targets[index], outcome.remember);
                        rows.set(index, outcome.row);
                        continue;
                    }
                }
                let (attempts, elapsed_ms) = live[index].so_far();
                let row = match committed {
                    Some(path) => saved_late_row(&targets[index], &path),
                    None => failed_row(&targets[index], "interrupted"),
                };
                rows.set(
                    index,
                    Row {
                        attempts: attempts.max(row.attempts),
                        elapsed_ms,
                        ..row
                    },
                );
            }
        }
    }
    let unstarted = if interrupted {
        "not attempted: interrupted"
    } else {
        stop_reason.unwrap_or("not attempted")
    };
    progress.finish();
    if let Some(state) = &state {
        if let Err(e) = state.save(&options.dir) {
            eprintln!(
                "futurepool: cannot write the state file in {}: {e}",
                options.dir.display()
            );
        }
    }
    for index in rows.missing() {
        rows.set(index, failed_row(&targets[index], unstarted));
    }
    let (rows, counts) = rows.finish();
    Summary {
        rows,
        counts,
        elapsed: started.elapsed(),
        interrupted,
    }
}

/// The entries' rows as they come in: counted always, kept only for a report.
struct Rows {
    /// `Some` when kept: one slot per entry, in list order.
    kept: Option<Vec<Option<Row>>>,
    /// Which entries have their row (kept or only counted).
    has_row: Vec<bool>,
    counts: Counts,
}

impl Rows {
    fn new(total: usize, keep: bool) -> Rows {
        Rows {
            kept: keep.then(|| vec![None; total]),
            has_row: vec![false; total],
            counts: Counts::default(),
        }
    }

    /// Entry `index`'s row; an entry has one row, so a second is ignored.
    fn set(&mut self, index: usize, row: Row) {
        if std::mem::replace(&mut self.has_row[index], true) {
            return;
        }
        self.counts.add(&row);
        if let Some(kept) = &mut self.kept {
            kept[index] = Some(row);
        }
    }

    /// The entries without a row yet.
    fn missing(&self) -> Vec<usize> {
        (0..self.has_row.len())
            .filter(|&index| !self.has_row[index])
            .collect()
    }

    fn finish(self) -> (Option<Vec<Row>>, Counts) {
        let rows = self.kept.map(|kept| {
            kept.into_iter()
                .map(|row| row.expect("every entry has its row"))
                .collect()
        });
        (rows, self.counts)
    }
}

/// What a worker has done so far for an entry, readable while it runs: an entry cut short by
/// Ctrl-C still reports its attempts and time.
#[derive(Default)]
struct Live {
    attempts: AtomicU32,
    started: OnceLock<Instant>,
}

impl Live {
    fn so_far(&self) -> (u32, u64) {
        let elapsed = self.started.get().map_or(0, |s| millis(s.elapsed()));
        (self.attempts.load(Ordering::Relaxed), elapsed)
    }
}

/// What the state remembers of an entry's saved file: its URL always (which page the file
/// holds, what --skip-existing checks), its validators when it had any (what --update asks
/// with).
fn remember(state: Option<&mut State>, target: &Target, remembered: Option<Remembered>) {
    if let (Some(state), Some(remembered)) = (state, remembered) {
        state.set(&target.name.base, remembered);
    }
}

/// What every task of a run shares.
struct Shared<'a> {
    /// Set by the first worker that finds the disk full: later entries are not started, even
    /// those a worker takes before this thread has cancelled them.
    disk_full: &'a Arc<AtomicBool>,
    targets: &'a Arc<Vec<Target>>,
    conditionals: &'a Arc<[Option<Conditional>]>,
    live: &'a Arc<[Live]>,
    downloader: &'a Arc<Downloader>,
    out: &'a Arc<OutputDir>,
    interrupt: &'a Arc<Interrupt>,
}

/// Queues one entry on the pool; the task's value is the entry's report row.
fn submit(pool: &ThreadPool, index: usize, shared: &Shared<'_>) -> Task<Outcome> {
    let disk_full_seen = shared.disk_full.clone();
    let targets = shared.targets.clone();
    let conditionals = shared.conditionals.clone();
    let live = shared.live.clone();
    let downloader = shared.downloader.clone();
    let out = shared.out.clone();
    let interrupt = shared.interrupt.clone();
    pool.submit(move || {
        let target = &targets[index];
        if disk_full_seen.load(Ordering::SeqCst) {
            return Outcome {
                row: failed_row(target, DISK_FULL_STOP),
                disk_full: false,
                remember: None,
            };
        }
        let started = *live[index].started.get_or_init(Instant::now);
        let rate_prepaid = Cell::new(downloader.host_rate().is_some());
        let destination = Destination {
            key: index,
            name: &target.name,
            out: &out,
            conditional: conditionals.get(index).and_then(Option::as_ref),
            rate_prepaid: &rate_prepaid,
        };
        let fetched = downloader.fetch(
            &target.entry.url,
            destination,
            &interrupt,
            &live[index].attempts,
        );
        let elapsed_ms = millis(started.elapsed());
        let disk_full = matches!(&fetched.result, Err(e) if e.is_disk_full());
        if disk_full {
            disk_full_seen.store(true, Ordering::SeqCst);
        }
        let mut remember = None;
        let row = match fetched.result {
            Ok(saved) => {
                remember = Some(Remembered {
                    url: target.entry.url.to_string(),
                    file: saved
                        .path
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    etag: saved.etag.clone(),
                    last_modified: saved.last_modified.clone(),
                });
                Row {
                    final_url: Some(saved.final_url.to_string()),
                    path: Some(saved.path.display().to_string()),
                    status: Some(saved.status),
                    bytes: saved.bytes,
                    resumed_from: saved.resumed_from,
                    attempts: fetched.attempts,
                    elapsed_ms,
                    error: None,
                    not_modified: saved.not_modified,
                    ..failed_row(target, "")
                }
            }
            Err(error) => Row {
                status: error.status(),
                attempts: fetched.attempts,
                elapsed_ms,
                ..failed_row(target, &error.to_string())
            },
        };
        Outcome {
            row,
            disk_full,
            remember,
        }
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
        source: target.entry.source.clone(),
        line: target.entry.line,
        url: target.entry.url.to_string(),
        final_url: None,
        name: target.name.base.clone(),
        path: None,
        status: None,
        bytes: 0,
        resumed_from: 0,
        attempts: 0,
        elapsed_ms: 0,
        error: Some(error.to_owned()),
        skipped: false,
        not_modified: false,
    }
}

fn skipped_row(target: &Target, path: &Path) -> Row {
    Row {
        path: Some(path.display().to_string()),
        bytes: fs::metadata(path).map_or(0, |m| m.len()),
        error: None,
        skipped: true,
        ..failed_row(target, "")
    }
}

/// An entry whose file was renamed into place just as Ctrl-C arrived, before its worker
/// reported: saved, though its status and timing never reached this thread.
fn saved_late_row(target: &Target, path: &Path) -> Row {
    Row {
        path: Some(path.display().to_string()),
        bytes: fs::metadata(path).map_or(0, |m| m.len()),
        attempts: 1,
        error: None,
        ..failed_row(target, "")
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(error: Option<&str>, bytes: u64) -> Row {
        crate::fetch::report::tests::row(error, false, bytes)
    }

    /// Without a report only counts are kept; with one every row, in list order. Either way an
    /// entry counts once.
    #[test]
    fn rows_are_counted_always_and_kept_only_for_a_report() {
        for keep in [false, true] {
            let mut rows = Rows::new(3, keep);
            rows.set(2, row(None, 10));
            rows.set(0, row(Some("HTTP 404"), 0));
            rows.set(2, row(Some("a second row for one entry"), 0));
            assert_eq!(rows.missing(), [1]);
            rows.set(1, row(None, 5));
            let (kept, counts) = rows.finish();
            assert_eq!(
                (counts.saved, counts.failed, counts.bytes),
                (2, 1, 15),
                "{keep}"
            );
            match kept {
                Some(kept) => {
                    assert!(keep);
                    let bytes: Vec<u64> = kept.iter().map(|r| r.bytes).collect();
                    assert_eq!(bytes, [0, 5, 10]);
                }
                None => assert!(!keep),
            }
        }
    }
}
