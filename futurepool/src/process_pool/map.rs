//! `map` on a process pool: items grouped into chunks, one round trip per chunk,
//! on top of the shared lazy, bounded [`Map`] / [`MapUnordered`] machinery, then flattened back
//! to one result per input.

use std::convert::Infallible;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Reason, TaskError};
use crate::executor::Payload;
use crate::map::{Map, MapUnordered};
use crate::registry;
use crate::task::Task;

use super::sink::{Answer, ChunkResults, ChunkSink, Decode, Fallible, Plain, Sink, UNITS_PER_ITEM};
use super::state::Work;
use super::ProcessPool;

/// The largest automatic chunk: enough to make a tiny item's round trip negligible, small enough
/// that results stream back steadily.
const MAX_AUTO_CHUNK: usize = 1024;
/// Automatic chunking aims for this many chunks per worker over a sized input, so the work
/// still balances when items take uneven time.
const CHUNKS_PER_WORKER: usize = 4;
/// The chunk size for inputs of unknown length.
const UNSIZED_CHUNK: usize = 64;

/// Cuts the inputs into chunks. Its size is shared with the map so [`ProcessMap::chunksize`]
/// can set it before iteration begins; 0 means automatic.
pub(super) struct Chunks<I> {
    inputs: I,
    size: Arc<AtomicUsize>,
    workers: usize,
}

impl<I: Iterator> Iterator for Chunks<I> {
    type Item = Vec<I::Item>;

    fn next(&mut self) -> Option<Vec<I::Item>> {
        let mut size = self.size.load(Ordering::Relaxed);
        if size == 0 {
            size = auto_chunksize(self.inputs.size_hint(), self.workers);
            self.size.store(size, Ordering::Relaxed);
        }
        let chunk: Vec<_> = self.inputs.by_ref().take(size).collect();
        (!chunk.is_empty()).then_some(chunk)
    }
}

/// A sized input is split into about [`CHUNKS_PER_WORKER`] chunks per worker (Python's
/// `multiprocessing.Pool` rule), at most [`MAX_AUTO_CHUNK`] items each; an unsized one uses
/// [`UNSIZED_CHUNK`].
fn auto_chunksize(size_hint: (usize, Option<usize>), workers: usize) -> usize {
    match size_hint {
        (_, Some(len)) => len
            .div_ceil(workers.max(1) * CHUNKS_PER_WORKER)
            .clamp(1, MAX_AUTO_CHUNK),
        (_, None) => UNSIZED_CHUNK,
    }
}

/// How many of a chunk's items are done, for a progress bar: all of them once the chunk is
/// finished (their results are in, not yet taken; a chunk the map cancelled as it ended counts
/// one, like any task), else what its progress says (`sink.rs`, [`UNITS_PER_ITEM`]): the items
/// before the one that reported last count whole, that one the share it reported. Nothing else
/// is known of a chunk answered in one frame until its answer, so while it runs this is a lower
/// bound; an item's share never outlives its answer (the answer settles the item whole).
fn chunk_items_done<R, E>(chunk: &Task<ChunkResults<R, E>>) -> f64 {
    if chunk.is_done() {
        return chunk
            .result_ref()
            .map_or(1.0, |results| results.len() as f64);
    }
    chunk
        .progress()
        .map_or(0.0, |(done, _)| done as f64 / UNITS_PER_ITEM as f64)
}

type ChunkSubmit<'a, A, R, E> = Box<dyn FnMut(Vec<A>) -> Task<ChunkResults<R, E>> + Send + 'a>;
/// The shared ordered map, over chunks.
type ChunkMap<'a, I, R, E> =
    Map<Chunks<I>, ChunkSubmit<'a, <I as Iterator>::Item, R, E>, ChunkResults<R, E>>;
/// The shared unordered map, over chunks.
type ChunkMapUnordered<'a, I, R, E> =
    MapUnordered<Chunks<I>, ChunkSubmit<'a, <I as Iterator>::Item, R, E>, ChunkResults<R, E>>;

/// Results of a registered function applied to every input on a [`ProcessPool`], in input order.
///
/// Made by [`ProcessPool::map`] and [`ProcessPool::map_fallible`]. Inputs travel in chunks (one
/// round trip each; see [`chunksize`](ProcessMap::chunksize)) and results come back one per
/// input, exactly like [`Map`]: lazy and bounded, each item's error in its place, an optional
/// timeout. Whatever happens to a chunk — cancelled by a shutdown, its worker lost, a time limit,
/// a result that does not decode — it yields exactly one outcome per item, each in its own
/// input's place (a chunk whose worker was lost yields that error for each item it had not
/// answered).
///
/// # Examples
///
/// ```
/// fn square(n: u64) -> u64 { n * n }
/// futurepool::register!(square);
///
/// fn main() {
///     futurepool::init();
///     let pool = futurepool::ProcessPool::new(2).unwrap();
///     let squares: Vec<u64> = pool.map(square, 1..=4).map(Result::unwrap).collect();
///     assert_eq!(squares, [1, 4, 9, 16]);
/// }
/// ```
#[must_use = "iterators are lazy: nothing is submitted until the map is iterated"]
pub struct ProcessMap<'a, I: Iterator, R, E = Infallible> {
    chunks: ChunkMap<'a, I, R, E>,
    size: Arc<AtomicUsize>,
    current: std::vec::IntoIter<Result<R, TaskError<E>>>,
}

/// Like [`ProcessMap`], yielding each chunk's results as soon as the chunk completes (items of
/// one chunk in input order). Made by [`ProcessPool::map_unordered`].
///
/// # Examples
///
/// ```
/// fn triple(n: u32) -> u32 { n * 3 }
/// futurepool::register!(triple);
///
/// fn main() {
///     futurepool::init();
///     let pool = futurepool::ProcessPool::new(2).unwrap();
///     let total: u32 = pool.map_unordered(triple, [1, 2, 3]).map(Result::unwrap).sum();
///     assert_eq!(total, 18);
/// }
/// ```
#[must_use = "iterators are lazy: nothing is submitted until the map is iterated"]
pub struct ProcessMapUnordered<'a, I: Iterator, R, E = Infallible> {
    chunks: ChunkMapUnordered<'a, I, R, E>,
    size: Arc<AtomicUsize>,
    current: std::vec::IntoIter<Result<R, TaskError<E>>>,
}

macro_rules! chunked_map_methods {
    ($name:ident) => {
        impl<I: Iterator, R, E> $name<'_, I, R, E> {
            /// Sends inputs to workers `n` at a time (Python's `chunksize`). The default picks
            /// a size from the input's length: about four chunks per worker, at most 1,024
            /// items each (64 for inputs of unknown length). Larger chunks mean fewer round
            /// trips; smaller ones balance uneven work better and stream results sooner. A
            /// pool's time limit applies to each item, whatever the chunk size: under a time
            /// limit the worker answers item by item, and an item killed by the limit fails
            /// alone (the items after it run on another worker).
            ///
            /// # Panics
            ///
            /// If `n` is 0.
            ///
            /// # Examples
            ///
            /// ```
            /// fn inc(n: u32) -> u32 { n + 1 }
            /// futurepool::register!(inc);
            ///
            /// fn main() {
            ///     futurepool::init();
            ///     let pool = futurepool::ProcessPool::new(2).unwrap();
            ///     let out: Vec<u32> = pool.map(inc, 0..10).chunksize(3).map(Result::unwrap).collect();
            ///     assert_eq!(out, (1..=10).collect::<Vec<_>>());
            /// }
            /// ```
            pub fn chunksize(self, n: usize) -> Self {
                assert!(n > 0, "a chunk holds at least one item");
                self.size.store(n, Ordering::Relaxed);
                self
            }

            /// Keeps at most `n` chunks in flight (default: four per worker).
            ///
            /// # Panics
            ///
            /// If `n` is 0.
            ///
            /// # Examples
            ///
            /// ```
            /// fn inc(n: u32) -> u32 { n + 1 }
            /// futurepool::register!(inc);
            ///
            /// fn main() {
            ///     futurepool::init();
            ///     let pool = futurepool::ProcessPool::new(1).unwrap();
            ///     let first: Vec<u32> = pool.map(inc, 0..).buffer(2).take(3).map(Result::unwrap).collect();
            ///     assert_eq!(first, [1, 2, 3]);
            /// }
            /// ```
            pub fn buffer(mut self, n: usize) -> Self {
                self.chunks = self.chunks.buffer(n);
                self
            }

            /// Gives up once `timeout` has passed since the map was created: the first result
            /// not ready by then is `Err(TaskError::Timeout)`, the chunks in flight are cancelled
            /// and iteration ends.
            ///
            /// # Examples
            ///
            /// ```
            /// use std::time::Duration;
            /// use futurepool::TaskError;
            /// fn nap(ms: u64) -> u64 { std::thread::sleep(Duration::from_millis(ms)); ms }
            /// futurepool::register!(nap);
            ///
            /// fn main() {
            ///     futurepool::init();
            ///     let pool = futurepool::ProcessPool::new(1).unwrap();
            ///     let out: Vec<_> = pool.map(nap, [0, 5_000]).chunksize(1).timeout(Duration::from_millis(300)).collect();
            ///     assert_eq!(out, [Ok(0), Err(TaskError::Timeout)]);
            ///     pool.kill_workers();
            /// }
            /// ```
            pub fn timeout(mut self, timeout: Duration) -> Self {
                self.chunks = self.chunks.timeout(timeout);
                self
            }

            /// How much of the items not yet yielded is done, for a progress bar: the ready
            /// results of the chunk being yielded, plus each chunk in flight counted by
            /// [`chunk_items_done`] (a finished chunk all its items, a running one the items
            /// its worker is known to have finished and the running item's reported share).
            #[cfg_attr(not(feature = "progress"), allow(dead_code))]
            pub(crate) fn partial(&self) -> f64 {
                self.current.len() as f64 + self.chunks.partial()
            }

            #[cfg_attr(not(feature = "progress"), allow(dead_code))]
            pub(crate) fn set_ticker(&mut self, ticker: crate::wait::tick::Ticker) {
                self.chunks.set_ticker(ticker);
            }
        }

        impl<I, R, E> Iterator for $name<'_, I, R, E>
        where
            I: Iterator,
            R: Clone,
            E: Clone,
        {
            type Item = Result<R, TaskError<E>>;

            fn next(&mut self) -> Option<Self::Item> {
                loop {
                    if let Some(item) = self.current.next() {
                        return Some(item);
                    }
                    match self.chunks.next()? {
                        Ok(results) => self.current = results.into_iter(),
                        // A map-level error (its timeout): one error, then the map has ended.
                        // Never a chunk's failure: a chunk task always finishes with one
                        // outcome per item (see `ChunkSink`), which is what keeps every later
                        // result paired with its own input.
                        Err(error) => return Some(Err(error.widen())),
                    }
                }
            }
        }

        impl<I: Iterator, R, E> fmt::Debug for $name<'_, I, R, E> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("chunks", &self.chunks)
                    .field("chunksize", &self.size.load(Ordering::Relaxed))
                    .field("ready", &self.current.len())
                    .finish()
            }
        }
    };
}

chunked_map_methods!(ProcessMap);
chunked_map_methods!(ProcessMapUnordered);

impl ProcessPool {
    /// Applies the registered function `f` to every input in worker processes, yielding results
    /// in input order, with automatic chunking; see [`ProcessMap`].
    ///
    /// # Examples
    ///
    /// ```
    /// fn len(s: String) -> usize { s.len() }
    /// futurepool::register!(len);
    ///
    /// fn main() {
    ///     futurepool::init();
    ///     let pool = futurepool::ProcessPool::new(2).unwrap();
    ///     let words = ["one", "three", "five"].map(String::from);
    ///     let lengths: Vec<usize> = pool.map(len, words).collect::<Result<_, _>>().unwrap();
    ///     assert_eq!(lengths, [3, 5, 4]);
    /// }
    /// ```
    pub fn map<F, A, R, I>(&self, f: F, inputs: I) -> ProcessMap<'_, I::IntoIter, R>
    where
        F: Fn(A) -> R + 'static,
        A: Payload,
        R: Payload,
        I: IntoIterator<Item = A>,
    {
        let (chunks, size, submit) =
            self.chunked::<A, R, Infallible, Plain, _>(registry::index_of_item(f), inputs);
        ProcessMap {
            chunks: Map::new(chunks, submit, self.default_chunk_buffer())
                .weighed_by(chunk_items_done),
            size,
            current: Vec::new().into_iter(),
        }
    }

    /// [`map`](ProcessPool::map) for a function returning `Result`: each `Err(e)` is yielded as
    /// `Err(TaskError::Failed(e))` in its place, and iteration goes on.
    ///
    /// # Examples
    ///
    /// ```
    /// use futurepool::TaskError;
    /// fn parse(s: String) -> Result<u8, String> { s.parse().map_err(|_| format!("bad: {s}")) }
    /// futurepool::register!(parse);
    ///
    /// fn main() {
    ///     futurepool::init();
    ///     let pool = futurepool::ProcessPool::new(1).unwrap();
    ///     let out: Vec<_> = pool.map_fallible(parse, ["1", "x"].map(String::from)).collect();
    ///     assert_eq!(out, [Ok(1), Err(TaskError::Failed("bad: x".into()))]);
    /// }
    /// ```
    pub fn map_fallible<F, A, R, E, I>(&self, f: F, inputs: I) -> ProcessMap<'_, I::IntoIter, R, E>
    where
        F: Fn(A) -> Result<R, E> + 'static,
        A: Payload,
        R: Payload,
        E: Payload,
        I: IntoIterator<Item = A>,
    {
        let (chunks, size, submit) =
            self.chunked::<A, R, E, Fallible, _>(registry::index_of_item(f), inputs);
        ProcessMap {
            chunks: Map::new(chunks, submit, self.default_chunk_buffer())
                .weighed_by(chunk_items_done),
            size,
            current: Vec::new().into_iter(),
        }
    }

    /// Like [`map`](ProcessPool::map), yielding results as their chunks complete; see
    /// [`ProcessMapUnordered`].
    ///
    /// # Examples
    ///
    /// ```
    /// fn double(n: u64) -> u64 { n * 2 }
    /// futurepool::register!(double);
    ///
    /// fn main() {
    ///     futurepool::init();
    ///     let pool = futurepool::ProcessPool::new(2).unwrap();
    ///     let mut out: Vec<u64> = pool.map_unordered(double, 0..100).map(Result::unwrap).collect();
    ///     out.sort();
    ///     assert_eq!(out, (0..100).map(|n| n * 2).collect::<Vec<_>>());
    /// }
    /// ```
    pub fn map_unordered<F, A, R, I>(
        &self,
        f: F,
        inputs: I,
    ) -> ProcessMapUnordered<'_, I::IntoIter, R>
    where
        F: Fn(A) -> R + 'static,
        A: Payload,
        R: Payload,
        I: IntoIterator<Item = A>,
    {
        let (chunks, size, submit) =
            self.chunked::<A, R, Infallible, Plain, _>(registry::index_of_item(f), inputs);
        ProcessMapUnordered {
            chunks: MapUnordered::new(chunks, submit, self.default_chunk_buffer())
                .weighed_by(chunk_items_done),
            size,
            current: Vec::new().into_iter(),
        }
    }

    /// [`map_unordered`](ProcessPool::map_unordered) for a function returning `Result`.
    ///
    /// # Examples
    ///
    /// ```
    /// fn half(n: u32) -> Result<u32, String> {
    ///     if n % 2 == 0 { Ok(n / 2) } else { Err(format!("{n} is odd")) }
    /// }
    /// futurepool::register!(half);
    ///
    /// fn main() {
    ///     futurepool::init();
    ///     let pool = futurepool::ProcessPool::new(2).unwrap();
    ///     let odd = pool.map_unordered_fallible(half, 0..10).filter(Result::is_err).count();
    ///     assert_eq!(odd, 5);
    /// }
    /// ```
    pub fn map_unordered_fallible<F, A, R, E, I>(
        &self,
        f: F,
        inputs: I,
    ) -> ProcessMapUnordered<'_, I::IntoIter, R, E>
    where
        F: Fn(A) -> Result<R, E> + 'static,
        A: Payload,
        R: Payload,
        E: Payload,
        I: IntoIterator<Item = A>,
    {
        let (chunks, size, submit) =
            self.chunked::<A, R, E, Fallible, _>(registry::index_of_item(f), inputs);
        ProcessMapUnordered {
            chunks: MapUnordered::new(chunks, submit, self.default_chunk_buffer())
                .weighed_by(chunk_items_done),
            size,
            current: Vec::new().into_iter(),
        }
    }

    /// Four chunks per worker in flight: each worker has the next ones queued while the caller
    /// takes results.
    fn default_chunk_buffer(&self) -> usize {
        4 * self.max_workers()
    }

    /// The chunker and the "submit one chunk" closure shared by every map flavour: `D` says
    /// how the function's returned bytes become `V` (see [`Decode`]).
    #[allow(clippy::type_complexity)]
    fn chunked<A, V, E, D, I>(
        &self,
        function: Result<u32, Reason>,
        inputs: I,
    ) -> (
        Chunks<I::IntoIter>,
        Arc<AtomicUsize>,
        ChunkSubmit<'_, A, V, E>,
    )
    where
        A: Payload,
        V: Send + Sync + 'static,
        E: Send + Sync + 'static,
        D: Decode<V, E>,
        I: IntoIterator<Item = A>,
    {
        let size = Arc::new(AtomicUsize::new(0));
        let chunks = Chunks {
            inputs: inputs.into_iter(),
            size: size.clone(),
            workers: self.max_workers(),
        };
        let limit = self.shared.config.time_limit;
        let submit: ChunkSubmit<'_, A, V, E> =
            Box::new(move |items| self.submit_chunk::<A, V, E, D>(&function, items, limit));
        (chunks, size, submit)
    }

    fn submit_chunk<A, R, E, D>(
        &self,
        function: &Result<u32, Reason>,
        items: Vec<A>,
        limit: Option<Duration>,
    ) -> Task<ChunkResults<R, E>>
    where
        A: Payload,
        R: Send + Sync + 'static,
        E: Send + Sync + 'static,
        D: Decode<R, E>,
    {
        let task = Task::pending_with_tail(super::state::ProcessTask);
        let function = match function {
            Ok(function) => *function,
            Err(reason) => {
                let sink = Box::new(ChunkSink::<R, E, D>::new(
                    task.clone(),
                    items.len(),
                    Vec::new(),
                    self.counters.clone(),
                    self.shared.callbacks.clone(),
                ));
                sink.fail(TaskError::Transfer(reason.clone()));
                return task;
            }
        };
        // Every argument back to back in one buffer: one allocation per chunk, not per item.
        // The user's `Serialize` may fail (that item is a `Transfer` error) or panic (that item
        // is `Panicked`); either way only that item fails. One guard covers a run of items.
        let mut args = Vec::new();
        let mut ends = Vec::with_capacity(items.len());
        let mut holes = Vec::new();
        let mut position = 0;
        while position < items.len() {
            let run = crate::panic::catch(|| {
                while let Some(item) = items.get(position) {
                    let start = args.len();
                    match postcard::serialize_with_flavor(item, crate::wire::AppendTo(&mut args)) {
                        Ok(()) => ends.push(args.len()),
                        Err(e) => {
                            args.truncate(start);
                            holes.push((
                                position,
                                TaskError::Transfer(Reason::new(format!(
                                    "the argument (a `{}`) does not serialize: {e}",
                                    std::any::type_name::<A>()
                                ))),
                            ));
                        }
                    }
                    position += 1;
                }
            });
            if let Err(panic) = run {
                // `position` is the item whose `Serialize` panicked: drop its partial bytes.
                args.truncate(ends.last().copied().unwrap_or(0));
                holes.push((position, TaskError::Panicked(panic)));
                position += 1;
            }
        }
        let sink = Box::new(ChunkSink::<R, E, D>::new(
            task.clone(),
            items.len(),
            holes,
            self.counters.clone(),
            self.shared.callbacks.clone(),
        ));
        if ends.is_empty() {
            // Nothing to send: every item already failed to serialize.
            sink.finish(Answer::Chunk(Vec::new()));
            return task;
        }
        self.enqueue(
            Work::Chunk {
                function,
                args,
                ends: ends.into_boxed_slice(),
            },
            sink,
            limit,
            self.shared.config.soft_time_limit,
        );
        task
    }
}
