//! `map` yielding results in completion order.

use std::convert::Infallible;
use std::fmt;
use std::iter::Fuse;
use std::sync::Arc;
use std::time::Duration;

use crate::error::TaskError;
use crate::task::Task;
use crate::wait::tick::{self, Ticker};
use crate::wait::Completions;

use super::Limits;

/// Results of a function applied to every input on an executor, in the order the tasks complete
/// (Python's `multiprocessing.Pool.imap_unordered`, which `concurrent.futures` lacks).
///
/// Made by [`ThreadPool::map_unordered`](crate::ThreadPool::map_unordered) or
/// [`Executor::map_unordered_fn`](crate::Executor::map_unordered_fn). Lazy, bounded, per-item
/// errors, timeout and cancel-on-drop work exactly as for [`Map`](super::Map); only the order
/// differs. A slow item does not hold back the ones after it.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use futurepool::ThreadPool;
///
/// let pool = ThreadPool::new(2);
/// let order: Vec<u64> = pool
///     .map_unordered(|ms: u64| { std::thread::sleep(Duration::from_millis(ms)); ms }, [300, 1])
///     .map(Result::unwrap)
///     .collect();
/// assert_eq!(order, [1, 300], "the quick one first");
/// ```
#[must_use = "iterators are lazy: nothing is submitted until the map is iterated"]
pub struct MapUnordered<I: Iterator, S, T, E = Infallible> {
    inputs: Fuse<I>,
    submit: S,
    /// Tasks in flight by key, with their registration on `completions`; a free key is `None`.
    slots: Vec<Option<InFlight<T, E>>>,
    free_keys: Vec<usize>,
    in_flight: usize,
    completions: Arc<Completions>,
    limits: Limits,
    ended: bool,
    /// Set by a progress bar: told the items' partial progress while `next` waits.
    ticker: Option<Ticker>,
    /// How many items a task in flight has done; see [`Map::weighed_by`](super::Map::weighed_by).
    weigh: fn(&Task<T, E>) -> f64,
}

/// A submitted task and its registration on the completion mailbox (`None` if it was done
/// before we could register).
struct InFlight<T, E> {
    task: Task<T, E>,
    registration: Option<u64>,
}

impl<I, S, T, E> MapUnordered<I, S, T, E>
where
    I: Iterator,
    S: FnMut(I::Item) -> Task<T, E>,
{
    /// A map that submits each input with `submit`, keeping at most `buffer` in flight.
    pub(crate) fn new(inputs: I, submit: S, buffer: usize) -> Self {
        MapUnordered {
            inputs: inputs.fuse(),
            submit,
            slots: Vec::new(),
            free_keys: Vec::new(),
            in_flight: 0,
            completions: Completions::new(),
            limits: Limits::new(buffer),
            ended: false,
            ticker: None,
            weigh: tick::task_fraction,
        }
    }

    /// Counts a task in flight with `weigh`; see [`Map::weighed_by`](super::Map::weighed_by).
    pub(crate) fn weighed_by(mut self, weigh: fn(&Task<T, E>) -> f64) -> Self {
        self.weigh = weigh;
        self
    }

    /// Keeps at most `n` tasks in flight; see [`Map::buffer`](super::Map::buffer).
    ///
    /// # Panics
    ///
    /// If `n` is 0.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = futurepool::ThreadPool::new(2);
    /// let n = pool.map_unordered(|x: u32| x, 0..100).buffer(3).count();
    /// assert_eq!(n, 100);
    /// ```
    pub fn buffer(mut self, n: usize) -> Self {
        self.limits.set_buffer(n);
        self
    }

    /// Gives up once `timeout` has passed since the map was created; see
    /// [`Map::timeout`](super::Map::timeout).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use futurepool::{TaskError, ThreadPool};
    ///
    /// let pool = ThreadPool::new(1);
    /// let results: Vec<_> = pool
    ///     .map_unordered(|ms| std::thread::sleep(Duration::from_millis(ms)), [5_000])
    ///     .timeout(Duration::from_millis(50))
    ///     .collect();
    /// assert_eq!(results, [Err(TaskError::Timeout)]);
    /// # pool.shutdown(futurepool::Shutdown::default().wait(false));
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.limits.set_timeout(timeout);
        self
    }

    fn top_up(&mut self) {
        while self.in_flight < self.limits.buffer {
            let Some(item) = self.inputs.next() else {
                break;
            };
            let task = (self.submit)(item);
            let key = self.free_keys.pop().unwrap_or(self.slots.len());
            let registration = self.completions.watch(&task, key);
            let slot = Some(InFlight { task, registration });
            if key == self.slots.len() {
                self.slots.push(slot);
            } else {
                self.slots[key] = slot;
            }
            self.in_flight += 1;
        }
    }
}

impl<I, S, T, E> Iterator for MapUnordered<I, S, T, E>
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
        if self.in_flight == 0 {
            self.ended = true;
            return None;
        }
        let waited = tick::wait(
            self.ticker.as_ref(),
            self.limits.deadline,
            |until| self.completions.next_until(until),
            || self.partial(),
        );
        let Some(key) = waited else {
            self.cancel_in_flight();
            self.ended = true;
            return Some(Err(TaskError::Timeout));
        };
        let InFlight { task, .. } = self.slots[key]
            .take()
            .expect("each task in flight is reported done once");
        self.free_keys.push(key);
        self.in_flight -= 1;
        self.top_up();
        task.try_result()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        // As `Map`'s: the inputs left plus the tasks in flight; a timeout can cut it short.
        if self.ended {
            return (0, Some(0));
        }
        let (low, high) = self.inputs.size_hint();
        let high = high.and_then(|h| h.checked_add(self.in_flight));
        if self.limits.deadline.is_some() {
            (usize::from(self.in_flight + low > 0), high)
        } else {
            (low.saturating_add(self.in_flight), high)
        }
    }
}

impl<I: Iterator, S, T, E> MapUnordered<I, S, T, E> {
    /// How much of the items in flight is done; see [`Map::partial`](super::Map::partial).
    pub(crate) fn partial(&self) -> f64 {
        tick::items_done(
            self.slots.iter().flatten().map(|slot| &slot.task),
            self.weigh,
        )
    }

    /// Tells `ticker` the partial progress while `next` waits.
    #[cfg_attr(not(feature = "progress"), allow(dead_code))]
    pub(crate) fn set_ticker(&mut self, ticker: Ticker) {
        self.ticker = Some(ticker);
    }

    /// Stops watching and cancels every task in flight (those already running go on).
    fn cancel_in_flight(&mut self) {
        for InFlight { task, registration } in self.slots.iter_mut().filter_map(Option::take) {
            if let Some(id) = registration {
                task.unregister(id);
            }
            task.cancel();
        }
        self.in_flight = 0;
    }
}

impl<I: Iterator, S, T, E> Drop for MapUnordered<I, S, T, E> {
    /// As [`Map`](super::Map)'s: queued items cancelled, running ones aborted.
    fn drop(&mut self) {
        for InFlight { task, registration } in self.slots.iter_mut().filter_map(Option::take) {
            if let Some(id) = registration {
                task.unregister(id);
            }
            task.abort();
        }
        self.in_flight = 0;
    }
}

impl<I: Iterator, S, T, E> fmt::Debug for MapUnordered<I, S, T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MapUnordered")
            .field("in_flight", &self.in_flight)
            .field("buffer", &self.limits.buffer)
            .field("deadline", &self.limits.deadline)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}
