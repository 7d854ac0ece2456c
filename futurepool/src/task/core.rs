//! The task state machine: one atomic word, one outcome slot, one listener list.
//!
//! See `README.md` beside this file for the protocol and why no wake-up can be lost.

use std::mem::MaybeUninit;
use std::ptr;

use crate::error::TaskError;
use crate::loom::cell::UnsafeCell;
use crate::loom::sync::atomic::{AtomicPtr, AtomicUsize, Ordering::*};
use crate::loom::sync::{Mutex, MutexGuard};

use super::listeners::Listener;

/// The two low bits: where the task is in its life.
const LIFECYCLE: usize = 0b0011;
const PENDING: usize = 0b0000;
const RUNNING: usize = 0b0001;
const FINISHED: usize = 0b0010;
const CANCELLED: usize = 0b0011;
/// Set by the one thread that won the right to write the outcome slot; cleared when it publishes.
const RESOLVING: usize = 0b0100;
/// Set once any listener was registered, so completion skips the lock when nobody listens.
const HAS_LISTENERS: usize = 0b1000;
/// Set by `abort` on a running task: its token reads cancelled, and whoever claims the outcome
/// publishes `CANCELLED` instead of the value (see `README.md`, "Aborting a running task").
const ABORT: usize = 0b1_0000;
/// Set from `Job::new` until the task's `Job` is consumed (its task started, cancelled, refused,
/// or the job dropped): the job's dispatch pointer lives in the outcome slot meanwhile (see
/// [`Core::held_by_job`]), so no claim can succeed, and nothing overwrites the pointer before the
/// job has read it. `try_start` and the cancelling CASes clear it with the rest of the word.
const HELD_BY_JOB: usize = 0b10_0000;

/// A consistent reading of a task's state: every predicate comes from one atomic load (F3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Snapshot(usize);

impl Snapshot {
    pub(crate) fn is_pending(self) -> bool {
        self.0 & LIFECYCLE == PENDING
    }
    pub(crate) fn is_running(self) -> bool {
        self.0 & LIFECYCLE == RUNNING
    }
    pub(crate) fn is_finished(self) -> bool {
        self.0 & LIFECYCLE == FINISHED
    }
    pub(crate) fn is_cancelled(self) -> bool {
        self.0 & LIFECYCLE == CANCELLED
    }
    pub(crate) fn is_done(self) -> bool {
        self.is_finished() || self.is_cancelled()
    }
    /// `abort` reached the task while it ran (or it ended cancelled): what its token reads.
    pub(crate) fn is_abort_requested(self) -> bool {
        self.0 & ABORT != 0 || self.is_cancelled()
    }
    fn is_claimed(self) -> bool {
        self.0 & RESOLVING != 0
    }
    fn has_listeners(self) -> bool {
        self.0 & HAS_LISTENERS != 0
    }
}

/// What [`Core::try_cancel`] did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum CancelAttempt {
    /// This call cancelled the task; `had_listeners` says whether listeners must be run.
    Cancelled { had_listeners: bool },
    /// An earlier call cancelled it.
    AlreadyCancelled,
    /// It is running, finished, or being resolved: too late to cancel.
    TooLate,
}

/// What [`Core::try_abort`] did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum AbortAttempt {
    /// It was pending: cancelled now, exactly as [`Core::try_cancel`] would.
    Cancelled { had_listeners: bool },
    /// It was already cancelled, or an earlier abort is already on its way.
    AlreadyAborted,
    /// It is running: the abort flag is set; whoever claims the outcome publishes `CANCELLED`.
    Flagged,
    /// It is finished or its outcome is being written: too late.
    TooLate,
}

/// What [`Core::try_claim`] won.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Claim {
    /// Someone else claimed it, or it is done: the caller's outcome is discarded.
    Lost,
    /// The caller must [`publish`](Core::publish) its outcome.
    Won,
    /// The caller must [`publish_cancelled`](Core::publish_cancelled): an abort came first.
    WonAborted,
}

/// Registered listeners, behind the lock that guards them.
type ListenerList<T, E> = Mutex<Vec<Listener<T, E>>>;

/// The shared heart of a task. Owned by the task's `Arc`; see `README.md` for the protocol.
///
/// `repr(C)`, the outcome slot first: at offset 0 of the task's allocation (`TaskCell` is
/// `repr(C)` with the core first), where a thread pool's [`Job`](super::Job) finds its dispatch
/// pointer while [`HELD_BY_JOB`] is set.
#[repr(C)]
pub(crate) struct Core<T, E> {
    /// Under loom the outcome slot is loom's tracked cell, not transparent, so the dispatch
    /// pointer gets a field of its own at offset 0 (sizes matter only outside loom).
    #[cfg(loom)]
    dispatch: std::cell::Cell<*const ()>,
    /// Written once, by the thread that set `RESOLVING`, before it publishes `FINISHED`. Before
    /// that, while [`HELD_BY_JOB`] is set, its first word is the job's dispatch pointer.
    outcome: UnsafeCell<MaybeUninit<Result<T, TaskError<E>>>>,
    state: AtomicUsize,
    /// The listener list with its lock, allocated by the first registration and never replaced
    /// (null until then). A pointer rather than an inline `Mutex`: a task nobody waits on pays
    /// 8 bytes, not 16, which keeps a no-op task's allocation in the 64-byte size class (issue 16).
    listeners: AtomicPtr<ListenerList<T, E>>,
}

// SAFETY: the outcome slot is written by exactly one thread (the one that set RESOLVING) before the
// Release store of FINISHED, and only read after an Acquire load sees FINISHED; after that it is
// never written again, so shared `&` access from many threads only ever reads it. `T` and `E` move
// between threads (written on one, read or dropped on another), hence `Send`, and are read through
// `&` from several threads at once, hence `Sync`.
unsafe impl<T: Send + Sync, E: Send + Sync> Sync for Core<T, E> {}
// SAFETY: as above; moving the core moves the `T`/`E` it may hold.
unsafe impl<T: Send, E: Send> Send for Core<T, E> {}

impl<T, E> Core<T, E> {
    pub(crate) fn new() -> Self {
        Self::with_state(PENDING)
    }

    /// A core whose outcome slot will hold its job's dispatch pointer until the job is consumed
    /// (see [`HELD_BY_JOB`]); the job writes it with [`set_dispatch`](Core::set_dispatch).
    pub(crate) fn held_by_job() -> Self {
        Self::with_state(PENDING | HELD_BY_JOB)
    }

    fn with_state(state: usize) -> Self {
        Core {
            #[cfg(loom)]
            dispatch: std::cell::Cell::new(ptr::null()),
            outcome: UnsafeCell::new(MaybeUninit::uninit()),
            state: AtomicUsize::new(state),
            listeners: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// Stores the job's dispatch pointer at offset 0 of the core (the outcome slot's first word).
    ///
    /// # Safety
    ///
    /// Only on a core made by [`held_by_job`](Core::held_by_job), before it is shared.
    pub(crate) unsafe fn set_dispatch(&self, dispatch: *const ()) {
        const {
            assert!(
                std::mem::size_of::<Result<T, TaskError<E>>>() >= std::mem::size_of::<*const ()>()
            );
            assert!(
                std::mem::align_of::<Result<T, TaskError<E>>>()
                    >= std::mem::align_of::<*const ()>()
            );
        }
        #[cfg(loom)]
        self.dispatch.set(dispatch);
        #[cfg(not(loom))]
        // SAFETY: the slot is at least a pointer in size and alignment (checked above), and
        // nobody else can reach the core yet; HELD_BY_JOB keeps any claim (so any write of the
        // outcome) away until the job has read the pointer back.
        self.outcome
            .with_mut(|slot| unsafe { (*slot).as_mut_ptr().cast::<*const ()>().write(dispatch) });
    }

    /// The job has read its dispatch pointer and is about to end the task another way than by
    /// starting it (refused: it resolves it next; dropped: it lets others resolve it).
    pub(crate) fn release_hold(&self) {
        self.state.fetch_and(!HELD_BY_JOB, AcqRel);
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
        Snapshot(self.state.load(Acquire))
    }

    /// Whether the task is done, as a check that reads only the state word, so that it may be
    /// shared with another thread whatever `T` and `E` are (a lent thread checks a waiter's
    /// condition: `thread_pool/worker.rs`).
    pub(crate) fn done_check(&self) -> impl Fn() -> bool + Sync + '_ {
        let state = &self.state;
        move || Snapshot(state.load(Acquire)).is_done()
    }

    /// PENDING → RUNNING. False if the task was cancelled or claimed first.
    pub(crate) fn try_start(&self) -> bool {
        let mut current = self.state.load(Relaxed);
        loop {
            let s = Snapshot(current);
            if !s.is_pending() || s.is_claimed() {
                return false;
            }
            // Starting consumes the job: it has read its dispatch pointer, so drop the hold.
            let next = (current | RUNNING) & !HELD_BY_JOB;
            match self
                .state
                .compare_exchange_weak(current, next, AcqRel, Relaxed)
            {
                Ok(_) => return true,
                Err(actual) => current = actual,
            }
        }
    }

    /// PENDING → CANCELLED, in one step: a cancelled task stores nothing in its slot.
    pub(crate) fn try_cancel(&self) -> CancelAttempt {
        let mut current = self.state.load(Relaxed);
        loop {
            let s = Snapshot(current);
            if s.is_cancelled() {
                return CancelAttempt::AlreadyCancelled;
            }
            if !s.is_pending() || s.is_claimed() {
                return CancelAttempt::TooLate;
            }
            match self
                .state
                .compare_exchange_weak(current, CANCELLED, AcqRel, Acquire)
            {
                Ok(_) => {
                    return CancelAttempt::Cancelled {
                        had_listeners: s.has_listeners(),
                    }
                }
                Err(actual) => current = actual,
            }
        }
    }

    /// Stops the task wherever it is: PENDING → CANCELLED (as `try_cancel`), RUNNING → RUNNING|ABORT.
    ///
    /// The flag is only set on an unclaimed running task, and `try_claim` reads it in the same CAS
    /// that claims: so an abort racing completion has exactly one outcome. Either the abort's CAS
    /// comes first (the claimer sees ABORT and publishes CANCELLED) or the claim's does (the abort
    /// sees RESOLVING and answers `TooLate`; the value stands).
    pub(crate) fn try_abort(&self) -> AbortAttempt {
        let mut current = self.state.load(Relaxed);
        loop {
            let s = Snapshot(current);
            if s.is_cancelled() || (!s.is_done() && current & ABORT != 0) {
                return AbortAttempt::AlreadyAborted;
            }
            if s.is_finished() || s.is_claimed() {
                return AbortAttempt::TooLate;
            }
            let (next, attempt) = if s.is_pending() {
                (
                    CANCELLED,
                    AbortAttempt::Cancelled {
                        had_listeners: s.has_listeners(),
                    },
                )
            } else {
                (current | ABORT, AbortAttempt::Flagged)
            };
            match self
                .state
                .compare_exchange_weak(current, next, AcqRel, Acquire)
            {
                Ok(_) => return attempt,
                Err(actual) => current = actual,
            }
        }
    }

    /// Claims the right to write the outcome (from PENDING or RUNNING). Exactly one caller ever
    /// wins; it must then call [`Core::publish`], or [`Core::publish_cancelled`] if an abort
    /// reached the task first.
    pub(crate) fn try_claim(&self) -> Claim {
        let mut current = self.state.load(Relaxed);
        loop {
            let s = Snapshot(current);
            if s.is_done() || s.is_claimed() || current & HELD_BY_JOB != 0 {
                return Claim::Lost;
            }
            match self
                .state
                .compare_exchange_weak(current, current | RESOLVING, AcqRel, Relaxed)
            {
                Ok(_) if current & ABORT != 0 => return Claim::WonAborted,
                Ok(_) => return Claim::Won,
                Err(actual) => current = actual,
            }
        }
    }

    /// Ends an aborted task as CANCELLED (its slot stays empty, as for any cancelled task).
    /// Returns whether listeners must be run.
    ///
    /// Must only be called once, by the winner of [`Core::try_claim`] that got `WonAborted`.
    pub(crate) fn publish_cancelled(&self) -> bool {
        let previous = self.state.swap(CANCELLED, AcqRel);
        Snapshot(previous).has_listeners()
    }

    /// Writes the outcome and makes it visible. Returns whether listeners must be run.
    ///
    /// Must only be called once, by the winner of [`Core::try_claim`].
    pub(crate) fn publish(&self, outcome: Result<T, TaskError<E>>) -> bool {
        // SAFETY: the caller won `try_claim`, so no other thread writes the slot, and no thread reads
        // it before seeing FINISHED, which the store below publishes after this write.
        self.outcome
            .with_mut(|slot| unsafe { (*slot).write(outcome) });
        let previous = self.state.swap(FINISHED, AcqRel);
        Snapshot(previous).has_listeners()
    }

    /// The outcome, if the task finished (not if it was cancelled).
    pub(crate) fn finished_outcome(&self) -> Option<&Result<T, TaskError<E>>> {
        if !self.snapshot().is_finished() {
            return None;
        }
        // SAFETY: FINISHED was observed with Acquire, which pairs with the Release in `publish`:
        // the slot is initialised and will never be written again while `self` lives.
        Some(
            self.outcome
                .with(|slot| unsafe { (*slot).assume_init_ref() }),
        )
    }

    /// The listener list, if any registration ever created it.
    pub(super) fn list(&self) -> Option<&ListenerList<T, E>> {
        // SAFETY: a non-null pointer came from `Box::into_raw` in `list_or_create`, published with
        // a Release CAS that this Acquire load pairs with; it is freed only in `drop`, so it
        // lives as long as `&self`.
        unsafe { self.listeners.load(Acquire).as_ref() }
    }

    /// The listener list, created now if this is the first registration.
    fn list_or_create(&self) -> &ListenerList<T, E> {
        if let Some(list) = self.list() {
            return list;
        }
        let fresh = Box::into_raw(Box::new(Mutex::new(Vec::new())));
        match self
            .listeners
            .compare_exchange(ptr::null_mut(), fresh, AcqRel, Acquire)
        {
            // SAFETY: just published; lives until `drop`, as in `list`.
            Ok(_) => unsafe { &*fresh },
            Err(installed) => {
                // Another registrant installed its list first: use that one, free ours.
                // SAFETY: `fresh` came from `Box::into_raw` above and was never shared.
                drop(unsafe { Box::from_raw(fresh) });
                // SAFETY: as in `list`.
                unsafe { &*installed }
            }
        }
    }

    pub(super) fn lock(list: &ListenerList<T, E>) -> MutexGuard<'_, Vec<Listener<T, E>>> {
        // A poisoned lock only means a panic happened while the list was being edited; the list
        // itself is always valid, so carry on with it.
        list.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a listener, or hands it back if the task is already done (the caller then acts
    /// on the outcome itself). The flag is set under the lock, after the push, so completion either
    /// sees the flag and drains the list (taking the lock after us), or we see its terminal state.
    pub(crate) fn register(&self, listener: Listener<T, E>) -> Result<(), Listener<T, E>> {
        if self.snapshot().is_done() {
            return Err(listener);
        }
        let mut guard = Self::lock(self.list_or_create());
        if self.snapshot().is_done() {
            return Err(listener);
        }
        guard.push(listener);
        let previous = Snapshot(self.state.fetch_or(HAS_LISTENERS, AcqRel));
        if previous.is_done() {
            let listener = guard.pop();
            return Err(listener.expect("the listener pushed under this lock is still there"));
        }
        Ok(())
    }

    /// Takes every listener; called once by whoever made the task done.
    pub(crate) fn take_listeners(&self) -> Vec<Listener<T, E>> {
        // HAS_LISTENERS was set after the list was installed, and the caller read it from the
        // word (AcqRel), so the list is visible here whenever there is anything in it.
        self.list()
            .map(|list| std::mem::take(&mut *Self::lock(list)))
            .unwrap_or_default()
    }

    /// Removes the listener with this id, if it is still registered.
    pub(crate) fn unregister(&self, id: u64) {
        if let Some(list) = self.list() {
            Self::lock(list).retain(|l| l.id() != Some(id));
        }
    }

    /// Runs `f` on the listener with this id, if still registered (used to refresh a waker).
    pub(crate) fn with_listener<R>(
        &self,
        id: u64,
        f: impl FnOnce(&mut Listener<T, E>) -> R,
    ) -> Option<R> {
        let mut guard = Self::lock(self.list()?);
        guard.iter_mut().find(|l| l.id() == Some(id)).map(f)
    }
}

impl<T, E> Drop for Core<T, E> {
    fn drop(&mut self) {
        if self.snapshot().is_finished() {
            // SAFETY: FINISHED means the slot was initialised; `&mut self` means nobody else can
            // read it any more, and it is dropped exactly once, here.
            self.outcome
                .with_mut(|slot| unsafe { (*slot).assume_init_drop() });
        }
        let list = self.listeners.load(Acquire);
        if !list.is_null() {
            // SAFETY: it came from `Box::into_raw` in `list_or_create`; `&mut self` means no
            // reference handed out by `list` is still alive, and it is freed exactly once, here.
            drop(unsafe { Box::from_raw(list) });
        }
    }
}
