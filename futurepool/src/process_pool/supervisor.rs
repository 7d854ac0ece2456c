//! The supervisor thread: starts workers when the pool asks for them, enforces time limits,
//! start-up timeouts and `terminate_workers`' grace period, and finishes the pool once it is shut
//! down and drained.
//!
//! It is the only thread that starts worker processes. Linux sends a worker its parent-death
//! signal when the *thread* that forked it exits, and this thread outlives every worker it
//! starts (it returns only when none is left, even after a panic of its own).

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::Reason;

use super::connection::{run_reader, run_writer};
use super::process::{AnswerPipe, CallsTap, Process};
use super::spawn::{spawn, Spawned};
use super::state::{settle, KillCause, Phase, Shared, Slot, State};

/// If the supervisor ever panics (a bug), how often it re-checks, while ending the pool, that
/// its workers are gone.
const WIND_DOWN_POLL: Duration = Duration::from_millis(100);

pub(super) fn run_supervisor(shared: Arc<Shared>) {
    let outcome = crate::panic::catch(|| supervise(&shared));
    if let Err(panic) = outcome {
        wind_down(
            &shared,
            Reason::new(format!(
                "internal error: the process pool's supervisor thread panicked ({panic}); please \
             report this bug"
            )),
        );
    }
}

fn supervise(shared: &Arc<Shared>) {
    let mut state = shared.lock();
    loop {
        let finished_input = state.shutting_down || state.broken.is_some();
        if finished_input && state.queue.is_empty() && state.workers.is_empty() {
            state.spawns_wanted = 0;
            state.supervisor_done = true;
            shared.done.notify_all();
            return;
        }
        if state.spawns_wanted > 0 {
            state.spawns_wanted -= 1;
            if state.broken.is_none() && !state.stopping {
                state = start_worker(shared, state);
            }
            continue;
        }
        let now = Instant::now();
        let next_check = enforce_deadlines(shared, &mut state, now);
        // Without a deadline the supervisor sleeps until woken: spawn requests, new time-limited
        // calls, shutdown progress and every worker's exit all notify it.
        state = match next_check {
            Some(at) => {
                let wait = at.saturating_duration_since(now);
                shared
                    .supervisor_wake
                    .wait_timeout(state, wait)
                    .unwrap_or_else(|poison| poison.into_inner())
                    .0
            }
            None => shared
                .supervisor_wake
                .wait(state)
                .unwrap_or_else(|poison| poison.into_inner()),
        };
    }
}

/// After a panic of the supervisor: breaks the pool (queued tasks fail with `reason`), kills
/// every worker, and waits for their readers to settle them, so `shutdown(wait)` still returns
/// and every task still resolves. This thread stays alive until then: its exit would fire the
/// workers' parent-death signal while their readers still work.
fn wind_down(shared: &Shared, reason: Reason) {
    let rejected = {
        let mut state = shared.lock();
        let rejected = shared.break_pool(&mut state, reason.clone());
        for slot in &mut state.workers {
            slot.signal(libc::SIGKILL, KillCause::Internal(reason.clone()));
            slot.escalate();
        }
        rejected
    };
    settle(rejected);
    let mut state = shared.lock();
    // Bounded by the workers' deaths: each got SIGKILL, and its reader removes its slot.
    while !state.workers.is_empty() {
        state = shared
            .supervisor_wake
            .wait_timeout(state, WIND_DOWN_POLL)
            .unwrap_or_else(|poison| poison.into_inner())
            .0;
    }
    state.spawns_wanted = 0;
    state.supervisor_done = true;
    shared.done.notify_all();
}

/// How often a worker running a call is checked against the pool's memory limit. A task growing
/// 1 GiB/s overshoots the limit by at most about 10 MiB before it is killed.
const MEMORY_POLL: Duration = Duration::from_millis(10);

/// The resident memory of process `pid`, in bytes, from `/proc/PID/statm` (its second field, in
/// pages). `None` if it cannot be read (the process is gone: its reader settles it).
pub(super) fn resident_bytes(pid: u32) -> Option<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages.saturating_mul(u64::try_from(page).unwrap_or(4096)))
}

/// Kills workers past a deadline; returns when the next deadline falls. Every deadline is a
/// checked sum: a duration too large to add (`Duration::MAX`) means no deadline.
fn enforce_deadlines(shared: &Shared, state: &mut State, now: Instant) -> Option<Instant> {
    let mut next: Option<Instant> = None;
    let mut consider = |deadline: Instant| next = Some(next.map_or(deadline, |n| n.min(deadline)));
    for slot in &mut state.workers {
        if let Some(at) = slot.escalate_at {
            if now >= at {
                slot.escalate();
            } else {
                consider(at);
            }
        }
        if slot.kill.is_some() {
            continue;
        }
        match slot.phase {
            Phase::Starting { since } => {
                if let Some(deadline) = since.checked_add(shared.config.start_timeout) {
                    if now >= deadline {
                        slot.signal(libc::SIGKILL, KillCause::StartTimeout);
                    } else {
                        consider(deadline);
                    }
                }
            }
            Phase::Ready => {
                #[cfg(test)]
                if !slot.in_flight.is_empty() {
                    super::state::inject(&shared.config, super::state::Fault::Supervisor);
                }
                let soft = slot.in_flight.front().and_then(|f| f.limits.soft());
                let call = slot.answers + 1;
                if let Some(at) = soft.and_then(|s| slot.front_started.checked_add(s)) {
                    if slot.soft_noticed < call {
                        if now >= at {
                            slot.notice_soft_limit(call);
                        } else {
                            consider(at);
                        }
                    }
                }
                if let Some(limit) = slot.in_flight.front().and_then(|f| f.limits.memory()) {
                    // Polled while the worker runs a call, against that call's limit (the
                    // pool's unless it has its own): between calls nothing is charged.
                    match resident_bytes(slot.pid) {
                        Some(used) if used > limit => {
                            slot.signal(libc::SIGKILL, KillCause::MemoryLimit { limit, used });
                            continue;
                        }
                        _ => consider(now + MEMORY_POLL),
                    }
                }
                let limit = slot.in_flight.front().and_then(|f| f.limits.hard());
                let deadline = limit.and_then(|l| slot.front_started.checked_add(l));
                if let (Some(limit), Some(deadline)) = (limit, deadline) {
                    if now >= deadline {
                        slot.signal(libc::SIGKILL, KillCause::TimeLimit(limit));
                    } else {
                        consider(deadline);
                    }
                }
            }
            Phase::Exited => {}
        }
    }
    next
}

/// Starts one worker process and its two threads. Called with the lock held; returns it held.
fn start_worker<'a>(
    shared: &'a Arc<Shared>,
    mut state: MutexGuard<'a, State>,
) -> MutexGuard<'a, State> {
    let id = state.next_worker_id;
    state.next_worker_id += 1;
    state.workers.push(Slot {
        id,
        pid: 0,
        phase: Phase::Starting {
            since: Instant::now(),
        },
        in_flight: Default::default(),
        taking: 0,
        sent: 0,
        front_started: Instant::now(),
        kill: None,
        answers: 0,
        soft_noticed: 0,
        recycle: false,
        accepted: false,
        escalate_at: None,
        reaping: false,
        writer_wake: Default::default(),
        writer_idle: false,
    });
    drop(state);

    let config = &shared.config;
    let spawned = spawn(&config.program, &config.args);
    let mut state = shared.lock();
    let failure = match spawned {
        Ok(spawned) => {
            state.started_total += 1;
            let stopping = state.stopping;
            let slot = state
                .workers
                .iter_mut()
                .find(|s| s.id == id)
                .expect("only the reader removes a slot, and it is not started yet");
            slot.pid = spawned.child.id();
            crate::trace::trace_event!(tracing::Level::DEBUG, pid = slot.pid, "worker started");
            if stopping {
                slot.signal(libc::SIGKILL, KillCause::Stopped);
            }
            match start_threads(shared, id, spawned) {
                Ok(()) => None,
                Err(error) => Some(format!(
                    "cannot start the threads serving a worker: {error}"
                )),
            }
        }
        Err(error) => Some(format!(
            "cannot start worker process `{}`: {error}",
            config.program.display()
        )),
    };
    if let Some(why) = failure {
        state.workers.retain(|s| s.id != id);
        let rejected = shared.break_pool(&mut state, Reason::new(why));
        drop(state);
        settle(rejected);
        state = shared.lock();
    }
    state
}

fn start_threads(shared: &Arc<Shared>, id: u64, spawned: Spawned) -> std::io::Result<()> {
    let Spawned {
        mut child,
        calls,
        calls_tap,
        answers,
    } = spawned;
    let kill = |child: &mut std::process::Child| {
        // Never started serving: kill its group (it may have started nothing, but cannot be
        // known not to) before reaping it.
        super::process::signal_group(child.id(), libc::SIGKILL);
        let _ = child.wait();
    };
    #[cfg(test)]
    let process = if shared.config.fault == Some(super::state::Fault::NoPidfd) {
        Process::watch_without_pidfd(child.id())
    } else {
        Process::watch(child.id())
    };
    #[cfg(not(test))]
    let process = Process::watch(child.id());
    let pipes = AnswerPipe::new(answers, process)
        .and_then(|answers| Ok((answers, CallsTap::new(calls_tap)?)));
    let (answers, calls_tap) = match pipes {
        Ok(pipes) => pipes,
        Err(error) => {
            kill(&mut child);
            return Err(error);
        }
    };
    let written = Arc::new(AtomicU64::new(0));
    let writer_shared = shared.clone();
    let writer_written = written.clone();
    let writer = thread::Builder::new()
        .name(format!("futurepool-process-{id}-writer"))
        .spawn(move || run_writer(writer_shared, id, calls, writer_written));
    let writer = match writer {
        Ok(writer) => writer,
        Err(error) => {
            kill(&mut child);
            return Err(error);
        }
    };
    let reader_shared = shared.clone();
    // Handed over through a slot, so that if the thread cannot start, the child is still here
    // to be killed and reaped rather than dropped with the closure.
    let parts = Arc::new(std::sync::Mutex::new(Some((
        answers, calls_tap, child, writer, written,
    ))));
    let theirs = parts.clone();
    let started = thread::Builder::new()
        .name(format!("futurepool-process-{id}-reader"))
        .spawn(move || {
            let parts = theirs.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some((answers, calls_tap, child, writer, written)) = parts {
                run_reader(
                    reader_shared,
                    id,
                    answers,
                    calls_tap,
                    child,
                    writer,
                    written,
                );
            }
        });
    match started {
        Ok(_) => Ok(()),
        Err(error) => {
            let parts = parts.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some((_, _, mut child, _, _)) = parts {
                kill(&mut child);
            }
            Err(error)
        }
    }
}
