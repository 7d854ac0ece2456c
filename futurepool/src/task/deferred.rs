//! Done-callbacks run away from the threads an executor needs to make progress.
//!
//! A process pool resolves tasks on its reader threads. A callback run there that waits for
//! another task of the same pool waits for that very thread; one that drops the last pool handle
//! makes the pool wait for itself. So such executors resolve with
//! [`Task::resolve_deferred`](super::Task::resolve_deferred) — the outcome is set and waiters
//! are woken at once — and hand the callbacks ([`Deferred`]) to a [`CallbackGroup`], which runs
//! them on futurepool's callback threads.
//!
//! The callback threads are an elastic set shared by the whole process: a callback queued while
//! every callback thread is busy starts a new one (up to [`MAX_THREADS`]), so one callback that
//! blocks — even on another callback — never holds the rest back; a thread idle for
//! [`IDLE_EXIT`] exits. Nothing here is joined, so no callback can make anyone wait for itself.

use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use super::listeners::Callback;
use super::{run_callback, Task};
use crate::panic;

/// At most this many callback threads at once. Callbacks beyond that many blocked at the same
/// time wait for one of them to return.
pub(crate) const MAX_THREADS: usize = 64;
/// A callback thread with nothing to do for this long exits.
const IDLE_EXIT: Duration = Duration::from_secs(10);

/// A resolved task's callbacks, in registration order, still to run.
pub(crate) struct Deferred<T, E> {
    task: Task<T, E>,
    callbacks: Vec<Callback<T, E>>,
}

impl<T, E> Deferred<T, E> {
    pub(super) fn new(task: Task<T, E>, callbacks: Vec<Callback<T, E>>) -> Self {
        Deferred { task, callbacks }
    }

    /// Runs every callback in this thread, each under `catch_unwind` (F4), then lets go of the
    /// task. That may be its last handle, so the value's `Drop` runs here too, also caught.
    pub(crate) fn run_here(self) {
        let Deferred { task, callbacks } = self;
        for callback in callbacks {
            run_callback(callback, &task);
        }
        release(task);
    }
}

/// Drops a task handle, catching a panic of the value's `Drop` if it was the last one: for
/// threads that must outlive whatever user value passes through them.
pub(crate) fn release<T, E>(task: Task<T, E>) {
    if let Err(panic) = panic::catch(move || drop(task)) {
        eprintln!("futurepool: dropping a task's value panicked and was caught: {panic}");
    }
}

pub(crate) type Job = Box<dyn FnOnce() + Send>;

thread_local! {
    /// True on a callback thread: there, waiting for callbacks could mean waiting for oneself.
    static ON_CALLBACK_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// The callbacks of one executor's tasks: runs them on the callback threads and lets the
/// executor's `shutdown(wait)` wait until all of them have run.
#[derive(Default)]
pub(crate) struct CallbackGroup {
    /// Callbacks handed over and not yet finished.
    pending: Mutex<usize>,
    finished: Condvar,
}

impl CallbackGroup {
    /// Queues `deferred` to run on a callback thread.
    pub(crate) fn spawn<T, E>(self: &Arc<Self>, deferred: Deferred<T, E>)
    where
        T: Send + Sync + 'static,
        E: Send + Sync + 'static,
    {
        self.spawn_job(Box::new(move || deferred.run_here()));
    }

    /// Queues `job` (which guards the user code it runs itself) to run on a callback thread,
    /// counted like a task's callbacks, so `wait_idle` waits for it too.
    pub(crate) fn spawn_job(self: &Arc<Self>, job: Job) {
        *self.lock() += 1;
        let group = Arc::clone(self);
        runner().submit(Box::new(move || {
            job();
            let mut pending = group.lock();
            *pending -= 1;
            if *pending == 0 {
                group.finished.notify_all();
            }
        }));
    }

    /// Blocks until every callback handed over so far has run. Waits without a bound: the
    /// callbacks are the user's (as when Python's `shutdown(wait=True)` joins the thread that
    /// runs them). Returns at once on a callback thread, which may be running one of them.
    pub(crate) fn wait_idle(&self) {
        if ON_CALLBACK_THREAD.with(Cell::get) {
            return;
        }
        let mut pending = self.lock();
        while *pending > 0 {
            pending = self
                .finished
                .wait(pending)
                .unwrap_or_else(|poison| poison.into_inner());
        }
    }

    fn lock(&self) -> MutexGuard<'_, usize> {
        // Only counter updates happen under this lock; a poisoned one still holds a valid count.
        self.pending
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

/// The process-wide set of callback threads.
struct Runner {
    state: Mutex<RunnerState>,
    work: Condvar,
}

struct RunnerState {
    jobs: VecDeque<Job>,
    threads: usize,
    /// Threads waiting for a job.
    idle: usize,
    started: u64,
}

fn runner() -> &'static Runner {
    static RUNNER: OnceLock<Runner> = OnceLock::new();
    RUNNER.get_or_init(|| Runner {
        state: Mutex::new(RunnerState {
            jobs: VecDeque::new(),
            threads: 0,
            idle: 0,
            started: 0,
        }),
        work: Condvar::new(),
    })
}

impl Runner {
    fn lock(&self) -> MutexGuard<'_, RunnerState> {
        // Jobs run outside this lock, so a poisoned lock only means a bug in the few lines
        // below; the queue itself is intact.
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    fn submit(&'static self, job: Job) {
        let mut state = self.lock();
        state.jobs.push_back(job);
        // Each idle thread takes one job; more jobs than idle threads need another thread.
        if state.jobs.len() > state.idle && state.threads < MAX_THREADS {
            state.started += 1;
            let name = format!("futurepool-callback-{}", state.started);
            match std::thread::Builder::new()
                .name(name)
                .spawn(move || self.serve())
            {
                Ok(_) => state.threads += 1,
                // Not retried here: the job stays queued for a running callback thread, or for
                // the thread the next callback starts.
                Err(error) => eprintln!(
                    "futurepool: could not start a callback thread ({error}); the callback \
                     waits for a free one"
                ),
            }
        }
        self.work.notify_one();
    }

    fn serve(&'static self) {
        ON_CALLBACK_THREAD.with(|on| on.set(true));
        let mut state = self.lock();
        loop {
            if let Some(job) = state.jobs.pop_front() {
                drop(state);
                // The job guards each callback itself; this catches anything that escapes.
                if let Err(panic) = panic::catch(job) {
                    eprintln!("futurepool: a deferred callback panicked and was caught: {panic}");
                }
                state = self.lock();
                continue;
            }
            state.idle += 1;
            let (guard, waited) = self
                .work
                .wait_timeout(state, IDLE_EXIT)
                .unwrap_or_else(|poison| poison.into_inner());
            state = guard;
            state.idle -= 1;
            if waited.timed_out() && state.jobs.is_empty() {
                state.threads -= 1;
                return;
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn a_blocked_callback_does_not_hold_back_the_next_one() {
        let group = Arc::new(CallbackGroup::default());
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let (done_tx, done_rx) = mpsc::channel();
        let first = Task::<u8>::pending();
        let done = done_tx.clone();
        first.add_done_callback(move |_| {
            release_rx.recv().unwrap();
            done.send(1).unwrap();
        });
        let second = Task::<u8>::pending();
        second.add_done_callback(move |_| {
            release_tx.send(()).unwrap();
            done_tx.send(2).unwrap();
        });
        group.spawn(first.resolve_deferred(Ok(1)).expect("it has a callback"));
        group.spawn(second.resolve_deferred(Ok(2)).expect("it has a callback"));
        let timeout = Duration::from_secs(60);
        let mut order = [
            done_rx.recv_timeout(timeout).unwrap(),
            done_rx.recv_timeout(timeout).unwrap(),
        ];
        order.sort();
        assert_eq!(order, [1, 2]);
        group.wait_idle();
    }

    #[test]
    fn callbacks_handed_over_from_many_threads_each_run_once_before_wait_idle_returns() {
        let group = Arc::new(CallbackGroup::default());
        let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let submitters: Vec<_> = (0..8)
            .map(|_| {
                let (group, runs) = (group.clone(), runs.clone());
                std::thread::spawn(move || {
                    for _ in 0..500 {
                        let task = Task::<u8>::pending();
                        let runs = runs.clone();
                        task.add_done_callback(move |_| {
                            runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        });
                        group.spawn(task.resolve_deferred(Ok(0)).expect("a callback"));
                    }
                })
            })
            .collect();
        for submitter in submitters {
            submitter.join().unwrap();
        }
        group.wait_idle();
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 4_000);
        assert!(runner().lock().threads <= MAX_THREADS);
    }

    #[test]
    fn deferred_callbacks_run_in_order_after_waiters_see_the_outcome() {
        let group = Arc::new(CallbackGroup::default());
        let task = Task::<u8>::pending();
        let order = Arc::new(Mutex::new(Vec::new()));
        for i in 0..5 {
            let order = order.clone();
            task.add_done_callback(move |t| {
                assert_eq!(t.try_result(), Some(Ok(7)));
                order.lock().unwrap().push(i);
            });
        }
        let deferred = task
            .resolve_deferred(Ok(7))
            .expect("callbacks were registered");
        assert_eq!(
            task.try_result(),
            Some(Ok(7)),
            "set before any callback ran"
        );
        assert!(
            order.lock().unwrap().is_empty(),
            "none ran in the resolving thread"
        );
        group.spawn(deferred);
        group.wait_idle();
        assert_eq!(*order.lock().unwrap(), [0, 1, 2, 3, 4]);
        assert!(task.resolve_deferred(Ok(8)).is_none(), "resolved once");
    }
}
