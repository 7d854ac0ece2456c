//! Catching panics with their location.
//!
//! `catch_unwind` returns the payload but not where the panic happened, and std offers no other
//! way to learn it than a panic hook. So futurepool installs one hook in front of whatever hook
//! was there (calling it, so the usual message still prints) that records the location in a
//! thread-local while a task or callback runs under [`catch`].
//!
//! A program may replace the hook at any time (`std::panic::set_hook`), dropping ours. Our hook
//! owns a guard whose `Drop` clears [`INSTALLED`], so [`catch`] learns with one atomic load,
//! before running anything, that the hook is gone, and installs it again in front of the
//! program's new hook (a once-per-replacement cost, never per task). The location is therefore
//! lost in exactly two cases, and the [`Panic`] then says which ([`Panic::location`] is `None`
//! and its `Display` gives the reason):
//!
//! - the program replaced the hook *while* the task was running (the next task has its location
//!   again: the hook is re-installed right after);
//! - no hook of ours ran for the panic: it was raised by `std::panic::resume_unwind` (which runs
//!   no hook), or the program took our hook with `take_hook` and installed one that does not call
//!   it. A program that chains the previous hook from its own (the usual pattern) keeps every
//!   location.
//!
//! Nothing is (re)installed on a thread that is already panicking (std forbids it there).

use std::cell::{Cell, RefCell};
use std::panic::{self, AssertUnwindSafe, PanicHookInfo};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::error::Panic;

/// Why a caught panic has no location: the program replaced the hook while the task ran.
pub(crate) const NO_LOCATION_HOOK_REPLACED: &str =
    "the program replaced the panic hook (std::panic::set_hook) while this task ran, which \
     removed the hook futurepool records locations with; it is installed again for later tasks";

/// Why a caught panic has no location: no hook of ours saw it.
pub(crate) const NO_LOCATION_NOT_HOOKED: &str =
    "no panic hook recorded it: it was raised by std::panic::resume_unwind (which runs no hook), \
     or the program's panic hook does not call the hook it replaced (futurepool's)";

type Hook = Box<dyn Fn(&PanicHookInfo<'_>) + Sync + Send + 'static>;

thread_local! {
    /// True while this thread runs code under [`catch`].
    static CATCHING: Cell<bool> = const { Cell::new(false) };
    /// Set by our hook: the location of the panic being caught (and so, that the hook ran).
    static SEEN: RefCell<Option<Option<String>>> = const { RefCell::new(None) };
}

/// The generation of our installed hook; 0 when it is not installed (never was, or was dropped
/// because the program replaced it).
static INSTALLED: AtomicU64 = AtomicU64::new(0);
static NEXT_GENERATION: AtomicU64 = AtomicU64::new(1);
/// Serializes installation, so two threads that notice a replacement at once install one hook.
static INSTALLING: Mutex<()> = Mutex::new(());

/// Owned by our hook: dropping the hook (a `set_hook` that replaced it) marks it uninstalled,
/// unless a newer generation is installed already.
struct InstalledGuard(u64);

impl Drop for InstalledGuard {
    fn drop(&mut self) {
        let _ = INSTALLED.compare_exchange(self.0, 0, Ordering::SeqCst, Ordering::SeqCst);
    }
}

fn record_location(info: &PanicHookInfo<'_>) {
    if CATCHING.with(Cell::get) {
        let location = info.location().map(|l| l.to_string());
        SEEN.with(|seen| *seen.borrow_mut() = Some(location));
    }
}

/// Installs our hook in front of the current one, unless it is installed.
fn ensure_hook_installed() {
    if INSTALLED.load(Ordering::SeqCst) != 0 || std::thread::panicking() {
        return;
    }
    let _guard = INSTALLING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if INSTALLED.load(Ordering::SeqCst) != 0 {
        return; // Another thread did it while we waited.
    }
    // take_hook leaves the default hook in place until set_hook below: a panic on another thread
    // in between prints the default message. This runs once per replacement, not per task.
    let previous = panic::take_hook();
    let generation = NEXT_GENERATION.fetch_add(1, Ordering::SeqCst);
    let installed = InstalledGuard(generation);
    let ours: Hook = Box::new(move |info| {
        let _owned_by_the_hook = &installed;
        record_location(info);
        previous(info);
    });
    INSTALLED.store(generation, Ordering::SeqCst);
    panic::set_hook(ours);
}

/// Runs `f`, turning a panic into a [`Panic`] with its message and location.
pub(crate) fn catch<R>(f: impl FnOnce() -> R) -> Result<R, Panic> {
    ensure_hook_installed();
    let was_catching = CATCHING.with(|c| c.replace(true));
    SEEN.with(|seen| seen.borrow_mut().take());
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    CATCHING.with(|c| c.set(was_catching));
    result.map_err(|payload| {
        let seen = SEEN.with(|seen| seen.borrow_mut().take());
        let panic = match seen {
            Some(location) => Panic::from_payload(payload.as_ref(), location),
            // Our hook did not run: it was replaced, or no hook ran at all.
            None => {
                let why = if INSTALLED.load(Ordering::SeqCst) == 0 {
                    ensure_hook_installed();
                    NO_LOCATION_HOOK_REPLACED
                } else {
                    NO_LOCATION_NOT_HOOKED
                };
                Panic::from_payload(payload.as_ref(), None).with_missing_location(why)
            }
        };
        // Dropping a payload can itself panic; never let that escape a worker.
        let _ = panic::catch_unwind(AssertUnwindSafe(move || drop(payload)));
        panic
    })
}
