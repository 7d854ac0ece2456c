//! The state a pool shares with its workers: the queue, the sleeping workers, the life cycle.
//!
//! Everything that decides *who* runs a job lives behind one mutex, held only to push or pop a
//! queue slot (16 bytes: the job's pointer). See `README.md` beside this file for the protocol.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle, Thread};

use crate::error::{Reason, TaskError};
use crate::task::Job;

/// A worker initializer, with its error already turned into text.
pub(super) type Initializer = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// What the builder decided.
pub(super) struct Config {
    pub(super) max_workers: usize,
    pub(super) thread_name_prefix: String,
    pub(super) initializer: Option<Initializer>,
    pub(super) max_queued: Option<usize>,
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
        while !self.woken.swap(false, Ordering::Acquire) {
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
    /// Live worker threads, including ones still starting.
    pub(super) workers: usize,
    /// Workers started so far, for naming the next one.
    started: usize,
    /// Submitters blocked on a full bounded queue.
    waiting_submitters: usize,
    /// Workers spinning briefly for a job before they park (at most one at a time).
    spinning: usize,
    pub(super) lifecycle: Lifecycle,
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
    /// Join handles of every worker started, joined by `shutdown(wait)`.
    threads: Mutex<Vec<JoinHandle<()>>>,
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
                workers: 0,
                started: 0,
                waiting_submitters: 0,
                spinning: 0,
                lifecycle: Lifecycle::Open,
            }),
            room: Condvar::new(),
            idle: AtomicUsize::new(0),
            queued: AtomicUsize::new(0),
            threads: Mutex::new(Vec::new()),
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
            Admission::Broke(jobs, reason) => reject_all(jobs, &reason),
        }
    }

    fn admit(self: &Arc<Self>, job: Job) -> Admission {
        let mut state = self.lock();
        if let Some(max_queued) = self.config.max_queued {
            while state.jobs.len() >= max_queued && matches!(state.lifecycle, Lifecycle::Open) {
                state.waiting_submitters += 1;
                state = self.room.wait(state).unwrap_or_else(|e| e.into_inner());
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
        let wake = if state.jobs.len() > state.spinning {
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
        }
        Admission::Queued { wake }
    }

    /// Starts one worker thread. Called under the lock, so a concurrent shutdown cannot miss its
    /// join handle; this happens at most `max_workers` times in a pool's life.
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
                self.threads
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(handle);
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
        const SPIN_ROUNDS: u32 = 7;
        const YIELD_ROUNDS: u32 = 10;
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

    /// A worker is exiting.
    pub(super) fn worker_exited(&self) {
        let mut state = self.lock();
        state.workers -= 1;
        self.idle.fetch_sub(1, Ordering::AcqRel);
    }

    /// A worker's initializer failed: break the pool and fail every queued task with `reason`.
    pub(super) fn break_pool(&self, reason: Reason) {
        let jobs = {
            let mut state = self.lock();
            state.workers -= 1;
            self.idle.fetch_sub(1, Ordering::AcqRel);
            self.break_locked(&mut state, reason.clone())
        };
        reject_all(jobs, &reason);
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
        for sleeper in state.sleepers.drain(..) {
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

    /// Joins every worker (except the calling thread, if it is one: a task may shut its own pool
    /// down). Holding the handle list while joining makes a concurrent second `shutdown(wait)`
    /// wait for the first.
    pub(super) fn join_workers(&self) {
        let mut threads = self.threads.lock().unwrap_or_else(|e| e.into_inner());
        let me = thread::current().id();
        for handle in threads.drain(..) {
            if handle.thread().id() != me {
                // Workers catch every panic of tasks and callbacks, so a join error cannot carry
                // anything worth re-raising here.
                let _ = handle.join();
            }
        }
    }

    pub(super) fn worker_count(&self) -> usize {
        self.lock().workers
    }
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
