//! `futurepool demo` end to end: the real binary with small sizes. Checks what it reports and
//! what it leaves behind, never how fast it was.

use std::collections::HashSet;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::Duration;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_futurepool");

/// Set in the demo's environment, so its worker processes (which inherit it) can be found in
/// `/proc` even after the demo exits and they would be reparented.
const MARKER_VAR: &str = "FUTUREPOOL_DEMO_TEST_MARKER";

struct Finished {
    status: ExitStatus,
    stdout: String,
    stderr: String,
    /// Every process seen as a direct child of the demo while it ran.
    children_seen: HashSet<u32>,
}

fn scratch_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "futurepool-demo-test-{test}-{}",
        std::process::id()
    ));
    let _ = fs::remove_dir_all(&dir);
    dir
}

/// Runs the demo with small sizes, watching `/proc` for its children until it exits.
fn run_demo(marker: &str, dir: &Path, extra: &[&str]) -> Finished {
    let mut child = Command::new(BIN)
        .args([
            "demo",
            "-n",
            "12",
            "--latency-ms",
            "5",
            "-j",
            "4",
            "--cpu-tasks",
            "2",
        ])
        .arg("--output")
        .arg(dir)
        .args(extra)
        .env(MARKER_VAR, marker)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the demo");
    let demo = child.id();
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = thread::spawn(move || {
        let mut s = String::new();
        stdout.read_to_string(&mut s).unwrap();
        s
    });
    let err = thread::spawn(move || {
        let mut s = String::new();
        stderr.read_to_string(&mut s).unwrap();
        s
    });
    let mut children_seen = HashSet::new();
    let status = loop {
        children_seen.extend(children_of(demo));
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        thread::sleep(Duration::from_millis(2));
    };
    Finished {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
        children_seen,
    }
}

fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            // Field 4 of /proc/PID/stat is the parent; the command name before it is in
            // parentheses and may itself contain spaces and parentheses.
            fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                stat.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
                    == Some(parent)
            })
        })
        .collect()
}

/// Live processes whose environment carries `marker`.
fn processes_with_marker(marker: &str) -> Vec<u32> {
    let needle = format!("{MARKER_VAR}={marker}");
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|&b| b == 0).any(|var| var == needle.as_bytes()))
        })
        .collect()
}

fn unique_marker(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{test}-{}-{nanos}", std::process::id())
}

fn run_modes(section: &Value) -> Vec<&str> {
    section["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["mode"].as_str().unwrap())
        .collect()
}

#[test]
fn json_report_has_every_section_and_no_worker_outlives_the_demo() {
    let marker = unique_marker("json");
    let dir = scratch_dir("json");
    let finished = run_demo(&marker, &dir, &["--json"]);
    assert!(
        finished.status.success(),
        "demo failed: {}\n{}",
        finished.status,
        finished.stderr
    );
    let report: Value = serde_json::from_str(&finished.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON document ({e}):\n{}",
            finished.stdout
        )
    });
    assert_eq!(report["all_as_expected"], true);

    // 1. I/O: three runs, each saved every page, complete, as NAME.html in its own directory.
    let io = &report["io"];
    assert_eq!(run_modes(io), ["serial", "thread_pool", "process_pool"]);
    assert_eq!(io["pages"], 12);
    assert_eq!(io["physical_limit_s"], 12.0 * 0.005 / 4.0);
    assert_eq!(
        io["requests_served"],
        3 * 12,
        "one request per page per run"
    );
    for run in io["runs"].as_array().unwrap() {
        assert_eq!(run["succeeded"], 12, "{run}");
        assert_eq!(run["failed"], 0, "{run}");
        assert_eq!(run["files_verified"], 12, "{run}");
        let run_dir = PathBuf::from(run["dir"].as_str().unwrap());
        assert!(run_dir.starts_with(&dir), "{run_dir:?} is outside {dir:?}");
        let mut saved: Vec<String> = fs::read_dir(&run_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        saved.sort();
        let expected: Vec<String> = (1..=12).map(|i| format!("page-{i:03}.html")).collect();
        assert_eq!(saved, expected, "in {run_dir:?}");
        assert!(run["wall_s"].as_f64().unwrap() > 0.0);
    }

    // 2. CPU: the same three modes, every answer right.
    let cpu = &report["cpu"];
    assert_eq!(run_modes(cpu), ["serial", "thread_pool", "process_pool"]);
    for run in cpu["runs"].as_array().unwrap() {
        assert_eq!(run["succeeded"], 2, "{run}");
        assert_eq!(run["failed"], 0, "{run}");
        assert!(run["speedup"].as_f64().unwrap() > 0.0, "{run}");
    }

    // 3. Isolation: each bad task failed its own way, and only it.
    let isolation = &report["isolation"];
    let expectations = [
        ("thread_panic", "thread_pool", "panicked", "corrupt record"),
        ("process_abort", "process_pool", "worker_lost", "signal 6"),
        (
            "runaway_time_limit",
            "process_pool",
            "time_limit",
            "time limit",
        ),
        ("running_abort", "process_pool", "cancelled", "aborted"),
        (
            "memory_limit",
            "process_pool",
            "memory_limit",
            "memory limit",
        ),
    ];
    for (scenario, pool, outcome, said) in expectations {
        let c = &isolation[scenario];
        assert_eq!(c["pool"], pool, "{scenario}: {c}");
        assert_eq!(c["outcome"], outcome, "{scenario}: {c}");
        assert!(
            c["error"].as_str().unwrap().contains(said),
            "{scenario}: {c}"
        );
        assert_eq!(c["others_completed"], c["others_total"], "{scenario}: {c}");
        assert_eq!(c["pool_usable_after"], true, "{scenario}: {c}");
    }

    // The panic was reported by the demo, not sprayed on stderr by the default hook.
    assert!(
        !finished.stderr.contains("panicked at"),
        "{}",
        finished.stderr
    );

    // No worker outlives the demo: the children it had are gone, and nothing carrying its
    // environment is left anywhere.
    assert!(
        !finished.children_seen.is_empty(),
        "never saw the demo's worker processes, so the leak check below would prove nothing"
    );
    assert_eq!(processes_with_marker(&marker), Vec::<u32>::new());
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn text_output_tells_the_story_and_ends_with_the_table() {
    let marker = unique_marker("text");
    let dir = scratch_dir("text");
    let finished = run_demo(&marker, &dir, &[]);
    assert!(
        finished.status.success(),
        "demo failed: {}\n{}",
        finished.status,
        finished.stderr
    );
    let out = &finished.stdout;
    let sections = [
        "1. I/O-bound",
        "physical limit",
        "2. CPU-bound",
        "GIL",
        "3. Isolation",
        "Summary",
    ];
    let mut from = 0;
    for heading in sections {
        let at = out[from..]
            .find(heading)
            .unwrap_or_else(|| panic!("{heading:?} missing or out of order in:\n{out}"));
        from += at + heading.len();
    }
    assert!(out.contains('█'), "no speedup bars in:\n{out}");
    assert_eq!(processes_with_marker(&marker), Vec::<u32>::new());
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn bad_flags_are_a_usage_error() {
    let output = Command::new(BIN)
        .args(["demo", "--pages", "0"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--pages"));
}
