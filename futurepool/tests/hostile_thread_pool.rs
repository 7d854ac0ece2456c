//! Hostile user code against the thread pool (issue 9, cases 15–17): callbacks that submit and
//! wait, tasks that shut their own pool down, and panics in `Drop` of values and captures. Every
//! test runs under a watchdog, so a hang fails the test that hung instead of stalling the run.

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier};
use std::time::Duration;

use futurepool::{Shutdown, TaskError, ThreadPool};
use support::within;

/// Far beyond what any of these tests needs on a loaded machine; only a hang gets there.
const LIMIT: Duration = Duration::from_secs(60);

/// A value whose `Drop` panics: the hostile part of case 17.
struct PanicsOnDrop(&'static str);

impl Drop for PanicsOnDrop {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("{}", self.0);
        }
    }
}

/// A closure the pool holds until the returned sender is sent to or dropped.
fn gate() -> (mpsc::Sender<()>, impl FnOnce() + Send + 'static) {
    let (release, released) = mpsc::channel::<()>();
    (release, move || {
        let _ = released.recv();
    })
}

// Case 15: user code that runs on a worker after the task's result is out (its callbacks) must not
// count the worker as idle, or a submit from there starts no thread and waits forever.

#[test]
fn a_done_callback_that_submits_to_its_pool_and_waits_completes() {
    within(LIMIT, "a callback submitting and waiting", || {
        let pool = Arc::new(ThreadPool::new(4));
        let (release, hold) = gate();
        let first = pool.submit(move || {
            hold();
            1
        });
        let (nested_tx, nested) = mpsc::channel();
        let inner = Arc::clone(&pool);
        first.add_done_callback(move |_| {
            let _ = nested_tx.send(inner.submit(|| 2).result());
        });
        release.send(()).unwrap();
        assert_eq!(nested.recv().unwrap(), Ok(2));
        assert_eq!(first.result(), Ok(1));
        assert!(
            pool.worker_count() <= 2,
            "one new thread for the nested task"
        );
    });
}

#[test]
fn a_done_callback_waiting_for_a_task_submitted_after_the_result_completes() {
    within(LIMIT, "a callback waiting for main's next task", || {
        for _ in 0..50 {
            let pool = ThreadPool::new(4);
            let (release, hold) = gate();
            let first = pool.submit(move || {
                hold();
                1
            });
            let (second_tx, second_rx) = mpsc::channel::<futurepool::Task<u32>>();
            let (seen_tx, seen) = mpsc::channel();
            first.add_done_callback(move |_| {
                let second = second_rx.recv().unwrap();
                let _ = seen_tx.send(second.result());
            });
            release.send(()).unwrap();
            // The result is out while the worker still runs the callback: the next submit must
            // not rely on that worker.
            assert_eq!(first.result(), Ok(1));
            let second = pool.submit(|| 2);
            second_tx.send(second.clone()).unwrap();
            assert_eq!(seen.recv().unwrap(), Ok(2));
            assert_eq!(second.result(), Ok(2));
        }
    });
}

#[test]
fn sequential_submits_still_reuse_one_thread_after_callbacks_ran() {
    within(LIMIT, "sequential submits", || {
        let pool = ThreadPool::new(4);
        for _ in 0..3 {
            pool.submit(|| ()).result().unwrap();
        }
        assert_eq!(pool.worker_count(), 1);
    });
}

#[test]
fn with_one_worker_a_callback_waiting_on_its_pool_runs_the_nested_task_itself() {
    // With max_workers = 1 the only worker is the one running the callback. It runs the nested
    // task itself while it waits (help-while-waiting, issue 16; thread pool README), so even a
    // bounded wait gets the value, well within its limit.
    within(LIMIT, "one worker, callback waiting", || {
        let pool = Arc::new(ThreadPool::new(1));
        let (release, hold) = gate();
        let first = pool.submit(hold);
        let (nested_tx, nested) = mpsc::channel();
        let inner = Arc::clone(&pool);
        first.add_done_callback(move |_| {
            let task = inner.submit(|| 3);
            let _ = nested_tx.send(task.result_timeout(Duration::from_secs(30)));
        });
        release.send(()).unwrap();
        assert_eq!(nested.recv().unwrap(), Ok(3));
        assert_eq!(pool.worker_count(), 1, "no thread beyond max_workers");
    });
}

// Case 16: shutdown(wait) from inside the pool's own tasks.

#[test]
fn a_task_and_main_both_calling_shutdown_wait_do_not_deadlock() {
    within(LIMIT, "task and main both in shutdown(wait)", || {
        for round in 0..20u64 {
            let pool = Arc::new(ThreadPool::new(2));
            let (started_tx, started) = mpsc::channel();
            let finished = Arc::new(AtomicBool::new(false));
            let inner = Arc::clone(&pool);
            let finished_in_task = Arc::clone(&finished);
            let task = pool.submit(move || {
                started_tx.send(()).unwrap();
                std::thread::sleep(Duration::from_micros(round * 100));
                inner.shutdown(Shutdown::default());
                finished_in_task.store(true, Ordering::SeqCst);
            });
            started.recv().unwrap();
            if round % 2 == 0 {
                std::thread::sleep(Duration::from_micros(round * 50));
            }
            pool.shutdown(Shutdown::default());
            assert!(
                finished.load(Ordering::SeqCst),
                "main's shutdown(wait) returned while the task that shut down still ran"
            );
            assert_eq!(task.result(), Ok(()));
        }
    });
}

#[test]
fn two_tasks_calling_shutdown_wait_do_not_deadlock() {
    within(LIMIT, "two tasks in shutdown(wait)", || {
        let pool = Arc::new(ThreadPool::new(2));
        let both = Arc::new(Barrier::new(2));
        let tasks: Vec<_> = (0..2)
            .map(|n| {
                let (inner, both) = (Arc::clone(&pool), Arc::clone(&both));
                pool.submit(move || {
                    both.wait();
                    inner.shutdown(Shutdown::default());
                    n
                })
            })
            .collect();
        assert_eq!(tasks[0].result(), Ok(0));
        assert_eq!(tasks[1].result(), Ok(1));
        drop(pool);
    });
}

#[test]
fn main_shutdown_wait_returns_only_after_a_task_that_shut_down_finishes() {
    within(LIMIT, "main's shutdown after a task's", || {
        let pool = Arc::new(ThreadPool::new(1));
        let (shut_tx, shut) = mpsc::channel();
        let finished = Arc::new(AtomicBool::new(false));
        let (inner, finished_in_task) = (Arc::clone(&pool), Arc::clone(&finished));
        let task = pool.submit(move || {
            inner.shutdown(Shutdown::default());
            shut_tx.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(300));
            finished_in_task.store(true, Ordering::SeqCst);
        });
        shut.recv().unwrap();
        pool.shutdown(Shutdown::default());
        assert!(
            finished.load(Ordering::SeqCst),
            "shutdown(wait) returned while a worker still ran its task"
        );
        assert!(task.is_done());
    });
}

#[test]
fn a_task_shutting_down_waits_for_the_other_workers() {
    within(
        LIMIT,
        "a task's shutdown(wait) waits for the others",
        || {
            let pool = Arc::new(ThreadPool::new(2));
            let (release, hold) = gate();
            let (started_tx, started) = mpsc::channel();
            let other = pool.submit(move || {
                started_tx.send(()).unwrap();
                hold();
            });
            started.recv().unwrap();
            let inner = Arc::clone(&pool);
            let other_in_task = other.clone();
            let shutter = pool.submit(move || {
                inner.shutdown(Shutdown::default());
                other_in_task.is_done()
            });
            std::thread::sleep(Duration::from_millis(100));
            assert!(!shutter.is_done(), "it waits while another worker runs");
            release.send(()).unwrap();
            assert_eq!(shutter.result(), Ok(true));
        },
    );
}

// Case 17: panics in user `Drop` code that runs on a worker.

#[test]
fn a_panic_in_drop_of_an_unwatched_tasks_value_leaves_the_worker_alive() {
    within(LIMIT, "next task after a value's Drop panicked", || {
        // One worker: had it died, nothing could run the next task.
        let pool = ThreadPool::new(1);
        let (release, hold) = gate();
        drop(pool.submit(move || {
            hold();
            PanicsOnDrop("value drop panic")
        }));
        release.send(()).unwrap();
        for n in 0..5 {
            assert_eq!(pool.submit(move || n).result(), Ok(n));
        }
        assert_eq!(pool.worker_count(), 1, "the same worker lived on");
    });
}

#[test]
fn a_panic_in_drop_of_an_unwatched_tasks_error_leaves_the_worker_alive() {
    within(LIMIT, "next task after an error's Drop panicked", || {
        let pool = ThreadPool::new(1);
        let (release, hold) = gate();
        drop(pool.submit_fallible(move || {
            hold();
            Err::<(), _>(PanicsOnDrop("error drop panic"))
        }));
        release.send(()).unwrap();
        assert_eq!(pool.submit(|| 7).result(), Ok(7));
    });
}

#[test]
fn a_panic_in_drop_of_a_cancelled_closures_captures_leaves_the_worker_alive() {
    within(LIMIT, "next task after captures' Drop panicked", || {
        let pool = ThreadPool::new(1);
        let (release, hold) = gate();
        let blocker = pool.submit(hold);
        let captured = PanicsOnDrop("capture drop panic");
        let cancelled = pool.submit(move || {
            let _keep = &captured;
        });
        assert!(cancelled.cancel());
        release.send(()).unwrap();
        assert_eq!(pool.submit(|| 8).result(), Ok(8));
        assert_eq!(blocker.result(), Ok(()));
        assert_eq!(cancelled.result(), Err(TaskError::Cancelled));
    });
}

#[test]
fn a_panic_in_drop_of_captures_during_cancel_pending_cancels_every_other_task() {
    within(
        LIMIT,
        "shutdown(cancel_pending) past a panicking Drop",
        || {
            let pool = ThreadPool::new(1);
            let (release, hold) = gate();
            let blocker = pool.submit(hold);
            while !blocker.is_running() {
                std::thread::yield_now();
            }
            let queued: Vec<_> = (0..5)
                .map(|n| {
                    let captured = (n == 1).then(|| PanicsOnDrop("capture drop panic"));
                    pool.submit(move || {
                        let _keep = &captured;
                    })
                })
                .collect();
            pool.shutdown(Shutdown::default().wait(false).cancel_pending(true));
            assert!(queued.iter().all(|t| t.is_cancelled()));
            release.send(()).unwrap();
            drop(pool);
            assert_eq!(blocker.result(), Ok(()));
        },
    );
}

#[test]
fn many_panicking_drops_never_lose_a_worker_or_a_task() {
    within(LIMIT, "panicking drops everywhere", || {
        let pool = ThreadPool::new(3);
        let ran = Arc::new(AtomicUsize::new(0));
        for n in 0..300 {
            let ran = Arc::clone(&ran);
            let captured = PanicsOnDrop("capture");
            let task = pool.submit(move || {
                let _keep = &captured;
                ran.fetch_add(1, Ordering::SeqCst);
                PanicsOnDrop("value")
            });
            if n % 3 == 0 {
                task.cancel();
            }
        }
        drop(pool);
        assert!(ran.load(Ordering::SeqCst) > 0);
    });
}

// The pool's last handle dropped on one of its own workers: its drop is a shutdown(wait) from
// inside the pool, which must neither join itself nor wait forever.

#[test]
fn a_callback_that_drops_the_last_pool_handle_does_not_hang() {
    within(LIMIT, "the last handle dropped in a callback", || {
        let pool = Arc::new(ThreadPool::new(2));
        let (release, hold) = gate();
        let task = pool.submit(hold);
        let (dropped_tx, dropped) = mpsc::channel();
        let last = Arc::clone(&pool);
        task.add_done_callback(move |_| {
            drop(last);
            dropped_tx.send(()).unwrap();
        });
        drop(pool);
        release.send(()).unwrap();
        dropped.recv().unwrap();
        assert_eq!(task.result(), Ok(()));
    });
}

#[test]
fn a_task_holding_the_last_pool_handle_does_not_hang() {
    within(LIMIT, "the last handle dropped in a task", || {
        let pool = Arc::new(ThreadPool::new(2));
        let (release, hold) = gate();
        let last = Arc::clone(&pool);
        let task = pool.submit(move || {
            hold();
            drop(last);
            "dropped"
        });
        drop(pool);
        release.send(()).unwrap();
        assert_eq!(task.result(), Ok("dropped"));
    });
}

// A waker is user code too (an async runtime's, or anyone's): one that panics must not stop the
// other waiters of the same task from being woken, nor kill the worker.

struct PanickingWaker;

impl std::task::Wake for PanickingWaker {
    fn wake(self: Arc<Self>) {
        panic!("waker panic");
    }
}

#[test]
fn a_panicking_waker_does_not_strand_the_tasks_other_waiters() {
    within(LIMIT, "waiters behind a panicking waker", || {
        use std::future::{Future, IntoFuture};
        let pool = ThreadPool::new(1);
        let (release, hold) = gate();
        let task = pool.submit(move || {
            hold();
            9
        });
        let waker = std::task::Waker::from(Arc::new(PanickingWaker));
        let mut future = std::pin::pin!(task.clone().into_future());
        assert!(future
            .as_mut()
            .poll(&mut std::task::Context::from_waker(&waker))
            .is_pending());
        let waiter = {
            let task = task.clone();
            std::thread::spawn(move || task.result())
        };
        // Let the waiter register behind the waker (it works either way).
        std::thread::sleep(Duration::from_millis(100));
        release.send(()).unwrap();
        assert_eq!(waiter.join().unwrap(), Ok(9));
        assert_eq!(pool.submit(|| 10).result(), Ok(10), "the worker lives on");
    });
}
