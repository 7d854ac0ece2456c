//! `.progress()` on every map and on `as_completed`, on threads and processes (issue 14,
//! progress bars): the items pass through unchanged, the bar counts each one, failures are
//! counted, the total comes from the size hint when it is known, and nothing is drawn when
//! stderr is not a terminal (as under the test runner).
#![cfg(feature = "progress")]

mod support;

use std::io;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use futurepool::{as_completed, ProcessPool, TaskError, ThreadPool};
use indicatif::{ProgressDrawTarget, TermLike};

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

/// A terminal that keeps every line the bar draws.
#[derive(Debug, Clone, Default)]
struct Screen(Arc<Mutex<Vec<String>>>);

impl Screen {
    /// The counts drawn since the last call, as `N` of `N/total` (`1.5` of `1.5/3`).
    fn counts(&self, total: u64) -> Vec<f64> {
        let suffix = format!("/{total}");
        let lines = std::mem::take(&mut *self.0.lock().unwrap());
        lines
            .iter()
            .flat_map(|line| line.split_whitespace())
            .filter_map(|word| word.strip_suffix(&suffix)?.parse().ok())
            .collect()
    }

    /// Waits until the bar draws `count` of `total`; every count drawn meanwhile, with it.
    fn wait_for(&self, count: f64, total: u64) -> Vec<f64> {
        let start = Instant::now();
        let mut seen = Vec::new();
        while !seen.contains(&count) {
            assert!(
                start.elapsed() < LIMIT,
                "the bar never showed {count}/{total}: {seen:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
            seen.extend(self.counts(total));
        }
        seen
    }
}

impl TermLike for Screen {
    fn width(&self) -> u16 {
        120
    }
    fn move_cursor_up(&self, _: usize) -> io::Result<()> {
        Ok(())
    }
    fn move_cursor_down(&self, _: usize) -> io::Result<()> {
        Ok(())
    }
    fn move_cursor_right(&self, _: usize) -> io::Result<()> {
        Ok(())
    }
    fn move_cursor_left(&self, _: usize) -> io::Result<()> {
        Ok(())
    }
    fn write_line(&self, s: &str) -> io::Result<()> {
        self.write_str(s)
    }
    fn write_str(&self, s: &str) -> io::Result<()> {
        self.0.lock().unwrap().push(s.to_string());
        Ok(())
    }
    fn clear_line(&self) -> io::Result<()> {
        Ok(())
    }
    fn flush(&self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_map_bar_counts_the_partial_progress_of_running_items_once() {
    support::within(LIMIT, "partial progress on the bar", || {
        let pool = ThreadPool::new(3);
        // Each item reports half its work, then waits for its own gate.
        let (opens, gates): (Vec<_>, Vec<_>) = (0..3).map(|_| mpsc::channel::<()>()).unzip();
        let gates: Arc<Vec<Mutex<mpsc::Receiver<()>>>> =
            Arc::new(gates.into_iter().map(Mutex::new).collect());
        let gated = move |i: usize| {
            futurepool::report_progress(1, 2);
            let _ = gates[i].lock().unwrap().recv();
            i
        };
        let mut bar = pool.map(gated, 0..3).progress();
        let screen = Screen::default();
        bar.bar()
            .set_draw_target(ProgressDrawTarget::term_like(Box::new(screen.clone())));
        let (taken_tx, taken) = mpsc::channel();
        std::thread::scope(|scope| {
            let reader = scope.spawn(move || {
                for item in bar.by_ref() {
                    taken_tx.send(item.unwrap()).unwrap();
                }
                bar
            });
            // Nothing taken yet: three halves, drawn while the map waits for the first item.
            let drawn = screen.wait_for(1.5, 3);
            assert!(drawn.iter().all(|n| *n <= 1.5), "{drawn:?}");
            assert!(taken.try_recv().is_err(), "no item was taken yet");

            // The first one taken counts 1, not 1 plus its half: two in all with the others.
            opens[0].send(()).unwrap();
            assert_eq!(taken.recv().unwrap(), 0);
            let drawn = screen.wait_for(2.0, 3);
            assert!(drawn.iter().all(|n| *n <= 2.0), "counted twice: {drawn:?}");

            opens[1].send(()).unwrap();
            opens[2].send(()).unwrap();
            let bar = reader.join().unwrap();
            assert_eq!((bar.done(), bar.partial()), (3, 0.0));
            let drawn = screen.counts(3);
            assert!(drawn.iter().all(|n| *n <= 3.0), "counted twice: {drawn:?}");
        });
    });
}

#[test]
fn partial_progress_is_read_from_unordered_maps_and_as_completed() {
    support::within(LIMIT, "partial progress, unordered", || {
        let pool = ThreadPool::new(2);
        let (open, gate) = mpsc::channel::<()>();
        let gate = Arc::new(Mutex::new(gate));
        let tasks: Vec<_> = (0..2u64)
            .map(|i| {
                let gate = Arc::clone(&gate);
                pool.submit(move || {
                    if i == 1 {
                        futurepool::report_progress(1, 4);
                        let _ = gate.lock().unwrap().recv();
                    }
                    i
                })
            })
            .collect();
        tasks[0].wait();
        let mut completed = as_completed(&tasks, Some(LIMIT)).progress();
        let wait_for = |bar: &dyn Fn() -> f64, want: f64| {
            let start = Instant::now();
            while bar() != want {
                assert!(start.elapsed() < LIMIT, "partial {} not {want}", bar());
                std::thread::yield_now();
            }
        };
        wait_for(&|| completed.partial(), 1.25);
        assert_eq!(completed.next().map(|t| t.unwrap().result()), Some(Ok(0)));
        assert_eq!((completed.done(), completed.partial()), (1, 0.25));
        open.send(()).unwrap();
        assert_eq!(completed.by_ref().count(), 1);
        assert_eq!((completed.done(), completed.partial()), (2, 0.0));

        // map_unordered: a finished item not yet taken counts whole.
        let mut unordered = pool.map_unordered(|n: u32| n, 0..4).progress();
        assert_eq!(
            unordered.partial(),
            0.0,
            "nothing submitted before the first next"
        );
        assert!(unordered.next().is_some());
        wait_for(&|| unordered.partial(), 3.0);
        assert_eq!(unordered.by_ref().count(), 3);
        assert_eq!((unordered.done(), unordered.partial()), (4, 0.0));
    });
}

#[test]
fn a_process_map_bar_counts_the_ready_results_of_its_chunk_as_partial() {
    support::within(LIMIT, "process map partial progress", || {
        let pool = ProcessPool::new(1).unwrap();
        let mut bar = pool.map(double, 0..10u32).chunksize(5).progress();
        assert_eq!(bar.next(), Some(Ok(0)));
        // The other four results of the first chunk are here, not yet taken; the second chunk
        // counts what is known of its items: up to its five once its results are in.
        let partial = bar.partial();
        assert!((4.0..=9.0).contains(&partial), "{partial}");
        let deadline = Instant::now() + Duration::from_secs(60);
        while bar.partial() < 9.0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        assert_eq!(
            bar.partial(),
            9.0,
            "four ready results and a finished chunk of five"
        );
        assert_eq!(bar.by_ref().count(), 9);
        assert_eq!((bar.done(), bar.partial()), (10, 0.0));
    });
}
