//! [`ProcessPool`]: run registered Rust functions in worker processes — isolated, killable, and
//! never hanging. Linux only.
//!
//! Layout (the life cycle is explained in `README.md`):
//! - `mod.rs`: the public pool; `builder.rs`: its settings;
//! - `state.rs`: the queue and the workers under one lock, and the decisions made under it;
//! - `supervisor.rs`: the thread that starts workers and enforces deadlines;
//! - `connection.rs`: the writer and reader threads of each worker;
//! - `process.rs`: a worker's death (pidfd), its process group, its pipes' ends as the pool
//!   reads them;
//! - `spawn.rs`: starting a worker process; `worker.rs`: the worker's side, and [`init`];
//! - `sink.rs`: how answers become typed task outcomes;
//! - `raw.rs`: calls by registered name with argument bytes, for process-mode cluster workers.

mod builder;
mod chain;
mod connection;
mod items;
mod map;
mod process;
#[cfg(feature = "cluster")]
mod raw;
mod sink;
mod spawn;
mod state;
mod supervisor;
mod worker;

#[cfg(test)]
mod fault_tests;

use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::error::{Reason, TaskError};
use crate::executor::{Executor, Payload, Shutdown, TaskFn};
use crate::registry;
use crate::task::Task;

pub use self::builder::ProcessPoolBuilder;
pub use self::map::{ProcessMap, ProcessMapUnordered};
#[cfg(feature = "cluster")]
pub(crate) use self::raw::{RawAnswer, RawLimits};
pub use self::worker::init;
#[doc(hidden)]
pub use self::worker::test_support_start;
pub(crate) use self::worker::{current_call, soft_limit_passed};

use self::sink::{Fallible, Plain, Sink, TaskSink};
use self::state::{Config, KillCause, Limits, Pending, Shared, Work};

/// Room for a frame's message framing around a payload, when checking sizes at submit.
const FRAME_OVERHEAD: usize = 64;

/// A pool of worker processes running registered functions: Python's `ProcessPoolExecutor`, for
/// Rust, with the same [`Task`] handle as the thread pool.
///
/// In Rust threads already run CPU work in parallel, so a process pool is about **isolation**: a
/// task that segfaults, aborts, leaks or never returns cannot take the program down, and can be
/// stopped.
///
/// - Work is a plain function `fn(A) -> R` registered with [`register!`](crate::register), with
///   a serde-serializable argument and result ([`Payload`]). Pass the function itself
///   (`pool.submit(crunch, 42)`, or through the [`Executor`] trait, which passes it on
///   unchanged): it is found by its *item type* (every `fn` item has its own), exactly, whatever
///   the optimizer does. Only a value already coerced to a `fn` pointer
///   (`let f: fn(u64) -> u64 = crunch;`) is looked up by address, which an optimized build does
///   not always preserve for tiny functions; the error says so if it misses. A closure cannot be
///   registered: make it a named `fn` and pass what it captured as (part of) the argument.
///   Workers are this same executable started again; [`init`] as the first line of `main` turns
///   such a start into a worker.
/// - Arguments and results cross in [postcard](https://docs.rs/postcard), a compact format that
///   does not describe itself, so serde attributes that need a self-describing format compile
///   but fail at run time here (and on the cluster), though they work on a thread pool:
///   `#[serde(untagged)]`, `#[serde(flatten)]`, internally or adjacently tagged enums
///   (`#[serde(tag = ...)]`), `skip_serializing_if`, and anything that calls
///   `deserialize_any` (`serde_json::Value`). Such a task fails with [`TaskError::Transfer`],
///   whose message names these as the likely cause.
/// - Workers start on demand (at most one per submit, only when none is idle) and are reused.
/// - A panic fails its task with the message and location; the worker lives on.
/// - A worker that dies (killed, `abort()`, segfault, `exit`) fails only the task it was running,
///   with [`TaskError::WorkerLost`] naming the signal or exit code; the calls queued behind it go
///   to another worker, a fresh worker replaces it, and everything else completes.
/// - A task whose argument or result does not serialize fails alone with
///   [`TaskError::Transfer`].
/// - A worker that cannot start (bad initializer, missing executable) breaks the pool: queued
///   tasks and later submits fail with [`TaskError::PoolBroken`]; nothing respawns in a loop.
/// - A task past its time limit has its worker killed and fails with [`TaskError::TimeLimit`].
/// - Each worker leads its own process group, and the pool kills the whole group: processes a
///   task started die with its worker (on a time limit, on `terminate_workers`/`kill_workers`,
///   whenever the worker exits), and when this process dies, even by `SIGKILL`. A process meant
///   to outlive its worker must start a session of its own (`setsid`). The terminal's Ctrl-C
///   reaches only this process, which decides what happens to the workers.
///
/// Dropping the pool waits for every accepted task ([`Shutdown::default`]).
///
/// # Platforms
///
/// Linux only (it relies on `prctl(PR_SET_PDEATHSIG)`, process groups, fixed pipe descriptors
/// and pidfds, Linux 5.3+, with a polling fallback on older kernels); on other
/// platforms `ProcessPool` does not exist, so code using it fails to compile there rather than at
/// run time. The registry, the thread pool and the cluster backend are portable.
///
/// # Examples
///
/// ```
/// use futurepool::{ProcessPool, TaskError};
///
/// fn crunch(n: u64) -> u64 {
///     (0..n).map(|i| i * i).sum()
/// }
/// fn checked_root(n: i64) -> Result<f64, String> {
///     if n < 0 { Err(format!("{n} is negative")) } else { Ok((n as f64).sqrt()) }
/// }
/// futurepool::register!(crunch, checked_root);
///
/// fn main() {
///     futurepool::init(); // a worker process serves here and never returns
///     let pool = ProcessPool::new(2).unwrap();
///     assert_eq!(pool.submit(crunch, 4).result(), Ok(14));
///     let err = pool.submit_fallible(checked_root, -1).result().unwrap_err();
///     assert_eq!(err, TaskError::Failed("-1 is negative".to_string()));
/// }
/// ```
///
/// In a test binary, use [`test_support!`](crate::test_support) instead of `init()`.
pub struct ProcessPool {
    shared: Arc<Shared>,
    /// What [`stats`](ProcessPool::stats) reports; every sink counts itself in.
    counters: Arc<crate::stats::SharedCounters>,
}

/// Why a [`ProcessPool`] could not be created.
///
/// # Examples
///
/// ```
/// use futurepool::{ProcessPool, ProcessPoolError};
/// // No `futurepool::init()` in this program's main:
/// assert!(matches!(ProcessPool::new(1), Err(ProcessPoolError::NotInitialized)));
/// ```
// `Debug` is written out below: `.unwrap()` prints it, and it must carry the fix too.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum ProcessPoolError {
    /// `futurepool::init()` was not called. Workers re-run this executable, and without `init()`
    /// as the first line of `main` each would run the program itself.
    #[error(
        "call `futurepool::init()` as the first line of `main` before creating a ProcessPool \
         (in a test binary, add `futurepool::test_support!();`)"
    )]
    NotInitialized,
    /// This process was started as a pool's worker but its `main` did not call
    /// `futurepool::init()` first; starting workers from here would start workers forever.
    #[error(
        "this process was started as a futurepool worker but `main` did not call \
         `futurepool::init()` first; refusing to start more workers"
    )]
    InsideUninitializedWorker,
    /// The initializer is not registered or its argument does not serialize.
    #[error("bad initializer: {0}")]
    Initializer(Reason),
    /// The path of the running executable is unknown, so it cannot be started as a worker.
    #[error("cannot find this program's executable to start workers: {0}")]
    NoExecutable(std::io::Error),
    /// The supervisor thread could not be started.
    #[error("cannot start the pool's supervisor thread: {0}")]
    Thread(std::io::Error),
}

impl fmt::Debug for ProcessPoolError {
    /// The variant and its message, so `.unwrap()` of `NotInitialized` says what to do (a derived
    /// `Debug` printed only `NotInitialized`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let variant = match self {
            ProcessPoolError::NotInitialized => "NotInitialized",
            ProcessPoolError::InsideUninitializedWorker => "InsideUninitializedWorker",
            ProcessPoolError::Initializer(_) => "Initializer",
            ProcessPoolError::NoExecutable(_) => "NoExecutable",
            ProcessPoolError::Thread(_) => "Thread",
        };
        write!(f, "{variant}: {self}")
    }
}

impl ProcessPool {
    /// A pool of at most `max_workers` worker processes, with default settings.
    ///
    /// # Errors
    ///
    /// See [`ProcessPoolError`].
    ///
    /// # Panics
    ///
    /// If `max_workers` is 0, at the caller's line, as [`ThreadPool::new`](crate::ThreadPool::new)
    /// does (a count that makes the pool useless is a bug in the calling code; what the
    /// environment can make fail is an error).
    ///
    /// # Examples
    ///
    /// ```
    /// futurepool::init();
    /// let pool = futurepool::ProcessPool::new(4).unwrap();
    /// assert_eq!(pool.max_workers(), 4);
    /// ```
    #[track_caller]
    pub fn new(max_workers: usize) -> Result<ProcessPool, ProcessPoolError> {
        ProcessPool::builder().max_workers(max_workers).build()
    }

    /// A builder for every setting: initializer, `max_tasks_per_child`, time limit, ...
    ///
    /// # Examples
    ///
    /// ```
    /// futurepool::init();
    /// let pool = futurepool::ProcessPool::builder().max_workers(2).build().unwrap();
    /// # drop(pool);
    /// ```
    pub fn builder() -> ProcessPoolBuilder {
        ProcessPoolBuilder::default()
    }

    fn start(config: Config) -> Result<ProcessPool, ProcessPoolError> {
        let shared = Arc::new(Shared::new(config));
        let supervisor = shared.clone();
        thread::Builder::new()
            .name("futurepool-process-supervisor".into())
            .spawn(move || supervisor::run_supervisor(supervisor))
            .map_err(ProcessPoolError::Thread)?;
        state::register_for_aborts(&shared);
        Ok(ProcessPool {
            shared,
            counters: Arc::default(),
        })
    }

    /// The most worker processes this pool runs at once.
    ///
    /// # Examples
    ///
    /// ```
    /// futurepool::init();
    /// assert_eq!(futurepool::ProcessPool::new(3).unwrap().max_workers(), 3);
    /// ```
    pub fn max_workers(&self) -> usize {
        self.shared.config.max_workers
    }

    /// Runs `f(arg)` in a worker process. `f` must be [`register!`](crate::register)ed.
    ///
    /// Never blocks: the argument is serialized here and queued. An unregistered function or an
    /// argument that does not serialize fails only this task, with [`TaskError::Transfer`].
    ///
    /// # Examples
    ///
    /// ```
    /// fn shout(s: String) -> String { s.to_uppercase() }
    /// futurepool::register!(shout);
    ///
    /// fn main() {
    ///     futurepool::init();
    ///     let pool = futurepool::ProcessPool::new(1).unwrap();
    ///     assert_eq!(pool.submit(shout, "hi".into()).result().unwrap(), "HI");
    /// }
    /// ```
    pub fn submit<F, A, R>(&self, f: F, arg: A) -> Task<R>
    where
        F: Fn(A) -> R + 'static,
        A: Payload,
        R: Payload,
    {
        self.submit_with_time_limit(f, arg, self.shared.config.time_limit)
    }

    /// Runs `f(arg)` in a worker process; an `Err` it returns becomes the task's own error,
    /// [`TaskError::Failed`].
    ///
    /// # Examples
    ///
    /// ```
    /// use futurepool::TaskError;
    /// fn parse(s: String) -> Result<u8, String> { s.parse().map_err(|_| format!("bad: {s}")) }
    /// futurepool::register!(parse);
    ///
    /// fn main() {
    ///     futurepool::init();
    ///     let pool = futurepool::ProcessPool::new(1).unwrap();
    ///     assert_eq!(pool.submit_fallible(parse, "7".into()).result(), Ok(7));
    ///     assert_eq!(
    ///         pool.submit_fallible(parse, "x".into()).result(),
    ///         Err(TaskError::Failed("bad: x".into()))
    ///     );
    /// }
    /// ```
    pub fn submit_fallible<F, A, R, E>(&self, f: F, arg: A) -> Task<R, E>
    where
        F: Fn(A) -> Result<R, E> + 'static,
        A: Payload,
        R: Payload,
        E: Payload,
    {
        self.submit_fallible_with_time_limit(f, arg, self.shared.config.time_limit)
    }

    /// [`submit`](ProcessPool::submit) with this task's own time limit (`None`: no limit),
    /// overriding the pool's default. A task still running after `limit` has its worker killed
    /// and replaced, and fails with [`TaskError::TimeLimit`]; the clock starts when the worker
    /// starts the task.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use futurepool::TaskError;
    /// fn nap(ms: u64) { std::thread::sleep(Duration::from_millis(ms)) }
    /// futurepool::register!(nap);
    ///
    /// fn main() {
    ///     futurepool::init();
    ///     let pool = futurepool::ProcessPool::new(1).unwrap();
    ///     let limit = Duration::from_millis(100);
    ///     let task = pool.submit_with_time_limit(nap, 60_000, Some(limit));
    ///     assert_eq!(task.result(), Err(TaskError::TimeLimit(limit)));
    /// }
    /// ```
    pub fn submit_with_time_limit<F, A, R>(&self, f: F, arg: A, limit: Option<Duration>) -> Task<R>
    where
        F: Fn(A) -> R + 'static,
        A: Payload,
        R: Payload,
    {
        let task = Task::pending_with_tail(state::ProcessTask);
        let sink = Box::new(TaskSink::<R, Infallible, Plain>::new(
            task.clone(),
            self.shared.callbacks.clone(),
            self.counters.clone(),
        ));
        self.submit_call(f, &arg, sink, limit, self.shared.config.soft_time_limit);
        task
    }

    /// [`submit`](ProcessPool::submit) with this task's own soft time limit (`None`: none),
    /// overriding the pool's ([`ProcessPoolBuilder::soft_time_limit`]); the pool's hard
    /// [`time_limit`](ProcessPoolBuilder::time_limit) still applies. `soft` after the worker
    /// starts the task, the pool tells the worker, and [`current_token()`](crate::current_token)
    /// inside the task reads cancelled: it can clean up and return, and its value stands. A task
    /// still running at the hard limit has its worker killed, as always.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// fn wrap_up(_: ()) -> String {
    ///     let token = futurepool::current_token();
    ///     while !token.is_cancelled() {
    ///         std::thread::sleep(Duration::from_millis(1));
    ///     }
    ///     "cleaned up".to_string()
    /// }
    /// futurepool::register!(wrap_up);
    ///
    /// fn main() {
    ///     futurepool::init();
    ///     let pool = futurepool::ProcessPool::new(1).unwrap();
    ///     let task = pool.submit_with_soft_time_limit(wrap_up, (), Some(Duration::from_millis(50)));
    ///     assert_eq!(task.result(), Ok("cleaned up".to_string()));
    /// }
    /// ```
    pub fn submit_with_soft_time_limit<F, A, R>(
        &self,
        f: F,
        arg: A,
        soft: Option<Duration>,
    ) -> Task<R>
    where
        F: Fn(A) -> R + 'static,
        A: Payload,
        R: Payload,
    {
        let task = Task::pending_with_tail(state::ProcessTask);
        let sink = Box::new(TaskSink::<R, Infallible, Plain>::new(
            task.clone(),
            self.shared.callbacks.clone(),
            self.counters.clone(),
        ));
        self.submit_call(f, &arg, sink, self.shared.config.time_limit, soft);
        task
    }

    /// [`submit_fallible`](ProcessPool::submit_fallible) with this task's own time limit; see
    /// [`submit_with_time_limit`](ProcessPool::submit_with_time_limit).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// fn check(n: u32) -> Result<u32, String> { Ok(n) }
    /// futurepool::register!(check);
    ///
    /// fn main() {
    ///     futurepool::init();
    ///     let pool = futurepool::ProcessPool::new(1).unwrap();
    ///     let task = pool.submit_fallible_with_time_limit(check, 5, Some(Duration::from_secs(30)));
    ///     assert_eq!(task.result(), Ok(5));
    /// }
    /// ```
    pub fn submit_fallible_with_time_limit<F, A, R, E>(
        &self,
        f: F,
        arg: A,
        limit: Option<Duration>,
    ) -> Task<R, E>
    where
        F: Fn(A) -> Result<R, E> + 'static,
        A: Payload,
        R: Payload,
        E: Payload,
    {
        let task = Task::pending_with_tail(state::ProcessTask);
        let sink = Box::new(TaskSink::<R, E, Fallible>::new(
            task.clone(),
            self.shared.callbacks.clone(),
            self.counters.clone(),
        ));
        self.submit_call(f, &arg, sink, limit, self.shared.config.soft_time_limit);
        task
    }

    /// The pool's abort hook, for one more task.
    fn submit_call<F, A, R>(
        &self,
        f: F,
        arg: &A,
        sink: Box<dyn Sink>,
        limit: Option<Duration>,
        soft_limit: Option<Duration>,
    ) where
        F: Fn(A) -> R + 'static,
        A: Payload,
        R: 'static,
    {
        match registry::index_of_item(f) {
            Ok(function) => match encode_call(function, arg) {
                Ok(work) => self.enqueue(work, sink, limit, soft_limit),
                Err(error) => sink.fail(error),
            },
            Err(reason) => sink.fail(TaskError::Transfer(reason)),
        }
    }

    fn enqueue(
        &self,
        work: Work,
        sink: Box<dyn Sink>,
        time_limit: Option<Duration>,
        soft_limit: Option<Duration>,
    ) {
        let memory_limit = self.shared.config.memory_limit;
        self.enqueue_limited(work, sink, time_limit, soft_limit, memory_limit);
    }

    /// [`enqueue`](Self::enqueue) with the call's own memory limit instead of the pool's.
    fn enqueue_limited(
        &self,
        work: Work,
        sink: Box<dyn Sink>,
        time_limit: Option<Duration>,
        soft_limit: Option<Duration>,
        memory_limit: Option<u64>,
    ) {
        enqueue_on(
            &self.shared,
            work,
            sink,
            Limits::new(time_limit, soft_limit, memory_limit),
        );
    }

    /// Shuts the pool down: later submits fail with [`TaskError::ShutDown`]; with
    /// `cancel_pending`, queued tasks are cancelled at once; running ones finish. With `wait`,
    /// returns once every accepted task is settled, their done-callbacks have run (unless it is
    /// called from one of them) and every worker has exited. Safe to call many times.
    ///
    /// # Examples
    ///
    /// ```
    /// use futurepool::{Shutdown, TaskError};
    /// fn id(n: u8) -> u8 { n }
    /// futurepool::register!(id);
    ///
    /// fn main() {
    ///     futurepool::init();
    ///     let pool = futurepool::ProcessPool::new(1).unwrap();
    ///     let task = pool.submit(id, 1);
    ///     pool.shutdown(Shutdown::default());
    ///     assert_eq!(task.result(), Ok(1), "accepted work finishes");
    ///     assert_eq!(pool.submit(id, 2).result(), Err(TaskError::ShutDown));
    /// }
    /// ```
    pub fn shutdown(&self, how: Shutdown) {
        let cancelled: Vec<Pending> = {
            let mut state = self.shared.lock();
            state.shutting_down = true;
            let cancelled = if how.cancels_pending() {
                state.queue.drain(..).collect()
            } else {
                Vec::new()
            };
            if how.aborts_running() {
                state.aborting = true;
                // Every call a worker holds ends cancelled: flag them all, kill the workers
                // running one; what they held behind it is requeued flagged and so ended by the
                // writer that takes it (`Task::abort`'s rule, for every task at once).
                for slot in &mut state.workers {
                    for entry in &slot.in_flight {
                        entry.sink.flag_abort();
                    }
                    slot.kill_if_front_aborted();
                }
            }
            self.shared.wake_all(&mut state);
            cancelled
        };
        for pending in cancelled {
            if pending.started {
                // Sent to a worker that died before starting it: it is running, so it cannot
                // be cancelled; it never ran, so it is not lost work either.
                pending.sink.fail(TaskError::ShutDown);
            } else {
                pending.sink.cancel();
            }
        }
        if how.waits() {
            self.wait_for_supervisor();
            // Every task is settled; their done-callbacks run on the callback threads. (Called
            // from one of those — a callback dropping the pool — this does not wait for itself.)
            self.shared.callbacks.wait_idle();
        }
    }

    fn wait_for_supervisor(&self) {
        let mut state = self.shared.lock();
        while !state.supervisor_done {
            state = self
                .shared
                .done
                .wait(state)
                .unwrap_or_else(|poison| poison.into_inner());
        }
    }

    /// Shuts down with `cancel_pending`, then sends `SIGTERM` (and `SIGCONT`, so a stopped
    /// worker can act on it) to every worker's process group and waits for them: tasks they were
    /// running fail with [`TaskError::WorkerLost`]. A worker still alive after the
    /// [`terminate_grace`](ProcessPoolBuilder::terminate_grace) (default 3 s) gets `SIGKILL`, so
    /// this returns even if a task ignores `SIGTERM` or is stopped. Safe to repeat; afterwards
    /// submits fail with [`TaskError::ShutDown`].
    ///
    /// # Examples
    ///
    /// ```
    /// use futurepool::TaskError;
    /// fn nap(ms: u64) { std::thread::sleep(std::time::Duration::from_millis(ms)) }
    /// futurepool::register!(nap);
    ///
    /// fn main() {
    ///     futurepool::init();
    ///     let pool = futurepool::ProcessPool::new(1).unwrap();
    ///     let stuck = pool.submit(nap, 60_000);
    ///     while !stuck.is_running() { std::thread::yield_now() }
    ///     pool.terminate_workers();
    ///     assert!(matches!(stuck.result(), Err(TaskError::WorkerLost(_))));
    /// }
    /// ```
    pub fn terminate_workers(&self) {
        {
            let mut state = self.shared.lock();
            state.stopping = true;
            // `Duration::MAX` (or any grace too long to add): never escalate.
            let grace = Instant::now().checked_add(self.shared.config.terminate_grace);
            for slot in &mut state.workers {
                slot.terminate(grace);
            }
            // The supervisor sends SIGKILL when the grace ends.
            self.shared.supervisor_wake.notify_one();
        }
        self.shutdown(Shutdown::default().cancel_pending(true));
    }

    /// Like [`terminate_workers`](ProcessPool::terminate_workers) with `SIGKILL` to every
    /// worker's process group, which a worker cannot catch or ignore.
    ///
    /// # Examples
    ///
    /// ```
    /// use futurepool::TaskError;
    /// fn id(n: u8) -> u8 { n }
    /// futurepool::register!(id);
    ///
    /// fn main() {
    ///     futurepool::init();
    ///     let pool = futurepool::ProcessPool::new(1).unwrap();
    ///     pool.kill_workers();
    ///     pool.kill_workers();
    ///     assert_eq!(pool.submit(id, 1).result(), Err(TaskError::ShutDown));
    /// }
    /// ```
    pub fn kill_workers(&self) {
        {
            let mut state = self.shared.lock();
            state.stopping = true;
            for slot in &mut state.workers {
                slot.signal(libc::SIGKILL, KillCause::Stopped);
                // Also those already sent SIGTERM by `terminate_workers`.
                slot.escalate();
            }
        }
        self.shutdown(Shutdown::default().cancel_pending(true));
    }

    /// The process ids of the workers currently running (started and not yet exited).
    ///
    /// # Examples
    ///
    /// ```
    /// fn pid(_: ()) -> u32 { std::process::id() }
    /// futurepool::register!(pid);
    ///
    /// fn main() {
    ///     futurepool::init();
    ///     let pool = futurepool::ProcessPool::new(1).unwrap();
    ///     let worker = pool.submit(pid, ()).result().unwrap();
    ///     assert_eq!(pool.worker_pids(), [worker]);
    /// }
    /// ```
    pub fn worker_pids(&self) -> Vec<u32> {
        let state = self.shared.lock();
        state
            .workers
            .iter()
            .filter(|s| s.pid != 0 && !s.reaping)
            .map(|s| s.pid)
            .collect()
    }

    /// How many worker processes this pool has started so far, replacements included.
    ///
    /// # Examples
    ///
    /// ```
    /// fn id(n: u8) -> u8 { n }
    /// futurepool::register!(id);
    ///
    /// fn main() {
    ///     futurepool::init();
    ///     let pool = futurepool::ProcessPool::new(4).unwrap();
    ///     assert_eq!(pool.workers_started(), 0, "workers start on demand");
    ///     pool.submit(id, 1).wait();
    ///     pool.submit(id, 2).wait();
    ///     assert_eq!(pool.workers_started(), 1, "an idle worker is reused");
    /// }
    /// ```
    pub fn workers_started(&self) -> u64 {
        self.shared.lock().started_total
    }

    /// What the pool has done and is doing: tasks (each item of a `map` counted as one) queued,
    /// running, completed, failed and cancelled, live worker processes, and busy time.
    ///
    /// `running` counts what was sent to a worker and not answered yet, which can be a few tasks
    /// per worker (the pool pipelines short calls); `busy` sums, over ended tasks, the time from
    /// sending to answer.
    ///
    /// # Examples
    ///
    /// ```
    /// fn double(n: u32) -> u32 { n * 2 }
    /// futurepool::register!(double);
    ///
    /// fn main() {
    ///     futurepool::init();
    ///     let pool = futurepool::ProcessPool::new(2).unwrap();
    ///     let results: Vec<_> = pool.map(double, 0..10).collect();
    ///     assert_eq!(results.len(), 10);
    ///     let stats = pool.stats();
    ///     assert_eq!((stats.completed, stats.queued, stats.running), (10, 0, 0));
    /// }
    /// ```
    pub fn stats(&self) -> crate::Stats {
        self.counters.snapshot(self.worker_pids().len() as u64)
    }
}

/// The call of registered function `function` on `arg`, serialized. The argument's `Serialize`
/// is the user's: a panic in it fails this task alone.
fn encode_call<A: Payload>(function: u32, arg: &A) -> Result<Work, TaskError> {
    let arg = crate::panic::catch(|| {
        postcard::to_allocvec(arg).map_err(|e| {
            Reason::new(format!(
                "the argument (a `{}`) does not serialize: {e}{}",
                std::any::type_name::<A>(),
                crate::wire::postcard_hint(&e)
            ))
        })
    });
    match arg {
        Ok(Ok(arg)) => Ok(Work::One { function, arg }),
        Ok(Err(reason)) => Err(TaskError::Transfer(reason)),
        Err(panic) => Err(TaskError::Panicked(panic)),
    }
}

/// Queues `work` on the pool behind `shared`, or fails `sink` (too large for a frame, or the
/// pool is shut down). Needs no `ProcessPool`: chained submits queue from a done-callback.
fn enqueue_on(shared: &Shared, work: Work, sink: Box<dyn Sink>, limits: Limits) {
    let max = shared.config.max_frame;
    if work.payload_len() + FRAME_OVERHEAD > max {
        let why = format!(
            "the argument's {} bytes exceed the pool's maximum frame size of {max} bytes",
            work.payload_len()
        );
        sink.fail(TaskError::Transfer(Reason::new(why)));
        return;
    }
    let pending = Pending {
        work,
        sink,
        limits,
        started: false,
    };
    if let Err((pending, error)) = shared.enqueue(pending) {
        pending.sink.fail(error);
    }
}

impl Drop for ProcessPool {
    fn drop(&mut self) {
        self.shutdown(Shutdown::default());
    }
}

impl std::fmt::Debug for ProcessPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.shared.lock();
        f.debug_struct("ProcessPool")
            .field("max_workers", &self.shared.config.max_workers)
            .field("workers", &state.workers.len())
            .field("queued", &state.queue.len())
            .field("shutting_down", &state.shutting_down)
            .field("broken", &state.broken)
            .finish()
    }
}

impl Executor for ProcessPool {
    fn submit_fn<F, A, R>(&self, f: F, arg: A) -> Task<R>
    where
        F: TaskFn<A, R>,
        A: Payload,
        R: Payload,
    {
        self.submit(f, arg)
    }

    fn submit_fallible_fn<F, A, R, E>(&self, f: F, arg: A) -> Task<R, E>
    where
        F: TaskFn<A, Result<R, E>>,
        A: Payload,
        R: Payload,
        E: Payload,
    {
        self.submit_fallible(f, arg)
    }

    fn shutdown(&self, how: Shutdown) {
        ProcessPool::shutdown(self, how)
    }

    /// Enough unchunked calls to fill every worker's pipeline.
    fn default_map_buffer(&self) -> usize {
        state::MAX_PIPELINE * self.max_workers()
    }
}
