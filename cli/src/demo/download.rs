//! Section 1, the classic I/O-bound example: download N pages and save each as `NAME.html`,
//! serially, on the thread pool and on the process pool.
//!
//! Each page takes `latency` to arrive and almost no CPU, so a pool of `w` workers overlaps `w`
//! waits: the best any pool can do is N × latency / w, the physical limit printed beside the
//! measurements.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use futurepool::{ProcessPool, Shutdown, ThreadPool};
use serde::{Deserialize, Serialize};

use super::server::{page_body, PageServer};
use super::{set_speedups, Mode, Run};

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

/// One page to fetch: where from and where to. Crosses to worker processes, hence serde.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PageJob {
    pub url: String,
    pub path: PathBuf,
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
                url: server.url(name),
                path: dir.join(format!("{name}.html")),
            })
            .collect();
        let workers = if mode == Mode::Serial {
            1
        } else {
            plan.workers
        };
        let started = Instant::now();
        let outcomes = match mode {
            Mode::Serial => jobs.iter().map(|job| fetch_page(agent(), job)).collect(),
            Mode::ThreadPool => on_thread_pool(&jobs, workers),
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

/// The classic example's loop body, submitted once per page: each worker blocks on its own
/// request, which is exactly what threads are good at.
fn on_thread_pool(jobs: &[PageJob], workers: usize) -> Vec<Result<u64, String>> {
    let pool = ThreadPool::new(workers);
    let tasks: Vec<_> = jobs
        .iter()
        .cloned()
        .map(|job| pool.submit_fallible(move || fetch_page(agent(), &job)))
        .collect();
    let outcomes = tasks
        .iter()
        .map(|task| task.result().map_err(|e| e.to_string()))
        .collect();
    pool.shutdown(Shutdown::default());
    outcomes
}

/// The same on worker processes: each job crosses a pipe, the page is fetched and saved in the
/// worker, only the byte count comes back.
fn on_process_pool(jobs: &[PageJob], workers: usize) -> Result<Vec<Result<u64, String>>, String> {
    let pool =
        ProcessPool::new(workers).map_err(|e| format!("cannot start the process pool: {e}"))?;
    let tasks: Vec<_> = jobs
        .iter()
        .cloned()
        .map(|job| pool.submit_fallible(fetch_page_in_worker, job))
        .collect();
    let outcomes = tasks
        .iter()
        .map(|task| task.result().map_err(|e| e.to_string()))
        .collect();
    pool.shutdown(Shutdown::default());
    Ok(outcomes)
}

#[inline(never)] // one address per function, see `cpu::is_prime`
fn fetch_page_in_worker(job: PageJob) -> Result<u64, String> {
    fetch_page(agent(), &job)
}
futurepool::register!(fetch_page_in_worker);

/// One HTTP client per process, shared by its threads so connections are reused.
fn agent() -> &'static ureq::Agent {
    static AGENT: OnceLock<ureq::Agent> = OnceLock::new();
    AGENT.get_or_init(|| {
        ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into()
    })
}

/// GETs one page and saves it atomically (a temporary file renamed into place), returning its
/// size.
fn fetch_page(agent: &ureq::Agent, job: &PageJob) -> Result<u64, String> {
    let mut response = agent
        .get(&job.url)
        .call()
        .map_err(|e| format!("{}: {e}", job.url))?;
    let body = response
        .body_mut()
        .read_to_vec()
        .map_err(|e| format!("{}: {e}", job.url))?;
    save(&job.path, &body).map_err(|e| format!("cannot save {}: {e}", job.path.display()))?;
    Ok(body.len() as u64)
}

fn save(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(".part");
    let partial = PathBuf::from(partial);
    fs::write(&partial, bytes)?;
    fs::rename(&partial, path)
}

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
