//! A snapshot of a pool as the broker sees it: what `futurepool cluster status` prints.

use std::fmt;
use std::time::Duration;

use super::backend::Backend;
use super::redis::RedisBackend;
use super::{ClusterError, DEFAULT_POOL};
use crate::error::Reason;

/// The state of one pool on the broker: its queue, its in-flight tasks, its workers and what was
/// dead-lettered.
///
/// # Examples
///
/// ```no_run
/// let status = futurepool::cluster::status("redis://127.0.0.1:6379/", "default")?;
/// println!("{} queued, {} running on {} workers", status.queued, status.in_flight, status.workers.len());
/// print!("{status}");
/// # Ok::<(), futurepool::cluster::ClusterError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Status {
    /// Tasks waiting for a worker.
    pub queued: u64,
    /// Tasks delivered to a worker and not yet finished (the pending entries list).
    pub in_flight: u64,
    /// Every worker that announced itself and has not stopped cleanly, plus any consumer that
    /// still holds tasks.
    pub workers: Vec<WorkerStatus>,
    /// How many tasks are in the dead-letter stream (capped at about 10,000).
    pub dead_lettered: u64,
    /// Queue entries that were not tasks a worker could run — missing or non-UTF-8 fields
    /// (written by something else), an argument that does not decode, a function the worker
    /// does not have, a signature mismatch — and were dead-lettered, ever.
    pub malformed: u64,
    /// Pool settings stored on the broker that are not valid (each names the setting; the
    /// default is used instead).
    pub problems: Vec<String>,
    /// The most recent dead-lettered tasks, newest first (at most 10).
    pub recent_dead: Vec<DeadLetter>,
    /// Tasks ever queued (a re-submitted task id counts once).
    pub submitted: u64,
    /// Outcomes published (the first completion of each task).
    pub published: u64,
    /// Late duplicate completions that were discarded.
    pub duplicates: u64,
    /// Tasks put back in the queue by workers that stopped cleanly before starting them.
    pub released: u64,
    /// Tasks waiting on the broker's schedule: delayed tasks not yet due, and retries waiting for
    /// their backoff.
    pub scheduled: u64,
    /// Tasks chained after others (`ClusterPool::submit_after`) waiting on the broker for those
    /// to finish; each is queued (or fails) the moment its upstream's outcome is published.
    pub chained: u64,
    /// Runs that failed and were scheduled again under the task's retry policy, ever.
    pub retried: u64,
    /// Runs put back on the schedule by a rate limit (no token yet), ever.
    pub throttled: u64,
    /// How long a worker may stay silent before its tasks are given to another.
    pub lease: Duration,
    /// How many times a task is delivered before it is dead-lettered.
    pub max_deliveries: u32,
    /// The latest progress of running tasks that reported some
    /// ([`report_progress`](crate::report_progress)), sorted by task id; at most
    /// [`MAX_PROGRESS`] (when more report, some are left out).
    pub progress: Vec<TaskProgress>,
}

/// At most this many tasks' progress is read into a [`Status`]: a status stays small however
/// many tasks run.
pub const MAX_PROGRESS: usize = 100;

/// What a running task last reported of its progress.
///
/// # Examples
///
/// ```no_run
/// let status = futurepool::cluster::status("redis://127.0.0.1:6379/", "default")?;
/// for task in &status.progress {
///     println!("{}: {} of {} ({:.0}%)", task.task_id, task.done, task.total, 100.0 * task.ratio());
/// }
/// # Ok::<(), futurepool::cluster::ClusterError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TaskProgress {
    /// The task's id.
    pub task_id: String,
    /// Units done, as the task reported them.
    pub done: u64,
    /// Units in all.
    pub total: u64,
}

impl TaskProgress {
    /// `done / total`, at most 1 (0 when the total is 0).
    ///
    /// # Examples
    ///
    /// ```
    /// let half = futurepool::cluster::TaskProgress::new("t-1", 5, 10);
    /// assert_eq!(half.ratio(), 0.5);
    /// ```
    pub fn ratio(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.done.min(self.total) as f64 / self.total as f64
        }
    }

    /// A task's progress: `done` of `total` units.
    ///
    /// # Examples
    ///
    /// ```
    /// let p = futurepool::cluster::TaskProgress::new("t-1", 1, 4);
    /// assert_eq!((p.task_id.as_str(), p.done, p.total), ("t-1", 1, 4));
    /// ```
    pub fn new(task_id: impl Into<String>, done: u64, total: u64) -> Self {
        TaskProgress {
            task_id: task_id.into(),
            done,
            total,
        }
    }

    /// Parses a progress hash's value, `"DONE TOTAL"`; `None` if it is not two numbers.
    pub(crate) fn parse(task_id: String, value: &str) -> Option<Self> {
        let (done, total) = value.trim().split_once(' ')?;
        Some(TaskProgress::new(
            task_id,
            done.parse().ok()?,
            total.parse().ok()?,
        ))
    }
}

/// `progress` sorted by task id (a stable order from one look to the next), at most
/// [`MAX_PROGRESS`].
pub(crate) fn first_progress(mut progress: Vec<TaskProgress>) -> Vec<TaskProgress> {
    progress.sort_by(|a, b| a.task_id.cmp(&b.task_id));
    progress.truncate(MAX_PROGRESS);
    progress
}

/// One worker of a pool.
///
/// # Examples
///
/// ```no_run
/// let status = futurepool::cluster::status("redis://127.0.0.1:6379/", "default")?;
/// for worker in &status.workers {
///     println!("{} holds {} tasks", worker.name, worker.in_flight);
/// }
/// # Ok::<(), futurepool::cluster::ClusterError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerStatus {
    /// The worker's unique name (`host:pid-wN`).
    pub name: String,
    /// What the worker said about itself (host, process id, threads).
    pub description: String,
    /// How long ago its last heartbeat was (broker clock); `None` if it never sent one.
    pub last_heartbeat: Option<Duration>,
    /// Tasks it holds: running, or fetched and about to run.
    pub in_flight: u64,
}

/// A task that used up its deliveries.
///
/// # Examples
///
/// ```no_run
/// let status = futurepool::cluster::status("redis://127.0.0.1:6379/", "default")?;
/// for dead in &status.recent_dead {
///     println!("{} ({}) lost {} workers", dead.task_id, dead.function, dead.deliveries);
/// }
/// # Ok::<(), futurepool::cluster::ClusterError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeadLetter {
    /// The task's id.
    pub task_id: String,
    /// The registered name of its function.
    pub function: String,
    /// How many times it was delivered.
    pub deliveries: u32,
    /// The worker that held it last.
    pub worker: String,
    /// Why it was dead-lettered: its workers were lost, or the entry is malformed (and how).
    pub reason: String,
}

/// Reads the status of pool `pool` (`"default"` unless you named it) on the broker at `url`.
///
/// # Errors
///
/// [`ClusterError::InvalidUrl`] or [`ClusterError::Unavailable`] when the broker cannot be asked,
/// [`ClusterError::NoSuchPool`] when no client or worker ever used a pool of that name there.
///
/// # Examples
///
/// ```no_run
/// let status = futurepool::cluster::status("redis://127.0.0.1:6379/", "default")?;
/// assert!(status.max_deliveries >= 1);
/// # Ok::<(), futurepool::cluster::ClusterError>(())
/// ```
pub fn status(url: &str, pool: &str) -> Result<Status, ClusterError> {
    let pool = if pool.is_empty() { DEFAULT_POOL } else { pool };
    let backend = RedisBackend::observer(url, pool).map_err(ClusterError::invalid_url)?;
    let mut connection = backend.connect()?;
    match connection.status()? {
        Some(status) => Ok(status),
        None => {
            let pools = connection.pools().unwrap_or_default();
            let known = if pools.is_empty() {
                "there is no futurepool pool on this broker".to_string()
            } else {
                format!("pools on this broker: {}", pools.join(", "))
            };
            Err(ClusterError::NoSuchPool(Reason::new(format!(
                "no pool named {pool:?} exists on this broker ({known})"
            ))))
        }
    }
}

/// The names of the pools on the broker at `url` (every pool a client or worker created there),
/// sorted. Looks only: it creates nothing. A broker with very many keys is scanned a bounded
/// number of pages, so a pool may be missing from the answer there.
///
/// # Errors
///
/// [`ClusterError::InvalidUrl`] or [`ClusterError::Unavailable`] when the broker cannot be asked.
///
/// # Examples
///
/// ```no_run
/// for pool in futurepool::cluster::pools("redis://127.0.0.1:6379/")? {
///     println!("{pool}");
/// }
/// # Ok::<(), futurepool::cluster::ClusterError>(())
/// ```
pub fn pools(url: &str) -> Result<Vec<String>, ClusterError> {
    let backend = RedisBackend::observer(url, DEFAULT_POOL).map_err(ClusterError::invalid_url)?;
    Ok(backend.connect()?.pools()?)
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "queued        {}", self.queued)?;
        writeln!(f, "in flight     {}", self.in_flight)?;
        writeln!(
            f,
            "scheduled     {} (delayed, retries waiting for their backoff, or waiting for a rate \
             limit; {} {} retried, {} throttled ever)",
            self.scheduled,
            self.retried,
            plural(self.retried, "run", "runs"),
            self.throttled
        )?;
        if self.chained > 0 {
            writeln!(
                f,
                "chained       {} (waiting for the tasks they were submitted after)",
                self.chained
            )?;
        }
        writeln!(
            f,
            "settings      lease {:?}, max deliveries {}",
            self.lease, self.max_deliveries
        )?;
        writeln!(
            f,
            "counters      submitted {}, published {}, duplicates discarded {}, released {}",
            self.submitted, self.published, self.duplicates, self.released
        )?;
        if !self.progress.is_empty() {
            writeln!(
                f,
                "progress      {} running {} reported",
                self.progress.len(),
                plural(self.progress.len() as u64, "task", "tasks")
            )?;
            // A report stays readable with many running tasks; the dashboard lists them all.
            const LISTED: usize = 20;
            for p in self.progress.iter().take(LISTED) {
                writeln!(
                    f,
                    "  {:<32} {:>5.1}%  {} of {}",
                    p.task_id,
                    100.0 * p.ratio(),
                    p.done,
                    p.total
                )?;
            }
            if self.progress.len() > LISTED {
                writeln!(f, "  ... and {} more", self.progress.len() - LISTED)?;
            }
        }
        writeln!(f, "workers       {}", self.workers.len())?;
        for w in &self.workers {
            let beat = match w.last_heartbeat {
                Some(age) => format!("heartbeat {:.1}s ago", age.as_secs_f64()),
                None => "no heartbeat".to_string(),
            };
            let stale = match w.last_heartbeat {
                Some(age) if age > self.lease => "  (silent longer than the lease: lost?)",
                None => "  (holds tasks without a heartbeat: lost?)",
                _ => "",
            };
            writeln!(
                f,
                "  {:<32} {:>5} in flight  {beat}  {}{stale}",
                w.name, w.in_flight, w.description
            )?;
        }
        for problem in &self.problems {
            writeln!(f, "problem       {problem}")?;
        }
        writeln!(
            f,
            "dead-lettered {} ({} malformed {} ever)",
            self.dead_lettered,
            self.malformed,
            plural(self.malformed, "entry", "entries")
        )?;
        for d in &self.recent_dead {
            let id = if d.task_id.is_empty() {
                "(no id)"
            } else {
                &d.task_id
            };
            let function = if d.function.is_empty() {
                "(no fn)"
            } else {
                &d.function
            };
            let reason = if d.reason.is_empty() {
                format!(
                    "delivered {} {}",
                    d.deliveries,
                    plural(u64::from(d.deliveries), "time", "times")
                )
            } else {
                d.reason.clone()
            };
            if d.worker.is_empty() {
                writeln!(f, "  {id}  {function}  {reason}")?;
            } else {
                writeln!(f, "  {id}  {function}  {reason}, last held by {}", d.worker)?;
            }
        }
        Ok(())
    }
}

/// `singular` for 1, else `plural`.
pub(crate) fn plural(n: u64, singular: &'static str, plural: &'static str) -> &'static str {
    if n == 1 {
        singular
    } else {
        plural
    }
}

/// The cluster's figures as [`Stats`](crate::Stats): `queued` and `running` (the in-flight
/// count) as the broker counts them, `completed` the outcomes published (values and task errors
/// alike), `failed` the dead-lettered tasks, `workers` the workers listed; `cancelled` and `busy`
/// are not recorded by the broker and are 0.
///
/// # Examples
///
/// ```no_run
/// let status = futurepool::cluster::status("redis://127.0.0.1:6379/", "default")?;
/// let stats = futurepool::Stats::from(&status);
/// assert_eq!(stats.queued, status.queued);
/// # Ok::<(), futurepool::cluster::ClusterError>(())
/// ```
impl From<&Status> for crate::Stats {
    fn from(status: &Status) -> Self {
        crate::Stats {
            queued: status.queued,
            running: status.in_flight,
            completed: status.published,
            failed: status.dead_lettered,
            cancelled: 0,
            workers: status.workers.len() as u64,
            busy: Duration::ZERO,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_progress_value_is_two_numbers_or_it_is_skipped() {
        let parsed = TaskProgress::parse("t".into(), "3 8").unwrap();
        assert_eq!((parsed.done, parsed.total, parsed.ratio()), (3, 8, 0.375));
        for odd in ["", "3", "3 of 8", "-1 8", "3 8 9", "three eight"] {
            assert_eq!(TaskProgress::parse("t".into(), odd), None, "{odd:?}");
        }
        assert_eq!(TaskProgress::new("t", 9, 8).ratio(), 1.0, "capped at 1");
        assert_eq!(TaskProgress::new("t", 1, 0).ratio(), 0.0, "no total");
    }

    /// An idle pool's report, but for `progress`.
    fn report_with(progress: Vec<TaskProgress>) -> String {
        Status {
            queued: 0,
            in_flight: 0,
            workers: Vec::new(),
            dead_lettered: 0,
            malformed: 0,
            problems: Vec::new(),
            recent_dead: Vec::new(),
            submitted: 0,
            published: 0,
            duplicates: 0,
            released: 0,
            scheduled: 0,
            chained: 0,
            retried: 0,
            throttled: 0,
            lease: Duration::from_secs(30),
            max_deliveries: 3,
            progress,
        }
        .to_string()
    }

    #[test]
    fn a_status_report_lists_the_first_twenty_tasks_progress() {
        let progress: Vec<_> = (0..25)
            .map(|i| TaskProgress::new(format!("task-{i:02}"), 1, 4))
            .collect();
        let text = report_with(progress);
        assert!(
            text.contains("progress      25 running tasks reported"),
            "{text}"
        );
        assert!(
            text.contains("  task-19                           25.0%  1 of 4"),
            "{text}"
        );
        assert!(!text.contains("task-20"), "{text}");
        assert!(text.contains("  ... and 5 more"), "{text}");
    }

    #[test]
    fn progress_is_sorted_by_task_id_and_capped() {
        let many: Vec<_> = (0..MAX_PROGRESS + 20)
            .rev()
            .map(|i| TaskProgress::new(format!("task-{i:04}"), 1, 2))
            .collect();
        let kept = first_progress(many);
        assert_eq!(kept.len(), MAX_PROGRESS);
        assert_eq!(kept[0].task_id, "task-0000");
        assert!(kept.windows(2).all(|w| w[0].task_id < w[1].task_id));
    }
}
