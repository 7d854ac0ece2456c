//! The thread pool's own behaviour, ported from CPython's
//! `test_concurrent_futures/test_thread_pool.py` and `executor.py`.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

use futurepool::{Executor, Shutdown, TaskError, ThreadPool, ThreadPoolBuilder};

fn thread_name() -> String {
    std::thread::current()
        .name()
        .expect("pool threads are named")
        .to_string()
}

/// A gate tasks block on until the test opens it.
#[derive(Clone)]
struct Gate(Arc<(Mutex<bool>, std::sync::Condvar)>);

impl Gate {
    fn new() -> Self {
        Gate(Arc::default())
    }
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

#[test]
fn submit_returns_the_value() {
    let pool = ThreadPool::new(2);
    assert_eq!(pool.submit(|| 2_i32.pow(5)).result(), Ok(32));
}

#[test]
fn submit_fallible_reports_the_task_error_as_failed() {
    let pool = ThreadPool::new(1);
    let task = pool.submit_fallible(|| Err::<u8, _>("bad input"));
    assert_eq!(task.result(), Err(TaskError::Failed("bad input")));
    assert!(task.failure().is_some());
}

#[test]
fn workers_start_lazily() {
    let pool = ThreadPool::new(4);
    assert_eq!(pool.worker_count(), 0);
}

#[test]
fn idle_thread_is_reused_for_sequential_tasks() {
    // CPython: test_idle_thread_reuse.
    let pool = ThreadPool::new(4);
    let names: Vec<String> = (0..3)
        .map(|_| pool.submit(thread_name).result().unwrap())
        .collect();
    assert_eq!(pool.worker_count(), 1);
    assert!(names[0].ends_with("-0"), "{names:?}");
    assert!(names.iter().all(|name| *name == names[0]), "{names:?}");
}

#[test]
fn at_most_one_thread_per_submit_and_never_more_than_max_workers() {
    // CPython: test_saturation.
    let max_workers = 3;
    let pool = ThreadPool::builder()
        .max_workers(max_workers)
        .thread_name_prefix("sat")
        .build();
    let gate = Gate::new();
    let mut tasks = Vec::new();
    for submitted in 1..=max_workers * 5 {
        let gate = gate.clone();
        tasks.push(pool.submit(move || {
            gate.pass();
            thread_name()
        }));
        // Every earlier task holds its worker at the gate, so each submit needs a new thread
        // until the cap.
        assert_eq!(pool.worker_count(), submitted.min(max_workers));
    }
    gate.open();
    let names: HashSet<String> = tasks.iter().map(|t| t.result().unwrap()).collect();
    let allowed: HashSet<String> = (0..max_workers).map(|n| format!("sat-{n}")).collect();
    assert!(names.is_subset(&allowed), "{names:?}");
    assert_eq!(pool.worker_count(), max_workers);
}

#[test]
fn threads_are_named_prefix_dash_number() {
    let pool = ThreadPool::builder()
        .max_workers(2)
        .thread_name_prefix("crawler")
        .build();
    let barrier = Arc::new(Barrier::new(2));
    let tasks: Vec<_> = (0..2)
        .map(|_| {
            let barrier = Arc::clone(&barrier);
            pool.submit(move || {
                barrier.wait(); // both workers at once, so both names show up
                thread_name()
            })
        })
        .collect();
    let mut names: Vec<String> = tasks.iter().map(|t| t.result().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["crawler-0", "crawler-1"]);
}

/// The default prefix `futurepool-{k}`, `k` the pool's number.
fn is_default_name(name: &str, worker: usize) -> bool {
    let Some(rest) = name.strip_prefix("futurepool-") else {
        return false;
    };
    let Some((pool, n)) = rest.split_once('-') else {
        return false;
    };
    pool.parse::<usize>().is_ok() && n == worker.to_string()
}

#[test]
fn default_thread_name_prefix_is_futurepool_and_the_pools_number() {
    let pool = ThreadPool::new(1);
    let name = pool.submit(thread_name).result().unwrap();
    assert!(is_default_name(&name, 0), "{name}");
}

#[test]
fn two_default_pools_threads_have_different_names() {
    // Issue 12: both used to be `futurepool-0`.
    let (a, b) = (ThreadPool::new(1), ThreadPool::new(1));
    let (a, b) = (
        a.submit(thread_name).result().unwrap(),
        b.submit(thread_name).result().unwrap(),
    );
    assert!(is_default_name(&a, 0) && is_default_name(&b, 0), "{a} {b}");
    assert_ne!(a, b);
}

#[test]
fn default_max_workers_is_cpus_plus_four_capped_at_32() {
    let cpus = std::thread::available_parallelism().unwrap().get();
    assert_eq!(ThreadPoolBuilder::default_max_workers(), (cpus + 4).min(32));
    assert_eq!(
        ThreadPool::default().max_workers(),
        (cpus + 4).min(32),
        "the default pool uses it"
    );
}

#[test]
#[should_panic(expected = "at least one worker")]
fn zero_workers_is_refused() {
    let _ = ThreadPool::new(0);
}

#[test]
fn a_panic_fails_the_task_and_the_worker_lives_on() {
    let pool = ThreadPool::new(1);
    let task = pool.submit(|| -> u8 { panic!("worker test panic") });
    match task.result() {
        Err(TaskError::Panicked(panic)) => {
            assert_eq!(panic.message(), "worker test panic");
            assert!(panic.location().unwrap().contains("thread_pool.rs"));
        }
        other => panic!("expected a panic, got {other:?}"),
    }
    assert!(is_default_name(
        &pool.submit(thread_name).result().unwrap(),
        0
    ));
    assert_eq!(pool.worker_count(), 1, "the same worker survived");
}

#[test]
fn initializer_runs_in_each_worker_before_its_first_task() {
    thread_local! {
        static READY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&runs);
    let pool = ThreadPool::builder()
        .max_workers(2)
        .initializer(move || {
            READY.with(|r| r.set(true));
            counted.fetch_add(1, Ordering::SeqCst);
            Ok::<(), String>(())
        })
        .build();
    let barrier = Arc::new(Barrier::new(2));
    let tasks: Vec<_> = (0..2)
        .map(|_| {
            let barrier = Arc::clone(&barrier);
            pool.submit(move || {
                barrier.wait();
                READY.with(|r| r.get())
            })
        })
        .collect();
    assert!(tasks.iter().all(|t| t.result() == Ok(true)));
    assert_eq!(runs.load(Ordering::SeqCst), 2, "once per worker");
}

#[test]
fn failing_initializer_breaks_the_pool() {
    // CPython: FailingInitializerMixin.test_initializer.
    let gate = Gate::new();
    let init_gate = gate.clone();
    let pool = ThreadPool::builder()
        .max_workers(1)
        .initializer(move || {
            init_gate.pass();
            Err("no database")
        })
        .build();
    let queued: Vec<_> = (0..5).map(|i| pool.submit(move || i)).collect();
    gate.open();
    for task in &queued {
        match task.result() {
            Err(TaskError::PoolBroken(reason)) => {
                assert!(reason.as_str().contains("no database"), "{reason}")
            }
            other => panic!("expected a broken pool, got {other:?}"),
        }
    }
    assert!(matches!(
        pool.submit(|| 1).result(),
        Err(TaskError::PoolBroken(_))
    ));
    assert_eq!(pool.worker_count(), 0);
}

#[test]
fn panicking_initializer_breaks_the_pool_with_the_panic_message() {
    let pool = ThreadPool::builder()
        .initializer(|| -> Result<(), String> { panic!("init exploded") })
        .build();
    match pool.submit(|| ()).result() {
        Err(TaskError::PoolBroken(reason)) => assert!(reason.as_str().contains("init exploded")),
        other => panic!("expected a broken pool, got {other:?}"),
    }
}

#[test]
fn bounded_queue_makes_submit_wait_for_room() {
    let pool = Arc::new(ThreadPool::builder().max_workers(1).max_queued(2).build());
    let gate = Gate::new();
    let (started_tx, started) = mpsc::channel();
    let blocker = {
        let gate = gate.clone();
        pool.submit(move || {
            started_tx.send(()).unwrap();
            gate.pass();
        })
    };
    started.recv().unwrap(); // the worker is busy; the queue is empty
    let queued: Vec<_> = (0..2).map(|i| pool.submit(move || i)).collect(); // fills it

    let (returned_tx, returned) = mpsc::channel();
    let submitter = {
        let pool = Arc::clone(&pool);
        std::thread::spawn(move || {
            let task = pool.submit(|| 99);
            returned_tx.send(()).unwrap();
            task
        })
    };
    // The queue stays full while the gate is closed, so the submit cannot have returned. (Waiting
    // longer can only make this check stricter, never make it fail wrongly.)
    assert_eq!(
        returned.recv_timeout(Duration::from_millis(100)),
        Err(mpsc::RecvTimeoutError::Timeout),
        "submit returned although the queue was full"
    );
    gate.open();
    returned.recv().unwrap();
    assert_eq!(submitter.join().unwrap().result(), Ok(99));
    blocker.wait();
    assert_eq!(queued[1].result(), Ok(1));
}

#[test]
fn shutdown_releases_a_submitter_blocked_on_a_full_queue() {
    let pool = Arc::new(ThreadPool::builder().max_workers(1).max_queued(1).build());
    let gate = Gate::new();
    let (started_tx, started) = mpsc::channel();
    {
        let gate = gate.clone();
        pool.submit(move || {
            started_tx.send(()).unwrap();
            gate.pass();
        });
    }
    started.recv().unwrap();
    let queued = pool.submit(|| 1);
    let submitter = {
        let pool = Arc::clone(&pool);
        std::thread::spawn(move || pool.submit(|| 2))
    };
    pool.shutdown(Shutdown::default().wait(false).cancel_pending(true));
    // Whether it was already blocked or submits only now, the queue is full until shutdown, so
    // its job is never accepted.
    assert_eq!(submitter.join().unwrap().result(), Err(TaskError::ShutDown));
    assert_eq!(queued.result(), Err(TaskError::Cancelled));
    gate.open();
}

#[test]
fn the_executor_trait_runs_plain_functions() {
    fn triple(n: u32) -> u32 {
        n * 3
    }
    fn parse(s: String) -> Result<u32, String> {
        s.parse().map_err(|_| format!("bad: {s}"))
    }
    fn run_anywhere(executor: &impl Executor) -> (u32, TaskError<String>) {
        let tripled = executor.submit_fn(triple, 14).result().unwrap();
        let failed = executor
            .submit_fallible_fn(parse, "x".to_string())
            .result()
            .unwrap_err();
        (tripled, failed)
    }
    let pool = ThreadPool::new(2);
    assert_eq!(
        run_anywhere(&pool),
        (42, TaskError::Failed("bad: x".to_string()))
    );
}

#[test]
fn a_task_can_submit_to_its_own_pool() {
    let pool = Arc::new(ThreadPool::new(2));
    let inner_pool = Arc::clone(&pool);
    let outer = pool.submit(move || inner_pool.submit(|| 7).result().unwrap() + 1);
    assert_eq!(outer.result(), Ok(8));
}

#[test]
fn a_pool_can_be_shared_by_reference_across_threads() {
    let pool = ThreadPool::new(2);
    let total: u64 = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4u64)
            .map(|t| {
                let pool = &pool;
                scope.spawn(move || {
                    (0..100u64)
                        .map(|i| pool.submit(move || t * 100 + i))
                        .collect::<Vec<_>>()
                        .iter()
                        .map(|task| task.result().unwrap())
                        .sum::<u64>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(total, (0..400u64).sum());
}

#[test]
fn the_pool_and_its_builder_can_move_between_threads() {
    fn send_and_sync<T: Send + Sync>() {}
    send_and_sync::<ThreadPool>();
    fn send<T: Send>() {}
    send::<ThreadPoolBuilder>();
}

/// A job submitted right behind one that blocks, while the only awake worker is about to take
/// the blocking one, still gets the other worker: a lock-free submit once left it behind the
/// blocked worker with the second one asleep, because it saw the first still spinning (the
/// `task::future` doctest hung on it). Repeated to meet the race; each round waits at most 10 s.
#[test]
fn a_job_behind_a_blocking_one_wakes_the_sleeping_worker() {
    let pool = ThreadPool::new(2);
    // Both workers started, so later submits take the lock-free path.
    let warm: Vec<_> = (0..2)
        .map(|_| pool.submit(|| std::thread::sleep(Duration::from_millis(20))))
        .collect();
    for task in warm {
        task.wait();
    }
    for round in 0..2_000 {
        let (release, gate) = mpsc::channel::<()>();
        let slow = pool.submit(move || gate.recv().is_ok());
        let fast = pool.submit(|| true);
        assert_eq!(
            fast.result_timeout(Duration::from_secs(10)),
            Ok(true),
            "round {round}: the job behind the blocking one never ran"
        );
        release.send(()).unwrap();
        assert_eq!(slow.result(), Ok(true));
    }
}
