//! A worker process as the pool sees it: death learnt from the process itself (a pidfd, or
//! `waitid` polling where pidfds are unavailable), signals sent to its whole process group, and
//! an answer pipe whose end of stream is the worker's death rather than the pipe's end-of-file.
//!
//! End-of-file on a pipe says only that nobody holds its write end any more. A task can close
//! or `dup2` over its worker's descriptor (end-of-file while the worker lives on), or `fork` a
//! child that keeps the descriptor open (no end-of-file although the worker is dead). So the
//! reader waits on the pipe *and* the process, and each end is judged by what the process did.

use std::io::{self, PipeReader, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// Without a pidfd, how often the reader checks whether the worker still lives.
const FALLBACK_POLL: Duration = Duration::from_millis(100);
/// How long a worker whose answer pipe reached end-of-file may take to exit before the pool
/// concludes that it closed the pipe itself and kills it. A worker that exits closes its
/// descriptors a moment before the kernel reports its exit; a second covers that on a loaded
/// machine many times over.
pub(super) const EOF_GRACE: Duration = Duration::from_secs(1);
/// After the worker is dead, at most this many bytes are drained from its answer pipe when the
/// pipe's size is unknown: a dead worker cannot have left more than a pipe's capacity, and
/// anything beyond comes from a descendant that escaped its process group.
const DEFAULT_PIPE_CAPACITY: usize = 1 << 20;

/// A pidfd for `pid`, or `None` where the kernel has none (then the callers poll `waitid`).
fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes two integers and returns a new descriptor or -1; it touches no
    // memory of ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        // ENOSYS (Linux < 5.3) or a seccomp filter: fall back to polling with waitid.
        return None;
    }
    // SAFETY: the kernel just returned this descriptor to us and nothing else owns it.
    Some(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Sends `signal` to the process group `pid` leads, and to `pid` itself in case a task moved it
/// to another group.
///
/// The caller must know that `pid` is not yet reaped (see `Slot::reaping`): an unreaped
/// process, even a zombie, keeps its pid, and so the group id, from being reused.
pub(super) fn signal_group(pid: u32, signal: i32) {
    if pid == 0 {
        return;
    }
    // SAFETY: kill(2) has no memory effects; the pid is ours and unreaped (caller's contract).
    unsafe {
        libc::kill(-(pid as libc::pid_t), signal);
        libc::kill(pid as libc::pid_t, signal);
    }
}

/// A started worker: its pid and, where the kernel has them, a pidfd that becomes readable when
/// it exits.
pub(super) struct Process {
    pid: u32,
    pidfd: Option<OwnedFd>,
}

impl Process {
    /// Watches `pid`, a child of this process that has not been reaped.
    pub(super) fn watch(pid: u32) -> Process {
        Process {
            pid,
            pidfd: pidfd_open(pid),
        }
    }

    /// Watches `pid` as on a kernel without pidfds (tests of the fallback).
    #[cfg(test)]
    pub(super) fn watch_without_pidfd(pid: u32) -> Process {
        Process { pid, pidfd: None }
    }

    pub(super) fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether the process has exited (it stays unreaped: `waitid` with `WNOWAIT`).
    pub(super) fn has_exited(&self) -> bool {
        self.wait_exit(Some(Duration::ZERO))
    }

    /// Waits until the process has exited, at most `timeout` (`None`: until it does, which a
    /// caller may only ask after sending SIGKILL). Returns whether it has exited. The process is
    /// not reaped.
    pub(super) fn wait_exit(&self, timeout: Option<Duration>) -> bool {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        loop {
            if self.exited_now() {
                return true;
            }
            let left = match (timeout, deadline) {
                (None, _) | (Some(_), None) => None,
                (Some(_), Some(deadline)) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return false;
                    }
                    Some(left)
                }
            };
            match &self.pidfd {
                Some(pidfd) => {
                    let mut fds = [pollfd(pidfd.as_raw_fd())];
                    poll(&mut fds, left);
                }
                None => std::thread::sleep(left.map_or(FALLBACK_POLL, |l| l.min(FALLBACK_POLL))),
            }
        }
    }

    fn exited_now(&self) -> bool {
        if let Some(pidfd) = &self.pidfd {
            let mut fds = [pollfd(pidfd.as_raw_fd())];
            return poll(&mut fds, Some(Duration::ZERO)) && fds[0].revents != 0;
        }
        // SAFETY: a zeroed siginfo_t is a valid out-parameter; waitid writes into it only.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid on our own unreaped child with WNOWAIT leaves it to be reaped later.
        let rc = unsafe {
            libc::waitid(
                libc::P_PID,
                self.pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        // SAFETY: si_pid is valid to read after waitid; it is 0 while the child still runs.
        rc == 0 && unsafe { info.si_pid() } != 0
    }
}

fn pollfd(fd: RawFd) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}

/// Polls `fds`, retrying on EINTR; false on timeout or error.
fn poll(fds: &mut [libc::pollfd], timeout: Option<Duration>) -> bool {
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    loop {
        let millis = match (timeout, deadline) {
            (None, _) | (Some(_), None) => -1,
            (Some(_), Some(deadline)) => {
                let left = deadline.saturating_duration_since(Instant::now());
                // Round up, so a short timeout is not a busy loop of zero-millisecond polls.
                left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32
            }
        };
        // SAFETY: `fds` is a valid, exclusively borrowed array of pollfd for the call.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, millis) };
        if rc >= 0 {
            return rc > 0;
        }
        if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return false;
        }
    }
}

/// Makes `fd` non-blocking.
fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor we own, with integer arguments.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// One non-blocking read: `Ok(None)` if nothing is there now.
fn read_now(fd: &mut PipeReader, buf: &mut [u8]) -> io::Result<Option<usize>> {
    loop {
        match fd.read(buf) {
            Ok(n) => return Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

fn pipe_capacity(fd: RawFd) -> usize {
    // SAFETY: fcntl F_GETPIPE_SZ on a descriptor we own.
    let size = unsafe { libc::fcntl(fd, libc::F_GETPIPE_SZ) };
    usize::try_from(size)
        .ok()
        .filter(|&s| s > 0)
        .unwrap_or(DEFAULT_PIPE_CAPACITY)
}

/// How the answer stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum End {
    /// Still open.
    Open,
    /// The worker exited; what it wrote before is being drained, at most this many bytes more.
    Draining(usize),
    /// The worker exited and everything it wrote was read.
    Dead,
    /// End-of-file while the worker still lives: it (a task) closed or replaced its answer
    /// descriptor, and can never answer again.
    ClosedByWorker,
}

/// The pool's end of a worker's answer pipe. Reads block until data arrives or the worker
/// exits; after the exit they return what the worker wrote before it, then end of stream, even
/// if a forked descendant still holds the pipe open.
///
/// Cost on the hot path: one `poll` and one `read` per batch of answers.
pub(super) struct AnswerPipe {
    pipe: PipeReader,
    process: Process,
    end: End,
}

impl AnswerPipe {
    pub(super) fn new(pipe: PipeReader, process: Process) -> io::Result<AnswerPipe> {
        set_nonblocking(pipe.as_raw_fd())?;
        Ok(AnswerPipe {
            pipe,
            process,
            end: End::Open,
        })
    }

    pub(super) fn end(&self) -> End {
        self.end
    }

    pub(super) fn process(&self) -> &Process {
        &self.process
    }

    fn begin_drain(&mut self) {
        self.end = End::Draining(pipe_capacity(self.pipe.as_raw_fd()));
    }
}

impl Read for AnswerPipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            match self.end {
                End::Dead | End::ClosedByWorker => return Ok(0),
                End::Draining(0) => {
                    self.end = End::Dead;
                    return Ok(0);
                }
                End::Draining(budget) => {
                    let want = buf.len().min(budget);
                    match read_now(&mut self.pipe, &mut buf[..want])? {
                        Some(0) | None => {
                            self.end = End::Dead;
                            return Ok(0);
                        }
                        Some(n) => {
                            self.end = End::Draining(budget - n);
                            return Ok(n);
                        }
                    }
                }
                End::Open => {}
            }
            // Waiting: for an answer, or for the process to exit. Both come; a stopped worker
            // is the supervisor's to kill (time limit, terminate grace).
            let mut fds = [pollfd(self.pipe.as_raw_fd()), pollfd(-1)];
            let timeout = match &self.process.pidfd {
                Some(pidfd) => {
                    fds[1].fd = pidfd.as_raw_fd();
                    None
                }
                None => Some(FALLBACK_POLL),
            };
            let ready = poll(&mut fds, timeout);
            if fds[1].revents != 0 || (!ready && self.process.exited_now()) {
                self.begin_drain();
                continue;
            }
            if fds[0].revents == 0 {
                continue;
            }
            match read_now(&mut self.pipe, buf)? {
                Some(0) => {
                    // No writer is left. A worker that exits closes its descriptors a moment
                    // before its exit is reported: give it that moment.
                    if self.process.wait_exit(Some(EOF_GRACE)) {
                        self.end = End::Dead;
                    } else {
                        self.end = End::ClosedByWorker;
                    }
                    return Ok(0);
                }
                Some(n) => return Ok(n),
                None => continue,
            }
        }
    }
}

/// The pool's own copy of the read end of a worker's calls pipe: once the worker is dead it
/// reads what the worker never did, so the pool knows which calls never reached it.
///
/// It is a second open file description of the pipe, opened non-blocking through `/proc`; where
/// `/proc` is missing it is a `dup` of the worker's, which must stay blocking (the flag would be
/// shared with the worker's reads). Either way it reads only after `poll` says there is data,
/// and only once the worker is dead, when nobody else should read.
pub(super) struct CallsTap {
    pipe: PipeReader,
    scratch: Vec<u8>,
}

impl CallsTap {
    pub(super) fn new(pipe: PipeReader) -> io::Result<CallsTap> {
        Ok(CallsTap {
            pipe,
            scratch: Vec::new(),
        })
    }

    /// Reads and discards everything in the pipe now; returns how many bytes that was.
    pub(super) fn drain(&mut self) -> u64 {
        if self.scratch.is_empty() {
            self.scratch = vec![0; 64 * 1024];
        }
        let mut total = 0u64;
        loop {
            let mut fds = [pollfd(self.pipe.as_raw_fd())];
            if !poll(&mut fds, Some(Duration::ZERO)) || fds[0].revents & libc::POLLIN == 0 {
                return total;
            }
            match read_now(&mut self.pipe, &mut self.scratch) {
                Ok(Some(0) | None) | Err(_) => return total,
                Ok(Some(n)) => total += n as u64,
            }
        }
    }

    /// Waits at most `timeout` for bytes to drain.
    pub(super) fn wait(&self, timeout: Duration) {
        let mut fds = [pollfd(self.pipe.as_raw_fd())];
        poll(&mut fds, Some(timeout));
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::process::{Child, Command};

    use super::*;

    fn sleeper(seconds: &str) -> Child {
        Command::new("sleep").arg(seconds).spawn().unwrap()
    }

    /// Both ways of learning a death: the pidfd, and the `waitid` fallback for kernels without.
    fn watchers(pid: u32) -> [Process; 2] {
        [Process::watch(pid), Process { pid, pidfd: None }]
    }

    #[test]
    fn exit_is_seen_with_and_without_a_pidfd_and_the_child_stays_reapable() {
        let mut child = sleeper("0.3");
        for process in watchers(child.id()) {
            assert!(!process.wait_exit(Some(Duration::from_millis(1))));
        }
        for process in watchers(child.id()) {
            assert!(process.wait_exit(Some(Duration::from_secs(60))));
            assert!(process.has_exited());
        }
        // WNOWAIT left it for the reaper.
        assert!(child.wait().unwrap().success());
    }

    #[test]
    fn answer_stream_ends_at_death_although_someone_holds_the_pipe_open() {
        for fallback in [false, true] {
            let mut child = sleeper("0.3");
            let (reader, mut writer) = io::pipe().unwrap();
            writer.write_all(b"last words").unwrap();
            let process = match fallback {
                false => Process::watch(child.id()),
                true => Process {
                    pid: child.id(),
                    pidfd: None,
                },
            };
            let mut answers = AnswerPipe::new(reader, process).unwrap();
            let mut got = Vec::new();
            // `writer` stays open (a forked child holding it): the death ends the stream.
            answers.read_to_end(&mut got).unwrap();
            assert_eq!(got, b"last words");
            assert_eq!(answers.end(), End::Dead);
            drop(writer);
            child.wait().unwrap();
        }
    }

    #[test]
    fn end_of_file_while_the_process_lives_is_a_closed_pipe() {
        let mut child = sleeper("60");
        let (reader, writer) = io::pipe().unwrap();
        drop(writer);
        let mut answers = AnswerPipe::new(reader, Process::watch(child.id())).unwrap();
        assert_eq!(answers.read(&mut [0; 16]).unwrap(), 0);
        assert_eq!(answers.end(), End::ClosedByWorker);
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[test]
    fn calls_tap_counts_what_nobody_read() {
        let (reader, mut writer) = io::pipe().unwrap();
        let mut tap = CallsTap::new(reader).unwrap();
        assert_eq!(tap.drain(), 0);
        writer.write_all(&[1; 100_000][..60_000]).unwrap();
        assert_eq!(tap.drain(), 60_000);
        drop(writer);
        assert_eq!(tap.drain(), 0, "end-of-file is not data");
    }
}
