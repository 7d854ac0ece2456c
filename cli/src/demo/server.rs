//! The demo's page server: a tiny HTTP/1.1 server on a free loopback port that serves `N` pages,
//! each answered after a fixed latency — a stand-in for slow web servers that needs no network.
//!
//! Std only. One thread accepts; each connection gets its own thread, so `k` clients in parallel
//! really do wait `latency` in parallel (the server is never the bottleneck the demo measures).
//! Connections are kept alive, as browsers and HTTP clients expect.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// How often idle connections and the accept loop look at the stop flag.
const POLL: Duration = Duration::from_millis(50);

/// The largest request head we read before answering 400; the demo's clients send a few hundred
/// bytes.
const MAX_HEAD: usize = 16 * 1024;

/// A running page server. Dropping it stops the server and joins its threads.
pub struct PageServer {
    addr: SocketAddr,
    pages: usize,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

struct Shared {
    pages: usize,
    latency: Duration,
    stopping: AtomicBool,
    requests: AtomicU64,
    connections: Mutex<Vec<JoinHandle<()>>>,
}

impl PageServer {
    /// Starts serving pages `0..pages` on `127.0.0.1` at a port the OS picks.
    pub fn start(pages: usize, latency: Duration) -> io::Result<PageServer> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        // Non-blocking accept lets the loop notice `stopping` without a wake-up connection.
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            pages,
            latency,
            stopping: AtomicBool::new(false),
            requests: AtomicU64::new(0),
            connections: Mutex::new(Vec::new()),
        });
        let acceptor = {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name("demo-server".into())
                .spawn(move || accept_loop(&listener, &shared))?
        };
        Ok(PageServer {
            addr,
            pages,
            shared,
            acceptor: Some(acceptor),
        })
    }

    /// The page names, in order: `page-001`, `page-002`, ...
    pub fn names(&self) -> Vec<String> {
        (0..self.pages).map(page_name).collect()
    }

    /// The URL of the page called `name`.
    pub fn url(&self, name: &str) -> String {
        format!("http://{}/{name}", self.addr)
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many requests have been answered so far.
    pub fn requests_served(&self) -> u64 {
        self.shared.requests.load(Ordering::Relaxed)
    }
}

impl Drop for PageServer {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::Relaxed);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        let connections = std::mem::take(&mut *lock(&self.shared.connections));
        for connection in connections {
            let _ = connection.join();
        }
    }
}

/// The name of page `index`: zero-padded so a directory listing sorts in page order.
pub fn page_name(index: usize) -> String {
    format!("page-{:03}", index + 1)
}

/// The HTML body of page `index`: a few kilobytes, like a small real page.
pub fn page_body(index: usize) -> String {
    let name = page_name(index);
    let mut body = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{name}</title></head>\n<body>\n\
         <h1>{name}</h1>\n<p>Served by the futurepool demo's loopback server.</p>\n"
    );
    for paragraph in 0..24 {
        body.push_str(&format!(
            "<p>Paragraph {paragraph} of {name}: some text so that the page weighs a few \
             kilobytes, like a small article.</p>\n"
        ));
    }
    body.push_str("</body></html>\n");
    body
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panicking connection thread cannot leave the list half-updated (push is atomic).
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    while !shared.stopping.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                let worker = Arc::clone(shared);
                let spawned =
                    thread::Builder::new()
                        .name("demo-connection".into())
                        .spawn(move || {
                            // A client that hangs up mid-request is its own problem, not the server's.
                            let _ = serve_connection(stream, &worker);
                        });
                let mut connections = lock(&shared.connections);
                connections.retain(|c| !c.is_finished());
                if let Ok(handle) = spawned {
                    connections.push(handle);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => thread::sleep(POLL / 10),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // Out of file descriptors and the like: back off rather than spin.
            Err(_) => thread::sleep(POLL),
        }
    }
}

fn serve_connection(stream: TcpStream, shared: &Shared) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(POLL))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    loop {
        let Some(head) = read_head(&mut reader, shared)? else {
            return Ok(());
        };
        let keep_alive = !head.close;
        let response = match head
            .path
            .strip_prefix('/')
            .and_then(|name| page_index(name, shared.pages))
        {
            Some(index) if head.method == "GET" || head.method == "HEAD" => {
                thread::sleep(shared.latency);
                let body = page_body(index);
                let mut response = header(
                    200,
                    "OK",
                    "text/html; charset=utf-8",
                    body.len(),
                    keep_alive,
                );
                if head.method == "GET" {
                    response.push_str(&body);
                }
                response
            }
            Some(_) => header(405, "Method Not Allowed", "text/plain", 0, keep_alive),
            None => {
                let body = "no such page\n";
                header(404, "Not Found", "text/plain", body.len(), keep_alive) + body
            }
        };
        // Counted before the client can see the answer, so a client that has all its pages
        // never reads a count that is short.
        shared.requests.fetch_add(1, Ordering::Relaxed);
        writer.write_all(response.as_bytes())?;
        writer.flush()?;
        if !keep_alive {
            return Ok(());
        }
    }
}

struct RequestHead {
    method: String,
    path: String,
    close: bool,
}

/// Reads one request head; `None` when the client closed the connection or the server stops.
/// The demo only sends GETs, so request bodies are not read.
fn read_head(
    reader: &mut BufReader<TcpStream>,
    shared: &Shared,
) -> io::Result<Option<RequestHead>> {
    let mut lines: Vec<String> = Vec::new();
    let mut size = 0;
    // Kept across read time-outs: `read_line` leaves a partial line in it, which the next call
    // completes.
    let mut line = String::new();
    loop {
        match reader.read_line(&mut line) {
            Ok(0) => return Ok(None),
            Ok(n) => size += n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                // Idle keep-alive connection: stay open unless the server is stopping.
                if shared.stopping.load(Ordering::Relaxed) {
                    return Ok(None);
                }
                continue;
            }
            Err(e) => return Err(e),
        }
        if size > MAX_HEAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "request head too large",
            ));
        }
        let text = line.trim_end_matches(['\r', '\n']).to_string();
        line.clear();
        if text.is_empty() {
            if lines.is_empty() {
                continue; // tolerate stray CRLF between requests (RFC 9112 §2.2)
            }
            break;
        }
        lines.push(text);
    }
    let mut request_line = lines[0].split_whitespace();
    let method = request_line.next().unwrap_or_default().to_string();
    let path = request_line.next().unwrap_or_default().to_string();
    let version = request_line.next().unwrap_or_default();
    let mut close = version == "HTTP/1.0";
    for header in &lines[1..] {
        if let Some((key, value)) = header.split_once(':') {
            if key.trim().eq_ignore_ascii_case("connection") {
                close = value.trim().eq_ignore_ascii_case("close");
            }
        }
    }
    Ok(Some(RequestHead {
        method,
        path,
        close,
    }))
}

fn page_index(name: &str, pages: usize) -> Option<usize> {
    let number: usize = name.strip_prefix("page-")?.parse().ok()?;
    (1..=pages).contains(&number).then(|| number - 1)
}

fn header(
    status: u16,
    reason: &str,
    content_type: &str,
    length: usize,
    keep_alive: bool,
) -> String {
    let connection = if keep_alive { "keep-alive" } else { "close" };
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {length}\r\n\
         Connection: {connection}\r\nServer: futurepool-demo\r\n\r\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn get(server: &PageServer, path: &str) -> String {
        let mut stream = TcpStream::connect(server.addr()).unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    }

    #[test]
    fn serves_each_page_and_404_otherwise() {
        let server = PageServer::start(3, Duration::ZERO).unwrap();
        assert_eq!(server.names(), ["page-001", "page-002", "page-003"]);
        let page = get(&server, "/page-003");
        assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
        assert!(page.ends_with(&page_body(2)));
        assert!(get(&server, "/page-004").starts_with("HTTP/1.1 404"));
        assert!(get(&server, "/page-000").starts_with("HTTP/1.1 404"));
        assert!(get(&server, "/../etc/passwd").starts_with("HTTP/1.1 404"));
        assert_eq!(server.requests_served(), 4);
    }

    #[test]
    fn keeps_connections_alive() {
        let server = PageServer::start(2, Duration::ZERO).unwrap();
        let mut stream = TcpStream::connect(server.addr()).unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        for path in ["/page-001", "/page-002"] {
            write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let mut status = String::new();
            reader.read_line(&mut status).unwrap();
            assert_eq!(status, "HTTP/1.1 200 OK\r\n");
            let mut length = 0;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if line == "\r\n" {
                    break;
                }
                if let Some(v) = line.strip_prefix("Content-Length: ") {
                    length = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            assert!(String::from_utf8(body).unwrap().contains(&path[1..]));
        }
    }

    #[test]
    fn drop_stops_the_server_even_with_idle_connections() {
        let server = PageServer::start(1, Duration::ZERO).unwrap();
        let addr = server.addr();
        let _idle = TcpStream::connect(addr).unwrap();
        drop(server);
        assert!(TcpStream::connect(addr).is_err());
    }
}
