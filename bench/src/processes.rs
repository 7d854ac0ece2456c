//! `futurepool-bench processes`: the process pool against Python's `ProcessPoolExecutor` and
//! `procspawn::Pool`, in one run, two workers each.
//!
//! Measured: unchunked submit + result of no-op tasks; 100,000 pending tasks (rate, peak
//! descriptors and memory); `map` of 1,000,000 tiny items with automatic chunking (Python:
//! `chunksize=1000`); 16 CPU-bound tasks of ~50 ms (speedup over serial); worker start-up; the
//! round-trip latency of one task.

use std::process::Command;
use std::time::{Duration, Instant};

use futurepool::ProcessPool;

use crate::table::{Better, Table, OURS};

const WORKERS: usize = 2;

fn noop(n: u64) -> u64 {
    n
}

/// Burns CPU for `iterations` rounds of an xorshift, returning something so it is not elided.
fn spin(iterations: u64) -> u64 {
    let mut x = 0x9e37_79b9_7f4a_7c15_u64 ^ iterations;
    for _ in 0..iterations {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    x
}

futurepool::register!(noop, spin);

const PYTHON: &str = "Python ProcessPoolExecutor";
const PROCSPAWN: &str = "procspawn Pool";

/// Runs every measurement; prints the table, or with `--json` the table as JSON for `report`.
pub fn run(args: &[String]) {
    let json = args.iter().any(|a| a == "--json");
    let python = python_figures();
    let mut table = Table::new(
        "processes",
        format!(
            "process pools of {WORKERS} workers: futurepool, {PYTHON} (bench/python/processes.py), \
             {PROCSPAWN}"
        ),
    );
    let mut add = |workload: &str, ours: f64, peers: &[(&str, Option<f64>)], unit: &str, better| {
        table.push(workload, OURS, ours, unit, better);
        for (tool, value) in peers {
            match value {
                Some(value) => {
                    table.push(workload, tool, *value, unit, better);
                }
                None => table.push(workload, tool, 0.0, unit, better).note = Some("not run".into()),
            }
        }
    };

    let startup = worker_startup();
    add(
        "worker start-up: new pool to first result (median of 5)",
        startup.as_secs_f64() * 1e3,
        &[(PYTHON, python.get("startup_ms"))],
        "ms",
        Better::Lower,
    );

    let pool = warm_pool();
    let (p50, p99) = latency(&pool, 5_000);
    add(
        "one-task round trip, p50",
        p50.as_secs_f64() * 1e6,
        &[(PYTHON, python.get("latency_p50_us"))],
        "µs",
        Better::Lower,
    );
    add(
        "one-task round trip, p99",
        p99.as_secs_f64() * 1e6,
        &[(PYTHON, python.get("latency_p99_us"))],
        "µs",
        Better::Lower,
    );
    add(
        "unchunked submit + result of no-op tasks (ours 200,000; Python 20,000; procspawn 4,000)",
        unchunked(&pool, 200_000),
        &[
            (PYTHON, python.get("unchunked_per_s")),
            (PROCSPAWN, procspawn_rate(4_000)),
        ],
        "tasks/s",
        Better::Higher,
    );
    let (rate, fds, rss) = pending(&pool, 100_000);
    add(
        "100,000 pending no-op tasks: rate",
        rate,
        &[(PYTHON, python.get("pending_per_s"))],
        "tasks/s",
        Better::Higher,
    );
    add(
        "100,000 pending no-op tasks: open descriptors",
        fds as f64,
        &[(PYTHON, python.get("pending_fds"))],
        "fds",
        Better::Lower,
    );
    add(
        "100,000 pending no-op tasks: peak RSS of the parent",
        rss,
        &[(PYTHON, python.get("pending_rss_mib"))],
        "MiB",
        Better::Lower,
    );
    add(
        "map of 1,000,000 tiny items (ours: automatic chunks; Python: chunksize=1000)",
        map_items(&pool, 1_000_000),
        &[(PYTHON, python.get("map_items_per_s"))],
        "items/s",
        Better::Higher,
    );
    add(
        "16 CPU-bound tasks of ~50 ms: speedup over serial (best of 3)",
        cpu_bound(&pool),
        &[(PYTHON, python.get("cpu_speedup"))],
        "x",
        Better::Higher,
    );
    drop(pool);

    if json {
        println!(
            "{}",
            serde_json::to_string(&table).expect("a table serializes")
        );
    } else {
        println!("{}", table.to_text());
    }
}

fn warm_pool() -> ProcessPool {
    let pool = ProcessPool::new(WORKERS).expect("a process pool");
    // Start both workers and let the pipeline estimate settle.
    let tasks: Vec<_> = (0..10_000).map(|n| pool.submit(noop, n)).collect();
    for task in tasks {
        task.result().expect("warm-up");
    }
    pool
}

fn worker_startup() -> Duration {
    let mut samples: Vec<Duration> = (0..5)
        .map(|_| {
            let started = Instant::now();
            let pool = ProcessPool::new(1).expect("a process pool");
            pool.submit(noop, 1).result().expect("first task");
            let elapsed = started.elapsed();
            drop(pool);
            elapsed
        })
        .collect();
    samples.sort();
    samples[samples.len() / 2]
}

fn latency(pool: &ProcessPool, rounds: usize) -> (Duration, Duration) {
    let mut samples: Vec<Duration> = (0..rounds as u64)
        .map(|n| {
            let started = Instant::now();
            pool.submit(noop, n).result().expect("round trip");
            started.elapsed()
        })
        .collect();
    samples.sort();
    (samples[rounds / 2], samples[rounds * 99 / 100])
}

fn unchunked(pool: &ProcessPool, n: u64) -> f64 {
    let started = Instant::now();
    let tasks: Vec<_> = (0..n).map(|i| pool.submit(noop, i)).collect();
    for task in &tasks {
        task.result().expect("no-op");
    }
    n as f64 / started.elapsed().as_secs_f64()
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

fn pending(pool: &ProcessPool, n: u64) -> (f64, usize, f64) {
    let started = Instant::now();
    let tasks: Vec<_> = (0..n).map(|i| pool.submit(noop, i)).collect();
    let fds = open_fds();
    for task in &tasks {
        task.result().expect("no-op");
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    (rate, fds, peak_rss_mib())
}

fn map_items(pool: &ProcessPool, n: u64) -> f64 {
    let started = Instant::now();
    let sum: u64 = pool.map(noop, 0..n).map(|r| r.expect("tiny item")).sum();
    assert_eq!(sum, n * (n - 1) / 2);
    n as f64 / started.elapsed().as_secs_f64()
}

/// Iterations of `spin` that take about 50 ms here.
fn calibrate_spin() -> u64 {
    let mut iterations = 1_000_000;
    loop {
        let started = Instant::now();
        std::hint::black_box(spin(iterations));
        let elapsed = started.elapsed();
        if elapsed >= Duration::from_millis(10) {
            return (iterations as f64 * 0.050 / elapsed.as_secs_f64()) as u64;
        }
        iterations *= 4;
    }
}

/// Best of three rounds each way: the machine is shared, and the best round is the one least
/// disturbed by other processes.
fn cpu_bound(pool: &ProcessPool) -> f64 {
    let iterations = calibrate_spin();
    let mut serial = Duration::MAX;
    let mut parallel = Duration::MAX;
    for _ in 0..3 {
        let started = Instant::now();
        for _ in 0..16 {
            std::hint::black_box(spin(std::hint::black_box(iterations)));
        }
        serial = serial.min(started.elapsed());
        let started = Instant::now();
        let tasks: Vec<_> = (0..16).map(|_| pool.submit(spin, iterations)).collect();
        for task in tasks {
            task.result().expect("spin");
        }
        parallel = parallel.min(started.elapsed());
    }
    serial.as_secs_f64() / parallel.as_secs_f64()
}

fn procspawn_noop(n: u64) -> u64 {
    n
}

fn procspawn_rate(n: u64) -> Option<f64> {
    let pool = procspawn::Pool::new(WORKERS).ok()?;
    // Warm up the workers first, as for ours.
    for i in 0..100 {
        pool.spawn(i, procspawn_noop).join().ok()?;
    }
    let started = Instant::now();
    let handles: Vec<_> = (0..n).map(|i| pool.spawn(i, procspawn_noop)).collect();
    for handle in handles {
        handle.join().ok()?;
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    pool.shutdown();
    Some(rate)
}

/// Figures printed by `bench/python/processes.py` as `name value` lines.
struct PythonFigures(Vec<(String, f64)>);

impl PythonFigures {
    fn get(&self, name: &str) -> Option<f64> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
    }
}

fn python_figures() -> PythonFigures {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/processes.py");
    let output = Command::new("python3").arg(script).output();
    let stdout = match output {
        Ok(output) if output.status.success() => {
            String::from_utf8_lossy(&output.stdout).into_owned()
        }
        Ok(output) => {
            eprintln!(
                "python peer failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            String::new()
        }
        Err(error) => {
            eprintln!("python peer not run: {error}");
            String::new()
        }
    };
    PythonFigures(
        stdout
            .lines()
            .filter_map(|line| {
                let (name, value) = line.split_once(' ')?;
                Some((name.to_string(), value.trim().parse().ok()?))
            })
            .collect(),
    )
}
