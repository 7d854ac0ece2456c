//! The cluster backend against a real `redis-server`, with workers as child processes: the ten
//! behaviours promised in `src/cluster/README.md`.
//!
//! This binary has its own `main` (`harness = false`): started with `FUTUREPOOL_CLUSTER_WORKER` set,
//! `futurepool::init()` makes it a worker serving the functions registered below; otherwise it runs the tests, each with a
//! private broker (AOF on, fsync on every write) on a free loopback port. Leases are 1–2 s so the
//! recovery paths run quickly. Without `redis-server` the tests are skipped, saying so.

mod abort;
mod chaining;
mod events;
mod hostile;
mod jobs;
mod processes;
mod progress;
mod support;
mod trust;

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use futurepool::cluster::{self, ClusterPool};
use futurepool::{
    as_completed, wait, Executor, ReturnWhen, Shutdown, TaskError, ThreadPool, WorkerLoss,
};
use support::*;

// ---- The functions the workers run ----------------------------------------------------------

fn square(n: u64) -> u64 {
    n * n
}

/// `(log, tag, sleep_ms)`: logs `start TAG PID`, sleeps, logs `end TAG PID`, returns the pid.
fn traced((log, tag, sleep_ms): (String, String, u64)) -> u32 {
    let pid = std::process::id();
    log_line(&log, &format!("start {tag} {pid}"));
    std::thread::sleep(Duration::from_millis(sleep_ms));
    log_line(&log, &format!("end {tag} {pid}"));
    pid
}

/// `(log, tag, n)`: its own error for odd numbers.
fn checked_half((log, tag, n): (String, String, u64)) -> Result<u64, String> {
    log_line(&log, &format!("start {tag} {}", std::process::id()));
    if n % 2 == 0 {
        Ok(n / 2)
    } else {
        Err(format!("{n} is odd"))
    }
}

/// `(log, tag)`: panics.
fn explode((log, tag): (String, String)) -> u64 {
    log_line(&log, &format!("start {tag} {}", std::process::id()));
    panic!("boom in {tag}")
}

/// Kills whichever worker runs it, every time.
fn poison(_: ()) -> u64 {
    std::process::abort()
}

/// Never registered: submitting it must fail at once, not hang.
fn unregistered(n: u64) -> u64 {
    n
}

futurepool::register!(square, traced, checked_half, explode, poison);

fn main() {
    // Before `init`, which serves in a worker: a worker started to have its events read prints
    // them.
    #[cfg(feature = "tracing")]
    events::print_events_to_stderr();
    // A worker started by a test (`FUTUREPOOL_CLUSTER_WORKER` set) serves here and exits.
    futurepool::init();
    if let Ok(spec) = std::env::var(trust::ORPHAN_CLIENT) {
        trust::orphan_client(&spec);
    }
    if let Ok(spec) = std::env::var(chaining::CHAIN_CLIENT) {
        chaining::chain_client(&spec);
    }
    // Install futurepool's panic-location hook now: installed lazily, it would first be needed
    // while a failing test unwinds (dropping its pool resolves handles under a panic guard), and
    // a panic hook cannot be changed from a panicking thread (the process would abort).
    let warm = ThreadPool::new(1);
    let _ = warm.submit(|| ()).result();
    let tests: &[(&str, fn())] = &[
        (
            "round_trip_on_three_workers_matches_local_results",
            round_trip_on_three_workers_matches_local_results,
        ),
        (
            "errors_and_panics_resolve_the_handle_and_run_once",
            errors_and_panics_resolve_the_handle_and_run_once,
        ),
        (
            "a_killed_workers_task_completes_on_another_worker",
            a_killed_workers_task_completes_on_another_worker,
        ),
        (
            "a_lost_worker_is_listed_then_forgotten",
            a_lost_worker_is_listed_then_forgotten,
        ),
        (
            "a_poison_task_fails_with_worker_lost_after_max_deliveries",
            a_poison_task_fails_with_worker_lost_after_max_deliveries,
        ),
        (
            "a_long_task_that_heartbeats_runs_exactly_once",
            a_long_task_that_heartbeats_runs_exactly_once,
        ),
        (
            "a_stopped_worker_resumed_after_its_lease_keeps_one_result",
            a_stopped_worker_resumed_after_its_lease_keeps_one_result,
        ),
        (
            "a_broker_killed_and_restarted_loses_nothing",
            a_broker_killed_and_restarted_loses_nothing,
        ),
        (
            "the_same_task_id_submitted_twice_runs_once",
            the_same_task_id_submitted_twice_runs_once,
        ),
        (
            "without_workers_a_task_times_out_then_a_late_worker_runs_it",
            without_workers_a_task_times_out_then_a_late_worker_runs_it,
        ),
        (
            "sigterm_finishes_or_releases_and_shutdown_drains",
            sigterm_finishes_or_releases_and_shutdown_drains,
        ),
    ];
    let mut tests = tests.to_vec();
    tests.extend_from_slice(trust::TESTS);
    tests.extend_from_slice(hostile::TESTS);
    tests.extend_from_slice(jobs::TESTS);
    tests.extend_from_slice(abort::TESTS);
    tests.extend_from_slice(chaining::TESTS);
    tests.extend_from_slice(processes::TESTS);
    tests.extend_from_slice(events::TESTS);
    tests.extend_from_slice(progress::TESTS);
    let tests = &tests[..];
    if !redis_available() && !std::env::args().any(|a| a == "--list") {
        println!(
            "\nskipping the cluster tests: `redis-server` was not found on PATH \
             (install it with `apt-get install -y redis-server`)"
        );
        println!(
            "\ntest result: ok. 0 passed; 0 failed; {} ignored; 0 measured; 0 filtered out\n",
            tests.len()
        );
        return;
    }
    if !run(tests) {
        std::process::exit(101);
    }
}

// ---- Test fixtures ----------------------------------------------------------------------------

/// One test's world: a scratch directory, a broker, an execution log, and a pool name.
struct World {
    broker: Broker,
    log: String,
    pool: String,
    scratch: Scratch,
}

impl World {
    fn new(pool: &str) -> World {
        World::with_broker(pool, &[])
    }

    /// A world whose broker runs with extra `redis-server` options.
    fn with_broker(pool: &str, options: &[&str]) -> World {
        let scratch = Scratch::new();
        let broker = Broker::start_with(&scratch, options);
        World {
            broker,
            log: scratch.path("executions.log").display().to_string(),
            pool: pool.to_string(),
            scratch,
        }
    }

    /// A client with a short lease, built before any worker starts so workers pick the lease up.
    fn client(&self, lease: Duration, max_deliveries: u32) -> ClusterPool {
        ClusterPool::builder(&self.broker.url())
            .pool(&self.pool)
            .lease(lease)
            .max_deliveries(max_deliveries)
            .build()
            .expect("connect the client")
    }

    fn worker(&self, threads: usize, prefetch: usize) -> WorkerProcess {
        self.start_worker(threads, prefetch, None)
    }

    /// A worker running its tasks in a local pool of `processes` processes.
    fn process_worker(&self, processes: usize, prefetch: usize) -> WorkerProcess {
        self.start_worker(1, prefetch, Some(processes))
    }

    fn start_worker(
        &self,
        threads: usize,
        prefetch: usize,
        processes: Option<usize>,
    ) -> WorkerProcess {
        WorkerProcess::start(&WorkerSpec {
            url: self.broker.url(),
            pool: self.pool.clone(),
            threads,
            prefetch,
            processes,
            stderr: self.scratch.path("workers.stderr"),
        })
    }

    fn log(&self) -> &Path {
        Path::new(&self.log)
    }

    fn job(&self, tag: &str, sleep_ms: u64) -> (String, String, u64) {
        (self.log.clone(), tag.to_string(), sleep_ms)
    }

    fn status(&self) -> cluster::Status {
        cluster::status(&self.broker.url(), &self.pool).expect("status")
    }
}

const LEASE: Duration = Duration::from_secs(1);

// ---- The tests ----------------------------------------------------------------------------------

/// 1. Three workers, 1,000 tasks: `map` keeps input order, `as_completed` yields each task once,
///    `wait` sees them all done, and the results equal the local thread pool's.
fn round_trip_on_three_workers_matches_local_results() {
    let world = World::new("round-trip");
    let pool = world.client(LEASE, 3);
    let _workers: Vec<_> = (0..3).map(|_| world.worker(2, 8)).collect();
    let local: Vec<u64> = ThreadPool::new(2)
        .map(square, 0..1000u64)
        .map(Result::unwrap)
        .collect();

    let mapped: Vec<u64> = pool
        .map(square, 0..1000u64)
        .timeout(PATIENCE)
        .map(|r| r.expect("a result"))
        .collect();
    assert_eq!(mapped, local);

    let tasks: Vec<_> = (0..1000u64).map(|n| pool.submit(square, n)).collect();
    let mut seen = HashSet::new();
    for task in as_completed(&tasks, Some(PATIENCE)) {
        let task = task.expect("completed in time");
        assert!(seen.insert(task.result().expect("a value")), "yielded once");
    }
    assert_eq!(seen, local.iter().copied().collect::<HashSet<_>>());
    let (done, not_done) = wait(&tasks, ReturnWhen::AllCompleted, Some(PATIENCE));
    assert_eq!((done.len(), not_done.len()), (1000, 0));

    // Unordered, and through the Executor trait as generic code would use it.
    let mut unordered: Vec<u64> = pool
        .map_unordered(square, 0..100u64)
        .map(Result::unwrap)
        .collect();
    unordered.sort_unstable();
    assert_eq!(unordered, local[..100]);
    let generic: Vec<u64> = Executor::map_fn(&pool, square, 0..10u64)
        .map(Result::unwrap)
        .collect();
    assert_eq!(generic, local[..10]);

    let status = world.status();
    assert_eq!(status.published, 2110, "every task published once");
    assert_eq!(
        (status.queued, status.in_flight, status.duplicates),
        (0, 0, 0)
    );
    assert_eq!(status.workers.len(), 3);
}

/// 2. A task's own error and a panic are results: delivered with their content, not retried.
fn errors_and_panics_resolve_the_handle_and_run_once() {
    let world = World::new("errors");
    let pool = world.client(LEASE, 3);
    let _worker = world.worker(2, 2);

    let odd = pool.submit_fallible(checked_half, (world.log.clone(), "odd".into(), 7));
    let even = pool.submit_fallible(checked_half, (world.log.clone(), "even".into(), 8));
    let boom = pool.submit(explode, (world.log.clone(), "boom".into()));

    assert_eq!(
        odd.result_timeout(PATIENCE),
        Err(TaskError::Failed("7 is odd".to_string()))
    );
    assert_eq!(even.result_timeout(PATIENCE), Ok(4));
    match boom.result_timeout(PATIENCE) {
        Err(TaskError::Panicked(panic)) => {
            assert_eq!(panic.message(), "boom in boom");
            let location = panic.location().expect("a location");
            assert!(location.contains("main.rs"), "{location}");
        }
        other => panic!("expected a panic, got {other:?}"),
    }
    for tag in ["odd", "even", "boom"] {
        assert_eq!(count(world.log(), "start", tag), 1, "{tag} ran once");
    }

    // A function that is not registered fails at once, never reaching the broker.
    let stray = pool.submit(unregistered, 1);
    assert!(matches!(
        stray.try_result(),
        Some(Err(TaskError::Transfer(_)))
    ));
}

/// 3. SIGKILL the worker running a task: another worker completes it after the lease.
fn a_killed_workers_task_completes_on_another_worker() {
    let world = World::new("killed");
    let pool = world.client(LEASE, 3);
    let mut first = world.worker(1, 0);
    let task = pool.submit(traced, world.job("t", 1500));
    wait_for("the task to start", || {
        count(world.log(), "start", "t") == 1
    });
    let victim = pids(world.log(), "start", "t")[0];
    assert_eq!(victim, first.pid());
    let second = world.worker(1, 0);
    first.signal(libc::SIGKILL);
    first.wait();

    let pid = task.result_timeout(PATIENCE).expect("completed elsewhere");
    assert_eq!(pid, second.pid());
    assert_eq!(pids(world.log(), "end", "t"), vec![second.pid()]);
}

/// 3b. `status` lists a killed worker with its growing heartbeat age, then forgets it once it has
///     been silent for ten leases and holds nothing.
fn a_lost_worker_is_listed_then_forgotten() {
    let world = World::new("forget");
    let _pool = world.client(Duration::from_millis(200), 3);
    let mut lost = world.worker(1, 0);
    let _alive = world.worker(1, 0);
    wait_for("both workers to register", || {
        world.status().workers.len() == 2
    });
    lost.signal(libc::SIGKILL);
    lost.wait();
    wait_for("the lost worker to look silent", || {
        let status = world.status();
        status
            .workers
            .iter()
            .any(|w| w.last_heartbeat.is_some_and(|age| age > status.lease))
    });
    wait_for("the lost worker to be forgotten", || {
        world.status().workers.len() == 1
    });
}

/// 4. A task that kills every worker running it fails after `max_deliveries` deliveries and is
///    dead-lettered; other tasks are unaffected.
fn a_poison_task_fails_with_worker_lost_after_max_deliveries() {
    let world = World::new("poison");
    let pool = world.client(LEASE, 3);
    let poisoned = pool.submit(poison, ());
    let fine: Vec<_> = (0..20u64).map(|n| pool.submit(square, n)).collect();

    // Two workers, replaced whenever one dies, until the poison is dead-lettered.
    let mut workers: Vec<WorkerProcess> = (0..2).map(|_| world.worker(1, 0)).collect();
    let mut deaths = 0;
    while !poisoned.is_done() {
        for worker in &mut workers {
            if worker.try_wait().is_some() {
                deaths += 1;
                *worker = world.worker(1, 0);
            }
        }
        assert!(
            deaths <= 3,
            "the poison was delivered more than max_deliveries times"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    assert_eq!(
        poisoned.result(),
        Err(TaskError::WorkerLost(WorkerLoss::GaveUp { deliveries: 3 }))
    );
    for (n, task) in fine.iter().enumerate() {
        assert_eq!(task.result_timeout(PATIENCE), Ok(square(n as u64)));
    }
    let status = world.status();
    assert_eq!(status.dead_lettered, 1);
    assert_eq!(status.recent_dead[0].deliveries, 3);
    assert!(status.recent_dead[0].function.ends_with("poison"));
    assert_eq!(status.recent_dead[0].reason, "lost its worker 3 times");
    // Counted right (issue 12: it used to say "1 tasks lost a worker 3 times").
    let stderr = std::fs::read_to_string(world.scratch.path("workers.stderr")).unwrap();
    assert!(
        stderr.contains("1 task lost its worker 3 times and was dead-lettered"),
        "{stderr}"
    );
}

/// 5. A task running three leases long keeps its lease by heartbeats: nobody else runs it.
fn a_long_task_that_heartbeats_runs_exactly_once() {
    let world = World::new("long");
    let pool = world.client(LEASE, 3);
    let _workers = [world.worker(1, 0), world.worker(1, 0)];
    let task = pool.submit(traced, world.job("long", 3 * LEASE.as_millis() as u64));
    task.result_timeout(PATIENCE)
        .expect("the long task finishes");
    assert_eq!(count(world.log(), "start", "long"), 1);
    let status = world.status();
    assert_eq!((status.published, status.duplicates), (1, 0));
}

/// 6. A worker stopped (SIGSTOP) past its lease loses its task to another worker; when resumed it
///    finishes too, and its late result is discarded: exactly one result is kept.
fn a_stopped_worker_resumed_after_its_lease_keeps_one_result() {
    let world = World::new("stopped");
    let pool = world.client(LEASE, 3);
    let sleeper = world.worker(1, 0);
    let task = pool.submit(traced, world.job("s", 800));
    wait_for("the task to start", || {
        count(world.log(), "start", "s") == 1
    });
    sleeper.signal(libc::SIGSTOP);
    let rescuer = world.worker(1, 0);

    assert_eq!(task.result_timeout(PATIENCE), Ok(rescuer.pid()));
    sleeper.signal(libc::SIGCONT);
    wait_for("the resumed worker to finish its copy", || {
        count(world.log(), "end", "s") == 2
    });
    wait_for("its late completion to be discarded", || {
        world.status().duplicates == 1
    });
    assert_eq!(world.status().published, 1);
    assert_eq!(task.result(), Ok(rescuer.pid()), "the first result stays");
}

/// 7. SIGKILL the broker with tasks queued and running; restart it on the same data (AOF): every
///    task resolves, each outcome is published once.
fn a_broker_killed_and_restarted_loses_nothing() {
    let mut world = World::new("restart");
    let pool = world.client(Duration::from_secs(2), 3);
    let _workers = [world.worker(2, 2), world.worker(2, 2)];
    let tasks: Vec<_> = (0..120)
        .map(|n| pool.submit(traced, world.job(&format!("r{n}"), 25)))
        .collect();
    wait_for("some tasks to run", || {
        world.log().exists() && support::log_lines(world.log()).len() >= 20
    });
    world.broker.kill();
    std::thread::sleep(Duration::from_millis(300));
    world.broker.restart();

    for task in &tasks {
        task.result_timeout(PATIENCE)
            .expect("resolved after the restart");
    }
    let status = world.status();
    assert_eq!(status.published, 120, "one published outcome per task");
    assert_eq!((status.queued, status.in_flight), (0, 0));
}

/// 8. Submitting under the same task id again (same client, another client, after it finished)
///    never runs it twice.
fn the_same_task_id_submitted_twice_runs_once() {
    let world = World::new("idempotent");
    let pool = world.client(LEASE, 3);
    let other = world.client(LEASE, 3);
    let first = pool.submit_with_id("order-17", traced, world.job("o", 300));
    let again = pool.submit_with_id("order-17", traced, world.job("o", 300));
    let elsewhere = other.submit_with_id("order-17", traced, world.job("o", 300));
    let _worker = world.worker(2, 2);

    let pid = first.result_timeout(PATIENCE).expect("ran");
    assert_eq!(again.result_timeout(PATIENCE), Ok(pid));
    assert_eq!(elsewhere.result_timeout(PATIENCE), Ok(pid));
    let after = other.submit_with_id("order-17", traced, world.job("o", 300));
    assert_eq!(after.result_timeout(PATIENCE), Ok(pid));
    assert_eq!(count(world.log(), "start", "o"), 1);
    assert_eq!(world.status().submitted, 1);
}

/// 9. With no worker a task waits: `result_timeout` times out and the task stays queued; a worker
///    started later runs it.
fn without_workers_a_task_times_out_then_a_late_worker_runs_it() {
    let world = World::new("late");
    let pool = world.client(LEASE, 3);
    let task = pool.submit(square, 9);
    assert_eq!(
        task.result_timeout(Duration::from_millis(300)),
        Err(TaskError::Timeout)
    );
    wait_for("the task to reach the queue", || world.status().queued == 1);
    assert!(world.status().workers.is_empty());
    let _worker = world.worker(1, 0);
    assert_eq!(task.result_timeout(PATIENCE), Ok(81));
}

/// 10. SIGTERM lets a worker finish its running task and put back the ones it fetched but had
///     not started; `shutdown(wait)` returns once every task is resolved.
fn sigterm_finishes_or_releases_and_shutdown_drains() {
    let world = World::new("sigterm");
    let pool = world.client(LEASE, 3);
    let tags: Vec<String> = (0..5).map(|n| format!("g{n}")).collect();
    let tasks: Vec<_> = tags
        .iter()
        .map(|tag| pool.submit(traced, world.job(tag, 400)))
        .collect();
    wait_for("the tasks to be queued", || world.status().queued == 5);
    // One thread and room to prefetch all: it holds five, runs one.
    let mut leaving = world.worker(1, 4);
    wait_for("a task to start", || {
        support::log_lines(world.log()).len() == 1
    });
    leaving.signal(libc::SIGTERM);
    assert!(leaving.wait().success(), "a clean exit");

    let ran_on_leaver: HashSet<String> = tags
        .iter()
        .filter(|tag| pids(world.log(), "start", tag) == vec![leaving.pid()])
        .cloned()
        .collect();
    assert_eq!(
        ran_on_leaver.len(),
        1,
        "it ran only the task it had started"
    );
    for tag in &ran_on_leaver {
        assert_eq!(
            pids(world.log(), "end", tag),
            vec![leaving.pid()],
            "and finished it"
        );
    }
    assert_eq!(world.status().released, 4);

    let _stayer = world.worker(2, 0);
    pool.shutdown(Shutdown::default());
    for task in &tasks {
        assert!(
            task.is_done(),
            "shutdown(wait) returned before a task resolved"
        );
        task.result().expect("every task succeeds");
    }
    for tag in &tags {
        assert_eq!(count(world.log(), "start", tag), 1, "{tag} ran once");
    }
}
