//! The supervisor thread: starts workers when the pool asks for them, enforces time limits and
//! start-up timeouts, and finishes the pool once it is shut down and drained.
//!
//! It is the only thread that starts worker processes. Linux sends a worker its parent-death
//! signal when the *thread* that forked it exits, and this thread outlives every worker it
//! starts (it returns only when none is left).

use std::sync::Arc;
use std::thread;
use std::time::Instant;

use crate::error::Reason;

use super::connection::{run_reader, run_writer};
use super::spawn::spawn;
use super::state::{settle, KillCause, Phase, Shared, Slot, State};

pub(super) fn run_supervisor(shared: Arc<Shared>) {
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
                state = start_worker(&shared, state);
            }
            continue;
        }
        let now = Instant::now();
        let next_check = enforce_deadlines(&shared, &mut state, now);
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

/// Kills workers past a deadline; returns when the next deadline falls.
fn enforce_deadlines(shared: &Shared, state: &mut State, now: Instant) -> Option<Instant> {
    let mut next: Option<Instant> = None;
    let mut consider = |deadline: Instant| next = Some(next.map_or(deadline, |n| n.min(deadline)));
    for slot in &mut state.workers {
        if slot.kill.is_some() {
            continue;
        }
        match slot.phase {
            Phase::Starting { since } => {
                let deadline = since + shared.config.start_timeout;
                if now >= deadline {
                    slot.signal(libc::SIGKILL, KillCause::StartTimeout);
                } else {
                    consider(deadline);
                }
            }
            Phase::Ready => {
                if let Some(limit) = slot.in_flight.front().and_then(|f| f.time_limit) {
                    let deadline = slot.front_started + limit;
                    if now >= deadline {
                        crate::trace::trace_event!(
                            tracing::Level::WARN,
                            pid = slot.pid,
                            limit_ms = limit.as_millis() as u64,
                            "worker killed: time limit"
                        );
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
    mut state: std::sync::MutexGuard<'a, State>,
) -> std::sync::MutexGuard<'a, State> {
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

fn start_threads(
    shared: &Arc<Shared>,
    id: u64,
    spawned: super::spawn::Spawned,
) -> std::io::Result<()> {
    let super::spawn::Spawned {
        mut child,
        calls,
        answers,
    } = spawned;
    let writer_shared = shared.clone();
    let writer = thread::Builder::new()
        .name(format!("futurepool-process-{id}-writer"))
        .spawn(move || run_writer(writer_shared, id, calls));
    let writer = match writer {
        Ok(writer) => writer,
        Err(error) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(error);
        }
    };
    let reader_shared = shared.clone();
    thread::Builder::new()
        .name(format!("futurepool-process-{id}-reader"))
        .spawn(move || run_reader(reader_shared, id, answers, child, writer))
        .map(drop)
}
