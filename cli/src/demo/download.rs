//! Section 1, the classic I/O-bound example: download N pages and save each as `NAME.html`,
//! serially, on the thread pool and on the process pool.
//!
//! Every page goes through `futurepool fetch`'s own code ([`fetch::run`]): serially with one job,
//! on the thread pool with `workers` jobs, and on the process pool as one single-page fetch per
//! task in the worker processes — so the demo measures the tool people use, not a toy.
//!
//! Each page takes `latency` to arrive and almost no CPU, so a pool of `w` workers overlaps `w`
//! waits: the best any pool can do is N × latency / w, the physical limit printed beside the
//! measurements.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futurepool::{ProcessPool, Shutdown};
use serde::{Deserialize, Serialize};

use super::server::{page_body, PageServer};
use super::{set_speedups, Mode, Run};
use crate::fetch::{self, DownloadSettings, FetchOptions, Interrupt, Timeouts};

/// What to download, and where to.
pub struct IoPlan {
    pub pages: usize,
    pub latency: Duration,
    pub workers: usize,
    pub output: PathBuf,
}

/// The I/O section's measurements.
#[derive(Debug, Serialize)]
pub struct IoSection {
    /// Pages downloaded by each run.
    pub pages: usize,
    /// The server's delay before answering each page, in milliseconds.
    pub latency_ms: u64,
    /// Workers of each pool.
    pub workers: usize,
    /// The embedded server's address.
    pub server: String,
    /// Requests the server answered over all runs (three per page when every run succeeded).
    pub requests_served: u64,
    /// The directory holding one subdirectory of pages per run.
    pub output_dir: PathBuf,
    /// N × latency / workers: no pool of this size can do better.
    pub physical_limit_s: f64,
    /// Serial, thread pool, process pool.
    pub runs: Vec<IoRun>,
}

impl IoSection {
    /// Every run saved every page, complete.
    pub fn as_expected(&self) -> bool {
        self.runs.iter().all(|r| {
            r.run.succeeded == self.pages && r.run.failed == 0 && r.files_verified == self.pages
        })
    }
}

/// One run of the download.
#[derive(Debug, Serialize)]
pub struct IoRun {
    /// How it ran and how long it took.
    #[serde(flatten)]
    pub run: Run,
    /// Where this run saved its pages.
    pub dir: PathBuf,
    /// Pages found on disk afterwards with exactly the content the server sent.
    pub files_verified: usize,
}

/// One page to fetch: its name, where from and where to. Crosses to worker processes, hence
/// serde.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PageJob {
    pub name: String,
    pub url: String,
    pub dir: PathBuf,
}

/// Runs the three downloads against a fresh embedded server.
pub fn run(plan: &IoPlan) -> Result<IoSection, String> {
    let server = PageServer::start(plan.pages, plan.latency)
        .map_err(|e| format!("cannot start the loopback page server: {e}"))?;
    let names = server.names();
    let mut runs = Vec::new();
    for mode in [Mode::Serial, Mode::ThreadPool, Mode::ProcessPool] {
        let dir = plan.output.join(match mode {
            Mode::Serial => "serial",
            Mode::ThreadPool => "thread-pool",
            Mode::ProcessPool => "process-pool",
        });
        fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let jobs: Vec<PageJob> = names
            .iter()
            .map(|name| PageJob {
                name: name.clone(),
                url: server.url(name),
                dir: dir.clone(),
            })
            .collect();
        let workers = match mode {
            Mode::Serial => 1,
            _ => plan.workers,
        };
        let started = Instant::now();
        let outcomes = match mode {
            // `futurepool fetch -j 1`, then `futurepool fetch -j WORKERS`.
            Mode::Serial | Mode::ThreadPool => fetch_pages(&jobs, &dir, workers),
            Mode::ProcessPool => on_process_pool(&jobs, workers)?,
        };
        let wall_s = started.elapsed().as_secs_f64();
        runs.push(IoRun {
            run: summarize(mode, workers, wall_s, &outcomes),
            files_verified: verify(&dir, &names),
            dir,
        });
    }
    let mut plain: Vec<Run> = runs.iter().map(|r| r.run.clone()).collect();
    set_speedups(&mut plain);
    for (run, with_speedup) in runs.iter_mut().zip(plain) {
        run.run.speedup = with_speedup.speedup;
    }
    Ok(IoSection {
        pages: plan.pages,
        latency_ms: plan.latency.as_millis() as u64,
        workers: plan.workers,
        server: format!("http://{}/", server.addr()),
        requests_served: server.requests_served(),
        output_dir: plan.output.clone(),
        physical_limit_s: plan.pages as f64 * plan.latency.as_secs_f64() / plan.workers as f64,
        runs,
    })
}

/// Fetches `jobs` into `dir` exactly as `futurepool fetch -j WORKERS` does: the list is parsed and
/// validated by fetch's own parser, then run on its thread pool.
fn fetch_pages(jobs: &[PageJob], dir: &Path, workers: usize) -> Vec<Result<u64, String>> {
    let list: String = jobs
        .iter()
        .map(|job| format!("{} {}\n", job.name, job.url))
        .collect();
    let entries = match fetch::parse_list(list.as_bytes()) {
        Ok(entries) => entries,
        Err(errors) => {
            let message = format!("the demo's page list was refused: {}", errors[0]);
            return jobs.iter().map(|_| Err(message.clone())).collect();
        }
    };
    let options = FetchOptions {
        dir: dir.to_path_buf(),
        jobs: workers,
        per_host: None,
        skip_existing: false,
        progress: false,
        update: false,
        // Each page's outcome is measured, so every row is kept.
        keep_rows: true,
        download: download_settings(workers),
    };
    let interrupt = Arc::new(Interrupt::default());
    let summary = fetch::run(&options, fetch::plan(entries), &interrupt);
    summary
        .rows
        .expect("the demo keeps every row")
        .into_iter()
        .map(|row| match row.error {
            None => Ok(row.bytes),
            Some(error) => Err(format!("{}: {error}", row.url)),
        })
        .collect()
}

/// `futurepool fetch`'s defaults, with time-outs short enough that a broken demo says so quickly.
fn download_settings(workers: usize) -> DownloadSettings {
    DownloadSettings {
        timeouts: Timeouts {
            connect: Duration::from_secs(5),
            stall: Duration::from_secs(10),
            total: Duration::from_secs(30),
        },
        retries: 2,
        backoff: Duration::from_millis(100),
        max_size: 16 << 20,
        headers: Vec::new(),
        idle_connections: workers,
        ..DownloadSettings::default()
    }
}

/// The same pages on worker processes: each task crosses a pipe, and the worker fetches and saves
/// its page with fetch's code, sending back only the byte count.
fn on_process_pool(jobs: &[PageJob], workers: usize) -> Result<Vec<Result<u64, String>>, String> {
    let pool =
        ProcessPool::new(workers).map_err(|e| format!("cannot start the process pool: {e}"))?;
    let tasks: Vec<_> = jobs
        .iter()
        .cloned()
        .map(|job| pool.submit_fallible(fetch_in_worker, job))
        .collect();
    let outcomes = tasks
        .iter()
        .map(|task| task.result().map_err(|e| e.to_string()))
        .collect();
    pool.shutdown(Shutdown::default());
    Ok(outcomes)
}

/// Runs in a worker process: `futurepool fetch -j 1` for one page.
fn fetch_in_worker(job: PageJob) -> Result<u64, String> {
    let dir = job.dir.clone();
    fetch_pages(&[job], &dir, 1).remove(0)
}
futurepool::register!(fetch_in_worker);

fn summarize(mode: Mode, workers: usize, wall_s: f64, outcomes: &[Result<u64, String>]) -> Run {
    Run {
        mode,
        workers,
        wall_s,
        speedup: 0.0,
        succeeded: outcomes.iter().filter(|o| o.is_ok()).count(),
        failed: outcomes.iter().filter(|o| o.is_err()).count(),
        first_error: outcomes.iter().find_map(|o| o.as_ref().err().cloned()),
    }
}

/// Counts the pages in `dir` whose content is exactly what the server serves.
fn verify(dir: &Path, names: &[String]) -> usize {
    names
        .iter()
        .enumerate()
        .filter(|(index, name)| {
            fs::read_to_string(dir.join(format!("{name}.html")))
                .is_ok_and(|text| text == page_body(*index))
        })
        .count()
}
