//! The state a pool shares with its workers: the queues, the sleeping workers, the life cycle.
//!
//! A job submitted from outside the pool goes to a lock-free queue ([`Injector`]): once every
//! worker has started, such a submit takes no lock unless a worker sleeps. A job submitted by a
//! worker of the pool (a task or callback submitting more work) goes to the `nested` queue behind
//! the mutex, which a waiting worker searches for the task it awaits. Everything that decides
//! *who* runs a job (sleepers, helpers, thread starts, the life cycle) lives behind that mutex.
//! See `README.md` beside this file for the protocol.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::loom::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};
use crate::loom::sync::{Condvar, Mutex, MutexGuard};
use crate::loom::thread::{self, JoinHandle, Thread};

use crate::error::{Reason, TaskError};
use crate::stats::{PoolCounters, Stats};
use crate::task::Job;

use super::injector::Injector;
use super::padded::Padded;

/// How many of the most recent nested jobs a helping wait looks through for the task it awaits
/// (under the lock, so bounded).
const TARGET_SCAN: usize = 256;

/// How many jobs the lock-free queue holds before submits from outside go to `overflow` instead:
/// its slots are 16 bytes (the job and a flag word) where the overflow's are 8, and a million
/// queued jobs would cost 8 MB more there. Workers move them back in batches of this size.
const SPILL_AT: usize = 65536;

/// A lock-free submit looks at the lock-free queue's length (a look at the line the workers
/// write) once in this many submits on its thread.
const SPILL_CHECK_EVERY: u32 = 64;

/// Where the helpers' count starts in [`Shared::parked`]'s word (the sleepers' count is below).
const HELPERS_SHIFT: u32 = usize::BITS / 2;

/// A worker initializer, with its error already turned into text.
pub(super) type Initializer = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// What the builder decided.
pub(super) struct Config {
    pub(super) max_workers: usize,
    pub(super) thread_name_prefix: String,
    pub(super) initializer: Option<Initializer>,
    pub(super) max_queued: Option<usize>,
    /// Every task's soft time limit (its token reads cancelled from then on).
    pub(super) soft_time_limit: Option<Duration>,
    /// Each worker thread's stack size; the standard library's default if `None`.
    pub(super) stack_size: Option<usize>,
}

/// Whether the pool still takes work.
#[derive(Clone)]
pub(super) enum Lifecycle {
    Open,
    ShutDown,
    Broken(Reason),
}

/// A parked idle worker, and the flag that tells it the wake-up was meant for it.
pub(super) struct Sleeper {
    thread: Thread,
    woken: AtomicBool,
}

impl Sleeper {
    pub(super) fn for_current_thread() -> Arc<Sleeper> {
        Arc::new(Sleeper {
            thread: thread::current(),
            woken: AtomicBool::new(false),
        })
    }

    /// Parks until [`wake`](Sleeper::wake) is called (spurious unparks are ignored).
    pub(super) fn sleep(&self) {
        // A compare-exchange rather than `swap(false)`: the same here on real hardware, but under
        // loom 0.7.3 a `swap(false)` looping around `park` misses the `store(true)` made before
        // the `unpark` that woke it (a two-thread probe of just that loop deadlocks; with
        // `compare_exchange` it passes), so the model would report a lost wake-up std cannot have.
        while self
            .woken
            .compare_exchange(true, false, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            thread::park();
        }
    }

    fn wake(&self) {
        self.woken.store(true, Ordering::Release);
        self.thread.unpark();
    }
}

/// The part guarded by the mutex.
pub(super) struct State {
    /// Jobs submitted by this pool's own workers (tasks and callbacks submitting more work), in
    /// order: workers take the oldest, a helping wait the one it awaits or the newest.
    pub(super) nested: VecDeque<Job>,
    /// Jobs from outside the pool that came while `injected` held [`SPILL_AT`] or more, in order
    /// (all newer than those in `injected`): workers move them back in batches.
    overflow: VecDeque<Job>,
    /// Idle workers parked waiting for a job; a submit wakes the most recent (its cache is warm).
    pub(super) sleepers: Vec<Arc<Sleeper>>,
    /// Busy workers parked inside a wait on their own pool (help-while-waiting, see
    /// `help_until`): woken for a job only when no idle worker and no new thread can take it.
    helpers: Vec<Arc<Sleeper>>,
    /// Live worker threads, including ones still starting.
    pub(super) workers: usize,
    /// Workers started so far, for naming the next one.
    started: usize,
    pub(super) lifecycle: Lifecycle,
    /// Join handles of started workers nobody has joined yet; `shutdown(wait)` callers outside the
    /// pool take and join them.
    handles: Vec<JoinHandle<()>>,
    /// Callers outside the pool joining a batch of `handles` right now.
    joining: usize,
    /// Workers inside `shutdown(wait)` (a task or callback shutting its own pool down).
    waiting_workers: usize,
    /// Bumped when the waiting workers are released, so each of them returns even if another
    /// already left (and so changed the count it waited for).
    release_epoch: u64,
}

pub(super) struct Shared {
    pub(super) config: Config,
    state: Mutex<State>,
    /// Jobs submitted from outside the pool's workers.
    injected: Injector,
    /// Signalled when a bounded queue gets room, or the pool stops taking work.
    room: Condvar,
    /// Workers not running a task: asleep, looking for a job, starting, or just done with one.
    /// Written outside the lock (a worker counts itself idle before publishing its result, so the
    /// submitter that result wakes already sees it idle); read under it to decide on spawning.
    idle: Padded<AtomicUsize>,
    /// `sleepers.len() + helpers.len() << HELPERS_SHIFT`, written under the lock (one word, so
    /// one look): a submit that reads 0 here (after its push) has nobody to wake, and takes no
    /// lock; `idle - sleepers` workers are idle but awake, each sure to look at the queue before
    /// it parks.
    parked: Padded<AtomicUsize>,
    /// `nested.len()`, written under the lock, read without it by workers looking for work.
    nested_len: Padded<AtomicUsize>,
    /// `overflow.len()`, written under the lock: while it is not 0, submits from outside take
    /// the lock and queue behind the overflow, so jobs stay in order.
    overflow_len: Padded<AtomicUsize>,
    /// Whether the life cycle is `Open`, written under the lock: a lock-free submit reads it.
    open: Padded<AtomicBool>,
    /// `workers`, written under the lock: while it is below `max_workers` submits take the lock,
    /// which decides on new threads.
    workers_hint: Padded<AtomicUsize>,
    /// Submitters blocked on a full bounded queue, written under the lock, read by workers after
    /// taking a job to decide whether to signal `room`.
    waiting_submitters: Padded<AtomicUsize>,
    /// Signalled when a worker exits, a batch of handles has been joined, or the waiting workers
    /// are released: what `shutdown(wait)` callers wait on.
    exited: Condvar,
    /// Set by `shutdown` with `abort_running`: every token of this pool reads cancelled and each
    /// task that returns after it ends cancelled. A plain std atomic: tokens read it, no protocol
    /// the loom models check depends on it.
    pub(super) aborting: Arc<std::sync::atomic::AtomicBool>,
    /// What [`ThreadPool::stats`](super::ThreadPool::stats) reports; each worker writes its own.
    pub(super) counters: PoolCounters,
}

/// What a submit turned into.
enum Admission {
    Queued {
        wake: Option<Arc<Sleeper>>,
    },
    Refused(Job, Lifecycle),
    /// No worker could be started and none exists: the pool broke; these jobs (the new one among
    /// them) must fail.
    Broke(VecDeque<Job>, Reason),
}

impl Shared {
    pub(super) fn new(config: Config) -> Arc<Shared> {
        Arc::new(Shared {
            config,
            state: Mutex::new(State {
                nested: VecDeque::new(),
                overflow: VecDeque::new(),
                sleepers: Vec::new(),
                helpers: Vec::new(),
                workers: 0,
                started: 0,
                lifecycle: Lifecycle::Open,
                handles: Vec::new(),
                joining: 0,
                waiting_workers: 0,
                release_epoch: 0,
            }),
            injected: Injector::new(),
            room: Condvar::new(),
            idle: Padded(AtomicUsize::new(0)),
            parked: Padded(AtomicUsize::new(0)),
            nested_len: Padded(AtomicUsize::new(0)),
            overflow_len: Padded(AtomicUsize::new(0)),
            open: Padded(AtomicBool::new(true)),
            workers_hint: Padded(AtomicUsize::new(0)),
            waiting_submitters: Padded(AtomicUsize::new(0)),
            exited: Condvar::new(),
            aborting: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            counters: PoolCounters::default(),
        })
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        // Jobs and callbacks never run under this lock, so a poisoned lock means a panic in this
        // module's own short critical sections, which leave the state consistent: carry on.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Jobs queued in both queues (the lock-free one's count is exact at some instant during the
    /// call).
    fn queued(&self, state: &State) -> usize {
        state.nested.len() + self.injected.len() + state.overflow.len()
    }

    /// Whether any job is queued; no lock taken.
    pub(super) fn has_work(&self) -> bool {
        self.nested_len.load(Ordering::SeqCst) > 0
            || !self.injected.is_empty()
            || self.overflow_len.load(Ordering::SeqCst) > 0
    }

    /// Mirrors the parked workers for lock-free readers; called under the lock after changing
    /// `sleepers` or `helpers`.
    fn publish_parked(&self, state: &State) {
        self.parked.store(
            state.sleepers.len() | state.helpers.len() << HELPERS_SHIFT,
            Ordering::SeqCst,
        );
    }

    /// Mirrors `nested.len()`; called under the lock after changing it.
    fn publish_nested(&self, state: &State) {
        self.nested_len.store(state.nested.len(), Ordering::SeqCst);
    }

    /// Mirrors `overflow.len()`; called under the lock after changing it.
    fn publish_overflow(&self, state: &State) {
        // Release is enough: every reader that decides on it (a worker about to sleep, a
        // helping wait) reads it under the lock this is written under; the lock-free reads are
        // hints, each followed by a look under the lock before anything waits on it.
        self.overflow_len
            .store(state.overflow.len(), Ordering::Release);
    }

    /// Queues `job`, starting a worker if no idle one can take it, or ends it with the reason the
    /// pool refuses work.
    pub(super) fn submit(self: &Arc<Self>, job: Job) {
        let job = match self.submit_without_lock(job) {
            Ok(()) => return,
            Err(job) => job,
        };
        match self.admit(job) {
            Admission::Queued { wake } => {
                if let Some(sleeper) = wake {
                    sleeper.wake();
                }
            }
            Admission::Refused(job, lifecycle) => job.reject(refusal(&lifecycle)),
            Admission::Broke(jobs, reason) => self.reject_all(jobs, &reason),
        }
    }

    /// The common submit, from outside the pool, once every worker has started, to an unbounded
    /// queue: a push, and a lock only if a worker is parked. Gives the job back
    /// when the locked path must decide (a thread to start, a bounded queue, a nested submit, a
    /// closed pool).
    fn submit_without_lock(&self, job: Job) -> Result<(), Job> {
        if self.config.max_queued.is_some()
            || self.workers_hint.load(Ordering::Relaxed) < self.config.max_workers
            || self.overflow_len.load(Ordering::Relaxed) > 0
            || super::worker::is_worker_of(self)
            || (time_to_check_length() && self.injected.len() >= SPILL_AT)
        {
            return Err(job);
        }
        if !self.open.load(Ordering::Relaxed) {
            return Err(job);
        }
        self.injected.push(job);
        // Orders the push before the looks at `open` and `parked` below, against the fences of
        // a worker going to sleep or leaving (one SeqCst fence on each side of the exchange).
        fence(Ordering::SeqCst);
        if !self.open.load(Ordering::SeqCst) {
            // The pool closed meanwhile: if its last worker left before this push, nobody will
            // look at the queue again (see `rescue`).
            self.rescue();
            return Ok(());
        }
        // No wake-up is lost: the push comes before this look, and a worker going to sleep
        // counts itself in `parked` before its last look at the queue, each followed by a SeqCst
        // fence, so of the two at least one sees the other.
        if self.parked.load(Ordering::SeqCst) > 0 {
            let wake = {
                let mut state = self.lock();
                let wake = self.choose_wake(&mut state);
                self.publish_parked(&state);
                wake
            };
            if let Some(sleeper) = wake {
                sleeper.wake();
            }
        }
        Ok(())
    }

    /// A lock-free submit found the pool closed after its push. A worker leaves only under the
    /// lock, after seeing both queues empty, and counts itself out in the same step; so if a
    /// worker is still counted here, one will see the job and run it (a submit racing a
    /// shutdown may run). If none is, the job, and any other that arrived the same way, is
    /// refused.
    fn rescue(&self) {
        let (jobs, lifecycle) = {
            let mut state = self.lock();
            if state.workers > 0 {
                return;
            }
            (self.take_queued(&mut state), state.lifecycle.clone())
        };
        self.counters.failed(jobs.len());
        let refusal = refusal(&lifecycle);
        for job in jobs {
            job.reject(refusal.clone());
        }
    }

    /// Whom to wake for a job just queued: a sleeper, or, when every worker is busy and no
    /// more may start, one waiting on this pool that will run it.
    fn choose_wake(&self, state: &mut State) -> Option<Arc<Sleeper>> {
        // An awake worker has already taken the job: nobody to wake.
        if self.queued(state) == 0 {
            return None;
        }
        if let Some(sleeper) = state.sleepers.pop() {
            return Some(sleeper);
        }
        // Every thread started and none asleep: a worker waiting on this pool runs it. Not
        // weighed against `idle`: a worker that has just taken a job counts itself busy only
        // after the take (without a lock), and a waiter left parked on such a count could be
        // waiting for the very job it would run (`loom_a_leaving_helper_hands_its_wake_up_on`).
        if state.workers >= self.config.max_workers {
            return state.helpers.pop();
        }
        None
    }

    fn admit(self: &Arc<Self>, job: Job) -> Admission {
        let mut state = self.lock();
        let nested = super::worker::is_worker_of(self);
        if let Some(max_queued) = self.config.max_queued {
            // Counted as waiting before each look at the queue: a worker that takes a job after
            // this look sees the count and signals `room` under the lock, which this submitter
            // holds until it waits.
            loop {
                self.waiting_submitters.fetch_add(1, Ordering::SeqCst);
                fence(Ordering::SeqCst);
                if self.queued(&state) < max_queued || !matches!(state.lifecycle, Lifecycle::Open) {
                    self.waiting_submitters.fetch_sub(1, Ordering::SeqCst);
                    break;
                }
                state = wait(&self.room, state);
                self.waiting_submitters.fetch_sub(1, Ordering::SeqCst);
            }
        }
        if !matches!(state.lifecycle, Lifecycle::Open) {
            return Admission::Refused(job, state.lifecycle.clone());
        }
        if nested {
            state.nested.push_back(job);
            self.publish_nested(&state);
        } else if !state.overflow.is_empty() || (!cfg!(loom) && self.injected.len() >= SPILL_AT) {
            state.overflow.push_back(job);
            self.publish_overflow(&state);
        } else {
            self.injected.push(job);
        }
        // Nobody parked and no thread left to start: nothing to decide, and the counts the
        // decision would read are on lines the workers write (a submit spilling to `overflow`
        // while the workers are behind comes here every time).
        if state.sleepers.is_empty()
            && state.helpers.is_empty()
            && state.workers >= self.config.max_workers
        {
            return Admission::Queued { wake: None };
        }
        // A sleeper first. A new thread only when none was woken and the queue holds more jobs
        // than there are idle workers to take them (like Python, at most one per submit): one
        // sleeping or finishing worker per queued job is enough. (While threads may still start,
        // workers take jobs and count themselves busy under this lock, so `idle` is exact here.)
        // Otherwise, whoever `choose_wake` picks: a helper, once every thread has started.
        let queued = self.queued(&state);
        let sleeper = if queued > 0 {
            state.sleepers.pop()
        } else {
            None
        };
        let wake = match sleeper {
            Some(sleeper) => Some(sleeper),
            None if queued > self.idle.load(Ordering::Acquire)
                && state.workers < self.config.max_workers =>
            {
                if let Err(reason) = self.start_worker(&mut state) {
                    let jobs = self.break_locked(&mut state, reason.clone());
                    return Admission::Broke(jobs, reason);
                }
                None
            }
            None => self.choose_wake(&mut state),
        };
        if wake.is_some() {
            self.publish_parked(&state);
        }
        Admission::Queued { wake }
    }

    /// Starts one worker thread. Called under the lock, so a concurrent `shutdown(wait)` cannot
    /// miss its join handle or its count.
    ///
    /// If the system is out of threads, the workers already running will get to the job; with
    /// none at all nothing ever would, so that case is an error that breaks the pool.
    fn start_worker(self: &Arc<Self>, state: &mut State) -> Result<(), Reason> {
        let name = format!("{}-{}", self.config.thread_name_prefix, state.started);
        let shared = Arc::clone(self);
        let mut builder = thread::Builder::new().name(name);
        if let Some(bytes) = self.config.stack_size {
            builder = builder.stack_size(bytes);
        }
        let spawned = builder.spawn(move || super::worker::run(shared));
        match spawned {
            Ok(handle) => {
                state.started += 1;
                state.workers += 1;
                self.idle.fetch_add(1, Ordering::AcqRel);
                state.handles.push(handle);
                self.workers_hint.store(state.workers, Ordering::Relaxed);
                Ok(())
            }
            Err(error) if state.workers == 0 => Err(Reason::new(format!(
                "could not start a worker thread: {error}"
            ))),
            Err(_) => Ok(()),
        }
    }

    /// A queued job for a free worker, which from then on counts busy: the oldest nested one
    /// (work a waiting task depends on), else the oldest submitted from outside. Signals a
    /// submitter waiting for room.
    ///
    /// While threads may still start, the take and the count happen under the lock, as a submit
    /// deciding on a new thread weighs the queue against `idle` there; once every thread has
    /// started nothing weighs `idle` against the queue, and the lock-free queue is taken from
    /// without the lock.
    fn take_job(&self) -> Option<Job> {
        if self.workers_hint.load(Ordering::Relaxed) < self.config.max_workers {
            let mut state = self.lock();
            let job = self
                .oldest_nested(&mut state)
                .or_else(|| self.take_from_outside_locked(&mut state))?;
            self.idle.fetch_sub(1, Ordering::AcqRel);
            drop(state);
            self.made_room();
            return Some(job);
        }
        let job = if self.nested_len.load(Ordering::SeqCst) > 0 {
            self.oldest_nested(&mut self.lock())
        } else {
            None
        };
        let job = job.or_else(|| self.take_from_outside())?;
        self.idle.fetch_sub(1, Ordering::AcqRel);
        self.made_room();
        Some(job)
    }

    /// The oldest job a worker of this pool submitted, if any.
    fn oldest_nested(&self, state: &mut State) -> Option<Job> {
        let job = state.nested.pop_front()?;
        self.publish_nested(state);
        Some(job)
    }

    /// The oldest job from outside the pool: from the lock-free queue, or, once it is empty,
    /// from the overflow, moving the next [`SPILL_AT`] back into the lock-free queue.
    fn take_from_outside(&self) -> Option<Job> {
        if let Some(job) = self.injected.pop() {
            return Some(job);
        }
        if self.overflow_len.load(Ordering::SeqCst) == 0 {
            return None;
        }
        let mut state = self.lock();
        self.take_from_outside_locked(&mut state)
    }

    /// [`take_from_outside`](Shared::take_from_outside), under the lock.
    fn take_from_outside_locked(&self, state: &mut State) -> Option<Job> {
        // Another worker may have refilled the lock-free queue meanwhile: those jobs come first.
        if let Some(job) = self.injected.pop() {
            return Some(job);
        }
        let job = state.overflow.pop_front();
        let batch = state.overflow.len().min(SPILL_AT - 1);
        for job in state.overflow.drain(..batch) {
            self.injected.push(job);
        }
        self.publish_overflow(state);
        job
    }

    /// A job left a bounded queue: wakes a submitter waiting for room, if any.
    fn made_room(&self) {
        if self.config.max_queued.is_none() {
            return;
        }
        fence(Ordering::SeqCst);
        if self.waiting_submitters.load(Ordering::SeqCst) > 0 {
            // Under the lock, so a submitter between its look at the queue and its wait is not
            // signalled too early.
            let _state = self.lock();
            self.room.notify_one();
        }
    }

    /// Takes the next job for a worker, sleeping while there is none; `None` when the worker
    /// should exit (the pool is shut down and drained, or broken). `ran_out` is called each time
    /// a look finds no job, before the worker goes to sleep or leaves.
    pub(super) fn next_job(
        &self,
        sleeper: &Arc<Sleeper>,
        ran_out: &mut dyn FnMut(),
    ) -> Option<Job> {
        loop {
            if let Some(job) = self.take_job() {
                return Some(job);
            }
            ran_out();
            // No spinning before parking: a worker that had spun and yielded started late when
            // woken by a submitter that keeps running (README.md, "A worker looking for work").
            let mut state = self.lock();
            if !matches!(state.lifecycle, Lifecycle::Open) {
                // Closed: leave once both queues are empty, counted out under this lock so a
                // submit that raced the shutdown sees either the job taken or no worker left
                // (see `rescue`). The fence pairs with the submit's, after its push.
                fence(Ordering::SeqCst);
                if self.queued(&state) == 0 {
                    self.leave_locked(&mut state, true);
                    return None;
                }
                continue;
            }
            state.sleepers.push(Arc::clone(sleeper));
            self.publish_parked(&state);
            // Counted in `parked` before this last look, so a submit pushing now either is seen
            // here or sees this worker parked (see `submit_without_lock`).
            fence(Ordering::SeqCst);
            if self.has_work() {
                state.sleepers.retain(|s| !Arc::ptr_eq(s, sleeper));
                self.publish_parked(&state);
                continue;
            }
            drop(state);
            sleeper.sleep();
        }
    }

    /// Whether `shutdown(abort_running)` was called: every job that returns from now on ends
    /// cancelled.
    pub(super) fn abort_requested(&self) -> bool {
        self.aborting.load(std::sync::atomic::Ordering::Acquire)
    }

    /// A worker calls this when its job's closure has returned, before publishing the result.
    pub(super) fn mark_idle(&self) {
        self.idle.fetch_add(1, Ordering::AcqRel);
    }

    /// A worker counted idle (by [`mark_idle`](Shared::mark_idle)) is about to run user code
    /// after all: the finished task's callbacks. It stops counting as idle,
    /// and a submit that started no thread because it counted on this worker gets one now
    /// (still at most one new thread per submit, never above `max_workers`: that submit started none). Without this, a callback that
    /// submits to its own pool and waits would wait for itself (issue 9, case 15).
    pub(super) fn mark_busy(self: &Arc<Self>) {
        let mut state = self.lock();
        self.idle.fetch_sub(1, Ordering::AcqRel);
        let helper = self.cover_queue(&mut state);
        drop(state);
        if let Some(helper) = helper {
            helper.wake();
        }
    }

    /// If the queue holds more jobs than idle workers can take, starts a worker, or, when no more
    /// may start, returns a worker waiting on this pool to wake so it runs one. This worker is
    /// alive, so a failed start cannot break the pool; if the system is out of threads, the job
    /// waits for a worker to come back, as at submit.
    fn cover_queue(self: &Arc<Self>, state: &mut State) -> Option<Arc<Sleeper>> {
        if state.workers < self.config.max_workers {
            if self.queued(state) > self.idle.load(Ordering::Acquire) {
                let _ = self.start_worker(state);
            }
            return None;
        }
        if self.queued(state) == 0 {
            return None;
        }
        let helper = state.helpers.pop();
        self.publish_parked(state);
        helper
    }

    /// Help-while-waiting: a worker of this pool waits, inside a task or callback, until `done()`
    /// or `deadline`, and runs this pool's queued jobs meanwhile; returns whether `done()` held.
    ///
    /// The caller has already arranged to be unparked when `done()` becomes true. With the queue
    /// empty the worker parks as a *helper*, under the same lock under which a submit looks for
    /// one, so a job it alone could run wakes it (see `admit`). Woken for a job but leaving
    /// because its own wait ended, it hands the wake-up on (`cover_queue`), so no job is left for
    /// a helper that went away. It counts as busy throughout: it runs user code that may block.
    ///
    /// Which job it runs: the awaited task itself if it is still in `nested` (`target`, looked
    /// for among the [`TARGET_SCAN`] most recent), so a wait on a task just submitted runs it
    /// inline and nesting stays as deep as the caller's own recursion; otherwise the most recent
    /// nested job (most likely one the waiting task submitted); with none, the oldest job from
    /// outside the pool.
    pub(super) fn help_until(
        self: &Arc<Self>,
        done: &dyn Fn() -> bool,
        target: Option<usize>,
        deadline: Option<Instant>,
        run: &dyn Fn(Job),
    ) -> bool {
        let expired = || deadline.is_some_and(|d| Instant::now() >= d);
        // Set while this waiter was woken for a job it has not taken yet: leaving then must hand
        // the wake-up on, or the job could wait for a helper that went away.
        let mut owes_a_wake = false;
        loop {
            let finished = done();
            if finished || expired() {
                if owes_a_wake {
                    let mut state = self.lock();
                    let next = self.cover_queue(&mut state);
                    drop(state);
                    if let Some(next) = next {
                        next.wake();
                    }
                }
                return finished;
            }
            let mut state = self.lock();
            let targeted = target.and_then(|target| {
                let from_back = state
                    .nested
                    .iter()
                    .rev()
                    .take(TARGET_SCAN)
                    .position(|job| job.addr() == target)?;
                let at = state.nested.len() - 1 - from_back;
                state.nested.remove(at)
            });
            // Taking any job, or finding none left (another thread took it), settles the debt.
            owes_a_wake = false;
            let nested = targeted.or_else(|| state.nested.pop_back());
            if nested.is_some() {
                self.publish_nested(&state);
            }
            // Else the oldest job from outside: a nested wait may depend on it too (a task
            // waiting on one the caller submitted), and it is the next a free worker would take.
            let job = match nested {
                Some(job) => Some(job),
                None => {
                    drop(state);
                    let job = self.take_from_outside();
                    state = self.lock();
                    job
                }
            };
            if let Some(job) = job {
                drop(state);
                self.made_room();
                run(job);
                continue;
            }
            let me = Sleeper::for_current_thread();
            state.helpers.push(Arc::clone(&me));
            self.publish_parked(&state);
            // As a sleeper does: counted in `parked` before this last look at the queues.
            fence(Ordering::SeqCst);
            if self.has_work() {
                let registered = state.helpers.len();
                state.helpers.retain(|helper| !Arc::ptr_eq(helper, &me));
                self.publish_parked(&state);
                // Already gone: a submit took it to wake for a job, and it must hand that on if
                // its wait ends before it takes one (the loom model of the hand-on found it).
                owes_a_wake = state.helpers.len() == registered;
                continue;
            }
            drop(state);
            if !done() {
                thread::park_until(deadline);
            }
            let mut state = self.lock();
            let registered = state.helpers.len();
            state.helpers.retain(|helper| !Arc::ptr_eq(helper, &me));
            self.publish_parked(&state);
            // Gone from the list without removing itself: a submit (or `cover_queue`) took it.
            owes_a_wake = state.helpers.len() == registered;
        }
    }

    /// A worker thread is ending: normally (`died` false), or unwinding from a panic that escaped
    /// every guard. Either way the counts are corrected, and a dead worker whose queued work no
    /// idle worker can take is replaced, so no task waits forever for a thread that is gone.
    pub(super) fn worker_exited(self: &Arc<Self>, counted_idle: bool, died: bool) {
        let broke = {
            let mut state = self.lock();
            self.leave_locked(&mut state, counted_idle);
            let mut broke = None;
            if died
                && self.queued(&state) > self.idle.load(Ordering::Acquire)
                && state.workers < self.config.max_workers
            {
                if let Err(reason) = self.start_worker(&mut state) {
                    broke = Some((self.break_locked(&mut state, reason.clone()), reason));
                }
            }
            broke
        };
        if let Some((jobs, reason)) = broke {
            self.reject_all(jobs, &reason);
        }
    }

    /// A worker counts itself out of the pool (and out of `idle` if it was counted idle).
    fn leave_locked(&self, state: &mut State, counted_idle: bool) {
        state.workers -= 1;
        self.workers_hint.store(state.workers, Ordering::Relaxed);
        if counted_idle {
            self.idle.fetch_sub(1, Ordering::AcqRel);
        }
        self.exited.notify_all();
    }

    /// A worker's initializer failed: the worker exits (counted idle, as it never took a job), the
    /// pool breaks and every queued task fails with `reason`. The count drops before the tasks
    /// fail, so whoever sees them fail sees the worker gone.
    pub(super) fn break_pool(&self, reason: Reason) {
        let jobs = {
            let mut state = self.lock();
            self.leave_locked(&mut state, true);
            self.break_locked(&mut state, reason.clone())
        };
        self.reject_all(jobs, &reason);
    }

    /// Fails the jobs of a pool that broke, counting them failed.
    fn reject_all(&self, jobs: VecDeque<Job>, reason: &Reason) {
        self.counters.failed(jobs.len());
        reject_all(jobs, reason);
    }

    /// Marks the pool broken, wakes everyone, and returns the queued jobs to fail (outside the
    /// lock: failing a task runs its callbacks).
    fn break_locked(&self, state: &mut State, reason: Reason) -> VecDeque<Job> {
        if !matches!(state.lifecycle, Lifecycle::Broken(_)) {
            state.lifecycle = Lifecycle::Broken(reason);
        }
        self.open.store(false, Ordering::SeqCst);
        // Pairs with a lock-free submit's fence after its push (see `rescue`).
        fence(Ordering::SeqCst);
        self.wake_everyone(state);
        self.take_queued(state)
    }

    /// Every queued job, both queues emptied. A lock-free submit racing the pool's close may
    /// still push one after this; a live worker runs it, or `rescue` refuses it.
    fn take_queued(&self, state: &mut State) -> VecDeque<Job> {
        let mut jobs = std::mem::take(&mut state.nested);
        self.publish_nested(state);
        while let Some(job) = self.injected.pop() {
            jobs.push_back(job);
        }
        jobs.append(&mut state.overflow);
        self.publish_overflow(state);
        jobs
    }

    fn wake_everyone(&self, state: &mut State) {
        for sleeper in state.sleepers.drain(..).chain(state.helpers.drain(..)) {
            sleeper.wake();
        }
        self.publish_parked(state);
        self.room.notify_all();
    }

    /// Stops taking work; returns the queued jobs if they are to be cancelled.
    pub(super) fn close(&self, cancel_pending: bool) -> VecDeque<Job> {
        let mut state = self.lock();
        if matches!(state.lifecycle, Lifecycle::Open) {
            state.lifecycle = Lifecycle::ShutDown;
        }
        self.open.store(false, Ordering::SeqCst);
        // Pairs with a lock-free submit's fence after its push (see `rescue`).
        fence(Ordering::SeqCst);
        self.wake_everyone(&mut state);
        if cancel_pending {
            self.take_queued(&mut state)
        } else {
            VecDeque::new()
        }
    }

    /// `shutdown(wait)`'s wait, after [`close`](Shared::close): returns once every worker other
    /// than the caller has finished.
    ///
    /// - A caller outside the pool joins every worker thread. Any number of them may do so at
    ///   once: each joins the handles it takes (never under the lock), and all of them return only
    ///   once no worker is alive and no handle is still being joined.
    /// - A worker of this pool (a task or callback shutting its own pool down) cannot join itself,
    ///   and two of them cannot wait for each other. It waits until every other worker has exited
    ///   or is waiting here too, then all the waiting workers return together; their tasks go on,
    ///   and a caller outside the pool waits for those too.
    pub(super) fn wait_for_workers(&self, caller_is_worker: bool) {
        let mut state = self.lock();
        if caller_is_worker {
            state.waiting_workers += 1;
            let epoch = state.release_epoch;
            loop {
                if state.release_epoch != epoch {
                    break;
                }
                if state.workers == state.waiting_workers {
                    state.release_epoch += 1;
                    self.exited.notify_all();
                    break;
                }
                state = wait(&self.exited, state);
            }
            state.waiting_workers -= 1;
            return;
        }
        loop {
            if !state.handles.is_empty() {
                let batch = std::mem::take(&mut state.handles);
                state.joining += 1;
                drop(state);
                for handle in batch {
                    // A worker catches every panic of user code, so a join error carries nothing
                    // worth re-raising here.
                    let _ = handle.join();
                }
                state = self.lock();
                state.joining -= 1;
                self.exited.notify_all();
                continue;
            }
            if state.workers == 0 && state.joining == 0 {
                // Every worker counts itself out of `idle` as it exits: a leftover here would mean
                // the accounting that decides on new threads drifted.
                debug_assert_eq!(
                    self.idle.load(Ordering::Acquire),
                    0,
                    "idle workers miscounted"
                );
                return;
            }
            state = wait(&self.exited, state);
        }
    }

    pub(super) fn worker_count(&self) -> usize {
        self.lock().workers
    }

    /// How many jobs are queued; no lock taken.
    pub(super) fn queued_hint(&self) -> usize {
        self.nested_len.load(Ordering::Relaxed)
            + self.injected.len()
            + self.overflow_len.load(Ordering::Relaxed)
    }

    pub(super) fn stats(&self) -> Stats {
        let workers = self.worker_count() as u64;
        self.counters.snapshot(self.queued_hint() as u64, workers)
    }
}

/// True once in [`SPILL_CHECK_EVERY`] calls on this thread. Never under loom: its models queue
/// a handful of jobs, and the thread-local would be one more modelled access per submit.
fn time_to_check_length() -> bool {
    if cfg!(loom) {
        return false;
    }
    thread_local! {
        static SUBMITS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
    }
    SUBMITS.with(|submits| {
        let n = submits.get().wrapping_add(1);
        submits.set(n);
        n % SPILL_CHECK_EVERY == 0
    })
}

/// Waits on `condvar`, carrying on past poisoning like [`Shared::lock`].
fn wait<'a>(condvar: &Condvar, state: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
    condvar.wait(state).unwrap_or_else(|e| e.into_inner())
}

/// Why a refused submit's task ends.
fn refusal(lifecycle: &Lifecycle) -> TaskError<Infallible> {
    match lifecycle {
        Lifecycle::Broken(reason) => TaskError::PoolBroken(reason.clone()),
        Lifecycle::ShutDown | Lifecycle::Open => TaskError::ShutDown,
    }
}

pub(super) fn reject_all(jobs: VecDeque<Job>, reason: &Reason) {
    for job in jobs {
        job.reject(TaskError::PoolBroken(reason.clone()));
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn shared(max_workers: usize) -> Arc<Shared> {
        Shared::new(Config {
            max_workers,
            thread_name_prefix: "replacement-test".into(),
            initializer: None,
            max_queued: None,
            soft_time_limit: None,
            stack_size: None,
        })
    }

    /// The last line of defence of issue 9 case 17: a worker thread that dies anyway (a panic that
    /// escaped every guard) while a job is queued is replaced, so the job still runs.
    #[test]
    fn a_worker_that_dies_with_work_queued_is_replaced() {
        let shared = shared(1);
        let (task, job) = Job::new(|| Ok::<_, Infallible>(5));
        {
            // As if a worker was running (and counted busy) when it died: the submit started
            // no thread, because one existed.
            let mut state = shared.lock();
            state.workers = 1;
            state.nested.push_back(job);
            shared.publish_nested(&state);
        }
        shared.worker_exited(false, true);
        assert_eq!(task.result_timeout(Duration::from_secs(60)), Ok(5));
        shared.close(false);
        shared.wait_for_workers(false);
        assert_eq!(shared.worker_count(), 0);
    }

    /// Jobs beyond what the lock-free queue holds go to the overflow and come back in order:
    /// a one-worker pool runs 3 × SPILL_AT jobs queued behind a blocked one in submission order,
    /// and the overflow is empty afterwards.
    #[test]
    fn jobs_spilled_to_the_overflow_run_in_submission_order() {
        let pool = crate::ThreadPool::new(1);
        let (release, released) = std::sync::mpsc::channel::<()>();
        let blocker = pool.submit(move || released.recv().unwrap());
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let tasks: Vec<_> = (0..3 * SPILL_AT)
            .map(|n| {
                let order = Arc::clone(&order);
                pool.submit(move || order.lock().unwrap().push(n))
            })
            .collect();
        assert!(
            pool.shared.lock().overflow.len() > SPILL_AT,
            "the submits did not spill"
        );
        release.send(()).unwrap();
        blocker.wait();
        for task in &tasks {
            assert_eq!(task.result_timeout(Duration::from_secs(60)), Ok(()));
        }
        let order = order.lock().unwrap();
        assert!(order.iter().copied().eq(0..3 * SPILL_AT), "out of order");
        assert_eq!(pool.shared.lock().overflow.len(), 0);
    }

    /// A cancelling shutdown takes the overflow too: every spilled task ends cancelled.
    #[test]
    fn a_cancelling_shutdown_cancels_the_spilled_jobs() {
        let pool = crate::ThreadPool::new(1);
        let (release, released) = std::sync::mpsc::channel::<()>();
        let blocker = pool.submit(move || released.recv().unwrap());
        let tasks: Vec<_> = (0..2 * SPILL_AT).map(|_| pool.submit(|| ())).collect();
        assert!(
            !pool.shared.lock().overflow.is_empty(),
            "the submits did not spill"
        );
        pool.shutdown(crate::Shutdown::default().wait(false).cancel_pending(true));
        release.send(()).unwrap();
        blocker.wait();
        assert!(tasks.iter().all(|task| task.is_cancelled()));
    }

    /// A worker that exits normally starts nothing, even with a job queued (its pool's other
    /// workers, or the submit, account for that job).
    #[test]
    fn a_worker_that_exits_normally_is_not_replaced() {
        let shared = shared(2);
        let (task, job) = Job::new(|| Ok::<_, Infallible>(1));
        {
            let mut state = shared.lock();
            state.workers = 1;
            state.nested.push_back(job);
            shared.publish_nested(&state);
        }
        shared.worker_exited(false, false);
        assert_eq!(shared.worker_count(), 0);
        assert!(!task.is_done());
        for job in shared.close(true) {
            job.cancel();
        }
        assert!(task.is_cancelled());
    }
}
