//! `futurepool-bench overhead`: what compiling futurepool's optional `tracing` and `progress`
//! features in costs on the thread pool's hot path, off (compiled in, unused) and on.
//!
//! "Compiled in" and "not compiled in" are different builds, so the comparison takes three
//! binaries of this crate: without features (the baseline), with `--features tracing` and with
//! `--features progress` (each forwarding to futurepool's feature of the same name). The driver
//! (`overhead`) builds them with `cargo build --release -p futurepool-bench`, keeps a copy of each
//! under `<target>/overhead/`, then runs them one after the other for each round
//! (`overhead-child`), so a burst of load on the machine hits every variant rather than one. A
//! figure is the best of the rounds, as the threads benchmark's throughput is the best of its runs.
//!
//! The builds share the workspace's target directory: cargo keeps each feature set's artifacts
//! apart (the features are part of every unit's hash), so the variants do not rebuild each other
//! and only futurepool, this crate and the features' own dependencies are compiled three times;
//! separate target directories would compile all ~150 dependencies three times over. The
//! featureless build goes last, so `target/release/futurepool-bench` is left as a plain build.
//!
//! The workloads (2 workers, 1,000,000 tasks, as `futurepool-bench threads`'s throughput figure):
//! - `submit`: submit 1M no-op tasks, then take every result;
//! - `map`: `pool.map(|_| (), 0..1M)` drained in order;
//! - with `tracing`, after the above: the same `submit` and `map` with a subscriber installed
//!   that is enabled for everything futurepool emits and only counts spans and events (no field
//!   is formatted, nothing is written: the floor of any real subscriber's cost);
//! - `submit` with each task calling `report_progress(1, 1)` (nobody listens), in every build:
//!   the function exists without the feature too, so the baseline's figure separates the call's
//!   own cost from the feature's;
//! - with `progress`: `map` with `.progress()` (the bar draws on stderr only when it is a terminal; the table
//!   says which it was).

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::table::{Better, Table};

const WORKERS: usize = 2;
const TASKS: usize = 1_000_000;
const WARM_UP_TASKS: usize = 10_000;
/// Rounds of the driver: each runs every variant once.
const ROUNDS: usize = 3;

/// The builds compared: name, cargo features. The baseline first.
const VARIANTS: [(&str, &str); 3] = [
    ("none", ""),
    ("tracing", "tracing"),
    ("progress", "progress"),
];

/// What one child run prints, as one JSON line.
#[derive(Debug, Serialize, Deserialize)]
struct ChildReport {
    /// The features this binary was compiled with.
    features: Vec<String>,
    /// (workload key, tasks per second), best of the child's runs.
    figures: Vec<(String, f64)>,
    /// With `tracing`: spans and events the counting subscriber saw, and tasks run while it was
    /// installed.
    #[serde(default)]
    traced: Option<Traced>,
    /// Whether stderr was a terminal (`.progress()` draws its bar only then).
    stderr_terminal: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct Traced {
    spans: u64,
    events: u64,
    tasks: u64,
}

// ---------------------------------------------------------------------------------------------
// The child: the workloads of the features it was compiled with.

/// `futurepool-bench overhead-child [--runs N]`: one JSON line, a [`ChildReport`].
pub fn child(args: &[String]) {
    let runs: usize = match args {
        [flag, n] if flag == "--runs" => n.parse().expect("--runs takes a number"),
        _ => 1,
    };
    let pool = futurepool::ThreadPool::new(WORKERS);
    // Start the workers and touch the allocator's arenas before timing anything.
    submit_all(&pool, WARM_UP_TASKS, || ());
    let mut figures = Vec::new();
    let mut measure = |key: &str, run: &dyn Fn() -> Duration| {
        let best = (0..runs.max(1)).map(|_| run()).min().unwrap();
        figures.push((key.to_string(), TASKS as f64 / best.as_secs_f64()));
    };
    measure("submit", &|| submit_all(&pool, TASKS, || ()));
    measure("map", &|| map_all(&pool, false));
    // `report_progress` exists without the feature too (process pool tasks report through it),
    // so every build measures it: the baseline's figure tells the call's own cost from the
    // feature's.
    measure("submit+report_progress", &|| {
        submit_all(&pool, TASKS, || futurepool::report_progress(1, 1))
    });
    #[cfg(feature = "progress")]
    measure("map+progress", &|| map_all(&pool, true));
    // Last: a global subscriber cannot be taken away again.
    #[cfg(feature = "tracing")]
    let traced = {
        counting::install();
        let before = counting::seen();
        measure("submit+subscriber", &|| submit_all(&pool, TASKS, || ()));
        measure("map+subscriber", &|| map_all(&pool, false));
        let after = counting::seen();
        Some(Traced {
            spans: after.0 - before.0,
            events: after.1 - before.1,
            tasks: (2 * runs.max(1) * TASKS) as u64,
        })
    };
    #[cfg(not(feature = "tracing"))]
    let traced = None;
    let features = [
        ("tracing", cfg!(feature = "tracing")),
        ("progress", cfg!(feature = "progress")),
    ]
    .into_iter()
    .filter(|(_, on)| *on)
    .map(|(name, _)| name.to_string())
    .collect();
    let report = ChildReport {
        features,
        figures,
        traced,
        stderr_terminal: std::io::stderr().is_terminal(),
    };
    println!(
        "{}",
        serde_json::to_string(&report).expect("a report always serializes")
    );
}

/// Submits `n` tasks running `f`, then takes every result (the threads benchmark's throughput
/// workload).
fn submit_all(pool: &futurepool::ThreadPool, n: usize, f: fn()) -> Duration {
    let start = Instant::now();
    let tasks: Vec<_> = (0..n).map(|_| pool.submit(f)).collect();
    for task in tasks {
        task.result().unwrap();
    }
    start.elapsed()
}

/// `pool.map(|_| (), 0..TASKS)` drained in order, with `.progress()` if `progress`.
fn map_all(pool: &futurepool::ThreadPool, progress: bool) -> Duration {
    let start = Instant::now();
    let results = pool.map(|_: usize| (), 0..TASKS);
    #[cfg(feature = "progress")]
    if progress {
        results.progress().for_each(Result::unwrap);
        return start.elapsed();
    }
    assert!(!progress, ".progress() needs the progress feature");
    results.for_each(Result::unwrap);
    start.elapsed()
}

/// The floor of a subscriber's cost: enabled for futurepool's spans and events, it hands out
/// span ids and counts, and does nothing else.
#[cfg(feature = "tracing")]
mod counting {
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Metadata, Subscriber};

    static SPANS: AtomicU64 = AtomicU64::new(0);
    static EVENTS: AtomicU64 = AtomicU64::new(0);

    struct Counting;

    impl Subscriber for Counting {
        fn enabled(&self, metadata: &Metadata<'_>) -> bool {
            metadata.target() == "futurepool"
        }

        fn new_span(&self, _: &Attributes<'_>) -> Id {
            Id::from_u64(SPANS.fetch_add(1, Relaxed) + 1)
        }

        fn record(&self, _: &Id, _: &Record<'_>) {}

        fn record_follows_from(&self, _: &Id, _: &Id) {}

        fn event(&self, _: &Event<'_>) {
            EVENTS.fetch_add(1, Relaxed);
        }

        fn enter(&self, _: &Id) {}

        fn exit(&self, _: &Id) {}
    }

    /// Installs the subscriber for every thread, workers included (a scoped default would
    /// cover the submitting thread only).
    pub fn install() {
        tracing::subscriber::set_global_default(Counting).expect("no subscriber was installed");
    }

    /// (spans, events) so far.
    pub fn seen() -> (u64, u64) {
        (SPANS.load(Relaxed), EVENTS.load(Relaxed))
    }
}

// ---------------------------------------------------------------------------------------------
// The driver.

/// `futurepool-bench overhead [--rounds N] [--json]`.
pub fn run(args: &[String]) {
    let mut rounds = ROUNDS;
    let mut json = false;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--rounds" => {
                rounds = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .expect("--rounds takes a number");
            }
            "--json" => json = true,
            other => panic!("unknown option {other:?} (usage: overhead [--rounds N] [--json])"),
        }
    }
    let binaries = match build_variants() {
        Ok(binaries) => binaries,
        Err(message) => {
            eprintln!("futurepool-bench overhead: {message}");
            std::process::exit(1);
        }
    };
    let load = crate::threads::load_average();
    // reports[variant][round]
    let mut reports: Vec<Vec<ChildReport>> = VARIANTS.iter().map(|_| Vec::new()).collect();
    for round in 1..=rounds {
        // Each round starts with the next variant: no variant always goes first, or always
        // follows the same other.
        for i in (0..VARIANTS.len()).map(|k| (k + round - 1) % VARIANTS.len()) {
            let (name, binary) = (VARIANTS[i].0, &binaries[i]);
            eprintln!("==> round {round}/{rounds}: {name}");
            match run_child(binary) {
                Ok(report) => reports[i].push(report),
                Err(message) => {
                    eprintln!("futurepool-bench overhead: {name}: {message}");
                    std::process::exit(1);
                }
            }
        }
    }
    let table = tabulate(&reports, rounds, &load);
    print!("{}", table.to_text());
    println!(
        "\n(last column: the baseline's throughput ÷ this row's, i.e. how many times longer the \
         same tasks take; 1.00× = no cost. Ranges: worst–best of the {rounds} rounds.)"
    );
    if json {
        let line = serde_json::to_string(&table).expect("a table always serializes");
        println!("{line}");
    }
}

/// Builds each variant and copies its binary under `<target>/overhead/`; returns their paths in
/// [`VARIANTS`] order.
fn build_variants() -> Result<Vec<PathBuf>, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
    // This binary is `<target>/release/futurepool-bench`.
    let target = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("this binary is not in a cargo target directory")?
        .to_path_buf();
    let built = exe.with_file_name(format!("futurepool-bench{}", std::env::consts::EXE_SUFFIX));
    let out = target.join("overhead");
    std::fs::create_dir_all(&out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut paths = vec![PathBuf::new(); VARIANTS.len()];
    // The featureless build last: it is what `target/release/futurepool-bench` is left as.
    for (i, (name, features)) in VARIANTS.iter().enumerate().rev() {
        eprintln!("==> building {name} (features: {features:?})");
        let mut command = Command::new(&cargo);
        command
            .current_dir(&workspace)
            .args(["build", "--release", "--quiet", "-p", "futurepool-bench"])
            .arg("--target-dir")
            .arg(&target);
        if !features.is_empty() {
            command.args(["--features", features]);
        }
        let status = command
            .status()
            .map_err(|e| format!("cannot run {cargo}: {e}"))?;
        if !status.success() {
            return Err(format!("building the {name} variant failed ({status})"));
        }
        let copy = out.join(format!(
            "futurepool-bench-{name}{}",
            std::env::consts::EXE_SUFFIX
        ));
        std::fs::copy(&built, &copy)
            .map_err(|e| format!("cannot copy {} to {}: {e}", built.display(), copy.display()))?;
        paths[i] = copy;
    }
    Ok(paths)
}

/// Runs one variant's child; its stderr is this process's, so a terminal shows the bar.
fn run_child(binary: &Path) -> Result<ChildReport, String> {
    let output = Command::new(binary)
        .arg("overhead-child")
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
    if !output.status.success() {
        return Err(format!("the child failed ({})", output.status));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).map_err(|e| format!("unreadable child report {line:?}: {e}"))
}

/// A row of the table: its label, the variant (index into [`VARIANTS`]), the child's figure key
/// and a note.
type RowSpec<'a> = (&'a str, usize, &'a str, Option<&'a str>);

/// The rows: per workload the baseline, then each variant's off and on figures.
fn tabulate(reports: &[Vec<ChildReport>], rounds: usize, load: &str) -> Table {
    let mut table = Table::new(
        "overhead",
        format!(
            "futurepool's optional features compiled in, off and on; {WORKERS} workers, 1M \
             tasks, best of {rounds} interleaved rounds; load average {load} at start"
        ),
    );
    // (variant index, figure key) -> every round's figure.
    let samples = |variant: usize, key: &str| -> Vec<f64> {
        reports[variant]
            .iter()
            .filter_map(|r| r.figures.iter().find(|(k, _)| k == key).map(|(_, v)| *v))
            .collect()
    };
    let [none, tracing, progress] = [0, 1, 2];
    let terminal = reports.iter().flatten().any(|r| r.stderr_terminal);
    let traced = reports[tracing]
        .iter()
        .filter_map(|r| r.traced.as_ref())
        .fold((0, 0, 0), |(s, e, t), x| {
            (s + x.spans, e + x.events, t + x.tasks)
        });
    let seen = format!(
        "saw {} spans, {} events for {} tasks",
        crate::table::format_value(traced.0 as f64),
        crate::table::format_value(traced.1 as f64),
        crate::table::format_value(traced.2 as f64)
    );
    let bar = if terminal {
        "bar drawn: stderr is a terminal"
    } else {
        "bar hidden: stderr is not a terminal"
    };
    let workloads: [(&str, &str, Vec<RowSpec>); 2] = [
        (
            "1M no-op ThreadPool::submit + result (higher is better)",
            "submit",
            vec![
                (
                    "tracing compiled in, no subscriber",
                    tracing,
                    "submit",
                    None,
                ),
                (
                    "tracing compiled in, counting subscriber",
                    tracing,
                    "submit+subscriber",
                    Some(seen.as_str()),
                ),
                ("progress compiled in, unused", progress, "submit", None),
                (
                    "no features, report_progress(1, 1) per task",
                    none,
                    "submit+report_progress",
                    None,
                ),
                (
                    "progress compiled in, report_progress(1, 1) per task",
                    progress,
                    "submit+report_progress",
                    None,
                ),
            ],
        ),
        (
            "pool.map over 0..1M, drained (higher is better)",
            "map",
            vec![
                ("tracing compiled in, no subscriber", tracing, "map", None),
                (
                    "tracing compiled in, counting subscriber",
                    tracing,
                    "map+subscriber",
                    None,
                ),
                (
                    "progress compiled in, without .progress()",
                    progress,
                    "map",
                    None,
                ),
                (
                    "progress compiled in, .progress()",
                    progress,
                    "map+progress",
                    Some(bar),
                ),
            ],
        ),
    ];
    for (workload, base_key, rows) in workloads {
        let base = samples(none, base_key);
        let base_best = base.iter().copied().fold(f64::NAN, f64::max);
        let rows = std::iter::once(("no features (baseline)", none, base_key, None)).chain(rows);
        for (tool, variant, key, note) in rows {
            let figures = samples(variant, key);
            if figures.is_empty() {
                let row = table.push(workload, tool, 0.0, "tasks/s", Better::Higher);
                row.note = Some("not reported by its build".to_string());
                continue;
            }
            let best = figures.iter().copied().fold(f64::NAN, f64::max);
            let worst = figures.iter().copied().fold(f64::NAN, f64::min);
            let range = format!("{:.2}–{:.2}", worst / 1e6, best / 1e6);
            let row = table.push(workload, tool, best, "tasks/s", Better::Higher);
            row.display = Some(format!("{:.2} M tasks/s ({range})", best / 1e6));
            row.ratio = Some(base_best / best).filter(|r| r.is_finite());
            row.note = note.map(str::to_string);
        }
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(figures: &[(&str, f64)]) -> ChildReport {
        ChildReport {
            features: Vec::new(),
            figures: figures.iter().map(|&(k, v)| (k.to_string(), v)).collect(),
            traced: None,
            stderr_terminal: false,
        }
    }

    #[test]
    fn ratios_are_the_baselines_best_over_the_rows_best() {
        let reports = vec![
            vec![report(&[("submit", 4e6)]), report(&[("submit", 3e6)])],
            vec![report(&[("submit", 2e6)]), report(&[("submit", 1e6)])],
            vec![report(&[("submit", 4e6)])],
        ];
        let table = tabulate(&reports, 2, "1.00");
        let rows: Vec<_> = table.rows_of(table.workloads()[0]).collect();
        assert_eq!(rows[0].ratio, Some(1.0));
        assert_eq!(rows[1].tool, "tracing compiled in, no subscriber");
        assert_eq!(rows[1].ratio, Some(2.0));
        assert_eq!(
            rows[1].display.as_deref(),
            Some("2.00 M tasks/s (1.00–2.00)")
        );
        // A figure no build reported has no ratio rather than a made-up one.
        assert!(rows.iter().any(|r| r.ratio.is_none()));
    }
}
