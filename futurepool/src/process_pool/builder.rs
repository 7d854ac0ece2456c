//! [`ProcessPoolBuilder`]: every setting of a process pool.

use std::ffi::OsString;
use std::fmt::Debug;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::Reason;
use crate::executor::Payload;
use crate::registry;
use crate::wire::{self, Outcome};

use super::state::{Config, Initializer};
use super::worker;
use super::{ProcessPool, ProcessPoolError};

/// Configures and builds a [`ProcessPool`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use futurepool::ProcessPool;
///
/// fn connect(url: String) {
///     assert!(url.starts_with("db://"));
/// }
/// fn lookup(key: u32) -> u32 {
///     key + 1
/// }
/// futurepool::register!(connect, lookup);
///
/// fn main() {
///     futurepool::init();
///     let pool = ProcessPool::builder()
///         .max_workers(2)
///         .initializer(connect, "db://local".to_string())
///         .max_tasks_per_child(1000)
///         .time_limit(Duration::from_secs(60))
///         .build()
///         .unwrap();
///     assert_eq!(pool.submit(lookup, 41).result(), Ok(42));
/// }
/// ```
#[derive(Debug)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct ProcessPoolBuilder {
    max_workers: usize,
    initializer: Option<Result<InitializerSpec, Reason>>,
    max_tasks_per_child: Option<u64>,
    time_limit: Option<Duration>,
    soft_time_limit: Option<Duration>,
    memory_limit: Option<u64>,
    max_memory_per_child: Option<u64>,
    max_frame: usize,
    program: Option<PathBuf>,
    start_timeout: Duration,
    terminate_grace: Duration,
    #[cfg(test)]
    fault: Option<super::state::Fault>,
}

#[derive(Debug)]
struct InitializerSpec {
    function: u32,
    arg: Vec<u8>,
    judge: fn(&Outcome<'_>) -> Result<(), String>,
}

impl Default for ProcessPoolBuilder {
    fn default() -> Self {
        ProcessPoolBuilder {
            max_workers: default_workers(),
            initializer: None,
            max_tasks_per_child: None,
            time_limit: None,
            soft_time_limit: None,
            memory_limit: None,
            max_memory_per_child: None,
            max_frame: wire::DEFAULT_MAX_FRAME,
            program: None,
            start_timeout: Duration::from_secs(60),
            terminate_grace: DEFAULT_TERMINATE_GRACE,
            #[cfg(test)]
            fault: None,
        }
    }
}

/// How long [`ProcessPool::terminate_workers`] lets a worker act on SIGTERM before SIGKILL.
const DEFAULT_TERMINATE_GRACE: Duration = Duration::from_secs(3);

/// One worker per core: processes are for CPU work and isolation, so more would only compete.
fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl ProcessPoolBuilder {
    /// The most worker processes running at once (default: the number of cores). Workers start
    /// on demand, one per submit at most, and only when no idle worker exists.
    ///
    /// # Examples
    ///
    /// ```
    /// let builder = futurepool::ProcessPool::builder().max_workers(4);
    /// # drop(builder);
    /// ```
    ///
    /// # Panics
    ///
    /// If `n` is 0, at the caller's line, as for a thread pool (see
    /// [`ThreadPool::new`](crate::ThreadPool::new) for the rule).
    #[track_caller]
    pub fn max_workers(mut self, n: usize) -> Self {
        assert!(
            n > 0,
            "a process pool needs at least one worker: max_workers must be at least 1"
        );
        self.max_workers = n;
        self
    }

    /// A registered function each worker runs once, before its first task. If it panics the pool
    /// is broken: queued tasks and later submits fail with
    /// [`TaskError::PoolBroken`](crate::TaskError::PoolBroken) and no more workers start.
    ///
    /// # Examples
    ///
    /// ```
    /// fn warm_up(_: ()) {}
    /// futurepool::register!(warm_up);
    /// let builder = futurepool::ProcessPool::builder().initializer(warm_up, ());
    /// # drop(builder);
    /// ```
    pub fn initializer<F, A>(mut self, f: F, arg: A) -> Self
    where
        F: Fn(A) + 'static,
        A: Payload,
    {
        self.initializer = Some(initializer_spec(f, &arg, judge_plain));
        self
    }

    /// Like [`initializer`](ProcessPoolBuilder::initializer), for a function returning
    /// `Result<(), E>`: an `Err` breaks the pool too, and the error's `Debug` text is in the
    /// reason.
    ///
    /// # Examples
    ///
    /// ```
    /// fn open_config(path: String) -> Result<(), String> {
    ///     if path.is_empty() { Err("no path".into()) } else { Ok(()) }
    /// }
    /// futurepool::register!(open_config);
    /// let builder = futurepool::ProcessPool::builder().fallible_initializer(open_config, "app.toml".into());
    /// # drop(builder);
    /// ```
    pub fn fallible_initializer<F, A, E>(mut self, f: F, arg: A) -> Self
    where
        F: Fn(A) -> Result<(), E> + 'static,
        A: Payload,
        E: Payload + Debug,
    {
        self.initializer = Some(initializer_spec(f, &arg, judge_fallible::<E>));
        self
    }

    /// Each worker exits after this many tasks (a `map` chunk counts as one) and is replaced
    /// while work remains: a cure for leaks in code you do not control (Python's `max_tasks_per_child`).
    ///
    /// # Panics
    ///
    /// If `n` is 0.
    ///
    /// # Examples
    ///
    /// ```
    /// let builder = futurepool::ProcessPool::builder().max_tasks_per_child(100);
    /// # drop(builder);
    /// ```
    pub fn max_tasks_per_child(mut self, n: u64) -> Self {
        assert!(n > 0, "max_tasks_per_child must be at least 1");
        self.max_tasks_per_child = Some(n);
        self
    }

    /// The default time limit of every task: a task still running after `limit` has its worker
    /// killed (and replaced) and fails with [`TaskError::TimeLimit`](crate::TaskError::TimeLimit).
    /// Override it per task with [`ProcessPool::submit_with_time_limit`].
    ///
    /// The clock starts when the worker starts the task, not when it is submitted. In a `map`
    /// the limit applies to each item, whatever the chunk size.
    ///
    /// # Examples
    ///
    /// ```
    /// let builder = futurepool::ProcessPool::builder().time_limit(std::time::Duration::from_secs(30));
    /// # drop(builder);
    /// ```
    pub fn time_limit(mut self, limit: Duration) -> Self {
        self.time_limit = Some(limit);
        self
    }

    /// Every task's soft time limit: `limit` after a worker starts a task (each item of a map),
    /// the pool tells the worker and [`current_token()`](crate::current_token) inside the task
    /// reads cancelled, so it can clean up and return; its value stands. The hard
    /// [`time_limit`](ProcessPoolBuilder::time_limit), if any, still kills the worker later.
    /// Override it per task with [`ProcessPool::submit_with_soft_time_limit`].
    ///
    /// The notice is a real-time signal (`SIGRTMAX - 3`) with the call's number, handled by
    /// `init()`'s handler with `SA_RESTART`; a task that replaces that handler or blocks the
    /// signal never sees its token set, and meets the hard limit instead.
    ///
    /// # Examples
    ///
    /// ```
    /// let builder = futurepool::ProcessPool::builder()
    ///     .soft_time_limit(std::time::Duration::from_secs(10))
    ///     .time_limit(std::time::Duration::from_secs(30));
    /// ```
    pub fn soft_time_limit(mut self, limit: Duration) -> Self {
        self.soft_time_limit = Some(limit);
        self
    }

    /// A worker whose resident memory (RSS) passes `bytes` while it runs a task is killed at once
    /// and replaced; that task fails with [`TaskError::MemoryLimit`](crate::TaskError::MemoryLimit)
    /// (naming the limit and what was used) and is not retried; other tasks are unaffected (those
    /// queued at that worker run on its replacement). Default: none.
    ///
    /// How: the pool's supervisor reads the worker's `/proc/PID/statm` every 10 ms while it runs
    /// a call (Linux, where process pools exist). It counts the worker process alone, not
    /// processes a task starts, and a task that allocates faster than about 1 GiB/s may overshoot
    /// by up to 10 ms of growth before it is killed. (cgroup v2 `memory.max` would stop the
    /// allocation itself, but needs a writable cgroup tree, which most processes lack.)
    ///
    /// # Examples
    ///
    /// ```
    /// let builder = futurepool::ProcessPool::builder().memory_limit(512 << 20); // 512 MiB
    /// ```
    pub fn memory_limit(mut self, bytes: u64) -> Self {
        self.memory_limit = Some(bytes);
        self
    }

    /// Recycling (Celery's `max_memory_per_child`): a worker whose resident memory is above
    /// `bytes` after it answers a task is sent no more tasks; it retires once it has answered
    /// the calls it already holds (at most its pipeline, usually none for long tasks), and a new
    /// worker takes its place. Nothing fails: this is for tasks that leak or fragment memory
    /// slowly. For a hard stop while a task runs, see
    /// [`memory_limit`](ProcessPoolBuilder::memory_limit). Default: none.
    ///
    /// # Examples
    ///
    /// ```
    /// let builder = futurepool::ProcessPool::builder()
    ///     .max_memory_per_child(200 << 20)
    ///     .memory_limit(1 << 30);
    /// ```
    pub fn max_memory_per_child(mut self, bytes: u64) -> Self {
        self.max_memory_per_child = Some(bytes);
        self
    }

    /// The largest message exchanged with a worker, in bytes (default 1 GiB). A task whose
    /// argument is larger fails at submit with [`TaskError::Transfer`](crate::TaskError::Transfer);
    /// so does one whose result is. An initializer argument larger than this makes
    /// [`build`](ProcessPoolBuilder::build) fail with [`ProcessPoolError::Initializer`].
    ///
    /// # Examples
    ///
    /// ```
    /// let builder = futurepool::ProcessPool::builder().max_frame_size(64 << 20);
    /// # drop(builder);
    /// ```
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.max_frame = bytes.min(u32::MAX as usize);
        self
    }

    /// How long a new worker may take to start and run its initializer before it is killed and
    /// the pool is broken (default 60 s).
    ///
    /// # Examples
    ///
    /// ```
    /// let builder = futurepool::ProcessPool::builder().start_timeout(std::time::Duration::from_secs(5));
    /// # drop(builder);
    /// ```
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }

    /// How long [`ProcessPool::terminate_workers`] gives each worker to exit after `SIGTERM`
    /// (and `SIGCONT`, so a stopped worker can act on it) before it sends `SIGKILL` to the
    /// worker's whole process group (default 3 s). `Duration::MAX` means never escalate: wait
    /// for the workers to exit on their own.
    ///
    /// # Examples
    ///
    /// ```
    /// let builder = futurepool::ProcessPool::builder()
    ///     .terminate_grace(std::time::Duration::from_millis(500));
    /// # drop(builder);
    /// ```
    pub fn terminate_grace(mut self, grace: Duration) -> Self {
        self.terminate_grace = grace;
        self
    }

    /// The executable to start as a worker instead of this one (`std::env::current_exe()`). It
    /// must be a build of the same program, or the handshake refuses it. Useful when the running
    /// binary is wrapped by a launcher.
    ///
    /// # Examples
    ///
    /// ```
    /// let builder = futurepool::ProcessPool::builder().program("/usr/local/bin/my-app");
    /// # drop(builder);
    /// ```
    pub fn program(mut self, path: impl Into<PathBuf>) -> Self {
        self.program = Some(path.into());
        self
    }

    /// Makes one of the pool's own threads panic once, to test that the pool survives it.
    #[cfg(test)]
    pub(super) fn inject_fault(mut self, fault: super::state::Fault) -> Self {
        self.fault = Some(fault);
        self
    }

    /// Builds the pool. No worker starts until the first task is submitted.
    ///
    /// # Errors
    ///
    /// See [`ProcessPoolError`]: `init()` not called, called inside a worker that skipped
    /// `init()`, zero workers, an unregistered initializer, or no path to this executable.
    ///
    /// # Examples
    ///
    /// ```
    /// futurepool::init();
    /// let pool = futurepool::ProcessPool::builder().max_workers(1).build().unwrap();
    /// assert_eq!(pool.max_workers(), 1);
    /// ```
    pub fn build(self) -> Result<ProcessPool, ProcessPoolError> {
        if worker::is_uninitialized_worker() {
            return Err(ProcessPoolError::InsideUninitializedWorker);
        }
        if !worker::init_called() && worker::worker_args().is_empty() {
            return Err(ProcessPoolError::NotInitialized);
        }
        let initializer = match self.initializer {
            None => None,
            Some(Err(reason)) => return Err(ProcessPoolError::Initializer(reason)),
            Some(Ok(spec))
                if spec.arg.len().saturating_add(super::FRAME_OVERHEAD) > self.max_frame =>
            {
                return Err(ProcessPoolError::Initializer(Reason::new(format!(
                    "the initializer's argument is {} bytes, more than the pool's maximum frame \
                     size of {} bytes; raise it with `ProcessPoolBuilder::max_frame_size`",
                    spec.arg.len(),
                    self.max_frame
                ))))
            }
            Some(Ok(spec)) => Some(Initializer {
                function: spec.function,
                arg: spec.arg,
                judge: spec.judge,
            }),
        };
        let program = match self.program {
            Some(program) => program,
            None => std::env::current_exe().map_err(ProcessPoolError::NoExecutable)?,
        };
        let config = Config {
            max_workers: self.max_workers,
            program,
            args: worker::worker_args()
                .into_iter()
                .map(OsString::from)
                .collect(),
            initializer,
            max_tasks_per_child: self.max_tasks_per_child,
            time_limit: self.time_limit,
            soft_time_limit: self.soft_time_limit,
            memory_limit: self.memory_limit,
            max_memory_per_child: self.max_memory_per_child,
            max_frame: self.max_frame,
            start_timeout: self.start_timeout,
            terminate_grace: self.terminate_grace,
            #[cfg(test)]
            fault: self.fault,
            #[cfg(test)]
            fault_fired: Default::default(),
        };
        ProcessPool::start(config)
    }
}

fn initializer_spec<F, A, R>(
    f: F,
    arg: &A,
    judge: fn(&Outcome<'_>) -> Result<(), String>,
) -> Result<InitializerSpec, Reason>
where
    F: Fn(A) -> R + 'static,
    A: Payload,
    R: 'static,
{
    let function = registry::index_of_item(f)?;
    let arg = postcard::to_allocvec(arg).map_err(|e| {
        Reason::new(format!(
            "the initializer's argument does not serialize: {e}"
        ))
    })?;
    Ok(InitializerSpec {
        function,
        arg,
        judge,
    })
}

fn judge_plain(outcome: &Outcome<'_>) -> Result<(), String> {
    match outcome {
        Outcome::Returned(_) => Ok(()),
        other => Err(describe_failure(other)),
    }
}

fn judge_fallible<E: Payload + Debug>(outcome: &Outcome<'_>) -> Result<(), String> {
    match outcome {
        Outcome::Returned(bytes) => match postcard::from_bytes::<Result<(), E>>(bytes.0) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(format!("it returned Err({error:?})")),
            Err(e) => Err(format!("its result does not decode: {e}")),
        },
        other => Err(describe_failure(other)),
    }
}

fn describe_failure(outcome: &Outcome<'_>) -> String {
    match outcome {
        Outcome::Returned(_) => "it returned".to_string(),
        Outcome::Panicked { message, location } => match location {
            Some(location) => format!("it panicked: {message} (at {location})"),
            None => format!("it panicked: {message}"),
        },
        Outcome::BadArgument(why) | Outcome::Unserializable(why) => why.clone(),
        Outcome::UnknownFunction(name) => format!("the worker has no function {name}"),
    }
}
