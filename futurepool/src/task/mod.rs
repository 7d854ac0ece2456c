//! The task handle: what `submit` returns, like Python's `concurrent.futures.Future`.
//!
//! Layout:
//! - `core.rs`: the state machine (one atomic word, the outcome slot, the listener list);
//! - `listeners.rs`: who is woken when a task is done;
//! - `job.rs`: the task's allocation and the runnable half an executor's queue holds;
//! - `future.rs`: `.await` support;
//! - `combine.rs`: `Task::all` and `Task::any`;
//! - `README.md`: the protocol, and why no wake-up can be lost.

mod combine;
mod core;
mod deferred;
mod future;
mod job;
mod listeners;
#[cfg(all(test, loom))]
mod loom_tests;
mod progress;

use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::TaskError;
use crate::loom::thread;
use crate::panic;

use self::core::{AbortAttempt, CancelAttempt, Claim, Core, Snapshot};
pub(crate) use self::deferred::{release, CallbackGroup, Deferred};
#[cfg(feature = "cluster")]
pub(crate) use self::job::RemoteAbort;
pub(crate) use self::job::{ErasedJob, Job, WorkerHooks};
use self::job::{NoJob, TaskCell};
pub(crate) use self::listeners::Notify;
use self::listeners::{next_listener_id, Listener};
pub use self::progress::report_progress;
pub(crate) use self::progress::{ProgressSink, RemoteProgress, Running};

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
///
/// A task's value crosses threads, so it must be `Send`; the compiler refuses anything else:
///
/// ```compile_fail
/// let pool = futurepool::ThreadPool::new(1);
/// let task = pool.submit(|| std::rc::Rc::new(1)); // Rc is not Send
/// ```
pub struct Task<T, E = Infallible> {
    handle: Handle<T, E>,
}

/// A task's allocation, seen with its closure's type erased.
type Cell<T, E> = Arc<TaskCell<T, E, dyn ErasedJob>>;

/// What a handle holds. Every handle starts `Plain`; polling it as a future turns it `Polled` the
/// first time it has to wait (see `future.rs`). Keeping the waker's registration id behind a box
/// only in that case, instead of a `u64` in every handle, makes a handle 16 bytes, not 24 (the
/// enum fits in the fat pointer: the box goes where the vtable pointer is, the null data pointer
/// tells them apart): the memory budget of issue 16.
enum Handle<T, E> {
    Plain(Cell<T, E>),
    Polled(Box<Polled<T, E>>),
}

/// A handle that had to register a waker: the id of that registration, private to this handle (a
/// clone starts `Plain`, and dropping the handle removes the registration).
struct Polled<T, E> {
    cell: Cell<T, E>,
    waker: u64,
}

impl<T, E> Clone for Task<T, E> {
    fn clone(&self) -> Self {
        Task {
            handle: Handle::Plain(self.cell().clone()),
        }
    }
}

impl<T, E> Task<T, E> {
    fn from_cell<J: ErasedJob + 'static>(cell: Arc<TaskCell<T, E, J>>) -> Self {
        Task {
            handle: Handle::Plain(cell),
        }
    }

    fn cell(&self) -> &Cell<T, E> {
        match &self.handle {
            Handle::Plain(cell) => cell,
            Handle::Polled(polled) => &polled.cell,
        }
    }

    fn core(&self) -> &Core<T, E> {
        &self.cell().core
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

    /// True if the task was cancelled before it started, or aborted while it ran (it then ends
    /// cancelled once its work returned or its worker was killed; see [`abort`](Task::abort)).
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
                    self.run_listeners(&|| ());
                }
                true
            }
            CancelAttempt::AlreadyCancelled => true,
            CancelAttempt::TooLate => false,
        }
    }

    /// Stops the task wherever it is; returns true if it is, or will be, ended cancelled.
    ///
    /// - Pending: cancelled now, exactly as [`cancel`](Task::cancel) (waiters woken, callbacks
    ///   run in this thread).
    /// - Running on a [`ThreadPool`](crate::ThreadPool): **a thread cannot be killed**, so this is
    ///   cooperative. The task's [`CancelToken`](crate::CancelToken) (what
    ///   [`current_token`](crate::current_token) returns inside it) reads cancelled at once; the
    ///   handle stays unfinished until the closure returns, then its value (or error, or panic)
    ///   is dropped and the task ends [`TaskError::Cancelled`] (`is_cancelled()` is true). A
    ///   closure that never looks at its token runs to its end first.
    /// - Running on a [`ProcessPool`](crate::ProcessPool): its worker's process group is killed
    ///   at once and the worker replaced; the task ends cancelled and is never retried; the
    ///   pool's other tasks are unaffected (those queued at that worker run on its replacement).
    /// - On the cluster (`cluster::ClusterPool`): the client cannot tell a task queued on the
    ///   broker from one running on a worker, so the handle is cancelled at once, as a pending
    ///   one, and the abort goes to the broker (sent by the client's own thread: this call makes
    ///   no broker call and never blocks). A task no worker has started yet never runs; a running
    ///   one has its token set within about a second (its worker asks every 250 ms), its value is
    ///   discarded, and it is acknowledged, never retried or delivered again; other handles of the
    ///   task, in any client, resolve cancelled. A task that finished on the broker before the
    ///   abort arrived keeps its outcome there (this handle stays cancelled).
    /// - Finished, or its outcome being written right now: false, and the outcome stands. An abort
    ///   racing completion has exactly one outcome: either this returns true and the task ends
    ///   cancelled, or it returns false and the task keeps its value.
    ///
    /// [`cancel`](Task::cancel) keeps Python's meaning: it never touches a running task.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use futurepool::{current_token, TaskError, ThreadPool};
    ///
    /// let pool = ThreadPool::new(1);
    /// let (started_tx, started) = std::sync::mpsc::channel();
    /// let task = pool.submit(move || {
    ///     started_tx.send(()).unwrap();
    ///     let token = current_token();
    ///     while !token.is_cancelled() {
    ///         std::thread::sleep(Duration::from_millis(1));
    ///     }
    ///     "stopped early"
    /// });
    /// started.recv().unwrap();
    /// assert!(!task.cancel(), "cancel never stops a running task");
    /// assert!(task.abort());
    /// assert_eq!(task.result(), Err(TaskError::Cancelled), "the value is discarded");
    /// ```
    pub fn abort(&self) -> bool {
        match self.core().try_abort() {
            AbortAttempt::Cancelled { had_listeners } => {
                // First, so the work elsewhere is stopped without waiting for the callbacks.
                self.cell().job.on_abort_unstarted();
                if had_listeners {
                    self.run_listeners(&|| ());
                }
                true
            }
            AbortAttempt::Flagged => {
                self.cell().job.on_abort();
                true
            }
            AbortAttempt::AlreadyAborted => {
                // A handle `cancel()`ed earlier: its work elsewhere may still run.
                self.cell().job.on_abort_unstarted();
                true
            }
            AbortAttempt::TooLate => false,
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
        // On a thread pool's worker, run that pool's queued jobs while waiting, so a task waiting
        // for another task of its own pool never waits for itself (`thread_pool/README.md`).
        if let Some(done) = crate::thread_pool::help_while_waiting(
            &self.core().done_check(),
            Some(self.id()),
            deadline,
        ) {
            if !done {
                self.core().unregister(id);
            }
            return done || self.is_done();
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
    /// On a thread pool's worker waiting for its own pool, the worker runs queued jobs while it
    /// waits (see [`ThreadPool`](crate::ThreadPool)); it checks the time between jobs, so the
    /// wait can end late by the length of the job it was running.
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
    /// A [`ProcessPool`](crate::ProcessPool) task is finished by one of the pool's own threads,
    /// which must never wait for user code; its callbacks run on one of futurepool's callback
    /// threads instead (named `futurepool-callback-N`; a new one starts whenever a callback is
    /// queued and all are busy, so a callback may block, wait for other tasks of the same pool,
    /// or drop the pool). The pool's `shutdown(wait)` returns once they have all run.
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

    /// The latest `(done, total)` the running task reported with
    /// [`report_progress`](crate::report_progress); `None` before its first report, and once it
    /// is done (its outcome says the rest). Reports are rate-limited at the source (see
    /// `report_progress`), so this may lag the task by up to 50 ms, never by its last report.
    ///
    /// A task of a process pool or the cluster shows what its worker sent back (see
    /// `report_progress` for how often).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::mpsc;
    /// let pool = futurepool::ThreadPool::new(1);
    /// let (go, wait) = mpsc::channel::<()>();
    /// let task = pool.submit(move || {
    ///     futurepool::report_progress(3, 10);
    ///     wait.recv().unwrap();
    /// });
    /// while task.progress().is_none() {
    ///     std::thread::yield_now();
    /// }
    /// assert_eq!(task.progress(), Some((3, 10)));
    /// go.send(()).unwrap();
    /// task.wait();
    /// assert_eq!(task.progress(), None, "done: no progress any more");
    /// ```
    pub fn progress(&self) -> Option<(u64, u64)> {
        progress::state_of(self.core(), false).and_then(|state| state.latest())
    }

    /// Calls `callback(done, total)` with each report of the running task that gets through the
    /// rate limit (see [`report_progress`](crate::report_progress)), in the order reported, on
    /// the task's own thread, never after the task is done. Reports made before the callback was
    /// set are not replayed. Setting a new callback replaces the old one. A callback that panics
    /// is removed (the panic is reported on stderr) and the task goes on.
    ///
    /// For a task of a process pool or the cluster, the callback runs on futurepool's callback
    /// threads instead, coalesced: each run sees the latest report, reports that arrive while it
    /// waits for its turn are skipped, and no run starts once the task is done (one that started
    /// just before may still be returning when the result is seen).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::mpsc;
    /// let pool = futurepool::ThreadPool::new(1);
    /// let (go, wait) = mpsc::channel::<()>();
    /// let task = pool.submit(move || {
    ///     wait.recv().unwrap();
    ///     futurepool::report_progress(10, 10);
    /// });
    /// let (tx, rx) = mpsc::channel();
    /// task.on_progress(move |done, total| { let _ = tx.send((done, total)); });
    /// go.send(()).unwrap();
    /// assert_eq!(rx.recv().unwrap(), (10, 10));
    /// ```
    pub fn on_progress(&self, callback: impl FnMut(u64, u64) + Send + 'static) {
        if let Some(state) = progress::state_of(self.core(), true) {
            state.set_callback(Box::new(callback));
        }
    }

    /// Where an executor that runs this task elsewhere delivers the reports that come back from
    /// there (see [`RemoteProgress`]); `None` once the task is done.
    pub(crate) fn remote_progress(&self, callbacks: &Arc<CallbackGroup>) -> Option<RemoteProgress> {
        RemoteProgress::of(self.core(), callbacks)
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
        std::ptr::addr_eq(Arc::as_ptr(self.cell()), Arc::as_ptr(other.cell()))
    }

    /// How many times the task ran, for executors that retry a task's own failure: a cluster task
    /// submitted with a retry policy (`cluster::RetryPolicy`, with the `cluster` feature) reports
    /// its attempts once it is done (`Some(3)`: it failed twice, then its outcome came from the third run). `None` for
    /// every other task, and before the outcome arrives.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = futurepool::ThreadPool::new(1);
    /// let task = pool.submit(|| 1);
    /// task.wait();
    /// assert_eq!(task.attempts(), None); // thread pools do not retry
    /// ```
    pub fn attempts(&self) -> Option<u32> {
        let counter = self.cell().job.attempts()?;
        match counter.load(std::sync::atomic::Ordering::Acquire) {
            0 => None,
            n => Some(n),
        }
    }

    /// Records the attempt count of a task made by
    /// [`pending_remote`](Task::pending_remote); call before resolving so a
    /// waiter that sees the outcome sees it.
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    pub(crate) fn set_attempts(&self, attempts: u32) {
        if let Some(counter) = self.cell().job.attempts() {
            counter.store(attempts, std::sync::atomic::Ordering::Release);
        }
    }

    /// The cluster task this is (made by [`pending_remote`](Task::pending_remote)), if it is one.
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    pub(crate) fn remote(&self) -> Option<&job::Remote> {
        self.cell().job.remote()
    }

    /// An address identifying this task, for de-duplicating handles.
    pub(crate) fn id(&self) -> usize {
        Arc::as_ptr(self.cell()) as *const () as usize
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
        self.resolve_then(outcome, &|| ())
    }

    /// Like [`resolve`](Task::resolve), calling `before_callbacks` after the waiters are woken and
    /// before the first callback runs in this thread, if any does. A thread pool's worker uses it
    /// to stop counting itself idle while it runs callbacks (user code that may submit and wait).
    pub(crate) fn resolve_then(
        &self,
        outcome: Result<T, TaskError<E>>,
        before_callbacks: &dyn Fn(),
    ) -> bool {
        let has_listeners = match self.core().try_claim() {
            Claim::Lost => return false,
            Claim::Won => self.core().publish(outcome),
            Claim::WonAborted => {
                // The value's `Drop` is user code; this may be a pool's own thread.
                drop_outcome_guarded(outcome);
                self.core().publish_cancelled()
            }
        };
        if has_listeners {
            self.run_listeners(before_callbacks);
        }
        true
    }

    /// True once `abort` flagged the task (or it ended cancelled): an executor resolving it from
    /// outside need not run it any more.
    pub(crate) fn abort_requested(&self) -> bool {
        self.snapshot().is_abort_requested()
    }

    /// [`abort`](Task::abort) without the executor's hook, for the executor itself (shutting
    /// down with `abort_running`): it stops the work its own way.
    pub(crate) fn abort_quietly(&self) -> bool {
        match self.core().try_abort() {
            AbortAttempt::Cancelled { had_listeners } => {
                if had_listeners {
                    self.run_listeners(&|| ());
                }
                true
            }
            AbortAttempt::Flagged | AbortAttempt::AlreadyAborted => true,
            AbortAttempt::TooLate => false,
        }
    }

    /// PENDING → RUNNING for tasks resolved from outside. False if cancelled or resolved.
    pub(crate) fn set_running(&self) -> bool {
        self.core().try_start()
    }

    /// [`resolve`](Task::resolve) for a thread that must not run user code (a process pool's
    /// reader): sets the outcome and wakes every waiter here, but hands the done-callbacks back,
    /// with the task, to be run on another thread. `None` if this call did not resolve the task
    /// or it has no callbacks. Callbacks keep their order and still run exactly once: a callback
    /// registered after this returns finds the task done and runs at once in its caller (F4).
    pub(crate) fn resolve_deferred(
        &self,
        outcome: Result<T, TaskError<E>>,
    ) -> Option<Deferred<T, E>> {
        let has_listeners = match self.core().try_claim() {
            Claim::Lost => return None,
            Claim::Won => self.core().publish(outcome),
            Claim::WonAborted => {
                drop_outcome_guarded(outcome);
                self.core().publish_cancelled()
            }
        };
        if has_listeners {
            self.wake_and_take_callbacks()
        } else {
            None
        }
    }

    /// [`cancel`](Task::cancel), deferring the callbacks as
    /// [`resolve_deferred`](Task::resolve_deferred) does.
    pub(crate) fn cancel_deferred(&self) -> Option<Deferred<T, E>> {
        match self.core().try_cancel() {
            CancelAttempt::Cancelled {
                had_listeners: true,
            } => self.wake_and_take_callbacks(),
            _ => None,
        }
    }

    /// Wakes every waiter and returns the callbacks, in registration order, still to run.
    fn wake_and_take_callbacks(&self) -> Option<Deferred<T, E>> {
        // `Listener::wake` runs each async waker guarded, so a panicking one strands no waiter
        // after it and never unwinds through the thread completing the task.
        let mut callbacks = Vec::new();
        for listener in self.core().take_listeners() {
            callbacks.extend(listener.wake());
        }
        (!callbacks.is_empty()).then(|| Deferred::new(self.clone(), callbacks))
    }

    /// Wakes every waiter, then runs the callbacks here; `before_callbacks` runs first, only if
    /// there are callbacks (a thread-pool worker stops counting itself idle there).
    fn run_listeners(&self, before_callbacks: &dyn Fn()) {
        if let Some(deferred) = self.wake_and_take_callbacks() {
            before_callbacks();
            deferred.run_here();
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

    /// [`pending`](Task::pending), for the cluster: it reports its attempts
    /// ([`attempts`](Task::attempts)), and [`abort`](Task::abort) hands `task_id` to `sink`
    /// whether the task is pending here or flagged (the client cannot tell a task queued on the
    /// broker from one running on a worker).
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    pub(crate) fn pending_remote(
        task_id: Arc<str>,
        sink: Arc<dyn job::RemoteAbort>,
        fallible: bool,
    ) -> Self {
        Task::from_cell(Arc::new(TaskCell {
            core: Core::new(),
            job: job::Remote {
                attempts: std::sync::atomic::AtomicU32::new(0),
                fallible,
                task_id,
                sink,
            },
        }))
    }

    /// [`pending`](Task::pending), for an executor that can stop the task while it runs: the
    /// `tail`'s [`on_abort`](ErasedJob::on_abort) runs (in the aborting thread, pool code) when
    /// [`abort`](Task::abort) flags it running. A zero-sized tail costs the allocation nothing.
    pub(crate) fn pending_with_tail<J: ErasedJob + 'static>(tail: J) -> Self {
        Task::from_cell(Arc::new(TaskCell {
            core: Core::new(),
            job: tail,
        }))
    }

    /// A task that is already finished with this outcome (e.g. refused at submit).
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))] // The cluster's; pools use `Job::reject`.
    pub(crate) fn resolved(outcome: Result<T, TaskError<E>>) -> Self {
        let task = Task::pending();
        task.resolve(outcome);
        task
    }
}

/// Drops an outcome nobody will read (its task was aborted), catching a panic in its `Drop`.
fn drop_outcome_guarded<T, E>(outcome: Result<T, TaskError<E>>) {
    if std::mem::needs_drop::<Result<T, TaskError<E>>>() {
        if let Err(panic) = panic::catch(move || drop(outcome)) {
            eprintln!(
                "futurepool: dropping an aborted task's discarded value panicked; the panic was \
                 caught: {panic}"
            );
        }
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
            TaskError::MemoryLimit { limit, used } => TaskError::MemoryLimit {
                limit: *limit,
                used: *used,
            },
            TaskError::WorkerLost(w) => TaskError::WorkerLost(*w),
            TaskError::PoolBroken(r) => TaskError::PoolBroken(r.clone()),
            TaskError::ShutDown => TaskError::ShutDown,
            TaskError::Transfer(r) => TaskError::Transfer(r.clone()),
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn handles_are_send_sync_and_static() {
        fn check<T: Send + Sync + Clone + 'static>() {}
        check::<Task<Vec<u8>, std::io::Error>>();
    }

    /// The memory budget of issue 16 (≤ 96 bytes per pending no-op task, handle and queue slot
    /// included) rests on these sizes; a field added carelessly fails here first. (The allocation
    /// itself is pinned by `tests/task_memory.rs`, through a counting allocator.)
    #[test]
    fn a_no_op_task_stays_small() {
        type Cell = TaskCell<(), Infallible, job::JobSlot<fn() -> Result<(), Infallible>>>;
        assert!(std::mem::size_of::<Result<(), TaskError>>() <= 24);
        // State word, outcome slot, listener pointer; a zero-sized closure adds nothing, so with
        // the `Arc`'s two counts the allocation is 56 bytes: the 64-byte size class.
        assert_eq!(std::mem::size_of::<Core<(), Infallible>>(), 40);
        assert_eq!(std::mem::size_of::<job::JobSlot<()>>(), 0);
        assert_eq!(std::mem::size_of::<Cell>(), 48, "a function pointer adds 8");
        fn cell_size<F>(_: &F) -> usize {
            std::mem::size_of::<TaskCell<(), Infallible, job::JobSlot<F>>>()
        }
        assert_eq!(
            cell_size(&|| Ok::<(), Infallible>(())),
            40,
            "a closure capturing nothing"
        );
        // The cell's (fat) pointer; a waker registration id only in handles polled as futures.
        assert_eq!(std::mem::size_of::<Task<()>>(), 16);
        // One thin pointer: the dispatch table's address waits in the outcome slot.
        assert_eq!(std::mem::size_of::<Job>(), 8);
    }

    #[test]
    fn resolve_wins_once_and_keeps_the_first_outcome() {
        let task = Task::<u8, &str>::pending();
        assert!(task.resolve(Ok(1)));
        assert!(!task.resolve(Err(TaskError::Failed("late"))));
        assert_eq!(task.result(), Ok(1));
        assert!(!task.cancel());
    }

    #[test]
    fn cancel_is_idempotent_and_wakes_a_timed_waiter() {
        let task = Task::<u8>::pending();
        let waiter = {
            let task = task.clone();
            std::thread::spawn(move || task.result_timeout(Duration::from_secs(30)))
        };
        // Give the waiter a moment to block; the test holds either way.
        std::thread::sleep(Duration::from_millis(20));
        assert!(task.cancel());
        assert!(task.cancel(), "cancelling a cancelled task answers true");
        assert_eq!(waiter.join().unwrap(), Err(TaskError::Cancelled));
    }

    #[test]
    fn a_timed_out_wait_leaves_no_listener_behind() {
        let task = Task::<u8>::pending();
        for _ in 0..100 {
            assert_eq!(task.result_timeout(Duration::ZERO), Err(TaskError::Timeout));
        }
        assert!(task.core().take_listeners().is_empty());
    }

    #[test]
    fn a_running_task_cannot_be_cancelled() {
        let task = Task::<u8>::pending();
        assert!(task.set_running());
        assert!(task.is_running() && !task.is_done());
        assert!(!task.cancel());
        assert!(task.resolve(Ok(9)));
        assert!(!task.is_running() && task.is_done() && !task.is_cancelled());
    }

    #[test]
    fn callbacks_run_in_registration_order_after_waiters() {
        use std::sync::Mutex;
        let order = Arc::new(Mutex::new(Vec::new()));
        let task = Task::<u8>::pending();
        for i in 0..5 {
            let order = order.clone();
            task.add_done_callback(move |_| order.lock().unwrap().push(i));
        }
        task.resolve(Ok(0));
        assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn result_ref_borrows_without_clone() {
        struct NotClone(u8);
        let task = Task::<NotClone, std::io::Error>::pending();
        task.resolve(Ok(NotClone(4)));
        assert_eq!(task.result_ref().ok().map(|v| v.0), Some(4));
        let failed = Task::<NotClone, std::io::Error>::pending();
        failed.resolve(Err(TaskError::Failed(std::io::Error::other("disk"))));
        let err = failed.result_ref().err().and_then(TaskError::into_failed);
        assert_eq!(err.map(|e| e.to_string()), Some("disk".to_string()));
    }

    #[test]
    fn a_job_frees_its_closure_whether_run_or_cancelled() {
        let captured = Arc::new(());
        let (ran, job) = Job::new({
            let captured = captured.clone();
            move || Ok::<_, Infallible>(Arc::strong_count(&captured))
        });
        let (cancelled, cancelled_job) = Job::new({
            let captured = captured.clone();
            move || Ok::<_, Infallible>(Arc::strong_count(&captured))
        });
        assert_eq!(Arc::strong_count(&captured), 3);
        assert!(cancelled.cancel());
        std::thread::spawn(move || {
            job.run();
            cancelled_job.run();
        })
        .join()
        .unwrap();
        assert_eq!(ran.result(), Ok(3));
        assert_eq!(cancelled.result(), Err(TaskError::Cancelled));
        assert_eq!(
            Arc::strong_count(&captured),
            1,
            "both closures were dropped"
        );
    }

    /// A `Job` owns its closure (no `Option` in the cell says whether it is still there), so one
    /// dropped without being run or cancelled frees the closure itself; its task stays pending.
    #[test]
    fn a_dropped_job_frees_its_closure_and_leaves_its_task_pending() {
        let captured = Arc::new(());
        let (task, job) = Job::new({
            let captured = captured.clone();
            move || Ok::<_, Infallible>(Arc::strong_count(&captured))
        });
        assert_eq!(Arc::strong_count(&captured), 2);
        drop(job);
        assert_eq!(Arc::strong_count(&captured), 1, "the closure was dropped");
        assert!(!task.is_done());
    }

    /// While its job exists, a thread task's outcome slot holds the job's dispatch pointer, so
    /// the task refuses every resolution but the job's own (a cancel is fine: it writes nothing);
    /// dropping the job gives the hold up.
    #[test]
    fn a_queued_job_holds_its_task_until_it_is_consumed() {
        let (task, job) = Job::new(|| Ok::<u8, Infallible>(1));
        assert!(!task.resolve(Ok(2)), "held by its job");
        drop(job);
        assert!(task.resolve(Ok(3)));
        assert_eq!(task.result(), Ok(3));

        let (task, job) = Job::new(|| Ok::<u8, Infallible>(1));
        assert!(task.cancel());
        job.run();
        assert_eq!(task.result(), Err(TaskError::Cancelled));

        let (task, job) = Job::new(|| Ok::<u8, Infallible>(1));
        job.reject(TaskError::ShutDown);
        assert_eq!(task.result(), Err(TaskError::ShutDown));
    }

    /// A handle polled as a future keeps one waker registration across polls, a clone starts
    /// with none, and dropping the polled handle removes its registration.
    #[test]
    fn a_polled_handle_keeps_one_registration_and_drops_it() {
        use std::future::Future;
        use std::pin::Pin;
        use std::task::{Context, Waker};

        let mut task = Task::<u8>::pending();
        let mut cx = Context::from_waker(Waker::noop());
        for _ in 0..3 {
            assert!(Pin::new(&mut task).poll(&mut cx).is_pending());
        }
        let registered = |task: &Task<u8>| task.core().list().map_or(0, |l| Core::lock(l).len());
        assert_eq!(registered(&task), 1);
        let mut clone = task.clone();
        assert!(Pin::new(&mut clone).poll(&mut cx).is_pending());
        assert_eq!(registered(&task), 2, "the clone registered its own");
        drop(clone);
        assert_eq!(registered(&task), 1);
        assert!(task.resolve(Ok(7)));
        assert_eq!(
            Pin::new(&mut task).poll(&mut cx),
            std::task::Poll::Ready(Ok(7))
        );
    }

    #[test]
    fn a_panicking_job_reports_message_and_location() {
        let (task, job) = Job::new(|| -> Result<u8, Infallible> { panic!("kaboom") });
        job.run();
        match task.result() {
            Err(TaskError::Panicked(p)) => {
                assert_eq!(p.message(), "kaboom");
                assert!(
                    p.location().is_some_and(|l| l.contains("task/mod.rs")),
                    "{p:?}"
                );
            }
            other => panic!("expected a panic, got {other:?}"),
        }
    }
}
