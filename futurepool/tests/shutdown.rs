//! Shutting a pool down (submit after shutdown, repeated shutdowns), ported from CPython's
//! `test_concurrent_futures/test_shutdown.py`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};

use futurepool::{Shutdown, TaskError, ThreadPool};

/// Blocks the pool's only worker until the returned sender is dropped or sent to.
fn occupy_the_worker(pool: &ThreadPool) -> (futurepool::Task<()>, mpsc::Sender<()>) {
    let (started_tx, started) = mpsc::channel();
    let (release, released) = mpsc::channel::<()>();
    let task = pool.submit(move || {
        started_tx.send(()).unwrap();
        let _ = released.recv();
    });
    started.recv().unwrap();
    (task, release)
}

#[test]
fn submit_after_shutdown_returns_a_task_ended_with_shut_down() {
    // CPython: test_run_after_shutdown (there it raises; here the task says why).
    let pool = ThreadPool::new(2);
    pool.shutdown(Shutdown::default());
    let task = pool.submit(|| 1);
    assert!(task.is_done());
    assert_eq!(task.result(), Err(TaskError::ShutDown));
    let fallible = pool.submit_fallible(|| Ok::<u8, String>(1));
    assert_eq!(fallible.result(), Err(TaskError::ShutDown));
}

#[test]
fn shutdown_with_cancel_pending_cancels_every_queued_task() {
    // CPython: test_cancel_futures (with 50 queued tasks).
    let pool = ThreadPool::new(1);
    let (running, release) = occupy_the_worker(&pool);
    let ran = Arc::new(AtomicUsize::new(0));
    let queued: Vec<_> = (0..50)
        .map(|_| {
            let ran = Arc::clone(&ran);
            pool.submit(move || {
                ran.fetch_add(1, Ordering::SeqCst);
            })
        })
        .collect();
    pool.shutdown(Shutdown::default().wait(false).cancel_pending(true));
    // Cancelled at once, not when the worker gets to them.
    assert!(queued.iter().all(|t| t.is_cancelled()));
    assert!(running.is_running(), "running tasks are not interrupted");
    drop(release);
    pool.shutdown(Shutdown::default());
    assert_eq!(running.result(), Ok(()));
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    assert!(queued
        .iter()
        .all(|t| t.result() == Err(TaskError::Cancelled)));
}

#[test]
fn shutdown_without_cancel_runs_every_queued_task() {
    let pool = ThreadPool::new(1);
    let (_running, release) = occupy_the_worker(&pool);
    let queued: Vec<_> = (0..50).map(|i| pool.submit(move || i)).collect();
    pool.shutdown(Shutdown::default().wait(false));
    drop(release);
    pool.shutdown(Shutdown::default());
    let values: Vec<i32> = queued.iter().map(|t| t.result().unwrap()).collect();
    assert_eq!(values, (0..50).collect::<Vec<_>>());
}

#[test]
fn shutdown_can_be_called_many_times() {
    // CPython: test_shutdown_race_issue12456 and friends.
    let pool = ThreadPool::new(2);
    let task = pool.submit(|| 1);
    task.wait();
    pool.shutdown(Shutdown::default().wait(false));
    pool.shutdown(Shutdown::default().cancel_pending(true));
    pool.shutdown(Shutdown::default());
    assert_eq!(task.result(), Ok(1));
    assert_eq!(pool.worker_count(), 0);
}

#[test]
fn shutdown_with_wait_joins_the_workers() {
    let pool = ThreadPool::new(3);
    let tasks: Vec<_> = (0..3).map(|i| pool.submit(move || i)).collect();
    pool.shutdown(Shutdown::default());
    assert_eq!(pool.worker_count(), 0);
    assert!(tasks.iter().all(|t| t.is_done()));
}

#[test]
fn dropping_the_pool_waits_for_every_accepted_task() {
    // CPython: test_context_manager_shutdown / test_interpreter_shutdown, without the interpreter.
    let finished = Arc::new(AtomicUsize::new(0));
    let pool = ThreadPool::new(2);
    for _ in 0..100 {
        let finished = Arc::clone(&finished);
        // Handles dropped at once: the work still runs.
        pool.submit(move || {
            std::thread::yield_now();
            finished.fetch_add(1, Ordering::SeqCst);
        });
    }
    drop(pool);
    assert_eq!(finished.load(Ordering::SeqCst), 100);
}

#[test]
fn a_task_can_shut_its_own_pool_down_without_deadlock() {
    let pool = Arc::new(ThreadPool::new(2));
    let inner = Arc::clone(&pool);
    let task = pool.submit(move || {
        inner.shutdown(Shutdown::default());
        "done"
    });
    assert_eq!(task.result(), Ok("done"));
    assert_eq!(pool.submit(|| "late").result(), Err(TaskError::ShutDown));
}

#[test]
fn concurrent_waiting_shutdowns_both_return_after_the_workers_exit() {
    let pool = ThreadPool::new(2);
    let (running, release) = occupy_the_worker(&pool);
    std::thread::scope(|scope| {
        let a = scope.spawn(|| {
            pool.shutdown(Shutdown::default());
            running.is_done()
        });
        let b = scope.spawn(|| {
            pool.shutdown(Shutdown::default());
            running.is_done()
        });
        drop(release);
        assert!(a.join().unwrap() && b.join().unwrap());
    });
}

#[test]
fn cancel_pending_runs_the_cancelled_tasks_callbacks_in_the_caller() {
    let pool = ThreadPool::new(1);
    let (_running, release) = occupy_the_worker(&pool);
    let cancelled_in = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
    for _ in 0..3 {
        let cancelled_in = Arc::clone(&cancelled_in);
        pool.submit(|| ()).add_done_callback(move |task| {
            assert!(task.is_cancelled());
            let name = std::thread::current().name().map(String::from);
            cancelled_in.0.lock().unwrap().push(name);
        });
    }
    pool.shutdown(Shutdown::default().wait(false).cancel_pending(true));
    let names = cancelled_in.0.lock().unwrap().clone();
    let me = std::thread::current().name().map(String::from);
    assert_eq!(names, vec![me; 3]);
    drop(release);
}
