//! A panic in one of the pool's own threads (a bug, injected here) must not hang the pool: the
//! pool notices and fails what that thread owned. Real worker processes: this test binary is
//! re-run as the worker (`test_support!` below).

use std::sync::mpsc;
use std::time::Duration;

use crate::error::TaskError;

use super::state::Fault;
use super::ProcessPool;

fn double(n: u64) -> u64 {
    n * 2
}
fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}
fn pid(_: ()) -> u32 {
    std::process::id()
}
/// Closes the worker's answer descriptor, then sleeps.
fn close_answers(_: ()) -> u32 {
    // SAFETY: deliberately hostile; a plain system call on an integer.
    unsafe { libc::close(4) };
    std::thread::sleep(Duration::from_secs(60));
    0
}
crate::register!(double, sleep_ms, pid, close_answers);
crate::test_support!();

/// Runs `body` on its own thread; fails the test if it has not returned within a minute.
fn within<T: Send + 'static>(what: &str, body: impl FnOnce() -> T + Send + 'static) -> T {
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(crate::panic::catch(body));
    });
    match finished.recv_timeout(Duration::from_secs(60)) {
        Ok(Ok(value)) => value,
        Ok(Err(panic)) => panic!("{what}: {panic}"),
        Err(_) => panic!("hang: {what} did not finish within a minute"),
    }
}

/// Gone, or a zombie waiting to be reaped.
fn is_dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

fn pool_with(fault: Fault) -> ProcessPool {
    ProcessPool::builder()
        .max_workers(1)
        .inject_fault(fault)
        .build()
        .unwrap()
}

#[test]
fn writer_panic_fails_the_calls_it_held_and_the_pool_goes_on() {
    within("a panic on a writer thread", || {
        let pool = pool_with(Fault::Writer);
        let first = pool.submit(double, 1).result();
        assert!(first.is_err(), "{first:?}");
        // Its worker was killed; a fresh one (with a fresh writer) serves.
        assert_eq!(pool.submit(double, 2).result(), Ok(4));
        assert_eq!(pool.workers_started(), 2);
    });
}

#[test]
fn reader_panic_settles_its_worker_and_the_pool_goes_on() {
    within("a panic on a reader thread", || {
        let pool = pool_with(Fault::Reader);
        let first = pool.submit(double, 1).result();
        // Never received: requeued and run; received: lost with the worker the pool killed.
        assert!(
            matches!(first, Ok(2) | Err(TaskError::WorkerLost(_))),
            "{first:?}"
        );
        assert_eq!(pool.submit(double, 2).result(), Ok(4));
    });
}

#[test]
fn supervisor_panic_breaks_the_pool_instead_of_hanging_it() {
    within("a panic on the supervisor thread", || {
        let pool = pool_with(Fault::Supervisor);
        // A time-limited call wakes the supervisor to time it: the fault strikes then.
        let running = pool.submit_with_time_limit(sleep_ms, 60_000, Some(Duration::from_secs(50)));
        let queued = pool.submit(double, 1);
        assert!(
            matches!(running.result(), Err(TaskError::WorkerLost(_))),
            "the worker is killed"
        );
        assert!(matches!(queued.result(), Err(TaskError::PoolBroken(_))));
        match pool.submit(double, 2).result() {
            Err(TaskError::PoolBroken(reason)) => {
                assert!(reason.as_str().contains("supervisor"), "{reason}")
            }
            other => panic!("expected a broken pool, got {other:?}"),
        }
        drop(pool); // returns: the supervisor still ends the pool
    });
}

#[test]
fn without_pidfds_deaths_time_limits_and_closed_pipes_are_still_handled() {
    within("a pool on a kernel without pidfds", || {
        let pool = pool_with(Fault::NoPidfd);
        let worker = pool.submit(pid, ()).result().unwrap();
        // SAFETY: SIGKILL to the pool's own idle worker.
        unsafe { libc::kill(worker as libc::pid_t, libc::SIGKILL) };
        // Dead (a zombie until the pool reaps it) before the next call is sent: it cannot have
        // received it, and the pool, noticing within its polling interval, sends it elsewhere.
        while !is_dead(worker) {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(
            pool.submit(double, 2).result(),
            Ok(4),
            "a new worker serves"
        );
        let limit = Duration::from_millis(300);
        let slow = pool.submit_with_time_limit(sleep_ms, 60_000, Some(limit));
        assert_eq!(slow.result(), Err(TaskError::TimeLimit(limit)));
        let wrecked = pool.submit(close_answers, ());
        assert!(matches!(wrecked.result(), Err(TaskError::WorkerLost(_))));
        assert_eq!(pool.submit(double, 3).result(), Ok(6));
        drop(pool);
    });
}
