//! Hostile user code in a process pool (issue 9, cases 5, 6, 7, 9 and 14): `Serialize`,
//! `Deserialize` and `Drop` impls that panic on either side of the pipe, maps whose chunks are
//! cancelled or killed, done-callbacks that block or drop the pool, and per-item time limits.
//! Every test runs under a watchdog, so a hang fails it.

mod support;

use std::collections::HashSet;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use futurepool::{ProcessPool, Shutdown, TaskError, WorkerLoss};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use support::within;

const WATCHDOG: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------------------------
// Hostile values.

/// Serializes fine; its `Deserialize` panics. Only the parent ever decodes a result, so as a
/// result it panics in the parent's reader path.
#[derive(Debug, Clone, PartialEq, Serialize)]
struct PanicsWhenDecoded(u32);

impl<'de> Deserialize<'de> for PanicsWhenDecoded {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let _ = u32::deserialize(deserializer)?;
        panic!("PanicsWhenDecoded refuses to be decoded");
    }
}

/// An argument whose `Serialize` panics when odd: it panics in the parent, at submit.
#[derive(Debug, Clone, PartialEq, Deserialize)]
struct OddPanicsWhenEncoded(u32);

impl Serialize for OddPanicsWhenEncoded {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        assert!(
            self.0.is_multiple_of(2),
            "odd argument {} refuses to be encoded",
            self.0
        );
        self.0.serialize(serializer)
    }
}

/// Decodes in the parent only when even: odd ones panic there.
#[derive(Debug, Clone, PartialEq, Serialize)]
struct OddPanicsWhenDecoded(u32);

impl<'de> Deserialize<'de> for OddPanicsWhenDecoded {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let n = u32::deserialize(deserializer)?;
        assert!(n % 2 == 0, "odd {n} refuses to be decoded");
        Ok(OddPanicsWhenDecoded(n))
    }
}

/// Serializes fine; its `Deserialize` panics: as an argument it panics in the worker.
#[derive(Debug, Clone, PartialEq, Serialize)]
struct ArgPanicsWhenDecoded(u32);

impl<'de> Deserialize<'de> for ArgPanicsWhenDecoded {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let _ = u32::deserialize(deserializer)?;
        panic!("the argument refuses to be decoded");
    }
}

/// Its `Serialize` panics: as a result it panics in the worker after the function returned.
#[derive(Debug, Clone, PartialEq, Deserialize)]
struct PanicsWhenEncoded(u32);

impl Serialize for PanicsWhenEncoded {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        panic!("PanicsWhenEncoded refuses to be encoded");
    }
}

/// Panics when dropped, but only where it was made by the worker's function (`armed`): the copy
/// the parent decodes is harmless.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct DropBomb {
    n: u32,
    #[serde(skip)]
    armed: bool,
}

impl Drop for DropBomb {
    fn drop(&mut self) {
        if self.armed {
            self.armed = false;
            panic!("DropBomb {} went off", self.n);
        }
    }
}

/// An argument that panics when dropped in the worker (where it was decoded), never in the
/// parent (where it was only encoded).
#[derive(Debug, Clone, PartialEq)]
struct ArgDropBomb {
    n: u32,
    armed: bool,
}

impl Serialize for ArgDropBomb {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.n.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for ArgDropBomb {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(ArgDropBomb {
            n: u32::deserialize(deserializer)?,
            armed: true,
        })
    }
}

impl Drop for ArgDropBomb {
    fn drop(&mut self) {
        if self.armed {
            self.armed = false;
            panic!("ArgDropBomb {} went off", self.n);
        }
    }
}

/// A value of many faults, picked by `n % 5`: 1 panics when encoded (in the worker), 2 when
/// decoded (in the parent), 3 when the worker drops it; 0 and 4 behave.
#[derive(Debug, Clone, PartialEq)]
struct Chaos {
    n: u32,
    armed: bool,
}

impl Serialize for Chaos {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        assert!(self.n % 5 != 1, "chaos {} will not encode", self.n);
        self.n.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Chaos {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let n = u32::deserialize(deserializer)?;
        assert!(n % 5 != 2, "chaos {n} will not decode");
        Ok(Chaos { n, armed: false })
    }
}

impl Drop for Chaos {
    fn drop(&mut self) {
        if self.armed && self.n % 5 == 3 {
            self.armed = false;
            panic!("chaos {} will not drop", self.n);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Registered functions.

fn identity(n: u32) -> u32 {
    n
}
fn undecodable_result(n: u32) -> PanicsWhenDecoded {
    PanicsWhenDecoded(n)
}
fn odd_undecodable_result(n: u32) -> OddPanicsWhenDecoded {
    OddPanicsWhenDecoded(n)
}
fn undecodable_error(n: u32) -> Result<u32, PanicsWhenDecoded> {
    Err(PanicsWhenDecoded(n))
}
fn takes_undecodable_arg(arg: ArgPanicsWhenDecoded) -> u32 {
    arg.0
}
fn takes_odd_unencodable_arg(arg: OddPanicsWhenEncoded) -> u32 {
    arg.0
}
fn unencodable_result(n: u32) -> PanicsWhenEncoded {
    PanicsWhenEncoded(n)
}
fn returns_a_drop_bomb(n: u32) -> DropBomb {
    DropBomb { n, armed: true }
}
fn drops_its_argument(arg: ArgDropBomb) -> u32 {
    arg.n
}
fn chaotic(n: u32) -> Chaos {
    Chaos { n, armed: true }
}
fn abort_on_seven(n: u32) -> u32 {
    if n == 7 {
        std::process::abort();
    }
    std::thread::sleep(Duration::from_millis(5));
    n
}
fn nap_then_identity((ms, n): (u64, u32)) -> u32 {
    std::thread::sleep(Duration::from_millis(ms));
    n
}
/// Sleeps, then records that it ran by appending `n` to the file `path` (one line each), so a
/// test can tell whether an item ran twice.
fn nap_and_record((path, ms, n): (String, u64, u32)) -> u32 {
    std::thread::sleep(Duration::from_millis(ms));
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&path)
        .unwrap();
    writeln!(file, "{n}").unwrap();
    n
}

futurepool::register!(
    identity,
    undecodable_result,
    undecodable_error,
    odd_undecodable_result,
    takes_undecodable_arg,
    takes_odd_unencodable_arg,
    unencodable_result,
    returns_a_drop_bomb,
    drops_its_argument,
    nap_then_identity,
    nap_and_record,
    abort_on_seven,
    chaotic,
);
futurepool::test_support!();

/// SIGKILLs one of `pool`'s workers every `period` until the returned flag is set; returns
/// the number of kills when joined. Only workers seen for at least `settled` are picked: a
/// worker killed before its handshake breaks the pool by design (a worker that cannot start),
/// which is not what these tests are about.
fn spawn_killer(
    pool: Arc<ProcessPool>,
    period: Duration,
    settled: Duration,
) -> (
    Arc<std::sync::atomic::AtomicBool>,
    std::thread::JoinHandle<usize>,
) {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped = stop.clone();
    let killer = std::thread::spawn(move || {
        let mut first_seen = std::collections::HashMap::new();
        let mut kills = 0;
        while !stopped.load(Ordering::SeqCst) {
            std::thread::sleep(period);
            let now = std::time::Instant::now();
            let pids = pool.worker_pids();
            first_seen.retain(|pid, _| pids.contains(pid));
            for &pid in &pids {
                first_seen.entry(pid).or_insert(now);
            }
            let victim = pids
                .iter()
                .filter(|pid| now.duration_since(first_seen[*pid]) >= settled)
                .nth(kills % pids.len().max(1));
            if let Some(&pid) = victim {
                // SAFETY: signalling a worker process of our own pool.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                first_seen.remove(&pid);
                kills += 1;
            }
        }
        kills
    });
    (stop, killer)
}

/// The pool still serves, on the worker(s) it already had.
fn assert_still_serves(pool: &ProcessPool, workers: u64) {
    assert_eq!(pool.submit(identity, 41).result(), Ok(41));
    let out: Vec<_> = pool.map(identity, 0..10).chunksize(3).collect();
    assert_eq!(out, (0..10).map(Ok).collect::<Vec<_>>());
    assert_eq!(
        pool.workers_started(),
        workers,
        "no worker was lost or replaced"
    );
}

fn assert_panicked<T: std::fmt::Debug, E: std::fmt::Debug>(
    outcome: &Result<T, TaskError<E>>,
    message: &str,
) {
    match outcome {
        Err(TaskError::Panicked(panic)) => {
            assert!(panic.message().contains(message), "{panic:?}");
            assert!(
                panic
                    .location()
                    .is_some_and(|l| l.contains("hostile_process_usercode.rs")),
                "the panic's location is the user's impl: {panic:?}"
            );
        }
        other => panic!("expected a panic with {message:?}, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Case 5: a user `Deserialize` panicking in the parent.

#[test]
fn deserialize_panic_in_parent_fails_only_that_task() {
    within(WATCHDOG, "a result whose Deserialize panics", || {
        let pool = ProcessPool::new(1).unwrap();
        let outcome = pool.submit(undecodable_result, 1).result();
        assert_panicked(&outcome, "refuses to be decoded");
        // The same worker's next answers are still read.
        let again = pool.submit(undecodable_result, 2);
        let fine = pool.submit(identity, 3);
        assert_panicked(&again.result(), "refuses to be decoded");
        assert_eq!(fine.result(), Ok(3));
        assert_still_serves(&pool, 1);
    });
}

#[test]
fn deserialize_panic_of_an_error_type_in_parent_fails_only_that_task() {
    within(WATCHDOG, "an Err whose Deserialize panics", || {
        let pool = ProcessPool::new(1).unwrap();
        let outcome = pool.submit_fallible(undecodable_error, 1).result();
        assert_panicked(&outcome, "refuses to be decoded");
        assert_still_serves(&pool, 1);
    });
}

#[test]
fn deserialize_panic_of_chunk_items_in_parent_fails_each_item_in_place() {
    within(WATCHDOG, "map items whose Deserialize panics", || {
        let pool = ProcessPool::new(2).unwrap();
        let out: Vec<_> = pool.map(undecodable_result, 0..7).chunksize(3).collect();
        assert_eq!(out.len(), 7);
        for outcome in &out {
            assert_panicked(outcome, "refuses to be decoded");
        }
        let workers = pool.workers_started();
        assert!(workers <= 2);
        assert_still_serves(&pool, workers);
    });
}

#[test]
fn deserialize_panics_of_some_chunk_items_fail_those_items_only() {
    within(WATCHDOG, "a chunk with some undecodable items", || {
        let pool = ProcessPool::new(1).unwrap();
        for time_limit in [None, Some(Duration::from_secs(600))] {
            let out: Vec<_> = match time_limit {
                None => pool
                    .map(odd_undecodable_result, 0..9)
                    .chunksize(9)
                    .collect(),
                Some(_) => {
                    let pool = ProcessPool::builder()
                        .max_workers(1)
                        .time_limit(Duration::from_secs(600))
                        .build()
                        .unwrap();
                    pool.map(odd_undecodable_result, 0..9)
                        .chunksize(9)
                        .collect()
                }
            };
            assert_eq!(out.len(), 9);
            for (n, outcome) in out.iter().enumerate() {
                if n % 2 == 0 {
                    assert_eq!(*outcome, Ok(OddPanicsWhenDecoded(n as u32)));
                } else {
                    assert_panicked(outcome, &format!("odd {n} refuses to be decoded"));
                }
            }
        }
        assert_still_serves(&pool, 1);
    });
}

#[test]
fn argument_serialize_panic_in_parent_fails_only_that_task_or_item() {
    within(
        WATCHDOG,
        "arguments whose Serialize panics at submit",
        || {
            let pool = ProcessPool::new(1).unwrap();
            let outcome = pool
                .submit(takes_odd_unencodable_arg, OddPanicsWhenEncoded(1))
                .result();
            assert_panicked(&outcome, "odd argument 1 refuses to be encoded");
            let args = (0..9).map(OddPanicsWhenEncoded);
            let out: Vec<_> = pool
                .map(takes_odd_unencodable_arg, args)
                .chunksize(9)
                .collect();
            assert_eq!(out.len(), 9);
            for (n, outcome) in out.iter().enumerate() {
                if n % 2 == 0 {
                    assert_eq!(*outcome, Ok(n as u32));
                } else {
                    assert_panicked(outcome, &format!("odd argument {n} refuses to be encoded"));
                }
            }
            assert_still_serves(&pool, 1);
        },
    );
}

// ---------------------------------------------------------------------------------------------
// Case 6: user `Deserialize`, `Serialize` and `Drop` panicking in the worker.

#[test]
fn argument_deserialize_panic_in_worker_fails_only_that_task() {
    within(WATCHDOG, "an argument whose Deserialize panics", || {
        let pool = ProcessPool::new(1).unwrap();
        let outcome = pool
            .submit(takes_undecodable_arg, ArgPanicsWhenDecoded(1))
            .result();
        assert_panicked(&outcome, "the argument refuses to be decoded");
        assert_still_serves(&pool, 1);
    });
}

#[test]
fn result_serialize_panic_in_worker_fails_only_that_task() {
    within(WATCHDOG, "a result whose Serialize panics", || {
        let pool = ProcessPool::new(1).unwrap();
        let outcome = pool.submit(unencodable_result, 1).result();
        assert_panicked(&outcome, "refuses to be encoded");
        assert_still_serves(&pool, 1);
    });
}

#[test]
fn drop_panic_of_the_returned_value_in_worker_fails_only_that_task() {
    within(WATCHDOG, "a returned value whose Drop panics", || {
        let pool = ProcessPool::new(1).unwrap();
        let outcome = pool.submit(returns_a_drop_bomb, 1).result();
        assert_panicked(&outcome, "DropBomb 1 went off");
        assert_still_serves(&pool, 1);
    });
}

#[test]
fn drop_panic_of_the_argument_in_worker_fails_only_that_task() {
    within(WATCHDOG, "an argument whose Drop panics", || {
        let pool = ProcessPool::new(1).unwrap();
        let arg = ArgDropBomb { n: 4, armed: false };
        let outcome = pool.submit(drops_its_argument, arg).result();
        assert_panicked(&outcome, "ArgDropBomb 4 went off");
        assert_still_serves(&pool, 1);
    });
}

#[test]
fn a_five_item_map_of_panicking_values_yields_five_outcomes_and_loses_no_worker() {
    within(WATCHDOG, "maps of values that panic in the worker", || {
        let pool = ProcessPool::new(2).unwrap();
        let out: Vec<_> = pool.map(returns_a_drop_bomb, 0..5).collect();
        assert_eq!(out.len(), 5);
        for (n, outcome) in out.iter().enumerate() {
            assert_panicked(outcome, &format!("DropBomb {n} went off"));
        }
        let out: Vec<_> = pool.map(unencodable_result, 0..5).chunksize(2).collect();
        assert_eq!(out.len(), 5);
        out.iter()
            .for_each(|o| assert_panicked(o, "refuses to be encoded"));
        let args = (0..5).map(ArgPanicsWhenDecoded);
        let out: Vec<_> = pool.map(takes_undecodable_arg, args).chunksize(5).collect();
        assert_eq!(out.len(), 5);
        out.iter()
            .for_each(|o| assert_panicked(o, "the argument refuses to be decoded"));
        let args = (0..5).map(|n| ArgDropBomb { n, armed: false });
        let out: Vec<_> = pool.map(drops_its_argument, args).chunksize(3).collect();
        assert_eq!(out.len(), 5);
        for (n, outcome) in out.iter().enumerate() {
            assert_panicked(outcome, &format!("ArgDropBomb {n} went off"));
        }
        let workers = pool.workers_started();
        assert!(workers <= 2, "{workers} workers started: some were lost");
        assert_still_serves(&pool, workers);
    });
}

// ---------------------------------------------------------------------------------------------
// Case 7: a map yields exactly one outcome per input, in its own place, whatever happens to
// its chunks.

/// How a test interrupts a map half-way.
#[derive(Clone, Copy, Debug)]
enum Interrupt {
    CancelPending,
    Terminate,
}

fn interrupt(pool: &ProcessPool, how: Interrupt) {
    match how {
        Interrupt::CancelPending => {
            pool.shutdown(Shutdown::default().cancel_pending(true).wait(false))
        }
        Interrupt::Terminate => pool.terminate_workers(),
    }
}

fn ordered_map_interrupted(inputs: u32, nap_ms: u64, how: Interrupt) {
    let pool = ProcessPool::new(2).unwrap();
    let mut out = Vec::new();
    let map = pool
        .map(nap_then_identity, (0..inputs).map(|n| (nap_ms, n)))
        .chunksize(4)
        .buffer(inputs as usize);
    for (taken, outcome) in map.enumerate() {
        if taken == 5 {
            interrupt(&pool, how);
        }
        out.push(outcome);
    }
    assert_eq!(
        out.len(),
        inputs as usize,
        "one outcome per input ({how:?})"
    );
    let mut failed = 0;
    for (position, outcome) in out.iter().enumerate() {
        match outcome {
            Ok(value) => assert_eq!(*value, position as u32, "item {position} ({how:?})"),
            Err(
                TaskError::Cancelled
                | TaskError::ShutDown
                | TaskError::WorkerLost(WorkerLoss::Signaled(_) | WorkerLoss::Disconnected),
            ) => failed += 1,
            Err(other) => panic!("item {position}: unexpected {other:?} ({how:?})"),
        }
    }
    println!("{how:?}: {failed} of {inputs} items did not run");
}

fn unordered_map_interrupted(inputs: u32, nap_ms: u64, how: Interrupt) {
    let pool = ProcessPool::new(2).unwrap();
    let mut values = HashSet::new();
    let mut count = 0;
    let map = pool
        .map_unordered(nap_then_identity, (0..inputs).map(|n| (nap_ms, n)))
        .chunksize(4)
        .buffer(inputs as usize);
    for (taken, outcome) in map.enumerate() {
        if taken == 5 {
            interrupt(&pool, how);
        }
        count += 1;
        if let Ok(value) = outcome {
            assert!(value < inputs && values.insert(value), "{value} ({how:?})");
        }
    }
    assert_eq!(count, inputs as usize, "one outcome per input ({how:?})");
}

#[test]
fn a_cancelled_map_chunk_yields_one_outcome_per_input_in_its_place() {
    within(WATCHDOG, "ordered maps cancelled half-way", || {
        ordered_map_interrupted(40, 20, Interrupt::CancelPending);
        ordered_map_interrupted(2_000, 0, Interrupt::CancelPending);
    });
}

#[test]
fn a_terminated_map_chunk_yields_one_outcome_per_input_in_its_place() {
    within(WATCHDOG, "ordered maps terminated half-way", || {
        ordered_map_interrupted(40, 20, Interrupt::Terminate);
        ordered_map_interrupted(2_000, 0, Interrupt::Terminate);
    });
}

#[test]
fn an_interrupted_unordered_map_yields_one_outcome_per_input() {
    within(WATCHDOG, "unordered maps interrupted half-way", || {
        for how in [Interrupt::CancelPending, Interrupt::Terminate] {
            unordered_map_interrupted(40, 20, how);
            unordered_map_interrupted(2_000, 0, how);
        }
    });
}

/// Workers SIGKILLed at random while maps run, with and without a time limit (which changes
/// how chunks are answered): every input still yields one outcome, in its place.
#[test]
fn maps_whose_workers_are_killed_at_random_yield_one_outcome_per_input_in_place() {
    within(WATCHDOG, "maps under random SIGKILLs", || {
        for time_limit in [None, Some(Duration::from_secs(600))] {
            let mut builder = ProcessPool::builder().max_workers(3);
            if let Some(limit) = time_limit {
                builder = builder.time_limit(limit);
            }
            let pool = Arc::new(builder.build().unwrap());
            let (stop, killer) = spawn_killer(
                pool.clone(),
                Duration::from_millis(30),
                Duration::from_millis(200),
            );
            let inputs = 1_200u32;
            let ordered: Vec<_> = pool
                .map(nap_then_identity, (0..inputs).map(|n| (2, n)))
                .chunksize(8)
                .collect();
            let unordered = pool
                .map_unordered(nap_then_identity, (0..inputs).map(|n| (2, n)))
                .chunksize(8)
                .count();
            stop.store(true, Ordering::SeqCst);
            let kills = killer.join().unwrap();
            assert_eq!(ordered.len(), inputs as usize, "{time_limit:?}");
            assert_eq!(unordered, inputs as usize, "{time_limit:?}");
            let mut lost = 0;
            for (position, outcome) in ordered.iter().enumerate() {
                match outcome {
                    Ok(value) => assert_eq!(*value, position as u32),
                    Err(TaskError::WorkerLost(_)) => lost += 1,
                    Err(other) => panic!("item {position}: unexpected {other:?}"),
                }
            }
            println!("{time_limit:?}: {kills} kills, {lost} of {inputs} items lost");
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Case 9: done-callbacks never run on a thread the pool needs.

#[test]
fn a_callback_that_drops_the_last_pool_handle_does_not_deadlock() {
    within(WATCHDOG, "a callback dropping the last pool", || {
        let pool = Arc::new(ProcessPool::new(1).unwrap());
        let task = pool.submit(nap_then_identity, (300, 1));
        let (dropped_tx, dropped) = mpsc::channel();
        let last = pool.clone();
        task.add_done_callback(move |_| {
            drop(last);
            dropped_tx.send(()).unwrap();
        });
        drop(pool);
        assert_eq!(task.result(), Ok(1));
        dropped
            .recv()
            .expect("the callback dropped the pool and returned");
    });
}

#[test]
fn a_callback_that_waits_for_another_task_of_the_same_pool_completes() {
    within(WATCHDOG, "a callback waiting on the same pool", || {
        let pool = Arc::new(ProcessPool::new(1).unwrap());
        let (result_tx, result) = mpsc::channel();
        let first = pool.submit(identity, 1);
        let inner = pool.clone();
        first.add_done_callback(move |_| {
            let second = inner.submit(identity, 2);
            result_tx.send(second.result()).unwrap();
        });
        assert_eq!(first.result(), Ok(1));
        assert_eq!(result.recv().unwrap(), Ok(2));
    });
}

#[test]
fn a_blocked_callback_does_not_hold_back_other_tasks_callbacks() {
    within(WATCHDOG, "one callback blocked on another's", || {
        let pool = ProcessPool::new(1).unwrap();
        let (release_tx, release) = mpsc::channel::<()>();
        let (done_tx, done) = mpsc::channel();
        let first = pool.submit(identity, 1);
        let first_done = done_tx.clone();
        first.add_done_callback(move |_| {
            // Blocks until the second task's callback runs.
            release.recv().unwrap();
            first_done.send(1).unwrap();
        });
        first.wait();
        let second = pool.submit(identity, 2);
        second.add_done_callback(move |_| {
            release_tx.send(()).unwrap();
            done_tx.send(2).unwrap();
        });
        let mut order = vec![done.recv().unwrap(), done.recv().unwrap()];
        order.sort();
        assert_eq!(order, [1, 2]);
    });
}

#[test]
fn callbacks_of_process_tasks_run_once_each_in_registration_order() {
    within(WATCHDOG, "many callbacks", || {
        let pool = ProcessPool::new(2).unwrap();
        let runs = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..200)
            .map(|n| {
                let task = pool.submit(identity, n);
                let order = Arc::new(std::sync::Mutex::new(Vec::new()));
                for i in 0..3 {
                    let (order, runs) = (order.clone(), runs.clone());
                    task.add_done_callback(move |_| {
                        order.lock().unwrap().push(i);
                        runs.fetch_add(1, Ordering::SeqCst);
                    });
                }
                (task, order)
            })
            .collect();
        drop(pool);
        for (task, order) in &tasks {
            assert!(task.is_done());
            // Callbacks run after the outcome is set, so wait for them a little.
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while order.lock().unwrap().len() < 3 {
                assert!(std::time::Instant::now() < deadline, "callbacks never ran");
                std::thread::sleep(Duration::from_millis(1));
            }
            assert_eq!(*order.lock().unwrap(), [0, 1, 2]);
        }
        assert_eq!(runs.load(Ordering::SeqCst), 600);
    });
}

// ---------------------------------------------------------------------------------------------
// Case 14: a time limit is per item, whatever the chunk size.

#[test]
fn time_limit_applies_to_each_map_item_not_the_whole_chunk() {
    within(WATCHDOG, "a time-limited map of long chunks", || {
        // Each chunk takes 4 s, each item 100 ms, the limit is 2 s.
        let pool = ProcessPool::builder()
            .max_workers(2)
            .time_limit(Duration::from_secs(2))
            .build()
            .unwrap();
        let out: Vec<_> = pool
            .map(nap_then_identity, (0..40).map(|n| (100, n)))
            .chunksize(40)
            .collect();
        assert_eq!(out, (0..40).map(Ok).collect::<Vec<_>>());
        // Unordered and with the automatic chunk size (the README's quick start).
        let mut out: Vec<u32> = pool
            .map_unordered(nap_then_identity, (0..40).map(|n| (100, n)))
            .map(Result::unwrap)
            .collect();
        out.sort();
        assert_eq!(out, (0..40).collect::<Vec<_>>());
    });
}

#[test]
fn a_time_limit_kill_mid_chunk_keeps_answered_items_and_runs_the_rest_once() {
    within(WATCHDOG, "a time limit firing inside a chunk", || {
        let record = std::env::temp_dir().join(format!(
            "futurepool-time-limit-chunk-{}.txt",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&record);
        let path = record.to_string_lossy().into_owned();
        let pool = ProcessPool::builder()
            .max_workers(1)
            .time_limit(Duration::from_secs(1))
            .build()
            .unwrap();
        let naps = [10, 10, 60_000, 10, 10, 60_000, 10];
        let out: Vec<_> = pool
            .map(
                nap_and_record,
                naps.iter()
                    .enumerate()
                    .map(|(n, &ms)| (path.clone(), ms, n as u32)),
            )
            .chunksize(naps.len())
            .collect();
        let limit = Err(TaskError::TimeLimit(Duration::from_secs(1)));
        assert_eq!(
            out,
            [Ok(0), Ok(1), limit.clone(), Ok(3), Ok(4), limit, Ok(6)]
        );
        let ran = std::fs::read_to_string(&record).unwrap();
        let mut ran: Vec<u32> = ran.lines().map(|l| l.parse().unwrap()).collect();
        ran.sort();
        assert_eq!(ran, [0, 1, 3, 4, 6], "each finished item ran exactly once");
        let _ = std::fs::remove_file(&record);
    });
}

#[test]
fn a_worker_crash_mid_chunk_under_a_time_limit_fails_only_the_running_item() {
    within(WATCHDOG, "a crash inside a time-limited chunk", || {
        let pool = ProcessPool::builder()
            .max_workers(2)
            .time_limit(Duration::from_secs(600))
            .build()
            .unwrap();
        let out: Vec<_> = pool.map(abort_on_seven, 0..20).chunksize(5).collect();
        for (n, outcome) in out.iter().enumerate() {
            if n == 7 {
                assert_eq!(
                    *outcome,
                    Err(TaskError::WorkerLost(WorkerLoss::Signaled(6))),
                    "item {n}"
                );
            } else {
                assert_eq!(*outcome, Ok(n as u32), "item {n}");
            }
        }
    });
}

#[test]
fn a_time_limit_kill_mid_chunk_during_shutdown_still_runs_the_rest() {
    within(
        WATCHDOG,
        "a time limit firing inside a chunk during shutdown",
        || {
            let pool = Arc::new(
                ProcessPool::builder()
                    .max_workers(1)
                    .time_limit(Duration::from_secs(1))
                    .build()
                    .unwrap(),
            );
            // Shuts down (without cancelling) while the second item runs, most likely; if the
            // machine is slow to start the worker, before the chunk starts: the outcome is the same.
            let stopper = {
                let pool = pool.clone();
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(300));
                    pool.shutdown(Shutdown::default().wait(false));
                })
            };
            let naps = [10, 60_000, 10, 10];
            let out: Vec<_> = pool
                .map(
                    nap_then_identity,
                    naps.iter().enumerate().map(|(n, &ms)| (ms, n as u32)),
                )
                .chunksize(naps.len())
                .collect();
            stopper.join().unwrap();
            assert_eq!(
                out,
                [
                    Ok(0),
                    Err(TaskError::TimeLimit(Duration::from_secs(1))),
                    Ok(2),
                    Ok(3)
                ]
            );
        },
    );
}

/// Hostile user code everywhere at once: values panicking in `Serialize`, `Deserialize` and
/// `Drop`, callbacks that panic or submit to the same pool and wait, maps of such values, and a
/// worker SIGKILLed now and then. Every task and item resolves exactly once, with the outcome
/// its value calls for, and the pool still serves.
#[test]
fn hostile_user_code_chaos_never_hangs_or_loses_a_result() {
    within(Duration::from_secs(300), "hostile user code chaos", || {
        let pool = Arc::new(ProcessPool::new(3).unwrap());
        let (stop, killer) = spawn_killer(
            pool.clone(),
            Duration::from_millis(150),
            Duration::from_millis(500),
        );
        let check = |n: u32, outcome: &Result<Chaos, TaskError>| match (n % 5, outcome) {
            (0 | 4, Ok(value)) => assert_eq!(value.n, n),
            (1, Err(TaskError::Panicked(p))) => assert!(p.message().contains("will not encode")),
            (2, Err(TaskError::Panicked(p))) => assert!(p.message().contains("will not decode")),
            (3, Err(TaskError::Panicked(p))) => assert!(p.message().contains("will not drop")),
            (_, Err(TaskError::WorkerLost(WorkerLoss::Signaled(9)))) => {}
            other => panic!("item {n}: unexpected {other:?}"),
        };
        let callbacks = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..1_500u32)
            .map(|n| {
                let task = pool.submit(chaotic, n);
                let (counted, inner) = (callbacks.clone(), pool.clone());
                task.add_done_callback(move |_| {
                    counted.fetch_add(1, Ordering::SeqCst);
                    match n % 50 {
                        7 => panic!("callback {n} panics"),
                        // Submits to the same pool and waits: needs the pool's threads free.
                        11 => {
                            let _ = inner.submit(identity, n).result();
                        }
                        _ => {}
                    }
                });
                task
            })
            .collect();
        let mapped: Vec<_> = pool.map(chaotic, 0..1_500u32).chunksize(16).collect();
        assert_eq!(mapped.len(), 1_500);
        for (n, outcome) in mapped.iter().enumerate() {
            check(n as u32, outcome);
        }
        for (n, task) in tasks.iter().enumerate() {
            check(n as u32, &task.result());
        }
        stop.store(true, Ordering::SeqCst);
        killer.join().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while callbacks.load(Ordering::SeqCst) < tasks.len() {
            assert!(std::time::Instant::now() < deadline, "callbacks never ran");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(
            callbacks.load(Ordering::SeqCst),
            tasks.len(),
            "each exactly once"
        );
        // Still serves once the last killed worker has been noticed and replaced.
        let out: Vec<_> = (0..20).map(|n| pool.submit(identity, n)).collect();
        for (n, task) in out.iter().enumerate() {
            match task.result() {
                Ok(value) => assert_eq!(value, n as u32),
                Err(TaskError::WorkerLost(_)) => {}
                Err(other) => panic!("{other:?}"),
            }
        }
        assert_eq!(pool.submit(identity, 99).result(), Ok(99));
    });
}

#[test]
fn dropping_the_pool_waits_for_the_callbacks_of_its_tasks() {
    within(WATCHDOG, "drop waiting for callbacks", || {
        let pool = ProcessPool::new(2).unwrap();
        let ran = Arc::new(AtomicUsize::new(0));
        for n in 0..20 {
            let ran = ran.clone();
            pool.submit(identity, n).add_done_callback(move |_| {
                std::thread::sleep(Duration::from_millis(50));
                ran.fetch_add(1, Ordering::SeqCst);
            });
        }
        drop(pool);
        assert_eq!(
            ran.load(Ordering::SeqCst),
            20,
            "like Python's shutdown(wait=True)"
        );
    });
}
