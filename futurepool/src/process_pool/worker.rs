//! The worker side: what the re-executed binary does when [`init`] finds it was started by a pool.
//!
//! The pool starts the same executable with `FUTUREPOOL_WORKER` set (to the pool's pid) and its
//! two pipes on fds 3 (calls in) and 4 (answers out), as the leader of its own process group.
//! [`init`], the first line of the user's `main` (or the `test_support!` entry of a test binary),
//! sees the variable, removes it, and serves here until the pool closes the pipe; it never
//! returns to the user's `main`.

use std::fs::File;
use std::io::{BufReader, Write};
use std::mem::ManuallyDrop;
use std::os::fd::{FromRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use crate::registry::{self, InvokeError};
use crate::task::{ProgressSink, Running};
use crate::wire::{self, Bytes, FromWorker, Hello, Outcome, ProgressReport, ToWorker};

/// Set in a worker's environment by the pool that starts it.
pub(crate) const WORKER_ENV: &str = "FUTUREPOOL_WORKER";
/// The worker reads calls from this descriptor.
pub(crate) const CALLS_FD: RawFd = 3;
/// The worker writes answers to this descriptor.
pub(crate) const ANSWERS_FD: RawFd = 4;

/// Exit codes of a worker that gives up, so the pool's error can say why.
pub(super) const EXIT_REFUSED: i32 = 90;
pub(super) const EXIT_BROKEN_PIPE: i32 = 91;
pub(super) const EXIT_NO_PIPES: i32 = 92;

/// The largest handshake frame a worker reads: any a frame header can announce. The handshake
/// carries the initializer's argument, whose size the pool checks against its own limit at
/// `build()`; the frame reader allocates only as bytes arrive, so a stranger's lying header
/// costs nothing.
const HELLO_MAX_FRAME: usize = u32::MAX as usize;

/// The parent-death signal of a worker (`PR_SET_PDEATHSIG`, set by the pool at spawn). A
/// real-time signal nobody else sends; its handler kills the worker's whole process group.
pub(crate) fn parent_died_signal() -> i32 {
    libc::SIGRTMAX() - 2
}

/// The signal by which the pool tells a worker that the call it runs passed its soft time limit
/// (issue 13). Sent with `sigqueue`, its value names the call (see [`ANSWERS_WRITTEN`]), so a
/// notice that arrives after that call ended never sets the next call's token.
pub(crate) fn soft_limit_signal() -> i32 {
    libc::SIGRTMAX() - 3
}

/// Answer frames this worker wrote since `Ready`. The call (or by-item chunk item) running now is
/// number `ANSWERS_WRITTEN + 1`; the pool counts the frames it reads the same way.
static ANSWERS_WRITTEN: AtomicU64 = AtomicU64::new(0);
/// The highest call number whose soft time limit the pool signalled.
static SOFT_LIMIT_PASSED: AtomicU64 = AtomicU64::new(0);

/// The number of the call this worker process runs now, if it is a worker running one: what a
/// `current_token()` inside it is tied to.
pub(crate) fn current_call() -> Option<u64> {
    (SERVING.load(Ordering::Relaxed) && RUNNING.load(Ordering::Relaxed) != NOT_RUNNING)
        .then(|| ANSWERS_WRITTEN.load(Ordering::Acquire) + 1)
}

/// True once the pool signalled that call `call` passed its soft time limit.
pub(crate) fn soft_limit_passed(call: u64) -> bool {
    SOFT_LIMIT_PASSED.load(Ordering::Acquire) >= call
}

/// Installs the soft-limit notice's handler (before `Ready`, so no notice can find the default
/// action, which would end the process). `SA_RESTART`: a task blocked in a system call is not
/// disturbed by the notice.
fn listen_for_soft_limits() {
    extern "C" fn soft_limit_passed_handler(
        _: libc::c_int,
        info: *mut libc::siginfo_t,
        _: *mut libc::c_void,
    ) {
        // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler; reading its value
        // and an atomic `fetch_max` are async-signal-safe.
        let call = unsafe { (*info).si_value().sival_ptr } as u64;
        SOFT_LIMIT_PASSED.fetch_max(call, Ordering::AcqRel);
    }
    // SAFETY: installs the async-signal-safe handler above with an empty mask; sigaction only
    // reads the struct we pass.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = soft_limit_passed_handler as *const () as libc::sighandler_t;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(soft_limit_signal(), &action, std::ptr::null_mut());
    }
}

static INIT_CALLED: AtomicBool = AtomicBool::new(false);
static SERVING: AtomicBool = AtomicBool::new(false);
/// True in a child a task `fork()`ed off this worker (set by a `pthread_atfork` handler).
static FORKED: AtomicBool = AtomicBool::new(false);

/// Call this first in `main`: in a process a [`ProcessPool`](crate::ProcessPool) started as its
/// worker, it serves the pool and never returns; with the `cluster` feature and
/// `FUTUREPOOL_CLUSTER_WORKER=redis://...` set, it serves that cluster pool until SIGTERM and
/// exits (see `cluster::serve`); anywhere else it returns at once.
///
/// A process pool runs tasks by starting *the same executable* again in worker mode, so every
/// binary that creates a `ProcessPool` must call `init()` before doing anything else — otherwise
/// each worker would run the program's own `main`. [`ProcessPool::new`](crate::ProcessPool::new)
/// refuses to start without it. Test binaries use
/// [`test_support!`](crate::test_support) instead, since libtest owns their `main`.
///
/// "First" means before anything that starts threads or does work: with tokio, call `init()` in
/// a plain `main` and build the runtime after it, rather than using `#[tokio::main]` (which
/// starts the runtime's threads before `main`'s body); see the crate docs, "Async code".
///
/// # Examples
///
/// ```
/// fn triple(n: u32) -> u32 {
///     n * 3
/// }
/// futurepool::register!(triple);
///
/// fn main() {
///     futurepool::init();
///     let pool = futurepool::ProcessPool::new(1).unwrap();
///     assert_eq!(pool.submit(triple, 14).result(), Ok(42));
/// }
/// ```
pub fn init() {
    INIT_CALLED.store(true, Ordering::SeqCst);
    serve_if_worker();
    // `FUTUREPOOL_CLUSTER_WORKER=redis://...`: serve a cluster pool instead, then exit.
    #[cfg(feature = "cluster")]
    crate::cluster::serve_if_requested();
}

/// In a process a pool started as its worker: serves the pool, then exits. Otherwise returns.
fn serve_if_worker() {
    let Some(pool) = std::env::var_os(WORKER_ENV) else {
        return;
    };
    if SERVING.swap(true, Ordering::SeqCst) {
        return;
    }
    // Nothing a task starts may inherit the marker: a futurepool program started by a task
    // would otherwise take itself for a worker (issue 9, case 11). Removing it is sound here,
    // although `remove_var` races with any concurrent `getenv`: `init()` is the first line of
    // `main`, before the program started a thread, and a test binary's `test_support!`
    // constructor runs before `main`, when the process has one thread.
    std::env::remove_var(WORKER_ENV);
    let pool = pool.to_str().and_then(|p| p.parse::<libc::pid_t>().ok());
    std::process::exit(serve(pool));
}

/// Whether [`init`] ran in this process.
pub(crate) fn init_called() -> bool {
    INIT_CALLED.load(Ordering::SeqCst)
}

/// True in a process started as a pool's worker that did not (yet) call [`init`]: its `main` is
/// running as if it were the parent, and must not start workers of its own (a fork bomb).
pub(crate) fn is_uninitialized_worker() -> bool {
    std::env::var_os(WORKER_ENV).is_some() && !SERVING.load(Ordering::SeqCst)
}

/// Serves calls until the pool closes the pipe; returns the exit code.
fn serve(pool: Option<libc::pid_t>) -> i32 {
    install_worker_panic_hook();
    // Tasks may start processes of their own; they must not inherit the pipes (the pool learns of
    // this worker's death from the process, but an heir could still read calls or write junk).
    for fd in [CALLS_FD, ANSWERS_FD] {
        // SAFETY: fcntl on an integer descriptor has no memory effects; a closed fd gives EBADF.
        if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } == -1 {
            eprintln!(
                "futurepool: {WORKER_ENV} is set but fd {fd} is not open: this process was not \
                 started by a futurepool ProcessPool"
            );
            return EXIT_NO_PIPES;
        }
    }
    die_with_the_pool(pool);
    listen_for_soft_limits();
    extern "C" fn mark_forked() {
        FORKED.store(true, Ordering::Relaxed);
    }
    // SAFETY: registers an async-signal-safe child handler (one atomic store), run by libc's
    // fork() in the child.
    unsafe { libc::pthread_atfork(None, None, Some(mark_forked)) };
    // SAFETY: the pool placed its pipe ends on these descriptors for this process, which owns
    // them from here on; nothing else in the process refers to them.
    let (calls, answers) = unsafe { (File::from_raw_fd(CALLS_FD), File::from_raw_fd(ANSWERS_FD)) };
    let mut worker = Worker {
        calls: BufReader::with_capacity(64 * 1024, calls),
        answers,
        frame: Vec::new(),
        results: Vec::new(),
        out: Vec::new(),
    };
    match worker.run() {
        Ok(code) => code,
        Err(WorkerExit(code)) => code,
    }
}

/// Makes this worker's whole process group die when the pool's process dies, even by SIGKILL.
///
/// The kernel's parent-death signal (set at spawn) reaches only this process; a task may have
/// started a tree of its own in this process group. So that signal is not SIGKILL (which would
/// kill this process before it could act) but one whose handler kills the group, this process
/// included. A watch thread polling the pool's pidfd does the same if a task replaced that
/// handler or blocked the signal. A stopped worker acts when it is continued, which the kernel
/// does for a stopped process group orphaned by its parent's death (SIGHUP, then SIGCONT). That
/// SIGHUP is delivered first, and by default it would end this process alone, before the
/// death signal's handler runs: on Linux 6.18 the rest of the group got only the SIGCONT, and a
/// task's child outlived the pool (`parent_sigkill_kills_a_stopped_workers_tree`). So SIGHUP gets
/// the same handler: a worker hung up on dies with its whole group, as it would die alone by
/// default. (A handler, unlike an ignored signal, is not inherited by the programs tasks run.)
fn die_with_the_pool(pool: Option<libc::pid_t>) {
    extern "C" fn kill_own_group(_: libc::c_int) {
        // SAFETY: getpid and kill are async-signal-safe; they touch no memory of ours.
        unsafe {
            let me = libc::getpid();
            libc::kill(-me, libc::SIGKILL);
            libc::kill(me, libc::SIGKILL);
        }
    }
    // SAFETY: installs an async-signal-safe handler (above) with an empty mask; sigaction only
    // reads the struct we pass.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = kill_own_group as *const () as libc::sighandler_t;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(parent_died_signal(), &action, std::ptr::null_mut());
        libc::sigaction(libc::SIGHUP, &action, std::ptr::null_mut());
    }
    // SAFETY: getppid has no preconditions.
    let parent = unsafe { libc::getppid() };
    let Some(pool) = pool.filter(|&pool| pool == parent) else {
        // Started through a launcher that forked (the pool is not our parent), or the pool
        // already died (we were re-parented, and the death signal has ended us or is ending us
        // through the handler).
        return;
    };
    let watch = move || {
        // SAFETY: pidfd_open takes integers and returns a new descriptor or -1.
        let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pool, 0) } as libc::c_int;
        // The pool may have died before pidfd_open (and its pid been reused): still our parent
        // now means the pidfd names the pool.
        // SAFETY: getppid has no preconditions.
        while unsafe { libc::getppid() } == pool {
            if pidfd >= 0 {
                let mut fds = [libc::pollfd {
                    fd: pidfd,
                    events: libc::POLLIN,
                    revents: 0,
                }];
                // SAFETY: a valid pollfd array for the call. Waits for the pool's exit, which
                // is this thread's whole purpose; EINTR just loops.
                if unsafe { libc::poll(fds.as_mut_ptr(), 1, -1) } > 0 {
                    break;
                }
            } else {
                // No pidfds (Linux < 5.3): a re-parented worker sees a new parent.
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
        kill_own_group(0);
    };
    // Without the thread the death signal still covers every case but a replaced handler.
    let _ = std::thread::Builder::new()
        .name("futurepool-worker-parent-watch".into())
        .spawn(watch);
}

/// In a child a task `fork()`ed without exec, back from the task: it must not answer, nor read
/// the worker's calls, or the pool would see two answers. It leaves without running anything
/// more (no atexit handlers, no destructors). Called before every answer frame, whole call or
/// item.
fn leave_if_forked() {
    if FORKED.load(Ordering::Relaxed) {
        // SAFETY: _exit ends this process at once; nothing here needs cleaning up.
        unsafe { libc::_exit(0) };
    }
}

/// Where `report_progress` goes in a call this worker runs: each report that passed the rate
/// limit in `report_progress` becomes one `Progress` frame on the answers pipe, written by the
/// thread running the call, which is the one that writes answers, so a frame never lands inside
/// another. In a chunk the frame names the item running, so the pool can count the items before
/// it as finished and this one's share. Each item is rate-limited on its own, as a thread pool's
/// map item (a task of its own) is: its first report always gets through.
struct CallProgress {
    /// The running item's index among the chunk's arguments; `None` in a `Run`.
    item: Option<u32>,
}

/// The sink of every `Run`.
static RUN_PROGRESS: CallProgress = CallProgress { item: None };

impl CallProgress {
    /// Runs `call`, the chunk item at `index`, with its reports going to a frame naming it.
    fn reporting_item<R>(index: usize, call: impl FnOnce() -> R) -> R {
        // A chunk frame holds fewer than `u32::MAX` arguments (each takes a byte at least, and
        // a frame is at most 4 GiB); past that the report names no item and the pool drops it.
        let progress = CallProgress {
            item: u32::try_from(index).ok(),
        };
        // SAFETY: `progress` outlives the guard, dropped first at the end of this function on
        // this thread.
        let _reporting = unsafe { Running::enter(&progress) };
        call()
    }
}

impl ProgressSink for CallProgress {
    fn deliver(&self, done: u64, total: u64) {
        // A child the task forked must not speak for this worker; it says nothing.
        if FORKED.load(Ordering::Relaxed) {
            return;
        }
        let report = ProgressReport {
            item: self.item,
            done,
            total,
        };
        let mut frame = Vec::with_capacity(ProgressReport::MAX_FRAME);
        if encode(&mut frame, &FromWorker::Progress(report)).is_err() {
            return;
        }
        // SAFETY: the answers descriptor stays open for the worker's whole life (`serve` owns
        // it); `ManuallyDrop` keeps this borrowed `File` from closing it.
        let mut answers = ManuallyDrop::new(unsafe { File::from_raw_fd(ANSWERS_FD) });
        // At most `ProgressReport::MAX_FRAME` bytes, below PIPE_BUF: one write puts all of it
        // or nothing. A failed write is the pool gone; the call's answer finds out and exits.
        let _ = answers.write_all(&frame);
    }
}

/// Why the serving loop stopped early, as the exit code to report.
struct WorkerExit(i32);

struct Worker {
    calls: BufReader<File>,
    answers: File,
    /// The current call's frame, which the decoded call borrows.
    frame: Vec<u8>,
    /// The serialized return values of the current call or chunk.
    results: Vec<u8>,
    /// The encoded answer.
    out: Vec<u8>,
}

impl Worker {
    fn run(&mut self) -> Result<i32, WorkerExit> {
        // The pool's own frame limit arrives in the handshake.
        match wire::read_into(&mut self.calls, &mut self.frame, HELLO_MAX_FRAME) {
            Ok(true) => {}
            Ok(false) => return Ok(0), // The pool went away before saying hello.
            Err(error) => return self.refuse(format!("cannot read the handshake: {error}")),
        }
        let hello = match postcard::from_bytes::<ToWorker<'_>>(&self.frame) {
            Ok(ToWorker::Hello(hello)) => hello,
            _ => return self.refuse("the first frame was not a futurepool handshake".into()),
        };
        if let Err(reason) = check_hello(&hello, registry::build_id()) {
            return self.refuse(reason);
        }
        let max_tasks = hello.max_tasks;
        let max_frame = usize::try_from(hello.max_frame).unwrap_or(usize::MAX);
        // Field by field: `hello` still borrows the frame.
        encode(&mut self.out, &FromWorker::Accepted).map_err(|_| WorkerExit(EXIT_BROKEN_PIPE))?;
        self.answers
            .write_all(&self.out)
            .map_err(|_| WorkerExit(EXIT_BROKEN_PIPE))?;
        let initializer = hello.initializer.map(|call| {
            running(call.function, || {
                registry::invoke_index(call.function, call.arg.0)
            })
        });
        let initializer = initializer.as_ref().map(|result| match result {
            Ok(bytes) => Outcome::Returned(Bytes(bytes)),
            Err(error) => outcome_of_error(error),
        });
        self.send(&FromWorker::Ready {
            pid: std::process::id(),
            initializer,
        })?;

        let mut answered = 0u64;
        loop {
            if max_tasks.is_some_and(|max| answered >= max) {
                return Ok(0);
            }
            if !self.read_frame(max_frame)? {
                return Ok(0); // The pool closed the pipe: shut down.
            }
            let answer = match postcard::from_bytes::<ToWorker<'_>>(&self.frame) {
                Ok(ToWorker::Run(call)) => {
                    self.results.clear();
                    let result = running(call.function, || {
                        // SAFETY: the sink is a static, alive for as long as any guard.
                        let _reporting = unsafe { Running::enter(&RUN_PROGRESS) };
                        registry::invoke_index_into(call.function, call.arg.0, &mut self.results)
                    });
                    let outcome = match &result {
                        Ok(()) => Outcome::Returned(Bytes(&self.results)),
                        Err(error) => outcome_of_error(error),
                    };
                    encode(&mut self.out, &FromWorker::Done(outcome))
                }
                Ok(ToWorker::RunChunk { function, args }) => {
                    // Every result goes into one buffer; the answer borrows its slices.
                    self.results.clear();
                    let ends: Vec<_> = args
                        .iter()
                        .enumerate()
                        .map(|(index, arg)| {
                            running(function, || {
                                CallProgress::reporting_item(index, || {
                                    registry::invoke_index_into(function, arg.0, &mut self.results)
                                })
                            })
                            .map(|()| self.results.len())
                        })
                        .collect();
                    let mut start = 0;
                    let outcomes = ends
                        .iter()
                        .map(|end| match end {
                            Ok(end) => {
                                let bytes = Bytes(&self.results[start..*end]);
                                start = *end;
                                Outcome::Returned(bytes)
                            }
                            Err(error) => outcome_of_error(error),
                        })
                        .collect();
                    encode(&mut self.out, &FromWorker::ChunkDone(outcomes))
                }
                Ok(ToWorker::RunChunkEach { function, args }) => {
                    // One frame per item, written before the next item starts, so the pool
                    // times each item and knows which ones a killed worker finished.
                    for (index, arg) in args.iter().enumerate() {
                        self.results.clear();
                        let result = running(function, || {
                            CallProgress::reporting_item(index, || {
                                registry::invoke_index_into(function, arg.0, &mut self.results)
                            })
                        });
                        let outcome = match &result {
                            Ok(()) => Outcome::Returned(Bytes(&self.results)),
                            Err(error) => outcome_of_error(error),
                        };
                        encode(&mut self.out, &FromWorker::ItemDone(outcome))
                            .map_err(|_| WorkerExit(EXIT_BROKEN_PIPE))?;
                        if self.out.len() > max_frame {
                            let why = format!(
                                "the result's {} bytes exceed the pool's maximum frame size of \
                                 {max_frame} bytes",
                                self.out.len()
                            );
                            let outcome = Outcome::Unserializable(why);
                            encode(&mut self.out, &FromWorker::ItemDone(outcome))
                                .map_err(|_| WorkerExit(EXIT_BROKEN_PIPE))?;
                        }
                        leave_if_forked();
                        self.answers
                            .write_all(&self.out)
                            .map_err(|_| WorkerExit(EXIT_BROKEN_PIPE))?;
                        ANSWERS_WRITTEN.fetch_add(1, Ordering::AcqRel);
                    }
                    answered += 1;
                    continue;
                }
                Ok(ToWorker::Hello(_)) | Err(_) => {
                    eprintln!("futurepool worker: malformed call from the pool; exiting");
                    return Err(WorkerExit(EXIT_BROKEN_PIPE));
                }
            };
            if answer.is_ok() && self.out.len() > max_frame {
                // The pool would refuse this frame; fail the call instead of the worker.
                let why = format!(
                    "the result's {} bytes exceed the pool's maximum frame size of {max_frame} \
                     bytes",
                    self.out.len()
                );
                let chunk_len = match postcard::from_bytes::<ToWorker<'_>>(&self.frame) {
                    Ok(ToWorker::RunChunk { args, .. }) => Some(args.len()),
                    _ => None,
                };
                let outcome = || Outcome::Unserializable(why.clone());
                let message = match chunk_len {
                    Some(n) => FromWorker::ChunkDone((0..n).map(|_| outcome()).collect()),
                    None => FromWorker::Done(outcome()),
                };
                encode(&mut self.out, &message).map_err(|_| WorkerExit(EXIT_BROKEN_PIPE))?;
            }
            leave_if_forked();
            // Answer before reading the next call: the pool relies on this order to know which
            // call was running if this process dies (see wire/README.md).
            if answer.is_err() || self.answers.write_all(&self.out).is_err() {
                return Err(WorkerExit(EXIT_BROKEN_PIPE));
            }
            ANSWERS_WRITTEN.fetch_add(1, Ordering::AcqRel);
            answered += 1;
        }
    }

    fn read_frame(&mut self, max_frame: usize) -> Result<bool, WorkerExit> {
        wire::read_into(&mut self.calls, &mut self.frame, max_frame)
            .map_err(|_| WorkerExit(EXIT_BROKEN_PIPE))
    }

    fn send(&mut self, message: &FromWorker<'_>) -> Result<(), WorkerExit> {
        encode(&mut self.out, message).map_err(|_| WorkerExit(EXIT_BROKEN_PIPE))?;
        self.answers
            .write_all(&self.out)
            .map_err(|_| WorkerExit(EXIT_BROKEN_PIPE))
    }

    fn refuse(&mut self, reason: String) -> Result<i32, WorkerExit> {
        let _ = self.send(&FromWorker::Refused { reason });
        Ok(EXIT_REFUSED)
    }
}

/// The registry index of the function this worker is running, [`NOT_RUNNING`] between calls. A
/// worker runs one call at a time, so a panic anywhere in the process (also on a thread the task
/// started) happens during this call.
static RUNNING: AtomicU32 = AtomicU32::new(NOT_RUNNING);
const NOT_RUNNING: u32 = u32::MAX;

/// Runs `call` as the function with registry index `function`, for the panic message.
fn running<R>(function: u32, call: impl FnOnce() -> R) -> R {
    RUNNING.store(function, Ordering::Relaxed);
    let result = call();
    RUNNING.store(NOT_RUNNING, Ordering::Relaxed);
    result
}

/// Replaces the default panic message (`thread 'main' (PID) panicked at ...`, which reads as if
/// the parent program had panicked, since a worker shares its stderr) with one that names the
/// worker process and the function it was running. The task's error carries the same message and
/// location back to the pool; this line is for whoever reads stderr.
fn install_worker_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| info.payload().downcast_ref::<String>().map(String::as_str))
            .unwrap_or("Box<dyn Any>");
        let location = info
            .location()
            .map_or_else(|| "an unknown location".to_string(), |l| l.to_string());
        let function = match RUNNING.load(Ordering::Relaxed) {
            NOT_RUNNING => String::new(),
            index => format!(
                " running `{}`",
                registry::name_at(index).unwrap_or("an unregistered function")
            ),
        };
        let thread = std::thread::current();
        let thread = match thread.name() {
            Some(name) if name != "main" => format!(", thread '{name}'"),
            _ => String::new(),
        };
        let backtrace = std::backtrace::Backtrace::capture();
        let backtrace = match backtrace.status() {
            std::backtrace::BacktraceStatus::Captured => format!("stack backtrace:\n{backtrace}\n"),
            _ => String::new(),
        };
        // One write, so lines from several workers do not interleave.
        let _ = write!(
            std::io::stderr().lock(),
            "futurepool worker process {pid}{function}{thread} panicked at {location}:\n\
             {message}\n{backtrace}",
            pid = std::process::id(),
        );
    }));
}

/// Accepts a pool's handshake only from the same protocol and the same build.
fn check_hello(hello: &Hello<'_>, own_build_id: u64) -> Result<(), String> {
    if hello.magic != wire::MAGIC {
        return Err("the peer is not a futurepool process pool".into());
    }
    if hello.protocol != wire::PROTOCOL_VERSION {
        return Err(format!(
            "protocol version mismatch: pool speaks {}, worker speaks {}",
            hello.protocol,
            wire::PROTOCOL_VERSION
        ));
    }
    if hello.build_id != own_build_id {
        return Err(format!(
            "build mismatch: the worker executable's registry ({own_build_id:016x}) differs from \
             the pool's ({:016x}); was the binary rebuilt or replaced while running?",
            hello.build_id
        ));
    }
    Ok(())
}

fn encode(out: &mut Vec<u8>, message: &FromWorker<'_>) -> Result<(), wire::FrameError> {
    out.clear();
    // The worker answers whatever size the function produced; the pool enforces its own limit.
    wire::encode_into(out, message, usize::MAX)
}

fn outcome_of_error(error: &InvokeError) -> Outcome<'_> {
    match error {
        InvokeError::Panicked(panic) => Outcome::Panicked {
            message: panic.message().to_string(),
            location: panic.location().map(str::to_string),
        },
        InvokeError::BadArgument(why) => Outcome::BadArgument(why.clone()),
        InvokeError::Unserializable(why) => Outcome::Unserializable(why.clone()),
        InvokeError::UnknownFunction(name) => Outcome::UnknownFunction(name.clone()),
    }
}

/// Makes a test binary usable as a process pool's worker.
///
/// libtest owns a test binary's `main`, so [`init`] cannot be its first line. This macro puts a
/// function in the binary's ELF constructor list (`.init_array`), which the loader runs before
/// `main`: in a process a pool started as its worker, it serves the pool there and exits, so
/// libtest never starts in a worker; in every other run it only notes that the binary can serve
/// (as [`init`] does) and returns. A `cargo test` therefore shows your tests only: no extra test,
/// and no libtest output from the workers.
///
/// Put it once in each test binary that creates a `ProcessPool` (an integration-test file, or a
/// unit-test module), next to the `register!` of the functions the tests submit. Test code only:
/// in a library that other programs link, use [`init`] in their `main` instead. Linux only (where
/// process pools exist); elsewhere it expands to nothing.
///
/// # Why running before `main` is sound here
///
/// The loader runs `.init_array` entries after every shared library (libc included) is
/// initialized, with the environment and descriptors in place, which is all a worker uses; this
/// is how the `ctor` crate works. What std would have set up by `main` and a worker depends on is
/// redone first: `SIGPIPE` is ignored, as std's runtime does, so a write to a closed pipe is an
/// error and not a kill. Nothing in the constructor unwinds: the worker catches every task's
/// panic, and it leaves with `std::process::exit`. One difference remains: std installs its
/// main-thread stack-overflow handler only in its own start-up, so a task that overflows the
/// stack ends such a worker with `SIGSEGV` rather than std's message and `SIGABRT`; either way
/// only that task fails, with [`TaskError::WorkerLost`](crate::TaskError::WorkerLost).
///
/// # Examples
///
/// ```
/// // tests/my_pool_test.rs
/// fn double(n: u64) -> u64 {
///     n * 2
/// }
/// futurepool::register!(double);
/// futurepool::test_support!();
///
/// #[test]
/// fn doubles_in_a_worker_process() {
///     let pool = futurepool::ProcessPool::new(1).unwrap();
///     assert_eq!(pool.submit(double, 21).result(), Ok(42));
/// }
/// # fn main() {}
/// ```
// The example is a test file, so it shows a `#[test]`.
#[allow(clippy::test_attr_in_doctest)]
#[macro_export]
macro_rules! test_support {
    () => {
        #[cfg(target_os = "linux")]
        const _: () = {
            // SAFETY: see "Why running before `main` is sound here" in `test_support!`'s docs.
            #[used]
            #[unsafe(link_section = ".init_array")]
            static FUTUREPOOL_TEST_SUPPORT: extern "C" fn() = {
                extern "C" fn futurepool_test_support() {
                    $crate::__private::test_support_start();
                }
                futurepool_test_support
            };
        };
    };
}

/// What a `test_support!` constructor runs before libtest's `main`: in a worker, serve and exit;
/// otherwise note that this binary can serve, as [`init`] does, so `ProcessPool::new` accepts it.
#[doc(hidden)]
pub fn test_support_start() {
    INIT_CALLED.store(true, Ordering::SeqCst);
    if std::env::var_os(WORKER_ENV).is_some() {
        // std ignores SIGPIPE before calling `main`; we run before that.
        // SAFETY: setting a signal's disposition to SIG_IGN runs no code of ours in a handler.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
        serve_if_worker();
    }
}

/// The arguments a worker of this binary needs: none. A normal binary's worker turns into one in
/// [`init`]; a test binary's in its `test_support!` constructor, before libtest parses anything.
pub(crate) fn worker_args() -> Vec<&'static str> {
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(magic: [u8; 8], protocol: u32, build_id: u64) -> Hello<'static> {
        Hello {
            magic,
            protocol,
            build_id,
            initializer: None,
            max_tasks: None,
            max_frame: 1 << 20,
        }
    }

    #[test]
    fn handshake_accepts_only_the_same_protocol_and_build() {
        assert_eq!(
            check_hello(&hello(wire::MAGIC, wire::PROTOCOL_VERSION, 7), 7),
            Ok(())
        );
        let stranger = check_hello(&hello(*b"notours!", wire::PROTOCOL_VERSION, 7), 7);
        assert!(stranger.unwrap_err().contains("not a futurepool"));
        let old = check_hello(&hello(wire::MAGIC, wire::PROTOCOL_VERSION + 1, 7), 7);
        assert!(old.unwrap_err().contains("protocol version mismatch"));
        let rebuilt = check_hello(&hello(wire::MAGIC, wire::PROTOCOL_VERSION, 8), 7);
        assert!(rebuilt.unwrap_err().contains("build mismatch"));
    }
}
