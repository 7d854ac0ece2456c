//! Stress: many tasks with random panics, failures, cancels, wait time-outs and callbacks, from
//! four submitting threads at once.
//!
//! 200,000 tasks in debug and release builds alike (about a second either way). The test checks
//! that every task resolves exactly once (its callbacks each ran once, its closure ran at most once and only if
//! it was not cancelled), that the outcome counts add up, that no worker thread outlives the pool,
//! and that nothing deadlocks: a watchdog fails the test after two minutes instead of hanging.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use futurepool::{Task, TaskError, ThreadPool};

const TASKS: usize = 200_000;
const SUBMITTERS: usize = 4;
const WATCHDOG: Duration = Duration::from_secs(120);

/// xorshift64*: a tiny deterministic generator, so a failure can be replayed from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn percent(&mut self) -> u64 {
        self.next() % 100
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Succeeds,
    Fails,
    Panics,
}

/// What one task's submitter did and saw.
struct Record {
    index: usize,
    kind: Kind,
    task: Task<usize, String>,
    cancelled_by_us: bool,
    callbacks_added: u32,
}

/// Per-task counters, shared with the closures and callbacks.
struct Counters {
    runs: Vec<AtomicU32>,
    callbacks: Vec<AtomicU32>,
}

fn live_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task lists this process's threads")
        .count()
}

fn submit_share(pool: &ThreadPool, counters: &Arc<Counters>, share: usize) -> Vec<Record> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (share as u64 + 1));
    let per_submitter = TASKS / SUBMITTERS;
    let mut records = Vec::with_capacity(per_submitter);
    for index in share * per_submitter..(share + 1) * per_submitter {
        let kind = match rng.percent() {
            0..=4 => Kind::Panics,
            5..=9 => Kind::Fails,
            _ => Kind::Succeeds,
        };
        let spin = if rng.percent() < 10 { 2_000 } else { 0 };
        let runs = Arc::clone(counters);
        let task = pool.submit_fallible(move || {
            runs.runs[index].fetch_add(1, Ordering::Relaxed);
            std::hint::black_box((0..spin).sum::<u64>());
            match kind {
                Kind::Succeeds => Ok(index),
                Kind::Fails => Err(format!("task {index} failed")),
                Kind::Panics => panic!("task {index} panicked"),
            }
        });
        let mut callbacks_added = 0;
        for _ in 0..1 + rng.next() % 2 {
            let counters = Arc::clone(counters);
            task.add_done_callback(move |_| {
                counters.callbacks[index].fetch_add(1, Ordering::Relaxed);
            });
            callbacks_added += 1;
        }
        let cancelled_by_us = rng.percent() < 10 && task.cancel();
        if rng.percent() < 10 {
            let waited = task.result_timeout(Duration::from_micros(rng.next() % 50));
            assert!(waited.is_err() || kind == Kind::Succeeds);
        }
        records.push(Record {
            index,
            kind,
            task,
            cancelled_by_us,
            callbacks_added,
        });
    }
    records
}

#[derive(Default, Debug, PartialEq, Eq)]
struct Tally {
    succeeded: usize,
    failed: usize,
    panicked: usize,
    cancelled: usize,
}

fn check(records: &[Record], counters: &Counters) -> Tally {
    let mut tally = Tally::default();
    for record in records {
        let outcome = record.task.result();
        let runs = counters.runs[record.index].load(Ordering::Relaxed);
        match (&outcome, record.kind) {
            (Err(TaskError::Cancelled), _) => {
                assert!(
                    record.cancelled_by_us,
                    "task {} cancelled by nobody",
                    record.index
                );
                assert_eq!(runs, 0, "cancelled task {} ran", record.index);
                tally.cancelled += 1;
            }
            (Ok(value), Kind::Succeeds) => {
                assert_eq!(*value, record.index);
                tally.succeeded += 1;
            }
            (Err(TaskError::Failed(message)), Kind::Fails) => {
                assert_eq!(*message, format!("task {} failed", record.index));
                tally.failed += 1;
            }
            (Err(TaskError::Panicked(panic)), Kind::Panics) => {
                assert_eq!(panic.message(), format!("task {} panicked", record.index));
                tally.panicked += 1;
            }
            (outcome, kind) => panic!("task {} of kind {kind:?} ended {outcome:?}", record.index),
        }
        if !matches!(outcome, Err(TaskError::Cancelled)) {
            assert!(
                !record.cancelled_by_us,
                "cancel() said yes but task {} ran",
                record.index
            );
            assert_eq!(runs, 1, "task {} ran {runs} times", record.index);
        }
    }
    tally
}

#[test]
fn every_task_resolves_exactly_once_under_load() {
    // Thousands of expected panics: keep stderr quiet. Installed before any task runs, so
    // futurepool's location-recording hook chains onto this one.
    std::panic::set_hook(Box::new(|_| {}));
    let (finished, watchdog_done) = mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if watchdog_done.recv_timeout(WATCHDOG).is_err() {
            eprintln!("stress test still running after {WATCHDOG:?}: deadlock");
            std::process::exit(1);
        }
    });
    let threads_before = live_threads();

    let counters = Arc::new(Counters {
        runs: (0..TASKS).map(|_| AtomicU32::new(0)).collect(),
        callbacks: (0..TASKS).map(|_| AtomicU32::new(0)).collect(),
    });
    let pool = ThreadPool::new(4);
    let records: Vec<Record> = std::thread::scope(|scope| {
        let submitters: Vec<_> = (0..SUBMITTERS)
            .map(|share| {
                let (pool, counters) = (&pool, &counters);
                scope.spawn(move || submit_share(pool, counters, share))
            })
            .collect();
        submitters
            .into_iter()
            .flat_map(|s| s.join().unwrap())
            .collect()
    });
    let tally = check(&records, &counters);
    assert!(pool.worker_count() <= pool.max_workers());
    drop(pool);

    for record in &records {
        let calls = counters.callbacks[record.index].load(Ordering::Relaxed);
        assert_eq!(
            calls, record.callbacks_added,
            "task {}: callbacks must each run exactly once",
            record.index
        );
    }
    assert_eq!(
        tally.succeeded + tally.failed + tally.panicked + tally.cancelled,
        TASKS
    );
    assert!(tally.succeeded > 0 && tally.failed > 0 && tally.panicked > 0 && tally.cancelled > 0);
    assert_eq!(live_threads(), threads_before, "worker threads leaked");

    finished.send(()).unwrap();
    watchdog.join().unwrap();
}
