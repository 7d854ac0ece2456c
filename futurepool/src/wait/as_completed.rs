//! Iterating over tasks in the order they complete.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::task::{deadline_after, Task};

use super::tick::{self, Ticker};
use super::Completions;

/// [`as_completed`] passed its deadline with tasks still unfinished.
///
/// # Examples
///
/// ```
/// use futurepool::AsCompletedTimeout;
/// let e = AsCompletedTimeout { unfinished: 2, total: 5 };
/// assert_eq!(e.to_string(), "timed out with 2 of 5 tasks unfinished");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("timed out with {unfinished} of {total} tasks unfinished")]
pub struct AsCompletedTimeout {
    /// Tasks not yet done at the deadline.
    pub unfinished: usize,
    /// Distinct tasks given to [`as_completed`].
    pub total: usize,
}

/// Yields `tasks` as they become done: those already done first (in the order given), then the
/// rest in completion order; each task once, however often it was given.
///
/// With a `timeout`, once it passes the iterator yields one
/// `Err(`[`AsCompletedTimeout`]`)` naming how many of how many tasks are unfinished, and ends. The
/// iterator keeps no handle of a task it has yielded, and dropping it stops watching the rest
/// (the tasks themselves go on).
///
/// # Examples
///
/// ```
/// use futurepool::{as_completed, ThreadPool};
///
/// let pool = ThreadPool::new(3);
/// let tasks: Vec<_> = [30u64, 10, 20]
///     .into_iter()
///     .map(|ms| pool.submit(move || { std::thread::sleep(std::time::Duration::from_millis(ms)); ms }))
///     .collect();
/// let mut total = 0;
/// for task in as_completed(&tasks, None) {
///     total += task.unwrap().result().unwrap();
/// }
/// assert_eq!(total, 60);
/// ```
pub fn as_completed<'a, T, E, I>(tasks: I, timeout: Option<Duration>) -> AsCompleted<T, E>
where
    I: IntoIterator<Item = &'a Task<T, E>>,
    T: 'a,
    E: 'a,
{
    let deadline = timeout.map(deadline_after);
    let completions = Completions::new();
    let mut seen = HashSet::new();
    let mut finished = VecDeque::new();
    let mut watched = Vec::new();
    for task in tasks {
        if !seen.insert(task.id()) {
            continue;
        }
        if task.is_done() {
            finished.push_back(task.clone());
            continue;
        }
        let key = watched.len();
        let registration = completions.watch(task, key);
        watched.push(Some(Watched {
            task: task.clone(),
            registration,
        }));
    }
    AsCompleted {
        total: seen.len(),
        unfinished: watched.len(),
        finished,
        watched,
        completions,
        deadline,
        timed_out: false,
        ticker: None,
    }
}

/// The iterator returned by [`as_completed`].
#[must_use = "iterators do nothing unless iterated"]
pub struct AsCompleted<T, E> {
    /// Done before the call: yielded first, in the order given.
    finished: VecDeque<Task<T, E>>,
    /// The rest, indexed by key; emptied as each is yielded.
    watched: Vec<Option<Watched<T, E>>>,
    completions: Arc<Completions>,
    deadline: Option<Instant>,
    total: usize,
    unfinished: usize,
    timed_out: bool,
    /// Set by a progress bar: told the tasks' partial progress while `next` waits.
    ticker: Option<Ticker>,
}

struct Watched<T, E> {
    task: Task<T, E>,
    /// `None` when the task was done by the time we registered.
    registration: Option<u64>,
}

impl<T, E> Iterator for AsCompleted<T, E> {
    type Item = Result<Task<T, E>, AsCompletedTimeout>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(task) = self.finished.pop_front() {
            return Some(Ok(task));
        }
        if self.unfinished == 0 || self.timed_out {
            return None;
        }
        let waited = tick::wait(
            self.ticker.as_ref(),
            self.deadline,
            |until| self.completions.next_until(until),
            || self.partial(),
        );
        match waited {
            Some(key) => {
                let watched = self.watched[key]
                    .take()
                    .expect("each watched task is reported done once");
                self.unfinished -= 1;
                Some(Ok(watched.task))
            }
            None => {
                self.timed_out = true;
                Some(Err(AsCompletedTimeout {
                    unfinished: self.unfinished,
                    total: self.total,
                }))
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.finished.len() + self.unfinished;
        if self.timed_out {
            (0, Some(0))
        } else if self.deadline.is_some() {
            // A timeout can cut it short, yielding one error instead of the rest.
            let lower = self.finished.len() + usize::from(self.unfinished > 0);
            (lower, Some(left))
        } else {
            (left, Some(left))
        }
    }
}

impl<T, E> AsCompleted<T, E> {
    /// How much of the tasks not yet yielded is done (see [`tick::fraction_done`]): what a
    /// progress bar adds to the tasks taken.
    pub(crate) fn partial(&self) -> f64 {
        let watched = self.watched.iter().flatten().map(|w| &w.task);
        tick::fraction_done(self.finished.iter().chain(watched))
    }

    /// Tells `ticker` the partial progress while `next` waits.
    #[cfg_attr(not(feature = "progress"), allow(dead_code))]
    pub(crate) fn set_ticker(&mut self, ticker: Ticker) {
        self.ticker = Some(ticker);
    }
}

impl<T, E> Drop for AsCompleted<T, E> {
    fn drop(&mut self) {
        for watched in self.watched.iter().flatten() {
            if let Some(id) = watched.registration {
                watched.task.unregister(id);
            }
        }
    }
}

impl<T, E> fmt::Debug for AsCompleted<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsCompleted")
            .field("total", &self.total)
            .field("unfinished", &self.unfinished)
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}
