//! The cancellation token a running task reads: `CancelToken` and `current_token()`.
//!
//! A task run by a [`ThreadPool`](crate::ThreadPool) reads its token from its own task's state
//! word (the `ABORT` bit, see `task/README.md`), so a token costs no allocation and no field: the
//! executor only puts a reference to the running task in a thread-local around the closure.
//! A pool's `shutdown` with [`abort_running`](crate::Shutdown::abort_running) sets a flag every
//! token of that pool also reads.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a running task's token is tied to, type-erased: its own task's state.
pub(crate) trait AbortSource: Send + Sync {
    /// True once `abort` reached the task (or the task ended cancelled).
    fn is_aborted(&self) -> bool;
}

/// A cluster worker's running task: the flag its keeper sets when the task is aborted on the
/// broker.
impl AbortSource for AtomicBool {
    fn is_aborted(&self) -> bool {
        self.load(Ordering::Acquire)
    }
}

/// A cheap, clonable flag a task polls to learn it should stop.
///
/// Inside a task, [`current_token`] returns the task's own token: it reads cancelled once
/// [`Task::abort`](crate::Task::abort) was called on the task, or its pool was shut down with
/// [`Shutdown::abort_running`](crate::Shutdown::abort_running). A task that checks it now and
/// then (between items, around blocking calls) can clean up and return early; a thread cannot be
/// stopped any other way. Outside any task, `current_token()` is a token that is never cancelled.
///
/// A token made with [`CancelToken::new`] is a plain flag you set with
/// [`cancel`](CancelToken::cancel): handy to hand to a function that also takes a task's token,
/// or in tests.
///
/// Clones share one flag; a token is `Send + Sync` and one pointer wide.
///
/// # Examples
///
/// ```
/// let token = futurepool::CancelToken::new();
/// let seen_by_worker = token.clone();
/// assert!(!seen_by_worker.is_cancelled());
/// token.cancel();
/// assert!(seen_by_worker.is_cancelled());
/// ```
#[derive(Clone)]
pub struct CancelToken(Source);

#[derive(Clone)]
enum Source {
    /// Outside any task.
    Never,
    /// A standalone flag (also a process-pool worker's, set by the pool's messages).
    Flag(Arc<AtomicBool>),
    /// The call a process-pool worker runs: cancelled once the pool signalled that this call
    /// passed its soft time limit.
    WorkerCall(u64),
    /// A thread-pool task's own state, and its pool's abort-everything flag.
    Task {
        task: Arc<dyn AbortSource>,
        pool: Option<Arc<AtomicBool>>,
        /// The task's soft time limit, as an instant: from then on the token reads cancelled.
        soft_deadline: Option<Instant>,
    },
}

impl CancelToken {
    /// A fresh token, not cancelled, that [`cancel`](CancelToken::cancel) sets.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(!futurepool::CancelToken::new().is_cancelled());
    /// ```
    pub fn new() -> Self {
        CancelToken(Source::Flag(Arc::new(AtomicBool::new(false))))
    }

    /// A token that is never cancelled: what [`current_token`] returns outside any task.
    ///
    /// # Examples
    ///
    /// ```
    /// let token = futurepool::CancelToken::never();
    /// token.cancel();
    /// assert!(!token.is_cancelled(), "cancel has no effect on it");
    /// ```
    pub fn never() -> Self {
        CancelToken(Source::Never)
    }

    /// True once the work this token belongs to was asked to stop. One atomic load.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = futurepool::ThreadPool::new(1);
    /// let task = pool.submit(|| futurepool::current_token().is_cancelled());
    /// assert_eq!(task.result(), Ok(false), "nobody aborted it");
    /// ```
    pub fn is_cancelled(&self) -> bool {
        match &self.0 {
            Source::Never => false,
            Source::Flag(flag) => flag.load(Ordering::Acquire),
            Source::WorkerCall(call) => worker_soft_limit_passed(*call),
            Source::Task {
                task,
                pool,
                soft_deadline,
            } => {
                task.is_aborted()
                    || pool.as_ref().is_some_and(|p| p.load(Ordering::Acquire))
                    || soft_deadline.is_some_and(|d| Instant::now() >= d)
            }
        }
    }

    /// Sets a token made by [`CancelToken::new`] (every clone sees it). A task's own token is set
    /// by [`Task::abort`](crate::Task::abort) instead, so on it (and on
    /// [`never`](CancelToken::never)) this does nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// let token = futurepool::CancelToken::new();
    /// token.cancel();
    /// token.cancel();
    /// assert!(token.is_cancelled());
    /// ```
    pub fn cancel(&self) {
        if let Source::Flag(flag) = &self.0 {
            flag.store(true, Ordering::Release);
        }
    }

    /// The token of a task run on a thread pool.
    fn for_task(
        task: Arc<dyn AbortSource>,
        pool: Option<Arc<AtomicBool>>,
        soft_deadline: Option<Instant>,
    ) -> Self {
        CancelToken(Source::Task {
            task,
            pool,
            soft_deadline,
        })
    }
}

impl Default for CancelToken {
    /// Same as [`CancelToken::new`].
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for CancelToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.0 {
            Source::Never => "never",
            Source::Flag(_) => "flag",
            Source::WorkerCall(_) => "worker call",
            Source::Task { .. } => "task",
        };
        f.debug_struct("CancelToken")
            .field("kind", &kind)
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

// Through the loom facade: under loom every model thread is a fiber of one OS thread, so a std
// thread-local would carry a task of one execution into the next. (loom's `thread_local!` takes
// no `const { }` initialiser.)
#[allow(clippy::missing_const_for_thread_local)]
mod current {
    use super::*;

    crate::loom::thread_local! {
        /// The task running on this thread, if any: set around each closure by the executor.
        /// Only the task's `Arc` is cloned per task (a cache line this worker already owns); the
        /// token is built when the task asks for it.
        pub(super) static CURRENT: RefCell<Option<Arc<dyn AbortSource>>> = RefCell::new(None);
        /// The abort-everything flag of the pool this thread works for: set once per worker
        /// thread, so no task touches the pool's shared reference count.
        pub(super) static POOL_ABORT: RefCell<Option<Arc<AtomicBool>>> = RefCell::new(None);
        /// The soft time limit of the task running on this thread, as an instant.
        pub(super) static SOFT_DEADLINE: Cell<Option<Instant>> = Cell::new(None);
    }
}
use current::{CURRENT, POOL_ABORT, SOFT_DEADLINE};

/// The cancellation token of the task running on this thread.
///
/// Inside a task run by a [`ThreadPool`](crate::ThreadPool), it is that task's token (see
/// [`CancelToken`]); anywhere else, a token that is never cancelled, so library code can call it
/// unconditionally.
///
/// # Examples
///
/// ```
/// use futurepool::{current_token, ThreadPool};
///
/// let pool = ThreadPool::new(2);
/// let sum = pool.submit(|| {
///     let token = current_token();
///     let mut sum = 0u64;
///     for i in 0..1_000u64 {
///         if token.is_cancelled() {
///             break; // clean up and return early
///         }
///         sum += i;
///     }
///     sum
/// });
/// assert_eq!(sum.result(), Ok(499_500));
/// assert!(!current_token().is_cancelled(), "outside a task: never cancelled");
/// ```
pub fn current_token() -> CancelToken {
    let task = CURRENT
        .try_with(|current| current.borrow().clone())
        .ok()
        .flatten();
    match task {
        Some(task) => {
            let pool = POOL_ABORT
                .try_with(|pool| pool.borrow().clone())
                .ok()
                .flatten();
            let soft_deadline = SOFT_DEADLINE.try_with(Cell::get).ok().flatten();
            CancelToken::for_task(task, pool, soft_deadline)
        }
        None => match worker_call() {
            Some(call) => CancelToken(Source::WorkerCall(call)),
            None => CancelToken::never(),
        },
    }
}

/// Makes `task` this thread's current task until the guard drops, which restores the one before
/// (a task may run another inline).
pub(crate) fn enter(task: Arc<dyn AbortSource>) -> CurrentGuard {
    let previous = CURRENT
        .try_with(|current| current.replace(Some(task)))
        .ok()
        .flatten();
    CurrentGuard { previous }
}

/// Runs `f` (a task's closure) under a soft time limit: from `limit` after now, the token
/// `current_token()` gives inside it reads cancelled. Nothing else happens: the task goes on and
/// its value stands (a thread cannot be stopped; a soft limit is a request to wrap up).
/// `Duration::MAX` (a deadline that does not fit) means no limit.
pub(crate) fn with_soft_time_limit<R>(limit: Duration, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Instant>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let _ = SOFT_DEADLINE.try_with(|d| d.set(self.0));
        }
    }
    let deadline = Instant::now().checked_add(limit);
    let previous = SOFT_DEADLINE
        .try_with(|d| d.replace(deadline))
        .ok()
        .flatten();
    let _restore = Restore(previous);
    f()
}

/// Tells this thread's later tokens which pool-wide abort flag they also read (a worker thread
/// calls it once, before its first task).
pub(crate) fn set_pool_abort_flag(flag: Arc<AtomicBool>) {
    let _ = POOL_ABORT.try_with(|pool| pool.replace(Some(flag)));
}

/// Restores the previous current task on drop.
pub(crate) struct CurrentGuard {
    previous: Option<Arc<dyn AbortSource>>,
}

impl Drop for CurrentGuard {
    fn drop(&mut self) {
        let previous = self.previous.take();
        let _ = CURRENT.try_with(|current| current.replace(previous));
    }
}

/// The call this process runs as a process-pool worker, if it is one running a call.
#[cfg(target_os = "linux")]
fn worker_call() -> Option<u64> {
    crate::process_pool::current_call()
}
#[cfg(not(target_os = "linux"))]
fn worker_call() -> Option<u64> {
    None
}

#[cfg(target_os = "linux")]
fn worker_soft_limit_passed(call: u64) -> bool {
    crate::process_pool::soft_limit_passed(call)
}
#[cfg(not(target_os = "linux"))]
fn worker_soft_limit_passed(_: u64) -> bool {
    false
}
