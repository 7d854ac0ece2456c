//! What a pool has done and is doing: [`Stats`], the one snapshot type every pool returns, and the
//! counters behind it.
//!
//! The counters are relaxed atomics, each written by one thread where the hot path is concerned
//! (a thread pool's worker owns its [`WorkerCounters`]), so counting costs a plain load and store
//! per task, no lock, no allocation and no cache line shared between workers. A snapshot reads
//! them without stopping anyone: each figure is exact for some instant during the call, and the
//! figures together may be a few tasks apart while tasks move.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A snapshot of a pool's work: what waits, what runs, what ended and how, and how long the
/// workers were busy. Returned by [`ThreadPool::stats`](crate::ThreadPool::stats),
/// `ProcessPool::stats` and, from the broker, `ClusterPool::stats`.
///
/// The counts of ended tasks (`completed`, `failed`, `cancelled`) only grow. The figures are read
/// without stopping the pool, so while tasks move they may be a few tasks apart from one another
/// (a task may be seen neither running nor completed for an instant), never more.
///
/// # Examples
///
/// ```
/// let pool = futurepool::ThreadPool::new(2);
/// let tasks: Vec<_> = (0..10).map(|n| pool.submit(move || n * 2)).collect();
/// tasks.iter().for_each(|t| t.wait());
/// let stats = pool.stats();
/// assert_eq!(stats.completed, 10);
/// assert_eq!((stats.queued, stats.running, stats.failed), (0, 0, 0));
/// println!("{stats}"); // queued 0, running 0, completed 10, ...
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Stats {
    /// Tasks accepted and not yet handed to a worker. On a thread pool this includes tasks
    /// cancelled while queued that no worker has popped yet.
    pub queued: u64,
    /// Tasks handed to a worker and not yet ended (on a process pool: sent down a worker's pipe,
    /// up to a few per worker; on a cluster: the broker's in-flight count).
    pub running: u64,
    /// Tasks that ended with a value. On a cluster: every outcome published, values and task
    /// errors alike (the broker does not tell them apart).
    pub completed: u64,
    /// Tasks that ended with an error: panicked, their own `Err`, time or memory limit, worker
    /// lost, data that could not cross, pool broken. On a cluster: the dead-lettered tasks.
    pub failed: u64,
    /// Tasks cancelled before they ran (by [`Task::cancel`](crate::Task::cancel) or a shutdown
    /// with `cancel_pending`). Always 0 on a cluster, whose broker does not record it.
    pub cancelled: u64,
    /// Workers alive now (threads, processes, or cluster workers).
    pub workers: u64,
    /// Total time the workers spent busy, summed over workers (so it can exceed the wall time).
    /// Zero on a cluster, whose workers do not report it.
    pub busy: Duration,
}

impl Stats {
    /// Tasks that have ended, however they ended.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = futurepool::ThreadPool::new(1);
    /// pool.submit(|| ()).wait();
    /// assert_eq!(pool.stats().ended(), 1);
    /// ```
    pub fn ended(&self) -> u64 {
        self.completed + self.failed + self.cancelled
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "queued {}, running {}, completed {}, failed {}, cancelled {}, workers {}, busy {:.3}s",
            self.queued,
            self.running,
            self.completed,
            self.failed,
            self.cancelled,
            self.workers,
            self.busy.as_secs_f64()
        )
    }
}

/// How a task a worker took ended, as the worker learns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    Completed,
    Failed,
    Cancelled,
}

/// Adds one to a counter that only its owning thread writes: a plain load and store, no locked
/// instruction (readers on other threads see each value whole, as `Relaxed` promises).
fn bump(counter: &AtomicU64) {
    counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

fn add(counter: &AtomicU64, n: u64) {
    counter.store(
        counter.load(Ordering::Relaxed).saturating_add(n),
        Ordering::Relaxed,
    );
}

/// What one worker thread counts; only that thread writes it.
#[derive(Default)]
pub(crate) struct WorkerCounters {
    taken: AtomicU64,
    completed: AtomicU64,
    failed: AtomicU64,
    cancelled: AtomicU64,
    busy_nanos: AtomicU64,
    /// When the current busy period began, in nanoseconds after the pool's epoch plus one; 0 while
    /// idle. Lets a snapshot count a long task's time while it runs.
    busy_since: AtomicU64,
}

impl WorkerCounters {
    /// The worker took a job from the queue.
    pub(crate) fn took(&self) {
        bump(&self.taken);
    }

    /// The job it took ended so.
    pub(crate) fn ended(&self, how: Ended) {
        bump(match how {
            Ended::Completed => &self.completed,
            Ended::Failed => &self.failed,
            Ended::Cancelled => &self.cancelled,
        });
    }
}

/// A pool's counters: one [`WorkerCounters`] per worker ever started, plus what the pool itself
/// ends (tasks cancelled at shutdown, failed when the pool broke).
pub(crate) struct PoolCounters {
    epoch: Instant,
    workers: Mutex<Vec<Arc<WorkerCounters>>>,
    /// Written by whoever shuts down or breaks the pool: shared, so a real atomic add.
    cancelled: AtomicU64,
    failed: AtomicU64,
}

impl Default for PoolCounters {
    fn default() -> Self {
        PoolCounters {
            epoch: Instant::now(),
            workers: Mutex::new(Vec::new()),
            cancelled: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        }
    }
}

impl PoolCounters {
    /// Counters for a new worker; called once per worker start, never per task.
    pub(crate) fn new_worker(&self) -> Arc<WorkerCounters> {
        let counters = Arc::new(WorkerCounters::default());
        self.workers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::clone(&counters));
        counters
    }

    /// `n` queued tasks were cancelled by the pool (shutdown with `cancel_pending`).
    pub(crate) fn cancelled(&self, n: usize) {
        self.cancelled.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// `n` queued tasks failed because the pool broke.
    pub(crate) fn failed(&self, n: usize) {
        self.failed.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// `worker` starts a busy period now.
    pub(crate) fn busy_from(&self, worker: &WorkerCounters, now: Instant) {
        let since = nanos(now.saturating_duration_since(self.epoch)).saturating_add(1);
        worker.busy_since.store(since, Ordering::Relaxed);
    }

    /// `worker`'s busy period, begun at `since`, ends now.
    pub(crate) fn busy_until(&self, worker: &WorkerCounters, since: Instant) {
        worker.busy_since.store(0, Ordering::Relaxed);
        add(&worker.busy_nanos, nanos(since.elapsed()));
    }

    /// The snapshot, with the figures the pool knows from elsewhere.
    pub(crate) fn snapshot(&self, queued: u64, workers: u64) -> Stats {
        let now = nanos(self.epoch.elapsed()).saturating_add(1);
        let mut stats = Stats {
            queued,
            workers,
            cancelled: self.cancelled.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            ..Stats::default()
        };
        let mut busy = 0u64;
        let mut taken = 0u64;
        let mut ended = 0u64;
        for worker in self
            .workers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            // The ends before the takes: a worker takes a job before it ends it, so reading in
            // this order never sees more ended than taken.
            let completed = worker.completed.load(Ordering::Relaxed);
            let failed = worker.failed.load(Ordering::Relaxed);
            let cancelled = worker.cancelled.load(Ordering::Relaxed);
            taken += worker.taken.load(Ordering::Relaxed);
            ended += completed + failed + cancelled;
            stats.completed += completed;
            stats.failed += failed;
            stats.cancelled += cancelled;
            busy = busy.saturating_add(worker.busy_nanos.load(Ordering::Relaxed));
            let since = worker.busy_since.load(Ordering::Relaxed);
            if since != 0 {
                busy = busy.saturating_add(now.saturating_sub(since));
            }
        }
        stats.running = taken.saturating_sub(ended);
        stats.busy = Duration::from_nanos(busy);
        stats
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Counters for a pool whose tasks end on pool threads rather than on the worker that ran them
/// (a process pool): every figure is a shared atomic, counted once per task (or per map item) as
/// it is queued, sent and ended.
pub(crate) struct SharedCounters {
    /// What [`mark`](SharedCounters::mark)s count from.
    epoch: Instant,
    queued: AtomicU64,
    running: AtomicU64,
    completed: AtomicU64,
    failed: AtomicU64,
    cancelled: AtomicU64,
    busy_nanos: AtomicU64,
}

impl Default for SharedCounters {
    fn default() -> Self {
        SharedCounters {
            epoch: Instant::now(),
            queued: AtomicU64::default(),
            running: AtomicU64::default(),
            completed: AtomicU64::default(),
            failed: AtomicU64::default(),
            cancelled: AtomicU64::default(),
            busy_nanos: AtomicU64::default(),
        }
    }
}

impl SharedCounters {
    /// Now, as nanoseconds since this pool's counters were made, plus one: never 0, so a task's
    /// record of when it was sent fits in a `u64` with 0 free to mean "not sent" (8 bytes, where
    /// an `Option<Instant>` takes 16, in every pending task: issue 16).
    pub(crate) fn mark(&self) -> u64 {
        nanos(self.epoch.elapsed()).saturating_add(1)
    }

    /// How long ago `mark` was taken by [`mark`](SharedCounters::mark).
    pub(crate) fn since(&self, mark: u64) -> Duration {
        Duration::from_nanos(self.mark().saturating_sub(mark))
    }

    pub(crate) fn queued(&self, n: u64) {
        self.queued.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn started(&self, n: u64) {
        self.queued.fetch_sub(n, Ordering::Relaxed);
        self.running.fetch_add(n, Ordering::Relaxed);
    }

    /// `n` tasks that were queued (`ran` false) or running end; `busy` is how long they ran.
    pub(crate) fn ended(&self, ran: bool, n: u64, busy: Duration) {
        if ran {
            self.running.fetch_sub(n, Ordering::Relaxed);
            self.busy_nanos.fetch_add(nanos(busy), Ordering::Relaxed);
        } else {
            self.queued.fetch_sub(n, Ordering::Relaxed);
        }
    }

    pub(crate) fn outcome(&self, how: Ended) {
        match how {
            Ended::Completed => &self.completed,
            Ended::Failed => &self.failed,
            Ended::Cancelled => &self.cancelled,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self, workers: u64) -> Stats {
        Stats {
            queued: self.queued.load(Ordering::Relaxed),
            running: self.running.load(Ordering::Relaxed),
            completed: self.completed.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            cancelled: self.cancelled.load(Ordering::Relaxed),
            workers,
            busy: Duration::from_nanos(self.busy_nanos.load(Ordering::Relaxed)),
        }
    }
}

/// How an outcome counts.
pub(crate) fn ended_as<T, E>(outcome: &Result<T, crate::TaskError<E>>) -> Ended {
    match outcome {
        Ok(_) => Ended::Completed,
        Err(crate::TaskError::Cancelled) => Ended::Cancelled,
        Err(_) => Ended::Failed,
    }
}
