//! The task's allocation and its runnable half.
//!
//! A task is one allocation: the [`Core`] followed by the closure that will produce its value. The
//! [`Task`] handle sees it with the closure's type erased (`dyn ErasedJob`); the executor's queue
//! holds the other half, a [`Job`], which is the only way to reach the closure. Because a `Job` is
//! neither `Clone` nor `Copy` and is consumed by [`Job::run`] or [`Job::cancel`], the closure is
//! taken at most once, by one thread.

use std::convert::Infallible;
use std::mem::ManuallyDrop;
use std::ptr::NonNull;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;

use crate::error::TaskError;
use crate::loom::cell::UnsafeCell;
use crate::panic;
use crate::token::{self, AbortSource};

use super::core::Core;
use super::Task;

/// The allocation behind a task: its core, then (possibly unsized) whatever runs it.
///
/// `repr(C)`, core first: a [`Job`] finds its dispatch pointer at offset 0 (see [`Core`]).
#[repr(C)]
pub(crate) struct TaskCell<T, E, J: ?Sized> {
    pub(crate) core: Core<T, E>,
    pub(crate) job: J,
}

/// The erased tail of a [`TaskCell`]; the handle only drops it, and tells it of an abort.
pub(crate) trait ErasedJob: Send + Sync {
    /// `abort` flagged the running task: an executor that can stop it (a process pool kills its
    /// worker) is told here. Threads cannot be stopped, so a closure's tail does nothing.
    fn on_abort(&self) {}
    /// `abort` cancelled the task before it started here (or found it cancelled already): an
    /// executor whose tasks run elsewhere, and which cannot tell queued from running there (the
    /// cluster), must still stop the work there. Nothing for the others.
    fn on_abort_unstarted(&self) {}
    /// Where an executor that retries a task's own failure records how many times it ran; only
    /// such tasks carry the counter, so no other task pays for it.
    fn attempts(&self) -> Option<&AtomicU32> {
        None
    }
    /// The cluster task this is, if it is one: its id and pool, for chaining on the broker.
    fn remote(&self) -> Option<&Remote> {
        None
    }
}

impl<T, E, J: ?Sized + Send + Sync> AbortSource for TaskCell<T, E, J>
where
    T: Send + Sync,
    E: Send + Sync,
{
    fn is_aborted(&self) -> bool {
        self.core.snapshot().is_abort_requested()
    }
}

/// The closure of a task run on a thread, until a worker takes it.
///
/// No `Option` around it: the unique [`Job`] takes it exactly once ([`Job::run`],
/// [`Job::cancel`], [`Job::reject`], or dropping the `Job`), so the cell never drops it and needs
/// no flag to know whether it is still there. (An `Option` would cost a no-op task a byte that,
/// padded, pushes its allocation out of the 64-byte size class: issue 16.)
pub(crate) struct JobSlot<F>(UnsafeCell<ManuallyDrop<F>>);

impl<F> JobSlot<F> {
    /// Moves the closure out.
    ///
    /// # Safety
    ///
    /// Only the task's unique [`Job`] may call this, once, as it is consumed.
    unsafe fn take(&self) -> F {
        // SAFETY: the caller is the one `Job`, consumed by this call, so the closure is still
        // there, nobody else reaches it, and it is never read again.
        self.0
            .with_mut(|slot| unsafe { ManuallyDrop::take(&mut *slot) })
    }
}

// SAFETY: the closure inside is only reached through the unique `Job` (see the module docs), so it
// is never accessed from two threads at once; it only needs to be sendable to the worker.
unsafe impl<F: Send> Sync for JobSlot<F> {}
// SAFETY: as above.
unsafe impl<F: Send> Send for JobSlot<F> {}
impl<F: Send> ErasedJob for JobSlot<F> {}

/// The tail of a task resolved from outside (a process pool or a cluster): there is no closure.
pub(crate) struct NoJob;
impl ErasedJob for NoJob {}

/// Where a cluster task's abort goes (the client's submitter, which tells the broker): pool
/// code, never user code, and it never blocks.
#[cfg_attr(not(feature = "cluster"), allow(dead_code))]
pub(crate) trait RemoteAbort: Send + Sync {
    fn abort(&self, task_id: &Arc<str>);
}

/// The tail of a cluster task: how many times it ran (0 until the outcome arrives; set before
/// the outcome is published), and what an abort needs — its id and the pool's [`RemoteAbort`],
/// shared by all its tasks (one reference count per task, no allocation).
#[cfg_attr(not(feature = "cluster"), allow(dead_code))]
pub(crate) struct Remote {
    pub(crate) attempts: AtomicU32,
    /// Its function returns a `Result` (its outcome's value is a postcard `Result`): what a task
    /// chained after it on the broker must unwrap (`ClusterPool::submit_after`).
    pub(crate) fallible: bool,
    pub(crate) task_id: Arc<str>,
    pub(crate) sink: Arc<dyn RemoteAbort>,
}
impl ErasedJob for Remote {
    fn on_abort(&self) {
        self.sink.abort(&self.task_id);
    }
    fn on_abort_unstarted(&self) {
        self.sink.abort(&self.task_id);
    }
    fn attempts(&self) -> Option<&AtomicU32> {
        Some(&self.attempts)
    }
    fn remote(&self) -> Option<&Remote> {
        Some(self)
    }
}

/// What a thread pool's worker learns from the task it runs, so that it counts itself idle exactly
/// while it runs no user code (see `thread_pool/README.md`, "Who runs user code, and idle accounting").
pub(crate) trait WorkerHooks {
    /// The closure has returned (or the task was found cancelled and its captures dropped), and
    /// the outcome is not yet visible: count the worker idle, so the submitter the outcome wakes
    /// reuses it.
    fn idle(&self);
    /// User code that may block follows on this worker after all (the task's callbacks): stop
    /// counting the worker idle.
    fn busy(&self);
    /// The pool is being shut down with `abort_running`: the task that just ran ends cancelled.
    fn aborting(&self) -> bool {
        false
    }
    /// The job ended so (called just before [`idle`](WorkerHooks::idle), so whoever the outcome
    /// wakes sees it counted): the pool's [`Stats`](crate::Stats).
    fn ended(&self, _how: crate::stats::Ended) {}
}

/// Hooks for running a job outside any pool (tests, loom models).
#[cfg(test)]
struct NoHooks;

#[cfg(test)]
impl WorkerHooks for NoHooks {
    fn idle(&self) {}
    fn busy(&self) {}
}

/// The executor-facing half of a task, reached through a [`Dispatch`] table.
trait Runnable: Send + Sync {
    fn run(self: Arc<Self>, worker: &dyn WorkerHooks);
    fn cancel(self: Arc<Self>);
    fn reject(self: Arc<Self>, error: TaskError<Infallible>);
    /// The `Job` was dropped unconsumed: free the closure, leave the task as it is.
    fn discard(self: Arc<Self>);
}

impl<T, E, F> Runnable for TaskCell<T, E, JobSlot<F>>
where
    T: Send + Sync + 'static,
    E: Send + Sync + 'static,
    F: FnOnce() -> Result<T, E> + Send + 'static,
{
    fn run(self: Arc<Self>, worker: &dyn WorkerHooks) {
        // SAFETY: `run` is only reachable through the unique `Job`, which it consumed.
        let job = unsafe { self.job.take() };
        if !self.core.try_start() {
            // Cancelled (or resolved) while queued: free the closure's captures now, still
            // counted busy (their `Drop` is user code).
            drop_guarded(job, "the captures of a cancelled task's closure");
            worker.ended(crate::stats::Ended::Cancelled);
            worker.idle();
            return;
        }
        // `current_token()` inside the closure reads this task's state (see `token.rs`).
        let entered = token::enter(self.clone());
        // The closure's captures are dropped inside it, so under this catch too.
        // SAFETY: `self` (and so the core) outlives the guard, dropped on this thread below.
        let running = unsafe { super::progress::Running::enter(&self.core) };
        let outcome = panic::catch(job);
        drop(running);
        let outcome = match outcome {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(TaskError::Failed(error)),
            Err(panic) => Err(TaskError::Panicked(panic)),
        };
        drop(entered);
        if worker.aborting() {
            // Shut down with `abort_running`: the claim below then publishes CANCELLED.
            self.core.try_abort();
        }
        // An abort (the pool's or `Task::abort`'s) makes the claim below publish CANCELLED.
        worker.ended(if self.core.snapshot().is_abort_requested() {
            crate::stats::Ended::Cancelled
        } else {
            crate::stats::ended_as(&outcome)
        });
        worker.idle();
        let task = Task::from_cell(self);
        task.resolve_then(outcome, &|| worker.busy());
        if std::mem::needs_drop::<T>() || std::mem::needs_drop::<E>() {
            // If every other handle is gone, this drops the value (or error), whose `Drop` is
            // user code. The worker stays counted idle for it, so that a submitter who dropped
            // its handle right after reading the result still reuses this worker.
            drop_guarded(
                task,
                "a finished task's value (all its handles were dropped)",
            );
        }
    }

    fn cancel(self: Arc<Self>) {
        // SAFETY: as in `run`.
        let job = unsafe { self.job.take() };
        Task::from_cell(self).cancel();
        drop_guarded(job, "the captures of a cancelled task's closure");
    }

    fn reject(self: Arc<Self>, error: TaskError<Infallible>) {
        // SAFETY: as in `run`.
        let job = unsafe { self.job.take() };
        self.core.release_hold();
        Task::from_cell(self).resolve(Err(error.widen()));
        drop_guarded(job, "the captures of a refused task's closure");
    }

    fn discard(self: Arc<Self>) {
        // SAFETY: as in `run`.
        let job = unsafe { self.job.take() };
        // The task stays pending; whoever holds a handle may resolve it now (`Task::then` does).
        self.core.release_hold();
        drop_guarded(job, "the captures of a dropped job's closure");
    }
}

/// How a [`Job`] reaches its task's typed code: one static table per task type, whose address
/// the task's allocation keeps while the job exists (so the job itself is one thin pointer).
struct Dispatch {
    run: unsafe fn(NonNull<()>, &dyn WorkerHooks),
    cancel: unsafe fn(NonNull<()>),
    reject: unsafe fn(NonNull<()>, TaskError<Infallible>),
    discard: unsafe fn(NonNull<()>),
}

/// The [`Dispatch`] table of the tasks whose allocation is a `C`.
trait HasDispatch {
    const DISPATCH: Dispatch;
}

impl<C: Runnable> HasDispatch for C {
    const DISPATCH: Dispatch = Dispatch {
        run: |cell, worker| unsafe { C::run(cell_of::<C>(cell), worker) },
        cancel: |cell| unsafe { C::cancel(cell_of::<C>(cell)) },
        reject: |cell, error| unsafe { C::reject(cell_of::<C>(cell), error) },
        discard: |cell| unsafe { C::discard(cell_of::<C>(cell)) },
    };
}

/// The job's reference to its cell, back as the `Arc` it came from.
///
/// # Safety
///
/// `cell` must come from `Arc::<C>::into_raw` in [`Job::new`], and its reference is consumed.
unsafe fn cell_of<C>(cell: NonNull<()>) -> Arc<C> {
    // SAFETY: the caller's contract.
    unsafe { Arc::from_raw(cell.as_ptr().cast::<C>()) }
}

/// A task's closure, ready to run: what an executor's queue holds.
///
/// One pointer (8 bytes in a queue slot, not a 16-byte `Arc<dyn _>`: issue 16): it owns one
/// reference to the task's allocation, and finds the typed code to run in the [`Dispatch`] table
/// whose address sits in the task's outcome slot, unused until the task has an outcome. The
/// `HELD_BY_JOB` bit of the task's state (`core.rs`) keeps anyone from claiming, so writing, that
/// slot until the job is consumed.
///
/// Dropping a `Job` without running it frees its closure but leaves its task pending forever, so
/// executors either [`run`](Job::run) or [`cancel`](Job::cancel) every job they accept.
pub(crate) struct Job(NonNull<()>);

// SAFETY: a `Job` is the unique owner of its closure (`F: Send`) and holds one reference to a
// cell whose core is `Send + Sync` (`T`, `E: Send + Sync`): `Job::new` requires all of them.
unsafe impl Send for Job {}

impl Job {
    /// Creates a task whose value `f` computes, and the job that runs it.
    pub(crate) fn new<T, E, F>(f: F) -> (Task<T, E>, Job)
    where
        T: Send + Sync + 'static,
        E: Send + Sync + 'static,
        F: FnOnce() -> Result<T, E> + Send + 'static,
    {
        let cell = Arc::new(TaskCell {
            core: Core::held_by_job(),
            job: JobSlot(UnsafeCell::new(ManuallyDrop::new(f))),
        });
        let dispatch: &'static Dispatch = &<TaskCell<T, E, JobSlot<F>> as HasDispatch>::DISPATCH;
        // SAFETY: the core was made `held_by_job` and nobody else holds the cell yet.
        unsafe { cell.core.set_dispatch((dispatch as *const Dispatch).cast()) };
        let task = Task::from_cell(cell.clone());
        let raw = Arc::into_raw(cell).cast_mut().cast::<()>();
        let job = Job(NonNull::new(raw).expect("an Arc's pointer is never null"));
        (task, job)
    }

    /// The dispatch table `new` stored at offset 0 of the cell.
    fn dispatch(&self) -> &'static Dispatch {
        // SAFETY: the cell is alive (this job holds a reference); offset 0 of a `repr(C)`
        // `TaskCell` is its `repr(C)` core's first field, the outcome slot (under loom, the
        // dispatch field; both transparent), whose first word `new` set to a `&'static
        // Dispatch`. The job still exists, so HELD_BY_JOB is set or the task was cancelled (a
        // cancel writes no outcome): nothing has overwritten the word.
        unsafe { &*self.0.as_ptr().cast::<*const Dispatch>().read() }
    }

    /// Consumes the job, handing out its reference to the cell (so `Drop` does not run).
    fn into_raw(self) -> (NonNull<()>, &'static Dispatch) {
        let dispatch = self.dispatch();
        let this = ManuallyDrop::new(self);
        (this.0, dispatch)
    }

    /// Runs the task here (unless it was cancelled meanwhile), then resolves it and tells its
    /// listeners. (Executors use [`run_on`](Job::run_on); tests and the loom models use this.)
    #[cfg(test)]
    pub(crate) fn run(self) {
        self.run_on(&NoHooks)
    }

    /// Like [`run`](Job::run), on a pool's worker: tells `worker` when it becomes idle (the
    /// closure returned, the outcome not yet visible) and when user code follows after all (the
    /// task's callbacks). A thread pool counts the worker idle before the submitter, woken by the
    /// result, submits the next task, and not while it runs callbacks.
    ///
    /// Every piece of user code it runs (the closure, `Drop` of its captures and of the value,
    /// callbacks) is under `catch_unwind`.
    pub(crate) fn run_on(self, worker: &dyn WorkerHooks) {
        let (cell, dispatch) = self.into_raw();
        // SAFETY: `cell` came from `Arc::into_raw` in `new`, with the table for its type, and
        // this job's reference to it is handed over exactly once, here.
        unsafe { (dispatch.run)(cell, worker) }
    }

    /// Ends the task with an executor's error (pool broken, shut down) instead of running it, if
    /// it has not started, and frees its closure.
    pub(crate) fn reject(self, error: TaskError<Infallible>) {
        let (cell, dispatch) = self.into_raw();
        // SAFETY: as in `run_on`.
        unsafe { (dispatch.reject)(cell, error) }
    }

    /// Cancels the task (if it has not started) and frees its closure.
    pub(crate) fn cancel(self) {
        let (cell, dispatch) = self.into_raw();
        // SAFETY: as in `run_on`.
        unsafe { (dispatch.cancel)(cell) }
    }

    /// The task's address, equal to its handles' [`Task::id`]: the job and the handles share one
    /// allocation.
    pub(crate) fn addr(&self) -> usize {
        self.0.as_ptr() as usize
    }

    /// An id for the task, stable for its life (its allocation's address): for traces.
    #[cfg_attr(not(feature = "tracing"), allow(dead_code))]
    pub(crate) fn id(&self) -> usize {
        self.addr()
    }
}

impl Drop for Job {
    /// The closure lives in a `ManuallyDrop` (see [`JobSlot`]): a job dropped unconsumed frees it
    /// here, or its captures would leak.
    fn drop(&mut self) {
        let dispatch = self.dispatch();
        // SAFETY: as in `run_on`; `drop` runs once and consuming methods skip it.
        unsafe { (dispatch.discard)(self.0) }
    }
}

/// Drops something whose `Drop` is user code, catching and reporting a panic: the thread may be a
/// pool's worker, or a caller of `shutdown` with more jobs to cancel.
fn drop_guarded<D>(value: D, what: &str) {
    if std::mem::needs_drop::<D>() {
        if let Err(panic) = panic::catch(move || drop(value)) {
            eprintln!("futurepool: dropping {what} panicked; the panic was caught: {panic}");
        }
    }
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Job")
    }
}
