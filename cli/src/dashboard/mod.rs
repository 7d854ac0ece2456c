//! `futurepool cluster dashboard URL`: a live, read-only web page of every pool on a broker, and
//! `/metrics` for Prometheus.
//!
//! - A sampler thread asks the broker for each pool's status (what `cluster status` prints)
//!   every [`INTERVAL`] and keeps the last [`HISTORY`] of samples: the throughput chart is the
//!   rate of published outcomes between samples.
//! - A small HTTP/1.1 server (`http.rs`) answers on a pool of threads: `/` the page, `/app.js`
//!   and `/app.css` its script and style (no external assets, so it works offline and under a
//!   strict Content-Security-Policy), `/api/status` the latest sample and history as JSON (the
//!   page polls it), `/metrics` a fresh status in Prometheus text format (`metrics.rs`).
//! - Read-only by construction: no route changes anything on the broker (the status calls only
//!   look), only `GET` and `HEAD` are served, and only requests whose `Host` is an address or
//!   `localhost` (no DNS rebinding). It listens on loopback unless told otherwise.

mod http;
mod metrics;

use std::collections::{HashMap, VecDeque};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futurepool::cluster::{self, Status};
use futurepool::ThreadPool;
use serde_json::{json, Value};

use self::http::{ReadError, Request, Response};

/// How often the sampler asks the broker.
pub const INTERVAL: Duration = Duration::from_secs(1);
/// How much history the chart shows.
const HISTORY: Duration = Duration::from_secs(10 * 60);
/// At most this many pools are sampled (the first, by name): each costs a status call per
/// interval.
const MAX_POOLS: usize = 64;
/// Connections served at once; more wait in the accept queue.
const SERVER_THREADS: usize = 16;

const PAGE: &str = include_str!("page.html");
const SCRIPT: &str = include_str!("app.js");
const STYLE: &str = include_str!("app.css");

/// One point of a pool's history.
#[derive(Clone, Copy)]
struct Sample {
    /// Milliseconds since the Unix epoch (the dashboard's clock).
    at_ms: u64,
    published: u64,
    submitted: u64,
    queued: u64,
    in_flight: u64,
    dead_lettered: u64,
}

/// What the sampler last saw.
#[derive(Default)]
struct Board {
    /// Each pool's latest status, by name.
    pools: Vec<(String, Status)>,
    /// Why the last sample failed, if it did (the pools above are then older).
    error: Option<String>,
    sampled_at_ms: u64,
    history: HashMap<String, VecDeque<Sample>>,
}

struct Dashboard {
    url: String,
    /// The URL as shown (password hidden).
    shown_url: String,
    /// Only these pools, if given.
    only: Vec<String>,
    board: Mutex<Board>,
}

/// Runs the dashboard until the process is stopped.
pub fn main(url: String, listen: String, only: Vec<String>) -> ExitCode {
    // Fail early, naming the problem, on a bad URL or an unreachable broker.
    if let Err(error) = cluster::pools(&url) {
        eprintln!("futurepool cluster dashboard: {error}");
        return ExitCode::FAILURE;
    }
    let listener = match TcpListener::bind(&listen) {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("futurepool cluster dashboard: cannot listen on {listen}: {error}");
            return ExitCode::FAILURE;
        }
    };
    let address = listener.local_addr().ok();
    if let Some(address) = address {
        if !address.ip().is_loopback() {
            eprintln!(
                "futurepool cluster dashboard: listening on {address}, which is not loopback: \
                 anyone who can reach it sees task ids, worker names and dead-letter reasons"
            );
        }
    }
    let dashboard = Arc::new(Dashboard {
        shown_url: crate::cluster::redact(&url),
        url,
        only,
        board: Mutex::new(Board::default()),
    });
    dashboard.sample();
    let sampler = Arc::clone(&dashboard);
    if let Err(error) = std::thread::Builder::new()
        .name("dashboard-sampler".into())
        .spawn(move || loop {
            std::thread::sleep(INTERVAL);
            sampler.sample();
        })
    {
        eprintln!("futurepool cluster dashboard: cannot start the sampler thread: {error}");
        return ExitCode::FAILURE;
    }
    match address {
        Some(address) => println!("dashboard at http://{}/", shown(address)),
        None => println!("dashboard listening on {listen}"),
    }
    serve(&listener, &dashboard);
    ExitCode::FAILURE
}

/// `127.0.0.1:8080`, or `[::1]:8080`.
fn shown(address: SocketAddr) -> String {
    address.to_string()
}

/// Accepts connections forever, each answered on the server's thread pool.
fn serve(listener: &TcpListener, dashboard: &Arc<Dashboard>) {
    // A bounded queue: a flood of connections waits in the kernel's accept queue, not in memory.
    let pool = ThreadPool::builder()
        .max_workers(SERVER_THREADS)
        .max_queued(4 * SERVER_THREADS)
        .thread_name_prefix("dashboard-http")
        .build();
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                let dashboard = Arc::clone(dashboard);
                pool.submit(move || dashboard.answer(stream));
            }
            Err(error) => {
                // Transient (out of descriptors, a connection reset before accept): note it,
                // back off a moment so a persistent cause does not spin, and go on.
                eprintln!("futurepool cluster dashboard: accept failed: {error}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl Dashboard {
    /// Every pool's status, now.
    fn scrape(&self) -> Result<Vec<(String, Status)>, String> {
        let names = if self.only.is_empty() {
            cluster::pools(&self.url).map_err(|e| e.to_string())?
        } else {
            self.only.clone()
        };
        let mut pools = Vec::new();
        for name in names.into_iter().take(MAX_POOLS) {
            match cluster::status(&self.url, &name) {
                Ok(status) => pools.push((name, status)),
                // Deleted between the listing and the look: not an error of the dashboard's.
                Err(cluster::ClusterError::NoSuchPool(_)) => {}
                Err(error) => return Err(error.to_string()),
            }
        }
        Ok(pools)
    }

    /// Takes one sample into the board.
    fn sample(&self) {
        let scraped = self.scrape();
        let at_ms = now_ms();
        let mut board = self.board.lock().unwrap_or_else(|e| e.into_inner());
        match scraped {
            Ok(pools) => {
                for (name, status) in &pools {
                    let history = board.history.entry(name.clone()).or_default();
                    history.push_back(Sample {
                        at_ms,
                        published: status.published,
                        submitted: status.submitted,
                        queued: status.queued,
                        in_flight: status.in_flight,
                        dead_lettered: status.dead_lettered,
                    });
                    let oldest = at_ms.saturating_sub(HISTORY.as_millis() as u64);
                    while history.front().is_some_and(|s| s.at_ms < oldest) {
                        history.pop_front();
                    }
                }
                board
                    .history
                    .retain(|name, _| pools.iter().any(|(n, _)| n == name));
                board.pools = pools;
                board.error = None;
                board.sampled_at_ms = at_ms;
            }
            Err(error) => board.error = Some(error),
        }
    }

    /// Serves one connection.
    fn answer(&self, mut stream: TcpStream) {
        let (response, head_only) = match http::read_request(&mut stream) {
            Ok(request) => (self.route(&request), request.method == "HEAD"),
            Err(ReadError::Closed) => return,
            Err(ReadError::TooLarge) => (Response::text(431, "request head too large"), false),
            Err(ReadError::Malformed(why)) => {
                (Response::text(400, format!("bad request: {why}")), false)
            }
        };
        // A client that stops reading costs this thread at most the write timeout.
        let _ = http::write_response(&mut stream, &response, head_only);
    }

    fn route(&self, request: &Request) -> Response {
        if request.method != "GET" && request.method != "HEAD" {
            return Response::text(405, "the dashboard is read-only: only GET and HEAD");
        }
        match request.host.as_deref() {
            Some(host) if http::host_is_literal_or_localhost(host) => {}
            _ => {
                return Response::text(
                    403,
                    "the Host header must be an address or localhost (DNS-rebinding guard)",
                )
            }
        }
        match request.path.as_str() {
            "/" => Response::new(200, "text/html; charset=utf-8", PAGE),
            "/app.js" => Response::new(200, "text/javascript; charset=utf-8", SCRIPT),
            "/app.css" => Response::new(200, "text/css; charset=utf-8", STYLE),
            "/api/status" => Response::new(200, "application/json", self.json().to_string()),
            "/metrics" => {
                let scraped = self.scrape();
                let (pools, error) = match &scraped {
                    Ok(pools) => (pools.as_slice(), None),
                    Err(error) => (&[][..], Some(error.as_str())),
                };
                Response::new(
                    200,
                    "text/plain; version=0.0.4; charset=utf-8",
                    metrics::render(&metrics::Scrape { pools, error }),
                )
            }
            _ => Response::text(404, "not found: try /, /api/status or /metrics"),
        }
    }

    /// The latest sample and the history, as the page reads them.
    fn json(&self) -> Value {
        let board = self.board.lock().unwrap_or_else(|e| e.into_inner());
        let pools: Vec<Value> = board
            .pools
            .iter()
            .map(|(name, s)| {
                let history: Vec<Value> = board
                    .history
                    .get(name)
                    .into_iter()
                    .flatten()
                    .map(|h| {
                        json!([
                            h.at_ms,
                            h.published,
                            h.submitted,
                            h.queued,
                            h.in_flight,
                            h.dead_lettered
                        ])
                    })
                    .collect();
                json!({
                    "name": name,
                    "queued": s.queued,
                    "in_flight": s.in_flight,
                    "dead_lettered": s.dead_lettered,
                    "malformed": s.malformed,
                    "submitted": s.submitted,
                    "published": s.published,
                    "duplicates": s.duplicates,
                    "released": s.released,
                    "scheduled": s.scheduled,
                    "chained": s.chained,
                    "lease_s": s.lease.as_secs_f64(),
                    "max_deliveries": s.max_deliveries,
                    "problems": s.problems,
                    "workers": s.workers.iter().map(|w| json!({
                        "name": w.name,
                        "description": w.description,
                        "heartbeat_age_s": w.last_heartbeat.map(|d| d.as_secs_f64()),
                        "in_flight": w.in_flight,
                        "stale": w.last_heartbeat.is_none_or(|age| age > s.lease),
                    })).collect::<Vec<_>>(),
                    "recent_dead": s.recent_dead.iter().map(|d| json!({
                        "task_id": d.task_id,
                        "function": d.function,
                        "deliveries": d.deliveries,
                        "worker": d.worker,
                        "reason": d.reason,
                    })).collect::<Vec<_>>(),
                    "progress": s.progress.iter().map(|p| json!({
                        "task_id": p.task_id,
                        "done": p.done,
                        "total": p.total,
                        "ratio": p.ratio(),
                    })).collect::<Vec<_>>(),
                    "history": history,
                })
            })
            .collect();
        json!({
            "broker": self.shown_url,
            "sampled_at_ms": board.sampled_at_ms,
            "interval_ms": INTERVAL.as_millis() as u64,
            "error": board.error,
            "pools": pools,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dashboard() -> Dashboard {
        Dashboard {
            url: "redis://127.0.0.1:1/".into(),
            shown_url: "redis://127.0.0.1:1/".into(),
            only: Vec::new(),
            board: Mutex::new(Board::default()),
        }
    }

    fn get(path: &str, host: Option<&str>) -> Request {
        Request {
            method: "GET".into(),
            path: path.into(),
            host: host.map(str::to_string),
        }
    }

    #[test]
    fn writes_are_refused_the_dashboard_is_read_only() {
        let request = Request {
            method: "POST".into(),
            ..get("/api/status", Some("127.0.0.1"))
        };
        assert_eq!(dashboard().route(&request).status, 405);
    }

    #[test]
    fn a_foreign_host_name_is_refused_against_dns_rebinding() {
        assert_eq!(
            dashboard().route(&get("/", Some("evil.example"))).status,
            403
        );
        assert_eq!(dashboard().route(&get("/", None)).status, 403);
        assert_eq!(
            dashboard().route(&get("/", Some("localhost:8080"))).status,
            200
        );
    }

    #[test]
    fn the_page_loads_nothing_from_outside() {
        for asset in [PAGE, SCRIPT, STYLE] {
            // The SVG namespace is a name, not a request.
            let asset = asset.replace("http://www.w3.org/2000/svg", "");
            assert!(
                !asset.contains("http://")
                    && !asset.contains("https://")
                    && !asset.contains("//cdn")
            );
        }
    }

    #[test]
    fn an_unknown_path_is_404() {
        assert_eq!(
            dashboard().route(&get("/nope", Some("127.0.0.1"))).status,
            404
        );
    }
}
