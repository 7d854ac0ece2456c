//! The task's allocation and its runnable half.
//!
//! A task is one allocation: the [`Core`] followed by the closure that will produce its value. The
//! [`Task`] handle sees it with the closure's type erased (`dyn ErasedJob`); the executor's queue
//! holds the other half, a [`Job`], which is the only way to reach the closure. Because a `Job` is
//! neither `Clone` nor `Copy` and is consumed by [`Job::run`] or [`Job::cancel`], the closure is
//! taken at most once, by one thread.

use std::convert::Infallible;
use std::sync::Arc;

use crate::error::TaskError;
use crate::loom::cell::UnsafeCell;
use crate::panic;

use super::core::Core;
use super::Task;

/// The allocation behind a task: its core, then (possibly unsized) whatever runs it.
pub(crate) struct TaskCell<T, E, J: ?Sized> {
    pub(crate) core: Core<T, E>,
    pub(crate) job: J,
}

/// Marker for the erased tail of a [`TaskCell`]; the handle never touches it, only drops it.
pub(crate) trait ErasedJob: Send + Sync {}

/// The closure of a task run on a thread, until a worker takes it.
pub(crate) struct JobSlot<F>(UnsafeCell<Option<F>>);

// SAFETY: the closure inside is only reached through the unique `Job` (see the module docs), so it
// is never accessed from two threads at once; it only needs to be sendable to the worker.
unsafe impl<F: Send> Sync for JobSlot<F> {}
// SAFETY: as above.
unsafe impl<F: Send> Send for JobSlot<F> {}
impl<F: Send> ErasedJob for JobSlot<F> {}

/// The tail of a task resolved from outside (a process pool or a cluster): there is no closure.
pub(crate) struct NoJob;
impl ErasedJob for NoJob {}

/// The executor-facing half of a task.
trait Runnable: Send + Sync {
    fn run(self: Arc<Self>, before_publish: &dyn Fn());
    fn cancel(self: Arc<Self>);
    fn reject(self: Arc<Self>, error: TaskError<Infallible>);
}

impl<T, E, F> Runnable for TaskCell<T, E, JobSlot<F>>
where
    T: Send + Sync + 'static,
    E: Send + Sync + 'static,
    F: FnOnce() -> Result<T, E> + Send + 'static,
{
    fn run(self: Arc<Self>, before_publish: &dyn Fn()) {
        // SAFETY: `run` is only reachable through the unique `Job`, which it consumed.
        let job = self.job.0.with_mut(|slot| unsafe { (*slot).take() });
        if !self.core.try_start() {
            // Cancelled (or resolved) while queued: free the closure's captures now.
            drop(job);
            before_publish();
            return;
        }
        let job = job.expect("a queued task's closure is taken only by its one Job");
        let outcome = match panic::catch(job) {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(TaskError::Failed(error)),
            Err(panic) => Err(TaskError::Panicked(panic)),
        };
        before_publish();
        Task::from_cell(self).resolve(outcome);
    }

    fn cancel(self: Arc<Self>) {
        // SAFETY: as in `run`.
        let job = self.job.0.with_mut(|slot| unsafe { (*slot).take() });
        Task::from_cell(self).cancel();
        drop(job);
    }

    fn reject(self: Arc<Self>, error: TaskError<Infallible>) {
        // SAFETY: as in `run`.
        let job = self.job.0.with_mut(|slot| unsafe { (*slot).take() });
        Task::from_cell(self).resolve(Err(error.widen()));
        drop(job);
    }
}

/// A task's closure, ready to run: what an executor's queue holds.
///
/// Dropping a `Job` without running it leaves its task pending forever, so executors either
/// [`run`](Job::run) or [`cancel`](Job::cancel) every job they accept.
pub(crate) struct Job(Arc<dyn Runnable>);

impl Job {
    /// Creates a task whose value `f` computes, and the job that runs it.
    pub(crate) fn new<T, E, F>(f: F) -> (Task<T, E>, Job)
    where
        T: Send + Sync + 'static,
        E: Send + Sync + 'static,
        F: FnOnce() -> Result<T, E> + Send + 'static,
    {
        let cell = Arc::new(TaskCell {
            core: Core::new(),
            job: JobSlot(UnsafeCell::new(Some(f))),
        });
        let task = Task::from_cell(cell.clone());
        (task, Job(cell))
    }

    /// Runs the task here (unless it was cancelled meanwhile), then resolves it and tells its
    /// listeners.
    // The thread pool uses `run_with`; the task's own tests and loom models call this.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn run(self) {
        self.0.run(&|| ())
    }

    /// Like [`run`](Job::run), calling `before_publish` once the closure has returned (or was
    /// found cancelled) and before waiters can see the outcome. A thread pool uses it to count its
    /// worker as idle again before the submitter, woken by the result, submits the next task.
    pub(crate) fn run_with(self, before_publish: &dyn Fn()) {
        self.0.run(before_publish)
    }

    /// Ends the task with an executor's error (pool broken, shut down) instead of running it, if
    /// it has not started, and frees its closure.
    pub(crate) fn reject(self, error: TaskError<Infallible>) {
        self.0.reject(error)
    }

    /// Cancels the task (if it has not started) and frees its closure.
    pub(crate) fn cancel(self) {
        self.0.cancel()
    }
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Job")
    }
}
