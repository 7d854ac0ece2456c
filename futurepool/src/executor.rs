//! The one trait every futurepool executor implements, so code can be written once for threads,
//! processes and a cluster.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{Map, MapUnordered, Task};

/// Data that can be handed to any executor: sent to a worker process or another machine, so it
/// must serialize (with serde) and move between threads.
///
/// Blanket-implemented; you never implement it yourself.
///
/// # Serde attributes that fail off-thread
///
/// Process pools and the cluster encode payloads with [postcard](https://docs.rs/postcard),
/// which is compact because it does not describe itself. Serde features that need a
/// self-describing format therefore compile, work on a thread pool (which never serializes), and
/// fail at run time with [`TaskError::Transfer`](crate::TaskError::Transfer) on processes and the
/// cluster: `#[serde(untagged)]`, `#[serde(flatten)]`, internally or adjacently tagged enums
/// (`#[serde(tag = "...")]`), `skip_serializing_if` (the reader cannot know a field was
/// skipped), and types that call `deserialize_any` (such as `serde_json::Value`). Use plain
/// structs and externally tagged enums (serde's default), `Option` fields instead of skipped ones,
/// and a `String` or `Vec<u8>` of JSON for free-form data.
///
/// # Examples
///
/// ```
/// fn check<P: futurepool::Payload>() {}
/// check::<(String, Vec<u64>)>();
/// ```
pub trait Payload: Serialize + DeserializeOwned + Send + Sync + 'static {}
impl<P: Serialize + DeserializeOwned + Send + Sync + 'static> Payload for P {}

/// A function any executor can run: a plain `fn` item such as `square` in `pool.submit_fn(square, 3)`.
///
/// Blanket-implemented. The process pool and the cluster find the function by its *item type*
/// (every `fn` item has its own zero-sized type), which is exact whatever the optimizer does; a
/// value coerced to a `fn` pointer falls back to its address, best effort. Closures satisfy the
/// bound too but cannot be registered, so those executors fail such a task with
/// [`TaskError::Transfer`](crate::TaskError::Transfer): make the closure a named `fn` and pass
/// what it captured in the argument (a tuple for several values).
///
/// # Examples
///
/// ```
/// fn check<F: futurepool::TaskFn<u8, u16>>(_: F) {}
/// fn widen(x: u8) -> u16 { x.into() }
/// check(widen);
/// ```
pub trait TaskFn<A, R>: Fn(A) -> R + Copy + Send + Sync + 'static {}
impl<F: Fn(A) -> R + Copy + Send + Sync + 'static, A, R> TaskFn<A, R> for F {}

/// How to shut an executor down (Python's `shutdown(wait, cancel_futures)`).
///
/// The default waits for every accepted task and cancels nothing — what dropping a pool does.
///
/// # Examples
///
/// ```
/// use futurepool::Shutdown;
/// let quick = Shutdown::default().wait(false).cancel_pending(true);
/// assert!(!quick.waits() && quick.cancels_pending());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shutdown {
    wait: bool,
    cancel_pending: bool,
    abort_running: bool,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown {
            wait: true,
            cancel_pending: false,
            abort_running: false,
        }
    }
}

impl Shutdown {
    /// Whether `shutdown` blocks until running (and, unless cancelled, queued) tasks finish and the
    /// workers have exited.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(!futurepool::Shutdown::default().wait(false).waits());
    /// ```
    pub fn wait(mut self, wait: bool) -> Self {
        self.wait = wait;
        self
    }

    /// Whether queued tasks that have not started are cancelled at once.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(futurepool::Shutdown::default().cancel_pending(true).cancels_pending());
    /// ```
    pub fn cancel_pending(mut self, cancel: bool) -> Self {
        self.cancel_pending = cancel;
        self
    }

    /// Whether running tasks are aborted too, as by [`Task::abort`](crate::Task::abort) on each
    /// (implies [`cancel_pending`](Shutdown::cancel_pending)): their tokens read cancelled and each
    /// ends [`TaskError::Cancelled`](crate::TaskError::Cancelled), its value discarded. On a
    /// thread pool this is cooperative: a closure that never looks at
    /// [`current_token`](crate::current_token) still runs to its end, and `wait` waits for it.
    ///
    /// # Examples
    ///
    /// ```
    /// use futurepool::{current_token, Shutdown, TaskError, ThreadPool};
    ///
    /// let pool = ThreadPool::new(1);
    /// let (started_tx, started) = std::sync::mpsc::channel();
    /// let endless = pool.submit(move || {
    ///     started_tx.send(()).unwrap();
    ///     while !current_token().is_cancelled() {
    ///         std::thread::sleep(std::time::Duration::from_millis(1));
    ///     }
    /// });
    /// started.recv().unwrap();
    /// pool.shutdown(Shutdown::default().abort_running(true));
    /// assert_eq!(endless.result(), Err(TaskError::Cancelled));
    /// ```
    pub fn abort_running(mut self, abort: bool) -> Self {
        self.abort_running = abort;
        self
    }

    /// See [`abort_running`](Shutdown::abort_running).
    ///
    /// # Examples
    ///
    /// ```
    /// let how = futurepool::Shutdown::default().abort_running(true);
    /// assert!(how.aborts_running() && how.cancels_pending());
    /// ```
    pub fn aborts_running(&self) -> bool {
        self.abort_running
    }

    /// See [`wait`](Shutdown::wait).
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(futurepool::Shutdown::default().waits());
    /// ```
    pub fn waits(&self) -> bool {
        self.wait
    }

    /// See [`cancel_pending`](Shutdown::cancel_pending).
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(!futurepool::Shutdown::default().cancels_pending());
    /// ```
    pub fn cancels_pending(&self) -> bool {
        self.cancel_pending || self.abort_running
    }
}

/// An executor of plain functions: the common ground of the thread pool, the process pool and the
/// cluster, so the same code can run on any of them.
///
/// Work is a plain function ([`TaskFn`]) plus its argument. The thread pool calls it directly; the process pool
/// and the cluster send its registered name and the serialized argument to a worker, which is why
/// arguments and results are [`Payload`]s and why those executors need the function registered
/// (see `futurepool::register!`).
///
/// # Examples
///
/// ```
/// use futurepool::{Executor, ThreadPool};
///
/// fn square(n: u64) -> u64 { n * n }
///
/// fn sum_of_squares(pool: &impl Executor, n: u64) -> u64 {
///     let tasks: Vec<_> = (0..n).map(|i| pool.submit_fn(square, i)).collect();
///     tasks.iter().map(|t| t.result().unwrap()).sum()
/// }
///
/// assert_eq!(sum_of_squares(&ThreadPool::new(2), 4), 0 + 1 + 4 + 9);
/// ```
///
/// # Choosing the pool at run time
///
/// The methods are generic, so `Executor` is not dyn-compatible; [`AnyExecutor`] is the form to
/// choose a backend at run time with (it says why it is an enum and not a trait object):
///
/// ```compile_fail,E0038
/// fn takes_any(pool: &dyn futurepool::Executor) {}
/// ```
pub trait Executor {
    /// Runs `f(arg)` and returns its task.
    ///
    /// # Examples
    ///
    /// ```
    /// use futurepool::{Executor, ThreadPool};
    /// fn double(x: i32) -> i32 { x * 2 }
    /// assert_eq!(ThreadPool::new(1).submit_fn(double, 21).result(), Ok(42));
    /// ```
    fn submit_fn<F, A, R>(&self, f: F, arg: A) -> Task<R>
    where
        F: TaskFn<A, R>,
        A: Payload,
        R: Payload;

    /// Runs `f(arg)`, whose `Err` becomes the task's own error
    /// ([`TaskError::Failed`](crate::TaskError::Failed)).
    ///
    /// # Examples
    ///
    /// ```
    /// use futurepool::{Executor, TaskError, ThreadPool};
    /// fn parse(s: String) -> Result<u32, String> { s.parse().map_err(|_| format!("not a number: {s}")) }
    /// let pool = ThreadPool::new(1);
    /// let err = pool.submit_fallible_fn(parse, "x".into()).result().unwrap_err();
    /// assert_eq!(err, TaskError::Failed("not a number: x".to_string()));
    /// ```
    fn submit_fallible_fn<F, A, R, E>(&self, f: F, arg: A) -> Task<R, E>
    where
        F: TaskFn<A, Result<R, E>>,
        A: Payload,
        R: Payload,
        E: Payload;

    /// Shuts the executor down; see [`Shutdown`]. Safe to call many times.
    ///
    /// # Examples
    ///
    /// ```
    /// use futurepool::{Executor, Shutdown, TaskError, ThreadPool};
    /// fn one(_: ()) -> u8 { 1 }
    /// let pool = ThreadPool::new(1);
    /// Executor::shutdown(&pool, Shutdown::default());
    /// assert_eq!(pool.submit_fn(one, ()).result(), Err(TaskError::ShutDown));
    /// ```
    fn shutdown(&self, how: Shutdown);

    /// How many tasks [`map_fn`](Executor::map_fn) keeps in flight unless told otherwise: enough
    /// to keep every worker busy. The default is twice the machine's cores; executors override it
    /// with their own worker count.
    ///
    /// # Examples
    ///
    /// ```
    /// use futurepool::{Executor, ThreadPool};
    /// assert_eq!(ThreadPool::new(3).default_map_buffer(), 6);
    /// ```
    fn default_map_buffer(&self) -> usize {
        2 * std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    }

    /// Applies `f` to every input on this executor, yielding results in input order: lazy,
    /// bounded, per-item errors, optional timeout; see [`Map`].
    ///
    /// # Examples
    ///
    /// ```
    /// use futurepool::{Executor, ThreadPool};
    /// fn cube(n: u64) -> u64 { n * n * n }
    /// let pool = ThreadPool::new(2);
    /// let cubes: Vec<u64> = pool.map_fn(cube, 1..=3).map(Result::unwrap).collect();
    /// assert_eq!(cubes, [1, 8, 27]);
    /// ```
    fn map_fn<F, A, R, I>(&self, f: F, inputs: I) -> Map<I::IntoIter, impl FnMut(A) -> Task<R>, R>
    where
        Self: Sized,
        F: TaskFn<A, R>,
        A: Payload,
        R: Payload,
        I: IntoIterator<Item = A>,
    {
        Map::new(
            inputs.into_iter(),
            move |arg| self.submit_fn(f, arg),
            self.default_map_buffer(),
        )
    }

    /// Like [`map_fn`](Executor::map_fn), yielding results in completion order; see
    /// [`MapUnordered`].
    ///
    /// # Examples
    ///
    /// ```
    /// use futurepool::{Executor, ThreadPool};
    /// fn half(n: u32) -> u32 { n / 2 }
    /// let pool = ThreadPool::new(2);
    /// let total: u32 = pool.map_unordered_fn(half, [2, 4, 6]).map(Result::unwrap).sum();
    /// assert_eq!(total, 6);
    /// ```
    fn map_unordered_fn<F, A, R, I>(
        &self,
        f: F,
        inputs: I,
    ) -> MapUnordered<I::IntoIter, impl FnMut(A) -> Task<R>, R>
    where
        Self: Sized,
        F: TaskFn<A, R>,
        A: Payload,
        R: Payload,
        I: IntoIterator<Item = A>,
    {
        MapUnordered::new(
            inputs.into_iter(),
            move |arg| self.submit_fn(f, arg),
            self.default_map_buffer(),
        )
    }
}

/// A pool chosen at run time: any of futurepool's executors behind one type, itself an
/// [`Executor`].
///
/// `Executor` cannot be a trait object (`dyn Executor` is error E0038): its methods are generic
/// over the function, argument and result types, and a vtable holds one entry per method, not
/// one per type. A type-erased trait object would have to serialize every argument even on
/// threads and hand back tasks that only mirror the real ones (so `cancel` and `is_running`
/// could not keep their meaning). `AnyExecutor` is the dyn-compatible form without those costs:
/// an enum of the executors futurepool has, each variant forwarding to its pool, so every task
/// behaves exactly as on that pool. Choose the variant at run time; pass `&AnyExecutor` (or
/// `impl Executor`) around.
///
/// For an executor of your own, write the same kind of enum with it as one more variant.
///
/// # Examples
///
/// The backend picked from configuration:
///
/// ```
/// use futurepool::{AnyExecutor, Executor, ThreadPool};
///
/// fn checksum(data: Vec<u8>) -> u32 {
///     data.iter().map(|&b| u32::from(b)).sum()
/// }
/// futurepool::register!(checksum);
///
/// fn pick(isolate: bool, workers: usize) -> AnyExecutor {
///     if isolate {
///         #[cfg(target_os = "linux")]
///         return futurepool::ProcessPool::new(workers).expect("start workers").into();
///     }
///     ThreadPool::new(workers).into()
/// }
///
/// fn main() {
///     futurepool::init(); // needed once a ProcessPool may be chosen
///     let isolate = std::env::args().any(|a| a == "--isolate");
///     let pool: AnyExecutor = pick(isolate, 2);
///     let sums: Vec<u32> = pool
///         .map_fn(checksum, vec![vec![1, 2], vec![3]])
///         .map(Result::unwrap)
///         .collect();
///     assert_eq!(sums, [3, 3]);
///     // The same code on processes:
///     # #[cfg(target_os = "linux")]
///     # {
///     let processes = pick(true, 1);
///     assert_eq!(processes.submit_fn(checksum, vec![4]).result(), Ok(4));
///     # }
/// }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum AnyExecutor {
    /// A [`ThreadPool`](crate::ThreadPool).
    Threads(crate::ThreadPool),
    /// A [`ProcessPool`](crate::ProcessPool) (Linux only).
    #[cfg(target_os = "linux")]
    #[cfg_attr(docsrs, doc(cfg(target_os = "linux")))]
    Processes(crate::ProcessPool),
    /// A [`ClusterPool`](crate::cluster::ClusterPool) (the `cluster` feature).
    #[cfg(feature = "cluster")]
    #[cfg_attr(docsrs, doc(cfg(feature = "cluster")))]
    Cluster(crate::cluster::ClusterPool),
}

/// Forwards one expression to whichever pool `$self` holds.
macro_rules! on_each_pool {
    ($self:expr, $pool:ident => $body:expr) => {
        match $self {
            AnyExecutor::Threads($pool) => $body,
            #[cfg(target_os = "linux")]
            AnyExecutor::Processes($pool) => $body,
            #[cfg(feature = "cluster")]
            AnyExecutor::Cluster($pool) => $body,
        }
    };
}

impl Executor for AnyExecutor {
    fn submit_fn<F, A, R>(&self, f: F, arg: A) -> Task<R>
    where
        F: TaskFn<A, R>,
        A: Payload,
        R: Payload,
    {
        on_each_pool!(self, pool => pool.submit_fn(f, arg))
    }

    fn submit_fallible_fn<F, A, R, E>(&self, f: F, arg: A) -> Task<R, E>
    where
        F: TaskFn<A, Result<R, E>>,
        A: Payload,
        R: Payload,
        E: Payload,
    {
        on_each_pool!(self, pool => pool.submit_fallible_fn(f, arg))
    }

    fn shutdown(&self, how: Shutdown) {
        on_each_pool!(self, pool => Executor::shutdown(pool, how))
    }

    fn default_map_buffer(&self) -> usize {
        on_each_pool!(self, pool => pool.default_map_buffer())
    }
}

impl From<crate::ThreadPool> for AnyExecutor {
    fn from(pool: crate::ThreadPool) -> Self {
        AnyExecutor::Threads(pool)
    }
}

#[cfg(target_os = "linux")]
impl From<crate::ProcessPool> for AnyExecutor {
    fn from(pool: crate::ProcessPool) -> Self {
        AnyExecutor::Processes(pool)
    }
}

#[cfg(feature = "cluster")]
impl From<crate::cluster::ClusterPool> for AnyExecutor {
    fn from(pool: crate::cluster::ClusterPool) -> Self {
        AnyExecutor::Cluster(pool)
    }
}
