//! Starting one worker process: the same executable, its two pipes on fixed descriptors, and a
//! death signal tied to the pool.

use std::ffi::OsString;
use std::io::{self, PipeReader, PipeWriter};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use super::worker::{ANSWERS_FD, CALLS_FD, WORKER_ENV};

/// A started worker and the pool's ends of its pipes.
pub(super) struct Spawned {
    pub(super) child: Child,
    pub(super) calls: PipeWriter,
    pub(super) answers: PipeReader,
}

/// Starts `program args...` as a worker.
///
/// Must be called from a thread that outlives the worker: Linux delivers the parent-death signal
/// when the *thread* that forked exits, which is why only the pool's supervisor thread spawns.
pub(super) fn spawn(program: &Path, args: &[OsString]) -> io::Result<Spawned> {
    // `std::io::pipe` creates close-on-exec descriptors, so no other child (another worker, or a
    // process the user starts) inherits them: a dead worker's pipe then reliably reads EOF.
    let (calls_reader, calls) = io::pipe()?;
    let (answers, answers_writer) = io::pipe()?;
    let child_calls = calls_reader.as_raw_fd();
    let child_answers = answers_writer.as_raw_fd();
    // SAFETY: getpid has no preconditions.
    let pool_pid = unsafe { libc::getpid() };

    let mut command = Command::new(program);
    command.args(args).env(WORKER_ENV, "1").stdin(Stdio::null());
    // SAFETY: the closure runs in the forked child before exec and only makes async-signal-safe
    // system calls (fcntl, dup2, prctl, getppid) on integers; it allocates nothing and takes no
    // locks.
    unsafe {
        command.pre_exec(move || {
            // Move both ends above the target numbers first, so placing one cannot clobber the
            // other (they may already sit on 3 or 4). The copies are close-on-exec and vanish.
            let calls_high = libc::fcntl(child_calls, libc::F_DUPFD_CLOEXEC, 10);
            let answers_high = libc::fcntl(child_answers, libc::F_DUPFD_CLOEXEC, 10);
            if calls_high < 0 || answers_high < 0 {
                return Err(io::Error::last_os_error());
            }
            // dup2 clears close-on-exec on the new descriptor: these two survive the exec.
            if libc::dup2(calls_high, CALLS_FD) < 0 || libc::dup2(answers_high, ANSWERS_FD) < 0 {
                return Err(io::Error::last_os_error());
            }
            // No orphans: the kernel kills this worker when the pool's process dies, even by
            // SIGKILL, when nothing in the pool gets to run.
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) < 0
            {
                return Err(io::Error::last_os_error());
            }
            // The pool may have died between fork and prctl; then nobody would ever signal us.
            if libc::getppid() != pool_pid {
                return Err(io::Error::other(
                    "the pool's process died while starting a worker",
                ));
            }
            Ok(())
        });
    }
    let child = command.spawn()?;
    // The child has its own copies now; closing ours is what lets each side see EOF.
    drop(calls_reader);
    drop(answers_writer);
    Ok(Spawned {
        child,
        calls,
        answers,
    })
}
