//! Issue 13 on processes: `Task::abort` of a running task kills its worker's process group and
//! replaces the worker; only that task ends `Cancelled`, never retried; the calls queued behind
//! it at that worker are requeued, not failed.

mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use futurepool::{ProcessPool, TaskError};
use support::within;

const LIMIT: Duration = Duration::from_secs(120);

fn double(n: u64) -> u64 {
    n * 2
}
fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}
/// Creates the file `path` (appending a line: a second run shows), then sleeps a minute.
fn mark_then_sleep(path: String) -> u64 {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    writeln!(file, "started {}", std::process::id()).unwrap();
    drop(file);
    std::thread::sleep(Duration::from_secs(60));
    0
}
futurepool::register!(double, sleep_ms, mark_then_sleep);
futurepool::test_support!();

fn marker(name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "futurepool-abort-{}-{name}-{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos()
    ));
    let _ = std::fs::remove_file(&path);
    path
}

fn wait_for(path: &std::path::Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !path.exists() {
        assert!(Instant::now() < deadline, "the task never started");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid as i32, 0) == 0 }
}

#[test]
fn abort_of_a_running_process_task_kills_its_worker_and_ends_only_it_cancelled() {
    within(LIMIT, "abort running process task", || {
        let pool = ProcessPool::new(1).unwrap();
        let path = marker("running");
        let task = pool.submit(mark_then_sleep, path.to_string_lossy().into_owned());
        // Queued behind it at the same worker (possibly already pipelined into its pipe): these
        // must be requeued to the replacement, not failed.
        let behind: Vec<_> = (0..20).map(|n| pool.submit(double, n)).collect();
        wait_for(&path);
        let workers = pool.worker_pids();
        assert_eq!(workers.len(), 1);
        assert!(!task.cancel(), "cancel keeps Python's meaning");
        let started = Instant::now();
        assert!(task.abort());
        assert_eq!(task.result(), Err(TaskError::Cancelled));
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the worker was killed, not waited for"
        );
        assert!(task.is_cancelled());
        for (n, t) in behind.iter().enumerate() {
            assert_eq!(
                t.result(),
                Ok(2 * n as u64),
                "task {n} behind the aborted one"
            );
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while alive(workers[0]) {
            assert!(Instant::now() < deadline, "the aborted worker still lives");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(pool.workers_started(), 2, "replaced once");
        let runs = std::fs::read_to_string(&path).unwrap();
        assert_eq!(runs.lines().count(), 1, "never retried: {runs}");
        let _ = std::fs::remove_file(&path);
    });
}

#[test]
fn abort_of_a_pending_process_task_cancels_it_and_it_never_runs() {
    within(LIMIT, "abort pending process task", || {
        let pool = ProcessPool::new(1).unwrap();
        let blocker = pool.submit(sleep_ms, 300);
        let path = marker("pending");
        // Many long tasks so the one under test stays in the queue, not in the pipe.
        let filler: Vec<_> = (0..3).map(|_| pool.submit(sleep_ms, 100)).collect();
        let queued = pool.submit(mark_then_sleep, path.to_string_lossy().into_owned());
        assert!(queued.abort());
        assert_eq!(queued.result(), Err(TaskError::Cancelled));
        assert_eq!(blocker.result(), Ok(300));
        for t in &filler {
            assert_eq!(t.result(), Ok(100));
        }
        pool.shutdown(futurepool::Shutdown::default());
        assert!(!path.exists(), "an aborted task never runs");
        assert_eq!(pool.workers_started(), 1, "no worker was killed for it");
    });
}

#[test]
fn abort_of_a_finished_process_task_is_refused() {
    within(LIMIT, "abort finished process task", || {
        let pool = ProcessPool::new(1).unwrap();
        let task = pool.submit(double, 21);
        assert_eq!(task.result(), Ok(42));
        assert!(!task.abort());
        assert_eq!(task.result(), Ok(42));
        assert_eq!(pool.submit(double, 1).result(), Ok(2));
        assert_eq!(pool.workers_started(), 1);
    });
}

#[test]
fn aborting_one_of_several_running_tasks_leaves_the_others_running() {
    within(LIMIT, "abort one of several", || {
        let pool = ProcessPool::new(3).unwrap();
        let path = marker("several");
        let victim = pool.submit(mark_then_sleep, path.to_string_lossy().into_owned());
        let others: Vec<_> = (0..2).map(|_| pool.submit(sleep_ms, 500)).collect();
        wait_for(&path);
        assert!(victim.abort());
        assert_eq!(victim.result(), Err(TaskError::Cancelled));
        for t in &others {
            assert_eq!(t.result(), Ok(500));
        }
        let _ = std::fs::remove_file(&path);
    });
}

#[test]
fn abort_racing_completion_on_a_process_pool_has_exactly_one_outcome() {
    within(LIMIT, "abort racing process completion", || {
        let pool = ProcessPool::new(2).unwrap();
        for i in 0..300u64 {
            let task = pool.submit(double, i);
            if i % 3 == 0 {
                std::thread::sleep(Duration::from_micros(50 * (i % 7)));
            }
            let won = task.abort();
            match task.result() {
                Err(TaskError::Cancelled) => assert!(won),
                Ok(v) => {
                    assert!(!won, "abort answered true but the value {v} stood");
                    assert_eq!(v, 2 * i);
                }
                other => panic!("unexpected outcome {other:?}"),
            }
        }
        assert_eq!(
            pool.submit(double, 5).result(),
            Ok(10),
            "the pool still serves"
        );
    });
}

#[test]
fn shutdown_abort_running_kills_the_workers_and_ends_every_task_cancelled() {
    within(LIMIT, "process shutdown abort_running", || {
        let pool = ProcessPool::new(2).unwrap();
        let paths: Vec<_> = (0..2).map(|i| marker(&format!("shutdown{i}"))).collect();
        let running: Vec<_> = paths
            .iter()
            .map(|p| pool.submit(mark_then_sleep, p.to_string_lossy().into_owned()))
            .collect();
        let behind: Vec<_> = (0..10).map(|n| pool.submit(double, n)).collect();
        for path in &paths {
            wait_for(path);
        }
        let started = Instant::now();
        pool.shutdown(futurepool::Shutdown::default().abort_running(true));
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "shutdown waited for the running tasks instead of aborting them"
        );
        for task in &running {
            assert_eq!(task.result(), Err(TaskError::Cancelled));
        }
        for task in &behind {
            assert!(task.is_done());
            assert!(
                matches!(task.result(), Ok(_) | Err(TaskError::Cancelled)),
                "{:?}",
                task.result()
            );
        }
        assert_eq!(pool.submit(double, 1).result(), Err(TaskError::ShutDown));
        for path in &paths {
            let _ = std::fs::remove_file(path);
        }
    });
}

#[test]
fn dropping_a_process_map_kills_the_workers_running_its_items_and_the_pool_serves_on() {
    within(LIMIT, "process map drop", || {
        let pool = ProcessPool::new(2).unwrap();
        let first = marker("map");
        let inputs: Vec<String> = (0..8)
            .map(|i| {
                if i == 0 {
                    String::new()
                } else {
                    first.to_string_lossy().into_owned()
                }
            })
            .collect();
        {
            let mut map = pool.map(mark_or_nothing, inputs).chunksize(1);
            assert_eq!(map.next().map(|r| r.is_ok()), Some(true));
            wait_for(&first);
        }
        let started = Instant::now();
        // The workers that ran the map's sleeping items were killed: the pool answers at once.
        assert_eq!(pool.submit(double, 4).result(), Ok(8));
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the map's running items were left running"
        );
        let _ = std::fs::remove_file(&first);
    });
}

/// Returns at once for an empty path, else `mark_then_sleep`.
fn mark_or_nothing(path: String) -> u64 {
    if path.is_empty() {
        0
    } else {
        mark_then_sleep(path)
    }
}
futurepool::register!(mark_or_nothing);

/// Waits for its token; returns how long that took, in milliseconds, from its start.
fn waits_for_its_token(_: ()) -> u64 {
    let started = Instant::now();
    let token = futurepool::current_token();
    while !token.is_cancelled() {
        std::thread::sleep(Duration::from_millis(1));
    }
    started.elapsed().as_millis() as u64
}
/// Reads its token once, at once.
fn token_now(_: ()) -> bool {
    futurepool::current_token().is_cancelled()
}
futurepool::register!(waits_for_its_token, token_now);

#[test]
fn a_soft_time_limit_sets_the_token_in_the_worker_and_the_value_stands() {
    within(LIMIT, "process soft limit", || {
        let pool = ProcessPool::builder()
            .max_workers(1)
            .soft_time_limit(Duration::from_millis(100))
            .build()
            .unwrap();
        // The limit counts from when the call is handed to the worker, so measure from submit.
        let submitted = Instant::now();
        let task = pool.submit(waits_for_its_token, ());
        assert!(
            task.result().is_ok(),
            "the value stands: {:?}",
            task.result()
        );
        let took = submitted.elapsed();
        assert!(
            took >= Duration::from_millis(100),
            "the token was set early: after {took:?}"
        );
        // The next call on the same worker starts with a fresh token.
        let long = pool.submit_with_soft_time_limit(token_now, (), Some(Duration::from_secs(3600)));
        assert_eq!(long.result(), Ok(false));
        assert_eq!(
            pool.submit_with_soft_time_limit(token_now, (), None)
                .result(),
            Ok(false)
        );
        assert_eq!(
            pool.workers_started(),
            1,
            "a soft limit never kills the worker"
        );
    });
}

#[test]
fn soft_then_hard_limit_the_hard_one_kills_a_task_that_ignores_its_token() {
    within(LIMIT, "soft then hard", || {
        let hard = Duration::from_millis(400);
        let pool = ProcessPool::builder()
            .max_workers(1)
            .soft_time_limit(Duration::from_millis(50))
            .time_limit(hard)
            .build()
            .unwrap();
        let heeds = pool.submit(waits_for_its_token, ());
        assert!(heeds.result().is_ok(), "{:?}", heeds.result());
        let ignores = pool.submit(sleep_ms, 60_000);
        assert_eq!(ignores.result(), Err(TaskError::TimeLimit(hard)));
    });
}

#[test]
fn a_soft_time_limit_in_a_map_counts_each_item() {
    within(LIMIT, "soft limit per map item", || {
        let pool = ProcessPool::builder()
            .max_workers(1)
            .soft_time_limit(Duration::from_millis(30))
            .build()
            .unwrap();
        let submitted = Instant::now();
        let took: Vec<u64> = pool
            .map(waits_for_its_token, vec![(); 4])
            .chunksize(4)
            .map(Result::unwrap)
            .collect();
        assert_eq!(took.len(), 4);
        // An item's clock starts when the pool reads the answer before it; the first item's
        // when the chunk is handed over. Each item waits for its own token, so the four limits
        // add up: with one clock for the whole chunk the later items would find their token
        // already set and the map would end after about 30 ms. (What each item measured itself
        // is no bound: under load the worker may start an item after the pool read the answer
        // before it, and that item then sees less than 30 ms; it once read 28.)
        assert!(
            submitted.elapsed() >= Duration::from_millis(120),
            "each item got its own limit: {took:?}, all in {:?}",
            submitted.elapsed()
        );
    });
}
