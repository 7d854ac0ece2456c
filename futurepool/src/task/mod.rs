//! The task handle: what `submit` returns, like Python's `concurrent.futures.Future`.
//!
//! Layout:
//! - `core.rs`: the state machine (one atomic word, the outcome slot, the listener list);
//! - `listeners.rs`: who is woken when a task is done;
//! - `job.rs`: the task's allocation and the runnable half an executor's queue holds;
//! - `future.rs`: `.await` support;
//! - `README.md`: the protocol, and why no wake-up can be lost.

mod core;
mod future;
mod job;
mod listeners;
#[cfg(all(test, loom))]
mod loom_tests;

use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::TaskError;
use crate::loom::thread;
use crate::panic;

use self::core::{CancelAttempt, Core, Snapshot};
pub(crate) use self::job::Job;
use self::job::{ErasedJob, NoJob, TaskCell};
pub(crate) use self::listeners::Notify;
use self::listeners::{next_listener_id, Listener};

pub use self::future::TaskFuture;

/// A handle to a unit of work submitted to a pool: Python's `Future`, for Rust.
///
/// A `Task` is cheap to clone (one reference count), `Send` and `Sync`; every clone sees the same
/// task. Its outcome is set exactly once and can be read any number of times, from any clone.
/// Dropping handles never cancels the work: a pool runs what it accepted.
///
/// `T` is the value the task produces; `E` is its own error type (see
/// [`ThreadPool::submit_fallible`](crate::ThreadPool::submit_fallible)), [`Infallible`] when it has
/// none.
///
/// A task is in one of four states: *pending* (queued), *running*, *finished* (with a value or an
/// error) or *cancelled*. It is *done* once finished or cancelled. Each predicate reads the state
/// once, so they never contradict each other.
///
/// # Examples
///
/// ```
/// use futurepool::ThreadPool;
///
/// let pool = ThreadPool::new(4);
/// let task = pool.submit(|| 6 * 7);
/// assert_eq!(task.result().unwrap(), 42);
/// assert!(task.is_done());
/// ```
pub struct Task<T, E = Infallible> {
    cell: Arc<TaskCell<T, E, dyn ErasedJob>>,
}

impl<T, E> Clone for Task<T, E> {
    fn clone(&self) -> Self {
        Task {
            cell: self.cell.clone(),
        }
    }
}

impl<T, E> Task<T, E> {
    fn from_cell<J: ErasedJob + 'static>(cell: Arc<TaskCell<T, E, J>>) -> Self {
        Task { cell }
    }

    fn core(&self) -> &Core<T, E> {
        &self.cell.core
    }

    fn snapshot(&self) -> Snapshot {
        self.core().snapshot()
    }

    /// True once the task finished (with a value or an error) or was cancelled.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = futurepool::ThreadPool::new(1);
    /// let task = pool.submit(|| ());
    /// task.wait();
    /// assert!(task.is_done());
    /// ```
    pub fn is_done(&self) -> bool {
        self.snapshot().is_done()
    }

    /// True while the task's work is being executed.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::mpsc;
    /// let pool = futurepool::ThreadPool::new(1);
    /// let (started_tx, started) = mpsc::channel();
    /// let (release, release_rx) = mpsc::channel::<()>();
    /// let task = pool.submit(move || {
    ///     started_tx.send(()).unwrap();
    ///     release_rx.recv().unwrap();
    /// });
    /// started.recv().unwrap();
    /// assert!(task.is_running());
    /// release.send(()).unwrap();
    /// task.wait();
    /// assert!(!task.is_running());
    /// ```
    pub fn is_running(&self) -> bool {
        self.snapshot().is_running()
    }

    /// True if the task was cancelled before it started.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = futurepool::ThreadPool::new(1);
    /// let blocker = pool.submit(|| std::thread::sleep(std::time::Duration::from_millis(50)));
    /// let queued = pool.submit(|| ());
    /// assert!(queued.cancel());
    /// assert!(queued.is_cancelled() && queued.is_done());
    /// # blocker.wait();
    /// ```
    pub fn is_cancelled(&self) -> bool {
        self.snapshot().is_cancelled()
    }

    /// Cancels the task if it has not started yet.
    ///
    /// Returns true if the task is now cancelled (by this call or an earlier one): its waiters are
    /// woken, its callbacks run (in this thread), and it will never run. Returns false if it is
    /// running or finished; such a task cannot be cancelled (a process pool's per-task time limit
    /// can stop a running one).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = futurepool::ThreadPool::new(1);
    /// let done = pool.submit(|| 1);
    /// done.wait();
    /// assert!(!done.cancel(), "a finished task cannot be cancelled");
    /// ```
    pub fn cancel(&self) -> bool {
        match self.core().try_cancel() {
            CancelAttempt::Cancelled { had_listeners } => {
                if had_listeners {
                    self.run_listeners();
                }
                true
            }
            CancelAttempt::AlreadyCancelled => true,
            CancelAttempt::TooLate => false,
        }
    }

    /// Blocks until the task is done.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = futurepool::ThreadPool::new(1);
    /// let task = pool.submit(|| std::thread::sleep(std::time::Duration::from_millis(10)));
    /// task.wait();
    /// assert!(task.is_done());
    /// ```
    pub fn wait(&self) {
        self.wait_until(None);
    }

    /// Blocks until the task is done or `timeout` passes; returns whether it is done.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let pool = futurepool::ThreadPool::new(1);
    /// let slow = pool.submit(|| std::thread::sleep(Duration::from_millis(200)));
    /// assert!(!slow.wait_timeout(Duration::from_millis(1)));
    /// assert!(slow.wait_timeout(Duration::from_secs(10)));
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_until(Some(deadline_after(timeout)))
    }

    /// Blocks until done or until `deadline`; returns whether the task is done.
    pub(crate) fn wait_until(&self, deadline: Option<Instant>) -> bool {
        if self.is_done() {
            return true;
        }
        let id = next_listener_id();
        let listener = Listener::Thread {
            id,
            thread: thread::current(),
        };
        if self.core().register(listener).is_err() {
            return true;
        }
        loop {
            if self.is_done() {
                return true;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                self.core().unregister(id);
                return self.is_done();
            }
            thread::park_until(deadline);
        }
    }

    /// Blocks until the task is done and returns its value, or why there is none.
    ///
    /// The outcome is kept: every call, on every clone, returns the same one. For values that are
    /// not `Clone`, use [`result_ref`](Task::result_ref).
    ///
    /// # Errors
    ///
    /// [`TaskError::Cancelled`], [`TaskError::Panicked`], [`TaskError::Failed`] with the task's own
    /// error, or an executor's reason it could not run (shut down, broken, worker lost, ...).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = futurepool::ThreadPool::new(2);
    /// let task = pool.submit(|| String::from("page"));
    /// assert_eq!(task.result().unwrap(), "page");
    /// assert_eq!(task.result().unwrap(), "page", "readable many times");
    /// ```
    pub fn result(&self) -> Result<T, TaskError<E>>
    where
        T: Clone,
        E: Clone,
    {
        self.wait();
        self.outcome_now()
            .expect("a task that is done has an outcome")
    }

    /// Like [`result`](Task::result), but gives up after `timeout` with [`TaskError::Timeout`];
    /// the task itself is unaffected.
    ///
    /// # Errors
    ///
    /// As [`result`](Task::result), plus [`TaskError::Timeout`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use futurepool::TaskError;
    /// let pool = futurepool::ThreadPool::new(1);
    /// let slow = pool.submit(|| { std::thread::sleep(Duration::from_millis(300)); 1 });
    /// assert_eq!(slow.result_timeout(Duration::from_millis(1)), Err(TaskError::Timeout));
    /// assert_eq!(slow.result(), Ok(1), "the task went on");
    /// ```
    pub fn result_timeout(&self, timeout: Duration) -> Result<T, TaskError<E>>
    where
        T: Clone,
        E: Clone,
    {
        if self.wait_timeout(timeout) {
            self.outcome_now()
                .expect("a task that is done has an outcome")
        } else {
            Err(TaskError::Timeout)
        }
    }

    /// Blocks until done and borrows the value; the error borrows the task's own error. Needs no
    /// `Clone`.
    ///
    /// # Errors
    ///
    /// As [`result`](Task::result), with the task's own error borrowed.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = futurepool::ThreadPool::new(1);
    /// let task = pool.submit_fallible(|| std::fs::read("/definitely/not/here"));
    /// let err = task.result_ref().unwrap_err();
    /// assert_eq!(err.into_failed().unwrap().kind(), std::io::ErrorKind::NotFound);
    /// ```
    pub fn result_ref(&self) -> Result<&T, TaskError<&E>> {
        self.wait();
        self.outcome_ref_now()
            .expect("a task that is done has an outcome")
    }

    /// The outcome if the task is done, without blocking.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = futurepool::ThreadPool::new(1);
    /// let task = pool.submit(|| 5);
    /// task.wait();
    /// assert_eq!(task.try_result(), Some(Ok(5)));
    /// ```
    pub fn try_result(&self) -> Option<Result<T, TaskError<E>>>
    where
        T: Clone,
        E: Clone,
    {
        self.outcome_now()
    }

    fn outcome_now(&self) -> Option<Result<T, TaskError<E>>>
    where
        T: Clone,
        E: Clone,
    {
        Some(match self.outcome_ref_now()? {
            Ok(value) => Ok(value.clone()),
            Err(error) => Err(error.map_failed(E::clone)),
        })
    }

    fn outcome_ref_now(&self) -> Option<Result<&T, TaskError<&E>>> {
        if let Some(outcome) = self.core().finished_outcome() {
            return Some(match outcome {
                Ok(value) => Ok(value),
                Err(error) => Err(error.as_ref()),
            });
        }
        self.is_cancelled().then_some(Err(TaskError::Cancelled))
    }

    /// The task's own error or panic, if it ran and failed; `None` if it succeeded, was cancelled
    /// or is not done. Python's `Future.exception()`, without blocking.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = futurepool::ThreadPool::new(1);
    /// let task = pool.submit_fallible(|| Err::<(), _>("no"));
    /// task.wait();
    /// assert!(task.failure().is_some());
    /// ```
    pub fn failure(&self) -> Option<TaskError<&E>> {
        match self.core().finished_outcome()? {
            Err(error) if error.is_failure() => Some(error.as_ref()),
            _ => None,
        }
    }

    /// Runs `callback` once the task is done, with the task.
    ///
    /// If the task is already done, `callback` runs at once, in this thread. Otherwise callbacks run
    /// in the order they were added, exactly once, in the thread that finishes or cancels the task,
    /// after its waiters are woken and outside any lock. A panicking callback is caught and reported
    /// on stderr; later callbacks still run.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::mpsc;
    /// let pool = futurepool::ThreadPool::new(1);
    /// let (tx, rx) = mpsc::channel();
    /// let task = pool.submit(|| 2 + 2);
    /// task.add_done_callback(move |t| tx.send(t.result().unwrap()).unwrap());
    /// assert_eq!(rx.recv().unwrap(), 4);
    /// ```
    pub fn add_done_callback(&self, callback: impl FnOnce(&Task<T, E>) + Send + 'static) {
        if let Err(Listener::Callback(callback)) =
            self.core().register(Listener::Callback(Box::new(callback)))
        {
            run_callback(callback, self);
        }
    }

    /// True if both handles refer to the same task.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = futurepool::ThreadPool::new(1);
    /// let a = pool.submit(|| ());
    /// let b = pool.submit(|| ());
    /// assert!(a.ptr_eq(&a.clone()) && !a.ptr_eq(&b));
    /// ```
    pub fn ptr_eq(&self, other: &Self) -> bool {
        std::ptr::addr_eq(Arc::as_ptr(&self.cell), Arc::as_ptr(&other.cell))
    }

    /// An address identifying this task, for de-duplicating handles.
    pub(crate) fn id(&self) -> usize {
        Arc::as_ptr(&self.cell) as *const () as usize
    }

    /// Registers a multi-task waiter; returns the registration id, or `None` if already done.
    pub(crate) fn register_notify(&self, sink: Arc<dyn Notify>, key: usize) -> Option<u64> {
        let id = next_listener_id();
        self.core()
            .register(Listener::Notify { id, sink, key })
            .ok()
            .map(|()| id)
    }

    /// Removes a registration made by [`register_notify`](Task::register_notify) or a waker.
    pub(crate) fn unregister(&self, id: u64) {
        self.core().unregister(id)
    }

    /// Sets the outcome, if nobody did before; returns whether this call did. Used by executors.
    pub(crate) fn resolve(&self, outcome: Result<T, TaskError<E>>) -> bool {
        if !self.core().try_claim() {
            return false;
        }
        if self.core().publish(outcome) {
            self.run_listeners();
        }
        true
    }

    /// PENDING → RUNNING for tasks resolved from outside. False if cancelled or resolved.
    pub(crate) fn set_running(&self) -> bool {
        self.core().try_start()
    }

    fn run_listeners(&self) {
        let mut callbacks = Vec::new();
        for listener in self.core().take_listeners() {
            callbacks.extend(listener.wake());
        }
        for callback in callbacks {
            run_callback(callback, self);
        }
    }
}

impl<T: Send + Sync + 'static, E: Send + Sync + 'static> Task<T, E> {
    /// A pending task with no closure, to be resolved by its executor (a process pool or cluster).
    pub(crate) fn pending() -> Self {
        Task::from_cell(Arc::new(TaskCell {
            core: Core::new(),
            job: NoJob,
        }))
    }

    /// A task that is already finished with this outcome (e.g. refused at submit).
    pub(crate) fn resolved(outcome: Result<T, TaskError<E>>) -> Self {
        let task = Task::pending();
        task.resolve(outcome);
        task
    }
}

fn run_callback<T, E>(callback: listeners::Callback<T, E>, task: &Task<T, E>) {
    if let Err(panic) = panic::catch(|| callback(task)) {
        eprintln!("futurepool: a done-callback panicked and was caught: {panic}");
    }
}

pub(crate) fn deadline_after(timeout: Duration) -> Instant {
    // A timeout too large to represent means "never".
    Instant::now()
        .checked_add(timeout)
        .unwrap_or_else(|| Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600))
}

impl<T, E> fmt::Debug for Task<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.snapshot();
        let state = if s.is_cancelled() {
            "cancelled"
        } else if s.is_finished() {
            "finished"
        } else if s.is_running() {
            "running"
        } else {
            "pending"
        };
        f.debug_struct("Task")
            .field("id", &format_args!("{:#x}", self.id()))
            .field("state", &state)
            .finish()
    }
}

impl<E> TaskError<E> {
    /// Borrows the task's own error, keeping every other variant.
    fn as_ref(&self) -> TaskError<&E> {
        match self {
            TaskError::Cancelled => TaskError::Cancelled,
            TaskError::Panicked(p) => TaskError::Panicked(p.clone()),
            TaskError::Failed(e) => TaskError::Failed(e),
            TaskError::Timeout => TaskError::Timeout,
            TaskError::TimeLimit(d) => TaskError::TimeLimit(*d),
            TaskError::WorkerLost(w) => TaskError::WorkerLost(*w),
            TaskError::PoolBroken(r) => TaskError::PoolBroken(r.clone()),
            TaskError::ShutDown => TaskError::ShutDown,
            TaskError::Transfer(r) => TaskError::Transfer(r.clone()),
        }
    }
}
