//! `stats()` on the thread and process pools: every way a task ends is counted once, in its own
//! column, what waits and what runs is seen while it waits and runs, and busy time grows with
//! the work (issue 14, stats).

mod support;

use std::sync::mpsc;
use std::time::Duration;

use futurepool::{ProcessPool, Shutdown, Stats, TaskError, ThreadPool};

const LIMIT: Duration = Duration::from_secs(120);

fn double(n: u64) -> u64 {
    n * 2
}
fn explode(_: ()) -> u8 {
    panic!("counted as failed")
}
fn parse(text: String) -> Result<u32, String> {
    text.parse().map_err(|_| format!("not a number: {text}"))
}
fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}
futurepool::register!(double, explode, parse, sleep_ms);
futurepool::test_support!();

fn quiet_panics() {
    std::panic::set_hook(Box::new(|_| {}));
}

/// Polls `pool_stats` until `ok` holds (the figures of a task that just ended may lag its outcome
/// by an instant on a process pool), failing with the last snapshot after `LIMIT`.
fn eventually(what: &str, pool_stats: impl Fn() -> Stats, ok: impl Fn(&Stats) -> bool) -> Stats {
    let deadline = std::time::Instant::now() + LIMIT;
    loop {
        let stats = pool_stats();
        if ok(&stats) {
            return stats;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: still {stats:?} after {LIMIT:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_new_thread_pool_counts_nothing() {
    let pool = ThreadPool::new(2);
    assert_eq!(pool.stats(), Stats::default());
}

#[test]
fn thread_pool_counts_each_ending_in_its_own_column() {
    support::within(LIMIT, "thread pool stats", || {
        quiet_panics();
        let pool = ThreadPool::new(1);
        let (release, gate) = mpsc::channel::<()>();
        let (started_tx, started) = mpsc::channel::<()>();
        let blocker = pool.submit(move || {
            started_tx.send(()).unwrap();
            gate.recv().is_ok()
        });
        started.recv().unwrap();
        let queued: Vec<_> = (0..3).map(|n| pool.submit(move || n)).collect();
        let cancelled = pool.submit(|| 99);
        assert!(cancelled.cancel());

        // One running, four in the queue (the cancelled one stays there until a worker pops it).
        let stats = pool.stats();
        assert_eq!(
            (stats.running, stats.queued, stats.workers),
            (1, 4, 1),
            "{stats:?}"
        );
        assert_eq!(stats.ended(), 0, "{stats:?}");

        release.send(()).unwrap();
        assert_eq!(blocker.result(), Ok(true));
        for task in &queued {
            task.wait();
        }
        pool.submit(|| -> u8 { panic!("counted as failed") }).wait();
        pool.submit_fallible(|| "x".parse::<u8>()).wait();

        let stats = pool.stats();
        assert_eq!(stats.completed, 4, "{stats:?}");
        assert_eq!(stats.failed, 2, "a panic and an own error: {stats:?}");
        assert_eq!(stats.cancelled, 1, "{stats:?}");
        assert_eq!((stats.queued, stats.running), (0, 0), "{stats:?}");
    });
}

#[test]
fn thread_pool_counts_tasks_cancelled_at_shutdown() {
    support::within(LIMIT, "shutdown cancel counted", || {
        let pool = ThreadPool::new(1);
        let (release, gate) = mpsc::channel::<()>();
        let (started_tx, started) = mpsc::channel::<()>();
        let blocker = pool.submit(move || {
            started_tx.send(()).unwrap();
            gate.recv().is_ok()
        });
        started.recv().unwrap();
        let _queued: Vec<_> = (0..5).map(|n| pool.submit(move || n)).collect();
        pool.shutdown(Shutdown::default().cancel_pending(true).wait(false));
        release.send(()).unwrap();
        blocker.wait();
        pool.shutdown(Shutdown::default());
        let stats = pool.stats();
        assert_eq!((stats.cancelled, stats.completed), (5, 1), "{stats:?}");
        assert_eq!(stats.workers, 0, "{stats:?}");
    });
}

#[test]
fn thread_pool_busy_time_includes_a_task_still_running() {
    support::within(LIMIT, "busy time", || {
        let pool = ThreadPool::new(1);
        let (release, gate) = mpsc::channel::<()>();
        let task = pool.submit(move || gate.recv().is_ok());
        let nap = Duration::from_millis(50);
        std::thread::sleep(nap);
        // The task has not ended, but its time so far counts.
        let running = eventually(
            "the running task's busy time",
            || pool.stats(),
            |s| s.busy >= nap,
        );
        assert_eq!(running.running, 1);
        release.send(()).unwrap();
        task.wait();
        let stats = eventually(
            "busy time kept after the end",
            || pool.stats(),
            |s| s.running == 0,
        );
        assert!(stats.busy >= running.busy, "{stats:?} vs {running:?}");
    });
}

#[test]
fn thread_pool_many_tasks_from_many_submitters_are_all_counted() {
    support::within(LIMIT, "many tasks counted", || {
        let pool = std::sync::Arc::new(ThreadPool::new(4));
        let submitters: Vec<_> = (0..4)
            .map(|_| {
                let pool = pool.clone();
                std::thread::spawn(move || {
                    let tasks: Vec<_> = (0..2_500u32).map(|n| pool.submit(move || n)).collect();
                    tasks.iter().for_each(|t| t.wait());
                })
            })
            .collect();
        for s in submitters {
            s.join().unwrap();
        }
        let stats = pool.stats();
        assert_eq!(stats.completed, 10_000, "{stats:?}");
        assert_eq!((stats.running, stats.queued), (0, 0), "{stats:?}");
    });
}

#[test]
fn process_pool_counts_each_ending_in_its_own_column() {
    support::within(LIMIT, "process pool stats", || {
        quiet_panics();
        let pool = ProcessPool::new(2).unwrap();
        assert_eq!(pool.stats(), Stats::default());
        assert_eq!(pool.submit(double, 21).result(), Ok(42));
        assert!(matches!(
            pool.submit(explode, ()).result(),
            Err(TaskError::Panicked(_))
        ));
        assert!(matches!(
            pool.submit_fallible(parse, "x".into()).result(),
            Err(TaskError::Failed(_))
        ));
        let items: Vec<_> = pool.map(double, 0..20u64).collect();
        assert_eq!(items.len(), 20);
        let stats = eventually("23 tasks counted", || pool.stats(), |s| s.ended() == 23);
        assert_eq!(
            (stats.completed, stats.failed),
            (21, 2),
            "each map item counts: {stats:?}"
        );
        assert_eq!((stats.queued, stats.running), (0, 0), "{stats:?}");
        assert!(stats.workers >= 1, "{stats:?}");
        assert!(stats.busy > Duration::ZERO, "{stats:?}");
    });
}

#[test]
fn process_pool_shows_running_and_queued_then_cancelled() {
    support::within(LIMIT, "process pool running/queued", || {
        let pool = ProcessPool::new(1).unwrap();
        let long = pool.submit(sleep_ms, 400);
        let running = eventually("one task running", || pool.stats(), |s| s.running >= 1);
        assert!(running.running + running.queued == 1, "{running:?}");
        // A later task, cancelled while it waits, is counted cancelled once.
        let queued: Vec<_> = (0..3).map(|_| pool.submit(sleep_ms, 1)).collect();
        let mut cancelled = 0;
        for task in &queued {
            if task.cancel() {
                cancelled += 1;
            }
        }
        assert_eq!(long.result(), Ok(400));
        for task in &queued {
            task.wait();
        }
        let stats = eventually("every task ended", || pool.stats(), |s| s.ended() == 4);
        assert_eq!(stats.cancelled, cancelled, "{stats:?}");
        assert_eq!(stats.completed, 4 - cancelled, "{stats:?}");
        assert_eq!((stats.queued, stats.running), (0, 0), "{stats:?}");
    });
}

/// Regression: tasks a waiting task ran while it waited (help-while-waiting), and those a lent
/// thread ran past the end of a worker's stack, were counted in no column.
#[test]
fn tasks_run_inside_a_wait_are_counted() {
    use std::sync::Arc;
    use support::chain;
    let pool = Arc::new(ThreadPool::new(1));
    let inner = Arc::clone(&pool);
    pool.submit(move || {
        let tasks: Vec<_> = (0..10).map(|_| inner.submit(|| ())).collect();
        for task in &tasks {
            task.wait();
        }
    })
    .result()
    .unwrap();
    let stats = pool.stats();
    assert_eq!((stats.completed, stats.running), (11, 0), "{stats:?}");
    // 2,000 links: past the default stack unoptimised, so some run on lent threads.
    let inner = Arc::clone(&pool);
    assert_eq!(
        pool.submit(move || chain(&inner, 2_000)).result(),
        Ok(2_000)
    );
    let stats = pool.stats();
    assert_eq!(
        (stats.completed, stats.running),
        (11 + 2_001, 0),
        "{stats:?}"
    );
}
