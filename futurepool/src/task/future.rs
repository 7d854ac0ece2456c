//! A task is a future: `.await` it from async code (Python needs `asyncio.wrap_future` for this),
//! or hand it to any combinator that takes a `Future` (`join_all`, `select`, `select!`, ...).
//!
//! Why `Future` on the handle itself, not `IntoFuture` to a separate type: combinators take
//! `impl Future`, and `.await` alone is not enough for them. A handle polled many times keeps one
//! waker registration, not one per poll, and dropping it removes that registration: the first poll
//! that has to wait boxes the handle's cell together with the registration's id
//! ([`Handle::Polled`]), so handles that are never awaited pay nothing for it.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::error::TaskError;

use super::listeners::{next_listener_id, Listener};
use super::{Handle, Polled, Task};

/// Polling a task waits for its outcome without blocking the thread: the same outcome
/// [`Task::result`] returns, once the task is done.
///
/// # Cancel safety
///
/// Dropping the future, or not polling it again (a `select!` branch that lost), only stops
/// *waiting*: the task goes on and its outcome stays readable from every other handle. Polling
/// again after completion returns the outcome again (a task's outcome can be read any number of
/// times), so a handle polled by reference (`&mut task`) inside a `select!` loop is safe too.
/// To stop the work itself, call [`Task::cancel`] (on a clone, if the handle was moved into the
/// combinator).
///
/// `futures::select!` takes only `FusedFuture`s: write `task.fuse()` (from `futures::FutureExt`)
/// as for any other plain future; `tokio::select!`, `join_all`, `select` and `select_all` take a
/// task as it is.
///
/// # Examples
///
/// `futures::future::join_all` and `select` take tasks directly:
///
/// ```
/// use futures::future::{join_all, select, Either};
/// use futurepool::ThreadPool;
///
/// let pool = ThreadPool::new(2);
/// futures::executor::block_on(async {
///     let tasks: Vec<_> = (1..=3u64).map(|n| pool.submit(move || n * 10)).collect();
///     let values: Vec<u64> = join_all(tasks).await.into_iter().map(Result::unwrap).collect();
///     assert_eq!(values, [10, 20, 30]);
///
///     let (release, gate) = std::sync::mpsc::channel::<()>();
///     let slow = pool.submit(move || gate.recv().is_ok());
///     let fast = pool.submit(|| true);
///     match select(slow.clone(), fast).await {
///         Either::Right((fast_value, _unfinished_slow)) => assert_eq!(fast_value, Ok(true)),
///         Either::Left(_) => unreachable!("`slow` waits for `release`"),
///     }
///     // Losing the race cancelled nothing: `slow` still runs and finishes.
///     release.send(()).unwrap();
///     assert_eq!(slow.await, Ok(true));
/// });
/// ```
impl<T: Clone, E: Clone> Future for Task<T, E> {
    type Output = Result<T, TaskError<E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // `Task` is `Unpin` (an `Arc` or a `Box`), so the pin guarantees nothing we need.
        let this = self.get_mut();
        if let Some(outcome) = this.outcome_now() {
            return Poll::Ready(outcome);
        }
        let refreshed = match &this.handle {
            Handle::Polled(polled) => this
                .core()
                .with_listener(polled.waker, |listener| {
                    if let Listener::Waker { waker, .. } = listener {
                        waker.clone_from(cx.waker());
                    }
                })
                .is_some(),
            Handle::Plain(_) => false,
        };
        if !refreshed {
            let id = next_listener_id();
            let listener = Listener::Waker {
                id,
                waker: cx.waker().clone(),
            };
            if this.core().register(listener).is_err() {
                // Done between our check and the registration.
                return Poll::Ready(this.outcome_now().expect("done"));
            }
            this.set_waker(id);
        }
        // Done after we registered: the waker may or may not have fired; answer now either way.
        match this.outcome_now() {
            Some(outcome) => Poll::Ready(outcome),
            None => Poll::Pending,
        }
    }
}

impl<T, E> Task<T, E> {
    /// Records `id` as this handle's waker registration (boxing the handle the first time).
    fn set_waker(&mut self, id: u64) {
        match &mut self.handle {
            Handle::Polled(polled) => polled.waker = id,
            Handle::Plain(cell) => {
                let cell = cell.clone();
                self.handle = Handle::Polled(Box::new(Polled { cell, waker: id }));
            }
        }
    }
}

impl<T, E> Drop for Task<T, E> {
    fn drop(&mut self) {
        if let Handle::Polled(polled) = &self.handle {
            self.unregister(polled.waker);
        }
    }
}
