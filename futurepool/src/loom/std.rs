//! The facade's `std` side: plain re-exports plus an `UnsafeCell` with loom's closure-based API.

pub(crate) mod sync {
    pub(crate) use std::sync::{Condvar, Mutex, MutexGuard};

    pub(crate) mod atomic {
        pub(crate) use std::sync::atomic::{fence, AtomicBool, AtomicPtr, AtomicUsize, Ordering};
    }
}

pub(crate) mod thread {
    pub(crate) use std::thread::{current, park, yield_now, Builder, JoinHandle, Thread};
    use std::time::Instant;

    /// Parks the current thread until it is unparked or `deadline` passes (spurious wake-ups are
    /// allowed; callers re-check their condition).
    pub(crate) fn park_until(deadline: Option<Instant>) {
        match deadline {
            None => std::thread::park(),
            Some(deadline) => {
                let now = Instant::now();
                if deadline > now {
                    std::thread::park_timeout(deadline - now);
                }
            }
        }
    }
}

pub(crate) mod cell {
    /// `std::cell::UnsafeCell` behind loom's `with` / `with_mut` API, so the same code compiles
    /// against both.
    ///
    /// Transparent, so a value inside sits where the cell does (`task/job.rs` relies on it).
    #[derive(Debug)]
    #[repr(transparent)]
    pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

    impl<T> UnsafeCell<T> {
        pub(crate) const fn new(value: T) -> Self {
            Self(std::cell::UnsafeCell::new(value))
        }

        pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
            f(self.0.get())
        }

        pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
            f(self.0.get())
        }
    }
}

pub(crate) use std::thread_local;
