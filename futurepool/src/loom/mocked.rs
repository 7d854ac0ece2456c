//! The facade's loom side, compiled only with `--cfg loom`.

pub(crate) mod sync {
    pub(crate) use loom::sync::{Condvar, Mutex, MutexGuard};

    pub(crate) mod atomic {
        pub(crate) use loom::sync::atomic::{fence, AtomicBool, AtomicPtr, AtomicUsize, Ordering};
    }
}

pub(crate) mod thread {
    pub(crate) use loom::thread::{current, park, yield_now, Builder, JoinHandle, Thread};
    use std::time::Instant;

    /// Loom has no clock: a deadline is ignored and the thread parks until unparked, which is the
    /// case the model explores (time-outs only shorten a wait).
    pub(crate) fn park_until(_deadline: Option<Instant>) {
        loom::thread::park();
    }
}

pub(crate) mod cell {
    pub(crate) use loom::cell::UnsafeCell;
}

pub(crate) use loom::thread_local;
