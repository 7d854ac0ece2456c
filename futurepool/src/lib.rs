//! Thread and process pools for Rust with the semantics of Python's `concurrent.futures`: submit
//! work, get a [`Task`] handle back, and wait for it, map over it, cancel it, time it out or
//! `.await` it. Tasks run on threads ([`ThreadPool`]), in worker processes that contain crashes and
//! can be killed ([`ProcessPool`]), or on many machines (the `cluster` feature), all through the
//! same handle and the same functions.
//!
//! This page is a guide to read from top to bottom; every example in it runs as a test. For the
//! whole story with measured numbers, run `cargo run --release -- demo` in the repository.
//!
//! # Contents
//!
//! 1. [Threads or processes?](#1-threads-or-processes)
//! 2. [Submit a task, get its result](#2-submit-a-task-get-its-result)
//! 3. [When a task fails](#3-when-a-task-fails)
//! 4. [`map`: many inputs, one function](#4-map-many-inputs-one-function)
//! 5. [`wait` and `as_completed`](#5-wait-and-as_completed)
//! 6. [Cancel, callbacks and timeouts](#6-cancel-callbacks-and-timeouts)
//! 7. [The process pool: `init()` and `register!`](#7-the-process-pool-init-and-register)
//! 8. [Code that runs on any pool](#8-code-that-runs-on-any-pool)
//! 9. [Async code](#9-async-code)
//! 10. [The cluster](#10-the-cluster)
//! 11. [Coming from Python](#11-coming-from-python)
//!
//! # 1. Threads or processes?
//!
//! In Python the answer is forced by the GIL: threads for waiting (downloads, disks, databases),
//! processes for computing. Rust has no GIL — threads run in parallel on every core — so:
//!
//! - **Use a [`ThreadPool`]** for almost everything: I/O-bound work *and* CPU-bound work. A task is
//!   any closure; it can borrow nothing but can own anything (`move`), and it costs about as much
//!   to submit as a channel send.
//! - **Use a [`ProcessPool`]** when a task might take the program down or never come back: code
//!   that can segfault or `abort()` (C libraries, `unsafe`), leak memory, or loop forever. A worker
//!   process that dies fails only its own task, and a per-task time limit really stops a runaway
//!   task by killing its worker — no thread can do that to another thread. The price: arguments
//!   and results cross a pipe (they must be serde types) and the function must be registered.
//!
//! `futurepool demo` measures both on your machine: on a CPU-bound job the thread pool and the
//! process pool give the same speedup, where Python's threads give about 1×.
//!
//! # 2. Submit a task, get its result
//!
//! [`ThreadPool::submit`] runs a closure on a worker thread and returns at once with a [`Task`]:
//! a handle to the value it will produce, like Python's `Future`. [`Task::result`] blocks until
//! the value is there.
//!
//! ```
//! use futurepool::ThreadPool;
//!
//! let pool = ThreadPool::new(4); // at most 4 threads, started as work arrives
//! let task = pool.submit(|| (1..=10u64).product::<u64>());
//! // ... do other things while it runs ...
//! assert_eq!(task.result(), Ok(3_628_800));
//! ```
//!
//! A handle is cheap to clone and can be sent to other threads; every clone sees the same
//! outcome, as many times as it asks. Dropping handles never cancels the work, and dropping the
//! pool waits for every task it accepted (like leaving Python's `with` block); call
//! [`ThreadPool::shutdown`] to choose otherwise. [`ThreadPool::builder`] sets the thread name
//! prefix, a per-thread initializer and a bound on queued tasks that makes `submit` wait when the
//! queue is full (backpressure, which Python's pools lack).
//!
//! # 3. When a task fails
//!
//! A task that panics does not take its worker with it: the panic is caught and becomes the
//! task's error. A closure that returns `Result` is submitted with
//! [`submit_fallible`](ThreadPool::submit_fallible), and its `Err` becomes
//! [`TaskError::Failed`] — distinct from a panic, so callers can tell a bad input from a bug.
//! Every way a task can end without a value is a [`TaskError`] variant you can match on:
//!
//! ```
//! use futurepool::{TaskError, ThreadPool};
//! # std::panic::set_hook(Box::new(|_| {})); // keep the doctest's output quiet
//!
//! let pool = ThreadPool::new(2);
//! let parsed = pool.submit_fallible(|| "12x".parse::<u32>());
//! let buggy = pool.submit(|| -> u32 { panic!("index out of range") });
//!
//! assert!(matches!(parsed.result(), Err(TaskError::Failed(_))));
//! match buggy.result() {
//!     Err(TaskError::Panicked(panic)) => assert_eq!(panic.message(), "index out of range"),
//!     other => unreachable!("{other:?}"),
//! }
//! // The pool is unharmed.
//! assert_eq!(pool.submit(|| 1 + 1).result(), Ok(2));
//! ```
//!
//! The other variants: [`Cancelled`](TaskError::Cancelled), [`Timeout`](TaskError::Timeout)
//! (*waiting* timed out; the task goes on), [`TimeLimit`](TaskError::TimeLimit) (the task was
//! stopped), [`WorkerLost`](TaskError::WorkerLost) (its worker process died),
//! [`PoolBroken`](TaskError::PoolBroken), [`ShutDown`](TaskError::ShutDown) and
//! [`Transfer`](TaskError::Transfer) (its data could not cross to a worker).
//!
//! # 4. `map`: many inputs, one function
//!
//! [`ThreadPool::map`] applies a function to every input and yields the results in input order.
//! It is lazy and bounded: only a few tasks are in flight at a time, so an endless iterator is
//! fine, and dropping the iterator cancels what has not started. A failing item yields its error
//! in its place and the rest go on.
//!
//! ```
//! use futurepool::ThreadPool;
//!
//! let pool = ThreadPool::new(4);
//! let lengths: Vec<usize> = pool
//!     .map(|word: &str| word.len(), ["thread", "process", "task"])
//!     .map(Result::unwrap)
//!     .collect();
//! assert_eq!(lengths, [6, 7, 4]);
//!
//! // Endless input, bounded memory: only `buffer` squares are computed ahead of the consumer.
//! let first: Vec<u64> = pool.map(|n: u64| n * n, 1..).buffer(8).take(3).map(Result::unwrap).collect();
//! assert_eq!(first, [1, 4, 9]);
//! ```
//!
//! [`map_unordered`](ThreadPool::map_unordered) yields results as they complete instead, and
//! both take a [`timeout`](Map::timeout) counted from the call.
//!
//! # 5. `wait` and `as_completed`
//!
//! [`as_completed`] yields tasks as they finish — the loop of the classic downloader.
//! [`wait`] blocks until the first task completes, the first one fails, or all are done
//! ([`ReturnWhen`]), and returns `(done, not_done)`. Both take an optional timeout; a timeout is
//! an answer, not a failure.
//!
//! ```
//! use std::time::Duration;
//! use futurepool::{as_completed, wait, ReturnWhen, ThreadPool};
//!
//! let pool = ThreadPool::new(3);
//! let tasks: Vec<_> = [30u64, 10, 20]
//!     .into_iter()
//!     .map(|ms| pool.submit(move || { std::thread::sleep(Duration::from_millis(ms)); ms }))
//!     .collect();
//!
//! let mut finished = 0;
//! for task in as_completed(&tasks, Some(Duration::from_secs(10))) {
//!     let task = task.expect("all three finish well within 10 s");
//!     println!("a task slept {} ms", task.result().unwrap());
//!     finished += 1;
//! }
//! assert_eq!(finished, 3);
//!
//! let (done, not_done) = wait(&tasks, ReturnWhen::AllCompleted, None);
//! assert_eq!((done.len(), not_done.len()), (3, 0));
//! ```
//!
//! # 6. Cancel, callbacks and timeouts
//!
//! - [`Task::cancel`] stops a task that has not started (and says whether it did); a running task
//!   runs to the end on a thread — on a process pool, a time limit can stop it (next section).
//! - [`Task::add_done_callback`] runs a function once the task is done (at once if it already is).
//! - [`Task::result_timeout`] gives up *waiting* after a while; the task itself goes on.
//!
//! ```
//! use std::sync::mpsc;
//! use std::time::Duration;
//! use futurepool::{TaskError, ThreadPool};
//!
//! let pool = ThreadPool::new(1);
//! let (release, gate) = mpsc::channel::<()>();
//! let busy = pool.submit(move || gate.recv().is_ok()); // holds the only worker
//! let queued = pool.submit(|| "never runs");
//!
//! let (tx, rx) = mpsc::channel();
//! queued.add_done_callback(move |task| tx.send(task.is_cancelled()).unwrap());
//! assert!(queued.cancel());
//! assert_eq!(rx.recv(), Ok(true)); // the callback saw the cancellation
//! assert_eq!(queued.result(), Err(TaskError::Cancelled));
//!
//! assert_eq!(busy.result_timeout(Duration::from_millis(10)), Err(TaskError::Timeout));
//! release.send(()).unwrap();
//! assert_eq!(busy.result(), Ok(true)); // waiting timed out, the task did not
//! ```
//!
//! # 7. The process pool: `init()` and `register!`
//!
//! A [`ProcessPool`] runs plain functions `fn(A) -> R` in worker processes, which are this same
//! executable started again in worker mode. Two lines make that work:
//!
//! - [`register!`] names each function the workers may run, so a worker is told *which* function
//!   by a stable name, never by a code address;
//! - [`init()`] as the **first line of `main`**: in a worker it serves tasks and never returns; in
//!   your program it returns at once.
//!
//! Arguments and results are serde types ([`Payload`]); use a tuple for several arguments.
//!
//! ```
//! use std::time::Duration;
//! use futurepool::{ProcessPool, TaskError};
//!
//! fn crunch(n: u64) -> u64 {
//!     (0..n).fold(0, |acc, i| acc ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
//! }
//! fn hang(_: ()) {
//!     loop { std::thread::park(); }
//! }
//! futurepool::register!(crunch, hang);
//!
//! fn main() {
//!     futurepool::init(); // first: a worker process serves here and never returns
//!
//!     let pool = ProcessPool::builder()
//!         .max_workers(4)
//!         .time_limit(Duration::from_millis(500)) // a task running longer is stopped
//!         .build()
//!         .expect("start the workers");
//!     assert_eq!(pool.submit(crunch, 0).result(), Ok(0));
//!     let all: Vec<u64> = pool.map(crunch, 0..1000).map(Result::unwrap).collect();
//!     assert_eq!(all.len(), 1000);
//!
//!     // The runaway task's worker is killed and replaced; the pool carries on.
//!     assert!(matches!(pool.submit(hang, ()).result(), Err(TaskError::TimeLimit(_))));
//! }
//! ```
//!
//! A worker that crashes (a segfault, `abort()`, `exit(3)`, the OOM killer) fails only the task it
//! held, with [`TaskError::WorkerLost`] naming the signal or exit code; a new worker takes its
//! place. Workers exit when your program does, even if it is killed.
//!
//! One task can have its own limit:
//! [`submit_with_time_limit(f, arg, Some(limit))`](ProcessPool::submit_with_time_limit).
//!
//! **In tests**, libtest owns `main`, so put [`test_support!()`](test_support) once in each test
//! file that creates a `ProcessPool` (next to its `register!`): a worker started from the test
//! binary then serves before libtest starts, so `cargo test` shows your tests only. Process pools are Linux-only; elsewhere
//! `ProcessPool` does not exist (a compile error, not a run-time surprise) and `init()` does
//! nothing.
//!
//! # 8. Code that runs on any pool
//!
//! The [`Executor`] trait is what the thread pool, the process pool and the cluster have in
//! common: submit a registered `fn` with its argument, shut down. Write against it once and pick
//! the pool at the call site.
//!
//! ```
//! use futurepool::{Executor, ThreadPool};
//!
//! fn word_count(text: String) -> usize {
//!     text.split_whitespace().count()
//! }
//! futurepool::register!(word_count);
//!
//! fn total_words(pool: &impl Executor, documents: Vec<String>) -> usize {
//!     let tasks: Vec<_> = documents.into_iter().map(|d| pool.submit_fn(word_count, d)).collect();
//!     tasks.iter().map(|t| t.result().unwrap()).sum()
//! }
//!
//! let docs = vec!["one two".to_string(), "three".to_string()];
//! assert_eq!(total_words(&ThreadPool::new(2), docs), 3);
//! ```
//!
//! To pick the pool at run time (from a flag or a config file), wrap it in an [`AnyExecutor`]:
//! `let pool: AnyExecutor = if isolate { ProcessPool::new(4)?.into() } else { ThreadPool::new(4).into() };`
//! — an `Executor` itself, so `total_words(&pool, docs)` works the same.
//!
//! # 9. Async code
//!
//! A [`Task`] is also a [`Future`](std::future::Future): `.await` it from any async runtime to run
//! blocking work on a pool without blocking the runtime's threads, or hand tasks to combinators
//! such as `futures::future::join_all` and `select_all`. Dropping a task's future only stops
//! waiting; the work goes on (see "Cancel safety" in [`Task`]'s `Future` implementation).
//!
//! ```
//! use futurepool::{TaskError, ThreadPool};
//!
//! async fn sizes(pool: &ThreadPool) -> Result<(usize, usize), TaskError> {
//!     let a = pool.submit(|| vec![0u8; 1024].len()); // both start now
//!     let b = pool.submit(|| vec![0u8; 2048].len());
//!     Ok((a.await?, b.await?))
//! }
//! # // A minimal executor, so the example needs no runtime (see examples/async_await.rs).
//! # fn block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     use std::task::{Context, Poll, Wake, Waker};
//! #     struct Unpark(std::thread::Thread);
//! #     impl Wake for Unpark { fn wake(self: std::sync::Arc<Self>) { self.0.unpark() } }
//! #     let waker = Waker::from(std::sync::Arc::new(Unpark(std::thread::current())));
//! #     let mut f = std::pin::pin!(f);
//! #     loop {
//! #         match f.as_mut().poll(&mut Context::from_waker(&waker)) {
//! #             Poll::Ready(v) => return v,
//! #             Poll::Pending => std::thread::park(),
//! #         }
//! #     }
//! # }
//!
//! let pool = ThreadPool::new(2);
//! assert_eq!(block_on(sizes(&pool)), Ok((1024, 2048)));
//! ```
//!
//! **With tokio and a process pool**, do not use `#[tokio::main]`: it builds the runtime, with
//! its worker threads, *before* your `main` body runs, so `init()` comes second and every worker
//! process would start tokio's threads before turning into a worker. Call `init()` first in a
//! plain `main`, then build the runtime (this crate does not depend on tokio, so the example is
//! not compiled here; the same shape with `futures::executor::block_on` runs as a test below):
//!
//! ```ignore
//! fn main() {
//!     futurepool::init(); // a worker process serves here, before any runtime exists
//!     let runtime = tokio::runtime::Runtime::new().expect("start the tokio runtime");
//!     runtime.block_on(async_main());
//! }
//! ```
//!
//! ```
//! fn square(n: u64) -> u64 { n * n }
//! futurepool::register!(square);
//!
//! fn main() {
//!     futurepool::init();
//!     futures::executor::block_on(async {
//!         let pool = futurepool::ProcessPool::new(2).expect("start the workers");
//!         assert_eq!(pool.submit(square, 12).await, Ok(144));
//!     });
//! }
//! ```
//!
//! # 10. The cluster
//!
//! With the `cluster` feature, `cluster::ClusterPool` sends the same registered functions to
//! workers on any number of machines through Redis Streams, and hands back the same [`Task`]s. A
//! worker is your own binary calling `cluster::serve`; a task whose worker dies is delivered again
//! to another one. See the `cluster` module for the guarantees.
//!
//! ```no_run
//! # #[cfg(feature = "cluster")]
//! # {
//! use futurepool::cluster::{serve, ClusterPool, ServeOptions};
//!
//! fn crunch(n: u64) -> u64 { n * n }
//! futurepool::register!(crunch);
//!
//! // On each worker machine:
//! # if false {
//! serve("redis://queue.internal:6379/", ServeOptions::default()).expect("serve");
//! # }
//! // In the program that submits:
//! let pool = ClusterPool::connect("redis://queue.internal:6379/").expect("connect");
//! let squares: Vec<u64> = pool.map(crunch, 0..100).map(Result::unwrap).collect();
//! # let _ = squares;
//! # }
//! ```
//!
//! # 11. Coming from Python
//!
//! | Python (`concurrent.futures`) | futurepool |
//! | --- | --- |
//! | `ThreadPoolExecutor(max_workers=10)` | [`ThreadPool::new(10)`](ThreadPool::new) |
//! | `ProcessPoolExecutor(4)` | [`ProcessPool::new(4)`](ProcessPool::new), [`init()`] first in `main` |
//! | `executor.submit(fn, x)` | `pool.submit(move \|\| fn(x))`; on processes `pool.submit(fn, x)` |
//! | `future.result(timeout=5)` | [`task.result_timeout(Duration::from_secs(5))`](Task::result_timeout) |
//! | `future.exception()` | [`task.failure()`](Task::failure) |
//! | `future.cancel()`, `.done()`, `.running()` | [`cancel`](Task::cancel), [`is_done`](Task::is_done), [`is_running`](Task::is_running) |
//! | `future.add_done_callback(fn)` | [`task.add_done_callback(fn)`](Task::add_done_callback) |
//! | `executor.map(fn, xs)` | [`pool.map(fn, xs)`](ThreadPool::map): lazy, bounded, errors in place |
//! | `wait(fs, return_when=FIRST_EXCEPTION)` | [`wait(&tasks, ReturnWhen::FirstException, None)`](wait) |
//! | `as_completed(fs, timeout=10)` | [`as_completed(&tasks, Some(Duration::from_secs(10)))`](as_completed) |
//! | `executor.shutdown(wait=True, cancel_futures=True)` | [`pool.shutdown(Shutdown::default().cancel_pending(true))`](Shutdown) |
//! | `asyncio.wrap_future(f)` | `task.await` |
//! | (pebble, loky) per-task timeout | [`TaskError::TimeLimit`]: the process pool's time limit |
//! | (none: Python cannot stop a running task) | [`task.abort()`](Task::abort): kills a process task's worker; on threads sets the task's [`CancelToken`] ([`current_token()`]) |
//!
//! What Python does not have: a bounded, lazy `map` by default; backpressure on `submit`; a dead
//! worker process failing only its own task instead of breaking the pool; per-task time limits;
//! stopping a running task ([`Task::abort`]);
//! typed errors that tell a failure from a panic from a lost worker.

#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
// docs.rs (nightly, `--cfg docsrs`): badges such as "Available on crate feature cluster only" on
// feature- and platform-gated items. Stable builds never see the attribute.
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "cluster")]
#[cfg_attr(docsrs, doc(cfg(feature = "cluster")))]
pub mod cluster;
mod error;
mod executor;
mod loom;
mod map;
mod panic;
#[cfg(target_os = "linux")]
mod process_pool;
#[cfg(feature = "progress")]
#[cfg_attr(docsrs, doc(cfg(feature = "progress")))]
mod progress;
mod registry;
mod stats;
mod task;
mod thread_pool;
mod token;
mod trace;
mod wait;
mod wire;

pub use error::{Panic, Reason, TaskError, WorkerLoss};
pub use executor::{AnyExecutor, Executor, Payload, Shutdown, TaskFn};
pub use map::{Map, MapUnordered};
#[cfg(feature = "progress")]
#[cfg_attr(docsrs, doc(cfg(feature = "progress")))]
pub use progress::{Progress, ProgressItem};
pub use stats::Stats;
pub use task::{report_progress, Task};
pub use thread_pool::{Scope, ThreadPool, ThreadPoolBuilder};
pub use token::{current_token, CancelToken};
pub use wait::{as_completed, wait, AsCompleted, AsCompletedTimeout, ReturnWhen};

#[cfg(target_os = "linux")]
#[cfg_attr(docsrs, doc(cfg(target_os = "linux")))]
pub use process_pool::{
    init, ProcessMap, ProcessMapUnordered, ProcessPool, ProcessPoolBuilder, ProcessPoolError,
};

/// Call this first in `main`. Process pools exist only on Linux; elsewhere this does nothing, so
/// portable programs can call it unconditionally.
///
/// # Examples
///
/// ```
/// futurepool::init();
/// ```
#[cfg(not(target_os = "linux"))]
pub fn init() {}

// The package README's examples run as doc tests, so what crates.io shows stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

/// What `register!` expands to; not public API.
#[doc(hidden)]
pub mod __private {
    #[cfg(target_os = "linux")]
    pub use crate::process_pool::test_support_start;
    pub use crate::registry::{describe, Function, Registration, REGISTRATIONS};
    pub use linkme;

    /// The fuzz target's entry point: decodes `data` as frames and messages, discarding them.
    /// Must return, never panic, whatever `data` holds.
    pub fn fuzz_decode(data: &[u8]) {
        crate::wire::decode_everything(data, 1 << 20);
    }
}
