//! An in-memory broker behind the same [`Backend`] trait as Redis: test code written for the
//! cluster without a Redis server (like Celery's eager mode or Dramatiq's `StubBroker`, but with
//! real workers — threads of this process — and the same protocol).
//!
//! It keeps what the Redis scripts keep, under one mutex, so every step is atomic the way a script
//! is: lanes of entries (high, normal, low), a pending list with owners, delivery counts and idle
//! times, the schedule (delays, retry backoffs), stored outcomes, waiters and per-client replies.
//! The client and the worker code are the ones used with Redis; only the broker differs.
//! Not kept: anything across a process restart, `result_ttl` (outcomes stay while the broker
//! lives). Rate limits are a token bucket per function here too (same reservation rule).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

#[cfg(test)]
use super::backend::BrokerError;
use super::backend::{
    progress_value, Backend, BrokerResult, Completion, Connection, Delivery, NewTask, PoolConfig,
    ProgressReport, Reaped, Reply, Submitted, PROGRESS_REPLY,
};
use super::outcome::{self, Release};
use super::{ClusterError, ClusterPool, ClusterPoolBuilder, Priority, ServeOptions};
use super::{DeadLetter, Status, WorkerStatus};
use crate::error::Reason;

/// Every this many fetches that find work, lanes are served lowest first (as with Redis).
const STARVATION_TURN: u64 = 10;
/// The largest payload accepted (Redis's default `proto-max-bulk-len`).
const MAX_PAYLOAD: usize = 512 << 20;
/// Dead letters kept (the Redis stream is capped at about as many).
const MAX_DEAD: usize = 10_000;

/// A broker that lives in this process: pools, queues and outcomes in memory.
///
/// Use it to test code written for [`ClusterPool`] without Redis: same API, same guarantees
/// (at-least-once execution, exactly-once publication, retries, delays, priorities, leases and
/// recovery), workers as threads of this process running the registered functions.
///
/// # Examples
///
/// ```
/// use futurepool::cluster::{MemoryBroker, ServeOptions};
/// fn square(n: u64) -> u64 { n * n }
/// futurepool::register!(square);
///
/// let broker = MemoryBroker::new();
/// let worker = broker.serve(ServeOptions::default().threads(2));
/// let pool = broker.pool("default").build()?;
/// assert_eq!(pool.submit(square, 7).result(), Ok(49));
/// drop(pool);
/// worker.stop()?;
/// # Ok::<(), futurepool::cluster::ClusterError>(())
/// ```
#[derive(Clone, Default)]
pub struct MemoryBroker {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    pools: Mutex<HashMap<String, PoolState>>,
    /// Signalled on every change: blocked fetches and reply reads re-check.
    changed: Condvar,
}

impl fmt::Debug for MemoryBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pools: Vec<String> = self.lock().keys().cloned().collect();
        f.debug_struct("MemoryBroker")
            .field("pools", &pools)
            .finish()
    }
}

impl MemoryBroker {
    /// An empty broker.
    ///
    /// # Examples
    ///
    /// ```
    /// let broker = futurepool::cluster::MemoryBroker::new();
    /// # drop(broker);
    /// ```
    pub fn new() -> Self {
        MemoryBroker::default()
    }

    /// A builder for a client of pool `name` on this broker (every other setting as with
    /// [`ClusterPool::builder`]).
    ///
    /// # Examples
    ///
    /// ```
    /// let broker = futurepool::cluster::MemoryBroker::new();
    /// let pool = broker.pool("jobs").build()?;
    /// assert_eq!(pool.name(), "jobs");
    /// # Ok::<(), futurepool::cluster::ClusterError>(())
    /// ```
    pub fn pool(&self, name: &str) -> ClusterPoolBuilder {
        ClusterPool::builder("memory://")
            .pool(name)
            .backend(SharedBackend(Arc::new(MemoryBackend {
                broker: self.clone(),
                pool: name.to_string(),
            })))
    }

    /// Starts a worker of `options`' pool on threads of this process. It runs until
    /// [`MemoryWorker::stop`] (or drop), then stops as a worker does on SIGTERM: fetched tasks go
    /// back, running ones finish and are published. It leaves signals to the program.
    ///
    /// # Examples
    ///
    /// ```
    /// use futurepool::cluster::{MemoryBroker, ServeOptions};
    /// let broker = MemoryBroker::new();
    /// let worker = broker.serve(ServeOptions::default().pool("jobs"));
    /// worker.stop()?;
    /// # Ok::<(), futurepool::cluster::ClusterError>(())
    /// ```
    pub fn serve(&self, options: ServeOptions) -> MemoryWorker {
        let stop = Arc::new(AtomicBool::new(false));
        let backend = MemoryBackend {
            broker: self.clone(),
            pool: options.pool_name().to_string(),
        };
        let flag = stop.clone();
        // SIGTERM belongs to the program, not to a worker inside it.
        let options = options.handle_signals(false);
        let thread = std::thread::Builder::new()
            .name("futurepool-memory-worker".into())
            .spawn(move || super::worker::serve_on(&backend, "memory", options, Some(flag)));
        MemoryWorker {
            broker: self.clone(),
            stop,
            thread: Some(thread.map_err(|e| {
                ClusterError::Unavailable(Reason::new(format!("cannot start a thread: {e}")))
            })),
        }
    }

    /// The status of pool `name`, as `futurepool cluster status` shows it for Redis.
    ///
    /// # Errors
    ///
    /// [`ClusterError::NoSuchPool`] when no client or worker used a pool of that name here.
    ///
    /// # Examples
    ///
    /// ```
    /// let broker = futurepool::cluster::MemoryBroker::new();
    /// assert!(broker.status("nothing").is_err());
    /// ```
    pub fn status(&self, name: &str) -> Result<Status, ClusterError> {
        let pools = self.lock();
        match pools.get(name) {
            Some(pool) => Ok(pool.status()),
            None => Err(ClusterError::NoSuchPool(Reason::new(format!(
                "no pool named {name:?} exists on this in-memory broker"
            )))),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, PoolState>> {
        // Every update is completed before the guard drops (no user code runs under it).
        self.inner
            .pools
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A worker of a [`MemoryBroker`], running on threads of this process.
///
/// # Examples
///
/// ```
/// let broker = futurepool::cluster::MemoryBroker::new();
/// let worker = broker.serve(futurepool::cluster::ServeOptions::default());
/// assert!(worker.stop().is_ok());
/// ```
pub struct MemoryWorker {
    broker: MemoryBroker,
    stop: Arc<AtomicBool>,
    thread: Option<Result<JoinHandle<Result<(), ClusterError>>, ClusterError>>,
}

impl MemoryWorker {
    /// Stops the worker cleanly and waits for it; returns why it stopped early, if it did.
    ///
    /// # Errors
    ///
    /// What [`serve`](super::serve) would return.
    ///
    /// # Examples
    ///
    /// ```
    /// let broker = futurepool::cluster::MemoryBroker::new();
    /// broker.serve(Default::default()).stop()?;
    /// # Ok::<(), futurepool::cluster::ClusterError>(())
    /// ```
    pub fn stop(mut self) -> Result<(), ClusterError> {
        self.finish()
    }

    fn finish(&mut self) -> Result<(), ClusterError> {
        self.stop.store(true, Ordering::SeqCst);
        self.broker.inner.changed.notify_all();
        match self.thread.take() {
            None => Ok(()),
            Some(Err(error)) => Err(error),
            Some(Ok(thread)) => thread.join().unwrap_or_else(|_| {
                Err(ClusterError::Unavailable(Reason::new(
                    "the in-memory worker's thread panicked",
                )))
            }),
        }
    }
}

impl Drop for MemoryWorker {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

impl fmt::Debug for MemoryWorker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryWorker").finish_non_exhaustive()
    }
}

/// A backend a [`ClusterPoolBuilder`] can carry (it is `Debug` and `Clone`).
#[derive(Clone)]
pub(crate) struct SharedBackend(pub(crate) Arc<dyn Backend>);

impl fmt::Debug for SharedBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedBackend")
    }
}

struct MemoryBackend {
    broker: MemoryBroker,
    pool: String,
}

impl Backend for MemoryBackend {
    fn connect(&self) -> BrokerResult<Box<dyn Connection>> {
        self.broker.lock().entry(self.pool.clone()).or_default();
        Ok(Box::new(MemoryConnection {
            broker: self.broker.clone(),
            pool: self.pool.clone(),
            fruitful: 0,
        }))
    }
}

/// A queued task: what a Redis stream entry holds.
#[derive(Clone)]
struct Entry {
    id: String,
    function: String,
    arg: Arc<[u8]>,
    signature: String,
    retry: Option<String>,
    attempt: u32,
    priority: Priority,
    /// Its own limits (wire form), as the `limits` field of a Redis entry.
    limits: Option<Arc<str>>,
    /// Holds a rate-limit token already (it waited for it on the schedule).
    paid: bool,
}

struct Pending {
    entry: Entry,
    worker: String,
    deliveries: u32,
    touched: Instant,
}

#[derive(Default)]
struct PoolState {
    config: Option<PoolConfig>,
    clients: u64,
    /// High, normal, low: (entry id, task).
    lanes: [VecDeque<(String, Entry)>; 3],
    pending: BTreeMap<u64, Pending>,
    /// (due, sequence) → task.
    scheduled: BTreeMap<(Instant, u64), Entry>,
    results: HashMap<String, Vec<u8>>,
    waiters: HashMap<String, HashSet<u64>>,
    replies: HashMap<u64, VecDeque<Reply>>,
    /// Worker name → (last heartbeat, description).
    workers: HashMap<String, (Instant, String)>,
    dead: VecDeque<DeadLetter>,
    next: u64,
    submitted: u64,
    published: u64,
    duplicates: u64,
    released: u64,
    retried: u64,
    throttled: u64,
    dead_lettered: u64,
    malformed: u64,
    /// Function → (runs per second, burst), and its bucket: (tokens, when last refilled).
    limits: HashMap<String, (f64, f64)>,
    buckets: HashMap<String, (f64, Instant)>,
    /// Aborted tasks not yet completed → when the record expires (as the Redis `:aborted` set).
    aborted: HashMap<String, Instant>,
    /// Tasks chained after others (`submit_after`), by the task they wait for: their entry
    /// (without its argument) and whether that task's value is a `Result`.
    dependents: HashMap<String, Vec<(Entry, bool)>>,
    /// Running task → its latest progress (as the Redis `:progress` hash); gone once it is
    /// published or its run ends in a retry.
    progress: HashMap<String, (u64, u64)>,
    /// Errors the next progress writes fail with, one per write, before the write does
    /// anything (the Redis `PROGRESS` script fails whole, too): the unit tests' fault hook.
    #[cfg(test)]
    progress_faults: VecDeque<BrokerError>,
    /// Progress writes that got through, as the broker saw them (unit tests only).
    #[cfg(test)]
    progress_writes: Vec<Vec<ProgressReport>>,
}

fn lane(priority: Priority) -> usize {
    match priority {
        Priority::High => 0,
        Priority::Low => 2,
        _ => 1,
    }
}

impl PoolState {
    fn next(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    fn enqueue(&mut self, entry: Entry) {
        let id = self.next();
        self.lanes[lane(entry.priority)].push_back((id.to_string(), entry));
    }

    fn schedule(&mut self, due: Instant, entry: Entry) {
        let seq = self.next();
        self.scheduled.insert((due, seq), entry);
    }

    /// Queues the scheduled tasks that are due (those whose outcome exists are dropped).
    fn promote(&mut self, now: Instant) {
        while let Some(entry) = self.scheduled.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let task = entry.remove();
            if !self.results.contains_key(&task.id) {
                self.enqueue(task);
            }
        }
    }

    /// Takes a rate-limit token for `entry`: `None` when it may run now, else when its reserved
    /// token accrues (the bucket goes below zero, as in the Redis `THROTTLE` script).
    fn throttle(&mut self, entry: &Entry, now: Instant) -> Option<Instant> {
        if entry.paid {
            return None;
        }
        let &(rate, burst) = self.limits.get(&entry.function)?;
        let (tokens, at) = self
            .buckets
            .get(&entry.function)
            .copied()
            .unwrap_or((burst, now));
        let refilled = tokens + now.saturating_duration_since(at).as_secs_f64() * rate;
        let tokens = refilled.min(burst) - 1.0;
        self.buckets.insert(entry.function.clone(), (tokens, now));
        if tokens >= 0.0 {
            return None;
        }
        let wait = Duration::try_from_secs_f64(-tokens / rate).unwrap_or(FAR_FUTURE);
        Some(now.checked_add(wait).unwrap_or(now + FAR_FUTURE))
    }

    fn publish(&mut self, task_id: &str, outcome: &[u8]) -> bool {
        if self.results.contains_key(task_id) {
            return false;
        }
        self.results.insert(task_id.to_string(), outcome.to_vec());
        self.progress.remove(task_id);
        for client in self.waiters.remove(task_id).unwrap_or_default() {
            self.replies.entry(client).or_default().push_back(Reply {
                task_id: task_id.to_string(),
                outcome: outcome.to_vec(),
            });
        }
        for (entry, fallible) in self.dependents.remove(task_id).unwrap_or_default() {
            self.release(entry, fallible, outcome);
        }
        true
    }

    /// What the published `outcome` of the task `entry` was chained after makes of it: queued
    /// with that value as its argument, or ended with that failure (as the `SUBMIT` script).
    fn release(&mut self, mut entry: Entry, fallible: bool, outcome: &[u8]) {
        match outcome::release_after(outcome, fallible) {
            Release::Run(arg) => {
                entry.arg = arg.into();
                self.enqueue(entry);
            }
            Release::Publish(failure) => {
                if self.publish(&entry.id, &failure) {
                    self.published += 1;
                }
            }
        }
    }

    fn dead_letter(&mut self, entry: &Entry, deliveries: u32, worker: &str, reason: String) {
        if self.dead.len() >= MAX_DEAD {
            self.dead.pop_back();
        }
        self.dead.push_front(DeadLetter {
            task_id: entry.id.clone(),
            function: entry.function.clone(),
            deliveries,
            worker: worker.to_string(),
            reason,
        });
        self.dead_lettered += 1;
    }

    fn is_aborted(&self, task_id: &str, now: Instant) -> bool {
        self.aborted.get(task_id).is_some_and(|&until| until > now)
    }

    fn owned(&self, entry: &str, worker: &str) -> Option<u64> {
        let key = entry.parse().ok()?;
        (self.pending.get(&key)?.worker == worker).then_some(key)
    }

    fn status(&self) -> Status {
        let config = self.config.unwrap_or_default();
        let now = Instant::now();
        let mut held: HashMap<&str, u64> = HashMap::new();
        for pending in self.pending.values() {
            *held.entry(&pending.worker).or_default() += 1;
        }
        let mut workers: Vec<WorkerStatus> = self
            .workers
            .iter()
            .map(|(name, (beat, description))| WorkerStatus {
                name: name.clone(),
                description: description.clone(),
                last_heartbeat: Some(now.saturating_duration_since(*beat)),
                in_flight: held.get(name.as_str()).copied().unwrap_or(0),
            })
            .collect();
        workers.sort_by(|a, b| a.name.cmp(&b.name));
        Status {
            queued: self.lanes.iter().map(|l| l.len() as u64).sum(),
            in_flight: self.pending.len() as u64,
            workers,
            dead_lettered: self.dead.len() as u64,
            malformed: self.malformed,
            problems: Vec::new(),
            recent_dead: self.dead.iter().take(10).cloned().collect(),
            submitted: self.submitted,
            published: self.published,
            duplicates: self.duplicates,
            released: self.released,
            scheduled: self.scheduled.len() as u64,
            chained: self.dependents.values().map(|d| d.len() as u64).sum(),
            retried: self.retried,
            throttled: self.throttled,
            lease: config.lease,
            max_deliveries: config.max_deliveries,
            progress: super::status::first_progress(
                self.progress
                    .iter()
                    .map(|(id, &(done, total))| super::status::TaskProgress::new(id, done, total))
                    .collect(),
            ),
        }
    }
}

struct MemoryConnection {
    broker: MemoryBroker,
    pool: String,
    fruitful: u64,
}

impl MemoryConnection {
    /// Runs `f` on this pool's state, then wakes every blocked reader.
    fn with<T>(&self, f: impl FnOnce(&mut PoolState) -> T) -> T {
        let mut pools = self.broker.lock();
        let value = f(pools.entry(self.pool.clone()).or_default());
        drop(pools);
        self.broker.inner.changed.notify_all();
        value
    }

    /// Waits until `ready` gives something or `block` passed (or the next scheduled due time:
    /// `ready` is called again then).
    fn wait_for<T>(
        &mut self,
        block: Duration,
        mut ready: impl FnMut(&mut PoolState, &mut u64) -> Option<T>,
    ) -> Option<T> {
        let deadline = Instant::now().checked_add(block);
        let mut pools = self.broker.lock();
        loop {
            let state = pools.entry(self.pool.clone()).or_default();
            if let Some(value) = ready(state, &mut self.fruitful) {
                drop(pools);
                self.broker.inner.changed.notify_all();
                return Some(value);
            }
            let now = Instant::now();
            let mut until = deadline.map_or(Duration::from_secs(1), |d| d - now.min(d));
            if until.is_zero() {
                return None;
            }
            if let Some((due, _)) = state.scheduled.keys().next() {
                until = until.min(due.saturating_duration_since(now));
            }
            pools = self
                .broker
                .inner
                .changed
                .wait_timeout(pools, until.max(Duration::from_millis(1)))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

fn delivery(entry_id: String, entry: &Entry) -> Delivery {
    Delivery {
        entry: entry_id,
        task_id: entry.id.clone(),
        function: entry.function.clone(),
        arg: entry.arg.to_vec(),
        signature: Some(entry.signature.clone()),
        retry: entry.retry.clone(),
        attempt: entry.attempt,
        limits: entry.limits.as_deref().map(str::to_string),
        aborted: false,
    }
}

impl Connection for MemoryConnection {
    fn config(&mut self, fallback: PoolConfig) -> BrokerResult<(PoolConfig, Vec<String>)> {
        let _ = fallback;
        Ok((self.with(|p| p.config.unwrap_or_default()), Vec::new()))
    }

    fn store_config(&mut self, config: PoolConfig) -> BrokerResult<()> {
        self.with(|p| p.config = Some(config));
        Ok(())
    }

    fn store_rate_limits(&mut self, limits: &[(&str, super::RateLimit)]) -> BrokerResult<()> {
        self.with(|p| {
            for (function, limit) in limits {
                let (rate, burst) = limit.parts();
                p.limits
                    .insert(function.to_string(), (rate, f64::from(burst)));
            }
        });
        Ok(())
    }

    fn look_up(&mut self, task_ids: &[Arc<str>]) -> BrokerResult<Vec<super::backend::Known>> {
        use super::backend::Known;
        Ok(self.with(|p| {
            task_ids
                .iter()
                .map(|id| match p.results.get(&**id) {
                    Some(outcome) => Known::Finished(outcome.clone()),
                    None if p.waiters.get(&**id).is_some_and(|w| !w.is_empty()) => Known::Pending,
                    None => Known::Forgotten,
                })
                .collect()
        }))
    }

    fn register_client(&mut self) -> BrokerResult<u64> {
        Ok(self.with(|p| {
            p.clients += 1;
            p.clients
        }))
    }

    fn submit(&mut self, client: u64, tasks: &[NewTask]) -> BrokerResult<Vec<Submitted>> {
        let now = (Instant::now(), SystemTime::now());
        Ok(self.with(|p| {
            tasks
                .iter()
                .map(|task| {
                    if let Some(done) = p.results.get(&*task.id) {
                        return Submitted::Finished(done.clone());
                    }
                    let waiters = p.waiters.entry(task.id.to_string()).or_default();
                    let fresh = waiters.is_empty();
                    waiters.insert(client);
                    if !fresh {
                        return Submitted::AlreadyQueued;
                    }
                    p.submitted += 1;
                    let entry = Entry {
                        id: task.id.to_string(),
                        function: task.function.to_string(),
                        arg: task.arg.clone(),
                        signature: task.signature.to_string(),
                        retry: task.retry.as_deref().map(str::to_string),
                        attempt: 0,
                        priority: task.priority,
                        limits: task.limits.clone(),
                        paid: false,
                    };
                    if let Some(after) = &task.after {
                        if let Some(done) = p.results.get(&*after.task_id).cloned() {
                            p.release(entry, after.fallible, &done);
                        } else if p.waiters.contains_key(&*after.task_id) {
                            p.dependents
                                .entry(after.task_id.to_string())
                                .or_default()
                                .push((entry, after.fallible));
                        } else {
                            let why = format!(
                                "the task it was chained after ({}) is unknown to the broker: it \
                                 was never submitted to this pool, or its result expired \
                                 (result_ttl)",
                                after.task_id
                            );
                            if p.publish(&task.id, &outcome::transfer(&why)) {
                                p.published += 1;
                            }
                        }
                        return Submitted::Queued;
                    }
                    let wait = task
                        .due
                        .and_then(|due| due.duration_since(now.1).ok())
                        .filter(|wait| !wait.is_zero());
                    match wait {
                        // A due time past the clock's range is as good as never; a year at most
                        // is accepted at submit anyway.
                        Some(wait) => {
                            let due = now.0.checked_add(wait).unwrap_or(now.0 + FAR_FUTURE);
                            p.schedule(due, entry);
                        }
                        None => p.enqueue(entry),
                    }
                    Submitted::Queued
                })
                .collect()
        }))
    }

    fn replies(
        &mut self,
        client: u64,
        cursor: &mut String,
        max: usize,
        block: Duration,
    ) -> BrokerResult<Vec<Reply>> {
        let _ = cursor;
        Ok(self
            .wait_for(block, |p, _| {
                let replies = p.replies.get_mut(&client)?;
                if replies.is_empty() {
                    return None;
                }
                let take = replies.len().min(max.max(1));
                Some(replies.drain(..take).collect())
            })
            .unwrap_or_default())
    }

    fn progress(&mut self, reports: &[ProgressReport]) -> BrokerResult<()> {
        self.with(|p| {
            #[cfg(test)]
            {
                if let Some(fault) = p.progress_faults.pop_front() {
                    return Err(fault);
                }
                p.progress_writes.push(reports.to_vec());
            }
            for report in reports {
                // As the Redis `PROGRESS`: a task with an outcome keeps no progress.
                if p.results.contains_key(&report.task_id) {
                    continue;
                }
                p.progress
                    .insert(report.task_id.clone(), (report.done, report.total));
                let value = progress_value(report.done, report.total).into_bytes();
                for client in p.waiters.get(&report.task_id).into_iter().flatten() {
                    p.replies.entry(*client).or_default().push_back(Reply {
                        task_id: format!("{PROGRESS_REPLY}{}", report.task_id),
                        outcome: value.clone(),
                    });
                }
            }
            Ok(())
        })
    }

    fn register_worker(&mut self, description: &str) -> BrokerResult<String> {
        Ok(self.with(|p| {
            p.clients += 1;
            let name = format!(
                "{}-w{}",
                description.split(' ').next().unwrap_or("worker"),
                p.clients
            );
            p.workers
                .insert(name.clone(), (Instant::now(), description.to_string()));
            name
        }))
    }

    fn fetch(&mut self, worker: &str, max: usize, block: Duration) -> BrokerResult<Vec<Delivery>> {
        let worker = worker.to_string();
        Ok(self
            .wait_for(block, |p, fruitful| {
                let now = Instant::now();
                p.promote(now);
                let mut order = [0, 1, 2];
                if *fruitful % STARVATION_TURN == STARVATION_TURN - 1 {
                    order.reverse();
                }
                let mut out = Vec::new();
                for lane in order {
                    while out.len() < max {
                        let Some((_, mut entry)) = p.lanes[lane].pop_front() else {
                            break;
                        };
                        if let Some(due) = p.throttle(&entry, now) {
                            entry.paid = true;
                            p.schedule(due, entry);
                            p.throttled += 1;
                            continue;
                        }
                        let key = p.next();
                        let mut handed = delivery(key.to_string(), &entry);
                        handed.aborted = p.is_aborted(&entry.id, now);
                        out.push(handed);
                        p.pending.insert(
                            key,
                            Pending {
                                entry,
                                worker: worker.clone(),
                                deliveries: 1,
                                touched: now,
                            },
                        );
                    }
                }
                if out.is_empty() {
                    return None;
                }
                *fruitful = fruitful.wrapping_add(1);
                Some(out)
            })
            .unwrap_or_default())
    }

    fn complete(&mut self, completions: &[Completion]) -> BrokerResult<Vec<bool>> {
        Ok(self.with(|p| {
            completions
                .iter()
                .map(|c| {
                    let key = c.entry.parse::<u64>().ok();
                    let pending = key.and_then(|key| p.pending.remove(&key));
                    // As the Redis `COMPLETE`: an aborted task ends cancelled, never retried.
                    if p.is_aborted(&c.task_id, Instant::now()) {
                        p.aborted.remove(&c.task_id);
                        let first = p.publish(&c.task_id, &super::outcome::cancelled());
                        if first {
                            p.published += 1;
                        } else {
                            p.duplicates += 1;
                        }
                        return first;
                    }
                    if let Some(delay) = c.retry_in {
                        return match pending {
                            Some(pending) if !p.results.contains_key(&c.task_id) => {
                                let mut entry = pending.entry;
                                entry.attempt = entry.attempt.saturating_add(1);
                                // The next run pays for its own token.
                                entry.paid = false;
                                let now = Instant::now();
                                p.progress.remove(&c.task_id);
                                p.schedule(now.checked_add(delay).unwrap_or(now), entry);
                                p.retried += 1;
                                true
                            }
                            _ => {
                                p.duplicates += 1;
                                false
                            }
                        };
                    }
                    if let (Some(reason), Some(pending)) = (&c.dead_letter, &pending) {
                        let entry = pending.entry.clone();
                        p.dead_letter(&entry, 1, "", reason.clone());
                        p.malformed += 1;
                    }
                    let first = p.publish(&c.task_id, &c.outcome);
                    if first {
                        p.published += 1;
                    } else {
                        p.duplicates += 1;
                    }
                    first
                })
                .collect()
        }))
    }

    fn heartbeat(&mut self, worker: &str, entries: &[String]) -> BrokerResult<Vec<String>> {
        Ok(self.with(|p| {
            let now = Instant::now();
            if let Some(beat) = p.workers.get_mut(worker) {
                beat.0 = now;
            }
            entries
                .iter()
                .filter(|entry| match p.owned(entry, worker) {
                    Some(key) => {
                        if let Some(pending) = p.pending.get_mut(&key) {
                            pending.touched = now;
                        }
                        false
                    }
                    None => true,
                })
                .cloned()
                .collect()
        }))
    }

    fn reap(
        &mut self,
        worker: &str,
        config: PoolConfig,
        max_claims: usize,
    ) -> BrokerResult<Reaped> {
        Ok(self.with(|p| {
            let now = Instant::now();
            let idle: Vec<u64> = p
                .pending
                .iter()
                .filter(|(_, pending)| {
                    now.saturating_duration_since(pending.touched) >= config.lease
                })
                .map(|(&key, _)| key)
                .collect();
            let mut reaped = Reaped::default();
            for key in idle {
                let pending = p.pending.get_mut(&key).expect("listed above");
                if pending.deliveries >= config.max_deliveries {
                    let pending = p.pending.remove(&key).expect("listed above");
                    let n = pending.deliveries;
                    let reason = format!(
                        "lost its worker {n} {}",
                        if n == 1 { "time" } else { "times" }
                    );
                    p.dead_letter(&pending.entry, n, &pending.worker, reason);
                    p.publish(&pending.entry.id, format!("L{n}").as_bytes());
                    reaped.dead_lettered += 1;
                } else if reaped.claimed.len() < max_claims {
                    pending.worker = worker.to_string();
                    pending.deliveries += 1;
                    pending.touched = now;
                    let mut handed = delivery(key.to_string(), &pending.entry);
                    let id = pending.entry.id.clone();
                    handed.aborted = p.is_aborted(&id, now);
                    reaped.claimed.push(handed);
                }
            }
            // Forget workers silent for ten leases that hold nothing, as the Redis reaper does.
            let forget = config.lease.saturating_mul(10);
            let holders: HashSet<String> = p.pending.values().map(|x| x.worker.clone()).collect();
            p.workers.retain(|name, (beat, _)| {
                name == worker
                    || holders.contains(name)
                    || now.saturating_duration_since(*beat) < forget
            });
            reaped
        }))
    }

    fn abort(&mut self, task_ids: &[Arc<str>]) -> BrokerResult<Vec<bool>> {
        Ok(self.with(|p| {
            let now = Instant::now();
            let ttl = p.config.unwrap_or_default().result_ttl;
            p.aborted.retain(|_, until| *until > now);
            task_ids
                .iter()
                .map(|id| {
                    if p.results.contains_key(&**id) {
                        return false;
                    }
                    let scheduled = p
                        .scheduled
                        .iter()
                        .find(|(_, entry)| *entry.id == **id)
                        .map(|(&key, _)| key);
                    match scheduled {
                        // Off the schedule, cancelled at once, as the Redis `ABORT`.
                        Some(key) => {
                            p.scheduled.remove(&key);
                            p.publish(id, &super::outcome::cancelled());
                        }
                        None => {
                            p.aborted
                                .insert(id.to_string(), now.checked_add(ttl).unwrap_or(now));
                        }
                    }
                    true
                })
                .collect()
        }))
    }

    fn aborted(&mut self, task_ids: &[String]) -> BrokerResult<Vec<String>> {
        Ok(self.with(|p| {
            let now = Instant::now();
            task_ids
                .iter()
                .filter(|id| p.is_aborted(id, now))
                .cloned()
                .collect()
        }))
    }

    fn release(&mut self, worker: &str, entries: &[String]) -> BrokerResult<()> {
        self.with(|p| {
            for entry in entries {
                if let Some(key) = p.owned(entry, worker) {
                    let pending = p.pending.remove(&key).expect("owned");
                    p.enqueue(pending.entry);
                    p.released += 1;
                }
            }
        });
        Ok(())
    }

    fn retire_worker(&mut self, worker: &str) -> BrokerResult<()> {
        self.with(|p| {
            let mine: Vec<u64> = p
                .pending
                .iter()
                .filter(|(_, pending)| pending.worker == worker)
                .map(|(&key, _)| key)
                .collect();
            for key in mine {
                let pending = p.pending.remove(&key).expect("listed");
                p.enqueue(pending.entry);
                p.released += 1;
            }
            p.workers.remove(worker);
        });
        Ok(())
    }

    fn status(&mut self) -> BrokerResult<Option<Status>> {
        Ok(Some(self.with(|p| p.status())))
    }

    fn pools(&mut self) -> BrokerResult<Vec<String>> {
        let mut pools: Vec<String> = self.broker.lock().keys().cloned().collect();
        pools.sort();
        Ok(pools)
    }

    fn ping(&mut self) -> BrokerResult<()> {
        Ok(())
    }

    fn max_payload(&mut self) -> usize {
        MAX_PAYLOAD
    }

    fn live_workers(&mut self, within: Duration) -> BrokerResult<usize> {
        Ok(self.with(|p| {
            let now = Instant::now();
            p.workers
                .values()
                .filter(|(beat, _)| now.saturating_duration_since(*beat) < within)
                .count()
        }))
    }
}

/// A delay too far for `Instant` arithmetic is scheduled this far instead (the submit accepts at
/// most a year, so this is never reached in practice).
const FAR_FUTURE: Duration = Duration::from_secs(366 * 24 * 3600);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{RetryPolicy, SubmitOptions};
    use crate::TaskError;

    fn square(n: u64) -> u64 {
        n * n
    }

    /// Fails until `runs` (a counter shared through a static) reaches `succeed_on`.
    fn flaky((key, succeed_on): (u64, u32)) -> Result<u32, String> {
        static RUNS: Mutex<BTreeMap<u64, u32>> = Mutex::new(BTreeMap::new());
        let mut runs = RUNS.lock().unwrap();
        let run = runs.entry(key).or_default();
        *run += 1;
        if *run >= succeed_on {
            Ok(*run)
        } else {
            Err(format!("run {run} failed"))
        }
    }

    fn stamp(_: ()) -> u128 {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    }

    /// Appends its lane's letter to a log only the priority test reads, in the order tasks run.
    fn run_in_lane(lane: char) {
        RUN_ORDER.lock().unwrap().push(lane);
    }

    static RUN_ORDER: Mutex<Vec<char>> = Mutex::new(Vec::new());

    /// Runs of [`until_aborted`] by key, and the keys whose run saw its token cancelled.
    static STARTS: Mutex<BTreeMap<u64, u32>> = Mutex::new(BTreeMap::new());
    static SAW_ABORT: Mutex<BTreeMap<u64, bool>> = Mutex::new(BTreeMap::new());

    /// Polls its token until it is cancelled (at most 10 s), then fails: under a retry policy a
    /// failure is run again, unless the abort stops that.
    fn until_aborted(key: u64) -> Result<u64, String> {
        *STARTS.lock().unwrap().entry(key).or_default() += 1;
        let token = crate::current_token();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !token.is_cancelled() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        SAW_ABORT.lock().unwrap().insert(key, token.is_cancelled());
        Err("returned after its token".to_string())
    }

    fn starts(key: u64) -> u32 {
        STARTS.lock().unwrap().get(&key).copied().unwrap_or(0)
    }

    /// Waits (at most 10 s) until `until_aborted(key)` has started.
    fn started(key: u64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while starts(key) == 0 {
            assert!(Instant::now() < deadline, "task {key} never started");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn parse_number(text: String) -> Result<u64, String> {
        text.parse().map_err(|_| format!("not a number: {text}"))
    }
    fn boom(_: u64) -> u64 {
        panic!("boom on purpose")
    }
    /// Polls its token for at most 10 s; returns how long it took to read cancelled (ms), or
    /// `None` if it never did.
    fn until_token(_: ()) -> Option<u64> {
        let token = crate::current_token();
        let started = Instant::now();
        while !token.is_cancelled() {
            if started.elapsed() > Duration::from_secs(10) {
                return None;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Some(started.elapsed().as_millis() as u64)
    }

    crate::register!(
        square,
        flaky,
        stamp,
        run_in_lane,
        until_aborted,
        parse_number,
        boom,
        until_token
    );

    /// The broker's stored progress of pool `pool`, by task id.
    fn stored_progress(broker: &MemoryBroker, pool: &str) -> HashMap<String, (u64, u64)> {
        broker
            .lock()
            .get(pool)
            .map(|p| p.progress.clone())
            .unwrap_or_default()
    }

    /// A worker's connection to pool `default` of `broker` with the `n` tasks submitted there
    /// fetched (at most 10 s of waiting for them), for tests that play the worker by hand.
    fn fetched_by_hand(
        broker: &MemoryBroker,
        n: usize,
    ) -> (Box<dyn Connection>, String, Vec<Delivery>) {
        let backend = MemoryBackend {
            broker: broker.clone(),
            pool: "default".into(),
        };
        let mut connection = backend.connect().unwrap();
        let worker = connection.register_worker("test").unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut deliveries = Vec::new();
        while deliveries.len() < n {
            assert!(
                Instant::now() < deadline,
                "the submits never reached the broker"
            );
            deliveries.extend(
                connection
                    .fetch(&worker, n, Duration::from_millis(50))
                    .unwrap(),
            );
        }
        (connection, worker, deliveries)
    }

    #[test]
    fn progress_is_kept_and_sent_while_a_task_runs_and_goes_with_its_outcome() {
        let broker = MemoryBroker::new();
        let pool = broker.pool("default").build().unwrap();
        let task = pool.submit_with(&SubmitOptions::new().id("counting"), square, 3);
        let (mut connection, _, deliveries) = fetched_by_hand(&broker, 1);
        let deadline = Instant::now() + Duration::from_secs(10);
        let report = |done| ProgressReport {
            task_id: "id:counting".into(),
            done,
            total: 9,
        };
        connection.progress(&[report(4)]).unwrap();
        assert_eq!(
            stored_progress(&broker, "default"),
            HashMap::from([("id:counting".to_string(), (4, 9))])
        );
        assert_eq!(
            broker.status("default").unwrap().progress,
            [super::super::status::TaskProgress::new("id:counting", 4, 9)],
            "the pool's status lists it"
        );
        while task.progress() != Some((4, 9)) {
            assert!(Instant::now() < deadline, "the handle never saw the report");
            std::thread::sleep(Duration::from_millis(2));
        }
        let completion = Completion {
            entry: deliveries[0].entry.clone(),
            task_id: "id:counting".into(),
            outcome: outcome::value(&postcard::to_allocvec(&9u64).unwrap()),
            dead_letter: None,
            retry_in: None,
        };
        assert_eq!(connection.complete(&[completion]).unwrap(), [true]);
        assert!(broker.status("default").unwrap().progress.is_empty());
        assert!(
            stored_progress(&broker, "default").is_empty(),
            "gone with the task"
        );
        connection.progress(&[report(5)]).unwrap();
        assert!(
            stored_progress(&broker, "default").is_empty(),
            "a late report does not bring it back"
        );
        assert_eq!(task.result_timeout(Duration::from_secs(10)), Ok(9));
        assert_eq!(task.progress(), None);
    }

    fn report_until_released(total: u64) -> u64 {
        for done in 1..=total {
            crate::report_progress(done, total);
            std::thread::sleep(Duration::from_millis(60));
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while !RELEASED.load(std::sync::atomic::Ordering::SeqCst) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        total
    }

    static RELEASED: AtomicBool = AtomicBool::new(false);

    /// Reports about every millisecond for `ms` ms, then `(ms, ms)`; returns how long it ran.
    fn report_for(ms: u64) -> u64 {
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(ms) {
            let at = start.elapsed().as_millis() as u64;
            crate::report_progress(at.min(ms - 1), ms);
            std::thread::sleep(Duration::from_millis(1));
        }
        crate::report_progress(ms, ms);
        start.elapsed().as_millis() as u64
    }

    crate::register!(report_until_released, report_for);

    #[test]
    fn a_workers_progress_writes_are_rate_limited_and_none_reach_the_handle_after_the_end() {
        let broker = MemoryBroker::new();
        let pool = broker.pool("paced").build().unwrap();
        let _worker = broker.serve(ServeOptions::default().pool("paced").threads(1));
        let task = pool.submit(report_for, 1500);
        let heard = Arc::new(Mutex::new(Vec::new()));
        let sink = heard.clone();
        task.on_progress(move |done, total| sink.lock().unwrap().push((done, total)));
        let took = Duration::from_millis(task.result_timeout(Duration::from_secs(30)).unwrap());
        let at_end = heard.lock().unwrap().clone();
        std::thread::sleep(Duration::from_millis(600));
        assert_eq!(
            *heard.lock().unwrap(),
            at_end,
            "a progress callback ran after the result was seen"
        );
        assert!(!at_end.is_empty(), "no report reached the handle");
        assert!(
            at_end.windows(2).all(|w| w[0].0 < w[1].0),
            "in order: {at_end:?}"
        );
        // The worker writes at most every 250 ms (the task's thread let through one per 50 ms).
        let allowed = (took.as_millis() / 250) as usize + 2;
        assert!(
            at_end.len() <= allowed,
            "{} reports heard from {took:?} of running: not paced by the worker",
            at_end.len()
        );
        assert!(
            stored_progress(&broker, "paced").is_empty(),
            "gone with the task"
        );
    }

    #[test]
    fn a_memory_workers_task_reports_progress_to_the_clients_handle() {
        let broker = MemoryBroker::new();
        let pool = broker.pool("progress").build().unwrap();
        let _worker = broker.serve(ServeOptions::default().pool("progress").threads(1));
        let task = pool.submit_with(
            &SubmitOptions::new().id("reporting"),
            report_until_released,
            3,
        );
        let heard = Arc::new(Mutex::new(Vec::new()));
        let sink = heard.clone();
        task.on_progress(move |done, total| sink.lock().unwrap().push((done, total)));
        let deadline = Instant::now() + Duration::from_secs(10);
        while task.progress() != Some((3, 3)) {
            assert!(
                Instant::now() < deadline,
                "the handle never saw (3, 3): {:?}",
                task.progress()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(
            stored_progress(&broker, "progress"),
            HashMap::from([("id:reporting".to_string(), (3, 3))])
        );
        RELEASED.store(true, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(task.result_timeout(Duration::from_secs(10)), Ok(3));
        let heard = heard.lock().unwrap().clone();
        assert!(
            heard.windows(2).all(|w| w[0].0 < w[1].0),
            "in order: {heard:?}"
        );
        assert!(
            stored_progress(&broker, "progress").is_empty(),
            "gone with the task"
        );
    }

    /// Set by the test below: `report_twice_and_hold` may report its second value.
    static SECOND_REPORT: AtomicBool = AtomicBool::new(false);
    /// Set by the test below: `report_twice_and_hold` may return.
    static FAULTY_RELEASED: AtomicBool = AtomicBool::new(false);

    /// Reports `(1, 3)`, then `(2, 3)` once `SECOND_REPORT` is set, then holds until
    /// `FAULTY_RELEASED` (at most a minute each) and returns `total`.
    fn report_twice_and_hold(total: u64) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(60);
        crate::report_progress(1, total);
        while !SECOND_REPORT.load(Ordering::SeqCst) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        crate::report_progress(2, total);
        while !FAULTY_RELEASED.load(Ordering::SeqCst) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        total
    }

    crate::register!(report_twice_and_hold);

    /// Bug: a progress write that failed with a permanent error (a progress hash of another
    /// type) dropped its reports, so a task that reported nothing newer never showed its
    /// progress again, and each failure was one more line on stderr. Now the latest value goes
    /// with a later write, once, and the worker serves on meanwhile.
    #[test]
    fn a_failed_progress_write_is_retried_with_the_latest_value_instead_of_dropped() {
        let broker = MemoryBroker::new();
        let faults = [
            BrokerError::Rejected("WRONGTYPE the progress hash holds a string".into()),
            BrokerError::Unavailable("connection reset".into()),
            BrokerError::Rejected("WRONGTYPE the progress hash holds a string".into()),
        ];
        broker
            .lock()
            .entry("faulty".into())
            .or_default()
            .progress_faults
            .extend(faults);
        let faults_left = || broker.lock()["faulty"].progress_faults.len();
        let pool = broker
            .pool("faulty")
            .lease(Duration::from_secs(2))
            .build()
            .unwrap();
        let worker = broker.serve(ServeOptions::default().pool("faulty").threads(1));
        let task = pool.submit_with(&SubmitOptions::new().id("faulty"), report_twice_and_hold, 3);
        let wait_for = |what: &str, condition: &dyn Fn() -> bool| {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !condition() {
                assert!(Instant::now() < deadline, "never: {what}");
                std::thread::sleep(Duration::from_millis(5));
            }
        };
        wait_for("the first progress write to fail", &|| faults_left() < 3);
        SECOND_REPORT.store(true, Ordering::SeqCst);
        wait_for("the latest value to be stored", &|| {
            stored_progress(&broker, "faulty").get("id:faulty") == Some(&(2, 3))
        });
        assert_eq!(faults_left(), 0);
        let heartbeat = || broker.lock()["faulty"].workers.values().next().map(|w| w.0);
        let before = heartbeat();
        assert!(before.is_some(), "the worker is registered");
        wait_for("the worker to heartbeat again", &|| heartbeat() != before);
        FAULTY_RELEASED.store(true, Ordering::SeqCst);
        assert_eq!(task.result_timeout(Duration::from_secs(60)), Ok(3));
        let written: Vec<(u64, u64)> = broker.lock()["faulty"]
            .progress_writes
            .iter()
            .flatten()
            .map(|r| (r.done, r.total))
            .collect();
        // Latest wins: a value that got through is never sent again.
        assert!(
            written.windows(2).all(|w| w[0].0 < w[1].0) && written.last() == Some(&(2, 3)),
            "{written:?}"
        );
        assert!(worker.stop().is_ok(), "the worker served on");
    }

    #[test]
    fn a_submits_limits_travel_in_its_entry_and_a_plain_one_carries_none() {
        let broker = MemoryBroker::new();
        let pool = broker.pool("default").build().unwrap();
        let limited = SubmitOptions::new()
            .id("limited")
            .time_limit(Duration::from_millis(1500))
            .soft_time_limit(Duration::from_millis(1000))
            .memory_limit(256 << 20);
        let limited = pool.submit_with(&limited, square, 1);
        let plain = pool.submit_with(&SubmitOptions::new().id("plain"), square, 2);
        // No worker: read the entries as one would get them.
        let (mut connection, worker, mut deliveries) = fetched_by_hand(&broker, 2);
        deliveries.sort_by(|a, b| a.task_id.cmp(&b.task_id));
        assert_eq!(deliveries[0].task_id, "id:limited");
        assert_eq!(deliveries[0].limits.as_deref(), Some("1500 1000 268435456"));
        assert_eq!(deliveries[1].limits, None, "no limits, no field");
        connection
            .release(&worker, &[deliveries[0].entry.clone()])
            .unwrap();
        let again = connection
            .fetch(&worker, 2, Duration::from_millis(50))
            .unwrap();
        assert_eq!(
            again[0].limits.as_deref(),
            Some("1500 1000 268435456"),
            "a released entry keeps its limits"
        );
        let entries: Vec<String> = again.into_iter().map(|d| d.entry).collect();
        connection.release(&worker, &entries).unwrap();
        connection
            .release(&worker, &[deliveries[1].entry.clone()])
            .unwrap();
        let _worker = broker.serve(ServeOptions::default().threads(1));
        assert_eq!(limited.result_timeout(Duration::from_secs(10)), Ok(1));
        assert_eq!(plain.result_timeout(Duration::from_secs(10)), Ok(4));
    }

    #[test]
    fn a_submits_soft_limit_sets_the_token_on_a_thread_worker_and_the_value_stands() {
        let broker = MemoryBroker::new();
        let _worker = broker.serve(ServeOptions::default().threads(1));
        let pool = broker.pool("default").build().unwrap();
        let options = SubmitOptions::new().soft_time_limit(Duration::from_millis(100));
        let waited = pool.submit_with(&options, until_token, ());
        let waited = waited.result_timeout(Duration::from_secs(20)).unwrap();
        assert!(waited.is_some_and(|ms| ms >= 99), "{waited:?}");
        // Without a limit the token stays clear: the plain submit is not limited.
        let plain = pool.submit_with(
            &SubmitOptions::new().soft_time_limit(Duration::from_secs(3600)),
            square,
            3,
        );
        assert_eq!(plain.result_timeout(Duration::from_secs(10)), Ok(9));
    }

    #[test]
    fn a_hard_limit_on_a_thread_worker_only_sets_the_token() {
        let broker = MemoryBroker::new();
        let _worker = broker.serve(ServeOptions::default().threads(1));
        let pool = broker.pool("default").build().unwrap();
        let options = SubmitOptions::new()
            .time_limit(Duration::from_millis(50))
            .memory_limit(1);
        let task = pool.submit_with(&options, until_token, ());
        let outcome = task.result_timeout(Duration::from_secs(20));
        assert!(
            matches!(outcome, Ok(Some(_))),
            "a thread cannot be killed: the task sees its token and its value stands, \
             got {outcome:?}"
        );
    }

    #[test]
    fn the_workers_default_soft_limit_applies_to_tasks_without_their_own() {
        let broker = MemoryBroker::new();
        let _worker = broker.serve(
            ServeOptions::default()
                .threads(1)
                .soft_time_limit(Duration::from_millis(50)),
        );
        let pool = broker.pool("default").build().unwrap();
        let task = pool.submit(until_token, ());
        assert!(matches!(
            task.result_timeout(Duration::from_secs(20)),
            Ok(Some(_))
        ));
    }

    /// Process mode in this test binary: its local pool re-runs it as a process-pool worker
    /// (`test_support!` in `process_pool/fault_tests.rs`).
    #[cfg(target_os = "linux")]
    #[test]
    fn a_process_mode_workers_default_limits_apply_and_a_submits_own_win() {
        let broker = MemoryBroker::new();
        let hard = Duration::from_millis(300);
        let _worker = broker.serve(ServeOptions::default().processes(1).time_limit(hard));
        let pool = broker.pool("default").build().unwrap();
        // Its token is never set (no soft limit): only the worker's hard default ends it.
        let defaulted = pool.submit(until_token, ());
        assert_eq!(
            defaulted.result_timeout(Duration::from_secs(30)),
            Err(TaskError::TimeLimit(hard))
        );
        let own = Duration::from_millis(600);
        let longer = pool.submit_with(&SubmitOptions::new().time_limit(own), until_token, ());
        assert_eq!(
            longer.result_timeout(Duration::from_secs(30)),
            Err(TaskError::TimeLimit(own)),
            "a submit's own limit wins"
        );
        // Its own soft limit, with the worker's hard one still behind it.
        let soft = SubmitOptions::new().soft_time_limit(Duration::from_millis(50));
        let wrapped_up = pool.submit_with(&soft, until_token, ());
        assert!(matches!(
            wrapped_up.result_timeout(Duration::from_secs(30)),
            Ok(Some(_))
        ));
        assert_eq!(
            pool.submit(square, 5)
                .result_timeout(Duration::from_secs(30)),
            Ok(25)
        );
    }

    #[test]
    fn hard_and_memory_limits_without_processes_and_zero_limits_are_refused() {
        let broker = MemoryBroker::new();
        for options in [
            ServeOptions::default().time_limit(Duration::from_secs(1)),
            ServeOptions::default().memory_limit(1 << 30),
            ServeOptions::default().processes(0),
            ServeOptions::default().soft_time_limit(Duration::ZERO),
        ] {
            let stopped = broker.serve(options.clone()).stop();
            assert!(
                matches!(stopped, Err(ClusterError::InvalidSetting(_))),
                "{options:?}: {stopped:?}"
            );
        }
        let pool = broker.pool("default").build().unwrap();
        let refused = pool.submit_with(&SubmitOptions::new().memory_limit(0), square, 1);
        assert!(matches!(refused.result(), Err(TaskError::Transfer(_))));
    }

    #[test]
    fn an_abort_sets_a_running_tasks_token_and_it_ends_cancelled_without_redis() {
        let broker = MemoryBroker::new();
        let _worker = broker.serve(ServeOptions::default().threads(1));
        let pool = broker.pool("default").build().unwrap();
        let options = SubmitOptions::new().id("running").retry(quick(3));
        let aborted = pool.submit_fallible_with(&options, until_aborted, 1);
        // A second handle on the same task hears what the broker publishes.
        let other = pool.submit_fallible_with(&options, until_aborted, 1);
        started(1);
        assert!(aborted.abort());
        assert!(aborted.is_cancelled(), "the handle is cancelled at once");
        let outcome = other.result_timeout(Duration::from_secs(10));
        assert_eq!(outcome, Err(TaskError::Cancelled));
        assert!(other.is_cancelled());
        assert_eq!(SAW_ABORT.lock().unwrap().get(&1), Some(&true));
        assert_eq!(starts(1), 1, "an aborted task is not retried");
        assert_eq!(broker.status("default").unwrap().retried, 0);
    }

    #[test]
    fn shutdown_abort_running_reaches_the_running_tasks_token_without_redis() {
        let broker = MemoryBroker::new();
        let _worker = broker.serve(ServeOptions::default().threads(1));
        let pool = broker.pool("default").build().unwrap();
        let running = pool.submit_fallible(until_aborted, 5);
        started(5);
        pool.shutdown(crate::Shutdown::default().abort_running(true));
        assert_eq!(running.try_result(), Some(Err(TaskError::Cancelled)));
        let deadline = Instant::now() + Duration::from_secs(10);
        while SAW_ABORT.lock().unwrap().get(&5).is_none() {
            assert!(Instant::now() < deadline, "the task never returned");
            std::thread::sleep(Duration::from_millis(2));
        }
        assert_eq!(
            SAW_ABORT.lock().unwrap().get(&5),
            Some(&true),
            "its token was set"
        );
    }

    #[test]
    fn an_aborted_queued_task_never_runs_without_redis() {
        let broker = MemoryBroker::new();
        let pool = broker.pool("default").build().unwrap();
        let options = SubmitOptions::new().id("queued");
        let aborted = pool.submit_fallible_with(&options, until_aborted, 2);
        let other = pool.submit_fallible_with(&options, until_aborted, 2);
        assert!(aborted.abort());
        // Recorded on the broker before any worker exists (the submitter sends it).
        let deadline = Instant::now() + Duration::from_secs(10);
        while broker.lock()["default"].aborted.is_empty() {
            assert!(
                Instant::now() < deadline,
                "the abort never reached the broker"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        let _worker = broker.serve(ServeOptions::default().threads(1));
        assert_eq!(
            other.result_timeout(Duration::from_secs(10)),
            Err(TaskError::Cancelled)
        );
        assert_eq!(starts(2), 0, "an aborted task is completed without running");
        assert!(
            broker.lock()["default"].aborted.is_empty(),
            "record forgotten"
        );
    }

    #[test]
    fn an_aborted_delayed_task_is_cancelled_on_the_schedule_without_a_worker() {
        let broker = MemoryBroker::new();
        let pool = broker.pool("default").build().unwrap();
        let options = SubmitOptions::new()
            .id("delayed")
            .delay(Duration::from_secs(3600));
        let aborted = pool.submit_with(&options, square, 3);
        let other = pool.submit_with(&options, square, 3);
        let deadline = Instant::now() + Duration::from_secs(10);
        while broker.status("default").unwrap().scheduled == 0 {
            assert!(Instant::now() < deadline, "never scheduled");
            std::thread::sleep(Duration::from_millis(2));
        }
        assert!(aborted.abort());
        assert_eq!(
            other.result_timeout(Duration::from_secs(10)),
            Err(TaskError::Cancelled)
        );
        assert_eq!(broker.status("default").unwrap().scheduled, 0);
    }

    #[test]
    fn an_abort_after_the_outcome_returns_false_and_the_value_stands_without_redis() {
        let broker = MemoryBroker::new();
        let _worker = broker.serve(ServeOptions::default().threads(1));
        let pool = broker.pool("default").build().unwrap();
        let task = pool.submit_with_id("finished", square, 7);
        assert_eq!(task.result_timeout(Duration::from_secs(10)), Ok(49));
        assert!(!task.abort());
        assert_eq!(task.result(), Ok(49));
        let mut connection = MemoryBackend {
            broker: broker.clone(),
            pool: "default".into(),
        }
        .connect()
        .unwrap();
        let ids: Vec<Arc<str>> = vec!["id:finished".into()];
        assert_eq!(connection.abort(&ids).unwrap(), [false], "finished first");
        assert!(broker.lock()["default"].aborted.is_empty());
    }

    fn quick(retries: u32) -> RetryPolicy {
        RetryPolicy::new(retries).backoff(Duration::from_millis(10), Duration::from_millis(50))
    }

    /// `submit_after` chains on the broker: the dependent waits there, runs on the upstream's
    /// value, or ends with its failure; after an upstream already done it is queued at once.
    #[test]
    fn chained_tasks_run_on_the_upstreams_value_or_take_its_failure_without_redis() {
        let broker = MemoryBroker::new();
        let pool = broker.pool("chains").build().unwrap();
        // Submitted before any worker exists: the dependents wait on the broker.
        let first = pool.submit(square, 3);
        let second = pool.submit_after(&first, square);
        let third = pool.submit_after(&second, square);
        let parsed = pool.submit_fallible(parse_number, "x".into());
        let after_err = pool.submit_after_ok(&parsed, square);
        let exploded = pool.submit(boom, 1);
        let after_panic = pool.submit_after(&exploded, square);
        let after_panic_twice = pool.submit_after(&after_panic, square);
        // Submits are sent by the client's own thread: wait until all eight reached the broker.
        let since = Instant::now();
        while broker.lock()["chains"].submitted < 8 {
            assert!(since.elapsed() < Duration::from_secs(30), "not submitted");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(
            broker.lock()["chains"].dependents.len(),
            5,
            "five upstreams have a task waiting for them"
        );
        assert_eq!(broker.status("chains").unwrap().chained, 5);
        let worker = broker.serve(ServeOptions::default().pool("chains").threads(2));
        assert_eq!(third.result(), Ok(6561));
        assert_eq!(
            after_err.result(),
            Err(TaskError::Failed("not a number: x".to_string()))
        );
        for task in [&after_panic, &after_panic_twice] {
            match task.result() {
                Err(TaskError::Panicked(panic)) => assert_eq!(panic.message(), "boom on purpose"),
                other => panic!("expected the upstream's panic, got {other:?}"),
            }
        }
        // After an upstream that is already done: queued at once.
        assert_eq!(pool.submit_after(&first, square).result(), Ok(81));
        let good = pool.submit_fallible(parse_number, "7".into());
        assert_eq!(pool.submit_after_ok(&good, square).result(), Ok(49));
        assert!(broker.lock()["chains"].dependents.is_empty());
        assert_eq!(broker.status("chains").unwrap().chained, 0);
        // Not a cluster task, or one the broker never saw: refused, naming why.
        let threads = crate::ThreadPool::new(1);
        let local = threads.submit(|| 2u64);
        assert!(matches!(
            pool.submit_after(&local, square).result(),
            Err(TaskError::Transfer(_))
        ));
        let other = broker.pool("other").build().unwrap();
        let elsewhere = other.submit(square, 2);
        match pool.submit_after(&elsewhere, square).result() {
            Err(TaskError::Transfer(reason)) => {
                assert!(
                    reason.to_string().contains("another ClusterPool"),
                    "{reason}"
                )
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        // No worker serves "other": let its client go without waiting for that task.
        elsewhere.abort();
        drop(other);
        let delayed = SubmitOptions::new().delay(Duration::from_secs(1));
        assert!(matches!(
            pool.submit_after_with(&delayed, &first, square).result(),
            Err(TaskError::Transfer(_))
        ));
        drop(pool);
        worker.stop().unwrap();
    }

    #[test]
    fn tasks_round_trip_through_in_process_workers() {
        let broker = MemoryBroker::new();
        let worker = broker.serve(ServeOptions::default().threads(2));
        let pool = broker.pool("default").build().unwrap();
        let squares: Vec<u64> = pool.map(square, 0..200u64).map(Result::unwrap).collect();
        assert_eq!(squares[199], 199 * 199);
        let status = broker.status("default").unwrap();
        assert_eq!(
            (status.published, status.queued, status.in_flight),
            (200, 0, 0)
        );
        drop(pool);
        worker.stop().unwrap();
    }

    #[test]
    fn retries_and_their_attempts_work_without_redis() {
        let broker = MemoryBroker::new();
        let _worker = broker.serve(ServeOptions::default().threads(1));
        let pool = broker.pool("default").build().unwrap();
        let options = SubmitOptions::new().retry(quick(3));
        let ok = pool.submit_fallible_with(&options, flaky, (1, 3));
        assert_eq!(ok.result(), Ok(3));
        assert_eq!(ok.attempts(), Some(3));
        let failing = pool.submit_fallible_with(&options, flaky, (2, 100));
        assert_eq!(
            failing.result(),
            Err(TaskError::Failed("run 4 failed".into()))
        );
        assert_eq!(failing.attempts(), Some(4));
        assert_eq!(broker.status("default").unwrap().retried, 5);
    }

    #[test]
    fn a_delayed_task_waits_on_the_schedule_without_redis() {
        let broker = MemoryBroker::new();
        let _worker = broker.serve(ServeOptions::default().threads(1));
        let pool = broker.pool("default").build().unwrap();
        let delay = Duration::from_millis(300);
        let submitted = stamp(());
        let task = pool.submit_with(&SubmitOptions::new().delay(delay), stamp, ());
        let started = task.result().unwrap();
        assert!(started >= submitted + delay.as_millis() - 2, "ran early");
    }

    #[test]
    fn priorities_and_the_rule_against_starving_the_lowest_lane_hold_without_redis() {
        let broker = MemoryBroker::new();
        let pool = broker.pool("default").build().unwrap();
        let lanes = [
            ('h', Priority::High, 12),
            ('n', Priority::Normal, 3),
            ('l', Priority::Low, 1),
        ];
        let tasks: Vec<_> = lanes
            .iter()
            .flat_map(|&(letter, priority, count)| {
                let options = SubmitOptions::new().priority(priority);
                (0..count)
                    .map(|_| pool.submit_with(&options, run_in_lane, letter))
                    .collect::<Vec<_>>()
            })
            .collect();
        // Every task is queued before the only worker starts, so the order below is the
        // broker's choice alone. Bounded: the submitter hands 16 tasks over at once.
        let waiting = Instant::now();
        while broker.status("default").unwrap().queued < 16 {
            assert!(
                waiting.elapsed() < Duration::from_secs(30),
                "16 submits never reached the broker"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let worker = broker.serve(ServeOptions::default().threads(1).prefetch(0));
        for task in &tasks {
            task.result().unwrap();
        }
        worker.stop().unwrap();
        // One task per fetch: high first, but the 10th fetch reads the lanes lowest first, so
        // the low task runs 10th although high tasks are still waiting; normal waits for high.
        let order: String = RUN_ORDER.lock().unwrap().iter().collect();
        assert_eq!(order, "hhhhhhhhhlhhhnnn");
    }

    #[test]
    fn a_rate_limit_holds_without_redis() {
        let broker = MemoryBroker::new();
        let _workers = [
            broker.serve(ServeOptions::default().threads(2)),
            broker.serve(ServeOptions::default().threads(2)),
        ];
        let pool = broker
            .pool("default")
            .rate_limit(stamp, crate::cluster::RateLimit::per_second(20).burst(5))
            .build()
            .unwrap();
        let submitted = stamp(());
        let tasks: Vec<_> = (0..25).map(|_| pool.submit(stamp, ())).collect();
        let last = tasks.iter().map(|t| t.result().unwrap()).max().unwrap();
        // 5 tokens at once, then 20 more at 20/s: the last start is at least 1 s after the
        // first token was taken, which is after the submit, whatever the machine's load.
        assert!(
            last + 5 >= submitted + 1000,
            "25 starts within {} ms",
            last - submitted
        );
        assert!(broker.status("default").unwrap().throttled > 0);
    }

    #[test]
    fn a_task_whose_worker_stops_is_released_and_runs_on_the_next() {
        let broker = MemoryBroker::new();
        let pool = broker.pool("default").build().unwrap();
        let tasks: Vec<_> = (0..20u64).map(|n| pool.submit(square, n)).collect();
        broker
            .serve(ServeOptions::default().threads(1))
            .stop()
            .unwrap();
        let _next = broker.serve(ServeOptions::default().threads(2));
        for (n, task) in tasks.iter().enumerate() {
            assert_eq!(task.result(), Ok(n as u64 * n as u64));
        }
    }
}
