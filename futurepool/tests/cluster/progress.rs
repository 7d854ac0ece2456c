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

futurepool::register!(report_and_hold);

pub const TESTS: &[(&str, fn())] = &[
    (
        "progress_of_a_task_on_a_thread_worker_reaches_the_handle_and_leaves_with_the_task",
        progress_of_a_task_on_a_thread_worker_reaches_the_handle_and_leaves_with_the_task,
    ),
    (
        "progress_of_a_task_on_a_process_worker_reaches_the_handle_and_leaves_with_the_task",
        progress_of_a_task_on_a_process_worker_reaches_the_handle_and_leaves_with_the_task,
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

fn touch(path: &Path) {
    std::fs::write(path, b"").expect("create the release file");
}
