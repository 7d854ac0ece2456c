//! The task handle (semantics F1–F6), ported from CPython's `test_concurrent_futures/test_future.py`.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;
use std::time::Duration;

use futurepool::{Task, TaskError, ThreadPool};

/// A pool of one worker held busy, so that what is submitted next stays pending until released.
struct Held {
    pool: ThreadPool,
    running: Task<()>,
    release: mpsc::Sender<()>,
}

fn held_pool() -> Held {
    let pool = ThreadPool::new(1);
    let (started_tx, started) = mpsc::channel();
    let (release, released) = mpsc::channel::<()>();
    let running = pool.submit(move || {
        started_tx.send(()).unwrap();
        let _ = released.recv();
    });
    started.recv().unwrap();
    Held {
        pool,
        running,
        release,
    }
}

#[test]
fn cancel_a_pending_task() {
    let held = held_pool();
    let pending = held.pool.submit(|| 1);
    assert!(!pending.is_done() && !pending.is_running() && !pending.is_cancelled());
    assert!(pending.cancel());
    assert!(pending.is_cancelled() && pending.is_done() && !pending.is_running());
    assert_eq!(pending.result(), Err(TaskError::Cancelled));
    held.release.send(()).unwrap();
}

#[test]
fn cancel_an_already_cancelled_task_returns_true() {
    let held = held_pool();
    let pending = held.pool.submit(|| 1);
    assert!(pending.cancel());
    assert!(pending.cancel());
    held.release.send(()).unwrap();
}

#[test]
fn cancel_a_running_task_returns_false_and_it_finishes() {
    let held = held_pool();
    assert!(held.running.is_running());
    assert!(!held.running.cancel());
    assert!(held.running.is_running() && !held.running.is_cancelled());
    held.release.send(()).unwrap();
    assert_eq!(held.running.result(), Ok(()));
}

#[test]
fn cancel_a_finished_task_returns_false() {
    let pool = ThreadPool::new(1);
    let ok = pool.submit(|| 1);
    let failed = pool.submit_fallible(|| Err::<(), _>("no"));
    ok.wait();
    failed.wait();
    assert!(!ok.cancel() && !failed.cancel());
    assert_eq!(ok.result(), Ok(1));
    assert_eq!(failed.result(), Err(TaskError::Failed("no")));
}

#[test]
fn a_cancelled_task_never_runs() {
    let held = held_pool();
    let ran = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&ran);
    let task = held
        .pool
        .submit(move || counter.fetch_add(1, Ordering::SeqCst));
    task.cancel();
    held.release.send(()).unwrap();
    drop(held.pool); // joins: the worker has passed the cancelled job
    assert_eq!(ran.load(Ordering::SeqCst), 0);
}

#[test]
fn cancel_wakes_every_waiter() {
    let held = held_pool();
    let pending = held.pool.submit(|| 1);
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let task = pending.clone();
            std::thread::spawn(move || task.result())
        })
        .collect();
    pending.cancel();
    for waiter in waiters {
        assert_eq!(waiter.join().unwrap(), Err(TaskError::Cancelled));
    }
    held.release.send(()).unwrap();
}

#[test]
fn result_timeout_on_an_unfinished_task_times_out_and_leaves_it_alone() {
    let held = held_pool();
    assert_eq!(
        held.running.result_timeout(Duration::from_millis(5)),
        Err(TaskError::Timeout)
    );
    assert!(held.running.is_running());
    held.release.send(()).unwrap();
    assert_eq!(held.running.result_timeout(Duration::from_secs(60)), Ok(()));
}

#[test]
fn result_is_readable_many_times_from_every_clone() {
    let pool = ThreadPool::new(1);
    let task = pool.submit(|| vec![1, 2, 3]);
    let clone = task.clone();
    assert_eq!(task.result(), Ok(vec![1, 2, 3]));
    assert_eq!(clone.result(), Ok(vec![1, 2, 3]));
    assert_eq!(task.result_ref(), Ok(&vec![1, 2, 3]));
}

#[test]
fn a_panic_carries_its_message() {
    let pool = ThreadPool::new(1);
    let task = pool.submit(|| -> () { panic!("index {} out of range", 7) });
    let error = task.result().unwrap_err();
    assert!(error.is_panic() && error.is_failure());
    assert!(
        error.to_string().contains("index 7 out of range"),
        "{error}"
    );
}

/// Adds a callback to a done task and returns the outcome it saw, if it ran before
/// `add_done_callback` returned, in this very thread.
fn outcome_seen_by_a_callback_at_once<T, E>(task: &Task<T, E>) -> Option<Result<T, TaskError<E>>>
where
    T: Clone + Send + Sync + 'static,
    E: Clone + Send + Sync + 'static,
{
    let me = std::thread::current().id();
    let seen = Arc::new(Mutex::new(None));
    let slot = Arc::clone(&seen);
    task.add_done_callback(move |t| {
        if std::thread::current().id() == me {
            *slot.lock().unwrap() = t.try_result();
        }
    });
    let outcome = seen.lock().unwrap().take();
    outcome
}

#[test]
fn callback_added_to_a_done_task_runs_at_once_in_the_caller() {
    // CPython: test_done_callback_already_successful / _failed / _cancelled.
    let pool = ThreadPool::new(1);
    let ok = pool.submit(|| 5);
    ok.wait();
    assert_eq!(outcome_seen_by_a_callback_at_once(&ok), Some(Ok(5)));

    let failed = pool.submit_fallible(|| Err::<i32, _>("bad"));
    failed.wait();
    assert_eq!(
        outcome_seen_by_a_callback_at_once(&failed),
        Some(Err(TaskError::Failed("bad")))
    );

    let held = held_pool();
    let cancelled = held.pool.submit(|| 0);
    cancelled.cancel();
    assert_eq!(
        outcome_seen_by_a_callback_at_once(&cancelled),
        Some(Err(TaskError::Cancelled))
    );
    held.release.send(()).unwrap();
}

#[test]
fn callbacks_run_once_in_registration_order_in_the_completing_thread() {
    let held = held_pool();
    let task = held.pool.submit(|| 1);
    let order = Arc::new(Mutex::new(Vec::new()));
    for n in 0..5 {
        let order = Arc::clone(&order);
        task.add_done_callback(move |_| {
            let thread = std::thread::current().name().unwrap().to_string();
            order.lock().unwrap().push((n, thread));
        });
    }
    held.release.send(()).unwrap();
    drop(held.pool);
    let order = order.lock().unwrap();
    assert_eq!(
        order.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        [0, 1, 2, 3, 4]
    );
    let worker = &order[0].1;
    assert!(
        worker.starts_with("futurepool-") && worker.ends_with("-0"),
        "{worker}"
    );
    assert!(order.iter().all(|(_, thread)| thread == worker));
}

#[test]
fn a_panicking_callback_is_caught_and_later_callbacks_still_run() {
    // CPython: test_done_callback_raises.
    let held = held_pool();
    let task = held.pool.submit(|| 1);
    let later_ran = Arc::new(AtomicUsize::new(0));
    task.add_done_callback(|_| panic!("callback bug"));
    let counter = Arc::clone(&later_ran);
    task.add_done_callback(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    held.release.send(()).unwrap();
    assert_eq!(task.result(), Ok(1));
    drop(held.pool);
    assert_eq!(later_ran.load(Ordering::SeqCst), 1);
    // The worker survived the panicking callback.
    let pool = ThreadPool::new(1);
    let task = pool.submit(|| 2);
    task.add_done_callback(|_| panic!("again"));
    assert_eq!(task.result(), Ok(2));
    assert_eq!(pool.submit(|| 3).result(), Ok(3));
}

#[test]
fn dropping_the_handle_does_not_cancel_the_work() {
    let pool = ThreadPool::new(1);
    let (tx, rx) = mpsc::channel();
    drop(pool.submit(move || tx.send("ran").unwrap()));
    assert_eq!(rx.recv(), Ok("ran"));
}

#[test]
fn predicates_agree_with_each_other_at_every_instant() {
    // F3: is_done == finished or cancelled; never running and done at once. The three calls are
    // three instants, so read them in an order where a task moving on between reads cannot make
    // a correct answer look wrong: done and cancelled are terminal, so `cancelled` read first must
    // still be `done` read next, and `done` read before `running` rules running out.
    let pool = ThreadPool::new(2);
    let tasks: Vec<_> = (0..200).map(|i| pool.submit(move || i)).collect();
    for _ in 0..50 {
        for task in &tasks {
            let cancelled = task.is_cancelled();
            let done = task.is_done();
            let running = task.is_running();
            assert!(!cancelled || done, "a cancelled task is done");
            assert!(!(done && running), "a done task is not running");
        }
    }
    for (i, task) in tasks.iter().enumerate() {
        assert_eq!(task.result(), Ok(i));
    }
}

struct Unparker(Thread);

impl Wake for Unparker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// The smallest executor of one future: poll, park until woken, repeat.
fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let waker = Waker::from(Arc::new(Unparker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        std::thread::park();
    }
}

#[test]
fn a_task_can_be_awaited() {
    let pool = ThreadPool::new(2);
    let (release, released) = mpsc::channel::<()>();
    let slow = pool.submit(move || {
        released.recv().unwrap();
        20
    });
    let quick = pool.submit(|| 22);
    let releaser = std::thread::spawn(move || release.send(()).unwrap());
    let sum = block_on(async move { slow.await.unwrap() + quick.await.unwrap() });
    assert_eq!(sum, 42);
    releaser.join().unwrap();
}

#[test]
fn awaiting_a_cancelled_task_gives_cancelled() {
    let held = held_pool();
    let task = held.pool.submit(|| 1);
    task.cancel();
    assert_eq!(
        block_on(async move { task.await }),
        Err(TaskError::Cancelled)
    );
    held.release.send(()).unwrap();
}
