//! Progress reported from inside a task: [`report_progress`] in the task, [`Task::progress`] and
//! [`Task::on_progress`] on the handle.
//!
//! While a thread pool runs a task's closure, the worker points a thread-local at the task's core
//! (a raw pointer, set and cleared around the closure: no reference count touched per task). A
//! report finds the task there, is rate-limited on the reporting thread (the first report, then
//! at most one per [`MIN_INTERVAL`], and always one with `done >= total`), and is stored in a
//! [`Listener::Progress`] entry of the task's listener list, created by the first report or the
//! first `on_progress`. That entry lives exactly as long as the task is unfinished: completion
//! takes every listener, and waking this one marks it ended, so no callback runs after the end.
//! A task nobody reports from pays two thread-local writes and nothing else.
//!
//! Executors whose tasks run elsewhere (a process pool's worker processes, the cluster's workers)
//! point the same thread-local at a [`ProgressSink`] of their own while they run a call, so
//! `report_progress` there is rate-limited by the same rule and then forwarded (a frame on the
//! pipe, an entry for the cluster's batched writes). Where the report lands again, on a thread
//! that is not the task's own and must not run user code (a pool's reader), [`RemoteProgress`]
//! stores the value and hands the callback to the callback threads, coalesced: one run queued per
//! task at a time, with the latest value when it starts, and none started once the task ended.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::core::Core;
use super::deferred::CallbackGroup;
use super::listeners::Listener;

/// The shortest time between two reports that reach the handle (and its callback).
pub const MIN_INTERVAL: Duration = Duration::from_millis(50);

/// The listener id of a task's progress entry; real listener ids start at 1.
pub(super) const PROGRESS_ID: u64 = 0;

/// A progress callback, as given to [`Task::on_progress`](super::Task::on_progress).
pub(super) type ProgressCallback = Box<dyn FnMut(u64, u64) + Send>;

/// What a task reported last, and who wants to hear of it.
#[derive(Default)]
pub(crate) struct ProgressState {
    latest: Mutex<Option<(u64, u64)>>,
    callback: Mutex<Option<ProgressCallback>>,
    ended: AtomicBool,
    /// A run of the callback is queued or running on a callback thread ([`RemoteProgress`]).
    scheduled: AtomicBool,
    /// A value was stored since that run last read one.
    fresh: AtomicBool,
}

impl ProgressState {
    pub(super) fn latest(&self) -> Option<(u64, u64)> {
        *self.latest.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn set_callback(&self, callback: ProgressCallback) {
        *self.callback.lock().unwrap_or_else(|e| e.into_inner()) = Some(callback);
    }

    /// The task is done: later reports (there should be none) are ignored.
    pub(super) fn end(&self) {
        self.ended.store(true, Ordering::Release);
    }

    fn report(&self, done: u64, total: u64) {
        if self.ended.load(Ordering::Acquire) {
            return;
        }
        *self.latest.lock().unwrap_or_else(|e| e.into_inner()) = Some((done, total));
        self.run_callback(done, total);
    }

    /// Runs the callback, if one is set, with `(done, total)`, here.
    fn run_callback(&self, done: u64, total: u64) {
        // Taken out to run, so no lock is held while user code runs (it may set a new callback).
        let taken = self
            .callback
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let Some(mut f) = taken else {
            return;
        };
        // Checked again with the callback in hand: the end may have come while a callback
        // thread waited for its turn, and no callback starts after it.
        if self.ended.load(Ordering::Acquire) {
            return;
        }
        // The callback is user code; the task's own thread (or a callback thread) runs it,
        // guarded like the task.
        match crate::panic::catch(std::panic::AssertUnwindSafe(|| f(done, total))) {
            Ok(()) => {
                let mut slot = self.callback.lock().unwrap_or_else(|e| e.into_inner());
                if slot.is_none() {
                    *slot = Some(f);
                }
            }
            Err(panic) => eprintln!(
                "futurepool: a progress callback panicked and was removed; the task goes on: \
                 {panic}"
            ),
        }
    }
}

/// Delivers a report that reached the handle's side from a thread that must not run user code:
/// stores it and, if the task has a callback, queues one coalesced run of it on the callback
/// threads (see the module docs).
pub(crate) struct RemoteProgress {
    state: Arc<ProgressState>,
    callbacks: Arc<CallbackGroup>,
}

impl RemoteProgress {
    /// The task's progress entry, made now if needed; `None` if the task is done.
    pub(crate) fn of<T, E>(core: &Core<T, E>, callbacks: &Arc<CallbackGroup>) -> Option<Self> {
        Some(RemoteProgress {
            state: state_of(core, true)?,
            callbacks: Arc::clone(callbacks),
        })
    }

    /// Stores `(done, total)` as the task's latest report and schedules its callback.
    pub(crate) fn report(&self, done: u64, total: u64) {
        let state = &self.state;
        if state.ended.load(Ordering::Acquire) {
            return;
        }
        *state.latest.lock().unwrap_or_else(|e| e.into_inner()) = Some((done, total));
        state.fresh.store(true, Ordering::Release);
        let has_callback = state
            .callback
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some();
        // A run already queued or running reads this value when it gets to it (or runs again).
        if !has_callback || state.scheduled.swap(true, Ordering::AcqRel) {
            return;
        }
        let state = Arc::clone(state);
        self.callbacks.spawn_job(Box::new(move || {
            let mut delivered = None;
            loop {
                state.fresh.store(false, Ordering::Release);
                let latest = state.latest();
                // A value read twice (stored just before this run's first read) is delivered once.
                if let Some((done, total)) = latest.filter(|_| latest != delivered) {
                    state.run_callback(done, total);
                    delivered = latest;
                }
                state.scheduled.store(false, Ordering::Release);
                // A report stored after the read above, whose caller saw this run still scheduled,
                // is this run's to deliver: go round again unless another run took it.
                if state.ended.load(Ordering::Acquire)
                    || !state.fresh.load(Ordering::Acquire)
                    || state.scheduled.swap(true, Ordering::AcqRel)
                {
                    return;
                }
            }
        }));
    }
}

/// Where `report_progress` on this thread goes, with its types erased: a task core (a thread
/// pool's task), or an executor's forwarder (a process pool's worker, a cluster worker).
pub(crate) trait ProgressSink {
    /// The task's progress entry, for a sink that is a task's core.
    fn progress_state(&self) -> Option<Arc<ProgressState>> {
        None
    }

    /// Takes a report that passed the rate limit.
    fn deliver(&self, done: u64, total: u64) {
        if let Some(state) = self.progress_state() {
            state.report(done, total);
        }
    }
}

impl<T, E> ProgressSink for Core<T, E> {
    fn progress_state(&self) -> Option<Arc<ProgressState>> {
        state_of(self, true)
    }
}

/// The task's progress entry; made if `create` and the task is not done.
pub(super) fn state_of<T, E>(core: &Core<T, E>, create: bool) -> Option<Arc<ProgressState>> {
    let found = core.with_listener(PROGRESS_ID, |listener| match listener {
        Listener::Progress { state, .. } => Some(Arc::clone(state)),
        _ => None,
    });
    match found {
        Some(state) => state,
        None if create => {
            let state = Arc::new(ProgressState::default());
            let listener = Listener::Progress {
                id: PROGRESS_ID,
                state: Arc::clone(&state),
            };
            // Done already: nothing to report to.
            core.register(listener).ok().map(|()| state)
        }
        None => None,
    }
}

/// The task this thread runs now, and when a report of it last got through. One thread-local,
/// so entering and leaving a task cost one access each.
#[derive(Clone, Copy)]
struct Slot {
    core: Option<*const dyn ProgressSink>,
    last: Option<Instant>,
}

thread_local! {
    static CURRENT: Cell<Slot> = const { Cell::new(Slot { core: None, last: None }) };
}

/// Marks `core`'s task as the one running on this thread until dropped.
pub(crate) struct Running {
    previous: Slot,
    /// False under loom, whose threads share one OS thread's thread-locals: there the guard does
    /// nothing (no model reports progress).
    active: bool,
}

impl Running {
    /// # Safety
    ///
    /// `core` must stay alive until the returned guard is dropped, on this thread.
    pub(crate) unsafe fn enter(core: &(dyn ProgressSink + 'static)) -> Running {
        if cfg!(loom) {
            return Running {
                previous: Slot {
                    core: None,
                    last: None,
                },
                active: false,
            };
        }
        let entered = Slot {
            core: Some(core as *const dyn ProgressSink),
            last: None,
        };
        Running {
            previous: CURRENT.with(|c| c.replace(entered)),
            active: true,
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.active {
            return;
        }
        CURRENT.with(|c| c.set(self.previous));
    }
}

/// Reports the progress of the task running on this thread: `done` of `total` units (any units:
/// items, bytes, percent). The task's handle shows the latest report
/// ([`Task::progress`](crate::Task::progress)) and calls its
/// [`on_progress`](crate::Task::on_progress) callback.
///
/// Cheap enough to call in a tight loop: reports are rate-limited here, on the task's thread —
/// the first one, then at most one per 50 ms, plus every report with `done >= total` (the last
/// one) get through; the others are dropped. It reports for the task that the calling thread
/// runs:
///
/// - in a task of a [`ThreadPool`](crate::ThreadPool), to that task;
/// - in a call a [`ProcessPool`](crate::ProcessPool)'s worker process runs (a `submit`, or a
///   chained task), the report that got through the limit travels to the pool as one small frame
///   and reaches the task's handle there. Inside an item of a process pool's `map` (each item
///   rate-limited on its own) it reaches the map instead, whose items have no handles: a
///   `.progress()` bar counts the running item's share, as on a thread pool;
/// - in a task a cluster worker runs (its threads or its processes), to the task's entry in the
///   cluster, written at most every 250 ms per task, which the client's handle for that task
///   reads.
///
/// Anywhere else — on another thread, even one the task started — it does nothing.
///
/// On a process pool and the cluster, the handle's callback runs on futurepool's callback
/// threads, coalesced: it sees the latest value when it runs, so it may skip reports that came
/// in quick succession, and none starts once the task is done (so the last report may not reach
/// it if the result follows at once; [`Task::progress`](crate::Task::progress) saw it).
///
/// # Examples
///
/// ```
/// use std::sync::mpsc;
/// let pool = futurepool::ThreadPool::new(1);
/// let (tx, rx) = mpsc::channel();
/// let task = pool.submit(move || {
///     rx.recv().unwrap(); // wait until the callback is in place
///     for i in 1..=1000u64 {
///         futurepool::report_progress(i, 1000);
///     }
/// });
/// let (seen_tx, seen) = mpsc::channel();
/// task.on_progress(move |done, total| { let _ = seen_tx.send((done, total)); });
/// tx.send(()).unwrap();
/// task.wait();
/// let reports: Vec<(u64, u64)> = seen.try_iter().collect();
/// assert_eq!(reports.last(), Some(&(1000, 1000)), "the last report always gets through");
/// assert!(reports.len() < 1000, "the others are rate-limited");
/// ```
pub fn report_progress(done: u64, total: u64) {
    let slot = CURRENT.with(Cell::get);
    let Some(core) = slot.core else {
        return;
    };
    let now = Instant::now();
    let due = done >= total
        || match slot.last {
            None => true,
            Some(at) => now.saturating_duration_since(at) >= MIN_INTERVAL,
        };
    if !due {
        return;
    }
    CURRENT.with(|c| {
        c.set(Slot {
            last: Some(now),
            ..slot
        })
    });
    // SAFETY: `CURRENT` is set only by `Running::enter`, whose caller keeps the core alive until
    // the guard, which clears it, is dropped on this thread; we are inside that span.
    let core = unsafe { &*core };
    core.deliver(done, total);
}
