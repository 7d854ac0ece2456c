//! The pool under abuse: workers killed at random while thousands of tasks run, 100,000 tasks
//! pending at once, and the parent process killed. (A worker binary that forgot `init()` is in
//! `misuse.rs`: this binary's `test_support!` is its `init()`.)

mod support;

use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futurepool::{ProcessPool, TaskError, WorkerLoss};

use support::{helper, is_gone, read_tagged_pids};

fn nap_micros(us: u64) -> u64 {
    std::thread::sleep(Duration::from_micros(us));
    us
}
fn noop(n: u32) -> u32 {
    n
}

futurepool::register!(nap_micros, noop);
futurepool::test_support!();

/// xorshift64: enough randomness to pick a victim, no dependency.
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn random_sigkills_lose_only_the_tasks_that_were_running() {
    const TASKS: usize = 20_000;
    let pool = Arc::new(ProcessPool::new(4).unwrap());
    let resolutions = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let task = pool.submit(nap_micros, 200);
            let resolutions = resolutions.clone();
            task.add_done_callback(move |_| {
                resolutions.fetch_add(1, Ordering::SeqCst);
            });
            task
        })
        .collect();

    let done = Arc::new(AtomicBool::new(false));
    let killer = {
        let (pool, done) = (pool.clone(), done.clone());
        std::thread::spawn(move || {
            let mut seed = 0x2545_f491_4f6c_dd1d_u64 ^ u64::from(std::process::id());
            let (mut kills, mut last_victim) = (0, None);
            while !done.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(100));
                let pids = pool.worker_pids();
                if !pids.is_empty() {
                    let victim = pids[next_random(&mut seed) as usize % pids.len()];
                    // SAFETY: signalling a worker process of our own pool.
                    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
                    kills += 1;
                    last_victim = Some(victim);
                }
            }
            (kills, last_victim)
        })
    };

    let (mut ok, mut lost) = (0, 0);
    for task in &tasks {
        match task.result() {
            Ok(200) => ok += 1,
            Err(TaskError::WorkerLost(WorkerLoss::Signaled(9))) => lost += 1,
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    done.store(true, Ordering::SeqCst);
    let (kills, last_victim) = killer.join().unwrap();
    println!("{ok} succeeded, {lost} lost with their worker, {kills} workers killed");
    assert_eq!(ok + lost, TASKS);
    assert!(
        lost <= kills,
        "at most the running task of each killed worker is lost"
    );
    assert_eq!(
        resolutions.load(Ordering::SeqCst),
        TASKS,
        "each resolved exactly once"
    );
    // Still usable afterwards. The last kill may have landed after every task resolved; wait
    // until the pool noticed that death (a call sent to the dead worker meanwhile would be
    // requeued anyway: it never reached it).
    let noticed_by = Instant::now() + Duration::from_secs(30);
    while last_victim.is_some_and(|pid| pool.worker_pids().contains(&pid)) {
        assert!(
            Instant::now() < noticed_by,
            "the pool never noticed a killed worker"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(pool.submit(noop, 7).result(), Ok(7));
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn a_hundred_thousand_pending_tasks_need_no_descriptors_each() {
    let pool = ProcessPool::new(2).unwrap();
    let before = open_fds();
    let tasks: Vec<_> = (0..100_000u32).map(|n| pool.submit(noop, n)).collect();
    let during = open_fds();
    for (n, task) in tasks.iter().enumerate() {
        assert_eq!(task.result(), Ok(n as u32));
    }
    println!("open descriptors: {before} before, {during} with 100,000 pending");
    // Two pipes per worker, plus whatever other tests in this binary hold at the moment.
    assert!(during < before + 64, "{before} -> {during}");
}

#[test]
#[ignore = "helper: run in a child process by workers_exit_when_the_parent_is_sigkilled"]
fn helper_pool_then_sleep_forever() {
    let pool = ProcessPool::new(2).unwrap();
    let tasks: Vec<_> = (0..2)
        .map(|_| pool.submit(nap_micros, 60_000_000))
        .collect();
    while !tasks.iter().all(|t| t.is_running()) || pool.worker_pids().len() < 2 {
        std::thread::sleep(Duration::from_millis(10));
    }
    let pids: Vec<String> = pool.worker_pids().iter().map(u32::to_string).collect();
    println!("WORKERS {}", pids.join(" "));
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn workers_exit_when_the_parent_is_sigkilled() {
    let mut parent = helper("helper_pool_then_sleep_forever")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let workers = read_tagged_pids(parent.stdout.take().unwrap(), "WORKERS ");
    assert_eq!(workers.len(), 2);
    assert!(workers.iter().all(|&w| !is_gone(w)));

    parent.kill().unwrap(); // SIGKILL: nothing in the parent gets to clean up
    parent.wait().unwrap();
    let killed = Instant::now();
    // A liveness bound, not a timing assertion: without the death signal they would sleep 60 s.
    while !workers.iter().all(|&w| is_gone(w)) {
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "orphaned workers {workers:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    println!(
        "workers gone {:?} after the parent was killed",
        killed.elapsed()
    );
}
