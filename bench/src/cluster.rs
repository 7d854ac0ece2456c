//! `futurepool-bench cluster`: futurepool's Redis Streams cluster against Python's RQ, on one
//! private local Redis, in the same run.
//!
//! Measured: end-to-end throughput of no-op tasks (submit all, wait for every result) with 2
//! worker processes against RQ's `SimpleWorker` and forking `Worker` (2 each); the latency of one
//! task at a time (p50, p99); throughput with 1, 2 and 4 worker processes; the job-queue features
//! on 2 workers (throughput with priorities on and with a rate limit far above the load, against
//! plain no-ops in the same window; how late delayed tasks start, p50/p99; the rate a 100/s limit
//! achieves). Workers are this binary
//! (`futurepool-bench cluster-worker URL THREADS`), started and registered before timing begins,
//! as RQ's are.

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futurepool::cluster::{self, ClusterPool, Priority, RateLimit, ServeOptions, SubmitOptions};

/// The task: nothing, so the figures measure the cluster machinery alone.
fn noop(_: u32) {}

/// A no-op under a rate limit far above any load this machine makes: the limit's overhead.
fn noop_limited_far_above(_: u32) {}

/// When the task started on its worker (nanoseconds since the Unix epoch, the same clock as the
/// client's on this one machine): the delay and rate-limit rows measure starts, not round trips.
fn started_at(_: u32) -> u64 {
    unix_nanos(SystemTime::now())
}

/// [`started_at`] under the 100/s rate limit whose accuracy is measured.
fn started_at_limited(_: u32) -> u64 {
    unix_nanos(SystemTime::now())
}

fn unix_nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos() as u64)
}

/// For `cluster-abort`: polls its token every 100 µs until an abort sets it (at most 30 s).
fn until_aborted(_: u32) -> bool {
    let token = futurepool::current_token();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !token.is_cancelled() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_micros(100));
    }
    token.is_cancelled()
}

/// For `cluster-abort --processes`: sleeps 30 s without ever reading its token, so only the kill
/// of its local process ends it early.
fn ignores_its_token(_: u32) -> bool {
    std::thread::sleep(Duration::from_secs(30));
    false
}

futurepool::register!(
    noop,
    noop_limited_far_above,
    started_at,
    started_at_limited,
    until_aborted,
    ignores_its_token
);

/// Aborts measured by `cluster-abort` (default).
const ABORT_SAMPLES: usize = 200;

/// Entry point of `futurepool-bench cluster-abort [SAMPLES] [--processes]`: the latency of
/// `Task::abort` on a running, token-polling task, one local redis-server, 1 worker process (with
/// `--processes`: a process-mode worker with one local process, and a task that never reads its
/// token, so the abort is the kill of that process). Each sample submits the
/// task under one id with two handles, waits until the broker says it runs and then 0–250 ms more
/// (spread over the worker's 250 ms poll), aborts the first handle and times (a) the first handle's resolution (local: cancelled at once) and (b) the
/// second handle's, which waits for the worker to see the abort, stop the task and publish
/// it cancelled: the end-to-end figure.
pub fn abort_latency(args: &[String]) {
    let samples = args
        .iter()
        .find_map(|n| n.parse().ok())
        .unwrap_or(ABORT_SAMPLES);
    let processes = args.iter().any(|a| a == "--processes");
    let task: fn(u32) -> bool = if processes {
        ignores_its_token
    } else {
        until_aborted
    };
    let redis = Redis::start();
    let url = redis.url();
    let pool = client(&url);
    let _workers = Workers::start_with(&url, 1, processes.then_some(1));
    run_batch(&pool, 200);
    let mut local = Vec::with_capacity(samples);
    let mut remote = Vec::with_capacity(samples);
    for n in 0..samples {
        let id = format!("abort-{n}");
        let aborted = pool.submit_with_id(&id, task, 0);
        let other = pool.submit_with_id(&id, task, 0);
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
    if processes {
        println!("Task::abort of a running task that ignores its token, 1 process-mode worker (1 local process, killed by the abort), one local redis-server ({samples} aborts):");
    } else {
        println!("Task::abort of a running token-polling task, 1 worker, one local redis-server ({samples} aborts):");
    }
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
/// Delayed tasks whose lateness is measured, due over [`DELAY_SPREAD`].
const DELAYED_TASKS: u32 = 300;
const DELAY_SPREAD: Duration = Duration::from_secs(3);
/// The rate limit whose accuracy is measured, and how many tasks go through it (5 s' worth).
const RATE_LIMIT_PER_SECOND: u32 = 100;
const RATE_LIMITED_TASKS: u32 = 500;
/// Executor threads per worker process: the machine has two cores for everything.
const WORKER_THREADS: usize = 2;

/// Entry point of `futurepool-bench cluster-worker URL THREADS`: serve until killed.
pub fn worker(args: &[String]) {
    let url = args
        .first()
        .expect("usage: cluster-worker URL THREADS [PROCESSES]");
    let threads = args.get(1).and_then(|t| t.parse().ok()).unwrap_or(1);
    let mut options = ServeOptions::default()
        .pool("bench")
        .threads(threads)
        .prefetch(256);
    if let Some(processes) = args.get(2).and_then(|p| p.parse().ok()) {
        options = options.processes(processes);
    }
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

    // The job-queue features, on the same 2 workers: each row against the plain no-op run
    // (interleaved with it, so a noisy moment does not fall on one side only).
    let queue = {
        let _workers = Workers::start(&url, 2);
        run_batch(&pool, 500);
        let mut plain = Vec::new();
        let mut priorities = Vec::new();
        let mut limited = Vec::new();
        for _ in 0..2 {
            plain.push(run_batch(&pool, TASKS));
            priorities.push(run_batch_with_priorities(&pool, TASKS));
            limited.push(run_batch_of(&pool, noop_limited_far_above, TASKS));
        }
        QueueFigures {
            plain: best(&plain),
            priorities: best(&priorities),
            limited_far_above: best(&limited),
            delay_lateness: delay_lateness(&pool),
            rate_achieved: rate_achieved(&pool),
        }
    };

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
    println!("| job-queue features, 2 worker processes | figure | vs plain no-op |");
    println!("| --- | ---: | ---: |");
    println!(
        "| plain no-op (same window) | {:.0} tasks/s | |",
        queue.plain
    );
    println!(
        "| priorities on (High, Normal, Low in turn) | {:.0} tasks/s | {:.2}x |",
        queue.priorities,
        queue.priorities / queue.plain
    );
    println!(
        "| rate limit far above the load (10M/s) | {:.0} tasks/s | {:.2}x |",
        queue.limited_far_above,
        queue.limited_far_above / queue.plain
    );
    println!(
        "| delayed tasks ({DELAYED_TASKS} over {DELAY_SPREAD:?}): start lateness | p50 {:.1} ms, p99 {:.1} ms, earliest {:+.1} ms | |",
        ms(queue.delay_lateness.0),
        ms(queue.delay_lateness.1),
        queue.delay_lateness.2
    );
    println!(
        "| {RATE_LIMIT_PER_SECOND}/s rate limit, {RATE_LIMITED_TASKS} tasks: achieved | {:.1} tasks/s | |",
        queue.rate_achieved
    );
    println!();
    println!(
        "one task at a time, 1 worker ({LATENCY_SAMPLES} samples): p50 {:.0} µs, p99 {:.0} µs",
        latency.0.as_secs_f64() * 1e6,
        latency.1.as_secs_f64() * 1e6
    );
    if args.iter().any(|a| a == "--json") {
        // For `futurepool-bench report`: the same figures, as one JSON line at the end.
        let table = structured(
            ours_two,
            &[rq_simple, rq_fork],
            &by_workers,
            latency,
            &queue,
        );
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
    queue: &QueueFigures,
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
    let features = "job-queue features, 2 worker processes";
    table.push(features, "plain no-op", queue.plain, "tasks/s", Higher);
    table.push(
        features,
        "priorities on (High, Normal, Low in turn)",
        queue.priorities,
        "tasks/s",
        Higher,
    );
    table.push(
        features,
        "rate limit far above the load (10M/s)",
        queue.limited_far_above,
        "tasks/s",
        Higher,
    );
    let row = table.push(
        "delayed tasks: start lateness",
        "futurepool ClusterPool",
        ms(queue.delay_lateness.0),
        "ms",
        Lower,
    );
    row.display = Some(format!(
        "p50 {:.1} ms, p99 {:.1} ms, earliest {:+.1} ms",
        ms(queue.delay_lateness.0),
        ms(queue.delay_lateness.1),
        queue.delay_lateness.2
    ));
    // Closer to the limit is better, which neither direction says: shown, not ranked.
    let row = table.push(
        &format!("{RATE_LIMIT_PER_SECOND}/s rate limit: achieved"),
        "futurepool ClusterPool",
        queue.rate_achieved,
        "tasks/s",
        Higher,
    );
    row.display = Some(format!(
        "{:.1} tasks/s (limit {RATE_LIMIT_PER_SECOND}/s)",
        queue.rate_achieved
    ));
    table.compute_ratios();
    table
}

/// A client of the bench pool, with the rate limits the job-queue rows measure.
fn client(url: &str) -> ClusterPool {
    ClusterPool::builder(url)
        .pool("bench")
        .rate_limit(noop_limited_far_above, RateLimit::per_second(10_000_000))
        .rate_limit(
            started_at_limited,
            RateLimit::per_second(RATE_LIMIT_PER_SECOND),
        )
        .build()
        .expect("connect to the bench broker")
}

/// The job-queue rows (`run`).
struct QueueFigures {
    plain: f64,
    priorities: f64,
    limited_far_above: f64,
    /// p50 and p99 of how long after its due time a delayed task started, and the earliest
    /// (ms, negative if early).
    delay_lateness: (Duration, Duration, f64),
    /// Tasks per second that started under the rate limit, first start to last.
    rate_achieved: f64,
}

fn best(rates: &[f64]) -> f64 {
    rates.iter().copied().fold(0.0, f64::max)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// [`run_batch`] of any no-op function.
fn run_batch_of(pool: &ClusterPool, f: fn(u32), n: u32) -> f64 {
    timed_batch(n, |i| pool.submit(f, i))
}

/// [`run_batch`] with the three priority lanes in turn.
fn run_batch_with_priorities(pool: &ClusterPool, n: u32) -> f64 {
    let lanes = [Priority::High, Priority::Normal, Priority::Low]
        .map(|priority| SubmitOptions::new().priority(priority));
    timed_batch(n, |i| pool.submit_with(&lanes[i as usize % 3], noop, i))
}

/// Submits `n` tasks made by `submit`, waits for all of them; returns tasks per second.
fn timed_batch(n: u32, submit: impl FnMut(u32) -> futurepool::Task<()>) -> f64 {
    let start = Instant::now();
    let tasks: Vec<_> = (0..n).map(submit).collect();
    for task in &tasks {
        task.result().expect("a no-op result");
    }
    f64::from(n) / start.elapsed().as_secs_f64()
}

/// Delayed tasks due evenly over [`DELAY_SPREAD`], each at an absolute time; returns the p50 and
/// p99 of start − due, and the earliest start − due in ms (negative if a task started early,
/// which it must not).
fn delay_lateness(pool: &ClusterPool) -> (Duration, Duration, f64) {
    let first_due = SystemTime::now() + Duration::from_millis(500);
    let tasks: Vec<_> = (0..DELAYED_TASKS)
        .map(|i| {
            let due = first_due + DELAY_SPREAD * i / DELAYED_TASKS;
            let task = pool.submit_with(&SubmitOptions::new().at(due), started_at, i);
            (due, task)
        })
        .collect();
    let mut lateness_ns: Vec<i64> = tasks
        .iter()
        .map(|(due, task)| {
            let started = task.result().expect("a delayed task's start time");
            started as i64 - unix_nanos(*due) as i64
        })
        .collect();
    lateness_ns.sort_unstable();
    let at = |q: f64| {
        let ns = lateness_ns[((lateness_ns.len() - 1) as f64 * q).round() as usize];
        Duration::from_nanos(ns.max(0) as u64)
    };
    (at(0.50), at(0.99), lateness_ns[0] as f64 / 1e6)
}

/// Submits [`RATE_LIMITED_TASKS`] at once under the [`RATE_LIMIT_PER_SECOND`] limit; returns the
/// rate they started at: a bucket starting full lets `burst` (one second's worth) through at once
/// and then `rate` per second, so over the span from the first start to the last
/// `tasks − burst` started at the limit's rate.
fn rate_achieved(pool: &ClusterPool) -> f64 {
    let tasks: Vec<_> = (0..RATE_LIMITED_TASKS)
        .map(|i| pool.submit(started_at_limited, i))
        .collect();
    let starts: Vec<u64> = tasks
        .iter()
        .map(|task| task.result().expect("a rate-limited task's start time"))
        .collect();
    let first = starts.iter().min().expect("tasks ran");
    let last = starts.iter().max().expect("tasks ran");
    let after_burst = RATE_LIMITED_TASKS - RATE_LIMIT_PER_SECOND;
    f64::from(after_burst) / Duration::from_nanos(last - first).as_secs_f64()
}

/// Submits `n` no-op tasks and waits for all of them; returns tasks per second.
fn run_batch(pool: &ClusterPool, n: u32) -> f64 {
    run_batch_of(pool, noop, n)
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
        Workers::start_with(url, n, None)
    }

    /// `n` workers, in process mode with `processes` local processes each when given.
    fn start_with(url: &str, n: usize, processes: Option<usize>) -> Workers {
        let exe = std::env::current_exe().expect("own path");
        let children = (0..n)
            .map(|_| {
                let mut command = Command::new(&exe);
                command.args(["cluster-worker", url, &WORKER_THREADS.to_string()]);
                if let Some(processes) = processes {
                    command.arg(processes.to_string());
                }
                command
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
