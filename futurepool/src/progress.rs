//! `.progress()` on `map`, `map_unordered` and `as_completed`, on every executor (feature
//! `progress`): an [`indicatif`] bar on stderr with done/total, rate, ETA and failures.
//!
//! The bar is an adapter around the iterator, advanced as the caller takes each item, so it
//! counts what the caller has *received* — the same on threads, processes and a cluster, with no
//! hook in any executor. The total is the iterator's size hint when it has an upper bound
//! (a `map` over a `Vec` or a range, an `as_completed` over a slice), else the bar counts without
//! a length. When stderr is not a terminal (a pipe, a file, CI) the bar draws nothing.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::error::TaskError;
use crate::task::Task;
use crate::wait::AsCompletedTimeout;

/// An item a progress bar can count: it tells whether it is a failure.
///
/// Implemented for what `map` yields (`Result<T, TaskError<E>>`: an `Err` is a failure) and what
/// `as_completed` yields (a task that failed or was cancelled, or the timeout error, is a failure).
///
/// # Examples
///
/// ```
/// use futurepool::{ProgressItem, TaskError};
/// let failed: Result<u8, TaskError> = Err(TaskError::Cancelled);
/// assert!(failed.is_failure());
/// ```
pub trait ProgressItem {
    /// True if this item counts as a failure on the bar.
    fn is_failure(&self) -> bool;
}

impl<T, E> ProgressItem for Result<T, TaskError<E>> {
    fn is_failure(&self) -> bool {
        self.is_err()
    }
}

impl<T, E> ProgressItem for Result<Task<T, E>, AsCompletedTimeout> {
    fn is_failure(&self) -> bool {
        match self {
            Ok(task) => task.is_cancelled() || task.failure().is_some(),
            Err(_) => true,
        }
    }
}

/// An iterator with a progress bar: yields exactly what the iterator it wraps yields, and
/// advances the bar by one per item (counting failures) as the caller takes it.
///
/// Made by `.progress()` on [`Map`](crate::Map), [`MapUnordered`](crate::MapUnordered), the
/// process pool's maps and [`AsCompleted`](crate::AsCompleted). The bar finishes when the
/// iterator ends; if it is dropped early, the bar stays where it was (abandoned).
///
/// # Examples
///
/// ```
/// let pool = futurepool::ThreadPool::new(4);
/// let words = vec!["a", "bb", "ccc"];
/// let mut lengths = pool.map(|w: &str| w.len(), words).progress();
/// let total: usize = lengths.by_ref().map(Result::unwrap).sum();
/// assert_eq!(total, 6);
/// assert_eq!((lengths.done(), lengths.failed(), lengths.total()), (3, 0, Some(3)));
/// ```
#[must_use = "iterators are lazy: nothing is submitted until the map is iterated"]
pub struct Progress<I> {
    inner: I,
    bar: ProgressBar,
    failed: u64,
    has_prefix: bool,
}

/// `{bar} done/total  rate  ETA  failures`.
const WITH_TOTAL: &str =
    "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {rate} ETA {eta} {msg}";
/// Without a total: no bar, no ETA.
const WITHOUT_TOTAL: &str = "{spinner} [{elapsed_precise}] {pos} done {rate} {msg}";

/// The style for `template`, with `{rate}`: items per second to three significant digits
/// (indicatif's own `{per_sec}` prints four decimals).
fn style(template: &str) -> Option<ProgressStyle> {
    let style = ProgressStyle::with_template(template).ok()?;
    Some(style.with_key(
        "rate",
        |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
            let rate = state.per_sec();
            let _ = if rate >= 100.0 {
                write!(w, "{rate:.0}/s")
            } else if rate >= 10.0 {
                write!(w, "{rate:.1}/s")
            } else {
                write!(w, "{rate:.2}/s")
            };
        },
    ))
}

impl<I: Iterator> Progress<I> {
    pub(crate) fn new(inner: I) -> Self {
        let total = inner.size_hint().1;
        let target = if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(total.map(|n| n as u64), target);
        let progress = Progress {
            inner,
            bar,
            failed: 0,
            has_prefix: false,
        };
        progress.restyle();
        progress
    }

    /// Picks the template for what is known: a total or not, a prefix or not.
    fn restyle(&self) {
        let template = if self.bar.length().is_some() {
            WITH_TOTAL
        } else {
            WITHOUT_TOTAL
        };
        let template = if self.has_prefix {
            format!("{{prefix}} {template}")
        } else {
            template.to_string()
        };
        if let Some(style) = style(&template) {
            self.bar.set_style(style);
        }
    }

    /// Sets the total, for an iterator whose length is known to you but not to its size hint
    /// (an endless input cut short with `take` elsewhere, a process pool's map).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = futurepool::ThreadPool::new(2);
    /// let bar = pool.map(|n: u32| n, (0..).take_while(|n| *n < 10)).progress().total_of(10);
    /// assert_eq!(bar.total(), Some(10));
    /// ```
    pub fn total_of(self, total: u64) -> Self {
        self.bar.set_length(total);
        self.restyle();
        self
    }

    /// A message shown before the bar (what is being done).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = futurepool::ThreadPool::new(2);
    /// let n = pool.map(|n: u32| n, 0..3).progress().prefix("resizing").count();
    /// assert_eq!(n, 3);
    /// ```
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.has_prefix = true;
        self.bar.set_prefix(prefix.into());
        self.restyle();
        self
    }

    /// Items taken so far.
    pub fn done(&self) -> u64 {
        self.bar.position()
    }

    /// Items taken so far that were failures.
    pub fn failed(&self) -> u64 {
        self.failed
    }

    /// The total the bar counts towards, if known.
    pub fn total(&self) -> Option<u64> {
        self.bar.length()
    }

    /// The bar itself, to restyle it or to draw it elsewhere (the [`indicatif`] 0.18 type).
    pub fn bar(&self) -> &ProgressBar {
        &self.bar
    }
}

impl<I> Iterator for Progress<I>
where
    I: Iterator,
    I::Item: ProgressItem,
{
    type Item = I::Item;

    fn next(&mut self) -> Option<I::Item> {
        match self.inner.next() {
            Some(item) => {
                if item.is_failure() {
                    self.failed += 1;
                    self.bar.set_message(format!("{} failed", self.failed));
                }
                self.bar.inc(1);
                Some(item)
            }
            None => {
                if !self.bar.is_finished() {
                    self.bar.finish();
                }
                None
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

impl<I> Drop for Progress<I> {
    fn drop(&mut self) {
        if !self.bar.is_finished() {
            self.bar.abandon();
        }
    }
}

impl<I> std::fmt::Debug for Progress<I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress")
            .field("done", &self.bar.position())
            .field("total", &self.bar.length())
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

/// `.progress()` for each iterator type: inherent methods, so no trait needs importing.
macro_rules! progress_method {
    ($($ty:ty => [$($generics:tt)*]),* $(,)?) => {$(
        impl<$($generics)*> $ty {
            /// Shows a progress bar on stderr as the results are taken: done/total (the total
            /// from the size hint when it is known), rate, ETA and failures. Draws nothing when
            /// stderr is not a terminal. See [`Progress`].
            ///
            /// # Examples
            ///
            /// ```
            /// let pool = futurepool::ThreadPool::new(2);
            /// let squares: Vec<u32> = pool.map(|n: u32| n * n, 0..100).progress().map(Result::unwrap).collect();
            /// assert_eq!(squares.len(), 100);
            /// ```
            pub fn progress(self) -> Progress<Self> {
                Progress::new(self)
            }
        }
    )*};
}

progress_method! {
    crate::Map<I, S, T, E> => [I: Iterator, S: FnMut(I::Item) -> Task<T, E>, T: Clone, E: Clone],
    crate::MapUnordered<I, S, T, E> => [I: Iterator, S: FnMut(I::Item) -> Task<T, E>, T: Clone, E: Clone],
    crate::AsCompleted<T, E> => [T, E],
}

#[cfg(target_os = "linux")]
progress_method! {
    crate::process_pool::ProcessMap<'_, I, R, E> => [I: Iterator, R: Clone, E: Clone],
    crate::process_pool::ProcessMapUnordered<'_, I, R, E> => [I: Iterator, R: Clone, E: Clone],
}
