//! `.await` on a task from async code (Python needs `asyncio.wrap_future` for this).

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::error::TaskError;

use super::listeners::{next_listener_id, Listener};
use super::Task;

/// The future returned by `task.into_future()`, i.e. what `task.await` polls.
///
/// It resolves to the same outcome [`Task::result`] returns. Dropping it only stops waiting; the
/// task goes on.
///
/// # Examples
///
/// ```
/// # fn block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     use std::task::{Context, Poll, Waker};
/// #     let mut f = std::pin::pin!(f);
/// #     let mut cx = Context::from_waker(Waker::noop());
/// #     loop { if let Poll::Ready(v) = f.as_mut().poll(&mut cx) { return v; } std::thread::yield_now(); }
/// # }
/// let pool = futurepool::ThreadPool::new(2);
/// let task = pool.submit(|| 40 + 2);
/// let value = block_on(async move { task.await });
/// assert_eq!(value.unwrap(), 42);
/// ```
#[must_use = "futures do nothing unless polled"]
pub struct TaskFuture<T, E> {
    task: Task<T, E>,
    /// The registration of our waker on the task, once we had to wait.
    listener: Option<u64>,
}

impl<T: Clone, E: Clone> IntoFuture for Task<T, E> {
    type Output = Result<T, TaskError<E>>;
    type IntoFuture = TaskFuture<T, E>;

    fn into_future(self) -> TaskFuture<T, E> {
        TaskFuture {
            task: self,
            listener: None,
        }
    }
}

impl<T: Clone, E: Clone> Future for TaskFuture<T, E> {
    type Output = Result<T, TaskError<E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Some(outcome) = this.task.outcome_now() {
            return Poll::Ready(outcome);
        }
        let refreshed = this.listener.and_then(|id| {
            this.task.core().with_listener(id, |listener| {
                if let Listener::Waker { waker, .. } = listener {
                    waker.clone_from(cx.waker());
                }
            })
        });
        if refreshed.is_none() {
            let id = next_listener_id();
            let listener = Listener::Waker {
                id,
                waker: cx.waker().clone(),
            };
            if this.task.core().register(listener).is_err() {
                // Done between our check and the registration.
                return Poll::Ready(this.task.outcome_now().expect("done"));
            }
            this.listener = Some(id);
        }
        // Done after we registered: the waker may or may not have fired; answer now either way.
        match this.task.outcome_now() {
            Some(outcome) => Poll::Ready(outcome),
            None => Poll::Pending,
        }
    }
}

impl<T, E> Drop for TaskFuture<T, E> {
    fn drop(&mut self) {
        if let Some(id) = self.listener.take() {
            self.task.unregister(id);
        }
    }
}
