//! A mailbox of "task `key` is done" messages: what `wait`, `as_completed` and `map_unordered`
//! register on every task they watch, so one thread can block on many tasks at once.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, Thread};
use std::time::Instant;

use crate::task::{Notify, Task};

/// Collects the keys of watched tasks as they become done, in completion order.
#[derive(Default)]
pub(crate) struct Completions {
    inner: Mutex<Inbox>,
}

#[derive(Default)]
struct Inbox {
    done: VecDeque<usize>,
    /// The thread blocked in [`Completions::next_until`], if any.
    waiter: Option<Thread>,
}

impl Notify for Completions {
    fn notify(&self, key: usize) {
        let waiter = {
            let mut inbox = self.lock();
            inbox.done.push_back(key);
            inbox.waiter.take()
        };
        if let Some(thread) = waiter {
            thread.unpark();
        }
    }
}

impl Completions {
    pub(crate) fn new() -> Arc<Completions> {
        Arc::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inbox> {
        // Nothing panics under this lock; a poisoned one still holds a valid queue.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts watching `task` under `key`. Returns the registration to
    /// [`unwatch`](Completions::unwatch) later, or `None` if the task was already done, in which
    /// case its key is queued at once.
    pub(crate) fn watch<T, E>(self: &Arc<Self>, task: &Task<T, E>, key: usize) -> Option<u64> {
        let sink: Arc<dyn Notify> = self.clone();
        let registration = task.register_notify(sink, key);
        if registration.is_none() {
            self.lock().done.push_back(key);
        }
        registration
    }

    /// The next done key, blocking until one arrives or `deadline` passes (`None`).
    pub(crate) fn next_until(&self, deadline: Option<Instant>) -> Option<usize> {
        loop {
            {
                let mut inbox = self.lock();
                if let Some(key) = inbox.done.pop_front() {
                    return Some(key);
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return None;
                }
                // Registered under the lock that `notify` takes, so a key pushed after this
                // check finds us and unparks; an unpark before our park leaves a token.
                inbox.waiter = Some(thread::current());
            }
            // On a thread pool's worker, run that pool's queued jobs meanwhile (never waiting for
            // itself); `notify` unparks us as it would a parked waiter.
            if crate::thread_pool::help_while_waiting(
                &|| !self.lock().done.is_empty(),
                None,
                deadline,
            )
            .is_some()
            {
                continue;
            }
            park_until(deadline);
        }
    }
}

fn park_until(deadline: Option<Instant>) {
    match deadline {
        None => thread::park(),
        Some(deadline) => {
            let now = Instant::now();
            if deadline > now {
                thread::park_timeout(deadline - now);
            }
        }
    }
}
