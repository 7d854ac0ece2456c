//! Issue 10: a bad value, a bad entry or a permanent broker error never wedges a worker or a
//! client. One test per numbered case, each against private `redis-server`s (one with
//! `--proto-max-bulk-len 1mb`, one with `requirepass`), each under the runner's watchdog.

use std::time::{Duration, Instant};

use futurepool::cluster::{ClusterError, ClusterPool};
use futurepool::TaskError;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::support::*;
use crate::{traced, World, LEASE};

// ---- The functions the workers run ----------------------------------------------------------

/// `n` bytes.
pub fn sized(n: usize) -> Vec<u8> {
    vec![7; n]
}

/// The length of what it was given.
pub fn length(data: Vec<u8>) -> usize {
    data.len()
}

/// `2n + 1`.
pub fn scale(n: u64) -> u64 {
    2 * n + 1
}

/// A value whose `Drop` panics (after it was serialized on the worker).
#[derive(Clone, Serialize, Deserialize)]
pub struct DropBomb(u8);

impl Drop for DropBomb {
    fn drop(&mut self) {
        panic!("boom in Drop")
    }
}

pub fn drop_bomb(_: ()) -> DropBomb {
    DropBomb(1)
}

/// A value whose `Serialize` panics.
#[derive(Clone)]
pub struct SerializeBomb;

impl Serialize for SerializeBomb {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        panic!("boom in Serialize")
    }
}

impl<'de> Deserialize<'de> for SerializeBomb {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        u8::deserialize(d).map(|_| SerializeBomb)
    }
}

pub fn serialize_bomb(_: ()) -> SerializeBomb {
    SerializeBomb
}

/// An argument whose `Deserialize` panics (on the worker; it serializes fine on the client).
pub struct DeserializeBomb;

impl Serialize for DeserializeBomb {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(0)
    }
}

impl<'de> Deserialize<'de> for DeserializeBomb {
    fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        panic!("boom in Deserialize")
    }
}

pub fn deserialize_bomb(_: DeserializeBomb) -> u8 {
    0
}

/// A result whose `Deserialize` panics: on the client, in its listener thread.
#[derive(Clone)]
pub struct ClientBomb;

impl Serialize for ClientBomb {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(0)
    }
}

impl<'de> Deserialize<'de> for ClientBomb {
    fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        panic!("boom in the client's Deserialize")
    }
}

pub fn client_bomb(_: ()) -> ClientBomb {
    ClientBomb
}

/// Starts this same binary as a plain program (`--list`, which prints the test names and exits)
/// and reports whether it exited within 20 s; a child that turned into a worker never exits.
pub fn start_a_futurepool_program(_: ()) -> bool {
    let mut child = std::process::Command::new(std::env::current_exe().expect("own path"))
        .arg("--list")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the program");
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if child.try_wait().expect("try_wait").is_some() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    false
}

futurepool::register!(
    sized,
    length,
    scale,
    drop_bomb,
    serialize_bomb,
    deserialize_bomb,
    client_bomb,
    start_a_futurepool_program
);

/// Every test of this file, for the runner.
pub const TESTS: &[(&str, fn())] = &[
    (
        "a_result_larger_than_the_broker_accepts_fails_only_its_task",
        a_result_larger_than_the_broker_accepts_fails_only_its_task,
    ),
    (
        "sigterm_stops_a_worker_whose_broker_is_gone",
        sigterm_stops_a_worker_whose_broker_is_gone,
    ),
    (
        "an_argument_larger_than_the_broker_accepts_fails_at_once",
        an_argument_larger_than_the_broker_accepts_fails_at_once,
    ),
    (
        "a_task_longer_than_result_ttl_still_resolves",
        a_task_longer_than_result_ttl_still_resolves,
    ),
    (
        "out_of_range_settings_are_refused_at_build_and_bad_stored_ones_do_not_stall",
        out_of_range_settings_are_refused_at_build_and_bad_stored_ones_do_not_stall,
    ),
    (
        "entries_without_id_or_fn_are_dead_lettered_with_a_reason",
        entries_without_id_or_fn_are_dead_lettered_with_a_reason,
    ),
    (
        "entries_with_non_utf8_fields_are_dead_lettered_not_reported_lost",
        entries_with_non_utf8_fields_are_dead_lettered_not_reported_lost,
    ),
    (
        "an_unparsable_stored_lease_is_named_and_recovery_keeps_working",
        an_unparsable_stored_lease_is_named_and_recovery_keeps_working,
    ),
    (
        "panics_in_drop_serialize_deserialize_fail_their_task_and_the_worker_carries_on",
        panics_in_drop_serialize_deserialize_fail_their_task_and_the_worker_carries_on,
    ),
    (
        "a_task_sent_with_another_signature_is_refused_not_misread",
        a_task_sent_with_another_signature_is_refused_not_misread,
    ),
    (
        "a_task_that_starts_a_futurepool_program_does_not_make_it_a_worker",
        a_task_that_starts_a_futurepool_program_does_not_make_it_a_worker,
    ),
    (
        "permanent_broker_errors_stop_the_worker_with_the_message",
        permanent_broker_errors_stop_the_worker_with_the_message,
    ),
    (
        "a_worker_started_before_its_broker_logs_each_attempt_then_serves",
        a_worker_started_before_its_broker_logs_each_attempt_then_serves,
    ),
    (
        "dropping_a_pool_without_live_workers_returns_and_leaves_the_tasks_queued",
        dropping_a_pool_without_live_workers_returns_and_leaves_the_tasks_queued,
    ),
    (
        "dropping_a_pool_without_live_workers_says_what_it_waits_for",
        dropping_a_pool_without_live_workers_says_what_it_waits_for,
    ),
];

/// Within this, an error the broker refuses must have failed its task ("within seconds", with a
/// wide margin for a loaded machine).
const PROMPTLY: Duration = Duration::from_secs(30);

fn stderr_of(world: &World) -> String {
    std::fs::read_to_string(world.scratch.path("workers.stderr")).unwrap_or_default()
}

fn transfer_error<R: std::fmt::Debug>(outcome: Result<R, TaskError>) -> String {
    match outcome {
        Err(TaskError::Transfer(why)) => why.to_string(),
        other => panic!("expected a transfer error, got {other:?}"),
    }
}

/// The two brokers that refuse values over 1 MiB: one that says so (`CONFIG GET`) and one that
/// hides it (`CONFIG` disabled, as on many managed servers), so only its error reply tells.
fn small_brokers() -> [(&'static str, Vec<&'static str>); 2] {
    [
        (
            "proto-max-bulk-len 1mb",
            vec!["--proto-max-bulk-len", "1mb"],
        ),
        (
            "proto-max-bulk-len 1mb, CONFIG disabled",
            vec![
                "--proto-max-bulk-len",
                "1mb",
                "--rename-command",
                "CONFIG",
                "",
            ],
        ),
    ]
}

// ---- The tests ----------------------------------------------------------------------------------

/// 1. A result larger than the broker accepts fails that task with a clear `Transfer` error within
///    seconds; the worker's other results publish; SIGTERM still stops the worker cleanly.
fn a_result_larger_than_the_broker_accepts_fails_only_its_task() {
    for (what, options) in small_brokers() {
        let world = World::with_broker("big-result", &options);
        let pool = world.client(LEASE, 3);
        let mut worker = world.worker(1, 4);
        let big = pool.submit(sized, 2 << 20);
        let small: Vec<_> = (0..5).map(|n| pool.submit(sized, n)).collect();
        let why = transfer_error(big.result_timeout(PROMPTLY));
        assert!(why.contains("bytes"), "{what}: the error says why: {why}");
        let hidden = what.contains("CONFIG disabled");
        // Said by the worker's own check, or pinned on the task after the broker refused it.
        let expected = if hidden {
            "refused"
        } else {
            "more than the 1048576"
        };
        assert!(why.contains(expected), "{what}: {why}");
        for (n, task) in small.iter().enumerate() {
            assert_eq!(task.result_timeout(PROMPTLY), Ok(vec![7; n]), "{what}");
        }
        worker.signal(libc::SIGTERM);
        assert!(
            worker.wait().success(),
            "{what}: SIGTERM stops the worker cleanly"
        );
        let stderr = stderr_of(&world);
        assert!(stderr.contains("serving pool \"big-result\""), "{stderr}");
        assert!(stderr.contains(": stopped"), "{stderr}");
    }
}

/// 1 (SIGTERM). A worker told to stop while its broker is gone does not retry publishing forever:
///    it gives up after a short budget (the lease recovers the task) and exits.
fn sigterm_stops_a_worker_whose_broker_is_gone() {
    let mut world = World::new("gone");
    let pool = world.client(LEASE, 3);
    let mut worker = world.worker(1, 0);
    let _task = pool.submit(traced, world.job("orphan", 1500));
    wait_for("the task to start", || {
        count(world.log(), "start", "orphan") == 1
    });
    world.broker.kill();
    worker.signal(libc::SIGTERM);
    let status = worker.wait();
    assert!(status.success(), "a clean stop, bounded: {status:?}");
    let stderr = stderr_of(&world);
    assert!(
        stderr.contains("retrying in"),
        "each attempt was logged: {stderr}"
    );
    // The broker is gone for good: cancel rather than wait for it.
    pool.shutdown(futurepool::Shutdown::default().cancel_pending(true));
}

/// 2. An argument larger than the broker accepts fails that task at once; later submits go on.
fn an_argument_larger_than_the_broker_accepts_fails_at_once() {
    for (what, options) in small_brokers() {
        let world = World::with_broker("big-arg", &options);
        let pool = world.client(LEASE, 3);
        let _worker = world.worker(2, 4);
        let before = pool.submit(length, vec![1; 10]);
        let big = pool.submit(length, vec![1; 2 << 20]);
        let after: Vec<_> = (0..5).map(|n| pool.submit(length, vec![0; n])).collect();
        let why = transfer_error(big.result_timeout(PROMPTLY));
        let hidden = what.contains("CONFIG disabled");
        let expected = if hidden {
            "the broker refused the task"
        } else {
            "more than the 1048576"
        };
        assert!(why.contains(expected), "{what}: {why}");
        assert_eq!(before.result_timeout(PROMPTLY), Ok(10), "{what}");
        for (n, task) in after.iter().enumerate() {
            assert_eq!(task.result_timeout(PROMPTLY), Ok(n), "{what}");
        }
        // The client is not wedged: a new task still goes through.
        assert_eq!(
            pool.submit(length, vec![0; 3]).result_timeout(PROMPTLY),
            Ok(3)
        );
    }
    // A client-side limit fails the task without any round trip.
    let world = World::new("max-payload");
    let pool = ClusterPool::builder(&world.broker.url())
        .pool(&world.pool)
        .max_payload(100)
        .build()
        .expect("connect");
    let why = transfer_error(
        pool.submit(length, vec![0; 200])
            .try_result()
            .expect("at once"),
    );
    assert!(why.contains("more than the 100"), "{why}");
    pool.shutdown(futurepool::Shutdown::default());
}

/// 3. `result_ttl(1s)` and a 3 s task: it still resolves (the waiters outlive the TTL).
fn a_task_longer_than_result_ttl_still_resolves() {
    let world = World::new("ttl");
    let pool = ClusterPool::builder(&world.broker.url())
        .pool(&world.pool)
        .lease(LEASE)
        .result_ttl(Duration::from_secs(1))
        .build()
        .expect("connect");
    // Queued for longer than the TTL too, before a worker starts.
    let task = pool.submit(traced, world.job("long", 3000));
    std::thread::sleep(Duration::from_millis(1500));
    let _worker = world.worker(1, 0);
    assert!(task.result_timeout(PATIENCE).is_ok());
}

/// 4. Every setting is checked at `build()`, before connecting; a bad setting stored on the
///    broker by another program does not stall the pool (its clients submit, its workers run).
fn out_of_range_settings_are_refused_at_build_and_bad_stored_ones_do_not_stall() {
    let world = World::new("settings");
    let url = world.broker.url();
    let refused = [
        ClusterPool::builder(&url).result_ttl(Duration::MAX).build(),
        ClusterPool::builder(&url).lease(Duration::MAX).build(),
        ClusterPool::builder(&url)
            .lease(Duration::from_millis(1))
            .build(),
        ClusterPool::builder(&url).max_deliveries(0).build(),
        ClusterPool::builder(&url).max_payload(0).build(),
    ];
    for (n, built) in refused.into_iter().enumerate() {
        match built {
            Err(ClusterError::InvalidSetting(why)) => {
                assert!(why.to_string().contains("must be") || n == 4, "{why}")
            }
            other => panic!("setting {n} was accepted: {other:?}"),
        }
    }
    let pool = world.client(LEASE, 3);
    let config = format!("{{futurepool:{}}}:config", world.pool);
    world.broker.cmd(&[
        "HSET",
        &config,
        "result_ttl_ms",
        "18446744073709551615",
        "max_deliveries",
        "lots",
    ]);
    let _worker = world.worker(2, 4);
    let tasks: Vec<_> = (0..20).map(|n| pool.submit(scale, n)).collect();
    for (n, task) in tasks.iter().enumerate() {
        assert_eq!(task.result_timeout(PATIENCE), Ok(2 * n as u64 + 1));
    }
    let fresh = world.client(LEASE, 3);
    world.broker.cmd(&["HSET", &config, "result_ttl_ms", "1h"]);
    assert_eq!(fresh.submit(scale, 1).result_timeout(PATIENCE), Ok(3));
    let status = world.status();
    assert!(
        status.problems.iter().any(|p| p.contains("result_ttl_ms")),
        "{:?}",
        status.problems
    );

    // Keys of the wrong type or content, as another program might leave them: the settings
    // hash, the counters, the dead letters. The pool still runs tasks.
    let world = World::new("broken-keys");
    let key = |name: &str| format!("{{futurepool:{}}}:{name}", world.pool);
    world.broker.cmd(&["SET", &key("config"), "not a hash"]);
    world
        .broker
        .cmd(&["HSET", &key("stats"), "submitted", "many", "published", "x"]);
    world.broker.cmd(&["SET", &key("dead"), "not a stream"]);
    let pool = plain_client(&world);
    let _worker = world.worker(2, 4);
    let tasks: Vec<_> = (0..20).map(|n| pool.submit(scale, n)).collect();
    for (n, task) in tasks.iter().enumerate() {
        assert_eq!(task.result_timeout(PATIENCE), Ok(2 * n as u64 + 1));
    }
}

/// A client of `world`'s pool that stores no settings.
fn plain_client(world: &World) -> ClusterPool {
    ClusterPool::builder(&world.broker.url())
        .pool(&world.pool)
        .build()
        .expect("connect")
}

fn queue(world: &World) -> String {
    format!("{{futurepool:{}}}:queue", world.pool)
}

/// 5. Queue entries without `id` or `fn` are dead-lettered with a reason — by the fetcher, and
///    by the reaper script when they sit in a lost worker's pending list — counted in status, and
///    a real task dead-lettered in the same reaper pass still reaches its client at once.
fn entries_without_id_or_fn_are_dead_lettered_with_a_reason() {
    let world = World::new("no-id");
    let pool = world.client(LEASE, 1);
    let queue = queue(&world);
    let real = pool.submit(traced, world.job("real", 0));
    wait_for("the task to be queued", || world.status().queued == 1);
    world
        .broker
        .cmd(&["XADD", &queue, "*", "fn", "x", "arg", ""]);
    world
        .broker
        .cmd(&["XADD", &queue, "*", "id", "id:orphan", "arg", ""]);
    // A consumer that takes all three and is never heard of again.
    world.broker.cmd(&[
        "XREADGROUP",
        "GROUP",
        "workers",
        "ghost",
        "COUNT",
        "10",
        "STREAMS",
        &queue,
        ">",
    ]);
    let started = Instant::now();
    let _worker = world.worker(1, 0);
    assert_eq!(
        real.result_timeout(PATIENCE),
        Err(TaskError::WorkerLost(futurepool::WorkerLoss::GaveUp {
            deliveries: 1
        }))
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the client was told at once, not after a timeout: {:?}",
        started.elapsed()
    );
    // Straight to a live worker: the fetcher dead-letters it.
    world
        .broker
        .cmd(&["XADD", &queue, "*", "fn", "y", "arg", ""]);
    wait_for("the malformed entries to be counted", || {
        world.status().malformed == 3
    });
    let status = world.status();
    let reasons: Vec<&str> = status
        .recent_dead
        .iter()
        .map(|d| d.reason.as_str())
        .collect();
    assert_eq!(
        reasons.iter().filter(|r| r.contains("no `id`")).count(),
        2,
        "{reasons:?}"
    );
    assert_eq!(
        reasons.iter().filter(|r| r.contains("no `fn`")).count(),
        1,
        "{reasons:?}"
    );
    assert_eq!(status.queued + status.in_flight, 0, "nothing left behind");
    // The pool works on.
    assert!(pool
        .submit(traced, world.job("after", 0))
        .result_timeout(PATIENCE)
        .is_ok());
}

/// 6. Entries with a non-UTF-8 `id` or `fn` are dead-lettered with that reason at once, not
///    skipped and later reported as "lost a worker"; so are entries with an undecodable argument
///    or an unknown function (their clients get a transfer error too).
fn entries_with_non_utf8_fields_are_dead_lettered_not_reported_lost() {
    let world = World::new("non-utf8");
    let pool = world.client(LEASE, 3);
    let _worker = world.worker(1, 0);
    let queue = queue(&world);
    world.broker.command(&[
        b"XADD",
        queue.as_bytes(),
        b"*",
        b"id",
        b"\xff\xfe",
        b"fn",
        b"f",
        b"arg",
        b"",
    ]);
    world.broker.command(&[
        b"XADD",
        queue.as_bytes(),
        b"*",
        b"id",
        b"id:x",
        b"fn",
        b"\xc3(",
        b"arg",
        b"",
    ]);
    // Well-formed entries the worker cannot run: an argument that does not decode, a function
    // this build does not have.
    let name = format!("{}::scale", module_path!());
    world.broker.command(&[
        b"XADD",
        queue.as_bytes(),
        b"*",
        b"id",
        b"id:undecodable",
        b"fn",
        name.as_bytes(),
        b"arg",
        b"\xff",
    ]);
    world.broker.cmd(&[
        "XADD",
        &queue,
        "*",
        "id",
        "id:unknown",
        "fn",
        "nope",
        "arg",
        "",
    ]);
    assert_eq!(pool.submit(scale, 4).result_timeout(PATIENCE), Ok(9));
    wait_for("all four to be dead-lettered", || {
        world.status().malformed == 4
    });
    let status = world.status();
    let reasons: Vec<&str> = status
        .recent_dead
        .iter()
        .map(|d| d.reason.as_str())
        .collect();
    assert_eq!(
        reasons.iter().filter(|r| r.contains("not UTF-8")).count(),
        2,
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("bad argument")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("no function named `nope`")),
        "{reasons:?}"
    );
    assert!(!reasons.iter().any(|r| r.contains("lost")), "{reasons:?}");
    assert_eq!(status.queued + status.in_flight, 0);
}

/// 7. An unparsable stored `lease_ms` is named (status and worker log) and the pool keeps the
///    last valid lease: a killed worker's task is still recovered within about a lease.
fn an_unparsable_stored_lease_is_named_and_recovery_keeps_working() {
    let world = World::new("bad-lease");
    let pool = world.client(LEASE, 3);
    let mut workers = vec![world.worker(1, 0), world.worker(1, 0)];
    wait_for("both workers", || world.status().workers.len() == 2);
    let task = pool.submit(traced, world.job("held", 2000));
    wait_for("the task to start", || {
        count(world.log(), "start", "held") == 1
    });
    let config = format!("{{futurepool:{}}}:config", world.pool);
    world.broker.cmd(&["HSET", &config, "lease_ms", "500ms"]);
    // Both workers have read the bad value at least once (they read it every quarter lease).
    std::thread::sleep(Duration::from_secs(1));
    let holder = pids(world.log(), "start", "held")[0];
    let held_by = workers
        .iter()
        .position(|w| w.pid() == holder)
        .expect("one of ours");
    let mut first = workers.remove(held_by);
    let killed = Instant::now();
    first.signal(libc::SIGKILL);
    first.wait();
    assert!(task.result_timeout(PATIENCE).is_ok());
    assert!(
        killed.elapsed() < Duration::from_secs(20),
        "recovered with a 1 s lease, not the 30 s default: {:?}",
        killed.elapsed()
    );
    assert_eq!(count(world.log(), "start", "held"), 2);
    let status = world.status();
    assert!(
        status.problems.iter().any(|p| p.contains("lease_ms")),
        "{status:?}"
    );
    assert!(format!("{status}").contains("lease_ms"));
    assert!(
        stderr_of(&world).contains("lease_ms"),
        "the worker says so too"
    );
}

/// 8. A panic in a result's `Drop` or `Serialize`, or in an argument's `Deserialize`, fails that
///    task (panicked or transfer) and the single-threaded worker runs the next task; SIGTERM
///    still stops it cleanly. A panic in the result's `Deserialize` on the client fails only that
///    task too.
fn panics_in_drop_serialize_deserialize_fail_their_task_and_the_worker_carries_on() {
    let world = World::new("bombs");
    let pool = world.client(LEASE, 3);
    let mut worker = world.worker(1, 0);
    let failed = |outcome: Result<(), TaskError>, what: &str| match outcome {
        Err(TaskError::Panicked(p)) => assert!(p.message().contains("boom"), "{what}: {p}"),
        Err(TaskError::Transfer(why)) => assert!(why.to_string().contains("boom"), "{what}: {why}"),
        other => panic!("{what}: {other:?}"),
    };
    // The client's copy of a `DropBomb` must not panic here: it never decodes one (the worker
    // fails the task before publishing a value).
    failed(
        pool.submit(drop_bomb, ())
            .result_timeout(PATIENCE)
            .map(std::mem::forget),
        "Drop",
    );
    assert_eq!(pool.submit(scale, 1).result_timeout(PATIENCE), Ok(3));
    failed(
        pool.submit(serialize_bomb, ())
            .result_timeout(PATIENCE)
            .map(drop),
        "Serialize",
    );
    assert_eq!(pool.submit(scale, 2).result_timeout(PATIENCE), Ok(5));
    failed(
        pool.submit(deserialize_bomb, DeserializeBomb)
            .result_timeout(PATIENCE)
            .map(drop),
        "Deserialize",
    );
    assert_eq!(pool.submit(scale, 3).result_timeout(PATIENCE), Ok(7));
    // The client decodes results on its listener thread: a panic there fails only that task.
    failed(
        pool.submit(client_bomb, ())
            .result_timeout(PATIENCE)
            .map(drop),
        "client",
    );
    assert_eq!(pool.submit(scale, 4).result_timeout(PATIENCE), Ok(9));
    worker.signal(libc::SIGTERM);
    assert!(worker.wait().success(), "SIGTERM still works");
}

/// 9. A task whose client had another signature for the function (here: an entry with a foreign
///    fingerprint, as an older or different build would send) is refused with a clear error,
///    never run on misread bytes; a matching one runs.
fn a_task_sent_with_another_signature_is_refused_not_misread() {
    let world = World::new("signature");
    let pool = world.client(LEASE, 3);
    let _worker = world.worker(1, 0);
    assert_eq!(pool.submit(scale, 5).result_timeout(PATIENCE), Ok(11));
    let queue = queue(&world);
    let name = format!("{}::scale", module_path!());
    let arg = [5u8]; // postcard of 5u64
    world.broker.command(&[
        b"XADD",
        queue.as_bytes(),
        b"*",
        b"id",
        b"id:foreign",
        b"fn",
        name.as_bytes(),
        b"arg",
        &arg,
        b"sig",
        b"0123456789abcdef",
    ]);
    let result_key = format!("{{futurepool:{}}}:result:id:foreign", world.pool);
    wait_for("the foreign task to be answered", || {
        world.broker.cmd(&["EXISTS", &result_key]) == Reply::Int(1)
    });
    let outcome = world.broker.cmd(&["GET", &result_key]).text();
    assert!(
        outcome.starts_with('T'),
        "a transfer error, not a value: {outcome}"
    );
    assert!(outcome.contains("disagree on the signature"), "{outcome}");
    assert!(
        outcome.contains("fn(u64) -> u64"),
        "names this side's signature: {outcome}"
    );
}

/// 10. A task that starts another futurepool-based program on a worker: the child is a plain
///     program (the worker variables were cleared once read), not a second worker.
fn a_task_that_starts_a_futurepool_program_does_not_make_it_a_worker() {
    let world = World::new("child-program");
    let pool = world.client(LEASE, 3);
    let _worker = world.worker(1, 0);
    assert_eq!(
        pool.submit(start_a_futurepool_program, ())
            .result_timeout(PATIENCE),
        Ok(true)
    );
    assert_eq!(world.status().workers.len(), 1, "no second worker joined");
}

/// 11. A worker the broker refuses (requirepass, no password: NOAUTH) or whose queue key has the
///     wrong type (WRONGTYPE) exits non-zero with the message instead of retrying forever; a
///     client gets `Refused` at build.
fn permanent_broker_errors_stop_the_worker_with_the_message() {
    let world = World::with_broker("auth", &["--requirepass", "s3cret"]);
    match ClusterPool::connect(&world.broker.url()) {
        Err(ClusterError::Refused(why)) => assert!(why.to_string().contains("NOAUTH"), "{why}"),
        other => panic!("expected Refused, got {other:?}"),
    }
    let mut worker = world.worker(1, 0);
    let status = worker.wait();
    assert!(!status.success(), "a non-zero exit: {status:?}");
    let stderr = stderr_of(&world);
    assert!(stderr.contains("NOAUTH"), "{stderr}");
    assert!(stderr.contains("password"), "says what to fix: {stderr}");
    // With the password it works.
    let url = format!("redis://:s3cret@127.0.0.1:{}/", world.broker.port());
    let pool = ClusterPool::builder(&url)
        .pool(&world.pool)
        .build()
        .expect("connect");
    let spec = WorkerSpec {
        url,
        pool: world.pool.clone(),
        threads: 1,
        prefetch: 0,
        processes: None,
        stderr: world.scratch.path("workers.stderr"),
    };
    let _worker = WorkerProcess::start(&spec);
    assert_eq!(pool.submit(scale, 0).result_timeout(PATIENCE), Ok(1));
    assert!(
        !stderr_of(&world).contains("s3cret"),
        "the password is never printed"
    );

    let world = World::new("wrongtype");
    world.broker.cmd(&["SET", &queue(&world), "not a stream"]);
    let mut worker = world.worker(1, 0);
    let status = worker.wait();
    assert!(!status.success(), "a non-zero exit: {status:?}");
    let stderr = stderr_of(&world);
    assert!(stderr.contains("WRONGTYPE"), "{stderr}");
}

/// 11 (transient). A worker started before its broker logs every failed attempt, then serves
///     once the broker is up.
fn a_worker_started_before_its_broker_logs_each_attempt_then_serves() {
    let scratch = Scratch::new();
    let mut broker = Broker::unstarted(&scratch, &[]);
    let spec = WorkerSpec {
        url: broker.url(),
        pool: "early".to_string(),
        threads: 1,
        prefetch: 0,
        processes: None,
        stderr: scratch.path("workers.stderr"),
    };
    let _worker = WorkerProcess::start(&spec);
    let attempts = || {
        std::fs::read_to_string(scratch.path("workers.stderr"))
            .unwrap_or_default()
            .matches("retrying in")
            .count()
    };
    wait_for("three logged attempts", || attempts() >= 3);
    broker.restart();
    let pool = ClusterPool::builder(&broker.url())
        .pool("early")
        .build()
        .expect("connect");
    assert_eq!(pool.submit(scale, 10).result_timeout(PATIENCE), Ok(21));
}

/// 12. A client with no live worker: dropping the pool says what it waits for and returns once no
///     worker has been alive for a lease; the task stays queued and a later worker runs it.
fn dropping_a_pool_without_live_workers_returns_and_leaves_the_tasks_queued() {
    let world = World::new("orphaned");
    let pool = world.client(LEASE, 3);
    let task = pool.submit(traced, world.job("later", 0));
    assert_eq!(
        task.result_timeout(Duration::from_millis(300)),
        Err(TaskError::Timeout)
    );
    let dropped = Instant::now();
    drop(pool);
    assert!(
        dropped.elapsed() < Duration::from_secs(30),
        "drop returned after about a lease: {:?}",
        dropped.elapsed()
    );
    assert_eq!(
        task.try_result(),
        Some(Err(TaskError::Timeout)),
        "its handle resolved"
    );
    assert_eq!(world.status().queued, 1, "the task stays queued");
    let _worker = world.worker(1, 0);
    wait_for("a later worker to run it", || {
        count(world.log(), "end", "later") == 1
    });
}

/// The environment variable that makes this binary run [`orphan_client`] (for the test below).
pub const ORPHAN_CLIENT: &str = "FUTUREPOOL_TEST_ORPHAN_CLIENT";

/// A program that submits one task to a pool without workers and drops the pool: run by the
/// test below as a child process, so its stderr can be read. `URL POOL LOG`.
pub fn orphan_client(spec: &str) -> ! {
    let mut parts = spec.split(' ');
    let (url, pool, log) = (
        parts.next().expect("url"),
        parts.next().expect("pool"),
        parts.next().expect("log"),
    );
    let pool = ClusterPool::builder(url)
        .pool(pool)
        .lease(LEASE)
        .build()
        .expect("connect");
    let _task = pool.submit(traced, (log.to_string(), "child".to_string(), 0));
    drop(pool);
    std::process::exit(0)
}

/// 12 (message). Dropping that pool tells the user what it waits for and why it stops waiting.
fn dropping_a_pool_without_live_workers_says_what_it_waits_for() {
    let world = World::new("orphaned-child");
    let spec = format!("{} {} {}", world.broker.url(), world.pool, world.log);
    let out = std::process::Command::new(std::env::current_exe().expect("own path"))
        .env(ORPHAN_CLIENT, spec)
        .output()
        .expect("run the client");
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("shutting down, waiting for 1 task (no worker is alive"),
        "{stderr}"
    );
    assert!(stderr.contains("stopped waiting for 1 task"), "{stderr}");
    assert!(
        stderr.contains("stay queued for workers that start later"),
        "{stderr}"
    );
    assert_eq!(world.status().queued, 1, "the task stays queued");
}
