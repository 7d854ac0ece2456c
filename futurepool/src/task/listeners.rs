//! Who is told when a task becomes done: blocked threads, async wakers, multi-task waiters and
//! done-callbacks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Waker;

use crate::loom::thread::Thread;

use super::Task;

/// A done-callback, as registered with [`Task::add_done_callback`].
pub(crate) type Callback<T, E> = Box<dyn FnOnce(&Task<T, E>) + Send>;

/// Something that waits on many tasks at once (`wait`, `as_completed`) and is told, by key, which
/// of them became done.
pub(crate) trait Notify: Send + Sync {
    /// Called once per registration, from the thread that made the task done.
    fn notify(&self, key: usize);
}

pub(crate) enum Listener<T, E> {
    /// A thread blocked waiting for this task.
    Thread { id: u64, thread: Thread },
    /// An async task awaiting this one.
    Waker { id: u64, waker: Waker },
    /// A multi-task waiter, told `key` when this task is done.
    Notify {
        id: u64,
        sink: Arc<dyn Notify>,
        key: usize,
    },
    /// Runs after every waiter above has been woken.
    Callback(Callback<T, E>),
    /// What the running task reported of its progress (`progress.rs`); ended when it is done.
    Progress {
        id: u64,
        state: Arc<super::progress::ProgressState>,
    },
}

impl<T, E> Listener<T, E> {
    pub(crate) fn id(&self) -> Option<u64> {
        match self {
            Listener::Thread { id, .. }
            | Listener::Waker { id, .. }
            | Listener::Notify { id, .. }
            | Listener::Progress { id, .. } => Some(*id),
            Listener::Callback(_) => None,
        }
    }

    /// Wakes a waiter; hands a callback back so it can run after all waiters are awake.
    pub(crate) fn wake(self) -> Option<Callback<T, E>> {
        match self {
            Listener::Thread { thread, .. } => thread.unpark(),
            // A waker is an async runtime's code, and this may be a pool's own thread: a
            // panicking one must not take that thread down, nor stop the others being woken.
            Listener::Waker { waker, .. } => {
                if let Err(panic) = crate::panic::catch(|| waker.wake()) {
                    eprintln!("futurepool: an async waker panicked and was caught: {panic}");
                }
            }
            Listener::Notify { sink, key, .. } => sink.notify(key),
            Listener::Progress { state, .. } => state.end(),
            Listener::Callback(callback) => return Some(callback),
        }
        None
    }
}

/// A process-wide unique id for a listener registration, so it can be removed later.
pub(crate) fn next_listener_id() -> u64 {
    // Plain std atomic even under loom: ids only need uniqueness, not modelled ordering.
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}
