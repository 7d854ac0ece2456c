//! Chaining: [`Task::then`] runs a closure on a thread pool once a task has succeeded.
//!
//! No thread waits for the first task: the dependent task's job is created at once (so the
//! dependent can be cancelled, and reports running, like any task) and handed to the pool by a
//! done-callback on the first task, in whichever thread completes it.

use crate::task::{Job, Task};

use super::ThreadPool;

impl<T, E> Task<T, E>
where
    T: Clone + Send + Sync + 'static,
    E: Clone + Send + Sync + 'static,
{
    /// Runs `f(value)` on `pool` once this task has finished with a value, and returns its task.
    /// No thread blocks in the meantime.
    ///
    /// How outcomes propagate (`f` never runs unless this task succeeded):
    ///
    /// - this task fails (its own error, a panic, a lost worker, ...): the new task fails with the
    ///   same error;
    /// - this task is cancelled: the new task is cancelled;
    /// - the new task is cancelled before it starts: `f` never runs; this task is unaffected;
    /// - `pool` is shut down by the time this task finishes: the new task ends with
    ///   [`TaskError::ShutDown`](crate::TaskError::ShutDown).
    ///
    /// Works on any task, wherever it runs (a process pool's too): `f` runs on `pool`. The value
    /// is cloned for `f`; this task keeps its own. To run the next step in a worker process,
    /// use [`ProcessPool::submit_after`](crate::ProcessPool::submit_after) with a registered
    /// function.
    ///
    /// # Examples
    ///
    /// ```
    /// use futurepool::{TaskError, ThreadPool};
    ///
    /// let pool = ThreadPool::new(2);
    /// let page = pool.submit(|| String::from("<h1>hi</h1>"));
    /// let length = page.then(&pool, |html| html.len());
    /// assert_eq!(length.result(), Ok(11));
    ///
    /// let failed = pool.submit_fallible(|| "x".parse::<u8>());
    /// let doubled = failed.then(&pool, |n| n * 2);
    /// assert!(matches!(doubled.result(), Err(TaskError::Failed(_))), "the error propagates");
    /// ```
    pub fn then<U, F>(&self, pool: &ThreadPool, f: F) -> Task<U, E>
    where
        F: FnOnce(T) -> U + Send + 'static,
        U: Send + Sync + 'static,
    {
        let upstream = self.clone();
        let (dependent, job) = Job::new(move || {
            // Submitted only once `upstream` finished with a value.
            match upstream.try_result() {
                Some(Ok(value)) => Ok(f(value)),
                _ => unreachable!("a chained job runs only after its task succeeded"),
            }
        });
        let shared = std::sync::Arc::clone(&pool.shared);
        let outcome_for = dependent.clone();
        self.add_done_callback(move |task| match task.try_result() {
            Some(Ok(_)) => shared.submit(job),
            _ if task.is_cancelled() => job.cancel(),
            Some(Err(error)) => {
                // The job is dropped first: that frees the closure and gives up the job's hold on
                // the task, which until then refuses every resolution but the job's own.
                drop(job);
                outcome_for.resolve(Err(error));
            }
            None => unreachable!("a done-callback sees its task done"),
        });
        dependent
    }
}
