//! Ctrl-C, as a flag every worker checks, a sleep it cuts short, and a hook that wakes the
//! orchestrating thread at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

type Hook = Box<dyn Fn() + Send>;

/// A one-way switch from "running" to "interrupted".
#[derive(Default)]
pub(crate) struct Interrupt {
    /// Mirrors `state.triggered` for the lock-free check workers make between body chunks.
    triggered: AtomicBool,
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    triggered: bool,
    hooks: Vec<Hook>,
}

impl Interrupt {
    /// An interrupt triggered by the process's SIGINT (Ctrl-C), SIGTERM or SIGHUP. A second
    /// signal exits at once with status 130, for when the first one's cleanup is not wanted.
    ///
    /// Only the first call in a process can install the handler; later calls get an interrupt
    /// that only [`trigger`](Interrupt::trigger) sets.
    pub(crate) fn from_ctrl_c() -> Arc<Interrupt> {
        let interrupt = Arc::new(Interrupt::default());
        let handler = interrupt.clone();
        // Failing to install it (already installed) leaves Ctrl-C with its default effect, killing
        // the process, which loses the report but never leaves a partial file under a final name.
        let _ = ctrlc::set_handler(move || {
            if handler.is_triggered() {
                std::process::exit(130);
            }
            handler.trigger();
        });
        interrupt
    }

    /// Flips the switch: wakes sleepers and runs every hook (once each).
    pub(crate) fn trigger(&self) {
        let hooks = {
            let mut state = self.lock();
            if state.triggered {
                return;
            }
            state.triggered = true;
            self.triggered.store(true, Ordering::SeqCst);
            std::mem::take(&mut state.hooks)
        };
        self.changed.notify_all();
        for hook in hooks {
            hook();
        }
    }

    pub(crate) fn is_triggered(&self) -> bool {
        self.triggered.load(Ordering::SeqCst)
    }

    /// Runs `hook` when the interrupt triggers (at once if it already has).
    pub(crate) fn on_trigger(&self, hook: impl Fn() + Send + 'static) {
        let mut state = self.lock();
        if state.triggered {
            drop(state);
            hook();
        } else {
            state.hooks.push(Box::new(hook));
        }
    }

    /// Sleeps for `pause` unless interrupted first; returns true if interrupted.
    pub(crate) fn sleep(&self, pause: Duration) -> bool {
        // No deadline (a pause too long to add): sleep until interrupted.
        let deadline = Instant::now().checked_add(pause);
        let mut state = self.lock();
        while !state.triggered {
            let now = Instant::now();
            let Some(deadline) = deadline else {
                state = self
                    .changed
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
                continue;
            };
            if now >= deadline {
                return false;
            }
            state = self
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn trigger_wakes_a_sleeper_and_runs_hooks_once() {
        let interrupt = Arc::new(Interrupt::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        interrupt.on_trigger(move || {
            counter.fetch_add(1, Ordering::SeqCst);
        });
        let sleeper = {
            let interrupt = interrupt.clone();
            std::thread::spawn(move || interrupt.sleep(Duration::from_secs(600)))
        };
        interrupt.trigger();
        interrupt.trigger();
        assert!(sleeper.join().unwrap(), "the sleep was cut short");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(interrupt.is_triggered());
    }

    #[test]
    fn an_untriggered_sleep_runs_out() {
        assert!(!Interrupt::default().sleep(Duration::from_millis(1)));
    }

    #[test]
    fn a_late_hook_runs_at_once() {
        let interrupt = Interrupt::default();
        interrupt.trigger();
        let ran = Arc::new(AtomicUsize::new(0));
        let flag = ran.clone();
        interrupt.on_trigger(move || {
            flag.store(1, Ordering::SeqCst);
        });
        assert_eq!(ran.load(Ordering::SeqCst), 1);
    }
}
