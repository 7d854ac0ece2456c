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

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::core::Core;
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
        // Taken out to run, so no lock is held while user code runs (it may set a new callback).
        let taken = self
            .callback
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let Some(mut f) = taken else {
            return;
        };
        // The callback is user code; the task's own thread runs it, guarded like the task.
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

/// A task core that reports can reach, with its types erased.
pub(crate) trait ProgressSink {
    fn progress_state(&self) -> Option<Arc<ProgressState>>;
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
/// one) get through; the others are dropped. Outside a task of a [`ThreadPool`](crate::ThreadPool)
/// — on another thread, even one the task started — it does nothing. Process pools and the
/// cluster do not carry reports yet.
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
    if let Some(state) = core.progress_state() {
        state.report(done, total);
    }
}
