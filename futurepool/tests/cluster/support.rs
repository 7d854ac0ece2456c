//! What the cluster tests need: a private `redis-server`, worker processes (this same binary in
//! worker mode), execution logs written by the test functions, and a small libtest-like runner.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Environment variables with which `futurepool::init()` makes this binary a cluster worker
/// instead of the test runner.
const WORKER_URL: &str = "FUTUREPOOL_CLUSTER_WORKER";
const WORKER_POOL: &str = "FUTUREPOOL_POOL";
const WORKER_THREADS: &str = "FUTUREPOOL_THREADS";
const WORKER_PREFETCH: &str = "FUTUREPOOL_PREFETCH";

/// Nothing in these tests should take this long; reaching it means a hang, reported as a failure.
pub const PATIENCE: Duration = Duration::from_secs(60);

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
    child: Option<Child>,
}

impl Broker {
    pub fn start(scratch: &Scratch) -> Broker {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = scratch.path("redis");
        fs::create_dir_all(&dir).expect("broker directory");
        let mut broker = Broker {
            port,
            dir,
            child: None,
        };
        broker.restart();
        broker
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
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
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        wait_for("the broker to accept connections", || {
            TcpStream::connect(("127.0.0.1", self.port)).is_ok()
        });
    }

    /// SIGKILL: no chance to write anything more.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// How a worker process is started.
#[derive(Clone)]
pub struct WorkerSpec {
    pub url: String,
    pub pool: String,
    pub threads: usize,
    pub prefetch: usize,
    pub stderr: PathBuf,
}

/// A worker process: this test binary in worker mode. Killed when dropped.
pub struct WorkerProcess {
    child: Child,
}

impl WorkerProcess {
    pub fn start(spec: &WorkerSpec) -> WorkerProcess {
        let stderr = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&spec.stderr)
            .expect("worker log");
        let child = Command::new(std::env::current_exe().expect("own path"))
            .env(WORKER_URL, &spec.url)
            .env(WORKER_POOL, &spec.pool)
            .env(WORKER_THREADS, spec.threads.to_string())
            .env(WORKER_PREFETCH, spec.prefetch.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start a worker");
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
        let outcome = std::panic::catch_unwind(test);
        println!(
            "test {name} ... {}",
            if outcome.is_ok() { "ok" } else { "FAILED" }
        );
        if outcome.is_err() {
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
