//! Scoped tasks: closures that borrow from the caller's stack, all finished before
//! [`ThreadPool::scope`] returns (what `std::thread::scope` and `rayon::scope` give threads).
//!
//! The rule that makes the borrowing sound: **`scope` returns (or unwinds) only once every
//! closure submitted through its [`Scope`] has been dropped** — run to completion, panicked,
//! cancelled while queued, or refused by a pool that shut down. Each closure is wrapped with a
//! [`Release`] that is dropped right after the closure and its captures, whichever way the
//! closure goes; the scope counts the releases still outstanding and waits for zero, also when
//! its body panics. A task's value is owned (`T: 'static`), so the handles are ordinary
//! [`Task`]s: one that outlives the scope holds no borrow, only a finished outcome.
//!
//! A closure is dropped a moment *before* its task is resolved (the worker publishes the outcome
//! after the closure returns) and possibly long *after* (a task cancelled while queued is done at
//! once, its closure dropped when a worker reaches it). So each task counts twice on the latch:
//! once for its closure, once for its outcome (the latch listens to the task like `wait` does),
//! and when `scope` returns every task is done *and* every closure is gone.

use std::convert::Infallible;
use std::fmt;
use std::marker::PhantomData;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crate::map::Map;
use crate::task::{Job, Notify, Task};

use super::shared::Shared;
use super::ThreadPool;

/// Submits tasks that may borrow from the stack around [`ThreadPool::scope`]; see there.
///
/// A `&Scope` can be passed into the scope's own tasks, so they can submit more scoped tasks
/// (nested parallelism); it can never leave the scope.
pub struct Scope<'scope, 'env: 'scope> {
    shared: Arc<Shared>,
    latch: Arc<Latch>,
    /// Invariant in `'scope`, as in `std::thread::Scope`: no caller can shrink or stretch it.
    scope: PhantomData<&'scope mut &'scope ()>,
    env: PhantomData<&'env mut &'env ()>,
}

/// How many of a scope's closures are not yet dropped plus how many of its tasks are not yet done,
/// and the signal when nothing is left.
#[derive(Default)]
struct Latch {
    state: Mutex<LatchState>,
    all_released: Condvar,
}

#[derive(Default)]
struct LatchState {
    outstanding: usize,
    /// A worker of the pool waiting for the scope while it runs the pool's jobs: unparked, not
    /// signalled (see [`Latch::wait`]).
    helper: Option<std::thread::Thread>,
}

impl Latch {
    fn lock(&self) -> MutexGuard<'_, LatchState> {
        // Only the counter changes under this lock; a poisoned one still holds a valid count.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn acquire(&self, n: usize) {
        self.lock().outstanding += n;
    }

    fn release(&self) {
        let helper = {
            let mut state = self.lock();
            state.outstanding -= 1;
            if state.outstanding > 0 {
                return;
            }
            self.all_released.notify_all();
            state.helper.take()
        };
        if let Some(helper) = helper {
            helper.unpark();
        }
    }

    /// Blocks until every closure is dropped and every task is done. Unbounded by design: the
    /// scope's borrows are only safe to end once the closures are gone, and the closures are the
    /// caller's own code. On a worker of a thread pool, it runs that pool's queued jobs meanwhile
    /// (help-while-waiting), so a scope opened inside a task of its own pool does not wait for
    /// itself.
    fn wait(&self) {
        {
            let mut state = self.lock();
            if state.outstanding == 0 {
                return;
            }
            // Registered under the lock `release` takes: the last release finds it and unparks.
            state.helper = Some(std::thread::current());
        }
        if super::help_while_waiting(&|| self.lock().outstanding == 0, None, None).is_some() {
            return;
        }
        let mut state = self.lock();
        state.helper = None;
        while state.outstanding > 0 {
            state = self
                .all_released
                .wait(state)
                .unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// A task of the scope is done (finished or cancelled).
impl Notify for Latch {
    fn notify(&self, _key: usize) {
        self.release();
    }
}

/// Tells the latch one closure is gone. Always the *last* thing a scoped closure drops.
struct Release(Arc<Latch>);

impl Drop for Release {
    fn drop(&mut self) {
        self.0.release();
    }
}

/// A scoped closure and its release. Fields drop in declaration order, so when the closure is
/// dropped without running (cancelled, refused), its captures go before the release.
struct Scoped<F> {
    f: F,
    release: Release,
}

impl<F: FnOnce() -> R, R> Scoped<F> {
    fn run(self) -> R {
        let Scoped { f, release } = self;
        // `f`'s captures are dropped when it returns, or while it unwinds: either way before
        // `release`, which is dropped on return or by the same unwinding.
        let outcome = f();
        drop(release);
        outcome
    }
}

impl<'scope, 'env> Scope<'scope, 'env> {
    /// Runs `f` on the pool; `f` may borrow anything that outlives the scope. Returns its task, an
    /// ordinary [`Task`] (wait on it, `as_completed`, callbacks, ...).
    ///
    /// The value must be owned (`'static`): a task cannot hand back a borrow (return an index or
    /// a range into the borrowed data instead). Refused like [`ThreadPool::submit`] after
    /// shutdown; a refused closure is dropped at once.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = futurepool::ThreadPool::new(2);
    /// let words = vec!["alpha", "beta", "gamma"];
    /// let longest = pool.scope(|s| {
    ///     let task = s.submit(|| words.iter().map(|w| w.len()).max());
    ///     task.result().unwrap()
    /// });
    /// assert_eq!(longest, Some(5));
    /// ```
    pub fn submit<T, F>(&'scope self, f: F) -> Task<T>
    where
        F: FnOnce() -> T + Send + 'scope,
        T: Send + Sync + 'static,
    {
        self.submit_fallible(move || Ok::<T, Infallible>(f()))
    }

    /// [`submit`](Scope::submit) for a closure returning `Result`: an `Err(e)` becomes
    /// [`TaskError::Failed(e)`](crate::TaskError::Failed), as with
    /// [`ThreadPool::submit_fallible`].
    ///
    /// # Examples
    ///
    /// ```
    /// use futurepool::TaskError;
    ///
    /// let pool = futurepool::ThreadPool::new(2);
    /// let text = String::from("12a");
    /// pool.scope(|s| {
    ///     let parsed = s.submit_fallible(|| text.parse::<i32>());
    ///     assert!(matches!(parsed.result(), Err(TaskError::Failed(_))));
    /// });
    /// ```
    pub fn submit_fallible<T, E, F>(&'scope self, f: F) -> Task<T, E>
    where
        F: FnOnce() -> Result<T, E> + Send + 'scope,
        T: Send + Sync + 'static,
        E: Send + Sync + 'static,
    {
        // One for the closure, one for the outcome (see the module docs).
        self.latch.acquire(2);
        let scoped = Scoped {
            f,
            release: Release(Arc::clone(&self.latch)),
        };
        // `scoped.run()` captures `scoped` whole (not field by field), so its drop order holds.
        let closure: Box<dyn FnOnce() -> Result<T, E> + Send + 'scope> =
            Box::new(move || scoped.run());
        // SAFETY: only the lifetime changes (same type, same layout: a boxed trait object). The
        // closure may reach `'scope` borrows until it is dropped, and it is dropped before
        // `ThreadPool::scope` returns or unwinds: its `Release` is dropped after its captures (see
        // `Scoped`) and `scope` waits for every release. A pool drops every closure it accepts
        // (runs, cancels or refuses it), so nothing can keep one alive past the scope, and the
        // task's value is `'static`, so no borrow reaches the handle.
        let closure: Box<dyn FnOnce() -> Result<T, E> + Send + 'static> =
            unsafe { std::mem::transmute(closure) };
        let (task, job) = Job::new(closure);
        let latch: Arc<dyn Notify> = self.latch.clone();
        if task.register_notify(latch, 0).is_none() {
            // Cannot happen (nobody has the job yet), but a missed count would hang the scope.
            self.latch.release();
        }
        self.shared.submit(job);
        task
    }

    /// Applies `f` to every input on the pool, inputs and `f` borrowing from around the scope,
    /// and yields the results in input order: a [`Map`], lazy and bounded like
    /// [`ThreadPool::map`] (dropping it cancels what has not started).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = futurepool::ThreadPool::new(2);
    /// let items = vec![String::from("a"), String::from("bcd")];
    /// let scale = 10;
    /// let sizes: Vec<usize> = pool.scope(|s| {
    ///     s.map(|item: &String| item.len() * scale, &items).map(Result::unwrap).collect()
    /// });
    /// assert_eq!(sizes, [10, 30]);
    /// ```
    pub fn map<I, F, T>(
        &'scope self,
        f: F,
        inputs: I,
    ) -> Map<I::IntoIter, impl FnMut(I::Item) -> Task<T> + use<'scope, 'env, I, F, T>, T>
    where
        I: IntoIterator,
        I::Item: Send + 'scope,
        F: Fn(I::Item) -> T + Send + Sync + 'scope,
        T: Send + Sync + 'static,
    {
        let f = Arc::new(f);
        let submit = move |item| {
            let f = Arc::clone(&f);
            self.submit(move || f(item))
        };
        Map::new(
            inputs.into_iter(),
            submit,
            2 * self.shared.config.max_workers,
        )
    }
}

impl fmt::Debug for Scope<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scope")
            .field("outstanding", &self.latch.lock().outstanding)
            .finish_non_exhaustive()
    }
}

impl ThreadPool {
    /// Runs `body` with a [`Scope`] whose tasks may borrow from the caller's stack, and returns
    /// once every one of them has finished (their closures dropped), like `std::thread::scope`.
    ///
    /// - Tasks submitted with [`Scope::submit`] or [`Scope::map`] borrow, even mutably, anything
    ///   that outlives the `scope` call; their handles are ordinary [`Task`]s.
    /// - If `body` panics, `scope` still waits for every task, then re-raises the panic.
    /// - A panicking task fails its handle with [`TaskError::Panicked`](crate::TaskError::Panicked)
    ///   (never unsoundness); `scope` itself does not re-raise it: read the handles.
    /// - A task cancelled while queued is dropped (with its borrows) before `scope` returns.
    ///
    /// `scope` blocks its caller until the tasks are done. Called from a task of the same pool,
    /// the waiting worker runs the pool's queued jobs meanwhile (see [`ThreadPool`]), so a scope
    /// inside a task does not wait for itself.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = futurepool::ThreadPool::new(2);
    /// let data: Vec<u64> = (1..=100).collect();
    /// let (left, right) = data.split_at(50);
    /// let total = pool.scope(|s| {
    ///     let a = s.submit(|| left.iter().sum::<u64>());
    ///     let b = s.submit(|| right.iter().sum::<u64>());
    ///     a.result().unwrap() + b.result().unwrap()
    /// });
    /// assert_eq!(total, 5050);
    ///
    /// // Tasks may write to disjoint parts of a buffer.
    /// let mut buffer = vec![0u8; 8];
    /// let (low, high) = buffer.split_at_mut(4);
    /// pool.scope(|s| {
    ///     s.submit(|| low.fill(1));
    ///     s.submit(|| high.fill(2));
    /// });
    /// assert_eq!(buffer, [1, 1, 1, 1, 2, 2, 2, 2]);
    /// ```
    ///
    /// What the compiler refuses. A task cannot borrow what the scope's body owns (it is gone
    /// when the body returns, but the task may not have run yet):
    ///
    /// ```compile_fail
    /// let pool = futurepool::ThreadPool::new(1);
    /// pool.scope(|s| {
    ///     let local = vec![1, 2, 3];
    ///     s.submit(|| local.len());
    /// });
    /// ```
    ///
    /// A task cannot hand a borrow back (its value is owned, so a handle never carries a borrow):
    ///
    /// ```compile_fail
    /// let pool = futurepool::ThreadPool::new(1);
    /// let data = vec![1, 2, 3];
    /// pool.scope(|s| {
    ///     s.submit(|| &data[..1]);
    /// });
    /// ```
    ///
    /// Neither the scope nor a scoped map (which holds it) can leave the scope:
    ///
    /// ```compile_fail
    /// let pool = futurepool::ThreadPool::new(1);
    /// let scope = pool.scope(|s| s);
    /// ```
    ///
    /// ```compile_fail
    /// let pool = futurepool::ThreadPool::new(1);
    /// let items = vec![1u8, 2];
    /// let map = pool.scope(|s| s.map(|x: &u8| *x, &items));
    /// ```
    ///
    /// Two tasks cannot borrow the same data mutably:
    ///
    /// ```compile_fail
    /// let pool = futurepool::ThreadPool::new(2);
    /// let mut data = vec![1, 2, 3];
    /// pool.scope(|s| {
    ///     s.submit(|| data.push(4));
    ///     s.submit(|| data.push(5));
    /// });
    /// ```
    pub fn scope<'env, F, R>(&self, body: F) -> R
    where
        F: for<'scope> FnOnce(&'scope Scope<'scope, 'env>) -> R,
    {
        let scope = Scope {
            shared: Arc::clone(&self.shared),
            latch: Arc::new(Latch::default()),
            scope: PhantomData,
            env: PhantomData,
        };
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| body(&scope)));
        scope.latch.wait();
        match outcome {
            Ok(value) => value,
            Err(payload) => panic::resume_unwind(payload),
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    //! Small enough for miri:
    //! `MIRIFLAGS=-Zmiri-disable-isolation cargo +nightly miri test -p futurepool --lib thread_pool::scope`.

    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;
    use std::time::Duration;

    use crate::{Shutdown, TaskError, ThreadPool};

    const LIMIT: Duration = Duration::from_secs(120);

    /// The watchdog of `tests/support` (unit tests cannot reach it): a hang fails the test.
    fn within<R: Send + 'static>(what: &str, body: impl FnOnce() -> R + Send + 'static) -> R {
        let (done, finished) = mpsc::channel();
        let watched = std::thread::spawn(move || {
            let _ = done.send(body());
        });
        match finished.recv_timeout(Duration::from_secs(300)) {
            Ok(value) => {
                let _ = watched.join();
                value
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => match watched.join() {
                Err(panic) => std::panic::resume_unwind(panic),
                Ok(()) => unreachable!("the watched thread ended without sending its value"),
            },
            Err(mpsc::RecvTimeoutError::Timeout) => panic!("hang: {what} did not finish"),
        }
    }

    #[test]
    fn scoped_tasks_borrow_a_local_vec() {
        within("scoped_tasks_borrow_a_local_vec", || {
            let pool = ThreadPool::new(2);
            let data: Vec<u64> = (1..=64).collect();
            let half = data.len() / 2;
            let total = pool.scope(|s| {
                let low = s.submit(|| data[..half].iter().sum::<u64>());
                let high = s.submit(|| data[half..].iter().sum::<u64>());
                low.result_timeout(LIMIT).unwrap() + high.result_timeout(LIMIT).unwrap()
            });
            assert_eq!(total, 64 * 65 / 2);
        })
    }

    #[test]
    fn scoped_tasks_write_through_a_mut_split() {
        within("scoped_tasks_write_through_a_mut_split", || {
            let pool = ThreadPool::new(2);
            let mut buffer = [0u32; 16];
            let (low, high) = buffer.split_at_mut(8);
            pool.scope(|s| {
                // Handles ignored: the scope itself waits for both writes.
                s.submit(|| low.iter_mut().enumerate().for_each(|(i, x)| *x = i as u32));
                s.submit(|| high.iter_mut().for_each(|x| *x = 100));
            });
            assert_eq!(&buffer[..8], &[0, 1, 2, 3, 4, 5, 6, 7]);
            assert!(buffer[8..].iter().all(|&x| x == 100));
        })
    }

    #[test]
    fn a_panicking_scoped_task_fails_its_handle_and_the_others_finish() {
        within(
            "a_panicking_scoped_task_fails_its_handle_and_the_others_finish",
            || {
                let pool = ThreadPool::new(2);
                let counter = AtomicUsize::new(0);
                let (failed, ok) = pool.scope(|s| {
                    let failed = s.submit(|| -> u8 { panic!("scoped kaboom") });
                    let ok = s.submit(|| counter.fetch_add(1, Ordering::SeqCst));
                    (failed, ok)
                });
                // Both finished when `scope` returned; the handles outlive it, holding no borrow.
                assert!(failed.is_done() && ok.is_done());
                match failed.try_result() {
                    Some(Err(TaskError::Panicked(p))) => assert_eq!(p.message(), "scoped kaboom"),
                    other => panic!("expected a panic, got {other:?}"),
                }
                assert_eq!(ok.try_result(), Some(Ok(0)));
                assert_eq!(counter.load(Ordering::SeqCst), 1);
                assert_eq!(
                    pool.submit(|| 7).result_timeout(LIMIT),
                    Ok(7),
                    "pool lives on"
                );
            },
        )
    }

    #[test]
    fn a_panicking_scope_body_waits_for_its_tasks_then_unwinds() {
        within(
            "a_panicking_scope_body_waits_for_its_tasks_then_unwinds",
            || {
                let pool = ThreadPool::new(1);
                let written = AtomicUsize::new(0);
                let (release_tx, release_rx) = mpsc::channel::<()>();
                let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    let written = &written;
                    pool.scope(|s| {
                        s.submit(move || {
                            // Still running (and borrowing `written`) while the body unwinds.
                            release_rx.recv_timeout(LIMIT).unwrap();
                            written.store(1, Ordering::SeqCst);
                        });
                        // Released only now, so the task cannot have finished before the panic.
                        release_tx.send(()).unwrap();
                        panic!("body kaboom");
                    })
                }));
                let payload = unwound.expect_err("the body's panic is re-raised");
                assert_eq!(payload.downcast_ref::<&str>(), Some(&"body kaboom"));
                assert_eq!(
                    written.load(Ordering::SeqCst),
                    1,
                    "scope unwound before its task ended"
                );
            },
        )
    }

    /// A scoped task cancelled while queued never runs, and its closure (with its borrows) is
    /// dropped before `scope` returns, not whenever the worker reaches it afterwards.
    #[test]
    fn a_cancelled_scoped_task_is_dropped_before_scope_returns() {
        within(
            "a_cancelled_scoped_task_is_dropped_before_scope_returns",
            || {
                struct CountsDrop<'a>(&'a AtomicUsize);
                impl Drop for CountsDrop<'_> {
                    fn drop(&mut self) {
                        self.0.fetch_add(1, Ordering::SeqCst);
                    }
                }
                let pool = ThreadPool::new(1);
                let drops = AtomicUsize::new(0);
                let (release_tx, release_rx) = mpsc::channel::<()>();
                pool.scope(|s| {
                    let blocker = s.submit(move || release_rx.recv_timeout(LIMIT).is_ok());
                    let guard = CountsDrop(&drops);
                    let queued = s.submit(move || {
                        let _guard = guard;
                        unreachable!("a cancelled task never runs");
                    });
                    assert!(queued.cancel());
                    release_tx.send(()).unwrap();
                    assert_eq!(blocker.result_timeout(LIMIT), Ok(true));
                });
                assert_eq!(drops.load(Ordering::SeqCst), 1);
            },
        )
    }

    /// A closure is dropped just before its task is resolved: `scope` must wait for the outcome
    /// too, not only for the closures.
    #[test]
    fn every_scoped_task_is_done_when_scope_returns() {
        within("every_scoped_task_is_done_when_scope_returns", || {
            let pool = ThreadPool::new(2);
            let data = [3u8; 4];
            let tasks = pool.scope(|s| {
                (0..12)
                    .map(|i| s.submit(move || data[i % 4] as usize + i))
                    .collect::<Vec<_>>()
            });
            for (i, task) in tasks.iter().enumerate() {
                assert_eq!(task.try_result(), Some(Ok(3 + i)), "task {i}");
            }
        })
    }

    #[test]
    fn scoped_map_over_borrowed_items_keeps_input_order() {
        within("scoped_map_over_borrowed_items_keeps_input_order", || {
            let pool = ThreadPool::new(2);
            let items: Vec<String> = (0..6).map(|i| "x".repeat(i)).collect();
            let offset = 100;
            let lengths: Vec<usize> = pool.scope(|s| {
                s.map(|item: &String| item.len() + offset, &items)
                    .map(Result::unwrap)
                    .collect()
            });
            assert_eq!(lengths, [100, 101, 102, 103, 104, 105]);
        })
    }

    #[test]
    fn scoped_tasks_submit_scoped_tasks() {
        within("scoped_tasks_submit_scoped_tasks", || {
            let pool = ThreadPool::new(2);
            let hits = AtomicUsize::new(0);
            pool.scope(|s| {
                for _ in 0..3 {
                    s.submit(|| {
                        hits.fetch_add(1, Ordering::SeqCst);
                        s.submit(|| hits.fetch_add(10, Ordering::SeqCst));
                    });
                }
            });
            assert_eq!(hits.load(Ordering::SeqCst), 33);
        })
    }

    /// The scope's end is a helping wait: on the only worker of its own pool, it runs its own
    /// tasks instead of waiting for itself.
    #[test]
    fn a_scope_inside_a_task_of_its_own_one_worker_pool_completes() {
        within(
            "a_scope_inside_a_task_of_its_own_one_worker_pool_completes",
            || {
                let pool = std::sync::Arc::new(ThreadPool::new(1));
                let inner = std::sync::Arc::clone(&pool);
                let outer = pool.submit(move || {
                    let mut halves = [0u64; 2];
                    let data: Vec<u64> = (1..=10).collect();
                    let (a, b) = halves.split_at_mut(1);
                    inner.scope(|s| {
                        s.submit(|| a[0] = data[..5].iter().sum());
                        s.submit(|| b[0] = data[5..].iter().sum());
                    });
                    halves
                });
                assert_eq!(outer.result_timeout(LIMIT), Ok([15, 40]));
            },
        )
    }

    #[test]
    fn a_scope_on_a_shut_down_pool_refuses_and_returns() {
        within("a_scope_on_a_shut_down_pool_refuses_and_returns", || {
            let pool = ThreadPool::new(1);
            pool.shutdown(Shutdown::default());
            let data = [1, 2, 3];
            let refused = pool.scope(|s| s.submit(|| data.len()));
            assert_eq!(refused.try_result(), Some(Err(TaskError::ShutDown)));
        })
    }
}
