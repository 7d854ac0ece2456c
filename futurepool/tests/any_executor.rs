//! `AnyExecutor`: the pool chosen at run time behaves exactly as that pool (issue 12, friction:
//! "`Executor` cannot be a trait object").

mod support;

use std::time::Duration;

use futurepool::{AnyExecutor, Executor, ProcessPool, Shutdown, TaskError, ThreadPool};

fn square(n: u64) -> u64 {
    n * n
}
/// Blocks until `path` exists: a gate the test opens, across processes.
fn wait_for(path: String) -> bool {
    while !std::path::Path::new(&path).exists() {
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}
fn checked(n: i64) -> Result<i64, String> {
    if n < 0 {
        Err(format!("{n} is negative"))
    } else {
        Ok(n)
    }
}
futurepool::register!(square, wait_for, checked);
futurepool::test_support!();

const LIMIT: Duration = Duration::from_secs(120);

/// What a program would do with a command-line flag.
fn choose(processes: bool) -> AnyExecutor {
    if processes {
        ProcessPool::new(1).unwrap().into()
    } else {
        ThreadPool::new(1).into()
    }
}

#[test]
fn either_backend_chosen_at_run_time_runs_submit_map_and_fallible() {
    support::within(LIMIT, "AnyExecutor on both backends", || {
        for processes in [false, true] {
            let pool = choose(processes);
            assert_eq!(
                matches!(pool, AnyExecutor::Processes(_)),
                processes,
                "{pool:?}"
            );
            assert_eq!(pool.submit_fn(square, 7).result(), Ok(49));
            let squares: Vec<u64> = pool.map_fn(square, 0..5).map(Result::unwrap).collect();
            assert_eq!(squares, [0, 1, 4, 9, 16]);
            assert_eq!(
                pool.submit_fallible_fn(checked, -1).result(),
                Err(TaskError::Failed("-1 is negative".to_string()))
            );
        }
    });
}

#[test]
fn a_queued_task_cancels_and_shutdown_refuses_as_on_the_pool_itself() {
    support::within(LIMIT, "cancel and shutdown through AnyExecutor", || {
        for processes in [false, true] {
            let pool = choose(processes);
            let gate = std::env::temp_dir().join(format!(
                "futurepool-any-executor-{}-{processes}",
                std::process::id()
            ));
            let _ = std::fs::remove_file(&gate);
            let busy = pool.submit_fn(wait_for, gate.to_string_lossy().into_owned());
            // The only worker is held (or starting). A process pool pipelines up to 64 calls
            // into a worker's pipe (those count as started), so the last of 200 is still queued.
            let queued: Vec<_> = (0..200).map(|n| pool.submit_fn(square, n)).collect();
            let last = queued.last().unwrap();
            assert!(last.cancel(), "processes: {processes}");
            assert_eq!(last.result(), Err(TaskError::Cancelled));
            std::fs::write(&gate, b"open").unwrap();
            assert_eq!(busy.result(), Ok(true));
            let _ = std::fs::remove_file(&gate);
            assert_eq!(queued[0].result(), Ok(0));
            Executor::shutdown(&pool, Shutdown::default());
            assert_eq!(pool.submit_fn(square, 1).result(), Err(TaskError::ShutDown));
        }
    });
}
