//! Shared by the `fetch_*` and `cluster_*` tests: the loopback server and proxy, a private Redis,
//! scratch directories, and running the real `futurepool` binary.

#![allow(dead_code, unused_imports)] // Each test binary uses a different part of the support code.

pub mod proxy;
pub mod redis;
pub mod server;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub use server::{Delivery, Keepalive, Reply, TestServer};

/// A scratch directory, removed when dropped.
pub struct Scratch {
    pub path: PathBuf,
}

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "futurepool-test-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        Scratch { path }
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Writes a list file and returns its path.
    pub fn list(&self, lines: &[String]) -> PathBuf {
        let path = self.join("list.txt");
        fs::write(&path, lines.join("\n") + "\n").unwrap();
        path
    }

    /// The output directory `out` inside the scratch directory.
    pub fn out(&self) -> PathBuf {
        self.join("out")
    }

    /// Sorted names in the output directory (empty if it does not exist).
    pub fn out_files(&self) -> Vec<String> {
        files_in(&self.out())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

pub fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// What a run of the binary did.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(output: Output) -> Run {
        Run {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_futurepool")
}

/// Proxy variables are removed from every run's environment, so a test sees only the proxies
/// it sets.
const PROXY_VARIABLES: [&str; 8] = [
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
];

/// `futurepool fetch` with a clean proxy environment.
pub fn command() -> Command {
    let mut command = Command::new(binary());
    command.arg("fetch");
    for name in PROXY_VARIABLES {
        command.env_remove(name);
    }
    command
}

/// `futurepool fetch ARGS` with `stdin` piped in.
pub fn fetch_with_stdin(args: &[&str], stdin: &str) -> Run {
    fetch_with_env(args, stdin, &[])
}

/// `futurepool fetch ARGS` with `stdin` piped in and `env` set.
pub fn fetch_with_env(args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Run {
    let mut command = command();
    command.envs(env.iter().copied());
    let mut child = command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    wait_bounded(child).into()
}

/// `futurepool fetch ARGS` with no input.
pub fn fetch(args: &[&str]) -> Run {
    fetch_with_stdin(args, "")
}

/// `futurepool fetch ARGS` run in the directory `cwd`, with no input.
pub fn fetch_in(cwd: &Path, args: &[&str]) -> Run {
    let child = command()
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_bounded(child).into()
}

/// Runs `futurepool fetch LIST -o OUT --report REPORT ARGS` in `scratch`; returns the run and the
/// report rows.
pub fn fetch_list(
    scratch: &Scratch,
    lines: &[String],
    args: &[&str],
) -> (Run, Vec<serde_json::Value>) {
    fetch_list_env(scratch, lines, args, &[])
}

/// [`fetch_list`] with `env` set.
pub fn fetch_list_env(
    scratch: &Scratch,
    lines: &[String],
    args: &[&str],
    env: &[(&str, &str)],
) -> (Run, Vec<serde_json::Value>) {
    let list = scratch.list(lines);
    let report = scratch.join("report.jsonl");
    let _ = fs::remove_file(&report);
    let mut all = vec![
        list.to_str().unwrap(),
        "-o",
        scratch.out().to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
    ]
    .into_iter()
    .map(str::to_owned)
    .collect::<Vec<_>>();
    all.extend(args.iter().map(|a| a.to_string()));
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    let run = fetch_with_env(&refs, "", env);
    let rows = read_report(&report);
    (run, rows)
}

pub fn read_report(path: &Path) -> Vec<serde_json::Value> {
    fs::read_to_string(path)
        .map(|text| {
            text.lines()
                .map(|line| serde_json::from_str(line).unwrap())
                .collect()
        })
        .unwrap_or_default()
}

/// Waits for the child, killing it (and failing) if it hangs: a guard against a broken build
/// hanging the suite, far above any expected duration.
pub fn wait_bounded(child: Child) -> Output {
    let pid = child.id();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let output = child.wait_with_output().unwrap();
        let _ = done_tx.send(());
        output
    });
    if done_rx.recv_timeout(Duration::from_secs(120)).is_err() {
        // SAFETY: plain kill(2) of our own child's pid.
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGKILL);
        }
        panic!("futurepool did not finish within two minutes");
    }
    waiter.join().unwrap()
}

/// Polls `condition` until true, failing after a minute.
pub fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let give_up = Instant::now() + Duration::from_secs(60);
    while !condition() {
        assert!(Instant::now() < give_up, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The row of the report for `line`.
pub fn row(rows: &[serde_json::Value], line: u64) -> &serde_json::Value {
    rows.iter()
        .find(|r| r["line"] == line)
        .unwrap_or_else(|| panic!("no report row for line {line}: {rows:#?}"))
}

/// The error message of a row, or "" for success.
pub fn error_of(row: &serde_json::Value) -> &str {
    row["error"].as_str().unwrap_or("")
}
