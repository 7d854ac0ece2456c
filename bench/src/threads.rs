//! `futurepool-bench threads`: the thread pool against tokio `spawn_blocking`, futures-executor's
//! `ThreadPool`, the `threadpool` crate and rayon `spawn` (the last three with a `oneshot` channel
//! per task to carry the result), and Python's `ThreadPoolExecutor` (`bench/python/threads.py`).
//!
//! Every pool has 2 workers. Figures:
//! - throughput: submit 1,000,000 no-op tasks, then collect every result; the median of 5
//!   rounds, with the best beside it, each round running every implementation in turn;
//! - contention: the same 1,000,000 tasks from 4 threads submitting and collecting at once
//!   (rounds as for throughput);
//! - memory: resident bytes per pending no-op task, 1,000,000 queued behind blocked workers with
//!   every handle kept (each implementation in a fresh child process, so freed memory of one run
//!   cannot be reused by the next);
//! - wake-up latency: submit to start of a task on an idle pool (workers parked), p50 and p99,
//!   with the submitter waiting for the result and with it keeping its core busy, beside one bare
//!   parked thread woken the same way (what the machine allows);
//! - CPU-bound scaling: 16 tasks of about 50 ms of arithmetic, speedup over running them serially.

use std::hint::black_box;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

const WORKERS: usize = 2;
const TASKS: usize = 1_000_000;
const RUNS: usize = 3;
/// Rounds of each throughput figure. The median is the figure and the best is shown beside it:
/// on two shared cores some implementations have rare fast rounds (`threadpool + oneshot` ran
/// 2.3 M tasks/s in most rounds and 4–5 M in about one in six), so a best of three tells more
/// about luck than about what a user gets.
const THROUGHPUT_ROUNDS: usize = 5;
/// Threads submitting at once for the contention figure.
const SUBMITTERS: usize = 4;
const LATENCY_SAMPLES: usize = 2_000;
const CPU_TASKS: usize = 16;
const CPU_TASK_TIME: Duration = Duration::from_millis(50);

/// The implementations compared, in table order.
const PEERS: [&str; 5] = [
    "futurepool",
    "tokio spawn_blocking",
    "futures-executor ThreadPool + oneshot",
    "threadpool + oneshot",
    "rayon spawn + oneshot",
];

pub fn run(args: &[String]) {
    if let [flag, peer] = args {
        match flag.as_str() {
            "--memory-child" => {
                println!("{}", memory_per_pending_task(peer));
                // The blocked workers would make any pool's drop wait forever.
                std::process::exit(0);
            }
            // Just one peer's throughput runs, e.g. under `perf record`.
            "--cpu-only" => {
                println!("speedups (futurepool, bare threads): {:.2?}", cpu_scaling());
                return;
            }
            "--throughput-only" => {
                let [rates] = throughputs([peer.as_str()], 1);
                println!("{peer}: {}", rates.figure());
                return;
            }
            // Rounds of every side in turn, so a burst of load from elsewhere hits all alike.
            "--latency-only" => {
                for round in 1..=RUNS {
                    for submitter in [Submitter::Blocks, Submitter::KeepsRunning] {
                        for side in LATENCY_SIDES {
                            let (p50, p99) = latency(side, submitter);
                            println!(
                                "round {round}, submitter {submitter:?}, {side}: \
                                 p50 {p50:.1} µs, p99 {p99:.1} µs"
                            );
                        }
                    }
                }
                return;
            }
            "--contention-only" => {
                let [rates] = throughputs([peer.as_str()], SUBMITTERS);
                println!("{peer}, {SUBMITTERS} submitters: {}", rates.figure());
                return;
            }
            _ => {}
        }
    }
    println!(
        "futurepool threads benchmark: {WORKERS} workers, {} cores, load average {} at start",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        load_average()
    );
    let python = python_figures();

    let mut table = Table::default();
    let throughput = throughputs(PEERS, 1);
    for (peer, rates) in PEERS.iter().zip(&throughput) {
        table.row(
            "throughput, 1M no-op tasks, median (best) of 5 rounds (higher is better)",
            peer,
            rates.figure(),
            throughput[0].median / rates.median,
        );
    }
    if let Some(p) = &python {
        table.row(
            "",
            "Python ThreadPoolExecutor",
            format!("{:.3} M tasks/s", p.throughput / 1e6),
            throughput[0].median / p.throughput,
        );
    }
    let contended = throughputs(PEERS, SUBMITTERS);
    for (peer, rates) in PEERS.iter().zip(&contended) {
        table.row(
            "contention, 1M no-op tasks from 4 submitting threads, median (best) of 5 rounds \
             (higher is better)",
            peer,
            rates.figure(),
            contended[0].median / rates.median,
        );
    }

    let memory: Vec<(&str, f64)> = ["futurepool", "tokio spawn_blocking", "threadpool + oneshot"]
        .into_iter()
        .filter_map(|peer| memory_in_child(peer).map(|bytes| (peer, bytes)))
        .collect();
    if let Some(&(_, ours)) = memory.first() {
        for &(peer, bytes) in &memory {
            table.row(
                "memory per pending task, 1M queued (lower is better)",
                peer,
                format!("{bytes:.0} bytes"),
                bytes / ours,
            );
        }
        if let Some(p) = &python {
            table.row(
                "",
                "Python ThreadPoolExecutor",
                format!("{:.0} bytes", p.memory_per_task),
                p.memory_per_task / ours,
            );
        }
    }

    for (submitter, measure) in [
        (
            Submitter::Blocks,
            "wake-up latency on an idle pool, submitter waits for the result, p50 / p99",
        ),
        (
            Submitter::KeepsRunning,
            "wake-up latency on an idle pool, submitter keeps running, p50 / p99",
        ),
    ] {
        let figures: Vec<(f64, f64)> = LATENCY_SIDES
            .iter()
            .map(|side| latency(side, submitter))
            .collect();
        let ours = figures[0];
        for (side, &(p50, p99)) in LATENCY_SIDES.iter().zip(&figures) {
            table.row(
                measure,
                side,
                format!("{p50:.1} / {p99:.1} µs"),
                p99 / ours.1,
            );
        }
        if let (Submitter::Blocks, Some(p)) = (submitter, &python) {
            table.row(
                "",
                "Python ThreadPoolExecutor",
                format!("{:.1} / {:.1} µs", p.latency_p50_us, p.latency_p99_us),
                p.latency_p99_us / ours.1,
            );
        }
    }

    let (speedup, ceiling) = cpu_scaling();
    table.row(
        "CPU-bound speedup over serial, 16 × 50 ms on 2 workers",
        "futurepool",
        format!("{speedup:.2}×"),
        f64::NAN,
    );
    table.row(
        "",
        "2 bare std threads, 8 tasks each (the machine's ceiling now)",
        format!("{ceiling:.2}×"),
        speedup / ceiling,
    );
    table.print();
    if python.is_none() {
        println!("(python3 or bench/python/threads.py not found: no Python figures)");
    }
    if args.iter().any(|a| a == "--json") {
        // For `futurepool-bench report`: the same table, as one JSON line at the end.
        let json = serde_json::to_string(&table.structured()).expect("a table always serializes");
        println!("{json}");
    }
}

/// The 1-minute load average: other work on the machine skews every figure.
pub(crate) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(String::from))
        .unwrap_or_else(|| "unknown".to_string())
}

/// One line per figure; the last column is how many times better futurepool is (peer ÷ ours for
/// costs, ours ÷ peer for rates), so > 1 always means futurepool wins.
#[derive(Default)]
struct Table {
    rows: Vec<[String; 4]>,
}

impl Table {
    fn row(&mut self, measure: &str, peer: &str, figure: String, futurepool_advantage: f64) {
        let ratio = if futurepool_advantage.is_nan() || peer == "futurepool" {
            "—".to_string()
        } else {
            format!("{futurepool_advantage:.2}×")
        };
        self.rows
            .push([measure.to_string(), peer.to_string(), figure, ratio]);
    }

    /// The rows in the report's shared form: each figure's first number is the value charted, the
    /// figure as printed is kept for display, and the advantage is kept as computed here.
    fn structured(&self) -> crate::table::Table {
        let mut table = crate::table::Table::new(
            "threads",
            format!(
                "{WORKERS} workers on every pool; throughput: the median of {THROUGHPUT_ROUNDS} \
                 rounds (each running every pool in turn), the best in brackets, the advantage \
                 from the medians."
            ),
        );
        let mut measure = String::new();
        for [row_measure, peer, figure, advantage] in &self.rows {
            if !row_measure.is_empty() {
                measure = row_measure.clone();
            }
            let number_end = figure
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(figure.len());
            let value = figure[..number_end].parse().unwrap_or(f64::NAN);
            let better = if measure.contains("lower") || measure.contains("latency") {
                crate::table::Better::Lower
            } else {
                crate::table::Better::Higher
            };
            let row = table.push(&measure, peer, value, figure[number_end..].trim(), better);
            row.display = Some(figure.clone());
            row.ratio = advantage.trim_end_matches('×').parse().ok();
        }
        table.compute_ratios();
        table
    }

    fn print(&self) {
        let header = [
            "measure",
            "implementation",
            "figure",
            "futurepool advantage",
        ];
        let mut widths = header.map(str::len);
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: [&str; 4]| {
            let padded: Vec<String> = cells
                .iter()
                .zip(widths)
                .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
                .collect();
            println!("| {} |", padded.join(" | "));
        };
        line(header);
        let rule: Vec<String> = widths.iter().map(|&w| "-".repeat(w)).collect();
        println!("|-{}-|", rule.join("-|-"));
        let mut last_measure = String::new();
        for row in &self.rows {
            let measure = if row[0] == last_measure || row[0].is_empty() {
                ""
            } else {
                last_measure = row[0].clone();
                &row[0]
            };
            line([measure, &row[1], &row[2], &row[3]]);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Throughput

/// One implementation's rounds of a throughput figure, in tasks per second.
struct Rates {
    median: f64,
    best: f64,
}

impl Rates {
    fn of(mut rounds: Vec<f64>) -> Rates {
        rounds.sort_by(f64::total_cmp);
        Rates {
            median: rounds[rounds.len() / 2],
            best: rounds[rounds.len() - 1],
        }
    }

    fn figure(&self) -> String {
        format!(
            "{:.2} ({:.2}) M tasks/s",
            self.median / 1e6,
            self.best / 1e6
        )
    }
}

/// Tasks per second of each of `peers` with `submitters` threads each submitting (and
/// collecting) their share of the tasks at once: [`THROUGHPUT_ROUNDS`] rounds, each running
/// every peer in turn, so a burst of load from elsewhere on the machine hits them all alike.
fn throughputs<const N: usize>(peers: [&str; N], submitters: usize) -> [Rates; N] {
    let sides = peers.map(submit_and_collect);
    let run = |submit_and_collect: &SubmitAndCollect, n: usize| {
        if submitters == 1 {
            return submit_and_collect(n);
        }
        let start = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..submitters {
                s.spawn(|| submit_and_collect(n / submitters));
            }
        });
        start.elapsed()
    };
    for side in &sides {
        run(side, 10_000); // warm-up: start the workers
    }
    let mut rounds: [Vec<f64>; N] = std::array::from_fn(|_| Vec::new());
    for _ in 0..THROUGHPUT_ROUNDS {
        for (side, rounds) in sides.iter().zip(&mut rounds) {
            // Time for the last pool's workers to go back to sleep (rayon's search a while
            // before they park).
            std::thread::sleep(Duration::from_millis(20));
            rounds.push(TASKS as f64 / run(side, TASKS).as_secs_f64());
        }
    }
    rounds.map(Rates::of)
}

/// Submits `n` no-op tasks to a pool and collects every result; returns the time taken.
type SubmitAndCollect = Box<dyn Fn(usize) -> Duration + Sync>;

/// `peer`'s pool, ready to run rounds.
fn submit_and_collect(peer: &str) -> SubmitAndCollect {
    match peer {
        "futurepool" => {
            let pool = futurepool::ThreadPool::new(WORKERS);
            Box::new(move |n| {
                let start = Instant::now();
                let tasks: Vec<_> = (0..n).map(|_| pool.submit(|| ())).collect();
                // Each handle is read and released in one pass, as the peers' receivers are
                // consumed by `recv` (a second pass to drop a million handles would walk 64 MB
                // of task cells again, out of cache).
                for task in tasks {
                    task.result().unwrap();
                }
                start.elapsed()
            })
        }
        "tokio spawn_blocking" => {
            let runtime = tokio_runtime();
            Box::new(move |n| {
                let start = Instant::now();
                let handles: Vec<_> = (0..n).map(|_| runtime.spawn_blocking(|| ())).collect();
                runtime.block_on(async {
                    for handle in handles {
                        handle.await.unwrap();
                    }
                });
                start.elapsed()
            })
        }
        "futures-executor ThreadPool + oneshot" => {
            let pool = futures_executor::ThreadPool::builder()
                .pool_size(WORKERS)
                .create()
                .unwrap();
            Box::new(move |n| {
                with_oneshots(n, |send| {
                    pool.spawn_ok(async move {
                        let _ = send.send(());
                    })
                })
            })
        }
        "threadpool + oneshot" => {
            let pool = threadpool::ThreadPool::new(WORKERS);
            Box::new(move |n| {
                with_oneshots(n, |send| {
                    pool.execute(move || {
                        let _ = send.send(());
                    })
                })
            })
        }
        "rayon spawn + oneshot" => {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(WORKERS)
                .build()
                .unwrap();
            Box::new(move |n| {
                with_oneshots(n, |send| {
                    pool.spawn(move || {
                        let _ = send.send(());
                    })
                })
            })
        }
        other => unreachable!("unknown peer {other}"),
    }
}

/// Submits `n` no-op tasks that each answer on their own oneshot channel, then receives every
/// answer.
fn with_oneshots(n: usize, spawn: impl Fn(oneshot::Sender<()>)) -> Duration {
    let start = Instant::now();
    let receivers: Vec<_> = (0..n)
        .map(|_| {
            let (send, receive) = oneshot::channel();
            spawn(send);
            receive
        })
        .collect();
    for receiver in receivers {
        receiver.recv().unwrap();
    }
    start.elapsed()
}

fn tokio_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(WORKERS)
        .build()
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Memory

fn memory_in_child(peer: &str) -> Option<f64> {
    let output = Command::new(std::env::current_exe().ok()?)
        .args(["threads", "--memory-child", peer])
        .output()
        .ok()?;
    String::from_utf8(output.stdout).ok()?.trim().parse().ok()
}

fn resident_bytes() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: f64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096.0
}

/// Queues `TASKS` no-op tasks behind blocked workers, keeping every handle, and returns the growth
/// of the resident set per task. Runs in a child process, which exits without dropping anything
/// (its workers are blocked for good).
fn memory_per_pending_task(peer: &str) -> f64 {
    // Each worker gets one task that parks forever; once every worker has reported in, nothing
    // submitted afterwards can start.
    let (started_tx, started) = mpsc::channel::<()>();
    let block_forever = move || {
        started_tx.send(()).unwrap();
        loop {
            std::thread::park();
        }
    };
    let wait_for_workers = || {
        for _ in 0..WORKERS {
            started.recv().unwrap();
        }
    };
    let grown = match peer {
        "futurepool" => {
            let pool = futurepool::ThreadPool::new(WORKERS);
            for _ in 0..WORKERS {
                pool.submit(block_forever.clone());
            }
            wait_for_workers();
            let before = resident_bytes();
            let mut handles = Vec::with_capacity(TASKS);
            handles.extend((0..TASKS).map(|_| pool.submit(|| ())));
            let grown = resident_bytes() - before;
            std::mem::forget((pool, handles));
            grown
        }
        "tokio spawn_blocking" => {
            let runtime = tokio_runtime();
            for _ in 0..WORKERS {
                runtime.spawn_blocking(block_forever.clone());
            }
            wait_for_workers();
            let before = resident_bytes();
            let mut handles = Vec::with_capacity(TASKS);
            handles.extend((0..TASKS).map(|_| runtime.spawn_blocking(|| ())));
            let grown = resident_bytes() - before;
            std::mem::forget((runtime, handles));
            grown
        }
        "threadpool + oneshot" => {
            let pool = threadpool::ThreadPool::new(WORKERS);
            for _ in 0..WORKERS {
                pool.execute(block_forever.clone());
            }
            wait_for_workers();
            let before = resident_bytes();
            let mut receivers = Vec::with_capacity(TASKS);
            receivers.extend((0..TASKS).map(|_| {
                let (send, receive) = oneshot::channel::<()>();
                pool.execute(move || {
                    let _ = send.send(());
                });
                receive
            }));
            let grown = resident_bytes() - before;
            std::mem::forget((pool, receivers));
            grown
        }
        other => unreachable!("no memory measurement for {other}"),
    };
    black_box(grown / TASKS as f64)
}

// ---------------------------------------------------------------------------------------------
// Wake-up latency

/// Pause between samples, so the workers are parked (idle) when the next task arrives.
const IDLE_PAUSE: Duration = Duration::from_micros(300);

/// What the submitting thread does until the task has started.
#[derive(Clone, Copy, Debug)]
enum Submitter {
    /// Waits for the result at once (parks), as `submit(f).result()` does.
    Blocks,
    /// Keeps its core busy, as a thread handing off work and carrying on does.
    KeepsRunning,
}

/// The sides of the wake-up figures, in table order.
const LATENCY_SIDES: [&str; 3] = [
    "futurepool",
    "tokio spawn_blocking",
    "one bare parked thread (the machine's floor now)",
];

fn percentiles(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e6;
    (at(0.50), at(0.99))
}

/// p50 and p99 of submit-to-start on an idle pool, in µs.
fn latency(side: &str, submitter: Submitter) -> (f64, f64) {
    match side {
        "futurepool" => {
            let pool = futurepool::ThreadPool::new(WORKERS);
            pool.submit(|| ()).wait();
            sample_wake_ups(submitter, |started| {
                let task = pool.submit(move || mark_started(&started));
                Box::new(move || task.wait())
            })
        }
        "tokio spawn_blocking" => {
            let runtime = tokio_runtime();
            runtime.block_on(runtime.spawn_blocking(|| ())).unwrap();
            sample_wake_ups(submitter, |started| {
                let handle = runtime.spawn_blocking(move || mark_started(&started));
                Box::new(|| runtime.block_on(handle).unwrap())
            })
        }
        "one bare parked thread (the machine's floor now)" => latency_floor(submitter),
        other => unreachable!("no wake-up measurement for {other}"),
    }
}

/// When a task started: set by the task, read by the submitter.
type StartCell = Arc<OnceLock<Instant>>;

fn mark_started(started: &StartCell) {
    let _ = started.set(Instant::now());
}

/// Takes [`LATENCY_SAMPLES`] samples: `submit` starts a task that calls [`mark_started`] and
/// returns a wait for its end.
fn sample_wake_ups<'a>(
    submitter: Submitter,
    mut submit: impl FnMut(StartCell) -> Box<dyn FnOnce() + 'a>,
) -> (f64, f64) {
    let samples = (0..LATENCY_SAMPLES)
        .map(|_| {
            std::thread::sleep(IDLE_PAUSE);
            let started = StartCell::default();
            let submitted = Instant::now();
            let wait = submit(Arc::clone(&started));
            if let Submitter::KeepsRunning = submitter {
                while started.get().is_none() {
                    std::hint::spin_loop();
                }
            }
            wait();
            *started.get().expect("the task ran") - submitted
        })
        .collect();
    percentiles(samples)
}

/// The floor under every pool's figure: one bare thread parked, unparked by the submitter; no
/// queue, no allocation, no result channel.
fn latency_floor(submitter: Submitter) -> (f64, f64) {
    struct Exchange {
        next: Mutex<Option<StartCell>>,
        done: AtomicBool,
    }
    let exchange = Arc::new(Exchange {
        next: Mutex::new(None),
        done: AtomicBool::new(false),
    });
    let submitting = std::thread::current();
    let sleeper = {
        let exchange = Arc::clone(&exchange);
        std::thread::spawn(move || {
            for _ in 0..LATENCY_SAMPLES {
                let started = loop {
                    if let Some(started) = exchange.next.lock().unwrap().take() {
                        break started;
                    }
                    std::thread::park();
                };
                mark_started(&started);
                exchange.done.store(true, Ordering::Release);
                submitting.unpark();
            }
        })
    };
    let figures = sample_wake_ups(submitter, |started| {
        *exchange.next.lock().unwrap() = Some(started);
        sleeper.thread().unpark();
        Box::new(|| {
            while !exchange.done.swap(false, Ordering::AcqRel) {
                std::thread::park();
            }
        })
    });
    sleeper.join().unwrap();
    figures
}

// ---------------------------------------------------------------------------------------------
// CPU-bound scaling

/// Arithmetic the optimiser cannot skip: `rounds` steps of a xorshift generator.
fn burn(rounds: u64) -> u64 {
    let mut x = black_box(0x2545_F491_4F6C_DD1D_u64);
    for _ in 0..rounds {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    black_box(x)
}

/// Speedups over serial of futurepool and of bare `std::thread`s doing the same split.
fn cpu_scaling() -> (f64, f64) {
    // Calibrate one task to about CPU_TASK_TIME.
    let probe = 10_000_000;
    let start = Instant::now();
    burn(probe);
    let rounds =
        (probe as f64 * CPU_TASK_TIME.as_secs_f64() / start.elapsed().as_secs_f64()) as u64;

    // Best of three of each, alternating, so a burst of load from elsewhere on the machine hurts
    // both sides alike and rarely all three runs.
    let pool = futurepool::ThreadPool::new(WORKERS);
    let mut serial = Duration::MAX;
    let mut parallel = Duration::MAX;
    let mut plain_threads = Duration::MAX;
    for _ in 0..RUNS {
        let start = Instant::now();
        for _ in 0..CPU_TASKS {
            burn(rounds);
        }
        serial = serial.min(start.elapsed());

        let start = Instant::now();
        let tasks: Vec<_> = (0..CPU_TASKS)
            .map(|_| pool.submit(move || burn(rounds)))
            .collect();
        for task in &tasks {
            task.result().unwrap();
        }
        parallel = parallel.min(start.elapsed());

        // The ceiling on this machine right now: the same split over bare threads.
        let start = Instant::now();
        std::thread::scope(|scope| {
            for _ in 0..WORKERS {
                scope.spawn(|| {
                    for _ in 0..CPU_TASKS / WORKERS {
                        burn(rounds);
                    }
                });
            }
        });
        plain_threads = plain_threads.min(start.elapsed());
    }
    let serial = serial.as_secs_f64();
    (
        serial / parallel.as_secs_f64(),
        serial / plain_threads.as_secs_f64(),
    )
}

// ---------------------------------------------------------------------------------------------
// Python

struct PythonFigures {
    throughput: f64,
    memory_per_task: f64,
    latency_p50_us: f64,
    latency_p99_us: f64,
}

/// Runs `bench/python/threads.py`, which prints `key=value` lines.
fn python_figures() -> Option<PythonFigures> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/threads.py");
    let output = Command::new("python3").arg(script).output().ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?;
    let value = |key: &str| -> Option<f64> {
        text.lines()
            .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))?
            .trim()
            .parse()
            .ok()
    };
    Some(PythonFigures {
        throughput: value("throughput")?,
        memory_per_task: value("memory_per_task")?,
        latency_p50_us: value("latency_p50_us")?,
        latency_p99_us: value("latency_p99_us")?,
    })
}
