//! Waiting on many tasks at once: [`wait`] (Python's `concurrent.futures.wait`) and
//! [`as_completed`].
//!
//! Layout:
//! - `mod.rs`: [`wait`] and [`ReturnWhen`];
//! - `as_completed.rs`: [`as_completed`], [`AsCompleted`] and its timeout error;
//! - `completions.rs`: the mailbox both register on every task they watch (also used by
//!   `map_unordered`), so one thread blocks on many tasks without polling;
//! - `tick.rs`: waiting in slices, so a progress bar shows the partial progress of the items in
//!   flight while its iterator waits.

mod as_completed;
mod completions;
pub(crate) mod tick;

use std::collections::HashSet;
use std::time::Duration;

use crate::task::{deadline_after, Task};

pub use self::as_completed::{as_completed, AsCompleted, AsCompletedTimeout};
pub(crate) use self::completions::Completions;

/// When [`wait`] returns.
///
/// # Examples
///
/// ```
/// use futurepool::{wait, ReturnWhen, ThreadPool};
///
/// let pool = ThreadPool::new(2);
/// let tasks = [pool.submit(|| 1), pool.submit(|| 2)];
/// let (done, not_done) = wait(&tasks, ReturnWhen::AllCompleted, None);
/// assert_eq!((done.len(), not_done.len()), (2, 0));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReturnWhen {
    /// As soon as any task is done (finished or cancelled).
    FirstCompleted,
    /// As soon as any task has failed: panicked, returned its own error, or could not run
    /// ([`TaskError::is_failure`](crate::TaskError::is_failure)); cancelled tasks do not count. If
    /// none fails, this is [`AllCompleted`](ReturnWhen::AllCompleted).
    FirstException,
    /// When every task is done.
    AllCompleted,
}

/// Blocks until `tasks` satisfy `return_when` or `timeout` passes, and returns them split into
/// `(done, not_done)`.
///
/// Each task appears once even if given several times (handles of the same task count once). Both
/// lists keep the order the tasks were given in. A timeout is not an error: it gives the partial
/// answer of that moment, and `None` waits as long as it takes.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use futurepool::{wait, ReturnWhen, ThreadPool};
///
/// let pool = ThreadPool::new(2);
/// let quick = pool.submit(|| 1);
/// let slow = pool.submit(|| std::thread::sleep(Duration::from_millis(300)));
/// quick.wait();
/// let (done, not_done) = wait([&quick, &quick], ReturnWhen::FirstCompleted, None);
/// assert_eq!(done.len(), 1, "duplicates count once");
/// # let _ = (not_done, slow);
/// ```
// A plain pair, so callers destructure it as Python's `done, not_done = wait(...)`.
#[allow(clippy::type_complexity)]
pub fn wait<'a, T, E, I>(
    tasks: I,
    return_when: ReturnWhen,
    timeout: Option<Duration>,
) -> (Vec<Task<T, E>>, Vec<Task<T, E>>)
where
    I: IntoIterator<Item = &'a Task<T, E>>,
    T: 'a,
    E: 'a,
{
    let deadline = timeout.map(deadline_after);
    let tasks = unique(tasks);
    let mut progress = Progress::default();
    let mut unfinished = Vec::new();
    for (key, task) in tasks.iter().enumerate() {
        if task.is_done() {
            progress.saw_done(task);
        } else {
            unfinished.push(key);
        }
    }
    if !progress.satisfies(return_when, unfinished.len()) {
        let completions = Completions::new();
        let registrations: Vec<(usize, Option<u64>)> = unfinished
            .iter()
            .map(|&key| (key, completions.watch(&tasks[key], key)))
            .collect();
        let mut remaining = unfinished.len();
        while let Some(key) = completions.next_until(deadline) {
            remaining -= 1;
            progress.saw_done(&tasks[key]);
            if progress.satisfies(return_when, remaining) {
                break;
            }
        }
        for (key, registration) in registrations {
            if let Some(id) = registration {
                tasks[key].unregister(id);
            }
        }
    }
    // Partition by the state at return: a task that finished meanwhile is reported done.
    tasks.into_iter().partition(Task::is_done)
}

/// What [`wait`] has seen so far.
#[derive(Default)]
struct Progress {
    any_done: bool,
    any_failed: bool,
}

impl Progress {
    fn saw_done<T, E>(&mut self, task: &Task<T, E>) {
        self.any_done = true;
        self.any_failed |= task.failure().is_some();
    }

    fn satisfies(&self, return_when: ReturnWhen, unfinished: usize) -> bool {
        unfinished == 0
            || match return_when {
                ReturnWhen::FirstCompleted => self.any_done,
                ReturnWhen::FirstException => self.any_failed,
                ReturnWhen::AllCompleted => false,
            }
    }
}

/// Clones the handles, keeping the first of each task.
fn unique<'a, T: 'a, E: 'a>(tasks: impl IntoIterator<Item = &'a Task<T, E>>) -> Vec<Task<T, E>> {
    let mut seen = HashSet::new();
    tasks
        .into_iter()
        .filter(|task| seen.insert(task.id()))
        .cloned()
        .collect()
}
