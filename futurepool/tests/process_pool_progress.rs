//! Progress reported from inside a process pool's task (issue 14): `report_progress` in the
//! worker process crosses the pipe as small, rate-limited frames; the handle shows the values in
//! order, the last one always; no callback starts once the result is seen; a panicking callback
//! harms nothing; reports inside map chunks or under a time limit change no answer, and reach the
//! map's partial progress (its bar) while the item runs, never after its result.

mod support;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futurepool::{report_progress, ProcessPool, TaskError};

const LIMIT: Duration = Duration::from_secs(120);

/// Waits (at most 60 s) for a file the test creates.
fn wait_for_file(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !path.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// `(n, go, release)`: once `go` exists, reports `1..=n` of `n` in a tight loop; then waits for
/// `release` and returns how long the loop took, in µs.
fn count_up((n, go, release): (u64, PathBuf, PathBuf)) -> u64 {
    wait_for_file(&go);
    let start = Instant::now();
    for i in 1..=n {
        report_progress(i, n);
    }
    let took = start.elapsed().as_micros() as u64;
    wait_for_file(&release);
    took
}

/// Reports `i` of `ms` about every millisecond for `ms` ms, then `(ms, ms)`, and returns.
fn tick_for(ms: u64) -> u64 {
    let start = Instant::now();
    let mut i = 0;
    while start.elapsed() < Duration::from_millis(ms) {
        i += 1;
        report_progress(i.min(ms - 1), ms);
        std::thread::sleep(Duration::from_millis(1));
    }
    report_progress(ms, ms);
    i
}

/// `(ms, seen)`: like [`tick_for`], but goes on ticking past `ms` until `seen` exists (at most
/// 60 s), so a test can hold the call open until its callback has run at least once.
fn tick_until_seen((ms, seen): (u64, PathBuf)) -> u64 {
    let start = Instant::now();
    let mut i = 0;
    while start.elapsed() < Duration::from_millis(ms)
        || (!seen.exists() && start.elapsed() < Duration::from_secs(60))
    {
        i += 1;
        report_progress(i % ms, ms);
        std::thread::sleep(Duration::from_millis(1));
    }
    report_progress(ms, ms);
    i
}

/// A map item that reports its own progress and returns its square.
fn square_reporting(n: u64) -> u64 {
    for i in 0..=n {
        report_progress(i, n);
    }
    n * n
}

/// `(done, total, gate)`: a map item that reports `done` of `total` once, then waits for `gate`
/// and returns `done`.
fn report_then_wait((done, total, gate): (u64, u64, PathBuf)) -> u64 {
    report_progress(done, total);
    wait_for_file(&gate);
    done
}

futurepool::register!(
    count_up,
    tick_for,
    tick_until_seen,
    square_reporting,
    report_then_wait
);
futurepool::test_support!();

/// A scratch directory for the gate files of one test.
fn scratch(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("futurepool-progress-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn touch(path: &Path) {
    std::fs::write(path, b"").unwrap();
}

#[test]
fn reports_from_a_worker_process_arrive_in_order_rate_limited_and_the_last_always() {
    support::within(LIMIT, "process progress in order", || {
        let pool = ProcessPool::new(1).unwrap();
        let dir = scratch("order");
        let (go, release) = (dir.join("go"), dir.join("release"));
        const N: u64 = 100_000;
        let task = pool.submit(count_up, (N, go.clone(), release.clone()));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        task.on_progress(move |done, total| sink.lock().unwrap().push((done, total)));
        touch(&go);
        // The loop is over and the call waits for `release`: its last report must show.
        let deadline = Instant::now() + Duration::from_secs(60);
        while task.progress() != Some((N, N)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(task.progress(), Some((N, N)), "the last report arrives");
        while seen.lock().unwrap().last() != Some(&(N, N)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        touch(&release);
        let took = Duration::from_micros(task.result().unwrap());
        let seen = seen.lock().unwrap().clone();
        assert_eq!(
            seen.last(),
            Some(&(N, N)),
            "the callback saw the last report"
        );
        // The worker lets through the first report, one per 50 ms, and the last; the pool's
        // coalescing can only lower that.
        support::assert_in_order_and_rate_limited(&seen, took);
        assert_eq!(task.progress(), None, "done: no progress any more");
        let _ = std::fs::remove_dir_all(&dir);
    });
}

#[test]
fn no_progress_callback_starts_once_the_result_is_seen() {
    support::within(LIMIT, "process progress none after the end", || {
        let pool = ProcessPool::new(2).unwrap();
        let dir = scratch("after-end");
        for round in 0..6 {
            let seen = dir.join(format!("seen-{round}"));
            let task = pool.submit(tick_until_seen, (300, seen.clone()));
            let calls = Arc::new(AtomicUsize::new(0));
            let counter = calls.clone();
            // A slow callback: reports pile up behind it, so some run is always queued when the
            // result arrives, and must not start after it. Its first run lets the call end (so
            // "no report reached the callback" cannot happen by a loaded machine's chance).
            task.on_progress(move |_, _| {
                counter.fetch_add(1, Ordering::SeqCst);
                touch(&seen);
                std::thread::sleep(Duration::from_millis(40));
            });
            task.result().unwrap();
            let at_end = calls.load(Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(200));
            assert_eq!(
                calls.load(Ordering::SeqCst),
                at_end,
                "round {round}: a progress callback started after the result was seen"
            );
            assert!(at_end > 0, "round {round}: no report reached the callback");
        }
        let _ = std::fs::remove_dir_all(&dir);
    });
}

#[test]
fn a_panicking_progress_callback_is_removed_and_the_pool_goes_on() {
    support::within(LIMIT, "process progress panicking callback", || {
        let pool = ProcessPool::new(1).unwrap();
        let dir = scratch("panic");
        let (go, release) = (dir.join("go"), dir.join("release"));
        let task = pool.submit(count_up, (10, go.clone(), release.clone()));
        let panicked = Arc::new(AtomicBool::new(false));
        let flag = panicked.clone();
        task.on_progress(move |_, _| {
            flag.store(true, Ordering::SeqCst);
            panic!("a progress callback that panics");
        });
        touch(&go);
        let deadline = Instant::now() + Duration::from_secs(60);
        while task.progress() != Some((10, 10)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(task.progress(), Some((10, 10)), "reports still arrive");
        // The callback runs on a callback thread some time after the report arrives, and a run
        // not started by the time the result is seen never starts: so the task is held open
        // until the callback has run (regression: the test released it at once and, on a loaded
        // machine, the result won the race and the callback rightly never ran).
        while !panicked.load(Ordering::SeqCst) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(panicked.load(Ordering::SeqCst), "the callback ran");
        touch(&release);
        assert!(task.result().is_ok(), "the task is unharmed");
        // The pool, its reader and the callback threads still work.
        let next = pool.submit(tick_for, 60);
        let seen = Arc::new(AtomicUsize::new(0));
        let counter = seen.clone();
        next.on_progress(move |_, _| {
            counter.fetch_add(1, Ordering::SeqCst);
        });
        assert!(next.result().is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    });
}

#[test]
fn reports_inside_a_chunked_map_change_no_result() {
    support::within(LIMIT, "process progress in map chunks", || {
        let pool = ProcessPool::new(2).unwrap();
        let squares: Vec<u64> = pool
            .map(square_reporting, 0..200u64)
            .chunksize(16)
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(squares, (0..200u64).map(|n| n * n).collect::<Vec<_>>());
        // Under a time limit chunks are answered item by item: the same holds there.
        let limited = ProcessPool::builder()
            .max_workers(2)
            .time_limit(Duration::from_secs(60))
            .build()
            .unwrap();
        let squares: Vec<u64> = limited
            .map(square_reporting, 0..200u64)
            .chunksize(16)
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(squares, (0..200u64).map(|n| n * n).collect::<Vec<_>>());
        // A single call after the maps still reports to its own handle.
        let task = pool.submit(tick_for, 100);
        assert_eq!(task.result().map(|_| ()), Ok(()));
    });
}

#[test]
fn progress_frames_do_not_restart_a_time_limit() {
    support::within(LIMIT, "process progress under a time limit", || {
        let pool = ProcessPool::new(1).unwrap();
        let start = Instant::now();
        let task = pool.submit_with_time_limit(tick_for, 30_000, Some(Duration::from_secs(1)));
        let result = task.result();
        assert!(
            matches!(result, Err(TaskError::TimeLimit(_))),
            "a task reporting progress is still killed at its limit: {result:?}"
        );
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "killed near its 1 s limit, not after {:?}",
            start.elapsed()
        );
    });
}

/// Waits (at most 60 s) until the bar's partial progress is above `floor`, and returns it.
#[cfg(feature = "progress")]
fn partial_above<I: Iterator>(bar: &futurepool::Progress<I>, floor: f64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    while bar.partial() <= floor && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    bar.partial()
}

/// A chunk of two items, each reporting a share and then held open by a file: the bar counts
/// the first item's share while it runs, then the first item whole and the second's share, and
/// once the chunk's results are in, the results only (no share outlives its item). `pool` (one
/// worker) answers the chunk in one frame, or item by item under a time limit.
#[cfg(feature = "progress")]
fn a_running_item_counts_its_share(pool: &ProcessPool, name: &str) {
    let dir = scratch(name);
    let (open, first, second) = (dir.join("open"), dir.join("first"), dir.join("second"));
    touch(&open);
    // A first chunk that ends at once, so the map has submitted the second when `next` returns.
    let inputs = vec![
        (1, 1, open.clone()),
        (1, 1, open.clone()),
        (3, 10, first.clone()),
        (7, 10, second.clone()),
    ];
    let mut bar = pool.map(report_then_wait, inputs).chunksize(2).progress();
    assert_eq!((bar.next(), bar.next()), (Some(Ok(1)), Some(Ok(1))));
    let share = partial_above(&bar, 0.0);
    assert!(
        (share - 0.3).abs() < 1e-5,
        "{name}: the first item's 3 of 10, nothing else: {share}"
    );
    touch(&first);
    let shares = partial_above(&bar, 1.0);
    assert!(
        (shares - 1.7).abs() < 1e-5,
        "{name}: the first item whole and the second's 7 of 10: {shares}"
    );
    touch(&second);
    assert_eq!(
        partial_above(&bar, 1.7 + 1e-5),
        2.0,
        "{name}: the chunk's two results, no share left over"
    );
    assert_eq!(bar.next(), Some(Ok(3)));
    assert_eq!(bar.partial(), 1.0, "{name}: the second result, ready");
    assert_eq!(bar.next(), Some(Ok(7)));
    assert_eq!((bar.next(), bar.done(), bar.partial()), (None, 4, 0.0));
    let _ = std::fs::remove_dir_all(&dir);
}

#[cfg(feature = "progress")]
#[test]
fn a_map_bar_counts_the_share_a_running_item_reported_and_none_after_its_result() {
    support::within(LIMIT, "process map item progress", || {
        let pool = ProcessPool::new(1).unwrap();
        a_running_item_counts_its_share(&pool, "map-item-share");
    });
}

#[cfg(feature = "progress")]
#[test]
fn under_a_time_limit_a_map_bar_counts_each_answered_item_and_the_running_share() {
    support::within(LIMIT, "process map item progress by item", || {
        let pool = ProcessPool::builder()
            .max_workers(1)
            .time_limit(Duration::from_secs(100))
            .build()
            .unwrap();
        a_running_item_counts_its_share(&pool, "map-item-share-by-item");
    });
}

/// Chunks of items that all report: every result in its place, and the partial progress never
/// counts more than the items not yet taken (an item's reports never count it twice).
#[cfg(feature = "progress")]
#[test]
fn a_chunked_map_of_reporting_items_yields_every_result_in_order_and_never_overcounts() {
    support::within(LIMIT, "process map reporting chunks", || {
        let pool = ProcessPool::new(2).unwrap();
        let limited = ProcessPool::builder()
            .max_workers(2)
            .time_limit(Duration::from_secs(100))
            .build()
            .unwrap();
        for pool in [&pool, &limited] {
            let mut bar = pool
                .map(square_reporting, 0..300u64)
                .chunksize(7)
                .progress();
            let mut squares = Vec::new();
            while let Some(square) = bar.next() {
                squares.push(square.unwrap());
                let left = (300 - bar.done()) as f64;
                assert!(bar.partial() <= left, "{} of {left} left", bar.partial());
            }
            assert_eq!(squares, (0..300u64).map(|n| n * n).collect::<Vec<_>>());
            assert_eq!((bar.done(), bar.partial()), (300, 0.0));
        }
    });
}
