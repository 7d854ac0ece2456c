//! `futurepool demo`: what futurepool is for, shown in under a minute on any machine, offline.
//!
//! The demo retells the classic introduction to `concurrent.futures` with measured numbers: an
//! I/O-bound download (workers overlap waits, so speedup approaches the worker count), a CPU-bound
//! job (in Rust threads and processes both scale with cores — in Python only processes do), and
//! isolation (a panic, an aborted process and a runaway task each fail alone). It ends with a
//! table of the speedups.
//!
//! Everything runs against an embedded loopback server ([`server`]) and in fresh pools that are
//! shut down before the demo returns, so no worker outlives it.

mod cpu;
mod download;
mod isolation;
mod render;
mod server;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use serde::Serialize;

/// Flags of `futurepool demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// How many pages the I/O section downloads.
    #[arg(short = 'n', long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=5000))]
    pub pages: u32,
    /// How long the embedded server waits before answering each page, in milliseconds.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub latency_ms: u64,
    /// Workers of the I/O section's thread and process pools (the classic example uses 10).
    #[arg(short = 'j', long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub workers: u32,
    /// How many primes the CPU section tests (each takes roughly 50 ms on one core).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub cpu_tasks: u32,
    /// Workers of the CPU section's pools [default: the number of CPUs].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub cpu_workers: Option<u32>,
    /// Directory the downloaded pages are saved in, one subdirectory per run
    /// [default: futurepool-demo in the system's temporary directory].
    #[arg(short = 'o', long, value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// Print one JSON document with every measurement instead of the tables.
    #[arg(long)]
    pub json: bool,
}

/// Everything the demo measured; what `--json` prints.
#[derive(Debug, Serialize)]
pub struct DemoReport {
    /// The machine the demo ran on.
    pub machine: Machine,
    /// Section 1: downloading pages.
    pub io: download::IoSection,
    /// Section 2: the CPU-bound job.
    pub cpu: cpu::CpuSection,
    /// Section 3: failures that stay contained.
    pub isolation: isolation::IsolationSection,
    /// Whether every section behaved as the demo says it does.
    pub all_as_expected: bool,
}

/// The machine the demo ran on.
#[derive(Debug, Serialize)]
pub struct Machine {
    /// CPUs this process may use.
    pub cpus: usize,
    /// The one-minute load average when the demo started (Linux), to judge the CPU figures by.
    pub load_average: Option<f64>,
}

/// The one-minute load average, from `/proc/loadavg`.
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// One way of running a section's work, and how long it took.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    /// `serial`, `thread_pool` or `process_pool`.
    pub mode: Mode,
    /// Workers used (1 for serial).
    pub workers: usize,
    /// Wall-clock time, in seconds.
    pub wall_s: f64,
    /// Serial wall time divided by this run's (0 when some items failed).
    pub speedup: f64,
    /// Items that succeeded.
    pub succeeded: usize,
    /// Items that failed, with the first error if any.
    pub failed: usize,
    /// The first failure's message, if any item failed.
    pub first_error: Option<String>,
}

/// How a section's work was run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// One item after another on the calling thread.
    Serial,
    /// On futurepool's thread pool.
    ThreadPool,
    /// On futurepool's process pool.
    ProcessPool,
}

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Mode::Serial => "serial",
            Mode::ThreadPool => "thread pool",
            Mode::ProcessPool => "process pool",
        }
    }
}

/// Fills in each run's speedup against the serial run; 0 for a run with failures.
fn set_speedups(runs: &mut [Run]) {
    let Some(serial) = runs
        .iter()
        .find(|r| r.mode == Mode::Serial)
        .map(|r| r.wall_s)
    else {
        return;
    };
    for run in runs {
        // A run that failed items did less work: its time says nothing about speed.
        let comparable = run.failed == 0 && run.wall_s > 0.0;
        run.speedup = if comparable { serial / run.wall_s } else { 0.0 };
    }
}

/// Runs `futurepool demo`.
pub fn run(args: &DemoArgs) -> ExitCode {
    match run_sections(args) {
        Ok(report) => {
            if args.json {
                match serde_json::to_string_pretty(&report) {
                    Ok(json) => println!("{json}"),
                    Err(e) => {
                        eprintln!("futurepool demo: cannot encode the report: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            } else {
                render::summary(&report);
            }
            if report.all_as_expected {
                ExitCode::SUCCESS
            } else {
                eprintln!("futurepool demo: some results were not as expected (see above)");
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("futurepool demo: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_sections(args: &DemoArgs) -> Result<DemoReport, String> {
    let machine = Machine {
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        load_average: load_average(),
    };
    let cpus = machine.cpus;
    let text = !args.json;
    if text {
        render::title(&machine);
    }

    let output = args
        .output
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("futurepool-demo"));
    let io = download::run(&download::IoPlan {
        pages: args.pages as usize,
        latency: Duration::from_millis(args.latency_ms),
        workers: args.workers as usize,
        output,
    })?;
    if text {
        render::io(&io);
    }

    let cpu_workers = args.cpu_workers.map_or(cpus, |n| n as usize);
    let cpu = cpu::run(args.cpu_tasks as usize, cpu_workers)?;
    if text {
        render::cpu(&cpu, &machine);
    }

    let isolation = isolation::run()?;
    if text {
        render::isolation(&isolation);
    }

    let all_as_expected = io.as_expected() && cpu.as_expected() && isolation.as_expected();
    Ok(DemoReport {
        machine,
        io,
        cpu,
        isolation,
        all_as_expected,
    })
}
