//! `.progress()` on every map and on `as_completed`, on threads and processes (issue 14,
//! progress bars): the items pass through unchanged, the bar counts each one, failures are
//! counted, the total comes from the size hint when it is known, and nothing is drawn when
//! stderr is not a terminal (as under the test runner).
#![cfg(feature = "progress")]

mod support;

use std::time::Duration;

use futurepool::{as_completed, ProcessPool, TaskError, ThreadPool};

const LIMIT: Duration = Duration::from_secs(120);

fn half(n: u32) -> Result<u32, String> {
    if n.is_multiple_of(2) {
        Ok(n / 2)
    } else {
        Err(format!("{n} is odd"))
    }
}
fn double(n: u32) -> u32 {
    n * 2
}
futurepool::register!(half, double);
futurepool::test_support!();

#[test]
fn a_thread_pool_map_bar_counts_items_and_failures_with_the_total_known() {
    support::within(LIMIT, "map progress", || {
        let pool = ThreadPool::new(3);
        let inputs: Vec<u32> = (0..50).collect();
        let mut bar = pool
            .map_fallible(
                |n: u32| if n.is_multiple_of(5) { Err(n) } else { Ok(n) },
                inputs,
            )
            .progress();
        assert_eq!(bar.total(), Some(50), "the total is the size hint");
        assert!(
            bar.bar().is_hidden(),
            "stderr is not a terminal here: nothing is drawn"
        );
        let results: Vec<_> = bar.by_ref().collect();
        assert_eq!(results.len(), 50);
        assert_eq!(
            results[5],
            Err(TaskError::Failed(5)),
            "items pass through in order"
        );
        assert_eq!((bar.done(), bar.failed()), (50, 10));
        assert!(
            bar.bar().is_finished(),
            "the bar finishes with the iterator"
        );
    });
}

#[test]
fn an_endless_map_has_no_total_until_one_is_given() {
    support::within(LIMIT, "endless map progress", || {
        let pool = ThreadPool::new(2);
        let mut bar = pool.map(|n: u64| n, 0u64..).progress();
        assert_eq!(bar.total(), None);
        assert_eq!(bar.by_ref().take(7).count(), 7);
        assert_eq!(bar.done(), 7);
        let bar = pool.map(|n: u64| n, 0u64..).progress().total_of(100);
        assert_eq!(bar.total(), Some(100));
    });
}

#[test]
fn map_unordered_and_as_completed_bars_count_every_item() {
    support::within(LIMIT, "unordered and as_completed progress", || {
        let pool = ThreadPool::new(4);
        let mut unordered = pool.map_unordered(|n: u32| n, 0..40).progress();
        assert_eq!(
            unordered.total(),
            Some(40),
            "map_unordered has a size hint too"
        );
        assert_eq!(unordered.by_ref().count(), 40);
        assert_eq!((unordered.done(), unordered.failed()), (40, 0));

        std::panic::set_hook(Box::new(|_| {}));
        let tasks: Vec<_> = (0..20u32)
            .map(|n| pool.submit(move || if n == 3 { panic!("three") } else { n }))
            .collect();
        let mut completed = as_completed(&tasks, Some(LIMIT)).progress();
        assert_eq!(completed.total(), Some(20));
        assert_eq!(completed.by_ref().count(), 20);
        assert_eq!(
            (completed.done(), completed.failed()),
            (20, 1),
            "the panicked task"
        );
    });
}

#[test]
fn process_pool_maps_have_bars_too() {
    support::within(LIMIT, "process map progress", || {
        let pool = ProcessPool::new(2).unwrap();
        let mut bar = pool.map_fallible(half, 0..30u32).progress().total_of(30);
        let results: Vec<_> = bar.by_ref().collect();
        assert_eq!(results[4], Ok(2));
        assert_eq!((bar.done(), bar.failed(), bar.total()), (30, 15, Some(30)));
        let mut unordered = pool.map_unordered(double, 0..10u32).progress();
        assert_eq!(unordered.by_ref().count(), 10);
        assert_eq!(unordered.done(), 10);
    });
}

#[test]
fn a_bar_dropped_early_is_abandoned_not_finished() {
    support::within(LIMIT, "early drop", || {
        let pool = ThreadPool::new(2);
        let mut bar = pool.map(|n: u32| n, 0..100).progress();
        assert_eq!(bar.by_ref().take(3).count(), 3);
        let handle = bar.bar().clone();
        drop(bar);
        assert!(
            handle.is_finished(),
            "abandoned counts as finished for indicatif"
        );
        assert_eq!(handle.position(), 3);
    });
}
