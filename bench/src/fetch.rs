//! `futurepool-bench fetch`: `futurepool fetch` against curl, aria2c and the classic Python
//! script, on loopback servers this command starts itself, in one run and one table.
//!
//! Workload 1 (the issue's): 200 pages of 10 KB, each answered after 50 ms, 10 workers; the
//! physical limit is 200 × 0.05 s / 10 = 1.00 s. Workload 2: 5,000 pages of 2 KB from nginx with
//! no added latency, 64 workers: throughput and peak memory. Workload 3: the same 5,000 pages
//! fetched with `--update` into an empty directory, then again unchanged (every page answered
//! 304 from nginx's ETag): the rerun's time against the full download's.
//!
//! Peers that are not installed are reported as such. On Debian:
//! `apt-get install curl aria2 nginx-light python3-requests` (the Python peer falls back to urllib
//! without requests).
//!
//! Every peer runs as a child process; its CPU time and peak RSS come from `wait4`'s rusage, its
//! wall time from the parent's clock. Each figure is the median of `--runs` runs (default 3), and
//! a run only counts if every page arrived whole.

use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::table::{Better, Table, OURS};

/// Entry point: `futurepool-bench fetch [--runs N]`.
pub fn run(args: &[String]) {
    let mut runs = 3;
    let mut json = false;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--runs" => match args.next().and_then(|n| n.parse().ok()) {
                Some(n) if n > 0 => runs = n,
                _ => usage(),
            },
            "--json" => json = true,
            _ => usage(),
        }
    }
    // With --json, standard output carries only the table for `futurepool-bench report`; the
    // human-readable table goes to stderr.
    let say = |text: &str| {
        if json {
            eprint!("{text}");
        } else {
            print!("{text}");
        }
    };
    let scratch = Scratch::new();
    let futurepool = build_futurepool();
    say(&format!(
        "outputs under {}; each figure is the median of {runs} runs\n\n",
        scratch.path.display()
    ));
    let mut table = Table::new(
        "fetch",
        format!(
            "futurepool fetch against curl, aria2c and the classic Python script on loopback \
             servers; median of {runs} runs, CPU and peak memory from wait4"
        ),
    );

    let (pages, latency, jobs) = (200, Duration::from_millis(50), 10);
    let delayed = DelayServer::start(10 * 1024, latency);
    let workload = Workload {
        title: "200 pages × 10 KB, each answered after 50 ms, 10 workers".into(),
        base_url: format!("http://{}", delayed.addr),
        pages,
        page_size: 10 * 1024,
        jobs,
        // Every worker busy for the whole run, each page costing exactly the server's latency.
        physical_limit: Some(latency * pages as u32 / jobs as u32),
    };
    let measured = measure_all(&workload, &futurepool, &scratch, runs);
    say(&render(&workload, &measured));
    add_rows(
        &mut table,
        &workload,
        &measured,
        "wall time",
        "s",
        Better::Lower,
        |m, _| m.wall.as_secs_f64(),
    );
    if let Some(limit) = workload.physical_limit {
        let wall = format!("{}: wall time", workload.title);
        table.push(
            &wall,
            "physical limit",
            limit.as_secs_f64(),
            "s",
            Better::Lower,
        );
    }
    add_rows(
        &mut table,
        &workload,
        &measured,
        "CPU per page",
        "ms",
        Better::Lower,
        |m, w| m.cpu.as_secs_f64() * 1000.0 / w.pages as f64,
    );

    match Nginx::start(&scratch.path.join("nginx"), 5000, 2 * 1024) {
        Ok(nginx) => {
            let workload = Workload {
                title: "5,000 pages × 2 KB from nginx, no added latency, 64 workers".into(),
                base_url: format!("http://{}", nginx.addr),
                pages: 5000,
                page_size: 2 * 1024,
                jobs: 64,
                physical_limit: None,
            };
            let measured = measure_all(&workload, &futurepool, &scratch, runs);
            say(&format!("\n{}", render(&workload, &measured)));
            add_rows(
                &mut table,
                &workload,
                &measured,
                "throughput",
                "pages/s",
                Better::Higher,
                |m, w| w.pages as f64 / m.wall.as_secs_f64(),
            );
            add_rows(
                &mut table,
                &workload,
                &measured,
                "peak memory",
                "MB",
                Better::Lower,
                |m, _| m.max_rss_kib as f64 / 1024.0,
            );
            let name = format!(
                "{}: --update rerun of unchanged pages, wall time",
                workload.title
            );
            match measure_update(&workload, &futurepool, &scratch, runs) {
                Ok((full, rerun)) => {
                    say(&format!(
                        "\nfetch --update, 5,000 unchanged pages: full download {:.3} s, rerun {:.3} s \
                         ({:.1}× faster, {:.1} MB peak)\n",
                        full.wall.as_secs_f64(),
                        rerun.wall.as_secs_f64(),
                        full.wall.as_secs_f64() / rerun.wall.as_secs_f64(),
                        rerun.max_rss_kib as f64 / 1024.0,
                    ));
                    table.push(&name, OURS, rerun.wall.as_secs_f64(), "s", Better::Lower);
                    table.push(
                        &name,
                        "full download (the same command's first run)",
                        full.wall.as_secs_f64(),
                        "s",
                        Better::Lower,
                    );
                }
                Err(why) => {
                    say(&format!("\nfetch --update rerun: {why}\n"));
                    table.push(&name, OURS, 0.0, "s", Better::Lower).note = Some(why);
                }
            }
        }
        Err(why) => say(&format!("\nnginx workload: nginx {why}\n")),
    }
    table.compute_ratios();
    if json {
        println!(
            "{}",
            serde_json::to_string(&table).expect("a table serializes")
        );
    }
}

fn usage() -> ! {
    eprintln!("usage: futurepool-bench fetch [--runs N] [--json]");
    std::process::exit(2);
}

/// One row per peer for `measure` of `workload`; futurepool's row is named [`OURS`] so the table
/// computes every peer's ratio against it, and a peer that did not run keeps its reason as a note.
fn add_rows(
    table: &mut Table,
    workload: &Workload,
    measured: &[(String, Outcome)],
    measure: &str,
    unit: &str,
    better: Better,
    value: impl Fn(&Measurement, &Workload) -> f64,
) {
    let name = format!("{}: {measure}", workload.title);
    for (index, (peer, outcome)) in measured.iter().enumerate() {
        let tool = if index == 0 { OURS } else { peer.as_str() };
        match outcome {
            Outcome::Measured(m) => {
                table.push(&name, tool, value(m, workload), unit, better);
            }
            Outcome::Skipped(why) => {
                table.push(&name, tool, 0.0, unit, better).note = Some(why.clone());
            }
        }
    }
}

/// A temporary directory for lists, outputs and nginx; removed at the end.
///
/// In RAM (`/dev/shm`) when the machine has it: the benchmark measures the downloaders, not the
/// disk (on this machine's ext4 a file creation costs more than a loopback request).
struct Scratch {
    path: PathBuf,
}

impl Scratch {
    fn new() -> Scratch {
        let shm = Path::new("/dev/shm");
        let root = if shm.is_dir() {
            shm.to_owned()
        } else {
            std::env::temp_dir()
        };
        let path = root.join(format!("futurepool-bench-fetch-{}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        Scratch { path }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// Builds the release `futurepool` binary (a no-op when up to date) and returns its path.
fn build_futurepool() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let build = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "futurepool-cli",
            "--bin",
            "futurepool",
        ])
        .current_dir(workspace)
        .output()
        .expect("cargo runs");
    assert!(
        build.status.success(),
        "building the release futurepool binary failed:\n{}",
        String::from_utf8_lossy(&build.stderr)
    );
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"));
    target.join("release").join("futurepool")
}

struct Workload {
    title: String,
    base_url: String,
    pages: usize,
    page_size: usize,
    jobs: usize,
    physical_limit: Option<Duration>,
}

impl Workload {
    fn url(&self, page: usize) -> String {
        format!("{}/p{page}.html", self.base_url)
    }
}

/// Writes a peer's list (in its own format) into the run's directory and returns the command that
/// saves every page into the output directory: `prepare(workload, run_dir, out_dir)`.
type Prepare = Box<dyn Fn(&Workload, &Path, &Path) -> Command>;

/// A downloader under test.
struct Peer {
    name: String,
    /// Why it cannot run, if it cannot.
    missing: Option<String>,
    prepare: Prepare,
}

fn peers(workload: &Workload, futurepool: &Path) -> Vec<Peer> {
    let jobs = workload.jobs;
    let futurepool = futurepool.to_owned();
    let python_script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/fetch.py");
    vec![
        Peer {
            name: format!("futurepool fetch -j {jobs}"),
            missing: None,
            prepare: Box::new(move |w, dir, out| {
                let list = write_list(dir, "names.txt", w, |i, url| format!("p{i} {url}\n"));
                let mut command = Command::new(&futurepool);
                command.arg("fetch").arg(list).arg("-o").arg(out).args([
                    "-q",
                    "-j",
                    &w.jobs.to_string(),
                ]);
                command
            }),
        },
        Peer {
            name: format!("curl --parallel-max {jobs}"),
            missing: missing("curl", &["--version"], "curl"),
            prepare: Box::new(|w, dir, out| {
                let config = write_list(dir, "curl.cfg", w, |i, url| {
                    format!(
                        "url = \"{url}\"\noutput = \"{}/p{i}.html\"\n",
                        out.display()
                    )
                });
                let mut command = Command::new("curl");
                command
                    .args([
                        "--parallel",
                        "--parallel-max",
                        &w.jobs.to_string(),
                        "-s",
                        "-S",
                    ])
                    .arg("--config")
                    .arg(config);
                command
            }),
        },
        Peer {
            name: format!("aria2c -j {jobs}"),
            missing: missing("aria2c", &["--version"], "aria2"),
            prepare: Box::new(|w, dir, out| {
                let input = write_list(dir, "aria2.txt", w, |i, url| {
                    format!("{url}\n  out=p{i}.html\n")
                });
                let mut command = Command::new("aria2c");
                command
                    .args(["-q", "-j", &w.jobs.to_string(), "-d"])
                    .arg(out)
                    .arg("-i")
                    .arg(input);
                command
            }),
        },
        Peer {
            name: format!("Python ThreadPoolExecutor({jobs})"),
            missing: missing("python3", &["--version"], "python3"),
            prepare: Box::new(move |w, dir, out| {
                let list = write_list(dir, "names.txt", w, |i, url| format!("p{i} {url}\n"));
                let mut command = Command::new("python3");
                command
                    .arg(&python_script)
                    .arg(list)
                    .arg(out)
                    .arg(w.jobs.to_string());
                command
            }),
        },
    ]
}

/// `None` if `program` runs, else how to install it (Debian package names).
fn missing(program: &str, probe: &[&str], package: &str) -> Option<String> {
    let runs = Command::new(program)
        .args(probe)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    (!runs).then(|| format!("not installed (apt-get install {package})"))
}

fn write_list(
    dir: &Path,
    name: &str,
    w: &Workload,
    line: impl Fn(usize, &str) -> String,
) -> PathBuf {
    let path = dir.join(name);
    let text: String = (0..w.pages).map(|i| line(i, &w.url(i))).collect();
    fs::write(&path, text).unwrap();
    path
}

/// What one run of one peer cost.
#[derive(Debug, Clone, Copy)]
struct Measurement {
    wall: Duration,
    cpu: Duration,
    max_rss_kib: u64,
}

enum Outcome {
    Measured(Measurement),
    Skipped(String),
}

fn measure_all(
    w: &Workload,
    futurepool: &Path,
    scratch: &Scratch,
    runs: usize,
) -> Vec<(String, Outcome)> {
    let peers = peers(w, futurepool);
    let mut samples: Vec<Vec<Measurement>> = vec![Vec::new(); peers.len()];
    let mut failures: Vec<Option<String>> = vec![None; peers.len()];
    // Interleaved (peer 1, peer 2, …, peer 1, …) so a noisy moment hurts everyone alike.
    for run in 0..runs {
        for (index, peer) in peers.iter().enumerate() {
            if peer.missing.is_some() || failures[index].is_some() {
                continue;
            }
            let dir = scratch.path.join(format!("run-{run}-{index}"));
            let out = dir.join("out");
            fs::create_dir_all(&out).unwrap();
            let mut command = (peer.prepare)(w, &dir, &out);
            command
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .stdin(Stdio::null());
            let measurement = run_measured(command);
            let whole = count_whole_pages(&out, w.page_size);
            if whole == w.pages {
                samples[index].push(measurement);
            } else {
                failures[index] = Some(format!("failed: {whole} of {} pages saved", w.pages));
            }
            let _ = fs::remove_dir_all(&dir);
        }
    }
    peers
        .into_iter()
        .zip(samples.into_iter().zip(failures))
        .map(|(peer, (mut samples, failure))| {
            let outcome = match (peer.missing, failure) {
                (Some(why), _) | (None, Some(why)) => Outcome::Skipped(why),
                (None, None) => {
                    samples.sort_by_key(|m| m.wall);
                    Outcome::Measured(samples[samples.len() / 2])
                }
            };
            (peer.name, outcome)
        })
        .collect()
}

/// `futurepool fetch --update` into an empty directory, then again over the unchanged pages;
/// the medians of both, or why a run did not count (a page missing, or a rerun page that was not
/// answered 304).
fn measure_update(
    w: &Workload,
    futurepool: &Path,
    scratch: &Scratch,
    runs: usize,
) -> Result<(Measurement, Measurement), String> {
    let mut full = Vec::new();
    let mut rerun = Vec::new();
    for run in 0..runs {
        let dir = scratch.path.join(format!("update-{run}"));
        let out = dir.join("out");
        fs::create_dir_all(&out).unwrap();
        let list = write_list(&dir, "names.txt", w, |i, url| format!("p{i} {url}\n"));
        let report = dir.join("report.jsonl");
        let command = || {
            let mut command = Command::new(futurepool);
            command
                .arg("fetch")
                .arg(&list)
                .arg("-o")
                .arg(&out)
                .args(["-q", "--update", "-j", &w.jobs.to_string(), "--report"])
                .arg(&report)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .stdin(Stdio::null());
            command
        };
        full.push(run_measured(command()));
        let whole = count_whole_pages(&out, w.page_size);
        if whole != w.pages {
            return Err(format!("failed: {whole} of {} pages saved", w.pages));
        }
        rerun.push(run_measured(command()));
        let not_modified = fs::read_to_string(&report)
            .unwrap_or_default()
            .lines()
            .filter(|line| line.contains("\"not_modified\":true"))
            .count();
        if not_modified != w.pages {
            return Err(format!(
                "failed: {not_modified} of {} pages not modified on the rerun",
                w.pages
            ));
        }
        let _ = fs::remove_dir_all(&dir);
    }
    let median = |mut samples: Vec<Measurement>| {
        samples.sort_by_key(|m| m.wall);
        samples[samples.len() / 2]
    };
    Ok((median(full), median(rerun)))
}

fn count_whole_pages(out: &Path, size: usize) -> usize {
    fs::read_dir(out)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.metadata().is_ok_and(|m| m.len() == size as u64))
                .count()
        })
        .unwrap_or(0)
}

/// Runs `command` to completion; wall time from here, CPU and peak memory from `wait4`.
fn run_measured(mut command: Command) -> Measurement {
    let started = Instant::now();
    let child: Child = command.spawn().expect("the peer starts");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: all-zero is a valid `rusage` (plain integers and timevals).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our own unwaited child; `status` and `usage` are valid for writes. The
    // `Child` is never waited on afterwards, so the pid is not reaped twice.
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = started.elapsed();
    assert_eq!(
        reaped,
        pid,
        "wait4 failed: {}",
        std::io::Error::last_os_error()
    );
    drop(child);
    let timeval = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Measurement {
        wall,
        cpu: timeval(usage.ru_utime) + timeval(usage.ru_stime),
        max_rss_kib: usage.ru_maxrss as u64,
    }
}

fn render(w: &Workload, table: &[(String, Outcome)]) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "fetch: {}", w.title);
    if let Some(limit) = w.physical_limit {
        let _ = writeln!(text, "physical limit: {:.2} s", limit.as_secs_f64());
    }
    let _ = writeln!(
        text,
        "{:<34} {:>8} {:>9} {:>9} {:>12} {:>8} {:>14}",
        "peer", "wall s", "pages/s", "÷ limit", "CPU ms/page", "peak MB", "futurepool ×"
    );
    let ours = match table.first() {
        Some((_, Outcome::Measured(m))) => Some(*m),
        _ => None,
    };
    for (name, outcome) in table {
        match outcome {
            Outcome::Measured(m) => {
                let wall = m.wall.as_secs_f64();
                let limit = w
                    .physical_limit
                    .map_or("-".to_owned(), |l| format!("{:.3}", wall / l.as_secs_f64()));
                let speedup = ours.map_or("-".to_owned(), |o| {
                    format!("{:.2}", wall / o.wall.as_secs_f64())
                });
                let _ = writeln!(
                    text,
                    "{:<34} {:>8.3} {:>9.0} {:>9} {:>12.3} {:>8.1} {:>14}",
                    name,
                    wall,
                    w.pages as f64 / wall,
                    limit,
                    m.cpu.as_secs_f64() * 1000.0 / w.pages as f64,
                    m.max_rss_kib as f64 / 1024.0,
                    speedup,
                );
            }
            Outcome::Skipped(why) => {
                let _ = writeln!(text, "{name:<34} {why}");
            }
        }
    }
    let _ = writeln!(
        text,
        "(median of the runs; \"futurepool ×\" = peer wall time ÷ futurepool's: above 1 means futurepool is faster)"
    );
    text
}

/// Serves every GET with the same page after a fixed delay, keep-alive, one thread per
/// connection (peers open at most a few dozen).
struct DelayServer {
    addr: SocketAddr,
}

impl DelayServer {
    fn start(page_size: usize, delay: Duration) -> DelayServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {page_size}\r\n\r\n"
        )
        .into_bytes();
        response.extend(vec![b'x'; page_size]);
        let response: &'static [u8] = Box::leak(response.into_boxed_slice());
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                thread::spawn(move || serve_delayed(stream, response, delay));
            }
        });
        DelayServer { addr }
    }
}

fn serve_delayed(stream: TcpStream, response: &[u8], delay: Duration) {
    let _ = stream.set_nodelay(true);
    let mut writer = match stream.try_clone() {
        Ok(writer) => writer,
        Err(_) => return,
    };
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        // Read one request head; no request here has a body.
        let mut saw_request = false;
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) if line == "\r\n" || line == "\n" => break,
                Ok(_) => saw_request = true,
            }
        }
        if !saw_request {
            continue;
        }
        thread::sleep(delay);
        if writer.write_all(response).is_err() {
            return;
        }
    }
}

/// A private nginx (Debian's nginx-light) serving `pages` files of `size` bytes from a temp dir,
/// on a free loopback port; killed on drop.
struct Nginx {
    addr: SocketAddr,
    child: Child,
}

impl Nginx {
    fn start(dir: &Path, pages: usize, size: usize) -> Result<Nginx, String> {
        if let Some(why) = missing("nginx", &["-v"], "nginx-light") {
            return Err(why);
        }
        let www = dir.join("www");
        fs::create_dir_all(&www).unwrap();
        fs::create_dir_all(dir.join("tmp")).unwrap();
        let page = vec![b'x'; size];
        for i in 0..pages {
            fs::write(www.join(format!("p{i}.html")), &page).unwrap();
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let d = dir.display();
        let config = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
             error_log {d}/error.log error;\nevents {{ worker_connections 4096; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/tmp;\n  proxy_temp_path {d}/tmp;\n\
             keepalive_requests 1000000;\n  default_type text/html;\n\
             server {{ listen {addr}; root {www}; }}\n}}\n",
            www = www.display()
        );
        let config_path = dir.join("nginx.conf");
        fs::write(&config_path, config).unwrap();
        let child = Command::new("nginx")
            .arg("-p")
            .arg(dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("did not start: {e}"))?;
        let mut nginx = Nginx { addr, child };
        let give_up = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(addr).is_err() {
            if Instant::now() > give_up || nginx.child.try_wait().ok().flatten().is_some() {
                let log = fs::read_to_string(dir.join("error.log")).unwrap_or_default();
                return Err(format!("did not start: {}", log.trim()));
            }
            thread::sleep(Duration::from_millis(20));
        }
        Ok(nginx)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
