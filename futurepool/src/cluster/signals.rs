//! SIGTERM and SIGINT ask a worker to stop cleanly: it stops fetching, puts back what it has not
//! started, finishes what is running and publishes it. A second signal exits at once (the lease
//! then recovers whatever the worker held), so a stuck task never needs `kill -9`.

use std::sync::atomic::{AtomicBool, Ordering};

static STOP_REQUESTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_signal: libc::c_int) {
    // Only async-signal-safe work here: one lock-free atomic swap, and `_exit`.
    if STOP_REQUESTED.swap(true, Ordering::SeqCst) {
        // SAFETY: `_exit` is async-signal-safe and never returns.
        unsafe { libc::_exit(130) };
    }
}

/// Routes SIGTERM and SIGINT to [`stop_requested`] for the rest of the process's life.
pub(crate) fn install() {
    for signal in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: a zeroed `sigaction` is a valid "no flags, empty mask" value; the handler is an
        // `extern "C" fn(c_int)` doing only async-signal-safe work, as `sa_handler` requires.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_stop_signal as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut action.sa_mask);
            action.sa_flags = libc::SA_RESTART;
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
}

/// True once SIGTERM or SIGINT arrived.
pub(crate) fn stop_requested() -> bool {
    STOP_REQUESTED.load(Ordering::SeqCst)
}
