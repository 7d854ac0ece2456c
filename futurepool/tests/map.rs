//! `map` and `map_unordered`, ported from CPython's `executor.py` map tests and
//! the Python 3.14 `buffersize` tests.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use futurepool::{Executor, Shutdown, TaskError, ThreadPool};

/// A gate tasks block on until the test opens it.
#[derive(Clone, Default)]
struct Gate(Arc<(Mutex<bool>, Condvar)>);

impl Gate {
    fn pass(&self) {
        let (open, changed) = &*self.0;
        let mut open = open.lock().unwrap();
        while !*open {
            open = changed.wait(open).unwrap();
        }
    }
    fn open(&self) {
        let (open, changed) = &*self.0;
        *open.lock().unwrap() = true;
        changed.notify_all();
    }
}

/// Which inputs a map's function actually ran on.
#[derive(Clone, Default)]
struct Ran(Arc<Mutex<HashSet<u32>>>);

impl Ran {
    fn record(&self, item: u32) {
        self.0.lock().unwrap().insert(item);
    }
    fn items(&self) -> HashSet<u32> {
        self.0.lock().unwrap().clone()
    }
}

#[test]
fn results_come_in_input_order_whatever_the_completion_order() {
    // CPython: test_map.
    let pool = ThreadPool::new(4);
    let results: Vec<u64> = pool
        .map(
            |ms: u64| {
                std::thread::sleep(Duration::from_millis(ms));
                ms
            },
            [40, 30, 20, 10, 0],
        )
        .map(Result::unwrap)
        .collect();
    assert_eq!(results, [40, 30, 20, 10, 0]);
}

#[test]
fn a_failing_item_yields_its_error_in_place_and_iteration_goes_on() {
    // CPython main: test_map_exception no longer stops the iteration.
    let pool = ThreadPool::new(2);
    let results: Vec<_> = pool
        .map(
            |n: u32| {
                assert_ne!(n, 2, "two is not allowed");
                n
            },
            0..5,
        )
        .collect();
    assert_eq!(results.len(), 5);
    assert!(
        matches!(&results[2], Err(TaskError::Panicked(p)) if p.message().contains("two is not allowed"))
    );
    assert_eq!(results[4], Ok(4));

    let parsed: Vec<_> = pool
        .map_fallible(
            |s: &str| s.parse::<u8>().map_err(|e| e.to_string()),
            ["1", "x", "3"],
        )
        .collect();
    assert_eq!(parsed[0], Ok(1));
    assert!(matches!(&parsed[1], Err(TaskError::Failed(msg)) if msg.contains("invalid digit")));
    assert_eq!(parsed[2], Ok(3));
}

#[test]
fn nothing_is_submitted_before_iteration() {
    let pool = ThreadPool::new(2);
    let ran = Ran::default();
    let recorder = ran.clone();
    let map = pool.map(move |n| recorder.record(n), 0..10);
    drop(map);
    drop(pool);
    assert!(ran.items().is_empty());
}

#[test]
fn at_most_buffer_tasks_are_in_flight() {
    // Python 3.14: test_map_buffersize_*.
    let pool = ThreadPool::new(2);
    let started = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&started);
    let buffer = 3;
    let results = pool
        .map(
            move |n: u32| {
                counter.fetch_add(1, Ordering::SeqCst);
                n
            },
            0..100,
        )
        .buffer(buffer);
    let mut taken = 0;
    for result in results {
        assert_eq!(result, Ok(taken as u32));
        taken += 1;
        // Submitted = taken + in flight, and in flight never exceeds the buffer.
        assert!(started.load(Ordering::SeqCst) <= taken + buffer);
    }
    assert_eq!(taken, 100);
}

#[test]
fn an_endless_input_works() {
    // Python 3.14: test_map_buffersize_on_infinite_iterable.
    let pool = ThreadPool::new(2);
    let firsts: Vec<u64> = pool
        .map(|n: u64| n * 10, 0..)
        .take(1_000)
        .map(Result::unwrap)
        .collect();
    assert_eq!(firsts.len(), 1_000);
    assert_eq!(firsts[999], 9_990);
}

#[test]
fn timeout_yields_one_timeout_error_then_ends_and_cancels_the_rest() {
    // CPython: test_map_timeout.
    let pool = ThreadPool::new(1);
    let gate = Gate::default();
    let ran = Ran::default();
    let (task_gate, recorder) = (gate.clone(), ran.clone());
    let results: Vec<_> = pool
        .map(
            move |n: u32| {
                recorder.record(n);
                if n == 1 {
                    task_gate.pass();
                }
                n
            },
            0..6,
        )
        .buffer(6)
        .timeout(Duration::from_millis(50))
        .collect();
    assert_eq!(results, [Ok(0), Err(TaskError::Timeout)]);
    gate.open();
    pool.shutdown(Shutdown::default());
    assert!(
        ran.items().is_subset(&HashSet::from([0, 1])),
        "the queued rest was cancelled: {:?}",
        ran.items()
    );
}

#[test]
fn dropping_the_iterator_cancels_the_tasks_not_started() {
    // Python 3.14: test_map_buffersize_on_early_exit / shutdown of a dropped map.
    let pool = ThreadPool::new(1);
    let gate = Gate::default();
    let ran = Ran::default();
    let (task_gate, recorder) = (gate.clone(), ran.clone());
    let mut results = pool
        .map(
            move |n: u32| {
                recorder.record(n);
                if n == 1 {
                    task_gate.pass();
                }
                n
            },
            0..100,
        )
        .buffer(5);
    assert_eq!(results.next(), Some(Ok(0)));
    drop(results); // item 1 holds the worker (or was cancelled); 2..=5 are queued
    gate.open();
    pool.shutdown(Shutdown::default());
    assert!(
        ran.items().is_subset(&HashSet::from([0, 1])),
        "{:?}",
        ran.items()
    );
}

#[test]
fn the_executor_trait_maps_plain_functions() {
    fn square(n: u64) -> u64 {
        n * n
    }
    let pool = ThreadPool::new(2);
    let squares: Vec<u64> = pool.map_fn(square, 1..=4).map(Result::unwrap).collect();
    assert_eq!(squares, [1, 4, 9, 16]);
    let mut unordered: Vec<u64> = pool
        .map_unordered_fn(square, 1..=4)
        .map(Result::unwrap)
        .collect();
    unordered.sort_unstable();
    assert_eq!(unordered, [1, 4, 9, 16]);
}

#[test]
fn unordered_yields_in_completion_order() {
    let pool = ThreadPool::new(2);
    let gate = Gate::default();
    let task_gate = gate.clone();
    let mut results = pool.map_unordered(
        move |n: u32| {
            if n == 0 {
                task_gate.pass();
            }
            n
        },
        [0, 1],
    );
    assert_eq!(
        results.next(),
        Some(Ok(1)),
        "item 0 is still held at the gate"
    );
    gate.open();
    assert_eq!(results.next(), Some(Ok(0)));
    assert_eq!(results.next(), None);
}

#[test]
fn unordered_yields_every_item_once_with_errors_in_the_stream() {
    let pool = ThreadPool::new(3);
    let mut values: Vec<i64> = Vec::new();
    let mut failures = 0;
    for result in pool
        .map_unordered_fallible(|n: i64| if n % 10 == 0 { Err(n) } else { Ok(n) }, 0..1_000)
        .buffer(7)
    {
        match result {
            Ok(n) => values.push(n),
            Err(TaskError::Failed(n)) => {
                assert_eq!(n % 10, 0);
                failures += 1
            }
            Err(other) => panic!("unexpected {other}"),
        }
    }
    values.sort_unstable();
    assert_eq!(failures, 100);
    assert_eq!(values.len(), 900);
    assert!(values.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn unordered_timeout_and_drop_cancel_the_rest() {
    let pool = ThreadPool::new(1);
    let gate = Gate::default();
    let ran = Ran::default();
    let (task_gate, recorder) = (gate.clone(), ran.clone());
    let results: Vec<_> = pool
        .map_unordered(
            move |n: u32| {
                recorder.record(n);
                if n == 0 {
                    task_gate.pass();
                }
                n
            },
            0..10,
        )
        .buffer(4)
        .timeout(Duration::from_millis(30))
        .collect();
    assert_eq!(results, [Err(TaskError::Timeout)]);
    gate.open();
    pool.shutdown(Shutdown::default());
    assert!(
        ran.items().is_subset(&HashSet::from([0])),
        "{:?}",
        ran.items()
    );
}

#[test]
fn unordered_an_endless_input_works() {
    let pool = ThreadPool::new(2);
    let total: u64 = pool
        .map_unordered(|n: u64| n, 1..)
        .take(100)
        .map(Result::unwrap)
        .count() as u64;
    assert_eq!(total, 100);
}
