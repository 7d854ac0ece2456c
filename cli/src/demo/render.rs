//! The demo's terminal output: one block per section as it finishes, then the summary table with
//! a bar per speedup.

use super::cpu::CpuSection;
use super::download::IoSection;
use super::isolation::{Contained, IsolationSection};
use super::{DemoReport, Machine, Mode, Run};

/// The widest bar, in terminal columns.
const BAR_WIDTH: usize = 30;

pub fn title(machine: &Machine) {
    println!(
        "futurepool demo: what a pool of workers buys you, measured on this machine ({} CPUs)",
        machine.cpus
    );
    println!();
}

pub fn io(section: &IoSection) {
    println!(
        "1. I/O-bound, the classic example: download {} pages, each answered after {} ms",
        section.pages, section.latency_ms
    );
    println!(
        "   from the embedded server at {}, saved as NAME.html under {}",
        section.server,
        section.output_dir.display()
    );
    println!();
    for run in &section.runs {
        let how = match run.run.mode {
            Mode::Serial => "serial: `fetch -j 1`".to_string(),
            Mode::ThreadPool => format!("thread pool: `fetch -j {}`", run.run.workers),
            Mode::ProcessPool => format!("process pool: {} worker processes", run.run.workers),
        };
        println!(
            "   {how:<38} {:>9} {:>7}   {} pages saved in {}",
            seconds(run.run.wall_s),
            times(run.run.speedup),
            run.files_verified,
            run.dir.display()
        );
        failures(&run.run);
    }
    println!(
        "   {:<38} {:>9} {:>7}   = {} pages × {} ms / {} workers",
        "physical limit",
        seconds(section.physical_limit_s),
        times(section.workers as f64),
        section.pages,
        section.latency_ms,
        section.workers
    );
    println!();
    println!(
        "   The work is waiting, so workers overlap their waits: threads and processes both get"
    );
    println!("   close to the limit, threads more cheaply. This is the job threads were made for.");
    println!();
}

pub fn cpu(section: &CpuSection, machine: &Machine) {
    let cpus = machine.cpus;
    println!(
        "2. CPU-bound: {} tasks, each testing the {} ({} workers)",
        section.tasks, section.job, section.workers
    );
    println!();
    for run in &section.runs {
        println!(
            "   {:<38} {:>9} {:>7}",
            run_label(run),
            seconds(run.wall_s),
            times(run.speedup)
        );
        failures(run);
    }
    let speedup = |mode| {
        section
            .runs
            .iter()
            .find(|r| r.mode == mode)
            .map_or(0.0, |r| r.speedup)
    };
    println!();
    println!(
        "   In Python, threads give about 1.0× here: the GIL lets one thread run Python code at a"
    );
    println!(
        "   time, so only a process pool speeds up CPU work. Rust has no GIL: on {cpus} CPUs the"
    );
    println!(
        "   thread pool gave {} and the process pool {}. In Rust, choose processes for isolation,",
        times(speedup(Mode::ThreadPool)),
        times(speedup(Mode::ProcessPool))
    );
    println!("   not for speed — which is what the next section is about.");
    let possible = section.workers.min(cpus) as f64;
    let best = speedup(Mode::ThreadPool).max(speedup(Mode::ProcessPool));
    if possible >= 2.0 && best < 0.75 * possible {
        let load = machine
            .load_average
            .map(|l| format!(" (load average {l:.1} on {cpus} CPUs)"))
            .unwrap_or_default();
        println!();
        println!("   Note: {cpus} CPUs allow up to {possible:.0}×; other programs were using them{load},");
        println!(
            "   so both pools got less. Run the demo again on a quiet machine to see them scale."
        );
    }
    println!();
}

pub fn isolation(section: &IsolationSection) {
    println!("3. Isolation: a bad task fails alone");
    println!();
    contained("thread pool", &section.thread_panic);
    contained("process pool", &section.process_abort);
    contained("process pool, time limit", &section.runaway_time_limit);
    contained("process pool, abort", &section.running_abort);
    contained("process pool, memory limit", &section.memory_limit);
    println!();
}

fn contained(pool: &str, c: &Contained) {
    let error = c.error.as_deref().unwrap_or("it did not fail");
    println!(
        "   {pool}: a task that {} → {error} (after {})",
        c.task,
        seconds(c.failed_after_s)
    );
    println!(
        "      {} of {} other tasks completed; a task submitted afterwards {}{}",
        c.others_completed,
        c.others_total,
        if c.pool_usable_after {
            "ran fine"
        } else {
            "did NOT run"
        },
        if c.as_expected {
            ""
        } else {
            "   (NOT as expected)"
        }
    );
}

pub fn summary(report: &DemoReport) {
    println!("Summary (speedup over serial)");
    println!();
    let rows: Vec<(&str, &Run)> = report
        .io
        .runs
        .iter()
        .map(|r| ("I/O", &r.run))
        .chain(report.cpu.runs.iter().map(|r| ("CPU", r)))
        .collect();
    let widest = rows.iter().map(|(_, r)| r.speedup).fold(1.0, f64::max);
    let mut previous = "";
    for (section, run) in rows {
        let shown = if section == previous { "" } else { section };
        previous = section;
        println!(
            "   {shown:<4} {:<24} {:>9} {:>7}  {}",
            run_label(run),
            seconds(run.wall_s),
            times(run.speedup),
            bar(run.speedup, widest, BAR_WIDTH)
        );
    }
    println!();
    let isolation = &report.isolation;
    let mark = |ok: bool| if ok { "contained" } else { "NOT contained" };
    println!(
        "   panic on the thread pool: {}; abort on the process pool: {}; runaway task: {}; \
         aborted task: {}; memory hog: {}",
        mark(isolation.thread_panic.as_expected),
        mark(isolation.process_abort.as_expected),
        mark(isolation.runaway_time_limit.as_expected),
        mark(isolation.running_abort.as_expected),
        mark(isolation.memory_limit.as_expected)
    );
}

fn run_label(run: &Run) -> String {
    match run.mode {
        Mode::Serial => "serial".to_string(),
        mode => format!("{}, {} workers", mode.label(), run.workers),
    }
}

fn failures(run: &Run) {
    if let Some(error) = &run.first_error {
        println!("      {} failed; first error: {error}", run.failed);
    }
}

fn seconds(s: f64) -> String {
    if s < 0.001 {
        format!("{:.0} µs", s * 1e6)
    } else if s < 1.0 {
        format!("{:.0} ms", s * 1000.0)
    } else {
        format!("{s:.2} s")
    }
}

fn times(x: f64) -> String {
    if x > 0.0 {
        format!("{x:.1}×")
    } else {
        "failed".to_string()
    }
}

/// A horizontal bar `value / max` of `width` columns, drawn with eighth-blocks so small
/// differences show.
pub fn bar(value: f64, max: f64, width: usize) -> String {
    const EIGHTHS: [char; 8] = [' ', '▏', '▎', '▍', '▌', '▋', '▊', '▉'];
    if !(value > 0.0 && max > 0.0) {
        return String::new();
    }
    let eighths = ((value / max).min(1.0) * (width * 8) as f64).round() as usize;
    let mut bar = "█".repeat(eighths / 8);
    if !eighths.is_multiple_of(8) {
        bar.push(EIGHTHS[eighths % 8]);
    }
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_widest() {
        assert_eq!(bar(10.0, 10.0, 4), "████");
        assert_eq!(bar(5.0, 10.0, 4), "██");
        assert_eq!(bar(1.0, 10.0, 4), "▍"); // 3.2 eighths, rounded to 3
        assert_eq!(bar(0.0, 10.0, 4), "");
        assert_eq!(bar(f64::NAN, 10.0, 4), "");
        assert_eq!(bar(20.0, 10.0, 4), "████");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(seconds(0.2504), "250 ms");
        assert_eq!(seconds(0.000_21), "210 µs");
        assert_eq!(seconds(2.5), "2.50 s");
        assert_eq!(times(9.66), "9.7×");
        assert_eq!(times(0.0), "failed");
    }
}
