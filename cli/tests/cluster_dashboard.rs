//! `futurepool cluster dashboard` against a private `redis-server`, a worker and a client in this
//! process (skipped, saying so, without `redis-server`):
//!
//! - `/metrics` parses as Prometheus text and agrees with `futurepool cluster status`, running
//!   tasks' progress included;
//! - in a real headless Chromium (skipped, saying so, without `/usr/bin/chromium`), the page
//!   shows a running pool's completions climbing, a task's progress and a dead letter with its
//!   reason, and a screenshot is saved as `target/tmp/dashboard.png`;
//! - `ClusterPool::stats` gives the figures `cluster status` shows.

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use futurepool::cluster::{self, ClusterPool};
use support::redis::Redis;

const POOL: &str = "watch";
const LIMIT: Duration = Duration::from_secs(120);

fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}
futurepool::register!(nap);

// ---- The setting: a broker, a worker, a client, a dashboard ---------------------------------

/// The dashboard process; killed when dropped.
struct Dashboard {
    child: Child,
    base: String,
}

impl Dashboard {
    fn start(url: &str) -> Dashboard {
        let mut child = Command::new(env!("CARGO_BIN_EXE_futurepool"))
            .args([
                "cluster",
                "dashboard",
                url,
                "--listen",
                "127.0.0.1:0",
                "--pool",
                POOL,
            ])
            .stdout(Stdio::piped())
            .spawn()
            .expect("run futurepool cluster dashboard");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the dashboard prints its address");
        let base = line
            .trim()
            .strip_prefix("dashboard at ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .trim_end_matches('/')
            .to_string();
        Dashboard { child, base }
    }

    /// `GET path` over a raw socket: (status, body).
    fn get(&self, path: &str) -> (u16, String) {
        let address = self.base.strip_prefix("http://").unwrap();
        let mut stream = TcpStream::connect(address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        write!(stream, "GET {path} HTTP/1.1\r\nHost: {address}\r\n\r\n").unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let (head, body) = response.split_once("\r\n\r\n").expect("a head and a body");
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        (status, body.to_string())
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A worker of pool `POOL` in this process, running until the test process ends.
fn start_worker(url: &str) {
    let url = url.to_string();
    std::thread::spawn(move || {
        let options = cluster::ServeOptions::default()
            .pool(POOL)
            .threads(2)
            .handle_signals(false);
        let _ = cluster::serve(&url, options);
    });
}

/// A malformed queue entry (another program's), which the worker dead-letters with a reason.
fn add_dead_letter(redis: &Redis) {
    let queue = format!("{{futurepool:{POOL}}}:queue");
    redis.cli(&["XADD", &queue, "*", "id", "job-7", "arg", ""]);
}

/// The progress reports of running tasks, as the cluster stores them (`{futurepool:NAME}:progress`,
/// task id → `"DONE TOTAL"`), written here directly: the figures read from it are under test, not
/// the writer.
fn report_progress(redis: &Redis, reports: &[(&str, &str)]) {
    let key = format!("{{futurepool:{POOL}}}:progress");
    for (task, value) in reports {
        redis.cli(&["HSET", &key, task, value]);
    }
}

fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < LIMIT, "{what}: not within {LIMIT:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn status(url: &str) -> cluster::Status {
    cluster::status(url, POOL).expect("status")
}

// ---- A small Prometheus text-format parser ------------------------------------------------

#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the text exposition format strictly enough to catch what a real scraper rejects:
/// every sample's family declared by a `# TYPE` line first, metric and label names of the
/// allowed characters, label values quoted with only `\\`, `\"` and `\n` escapes, values floats.
fn parse_prometheus(text: &str) -> Vec<Sample> {
    fn is_name(s: &str, colon: bool) -> bool {
        let mut chars = s.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || (colon && c == ':'))
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':'))
    }
    let mut typed = BTreeMap::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            assert!(is_name(name, true), "bad family name {name:?}");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{kind}"
            );
            assert!(
                typed.insert(name.to_string(), kind.to_string()).is_none(),
                "{name} typed twice"
            );
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (name, rest) = match line.find(['{', ' ']) {
            Some(at) => line.split_at(at),
            None => panic!("no value: {line:?}"),
        };
        assert!(is_name(name, true), "bad metric name {name:?}");
        assert!(typed.contains_key(name), "{name} has no # TYPE before it");
        let chars: Vec<char> = rest.chars().collect();
        let mut labels = BTreeMap::new();
        let mut at = 0;
        if chars.first() == Some(&'{') {
            at = 1;
            while chars[at] != '}' {
                let name_start = at;
                while chars[at] != '=' {
                    at += 1;
                }
                let label: String = chars[name_start..at].iter().collect();
                assert!(
                    is_name(&label, false),
                    "bad label name {label:?} in {line:?}"
                );
                at += 1;
                assert_eq!(chars[at], '"', "label values are quoted: {line:?}");
                at += 1;
                let mut value = String::new();
                loop {
                    match chars[at] {
                        '\\' => {
                            value.push(match chars[at + 1] {
                                '\\' => '\\',
                                '"' => '"',
                                'n' => '\n',
                                other => panic!("bad escape \\{other} in {line:?}"),
                            });
                            at += 2;
                        }
                        '"' => break,
                        c => {
                            value.push(c);
                            at += 1;
                        }
                    }
                }
                at += 1;
                if chars[at] == ',' {
                    at += 1;
                }
                labels.insert(label, value);
            }
            at += 1;
        }
        let rest: String = chars[at..].iter().collect();
        let mut fields = rest.split_whitespace();
        let value: f64 = fields
            .next()
            .expect("a value")
            .parse()
            .unwrap_or_else(|e| panic!("bad value in {line:?}: {e}"));
        samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    samples
}

/// The one sample of `name` for pool `POOL` (and `worker`, if given).
fn value(samples: &[Sample], name: &str, worker: Option<&str>) -> f64 {
    let found: Vec<&Sample> = samples
        .iter()
        .filter(|s| {
            s.name == name
                && s.labels.get("pool").map(String::as_str) == Some(POOL)
                && s.labels.get("worker").map(String::as_str) == worker
        })
        .collect();
    assert_eq!(found.len(), 1, "{name} {worker:?}: {found:?}");
    found[0].value
}

/// `futurepool cluster status URL --pool POOL`'s report, as text.
fn status_text(url: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_futurepool"))
        .args(["cluster", "status", url, "--pool", POOL])
        .output()
        .expect("run futurepool cluster status");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The number after `label` on the report's line that starts with it (`label` may also name a
/// figure inside the line, like `published`).
fn figure(text: &str, line_start: &str, label: &str) -> f64 {
    let line = text
        .lines()
        .find(|l| l.starts_with(line_start))
        .unwrap_or_else(|| panic!("no {line_start:?} line in\n{text}"));
    let after = &line[line
        .find(label)
        .unwrap_or_else(|| panic!("{label:?} in {line:?}"))
        + label.len()..];
    let number: String = after
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    number
        .parse()
        .unwrap_or_else(|e| panic!("{label:?} in {line:?}: {e}"))
}

// ---- The tests ------------------------------------------------------------------------------

/// Runs `body` on its own thread and fails the test if it has not returned within `limit`: a
/// hang (a dashboard that never answers, a browser that never exits) is a failure naming it.
fn within(limit: Duration, what: &str, body: impl FnOnce() + Send + 'static) {
    let (done, finished) = mpsc::channel();
    let body = std::thread::spawn(move || {
        body();
        let _ = done.send(());
    });
    match finished.recv_timeout(limit) {
        Ok(()) => body.join().unwrap(),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            std::panic::resume_unwind(body.join().unwrap_err())
        }
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("hang: {what} did not finish within {limit:?}")
        }
    }
}

#[test]
fn metrics_parse_as_prometheus_text_and_agree_with_cluster_status() {
    within(
        Duration::from_secs(300),
        "metrics_parse_as_prometheus_text_and_agree_with_cluster_status",
        || {
            let Some(redis) = Redis::start_or_skip() else {
                return;
            };
            let url = redis.url();
            start_worker(&url);
            let pool = ClusterPool::builder(&url).pool(POOL).build().unwrap();
            let tasks: Vec<_> = (0..12).map(|_| pool.submit(nap, 5)).collect();
            for task in &tasks {
                assert_eq!(task.result_timeout(LIMIT), Ok(5));
            }
            add_dead_letter(&redis);
            wait_until(
                "the malformed entry is dead-lettered, the queue idle",
                || {
                    let s = status(&url);
                    s.dead_lettered == 1 && s.queued == 0 && s.in_flight == 0
                },
            );
            report_progress(
                &redis,
                &[
                    ("task-b", "1 4"),
                    ("task-a", "3 4"),
                    ("odd", "three of four"),
                ],
            );
            let dashboard = Dashboard::start(&url);
            let (code, text) = dashboard.get("/metrics");
            assert_eq!(code, 200);
            let samples = parse_prometheus(&text);
            let report = status_text(&url);

            let up: Vec<_> = samples
                .iter()
                .filter(|s| s.name == "futurepool_broker_up")
                .collect();
            assert!(up.len() == 1 && up[0].value == 1.0, "{text}");
            let checks = [
                ("futurepool_queued", "queued", "queued"),
                ("futurepool_in_flight", "in flight", "in flight"),
                ("futurepool_workers", "workers", "workers"),
                ("futurepool_dead_lettered", "dead-lettered", "dead-lettered"),
                ("futurepool_submitted_total", "counters", "submitted"),
                ("futurepool_published_total", "counters", "published"),
                (
                    "futurepool_duplicates_total",
                    "counters",
                    "duplicates discarded",
                ),
                ("futurepool_released_total", "counters", "released"),
                ("futurepool_max_deliveries", "settings", "max deliveries"),
                ("futurepool_malformed_total", "dead-lettered", "("),
            ];
            for (metric, line, label) in checks {
                assert_eq!(
                    value(&samples, metric, None),
                    figure(&report, line, label),
                    "{metric} disagrees with `cluster status`:\n{report}\n{text}"
                );
            }
            assert_eq!(value(&samples, "futurepool_published_total", None), 12.0);
            assert_eq!(value(&samples, "futurepool_dead_lettered", None), 1.0);
            // Each worker's tasks in flight, as the report's worker lines show them.
            let s = status(&url);
            assert_eq!(s.workers.len(), 1, "{report}");
            for worker in &s.workers {
                assert_eq!(
                    value(&samples, "futurepool_worker_in_flight", Some(&worker.name)),
                    figure(&report, &format!("  {}", worker.name), &worker.name),
                    "{report}"
                );
            }
            // The running tasks' progress, as the report lists it (the malformed entry skipped),
            // one series per task; and the chained gauge.
            let progress: Vec<_> = s
                .progress
                .iter()
                .map(|p| (p.task_id.as_str(), p.done, p.total))
                .collect();
            assert_eq!(
                progress,
                [("task-a", 3, 4), ("task-b", 1, 4)],
                "sorted by id"
            );
            assert!(
                report.contains("progress      2 running tasks reported"),
                "{report}"
            );
            for p in &s.progress {
                let series: Vec<_> = samples
                    .iter()
                    .filter(|x| {
                        x.name == "futurepool_task_progress_ratio"
                            && x.labels.get("pool").map(String::as_str) == Some(POOL)
                            && x.labels.get("task") == Some(&p.task_id)
                    })
                    .collect();
                assert_eq!(series.len(), 1, "{text}");
                assert_eq!(series[0].value, p.ratio(), "{text}");
                let line = report
                    .lines()
                    .find(|l| l.trim_start().starts_with(&p.task_id))
                    .unwrap_or_else(|| panic!("{} not in\n{report}", p.task_id));
                assert!(
                    line.contains(&format!("{} of {}", p.done, p.total))
                        && line.contains(&format!("{:.1}%", 100.0 * p.ratio())),
                    "{line}"
                );
            }
            assert_eq!(
                samples
                    .iter()
                    .filter(|x| x.name == "futurepool_task_progress_ratio")
                    .count(),
                2,
                "{text}"
            );
            assert_eq!(
                value(&samples, "futurepool_chained", None),
                s.chained as f64
            );
            // And the library's Stats say the same.
            let stats = pool.stats().unwrap();
            assert_eq!(
                (
                    stats.queued,
                    stats.running,
                    stats.completed,
                    stats.failed,
                    stats.workers
                ),
                (0, 0, 12, 1, 1),
                "{stats:?}"
            );
        },
    );
}

/// Runs headless Chromium on `url` with `extra` arguments; its stdout.
fn chromium(chromium: &Path, profile: &Path, extra: &[&str], url: &str) -> String {
    let out = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            // Let the page's script fetch and render before the DOM is dumped.
            "--virtual-time-budget=4000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .stderr(Stdio::null())
        .output()
        .expect("run chromium");
    assert!(out.status.success(), "chromium failed: {:?}", out.status);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The number the page shows for `figure` of pool `POOL`.
fn shown(dom: &str, figure: &str) -> u64 {
    let pool = dom
        .find(&format!("data-pool=\"{POOL}\""))
        .unwrap_or_else(|| panic!("pool {POOL} not on the page:\n{dom}"));
    let dom = &dom[pool..];
    let at = dom
        .find(&format!("data-figure=\"{figure}\""))
        .unwrap_or_else(|| panic!("figure {figure} not on the page:\n{dom}"));
    let value = &dom[at..];
    let value = &value[value.find("class=\"value\">").unwrap() + "class=\"value\">".len()..];
    value[..value.find('<').unwrap()]
        .parse()
        .unwrap_or_else(|e| panic!("{figure}: {e}"))
}

#[test]
fn the_page_in_headless_chromium_shows_a_running_pool_and_a_dead_letter() {
    within(
        Duration::from_secs(300),
        "the_page_in_headless_chromium_shows_a_running_pool_and_a_dead_letter",
        || {
            let browser = PathBuf::from("/usr/bin/chromium");
            if !browser.exists() {
                eprintln!(
            "skipped: /usr/bin/chromium is not installed (apt-get install -y chromium); the \
             dashboard's browser test did not run"
        );
                return;
            }
            let Some(redis) = Redis::start_or_skip() else {
                return;
            };
            let url = redis.url();
            start_worker(&url);
            let pool = CancelOnDrop(ClusterPool::builder(&url).pool(POOL).build().unwrap());
            add_dead_letter(&redis);
            // Minutes of work for two worker threads, of uneven lengths: it is still running while the
            // page is read (the rest is cancelled at the end).
            let tasks: Vec<_> = (0..2000u64)
                .map(|i| pool.submit(nap, 20 + (i * 37) % 160))
                .collect();
            wait_until("work is running and the dead letter is in", || {
                let s = status(&url);
                s.published >= 2 && s.dead_lettered == 1
            });
            // Sorted by id on the page: the first row is render-frame-0042's.
            report_progress(
                &redis,
                &[
                    ("transcode-clip-17", "120 480"),
                    ("render-frame-0042", "3 8"),
                    ("render-frame-0043", "7 8"),
                ],
            );
            let dashboard = Dashboard::start(&url);
            let page = format!("{}/", dashboard.base);
            let profile = tempdir("chromium-profile");

            // More history for a screenshot worth showing (how docs/dashboard.png was taken).
            if let Some(seconds) = std::env::var("DASHBOARD_SCREENSHOT_HISTORY_S")
                .ok()
                .and_then(|s| s.parse().ok())
            {
                std::thread::sleep(Duration::from_secs(seconds));
            }
            let first = chromium(&browser, &profile, &["--dump-dom"], &page);
            let before = shown(&first, "published");
            std::thread::sleep(Duration::from_secs(3));
            let second = chromium(&browser, &profile, &["--dump-dom"], &page);
            let after = shown(&second, "published");
            assert!(
                after > before,
                "completions did not climb on the page: {before} then {after}"
            );
            // Within one page load, too, the page polled and redrew itself more than once.
            let renders: u32 = second
                .split("data-renders=\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no data-renders on <body>:\n{second}"));
            assert!(renders >= 2, "the page redrew {renders} times in one load");
            assert!(
                shown(&second, "in_flight") >= 1,
                "tasks in flight are shown"
            );
            assert_eq!(shown(&second, "workers"), 1);
            assert_eq!(shown(&second, "dead_lettered"), 1);
            assert!(
                second.contains("class=\"dead-letter\""),
                "the dead letter's row:\n{second}"
            );
            assert!(
                second.contains("malformed entry: it has no `fn` field"),
                "the dead letter's reason:\n{second}"
            );
            assert!(second.contains("job-7"), "the dead letter's task id");
            assert_eq!(shown(&second, "chained"), 0);
            let row = second
                .split("class=\"task-progress\"")
                .nth(1)
                .and_then(|rest| rest.split("</tr>").next())
                .unwrap_or_else(|| panic!("no progress row:\n{second}"));
            assert!(
                row.contains("render-frame-0042")
                    && row.contains("3 / 8")
                    && row.contains("37.5%")
                    && row.contains("<progress"),
                "the task's progress row: {row}"
            );
            assert!(
                second.contains("<polyline"),
                "the throughput chart is drawn"
            );

            let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
            let shot = target.join("dashboard.png");
            let _ = std::fs::remove_file(&shot);
            chromium(
                &browser,
                &profile,
                &[
                    &format!("--screenshot={}", shot.display()),
                    "--window-size=1280,720",
                ],
                &page,
            );
            let png = std::fs::read(&shot).expect("the screenshot was written");
            assert!(png.starts_with(b"\x89PNG"), "a PNG");
            eprintln!("screenshot: {}", shot.display());
            let _ = std::fs::remove_dir_all(&profile);
            drop(tasks);
        },
    );
}

/// A pool that, when dropped (also by a failing assertion), cancels what is still queued instead
/// of waiting minutes for it.
struct CancelOnDrop(ClusterPool);

impl std::ops::Deref for CancelOnDrop {
    type Target = ClusterPool;
    fn deref(&self) -> &ClusterPool {
        &self.0
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.shutdown(
            futurepool::Shutdown::default()
                .cancel_pending(true)
                .wait(false),
        );
    }
}

/// A fresh directory under the target's temporary directory.
fn tempdir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "{name}-{}-{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Sends `bytes` raw and returns the status line's code (0 if the server closed without one).
fn raw(dashboard: &Dashboard, bytes: &[u8]) -> u16 {
    let address = dashboard.base.strip_prefix("http://").unwrap();
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let _ = stream.write_all(bytes);
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response);
    text.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[test]
fn hostile_requests_get_errors_and_the_dashboard_keeps_serving() {
    within(
        Duration::from_secs(300),
        "hostile_requests_get_errors_and_the_dashboard_keeps_serving",
        || {
            let Some(redis) = Redis::start_or_skip() else {
                return;
            };
            let url = redis.url();
            start_worker(&url);
            wait_until("the worker created the pool", || {
                cluster::status(&url, POOL).is_ok()
            });
            let dashboard = Dashboard::start(&url);
            let address = dashboard.base.strip_prefix("http://").unwrap().to_string();
            assert_eq!(raw(&dashboard, b"\x00\x01garbage\r\n\r\n"), 400);
            let huge = format!(
                "GET / HTTP/1.1\r\nHost: {address}\r\nX: {}\r\n\r\n",
                "a".repeat(64 * 1024)
            );
            assert_eq!(raw(&dashboard, huge.as_bytes()), 431);
            let post = format!(
                "POST /api/status HTTP/1.1\r\nHost: {address}\r\nContent-Length: 0\r\n\r\n"
            );
            assert_eq!(raw(&dashboard, post.as_bytes()), 405, "read-only");
            let rebinding = "GET /api/status HTTP/1.1\r\nHost: attacker.example\r\n\r\n";
            assert_eq!(
                raw(&dashboard, rebinding.as_bytes()),
                403,
                "DNS-rebinding guard"
            );
            // Connections that never finish their request hold no thread for good: the server answers
            // the next ones.
            let idle: Vec<TcpStream> = (0..20)
                .map(|_| TcpStream::connect(&address).unwrap())
                .collect();
            let (code, body) = dashboard.get("/api/status");
            assert_eq!(code, 200);
            assert!(body.contains(&format!("\"name\":\"{POOL}\"")), "{body}");
            drop(idle);
            let (code, _) = dashboard.get("/");
            assert_eq!(code, 200);
        },
    );
}
