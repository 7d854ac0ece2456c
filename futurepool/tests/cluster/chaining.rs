//! Issue 16 on the cluster: `submit_after` chains on the broker. The dependent waits there, is
//! queued with the upstream's value when that outcome is published (the value never travels
//! through a client: the submitting client is gone by then), and takes the upstream's failure.
//! Workers are real processes, each test against a private `redis-server`.

use std::time::Duration;

use futurepool::cluster::SubmitOptions;
use futurepool::TaskError;

use crate::support::*;
use crate::{checked_half, explode, square, traced, World, LEASE};

pub const TESTS: &[(&str, fn())] = &[
    (
        "a_chain_runs_on_the_broker_after_its_submitting_client_is_gone",
        a_chain_runs_on_the_broker_after_its_submitting_client_is_gone,
    ),
    (
        "a_chained_task_takes_its_upstreams_error_or_panic_and_never_runs",
        a_chained_task_takes_its_upstreams_error_or_panic_and_never_runs,
    ),
    (
        "a_chained_task_after_a_finished_or_unknown_upstream_is_queued_or_refused_at_once",
        a_chained_task_after_a_finished_or_unknown_upstream_is_queued_or_refused_at_once,
    ),
];

/// Set in the environment of the child process that plays the submitting client.
pub const CHAIN_CLIENT: &str = "FUTUREPOOL_TEST_CHAIN_CLIENT";

/// The submitting client, a child process: `URL POOL LOG`. Submits `up` (a `traced` task, whose
/// value is its worker's pid) and `down` chained after it, waits until the broker has both,
/// then exits at once, while `up` still runs.
pub fn chain_client(spec: &str) -> ! {
    let mut parts = spec.split(' ');
    let (url, pool_name, log) = (
        parts.next().expect("url"),
        parts.next().expect("pool"),
        parts.next().expect("log"),
    );
    let pool = futurepool::cluster::ClusterPool::builder(url)
        .pool(pool_name)
        .lease(LEASE)
        .build()
        .expect("connect");
    let up = pool.submit_with(
        &SubmitOptions::new().id("up"),
        traced,
        (log.to_string(), "upstream".to_string(), 1500),
    );
    let _down = pool.submit_after_with(&SubmitOptions::new().id("down"), &up, square_pid);
    wait_for("both tasks to reach the broker", || {
        futurepool::cluster::status(url, pool_name).is_ok_and(|s| s.submitted >= 2)
    });
    // Gone without a word: no shutdown, no waiting for the outcomes.
    std::process::exit(0)
}

/// The submitting client (a child process) exits while the upstream runs; a second client,
/// attaching to the dependent by its id, hears the chained value, computed on the broker from a
/// value no client ever had.
fn a_chain_runs_on_the_broker_after_its_submitting_client_is_gone() {
    let world = World::new("chain-gone");
    let _worker = world.worker(2, 0);
    let spec = format!("{} {} {}", world.broker.url(), world.pool, world.log);
    let out = std::process::Command::new(std::env::current_exe().expect("own path"))
        .env(CHAIN_CLIENT, spec)
        .output()
        .expect("run the client");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        count(world.log(), "end", "upstream"),
        0,
        "the upstream still ran when its client exited"
    );
    let second_client = world.client(LEASE, 3);
    let down = second_client.submit_with_id("down", square_pid, 0);
    let up = second_client.submit_with_id("up", traced, world.job("upstream", 1500));
    let pid = u64::from(up.result_timeout(PATIENCE).expect("the upstream's pid"));
    assert_eq!(down.result_timeout(PATIENCE), Ok(pid * pid));
    assert_eq!(count(world.log(), "start", "upstream"), 1, "it ran once");
}

/// `square` of a pid, as `u32 → u64` (`traced` returns a `u32`).
pub fn square_pid(pid: u32) -> u64 {
    u64::from(pid) * u64::from(pid)
}

futurepool::register!(square_pid);

fn a_chained_task_takes_its_upstreams_error_or_panic_and_never_runs() {
    let world = World::new("chain-fail");
    let pool = world.client(LEASE, 3);
    // Submitted before any worker starts: every dependent waits on the broker first.
    let odd = pool.submit_fallible(checked_half, (world.log.clone(), "odd".into(), 7));
    let after_odd = pool.submit_after_ok(&odd, square);
    let even = pool.submit_fallible(checked_half, (world.log.clone(), "even".into(), 8));
    let after_even = pool.submit_after_ok(&even, square);
    let exploded = pool.submit(explode, (world.log.clone(), "boom".into()));
    let after_boom = pool.submit_after(&exploded, square);
    let after_after_boom = pool.submit_after(&after_boom, square);
    wait_for("the chains to wait on the broker", || {
        let status = world.status();
        status.queued >= 3 && status.chained == 4
    });
    let _worker = world.worker(2, 0);
    assert_eq!(
        after_odd.result_timeout(PATIENCE),
        Err(TaskError::Failed("7 is odd".to_string()))
    );
    assert_eq!(after_even.result_timeout(PATIENCE), Ok(16));
    for task in [&after_boom, &after_after_boom] {
        match task.result_timeout(PATIENCE) {
            Err(TaskError::Panicked(panic)) => assert_eq!(panic.message(), "boom in boom"),
            other => panic!("expected the upstream's panic, got {other:?}"),
        }
    }
    let status = world.status();
    assert_eq!(
        (status.published, status.chained),
        (7, 0),
        "every task published once, none left waiting: {status:?}"
    );
}

fn a_chained_task_after_a_finished_or_unknown_upstream_is_queued_or_refused_at_once() {
    let world = World::new("chain-late");
    let _worker = world.worker(1, 0);
    let pool = world.client(LEASE, 3);
    let done = pool.submit(square, 3);
    assert_eq!(done.result_timeout(PATIENCE), Ok(9));
    assert_eq!(
        pool.submit_after(&done, square).result_timeout(PATIENCE),
        Ok(81)
    );
    // Another client's task: its id means nothing to this pool handle.
    let other_client = world.client(LEASE, 3);
    let theirs = other_client.submit(square, 2);
    assert!(matches!(
        pool.submit_after(&theirs, square).result_timeout(PATIENCE),
        Err(TaskError::Transfer(_))
    ));
    let delayed = SubmitOptions::new().delay(Duration::from_secs(1));
    assert!(matches!(
        pool.submit_after_with(&delayed, &done, square)
            .result_timeout(PATIENCE),
        Err(TaskError::Transfer(_))
    ));
    assert_eq!(theirs.result_timeout(PATIENCE), Ok(4));
}
