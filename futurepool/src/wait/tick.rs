//! Waiting in slices, so an iterator blocked on a task can still refresh a progress bar with the
//! partial progress of its items in flight (`.progress()`, see `progress.rs`).
//!
//! Without a [`Ticker`] (no bar, or the `progress` feature off) a wait is exactly the plain one:
//! the slicing costs nothing unless a bar asked for it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::task::{deadline_after, Task};

/// How long a bar's iterator waits before it re-reads its items' progress.
pub(crate) const SLICE: Duration = Duration::from_millis(100);

/// Where an iterator waiting for a task sends the partial progress of its items in flight.
#[derive(Clone)]
pub(crate) struct Ticker {
    refresh: Arc<dyn Fn(f64) + Send + Sync>,
}

impl Ticker {
    // Only a progress bar makes one.
    #[cfg_attr(not(feature = "progress"), allow(dead_code))]
    pub(crate) fn new(refresh: impl Fn(f64) + Send + Sync + 'static) -> Self {
        Ticker {
            refresh: Arc::new(refresh),
        }
    }
}

impl std::fmt::Debug for Ticker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticker").finish_non_exhaustive()
    }
}

/// Waits as `attempt(deadline)` does (an answer, or `None` at the deadline). With a `ticker`, the
/// wait is cut into [`SLICE`]s and, after each slice that ends without an answer, the ticker is
/// told `partial()`.
pub(crate) fn wait<R>(
    ticker: Option<&Ticker>,
    deadline: Option<Instant>,
    mut attempt: impl FnMut(Option<Instant>) -> Option<R>,
    partial: impl Fn() -> f64,
) -> Option<R> {
    let Some(ticker) = ticker else {
        return attempt(deadline);
    };
    loop {
        let slice = deadline_after(SLICE);
        if deadline.is_some_and(|d| d <= slice) {
            return attempt(deadline);
        }
        if let Some(answer) = attempt(Some(slice)) {
            return Some(answer);
        }
        (ticker.refresh)(partial());
    }
}

/// How much of `tasks` is done, in items, each counted by [`task_fraction`].
pub(crate) fn fraction_done<'a, T: 'a, E: 'a>(
    tasks: impl IntoIterator<Item = &'a Task<T, E>>,
) -> f64 {
    items_done(tasks, task_fraction)
}

/// How much of `tasks` is done, in items, each counted by `weigh`.
pub(crate) fn items_done<'a, T: 'a, E: 'a>(
    tasks: impl IntoIterator<Item = &'a Task<T, E>>,
    weigh: fn(&Task<T, E>) -> f64,
) -> f64 {
    tasks.into_iter().map(weigh).sum()
}

/// How much of one item `task` is: 1 if it finished (done, not yet taken), the fraction it last
/// reported while it runs (`done / total`, at most 1), else 0.
pub(crate) fn task_fraction<T, E>(task: &Task<T, E>) -> f64 {
    if task.is_done() {
        return 1.0;
    }
    match task.progress() {
        Some((done, total)) if total > 0 => done.min(total) as f64 / total as f64,
        _ => 0.0,
    }
}
