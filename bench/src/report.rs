//! `futurepool-bench report`: every benchmark area side by side with its peers, written to
//! `docs/bench/README.md` with SVG charts.
//!
//! Each area (`threads`, `processes`, `fetch`, `cluster`) runs as its own child process
//! (`futurepool-bench AREA --json`), so one area's threads, memory peak or crash cannot skew or
//! stop another's; an area that is missing or fails is listed as skipped with the reason. The
//! report adds one measurement of its own: speedup against worker count (1 to 4) for the thread
//! and process pools on a CPU-bound job.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use futurepool::{ProcessPool, Shutdown, ThreadPool};

use crate::svg::{self, Bar, BarGroup, Series};
use crate::table::{format_ratio, is_ours, Better, Table};

/// The areas, in report order, with what each is about.
const AREAS: [(&str, &str); 4] = [
    ("threads", "Thread pool"),
    ("processes", "Process pool"),
    ("fetch", "Page downloads (futurepool fetch)"),
    ("cluster", "Cluster (Redis Streams)"),
];

/// The last section: the optional features' overhead is not measured by the report (it takes
/// three builds of this crate), only pointed to.
const OVERHEAD_NOTE: &str = "## Overhead of the optional features (`tracing`, `progress`)

Not measured by this report: it needs three builds. `cargo build --release -p futurepool-bench \
&& target/release/futurepool-bench overhead` builds this crate without features, with \
`--features tracing` and with `--features progress`, runs the three in interleaved rounds (best \
of 3) and prints 1M no-op `submit` + `result` and a 1M-item `map` side by side: each feature \
compiled in but unused, and in use (a subscriber that counts every span and event, \
`report_progress(1, 1)` in every task, `.progress()` on the `map`), with ratios to the \
featureless build.
";

/// Worker counts of the scaling chart.
const SCALING_WORKERS: [usize; 4] = [1, 2, 3, 4];

/// The scaling chart's reference: the job split over plain `std::thread`s, no pool.
const BARE_THREADS: &str = "bare std threads (the machine's ceiling now)";

/// Tasks of the scaling job; each is about 50 ms of arithmetic on one core.
const SCALING_TASKS: usize = 16;

struct Options {
    out: PathBuf,
    only: Option<Vec<String>>,
}

/// Runs the report; `args` follow the subcommand name.
pub fn main(args: &[String]) -> ExitCode {
    let options = match parse(args) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("futurepool-bench report: {message}");
            eprintln!("usage: futurepool-bench report [--out DIR] [--only AREA,AREA...]");
            return ExitCode::from(2);
        }
    };
    match run(&options) {
        Ok(path) => {
            println!("report written to {}", path.display());
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("futurepool-bench report: {message}");
            ExitCode::FAILURE
        }
    }
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        // The workspace's docs/bench, wherever the command is run from.
        out: Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/bench"),
        only: None,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--out" => options.out = args.next().ok_or("--out needs a directory")?.into(),
            "--only" => {
                let list = args.next().ok_or("--only needs a list of areas")?;
                let areas: Vec<String> = list.split(',').map(str::to_string).collect();
                for area in &areas {
                    if area != "scaling" && !AREAS.iter().any(|(name, _)| name == area) {
                        return Err(format!("unknown area {area:?}"));
                    }
                }
                options.only = Some(areas);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(options)
}

/// What happened to one area.
enum AreaResult {
    /// Tables from the area's `--json` line.
    Measured(Vec<Table>),
    /// An area without `--json` support: its printed output, shown as it is.
    Printed(String),
    Skipped(String),
}

fn run(options: &Options) -> Result<PathBuf, String> {
    let wanted = |area: &str| {
        options
            .only
            .as_ref()
            .is_none_or(|only| only.iter().any(|a| a == area))
    };
    fs::create_dir_all(&options.out)
        .map_err(|e| format!("cannot create {}: {e}", options.out.display()))?;
    let started = Instant::now();
    let mut results = Vec::new();
    for (area, title) in AREAS {
        if !wanted(area) {
            continue;
        }
        eprintln!("==> {area}");
        let result = run_area(area);
        match &result {
            AreaResult::Measured(tables) => {
                tables.iter().for_each(|t| eprintln!("{}", t.to_text()))
            }
            AreaResult::Printed(_) => eprintln!("    no --json table: its printed output is kept"),
            AreaResult::Skipped(why) => eprintln!("    skipped: {why}"),
        }
        results.push((area, title, result));
    }
    let scaling = if wanted("scaling") {
        eprintln!("==> scaling (speedup against worker count)");
        let scaling = measure_scaling()?;
        eprintln!("{}", scaling.to_text());
        Some(scaling)
    } else {
        None
    };

    let mut markdown = header(started.elapsed().as_secs_f64());
    for (area, title, result) in &results {
        let _ = writeln!(markdown, "## {title}\n");
        match result {
            AreaResult::Skipped(why) => {
                let _ = writeln!(markdown, "Not measured in this run: {why}\n");
            }
            AreaResult::Printed(text) => {
                let _ = writeln!(markdown, "```text\n{}\n```\n", text.trim_end());
            }
            AreaResult::Measured(tables) => {
                for (i, table) in tables.iter().enumerate() {
                    let file = if i == 0 {
                        format!("{area}.svg")
                    } else {
                        format!("{area}-{i}.svg")
                    };
                    write(&options.out.join(&file), &throughput_chart(title, table))?;
                    let _ = writeln!(markdown, "{}\n", table.description);
                    let _ = writeln!(markdown, "![{title}]({file})\n");
                    markdown.push_str(&table.to_markdown());
                    markdown.push('\n');
                }
            }
        }
    }
    if let Some(scaling) = &scaling {
        write(&options.out.join("scaling.svg"), &scaling_chart(scaling))?;
        let _ = writeln!(markdown, "## Scaling: speedup against worker count\n");
        let _ = writeln!(markdown, "{}\n", scaling.description);
        markdown.push_str("![Speedup against worker count](scaling.svg)\n\n");
        markdown.push_str(&pivot_by_tool(scaling));
        markdown.push('\n');
    }
    markdown.push_str(OVERHEAD_NOTE);
    let readme = options.out.join("README.md");
    write(&readme, &markdown)?;
    Ok(readme)
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Runs `futurepool-bench AREA --json` and reads its table(s).
fn run_area(area: &str) -> AreaResult {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return AreaResult::Skipped(format!("cannot find this executable: {e}")),
    };
    let output = Command::new(exe)
        .args([area, "--json"])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output();
    let output = match output {
        Ok(output) => output,
        Err(e) => return AreaResult::Skipped(format!("cannot run it: {e}")),
    };
    if !output.status.success() {
        return AreaResult::Skipped(format!(
            "`futurepool-bench {area} --json` failed ({})",
            output.status
        ));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    match parse_tables(&stdout) {
        Some(tables) => AreaResult::Measured(tables),
        None => AreaResult::Printed(stdout.into_owned()),
    }
}

/// An area's `--json` output: its human-readable text, then its table(s) as JSON on the last
/// line — one table or a list of them.
fn parse_tables(stdout: &str) -> Option<Vec<Table>> {
    let last = stdout.lines().rev().find(|line| !line.trim().is_empty())?;
    let mut tables = serde_json::from_str::<Vec<Table>>(last)
        .or_else(|_| serde_json::from_str::<Table>(last).map(|table| vec![table]))
        .ok()?;
    tables.iter_mut().for_each(Table::compute_ratios);
    Some(tables)
}

/// The report's own measurement: the CPU job serially, then on thread and process pools of 1 to 4
/// workers.
fn measure_scaling() -> Result<Table, String> {
    let inputs: Vec<u64> = (0..SCALING_TASKS as u64).collect();
    let rounds = calibrate_rounds();
    let started = Instant::now();
    let serial: u64 = inputs
        .iter()
        .map(|&i| crunch((i, rounds)))
        .fold(0, u64::wrapping_add);
    let serial_s = started.elapsed().as_secs_f64();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut table = Table::new(
        "scaling",
        format!(
            "{SCALING_TASKS} tasks of about 50 ms of arithmetic each (serial: {serial_s:.2} s); \
             speedup = serial time / pool time, pool start-up included; this machine has {cpus} CPUs."
        ),
    );
    for workers in SCALING_WORKERS {
        let workload = format!("{workers} worker{}", if workers == 1 { "" } else { "s" });
        let thread_s = time_pool(|| {
            let pool = ThreadPool::new(workers);
            let sum = pool
                .map(crunch, inputs.iter().map(|&i| (i, rounds)))
                .try_fold(0, |sum, r| r.map(|x| u64::wrapping_add(sum, x)))
                .map_err(|e| format!("a CPU task failed on the thread pool: {e}"));
            pool.shutdown(Shutdown::default());
            sum
        })?;
        let process_s = time_pool(|| {
            let pool = ProcessPool::new(workers)
                .map_err(|e| format!("cannot start the process pool: {e}"))?;
            let tasks: Vec<_> = inputs
                .iter()
                .map(|&i| pool.submit(crunch, (i, rounds)))
                .collect();
            let sum = tasks
                .iter()
                .try_fold(0, |sum, t| t.result().map(|x| u64::wrapping_add(sum, x)))
                .map_err(|e| format!("a CPU task failed on the process pool: {e}"));
            pool.shutdown(Shutdown::default());
            sum
        })?;
        // The same split over bare std threads, measured alongside: what the machine itself gave
        // at that moment, so a busy machine shows as a low ceiling rather than a slow pool.
        let bare_s = time_pool(|| {
            let sum = std::thread::scope(|scope| {
                let shares: Vec<_> = (0..workers)
                    .map(|first| {
                        let inputs = &inputs;
                        scope.spawn(move || {
                            inputs
                                .iter()
                                .skip(first)
                                .step_by(workers)
                                .map(|&i| crunch((i, rounds)))
                                .fold(0, u64::wrapping_add)
                        })
                    })
                    .collect();
                shares
                    .into_iter()
                    .map(|share| share.join().expect("a bare thread panicked"))
                    .fold(0, u64::wrapping_add)
            });
            Ok(sum)
        })?;
        for (tool, (seconds, sum)) in [
            ("thread pool", thread_s),
            ("process pool", process_s),
            (BARE_THREADS, bare_s),
        ] {
            if sum != serial {
                return Err(format!(
                    "the {tool} computed a different result with {workers} workers"
                ));
            }
            table.push(
                &workload,
                tool,
                serial_s / seconds,
                "× speedup",
                Better::Higher,
            );
        }
        table.push(
            &workload,
            "ideal",
            workers.min(cpus) as f64,
            "× speedup",
            Better::Higher,
        );
    }
    Ok(table)
}

fn time_pool(run: impl FnOnce() -> Result<u64, String>) -> Result<(f64, u64), String> {
    let started = Instant::now();
    let sum = run()?;
    Ok((started.elapsed().as_secs_f64(), sum))
}

/// The scaling job: `rounds` steps of a 64-bit mixing function seeded by the task number. Each
/// step depends on the last, so the compiler cannot shortcut or vectorize it.
fn crunch((seed, rounds): (u64, u64)) -> u64 {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for _ in 0..rounds {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
    }
    x
}
futurepool::register!(crunch);

/// Rounds that take about 50 ms on this machine, measured on one core.
fn calibrate_rounds() -> u64 {
    let mut rounds = 1 << 16;
    loop {
        let started = Instant::now();
        std::hint::black_box(crunch((std::hint::black_box(1), rounds)));
        let took = started.elapsed().as_secs_f64();
        if took > 0.01 {
            return ((rounds as f64) * 0.05 / took) as u64;
        }
        rounds *= 4;
    }
}

fn throughput_chart(title: &str, table: &Table) -> String {
    let groups: Vec<BarGroup> = table
        .workloads()
        .into_iter()
        .map(|workload| {
            let rows: Vec<_> = table.rows_of(workload).filter(|r| r.value > 0.0).collect();
            let direction = match rows.first().map(|r| r.better) {
                Some(Better::Lower) => "lower is better",
                _ => "higher is better",
            };
            BarGroup {
                // Areas often say the direction in the workload's name already.
                title: if workload.contains("better") {
                    workload.to_string()
                } else {
                    format!("{workload} ({direction})")
                },
                bars: rows
                    .iter()
                    .map(|row| Bar {
                        label: row.tool.clone(),
                        value: row.value,
                        highlight: is_ours(&row.tool),
                        text: match row.ratio {
                            Some(ratio) if is_ours(&row.tool) || !ratio.is_finite() => row.figure(),
                            Some(ratio) if ratio >= 1.0 => format!(
                                "{} (futurepool {} better)",
                                row.figure(),
                                format_ratio(ratio)
                            ),
                            Some(ratio) => format!(
                                "{} ({} better than futurepool)",
                                row.figure(),
                                format_ratio(1.0 / ratio)
                            ),
                            None => row.figure(),
                        },
                    })
                    .collect(),
            }
        })
        .collect();
    svg::bar_groups(
        &format!("{title}: futurepool against its peers"),
        &table.description,
        &groups,
    )
}

fn scaling_chart(table: &Table) -> String {
    let series = |tool: &str, color: &'static str, dashed: bool| Series {
        name: tool.to_string(),
        points: table
            .rows
            .iter()
            .filter(|r| r.tool == tool)
            .filter_map(|r| Some((r.workload.split(' ').next()?.parse().ok()?, r.value)))
            .collect(),
        color,
        dashed,
    };
    svg::line_chart(
        "Speedup against worker count, CPU-bound job",
        &format!(
            "{SCALING_TASKS} tasks of ~50 ms; ideal = min(workers, CPUs); bare std threads = what \
             the machine gave during the run"
        ),
        "workers",
        "speedup over serial",
        &[
            series("thread pool", "#1c7ed6", false),
            series("process pool", "#d9480f", false),
            series(BARE_THREADS, "#2f9e44", true),
            series("ideal", "#adb5bd", true),
        ],
    )
}

/// A table with one row per workload and one column per tool: how the scaling figures read best.
fn pivot_by_tool(table: &Table) -> String {
    let mut tools: Vec<&str> = Vec::new();
    for row in &table.rows {
        if !tools.contains(&row.tool.as_str()) {
            tools.push(&row.tool);
        }
    }
    let mut out = format!("| workers | {} |\n", tools.join(" | "));
    let _ = writeln!(out, "| --- |{}", " ---: |".repeat(tools.len()));
    for workload in table.workloads() {
        let cells: Vec<String> = tools
            .iter()
            .map(|tool| {
                table
                    .rows_of(workload)
                    .find(|r| r.tool == *tool)
                    .map(|r| format!("{:.2}×", r.value))
                    .unwrap_or_default()
            })
            .collect();
        let _ = writeln!(
            out,
            "| {} | {} |",
            workload.split(' ').next().unwrap_or(workload),
            cells.join(" | ")
        );
    }
    out
}

fn header(elapsed_s: f64) -> String {
    let machine = Machine::detect();
    format!(
        "# futurepool benchmarks\n\n\
         Generated by `cargo run --release -p futurepool-bench -- report` in {elapsed_s:.0} s. Every \
         figure in a table comes from the same run, so the ratios compare like with like. \
         \"futurepool's advantage\" is how many times better futurepool is than the tool on that \
         row (higher is better: ours ÷ theirs; lower is better: theirs ÷ ours). Peers that are not \
         installed are reported as such; on Debian `apt-get install curl aria2 nginx-light \
         redis-server python3-requests` brings them all.\n\n\
         | machine | |\n| --- | --- |\n\
         | CPUs (`nproc`) | {} |\n| CPU model | {} |\n| kernel | {} |\n| rustc | {} |\n| date (UTC) | {} |\n\
         | load average at the start | {} |\n\n",
        machine.cpus, machine.cpu_model, machine.kernel, machine.rustc, machine.date, machine.load
    )
}

/// What the figures were measured on.
struct Machine {
    cpus: usize,
    cpu_model: String,
    kernel: String,
    rustc: String,
    date: String,
    /// The 1, 5 and 15-minute load averages: other work on the machine skews every figure.
    load: String,
}

impl Machine {
    fn detect() -> Machine {
        let unknown = || "unknown".to_string();
        Machine {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model: fs::read_to_string("/proc/cpuinfo")
                .ok()
                .and_then(|info| {
                    info.lines()
                        .find(|l| l.starts_with("model name"))
                        .and_then(|l| l.split_once(':'))
                        .map(|(_, model)| model.trim().to_string())
                })
                .unwrap_or_else(unknown),
            kernel: fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|k| format!("Linux {}", k.trim()))
                .unwrap_or_else(|_| unknown()),
            rustc: Command::new("rustc")
                .arg("--version")
                .output()
                .ok()
                .and_then(|o| String::from_utf8(o.stdout).ok())
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .unwrap_or_else(unknown),
            date: utc_date(SystemTime::now()),
            load: fs::read_to_string("/proc/loadavg")
                .ok()
                .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
                .unwrap_or_else(unknown),
        }
    }
}

/// `YYYY-MM-DD HH:MM` in UTC, from the civil-from-days algorithm (no time-zone database needed).
fn utc_date(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, of_day) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}",
        of_day / 3600,
        of_day % 3600 / 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn dates_are_civil_utc() {
        assert_eq!(utc_date(UNIX_EPOCH), "1970-01-01 00:00");
        // 2024-02-29 12:34 UTC, a leap day.
        assert_eq!(
            utc_date(UNIX_EPOCH + Duration::from_secs(1_709_210_040)),
            "2024-02-29 12:34"
        );
        assert_eq!(
            utc_date(UNIX_EPOCH + Duration::from_secs(4_102_444_800)),
            "2100-01-01 00:00"
        );
    }

    #[test]
    fn the_last_line_holds_one_table_or_a_list() {
        let mut table = Table::new("threads", "d");
        table.push("w", "futurepool", 2.0, "tasks/s", Better::Higher);
        let one = serde_json::to_string(&table).unwrap();
        let many = serde_json::to_string(&vec![table.clone(), table.clone()]).unwrap();
        assert_eq!(
            parse_tables(&format!("| a table |\n{one}\n\n")),
            Some(vec![table.clone()])
        );
        assert_eq!(parse_tables(&many).map(|t| t.len()), Some(2));
        assert_eq!(parse_tables("threads: 2 tasks/s\n"), None);
        assert_eq!(parse_tables(""), None);
    }

    #[test]
    fn crunch_depends_on_seed_and_rounds() {
        assert_ne!(crunch((1, 10)), crunch((2, 10)));
        assert_ne!(crunch((1, 10)), crunch((1, 11)));
        assert_eq!(crunch((5, 0)), 5u64.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    }

    #[test]
    fn unknown_areas_are_refused() {
        assert!(parse(&["--only".into(), "threads,bogus".into()]).is_err());
        assert!(parse(&["--only".into(), "threads,scaling".into()]).is_ok());
        assert!(parse(&["--frobnicate".into()]).is_err());
    }
}
