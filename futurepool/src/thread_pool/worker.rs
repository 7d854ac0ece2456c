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

    use super::{Shared, WorkerCounters};

    crate::loom::thread_local! {
        /// The pool this thread works for (its `Shared`'s address), 0 on other threads: lets a
        /// task that shuts its own pool down be told apart from a caller outside it.
        pub(super) static WORKER_OF: Cell<usize> = Cell::new(0);
        /// The same pool, for a wait inside one of its tasks to run its queued jobs.
        pub(super) static HELPS: RefCell<Option<Arc<Shared>>> = RefCell::new(None);
        /// How many helping waits are nested on this thread's stack.
        pub(super) static HELP_DEPTH: Cell<usize> = Cell::new(0);
        /// The lowest stack address at which a helping wait may still nest (see
        /// `stack_floor`); 0 if this worker's stack bounds are unknown.
        pub(super) static STACK_FLOOR: Cell<usize> = Cell::new(0);
        /// On a lent thread (see `lend_a_thread`), how many lent threads stand behind it: 1 on
        /// the first, lent by a worker; 0 on a worker.
        pub(super) static LENT: Cell<usize> = Cell::new(0);
        /// The worker's share of the pool's stats, where the jobs its helping waits run (and
        /// those of the threads lent to it, while it waits for them) are counted too.
        pub(super) static COUNTERS: RefCell<Option<Arc<WorkerCounters>>> = RefCell::new(None);
    }
}
use worker_of::{COUNTERS, HELPS, HELP_DEPTH, LENT, STACK_FLOOR, WORKER_OF};

/// Makes the calling thread one of `shared`'s workers to the code it runs: a worker as it
/// starts, or a thread lent to one (`lend_a_thread`), which counts its jobs in the lender's
/// `counters` (the lender is blocked joining it meanwhile, so each is still written by one
/// thread at a time).
fn work_for(shared: &Arc<Shared>, counters: &Arc<WorkerCounters>) {
    WORKER_OF.with(|pool| pool.set(Arc::as_ptr(shared) as usize));
    HELPS.with(|pool| *pool.borrow_mut() = Some(Arc::clone(shared)));
    COUNTERS.with(|mine| *mine.borrow_mut() = Some(Arc::clone(counters)));
    STACK_FLOOR.with(|floor| floor.set(stack_floor().unwrap_or(0)));
    crate::token::set_pool_abort_flag(Arc::clone(&shared.aborting));
}

/// How deeply helping waits nest (a job run while waiting waits, and runs a job that waits, ...):
/// each level holds a job's frames on the worker's stack, so a wait helps only while at least
/// this much of the stack is left below it (or a quarter of the stack, if that is less), room for
/// the job it runs and that job's own frames until its next wait looks again. A link of a
/// `submit(f).result()` recursion takes about 850 bytes in a release build, so a worker with the
/// default 2 MiB stack nests some 2,000 deep. A deeper wait lends a thread ([`lend_a_thread`]).
const HELP_STACK_RESERVE: usize = 256 * 1024;

/// At most this many lent threads stand behind one another in a chain of nested waits (each
/// nests as deeply as its own stack allows); a wait past the last blocks without helping.
const MAX_LENT: usize = 16;

/// How often a lent thread parked for want of jobs looks whether the wait it serves has ended:
/// the waiter's wake-up goes to the waiter (blocked on the lent thread), not to the lent thread.
const LENT_POLL: std::time::Duration = std::time::Duration::from_millis(5);

/// Where the stack's bounds are unknown (not Linux, or under miri and loom), the nesting bound is
/// this many helping waits instead.
const MAX_HELP_DEPTH: usize = 64;

/// The lowest address this thread's stack may reach with [`HELP_STACK_RESERVE`] still free below
/// it, if its bounds can be read.
fn stack_floor() -> Option<usize> {
    let (lowest, size) = stack_bounds()?;
    lowest.checked_add(HELP_STACK_RESERVE.min(size / 4))
}

/// The calling thread's stack: its lowest address and its size.
#[cfg(all(target_os = "linux", not(miri), not(loom)))]
fn stack_bounds() -> Option<(usize, usize)> {
    let mut attr = std::mem::MaybeUninit::<libc::pthread_attr_t>::uninit();
    // SAFETY: `pthread_getattr_np` initialises `attr` for the calling thread when it returns 0;
    // only then is it read, and it is destroyed once, below.
    unsafe {
        if libc::pthread_getattr_np(libc::pthread_self(), attr.as_mut_ptr()) != 0 {
            return None;
        }
        let mut lowest: *mut libc::c_void = std::ptr::null_mut();
        let mut size: libc::size_t = 0;
        let read = libc::pthread_attr_getstack(attr.as_ptr(), &mut lowest, &mut size);
        libc::pthread_attr_destroy(attr.as_mut_ptr());
        (read == 0 && !lowest.is_null()).then_some((lowest as usize, size))
    }
}

#[cfg(not(all(target_os = "linux", not(miri), not(loom))))]
fn stack_bounds() -> Option<(usize, usize)> {
    None
}

/// Whether a wait `depth` helping waits deep, its frame at `here`, may help too: the first
/// always does (a waiting task must never wait for its own thread); deeper ones while the stack
/// has room below `floor`, or, with no floor known, while fewer than [`MAX_HELP_DEPTH`] nest.
fn may_nest(depth: usize, here: usize, floor: usize) -> bool {
    depth == 0
        || if floor == 0 {
            depth < MAX_HELP_DEPTH
        } else {
            here > floor
        }
}

/// Says once per process that a wait could neither nest further nor lend a thread, and how to
/// give it room: if every worker of its pool blocks so, the pool stops, and this line is the clue.
fn warn_no_room_to_help(depth: usize, why: &str) {
    static SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !SAID.swap(true, std::sync::atomic::Ordering::Relaxed) {
        eprintln!(
            "futurepool: a wait inside a thread pool's task, nested {depth} waits deep, found its \
             thread's stack nearly full and {why}, so it blocks without running the pool's \
             queued jobs; if every worker of the pool does, the pool stops. Give the workers \
             bigger stacks (ThreadPoolBuilder::stack_size) or nest fewer waits."
        );
    }
}

/// A wait nested too deep for its thread's stack: a thread of the pool's stack size stands in
/// for it and runs the pool's queued jobs until the wait ends (or its deadline passes), while
/// the waiting thread blocks on it; returns what `help_until` would. The lent thread is the
/// waiter's stand-in: a job it runs sees this pool's worker (nested submits go to `nested`, its
/// own waits help and, at its own stack's end, lend again, up to [`MAX_LENT`] deep), and it is
/// counted nowhere, as the waiter it stands in for stays counted busy. `None` if no thread may
/// or can start: the caller blocks as usual.
#[cfg(not(loom))]
fn lend_a_thread(
    shared: &Arc<Shared>,
    counters: &Arc<WorkerCounters>,
    done: &(dyn Fn() -> bool + Sync),
    target: Option<usize>,
    deadline: Option<Instant>,
    depth: usize,
) -> Option<bool> {
    let lent = LENT.with(Cell::get);
    if lent >= MAX_LENT {
        warn_no_room_to_help(depth, "as many threads as may be lent already are");
        return None;
    }
    let name = format!("{}-lent{}", shared.config.thread_name_prefix, lent + 1);
    let mut builder = std::thread::Builder::new().name(name);
    if let Some(bytes) = shared.config.stack_size {
        builder = builder.stack_size(bytes);
    }
    let stand_in = || {
        work_for(shared, counters);
        LENT.with(|chain| chain.set(lent + 1));
        let run = |job| run_nested(job, shared, counters);
        loop {
            let poll = Instant::now() + LENT_POLL;
            let until = deadline.map_or(poll, |d| d.min(poll));
            let finished = shared.help_until(done, target, Some(until), &run);
            if finished || deadline.is_some_and(|d| Instant::now() >= d) {
                return finished;
            }
        }
    };
    std::thread::scope(|scope| match builder.spawn_scoped(scope, stand_in) {
        // A lent thread's jobs run under `run_nested`'s catch: a panic here is a bug of ours;
        // the waiter then blocks as usual (it is still registered for its wake-up).
        Ok(handle) => handle.join().ok(),
        Err(_) => {
            warn_no_room_to_help(depth, "no thread could be started to stand in for it");
            None
        }
    })
}

#[cfg(loom)]
fn lend_a_thread(
    _: &Arc<Shared>,
    _: &Arc<WorkerCounters>,
    _: &(dyn Fn() -> bool + Sync),
    _: Option<usize>,
    _: Option<Instant>,
    _: usize,
) -> Option<bool> {
    None
}

/// Help-while-waiting, the entry point for every blocking wait in the crate (`Task::wait_until`,
/// `wait`/`as_completed`/`map_unordered`'s mailbox, a scope's end). On a worker of a thread pool,
/// runs that pool's queued jobs until `done()` or `deadline`, and returns `Some(done())` (nested
/// too deep for the worker's stack, see [`HELP_STACK_RESERVE`], on a lent thread); on any other
/// thread returns `None` and the caller blocks as usual.
///
/// The caller must already be registered to be unparked when `done()` becomes true.
///
/// `target` is the awaited task's address ([`Task::id`](crate::Task)) when the wait is for one
/// task: it is run first if still queued.
pub(crate) fn help_while_waiting(
    done: &(dyn Fn() -> bool + Sync),
    target: Option<usize>,
    deadline: Option<Instant>,
) -> Option<bool> {
    let shared = HELPS.with(|pool| pool.borrow().clone())?;
    let counters = COUNTERS.with(|mine| mine.borrow().clone())?;
    let depth = HELP_DEPTH.with(Cell::get);
    let here = 0u8;
    let here = std::hint::black_box(&here) as *const u8 as usize;
    if !may_nest(depth, here, STACK_FLOOR.with(Cell::get)) {
        return lend_a_thread(&shared, &counters, done, target, deadline, depth);
    }
    struct Nesting(usize);
    impl Drop for Nesting {
        fn drop(&mut self) {
            HELP_DEPTH.with(|d| d.set(self.0));
        }
    }
    HELP_DEPTH.with(|d| d.set(depth + 1));
    let _nesting = Nesting(depth);
    Some(shared.help_until(done, target, deadline, &|job| {
        run_nested(job, &shared, &counters)
    }))
}

/// A job run by a worker that is waiting inside another task (or by a thread lent to it): the
/// worker is counted busy for the whole wait, so `idle` and `busy` change nothing; the job counts
/// in the worker's stats and sees an aborting shutdown, as one the worker took from its loop.
struct Nested<'a> {
    shared: &'a Shared,
    counters: &'a WorkerCounters,
}

impl WorkerHooks for Nested<'_> {
    fn idle(&self) {}
    fn busy(&self) {}

    fn aborting(&self) -> bool {
        self.shared.abort_requested()
    }

    fn ended(&self, how: Ended) {
        self.counters.ended(how);
    }
}

fn run_nested(job: crate::task::Job, shared: &Shared, counters: &WorkerCounters) {
    counters.took();
    // As in `run`: `run_on` guards the user code; this net catches whatever else unwinds, so a
    // helped job cannot unwind into the task that was waiting.
    let hooks = Nested { shared, counters };
    if let Err(payload) = std_panic::catch_unwind(AssertUnwindSafe(|| job.run_on(&hooks))) {
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
        self.shared.abort_requested()
    }

    fn ended(&self, how: Ended) {
        self.counters.ended(how);
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        WORKER_OF.with(|pool| pool.set(0));
        HELPS.with(|pool| pool.borrow_mut().take());
        COUNTERS.with(|mine| mine.borrow_mut().take());
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
    work_for(&worker.shared, &worker.counters);
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

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn the_first_wait_always_helps_and_deeper_ones_while_the_stack_has_room() {
        // Bounds known: the frame's address against the floor, whatever the depth.
        assert!(
            may_nest(0, 100, 1_000),
            "the first wait helps even below the floor"
        );
        assert!(may_nest(5_000, 2_000, 1_000));
        assert!(!may_nest(1, 1_000, 1_000));
        // Bounds unknown: a count.
        assert!(may_nest(MAX_HELP_DEPTH - 1, 0, 0));
        assert!(!may_nest(MAX_HELP_DEPTH, usize::MAX, 0));
    }

    #[cfg(all(target_os = "linux", not(miri)))]
    #[test]
    fn a_threads_stack_bounds_contain_its_frames_and_the_floor_leaves_room_below() {
        let (lowest, size) = stack_bounds().expect("Linux reports a thread's stack");
        let here = 0u8;
        let here = &here as *const u8 as usize;
        assert!(
            lowest < here && here < lowest + size,
            "{lowest:#x} + {size} vs {here:#x}"
        );
        let floor = stack_floor().unwrap();
        assert_eq!(floor - lowest, HELP_STACK_RESERVE.min(size / 4));
        assert!(floor < here, "a test thread has its reserve free");
    }
}
