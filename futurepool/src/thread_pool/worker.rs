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
    use std::cell::Cell;

    crate::loom::thread_local! {
        /// The pool this thread works for (its `Shared`'s address), 0 on other threads: lets a
        /// task that shuts its own pool down be told apart from a caller outside it.
        pub(super) static WORKER_OF: Cell<usize> = Cell::new(0);
    }
}
use worker_of::WORKER_OF;

/// True if the calling thread is one of this pool's workers.
pub(super) fn is_worker_of(shared: &Arc<Shared>) -> bool {
    let me = Arc::as_ptr(shared) as usize;
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

    fn ended(&self, how: Ended) {
        self.counters.ended(how);
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        WORKER_OF.with(|pool| pool.set(0));
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
        if let Some(since) = busy_since {
            // (Not under loom: the look at the queue would be one more modelled operation per
            // job, growing the models' state space for a figure they do not check.)
            if !cfg!(loom) && worker.shared.queued_hint() == 0 {
                worker.shared.counters.busy_until(&worker.counters, since);
                busy_since = None;
            }
        }
        let Some(job) = worker.shared.next_job(&sleeper) else {
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
