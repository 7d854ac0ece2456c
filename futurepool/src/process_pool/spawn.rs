//! Starting one worker process: the same executable, its two pipes on fixed descriptors, its own
//! process group, and a death signal tied to the pool.

use std::ffi::OsString;
use std::io::{self, PipeReader, PipeWriter};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use super::worker::{parent_died_signal, ANSWERS_FD, CALLS_FD, WORKER_ENV};

/// A started worker and the pool's ends of its pipes.
pub(super) struct Spawned {
    pub(super) child: Child,
    pub(super) calls: PipeWriter,
    /// The pool's own copy of the calls pipe's read end (see `process::CallsTap`).
    pub(super) calls_tap: PipeReader,
    pub(super) answers: PipeReader,
}

/// A second, non-blocking open file description of the pipe `reader` reads (a `dup` would share
/// the worker's, and its blocking flag); through `/proc`, which opens a pipe anew.
fn reopen_nonblocking(reader: &PipeReader) -> io::Result<PipeReader> {
    let path = format!("/proc/self/fd/{}", reader.as_raw_fd());
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    Ok(PipeReader::from(OwnedFd::from(file)))
}

/// Starts `program args...` as a worker.
///
/// Must be called from a thread that outlives the worker: Linux delivers the parent-death signal
/// when the *thread* that forked exits, which is why only the pool's supervisor thread spawns.
pub(super) fn spawn(program: &Path, args: &[OsString]) -> io::Result<Spawned> {
    // `std::io::pipe` creates close-on-exec descriptors, so no other child (another worker, or a
    // process the user starts) inherits them.
    let (calls_reader, calls) = io::pipe()?;
    let (answers, answers_writer) = io::pipe()?;
    // Kept by the pool: after the worker died, what is still in the pipe never reached it. It
    // also means a write to a dead worker never fails with EPIPE: the call stays readable here.
    let calls_tap = reopen_nonblocking(&calls_reader).or_else(|_| calls_reader.try_clone())?;
    let child_calls = calls_reader.as_raw_fd();
    let child_answers = answers_writer.as_raw_fd();
    // SAFETY: getpid has no preconditions.
    let pool_pid = unsafe { libc::getpid() };
    let death_signal = parent_died_signal();

    let mut command = Command::new(program);
    // The variable carries the pool's pid, so the worker can watch the pool (worker.rs); the
    // worker removes it from its environment before any task runs.
    command
        .args(args)
        .env(WORKER_ENV, pool_pid.to_string())
        .stdin(Stdio::null())
        // Its own process group: the pool signals the whole tree a task may have started, and
        // the terminal's Ctrl-C (SIGINT to the foreground group) reaches only the parent, which
        // decides what to do with its workers.
        .process_group(0);
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
            // No orphans: the kernel signals this worker when the pool's process dies, even by
            // SIGKILL, when nothing in the pool gets to run. Not SIGKILL itself: the worker's
            // handler for this signal kills its whole process group first (worker.rs); until
            // that handler is installed, the signal's default action ends the worker alone,
            // which has started nothing yet.
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                death_signal as libc::c_ulong,
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
    // The child has its own copies now; closing ours is what lets the worker see end-of-file
    // when the pool closes its calls pipe.
    drop(calls_reader);
    drop(answers_writer);
    Ok(Spawned {
        child,
        calls,
        calls_tap,
        answers,
    })
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    #[test]
    fn reopened_calls_pipe_reads_the_same_pipe_without_blocking_the_original() {
        let (reader, mut writer) = io::pipe().unwrap();
        let mut copy = reopen_nonblocking(&reader).unwrap();
        writer.write_all(b"call").unwrap();
        let mut got = [0u8; 8];
        assert_eq!(copy.read(&mut got).unwrap(), 4);
        assert_eq!(&got[..4], b"call");
        let empty = copy.read(&mut got).unwrap_err();
        assert_eq!(empty.kind(), io::ErrorKind::WouldBlock);
        // SAFETY: fcntl F_GETFL on a descriptor we own.
        let flags = unsafe { libc::fcntl(reader.as_raw_fd(), libc::F_GETFL) };
        assert_eq!(
            flags & libc::O_NONBLOCK,
            0,
            "the worker's end stays blocking"
        );
    }
}
