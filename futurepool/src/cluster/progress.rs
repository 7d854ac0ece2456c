//! A cluster worker's side of `report_progress`: the latest report of each task it runs, kept
//! here until the keeper writes them to the broker.
//!
//! Reports reach the board already rate-limited at their source (on the task's thread, or in the
//! local worker process for process mode), but a worker may run thousands of tasks at once, so
//! the broker sees them at a pace of its own: the keeper takes every value not yet sent at most
//! once per [`PROGRESS_EVERY`] and sends them in one call ([`Connection::progress`]). A task
//! that reports faster is seen at that pace, with its latest value.
//!
//! A task has an entry from the moment its executor starts it until the moment it returns
//! ([`ProgressBoard::begin`] / [`ProgressBoard::end`]); a report outside that span (a callback of
//! the local pool that was still running as the task ended) finds no entry and is dropped, so
//! the board never outgrows the tasks running now.
//!
//! Progress is auxiliary: a write that fails ([`ProgressWrites`]) never fails a task, never
//! stops the worker and never holds up the keeper's heartbeats and lease renewals. Its values
//! stay unsent on the board and go with a later write (replaced by any newer report), and the
//! failure is said on stderr once when it starts, once a minute while it lasts, and once when
//! it ends.
//!
//! [`Connection::progress`]: super::backend::Connection::progress

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::backend::{BrokerError, Connection, ProgressReport};
use super::backoff::Backoff;
use super::status::plural;
use crate::task::ProgressSink;

/// The shortest time between two progress writes of one worker (so, of one task).
pub(crate) const PROGRESS_EVERY: Duration = Duration::from_millis(250);
/// After a permanent error (the progress hash replaced by another type, a script the broker
/// refuses), the wait before the next attempt: only a repair by someone else can end it, so
/// there is no point in asking often, but the board's latest values must reach the broker
/// soon after it.
const RETRY_REJECTED: Duration = Duration::from_secs(2);
/// Reports per progress write: a failure re-sends only the writes that did not get through.
/// The Redis backend's own batch size, so one write is one script call there.
const WRITE_BATCH: usize = 256;
/// While progress writes keep failing, the shortest time between two lines saying so.
const SAY_AGAIN: Duration = Duration::from_secs(60);

/// What a running task reported last, and whether the broker has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Latest {
    /// `None` until the task's first report.
    value: Option<(u64, u64)>,
    sent: bool,
}

/// The latest progress of each task a worker runs, by task id.
#[derive(Debug, Default)]
pub(crate) struct ProgressBoard {
    tasks: Mutex<HashMap<String, Latest>>,
}

impl ProgressBoard {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Latest>> {
        // Every update is one insert, remove or field write: a poisoned map is still whole.
        self.tasks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The task starts: reports of it are kept from now on.
    pub(crate) fn begin(&self, task_id: &str) {
        self.lock().insert(
            task_id.to_string(),
            Latest {
                value: None,
                sent: true,
            },
        );
    }

    /// The task returned: nothing more of it is kept or sent.
    pub(crate) fn end(&self, task_id: &str) {
        self.lock().remove(task_id);
    }

    /// Keeps `(done, total)` as the task's latest report, to be sent with the next batch.
    pub(crate) fn record(&self, task_id: &str, done: u64, total: u64) {
        if let Some(latest) = self.lock().get_mut(task_id) {
            if latest.value != Some((done, total)) {
                *latest = Latest {
                    value: Some((done, total)),
                    sent: false,
                };
            }
        }
    }

    /// Every value not sent yet, marked sent.
    pub(crate) fn take_unsent(&self) -> Vec<ProgressReport> {
        let mut tasks = self.lock();
        let mut reports = Vec::new();
        for (task_id, latest) in tasks.iter_mut() {
            if let (false, Some((done, total))) = (latest.sent, latest.value) {
                latest.sent = true;
                reports.push(ProgressReport {
                    task_id: task_id.clone(),
                    done,
                    total,
                });
            }
        }
        reports
    }

    /// `reports` did not reach the broker (a transient error): each goes with the next batch,
    /// unless its task ended or reported something newer meanwhile.
    pub(crate) fn unsend(&self, reports: &[ProgressReport]) {
        let mut tasks = self.lock();
        for report in reports {
            if let Some(latest) = tasks.get_mut(&report.task_id) {
                if latest.value == Some((report.done, report.total)) {
                    latest.sent = false;
                }
            }
        }
    }
}

/// A run of failed progress writes.
#[derive(Debug)]
struct Failing {
    since: Instant,
    attempts: u64,
    /// When the log last said so.
    said: Instant,
}

/// The keeper's progress writes: when the next is due, and the run of failures under way, if
/// any (see the module docs).
#[derive(Debug)]
pub(crate) struct ProgressWrites {
    /// Starts each log line (the worker's label).
    label: String,
    next: Instant,
    backoff: Backoff,
    failing: Option<Failing>,
}

impl ProgressWrites {
    pub(crate) fn new(label: impl Into<String>) -> Self {
        ProgressWrites {
            label: label.into(),
            next: Instant::now(),
            backoff: Backoff::new(),
            failing: None,
        }
    }

    /// If a write is due, sends every value of `board` not sent yet. It never fails: on an
    /// error the values stay unsent and the next write is put off (a backoff for a transient
    /// error, [`RETRY_REJECTED`] for a permanent one), so one that keeps failing costs the
    /// keeper one round trip now and then, and the log a line a minute.
    pub(crate) fn tick(&mut self, board: &ProgressBoard, connection: &mut dyn Connection) {
        let now = Instant::now();
        if now < self.next {
            return;
        }
        self.next = now + PROGRESS_EVERY;
        let reports = board.take_unsent();
        if reports.is_empty() {
            return;
        }
        // One call per broker batch: after a failure only the batches that did not get through
        // go again, so a value the broker has is not told to a waiting client twice.
        let mut batches = reports.chunks(WRITE_BATCH);
        while let Some(batch) = batches.next() {
            if let Err(error) = connection.progress(batch) {
                board.unsend(batch);
                batches.for_each(|rest| board.unsend(rest));
                self.failed(now, &error, reports.len() as u64);
                return;
            }
        }
        self.backoff.reset();
        if let Some(failing) = self.failing.take() {
            eprintln!(
                "{}: progress is recorded again, after {} failed {} in {:.1?}",
                self.label,
                failing.attempts,
                plural(failing.attempts, "attempt", "attempts"),
                failing.since.elapsed(),
            );
        }
    }

    /// Puts the next write off and says so, if the log has not said so lately.
    fn failed(&mut self, now: Instant, error: &BrokerError, n: u64) {
        let wait = if error.is_transient() {
            self.backoff.next().1.max(PROGRESS_EVERY)
        } else {
            RETRY_REJECTED
        };
        self.next = now + wait;
        match &mut self.failing {
            None => {
                eprintln!(
                    "{}: could not record the progress of {n} {} ({error}); the tasks run on, \
                     and their latest progress goes with a later write, the next in {wait:?} \
                     (said again once a minute while it lasts)",
                    self.label,
                    plural(n, "task", "tasks"),
                );
                self.failing = Some(Failing {
                    since: now,
                    attempts: 1,
                    said: now,
                });
            }
            Some(failing) => {
                failing.attempts += 1;
                if now.duration_since(failing.said) >= SAY_AGAIN {
                    eprintln!(
                        "{}: still cannot record progress ({error}): {} failed attempts in \
                         {:.0?}",
                        self.label,
                        failing.attempts,
                        failing.since.elapsed(),
                    );
                    failing.said = now;
                }
            }
        }
    }
}

/// Where `report_progress` goes while a thread-mode executor runs a task: that task's entry.
pub(crate) struct TaskProgress {
    pub(crate) board: Arc<ProgressBoard>,
    pub(crate) task_id: String,
}

impl ProgressSink for TaskProgress {
    fn deliver(&self, done: u64, total: u64) {
        self.board.record(&self.task_id, done, total);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(task_id: &str, done: u64, total: u64) -> ProgressReport {
        ProgressReport {
            task_id: task_id.into(),
            done,
            total,
        }
    }

    #[test]
    fn only_the_latest_unsent_value_of_a_running_task_is_taken() {
        let board = ProgressBoard::default();
        board.record("early", 1, 2);
        board.begin("a");
        assert!(board.take_unsent().is_empty(), "no report yet");
        board.record("a", 1, 10);
        board.record("a", 4, 10);
        assert_eq!(board.take_unsent(), [report("a", 4, 10)]);
        assert!(board.take_unsent().is_empty(), "sent already");
        board.record("a", 4, 10);
        assert!(
            board.take_unsent().is_empty(),
            "the same value again is not news"
        );
        board.end("a");
        board.record("a", 10, 10);
        assert!(
            board.take_unsent().is_empty(),
            "after its end nothing is kept"
        );
        assert!(board.lock().is_empty(), "{:?}", board.lock());
    }

    #[test]
    fn a_report_that_failed_to_go_out_goes_with_the_next_batch_unless_superseded() {
        let board = ProgressBoard::default();
        board.begin("a");
        board.begin("b");
        board.record("a", 1, 3);
        board.record("b", 1, 3);
        let mut failed = board.take_unsent();
        failed.sort_by(|x, y| x.task_id.cmp(&y.task_id));
        board.record("b", 2, 3);
        board.unsend(&failed);
        let mut again = board.take_unsent();
        again.sort_by(|x, y| x.task_id.cmp(&y.task_id));
        assert_eq!(again, [report("a", 1, 3), report("b", 2, 3)]);
    }
}
