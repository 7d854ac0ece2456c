//! Catching panics with their location.
//!
//! `catch_unwind` returns the payload but not where the panic happened. A panic hook sees the
//! location, so futurepool chains one hook (installed once, calling whatever hook was there before,
//! so the usual message still prints) that records the location in a thread-local while a task or
//! callback runs under [`catch`].

use std::cell::{Cell, RefCell};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

use crate::error::Panic;

thread_local! {
    static CATCHING: Cell<bool> = const { Cell::new(false) };
    static LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
}

fn install_location_hook() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if CATCHING.with(Cell::get) {
                let location = info.location().map(|l| l.to_string());
                LOCATION.with(|slot| *slot.borrow_mut() = location);
            }
            previous(info);
        }));
    });
}

/// Runs `f`, turning a panic into a [`Panic`] with its message and location.
pub(crate) fn catch<R>(f: impl FnOnce() -> R) -> Result<R, Panic> {
    install_location_hook();
    let was_catching = CATCHING.with(|c| c.replace(true));
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    CATCHING.with(|c| c.set(was_catching));
    result.map_err(|payload| {
        let location = LOCATION.with(|slot| slot.borrow_mut().take());
        let panic = Panic::from_payload(payload.as_ref(), location);
        // Dropping a payload can itself panic; never let that escape a worker.
        let _ = panic::catch_unwind(AssertUnwindSafe(move || drop(payload)));
        panic
    })
}
