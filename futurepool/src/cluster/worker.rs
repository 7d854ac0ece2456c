//! The worker's side: [`serve`] joins a pool's consumer group and runs its tasks on a local pool of
//! threads until SIGTERM or SIGINT.
//!
//! Threads, each with its own broker connection where it needs one:
//! - the *fetcher* (the thread that called `serve`) reads up to `threads + prefetch` tasks with
//!   one `XREADGROUP COUNT n`, and stops on a signal;
//! - `threads` *executors* run tasks through the function registry;
//! - the *completer* publishes finished tasks in batches (one script call acknowledges and
//!   publishes them all);
//! - the *keeper* heartbeats every quarter lease (extending the lease of everything this worker
//!   holds, running or prefetched) and reaps tasks of lost workers into free capacity.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use super::backend::{Backend, BrokerError, Completion, Connection, Delivery, PoolConfig};
use super::backoff::Backoff;
use super::redis::RedisBackend;
use super::{outcome, signals, ClusterError, DEFAULT_POOL};
use crate::error::Reason;
use crate::registry;

/// How long one fetch blocks on an empty queue before checking for a stop signal.
const FETCH_BLOCK: Duration = Duration::from_millis(250);
/// The environment variable that turns a program calling `futurepool::init()` into a cluster
/// worker (`FUTUREPOOL_WORKER` is the process pool's).
pub(crate) const WORKER_ENV: &str = "FUTUREPOOL_CLUSTER_WORKER";

/// How a worker runs: which pool, how many threads, how far ahead it fetches.
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
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            pool: DEFAULT_POOL.to_string(),
            threads: thread::available_parallelism().map_or(1, |n| n.get()),
            prefetch: None,
            handle_signals: true,
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

    fn capacity(&self) -> usize {
        self.threads + self.prefetch.unwrap_or(4 * self.threads)
    }
}

/// Runs tasks of the pool at `url` until SIGTERM or SIGINT, then stops cleanly: tasks fetched but
/// not started go back to the queue, running tasks finish and their outcomes are published.
///
/// The functions must be registered in this program (`futurepool::register!`), under the same
/// names as in the clients — in practice, the same binary. While the broker is unreachable (not yet
/// started, restarting) the worker waits and reconnects with backoff.
///
/// # Errors
///
/// [`ClusterError::InvalidUrl`] for a URL that cannot name a Redis server.
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
    let backend = RedisBackend::new(url, &options.pool).map_err(ClusterError::invalid_url)?;
    if options.handle_signals {
        signals::install();
    }
    let Some(mut fetcher) = connect_until_stopped(&backend, &options.pool) else {
        return Ok(());
    };
    let description = format!(
        "{}:{} threads={}",
        hostname(),
        std::process::id(),
        options.threads
    );
    let name = retry_until_stopped(&options.pool, "register", || {
        fetcher.register_worker(&description)
    })
    .ok_or(ClusterError::Unavailable(Reason::new(
        "stopped before registering",
    )))?;

    let shared = Arc::new(Worker {
        name,
        pool: options.pool.clone(),
        capacity: options.capacity(),
        state: Mutex::new(State::default()),
        work_ready: Condvar::new(),
        space_free: Condvar::new(),
        completed: Condvar::new(),
    });
    let mut threads = Vec::new();
    for n in 0..options.threads {
        let shared = shared.clone();
        threads.push(spawn(&format!("run-{n}"), move || executor(&shared))?);
    }
    let completer_connection = connect_until_stopped(&backend, &options.pool);
    let keeper_connection = connect_until_stopped(&backend, &options.pool);
    if let (Some(completer_connection), Some(keeper_connection)) =
        (completer_connection, keeper_connection)
    {
        let worker = shared.clone();
        threads.push(spawn("complete", move || {
            completer(&worker, completer_connection)
        })?);
        let worker = shared.clone();
        threads.push(spawn("keep", move || keeper(&worker, keeper_connection))?);
        fetch_until_stopped(&shared, fetcher.as_mut());
    }

    // Stop: nothing new starts; what was fetched but not started goes back to the queue.
    let unstarted: Vec<Delivery> = {
        let mut state = shared.lock();
        state.stopping = true;
        let unstarted: Vec<Delivery> = state.local.drain(..).collect();
        for delivery in &unstarted {
            state.entries.remove(&delivery.entry);
        }
        state.held -= unstarted.len();
        unstarted
    };
    shared.wake_all();
    if !unstarted.is_empty() {
        let entries: Vec<String> = unstarted.into_iter().map(|d| d.entry).collect();
        // If the broker is away for long, give up: the lease hands these tasks to others anyway.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut backoff = Backoff::new();
        while let Err(error) = fetcher.release(&shared.name, &entries) {
            if Instant::now() > deadline {
                eprintln!("futurepool worker: could not release {} tasks ({error}); their leases will expire", entries.len());
                break;
            }
            backoff.wait();
        }
    }
    for thread in threads {
        let _ = thread.join();
    }
    // Everything this worker ran is published; hand back anything else it still holds.
    let mut backoff = Backoff::new();
    while let Err(error) = fetcher.retire_worker(&shared.name) {
        if backoff.wait() > 10 {
            eprintln!("futurepool worker: could not sign off ({error}); its leases will expire");
            break;
        }
    }
    Ok(())
}

/// Serves as a cluster worker if `FUTUREPOOL_CLUSTER_WORKER` names a Redis URL, then exits the process;
/// returns otherwise. Called by `futurepool::init()`. `FUTUREPOOL_POOL`, `FUTUREPOOL_THREADS` and
/// `FUTUREPOOL_PREFETCH` override the pool name, the thread count and the prefetch.
pub(crate) fn serve_if_requested() {
    let Ok(url) = std::env::var(WORKER_ENV) else {
        return;
    };
    if !(url.starts_with("redis://") || url.starts_with("rediss://") || url.starts_with("unix://"))
    {
        return;
    }
    // A program a task starts must not become a cluster worker too (issue 9, case 11). Sound
    // despite `remove_var`'s race with concurrent `getenv`: this runs inside `init()`, the first
    // line of `main`, before the program or this worker has started a thread.
    std::env::remove_var(WORKER_ENV);
    let mut options = ServeOptions::default();
    if let Ok(pool) = std::env::var("FUTUREPOOL_POOL") {
        options = options.pool(pool);
    }
    let number = |name: &str| std::env::var(name).ok().and_then(|v| v.parse().ok());
    if let Some(threads) = number("FUTUREPOOL_THREADS") {
        options = options.threads(threads);
    }
    if let Some(prefetch) = number("FUTUREPOOL_PREFETCH") {
        options = options.prefetch(prefetch);
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
    pool: String,
    capacity: usize,
    state: Mutex<State>,
    /// Executors wait here for tasks.
    work_ready: Condvar,
    /// The fetcher waits here for capacity.
    space_free: Condvar,
    /// The completer waits here for finished tasks.
    completed: Condvar,
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
    executors_running: usize,
    stopping: bool,
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

    fn accept(&self, deliveries: Vec<Delivery>) {
        if deliveries.is_empty() {
            return;
        }
        let mut state = self.lock();
        state.held += deliveries.len();
        for delivery in deliveries {
            state.entries.insert(delivery.entry.clone());
            state.local.push_back(delivery);
        }
        drop(state);
        self.work_ready.notify_all();
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

fn connect_until_stopped(backend: &RedisBackend, pool: &str) -> Option<Box<dyn Connection>> {
    retry_until_stopped(pool, "connect", || backend.connect())
}

/// Retries `attempt` with backoff until it succeeds or a stop signal arrives.
fn retry_until_stopped<T>(
    pool: &str,
    what: &str,
    mut attempt: impl FnMut() -> Result<T, BrokerError>,
) -> Option<T> {
    let mut backoff = Backoff::new();
    loop {
        if signals::stop_requested() {
            return None;
        }
        match attempt() {
            Ok(value) => return Some(value),
            Err(error) => {
                report(pool, what, &error, &backoff);
                backoff.wait();
            }
        }
    }
}

fn report(pool: &str, what: &str, error: &BrokerError, backoff: &Backoff) {
    if backoff.first_failure() {
        eprintln!("futurepool worker {pool:?}: cannot {what} ({error}); retrying with backoff");
    }
}

fn fetch_until_stopped(worker: &Worker, connection: &mut dyn Connection) {
    let mut backoff = Backoff::new();
    while !signals::stop_requested() {
        let free = {
            let mut state = worker.lock();
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
        match connection.fetch(&worker.name, free, FETCH_BLOCK) {
            Ok(deliveries) => {
                backoff.reset();
                worker.accept(deliveries);
            }
            // A stop signal interrupts a blocked read (sockets with a timeout are not restarted);
            // whatever that read delivered is put back by `retire_worker`.
            Err(_) if signals::stop_requested() => break,
            Err(error) => {
                report(&worker.pool, "fetch tasks", &error, &backoff);
                backoff.wait();
            }
        }
    }
}

fn executor(worker: &Worker) {
    worker.lock().executors_running += 1;
    loop {
        let delivery = {
            let mut state = worker.lock();
            loop {
                if let Some(delivery) = state.local.pop_front() {
                    break delivery;
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
        let outcome = run(&delivery);
        let mut state = worker.lock();
        state.finished.push(Completion {
            entry: delivery.entry,
            task_id: delivery.task_id,
            outcome,
        });
        if state.finished.len() == 1 {
            worker.completed.notify_all();
        }
    }
}

/// Runs one task through the registry; every way it can end becomes an outcome.
fn run(delivery: &Delivery) -> Vec<u8> {
    match registry::invoke(&delivery.function, &delivery.arg) {
        Ok(bytes) => outcome::value(&bytes),
        Err(registry::InvokeError::Panicked(panic)) => outcome::panicked(&panic),
        Err(other) => outcome::transfer(&other.to_string()),
    }
}

fn completer(worker: &Worker, mut connection: Box<dyn Connection>) {
    let mut backoff = Backoff::new();
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
        while let Err(error) = connection.complete(&batch) {
            report(&worker.pool, "publish results", &error, &backoff);
            backoff.wait();
        }
        backoff.reset();
        let mut state = worker.lock();
        state.held -= batch.len();
        for completion in &batch {
            state.entries.remove(&completion.entry);
        }
        drop(state);
        worker.space_free.notify_all();
    }
}

fn keeper(worker: &Worker, mut connection: Box<dyn Connection>) {
    let mut config = connection.config().unwrap_or_default();
    let mut backoff = Backoff::new();
    loop {
        let tick = (config.lease / 4).max(Duration::from_millis(25));
        let (entries, free) = {
            let state = worker.lock();
            let state = worker
                .space_free
                .wait_timeout_while(state, tick, |s| !(s.stopping && s.held == 0))
                .unwrap_or_else(|p| p.into_inner())
                .0;
            if state.stopping && state.held == 0 {
                return;
            }
            let free = if state.stopping {
                0
            } else {
                worker.capacity.saturating_sub(state.held)
            };
            (state.entries.iter().cloned().collect::<Vec<_>>(), free)
        };
        match beat(worker, connection.as_mut(), &entries, free, &mut config) {
            Ok(()) => backoff.reset(),
            Err(error) => {
                report(&worker.pool, "heartbeat", &error, &backoff);
                backoff.wait();
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
    *config = connection.config()?;
    // Even a full worker reaps: with no room to claim, it still dead-letters exhausted tasks, so
    // their callers hear about it while every worker is busy.
    let reaped = connection.reap(&worker.name, *config, free)?;
    if reaped.dead_lettered > 0 {
        eprintln!(
            "futurepool worker {:?}: {} tasks lost a worker {} times and were dead-lettered",
            worker.pool, reaped.dead_lettered, config.max_deliveries
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
