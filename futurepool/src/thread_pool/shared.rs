//! The state a pool shares with its workers: the queue, the sleeping workers, the life cycle.
//!
//! Everything that decides *who* runs a job lives behind one mutex, held only to push or pop a
//! queue slot (8 bytes: the job's pointer). See `README.md` beside this file for the protocol.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use crate::loom::sync::{Condvar, Mutex, MutexGuard};
use crate::loom::thread::{self, JoinHandle, Thread};

use crate::error::{Reason, TaskError};
use crate::stats::{PoolCounters, Stats};
use crate::task::Job;

/// How many of the most recent queued jobs a helping wait looks through for the task it awaits
/// (under the lock, so bounded).
const TARGET_SCAN: usize = 256;

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
    pub(super) jobs: VecDeque<Job>,
    /// Idle workers parked waiting for a job; a submit wakes the most recent (its cache is warm).
    pub(super) sleepers: Vec<Arc<Sleeper>>,
    /// Busy workers parked inside a wait on their own pool (help-while-waiting, see
    /// `help_until`): woken for a job only when no idle worker and no new thread can take it.
    helpers: Vec<Arc<Sleeper>>,
    /// Live worker threads, including ones still starting.
    pub(super) workers: usize,
    /// Workers started so far, for naming the next one.
    started: usize,
    /// Submitters blocked on a full bounded queue.
    waiting_submitters: usize,
    /// Workers spinning briefly for a job before they park (at most one at a time).
    spinning: usize,
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
    /// Signalled when a bounded queue gets room, or the pool stops taking work.
    room: Condvar,
    /// Workers not running a task: asleep, looking for a job, starting, or just done with one.
    /// Written outside the lock (a worker counts itself idle before publishing its result, so the
    /// submitter that result wakes already sees it idle); read under it to decide on spawning.
    idle: AtomicUsize,
    /// A copy of the queue length, written under the lock, that a spinning worker polls without it.
    queued: AtomicUsize,
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
                jobs: VecDeque::new(),
                sleepers: Vec::new(),
                helpers: Vec::new(),
                workers: 0,
                started: 0,
                waiting_submitters: 0,
                spinning: 0,
                lifecycle: Lifecycle::Open,
                handles: Vec::new(),
                joining: 0,
                waiting_workers: 0,
                release_epoch: 0,
            }),
            room: Condvar::new(),
            idle: AtomicUsize::new(0),
            queued: AtomicUsize::new(0),
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

    /// Queues `job`, starting a worker if no idle one can take it, or ends it with the reason the
    /// pool refuses work.
    pub(super) fn submit(self: &Arc<Self>, job: Job) {
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

    fn admit(self: &Arc<Self>, job: Job) -> Admission {
        let mut state = self.lock();
        if let Some(max_queued) = self.config.max_queued {
            while state.jobs.len() >= max_queued && matches!(state.lifecycle, Lifecycle::Open) {
                state.waiting_submitters += 1;
                state = wait(&self.room, state);
                state.waiting_submitters -= 1;
            }
        }
        if !matches!(state.lifecycle, Lifecycle::Open) {
            return Admission::Refused(job, state.lifecycle.clone());
        }
        state.jobs.push_back(job);
        self.queued.store(state.jobs.len(), Ordering::Relaxed);
        // A spinning worker takes one job without being woken; wake a sleeper (a system call)
        // only for jobs beyond that.
        let mut wake = if state.jobs.len() > state.spinning {
            state.sleepers.pop()
        } else {
            None
        };
        // A new thread only when the queue holds more jobs than there are idle workers to take
        // them (like Python, at most one per submit): one sleeping or finishing worker per queued job is enough.
        if wake.is_none()
            && state.jobs.len() > self.idle.load(Ordering::Acquire)
            && state.workers < self.config.max_workers
        {
            if let Err(reason) = self.start_worker(&mut state) {
                let jobs = self.break_locked(&mut state, reason.clone());
                return Admission::Broke(jobs, reason);
            }
        } else if wake.is_none() && state.jobs.len() > self.idle.load(Ordering::Acquire) {
            // Every worker is busy and no more may start: one waiting on this pool runs it.
            wake = state.helpers.pop();
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
        let spawned = thread::Builder::new()
            .name(name)
            .spawn(move || super::worker::run(shared));
        match spawned {
            Ok(handle) => {
                state.started += 1;
                state.workers += 1;
                self.idle.fetch_add(1, Ordering::AcqRel);
                state.handles.push(handle);
                Ok(())
            }
            Err(error) if state.workers == 0 => Err(Reason::new(format!(
                "could not start a worker thread: {error}"
            ))),
            Err(_) => Ok(()),
        }
    }

    /// Takes the next job for a worker, sleeping while there is none; `None` when the worker
    /// should exit (the pool is shut down and drained, or broken).
    pub(super) fn next_job(&self, sleeper: &Arc<Sleeper>) -> Option<Job> {
        let mut state = self.lock();
        let mut spun = false;
        loop {
            if let Some(job) = state.jobs.pop_front() {
                self.queued.store(state.jobs.len(), Ordering::Relaxed);
                self.idle.fetch_sub(1, Ordering::AcqRel);
                let room = state.waiting_submitters > 0;
                drop(state);
                if room {
                    self.room.notify_one();
                }
                return Some(job);
            }
            if !matches!(state.lifecycle, Lifecycle::Open) {
                return None;
            }
            // Before parking, one worker at a time spins a moment: a busy submitter usually
            // queues the next job within a microsecond, and catching it here saves the submitter
            // a wake-up system call and this worker a sleep.
            if !spun && state.spinning == 0 {
                state.spinning += 1;
                drop(state);
                self.spin_for_work();
                state = self.lock();
                state.spinning -= 1;
                spun = true;
                continue;
            }
            state.sleepers.push(Arc::clone(sleeper));
            drop(state);
            sleeper.sleep();
            spun = false;
            state = self.lock();
        }
    }

    /// Returns once a job may be queued, or after a few microseconds of backing off (busy-waiting,
    /// then yielding the core so a submitter sharing it can run).
    fn spin_for_work(&self) {
        // Under loom a single look models the spinner (the protocol never relies on what the
        // spinner saw: it re-takes the lock) and keeps the state space small. It must not
        // yield there: loom drops an unpark sent to a thread that yielded and was scheduled
        // again, which the real `unpark` keeps as a token, so a model would report a lost
        // wake-up that std cannot have.
        const SPIN_ROUNDS: u32 = 7;
        const YIELD_ROUNDS: u32 = 10;
        if cfg!(loom) {
            let _ = self.queued.load(Ordering::Relaxed);
            return;
        }
        for round in 0..SPIN_ROUNDS + YIELD_ROUNDS {
            if self.queued.load(Ordering::Relaxed) > 0 {
                return;
            }
            if round < SPIN_ROUNDS {
                for _ in 0..1 << round {
                    std::hint::spin_loop();
                }
            } else {
                thread::yield_now();
            }
        }
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
        if state.jobs.len() <= self.idle.load(Ordering::Acquire) {
            return None;
        }
        if state.workers < self.config.max_workers {
            let _ = self.start_worker(state);
            return None;
        }
        state.helpers.pop()
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
    /// Which job it runs: the awaited task itself if it is still queued (`target`, looked for
    /// among the [`TARGET_SCAN`] most recent jobs), so a wait on a task just submitted runs it
    /// inline and nesting stays as deep as the caller's own recursion; otherwise the most recent
    /// job (most likely one the waiting task submitted), never an older one a free worker would
    /// take first.
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
                    .jobs
                    .iter()
                    .rev()
                    .take(TARGET_SCAN)
                    .position(|job| job.addr() == target)?;
                let at = state.jobs.len() - 1 - from_back;
                state.jobs.remove(at)
            });
            // Taking any job, or finding none left (another thread took it), settles the debt.
            owes_a_wake = false;
            if let Some(job) = targeted.or_else(|| state.jobs.pop_back()) {
                self.queued.store(state.jobs.len(), Ordering::Relaxed);
                let room = state.waiting_submitters > 0;
                drop(state);
                if room {
                    self.room.notify_one();
                }
                run(job);
                continue;
            }
            let me = Sleeper::for_current_thread();
            state.helpers.push(Arc::clone(&me));
            drop(state);
            if !done() {
                thread::park_until(deadline);
            }
            let mut state = self.lock();
            let registered = state.helpers.len();
            state.helpers.retain(|helper| !Arc::ptr_eq(helper, &me));
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
            state.workers -= 1;
            if counted_idle {
                self.idle.fetch_sub(1, Ordering::AcqRel);
            }
            let mut broke = None;
            if died
                && state.jobs.len() > self.idle.load(Ordering::Acquire)
                && state.workers < self.config.max_workers
            {
                if let Err(reason) = self.start_worker(&mut state) {
                    broke = Some((self.break_locked(&mut state, reason.clone()), reason));
                }
            }
            self.exited.notify_all();
            broke
        };
        if let Some((jobs, reason)) = broke {
            self.reject_all(jobs, &reason);
        }
    }

    /// A worker's initializer failed: the worker exits (counted idle, as it never took a job), the
    /// pool breaks and every queued task fails with `reason`. The count drops before the tasks
    /// fail, so whoever sees them fail sees the worker gone.
    pub(super) fn break_pool(&self, reason: Reason) {
        let jobs = {
            let mut state = self.lock();
            state.workers -= 1;
            self.idle.fetch_sub(1, Ordering::AcqRel);
            self.exited.notify_all();
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
        self.wake_everyone(state);
        self.queued.store(0, Ordering::Relaxed);
        std::mem::take(&mut state.jobs)
    }

    fn wake_everyone(&self, state: &mut State) {
        for sleeper in state.sleepers.drain(..).chain(state.helpers.drain(..)) {
            sleeper.wake();
        }
        self.room.notify_all();
    }

    /// Stops taking work; returns the queued jobs if they are to be cancelled.
    pub(super) fn close(&self, cancel_pending: bool) -> VecDeque<Job> {
        let mut state = self.lock();
        if matches!(state.lifecycle, Lifecycle::Open) {
            state.lifecycle = Lifecycle::ShutDown;
        }
        self.wake_everyone(&mut state);
        if cancel_pending {
            self.queued.store(0, Ordering::Relaxed);
            std::mem::take(&mut state.jobs)
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

    /// The queue's length as last written under the lock; no lock taken.
    pub(super) fn queued_hint(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    pub(super) fn stats(&self) -> Stats {
        let workers = self.worker_count() as u64;
        self.counters.snapshot(self.queued_hint() as u64, workers)
    }
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
            state.jobs.push_back(job);
        }
        shared.worker_exited(false, true);
        assert_eq!(task.result_timeout(Duration::from_secs(60)), Ok(5));
        shared.close(false);
        shared.wait_for_workers(false);
        assert_eq!(shared.worker_count(), 0);
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
            state.jobs.push_back(job);
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
