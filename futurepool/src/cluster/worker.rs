//! The worker's side: [`serve`] joins a pool's consumer group and runs its tasks on a local pool of
//! threads until SIGTERM or SIGINT.
//!
//! Threads, each with its own broker connection where it needs one:
//! - the *fetcher* (the thread that called `serve`) reads up to `threads + prefetch` tasks with
//!   one `XREADGROUP COUNT n`, and stops on a signal;
//! - `threads` *executors* run tasks through the function registry — or, in process mode
//!   ([`ServeOptions::processes`]), one executor per local worker process hands each task to a
//!   local [`ProcessPool`](crate::ProcessPool) and waits for its answer;
//! - the *completer* publishes finished tasks in batches (one script call acknowledges and
//!   publishes them all);
//! - the *keeper* heartbeats every quarter lease (extending the lease of everything this worker
//!   holds, running or prefetched), reaps tasks of lost workers into free capacity, and every
//!   [`ABORT_POLL`] asks the broker which of the tasks it holds were aborted: it sets a running
//!   one's token (in process mode it also aborts the local task, killing its process) and
//!   completes a prefetched one cancelled; it also writes the running tasks' latest progress,
//!   at most every [`PROGRESS_EVERY`], a write that fails left to a later tick without
//!   touching the rest (`progress.rs`).
//!
//! [`PROGRESS_EVERY`]: super::progress::PROGRESS_EVERY

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use super::backend::{Backend, BrokerError, Completion, Connection, Delivery, PoolConfig};
use super::options::{TaskLimits, WirePolicy};
use super::progress::{ProgressBoard, ProgressWrites, TaskProgress};
use super::redis::{redact, RedisBackend};
use super::retry::{send_pinning, Retry, Stop};
use super::status::plural;
use super::{outcome, signals, ClusterError, DEFAULT_POOL};
use crate::error::{Panic, Reason, TaskError};
use crate::registry;

/// Most tasks one fetch asks for.
const MAX_FETCH: usize = 4096;
/// How long one fetch blocks on an empty queue before checking for a stop signal.
const FETCH_BLOCK: Duration = Duration::from_millis(250);
/// After a stop signal, how long publishing and releasing may keep retrying a broker that does
/// not answer (the lease then hands the tasks to other workers anyway).
const STOP_PATIENCE: Duration = Duration::from_secs(10);
/// How often the keeper asks the broker whether tasks this worker holds were aborted (one round
/// trip, only while it holds any): an abort reaches a running task's token within about this.
const ABORT_POLL: Duration = Duration::from_millis(250);
/// Default for [`ServeOptions::patience`].
const DEFAULT_PATIENCE: Duration = Duration::from_secs(600);
/// Bounds of [`ServeOptions::threads`] (and [`ServeOptions::processes`]) and
/// [`ServeOptions::prefetch`].
const MAX_THREADS: usize = 4096;
const MAX_PREFETCH: usize = 100_000;
/// The environment variable that turns a program calling `futurepool::init()` into a cluster
/// worker (`FUTUREPOOL_WORKER` is the process pool's).
pub(crate) const WORKER_ENV: &str = "FUTUREPOOL_CLUSTER_WORKER";

/// How a worker runs: which pool, on how many threads (or local processes), how far ahead it
/// fetches, and the default limits of its tasks.
///
/// # Examples
///
/// ```
/// let options = futurepool::cluster::ServeOptions::default().pool("thumbnails").threads(8).prefetch(0);
/// assert_eq!(options.thread_count(), 8);
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct ServeOptions {
    pool: String,
    threads: usize,
    prefetch: Option<usize>,
    handle_signals: bool,
    max_payload: Option<usize>,
    patience: Duration,
    /// Run tasks in a local process pool of this many processes instead of on threads.
    processes: Option<usize>,
    /// The worker's default limits; a task's own (`SubmitOptions`) win.
    limits: TaskLimits,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            pool: DEFAULT_POOL.to_string(),
            threads: thread::available_parallelism().map_or(1, |n| n.get()),
            prefetch: None,
            handle_signals: true,
            max_payload: None,
            patience: DEFAULT_PATIENCE,
            processes: None,
            limits: TaskLimits::default(),
        }
    }
}

impl ServeOptions {
    /// The pool to serve (default `"default"`).
    ///
    /// # Examples
    ///
    /// ```
    /// let options = futurepool::cluster::ServeOptions::default().pool("reports");
    /// # drop(options);
    /// ```
    pub fn pool(mut self, name: impl Into<String>) -> Self {
        self.pool = name.into();
        self
    }

    /// Tasks run at once (default: the number of CPUs), at least 1.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(futurepool::cluster::ServeOptions::default().threads(0).thread_count(), 1);
    /// ```
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }

    /// The number of threads this worker runs.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(futurepool::cluster::ServeOptions::default().threads(3).thread_count(), 3);
    /// ```
    pub fn thread_count(&self) -> usize {
        self.threads
    }

    /// Tasks fetched beyond those running (default: 4 per thread), so threads never wait for a
    /// round trip. Fetched tasks are held by this worker (their leases kept alive) until it runs
    /// them; set 0 for long tasks, so an idle worker elsewhere gets them instead.
    ///
    /// # Examples
    ///
    /// ```
    /// let options = futurepool::cluster::ServeOptions::default().prefetch(0);
    /// # drop(options);
    /// ```
    pub fn prefetch(mut self, tasks: usize) -> Self {
        self.prefetch = Some(tasks);
        self
    }

    /// Whether SIGTERM and SIGINT stop the worker cleanly (default true). Turn it off only if
    /// your program handles those signals itself.
    ///
    /// # Examples
    ///
    /// ```
    /// let options = futurepool::cluster::ServeOptions::default().handle_signals(false);
    /// # drop(options);
    /// ```
    pub fn handle_signals(mut self, handle: bool) -> Self {
        self.handle_signals = handle;
        self
    }

    /// The largest serialized result this worker publishes (default: what the broker accepts,
    /// its `proto-max-bulk-len`). A larger result fails its task with
    /// [`TaskError::Transfer`](crate::TaskError::Transfer), naming the size and the limit.
    ///
    /// # Examples
    ///
    /// ```
    /// let options = futurepool::cluster::ServeOptions::default().max_payload(64 << 20);
    /// # drop(options);
    /// ```
    pub fn max_payload(mut self, bytes: usize) -> Self {
        self.max_payload = Some(bytes);
        self
    }

    /// How long the broker may stay unreachable before the worker gives up and [`serve`] returns
    /// [`ClusterError::GaveUp`] (default 10 minutes; `Duration::MAX`: never). Each failed attempt
    /// is logged on stderr meanwhile; tasks the worker held go to other workers when their lease
    /// expires.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let options = futurepool::cluster::ServeOptions::default().patience(Duration::from_secs(60));
    /// # drop(options);
    /// ```
    pub fn patience(mut self, patience: Duration) -> Self {
        self.patience = patience;
        self
    }

    /// Runs each task in a local [`ProcessPool`](crate::ProcessPool) of `n` worker processes
    /// (this same program, started again: `futurepool::init()` must be the first line of
    /// `main`) instead of on this process's threads: `n` tasks run at once, and
    /// [`threads`](Self::threads) is ignored. Linux only.
    ///
    /// What processes add: a task that crashes or aborts its process fails alone, with
    /// [`TaskError::WorkerLost`](crate::TaskError::WorkerLost) naming the exit code or signal
    /// (the cluster worker lives on, a fresh process replaces the dead one; the task is not
    /// delivered again); [`Task::abort`](crate::Task::abort) kills the process running the task,
    /// whether or not the task reads its token; and hard [`time_limit`](Self::time_limit)s and
    /// [`memory_limit`](Self::memory_limit)s are enforced. The price: each task's argument and
    /// result cross one more pipe.
    ///
    /// # Examples
    ///
    /// ```
    /// let options = futurepool::cluster::ServeOptions::default().processes(4);
    /// assert_eq!(options.process_count(), Some(4));
    /// ```
    pub fn processes(mut self, n: usize) -> Self {
        self.processes = Some(n);
        self
    }

    /// The number of local worker processes, in process mode ([`processes`](Self::processes)).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(futurepool::cluster::ServeOptions::default().process_count(), None);
    /// ```
    pub fn process_count(&self) -> Option<usize> {
        self.processes
    }

    /// The hard time limit of every task that has none of its own
    /// ([`SubmitOptions::time_limit`](super::SubmitOptions::time_limit)): a task still running
    /// `limit` after it started has its local process killed and replaced, and fails with
    /// [`TaskError::TimeLimit`](crate::TaskError::TimeLimit) (not retried). Needs
    /// [`processes`](Self::processes): a thread cannot be killed, so [`serve`] refuses it
    /// without.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let options = futurepool::cluster::ServeOptions::default()
    ///     .processes(2)
    ///     .time_limit(Duration::from_secs(300));
    /// # drop(options);
    /// ```
    pub fn time_limit(mut self, limit: Duration) -> Self {
        self.limits.time_limit = Some(limit);
        self
    }

    /// The soft time limit of every task that has none of its own
    /// ([`SubmitOptions::soft_time_limit`](super::SubmitOptions::soft_time_limit)): `limit`
    /// after a task started, [`current_token()`](crate::current_token) inside it reads
    /// cancelled, so it can clean up and return (its value stands). In both modes.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let options = futurepool::cluster::ServeOptions::default()
    ///     .soft_time_limit(Duration::from_secs(60));
    /// # drop(options);
    /// ```
    pub fn soft_time_limit(mut self, limit: Duration) -> Self {
        self.limits.soft_time_limit = Some(limit);
        self
    }

    /// The memory limit (bytes of resident memory) of every task that has none of its own
    /// ([`SubmitOptions::memory_limit`](super::SubmitOptions::memory_limit)): a local process
    /// passing it while it runs a task is killed at once and replaced, and that task fails with
    /// [`TaskError::MemoryLimit`](crate::TaskError::MemoryLimit); other tasks are unaffected.
    /// Polled every 10 ms, as [`ProcessPoolBuilder::memory_limit`](crate::ProcessPoolBuilder::memory_limit).
    /// Needs [`processes`](Self::processes): threads share one process's memory.
    ///
    /// # Examples
    ///
    /// ```
    /// let options = futurepool::cluster::ServeOptions::default()
    ///     .processes(2)
    ///     .memory_limit(1 << 30);
    /// # drop(options);
    /// ```
    pub fn memory_limit(mut self, bytes: u64) -> Self {
        self.limits.memory_limit = Some(bytes);
        self
    }

    /// The pool it serves.
    pub(crate) fn pool_name(&self) -> &str {
        &self.pool
    }

    /// How many tasks run at once: one per thread, or one per local process.
    fn executors(&self) -> usize {
        self.processes.unwrap_or(self.threads)
    }

    fn capacity(&self) -> usize {
        let running = self.executors();
        running.saturating_add(self.prefetch.unwrap_or(running.saturating_mul(4)))
    }

    /// Checks the options before anything starts; the error names the option and its range.
    fn validate(&self) -> Result<(), ClusterError> {
        let invalid = |why: String| Err(ClusterError::InvalidSetting(Reason::new(why)));
        if self.threads > MAX_THREADS {
            return invalid(format!(
                "threads({}) is out of range: it must be between 1 and {MAX_THREADS}",
                self.threads
            ));
        }
        if let Some(prefetch) = self.prefetch.filter(|&p| p > MAX_PREFETCH) {
            return invalid(format!(
                "prefetch({prefetch}) is out of range: it must be at most {MAX_PREFETCH}"
            ));
        }
        if self.max_payload == Some(0) {
            return invalid(
                "max_payload(0) would fail every result: give a number of bytes >= 1".into(),
            );
        }
        match self.processes {
            Some(n) if n == 0 || n > MAX_THREADS => {
                return invalid(format!(
                    "processes({n}) is out of range: it must be between 1 and {MAX_THREADS}"
                ))
            }
            Some(_) if !cfg!(target_os = "linux") => {
                return invalid("processes(n) needs Linux (the process pool is Linux only)".into())
            }
            Some(_) => {}
            None => {
                if let Some(limit) = self.limits.time_limit {
                    return invalid(format!(
                        "time_limit({limit:?}) needs processes(n): a thread cannot be killed \
                         (use soft_time_limit for a thread-mode worker)"
                    ));
                }
                if let Some(bytes) = self.limits.memory_limit {
                    return invalid(format!(
                        "memory_limit({bytes}) needs processes(n): threads share one process's \
                         memory, so one task's use cannot be measured"
                    ));
                }
            }
        }
        if let Err(why) = self.limits.check() {
            return invalid(why.replace("SubmitOptions", "ServeOptions"));
        }
        Ok(())
    }
}

/// Runs tasks of the pool at `url` until SIGTERM or SIGINT, then stops cleanly: tasks fetched but
/// not started go back to the queue, running tasks finish and their outcomes are published.
///
/// The functions must be registered in this program (`futurepool::register!`), under the same
/// names and signatures as in the clients — in practice, the same binary; a task whose client
/// has another signature for its function fails with a transfer error naming both. While the
/// broker is unreachable (not yet started, restarting) the worker waits and reconnects with
/// backoff, logging each failed attempt, for at most [`ServeOptions::patience`]. It says on stderr
/// what it serves when it starts, and why when it stops.
///
/// Inside a task, [`current_token`](crate::current_token) is the task's token: it reads
/// cancelled within about a second of a client's [`Task::abort`](crate::Task::abort) on the task,
/// whose value is then discarded (it ends cancelled, and is not retried), and once the task's
/// soft time limit passed. In process mode ([`ServeOptions::processes`]) an abort also kills the
/// local process running the task.
///
/// # Errors
///
/// [`ClusterError::InvalidSetting`] for an option out of range (more than 4,096 threads or
/// processes, a prefetch over 100,000, `max_payload(0)`, a zero limit, a hard time limit or a
/// memory limit without `processes`, `processes` off Linux or in a program whose `main` did not
/// call `futurepool::init()`); [`ClusterError::InvalidUrl`] for a URL that cannot
/// name a Redis server;
/// [`ClusterError::Refused`] when the broker refuses this worker (no or wrong password);
/// [`ClusterError::Rejected`] when the broker rejects what the worker needs (e.g. the queue key
/// holds another type); [`ClusterError::GaveUp`] when the broker stayed unreachable longer than
/// the patience.
///
/// # Examples
///
/// ```no_run
/// fn square(n: u64) -> u64 { n * n }
/// futurepool::register!(square);
///
/// fn main() -> Result<(), futurepool::cluster::ClusterError> {
///     let options = futurepool::cluster::ServeOptions::default().threads(4);
///     futurepool::cluster::serve("redis://127.0.0.1:6379/", options)
/// }
/// ```
pub fn serve(url: &str, options: ServeOptions) -> Result<(), ClusterError> {
    options.validate()?;
    let backend = RedisBackend::new(url, &options.pool).map_err(ClusterError::invalid_url)?;
    serve_on(&backend, &redact(url), options, None)
}

/// [`serve`] on any backend (`shown`: how to name the broker in messages). With `stop`, the
/// worker also stops cleanly once it is set (in-process workers of the in-memory broker).
pub(crate) fn serve_on(
    backend: &dyn Backend,
    shown: &str,
    options: ServeOptions,
    stop_flag: Option<Arc<AtomicBool>>,
) -> Result<(), ClusterError> {
    options.validate()?;
    if options.handle_signals {
        signals::install();
    }
    let stopped = {
        let flag = stop_flag.clone();
        move || signals::stop_requested() || flag.as_ref().is_some_and(|s| s.load(Ordering::SeqCst))
    };
    let label = format!("futurepool worker {:?}", options.pool);
    let mut startup = Retry::new(label.clone(), options.patience);
    let Some(mut fetcher) = connect_until_stopped(backend, &mut startup, &stopped)? else {
        eprintln!("{label}: stopped by a signal before it could connect");
        return Ok(());
    };
    let description = match options.processes {
        Some(n) => format!("{}:{} processes={n}", hostname(), std::process::id()),
        None => format!(
            "{}:{} threads={}",
            hostname(),
            std::process::id(),
            options.threads
        ),
    };
    let Some(name) = retry_until_stopped(&mut startup, "register", &stopped, || {
        fetcher.register_worker(&description)
    })?
    else {
        eprintln!("{label}: stopped by a signal before it could register");
        return Ok(());
    };
    let broker_limit = fetcher.max_payload();
    let local = match start_local_pool(&options) {
        Ok(local) => local,
        Err(error) => {
            let _ = fetcher.retire_worker(&name);
            return Err(error);
        }
    };
    let shared = Arc::new(Worker {
        label: format!("futurepool worker {name}"),
        name,
        pool: options.pool.clone(),
        capacity: options.capacity(),
        max_payload: options
            .max_payload
            .map_or(broker_limit, |m| m.min(broker_limit)),
        patience: options.patience,
        stop: stop_flag,
        local,
        limits: options.limits,
        warned_unenforced: AtomicBool::new(false),
        state: Mutex::new(State::default()),
        work_ready: Condvar::new(),
        space_free: Condvar::new(),
        completed: Condvar::new(),
        progress: Arc::default(),
    });
    crate::trace::trace_event!(
        tracing::Level::INFO,
        pool = %shared.pool,
        worker = %shared.name,
        threads = options.executors(),
        "worker started"
    );
    let running = options.executors() as u64;
    eprintln!(
        "{}: serving pool {:?} at {} with {} {} (SIGTERM or SIGINT stops it cleanly)",
        shared.label,
        shared.pool,
        shown,
        running,
        match options.processes {
            Some(_) => plural(running, "local process", "local processes"),
            None => plural(running, "thread", "threads"),
        },
    );
    let mut threads = Vec::new();
    for _ in 0..options.executors() {
        threads.push(start_executor(&shared)?);
    }
    let completer_connection = connect_until_stopped(backend, &mut startup, &stopped);
    let keeper_connection = connect_until_stopped(backend, &mut startup, &stopped);
    match (completer_connection, keeper_connection) {
        (Ok(Some(completer_connection)), Ok(Some(keeper_connection))) => {
            let worker = shared.clone();
            threads.push(spawn("complete", move || {
                completer(&worker, completer_connection)
            })?);
            let worker = shared.clone();
            threads.push(spawn("keep", move || keeper(&worker, keeper_connection))?);
            fetch_until_stopped(&shared, fetcher.as_mut());
        }
        (Err(error), _) | (_, Err(error)) => shared.fail(error),
        _ => {}
    }
    stop(&shared, fetcher.as_mut(), threads)
}

/// The clean stop: nothing new starts; what was fetched but not started goes back to the queue;
/// running tasks finish and are published; the worker signs off. After a permanent error nothing
/// can be published, so it makes one attempt at each step and returns the error.
fn stop(
    shared: &Arc<Worker>,
    fetcher: &mut dyn Connection,
    threads: Vec<thread::JoinHandle<()>>,
) -> Result<(), ClusterError> {
    let (unstarted, running, fatal) = {
        let mut state = shared.lock();
        state.stopping = true;
        let unstarted: Vec<Delivery> = state.local.drain(..).collect();
        for delivery in &unstarted {
            state.entries.remove(&delivery.entry);
        }
        state.held -= unstarted.len();
        let running = state.held.saturating_sub(state.finished.len());
        (unstarted, running, state.fatal.clone())
    };
    shared.wake_all();
    let why = match &fatal {
        Some(error) => format!("{error}"),
        None => "a stop signal (SIGTERM or SIGINT; a second one exits at once)".to_string(),
    };
    eprintln!(
        "{}: stopping because of {why}: {running} running {} {}, {} fetched {} back to the queue",
        shared.label,
        plural(running as u64, "task", "tasks"),
        if fatal.is_some() {
            "abandoned (their leases expire)"
        } else {
            "finish first"
        },
        unstarted.len(),
        plural(unstarted.len() as u64, "task goes", "tasks go"),
    );
    // Each step of the stop gets a short budget of its own; after it the leases recover whatever
    // could not be released or signed off.
    let patience = |fatal: bool| if fatal { Duration::ZERO } else { STOP_PATIENCE };
    if !unstarted.is_empty() {
        let entries: Vec<String> = unstarted.into_iter().map(|d| d.entry).collect();
        let mut retry = Retry::new(shared.label.clone(), patience(fatal.is_some()));
        // If the broker is away for long, give up: the lease hands these tasks to others anyway.
        while let Err(error) = fetcher.release(&shared.name, &entries) {
            if let Err(stop) = retry.failed("release unstarted tasks", error) {
                eprintln!(
                    "{}: could not release {} {} ({stop}); their leases will expire",
                    shared.label,
                    entries.len(),
                    plural(entries.len() as u64, "task", "tasks"),
                );
                break;
            }
        }
    }
    if fatal.is_none() {
        for thread in threads {
            let _ = thread.join();
        }
    }
    // A permanent error met while stopping is the outcome too.
    let fatal = shared.lock().fatal.clone();
    // Everything this worker ran is published; hand back anything else it still holds.
    let mut retry = Retry::new(shared.label.clone(), patience(fatal.is_some()));
    while let Err(error) = fetcher.retire_worker(&shared.name) {
        if let Err(stop) = retry.failed("sign off", error) {
            eprintln!(
                "{}: could not sign off ({stop}); its leases will expire",
                shared.label
            );
            break;
        }
    }
    match fatal {
        None => {
            crate::trace::trace_event!(
                tracing::Level::INFO,
                pool = %shared.pool,
                worker = %shared.name,
                "worker exited"
            );
            eprintln!("{}: stopped", shared.label);
            Ok(())
        }
        Some(error) => {
            crate::trace::trace_event!(
                tracing::Level::ERROR,
                pool = %shared.pool,
                worker = %shared.name,
                error = %error,
                "worker exited"
            );
            eprintln!("{}: stopped: {error}", shared.label);
            Err(error)
        }
    }
}

/// The variables that make a program calling `futurepool::init()` a cluster worker.
const WORKER_VARIABLES: [&str; 5] = [
    WORKER_ENV,
    "FUTUREPOOL_POOL",
    "FUTUREPOOL_THREADS",
    "FUTUREPOOL_PREFETCH",
    "FUTUREPOOL_PROCESSES",
];

/// Serves as a cluster worker if `FUTUREPOOL_CLUSTER_WORKER` is set, then exits the process
/// (status 0 after a clean stop, 2 with the error on stderr otherwise, e.g. for a value that is
/// not a Redis URL); returns otherwise. Called by `futurepool::init()`. `FUTUREPOOL_POOL`,
/// `FUTUREPOOL_THREADS`, `FUTUREPOOL_PREFETCH` and `FUTUREPOOL_PROCESSES` override the pool
/// name, the thread count, the prefetch and turn on process mode with that many processes.
///
/// The variables are removed from the environment once read: a task that starts another
/// futurepool-based program must not turn it into a second worker of the pool.
pub(crate) fn serve_if_requested() {
    let Ok(url) = std::env::var(WORKER_ENV) else {
        return;
    };
    let read = |name: &str| std::env::var(name).ok();
    let (pool, threads, prefetch, processes) = (
        read("FUTUREPOOL_POOL"),
        read("FUTUREPOOL_THREADS"),
        read("FUTUREPOOL_PREFETCH"),
        read("FUTUREPOOL_PROCESSES"),
    );
    for name in WORKER_VARIABLES {
        // A program a task starts must not become a cluster worker too (issue 9, case 11).
        // Sound despite `remove_var`'s race with concurrent `getenv`: `init()` runs first thing
        // in `main`, before the program or this worker has started a thread.
        std::env::remove_var(name);
    }
    // Set but unusable: say so and exit rather than run as the main program, which a process
    // started as a worker must not do (`serve` names what is wrong with a bad URL).
    if url.trim().is_empty() {
        eprintln!("futurepool worker: {WORKER_ENV} is set but empty: give it a Redis URL");
        std::process::exit(2);
    }
    let mut options = ServeOptions::default();
    if let Some(pool) = pool {
        options = options.pool(pool);
    }
    let number = |name: &str, value: Option<String>| -> Option<usize> {
        let value = value?;
        match value.trim().parse() {
            Ok(n) => Some(n),
            Err(_) => {
                eprintln!("futurepool worker: {name}={value:?} is not a whole number of tasks");
                std::process::exit(2);
            }
        }
    };
    if let Some(threads) = number("FUTUREPOOL_THREADS", threads) {
        options = options.threads(threads);
    }
    if let Some(prefetch) = number("FUTUREPOOL_PREFETCH", prefetch) {
        options = options.prefetch(prefetch);
    }
    if let Some(processes) = number("FUTUREPOOL_PROCESSES", processes) {
        options = options.processes(processes);
    }
    match serve(&url, options) {
        Ok(()) => std::process::exit(0),
        Err(error) => {
            eprintln!("futurepool worker: {error}");
            std::process::exit(2);
        }
    }
}

struct Worker {
    name: String,
    /// Starts each log line: `futurepool worker NAME`.
    label: String,
    pool: String,
    capacity: usize,
    /// The largest outcome published (the broker's limit, or less if the options said so).
    max_payload: usize,
    patience: Duration,
    /// Set to stop an in-process worker (besides SIGTERM and SIGINT).
    stop: Option<Arc<AtomicBool>>,
    /// Process mode: the local pool every task runs in.
    local: Option<LocalPool>,
    /// The default limits of a task without its own.
    limits: TaskLimits,
    /// Whether a thread-mode worker already said it cannot enforce a task's hard or memory limit.
    warned_unenforced: AtomicBool,
    state: Mutex<State>,
    /// Executors wait here for tasks.
    work_ready: Condvar,
    /// The fetcher waits here for capacity.
    space_free: Condvar,
    /// The completer waits here for finished tasks.
    completed: Condvar,
    /// The latest progress of the running tasks, which the keeper writes.
    progress: Arc<ProgressBoard>,
}

/// A task an executor runs.
struct RunningTask {
    task_id: String,
    /// The flag its token reads, set when it is aborted.
    aborted: Arc<AtomicBool>,
    /// In process mode, its task in the local pool (set once submitted there).
    local: Option<LocalTask>,
}

/// Process mode's local pool. Off Linux `validate` refuses `processes`, so none exists there.
#[cfg(target_os = "linux")]
struct LocalPool(crate::ProcessPool);
#[cfg(not(target_os = "linux"))]
enum LocalPool {}

/// A task in the local pool.
#[cfg(target_os = "linux")]
#[derive(Clone)]
struct LocalTask(crate::Task<crate::process_pool::RawAnswer>);
#[cfg(not(target_os = "linux"))]
#[derive(Clone)]
enum LocalTask {}

/// The local pool of `options`, in process mode. It has no limits of its own: each task is
/// submitted with its own, or the worker's defaults.
fn start_local_pool(options: &ServeOptions) -> Result<Option<LocalPool>, ClusterError> {
    #[cfg(target_os = "linux")]
    if let Some(n) = options.processes {
        return crate::ProcessPool::builder()
            .max_workers(n)
            .build()
            .map(|pool| Some(LocalPool(pool)))
            .map_err(|error| {
                ClusterError::InvalidSetting(Reason::new(format!(
                    "processes({n}): cannot start the local process pool: {error}"
                )))
            });
    }
    let _ = options;
    Ok(None)
}

#[cfg(target_os = "linux")]
impl LocalPool {
    /// `on_progress` hears the task's reports (on a callback thread, see `report_progress`).
    fn submit(
        &self,
        function: &str,
        arg: Vec<u8>,
        limits: TaskLimits,
        on_progress: Box<dyn FnMut(u64, u64) + Send>,
    ) -> LocalTask {
        let limits = crate::process_pool::RawLimits {
            time_limit: limits.time_limit,
            soft_time_limit: limits.soft_time_limit,
            memory_limit: limits.memory_limit,
        };
        LocalTask(self.0.submit_raw(function, arg, limits, Some(on_progress)))
    }
}

#[cfg(target_os = "linux")]
impl LocalTask {
    /// Kills the local process running it; it ends `Cancelled`.
    fn abort(&self) {
        self.0.abort();
    }

    /// Waits for its end: bounded by the task itself, as a thread-mode executor running it is
    /// (and by its time limit, if it has one).
    fn answer(&self) -> Result<crate::process_pool::RawAnswer, TaskError> {
        self.0.result()
    }
}

#[cfg(not(target_os = "linux"))]
impl LocalPool {
    fn submit(
        &self,
        _: &str,
        _: Vec<u8>,
        _: TaskLimits,
        _: Box<dyn FnMut(u64, u64) + Send>,
    ) -> LocalTask {
        match *self {}
    }
}

#[cfg(not(target_os = "linux"))]
impl LocalTask {
    fn abort(&self) {
        match *self {}
    }

    fn answer(&self) -> Result<Result<Vec<u8>, registry::InvokeError>, TaskError> {
        match *self {}
    }
}

#[derive(Default)]
struct State {
    /// Fetched, not started.
    local: VecDeque<Delivery>,
    /// Tasks held from fetch until their outcome is published.
    held: usize,
    /// The entries whose lease this worker keeps alive.
    entries: HashSet<String>,
    /// Finished, not yet published.
    finished: Vec<Completion>,
    /// Running now, by entry.
    running: HashMap<String, RunningTask>,
    executors_running: usize,
    stopping: bool,
    /// The permanent error that stops this worker.
    fatal: Option<ClusterError>,
}

impl Worker {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wake_all(&self) {
        self.work_ready.notify_all();
        self.space_free.notify_all();
        self.completed.notify_all();
    }

    /// A permanent error: the worker stops (the first error is the one reported).
    fn fail(&self, error: ClusterError) {
        let mut state = self.lock();
        if state.fatal.is_none() {
            eprintln!("{}: {error}", self.label);
            state.fatal = Some(error);
        }
        drop(state);
        self.wake_all();
    }

    /// Whether publishing should give up, the broker having failed for `outage`: after a
    /// permanent error, or while stopping once the outage lasts [`STOP_PATIENCE`] (the leases
    /// hand what is left to other workers).
    fn abandoning(&self, outage: Duration) -> bool {
        let state = self.lock();
        state.fatal.is_some() || (state.stopping && outage >= STOP_PATIENCE)
    }

    fn accept(&self, deliveries: Vec<Delivery>) {
        if deliveries.is_empty() {
            return;
        }
        let mut state = self.lock();
        state.held += deliveries.len();
        let mut cancelled_any = false;
        for delivery in deliveries {
            state.entries.insert(delivery.entry.clone());
            if delivery.aborted {
                // Aborted before it reached this worker: acknowledged and completed cancelled
                // without running, whatever its retry policy.
                state.finished.push(cancelled(delivery));
                cancelled_any = true;
            } else {
                state.local.push_back(delivery);
            }
        }
        drop(state);
        self.work_ready.notify_all();
        if cancelled_any {
            self.completed.notify_all();
        }
    }

    /// The broker says these tasks were aborted: a running one's token is set (it ends
    /// cancelled when it returns; in process mode its local task is aborted, killing the process
    /// running it), a fetched one not started yet is completed cancelled.
    fn stop_aborted(&self, task_ids: &[String]) {
        if task_ids.is_empty() {
            return;
        }
        let aborted: HashSet<&str> = task_ids.iter().map(String::as_str).collect();
        let mut state = self.lock();
        let mut local_aborts = Vec::new();
        for running in state.running.values() {
            if aborted.contains(running.task_id.as_str()) {
                running.aborted.store(true, Ordering::Release);
                local_aborts.extend(running.local.clone());
            }
        }
        let (stopped, kept): (VecDeque<Delivery>, VecDeque<Delivery>) =
            std::mem::take(&mut state.local)
                .into_iter()
                .partition(|d| aborted.contains(d.task_id.as_str()));
        state.local = kept;
        let any = !stopped.is_empty();
        state.finished.extend(stopped.into_iter().map(cancelled));
        drop(state);
        // Outside the worker's lock: an abort takes the local pool's.
        for local in local_aborts {
            local.abort();
        }
        if any {
            self.completed.notify_all();
        }
    }

    /// A thread-mode task's soft time limit: its own or the worker's, else its hard limit (a
    /// thread cannot be killed, so the hard limit can only ask it to stop). Says once on stderr
    /// that such a worker enforces no hard or memory limit.
    fn thread_soft_limit(&self, delivery: &Delivery, limits: TaskLimits) -> Option<Duration> {
        let unenforced = limits.time_limit.is_some() || limits.memory_limit.is_some();
        if unenforced && !self.warned_unenforced.swap(true, Ordering::Relaxed) {
            eprintln!(
                "{}: task {} has a hard time limit or a memory limit, which a worker running \
                 tasks on threads cannot enforce (a thread cannot be killed, nor its memory \
                 measured): its hard limit only sets its token, as a soft one, and a memory \
                 limit is ignored; serve with processes(n) to enforce both (said once)",
                self.label, delivery.task_id
            );
        }
        limits.soft_time_limit.or(limits.time_limit)
    }

    /// A stop signal, or this in-process worker's stop flag.
    fn stop_requested(&self) -> bool {
        signals::stop_requested() || self.stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst))
    }

    /// Queues an outcome for the completer.
    fn finish(&self, completion: Completion) {
        let mut state = self.lock();
        state.finished.push(completion);
        if state.finished.len() == 1 {
            self.completed.notify_all();
        }
    }

    /// Forgets tasks whose outcome was published (or given up on): no more lease renewals.
    fn forget(&self, batch: &[Completion]) {
        let mut state = self.lock();
        state.held -= batch.len();
        for completion in batch {
            state.entries.remove(&completion.entry);
        }
        drop(state);
        self.space_free.notify_all();
    }
}

fn spawn(
    role: &str,
    body: impl FnOnce() + Send + 'static,
) -> Result<thread::JoinHandle<()>, ClusterError> {
    thread::Builder::new()
        .name(format!("futurepool-worker-{role}"))
        .spawn(body)
        .map_err(|e| ClusterError::Unavailable(Reason::new(format!("cannot start a thread: {e}"))))
}

fn connect_until_stopped(
    backend: &dyn Backend,
    retry: &mut Retry,
    stopped: &dyn Fn() -> bool,
) -> Result<Option<Box<dyn Connection>>, ClusterError> {
    retry_until_stopped(retry, "connect", stopped, || backend.connect())
}

/// Retries `attempt` while its errors are transient, until it succeeds (`Some`), a stop signal
/// arrives (`None`), or the error is permanent or outlasts the patience (`Err`).
fn retry_until_stopped<T>(
    retry: &mut Retry,
    what: &str,
    stopped: &dyn Fn() -> bool,
    mut attempt: impl FnMut() -> Result<T, BrokerError>,
) -> Result<Option<T>, ClusterError> {
    loop {
        if stopped() {
            return Ok(None);
        }
        match attempt() {
            Ok(value) => {
                retry.succeeded();
                return Ok(Some(value));
            }
            Err(error) => retry.failed(what, error)?,
        }
    }
}

fn fetch_until_stopped(worker: &Worker, connection: &mut dyn Connection) {
    let mut retry = Retry::new(worker.label.clone(), worker.patience);
    while !worker.stop_requested() {
        let free = {
            let mut state = worker.lock();
            if state.fatal.is_some() {
                return;
            }
            if state.held >= worker.capacity {
                // Wake up now and then to notice a stop signal.
                state = worker
                    .space_free
                    .wait_timeout(state, FETCH_BLOCK)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            worker.capacity.saturating_sub(state.held)
        };
        if free == 0 {
            continue;
        }
        match connection.fetch(&worker.name, free.min(MAX_FETCH), FETCH_BLOCK) {
            Ok(deliveries) => {
                retry.succeeded();
                worker.accept(deliveries);
            }
            // A stop signal interrupts a blocked read (sockets with a timeout are not restarted);
            // whatever that read delivered is put back by `retire_worker`.
            Err(_) if worker.stop_requested() => break,
            Err(error) => {
                if let Err(stop) = retry.failed("fetch tasks", error) {
                    worker.fail(stop.into());
                    return;
                }
            }
        }
    }
}

fn start_executor(worker: &Arc<Worker>) -> Result<thread::JoinHandle<()>, ClusterError> {
    let worker_for_thread = worker.clone();
    worker.lock().executors_running += 1;
    let started = spawn("run", move || executor(&worker_for_thread));
    if started.is_err() {
        worker.lock().executors_running -= 1;
    }
    started
}

/// The task an executor is running. If the thread unwinds anyway — something outside
/// [`run`]'s guard panicked — dropping this publishes a failure for the task (so its lease is
/// not renewed for a task nobody runs) and starts a replacement executor.
struct Running<'a> {
    worker: &'a Arc<Worker>,
    /// Taken back when the task ends normally.
    delivery: Option<Delivery>,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let Some(delivery) = self.delivery.take() else {
            return;
        };
        self.worker.progress.end(&delivery.task_id);
        self.worker.lock().running.remove(&delivery.entry);
        self.worker.finish(Completion {
            entry: delivery.entry,
            task_id: delivery.task_id,
            outcome: outcome::transfer(
                "the worker thread running this task died (a panic outside the task's guard)",
            ),
            dead_letter: None,
            retry_in: None,
        });
        let replaced = {
            self.worker.lock().executors_running -= 1;
            start_executor(self.worker)
        };
        if replaced.is_err() && self.worker.lock().executors_running == 0 {
            self.worker.fail(ClusterError::Unavailable(Reason::new(
                "every task-running thread died and none could be restarted",
            )));
        }
    }
}

fn executor(worker: &Arc<Worker>) {
    loop {
        let delivery = {
            let mut state = worker.lock();
            loop {
                if let Some(delivery) = state.local.pop_front() {
                    let flag = Arc::new(AtomicBool::new(false));
                    state.running.insert(
                        delivery.entry.clone(),
                        RunningTask {
                            task_id: delivery.task_id.clone(),
                            aborted: flag.clone(),
                            local: None,
                        },
                    );
                    break (delivery, flag);
                }
                if state.stopping {
                    state.executors_running -= 1;
                    drop(state);
                    worker.completed.notify_all();
                    return;
                }
                state = worker
                    .work_ready
                    .wait(state)
                    .unwrap_or_else(|p| p.into_inner());
            }
        };
        let (delivery, aborted) = delivery;
        worker.progress.begin(&delivery.task_id);
        let mut running = Running {
            worker,
            delivery: Some(delivery),
        };
        let limits = running
            .delivery
            .as_ref()
            .and_then(|d| d.limits.as_deref())
            .map_or(TaskLimits::default(), TaskLimits::parse)
            .or(worker.limits);
        let (outcome, dead_letter) = match &worker.local {
            Some(local) => {
                let task = running.delivery.as_mut().expect("just set");
                let arg = std::mem::take(&mut task.arg);
                run_in_process(worker, local, task, arg, &aborted, limits)
            }
            None => {
                let task = running.delivery.as_ref().expect("just set");
                let soft = worker.thread_soft_limit(task, limits);
                // `current_token()` inside the task reads the flag the keeper sets on an
                // abort, as a thread-pool task reads its own state, and the soft limit.
                let _current = crate::token::enter(aborted.clone());
                let progress = TaskProgress {
                    board: worker.progress.clone(),
                    task_id: task.task_id.clone(),
                };
                // `report_progress` inside the task records it for the keeper.
                // SAFETY: `progress` is declared first, so it outlives the guard, which is
                // dropped at the end of this block, on this thread.
                let _reporting = unsafe { crate::task::Running::enter(&progress) };
                match soft {
                    Some(soft) => {
                        crate::token::with_soft_time_limit(soft, || run(task, worker.max_payload))
                    }
                    None => run(task, worker.max_payload),
                }
            }
        };
        let task = running.delivery.as_ref().expect("still held");
        worker.progress.end(&task.task_id);
        worker.lock().running.remove(&task.entry);
        if aborted.load(Ordering::Acquire) {
            // Aborted while it ran: whatever it returned is discarded, and it is not retried.
            let delivery = running.delivery.take().expect("still held");
            worker.finish(cancelled(delivery));
            continue;
        }
        let (outcome, retry_in) = match task.retry.as_deref() {
            None => (outcome, None),
            Some(field) => under_policy(task.attempt, field, outcome),
        };
        let delivery = running.delivery.take().expect("still held");
        worker.finish(Completion {
            entry: delivery.entry,
            task_id: delivery.task_id,
            outcome,
            dead_letter,
            retry_in,
        });
    }
}

/// The completion of an aborted task: cancelled, with the runs it had (for a task with a retry
/// policy, whose handle reports its attempts).
fn cancelled(delivery: Delivery) -> Completion {
    let outcome = match delivery.retry {
        Some(_) => outcome::with_attempts(delivery.attempt, &outcome::cancelled()),
        None => outcome::cancelled(),
    };
    Completion {
        entry: delivery.entry,
        task_id: delivery.task_id,
        outcome,
        dead_letter: None,
        retry_in: None,
    }
}

/// Runs one task through the registry; every way it can end becomes an outcome. Everything that
/// touches user code — the argument's `Deserialize`, the function, the result's `Serialize` and
/// `Drop` — runs under a panic guard here, whatever the registry itself guards.
fn run(delivery: &Delivery, max_payload: usize) -> (Vec<u8>, Option<String>) {
    if let Some(refusal) = signature_mismatch(delivery) {
        return (outcome::transfer(&refusal), Some(refusal));
    }
    match crate::panic::catch(|| registry::invoke(&delivery.function, &delivery.arg)) {
        Ok(answer) => encode(delivery, answer, max_payload),
        Err(panic) => {
            let outcome = outcome::panicked(&Panic::new(
                format!(
                    "{} (while decoding its argument, or encoding or dropping its result)",
                    panic.message()
                ),
                panic.location().map(str::to_string),
            ));
            within_payload(delivery, outcome, max_payload)
        }
    }
}

/// Runs one task in the worker's local process pool (process mode) and encodes its end as
/// [`run`] would have, plus the ends only a process has: its hard time limit, its memory
/// limit, the death of its process. The local task is made abortable first: the keeper
/// aborts it (killing its process) when the broker says the task was aborted.
fn run_in_process(
    worker: &Worker,
    local: &LocalPool,
    delivery: &Delivery,
    arg: Vec<u8>,
    aborted: &AtomicBool,
    limits: TaskLimits,
) -> (Vec<u8>, Option<String>) {
    if let Some(refusal) = signature_mismatch(delivery) {
        return (outcome::transfer(&refusal), Some(refusal));
    }
    let (board, task_id) = (worker.progress.clone(), delivery.task_id.clone());
    let on_progress = Box::new(move |done, total| board.record(&task_id, done, total));
    let task = local.submit(&delivery.function, arg, limits, on_progress);
    if let Some(running) = worker.lock().running.get_mut(&delivery.entry) {
        running.local = Some(task.clone());
    }
    // An abort the keeper saw before the handle was stored set only the flag.
    if aborted.load(Ordering::Acquire) {
        task.abort();
    }
    match task.answer() {
        Ok(answer) => encode(delivery, answer, worker.max_payload),
        Err(error) => {
            let outcome = match error {
                TaskError::Cancelled => outcome::cancelled(),
                TaskError::Panicked(panic) => outcome::panicked(&panic),
                TaskError::TimeLimit(limit) => outcome::time_limit(limit),
                TaskError::MemoryLimit { limit, used } => outcome::memory_limit(limit, used),
                TaskError::WorkerLost(loss) => outcome::process_lost(loss),
                TaskError::Transfer(why) => outcome::transfer(&why.to_string()),
                other => {
                    // The local pool broke (its processes cannot start) or shut down: this
                    // task's client hears why; the log says it for every task.
                    eprintln!(
                        "{}: the local process pool could not run task {}: {other}",
                        worker.label, delivery.task_id
                    );
                    outcome::transfer(&format!(
                        "the worker's local process pool could not run the task: {other}"
                    ))
                }
            };
            within_payload(delivery, outcome, worker.max_payload)
        }
    }
}

/// The outcome of a task whose function ran (or could not be run) through the registry, here
/// or in a local process: the same bytes either way.
fn encode(
    delivery: &Delivery,
    answer: Result<Vec<u8>, registry::InvokeError>,
    max_payload: usize,
) -> (Vec<u8>, Option<String>) {
    let outcome = match answer {
        // Checked before the tagged copy: a result of hundreds of megabytes is not copied again.
        Ok(bytes) if bytes.len() >= max_payload => {
            return (too_large(delivery, bytes.len(), max_payload), None)
        }
        Ok(bytes) => outcome::value(&bytes),
        Err(registry::InvokeError::Panicked(panic)) => outcome::panicked(&panic),
        // A task this worker cannot run at all: its client hears why, and the dead letters
        // keep a record of it.
        Err(
            error @ (registry::InvokeError::UnknownFunction(_)
            | registry::InvokeError::BadArgument(_)),
        ) => {
            let why = error.to_string();
            return (outcome::transfer(&why), Some(why));
        }
        Err(other) => outcome::transfer(&other.to_string()),
    };
    within_payload(delivery, outcome, max_payload)
}

/// A panic message or an error too large to publish becomes a transfer error that fits.
fn within_payload(
    delivery: &Delivery,
    outcome: Vec<u8>,
    max_payload: usize,
) -> (Vec<u8>, Option<String>) {
    if outcome.len() > max_payload {
        return (too_large(delivery, outcome.len(), max_payload), None);
    }
    (outcome, None)
}

fn too_large(delivery: &Delivery, bytes: usize, max_payload: usize) -> Vec<u8> {
    outcome::transfer(&format!(
        "the result of {} is {bytes} bytes, more than the {max_payload} the broker accepts \
         (its proto-max-bulk-len, or ServeOptions::max_payload): return a reference to the \
         data (a path, a key, a URL) instead",
        delivery.function,
    ))
}

/// Applies a task's retry policy (the entry's `retry` field) to the outcome of its run after
/// `previous` earlier ones: either a delay before the next run, or the final outcome tagged with
/// the number of runs (what the handle's `attempts()` reports).
fn under_policy(previous: u32, field: &str, outcome: Vec<u8>) -> (Vec<u8>, Option<Duration>) {
    let attempt = previous.saturating_add(1);
    match WirePolicy::parse(field).and_then(|policy| policy.retry_after(attempt, &outcome)) {
        Some(delay) => (outcome, Some(delay)),
        None => (outcome::with_attempts(attempt, &outcome), None),
    }
}

/// Why this worker must not run `delivery`: its client's function of that name has another
/// signature (its argument bytes would decode as something else, or not at all).
fn signature_mismatch(delivery: &Delivery) -> Option<String> {
    let sent = delivery.signature.as_deref().filter(|s| !s.is_empty())?;
    // An unknown function is reported by `invoke`.
    let (mine, signature) = registry::signature_of(&delivery.function)?;
    (sent != mine).then(|| {
        format!(
            "the client and this worker disagree on the signature of `{}`: here it is \
             `{signature}` (fingerprint {mine}), the client's has fingerprint {sent}; run the \
             same build of the program (same code and compiler) on both sides",
            delivery.function
        )
    })
}

fn completer(worker: &Worker, mut connection: Box<dyn Connection>) {
    let mut retry = Retry::new(worker.label.clone(), worker.patience);
    let stop = |outage| worker.abandoning(outage);
    loop {
        let batch = {
            let mut state = worker.lock();
            while state.finished.is_empty() {
                if state.stopping && state.executors_running == 0 {
                    return;
                }
                state = worker
                    .completed
                    .wait(state)
                    .unwrap_or_else(|p| p.into_inner());
            }
            std::mem::take(&mut state.finished)
        };
        // Publishing is idempotent (first completion wins), so retrying after an error that may
        // have hidden a success is safe.
        let mut send = |c: &mut dyn Connection, items: &[Completion]| c.complete(items);
        let published = send_pinning(
            connection.as_mut(),
            "publish results",
            &batch,
            &|c: &Completion| c.outcome.len().max(c.task_id.len()),
            &mut send,
            &mut retry,
            &stop,
        )
        .and_then(|answers| {
            // Results the broker refuses (too large for it...) fail their tasks instead.
            let refused: Vec<Completion> = batch
                .iter()
                .zip(answers)
                .filter_map(|(completion, answer)| {
                    let why = answer.err()?;
                    eprintln!(
                        "{}: the broker refused the result of task {} ({} bytes): {why}",
                        worker.label,
                        completion.task_id,
                        completion.outcome.len()
                    );
                    Some(Completion {
                        outcome: outcome::transfer(&format!(
                            "the broker refused the task's result ({} bytes): {why}",
                            completion.outcome.len().saturating_sub(1)
                        )),
                        // The refusal is final: it is not the task's own failure.
                        retry_in: None,
                        ..completion.clone()
                    })
                })
                .collect();
            if refused.is_empty() {
                return Ok(());
            }
            let answers = send_pinning(
                connection.as_mut(),
                "publish errors",
                &refused,
                &|c: &Completion| c.outcome.len().max(c.task_id.len()),
                &mut send,
                &mut retry,
                &stop,
            )?;
            for (completion, answer) in refused.iter().zip(answers) {
                if let Err(why) = answer {
                    eprintln!(
                        "{}: the broker refused even an error for task {} ({why}); its lease \
                         expires and it is delivered again",
                        worker.label, completion.task_id
                    );
                }
            }
            Ok(())
        });
        match published {
            Ok(()) => {}
            Err(Stop::GaveUp(why)) if worker.lock().stopping => eprintln!(
                "{}: {why}; {} {} lost: delivered again when {} expire",
                worker.label,
                batch.len(),
                plural(batch.len() as u64, "result is", "results are"),
                plural(batch.len() as u64, "its lease", "their leases"),
            ),
            Err(stop) => worker.fail(stop.into()),
        }
        worker.forget(&batch);
    }
}

fn keeper(worker: &Worker, mut connection: Box<dyn Connection>) {
    let mut problems = Vec::new();
    // The first tick needs the lease; a failure here is met again (and retried) by `beat`.
    let mut config = match connection.config(PoolConfig::default()) {
        Ok((config, found)) => {
            for problem in &found {
                eprintln!("{}: {problem}", worker.label);
            }
            problems = found;
            config
        }
        Err(_) => PoolConfig::default(),
    };
    let mut retry = Retry::new(worker.label.clone(), worker.patience);
    let tick = |config: &PoolConfig| (config.lease / 4).max(Duration::from_millis(25));
    let mut next_beat = Instant::now() + tick(&config);
    let mut progress = ProgressWrites::new(worker.label.clone());
    loop {
        let (entries, free, held_tasks) = {
            let state = worker.lock();
            let done = |s: &State| (s.stopping && s.held == 0) || s.fatal.is_some();
            let wait = next_beat
                .saturating_duration_since(Instant::now())
                .min(ABORT_POLL);
            let state = worker
                .space_free
                .wait_timeout_while(state, wait, |s| !done(s))
                .unwrap_or_else(|p| p.into_inner())
                .0;
            if done(&state) {
                return;
            }
            let beat_due = Instant::now() >= next_beat;
            let free = if state.stopping {
                0
            } else {
                worker.capacity.saturating_sub(state.held)
            };
            let entries = beat_due.then(|| state.entries.iter().cloned().collect::<Vec<_>>());
            let held_tasks: Vec<String> = state
                .running
                .values()
                .map(|running| running.task_id.clone())
                .chain(state.local.iter().map(|d| d.task_id.clone()))
                .collect();
            (entries, free, held_tasks)
        };
        let mut attempt = || -> Result<(), BrokerError> {
            if !held_tasks.is_empty() {
                let aborted = connection.aborted(&held_tasks)?;
                worker.stop_aborted(&aborted);
            }
            if let Some(entries) = &entries {
                beat(
                    worker,
                    connection.as_mut(),
                    entries,
                    free,
                    &mut config,
                    &mut problems,
                )?;
                next_beat = Instant::now() + tick(&config);
            }
            Ok(())
        };
        match attempt() {
            Ok(()) => {
                retry.succeeded();
                // Only once the broker answered: while it does not, the values wait on the
                // board instead of failing a write of their own. Apart from the rest, so a
                // failure here never holds up a heartbeat or a renewal.
                progress.tick(&worker.progress, connection.as_mut());
            }
            Err(error) => {
                if let Err(stop) = retry.failed("heartbeat, reap and abort check", error) {
                    worker.fail(stop.into());
                    return;
                }
            }
        }
    }
}

/// One heartbeat and one reaper pass.
fn beat(
    worker: &Worker,
    connection: &mut dyn Connection,
    entries: &[String],
    free: usize,
    config: &mut PoolConfig,
    problems: &mut Vec<String>,
) -> Result<(), BrokerError> {
    let lost = connection.heartbeat(&worker.name, entries)?;
    if !lost.is_empty() {
        // Another worker took these over while this one was stopped or cut off: stop renewing
        // them. If this worker still finishes first its outcome wins; otherwise it is discarded.
        let mut state = worker.lock();
        for entry in &lost {
            state.entries.remove(entry);
        }
    }
    let (stored, found) = connection.config(*config)?;
    if found != *problems {
        // Said when it changes, not every beat.
        for problem in &found {
            eprintln!("{}: {problem}", worker.label);
        }
        *problems = found;
    }
    *config = stored;
    // Even a full worker reaps: with no room to claim, it still dead-letters exhausted tasks, so
    // their callers hear about it while every worker is busy.
    let reaped = connection.reap(&worker.name, *config, free)?;
    #[cfg(feature = "tracing")]
    for delivery in &reaped.claimed {
        crate::trace::trace_event!(
            tracing::Level::WARN,
            pool = %worker.pool,
            worker = %worker.name,
            task = %delivery.task_id,
            "task redelivered: its worker was lost"
        );
    }
    if reaped.dead_lettered > 0 {
        crate::trace::trace_event!(
            tracing::Level::ERROR,
            pool = %worker.pool,
            worker = %worker.name,
            tasks = reaped.dead_lettered,
            max_deliveries = config.max_deliveries,
            "tasks dead-lettered: they lost their workers too often"
        );
        let n = u64::from(reaped.dead_lettered);
        eprintln!(
            "{}: {n} {} {} {} and {} dead-lettered",
            worker.label,
            plural(n, "task lost its worker", "tasks lost their workers"),
            config.max_deliveries,
            plural(u64::from(config.max_deliveries), "time", "times"),
            plural(n, "was", "were"),
        );
    }
    worker.accept(reaped.claimed);
    Ok(())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}
