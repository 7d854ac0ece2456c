//! The two threads that talk to one worker: a writer that batches calls into its pipe, and a
//! reader that resolves answers and, when the worker dies, settles what it held.
//!
//! Each direction has its own thread so a large payload in one never waits for the other
//! (no deadlock on 256 MiB either way), and each blocks only on its own pipe (the reader also on
//! the worker's pidfd: `process.rs`).

use std::io::{self, BufReader, PipeWriter, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ExitStatus};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{Reason, TaskError, WorkerLoss};
use crate::registry;
use crate::task::RemoteProgress;
use crate::wire::{self, Bytes, Call, FromWorker, Hello, ToWorker};

use super::items;
use super::process::{signal_group, AnswerPipe, CallsTap, End};
use super::sink::Answer;
use super::state::{capacity, settle, InFlight, KillCause, Pending, Phase, Shared, Work};
use super::worker::{EXIT_BROKEN_PIPE, EXIT_NO_PIPES, EXIT_REFUSED};

/// At most this many answers are resolved per lock acquisition.
const ANSWER_BATCH: usize = 64;

/// The offset of a call recorded in flight but never written: beyond any count of bytes read.
const NEVER_SENT: u64 = u64::MAX;

/// How often the reader, settling a dead worker, re-drains its calls pipe while the writer
/// finishes the write it was in.
const WRITER_DRAIN_POLL: Duration = Duration::from_millis(10);

/// The writer: says hello, then sends calls whenever the worker has room and the queue has work.
/// Returns (closing the pipe, which tells the worker to finish and exit) when the pool shuts
/// down, breaks, or the worker is gone. `written` counts the bytes that reached the pipe.
///
/// If it panics anyway (a bug), the worker is killed so that its reader settles what it held.
pub(super) fn run_writer(shared: Arc<Shared>, id: u64, calls: PipeWriter, written: Arc<AtomicU64>) {
    if let Err(panic) = crate::panic::catch(|| write_calls(&shared, id, calls, &written)) {
        let reason = Reason::new(format!(
            "internal error: the thread writing to the worker panicked ({panic}); please report \
             this bug"
        ));
        let mut state = shared.lock();
        if let Some(slot) = state.workers.iter_mut().find(|s| s.id == id) {
            slot.signal(libc::SIGKILL, KillCause::Internal(reason));
        }
    }
}

/// Writes all of `buffer`, counting what reached the pipe in `written` (so the reader knows,
/// if the worker dies, which calls it can never have received).
fn write_counted(calls: &mut PipeWriter, buffer: &[u8], written: &AtomicU64) -> io::Result<()> {
    let mut sent = 0;
    while sent < buffer.len() {
        match calls.write(&buffer[sent..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                sent += n;
                written.fetch_add(n as u64, Ordering::Release);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn write_calls(shared: &Arc<Shared>, id: u64, mut calls: PipeWriter, written: &AtomicU64) {
    let shared = &**shared;
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
        || write_counted(&mut calls, &buffer, written).is_err()
    {
        return;
    }
    // Where the next frame starts in the calls stream.
    let mut stream_offset = buffer.len() as u64;
    let mut offsets: Vec<u64> = Vec::new();
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
                    let retiring = slot.recycle
                        || config
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
        #[cfg(test)]
        super::state::inject(config, super::state::Fault::Writer);
        buffer.clear();
        offsets.clear();
        for pending in &batch {
            offsets.push(stream_offset + buffer.len() as u64);
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
                    if pending.limits.any() {
                        // Timed per item; see `items.rs` (and `InFlight::by_item`).
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
        // If the worker is being killed meanwhile, they are recorded as never sent: its reader
        // settles them with the others it held, by the same rule (requeued, or failed with its
        // exit status when the pool is stopping its workers).
        let mut refused = Vec::new();
        let alive = {
            let mut state = shared.lock();
            let state_aborting = state.aborting;
            match state.workers.iter_mut().find(|s| s.id == id) {
                Some(slot) => {
                    let sendable = slot.phase != Phase::Exited && slot.kill.is_none();
                    slot.taking -= batch.len();
                    if slot.in_flight.is_empty() {
                        slot.front_started = Instant::now();
                    }
                    // A memory limit is polled while a call carrying one runs.
                    let limited = batch
                        .iter()
                        .any(|p| p.limits.any() || p.limits.memory().is_some());
                    slot.in_flight
                        .extend(batch.drain(..).zip(&offsets).map(|(p, &offset)| InFlight {
                            work: p.work,
                            sink: p.sink,
                            limits: p.limits,
                            offset: if sendable { offset } else { NEVER_SENT },
                            answered: Vec::new(),
                        }));
                    if state_aborting {
                        for entry in &slot.in_flight {
                            entry.sink.flag_abort();
                        }
                    }
                    // An abort that came between taking the batch and this point found the
                    // call nowhere; the front is the only one it can be running as.
                    slot.kill_if_front_aborted();
                    if limited && sendable {
                        // The supervisor times the call at the front; tell it there is one.
                        shared.supervisor_wake.notify_one();
                    }
                    sendable
                }
                None => {
                    // Unreachable (a slot is removed only after its writer returned), but
                    // harmless: these were never sent.
                    refused = shared.requeue(&mut state, batch.drain(..));
                    false
                }
            }
        };
        settle(refused);
        if !alive {
            return;
        }
        stream_offset += buffer.len() as u64;
        // The pool holds a read end of this pipe too (`CallsTap`), so writing to a worker that
        // died does not fail: the bytes wait there, and the reader, settling the dead worker,
        // finds these calls unread and requeues them. Any other failure is the pool's: end the
        // worker, and let the same accounting decide what it received.
        if let Err(error) = write_counted(&mut calls, &buffer, written) {
            let reason = Reason::new(format!("cannot write to the worker's pipe: {error}"));
            let mut state = shared.lock();
            if let Some(slot) = state.workers.iter_mut().find(|s| s.id == id) {
                slot.signal(libc::SIGKILL, KillCause::Internal(reason));
            }
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
        // Marking it running is what makes a later cancel() refuse (a running task cannot be cancelled): from here
        // the call belongs to a worker.
        if pending.started && pending.sink.abort_requested() {
            // Aborted after its first worker died: end it, never send it again.
            cancelled.push(pending.sink);
        } else if pending.started || pending.sink.start() {
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

/// Why the handshake did not complete.
enum HandshakeFailure {
    /// The answer stream ended first; the exit status says more (known after reaping).
    Ended,
    /// The pool must break for this reason.
    Broken(Reason),
}

/// How a worker's conversation ended, before it is reaped.
enum Conversation {
    Served {
        violation: Option<Reason>,
    },
    HandshakeFailed(HandshakeFailure),
    /// The reader itself panicked (a bug).
    Panicked(Reason),
}

/// The reader: completes the handshake, resolves answers in order, and when the worker dies (the
/// pidfd says so, not the pipe) reaps it and settles the calls it held (see `wire/README.md`,
/// "What is charged to whom").
///
/// Whatever happens, including a panic here (a bug), the worker is killed, reaped and its slot
/// removed, so nothing waits for it forever.
pub(super) fn run_reader(
    shared: Arc<Shared>,
    id: u64,
    answers: AnswerPipe,
    mut calls_tap: CallsTap,
    mut child: Child,
    writer: JoinHandle<()>,
    written: Arc<AtomicU64>,
) {
    let mut reader = BufReader::with_capacity(64 * 1024, answers);
    let conversation =
        crate::panic::catch(|| converse(&shared, id, &mut reader)).unwrap_or_else(|panic| {
            Conversation::Panicked(Reason::new(format!(
                "internal error: the thread reading the worker's answers panicked ({panic}); \
                 please report this bug"
            )))
        });
    let answers = reader.into_inner();
    let process = answers.process();
    let pid = process.pid();

    // The worker must be dead before it is settled: a live one could still run what it holds.
    if !process.has_exited() {
        let cause = match (&conversation, answers.end()) {
            (
                Conversation::Served {
                    violation: Some(reason),
                },
                _,
            ) => KillCause::Misbehaved(reason.clone()),
            (Conversation::Panicked(reason), _) => KillCause::Internal(reason.clone()),
            (_, End::ClosedByWorker) => KillCause::AnswersClosed,
            // A handshake that failed on a malformed or refused frame: the worker is done.
            _ => KillCause::Misbehaved(Reason::new("the handshake failed")),
        };
        let mut state = shared.lock();
        if let Some(slot) = state.workers.iter_mut().find(|s| s.id == id) {
            if slot.kill.is_none() {
                slot.kill = Some(cause);
            }
        }
        drop(state);
        // Only this thread reaps this worker, and it has not: the pid is still ours.
        signal_group(pid, libc::SIGKILL);
        // SIGKILL cannot be ignored, so this wait ends; a stopped process dies too.
        process.wait_exit(None);
    }
    // The tree dies with its worker. The leader is a zombie until reaped below, so the group id
    // still names this worker's group and no one else's.
    signal_group(pid, libc::SIGKILL);
    {
        let mut state = shared.lock();
        if let Some(slot) = state.workers.iter_mut().find(|s| s.id == id) {
            // `reaping` first, so nobody signals a pid the system may hand to another process.
            slot.reaping = true;
            slot.phase = Phase::Exited;
            slot.writer_wake.notify_one();
        }
    }
    let received = bytes_received(&mut calls_tap, writer, &written);
    // The process has exited (above), so this returns at once.
    let status = child.wait().ok();
    let settled = crate::panic::catch(|| {
        if let Conversation::HandshakeFailed(failure) = &conversation {
            fail_handshake(&shared, id, failure, status);
        }
        settle_exit(&shared, id, status, received);
    });
    if settled.is_err() {
        // A bug while settling: still remove the worker, or shutdown would wait for it forever.
        // Its unsettled entries are dropped, and a dropped sink fails its task.
        let mut state = shared.lock();
        let held = state
            .workers
            .iter_mut()
            .find(|s| s.id == id)
            .map(|s| std::mem::take(&mut s.in_flight));
        state.workers.retain(|s| s.id != id);
        shared.dispatch(&mut state);
        shared.supervisor_wake.notify_one();
        drop(state);
        let _ = crate::panic::catch(move || drop(held));
    }
}

fn converse(shared: &Shared, id: u64, reader: &mut BufReader<AnswerPipe>) -> Conversation {
    let mut frames: Vec<Vec<u8>> = vec![Vec::new()];
    let max_frame = shared.config.max_frame;
    if let Err(failure) = handshake(shared, id, reader, &mut frames[0]) {
        return Conversation::HandshakeFailed(failure);
    }
    #[cfg(test)]
    super::state::inject(&shared.config, super::state::Fault::Reader);
    let violation = serve_answers(shared, id, reader, &mut frames, max_frame);
    // A dead worker's last frame may be cut short: that is its death, which its exit status
    // explains, not a protocol violation.
    let violation = violation.filter(|_| reader.get_ref().end() != End::Dead);
    Conversation::Served { violation }
}

/// Once the worker is dead: how many bytes of its calls stream it read. What remains in the
/// pipe never reached it. Drains until the writer has returned (it may be blocked writing into
/// the full pipe, and sees the slot `Exited` once its write completes), then once more.
fn bytes_received(tap: &mut CallsTap, writer: JoinHandle<()>, written: &AtomicU64) -> u64 {
    let mut unread = 0u64;
    // Bounded by the writer's current write: it takes no new batch for an exited worker.
    while !writer.is_finished() {
        unread += tap.drain();
        tap.wait(WRITER_DRAIN_POLL);
    }
    let _ = writer.join();
    unread += tap.drain();
    written.load(Ordering::Acquire).saturating_sub(unread)
}

/// Breaks the pool for a worker that could not start, with a message that says why, naming
/// `init()` only when its absence is the likely cause (a worker that cannot start breaks the pool: no respawn storm).
fn fail_handshake(
    shared: &Shared,
    id: u64,
    failure: &HandshakeFailure,
    status: Option<ExitStatus>,
) {
    let program = shared.config.program.display();
    let mut state = shared.lock();
    let slot = state.workers.iter().find(|s| s.id == id);
    let kill = slot.and_then(|s| s.kill.clone());
    let accepted = slot.is_some_and(|s| s.accepted);
    let reason = match (kill, failure) {
        // The pool stopped it on purpose.
        (Some(KillCause::Stopped), _) => return,
        (Some(KillCause::StartTimeout), _) if accepted => Reason::new(format!(
            "the initializer did not finish within the start timeout of {:?} in worker process \
             `{program}`, which was killed; raise it with `ProcessPoolBuilder::start_timeout`",
            shared.config.start_timeout
        )),
        (Some(KillCause::StartTimeout), _) => Reason::new(format!(
            "worker process `{program}` did not answer the handshake within {:?} and was \
             killed; {INIT_HINT}",
            shared.config.start_timeout
        )),
        (_, HandshakeFailure::Broken(reason)) => reason.clone(),
        (Some(KillCause::AnswersClosed), HandshakeFailure::Ended) => Reason::new(format!(
            "worker process `{program}` closed its answer pipe before completing the \
             handshake; {INIT_HINT}"
        )),
        (_, HandshakeFailure::Ended) => {
            let code = status.and_then(|s| s.code());
            let signal = status.and_then(|s| s.signal());
            match (code, signal) {
                (Some(EXIT_REFUSED | EXIT_BROKEN_PIPE | EXIT_NO_PIPES), _) => {
                    // futurepool's own worker gave up: it printed why on its stderr.
                    Reason::new(format!(
                        "worker process `{program}` could not read the pool's handshake and \
                         exited with code {}; see its message on stderr",
                        code.unwrap_or_default()
                    ))
                }
                (Some(code), _) => Reason::new(format!(
                    "worker process `{program}` exited with code {code} before completing the \
                     handshake; {INIT_HINT}"
                )),
                (_, Some(signal)) => Reason::new(format!(
                    "worker process `{program}` was killed by signal {signal} before \
                     completing the handshake"
                )),
                _ => Reason::new(format!(
                    "worker process `{program}` ended before completing the handshake"
                )),
            }
        }
    };
    let rejected = shared.break_pool(&mut state, reason);
    drop(state);
    settle(rejected);
}

/// Given only when a worker ended without a word, the way a program that never called `init()`
/// does.
const INIT_HINT: &str = "is `futurepool::init()` the first line of `main` (or \
                         `futurepool::test_support!()` in this test binary)?";

/// Reads the worker's `Ready` and judges its initializer.
fn handshake(
    shared: &Shared,
    id: u64,
    reader: &mut BufReader<AnswerPipe>,
    frame: &mut Vec<u8>,
) -> Result<(), HandshakeFailure> {
    let program = shared.config.program.display();
    let mut read_frame =
        |frame: &mut Vec<u8>| match wire::read_into(reader, frame, shared.config.max_frame) {
            Ok(true) => Ok(()),
            Ok(false) | Err(wire::FrameError::Truncated) => Err(HandshakeFailure::Ended),
            Err(error) => Err(HandshakeFailure::Broken(Reason::new(format!(
                "the handshake of worker process `{program}` could not be read: {error}"
            )))),
        };
    read_frame(frame)?;
    if let Ok(FromWorker::Accepted) = postcard::from_bytes::<FromWorker<'_>>(frame) {
        let mut state = shared.lock();
        if let Some(slot) = state.workers.iter_mut().find(|s| s.id == id) {
            slot.accepted = true;
        }
        drop(state);
        read_frame(frame)?;
    }
    match postcard::from_bytes::<FromWorker<'_>>(frame) {
        Ok(FromWorker::Ready { pid, initializer }) => {
            if let (Some(outcome), Some(init)) = (&initializer, &shared.config.initializer) {
                (init.judge)(outcome).map_err(|why| {
                    HandshakeFailure::Broken(Reason::new(format!(
                        "the initializer failed in worker {pid}: {why}"
                    )))
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
        Ok(FromWorker::Refused { reason }) => Err(HandshakeFailure::Broken(Reason::new(format!(
            "worker process `{program}` refused the handshake: {reason}"
        )))),
        _ => Err(HandshakeFailure::Broken(Reason::new(format!(
            "worker process `{program}` did not answer with a futurepool handshake; {INIT_HINT}"
        )))),
    }
}

/// Resolves answers until the pipe ends. Returns why the worker broke the protocol (it must be
/// killed, and the call it owed fails with that reason), or `None` at a plain end of stream.
fn serve_answers(
    shared: &Shared,
    id: u64,
    reader: &mut BufReader<AnswerPipe>,
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
            let mut answered = 0;
            let mut item_frames = false;
            for (index, frame) in frames[..count].iter().enumerate() {
                if let Some(report) = FromWorker::progress_in(frame) {
                    // Not an answer: the call at the front, running now, reported progress. It
                    // is applied after the lock, in frame order, so it lands before this
                    // batch's answer of the same call. A report that does not fit the front (an
                    // item's for a single call, a single call's for a chunk) is dropped, never
                    // taken for an answer.
                    let target = slot
                        .in_flight
                        .front()
                        // An item's report that came after that item's answer is stale (a
                        // worker writes each report before the answer: only a safeguard).
                        .filter(|front| {
                            report
                                .item
                                .is_none_or(|item| item as usize >= front.answered.len())
                        })
                        .and_then(|front| front.sink.progress(report));
                    if let Some((target, done, total)) = target {
                        sinks.push(Answered::Progress(target, done, total));
                    }
                    continue;
                }
                answered += 1;
                let Some(front) = slot.in_flight.front_mut() else {
                    return Some(Reason::new("protocol error: more answers than calls"));
                };
                if front.by_item() {
                    // One item of a chunk answered item by item (`items.rs`).
                    item_frames = true;
                    front.answered.push(frame.clone());
                    if front.answered.len() < items::item_count(&front.work) {
                        // The share this item reported gives way to the item, counted whole.
                        if let Some((target, done, total)) =
                            front.sink.items_answered(front.answered.len())
                        {
                            sinks.push(Answered::Progress(target, done, total));
                        }
                        continue;
                    }
                    let entry = slot.in_flight.pop_front().expect("the front exists");
                    sinks.push(Answered::Items(entry));
                } else {
                    let entry = slot.in_flight.pop_front().expect("the front exists");
                    sinks.push(Answered::Frame(entry.sink, index));
                }
            }
            slot.answers += answered as u64;
            // Only progress: the front call still runs, on the clock it started with.
            if answered > 0 {
                if !item_frames {
                    // An item's time says nothing of how long a whole call takes, so chunks
                    // answered item by item do not feed the pipeline estimate.
                    shared.record_service(elapsed, answered);
                }
                // The next call, or the next item of a chunk answered item by item, starts now.
                slot.front_started = now;
                // Aborted while it waited in this worker's pipeline: it starts now, so stop it now.
                slot.kill_if_front_aborted();
                if slot.in_flight.front().is_some_and(|f| f.watched()) {
                    // A new call's clock started (or its memory counts now): the supervisor must
                    // watch it.
                    shared.supervisor_wake.notify_one();
                }
                if let Some(threshold) = shared.config.max_memory_per_child {
                    // Checked after each batch of answers: a worker that grew past the threshold
                    // is sent nothing more and retires once it has answered what it holds.
                    if !slot.recycle
                        && super::supervisor::resident_bytes(slot.pid)
                            .is_some_and(|b| b > threshold)
                    {
                        slot.recycle = true;
                    }
                }
                if slot.writer_idle {
                    slot.writer_idle = false;
                    slot.writer_wake.notify_one();
                }
            }
            drop(state);
            for answered in sinks.drain(..) {
                let (sink, frame) = match answered {
                    Answered::Frame(sink, frame) => (sink, &frames[frame]),
                    Answered::Items(entry) => {
                        items::finish(entry);
                        continue;
                    }
                    Answered::Progress(target, done, total) => {
                        target.report(done, total);
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
/// answered item by item, whose frames it holds; or a report of the running one's progress.
enum Answered {
    Frame(Box<dyn super::sink::Sink>, usize),
    Items(InFlight),
    /// Not an answer: a progress report of the call still running, for its task.
    Progress(RemoteProgress, u64, u64),
}

/// The `tracing` event of a worker's exit: DEBUG when it was retired or stopped with nothing in
/// hand, WARN when it died on its own or holding calls (`held`).
#[cfg(feature = "tracing")]
fn trace_exit(pid: u32, loss: WorkerLoss, kill: Option<&KillCause>, held: bool) {
    use crate::trace::trace_event;
    let how = match loss {
        WorkerLoss::Exited(code) => format!("exit code {code}"),
        WorkerLoss::Signaled(signal) => format!("signal {signal}"),
        _ => "no exit status".to_string(),
    };
    let expected = match kill {
        Some(KillCause::Stopped) => true,
        Some(_) => false,
        None => !held && matches!(loss, WorkerLoss::Exited(0)),
    };
    if expected {
        trace_event!(tracing::Level::DEBUG, pid, how = %how, held, "worker exited");
    } else {
        trace_event!(tracing::Level::WARN, pid, how = %how, held, "worker exited");
    }
}

/// After the worker exited: fails the call it was running, requeues those it never started,
/// removes it, and lets the pool start a replacement if work remains.
///
/// `received` is how many bytes of its calls stream the worker read. A call whose frame starts
/// at or beyond it never reached the worker: it is requeued, even at the front (a call is charged to a worker only once it has it).
fn settle_exit(shared: &Shared, id: u64, status: Option<ExitStatus>, received: u64) {
    let loss = match status {
        Some(status) => match (status.code(), status.signal()) {
            (_, Some(signal)) => WorkerLoss::Signaled(signal),
            (Some(code), _) => WorkerLoss::Exited(code),
            _ => WorkerLoss::Disconnected,
        },
        None => WorkerLoss::Disconnected,
    };
    let (held, kill, stopping, pid) = {
        let mut state = shared.lock();
        let stopping = state.stopping;
        match state.workers.iter_mut().find(|s| s.id == id) {
            Some(slot) => (
                std::mem::take(&mut slot.in_flight),
                slot.kill.clone(),
                stopping,
                slot.pid,
            ),
            None => Default::default(),
        }
    };
    #[cfg(feature = "tracing")]
    trace_exit(pid, loss, kill.as_ref(), !held.is_empty());
    #[cfg(not(feature = "tracing"))]
    let _ = pid;
    let mut held = held.into_iter().peekable();
    let mut failed = Vec::new();
    let mut requeue = Vec::new();
    // Answered items prove receipt even if the count of bytes read were somehow short.
    let received_front = held
        .peek()
        .is_some_and(|front| front.offset < received || !front.answered.is_empty());
    if received_front {
        let running = held.next().expect("peeked");
        let killed_for_an_abort = kill == Some(KillCause::Aborted);
        if killed_for_an_abort && running.sink.abort_requested() {
            // The abort is why it died: that task alone ends (CANCELLED: its abort flag makes
            // the resolution publish it), never retried, even a by-item chunk's later items.
            failed.push((running.sink, TaskError::Cancelled));
        } else if killed_for_an_abort && running.answered.is_empty() && !stopping {
            // Killed for the call before it, whose answer arrived between the kill and the
            // death: this call is not charged (it may have begun; it runs again elsewhere).
            requeue.push(Pending {
                work: running.work,
                sink: running.sink,
                limits: running.limits,
                started: true,
            });
        } else {
            let error = match kill {
                Some(KillCause::TimeLimit(limit)) => TaskError::TimeLimit(limit),
                Some(KillCause::MemoryLimit { limit, used }) => {
                    TaskError::MemoryLimit { limit, used }
                }
                Some(KillCause::Misbehaved(reason)) => TaskError::Transfer(reason),
                Some(KillCause::AnswersClosed | KillCause::Internal(_)) => {
                    TaskError::WorkerLost(WorkerLoss::Disconnected)
                }
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
    }
    // The worker answers each call before reading the next, so every call behind the one it was
    // running never started (wire/README.md). A by-item chunk it never received goes back whole:
    // none of its items ran.
    for entry in held {
        if stopping {
            failed.push((entry.sink, TaskError::WorkerLost(loss)));
        } else {
            requeue.push(Pending {
                work: entry.work,
                sink: entry.sink,
                limits: entry.limits,
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
