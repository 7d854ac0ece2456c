//! `.progress()` on `map`, `map_unordered` and `as_completed`, on every executor (feature
//! `progress`): an [`indicatif`] bar on stderr with done/total, rate, ETA and failures.
//!
//! The bar is an adapter around the iterator, advanced as the caller takes each item, so its
//! position counts what the caller has *received* — the same on threads, processes and a
//! cluster, with no hook in any executor. The number shown adds the *partial* progress of the
//! items not yet received: each finished one counts 1, each running one the `done / total` it
//! last reported ([`report_progress`](crate::report_progress)). That sum is read from the
//! iterator's tasks in flight at most every [`SLICE`] as items are taken, and every [`SLICE`]
//! while the iterator waits (`wait/tick.rs`), so a long map pays one clock read per item; the
//! rate and ETA use it too. The total is the iterator's size hint when it has an upper bound
//! (a `map` over a `Vec` or a range, an `as_completed` over a slice), else the bar counts without
//! a length. When stderr is not a terminal (a pipe, a file, CI) the bar draws nothing.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use indicatif::{HumanDuration, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

use crate::error::TaskError;
use crate::task::Task;
use crate::wait::tick::{Ticker, SLICE};
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
/// The count drawn is [`done`](Progress::done) plus [`partial`](Progress::partial), the progress
/// of the items not yet taken (with one decimal while it has a fraction), refreshed at most every
/// 100 ms and also while the iterator waits; the rate and the ETA count it too. The bar's own
/// position ([`bar`](Progress::bar)`().position()`) stays the items taken. The filled part of the
/// bar is indicatif's and counts the items taken only.
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
    /// The partial progress of `inner`'s items not yet taken (each iterator's `partial`).
    partial_of: fn(&I) -> f64,
    /// The partial progress the bar shows (`f64` bits), shared with its template keys and with
    /// the ticker `inner` calls while it waits.
    shown: Arc<AtomicU64>,
    /// When `shown` was last read from the items.
    scanned: Option<Instant>,
}

/// `{bar} done/total  rate  ETA  failures`.
const WITH_TOTAL: &str =
    "{spinner} [{elapsed_precise}] {wide_bar} {count}/{len} {rate} ETA {eta} {msg}";
/// Without a total: no bar, no ETA.
const WITHOUT_TOTAL: &str = "{spinner} [{elapsed_precise}] {count} done {rate} {msg}";

fn load(shown: &AtomicU64) -> f64 {
    f64::from_bits(shown.load(Ordering::Relaxed))
}

/// Items taken plus the partial progress of the rest, as the bar counts them.
fn counted(state: &ProgressState, shown: &AtomicU64) -> f64 {
    state.pos() as f64 + load(shown)
}

/// Items per second since the bar started, partial progress included: a map of a few slow items
/// that report progress has a rate (and an ETA) before the first one is taken.
fn mean_rate(state: &ProgressState, shown: &AtomicU64) -> f64 {
    let seconds = state.elapsed().as_secs_f64();
    if seconds > 0.0 {
        counted(state, shown) / seconds
    } else {
        0.0
    }
}

/// The style for `template`, with the keys that count partial progress (`shown`): `{count}`,
/// the items taken plus the partial progress, with one decimal while it has a fraction;
/// `{rate}`, items per second to three significant digits (indicatif's own `{per_sec}` prints
/// four decimals and ignores the partial progress); `{eta}`, from that rate.
fn style(template: &str, shown: &Arc<AtomicU64>) -> Option<ProgressStyle> {
    let style = ProgressStyle::with_template(template).ok()?;
    let (count, rate, eta) = (Arc::clone(shown), Arc::clone(shown), Arc::clone(shown));
    let style = style
        .with_key(
            "count",
            move |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                let n = counted(state, &count);
                let _ = if n.fract() == 0.0 {
                    write!(w, "{n}")
                } else {
                    write!(w, "{n:.1}")
                };
            },
        )
        .with_key(
            "rate",
            move |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                let rate = mean_rate(state, &rate);
                let _ = if rate >= 100.0 {
                    write!(w, "{rate:.0}/s")
                } else if rate >= 10.0 {
                    write!(w, "{rate:.1}/s")
                } else {
                    write!(w, "{rate:.2}/s")
                };
            },
        )
        .with_key(
            "eta",
            move |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                let rate = mean_rate(state, &eta);
                let left = state
                    .len()
                    .map_or(0.0, |len| (len as f64 - counted(state, &eta)).max(0.0));
                let _ = match std::time::Duration::try_from_secs_f64(left / rate) {
                    Ok(eta) => write!(w, "{:#}", HumanDuration(eta)),
                    // No rate yet.
                    Err(_) => write!(w, "?"),
                };
            },
        );
    Some(style)
}

impl<I: Iterator> Progress<I> {
    /// A bar over `inner`, which says what of its items not yet taken is done with `partial_of`
    /// and takes a ticker to call while it waits with `set_ticker`.
    pub(crate) fn new(
        mut inner: I,
        partial_of: fn(&I) -> f64,
        set_ticker: fn(&mut I, Ticker),
    ) -> Self {
        let total = inner.size_hint().1;
        let target = if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(total.map(|n| n as u64), target);
        let shown = Arc::new(AtomicU64::new(0f64.to_bits()));
        // Set even when nothing is drawn: the target can be changed later (`bar()`), and a
        // hidden bar's tick costs nothing.
        let ticker = {
            let (shown, bar) = (Arc::clone(&shown), bar.clone());
            Ticker::new(move |partial: f64| {
                shown.store(partial.to_bits(), Ordering::Relaxed);
                bar.tick();
            })
        };
        set_ticker(&mut inner, ticker);
        let progress = Progress {
            inner,
            bar,
            failed: 0,
            has_prefix: false,
            partial_of,
            shown,
            scanned: None,
        };
        progress.restyle();
        progress
    }

    /// Reads the items' partial progress again if the last read is older than [`SLICE`]; until
    /// then, each item taken lowers the last figure by one (it may have been counted there as
    /// done), so an item is never counted twice.
    fn refresh_partial(&mut self) {
        let now = Instant::now();
        let partial = if self
            .scanned
            .is_none_or(|at| now.saturating_duration_since(at) >= SLICE)
        {
            self.scanned = Some(now);
            (self.partial_of)(&self.inner)
        } else {
            (load(&self.shown) - 1.0).max(0.0)
        };
        self.shown.store(partial.to_bits(), Ordering::Relaxed);
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
        if let Some(style) = style(&template, &self.shown) {
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

    /// How much of the items not yet taken is done, in items, read now: each finished item
    /// counts 1 and each running one the fraction it last reported with
    /// [`report_progress`](crate::report_progress) (`done / total`, at most 1). The bar shows
    /// [`done`](Progress::done) plus this. Items on a process pool travel in chunks: there a
    /// finished chunk counts all its items, and a running one the items its worker is known to
    /// have finished (those before the item that reported last, or answered under a time limit)
    /// plus the running item's share; a chunk whose items never report counts nothing until it
    /// finishes, so this is a lower bound.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::{Arc, Barrier};
    /// let pool = futurepool::ThreadPool::new(2);
    /// let go = Arc::new(Barrier::new(3));
    /// let tasks: Vec<_> = (0..2)
    ///     .map(|_| {
    ///         let go = Arc::clone(&go);
    ///         pool.submit(move || {
    ///             futurepool::report_progress(1, 2);
    ///             go.wait();
    ///         })
    ///     })
    ///     .collect();
    /// let mut bar = futurepool::as_completed(&tasks, None).progress();
    /// while bar.partial() < 1.0 {
    ///     std::thread::yield_now();
    /// }
    /// assert_eq!((bar.done(), bar.partial()), (0, 1.0), "two halves, none taken");
    /// go.wait();
    /// assert_eq!(bar.by_ref().count(), 2);
    /// assert_eq!((bar.done(), bar.partial()), (2, 0.0));
    /// ```
    pub fn partial(&self) -> f64 {
        (self.partial_of)(&self.inner)
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
                // The partial figure first: a draw between the two never counts this item twice.
                self.refresh_partial();
                self.bar.inc(1);
                Some(item)
            }
            None => {
                self.shown.store(0f64.to_bits(), Ordering::Relaxed);
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
            .field("partial", &load(&self.shown))
            .finish_non_exhaustive()
    }
}

/// `.progress()` for each iterator type: inherent methods, so no trait needs importing.
macro_rules! progress_method {
    ($($ty:ty => [$($generics:tt)*]),* $(,)?) => {$(
        impl<$($generics)*> $ty {
            /// Shows a progress bar on stderr as the results are taken: done/total (the total
            /// from the size hint when it is known; done includes the partial progress the
            /// items in flight report), rate, ETA and failures. Draws nothing when stderr is not
            /// a terminal. See [`Progress`].
            ///
            /// # Examples
            ///
            /// ```
            /// let pool = futurepool::ThreadPool::new(2);
            /// let squares: Vec<u32> = pool.map(|n: u32| n * n, 0..100).progress().map(Result::unwrap).collect();
            /// assert_eq!(squares.len(), 100);
            /// ```
            pub fn progress(self) -> Progress<Self> {
                Progress::new(self, Self::partial, Self::set_ticker)
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
