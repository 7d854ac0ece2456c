//! What the cluster needs from a broker, so that Redis Streams is one backend among possible
//! others (a PostgreSQL one using `SELECT ... FOR UPDATE SKIP LOCKED` fits the same shape).
//!
//! The client and the workers only ever talk to a [`Connection`]; every method is one round trip
//! (or one pipelined batch) and every method is safe to retry after a [`BrokerError::Unavailable`]:
//! submits are idempotent per task id, completions publish at most once, heartbeats and reaps are
//! naturally repeatable. That is what makes "reconnect with backoff and try again" correct.

use std::sync::Arc;
use std::time::Duration;

/// A task on its way to the broker.
#[derive(Debug, Clone)]
pub(crate) struct NewTask {
    /// Unique per task: `auto:CLIENT:SEQ`, or `id:USER_ID` for an explicit id.
    pub(crate) id: Arc<str>,
    /// The registered name of the function.
    pub(crate) function: &'static str,
    /// The postcard-encoded argument.
    pub(crate) arg: Arc<[u8]>,
    /// A fingerprint of the function's argument and result types, so a worker built with another
    /// signature under the same name refuses the task instead of decoding it as something else.
    pub(crate) signature: &'static str,
    /// The retry policy in its wire form (`options.rs`); `None` for a task that is not retried.
    pub(crate) retry: Option<Arc<str>>,
    /// Run no earlier than this (a delayed task); `None`: now.
    pub(crate) due: Option<std::time::SystemTime>,
    /// The lane it waits in.
    pub(crate) priority: super::Priority,
    /// Its own limits in their wire form (`options.rs`, `TaskLimits`); `None`: the worker's.
    pub(crate) limits: Option<Arc<str>>,
    /// Chained after this task (`ClusterPool::submit_after`): it waits on the broker until that
    /// one's outcome is published, and takes its argument from it (`arg` is then empty).
    pub(crate) after: Option<After>,
}

/// The task a chained task waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct After {
    pub(crate) task_id: Arc<str>,
    /// Its value is a postcard `Result` (see `outcome::release_after`).
    pub(crate) fallible: bool,
}

impl After {
    /// The `SUBMIT` argument: `v:ID` for a plain task, `r:ID` for a fallible one.
    pub(crate) fn wire(&self) -> String {
        let mode = if self.fallible { 'r' } else { 'v' };
        format!("{mode}:{}", self.task_id)
    }
}

/// What the broker did with a submitted task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Submitted {
    /// Queued now.
    Queued,
    /// A task with this id is already queued or running; this client now waits for it too.
    AlreadyQueued,
    /// A task with this id already finished: here is its outcome.
    Finished(Vec<u8>),
}

/// What the broker knows of a task a client waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Known {
    /// It finished: its stored outcome.
    Finished(Vec<u8>),
    /// It is queued or running (someone waits for it).
    Pending,
    /// Neither: the broker lost it (keys flushed, a restart without its data) or its outcome
    /// already expired. Submitting it again is safe (idempotent per task id).
    Forgotten,
}

/// An outcome addressed to one client.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub(crate) task_id: String,
    pub(crate) outcome: Vec<u8>,
}

/// The start of a reply's task-id field that carries a running task's progress instead of its
/// outcome: `progress:TASK_ID`, its value `"DONE TOTAL"` (see [`progress_value`]). Task ids
/// start `auto:` or `id:`, so no outcome field looks like it.
pub(crate) const PROGRESS_REPLY: &str = "progress:";

impl Reply {
    /// `(task id, done, total)` if this reply is a progress report (see [`PROGRESS_REPLY`]);
    /// `None` for an outcome, or for a progress value that does not parse (dropped).
    pub(crate) fn progress(&self) -> Option<(&str, u64, u64)> {
        let task_id = self.task_id.strip_prefix(PROGRESS_REPLY)?;
        let (done, total) = parse_progress(&self.outcome)?;
        Some((task_id, done, total))
    }
}

/// A running task's latest progress, as a worker sends it ([`Connection::progress`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProgressReport {
    pub(crate) task_id: String,
    pub(crate) done: u64,
    pub(crate) total: u64,
}

/// How progress is stored, in the `:progress` hash and in progress replies: `"DONE TOTAL"`, two
/// decimal `u64` separated by one space (the dashboard reads it too).
pub(crate) fn progress_value(done: u64, total: u64) -> String {
    format!("{done} {total}")
}

/// The inverse of [`progress_value`]; `None` for anything else.
pub(crate) fn parse_progress(value: &[u8]) -> Option<(u64, u64)> {
    let text = std::str::from_utf8(value).ok()?;
    let (done, total) = text.split_once(' ')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(done) || !digits(total) {
        return None;
    }
    Some((done.parse().ok()?, total.parse().ok()?))
}

/// A task handed to a worker.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    /// The broker's id of this queue entry (the stream entry id for Redis).
    pub(crate) entry: String,
    pub(crate) task_id: String,
    pub(crate) function: String,
    pub(crate) arg: Vec<u8>,
    /// The client's fingerprint of the function's signature (absent from older clients' tasks).
    pub(crate) signature: Option<String>,
    /// The task's retry policy (wire form), if it has one.
    pub(crate) retry: Option<String>,
    /// How many times the task ran before this delivery (0 the first time): it is retried
    /// runs, not deliveries, that a policy counts.
    pub(crate) attempt: u32,
    /// The task's own limits (the `limits` field, wire form), if it has any.
    pub(crate) limits: Option<String>,
    /// The task was aborted (`Task::abort`) before this delivery: it is completed cancelled
    /// without running. Set by the broker as it delivers or hands over the entry.
    pub(crate) aborted: bool,
}

/// A finished task, to be published.
#[derive(Debug, Clone)]
pub(crate) struct Completion {
    pub(crate) entry: String,
    pub(crate) task_id: String,
    pub(crate) outcome: Vec<u8>,
    /// For a task the worker could not run at all (unknown function, undecodable argument,
    /// signature mismatch): why, recorded in the dead letters too.
    pub(crate) dead_letter: Option<String>,
    /// Instead of publishing the outcome, run the task again after this delay (its retry policy
    /// counts this failure): the broker keeps it on its schedule meanwhile.
    pub(crate) retry_in: Option<Duration>,
}

/// The pool-wide settings every worker follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PoolConfig {
    pub(crate) lease: Duration,
    pub(crate) max_deliveries: u32,
    /// How long a published outcome (and so a task id's idempotency) is kept.
    pub(crate) result_ttl: Duration,
}

/// The accepted range of each pool setting: outside them a duration overflows the broker's
/// millisecond arithmetic, or the pool cannot work (a lease shorter than a round trip).
pub(crate) const LEASE_RANGE: (Duration, Duration) = (
    Duration::from_millis(100),
    Duration::from_secs(7 * 24 * 3600),
);
pub(crate) const RESULT_TTL_RANGE: (Duration, Duration) =
    (Duration::from_secs(1), Duration::from_secs(365 * 24 * 3600));
pub(crate) const MAX_DELIVERIES_RANGE: (u32, u32) = (1, 1000);

impl PoolConfig {
    /// Checks every setting; the error names the setting, its value and the accepted range.
    pub(crate) fn validate(&self) -> Result<(), String> {
        check_duration("lease", self.lease, LEASE_RANGE)?;
        check_duration("result_ttl", self.result_ttl, RESULT_TTL_RANGE)?;
        let (low, high) = MAX_DELIVERIES_RANGE;
        if !(low..=high).contains(&self.max_deliveries) {
            return Err(format!(
                "max_deliveries({}) is out of range: it must be between {low} and {high}",
                self.max_deliveries
            ));
        }
        Ok(())
    }
}

fn check_duration(
    name: &str,
    value: Duration,
    (low, high): (Duration, Duration),
) -> Result<(), String> {
    if value < low || value > high {
        return Err(format!(
            "{name}({value:?}) is out of range: it must be between {low:?} and {high:?}"
        ));
    }
    Ok(())
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            lease: Duration::from_secs(30),
            max_deliveries: 3,
            result_ttl: Duration::from_secs(24 * 3600),
        }
    }
}

/// What one reaper pass did.
#[derive(Debug, Default)]
pub(crate) struct Reaped {
    /// Tasks of lost workers now delivered to this worker.
    pub(crate) claimed: Vec<Delivery>,
    /// Tasks that used up their deliveries and were failed and dead-lettered.
    pub(crate) dead_lettered: u32,
}

/// Why a broker call failed, sorted by what the caller must do about it (see the README's
/// "What is retried").
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum BrokerError {
    /// The broker cannot be reached, is restarting or loading its data: try again later.
    #[error("the broker is unavailable: {0}")]
    Unavailable(String),
    /// The broker refuses this client (no or wrong password, no permission): no command will
    /// succeed until the configuration changes. Permanent.
    #[error("the broker refuses this client: {0}")]
    Refused(String),
    /// The broker answered this one command with an error (a value larger than it accepts, a key
    /// of the wrong type, a script error). Permanent for that command and its data.
    #[error("the broker rejected the command: {0}")]
    Rejected(String),
    /// The broker answered something this code does not understand. Permanent.
    #[error("unexpected answer from the broker: {0}")]
    Protocol(String),
}

impl BrokerError {
    /// Whether trying the same call again later can succeed.
    pub(crate) fn is_transient(&self) -> bool {
        matches!(self, BrokerError::Unavailable(_))
    }
}

pub(crate) type BrokerResult<T> = Result<T, BrokerError>;

/// One connection to the broker, used by one thread.
pub(crate) trait Connection: Send {
    /// Reads the pool's settings: defaults for those never stored, and for each stored value
    /// that is not valid, its value in `fallback` (the last valid one this process saw) plus a
    /// message naming the setting: a bad value written by another program must not stop the pool.
    fn config(&mut self, fallback: PoolConfig) -> BrokerResult<(PoolConfig, Vec<String>)>;
    /// Stores the pool's settings for every worker.
    fn store_config(&mut self, config: PoolConfig) -> BrokerResult<()>;
    /// Stores pool-wide rate limits: function name → limit. (A default, so a backend without
    /// rate limits — or a test double — need not write one; it refuses them.)
    fn store_rate_limits(&mut self, limits: &[(&str, super::RateLimit)]) -> BrokerResult<()> {
        let _ = limits;
        Err(BrokerError::Rejected(
            "this broker backend does not support rate limits".to_string(),
        ))
    }

    /// A number no other client of this pool has, ever — even after the broker lost its keys.
    fn register_client(&mut self) -> BrokerResult<u64>;
    /// Queues tasks (idempotently per id) for `client`; one answer per task, in order.
    fn submit(&mut self, client: u64, tasks: &[NewTask]) -> BrokerResult<Vec<Submitted>>;
    /// Waits up to `block` for outcomes addressed to `client` after `cursor` (an opaque position,
    /// empty at first), advances `cursor` and forgets the outcomes it returned.
    fn replies(
        &mut self,
        client: u64,
        cursor: &mut String,
        max: usize,
        block: Duration,
    ) -> BrokerResult<Vec<Reply>>;
    /// What the broker knows of each task id, in order: the client's safety net for an outcome
    /// whose reply never reached it, and for a task the broker forgot.
    fn look_up(&mut self, task_ids: &[Arc<str>]) -> BrokerResult<Vec<Known>>;

    /// Announces a worker; returns its unique name.
    fn register_worker(&mut self, description: &str) -> BrokerResult<String>;
    /// Waits up to `block` for at most `max` new tasks for `worker`.
    fn fetch(&mut self, worker: &str, max: usize, block: Duration) -> BrokerResult<Vec<Delivery>>;
    /// Publishes outcomes; for each, whether it was the first (a late duplicate is discarded).
    fn complete(&mut self, completions: &[Completion]) -> BrokerResult<Vec<bool>>;
    /// Records the latest progress of running tasks: each report becomes the task's field of
    /// the `:progress` hash and a progress reply ([`PROGRESS_REPLY`]) to each client waiting
    /// for it, in one round trip. A report of a task that already has an outcome is dropped
    /// (publishing an outcome deletes the task's field, and nothing may bring it back).
    fn progress(&mut self, reports: &[ProgressReport]) -> BrokerResult<()>;
    /// Records that `worker` is alive and extends the lease of each of `entries` it still holds;
    /// returns the entries it no longer holds (reclaimed by another worker, or finished).
    fn heartbeat(&mut self, worker: &str, entries: &[String]) -> BrokerResult<Vec<String>>;
    /// Records an abort of each task (a client's `Task::abort`), for `result_ttl`: a worker
    /// that is handed one completes it cancelled without running it ([`Delivery::aborted`]),
    /// and one running it learns so from [`aborted`](Connection::aborted). A task waiting on the
    /// schedule (a delay, a retry's backoff, a rate limit) is cancelled at once. Per task:
    /// false if it had already finished (its outcome stands), true otherwise. Repeatable.
    fn abort(&mut self, task_ids: &[Arc<str>]) -> BrokerResult<Vec<bool>>;
    /// Which of `task_ids` were aborted (a worker asks about those it holds).
    fn aborted(&mut self, task_ids: &[String]) -> BrokerResult<Vec<String>>;
    /// Takes over up to `max_claims` tasks whose lease expired, and dead-letters those that used
    /// up their deliveries.
    fn reap(&mut self, worker: &str, config: PoolConfig, max_claims: usize)
        -> BrokerResult<Reaped>;
    /// Puts tasks this worker fetched but did not start back in the queue, as fresh deliveries.
    fn release(&mut self, worker: &str, entries: &[String]) -> BrokerResult<()>;
    /// Removes a worker that stopped cleanly (everything it ran is published) from the pool, and
    /// puts back in the queue anything still delivered to it.
    fn retire_worker(&mut self, worker: &str) -> BrokerResult<()>;

    /// A snapshot of the pool for `futurepool cluster status`; `None` if no client or worker
    /// ever used this pool on this broker.
    fn status(&mut self) -> BrokerResult<Option<super::Status>>;
    /// The names of the pools on this broker (a bounded scan: to suggest a name).
    fn pools(&mut self) -> BrokerResult<Vec<String>>;

    /// A cheap command that proves the broker answers (used to tell "the broker is down" from
    /// "the broker refuses this data").
    fn ping(&mut self) -> BrokerResult<()>;
    /// The largest value (argument or outcome) the broker accepts in one command.
    fn max_payload(&mut self) -> usize;
    /// How many workers heartbeated within the last `within`.
    fn live_workers(&mut self, within: Duration) -> BrokerResult<usize>;
}

/// Opens connections to one pool on one broker.
pub(crate) trait Backend: Send + Sync {
    fn connect(&self) -> BrokerResult<Box<dyn Connection>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_values_are_two_decimal_numbers_and_one_space() {
        assert_eq!(progress_value(3, 10), "3 10");
        assert_eq!(parse_progress(b"3 10"), Some((3, 10)));
        let max = progress_value(u64::MAX, u64::MAX);
        assert_eq!(parse_progress(max.as_bytes()), Some((u64::MAX, u64::MAX)));
        for bad in [
            &b""[..],
            b"3",
            b"3  10",
            b" 3 10",
            b"3 10 ",
            b"-3 10",
            b"3 +10",
            b"a b",
        ] {
            assert_eq!(
                parse_progress(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn a_progress_reply_is_told_from_an_outcome_by_its_field() {
        let progress = Reply {
            task_id: format!("{PROGRESS_REPLY}auto:1:2"),
            outcome: b"5 9".to_vec(),
        };
        assert_eq!(progress.progress(), Some(("auto:1:2", 5, 9)));
        let outcome = Reply {
            task_id: "auto:1:2".into(),
            outcome: b"5 9".to_vec(),
        };
        assert_eq!(outcome.progress(), None);
    }
}
