//! The thread pool: Python's `ThreadPoolExecutor`, for Rust.
//!
//! Layout:
//! - `mod.rs`: [`ThreadPool`], the handle users hold;
//! - `builder.rs`: [`ThreadPoolBuilder`];
//! - `shared.rs`: the queue, the sleeping workers and the life cycle, shared with the workers;
//! - `worker.rs`: what a worker thread does;
//! - `scope.rs`: [`ThreadPool::scope`], tasks that borrow from the caller's stack;
//! - `chain.rs`: [`Task::then`](crate::Task::then), a task that runs when another succeeded;
//! - `loom_tests.rs`: model checks of the submit / sleep / wake / shutdown hand-off;
//! - `README.md`: how a job reaches a worker without lost wake-ups or needless system calls.

// Under loom only its own models use it (the pool's models use a stand-in, see `injector.rs`).
#[cfg_attr(loom, allow(dead_code))]
mod block_queue;
mod builder;
mod chain;
mod injector;
#[cfg(all(test, loom))]
mod loom_tests;
mod padded;
mod scope;
mod shared;
mod worker;

use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::executor::{Executor, Payload, Shutdown, TaskFn};
use crate::task::{Job, Task};

pub use self::builder::ThreadPoolBuilder;
pub use self::scope::Scope;
use self::shared::{Config, Shared};
pub(crate) use self::worker::help_while_waiting;

/// A pool of worker threads that runs closures and hands back [`Task`] handles.
///
/// Workers start lazily (at most one per submit, only when no idle worker can take the task, never
/// more than [`max_workers`](ThreadPool::max_workers)) and stay for the pool's life, so
/// back-to-back tasks reuse warm threads. A panicking task fails with
/// [`TaskError::Panicked`](crate::TaskError::Panicked) and its worker lives on.
///
/// Dropping the pool is `shutdown(Shutdown::default())`: it waits for every task it accepted, like
/// leaving Python's `with ThreadPoolExecutor() as pool:` block. Share a pool between threads by
/// reference (it is `Sync`) or in an `Arc`.
///
/// # Waiting on the pool from inside it
///
/// A task or done-callback may submit to its own pool and wait (`result`, `wait`,
/// [`wait`](crate::wait), [`as_completed`](crate::as_completed), iterating a `map`, a
/// [`scope`](ThreadPool::scope)): the waiting worker runs the pool's queued jobs meanwhile
/// (help-while-waiting), the awaited task first, so this never waits for itself, even with one
/// worker. It stops helping once its wait is over, after the job it is running. Such waits nest
/// on the worker's stack (about 2,000 links of a `submit(f).result()` recursion with the default
/// 2 MiB stack in a release build; more with [`stack_size`](ThreadPoolBuilder::stack_size)); a
/// wait that finds the stack nearly full lends a thread with a fresh stack to run the jobs for
/// it, up to 16 in a chain; past those it blocks without helping, and says so once on stderr.
///
/// # Warning: a job run while waiting shares the waiter's thread
///
/// A job the waiter runs meanwhile runs on its stack while the waiting task holds whatever it
/// holds: a task that waits while holding a lock another task of this pool takes can deadlock
/// with itself. Release locks before waiting.
///
/// # Examples
///
/// ```
/// use futurepool::ThreadPool;
///
/// let pool = ThreadPool::new(4);
/// let tasks: Vec<_> = (1..=3u64).map(|n| pool.submit(move || n * n)).collect();
/// let squares: Vec<u64> = tasks.iter().map(|t| t.result().unwrap()).collect();
/// assert_eq!(squares, [1, 4, 9]);
/// ```
pub struct ThreadPool {
    shared: Arc<Shared>,
}

impl ThreadPool {
    /// A pool of at most `max_workers` threads, every other setting at its default (see
    /// [`ThreadPoolBuilder`]).
    ///
    /// # Panics
    ///
    /// If `max_workers` is 0, at the caller's line. The same rule holds for every pool: a count
    /// that makes the pool useless (0 workers) is a bug in the calling code and panics, like
    /// [`ProcessPool::new(0)`](crate::ProcessPool::new); what the *environment* can make fail (a
    /// missing `init()`, no executable, a broker that is down) is a returned error.
    ///
    /// ```should_panic
    /// let pool = futurepool::ThreadPool::new(0); // panics: "a thread pool needs at least one worker"
    /// ```
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = futurepool::ThreadPool::new(8);
    /// assert_eq!(pool.max_workers(), 8);
    /// assert_eq!(pool.worker_count(), 0, "threads start on demand");
    /// ```
    #[track_caller]
    pub fn new(max_workers: usize) -> Self {
        Self::builder().max_workers(max_workers).build()
    }

    /// A builder for a pool with a thread name prefix, an initializer or a bounded queue.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = futurepool::ThreadPool::builder().max_workers(2).max_queued(100).build();
    /// assert_eq!(pool.submit(|| "ok").result(), Ok("ok"));
    /// ```
    pub fn builder() -> ThreadPoolBuilder {
        ThreadPoolBuilder::new()
    }

    fn from_config(config: Config) -> Self {
        ThreadPool {
            shared: Shared::new(config),
        }
    }

    /// Runs `f` on a worker thread and returns its task.
    ///
    /// With a bounded queue ([`ThreadPoolBuilder::max_queued`]) this blocks while the queue is
    /// full. After [`shutdown`](ThreadPool::shutdown) the task comes back already ended with
    /// [`TaskError::ShutDown`](crate::TaskError::ShutDown) (never silently dropped), and on a broken
    /// pool with [`TaskError::PoolBroken`](crate::TaskError::PoolBroken).
    ///
    /// Dropping the returned handle does not cancel the work.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = futurepool::ThreadPool::new(2);
    /// let task = pool.submit(|| (1..=10).sum::<u32>());
    /// assert_eq!(task.result(), Ok(55));
    /// ```
    pub fn submit<T, F>(&self, f: F) -> Task<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + Sync + 'static,
    {
        self.submit_fallible(move || Ok::<T, Infallible>(f()))
    }

    /// Runs `f` on a worker thread; an `Err(e)` it returns becomes the task's own failure,
    /// [`TaskError::Failed(e)`](crate::TaskError::Failed), distinct from a panic (and counted by
    /// [`ReturnWhen::FirstException`](crate::ReturnWhen::FirstException)).
    ///
    /// Blocks and refuses exactly like [`submit`](ThreadPool::submit).
    ///
    /// # Examples
    ///
    /// ```
    /// use futurepool::{TaskError, ThreadPool};
    ///
    /// let pool = ThreadPool::new(2);
    /// let task = pool.submit_fallible(|| "12a".parse::<i32>());
    /// assert!(matches!(task.result(), Err(TaskError::Failed(_))));
    /// ```
    pub fn submit_fallible<T, E, F>(&self, f: F) -> Task<T, E>
    where
        F: FnOnce() -> Result<T, E> + Send + 'static,
        T: Send + Sync + 'static,
        E: Send + Sync + 'static,
    {
        self.submit_fallible_with_soft_time_limit(f, self.shared.config.soft_time_limit)
    }

    /// [`submit`](ThreadPool::submit) with this task's own soft time limit (`None`: none),
    /// overriding the pool's ([`ThreadPoolBuilder::soft_time_limit`]): `limit` after the task
    /// starts, its [`current_token()`](crate::current_token) reads cancelled. The task goes on
    /// and its value stands; threads have no hard limit (they cannot be killed).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let pool = futurepool::ThreadPool::new(1);
    /// let task = pool.submit_with_soft_time_limit(
    ///     || {
    ///         let token = futurepool::current_token();
    ///         while !token.is_cancelled() {
    ///             std::thread::sleep(Duration::from_millis(1));
    ///         }
    ///         "wrapped up"
    ///     },
    ///     Some(Duration::from_millis(10)),
    /// );
    /// assert_eq!(task.result(), Ok("wrapped up"));
    /// ```
    pub fn submit_with_soft_time_limit<T, F>(&self, f: F, limit: Option<Duration>) -> Task<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + Sync + 'static,
    {
        self.submit_fallible_with_soft_time_limit(move || Ok::<T, Infallible>(f()), limit)
    }

    /// [`submit_fallible`](ThreadPool::submit_fallible) with this task's own soft time limit;
    /// see [`submit_with_soft_time_limit`](ThreadPool::submit_with_soft_time_limit).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let pool = futurepool::ThreadPool::new(1);
    /// let task = pool.submit_fallible_with_soft_time_limit(
    ///     || if futurepool::current_token().is_cancelled() { Err("late") } else { Ok(1) },
    ///     None,
    /// );
    /// assert_eq!(task.result(), Ok(1));
    /// ```
    pub fn submit_fallible_with_soft_time_limit<T, E, F>(
        &self,
        f: F,
        limit: Option<Duration>,
    ) -> Task<T, E>
    where
        F: FnOnce() -> Result<T, E> + Send + 'static,
        T: Send + Sync + 'static,
        E: Send + Sync + 'static,
    {
        let (task, job) = match limit {
            // The clock starts when the worker starts the closure, not at submit.
            Some(limit) => Job::new(move || crate::token::with_soft_time_limit(limit, f)),
            None => Job::new(f),
        };
        crate::trace::trace_event!(
            tracing::Level::TRACE,
            pool = %self.shared.config.thread_name_prefix,
            task = job.id(),
            "submitted"
        );
        self.shared.submit(job);
        task
    }

    /// Stops taking work; see [`Shutdown`]. May be called any number of times, from any thread.
    ///
    /// - Later submits return a task already ended with
    ///   [`TaskError::ShutDown`](crate::TaskError::ShutDown).
    /// - With [`cancel_pending`](Shutdown::cancel_pending), every queued task is cancelled at once
    ///   (its waiters woken, its callbacks run in this thread); running tasks finish. Otherwise the
    ///   workers drain the queue first.
    /// - With [`abort_running`](Shutdown::abort_running), queued tasks are cancelled and running
    ///   ones aborted: their tokens read cancelled and each ends cancelled when its closure
    ///   returns (threads cannot be killed; see [`Task::abort`]).
    /// - With [`wait`](Shutdown::wait) (the default), returns once every worker has exited; any
    ///   number of threads may wait at once. Called from a task (or callback) of this very pool,
    ///   it waits until every *other* worker has finished or is itself waiting in `shutdown`
    ///   (so two tasks shutting their pool down do not wait for each other), and its own task
    ///   goes on; a `shutdown(wait)` outside the pool waits for that task too.
    ///
    /// # Examples
    ///
    /// ```
    /// use futurepool::{Shutdown, TaskError, ThreadPool};
    ///
    /// let pool = ThreadPool::new(1);
    /// let queued: Vec<_> = (0..50)
    ///     .map(|_| pool.submit(|| std::thread::sleep(std::time::Duration::from_millis(1))))
    ///     .collect();
    /// pool.shutdown(Shutdown::default().cancel_pending(true));
    /// assert!(queued.iter().all(|t| t.is_done()));
    /// assert_eq!(pool.submit(|| ()).result(), Err(TaskError::ShutDown));
    /// ```
    pub fn shutdown(&self, how: Shutdown) {
        if how.aborts_running() {
            // Before closing, so a task that sees the pool closed also sees its token set.
            self.shared
                .aborting
                .store(true, std::sync::atomic::Ordering::Release);
        }
        let cancelled = self.shared.close(how.cancels_pending());
        self.shared.counters.cancelled(cancelled.len());
        for job in cancelled {
            job.cancel();
        }
        if how.waits() {
            self.shared
                .wait_for_workers(worker::is_worker_of(&self.shared));
        }
    }

    /// The most worker threads this pool starts.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(futurepool::ThreadPool::new(3).max_workers(), 3);
    /// ```
    pub fn max_workers(&self) -> usize {
        self.shared.config.max_workers
    }

    /// How many worker threads are alive now (started lazily, so 0 before the first submit).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = futurepool::ThreadPool::new(4);
    /// pool.submit(|| ()).wait();
    /// assert_eq!(pool.worker_count(), 1, "one task needs one worker");
    /// ```
    pub fn worker_count(&self) -> usize {
        self.shared.worker_count()
    }

    /// What the pool has done and is doing: tasks queued, running, completed, failed and
    /// cancelled, live workers, and the workers' busy time.
    ///
    /// Cheap to call at any rate (it reads counters, taking only the pool's short locks), and free
    /// for the tasks: each worker counts its own tasks with a plain store, and reads the clock only
    /// when it runs out of queued work and when work comes back, never per task while the queue is
    /// full. `busy` includes the time of tasks still running.
    ///
    /// # Examples
    ///
    /// ```
    /// use futurepool::{Shutdown, ThreadPool};
    /// # std::panic::set_hook(Box::new(|_| {}));
    ///
    /// let pool = ThreadPool::new(2);
    /// pool.submit(|| 1).wait();
    /// pool.submit(|| -> u32 { panic!("boom") }).wait();
    /// let stats = pool.stats();
    /// assert_eq!((stats.completed, stats.failed), (1, 1));
    /// assert!(stats.workers >= 1);
    /// ```
    pub fn stats(&self) -> crate::Stats {
        self.shared.stats()
    }
}

impl Default for ThreadPool {
    /// A pool with every setting at its default (see [`ThreadPoolBuilder`]).
    fn default() -> Self {
        Self::builder().build()
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        self.shutdown(Shutdown::default());
    }
}

impl fmt::Debug for ThreadPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadPool")
            .field("max_workers", &self.max_workers())
            .field("workers", &self.worker_count())
            .field("thread_name_prefix", &self.shared.config.thread_name_prefix)
            .finish_non_exhaustive()
    }
}

impl Executor for ThreadPool {
    fn submit_fn<F, A, R>(&self, f: F, arg: A) -> Task<R>
    where
        F: TaskFn<A, R>,
        A: Payload,
        R: Payload,
    {
        self.submit(move || f(arg))
    }

    fn submit_fallible_fn<F, A, R, E>(&self, f: F, arg: A) -> Task<R, E>
    where
        F: TaskFn<A, Result<R, E>>,
        A: Payload,
        R: Payload,
        E: Payload,
    {
        self.submit_fallible(move || f(arg))
    }

    fn shutdown(&self, how: Shutdown) {
        ThreadPool::shutdown(self, how)
    }

    fn default_map_buffer(&self) -> usize {
        2 * self.max_workers()
    }
}
