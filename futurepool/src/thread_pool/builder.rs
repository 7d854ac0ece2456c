//! Configuring a [`ThreadPool`] before it starts.

use std::fmt;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::shared::{Config, Initializer};
use super::ThreadPool;

/// The default thread name prefix, `futurepool-{k}` for the `k`-th pool (from 0) built without a
/// prefix of its own, so the threads of two pools can be told apart: `futurepool-0-0`,
/// `futurepool-0-1`, ..., `futurepool-1-0`, ... (Python names them `ThreadPoolExecutor-{k}_{n}`.)
fn default_thread_name_prefix() -> String {
    static POOLS: AtomicUsize = AtomicUsize::new(0);
    format!("futurepool-{}", POOLS.fetch_add(1, Ordering::Relaxed))
}

/// Configures and builds a [`ThreadPool`]; get one from [`ThreadPool::builder`].
///
/// # Examples
///
/// ```
/// use futurepool::ThreadPool;
///
/// let pool = ThreadPool::builder()
///     .max_workers(4)
///     .thread_name_prefix("fetcher")
///     .max_queued(1_000)
///     .build();
/// let name = pool.submit(|| std::thread::current().name().map(String::from)).result();
/// assert_eq!(name.unwrap().as_deref(), Some("fetcher-0"));
/// ```
#[must_use = "a builder does nothing until `build` is called"]
#[derive(Default)]
pub struct ThreadPoolBuilder {
    max_workers: Option<NonZeroUsize>,
    thread_name_prefix: Option<String>,
    initializer: Option<Initializer>,
    max_queued: Option<NonZeroUsize>,
    soft_time_limit: Option<Duration>,
    stack_size: Option<usize>,
}

impl ThreadPoolBuilder {
    /// A builder with every setting at its default.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = futurepool::ThreadPoolBuilder::new().build();
    /// assert_eq!(pool.max_workers(), futurepool::ThreadPoolBuilder::default_max_workers());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// The most worker threads the pool will start. Workers are started lazily, one per submit at
    /// most and only when no idle worker can take the task, so a pool that never gets busy never
    /// starts them all.
    ///
    /// Default: [`default_max_workers`](ThreadPoolBuilder::default_max_workers).
    ///
    /// # Panics
    ///
    /// If `n` is 0 (a pool without workers could never run anything), at the caller's line; see
    /// [`ThreadPool::new`](crate::ThreadPool::new) for the rule.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = futurepool::ThreadPool::builder().max_workers(3).build();
    /// assert_eq!(pool.max_workers(), 3);
    /// ```
    #[track_caller]
    pub fn max_workers(mut self, n: usize) -> Self {
        self.max_workers = Some(
            NonZeroUsize::new(n)
                .expect("a thread pool needs at least one worker: max_workers must be at least 1"),
        );
        self
    }

    /// Python's default, `min(32, cpus + 4)`.
    ///
    /// A thread pool is mostly used for I/O: threads spend their time blocked on the network or the
    /// disk, so more threads than cores keeps the cores busy. The `+ 4` gives even a one- or two-core
    /// machine several requests in flight; the cap of 32 stops a many-core machine from starting
    /// hundreds of threads (each with its own stack) for work that is usually limited by something
    /// else. For CPU-bound work, set [`max_workers`](ThreadPoolBuilder::max_workers) to the number of
    /// cores instead (or use a process pool).
    ///
    /// # Examples
    ///
    /// ```
    /// let n = futurepool::ThreadPoolBuilder::default_max_workers();
    /// assert!((5..=32).contains(&n));
    /// ```
    pub fn default_max_workers() -> usize {
        let cpus = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
        (cpus + 4).min(32)
    }

    /// Worker threads are named `{prefix}-{n}`, `n` counting from 0 in the order they start.
    /// The name shows in panic messages, debuggers and `top -H`.
    ///
    /// The default prefix is `futurepool-{k}`, `k` counting the pools built without a prefix of
    /// their own (from 0, in this process), so two pools' threads never share a name: the first
    /// such pool's threads are `futurepool-0-0`, `futurepool-0-1`, ..., the next one's
    /// `futurepool-1-0`, ... (Linux shows only a thread name's first 15 bytes in `top`.)
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = futurepool::ThreadPool::builder().thread_name_prefix("io").build();
    /// let name = pool.submit(|| std::thread::current().name().unwrap().to_string());
    /// assert_eq!(name.result().unwrap(), "io-0");
    ///
    /// let (a, b) = (futurepool::ThreadPool::new(1), futurepool::ThreadPool::new(1));
    /// let name_in = |pool: &futurepool::ThreadPool| {
    ///     pool.submit(|| std::thread::current().name().unwrap().to_string()).result().unwrap()
    /// };
    /// let (a, b) = (name_in(&a), name_in(&b));
    /// assert!(a.starts_with("futurepool-") && a.ends_with("-0") && a != b, "{a} {b}");
    /// ```
    pub fn thread_name_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.thread_name_prefix = Some(prefix.into());
        self
    }

    /// Runs `init` in each worker thread before its first task (to open a connection, set a
    /// thread-local, ...).
    ///
    /// If it returns an error or panics, the pool is **broken**: every queued task ends with
    /// [`TaskError::PoolBroken`](crate::TaskError::PoolBroken) carrying the reason, and so does
    /// every later submit. Tasks already running finish normally.
    ///
    /// # Examples
    ///
    /// ```
    /// use futurepool::{TaskError, ThreadPool};
    ///
    /// let pool = ThreadPool::builder()
    ///     .initializer(|| Err::<(), _>("database unreachable"))
    ///     .build();
    /// match pool.submit(|| 1).result() {
    ///     Err(TaskError::PoolBroken(reason)) => assert!(reason.as_str().contains("database unreachable")),
    ///     other => panic!("expected a broken pool, got {other:?}"),
    /// }
    /// ```
    pub fn initializer<F, E>(mut self, init: F) -> Self
    where
        F: Fn() -> Result<(), E> + Send + Sync + 'static,
        E: fmt::Display,
    {
        self.initializer = Some(Arc::new(move || init().map_err(|e| e.to_string())));
        self
    }

    /// Every task's soft time limit: `limit` after a task starts, its
    /// [`current_token()`](crate::current_token) reads cancelled, so a task that checks it can
    /// wrap up and return. Nothing else happens: a thread cannot be killed, so threads have no
    /// hard time limit (a [`ProcessPool`](crate::ProcessPool)'s `time_limit` kills a worker) and
    /// the task's value stands. Per task: [`ThreadPool::submit_with_soft_time_limit`]. Default:
    /// none.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let pool = futurepool::ThreadPool::builder()
    ///     .soft_time_limit(Duration::from_millis(20))
    ///     .build();
    /// let rounds = pool.submit(|| {
    ///     let token = futurepool::current_token();
    ///     let mut rounds = 0;
    ///     while !token.is_cancelled() {
    ///         std::thread::sleep(Duration::from_millis(1));
    ///         rounds += 1;
    ///     }
    ///     rounds
    /// });
    /// assert!(rounds.result().is_ok(), "the task returned, with its value");
    /// ```
    pub fn soft_time_limit(mut self, limit: Duration) -> Self {
        self.soft_time_limit = Some(limit);
        self
    }

    /// Bounds the queue of tasks waiting for a worker: once `n` tasks are queued, `submit` blocks
    /// until a worker takes one (backpressure, which Python's pools never had). Unbounded by default.
    ///
    /// A task that submits to its own pool while the queue is full waits like any submitter; if
    /// every worker does that, nothing is left to drain the queue. Keep nested submits off bounded
    /// pools.
    ///
    /// # Panics
    ///
    /// If `n` is 0 (a submit could then never complete), at the caller's line.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = futurepool::ThreadPool::builder().max_workers(1).max_queued(2).build();
    /// let tasks: Vec<_> = (0..10).map(|i| pool.submit(move || i)).collect(); // waits for room
    /// assert_eq!(tasks[9].result(), Ok(9));
    /// ```
    #[track_caller]
    pub fn max_queued(mut self, n: usize) -> Self {
        self.max_queued = Some(NonZeroUsize::new(n).expect("max_queued must be at least 1"));
        self
    }

    /// The size of each worker thread's stack, in bytes; by default the standard library's (2 MiB
    /// unless `RUST_MIN_STACK` says otherwise).
    ///
    /// Besides the tasks' own frames, the stack bounds how deeply waits inside tasks nest while
    /// they run the pool's queued jobs (see [`ThreadPool`]): a chain of tasks each submitting the
    /// next and waiting for it runs on one worker's stack, about 1 KB per link in a release build.
    /// Past a stack's end such a chain goes on on lent threads (see [`ThreadPool`]), which a
    /// bigger stack spares. As with
    /// [`std::thread::Builder::stack_size`], a stack too small for a task's own frames overflows,
    /// which aborts the process.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use futurepool::ThreadPool;
    ///
    /// // Each level submits the next to the same one-worker pool and waits for it.
    /// fn chain(pool: Arc<ThreadPool>, n: u64) -> u64 {
    ///     if n == 0 {
    ///         return 0;
    ///     }
    ///     let inner = Arc::clone(&pool);
    ///     pool.submit(move || chain(inner, n - 1)).result().unwrap() + 1
    /// }
    ///
    /// let pool = Arc::new(ThreadPool::builder().max_workers(1).stack_size(16 << 20).build());
    /// let inner = Arc::clone(&pool);
    /// assert_eq!(pool.submit(move || chain(inner, 2_000)).result(), Ok(2_000));
    /// ```
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = Some(bytes);
        self
    }

    /// Builds the pool. No thread starts until the first task is submitted.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = futurepool::ThreadPool::builder().build();
    /// assert_eq!(pool.worker_count(), 0);
    /// ```
    pub fn build(self) -> ThreadPool {
        ThreadPool::from_config(Config {
            max_workers: self
                .max_workers
                .map_or_else(Self::default_max_workers, NonZeroUsize::get),
            thread_name_prefix: self
                .thread_name_prefix
                .unwrap_or_else(default_thread_name_prefix),
            initializer: self.initializer,
            max_queued: self.max_queued.map(NonZeroUsize::get),
            soft_time_limit: self.soft_time_limit,
            stack_size: self.stack_size,
        })
    }
}

impl fmt::Debug for ThreadPoolBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadPoolBuilder")
            .field("max_workers", &self.max_workers)
            .field("thread_name_prefix", &self.thread_name_prefix)
            .field("initializer", &self.initializer.as_ref().map(|_| "Fn"))
            .field("max_queued", &self.max_queued)
            .field("soft_time_limit", &self.soft_time_limit)
            .field("stack_size", &self.stack_size)
            .finish()
    }
}
