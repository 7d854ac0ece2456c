//! `futurepool-bench cluster`: futurepool's Redis Streams cluster against Python's RQ, on one
//! private local Redis, in the same run.
//!
//! Measured: end-to-end throughput of no-op tasks (submit all, wait for every result) with 2
//! worker processes against RQ's `SimpleWorker` and forking `Worker` (2 each); the latency of one
//! task at a time (p50, p99); throughput with 1, 2 and 4 worker processes. Workers are this binary
//! (`futurepool-bench cluster-worker URL THREADS`), started and registered before timing begins,
//! as RQ's are.

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futurepool::cluster::{self, ClusterPool, ServeOptions};

/// The task: nothing, so the figures measure the cluster machinery alone.
fn noop(_: u32) {}

/// For `cluster-abort`: polls its token every 100 µs until an abort sets it (at most 30 s).
fn until_aborted(_: u32) -> bool {
    let token = futurepool::current_token();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !token.is_cancelled() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_micros(100));
    }
    token.is_cancelled()
}

futurepool::register!(noop, until_aborted);

/// Aborts measured by `cluster-abort` (default).
const ABORT_SAMPLES: usize = 200;

/// Entry point of `futurepool-bench cluster-abort [SAMPLES]`: the latency of `Task::abort` on a
/// running, token-polling task, one local redis-server, 1 worker process. Each sample submits the
/// task under one id with two handles, waits until the broker says it runs and then 0–250 ms more
/// (spread over the worker's 250 ms poll), aborts the first handle and times (a) the first handle's resolution (local: cancelled at once) and (b) the
/// second handle's, which waits for the worker to see the abort, stop the task and publish
/// it cancelled: the end-to-end figure.
pub fn abort_latency(args: &[String]) {
    let samples = args
        .first()
        .and_then(|n| n.parse().ok())
        .unwrap_or(ABORT_SAMPLES);
    let redis = Redis::start();
    let url = redis.url();
    let pool = client(&url);
    let _workers = Workers::start(&url, 1);
    run_batch(&pool, 200);
    let mut local = Vec::with_capacity(samples);
    let mut remote = Vec::with_capacity(samples);
    for n in 0..samples {
        let id = format!("abort-{n}");
        let aborted = pool.submit_with_id(&id, until_aborted, 0);
        let other = pool.submit_with_id(&id, until_aborted, 0);
        let since = Instant::now();
        while pool.stats().map_or(0, |s| s.running) == 0 {
            assert!(
                since.elapsed() < Duration::from_secs(30),
                "the task never started"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        // At a spread of moments after the start: started right after the previous sample's
        // end, every task would otherwise be aborted at the same phase of the worker's poll.
        std::thread::sleep(Duration::from_millis((n as u64 * 37) % 250));
        let start = Instant::now();
        assert!(aborted.abort());
        aborted.wait();
        local.push(start.elapsed());
        let outcome = other.result_timeout(Duration::from_secs(60));
        remote.push(start.elapsed());
        assert_eq!(outcome, Err(futurepool::TaskError::Cancelled));
    }
    local.sort_unstable();
    remote.sort_unstable();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!("Task::abort of a running token-polling task, 1 worker, one local redis-server ({samples} aborts):");
    println!(
        "  abort -> aborted handle resolved: p50 {:.0} µs, p99 {:.0} µs",
        us(percentile(&local, 0.50)),
        us(percentile(&local, 0.99))
    );
    println!(
        "  abort -> worker stopped the task, cancelled outcome at another handle: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        us(percentile(&remote, 0.50)) / 1e3,
        us(percentile(&remote, 0.99)) / 1e3,
        us(remote[remote.len() - 1]) / 1e3
    );
}

const TASKS: u32 = 10_000;
const LATENCY_SAMPLES: usize = 1_000;
const RQ_SIMPLE_JOBS: u32 = 2_000;
const RQ_FORK_JOBS: u32 = 300;
/// Executor threads per worker process: the machine has two cores for everything.
const WORKER_THREADS: usize = 2;

/// Entry point of `futurepool-bench cluster-worker URL THREADS`: serve until killed.
pub fn worker(args: &[String]) {
    let url = args.first().expect("usage: cluster-worker URL THREADS");
    let threads = args.get(1).and_then(|t| t.parse().ok()).unwrap_or(1);
    let options = ServeOptions::default()
        .pool("bench")
        .threads(threads)
        .prefetch(256);
    if let Err(e) = cluster::serve(url, options) {
        eprintln!("cluster-worker: {e}");
        std::process::exit(2);
    }
}

/// Entry point of `futurepool-bench cluster`.
pub fn run(args: &[String]) {
    let redis = Redis::start();
    let url = std::env::var("FUTUREPOOL_BENCH_REDIS").unwrap_or_else(|_| redis.url());
    println!("futurepool cluster vs RQ: no-op tasks through one local redis-server ({}), persistence off", redis_version());
    println!();

    let pool = client(&url);

    // Throughput with 1, 2, 4 worker processes; the 2-worker figure is the headline.
    let mut by_workers = Vec::new();
    for workers in [1usize, 2, 4] {
        let _workers = Workers::start(&url, workers);
        // Warm up connections and scripts, then time.
        run_batch(&pool, 500);
        let rate = run_batch(&pool, TASKS);
        by_workers.push((workers, rate));
    }
    let ours_two = by_workers[1].1;

    let latency = {
        let _workers = Workers::start(&url, 1);
        run_batch(&pool, 200);
        let mut samples: Vec<Duration> = (0..LATENCY_SAMPLES)
            .map(|n| {
                let start = Instant::now();
                pool.submit(noop, n as u32)
                    .result()
                    .expect("a no-op result");
                start.elapsed()
            })
            .collect();
        samples.sort_unstable();
        (percentile(&samples, 0.50), percentile(&samples, 0.99))
    };
    drop(pool);

    let rq = python_with_rq();
    let rq_simple = rq
        .as_ref()
        .and_then(|py| rq_rate(py, &url, RQ_SIMPLE_JOBS, "simple"));
    let rq_fork = rq
        .as_ref()
        .and_then(|py| rq_rate(py, &url, RQ_FORK_JOBS, "fork"));

    // The same headline run with the broker persisting (AOF, fsync every second), as production
    // would; last, so every other figure, RQ's included, is on the same non-persisting server.
    let with_aof = redis.enable_aof().then(|| {
        let pool = client(&url);
        let _workers = Workers::start(&url, 2);
        run_batch(&pool, 500);
        run_batch(&pool, TASKS)
    });

    println!("| 2 worker processes, no-op tasks | tasks/s | futurepool is |");
    println!("| --- | ---: | ---: |");
    println!("| futurepool ClusterPool ({TASKS} tasks, {WORKER_THREADS} threads + prefetch 256 per worker) | {ours_two:.0} | |");
    if let Some(rate) = with_aof {
        println!("| futurepool ClusterPool, broker with AOF (fsync every second) | {rate:.0} | |");
    }
    for (name, jobs, rate) in [
        ("RQ SimpleWorker", RQ_SIMPLE_JOBS, rq_simple),
        ("RQ Worker (forks per job)", RQ_FORK_JOBS, rq_fork),
    ] {
        match rate {
            Some(rate) => println!(
                "| {name} ({jobs} jobs) | {rate:.0} | {:.1}x |",
                ours_two / rate
            ),
            None => println!("| {name} | not measured (python3 with rq unavailable) | |"),
        }
    }
    println!();
    println!("| worker processes | futurepool tasks/s | vs 1 worker |");
    println!("| ---: | ---: | ---: |");
    for (workers, rate) in &by_workers {
        println!("| {workers} | {rate:.0} | {:.2}x |", rate / by_workers[0].1);
    }
    println!();
    println!(
        "one task at a time, 1 worker ({LATENCY_SAMPLES} samples): p50 {:.0} µs, p99 {:.0} µs",
        latency.0.as_secs_f64() * 1e6,
        latency.1.as_secs_f64() * 1e6
    );
    if args.iter().any(|a| a == "--json") {
        // For `futurepool-bench report`: the same figures, as one JSON line at the end.
        let table = structured(ours_two, &[rq_simple, rq_fork], &by_workers, latency);
        println!(
            "{}",
            serde_json::to_string(&table).expect("a table always serializes")
        );
    }
}

/// The figures in the report's shared form (`crate::table`).
fn structured(
    ours_two: f64,
    rq: &[Option<f64>; 2],
    by_workers: &[(usize, f64)],
    (p50, p99): (Duration, Duration),
) -> crate::table::Table {
    use crate::table::Better::{Higher, Lower};
    let mut table = crate::table::Table::new(
        "cluster",
        format!(
            "No-op tasks through one local redis-server ({}), persistence off.",
            redis_version()
        ),
    );
    let headline = "2 worker processes, no-op tasks";
    table.push(
        headline,
        "futurepool ClusterPool",
        ours_two,
        "tasks/s",
        Higher,
    );
    let peers = [
        (format!("RQ SimpleWorker ({RQ_SIMPLE_JOBS} jobs)"), rq[0]),
        (
            format!("RQ Worker, forks per job ({RQ_FORK_JOBS} jobs)"),
            rq[1],
        ),
    ];
    for (name, rate) in peers {
        let row = table.push(headline, &name, rate.unwrap_or(0.0), "tasks/s", Higher);
        if rate.is_none() {
            row.note = Some("not measured (python3 with rq unavailable)".into());
        }
    }
    for &(workers, rate) in by_workers {
        let tool = format!(
            "futurepool ClusterPool, {workers} worker process{}",
            if workers == 1 { "" } else { "es" }
        );
        table.push(
            "futurepool throughput by worker processes",
            &tool,
            rate,
            "tasks/s",
            Higher,
        );
    }
    let row = table.push(
        "one task at a time, 1 worker: round trip",
        "futurepool ClusterPool",
        p50.as_secs_f64() * 1e6,
        "µs",
        Lower,
    );
    row.display = Some(format!(
        "p50 {:.0} µs, p99 {:.0} µs",
        p50.as_secs_f64() * 1e6,
        p99.as_secs_f64() * 1e6
    ));
    table.compute_ratios();
    table
}

/// Submits `n` no-op tasks and waits for all of them; returns tasks per second.
/// A client of the bench pool.
fn client(url: &str) -> ClusterPool {
    ClusterPool::builder(url)
        .pool("bench")
        .build()
        .expect("connect to the bench broker")
}

fn run_batch(pool: &ClusterPool, n: u32) -> f64 {
    let start = Instant::now();
    let tasks: Vec<_> = (0..n).map(|i| pool.submit(noop, i)).collect();
    for task in &tasks {
        task.result().expect("a no-op result");
    }
    f64::from(n) / start.elapsed().as_secs_f64()
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// A private redis-server on a free loopback port; killed when dropped.
struct Redis {
    port: u16,
    child: Child,
    dir: PathBuf,
}

impl Redis {
    fn start() -> Redis {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir =
            std::env::temp_dir().join(format!("futurepool-bench-redis-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("a scratch directory");
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server must be installed for the cluster benchmark (apt-get install redis-server)");
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Redis { port, child, dir }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Turns on AOF with `appendfsync everysec` and waits for the initial rewrite; false if
    /// `redis-cli` is missing or the server refused.
    fn enable_aof(&self) -> bool {
        let cli = |args: &[&str]| {
            Command::new("redis-cli")
                .args(["-p", &self.port.to_string()])
                .args(args)
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        };
        let set = cli(&["config", "set", "appendfsync", "everysec"]).is_some()
            && cli(&["config", "set", "appendonly", "yes"]).is_some();
        let start = Instant::now();
        while set && start.elapsed() < Duration::from_secs(10) {
            match cli(&["info", "persistence"]) {
                Some(info)
                    if info.contains("aof_rewrite_in_progress:0")
                        && info.contains("aof_enabled:1") =>
                {
                    return true
                }
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        false
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn redis_version() -> String {
    Command::new("redis-server")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|v| {
            v.split_whitespace()
                .find(|w| w.starts_with("v="))
                .map(|w| format!("Redis {}", &w[2..]))
        })
        .unwrap_or_else(|| "Redis".to_string())
}

/// Worker processes of this binary; killed when dropped.
struct Workers(Vec<Child>);

impl Workers {
    fn start(url: &str, n: usize) -> Workers {
        let exe = std::env::current_exe().expect("own path");
        let children = (0..n)
            .map(|_| {
                Command::new(&exe)
                    .args(["cluster-worker", url, &WORKER_THREADS.to_string()])
                    .stdout(Stdio::null())
                    .spawn()
                    .expect("start a worker")
            })
            .collect();
        let workers = Workers(children);
        let start = Instant::now();
        while cluster::status(url, "bench").map_or(0, |s| s.workers.len()) < n {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "workers did not register"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        workers
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for child in &mut self.0 {
            // SIGTERM: a clean stop removes the worker from the pool's list before the next run.
            let _ = Command::new("kill").arg(child.id().to_string()).status();
        }
        for child in &mut self.0 {
            let _ = child.wait();
        }
    }
}

/// A Python interpreter that can `import rq`: `$FUTUREPOOL_BENCH_PYTHON`, or a venv under
/// `target/` made (once) with `pip install rq`.
fn python_with_rq() -> Option<PathBuf> {
    let has_rq = |python: &Path| {
        Command::new(python)
            .args(["-c", "import rq"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if let Some(python) = std::env::var_os("FUTUREPOOL_BENCH_PYTHON").map(PathBuf::from) {
        return has_rq(&python).then_some(python);
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the bench crate is inside the workspace");
    let venv = workspace.join("target/bench-venv");
    let python = venv.join("bin/python");
    if !has_rq(&python) {
        eprintln!("setting up {} with rq (once)...", venv.display());
        let made = Command::new("python3")
            .arg("-m")
            .arg("venv")
            .arg(&venv)
            .status();
        let installed = made.is_ok_and(|s| s.success())
            && Command::new(venv.join("bin/pip"))
                .args(["install", "--quiet", "rq"])
                .status()
                .is_ok_and(|s| s.success());
        if !installed {
            eprintln!("could not install rq; the RQ rows are skipped");
            return None;
        }
    }
    has_rq(&python).then_some(python)
}

/// Runs `bench/python/cluster_rq.py`; returns jobs per second.
fn rq_rate(python: &Path, url: &str, jobs: u32, kind: &str) -> Option<f64> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/cluster_rq.py");
    let output = Command::new(python)
        .arg(script)
        .args([url, &jobs.to_string(), "2", kind])
        .output()
        .ok()?;
    if !output.status.success() {
        eprintln!(
            "RQ {kind} run failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        return None;
    }
    let line = String::from_utf8_lossy(&output.stdout);
    // {"jobs": N, "seconds": S}
    let seconds: f64 = line
        .split("\"seconds\":")
        .nth(1)?
        .trim()
        .trim_end_matches('}')
        .trim()
        .parse()
        .ok()?;
    Some(f64::from(jobs) / seconds)
}
