//! Job-queue options of one submit: a retry policy for the task's own failure, a delay, and an
//! explicit task id ([`SubmitOptions`]).
//!
//! A delayed task goes straight from `SUBMIT` to the schedule below; a retried one gets there
//! from `COMPLETE`. One schedule, one promotion path, one `scheduled` count.
//!
//! A retry never holds a lease: the worker that saw the failure hands the task back to the broker
//! with a due time (the `COMPLETE` script moves it into the pool's schedule, a sorted set), and a
//! worker's fetch moves due tasks back into the queue (`PROMOTE`), each step one atomic script. So
//! a task waiting for its backoff is on no worker, survives any worker's death and is shown as
//! `scheduled` in `futurepool cluster status`.
//!
//! The policy travels with the task, as the queue entry's `retry` field
//! (`MAX FIRST_MS LONGEST_MS FLAGS`), and the number of runs so far as its `attempt` field; a task
//! submitted without a policy carries neither, so the ordinary path is unchanged.

use std::time::{Duration, SystemTime};

/// Most retries a policy allows.
const MAX_RETRIES: u32 = 1000;
/// Bounds of a backoff delay: at least 1 ms; at most 30 days, so no due time overflows.
const SHORTEST: Duration = Duration::from_millis(1);
const LONGEST: Duration = Duration::from_secs(30 * 24 * 3600);

/// When a cluster task that failed on its own runs again: up to `max_retries` more times, after
/// an exponential backoff with jitter.
///
/// What counts as a failure: the task's own `Err` (for a task submitted with
/// `submit_fallible_with`), and, if you ask, a panic. A task whose worker is lost is retried
/// anyway, up to the pool's `max_deliveries`, whatever its policy; a task that cannot run at all
/// (unknown function, undecodable argument, signature mismatch) is never retried. (Cluster tasks
/// have no time limit yet, so there is nothing to count for one.)
///
/// The n-th retry (n = 1, 2, …) waits `min(longest, first · 2^(n−1))`, of which the second half
/// is random ("equal jitter": between half and all of it), so tasks that failed together do not
/// come back together. The wait is on the broker's schedule, not on a worker.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use futurepool::cluster::RetryPolicy;
/// let policy = RetryPolicy::new(3)
///     .backoff(Duration::from_millis(200), Duration::from_secs(60))
///     .on_panic(true);
/// assert_eq!(policy.max_retries(), 3);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct RetryPolicy {
    max_retries: u32,
    first: Duration,
    longest: Duration,
    on_error: bool,
    on_panic: bool,
}

impl RetryPolicy {
    /// Up to `max_retries` more runs (at most 1,000) after the task's own `Err`, waiting 1 s
    /// before the first retry, doubling up to 10 minutes; panics do not count.
    ///
    /// # Examples
    ///
    /// ```
    /// let policy = futurepool::cluster::RetryPolicy::new(5);
    /// assert_eq!(policy.max_retries(), 5);
    /// ```
    pub fn new(max_retries: u32) -> Self {
        RetryPolicy {
            max_retries: max_retries.min(MAX_RETRIES),
            first: Duration::from_secs(1),
            longest: Duration::from_secs(600),
            on_error: true,
            on_panic: false,
        }
    }

    /// The backoff: `first` before the first retry, doubling each time up to `longest` (each
    /// kept between 1 ms and 30 days; `longest` at least `first`).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let policy = futurepool::cluster::RetryPolicy::new(2)
    ///     .backoff(Duration::from_millis(50), Duration::from_secs(1));
    /// # drop(policy);
    /// ```
    pub fn backoff(mut self, first: Duration, longest: Duration) -> Self {
        self.first = first.clamp(SHORTEST, LONGEST);
        self.longest = longest.clamp(self.first, LONGEST);
        self
    }

    /// Whether the task's own `Err` counts (default true; only tasks submitted as fallible have
    /// one).
    ///
    /// # Examples
    ///
    /// ```
    /// let policy = futurepool::cluster::RetryPolicy::new(2).on_error(false).on_panic(true);
    /// # drop(policy);
    /// ```
    pub fn on_error(mut self, retry: bool) -> Self {
        self.on_error = retry;
        self
    }

    /// Whether a panic counts (default false: a panic is usually a bug, not bad luck).
    ///
    /// # Examples
    ///
    /// ```
    /// let policy = futurepool::cluster::RetryPolicy::new(2).on_panic(true);
    /// # drop(policy);
    /// ```
    pub fn on_panic(mut self, retry: bool) -> Self {
        self.on_panic = retry;
        self
    }

    /// How many times the task may run again after failing.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(futurepool::cluster::RetryPolicy::new(5000).max_retries(), 1000);
    /// ```
    pub fn max_retries(&self) -> u32 {
        self.max_retries
    }

    /// The queue entry's `retry` field. `fallible`: whether the task has an `Err` of its own (for
    /// a plain submit, a returned `Result` is a value and never counts).
    pub(crate) fn wire(&self, fallible: bool) -> String {
        let mut flags = String::new();
        if self.on_error && fallible {
            flags.push('e');
        }
        if self.on_panic {
            flags.push('p');
        }
        if flags.is_empty() {
            flags.push('-');
        }
        format!(
            "{} {} {} {flags}",
            self.max_retries,
            self.first.as_millis(),
            self.longest.as_millis()
        )
    }
}

/// A policy as the worker reads it from a queue entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WirePolicy {
    max_retries: u32,
    first_ms: u64,
    longest_ms: u64,
    on_error: bool,
    on_panic: bool,
}

impl WirePolicy {
    /// Parses a `retry` field; `None` for anything futurepool did not write (then the task is
    /// simply not retried: a damaged field must not make it run forever).
    pub(crate) fn parse(field: &str) -> Option<WirePolicy> {
        let mut parts = field.split(' ');
        let max_retries: u32 = parts.next()?.parse().ok()?;
        let first_ms: u64 = parts.next()?.parse().ok()?;
        let longest_ms: u64 = parts.next()?.parse().ok()?;
        let flags = parts.next()?;
        if parts.next().is_some() {
            return None;
        }
        let longest = LONGEST.as_millis() as u64;
        Some(WirePolicy {
            max_retries: max_retries.min(MAX_RETRIES),
            first_ms: first_ms.clamp(1, longest),
            longest_ms: longest_ms.clamp(1, longest),
            on_error: flags.contains('e'),
            on_panic: flags.contains('p'),
        })
    }

    /// After run number `attempt` (1 for the first) ended with `outcome`, how long to wait
    /// before the next run; `None` when the outcome is final.
    pub(crate) fn retry_after(&self, attempt: u32, outcome: &[u8]) -> Option<Duration> {
        if attempt > self.max_retries {
            return None;
        }
        let counts = match outcome.split_first() {
            // postcard writes `Result`'s variant index first: 1 is `Err`.
            Some((&b'V', [1, ..])) => self.on_error,
            Some((&b'P', _)) => self.on_panic,
            _ => false,
        };
        if !counts {
            return None;
        }
        let doublings = attempt.saturating_sub(1).min(63);
        let full = self
            .first_ms
            .saturating_mul(1u64 << doublings)
            .min(self.longest_ms)
            .max(1);
        let half = full / 2;
        Some(Duration::from_millis(full - half + jitter(half)))
    }
}

/// A number in `0..=max`, different from call to call and from thread to thread (no need for
/// more: it only spreads retries out).
fn jitter(max: u64) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    if max == 0 {
        return 0;
    }
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish() % (max + 1)
}

/// Options of one submit: a task id of your choosing, a retry policy, a delay, a lane, and
/// limits on the run.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use futurepool::cluster::{RetryPolicy, SubmitOptions};
/// let options = SubmitOptions::new()
///     .id("report-2026-12")
///     .retry(RetryPolicy::new(3))
///     .time_limit(Duration::from_secs(60));
/// # drop(options);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use]
pub struct SubmitOptions {
    pub(crate) id: Option<String>,
    pub(crate) retry: Option<RetryPolicy>,
    pub(crate) when: Option<When>,
    pub(crate) priority: Priority,
    pub(crate) limits: TaskLimits,
}

/// The limits on one run of a task: a submit's own (`SubmitOptions`), else the worker's
/// defaults (`ServeOptions`). In a task's queue entry they are one optional field, `limits`:
/// `HARD SOFT MEMORY` — milliseconds, milliseconds, bytes, each `-` when absent — so a task
/// without limits carries nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TaskLimits {
    pub(crate) time_limit: Option<Duration>,
    pub(crate) soft_time_limit: Option<Duration>,
    pub(crate) memory_limit: Option<u64>,
}

impl TaskLimits {
    /// Whether no limit is set.
    pub(crate) fn is_empty(&self) -> bool {
        *self == TaskLimits::default()
    }

    /// The entry's `limits` field, `None` without limits. Durations are whole milliseconds,
    /// rounded up (a limit never strikes early).
    pub(crate) fn wire(&self) -> Option<String> {
        if self.is_empty() {
            return None;
        }
        let ms = |d: Option<Duration>| {
            d.map_or("-".to_string(), |d| {
                let ms = d.as_nanos().div_ceil(1_000_000);
                u64::try_from(ms).unwrap_or(u64::MAX).to_string()
            })
        };
        let bytes = self.memory_limit.map_or("-".to_string(), |b| b.to_string());
        Some(format!(
            "{} {} {bytes}",
            ms(self.time_limit),
            ms(self.soft_time_limit)
        ))
    }

    /// Reads a `limits` field. A damaged part (another program wrote the entry) means no such
    /// limit, never a failure of the task: the worker's default applies instead.
    pub(crate) fn parse(field: &str) -> TaskLimits {
        let mut parts = field.split(' ');
        let mut next = || parts.next().and_then(|p| p.parse::<u64>().ok());
        let time_limit = next().map(Duration::from_millis);
        let soft_time_limit = next().map(Duration::from_millis);
        let memory_limit = next().filter(|&b| b > 0);
        TaskLimits {
            time_limit,
            soft_time_limit,
            memory_limit,
        }
    }

    /// These limits, each one not set here taken from `defaults`.
    pub(crate) fn or(self, defaults: TaskLimits) -> TaskLimits {
        TaskLimits {
            time_limit: self.time_limit.or(defaults.time_limit),
            soft_time_limit: self.soft_time_limit.or(defaults.soft_time_limit),
            memory_limit: self.memory_limit.or(defaults.memory_limit),
        }
    }

    /// Why a submit's limits are refused: a limit of zero would fail (or stop) every run.
    pub(crate) fn check(&self) -> Result<(), String> {
        let zero = |name: &str| {
            Err(format!(
                "SubmitOptions::{name}(0) would stop every run at once: give a limit above zero"
            ))
        };
        if self.time_limit == Some(Duration::ZERO) {
            return zero("time_limit");
        }
        if self.soft_time_limit == Some(Duration::ZERO) {
            return zero("soft_time_limit");
        }
        if self.memory_limit == Some(0) {
            return zero("memory_limit");
        }
        Ok(())
    }
}

/// Which lane of the queue a task waits in: workers take `High` before `Normal` before `Low`.
///
/// The rule against starving the lower lanes: on every 10th fetch that finds work, a worker
/// serves the lanes from the lowest up, so while the higher lanes stay busy, each worker still
/// gives about a tenth of its fetches to the lowest lane that has tasks.
///
/// # Examples
///
/// ```
/// use futurepool::cluster::{Priority, SubmitOptions};
/// let urgent = SubmitOptions::new().priority(Priority::High);
/// # drop(urgent);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Priority {
    /// After every other lane.
    Low,
    /// The default: the pool's ordinary queue.
    #[default]
    Normal,
    /// Before every other lane.
    High,
}

impl Priority {
    /// The `SUBMIT` argument: '' for the ordinary queue, else the lane's letter.
    pub(crate) fn wire(self) -> &'static str {
        match self {
            Priority::Low => "l",
            Priority::Normal => "",
            Priority::High => "h",
        }
    }
}

/// When a delayed task becomes due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum When {
    After(Duration),
    At(SystemTime),
}

/// The longest delay accepted: a year (no due time overflows the broker's arithmetic).
const MAX_DELAY: Duration = Duration::from_secs(366 * 24 * 3600);

impl When {
    /// The due time on this machine's clock, or why it is refused.
    pub(crate) fn due(self) -> Result<SystemTime, String> {
        let now = SystemTime::now();
        let due = match self {
            When::After(delay) if delay <= MAX_DELAY => now.checked_add(delay),
            When::After(delay) => {
                return Err(format!(
                    "SubmitOptions::delay({delay:?}) is out of range: at most {MAX_DELAY:?}"
                ))
            }
            When::At(at) => Some(at),
        };
        match due {
            Some(due) if due.duration_since(now).unwrap_or_default() <= MAX_DELAY => Ok(due),
            _ => Err(format!(
                "SubmitOptions::at is more than {MAX_DELAY:?} from now: give a nearer time"
            )),
        }
    }
}

impl SubmitOptions {
    /// No options: like a plain submit.
    ///
    /// # Examples
    ///
    /// ```
    /// let options = futurepool::cluster::SubmitOptions::new();
    /// # drop(options);
    /// ```
    pub fn new() -> Self {
        SubmitOptions::default()
    }

    /// Submit under this task id (see
    /// [`ClusterPool::submit_with_id`](super::ClusterPool::submit_with_id)).
    ///
    /// # Examples
    ///
    /// ```
    /// let options = futurepool::cluster::SubmitOptions::new().id("charge-order-77");
    /// # drop(options);
    /// ```
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Retry the task's own failure under `policy` (instead of the policy registered for its
    /// function with [`ClusterPoolBuilder::retry`](super::ClusterPoolBuilder::retry), if any).
    ///
    /// # Examples
    ///
    /// ```
    /// use futurepool::cluster::{RetryPolicy, SubmitOptions};
    /// let options = SubmitOptions::new().retry(RetryPolicy::new(3));
    /// # drop(options);
    /// ```
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = Some(policy);
        self
    }

    /// The task's lane (default [`Priority::Normal`]); see [`Priority`] for the order and the
    /// rule against starvation. A delayed or retried task enters its lane when due.
    ///
    /// # Examples
    ///
    /// ```
    /// use futurepool::cluster::{Priority, SubmitOptions};
    /// let options = SubmitOptions::new().priority(Priority::Low);
    /// # drop(options);
    /// ```
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }

    /// Run the task no earlier than `delay` after the submit (at most a year). Meanwhile it
    /// waits on the broker's schedule (kept across a broker restart like the queue), shown as
    /// `scheduled` by `futurepool cluster status`; it never starts early, and an idle worker
    /// starts it within about 100 ms of its due time (a few ms when nothing else was delayed
    /// meanwhile).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let options = futurepool::cluster::SubmitOptions::new().delay(Duration::from_secs(30));
    /// # drop(options);
    /// ```
    pub fn delay(mut self, delay: Duration) -> Self {
        self.when = Some(When::After(delay));
        self
    }

    /// Run the task no earlier than `time` (this machine's clock; at most a year ahead; a time in
    /// the past means now). See [`delay`](Self::delay).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// let at = SystemTime::now() + Duration::from_secs(3600);
    /// let options = futurepool::cluster::SubmitOptions::new().at(at);
    /// # drop(options);
    /// ```
    pub fn at(mut self, time: SystemTime) -> Self {
        self.when = Some(When::At(time));
        self
    }

    /// This task's hard time limit, instead of the worker's
    /// ([`ServeOptions::time_limit`](super::ServeOptions::time_limit)). On a worker running
    /// tasks in processes ([`ServeOptions::processes`](super::ServeOptions::processes)), a run
    /// still going `limit` after it started has its local process killed (and replaced), and
    /// the task fails with [`TaskError::TimeLimit`](crate::TaskError::TimeLimit); it is not
    /// retried by a [`RetryPolicy`] (a time limit is not the task's own failure). On a
    /// thread-mode worker a thread cannot be killed: the limit then acts as a soft one (the
    /// task's token is set at it) unless the task has a soft limit, and the worker says so on
    /// stderr. Kept in whole milliseconds, rounded up; zero fails the submit with a
    /// [`Transfer`](crate::TaskError::Transfer) error.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let options = futurepool::cluster::SubmitOptions::new().time_limit(Duration::from_secs(30));
    /// # drop(options);
    /// ```
    pub fn time_limit(mut self, limit: Duration) -> Self {
        self.limits.time_limit = Some(limit);
        self
    }

    /// This task's soft time limit, instead of the worker's
    /// ([`ServeOptions::soft_time_limit`](super::ServeOptions::soft_time_limit)): `limit` after
    /// the run started, [`current_token()`](crate::current_token) inside the task reads
    /// cancelled, so it can clean up and return; its value stands. On both kinds of worker. A
    /// hard [`time_limit`](Self::time_limit) still applies after it (in process mode).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let options = futurepool::cluster::SubmitOptions::new()
    ///     .soft_time_limit(Duration::from_secs(10))
    ///     .time_limit(Duration::from_secs(15));
    /// # drop(options);
    /// ```
    pub fn soft_time_limit(mut self, limit: Duration) -> Self {
        self.limits.soft_time_limit = Some(limit);
        self
    }

    /// This task's memory limit in bytes, instead of the worker's
    /// ([`ServeOptions::memory_limit`](super::ServeOptions::memory_limit)). On a worker running
    /// tasks in processes, the local process running it is killed (and replaced) as soon as its
    /// resident memory passes `bytes` while it runs, and the task fails with
    /// [`TaskError::MemoryLimit`](crate::TaskError::MemoryLimit) naming the limit and what was
    /// used; other tasks are unaffected. A thread-mode worker cannot measure one task's memory:
    /// it runs the task without the limit and says so on stderr. Zero fails the submit with a
    /// [`Transfer`](crate::TaskError::Transfer) error.
    ///
    /// # Examples
    ///
    /// ```
    /// let options = futurepool::cluster::SubmitOptions::new().memory_limit(512 << 20);
    /// # drop(options);
    /// ```
    pub fn memory_limit(mut self, bytes: u64) -> Self {
        self.limits.memory_limit = Some(bytes);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err_outcome() -> Vec<u8> {
        let mut bytes = vec![b'V'];
        bytes.extend(postcard::to_stdvec(&Err::<u8, String>("no".into())).unwrap());
        bytes
    }

    fn ok_outcome() -> Vec<u8> {
        let mut bytes = vec![b'V'];
        bytes.extend(postcard::to_stdvec(&Ok::<u8, String>(1)).unwrap());
        bytes
    }

    #[test]
    fn the_wire_form_round_trips() {
        let policy = RetryPolicy::new(3)
            .backoff(Duration::from_millis(10), Duration::from_secs(2))
            .on_panic(true);
        let wire = WirePolicy::parse(&policy.wire(true)).unwrap();
        assert_eq!(
            wire,
            WirePolicy {
                max_retries: 3,
                first_ms: 10,
                longest_ms: 2000,
                on_error: true,
                on_panic: true
            }
        );
        assert!(!WirePolicy::parse(&policy.wire(false)).unwrap().on_error);
    }

    #[test]
    fn limits_round_trip_through_their_field_and_absent_ones_cost_nothing() {
        assert_eq!(TaskLimits::default().wire(), None);
        let limits = TaskLimits {
            time_limit: Some(Duration::from_millis(1500)),
            soft_time_limit: None,
            memory_limit: Some(256 << 20),
        };
        let field = limits.wire().unwrap();
        assert_eq!(field, "1500 - 268435456");
        assert_eq!(TaskLimits::parse(&field), limits);
        // Rounded up: a limit never strikes before it is due.
        let tiny = TaskLimits {
            soft_time_limit: Some(Duration::from_micros(1)),
            ..TaskLimits::default()
        };
        assert_eq!(
            TaskLimits::parse(&tiny.wire().unwrap()).soft_time_limit,
            Some(Duration::from_millis(1))
        );
    }

    #[test]
    fn a_damaged_limits_field_means_the_workers_defaults() {
        for field in ["", "x", "- - -", "1.5 x 0"] {
            assert_eq!(TaskLimits::parse(field), TaskLimits::default(), "{field:?}");
        }
        let defaults = TaskLimits {
            time_limit: Some(Duration::from_secs(9)),
            soft_time_limit: Some(Duration::from_secs(8)),
            memory_limit: Some(7),
        };
        let own = TaskLimits::parse("100 - -");
        assert_eq!(
            own.or(defaults),
            TaskLimits {
                time_limit: Some(Duration::from_millis(100)),
                ..defaults
            }
        );
    }

    #[test]
    fn zero_limits_are_refused_at_submit() {
        assert!(SubmitOptions::new().memory_limit(0).limits.check().is_err());
        assert!(SubmitOptions::new()
            .time_limit(Duration::ZERO)
            .limits
            .check()
            .is_err());
        assert!(SubmitOptions::new()
            .soft_time_limit(Duration::from_millis(1))
            .limits
            .check()
            .is_ok());
    }

    #[test]
    fn delays_are_bounded_and_past_times_are_now() {
        assert!(When::After(Duration::from_secs(5)).due().is_ok());
        assert!(When::After(Duration::MAX).due().is_err());
        assert!(When::At(SystemTime::UNIX_EPOCH).due().is_ok());
        let far = SystemTime::now() + Duration::from_secs(400 * 24 * 3600);
        assert!(When::At(far).due().is_err());
    }

    #[test]
    fn damaged_fields_mean_no_retry() {
        for field in ["", "x", "3 10 20", "3 10 20 e extra", "-1 10 20 e"] {
            assert_eq!(WirePolicy::parse(field), None, "{field:?}");
        }
    }

    #[test]
    fn only_counted_failures_within_the_budget_retry() {
        let policy = WirePolicy::parse(&RetryPolicy::new(2).wire(true)).unwrap();
        assert!(policy.retry_after(1, &err_outcome()).is_some());
        assert!(policy.retry_after(2, &err_outcome()).is_some());
        assert_eq!(policy.retry_after(3, &err_outcome()), None);
        assert_eq!(policy.retry_after(1, &ok_outcome()), None);
        assert_eq!(policy.retry_after(1, b"Pxx"), None, "panics off by default");
        assert_eq!(policy.retry_after(1, b"Twhatever"), None);
    }

    #[test]
    fn backoff_doubles_within_jitter_and_stops_at_the_longest() {
        let policy = WirePolicy::parse(
            &RetryPolicy::new(100)
                .backoff(Duration::from_millis(100), Duration::from_millis(1000))
                .wire(true),
        )
        .unwrap();
        for (attempt, full) in [
            (1, 100),
            (2, 200),
            (3, 400),
            (4, 800),
            (5, 1000),
            (60, 1000),
        ] {
            let delay = policy.retry_after(attempt, &err_outcome()).unwrap();
            let ms = delay.as_millis() as u64;
            assert!(
                (full / 2..=full).contains(&ms),
                "attempt {attempt}: {ms} ms not within [{}, {full}]",
                full / 2
            );
        }
    }
}
