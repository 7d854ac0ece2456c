//! The two threads that talk to one worker: a writer that batches calls into its pipe, and a
//! reader that resolves answers and, when the pipe ends, settles what the worker held.
//!
//! Each direction has its own thread so a large payload in one never waits for the other
//! (no deadlock on 256 MiB either way), and each blocks only on its own pipe.

use std::io::{BufReader, PipeReader, PipeWriter, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ExitStatus};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use crate::error::{Reason, TaskError, WorkerLoss};
use crate::registry;
use crate::wire::{self, Bytes, Call, FromWorker, Hello, ToWorker};

use super::items;
use super::sink::Answer;
use super::state::{capacity, settle, InFlight, KillCause, Pending, Phase, Shared, Work};

/// At most this many answers are resolved per lock acquisition.
const ANSWER_BATCH: usize = 64;

/// The writer: says hello, then sends calls whenever the worker has room and the queue has work.
/// Returns (closing the pipe, which tells the worker to finish and exit) when the pool shuts
/// down, breaks, or the worker is gone.
pub(super) fn run_writer(shared: Arc<Shared>, id: u64, mut calls: PipeWriter) {
    let config = &shared.config;
    let hello = ToWorker::Hello(Hello {
        magic: wire::MAGIC,
        protocol: wire::PROTOCOL_VERSION,
        build_id: registry::build_id(),
        initializer: config.initializer.as_ref().map(|init| Call {
            function: init.function,
            arg: Bytes(&init.arg),
        }),
        max_tasks: config.max_tasks_per_child,
        max_frame: config.max_frame as u64,
    });
    let mut buffer = Vec::new();
    if wire::encode_into(&mut buffer, &hello, usize::MAX).is_err()
        || calls.write_all(&buffer).is_err()
    {
        return;
    }
    let mut batch: Vec<Pending> = Vec::new();
    let mut cancelled = Vec::new();
    loop {
        {
            let mut state = shared.lock();
            loop {
                let depth = shared.pipeline_depth();
                let stopping = state.shutting_down || state.broken.is_some();
                let queue_empty = state.queue.is_empty();
                let Some(slot) = state.workers.iter_mut().find(|s| s.id == id) else {
                    return;
                };
                if slot.phase == Phase::Exited || slot.kill.is_some() {
                    return;
                }
                if slot.phase == Phase::Ready {
                    let room = capacity(slot, depth, config.max_tasks_per_child);
                    let busy = !slot.in_flight.is_empty() || slot.taking > 0;
                    let retiring = config
                        .max_tasks_per_child
                        .is_some_and(|max| slot.sent >= max);
                    if room > 0 && !queue_empty && busy && wake_an_idle_worker(&mut state, id) {
                        // Pipelining is for when every worker has work: an idle one goes first,
                        // so long tasks are never queued behind each other needlessly.
                    } else if room > 0 && !queue_empty {
                        take_batch(&mut state, id, room, &mut batch, &mut cancelled);
                        break;
                    }
                    if (stopping && queue_empty) || retiring {
                        // Nothing more for this worker: closing its input lets it answer what
                        // it holds and exit.
                        return;
                    }
                }
                let slot = state
                    .workers
                    .iter_mut()
                    .find(|s| s.id == id)
                    .expect("the writer's slot is only removed after the writer returned");
                slot.writer_idle = true;
                let wake = slot.writer_wake.clone();
                state = wake
                    .wait(state)
                    .unwrap_or_else(|poison| poison.into_inner());
            }
        }
        for sink in cancelled.drain(..) {
            drop(sink);
        }
        if batch.is_empty() {
            continue;
        }
        buffer.clear();
        for pending in &batch {
            let message = match &pending.work {
                Work::One { function, arg } => ToWorker::Run(Call {
                    function: *function,
                    arg: Bytes(arg),
                }),
                Work::Chunk {
                    function,
                    args,
                    ends,
                } => {
                    let mut start = 0;
                    let args = ends
                        .iter()
                        .map(|&end| {
                            let arg = Bytes(&args[start..end]);
                            start = end;
                            arg
                        })
                        .collect();
                    if pending.time_limit.is_some() {
                        // Timed per item; see `items.rs`.
                        ToWorker::RunChunkEach {
                            function: *function,
                            args,
                        }
                    } else {
                        ToWorker::RunChunk {
                            function: *function,
                            args,
                        }
                    }
                }
            };
            // Sizes were checked at submit, so encoding cannot fail; the limit is the worker's.
            wire::encode_into(&mut buffer, &message, usize::MAX)
                .expect("a call within the frame limit always encodes");
        }
        // Record the calls as in flight *before* their bytes leave: an answer can only follow.
        let mut refused = Vec::new();
        let alive = {
            let mut state = shared.lock();
            match state.workers.iter_mut().find(|s| s.id == id) {
                Some(slot) if slot.phase != Phase::Exited && slot.kill.is_none() => {
                    slot.taking -= batch.len();
                    if slot.in_flight.is_empty() {
                        slot.front_started = Instant::now();
                    }
                    let limited = batch.iter().any(|p| p.time_limit.is_some());
                    slot.in_flight.extend(batch.drain(..).map(|p| InFlight {
                        work: p.work,
                        sink: p.sink,
                        time_limit: p.time_limit,
                        answered: Vec::new(),
                    }));
                    if limited {
                        // The supervisor times the call at the front; tell it there is one.
                        shared.supervisor_wake.notify_one();
                    }
                    true
                }
                _ => {
                    // The worker died while we encoded: these were never sent.
                    if let Some(slot) = state.workers.iter_mut().find(|s| s.id == id) {
                        slot.taking -= batch.len();
                    }
                    refused = shared.requeue(&mut state, batch.drain(..));
                    false
                }
            }
        };
        settle(refused);
        if !alive || calls.write_all(&buffer).is_err() {
            // The reader sees the pipe end and settles everything in flight.
            return;
        }
    }
}

/// Wakes the writer of a ready worker with nothing in flight, other than `id`; false if none.
fn wake_an_idle_worker(state: &mut super::state::State, id: u64) -> bool {
    let idle = state.workers.iter_mut().find(|s| {
        s.id != id
            && s.phase == Phase::Ready
            && s.kill.is_none()
            && s.in_flight.is_empty()
            && s.taking == 0
    });
    match idle {
        Some(slot) => {
            slot.writer_idle = false;
            slot.writer_wake.notify_one();
            true
        }
        None => false,
    }
}

/// Moves up to `room` startable entries from the queue to the writer's batch.
fn take_batch(
    state: &mut super::state::State,
    id: u64,
    room: usize,
    batch: &mut Vec<Pending>,
    cancelled: &mut Vec<Box<dyn super::sink::Sink>>,
) {
    // Leave a fair share for the other workers: the pipeline estimate may still come from
    // tiny tasks when long ones arrive, and a call sent to one worker cannot move to another.
    let sharing = state
        .workers
        .iter()
        .filter(|s| s.kill.is_none() && s.phase != Phase::Exited)
        .count()
        .max(1);
    let room = room.min(state.queue.len().div_ceil(sharing)).max(1);
    while batch.len() < room {
        let Some(pending) = state.queue.pop_front() else {
            break;
        };
        // Marking it running is what makes a later cancel() refuse (a running task cannot be
        // cancelled): from here the call belongs to a worker.
        if pending.started || pending.sink.start() {
            batch.push(pending);
        } else {
            cancelled.push(pending.sink);
        }
    }
    let slot = state
        .workers
        .iter_mut()
        .find(|s| s.id == id)
        .expect("the writer's slot exists while it holds the lock");
    slot.taking += batch.len();
    slot.sent += batch.len() as u64;
}

/// The reader: completes the handshake, resolves answers in order, and when the pipe ends reaps
/// the process and settles the calls it held (see `wire/README.md`, "Which calls a dead worker
/// held").
pub(super) fn run_reader(
    shared: Arc<Shared>,
    id: u64,
    answers: PipeReader,
    mut child: Child,
    writer: JoinHandle<()>,
) {
    let mut reader = BufReader::with_capacity(64 * 1024, answers);
    let mut frames: Vec<Vec<u8>> = vec![Vec::new()];
    let max_frame = shared.config.max_frame;

    let handshake = handshake(&shared, id, &mut reader, &mut frames[0]);
    let violation = match handshake {
        Ok(()) => serve_answers(&shared, id, &mut reader, &mut frames, max_frame),
        Err(reason) => {
            // A worker that cannot start breaks the pool: no respawn storm.
            // Unless the pool itself stopped it on purpose.
            let rejected = {
                let mut state = shared.lock();
                let kill = state
                    .workers
                    .iter()
                    .find(|s| s.id == id)
                    .and_then(|s| s.kill.clone());
                match kill {
                    Some(KillCause::Stopped) => Vec::new(),
                    Some(KillCause::StartTimeout) => {
                        let reason = Reason::new(format!(
                            "worker process `{}` did not complete the handshake within {:?} and \
                             was killed; is `futurepool::init()` the first line of `main`?",
                            shared.config.program.display(),
                            shared.config.start_timeout
                        ));
                        shared.break_pool(&mut state, reason)
                    }
                    _ => shared.break_pool(&mut state, reason.clone()),
                }
            };
            settle(rejected);
            Some(reason)
        }
    };
    if let Some(reason) = violation {
        let mut state = shared.lock();
        if let Some(slot) = state.workers.iter_mut().find(|s| s.id == id) {
            if slot.kill.is_none() {
                slot.kill = Some(KillCause::Misbehaved(reason));
            }
        }
        drop(state);
        let _ = child.kill();
    }

    // Reap. `reaping` first, so nobody signals a pid the system may hand to another process.
    {
        let mut state = shared.lock();
        if let Some(slot) = state.workers.iter_mut().find(|s| s.id == id) {
            slot.reaping = true;
            slot.phase = Phase::Exited;
            slot.writer_wake.notify_one();
        }
    }
    let status = child.wait();
    let _ = writer.join();
    settle_exit(&shared, id, status.ok());
}

/// Reads the worker's `Ready` and judges its initializer; `Err` is why the pool must break.
fn handshake(
    shared: &Shared,
    id: u64,
    reader: &mut BufReader<PipeReader>,
    frame: &mut Vec<u8>,
) -> Result<(), Reason> {
    let program = shared.config.program.display();
    let hint =
        "is `futurepool::init()` the first line of `main` (or `futurepool::test_support!()` \
                in this test binary)?";
    match wire::read_into(reader, frame, shared.config.max_frame) {
        Ok(true) => {}
        Ok(false) | Err(_) => {
            return Err(Reason::new(format!(
                "worker process `{program}` ended before completing the handshake; {hint}"
            )))
        }
    }
    match postcard::from_bytes::<FromWorker<'_>>(frame) {
        Ok(FromWorker::Ready { pid, initializer }) => {
            if let (Some(outcome), Some(init)) = (&initializer, &shared.config.initializer) {
                (init.judge)(outcome).map_err(|why| {
                    Reason::new(format!("the initializer failed in worker {pid}: {why}"))
                })?;
            }
            let mut state = shared.lock();
            if let Some(slot) = state.workers.iter_mut().find(|s| s.id == id) {
                if slot.kill.is_none() {
                    slot.phase = Phase::Ready;
                    // The writer waits for this, whether there is work or a shutdown to act on.
                    slot.writer_idle = false;
                    slot.writer_wake.notify_one();
                }
            }
            shared.dispatch(&mut state);
            Ok(())
        }
        Ok(FromWorker::Refused { reason }) => Err(Reason::new(format!(
            "worker process `{program}` refused the handshake: {reason}"
        ))),
        _ => Err(Reason::new(format!(
            "worker process `{program}` did not answer with a futurepool handshake; {hint}"
        ))),
    }
}

/// Resolves answers until the pipe ends. Returns why the worker broke the protocol (it must be
/// killed, and the call it owed fails with that reason), or `None` at a plain end of stream.
fn serve_answers(
    shared: &Shared,
    id: u64,
    reader: &mut BufReader<PipeReader>,
    frames: &mut Vec<Vec<u8>>,
    max_frame: usize,
) -> Option<Reason> {
    let mut sinks = Vec::with_capacity(ANSWER_BATCH);
    loop {
        // Block for one answer, then take whatever else is already buffered.
        let mut count = 0;
        let mut ended = false;
        loop {
            if count == frames.len() {
                frames.push(Vec::new());
            }
            match wire::read_into(reader, &mut frames[count], max_frame) {
                Ok(true) => count += 1,
                Ok(false) => {
                    ended = true;
                    break;
                }
                Err(error) => {
                    return Some(Reason::new(format!(
                        "the worker's answer could not be read: {error}"
                    )))
                }
            }
            if count == ANSWER_BATCH || reader.buffer().is_empty() {
                break;
            }
        }
        if count > 0 {
            let now = Instant::now();
            let mut state = shared.lock();
            let Some(slot) = state.workers.iter_mut().find(|s| s.id == id) else {
                return Some(Reason::new("the worker was removed while answering"));
            };
            let elapsed = now.saturating_duration_since(slot.front_started);
            let mut item_frames = false;
            for (index, frame) in frames[..count].iter().enumerate() {
                let Some(front) = slot.in_flight.front_mut() else {
                    return Some(Reason::new("protocol error: more answers than calls"));
                };
                if front.by_item() {
                    // One item of a chunk answered item by item (`items.rs`).
                    item_frames = true;
                    front.answered.push(frame.clone());
                    if front.answered.len() < items::item_count(&front.work) {
                        continue;
                    }
                    let entry = slot.in_flight.pop_front().expect("the front exists");
                    sinks.push(Answered::Items(entry));
                } else {
                    let entry = slot.in_flight.pop_front().expect("the front exists");
                    sinks.push(Answered::Frame(entry.sink, index));
                }
            }
            if !item_frames {
                // An item's time says nothing of how long a whole call takes, so chunks
                // answered item by item do not feed the pipeline estimate.
                shared.record_service(elapsed, count);
            }
            // The next call, or the next item of a chunk answered item by item, starts now.
            slot.front_started = now;
            if slot
                .in_flight
                .front()
                .is_some_and(|f| f.time_limit.is_some())
            {
                // A new call's clock started: the supervisor must time it.
                shared.supervisor_wake.notify_one();
            }
            if slot.writer_idle {
                slot.writer_idle = false;
                slot.writer_wake.notify_one();
            }
            drop(state);
            for answered in sinks.drain(..) {
                let (sink, frame) = match answered {
                    Answered::Frame(sink, frame) => (sink, &frames[frame]),
                    Answered::Items(entry) => {
                        items::finish(entry);
                        continue;
                    }
                };
                match postcard::from_bytes::<FromWorker<'_>>(frame) {
                    Ok(FromWorker::Done(outcome)) => sink.finish(Answer::One(outcome)),
                    Ok(FromWorker::ChunkDone(outcomes)) => sink.finish(Answer::Chunk(outcomes)),
                    _ => sink.fail(TaskError::Transfer(Reason::new(
                        "protocol error: the worker's answer is malformed",
                    ))),
                }
            }
        }
        if ended {
            return None;
        }
    }
}

/// An entry the worker finished answering: by one frame (its index in the batch), or a chunk
/// answered item by item, whose frames it holds.
enum Answered {
    Frame(Box<dyn super::sink::Sink>, usize),
    Items(InFlight),
}

/// After the worker exited: fails the call it was running, requeues those it never started,
/// removes it, and lets the pool start a replacement if work remains.
fn settle_exit(shared: &Shared, id: u64, status: Option<ExitStatus>) {
    let loss = match status {
        Some(status) => match (status.code(), status.signal()) {
            (_, Some(signal)) => WorkerLoss::Signaled(signal),
            (Some(code), _) => WorkerLoss::Exited(code),
            _ => WorkerLoss::Disconnected,
        },
        None => WorkerLoss::Disconnected,
    };
    let (held, kill, stopping) = {
        let mut state = shared.lock();
        let stopping = state.stopping;
        match state.workers.iter_mut().find(|s| s.id == id) {
            Some(slot) => (
                std::mem::take(&mut slot.in_flight),
                slot.kill.clone(),
                stopping,
            ),
            None => Default::default(),
        }
    };
    let mut held = held.into_iter();
    let mut failed = Vec::new();
    let mut requeue = Vec::new();
    if let Some(running) = held.next() {
        let error = match kill {
            Some(KillCause::TimeLimit(limit)) => TaskError::TimeLimit(limit),
            Some(KillCause::Misbehaved(reason)) => TaskError::Transfer(reason),
            _ => TaskError::WorkerLost(loss),
        };
        if running.by_item() {
            // Only the running item fails; the ones after it never started (`items.rs`).
            if let Some(rest) = items::settle_running(running, error) {
                if stopping {
                    failed.push((rest.sink, TaskError::WorkerLost(loss)));
                } else {
                    requeue.push(rest);
                }
            }
        } else {
            failed.push((running.sink, error));
        }
    }
    for entry in held {
        if stopping {
            failed.push((entry.sink, TaskError::WorkerLost(loss)));
        } else {
            requeue.push(Pending {
                work: entry.work,
                sink: entry.sink,
                time_limit: entry.time_limit,
                started: true,
            });
        }
    }
    if !requeue.is_empty() {
        let mut state = shared.lock();
        failed.extend(shared.requeue(&mut state, requeue.into_iter()));
    }
    settle(failed);
    // Only now does the worker disappear: a waiting shutdown sees every task settled.
    let mut state = shared.lock();
    state.workers.retain(|s| s.id != id);
    shared.dispatch(&mut state);
    shared.supervisor_wake.notify_one();
}
