//! What the cluster tests need: a private `redis-server`, worker processes (this same binary in
//! worker mode), execution logs written by the test functions, and a small libtest-like runner.

use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Environment variables with which `futurepool::init()` makes this binary a cluster worker
/// instead of the test runner.
const WORKER_URL: &str = "FUTUREPOOL_CLUSTER_WORKER";
const WORKER_POOL: &str = "FUTUREPOOL_POOL";
const WORKER_THREADS: &str = "FUTUREPOOL_THREADS";
const WORKER_PREFETCH: &str = "FUTUREPOOL_PREFETCH";
const WORKER_PROCESSES: &str = "FUTUREPOOL_PROCESSES";

/// Nothing in these tests should take this long; reaching it means a hang, reported as a failure.
pub const PATIENCE: Duration = Duration::from_secs(60);
/// The watchdog on each whole test: past it the test fails as hung, its processes are killed and
/// the run goes on.
pub const TEST_LIMIT: Duration = Duration::from_secs(240);

/// Every broker and worker process a test started and has not reaped yet, so a hung test's
/// processes can be killed.
static CHILDREN: Mutex<Vec<u32>> = Mutex::new(Vec::new());

fn adopt(pid: u32) {
    CHILDREN.lock().unwrap_or_else(|p| p.into_inner()).push(pid);
}

fn release(pid: u32) {
    CHILDREN
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .retain(|&p| p != pid);
}

/// SIGKILLs every process a (hung) test left behind.
fn kill_children() {
    for pid in std::mem::take(&mut *CHILDREN.lock().unwrap_or_else(|p| p.into_inner())) {
        // SAFETY: kill(2) has no memory effects; the pid is one of our own children.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    }
}

static SCRATCH: AtomicUsize = AtomicUsize::new(0);

/// A fresh directory for one test (broker data, logs), removed when dropped.
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn new() -> Scratch {
        let n = SCRATCH.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "futurepool-cluster-test-{}-{n}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create a scratch directory");
        Scratch(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Whether `redis-server` can be started here.
pub fn redis_available() -> bool {
    Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A private `redis-server` on a free loopback port, with its data (AOF, fsync on every write)
/// in a scratch directory; killed when dropped.
pub struct Broker {
    port: u16,
    dir: PathBuf,
    extra: Vec<String>,
    child: Option<Child>,
}

impl Broker {
    /// A broker started with extra `redis-server` options (e.g. `--proto-max-bulk-len 1mb`).
    pub fn start_with(scratch: &Scratch, extra: &[&str]) -> Broker {
        let mut broker = Broker::unstarted(scratch, extra);
        broker.restart();
        broker
    }

    /// A broker with a port and a directory, not running yet ([`Broker::restart`] starts it).
    pub fn unstarted(scratch: &Scratch, extra: &[&str]) -> Broker {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = scratch.path("redis");
        fs::create_dir_all(&dir).expect("broker directory");
        Broker {
            port,
            dir,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Sends one command over a fresh connection, bypassing futurepool (to write what another
    /// program might), and returns the reply.
    pub fn command(&self, args: &[&[u8]]) -> Reply {
        let stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to the broker");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("read timeout");
        let mut request = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            request.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            request.extend_from_slice(arg);
            request.extend_from_slice(b"\r\n");
        }
        (&stream).write_all(&request).expect("send a command");
        read_reply(&mut BufReader::new(&stream))
    }

    /// [`Broker::command`] with text arguments.
    pub fn cmd(&self, args: &[&str]) -> Reply {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.command(&args)
    }

    /// Starts the server (again) on the same port and data.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "the broker is already running");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(&self.dir)
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .args(["--save", ""])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        adopt(child.id());
        self.child = Some(child);
        wait_for("the broker to accept connections", || {
            TcpStream::connect(("127.0.0.1", self.port)).is_ok()
        });
        // Accepting is not serving: while it replays its AOF it answers LOADING to everything,
        // which a test reading the broker right after a restart would take for a failure.
        wait_for("the broker to finish loading its data", || {
            // (A broker with `requirepass` answers NOAUTH once it serves.)
            !matches!(self.cmd(&["PING"]), Reply::Error(e) if e.starts_with("LOADING"))
        });
    }

    /// SIGKILL: no chance to write anything more.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            release(child.id());
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A Redis reply, as [`Broker::command`] returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Status(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Vec<Reply>),
}

impl Reply {
    /// The reply as text (bulk or status), for assertions.
    pub fn text(&self) -> String {
        match self {
            Reply::Status(s) | Reply::Error(s) => s.clone(),
            Reply::Bulk(Some(b)) => String::from_utf8_lossy(b).into_owned(),
            other => format!("{other:?}"),
        }
    }
}

fn read_reply(reader: &mut impl BufRead) -> Reply {
    let mut line = String::new();
    reader.read_line(&mut line).expect("read a reply");
    let (kind, rest) = line.trim_end().split_at(1);
    match kind {
        "+" => Reply::Status(rest.to_string()),
        "-" => Reply::Error(rest.to_string()),
        ":" => Reply::Int(rest.parse().expect("an integer reply")),
        "$" => {
            let len: i64 = rest.parse().expect("a bulk length");
            if len < 0 {
                return Reply::Bulk(None);
            }
            let mut bytes = vec![0; len as usize + 2];
            reader.read_exact(&mut bytes).expect("read a bulk reply");
            bytes.truncate(len as usize);
            Reply::Bulk(Some(bytes))
        }
        "*" => {
            let len: i64 = rest.parse().expect("an array length");
            Reply::Array((0..len.max(0)).map(|_| read_reply(reader)).collect())
        }
        other => panic!("unexpected reply type {other:?}"),
    }
}

/// How a worker process is started.
#[derive(Clone)]
pub struct WorkerSpec {
    pub url: String,
    pub pool: String,
    pub threads: usize,
    pub prefetch: usize,
    /// Process mode: run tasks in a local process pool of this many processes.
    pub processes: Option<usize>,
    pub stderr: PathBuf,
}

/// A worker process: this test binary in worker mode. Killed when dropped.
pub struct WorkerProcess {
    child: Child,
}

impl WorkerProcess {
    pub fn start(spec: &WorkerSpec) -> WorkerProcess {
        WorkerProcess::start_with_env(spec, &[])
    }

    /// A worker with `env` added to its environment.
    pub fn start_with_env(spec: &WorkerSpec, env: &[(&str, &str)]) -> WorkerProcess {
        let stderr = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&spec.stderr)
            .expect("worker log");
        let mut command = Command::new(std::env::current_exe().expect("own path"));
        if let Some(processes) = spec.processes {
            command.env(WORKER_PROCESSES, processes.to_string());
        }
        let child = command
            .envs(env.iter().copied())
            .env(WORKER_URL, &spec.url)
            .env(WORKER_POOL, &spec.pool)
            .env(WORKER_THREADS, spec.threads.to_string())
            .env(WORKER_PREFETCH, spec.prefetch.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start a worker");
        adopt(child.id());
        WorkerProcess { child }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid has no memory effects.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        assert_eq!(rc, 0, "kill({}, {signal})", self.child.id());
    }

    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    pub fn wait(&mut self) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.try_wait() {
                return status;
            }
            assert!(
                start.elapsed() < PATIENCE,
                "worker {} did not exit",
                self.pid()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        // SIGCONT first: a stopped process cannot die of SIGKILL until it runs again on some
        // systems' accounting, and the test may have stopped it.
        // SAFETY: as in `signal`.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGCONT) };
        let _ = self.child.kill();
        let _ = self.child.wait();
        release(self.child.id());
    }
}

/// Polls `condition` until it holds; fails the test (instead of hanging) after [`PATIENCE`].
pub fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < PATIENCE, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Appends one line to an execution log (test functions call it from the workers).
pub fn log_line(log: &str, line: &str) {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("open the execution log");
    // One write per line: appends of a short line from several processes do not interleave.
    file.write_all(format!("{line}\n").as_bytes())
        .expect("write the execution log");
}

/// The lines of an execution log (empty if nothing ran yet).
pub fn log_lines(log: &Path) -> Vec<String> {
    fs::read_to_string(log)
        .map(|s| s.lines().map(str::to_string).collect())
        .unwrap_or_default()
}

/// How many times the log says `event` happened to task `tag` (on any worker).
pub fn count(log: &Path, event: &str, tag: &str) -> usize {
    log_lines(log)
        .iter()
        .filter(|l| {
            let mut words = l.split(' ');
            words.next() == Some(event) && words.next() == Some(tag)
        })
        .count()
}

/// The pids that logged `event` for `tag`.
pub fn pids(log: &Path, event: &str, tag: &str) -> Vec<u32> {
    log_lines(log)
        .iter()
        .filter_map(|l| {
            let mut words = l.split(' ');
            (words.next() == Some(event) && words.next() == Some(tag))
                .then(|| words.next()?.parse().ok())
                .flatten()
        })
        .collect()
}

/// Runs the named tests one after another (each starts its own broker), speaking enough of
/// libtest's command line for `cargo test` and `cargo nextest`: `--list` (with `--format terse`,
/// `--ignored`), name filters by substring or, with `--exact`, by name; other flags are ignored.
/// Returns false if a test failed.
pub fn run(tests: &[(&str, fn())]) -> bool {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |f: &str| args.iter().any(|a| a == f);
    if flag("--list") {
        // No test of this binary is ignored.
        if !flag("--ignored") {
            for (name, _) in tests {
                println!("{name}: test");
            }
        }
        return true;
    }
    let exact = flag("--exact");
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    let selected: Vec<_> = tests
        .iter()
        .filter(|(name, _)| {
            filters.is_empty()
                || filters.iter().any(|f| {
                    if exact {
                        name == f
                    } else {
                        name.contains(f.as_str())
                    }
                })
        })
        .collect();
    let started = Instant::now();
    println!("\nrunning {} tests", selected.len());
    let mut failed = Vec::new();
    for (name, test) in &selected {
        // Each test on a thread of its own under a watchdog: a hang fails that test (and kills
        // the processes it started) instead of stalling the run.
        let (done, finished) = std::sync::mpsc::channel();
        let test = *test;
        let spawned = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                let _ = done.send(std::panic::catch_unwind(test).is_ok());
            })
            .expect("start a test thread");
        let passed = match finished.recv_timeout(TEST_LIMIT) {
            Ok(passed) => {
                let _ = spawned.join();
                passed
            }
            Err(_) => {
                println!("hang: {name} did not finish within {TEST_LIMIT:?}");
                kill_children();
                false
            }
        };
        println!("test {name} ... {}", if passed { "ok" } else { "FAILED" });
        if !passed {
            failed.push(*name);
        }
    }
    let passed = selected.len() - failed.len();
    if !failed.is_empty() {
        println!("\nfailures:");
        for name in &failed {
            println!("    {name}");
        }
    }
    println!(
        "\ntest result: {}. {passed} passed; {} failed; 0 ignored; 0 measured; {} filtered out; finished in {:.2}s\n",
        if failed.is_empty() { "ok" } else { "FAILED" },
        failed.len(),
        tests.len() - selected.len(),
        started.elapsed().as_secs_f64()
    );
    failed.is_empty()
}
