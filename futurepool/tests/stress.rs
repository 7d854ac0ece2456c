//! Stress: many tasks with random panics, failures, cancels, wait time-outs and callbacks, from
//! four submitting threads at once; and a hostile run whose user code also panics in `Drop` of
//! values and captures and in callbacks, and whose callbacks submit to the pool and wait.
//!
//! 200,000 tasks in debug and release builds alike (about a second either way). The test checks
//! that every task resolves exactly once (its callbacks each ran once, its closure ran at most once and only if
//! it was not cancelled), that the outcome counts add up, that no worker thread outlives the pool,
//! and that nothing deadlocks: a watchdog fails the test after two minutes instead of hanging.

mod support;

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
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

/// This process's threads whose name starts with `prefix` (Linux keeps a thread name's first
/// 15 bytes). Counting only the pool's own threads keeps the check exact when other threads of
/// the test harness come and go.
fn live_threads(prefix: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task lists this process's threads")
        .filter_map(|entry| std::fs::read_to_string(entry.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with(prefix))
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

/// Thousands of expected panics: keep stderr quiet. Installed once, before any task runs, so
/// futurepool's location-recording hook chains onto this one.
fn silence_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            // Expected panics happen on pool workers and on the (unnamed) submitting threads;
            // the tests' own assertions run on named test threads: let those print.
            let name = std::thread::current().name().map(str::to_owned);
            let expected = name.as_deref().is_none_or(|name| {
                name.starts_with("futurepool-") || name.starts_with(HOSTILE_PREFIX)
            });
            if !expected {
                previous(info);
            }
        }));
    });
}

/// Both tests count this process's threads, so under `cargo test` (one process, tests on
/// threads) they must not overlap.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn every_task_resolves_exactly_once_under_load() {
    let _serial = one_at_a_time();
    silence_panics();
    let (finished, watchdog_done) = mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if watchdog_done.recv_timeout(WATCHDOG).is_err() {
            eprintln!("stress test still running after {WATCHDOG:?}: deadlock");
            std::process::exit(1);
        }
    });
    let threads_before = live_threads("futurepool-");

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
    assert_eq!(
        live_threads("futurepool-"),
        threads_before,
        "worker threads leaked"
    );

    finished.send(()).unwrap();
    watchdog.join().unwrap();
}

// The hostile run: user code that panics where the library must not care, and callbacks that
// submit to the pool and wait (issue 9, cases 15 and 17, as a class).

const HOSTILE_TASKS: usize = 40_000;
const HOSTILE_WORKERS: usize = 4;
const HOSTILE_PREFIX: &str = "hostile-pool";

fn on_a_worker() -> bool {
    std::thread::current()
        .name()
        .is_some_and(|name| name.starts_with(HOSTILE_PREFIX))
}

/// A task's value; its `Drop` may panic, on a worker only (where the pool must survive it; the
/// test's own threads drop kept values at the end).
struct Value {
    index: usize,
    panics_on_drop: bool,
}

impl Drop for Value {
    fn drop(&mut self) {
        if self.panics_on_drop && on_a_worker() && !std::thread::panicking() {
            panic!("value {} dropped", self.index);
        }
    }
}

/// Something a closure captures; its `Drop` may panic. It is dropped on a worker: at the end of
/// the closure (the task then fails as panicked) or when the worker finds the task cancelled.
struct Capture {
    index: usize,
    panics_on_drop: bool,
}

impl Drop for Capture {
    fn drop(&mut self) {
        if self.panics_on_drop && !std::thread::panicking() {
            panic!("capture {} dropped", self.index);
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Hostile {
    Succeeds,
    Fails,
    Panics,
    CaptureDropPanics,
}

struct HostileRecord {
    index: usize,
    kind: Hostile,
    /// None: the handle was dropped at once (the value is then dropped on the worker).
    task: Option<Task<Value, String>>,
    cancelled_by_us: bool,
}

struct HostileCounters {
    runs: Vec<AtomicU32>,
    callbacks: Vec<AtomicU32>,
    callbacks_added: Vec<AtomicU32>,
    nested_submitted: AtomicUsize,
    nested_done: AtomicUsize,
    /// Callbacks allowed to block on a nested task right now: at most `HOSTILE_WORKERS - 1`, so
    /// one worker is always left to run the nested tasks (more would be a user deadlock, the same
    /// in Python: every worker waiting for work that only a worker can do).
    waiting_slots: AtomicUsize,
}

type HostileCallback = Box<dyn FnOnce(&Task<Value, String>) + Send>;

fn hostile_share(
    pool: &Arc<ThreadPool>,
    counters: &Arc<HostileCounters>,
    share: usize,
) -> Vec<HostileRecord> {
    let mut rng = Rng(0xD1B5_4A32_D192_ED03 ^ (share as u64 + 1));
    let per_submitter = HOSTILE_TASKS / SUBMITTERS;
    let mut records = Vec::with_capacity(per_submitter);
    for index in share * per_submitter..(share + 1) * per_submitter {
        let kind = match rng.percent() {
            0..=4 => Hostile::Panics,
            5..=9 => Hostile::Fails,
            10..=14 => Hostile::CaptureDropPanics,
            _ => Hostile::Succeeds,
        };
        let value_panics = rng.percent() < 10;
        // A cancelled task's capture is dropped by the worker that finds it cancelled.
        let capture = Capture {
            index,
            panics_on_drop: kind == Hostile::CaptureDropPanics || rng.percent() < 5,
        };
        let kind = if capture.panics_on_drop {
            Hostile::CaptureDropPanics
        } else {
            kind
        };
        let c = Arc::clone(counters);
        let task = pool.submit_fallible(move || {
            let _capture = capture;
            c.runs[index].fetch_add(1, Ordering::Relaxed);
            match kind {
                Hostile::Fails => Err(format!("task {index} failed")),
                Hostile::Panics => panic!("task {index} panicked"),
                Hostile::Succeeds | Hostile::CaptureDropPanics => Ok(Value {
                    index,
                    panics_on_drop: value_panics,
                }),
            }
        });
        let add = |callback: HostileCallback| {
            counters.callbacks_added[index].fetch_add(1, Ordering::Relaxed);
            task.add_done_callback(callback);
        };
        let c = Arc::clone(counters);
        add(Box::new(move |_| {
            c.callbacks[index].fetch_add(1, Ordering::Relaxed);
        }));
        if rng.percent() < 5 {
            let c = Arc::clone(counters);
            add(Box::new(move |_| {
                c.callbacks[index].fetch_add(1, Ordering::Relaxed);
                panic!("callback of task {index} panicked");
            }));
        }
        if rng.percent() < 3 {
            // A weak handle, let go of before the callback counts itself done, so that once
            // every callback has counted, the test holds the pool's last handle.
            let (c, pool) = (Arc::clone(counters), Arc::downgrade(pool));
            add(Box::new(move |_| {
                c.nested_submitted.fetch_add(1, Ordering::Relaxed);
                let c_nested = Arc::clone(&c);
                let nested = pool
                    .upgrade()
                    .expect("the test holds the pool")
                    .submit(move || {
                        c_nested.nested_done.fetch_add(1, Ordering::Relaxed);
                        index
                    });
                let may_wait = c
                    .waiting_slots
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                    .is_ok();
                if may_wait {
                    let waited = nested.result();
                    c.waiting_slots.fetch_add(1, Ordering::AcqRel);
                    assert_eq!(waited, Ok(index));
                }
                c.callbacks[index].fetch_add(1, Ordering::Release);
            }));
        }
        let cancelled_by_us = rng.percent() < 10 && task.cancel();
        let keep = rng.percent() < 70;
        records.push(HostileRecord {
            index,
            kind,
            task: keep.then_some(task),
            cancelled_by_us,
        });
    }
    records
}

fn check_hostile(record: &HostileRecord, counters: &HostileCounters) {
    let index = record.index;
    let Some(task) = &record.task else {
        // Nothing to read; the pool's drop and the callback counts check it ran at most once.
        return;
    };
    // Read after the task is done: its run is then visible.
    let outcome = task.result_ref();
    let runs = counters.runs[index].load(Ordering::Relaxed);
    assert!(runs <= 1, "task {index} ran {runs} times");
    if record.cancelled_by_us {
        assert_eq!(runs, 0, "cancelled task {index} ran");
    }
    match (outcome, record.kind) {
        (Err(TaskError::Cancelled), _) => assert!(record.cancelled_by_us, "task {index}"),
        (Ok(value), Hostile::Succeeds) => assert_eq!(value.index, index),
        (Err(TaskError::Failed(message)), Hostile::Fails) => {
            assert_eq!(*message, format!("task {index} failed"))
        }
        (Err(TaskError::Panicked(panic)), Hostile::Panics) => {
            assert_eq!(panic.message(), format!("task {index} panicked"))
        }
        (Err(TaskError::Panicked(panic)), Hostile::CaptureDropPanics) => {
            assert_eq!(panic.message(), format!("capture {index} dropped"))
        }
        (outcome, kind) => panic!(
            "task {index} of kind {kind:?} ended {:?}",
            outcome.map(|v| v.index)
        ),
    }
    if !matches!(task.result_ref(), Err(TaskError::Cancelled)) {
        assert_eq!(runs, 1, "task {index} finished but ran {runs} times");
    }
}

#[test]
fn hostile_user_code_never_loses_a_task_a_callback_or_a_thread() {
    let _serial = one_at_a_time();
    silence_panics();
    support::within(WATCHDOG, "the hostile stress run", || {
        assert_eq!(live_threads(HOSTILE_PREFIX), 0);
        let counters = Arc::new(HostileCounters {
            runs: (0..HOSTILE_TASKS).map(|_| AtomicU32::new(0)).collect(),
            callbacks: (0..HOSTILE_TASKS).map(|_| AtomicU32::new(0)).collect(),
            callbacks_added: (0..HOSTILE_TASKS).map(|_| AtomicU32::new(0)).collect(),
            nested_submitted: AtomicUsize::new(0),
            nested_done: AtomicUsize::new(0),
            waiting_slots: AtomicUsize::new(HOSTILE_WORKERS - 1),
        });
        let pool = Arc::new(
            ThreadPool::builder()
                .max_workers(HOSTILE_WORKERS)
                .thread_name_prefix(HOSTILE_PREFIX)
                .build(),
        );
        let records: Mutex<Vec<HostileRecord>> = Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for share in 0..SUBMITTERS {
                let (pool, counters, records) = (&pool, &counters, &records);
                scope.spawn(move || {
                    let mine = hostile_share(pool, counters, share);
                    records.lock().unwrap().extend(mine);
                });
            }
        });
        let records = records.into_inner().unwrap();
        for record in &records {
            check_hostile(record, &counters);
        }
        assert!(pool.worker_count() <= HOSTILE_WORKERS);
        // Tasks whose handles were dropped may still run, and their callbacks may still submit:
        // wait (under the watchdog) until every callback and nested task is done.
        let all_done = || {
            (0..HOSTILE_TASKS).all(|index| {
                counters.callbacks[index].load(Ordering::Acquire)
                    >= counters.callbacks_added[index].load(Ordering::Relaxed)
            }) && counters.nested_done.load(Ordering::Relaxed)
                == counters.nested_submitted.load(Ordering::Relaxed)
        };
        while !all_done() {
            std::thread::sleep(Duration::from_millis(1));
        }
        // Callbacks held only weak handles, so this is the last one: dropping it joins the
        // workers here.
        let pool = Arc::try_unwrap(pool).unwrap_or_else(|_| panic!("a callback kept the pool"));
        drop(pool);

        for index in 0..HOSTILE_TASKS {
            let runs = counters.runs[index].load(Ordering::Relaxed);
            assert!(runs <= 1, "task {index} ran {runs} times");
            let added = counters.callbacks_added[index].load(Ordering::Relaxed);
            let ran = counters.callbacks[index].load(Ordering::Relaxed);
            assert_eq!(
                ran, added,
                "task {index}: callbacks must each run exactly once"
            );
        }
        let submitted = counters.nested_submitted.load(Ordering::Relaxed);
        assert!(submitted > 0);
        assert_eq!(counters.nested_done.load(Ordering::Relaxed), submitted);
        let dropped_unheld = records.iter().filter(|r| r.task.is_none()).count();
        assert!(dropped_unheld > 0);
        drop(records);
        assert_eq!(live_threads(HOSTILE_PREFIX), 0, "worker threads leaked");
    });
}
