//! The caller's side: [`ClusterPool`] queues tasks on the broker and resolves their handles when
//! the outcomes come back.
//!
//! Two threads per pool, each with its own connection:
//! - the *submitter* drains the outbox in batches (one script call per batch), retrying with
//!   backoff while the broker is away — safe because submit is idempotent per task id;
//! - the *listener* blocks on this client's reply stream and resolves handles as outcomes arrive.
//!
//! `Task::abort` on a cluster task cancels its handle at once (the client cannot tell a task
//! queued on the broker from one running on a worker) and hands its id to the submitter, which
//! records the abort on the broker with its next batch (see the README's "Aborting a task").
//!
//! After any broker error either thread asks the submitter to submit again every task this client
//! still waits for: a task whose queue entry was lost (a broker restarted from an older snapshot)
//! is queued again, one that is queued or running just gains this client as a waiter again, and one
//! that finished returns its stored outcome at once.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::backend::{After, Backend, Connection, Known, NewTask, PoolConfig, Submitted};
use super::decode::Decoders;
use super::memory::SharedBackend;
use super::options::{RetryPolicy, SubmitOptions, When};
use super::outcome;
use super::rate_limit::RateLimit;
use super::redis::{RedisBackend, MAX_BATCH};
use super::retry::{send_pinning, Retry, Stop};
use super::status::plural;
use super::{ClusterError, DEFAULT_POOL};
use crate::error::{Reason, TaskError};
use crate::executor::{Executor, Payload, Shutdown, TaskFn};
use crate::map::{Map, MapUnordered};
use crate::registry;
use crate::task::{CallbackGroup, RemoteAbort, RemoteProgress, Task};

/// How long the listener blocks on the reply stream before checking whether it should stop.
const LISTEN_BLOCK: Duration = Duration::from_millis(500);
/// Outcomes read per round trip.
const REPLY_BATCH: usize = 1024;
/// How long a task is waited for before the listener's sweep looks for its stored outcome, and
/// how often it looks again.
const SWEEP_EVERY: Duration = Duration::from_secs(5);
/// Most tasks one sweep looks for (the longest-unchecked first come round again next time).
const SWEEP_MAX: usize = 4096;
/// How often a `shutdown(wait)` that is still waiting says what it waits for.
const SAY_EVERY: Duration = Duration::from_secs(5);
/// The longest task id `submit_with_id` accepts.
const MAX_TASK_ID: usize = 64 << 10;
/// Tasks a `map` keeps in flight by default: a cluster round trip is long, so it takes many tasks
/// on the wire to keep remote workers busy (and batches large).
const MAP_BUFFER: usize = 1024;

/// An [`Executor`] whose tasks run on worker processes anywhere, through a Redis server.
///
/// Tasks are registered functions (see `futurepool::register!`) with serde arguments, exactly as
/// for the process pool; the handles, `map`, `wait` and `as_completed` are the same as everywhere
/// in futurepool. Workers are your own binary in worker mode ([`serve`](super::serve)).
///
/// What you can count on is spelled out in the module's README: at-least-once execution,
/// exactly-once publication of each task's outcome, retries only for lost workers (up to
/// `max_deliveries`), idempotent submission per task id, reconnection after a broker restart.
///
/// # Examples
///
/// ```no_run
/// use futurepool::cluster::ClusterPool;
///
/// fn square(n: u64) -> u64 { n * n }
/// futurepool::register!(square);
///
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     if std::env::args().any(|a| a == "--worker") {
///         // Run this same binary with --worker on as many machines as you like.
///         let options = futurepool::cluster::ServeOptions::default();
///         return Ok(futurepool::cluster::serve("redis://127.0.0.1:6379/", options)?);
///     }
///     let pool = ClusterPool::connect("redis://127.0.0.1:6379/")?;
///     let task = pool.submit(square, 12);
///     assert_eq!(task.result()?, 144);
///     Ok(())
/// }
/// ```
pub struct ClusterPool {
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Where this pool's task handles send their aborts: one for all of them.
    aborts: Arc<dyn RemoteAbort>,
}

/// Settings for a [`ClusterPool`]; made by [`ClusterPool::builder`].
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// let pool = futurepool::cluster::ClusterPool::builder("redis://127.0.0.1:6379/")
///     .pool("thumbnails")
///     .lease(Duration::from_secs(10))
///     .max_deliveries(5)
///     .build()?;
/// # Ok::<(), futurepool::cluster::ClusterError>(())
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until .build()"]
pub struct ClusterPoolBuilder {
    url: String,
    pool: String,
    lease: Option<Duration>,
    max_deliveries: Option<u32>,
    result_ttl: Option<Duration>,
    max_payload: Option<usize>,
    /// Retry policies per registered function (a name that is not registered fails `build`).
    retry_policies: Vec<(Result<&'static str, Reason>, RetryPolicy)>,
    /// Rate limits per registered function, stored on the broker by `build`.
    rate_limits: Vec<(Result<&'static str, Reason>, RateLimit)>,
    /// A broker other than the URL's Redis (the in-memory one).
    backend: Option<SharedBackend>,
}

impl ClusterPoolBuilder {
    /// The pool's name (default `"default"`): clients and workers of the same name share a queue.
    ///
    /// # Examples
    ///
    /// ```
    /// let b = futurepool::cluster::ClusterPool::builder("redis://127.0.0.1/").pool("reports");
    /// # drop(b);
    /// ```
    pub fn pool(mut self, name: impl Into<String>) -> Self {
        self.pool = name.into();
        self
    }

    /// How long a worker may go without a heartbeat before its tasks are handed to another
    /// worker (default 30 s). Workers heartbeat four times per lease, so only a worker that is
    /// dead, stopped or cut off loses its tasks. A pool-wide setting: it is stored on the broker
    /// and every worker of the pool follows it.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let b = futurepool::cluster::ClusterPool::builder("redis://127.0.0.1/").lease(Duration::from_secs(5));
    /// # drop(b);
    /// ```
    ///
    /// Between 100 ms and 7 days; [`build`](Self::build) refuses anything else.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = Some(lease);
        self
    }

    /// How many times a task is handed to a worker before, every one of them having been lost,
    /// it fails with [`WorkerLoss::GaveUp`](crate::WorkerLoss::GaveUp) and is dead-lettered
    /// (default 3; between 1 and 1,000). A pool-wide setting stored on the broker, like the lease.
    ///
    /// # Examples
    ///
    /// ```
    /// let b = futurepool::cluster::ClusterPool::builder("redis://127.0.0.1/").max_deliveries(5);
    /// # drop(b);
    /// ```
    pub fn max_deliveries(mut self, deliveries: u32) -> Self {
        self.max_deliveries = Some(deliveries);
        self
    }

    /// How long a finished task's outcome is kept on the broker (default 24 h). Within that time
    /// submitting the same task id again returns the stored outcome instead of running it again.
    /// A pool-wide setting stored on the broker, like the lease. Between 1 s and 365 days. It
    /// counts from the task's completion: a task that waits or runs longer still reaches its
    /// clients.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let b = futurepool::cluster::ClusterPool::builder("redis://127.0.0.1/")
    ///     .result_ttl(Duration::from_secs(3600));
    /// # drop(b);
    /// ```
    pub fn result_ttl(mut self, ttl: Duration) -> Self {
        self.result_ttl = Some(ttl);
        self
    }

    /// The largest serialized argument this client sends (default: what the broker accepts, its
    /// `proto-max-bulk-len`, 512 MiB unless configured otherwise). A larger argument fails its
    /// task at once with [`TaskError::Transfer`] instead of reaching the broker.
    ///
    /// # Examples
    ///
    /// ```
    /// let b = futurepool::cluster::ClusterPool::builder("redis://127.0.0.1/").max_payload(1 << 20);
    /// # drop(b);
    /// ```
    pub fn max_payload(mut self, bytes: usize) -> Self {
        self.max_payload = Some(bytes);
        self
    }

    /// Retries every task of the registered function `f` submitted through this pool under
    /// `policy`, unless its submit gives a policy of its own ([`SubmitOptions::retry`]). A
    /// setting of this client, not of the pool: other clients keep their own.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use futurepool::cluster::{ClusterPool, RetryPolicy};
    /// fn fetch_page(url: String) -> Result<String, String> { Err(url) }
    /// futurepool::register!(fetch_page);
    /// let pool = ClusterPool::builder("redis://127.0.0.1:6379/")
    ///     .retry(fetch_page, RetryPolicy::new(5))
    ///     .build()?;
    /// let page = pool.submit_fallible(fetch_page, "https://example.com/".into()); // up to 6 runs
    /// # Ok::<(), futurepool::cluster::ClusterError>(())
    /// ```
    ///
    /// [`build`](Self::build) fails with [`ClusterError::InvalidSetting`] if `f` is not
    /// registered.
    pub fn retry<F, A, R>(mut self, f: F, policy: RetryPolicy) -> Self
    where
        F: TaskFn<A, R>,
        A: 'static,
        R: 'static,
    {
        self.retry_policies
            .push((registry::name_of_item(f), policy));
        self
    }

    /// Limits the registered function `f` to `limit` across the whole pool: every worker, every
    /// client. A pool-wide setting stored on the broker (replacing the function's previous
    /// limit); workers follow a change within 50 ms. Tasks over the limit wait on the broker's
    /// schedule, not on a worker (see the module's README, "Rate limits").
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use futurepool::cluster::{ClusterPool, RateLimit};
    /// fn call_api(n: u64) -> u64 { n }
    /// futurepool::register!(call_api);
    /// let pool = ClusterPool::builder("redis://127.0.0.1:6379/")
    ///     .rate_limit(call_api, RateLimit::per_second(10))
    ///     .build()?;
    /// # Ok::<(), futurepool::cluster::ClusterError>(())
    /// ```
    ///
    /// [`build`](Self::build) fails with [`ClusterError::InvalidSetting`] if `f` is not
    /// registered.
    pub fn rate_limit<F, A, R>(mut self, f: F, limit: RateLimit) -> Self
    where
        F: TaskFn<A, R>,
        A: 'static,
        R: 'static,
    {
        self.rate_limits.push((registry::name_of_item(f), limit));
        self
    }

    /// Talks to `backend` instead of the URL's Redis (the in-memory broker).
    pub(crate) fn backend(mut self, backend: SharedBackend) -> Self {
        self.backend = Some(backend);
        self
    }

    /// Connects, stores the pool settings given, and starts the client's two threads.
    ///
    /// # Errors
    ///
    /// [`ClusterError::InvalidSetting`] for a setting out of its range (checked before
    /// connecting), [`ClusterError::InvalidUrl`] for a URL that does not name a Redis server,
    /// [`ClusterError::Unavailable`] when the broker cannot be reached now,
    /// [`ClusterError::Refused`] when it refuses this client (password, ACL).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let pool = futurepool::cluster::ClusterPool::builder("redis://127.0.0.1:6379/").build()?;
    /// # Ok::<(), futurepool::cluster::ClusterError>(())
    /// ```
    pub fn build(self) -> Result<ClusterPool, ClusterError> {
        let asked = PoolConfig {
            lease: self.lease.unwrap_or(PoolConfig::default().lease),
            max_deliveries: self
                .max_deliveries
                .unwrap_or(PoolConfig::default().max_deliveries),
            result_ttl: self.result_ttl.unwrap_or(PoolConfig::default().result_ttl),
        };
        asked
            .validate()
            .map_err(|why| ClusterError::InvalidSetting(Reason::new(why)))?;
        if self.max_payload == Some(0) {
            return Err(ClusterError::InvalidSetting(Reason::new(
                "max_payload(0) would refuse every task: give a number of bytes >= 1",
            )));
        }
        let mut retry_policies = HashMap::new();
        for (name, policy) in &self.retry_policies {
            let name = name.clone().map_err(|why| {
                ClusterError::InvalidSetting(Reason::new(format!(
                    "retry(f, policy) names a function that cannot be submitted: {why}"
                )))
            })?;
            retry_policies.insert(name, *policy);
        }
        let backend: Arc<dyn Backend> = match self.backend.clone() {
            Some(backend) => backend.0,
            None => Arc::new(
                RedisBackend::new(&self.url, &self.pool).map_err(ClusterError::invalid_url)?,
            ),
        };
        let mut connection = backend.connect()?;
        let (stored, problems) = connection.config(PoolConfig::default())?;
        for problem in problems {
            eprintln!("futurepool cluster {:?}: {problem}", self.pool);
        }
        let config = PoolConfig {
            lease: self.lease.unwrap_or(stored.lease),
            max_deliveries: self.max_deliveries.unwrap_or(stored.max_deliveries),
            result_ttl: self.result_ttl.unwrap_or(stored.result_ttl),
        };
        if self.lease.is_some() || self.max_deliveries.is_some() || self.result_ttl.is_some() {
            connection.store_config(config)?;
        }
        if !self.rate_limits.is_empty() {
            let mut limits = Vec::new();
            for (name, limit) in &self.rate_limits {
                let name = name.clone().map_err(|why| {
                    ClusterError::InvalidSetting(Reason::new(format!(
                        "rate_limit(f, limit) names a function that cannot be submitted: {why}"
                    )))
                })?;
                limits.push((name, *limit));
            }
            connection.store_rate_limits(&limits)?;
        }
        let broker_limit = connection.max_payload();
        let max_payload = self
            .max_payload
            .map_or(broker_limit, |m| m.min(broker_limit));
        let client = connection.register_client()?;
        let listener_connection = backend.connect()?;
        let shared = Arc::new(Shared {
            client,
            pool: self.pool.clone(),
            lease: config.lease,
            max_payload,
            retry_policies,
            backend,
            sequence: AtomicU64::new(0),
            state: Mutex::new(ClientState::default()),
            outbox_ready: Condvar::new(),
            all_done: Condvar::new(),
            decoders: Decoders::new(&self.pool),
            progress_callbacks: Arc::default(),
        });
        let submitter = {
            let shared = shared.clone();
            spawn(&self.pool, "submit", move || submitter(&shared, connection))?
        };
        let listener = {
            let shared = shared.clone();
            spawn(&self.pool, "listen", move || {
                listener(&shared, listener_connection)
            })?
        };
        Ok(ClusterPool {
            aborts: Arc::new(AbortSink(Arc::downgrade(&shared))),
            shared,
            threads: Mutex::new(vec![submitter, listener]),
        })
    }
}

fn spawn(
    pool: &str,
    role: &str,
    body: impl FnOnce() + Send + 'static,
) -> Result<JoinHandle<()>, ClusterError> {
    thread::Builder::new()
        .name(format!("futurepool-cluster-{pool}-{role}"))
        .spawn(body)
        .map_err(|e| ClusterError::Unavailable(Reason::new(format!("cannot start a thread: {e}"))))
}

/// State shared by the pool's handle and its two threads.
struct Shared {
    client: u64,
    pool: String,
    /// The pool's lease: how long `shutdown(wait)` waits while no worker is alive.
    lease: Duration,
    /// The largest argument sent (the broker's limit, or less if the builder said so).
    max_payload: usize,
    /// [`ClusterPoolBuilder::retry`]'s policies, by function name.
    retry_policies: HashMap<&'static str, RetryPolicy>,
    /// For `shutdown(wait)`'s checks on the workers.
    backend: Arc<dyn Backend>,
    sequence: AtomicU64,
    state: Mutex<ClientState>,
    /// Signalled when the outbox gains tasks, a full re-submit is wanted, or the pool stops.
    outbox_ready: Condvar,
    /// Signalled when the last unfinished handle finishes.
    all_done: Condvar,
    /// Where outcomes are decoded (user code: off the listener thread).
    decoders: Arc<Decoders>,
    /// Where the handles' progress callbacks run (user code: off the listener thread).
    progress_callbacks: Arc<CallbackGroup>,
}

#[derive(Default)]
struct ClientState {
    shut_down: bool,
    /// Tasks accepted but not yet on the broker.
    outbox: Vec<NewTask>,
    /// Ids of tasks aborted here, not yet recorded on the broker (sent after the submits of the
    /// same batch).
    aborts: Vec<Arc<str>>,
    /// Every task this client waits for, by task id.
    waiting: HashMap<Arc<str>, Waiting>,
    /// Handles not yet done (a task submitted twice under one id has two).
    unfinished: usize,
    /// The broker had trouble: submit every waiting task again.
    resubmit_all: bool,
    /// Set when the broker refused this client for good (NOAUTH, a reply stream of the wrong
    /// type...): every waiting task failed with it, and later submits fail at once.
    broken: Option<Reason>,
}

struct Waiting {
    task: NewTask,
    handles: Vec<Box<dyn Handle>>,
    /// When the task last reached the broker or was last looked up by the sweep (see [`sweep`]).
    checked: Instant,
    /// `abort` was called on one of its handles: the broker is (or is being) told.
    aborted: bool,
}

/// The pool's [`RemoteAbort`]: queues the id for the submitter, under the state lock only (no
/// broker call, nothing that blocks, on the thread that called `abort`).
struct AbortSink(Weak<Shared>);

impl RemoteAbort for AbortSink {
    fn abort(&self, task_id: &Arc<str>) {
        let Some(shared) = self.0.upgrade() else {
            return;
        };
        let mut state = shared.lock();
        let ClientState {
            waiting, aborts, ..
        } = &mut *state;
        // Only once per task, and only while its outcome is still awaited: a task whose outcome
        // arrived is finished on the broker too.
        match waiting.get_mut(task_id) {
            Some(waiting) if !waiting.aborted => {
                waiting.aborted = true;
                aborts.push(task_id.clone());
                drop(state);
                shared.outbox_ready.notify_all();
            }
            _ => {}
        }
    }
}

/// A typed task handle behind a uniform face, so one map can hold tasks of every type.
trait Handle: Send {
    fn resolve(&self, outcome: &[u8]);
    fn cancel(&self);
    fn abort(&self);
    /// Resolves the handle without an outcome from the broker.
    fn fail(&self, failure: &Failure);
    /// Where a progress reply for the task goes; `None` once the handle is done.
    fn progress(&self, callbacks: &Arc<CallbackGroup>) -> Option<RemoteProgress>;
}

/// Why a handle resolves without an outcome from the broker.
enum Failure {
    /// The client stopped waiting (the task may still be queued on the broker).
    Timeout,
    /// The broker refused this client for good.
    Broken(Reason),
    /// Decoding the outcome panicked (in the result's `Deserialize`).
    Panicked(crate::error::Panic),
}

struct TypedHandle<R, E> {
    task: Task<R, E>,
    decode: fn(&[u8]) -> Result<R, TaskError<E>>,
}

impl<R: Send + Sync + 'static, E: Send + Sync + 'static> Handle for TypedHandle<R, E> {
    fn resolve(&self, outcome: &[u8]) {
        let (attempts, outcome) = outcome::split_attempts(outcome);
        if let Some(attempts) = attempts {
            self.task.set_attempts(attempts);
        }
        // A handle the caller cancelled, or one already resolved, keeps its outcome.
        match (self.decode)(outcome) {
            // Aborted (through another handle or client): cancelled, as the aborted handle is.
            Err(TaskError::Cancelled) => {
                self.task.cancel();
            }
            decoded => {
                self.task.resolve(decoded);
            }
        }
    }

    fn cancel(&self) {
        self.task.cancel();
    }

    fn abort(&self) {
        self.task.abort();
    }

    fn progress(&self, callbacks: &Arc<CallbackGroup>) -> Option<RemoteProgress> {
        self.task.remote_progress(callbacks)
    }

    fn fail(&self, failure: &Failure) {
        self.task.resolve(Err(match failure {
            Failure::Timeout => TaskError::Timeout,
            Failure::Broken(why) => TaskError::PoolBroken(why.clone()),
            Failure::Panicked(panic) => TaskError::Panicked(panic.clone()),
        }));
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, ClientState> {
        // The state stays consistent even if a thread panicked while holding the lock: every
        // update is a single push, insert or counter change.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn next_task_id(&self) -> Arc<str> {
        let n = self.sequence.fetch_add(1, Ordering::Relaxed);
        format!("auto:{}:{n}", self.client).into()
    }

    /// Resolves every handle waiting for `task_id` with `outcome` (a no-op for unknown ids: an
    /// outcome this client already received through another path).
    fn deliver(&self, task_id: &str, outcome: &[u8]) {
        let waiting = self.lock().waiting.remove(task_id);
        if let Some(waiting) = waiting {
            // Decoding runs the result's `Deserialize`, and a handle the caller cancelled drops
            // the decoded value: user code, which may panic (caught here) or block (then only
            // its own decoder waits; see `decode.rs`).
            let (handles, outcome) = (waiting.handles, outcome.to_vec());
            self.decoders.push(Box::new(move || {
                for handle in handles {
                    if let Err(panic) = crate::panic::catch(|| handle.resolve(&outcome)) {
                        handle.fail(&Failure::Panicked(panic));
                    }
                }
            }));
        }
    }

    /// Shows a running task's progress on every handle waiting for it (a no-op for unknown
    /// ids: a report that arrived after the outcome). The targets are taken under the lock and
    /// told after it; their callbacks run on the callback threads.
    fn progress(&self, task_id: &str, done: u64, total: u64) {
        let targets: Vec<RemoteProgress> = match self.lock().waiting.get(task_id) {
            Some(waiting) => waiting
                .handles
                .iter()
                .filter_map(|handle| handle.progress(&self.progress_callbacks))
                .collect(),
            None => return,
        };
        for target in targets {
            target.report(done, total);
        }
    }

    fn handle_finished(&self) {
        let mut state = self.lock();
        state.unfinished -= 1;
        if state.unfinished == 0 {
            self.all_done.notify_all();
            // The threads may be waiting to exit after a `shutdown(wait = false)`.
            self.outbox_ready.notify_all();
        }
    }

    fn request_resubmit(&self) {
        self.lock().resubmit_all = true;
        self.outbox_ready.notify_all();
    }

    /// True once the pool is shut down and nothing is left to wait for: the threads exit.
    fn finished(state: &ClientState) -> bool {
        state.shut_down && state.unfinished == 0
    }
}

impl Shared {
    /// The broker refused this client for good: every task waiting fails with `why`, and so does
    /// every later submit.
    fn break_pool(&self, why: String) {
        eprintln!(
            "futurepool cluster {:?}: {why}; failing every waiting task",
            self.pool
        );
        let reason = Reason::new(why);
        let handles: Vec<Box<dyn Handle>> = {
            let mut state = self.lock();
            state.broken = Some(reason.clone());
            state.outbox.clear();
            state.waiting.drain().flat_map(|(_, w)| w.handles).collect()
        };
        let failure = Failure::Broken(reason);
        for handle in handles {
            handle.fail(&failure);
        }
    }
}

fn submitter(shared: &Shared, mut connection: Box<dyn Connection>) {
    // Bounded by the pool's life: once shut down, `shutdown(wait)` stops waiting when no worker
    // is alive, and the loop ends with the last handle.
    let mut retry = Retry::new(
        format!("futurepool cluster {:?}", shared.pool),
        Duration::MAX,
    );
    let stop = |_| Shared::finished(&shared.lock());
    loop {
        let batch = {
            let mut state = shared.lock();
            while state.outbox.is_empty()
                && state.aborts.is_empty()
                && !state.resubmit_all
                && !Shared::finished(&state)
            {
                state = shared
                    .outbox_ready
                    .wait(state)
                    .unwrap_or_else(|p| p.into_inner());
            }
            // Aborts still go out once the last handle is done (each gets one attempt then);
            // tasks nobody waits for any more do not.
            let finished = Shared::finished(&state);
            if finished && state.aborts.is_empty() {
                return;
            }
            let take = if finished {
                0
            } else {
                state.outbox.len().min(MAX_BATCH * 4)
            };
            let mut batch: Vec<NewTask> = state.outbox.drain(..take).collect();
            let mut aborts = std::mem::take(&mut state.aborts);
            if !finished && std::mem::take(&mut state.resubmit_all) {
                batch.extend(state.waiting.values().map(|w| w.task.clone()));
                // A broker that lost its keys lost the abort records too.
                aborts.extend(
                    state
                        .waiting
                        .iter()
                        .filter(|(_, w)| w.aborted)
                        .map(|(id, _)| id.clone()),
                );
                aborts.sort_unstable();
                aborts.dedup();
            }
            (batch, aborts)
        };
        let (batch, aborts) = batch;
        if !aborts.is_empty() && !send_aborts(shared, connection.as_mut(), &aborts, &mut retry) {
            return;
        }
        if batch.is_empty() {
            continue;
        }
        let client = shared.client;
        let mut send = |c: &mut dyn Connection, tasks: &[NewTask]| c.submit(client, tasks);
        let answers = match send_pinning(
            connection.as_mut(),
            "submit tasks",
            &batch,
            // Any one value the broker could refuse for its size: the argument or the id.
            &|task| task.arg.len().max(task.id.len()),
            &mut send,
            &mut retry,
            &stop,
        ) {
            Ok(answers) => answers,
            Err(Stop::GaveUp(_)) => return,
            Err(Stop::Fatal(error)) => {
                shared.break_pool(error.to_string());
                continue;
            }
        };
        {
            // The sweep's clock starts when a task reaches the broker, so a task still waiting in
            // the outbox (a long backlog, an outage) is never taken for one the broker forgot.
            let mut state = shared.lock();
            let now = Instant::now();
            for task in &batch {
                if let Some(waiting) = state.waiting.get_mut(&task.id) {
                    waiting.checked = now;
                }
            }
        }
        if retry.take_recovered() {
            // Back after an outage: tasks queued before it may need submitting again.
            shared.request_resubmit();
        }
        for (task, answer) in batch.iter().zip(answers) {
            match answer {
                Ok(Submitted::Finished(outcome)) => shared.deliver(&task.id, &outcome),
                Ok(_) => {}
                // This task's data is what the broker refuses: it fails, the others go on.
                Err(why) => shared.deliver(
                    &task.id,
                    &outcome::transfer(&format!(
                        "the broker refused the task ({} bytes of argument for {}): {why}",
                        task.arg.len(),
                        task.function
                    )),
                ),
            }
        }
    }
}

/// Records aborts on the broker (the `ABORT` script, batched); false when the submitter must
/// stop (the pool is finished and the broker does not answer).
fn send_aborts(
    shared: &Shared,
    connection: &mut dyn Connection,
    ids: &[Arc<str>],
    retry: &mut Retry,
) -> bool {
    let stop = |_| Shared::finished(&shared.lock());
    let mut send = |c: &mut dyn Connection, ids: &[Arc<str>]| c.abort(ids);
    match send_pinning(
        connection,
        "record aborts",
        ids,
        &|id| id.len(),
        &mut send,
        retry,
        &stop,
    ) {
        Ok(answers) => {
            for (id, answer) in ids.iter().zip(answers) {
                // Ok(false): it finished first; its outcome (on its way) stands on the broker.
                if let Err(why) = answer {
                    eprintln!(
                        "futurepool cluster {:?}: the broker refused the abort of task {id}:                          {why}; it may still run (its handle here is cancelled)",
                        shared.pool
                    );
                }
            }
            true
        }
        Err(Stop::GaveUp(why)) => {
            eprintln!(
                "futurepool cluster {:?}: {why}: {} {} not recorded on the broker",
                shared.pool,
                ids.len(),
                plural(ids.len() as u64, "abort was", "aborts were"),
            );
            false
        }
        Err(Stop::Fatal(error)) => {
            shared.break_pool(error.to_string());
            true
        }
    }
}

fn listener(shared: &Shared, mut connection: Box<dyn Connection>) {
    let mut cursor = String::new();
    // Bounded like the submitter's.
    let mut retry = Retry::new(
        format!("futurepool cluster {:?}", shared.pool),
        Duration::MAX,
    );
    let mut last_sweep = Instant::now();
    loop {
        if Shared::finished(&shared.lock()) {
            shared.decoders.close();
            return;
        }
        shared.decoders.nudge();
        if last_sweep.elapsed() >= SWEEP_EVERY {
            last_sweep = Instant::now();
            sweep(shared, connection.as_mut());
        }
        match connection.replies(shared.client, &mut cursor, REPLY_BATCH, LISTEN_BLOCK) {
            Ok(replies) => {
                if retry.succeeded() {
                    shared.request_resubmit();
                }
                for reply in replies {
                    match reply.progress() {
                        Some((task_id, done, total)) => shared.progress(task_id, done, total),
                        None => shared.deliver(&reply.task_id, &reply.outcome),
                    }
                }
            }
            Err(error) => match retry.failed("wait for results", error) {
                Ok(()) => {}
                Err(Stop::GaveUp(_)) => return,
                Err(Stop::Fatal(error)) => {
                    // No outcome can reach this client any more.
                    shared.break_pool(format!("cannot read results: {error}"));
                    std::thread::sleep(LISTEN_BLOCK);
                }
            },
        }
    }
}

/// The safety net for outcomes whose reply never arrived — published while the task's waiters
/// key was broken or gone, or deleted from the reply stream before this client read it — and for
/// tasks the broker forgot (`FLUSHALL`, a restart without its data that this client's links did
/// not notice). Every [`SWEEP_EVERY`] the listener looks up the tasks it has waited on that long
/// (at most [`SWEEP_MAX`], one pipelined `MGET` + `EXISTS` per 1,024): it delivers the outcomes
/// it finds, and submits again those the broker has no trace of (safe: submit is idempotent).
/// Costs nothing while outcomes arrive within that time.
fn sweep(shared: &Shared, connection: &mut dyn Connection) {
    let ids: Vec<Arc<str>> = {
        let mut state = shared.lock();
        let mut due: Vec<(&Arc<str>, &mut Waiting)> = state
            .waiting
            .iter_mut()
            .filter(|(_, w)| w.checked.elapsed() >= SWEEP_EVERY)
            .collect();
        due.sort_unstable_by_key(|(_, w)| w.checked);
        due.truncate(SWEEP_MAX);
        let now = Instant::now();
        due.into_iter()
            .map(|(id, w)| {
                w.checked = now;
                id.clone()
            })
            .collect()
    };
    if ids.is_empty() {
        return;
    }
    match connection.look_up(&ids) {
        Ok(known) => {
            let mut forgotten = Vec::new();
            for (id, known) in ids.iter().zip(known) {
                match known {
                    Known::Finished(outcome) => shared.deliver(id, &outcome),
                    Known::Pending => {}
                    Known::Forgotten => forgotten.push(id),
                }
            }
            if !forgotten.is_empty() {
                eprintln!(
                    "futurepool cluster {:?}: the broker has no trace of {} {} this client \
                     waits for (its keys were flushed or lost): submitting {} again",
                    shared.pool,
                    forgotten.len(),
                    plural(forgotten.len() as u64, "task", "tasks"),
                    plural(forgotten.len() as u64, "it", "them"),
                );
                let mut state = shared.lock();
                let mut stopped = Vec::new();
                let mut again = Vec::new();
                for id in forgotten {
                    match state.waiting.get(id) {
                        // Aborted: nothing to run again; its other handles end cancelled.
                        Some(w) if w.aborted => stopped.push(id.clone()),
                        Some(w) => again.push(w.task.clone()),
                        None => {}
                    }
                }
                state.outbox.extend(again);
                drop(state);
                shared.outbox_ready.notify_all();
                for id in stopped {
                    shared.deliver(&id, &outcome::cancelled());
                }
            }
        }
        // Not a loop of its own: the next sweep tries again, and the reply stream's own read
        // meets (and retries) an outage.
        Err(error) => eprintln!(
            "futurepool cluster {:?}: cannot look up the stored outcomes of {} {} ({error}); \
             trying again in {SWEEP_EVERY:?}",
            shared.pool,
            ids.len(),
            plural(ids.len() as u64, "task", "tasks")
        ),
    }
}

impl ClusterPool {
    /// Connects to the pool `"default"` on the Redis server at `url`
    /// (`redis://[user:password@]host[:port][/db]`, or `rediss://` with TLS support compiled in).
    ///
    /// # Errors
    ///
    /// As [`ClusterPoolBuilder::build`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let pool = futurepool::cluster::ClusterPool::connect("redis://127.0.0.1:6379/")?;
    /// # Ok::<(), futurepool::cluster::ClusterError>(())
    /// ```
    pub fn connect(url: &str) -> Result<ClusterPool, ClusterError> {
        ClusterPool::builder(url).build()
    }

    /// A builder for a pool with a name, a lease, a retry budget or a result lifetime.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let pool = futurepool::cluster::ClusterPool::builder("redis://127.0.0.1:6379/")
    ///     .pool("nightly")
    ///     .build()?;
    /// # Ok::<(), futurepool::cluster::ClusterError>(())
    /// ```
    pub fn builder(url: &str) -> ClusterPoolBuilder {
        ClusterPoolBuilder {
            url: url.to_string(),
            pool: DEFAULT_POOL.to_string(),
            lease: None,
            max_deliveries: None,
            result_ttl: None,
            max_payload: None,
            retry_policies: Vec::new(),
            rate_limits: Vec::new(),
            backend: None,
        }
    }

    /// Runs `f(arg)` on some worker and returns its task.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// fn double(x: i32) -> i32 { x * 2 }
    /// futurepool::register!(double);
    /// let pool = futurepool::cluster::ClusterPool::connect("redis://127.0.0.1:6379/")?;
    /// assert_eq!(pool.submit(double, 21).result(), Ok(42));
    /// # Ok::<(), futurepool::cluster::ClusterError>(())
    /// ```
    pub fn submit<F: TaskFn<A, R>, A: Payload, R: Payload>(&self, f: F, arg: A) -> Task<R> {
        self.submit_as(
            &SubmitOptions::default(),
            false,
            registry::name_of_item(f),
            &arg,
            outcome::decode::<R, _>,
        )
    }

    /// Runs `f(arg)` on some worker; its `Err` becomes the task's own error
    /// ([`TaskError::Failed`]).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// fn parse(s: String) -> Result<u32, String> { s.parse().map_err(|_| format!("bad: {s}")) }
    /// futurepool::register!(parse);
    /// let pool = futurepool::cluster::ClusterPool::connect("redis://127.0.0.1:6379/")?;
    /// let err = pool.submit_fallible(parse, "x".into()).result().unwrap_err();
    /// assert_eq!(err, futurepool::TaskError::Failed("bad: x".to_string()));
    /// # Ok::<(), futurepool::cluster::ClusterError>(())
    /// ```
    pub fn submit_fallible<F, A, R, E>(&self, f: F, arg: A) -> Task<R, E>
    where
        F: TaskFn<A, Result<R, E>>,
        A: Payload,
        R: Payload,
        E: Payload,
    {
        let name = registry::name_of_item(f);
        self.submit_as(
            &SubmitOptions::default(),
            true,
            name,
            &arg,
            outcome::decode_fallible::<R, E>,
        )
    }

    /// Like [`submit`](ClusterPool::submit), under a task id of your choosing: while a task with
    /// this id is queued, running, or finished less than `result_ttl` ago, submitting it again
    /// (from this or any other client) does not run it again — the new handle gets the same
    /// outcome. Use it to make a retried request safe. An id longer than 64 KiB fails the task
    /// at once with [`TaskError::Transfer`] (use a digest of it).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// fn charge(order: u64) -> bool { true }
    /// futurepool::register!(charge);
    /// let pool = futurepool::cluster::ClusterPool::connect("redis://127.0.0.1:6379/")?;
    /// let first = pool.submit_with_id("charge-order-77", charge, 77);
    /// let retry = pool.submit_with_id("charge-order-77", charge, 77); // runs once
    /// assert_eq!(first.result(), retry.result());
    /// # Ok::<(), futurepool::cluster::ClusterError>(())
    /// ```
    pub fn submit_with_id<F, A, R>(&self, id: &str, f: F, arg: A) -> Task<R>
    where
        F: TaskFn<A, R>,
        A: Payload,
        R: Payload,
    {
        let name = registry::name_of_item(f);
        self.submit_as(
            &SubmitOptions::new().id(id),
            false,
            name,
            &arg,
            outcome::decode::<R, _>,
        )
    }

    /// [`submit_fallible`](ClusterPool::submit_fallible) under a task id of your choosing; see
    /// [`submit_with_id`](ClusterPool::submit_with_id).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// fn parse(s: String) -> Result<u32, String> { s.parse().map_err(|_| format!("bad: {s}")) }
    /// futurepool::register!(parse);
    /// let pool = futurepool::cluster::ClusterPool::connect("redis://127.0.0.1:6379/")?;
    /// let task = pool.submit_fallible_with_id("parse-1", parse, "1".into());
    /// assert_eq!(task.result(), Ok(1));
    /// # Ok::<(), futurepool::cluster::ClusterError>(())
    /// ```
    pub fn submit_fallible_with_id<F, A, R, E>(&self, id: &str, f: F, arg: A) -> Task<R, E>
    where
        F: TaskFn<A, Result<R, E>>,
        A: Payload,
        R: Payload,
        E: Payload,
    {
        let name = registry::name_of_item(f);
        self.submit_as(
            &SubmitOptions::new().id(id),
            true,
            name,
            &arg,
            outcome::decode_fallible::<R, E>,
        )
    }

    /// `fallible`: the function returns `Result` and its `Err` is the task's own failure.
    fn submit_as<A: Payload, R: Payload, E: Send + Sync + 'static, N: fmt::Display>(
        &self,
        options: &SubmitOptions,
        fallible: bool,
        name: Result<&'static str, N>,
        arg: &A,
        decode: fn(&[u8]) -> Result<R, TaskError<E>>,
    ) -> Task<R, E> {
        self.submit_chained(options, fallible, name, arg, None, decode)
    }

    /// [`submit_as`](ClusterPool::submit_as), chained `after` another task of the broker when
    /// given (then `arg` is `()`: the argument is that task's value).
    fn submit_chained<A: Payload, R: Payload, E: Send + Sync + 'static, N: fmt::Display>(
        &self,
        options: &SubmitOptions,
        fallible: bool,
        name: Result<&'static str, N>,
        arg: &A,
        after: Option<After>,
        decode: fn(&[u8]) -> Result<R, TaskError<E>>,
    ) -> Task<R, E> {
        let function = match name {
            Ok(function) => function,
            Err(why) => {
                return Task::resolved(Err(TaskError::Transfer(Reason::new(why.to_string()))))
            }
        };
        // The argument's `Serialize` is the user's: a panic in it fails this task alone, as in
        // the process pool, instead of unwinding out of `submit`.
        let arg = match crate::panic::catch(|| postcard::to_stdvec(arg)) {
            Err(panic) => return Task::resolved(Err(TaskError::Panicked(panic))),
            Ok(Ok(bytes)) => bytes,
            Ok(Err(e)) => {
                return Task::resolved(Err(TaskError::Transfer(Reason::new(format!(
                    "the argument of {function} does not serialize: {e}"
                )))))
            }
        };
        let id = options.id.as_deref();
        if let Some(id) = id.filter(|id| id.len() > MAX_TASK_ID) {
            // An id travels in every script call, key name and reply of its task: a huge one
            // would be refused by the broker wherever it goes.
            return Task::resolved(Err(TaskError::Transfer(Reason::new(format!(
                "the task id given to submit_with_id is {} bytes, more than the {MAX_TASK_ID} a \
                 task id may have: use a digest of it (a hash) as the id",
                id.len()
            )))));
        }
        if arg.len() > self.shared.max_payload {
            return Task::resolved(Err(TaskError::Transfer(Reason::new(format!(
                "the argument of {function} is {} bytes, more than the {} the broker accepts \
                 (its proto-max-bulk-len, or ClusterPoolBuilder::max_payload): send a reference \
                 to the data (a path, a key, a URL) instead",
                arg.len(),
                self.shared.max_payload
            )))));
        }
        let due = match options.when.map(When::due) {
            None => None,
            Some(Ok(due)) => Some(due),
            Some(Err(why)) => return Task::resolved(Err(TaskError::Transfer(Reason::new(why)))),
        };
        if let Err(why) = options.limits.check() {
            return Task::resolved(Err(TaskError::Transfer(Reason::new(why))));
        }
        let limits: Option<Arc<str>> = options.limits.wire().map(Into::into);
        // Registered (the name was found), so it has a signature.
        let signature = registry::signature_of(function).map_or("", |(fingerprint, _)| fingerprint);
        // Looked up only when some policy exists: the ordinary submit does no extra work.
        let policy = options.retry.or_else(|| {
            (!self.shared.retry_policies.is_empty())
                .then(|| self.shared.retry_policies.get(function).copied())
                .flatten()
        });
        let retry: Option<Arc<str>> = policy.map(|p| p.wire(fallible).into());
        let id: Arc<str> = match id {
            Some(id) => format!("id:{id}").into(),
            None => self.shared.next_task_id(),
        };
        let task: Task<R, E> = Task::pending_remote(id.clone(), self.aborts.clone(), fallible);
        {
            let mut state = self.shared.lock();
            if state.shut_down {
                return Task::resolved(Err(TaskError::ShutDown));
            }
            if let Some(why) = &state.broken {
                return Task::resolved(Err(TaskError::PoolBroken(why.clone())));
            }
            let handle = Box::new(TypedHandle {
                task: task.clone(),
                decode,
            });
            state.unfinished += 1;
            if let Some(waiting) = state.waiting.get_mut(&id) {
                // Already waited for by this client: one more handle, no second submit.
                waiting.handles.push(handle);
            } else {
                let new = NewTask {
                    id: id.clone(),
                    function,
                    arg: arg.into(),
                    signature,
                    retry: retry.clone(),
                    due,
                    priority: options.priority,
                    after,
                    limits,
                };
                state.outbox.push(new.clone());
                state.waiting.insert(
                    id,
                    Waiting {
                        task: new,
                        handles: vec![handle],
                        checked: Instant::now(),
                        aborted: false,
                    },
                );
                if state.outbox.len() == 1 {
                    self.shared.outbox_ready.notify_all();
                }
            }
        }
        let shared: Weak<Shared> = Arc::downgrade(&self.shared);
        task.add_done_callback(move |_| {
            if let Some(shared) = shared.upgrade() {
                shared.handle_finished();
            }
        });
        task
    }

    /// Like [`submit`](ClusterPool::submit), with options ([`SubmitOptions`]): a task id of your
    /// choosing, a retry policy, a delay, a lane, and limits on the run. A plain function has no `Err` of its own, so only panics can be retried
    /// (with [`RetryPolicy::on_panic`]).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use futurepool::cluster::{ClusterPool, RetryPolicy, SubmitOptions};
    /// fn flaky(n: u64) -> u64 { n }
    /// futurepool::register!(flaky);
    /// let pool = ClusterPool::connect("redis://127.0.0.1:6379/")?;
    /// let options = SubmitOptions::new().retry(RetryPolicy::new(2).on_panic(true));
    /// assert_eq!(pool.submit_with(&options, flaky, 7).result(), Ok(7));
    /// # Ok::<(), futurepool::cluster::ClusterError>(())
    /// ```
    pub fn submit_with<F, A, R>(&self, options: &SubmitOptions, f: F, arg: A) -> Task<R>
    where
        F: TaskFn<A, R>,
        A: Payload,
        R: Payload,
    {
        let name = registry::name_of_item(f);
        self.submit_as(options, false, name, &arg, outcome::decode::<R, _>)
    }

    /// Like [`submit_fallible`](ClusterPool::submit_fallible), with options. With a retry
    /// policy, a run that returns `Err` is run again after its backoff, up to the policy's
    /// `max_retries` times; the handle resolves once, with the first `Ok` or the last failure,
    /// and [`Task::attempts`] says how many runs it took.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use futurepool::cluster::{ClusterPool, RetryPolicy, SubmitOptions};
    /// fn charge(order: u64) -> Result<u64, String> { Ok(order) }
    /// futurepool::register!(charge);
    /// let pool = ClusterPool::connect("redis://127.0.0.1:6379/")?;
    /// let policy = RetryPolicy::new(3).backoff(Duration::from_millis(100), Duration::from_secs(5));
    /// let task = pool.submit_fallible_with(&SubmitOptions::new().retry(policy), charge, 77);
    /// assert_eq!(task.result(), Ok(77));
    /// assert_eq!(task.attempts(), Some(1));
    /// # Ok::<(), futurepool::cluster::ClusterError>(())
    /// ```
    pub fn submit_fallible_with<F, A, R, E>(
        &self,
        options: &SubmitOptions,
        f: F,
        arg: A,
    ) -> Task<R, E>
    where
        F: TaskFn<A, Result<R, E>>,
        A: Payload,
        R: Payload,
        E: Payload,
    {
        let name = registry::name_of_item(f);
        self.submit_as(options, true, name, &arg, outcome::decode_fallible::<R, E>)
    }

    /// Runs `f(value)` on some worker once the cluster task `upstream` has finished with a
    /// value, and returns its task; dask's futures as arguments. The broker does the chaining:
    /// the new task waits there (not in the queue, holding no worker) and is queued with
    /// `upstream`'s value as its argument the moment that outcome is published — the value never
    /// travels through this client, which may even be gone by then.
    ///
    /// How outcomes propagate (`f` never runs unless `upstream` succeeded): `upstream`'s failure
    /// (panic, lost worker, transfer error, abort) becomes the new task's; `upstream` finished
    /// already: the new task is queued (or fails) at once; `upstream` unknown to the broker
    /// (another pool or broker, or its result expired after `result_ttl`): the new task fails with
    /// [`TaskError::Transfer`] saying so. `upstream` must be a task submitted through this
    /// `ClusterPool` (by `submit`, `submit_with`, `submit_after`, ...: a task id means nothing to
    /// another pool, and the new task fails at once otherwise); for a task of a fallible function use
    /// [`submit_after_ok`](ClusterPool::submit_after_ok). Aborting the new task works as for
    /// any cluster task.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// fn fetch_size(url: String) -> u64 { url.len() as u64 }
    /// fn double(n: u64) -> u64 { n * 2 }
    /// futurepool::register!(fetch_size, double);
    /// let pool = futurepool::cluster::ClusterPool::connect("redis://127.0.0.1:6379/")?;
    /// let size = pool.submit(fetch_size, "https://example.com/".to_string());
    /// let doubled = pool.submit_after(&size, double); // no round trip through this client
    /// assert_eq!(doubled.result(), Ok(40));
    /// # Ok::<(), futurepool::cluster::ClusterError>(())
    /// ```
    pub fn submit_after<F, A, R>(&self, upstream: &Task<A>, f: F) -> Task<R>
    where
        F: TaskFn<A, R>,
        A: Payload,
        R: Payload,
    {
        self.submit_after_with(&SubmitOptions::default(), upstream, f)
    }

    /// [`submit_after`](ClusterPool::submit_after) with options: an id of your choosing, a
    /// priority, a retry policy (a delay cannot be combined with chaining: the task is due when
    /// `upstream` ends, and asking for both fails the task with [`TaskError::Transfer`]).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use futurepool::cluster::{ClusterPool, Priority, SubmitOptions};
    /// fn double(n: u64) -> u64 { n * 2 }
    /// futurepool::register!(double);
    /// let pool = ClusterPool::connect("redis://127.0.0.1:6379/")?;
    /// let first = pool.submit(double, 1);
    /// let options = SubmitOptions::new().id("report-step-2").priority(Priority::High);
    /// assert_eq!(pool.submit_after_with(&options, &first, double).result(), Ok(4));
    /// # Ok::<(), futurepool::cluster::ClusterError>(())
    /// ```
    pub fn submit_after_with<F, A, R>(
        &self,
        options: &SubmitOptions,
        upstream: &Task<A>,
        f: F,
    ) -> Task<R>
    where
        F: TaskFn<A, R>,
        A: Payload,
        R: Payload,
    {
        self.submit_after_as(
            options,
            upstream,
            registry::name_of_item(f),
            outcome::decode::<R, _>,
        )
    }

    /// [`submit_after`](ClusterPool::submit_after) for an `upstream` whose function returns a
    /// `Result`: `f` runs on its `Ok` value, and its `Err` becomes the new task's own failure
    /// ([`TaskError::Failed`]) without `f` running — all on the broker.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use futurepool::TaskError;
    /// fn parse(s: String) -> Result<u64, String> { s.parse().map_err(|_| format!("bad: {s}")) }
    /// fn double(n: u64) -> u64 { n * 2 }
    /// futurepool::register!(parse, double);
    /// let pool = futurepool::cluster::ClusterPool::connect("redis://127.0.0.1:6379/")?;
    /// let good = pool.submit_fallible(parse, "21".into());
    /// assert_eq!(pool.submit_after_ok(&good, double).result(), Ok(42));
    /// let bad = pool.submit_fallible(parse, "x".into());
    /// let after_bad = pool.submit_after_ok(&bad, double);
    /// assert_eq!(after_bad.result(), Err(TaskError::Failed("bad: x".to_string())));
    /// # Ok::<(), futurepool::cluster::ClusterError>(())
    /// ```
    pub fn submit_after_ok<F, A, R, E>(&self, upstream: &Task<A, E>, f: F) -> Task<R, E>
    where
        F: TaskFn<A, R>,
        A: Payload,
        R: Payload,
        E: Payload,
    {
        self.submit_after_as(
            &SubmitOptions::default(),
            upstream,
            registry::name_of_item(f),
            outcome::decode_after::<R, E>,
        )
    }

    /// The chained submits: the task `name` (its function returns its value directly), after
    /// `upstream` on the broker, or refused at once (see [`chained_after`]).
    fn submit_after_as<T, R: Payload, E: Send + Sync + 'static, E2, N: fmt::Display>(
        &self,
        options: &SubmitOptions,
        upstream: &Task<T, E2>,
        name: Result<&'static str, N>,
        decode: fn(&[u8]) -> Result<R, TaskError<E>>,
    ) -> Task<R, E> {
        match chained_after(self, options, upstream) {
            Ok(after) => self.submit_chained(options, false, name, &(), Some(after), decode),
            Err(refused) => Task::resolved(Err(refused)),
        }
    }

    /// Applies `f` to every input on the cluster and yields the results in input order: lazy and
    /// bounded (1,024 tasks in flight by default; see [`Map::buffer`]), each item's error in its
    /// place. Dropping the iterator aborts the tasks not yet done ([`Task::abort`]): their handles
    /// are cancelled, those no worker has started never run, and running ones have their tokens
    /// set.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// fn square(n: u64) -> u64 { n * n }
    /// futurepool::register!(square);
    /// let pool = futurepool::cluster::ClusterPool::connect("redis://127.0.0.1:6379/")?;
    /// let squares: Vec<u64> = pool.map(square, 0..1000).map(Result::unwrap).collect();
    /// assert_eq!(squares[999], 998_001);
    /// # Ok::<(), futurepool::cluster::ClusterError>(())
    /// ```
    pub fn map<F, A, R, I>(
        &self,
        f: F,
        inputs: I,
    ) -> Map<I::IntoIter, impl FnMut(A) -> Task<R> + '_, R>
    where
        F: TaskFn<A, R>,
        A: Payload,
        R: Payload,
        I: IntoIterator<Item = A>,
    {
        Map::new(
            inputs.into_iter(),
            move |arg| self.submit(f, arg),
            MAP_BUFFER,
        )
    }

    /// [`map`](ClusterPool::map) for a function returning `Result`: an `Err(e)` is yielded as
    /// `Err(TaskError::Failed(e))` in its place.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// fn parse(s: String) -> Result<u8, String> { s.parse().map_err(|_| s) }
    /// futurepool::register!(parse);
    /// let pool = futurepool::cluster::ClusterPool::connect("redis://127.0.0.1:6379/")?;
    /// let parsed: Vec<_> = pool.map_fallible(parse, ["1".to_string(), "x".to_string()]).collect();
    /// assert!(parsed[1].is_err());
    /// # Ok::<(), futurepool::cluster::ClusterError>(())
    /// ```
    // The closure type cannot be named (no `impl Trait` in type aliases on stable).
    #[allow(clippy::type_complexity)]
    pub fn map_fallible<F, A, R, E, I>(
        &self,
        f: F,
        inputs: I,
    ) -> Map<I::IntoIter, impl FnMut(A) -> Task<R, E> + '_, R, E>
    where
        F: TaskFn<A, Result<R, E>>,
        A: Payload,
        R: Payload,
        E: Payload,
        I: IntoIterator<Item = A>,
    {
        Map::new(
            inputs.into_iter(),
            move |arg| self.submit_fallible(f, arg),
            MAP_BUFFER,
        )
    }

    /// Like [`map`](ClusterPool::map), yielding results as they complete.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// fn square(n: u64) -> u64 { n * n }
    /// futurepool::register!(square);
    /// let pool = futurepool::cluster::ClusterPool::connect("redis://127.0.0.1:6379/")?;
    /// let total: u64 = pool.map_unordered(square, 0..100).map(Result::unwrap).sum();
    /// assert_eq!(total, 328_350);
    /// # Ok::<(), futurepool::cluster::ClusterError>(())
    /// ```
    pub fn map_unordered<F, A, R, I>(
        &self,
        f: F,
        inputs: I,
    ) -> MapUnordered<I::IntoIter, impl FnMut(A) -> Task<R> + '_, R>
    where
        F: TaskFn<A, R>,
        A: Payload,
        R: Payload,
        I: IntoIterator<Item = A>,
    {
        MapUnordered::new(
            inputs.into_iter(),
            move |arg| self.submit(f, arg),
            MAP_BUFFER,
        )
    }

    /// Like [`map_fallible`](ClusterPool::map_fallible), yielding results as they complete.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// fn parse(s: String) -> Result<u8, String> { s.parse().map_err(|_| s) }
    /// futurepool::register!(parse);
    /// let pool = futurepool::cluster::ClusterPool::connect("redis://127.0.0.1:6379/")?;
    /// let ok = pool.map_unordered_fallible(parse, ["1".to_string(), "2".to_string()]).flatten().count();
    /// assert_eq!(ok, 2);
    /// # Ok::<(), futurepool::cluster::ClusterError>(())
    /// ```
    #[allow(clippy::type_complexity)]
    pub fn map_unordered_fallible<F, A, R, E, I>(
        &self,
        f: F,
        inputs: I,
    ) -> MapUnordered<I::IntoIter, impl FnMut(A) -> Task<R, E> + '_, R, E>
    where
        F: TaskFn<A, Result<R, E>>,
        A: Payload,
        R: Payload,
        E: Payload,
        I: IntoIterator<Item = A>,
    {
        MapUnordered::new(
            inputs.into_iter(),
            move |arg| self.submit_fallible(f, arg),
            MAP_BUFFER,
        )
    }

    /// Stops accepting tasks; see [`Shutdown`]. With `cancel_pending`, every handle not yet
    /// resolved is cancelled at once (tasks already on the broker may still run on a worker;
    /// their outcomes are then discarded). With `abort_running`, the same, and the tasks are
    /// aborted on the broker as by [`Task::abort`] (sent before the client's threads exit, one
    /// attempt if the broker does not answer): those no worker has started never run, running
    /// ones have their tokens set. With `wait`, blocks until every handle is resolved or
    /// cancelled and the client's threads have exited. Safe to call many times.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use futurepool::{Shutdown, TaskError};
    /// fn one(_: ()) -> u8 { 1 }
    /// futurepool::register!(one);
    /// let pool = futurepool::cluster::ClusterPool::connect("redis://127.0.0.1:6379/")?;
    /// let task = pool.submit(one, ());
    /// pool.shutdown(Shutdown::default());       // waits for `task`
    /// assert_eq!(task.try_result(), Some(Ok(1)));
    /// assert_eq!(pool.submit(one, ()).result(), Err(TaskError::ShutDown));
    /// # Ok::<(), futurepool::cluster::ClusterError>(())
    /// ```
    pub fn shutdown(&self, how: Shutdown) {
        let to_cancel: Vec<Box<dyn Handle>> = {
            let mut state = self.shared.lock();
            state.shut_down = true;
            if how.cancels_pending() {
                state.outbox.clear();
                if how.aborts_running() {
                    // Queued for the submitter here: once drained, the handles' own aborts
                    // find nothing to send.
                    let ClientState {
                        waiting, aborts, ..
                    } = &mut *state;
                    for (id, waiting) in waiting.iter_mut() {
                        if !std::mem::replace(&mut waiting.aborted, true) {
                            aborts.push(id.clone());
                        }
                    }
                }
                state.waiting.drain().flat_map(|(_, w)| w.handles).collect()
            } else {
                Vec::new()
            }
        };
        self.shared.outbox_ready.notify_all();
        for handle in to_cancel {
            if how.aborts_running() {
                handle.abort();
            } else {
                handle.cancel();
            }
        }
        if how.waits() {
            self.wait_for_outcomes();
            let threads =
                std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
            for thread in threads {
                let _ = thread.join();
            }
        }
    }

    /// Waits until every handle is resolved — or until no worker has been alive for a whole
    /// lease: nobody would run the tasks, so waiting could last forever. The tasks then stay
    /// queued on the broker for workers that start later (their outcomes are kept `result_ttl`
    /// under their ids) and their handles here resolve with [`TaskError::Timeout`]. While it
    /// waits it says so on stderr every few seconds.
    fn wait_for_outcomes(&self) {
        let shared = &self.shared;
        let tick = (shared.lease / 4).clamp(Duration::from_millis(25), Duration::from_secs(1));
        let started = Instant::now();
        let mut last_said: Option<Instant> = None;
        let mut none_alive_since: Option<Instant> = None;
        let mut checker: Option<Box<dyn Connection>> = None;
        loop {
            let waiting = {
                let state = shared.lock();
                let (state, _) = shared
                    .all_done
                    .wait_timeout_while(state, tick, |s| s.unfinished > 0)
                    .unwrap_or_else(|p| p.into_inner());
                if state.unfinished == 0 {
                    return;
                }
                state.unfinished
            };
            if started.elapsed() < tick {
                continue;
            }
            if checker.is_none() {
                checker = shared.backend.connect().ok();
            }
            let alive = match checker.as_mut().map(|c| c.live_workers(shared.lease)) {
                Some(Ok(alive)) => Some(alive),
                _ => {
                    checker = None;
                    None
                }
            };
            if alive.unwrap_or(0) > 0 {
                none_alive_since = None;
            } else {
                none_alive_since.get_or_insert_with(Instant::now);
            }
            let gone = none_alive_since.map_or(Duration::ZERO, |since| since.elapsed());
            if gone >= shared.lease {
                self.stop_waiting(alive.is_some());
                return;
            }
            if last_said.is_none_or(|at| at.elapsed() >= SAY_EVERY) {
                last_said = Some(Instant::now());
                let workers = match alive {
                    Some(0) => format!(
                        "no worker is alive; giving up in {:.1?} if none starts",
                        shared.lease.saturating_sub(gone)
                    ),
                    Some(n) => format!("{n} live {}", plural(n as u64, "worker", "workers")),
                    None => "the broker is unreachable".to_string(),
                };
                eprintln!(
                    "futurepool cluster {:?}: shutting down, waiting for {waiting} {} ({workers})",
                    shared.pool,
                    plural(waiting as u64, "task", "tasks")
                );
            }
        }
    }

    /// Gives up waiting: every unresolved handle resolves with `Timeout`; the tasks on the broker
    /// stay queued.
    fn stop_waiting(&self, broker_reachable: bool) {
        let (handles, unsent) = {
            let mut state = self.shared.lock();
            let unsent = state.outbox.len();
            state.outbox.clear();
            let handles: Vec<Box<dyn Handle>> =
                state.waiting.drain().flat_map(|(_, w)| w.handles).collect();
            (handles, unsent)
        };
        let why = if broker_reachable {
            "no worker has been alive for a whole lease"
        } else {
            "the broker has been unreachable for a whole lease"
        };
        eprintln!(
            "futurepool cluster {:?}: stopped waiting for {} {}: {why}; those on the broker stay \
             queued for workers that start later{}",
            self.shared.pool,
            handles.len(),
            plural(handles.len() as u64, "task", "tasks"),
            if unsent > 0 {
                format!(" ({unsent} never reached it and are dropped)")
            } else {
                String::new()
            }
        );
        for handle in handles {
            handle.fail(&Failure::Timeout);
        }
    }

    /// The pool's name on the broker.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let pool = futurepool::cluster::ClusterPool::connect("redis://127.0.0.1:6379/")?;
    /// assert_eq!(pool.name(), "default");
    /// # Ok::<(), futurepool::cluster::ClusterError>(())
    /// ```
    pub fn name(&self) -> &str {
        &self.shared.pool
    }

    /// The pool's [`Stats`](crate::Stats), asked from the broker: the same figures as
    /// [`status`](super::status) and `futurepool cluster status` (`Stats`'s `From<&Status>` says how they map), for every
    /// client and worker of the pool, not just this client.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Unavailable`] when the broker cannot be asked right now.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let pool = futurepool::cluster::ClusterPool::connect("redis://127.0.0.1:6379/")?;
    /// let stats = pool.stats()?;
    /// println!("{} queued, {} running on {} workers", stats.queued, stats.running, stats.workers);
    /// # Ok::<(), futurepool::cluster::ClusterError>(())
    /// ```
    pub fn stats(&self) -> Result<crate::Stats, ClusterError> {
        let status = self.shared.backend.connect()?.status()?.ok_or_else(|| {
            ClusterError::NoSuchPool(Reason::new(format!(
                "the pool {:?} is gone from the broker (was it deleted?)",
                self.shared.pool
            )))
        })?;
        Ok(crate::Stats::from(&status))
    }
}

impl Executor for ClusterPool {
    fn submit_fn<F, A, R>(&self, f: F, arg: A) -> Task<R>
    where
        F: TaskFn<A, R>,
        A: Payload,
        R: Payload,
    {
        self.submit(f, arg)
    }

    fn submit_fallible_fn<F, A, R, E>(&self, f: F, arg: A) -> Task<R, E>
    where
        F: TaskFn<A, Result<R, E>>,
        A: Payload,
        R: Payload,
        E: Payload,
    {
        self.submit_fallible(f, arg)
    }

    fn shutdown(&self, how: Shutdown) {
        ClusterPool::shutdown(self, how)
    }

    fn default_map_buffer(&self) -> usize {
        MAP_BUFFER
    }
}

impl Drop for ClusterPool {
    /// Like leaving Python's `with` block: waits for every task submitted.
    fn drop(&mut self) {
        self.shutdown(Shutdown::default());
    }
}

impl fmt::Debug for ClusterPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.shared.lock();
        f.debug_struct("ClusterPool")
            .field("pool", &self.shared.pool)
            .field("client", &self.shared.client)
            .field("waiting", &state.waiting.len())
            .field("shut_down", &state.shut_down)
            .finish()
    }
}

/// What a task chained after `upstream` waits for on the broker, or why it cannot be chained.
fn chained_after<T, E, E2>(
    pool: &ClusterPool,
    options: &SubmitOptions,
    upstream: &Task<T, E>,
) -> Result<After, TaskError<E2>> {
    if options.when.is_some() {
        return Err(TaskError::Transfer(Reason::new(
            "submit_after runs a task when the other one ends: it cannot also be delayed \
             (SubmitOptions::delay or at)",
        )));
    }
    match upstream.remote() {
        // Only a task of this very pool handle: a task id means nothing on another pool or
        // broker, and there it could name some other task, whose value would be the argument.
        Some(remote) if Arc::ptr_eq(&remote.sink, &pool.aborts) => Ok(After {
            task_id: remote.task_id.clone(),
            fallible: remote.fallible,
        }),
        Some(_) => Err(TaskError::Transfer(Reason::new(
            "submit_after chains after a task submitted through the same ClusterPool; this \
             one came from another ClusterPool (another pool, broker or client)",
        ))),
        None => Err(TaskError::Transfer(Reason::new(
            "submit_after on a ClusterPool chains after a task of the cluster; for a task of a \
             thread or process pool, submit once its value is there (for example from its \
             done-callback)",
        ))),
    }
}
