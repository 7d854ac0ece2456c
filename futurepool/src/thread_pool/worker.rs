//! A worker thread's life: run the initializer, then jobs until the pool closes.

use std::cell::Cell;
use std::panic::{self as std_panic, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Instant;

use crate::error::{Panic, Reason};
use crate::panic;
use crate::stats::{Ended, WorkerCounters};
use crate::task::WorkerHooks;

use super::shared::{Shared, Sleeper};

// loom's `thread_local!` does not take a `const { }` initialiser.
#[allow(clippy::missing_const_for_thread_local)]
mod worker_of {
    use std::cell::{Cell, RefCell};
    use std::sync::Arc;

    use super::Shared;

    crate::loom::thread_local! {
        /// The pool this thread works for (its `Shared`'s address), 0 on other threads: lets a
        /// task that shuts its own pool down be told apart from a caller outside it.
        pub(super) static WORKER_OF: Cell<usize> = Cell::new(0);
        /// The same pool, for a wait inside one of its tasks to run its queued jobs.
        pub(super) static HELPS: RefCell<Option<Arc<Shared>>> = RefCell::new(None);
        /// How many helping waits are nested on this thread's stack.
        pub(super) static HELP_DEPTH: Cell<usize> = Cell::new(0);
    }
}
use worker_of::{HELPS, HELP_DEPTH, WORKER_OF};

/// At most this many helping waits nest on one worker (a job run while waiting waits, and runs a
/// job that waits, ...): each level holds a job's frames on the worker's stack. A wait deeper
/// than this blocks without helping.
pub(crate) const MAX_HELP_DEPTH: usize = 64;

/// Help-while-waiting, the entry point for every blocking wait in the crate (`Task::wait_until`,
/// `wait`/`as_completed`/`map_unordered`'s mailbox, a scope's end). On a worker of a thread pool,
/// runs that pool's queued jobs until `done()` or `deadline`, and returns `Some(done())`; on any
/// other thread, or nested [`MAX_HELP_DEPTH`] deep, returns `None` and the caller blocks as usual.
///
/// The caller must already be registered to be unparked when `done()` becomes true.
///
/// `target` is the awaited task's address ([`Task::id`](crate::Task)) when the wait is for one
/// task: it is run first if still queued.
pub(crate) fn help_while_waiting(
    done: &dyn Fn() -> bool,
    target: Option<usize>,
    deadline: Option<Instant>,
) -> Option<bool> {
    let shared = HELPS.with(|pool| pool.borrow().clone())?;
    let depth = HELP_DEPTH.with(Cell::get);
    if depth >= MAX_HELP_DEPTH {
        return None;
    }
    struct Nesting(usize);
    impl Drop for Nesting {
        fn drop(&mut self) {
            HELP_DEPTH.with(|d| d.set(self.0));
        }
    }
    HELP_DEPTH.with(|d| d.set(depth + 1));
    let _nesting = Nesting(depth);
    Some(shared.help_until(done, target, deadline, &run_nested))
}

/// A job run by a worker that is waiting inside another task: the worker is counted busy for
/// the whole wait, so the job's hooks change nothing.
struct Nested;

impl WorkerHooks for Nested {
    fn idle(&self) {}
    fn busy(&self) {}
}

fn run_nested(job: crate::task::Job) {
    // As in `run`: `run_on` guards the user code; this net catches whatever else unwinds, so a
    // helped job cannot unwind into the task that was waiting.
    if let Err(payload) = std_panic::catch_unwind(AssertUnwindSafe(|| job.run_on(&Nested))) {
        report_escaped(payload);
    }
}

/// True if the calling thread is one of this pool's workers.
pub(super) fn is_worker_of(shared: &Shared) -> bool {
    let me = shared as *const Shared as usize;
    WORKER_OF.with(|pool| pool.get() == me)
}

/// A worker's view of itself: whether the pool counts it idle. Dropping it is the thread's exit,
/// also when a panic escaped every guard, so the pool's counts are right whatever ended it.
struct Worker {
    shared: Arc<Shared>,
    counted_idle: Cell<bool>,
    /// Set once the pool has counted this worker gone (a failed initializer does it itself).
    exited: Cell<bool>,
    /// This worker's share of the pool's stats; only this thread writes it.
    counters: Arc<WorkerCounters>,
}

impl WorkerHooks for Worker {
    fn idle(&self) {
        if !self.counted_idle.replace(true) {
            self.shared.mark_idle();
        }
    }

    fn busy(&self) {
        if self.counted_idle.replace(false) {
            self.shared.mark_busy();
        }
    }

    fn aborting(&self) -> bool {
        self.shared
            .aborting
            .load(std::sync::atomic::Ordering::Acquire)
    }

    fn ended(&self, how: Ended) {
        self.counters.ended(how);
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        WORKER_OF.with(|pool| pool.set(0));
        HELPS.with(|pool| pool.borrow_mut().take());
        if !self.exited.get() {
            self.shared
                .worker_exited(self.counted_idle.get(), std::thread::panicking());
        }
    }
}

/// The body of every worker thread.
pub(super) fn run(shared: Arc<Shared>) {
    // A worker is counted idle from the moment it is started (see `Shared::start_worker`).
    let counters = shared.counters.new_worker();
    let worker = Worker {
        shared,
        counted_idle: Cell::new(true),
        exited: Cell::new(false),
        counters,
    };
    WORKER_OF.with(|pool| pool.set(Arc::as_ptr(&worker.shared) as usize));
    HELPS.with(|pool| *pool.borrow_mut() = Some(Arc::clone(&worker.shared)));
    crate::token::set_pool_abort_flag(Arc::clone(&worker.shared.aborting));
    crate::trace::trace_event!(
        tracing::Level::DEBUG,
        pool = %worker.shared.config.thread_name_prefix,
        worker = std::thread::current().name().unwrap_or(""),
        "worker started"
    );
    if let Some(init) = worker.shared.config.initializer.clone() {
        let failure = match panic::catch(|| init()) {
            Ok(Ok(())) => None,
            Ok(Err(message)) => Some(format!("the worker initializer failed: {message}")),
            Err(panic) => Some(format!("the worker initializer panicked: {panic}")),
        };
        if let Some(failure) = failure {
            worker.exited.set(true);
            worker.shared.break_pool(Reason::new(failure));
            return;
        }
    }
    let sleeper = Sleeper::for_current_thread();
    // Busy time is measured per busy period, not per task: the clock is read only when the worker
    // runs out of queued work and when work comes back, so a worker draining a full queue reads
    // no clock at all, and one that reads it had nothing else to do.
    let mut busy_since: Option<Instant> = None;
    loop {
        let mut ran_out = || {
            if let Some(since) = busy_since.take() {
                worker.shared.counters.busy_until(&worker.counters, since);
            }
        };
        let Some(job) = worker.shared.next_job(&sleeper, &mut ran_out) else {
            // `next_job` counted this worker out of the pool as it decided to leave.
            worker.exited.set(true);
            break;
        };
        if busy_since.is_none() {
            let now = Instant::now();
            worker.shared.counters.busy_from(&worker.counters, now);
            busy_since = Some(now);
        }
        worker.counters.took();
        // `next_job` counted this worker busy when it took the job.
        worker.counted_idle.set(false);
        // `run_on` guards every piece of user code itself (closure, drops, wakers, callbacks);
        // this catch is the net under whatever else might unwind, so no task can end the worker.
        // A plain `catch_unwind`: free unless something panics.
        #[allow(clippy::let_unit_value)] // `()` without the `tracing` feature
        let _span = crate::trace::task_span!(
            pool = %worker.shared.config.thread_name_prefix,
            task = job.id()
        );
        if let Err(payload) = std_panic::catch_unwind(AssertUnwindSafe(|| job.run_on(&worker))) {
            report_escaped(payload);
        }
        // A no-op unless a panic cut the job short before it counted the worker idle.
        worker.idle();
    }
    if let Some(since) = busy_since {
        worker.shared.counters.busy_until(&worker.counters, since);
    }
    crate::trace::trace_event!(
        tracing::Level::DEBUG,
        pool = %worker.shared.config.thread_name_prefix,
        worker = std::thread::current().name().unwrap_or(""),
        "worker exited"
    );
}

fn report_escaped(payload: Box<dyn std::any::Any + Send>) {
    let panic = Panic::from_payload(payload.as_ref(), None);
    // Dropping a payload can itself panic; never let that escape a worker.
    let _ = std_panic::catch_unwind(AssertUnwindSafe(move || drop(payload)));
    let name = std::thread::current().name().map(str::to_owned);
    eprintln!(
        "futurepool: worker {}: a panic escaped a task's clean-up and was caught; the worker lives \
         on: {panic}",
        name.as_deref().unwrap_or("(unnamed)")
    );
}
