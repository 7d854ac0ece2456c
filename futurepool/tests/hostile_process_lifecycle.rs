//! Hostile tasks against the process pool's life cycle (issue 9, cases 1-4, 8, 10-13): tasks that
//! close or steal their worker's descriptors, fork, start grandchildren, stop themselves, ignore
//! SIGTERM; absurd durations and sizes; a parent killed or Ctrl-C'd. Every test runs under a
//! watchdog (`support::within`), so a hang fails the test that hung.

mod support;

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futurepool::{ProcessPool, ProcessPoolError, TaskError, WorkerLoss};

use support::{all_threads_stopped, assert_gone_within, helper, is_gone, read_tagged_pids, within};

const WATCHDOG: Duration = Duration::from_secs(90);

fn pid(_: ()) -> u32 {
    std::process::id()
}
fn double(n: u64) -> u64 {
    n * 2
}
fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}
/// Closes (or overwrites with `/dev/null`) one of the worker's pipe descriptors, then sleeps.
fn wreck_descriptor(how: (String, i32)) -> u32 {
    let (what, fd) = how;
    // SAFETY: deliberately hostile: this is the misbehaviour under test. Plain system calls on
    // integers.
    unsafe {
        if what == "close" {
            libc::close(fd);
        } else {
            let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
            libc::dup2(null, fd);
        }
    }
    std::thread::sleep(Duration::from_secs(60));
    0
}
/// Forks a child (no exec) that sleeps `child_ms` holding every descriptor of the worker, then
/// sleeps `parent_ms` itself.
fn fork_and_sleep(ms: (u64, u64)) -> u32 {
    let (child_ms, parent_ms) = ms;
    // SAFETY: the child only calls async-signal-safe functions (usleep, _exit).
    unsafe {
        let child = libc::fork();
        if child == 0 {
            let mut left = child_ms * 1000;
            while left > 0 {
                let step = left.min(500_000);
                libc::usleep(step as libc::useconds_t);
                left -= step;
            }
            libc::_exit(0);
        }
    }
    std::thread::sleep(Duration::from_millis(parent_ms));
    1
}
/// Forks; the child returns from the task too (into the worker's loop) after `child_ms`.
fn fork_and_return(child_ms: u64) -> u32 {
    // SAFETY: the child only sleeps (usleep is async-signal-safe) and returns.
    let child = unsafe { libc::fork() };
    if child == 0 {
        unsafe { libc::usleep((child_ms * 1000) as libc::useconds_t) };
        return 2;
    }
    1
}
/// Starts `sleep 300` as a grandchild, writes its pid to `path`, then sleeps 60 s.
fn start_grandchild(path: String) -> u32 {
    // Never waited for: it must outlive this task, and die with the worker's process group.
    #[allow(clippy::zombie_processes)]
    let child = Command::new("sleep").arg("300").spawn().unwrap();
    std::fs::write(format!("{path}.tmp"), child.id().to_string()).unwrap();
    std::fs::rename(format!("{path}.tmp"), &path).unwrap();
    std::thread::sleep(Duration::from_secs(60));
    0
}
/// Stops its own worker with SIGSTOP.
fn stop_myself(_: ()) -> u32 {
    // SAFETY: plain system call on this process.
    unsafe { libc::raise(libc::SIGSTOP) };
    std::thread::sleep(Duration::from_secs(60));
    0
}
/// Ignores SIGTERM, then sleeps.
fn ignore_sigterm(ms: u64) -> u64 {
    // SAFETY: setting a signal disposition to SIG_IGN has no memory effects.
    unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
    std::thread::sleep(Duration::from_millis(ms));
    ms
}
static INIT_LEN: std::sync::Mutex<usize> = std::sync::Mutex::new(0);
fn init_with_blob(blob: Vec<u8>) {
    *INIT_LEN.lock().unwrap() = blob.len();
}
fn slow_init(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}
fn init_len(_: ()) -> usize {
    *INIT_LEN.lock().unwrap()
}
/// A result whose `Deserialize` panics, in the parent, on the pool's reader thread.
#[derive(Debug, Clone, PartialEq)]
struct DecodeBomb;
impl serde::Serialize for DecodeBomb {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_unit()
    }
}
impl<'de> serde::Deserialize<'de> for DecodeBomb {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        panic!("DecodeBomb went off while decoding")
    }
}
fn returns_decode_bomb(_: ()) -> DecodeBomb {
    DecodeBomb
}
/// The environment a program started by a task sees, as `NAME=value` lines.
fn child_env(_: ()) -> String {
    let out = Command::new("env").output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}
/// Runs this test binary's `helper_nested_pool` as a child program; true if it succeeded.
fn run_nested_pool_program(_: ()) -> bool {
    helper("helper_nested_pool")
        .stdout(Stdio::null())
        .status()
        .unwrap()
        .success()
}

futurepool::register!(
    pid,
    double,
    sleep_ms,
    wreck_descriptor,
    fork_and_sleep,
    fork_and_return,
    start_grandchild,
    stop_myself,
    ignore_sigterm,
    init_with_blob,
    init_len,
    slow_init,
    child_env,
    run_nested_pool_program,
    returns_decode_bomb,
);
futurepool::test_support!();

/// A fresh path in the temp dir for a task to report a pid through.
fn pid_file(tag: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "futurepool-hostile-{tag}-{}-{:?}",
        std::process::id(),
        Instant::now()
    ));
    let _ = std::fs::remove_file(&path);
    path
}

fn read_pid_file(path: &Path) -> u32 {
    let start = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            let _ = std::fs::remove_file(path);
            return text.trim().parse().unwrap();
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no pid in {path:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn is_lost_or_time_limit(outcome: &Result<u32, TaskError>) -> bool {
    matches!(
        outcome,
        Err(TaskError::WorkerLost(_) | TaskError::TimeLimit(_))
    )
}

// ---- Case 1: a task closes or overwrites its worker's answer descriptor ----

fn wrecked_answer_pipe_still_settles(how: &str) {
    let how = how.to_string();
    within(
        WATCHDOG,
        "a task wrecking fd 4 under a time limit",
        move || {
            let limit = Duration::from_secs(1);
            let pool = ProcessPool::builder()
                .max_workers(1)
                .time_limit(limit)
                .build()
                .unwrap();
            let worker = pool.submit(pid, ()).result().unwrap();
            let start = Instant::now();
            let task = pool.submit(wreck_descriptor, (how, 4));
            let outcome = task.result();
            assert!(is_lost_or_time_limit(&outcome), "{outcome:?}");
            // Liveness bound, far below the task's 60 s sleep.
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{:?}",
                start.elapsed()
            );
            assert_gone_within(worker, Duration::from_secs(30), "the wrecked worker");
            // The pool replaced it and still works.
            assert_eq!(pool.submit(double, 21).result(), Ok(42));
            pool.kill_workers();
        },
    );
}

#[test]
fn task_closing_its_answer_descriptor_ends_by_its_time_limit() {
    wrecked_answer_pipe_still_settles("close");
}

#[test]
fn task_dup2ing_over_its_answer_descriptor_ends_by_its_time_limit() {
    wrecked_answer_pipe_still_settles("dup2");
}

#[test]
fn worker_whose_answer_descriptor_is_closed_is_not_left_running() {
    within(WATCHDOG, "a task closing fd 4 without a time limit", || {
        let pool = ProcessPool::new(1).unwrap();
        let worker = pool.submit(pid, ()).result().unwrap();
        let start = Instant::now();
        let task = pool.submit(wreck_descriptor, ("close".to_string(), 4));
        // It can never answer: the pool must notice, kill it and fail the task.
        let outcome = task.result();
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{:?}",
            start.elapsed()
        );
        assert!(
            matches!(outcome, Err(TaskError::WorkerLost(_))),
            "{outcome:?}"
        );
        assert_gone_within(worker, Duration::from_secs(30), "the worker");
        assert!(!pool.worker_pids().contains(&worker));
        pool.kill_workers();
    });
}

#[test]
fn worker_whose_calls_descriptor_is_overwritten_is_listed_and_killable() {
    within(
        WATCHDOG,
        "kill_workers on a worker that closed fd 3",
        || {
            let pool = ProcessPool::new(1).unwrap();
            let worker = pool.submit(pid, ()).result().unwrap();
            let task = pool.submit(wreck_descriptor, ("dup2".to_string(), 3));
            while !task.is_running() {
                std::thread::sleep(Duration::from_millis(5));
            }
            std::thread::sleep(Duration::from_millis(200));
            assert_eq!(pool.worker_pids(), [worker], "a live worker is listed");
            pool.kill_workers();
            assert_eq!(
                task.result(),
                Err(TaskError::WorkerLost(WorkerLoss::Signaled(9)))
            );
            assert_gone_within(worker, Duration::from_secs(30), "the killed worker");
        },
    );
}

// ---- Case 2: a task forks; the child holds every pipe ----

#[test]
fn forked_child_holding_the_pipes_does_not_delay_the_time_limit() {
    within(WATCHDOG, "time limit with a forked child", || {
        let limit = Duration::from_secs(1);
        let pool = ProcessPool::builder()
            .max_workers(1)
            .time_limit(limit)
            .build()
            .unwrap();
        let start = Instant::now();
        let outcome = pool.submit(fork_and_sleep, (40_000, 60_000)).result();
        assert_eq!(outcome, Err(TaskError::TimeLimit(limit)));
        // Liveness bound, far below the child's 40 s.
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{:?}",
            start.elapsed()
        );
    });
}

#[test]
fn forked_child_holding_the_pipes_does_not_delay_drop() {
    within(WATCHDOG, "drop with a forked child", || {
        let pool = ProcessPool::new(1).unwrap();
        assert_eq!(pool.submit(fork_and_sleep, (40_000, 0)).result(), Ok(1));
        let start = Instant::now();
        drop(pool);
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{:?}",
            start.elapsed()
        );
    });
}

#[test]
fn forked_child_returning_from_a_task_never_answers_or_takes_calls() {
    within(WATCHDOG, "a forked child back in the worker's loop", || {
        let pool = ProcessPool::new(1).unwrap();
        assert_eq!(pool.submit(fork_and_return, 200).result(), Ok(1));
        // While the child sleeps and after it returned, every call goes to the worker, once.
        for round in 0..20u64 {
            assert_eq!(pool.submit(double, round).result(), Ok(round * 2));
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(pool.workers_started(), 1);
    });
}

#[test]
fn forked_child_returning_from_a_chunk_item_never_answers_or_takes_calls() {
    within(WATCHDOG, "a forked child back in a by-item chunk", || {
        // A time limit makes the chunk go item by item: each item's answer is its own frame,
        // which the child must not write either.
        let pool = ProcessPool::builder()
            .max_workers(1)
            .time_limit(Duration::from_secs(600))
            .build()
            .unwrap();
        let out: Vec<_> = pool.map(fork_and_return, [200; 4]).chunksize(4).collect();
        assert_eq!(out, [Ok(1), Ok(1), Ok(1), Ok(1)]);
        for round in 0..20u64 {
            assert_eq!(pool.submit(double, round).result(), Ok(round * 2));
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(pool.workers_started(), 1);
    });
}

// ---- Case 3: the whole process tree dies with its worker ----

fn grandchild_dies_with(how: &str) {
    let how = how.to_string();
    within(WATCHDOG, "a grandchild outliving its worker", move || {
        let path = pid_file(&how);
        let pool = ProcessPool::builder()
            .max_workers(1)
            .time_limit(Duration::from_secs(if how == "time limit" {
                2
            } else {
                600
            }))
            .build()
            .unwrap();
        let task = pool.submit(start_grandchild, path.to_string_lossy().into_owned());
        let grandchild = read_pid_file(&path);
        assert!(!is_gone(grandchild));
        match how.as_str() {
            "terminate" => pool.terminate_workers(),
            "kill" => pool.kill_workers(),
            _ => {}
        }
        let outcome = task.result();
        assert!(is_lost_or_time_limit(&outcome), "{outcome:?}");
        assert_gone_within(grandchild, Duration::from_secs(30), &how);
    });
}

#[test]
fn time_limit_kills_the_workers_grandchildren() {
    grandchild_dies_with("time limit");
}

#[test]
fn terminate_workers_kills_the_workers_grandchildren() {
    grandchild_dies_with("terminate");
}

#[test]
fn kill_workers_kills_the_workers_grandchildren() {
    grandchild_dies_with("kill");
}

#[test]
#[ignore = "helper: run in a child process by parent_sigkill_kills_the_workers_grandchildren"]
fn helper_pool_with_grandchild_then_sleep() {
    let path = pid_file("parent-killed");
    let pool = ProcessPool::new(1).unwrap();
    let _task = pool.submit(start_grandchild, path.to_string_lossy().into_owned());
    let grandchild = read_pid_file(&path);
    println!("PIDS {} {}", pool.worker_pids()[0], grandchild);
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn parent_sigkill_kills_the_workers_grandchildren() {
    within(WATCHDOG, "the parent SIGKILLed", || {
        let mut parent = helper("helper_pool_with_grandchild_then_sleep")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let pids = read_tagged_pids(parent.stdout.take().unwrap(), "PIDS ");
        let (worker, grandchild) = (pids[0], pids[1]);
        assert!(!is_gone(worker) && !is_gone(grandchild));
        parent.kill().unwrap(); // SIGKILL: nothing in the parent runs
        parent.wait().unwrap();
        assert_gone_within(worker, Duration::from_secs(30), "the worker");
        assert_gone_within(grandchild, Duration::from_secs(30), "the grandchild");
    });
}

#[test]
#[ignore = "helper: run in a child process by parent_sigkill_kills_a_stopped_workers_tree"]
fn helper_pool_with_stopped_worker_then_sleep() {
    let path = pid_file("parent-killed-stopped");
    let pool = ProcessPool::new(1).unwrap();
    let _task = pool.submit(start_grandchild, path.to_string_lossy().into_owned());
    let grandchild = read_pid_file(&path);
    let worker = pool.worker_pids()[0];
    // SAFETY: plain system call.
    unsafe { libc::kill(worker as libc::pid_t, libc::SIGSTOP) };
    while !all_threads_stopped(worker) {
        std::thread::sleep(Duration::from_millis(5));
    }
    println!("PIDS {worker} {grandchild}");
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn parent_sigkill_kills_a_stopped_workers_tree() {
    within(WATCHDOG, "the parent SIGKILLed, the worker stopped", || {
        let mut parent = helper("helper_pool_with_stopped_worker_then_sleep")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let pids = read_tagged_pids(parent.stdout.take().unwrap(), "PIDS ");
        let (worker, grandchild) = (pids[0], pids[1]);
        parent.kill().unwrap();
        parent.wait().unwrap();
        assert_gone_within(worker, Duration::from_secs(30), "the stopped worker");
        assert_gone_within(grandchild, Duration::from_secs(30), "the grandchild");
    });
}

// ---- Case 4: terminate_workers escalates after a grace period ----

#[test]
fn terminate_workers_on_a_stopped_worker_returns() {
    within(WATCHDOG, "terminate_workers on a SIGSTOPped worker", || {
        let pool = ProcessPool::builder()
            .max_workers(1)
            .terminate_grace(Duration::from_secs(1))
            .build()
            .unwrap();
        let worker = pool.submit(pid, ()).result().unwrap();
        let task = pool.submit(stop_myself, ());
        while !all_threads_stopped(worker) {
            std::thread::sleep(Duration::from_millis(5));
        }
        pool.terminate_workers();
        assert!(matches!(task.result(), Err(TaskError::WorkerLost(_))));
        assert_gone_within(worker, Duration::from_secs(30), "the stopped worker");
    });
}

#[test]
fn terminate_workers_escalates_to_sigkill_when_sigterm_is_ignored() {
    within(
        WATCHDOG,
        "terminate_workers on a worker ignoring SIGTERM",
        || {
            let pool = ProcessPool::builder()
                .max_workers(1)
                .terminate_grace(Duration::from_millis(500))
                .build()
                .unwrap();
            let task = pool.submit(ignore_sigterm, 60_000);
            while !task.is_running() {
                std::thread::sleep(Duration::from_millis(5));
            }
            std::thread::sleep(Duration::from_millis(300)); // let it ignore SIGTERM first
            let start = Instant::now();
            pool.terminate_workers();
            assert_eq!(
                task.result(),
                Err(TaskError::WorkerLost(WorkerLoss::Signaled(9)))
            );
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{:?}",
                start.elapsed()
            );
        },
    );
}

// ---- Case 8: Duration::MAX means no limit ----

#[test]
fn duration_max_limits_mean_no_limit() {
    within(WATCHDOG, "Duration::MAX limits", || {
        let pool = ProcessPool::builder()
            .max_workers(1)
            .time_limit(Duration::MAX)
            .start_timeout(Duration::MAX)
            .terminate_grace(Duration::MAX)
            .build()
            .unwrap();
        assert_eq!(pool.submit(double, 2).result(), Ok(4));
        assert_eq!(
            pool.submit_with_time_limit(sleep_ms, 50, Some(Duration::MAX))
                .result(),
            Ok(50)
        );
        let limited =
            pool.submit_with_time_limit(sleep_ms, 60_000, Some(Duration::from_millis(200)));
        assert_eq!(
            limited.result(),
            Err(TaskError::TimeLimit(Duration::from_millis(200)))
        );
        assert_eq!(pool.submit(double, 3).result(), Ok(6));
    });
}

// ---- Case 10: a large initializer argument ----

#[test]
fn two_mib_initializer_argument_works() {
    within(WATCHDOG, "a 2 MiB initializer argument", || {
        let blob = vec![7u8; 2 << 20];
        let pool = ProcessPool::builder()
            .max_workers(1)
            .initializer(init_with_blob, blob)
            .build()
            .unwrap();
        assert_eq!(pool.submit(init_len, ()).result(), Ok(2 << 20));
    });
}

#[test]
fn initializer_argument_over_the_frame_limit_is_refused_by_build() {
    let outcome = ProcessPool::builder()
        .max_frame_size(1 << 20)
        .initializer(init_with_blob, vec![0u8; 2 << 20])
        .build();
    match outcome {
        Err(ProcessPoolError::Initializer(reason)) => {
            let text = reason.to_string();
            assert!(text.contains("maximum frame size"), "{text}");
            assert!(text.contains("max_frame_size"), "{text}");
        }
        other => panic!("expected a refused initializer, got {other:?}"),
    }
}

#[test]
fn slow_initializer_is_named_as_the_cause_of_a_start_timeout() {
    within(
        WATCHDOG,
        "an initializer slower than the start timeout",
        || {
            let pool = ProcessPool::builder()
                .max_workers(1)
                .initializer(slow_init, 60_000)
                .start_timeout(Duration::from_millis(500))
                .build()
                .unwrap();
            match pool.submit(double, 1).result() {
                Err(TaskError::PoolBroken(reason)) => {
                    let text = reason.as_str();
                    assert!(text.contains("initializer did not finish"), "{text}");
                    assert!(
                        !text.contains("futurepool::init()"),
                        "misleading hint: {text}"
                    );
                }
                other => panic!("expected a broken pool, got {other:?}"),
            }
        },
    );
}

// ---- Case 11: worker variables never leak to programs a task starts ----

#[test]
fn worker_variables_do_not_leak_to_programs_a_task_starts() {
    within(WATCHDOG, "env of a task's child", || {
        let pool = ProcessPool::new(1).unwrap();
        let env = pool.submit(child_env, ()).result().unwrap();
        assert!(env.lines().any(|l| l.starts_with("PATH=")), "{env}");
        let leaked: Vec<&str> = env
            .lines()
            .filter(|l| l.starts_with("FUTUREPOOL_"))
            .collect();
        assert!(leaked.is_empty(), "leaked into a task's child: {leaked:?}");
    });
}

#[test]
#[ignore = "helper: run in a task by a_task_can_run_a_futurepool_based_program"]
fn helper_nested_pool() {
    let pool = ProcessPool::new(1).unwrap();
    assert_eq!(pool.submit(double, 21).result(), Ok(42));
}

#[test]
fn a_task_can_run_a_futurepool_based_program() {
    within(WATCHDOG, "a pool inside a task's child", || {
        let pool = ProcessPool::new(1).unwrap();
        assert_eq!(pool.submit(run_nested_pool_program, ()).result(), Ok(true));
    });
}

// ---- Case 12: Ctrl-C at the terminal is the parent's to handle ----

extern "C" fn ignore_signal(_: libc::c_int) {}

#[test]
#[ignore = "helper: run in a child process by terminal_ctrl_c_does_not_reach_workers"]
fn helper_pool_with_sigint_handler() {
    // SAFETY: installs a handler that does nothing (async-signal-safe); handlers are reset to
    // the default at exec, so the workers keep the default action and would die of SIGINT.
    unsafe {
        libc::signal(
            libc::SIGINT,
            ignore_signal as *const () as libc::sighandler_t,
        )
    };
    let pool = ProcessPool::new(1).unwrap();
    let task = pool.submit(sleep_ms, 2_000);
    while !task.is_running() {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(200));
    println!("READY");
    let outcome = task.result();
    println!("OUTCOME {outcome:?}");
    assert_eq!(outcome, Ok(2_000));
}

#[test]
fn terminal_ctrl_c_does_not_reach_workers() {
    within(WATCHDOG, "SIGINT to the foreground group", || {
        let mut parent = helper("helper_pool_with_sigint_handler");
        // Stands for the terminal's foreground process group.
        parent.process_group(0).stdout(Stdio::piped());
        let mut parent = parent.spawn().unwrap();
        let mut stdout = BufReader::new(parent.stdout.take().unwrap());
        let mut line = String::new();
        while !line.contains("READY") {
            line.clear();
            assert!(
                stdout.read_line(&mut line).unwrap() > 0,
                "helper ended early"
            );
        }
        // SAFETY: plain system call; the group is the helper's own.
        unsafe { libc::killpg(parent.id() as libc::pid_t, libc::SIGINT) };
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
        assert!(parent.wait().unwrap().success(), "{rest}");
    });
}

// ---- Case 13: a call that never reached a worker is never charged to it ----

#[test]
fn call_sent_to_a_killed_idle_worker_runs_on_another() {
    within(
        WATCHDOG,
        "submit after an idle worker was SIGKILLed",
        || {
            let pool = ProcessPool::new(1).unwrap();
            for round in 0..10 {
                let worker = pool.submit(pid, ()).result().unwrap();
                // SAFETY: plain system call; the worker is idle and alive.
                unsafe { libc::kill(worker as libc::pid_t, libc::SIGKILL) };
                // Dead before the call is written: it cannot have received it.
                while !is_gone(worker) {
                    std::thread::yield_now();
                }
                assert_eq!(
                    pool.submit(double, round).result(),
                    Ok(round * 2),
                    "round {round}"
                );
            }
        },
    );
}

#[test]
fn call_queued_at_a_stopped_worker_killed_before_reading_it_runs_on_another() {
    within(
        WATCHDOG,
        "a call left unread in a killed worker's pipe",
        || {
            let pool = ProcessPool::new(1).unwrap();
            for round in 0..10 {
                let worker = pool.submit(pid, ()).result().unwrap();
                // SAFETY: plain system calls on the pool's idle worker.
                unsafe { libc::kill(worker as libc::pid_t, libc::SIGSTOP) };
                while !all_threads_stopped(worker) {
                    std::thread::yield_now();
                }
                // Sent to the stopped worker, which cannot read it...
                let task = pool.submit(double, round);
                while !task.is_running() {
                    std::thread::yield_now();
                }
                std::thread::sleep(Duration::from_millis(20));
                // ...and never will.
                unsafe { libc::kill(worker as libc::pid_t, libc::SIGKILL) };
                assert_eq!(task.result(), Ok(round * 2), "round {round}");
            }
        },
    );
}

/// A pool whose map chunks go item by item (`RunChunkEach`): a time limit does that.
fn by_item_pool() -> ProcessPool {
    ProcessPool::builder()
        .max_workers(1)
        .time_limit(Duration::from_secs(600))
        .build()
        .unwrap()
}

/// `0..8` offset by `round * 100`, doubled by a map in one chunk of eight.
fn doubled_chunk(pool: &ProcessPool, round: u64) -> Vec<Result<u64, TaskError>> {
    let inputs = (0..8).map(move |n| round * 100 + n);
    pool.map(double, inputs).chunksize(8).collect()
}

fn expected_doubles(round: u64) -> Vec<Result<u64, TaskError>> {
    (0..8).map(|n| Ok((round * 100 + n) * 2)).collect()
}

#[test]
fn by_item_chunk_sent_to_a_killed_idle_worker_runs_whole_on_another() {
    within(
        WATCHDOG,
        "a time-limited map after an idle worker was SIGKILLed",
        || {
            let pool = by_item_pool();
            for round in 0..5 {
                let worker = pool.submit(pid, ()).result().unwrap();
                // SAFETY: plain system call; the worker is idle and alive.
                unsafe { libc::kill(worker as libc::pid_t, libc::SIGKILL) };
                // Dead before the chunk is written: none of its items can have started.
                while !is_gone(worker) {
                    std::thread::yield_now();
                }
                assert_eq!(
                    doubled_chunk(&pool, round),
                    expected_doubles(round),
                    "round {round}"
                );
            }
        },
    );
}

#[test]
fn by_item_chunk_queued_at_a_stopped_worker_killed_before_reading_it_runs_whole_on_another() {
    within(
        WATCHDOG,
        "a time-limited chunk left unread in a killed worker's pipe",
        || {
            let pool = by_item_pool();
            for round in 0..5 {
                let worker = pool.submit(pid, ()).result().unwrap();
                // SAFETY: plain system calls on the pool's idle worker.
                unsafe { libc::kill(worker as libc::pid_t, libc::SIGSTOP) };
                while !all_threads_stopped(worker) {
                    std::thread::yield_now();
                }
                // Most likely the chunk is written to the stopped worker, which cannot read it,
                // before this kill; if the machine is slow it goes to the replacement instead.
                // Either way no item started on the killed worker.
                let killer = std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(200));
                    // SAFETY: plain system call; the stopped worker cannot exit on its own, so
                    // the pid is still the pool's.
                    unsafe { libc::kill(worker as libc::pid_t, libc::SIGKILL) };
                });
                assert_eq!(
                    doubled_chunk(&pool, round),
                    expected_doubles(round),
                    "round {round}"
                );
                killer.join().unwrap();
            }
        },
    );
}

// ---- An internal thread that panics anyway: the pool notices ----

#[test]
fn panic_on_the_reader_thread_fails_what_it_held_and_the_pool_goes_on() {
    within(WATCHDOG, "a panic on the pool's reader thread", || {
        let pool = ProcessPool::new(1).unwrap();
        // Whoever guards the decoding (the sink, or the reader's backstop), the task resolves.
        let bomb = pool.submit(returns_decode_bomb, ());
        assert!(bomb.result().is_err());
        // If the reader's backstop caught it, the worker is killed (the pool cannot trust a
        // conversation its reader lost track of): a call sent to it just before fails as lost.
        let next = pool.submit(double, 1).result();
        assert!(
            matches!(next, Ok(2) | Err(TaskError::WorkerLost(_))),
            "{next:?}"
        );
        for n in 0..5u64 {
            assert_eq!(pool.submit(double, n).result(), Ok(n * 2));
        }
        drop(pool); // returns: no worker is left unsettled
    });
}
