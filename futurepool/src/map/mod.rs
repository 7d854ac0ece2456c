//! `map` over an executor: lazy, bounded, in input order ([`Map`]) or in completion order
//! ([`MapUnordered`]).
//!
//! Both are generic over *how one item is submitted* (any `FnMut(Item) -> Task<T, E>`), so the
//! thread pool, the process pool and the cluster share this machinery; executors only supply the
//! closure and a default buffer.
//!
//! Layout: `mod.rs` is the ordered [`Map`] and the thread pool's `map` methods; `unordered.rs` is
//! [`MapUnordered`].

mod unordered;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::fmt;
use std::iter::Fuse;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::TaskError;
use crate::task::{deadline_after, Task};
use crate::wait::tick::{self, Ticker};
use crate::ThreadPool;

pub use self::unordered::MapUnordered;

/// The shared settings of both map flavours: how many tasks may be in flight, and the deadline.
#[derive(Debug, Clone, Copy)]
struct Limits {
    buffer: usize,
    /// When the map was created; a timeout counts from here.
    created: Instant,
    deadline: Option<Instant>,
}

impl Limits {
    fn new(buffer: usize) -> Self {
        Limits {
            buffer: buffer.max(1),
            created: Instant::now(),
            deadline: None,
        }
    }

    fn set_buffer(&mut self, buffer: usize) {
        assert!(buffer > 0, "a map needs a buffer of at least one task");
        self.buffer = buffer;
    }

    fn set_timeout(&mut self, timeout: Duration) {
        self.deadline = Some(
            self.created
                .checked_add(timeout)
                .unwrap_or_else(|| deadline_after(timeout)),
        );
    }
}

/// Results of a function applied to every input on an executor, in input order.
///
/// Made by [`ThreadPool::map`], [`ThreadPool::map_fallible`] or
/// [`Executor::map_fn`](crate::Executor::map_fn). It is lazy and bounded:
///
/// - nothing is submitted until the first call to `next`; then at most
///   [`buffer`](Map::buffer) tasks are in flight, topped up as results are taken, so an endless
///   input works and memory stays flat;
/// - each item yields `Ok(value)` or its own `Err` in its place, and iteration goes on;
/// - with a [`timeout`](Map::timeout), measured from the map's creation, the first item not done in
///   time yields `Err(TaskError::Timeout)`, the tasks in flight are cancelled, and iteration ends;
/// - dropping the iterator cancels the tasks that have not started and aborts the running ones
///   (see [`Task::abort`](crate::Task::abort): on threads their tokens are set).
///
/// Values are read the way [`Task::result`] reads them, so `T` and `E` must be `Clone`.
///
/// # Examples
///
/// ```
/// use futurepool::ThreadPool;
///
/// let pool = ThreadPool::new(4);
/// let lengths: Vec<usize> = pool
///     .map(|word: &str| word.len(), ["one", "three", "five"])
///     .map(Result::unwrap)
///     .collect();
/// assert_eq!(lengths, [3, 5, 4]);
/// ```
#[must_use = "iterators are lazy: nothing is submitted until the map is iterated"]
pub struct Map<I: Iterator, S, T, E = Infallible> {
    inputs: Fuse<I>,
    submit: S,
    in_flight: VecDeque<Task<T, E>>,
    limits: Limits,
    ended: bool,
    /// Set by a progress bar: told the items' partial progress while `next` waits.
    ticker: Option<Ticker>,
    /// How many items a task in flight has done (see [`Map::weighed_by`]).
    weigh: fn(&Task<T, E>) -> f64,
}

impl<I, S, T, E> Map<I, S, T, E>
where
    I: Iterator,
    S: FnMut(I::Item) -> Task<T, E>,
{
    /// A map that submits each input with `submit`, keeping at most `buffer` in flight.
    pub(crate) fn new(inputs: I, submit: S, buffer: usize) -> Self {
        Map {
            inputs: inputs.fuse(),
            submit,
            in_flight: VecDeque::new(),
            limits: Limits::new(buffer),
            ended: false,
            ticker: None,
            weigh: tick::task_fraction,
        }
    }

    /// Counts the partial progress of a task in flight with `weigh` instead of as one item
    /// ([`tick::task_fraction`]): for a process pool's map, whose tasks are chunks of items.
    pub(crate) fn weighed_by(mut self, weigh: fn(&Task<T, E>) -> f64) -> Self {
        self.weigh = weigh;
        self
    }

    /// Keeps at most `n` tasks in flight (submitted and not yet yielded). The default is twice the
    /// pool's workers: enough to keep every worker busy while results are taken in order.
    ///
    /// # Panics
    ///
    /// If `n` is 0.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = futurepool::ThreadPool::new(2);
    /// let firsts: Vec<u64> = pool.map(|n| n * 2, 0u64..).buffer(8).take(3).map(Result::unwrap).collect();
    /// assert_eq!(firsts, [0, 2, 4]);
    /// ```
    pub fn buffer(mut self, n: usize) -> Self {
        self.limits.set_buffer(n);
        self
    }

    /// Gives up once `timeout` has passed since the map was created: the first item not done by
    /// then yields `Err(TaskError::Timeout)`, every task still in flight is cancelled, and the
    /// iteration ends.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use futurepool::{TaskError, ThreadPool};
    ///
    /// let pool = ThreadPool::new(1);
    /// let results: Vec<_> = pool
    ///     .map(|ms| std::thread::sleep(Duration::from_millis(ms)), [0, 5_000])
    ///     .timeout(Duration::from_millis(200))
    ///     .collect();
    /// assert_eq!(results, [Ok(()), Err(TaskError::Timeout)]);
    /// # pool.shutdown(futurepool::Shutdown::default().wait(false));
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.limits.set_timeout(timeout);
        self
    }

    fn top_up(&mut self) {
        while self.in_flight.len() < self.limits.buffer {
            match self.inputs.next() {
                Some(item) => {
                    let task = (self.submit)(item);
                    self.in_flight.push_back(task);
                }
                None => break,
            }
        }
    }
}

impl<I, S, T, E> Iterator for Map<I, S, T, E>
where
    I: Iterator,
    S: FnMut(I::Item) -> Task<T, E>,
    T: Clone,
    E: Clone,
{
    type Item = Result<T, TaskError<E>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.ended {
            return None;
        }
        self.top_up();
        let Some(task) = self.in_flight.pop_front() else {
            self.ended = true;
            return None;
        };
        let waited = tick::wait(
            self.ticker.as_ref(),
            self.limits.deadline,
            |until| task.wait_until(until).then_some(()),
            || tick::items_done(self.in_flight.iter().chain([&task]), self.weigh),
        );
        if waited.is_none() {
            task.cancel();
            self.cancel_in_flight();
            self.ended = true;
            return Some(Err(TaskError::Timeout));
        }
        // Start the next input before handing this result out, so workers stay busy while the
        // caller processes it.
        self.top_up();
        task.try_result()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.ended {
            return (0, Some(0));
        }
        let (low, high) = self.inputs.size_hint();
        let in_flight = self.in_flight.len();
        let high = high.and_then(|h| h.checked_add(in_flight));
        if self.limits.deadline.is_some() {
            (usize::from(in_flight + low > 0), high)
        } else {
            (low.saturating_add(in_flight), high)
        }
    }
}

impl<I: Iterator, S, T, E> Map<I, S, T, E> {
    /// How much of the items in flight is done (each task counted as [`Map::weighed_by`] says,
    /// one item by default): what a progress bar adds to the items taken.
    #[cfg_attr(not(feature = "progress"), allow(dead_code))]
    pub(crate) fn partial(&self) -> f64 {
        tick::items_done(&self.in_flight, self.weigh)
    }

    /// Tells `ticker` the partial progress while `next` waits.
    // Only a progress bar sets one.
    #[cfg_attr(not(feature = "progress"), allow(dead_code))]
    pub(crate) fn set_ticker(&mut self, ticker: Ticker) {
        self.ticker = Some(ticker);
    }

    /// Cancels every task in flight (those already running go on).
    fn cancel_in_flight(&mut self) {
        for task in self.in_flight.drain(..) {
            task.cancel();
        }
    }
}

impl<I: Iterator, S, T, E> Drop for Map<I, S, T, E> {
    /// Nobody will read the results any more: queued items are cancelled and running ones
    /// aborted (their tokens set; see [`Task::abort`]).
    fn drop(&mut self) {
        for task in self.in_flight.drain(..) {
            task.abort();
        }
    }
}

impl<I: Iterator, S, T, E> fmt::Debug for Map<I, S, T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Map")
            .field("in_flight", &self.in_flight.len())
            .field("buffer", &self.limits.buffer)
            .field("deadline", &self.limits.deadline)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl ThreadPool {
    /// Applies `f` to every input on the pool and yields the results in input order; see [`Map`]
    /// for laziness, the buffer, errors and the timeout.
    ///
    /// # Examples
    ///
    /// ```
    /// use futurepool::ThreadPool;
    ///
    /// let pool = ThreadPool::new(4);
    /// // An endless input is fine: at most `buffer` items are in flight.
    /// let squares: Vec<u64> = pool.map(|n: u64| n * n, 1..).take(4).map(Result::unwrap).collect();
    /// assert_eq!(squares, [1, 4, 9, 16]);
    /// ```
    pub fn map<I, F, T>(
        &self,
        f: F,
        inputs: I,
    ) -> Map<I::IntoIter, impl FnMut(I::Item) -> Task<T> + '_, T>
    where
        I: IntoIterator,
        I::Item: Send + 'static,
        F: Fn(I::Item) -> T + Send + Sync + 'static,
        T: Send + Sync + 'static,
    {
        self.map_fallible(move |item| Ok::<T, Infallible>(f(item)), inputs)
    }

    /// Like [`map`](ThreadPool::map) for a function returning `Result`: an `Err(e)` is yielded as
    /// `Err(TaskError::Failed(e))` in its place, and iteration goes on.
    ///
    /// # Examples
    ///
    /// ```
    /// use futurepool::{TaskError, ThreadPool};
    ///
    /// let pool = ThreadPool::new(2);
    /// let parsed: Vec<_> = pool.map_fallible(|s: &str| s.parse::<u8>(), ["1", "x", "3"]).collect();
    /// assert_eq!(parsed[0], Ok(1));
    /// assert!(matches!(parsed[1], Err(TaskError::Failed(_))));
    /// assert_eq!(parsed[2], Ok(3));
    /// ```
    // The closure type cannot be named (no `impl Trait` in type aliases on stable).
    #[allow(clippy::type_complexity)]
    pub fn map_fallible<I, F, T, E>(
        &self,
        f: F,
        inputs: I,
    ) -> Map<I::IntoIter, impl FnMut(I::Item) -> Task<T, E> + '_, T, E>
    where
        I: IntoIterator,
        I::Item: Send + 'static,
        F: Fn(I::Item) -> Result<T, E> + Send + Sync + 'static,
        T: Send + Sync + 'static,
        E: Send + Sync + 'static,
    {
        let f = Arc::new(f);
        let submit = move |item| {
            let f = Arc::clone(&f);
            self.submit_fallible(move || f(item))
        };
        Map::new(inputs.into_iter(), submit, self.default_buffer())
    }

    /// Like [`map`](ThreadPool::map), but yields each result as soon as its task completes,
    /// whatever its input position; see [`MapUnordered`].
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = futurepool::ThreadPool::new(4);
    /// let mut doubled: Vec<i32> = pool.map_unordered(|n| n * 2, [1, 2, 3]).map(Result::unwrap).collect();
    /// doubled.sort();
    /// assert_eq!(doubled, [2, 4, 6]);
    /// ```
    pub fn map_unordered<I, F, T>(
        &self,
        f: F,
        inputs: I,
    ) -> MapUnordered<I::IntoIter, impl FnMut(I::Item) -> Task<T> + '_, T>
    where
        I: IntoIterator,
        I::Item: Send + 'static,
        F: Fn(I::Item) -> T + Send + Sync + 'static,
        T: Send + Sync + 'static,
    {
        self.map_unordered_fallible(move |item| Ok::<T, Infallible>(f(item)), inputs)
    }

    /// [`map_unordered`](ThreadPool::map_unordered) for a function returning `Result`.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = futurepool::ThreadPool::new(2);
    /// let failures = pool
    ///     .map_unordered_fallible(|s: &str| s.parse::<u8>(), ["1", "x", "y"])
    ///     .filter(Result::is_err)
    ///     .count();
    /// assert_eq!(failures, 2);
    /// ```
    // The closure type cannot be named (no `impl Trait` in type aliases on stable).
    #[allow(clippy::type_complexity)]
    pub fn map_unordered_fallible<I, F, T, E>(
        &self,
        f: F,
        inputs: I,
    ) -> MapUnordered<I::IntoIter, impl FnMut(I::Item) -> Task<T, E> + '_, T, E>
    where
        I: IntoIterator,
        I::Item: Send + 'static,
        F: Fn(I::Item) -> Result<T, E> + Send + Sync + 'static,
        T: Send + Sync + 'static,
        E: Send + Sync + 'static,
    {
        let f = Arc::new(f);
        let submit = move |item| {
            let f = Arc::clone(&f);
            self.submit_fallible(move || f(item))
        };
        MapUnordered::new(inputs.into_iter(), submit, self.default_buffer())
    }

    /// Twice the workers: while the caller takes one result, each worker has a next task queued.
    fn default_buffer(&self) -> usize {
        2 * self.max_workers()
    }
}
