//! Issue 14 on the cluster: `report_progress` inside a task a worker runs — on its threads or in
//! its local processes — reaches the client's handle for that task (`progress()` and
//! `on_progress`), through the `{futurepool:NAME}:progress` hash (field: task id, value
//! `"DONE TOTAL"`), whose field is gone once the task completes.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::*;
use crate::{World, LEASE};

// ---- The functions the workers run ----------------------------------------------------------

/// `(release, done, total)`: reports `1..=done` of `total`, one every 60 ms (so each gets past
/// the 50 ms rate limit), then waits (at most a minute) for the file `release` and returns
/// `done`.
pub fn report_and_hold((release, done, total): (PathBuf, u64, u64)) -> u64 {
    for i in 1..=done {
        futurepool::report_progress(i, total);
        std::thread::sleep(Duration::from_millis(60));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while !release.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    done
}

/// `(log, steps, total)`: logs its start, then reports `1..=total` of `total`, each once the
/// file `STEPS-(i-1)` exists (at most a minute each; the first at once), and returns `total`.
pub fn report_in_steps((log, steps, total): (String, PathBuf, u64)) -> u64 {
    log_line(&log, &format!("start steps {}", std::process::id()));
    for i in 1..=total {
        let gate = step(&steps, i - 1);
        let deadline = Instant::now() + Duration::from_secs(60);
        while i > 1 && !gate.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        futurepool::report_progress(i, total);
    }
    let gate = step(&steps, total);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !gate.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    total
}

fn step(steps: &Path, n: u64) -> PathBuf {
    PathBuf::from(format!("{}-{n}", steps.display()))
}

futurepool::register!(report_and_hold, report_in_steps);

pub const TESTS: &[(&str, fn())] = &[
    (
        "progress_of_a_task_on_a_thread_worker_reaches_the_handle_and_leaves_with_the_task",
        progress_of_a_task_on_a_thread_worker_reaches_the_handle_and_leaves_with_the_task,
    ),
    (
        "progress_of_a_task_on_a_process_worker_reaches_the_handle_and_leaves_with_the_task",
        progress_of_a_task_on_a_process_worker_reaches_the_handle_and_leaves_with_the_task,
    ),
    (
        "a_progress_hash_of_the_wrong_type_loses_no_report_and_stops_no_task_or_heartbeat",
        a_progress_hash_of_the_wrong_type_loses_no_report_and_stops_no_task_or_heartbeat,
    ),
];

fn progress_of_a_task_on_a_thread_worker_reaches_the_handle_and_leaves_with_the_task() {
    let world = World::new("progress-threads");
    let _worker = world.worker(2, 0);
    reaches_the_handle_and_leaves_with_the_task(&world);
}

fn progress_of_a_task_on_a_process_worker_reaches_the_handle_and_leaves_with_the_task() {
    let world = World::new("progress-procs");
    let _worker = world.process_worker(1, 0);
    reaches_the_handle_and_leaves_with_the_task(&world);
}

/// The task's field of the progress hash, if it has one.
fn stored(world: &World, task_id: &str) -> Option<String> {
    let hash = format!("{{futurepool:{}}}:progress", world.pool);
    match world.broker.cmd(&["HGET", &hash, task_id]) {
        Reply::Bulk(Some(value)) => Some(String::from_utf8(value).expect("text")),
        Reply::Bulk(None) => None,
        other => panic!("HGET {hash} {task_id}: {other:?}"),
    }
}

fn reaches_the_handle_and_leaves_with_the_task(world: &World) {
    let pool = world.client(LEASE, 3);
    let release = world.scratch.path("release");
    let task = pool.submit_with_id("counting", report_and_hold, (release.clone(), 7, 10));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    task.on_progress(move |done, total| sink.lock().unwrap().push((done, total)));
    // The task holds after its last report: the handle must come to show it.
    wait_for("the handle to show (7, 10)", || {
        task.progress() == Some((7, 10))
    });
    assert_eq!(stored(world, "id:counting").as_deref(), Some("7 10"));
    wait_for("the callback to hear (7, 10)", || {
        seen.lock().unwrap().last() == Some(&(7, 10))
    });
    let heard = seen.lock().unwrap().clone();
    assert!(
        heard.windows(2).all(|w| w[0].0 < w[1].0),
        "in order: {heard:?}"
    );
    touch(&release);
    assert_eq!(task.result_timeout(PATIENCE), Ok(7));
    assert_eq!(task.progress(), None, "done: no progress any more");
    wait_for("the progress field to go with the task", || {
        stored(world, "id:counting").is_none()
    });
    let hash = format!("{{futurepool:{}}}:progress", world.pool);
    assert_eq!(
        world.broker.cmd(&["EXISTS", &hash]),
        Reply::Int(0),
        "nothing outlives the task"
    );
}

/// Bug: with the progress hash replaced by another type (by another program), the `PROGRESS`
/// script skipped its write in silence: the worker said nothing, and a value reported
/// meanwhile was lost for good (the hash never showed it, even after the key was deleted,
/// unless the task reported again). Now the write fails, the worker says so once, the task
/// and the heartbeats go on, and the latest value is stored once the key is deleted.
fn a_progress_hash_of_the_wrong_type_loses_no_report_and_stops_no_task_or_heartbeat() {
    let world = World::new("progress-wrongtype");
    let pool = world.client(LEASE, 3);
    let _worker = world.worker(1, 0);
    let hash = format!("{{futurepool:{}}}:progress", world.pool);
    let steps = world.scratch.path("step");
    let task = pool.submit_with_id(
        "steps",
        report_in_steps,
        (world.log.clone(), steps.clone(), 3),
    );
    wait_for("the first report", || {
        stored(&world, "id:steps").as_deref() == Some("1 3")
    });
    assert_eq!(
        world.broker.cmd(&["SET", &hash, "x"]),
        Reply::Status("OK".into())
    );
    touch(&step(&steps, 1));
    let stderr = world.scratch.path("workers.stderr");
    let said = |line: &str| {
        std::fs::read_to_string(&stderr)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(line))
            .count()
    };
    wait_for("the worker to say its progress write failed", || {
        said("could not record the progress") > 0
    });
    assert!(
        std::fs::read_to_string(&stderr).unwrap().contains(&hash),
        "the line names the key"
    );
    // The keeper still heartbeats: the worker's stamp in the workers hash moves on.
    let workers = format!("{{futurepool:{}}}:workers", world.pool);
    let name = world.status().workers[0].name.clone();
    let stamp = || world.broker.cmd(&["HGET", &workers, &name]);
    let before = stamp();
    wait_for("another heartbeat", || stamp() != before);
    world.broker.cmd(&["DEL", &hash]);
    // The task reported nothing since: the value it reported while the key was broken comes.
    wait_for("the report made while the key was broken", || {
        stored(&world, "id:steps").as_deref() == Some("2 3")
    });
    wait_for("the worker to say progress is recorded again", || {
        said("progress is recorded again") == 1
    });
    touch(&step(&steps, 2));
    wait_for("the next report", || {
        stored(&world, "id:steps").as_deref() == Some("3 3")
    });
    touch(&step(&steps, 3));
    assert_eq!(task.result_timeout(PATIENCE), Ok(3));
    let log = Path::new(&world.log);
    assert_eq!(count(log, "start", "steps"), 1, "ran once: its lease held");
    // Seconds of failures, a minute between repeats: one line, not one per attempt.
    assert_eq!(said("could not record the progress"), 1);
    assert_eq!(said("still cannot record progress"), 0);
}

fn touch(path: &Path) {
    std::fs::write(path, b"").expect("create the release file");
}
