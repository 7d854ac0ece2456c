//! A loopback HTTP/1.1 server for tests: each path answers whatever the test's handler says, and
//! the handler can also misbehave on purpose — delay, trickle, hang, stop short, reset the
//! connection, redirect anywhere, send gzip (bombs included) or a lying Content-Length.
//!
//! Self-contained (std, libc for the reset, flate2 for gzip): one thread per connection, one
//! request per connection (`Connection: close`), a log of every request for assertions.

#![allow(dead_code)] // Each test binary uses a different part of the fixture.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// A request as the server saw it.
#[derive(Debug, Clone)]
pub struct Request {
    pub path: String,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub arrived: Instant,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// How the response is delivered.
#[derive(Debug, Clone)]
pub enum Delivery {
    /// All at once.
    Normal,
    /// After a pause.
    Delay(Duration),
    /// Head at once, then the body one byte per interval.
    Trickle(Duration),
    /// Nothing at all: the request is read and never answered.
    NeverAnswer,
    /// Head and the first `n` body bytes, then silence with the connection open.
    HangAfter(usize),
    /// Head and the first `n` body bytes, then a clean close.
    CloseAfter(usize),
    /// Head and the first `n` body bytes, then a TCP reset.
    ResetAfter(usize),
}

/// What a path answers.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Send `Content-Length: body.len()` unless a header already sets one.
    pub content_length: bool,
    pub delivery: Delivery,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            content_length: true,
            delivery: Delivery::Normal,
        }
    }

    pub fn html(body: &str) -> Reply {
        Reply::status(200)
            .header("Content-Type", "text/html; charset=utf-8")
            .body(body.as_bytes().to_vec())
    }

    pub fn bytes(content_type: &str, body: Vec<u8>) -> Reply {
        Reply::status(200)
            .header("Content-Type", content_type)
            .body(body)
    }

    pub fn redirect(status: u16, location: &str) -> Reply {
        Reply::status(status).header("Location", location)
    }

    /// `decoded` compressed with gzip, labelled `Content-Encoding: gzip`.
    pub fn gzip(decoded: &[u8]) -> Reply {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(decoded).unwrap();
        Reply::bytes("text/html", encoder.finish().unwrap()).header("Content-Encoding", "gzip")
    }

    /// The same reply with another status line.
    pub fn status_code(mut self, status: u16) -> Reply {
        self.status = status;
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn body(mut self, body: Vec<u8>) -> Reply {
        self.body = body;
        self
    }

    /// No Content-Length: the body ends when the connection closes.
    pub fn without_length(mut self) -> Reply {
        self.content_length = false;
        self
    }

    pub fn delivered(mut self, delivery: Delivery) -> Reply {
        self.delivery = delivery;
        self
    }
}

/// `handler(request, n)`: `n` is how many earlier requests had the same path.
type Handler = dyn Fn(&Request, usize) -> Reply + Send + Sync;

/// What the server does with a connection after a complete response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keepalive {
    /// Says `Connection: close` and closes: one request per connection.
    Announced,
    /// Says nothing and closes right after the response, like a server whose keep-alive
    /// timeout is zero: a client that pools the connection races the FIN.
    CloseSilently,
    /// Says nothing, keeps the connection, and when the next request arrives on it closes it
    /// unanswered with a reset: every reuse fails, deterministically, before any response byte.
    DropReused,
}

struct Shared {
    handler: Box<Handler>,
    keepalive: Keepalive,
    log: Mutex<Vec<Request>>,
    stopping: AtomicBool,
    stopped: (Mutex<bool>, Condvar),
}

/// The running server; stops (and releases every hanging connection) when dropped.
pub struct TestServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl TestServer {
    pub fn start(handler: impl Fn(&Request, usize) -> Reply + Send + Sync + 'static) -> TestServer {
        TestServer::start_with(Keepalive::Announced, handler)
    }

    /// A server that treats finished connections as `keepalive` says.
    pub fn start_with(
        keepalive: Keepalive,
        handler: impl Fn(&Request, usize) -> Reply + Send + Sync + 'static,
    ) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            handler: Box::new(handler),
            keepalive,
            log: Mutex::new(Vec::new()),
            stopping: AtomicBool::new(false),
            stopped: (Mutex::new(false), Condvar::new()),
        });
        let accepting = shared.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                if accepting.stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let connection = accepting.clone();
                thread::spawn(move || serve(&connection, stream));
            }
        });
        TestServer { addr, shared }
    }

    /// A server answering each path from a fixed table (404 for anything else).
    pub fn routes(table: Vec<(&str, Reply)>) -> TestServer {
        let table: HashMap<String, Reply> =
            table.into_iter().map(|(p, r)| (p.to_owned(), r)).collect();
        TestServer::start(move |request, _| {
            table
                .get(&request.path)
                .cloned()
                .unwrap_or_else(|| Reply::status(404).body(b"not found".to_vec()))
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn requests(&self) -> Vec<Request> {
        self.shared.log.lock().unwrap().clone()
    }

    pub fn requests_for(&self, path: &str) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    /// Blocks until `path` has been requested `count` times (or panics after a minute).
    pub fn wait_for_requests(&self, path: &str, count: usize) {
        let give_up = Instant::now() + Duration::from_secs(60);
        while self.requests_for(path).len() < count {
            assert!(
                Instant::now() < give_up,
                "{path} was never requested {count} times"
            );
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        let (lock, condvar) = &self.shared.stopped;
        *lock.lock().unwrap() = true;
        condvar.notify_all();
        // Wake the accept loop so it sees `stopping`.
        let _ = TcpStream::connect(self.addr);
    }
}

impl Shared {
    /// Sleeps for `pause`, or until the server stops; false if it stopped.
    fn pause(&self, pause: Option<Duration>) -> bool {
        let (lock, condvar) = &self.stopped;
        let stopped = lock.lock().unwrap();
        let stopped = match pause {
            Some(pause) => {
                condvar
                    .wait_timeout_while(stopped, pause, |s| !*s)
                    .unwrap()
                    .0
            }
            None => condvar.wait_while(stopped, |s| !*s).unwrap(),
        };
        !*stopped
    }
}

fn serve(shared: &Shared, stream: TcpStream) {
    // Bounded: a client that connects and sends nothing does not keep this thread forever.
    let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(60)));
    let Some(request) = read_request(&stream) else {
        return;
    };
    let earlier = {
        let mut log = shared.log.lock().unwrap();
        let earlier = log.iter().filter(|r| r.path == request.path).count();
        log.push(request.clone());
        earlier
    };
    let reply = (shared.handler)(&request, earlier);
    let Ok(Some(stream)) = respond(shared, stream, reply) else {
        return;
    };
    match shared.keepalive {
        Keepalive::Announced | Keepalive::CloseSilently => drop(stream),
        Keepalive::DropReused => {
            // Bounded: a client that never reuses the connection is let go after a while.
            let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
            let mut byte = [0u8; 1];
            let _ = stream.peek(&mut byte);
            reset(stream);
        }
    }
}

fn read_request(stream: &TcpStream) -> Option<Request> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let path = line.split_whitespace().nth(1)?.to_owned();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    Some(Request {
        path,
        headers,
        arrived: Instant::now(),
    })
}

/// Writes the reply; hands the stream back if the response was complete and the connection is
/// still open.
fn respond(
    shared: &Shared,
    mut stream: TcpStream,
    reply: Reply,
) -> std::io::Result<Option<TcpStream>> {
    let mut head = format!("HTTP/1.1 {} Test\r\n", reply.status);
    if shared.keepalive == Keepalive::Announced {
        head.push_str("Connection: close\r\n");
    }
    for (name, value) in &reply.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    let has_length = reply
        .headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("content-length"));
    if reply.content_length && !has_length {
        head.push_str(&format!("Content-Length: {}\r\n", reply.body.len()));
    }
    head.push_str("\r\n");
    let body = &reply.body;
    match reply.delivery {
        Delivery::Normal => {}
        Delivery::Delay(pause) => {
            if !shared.pause(Some(pause)) {
                return Ok(None);
            }
        }
        Delivery::NeverAnswer => {
            shared.pause(None);
            return Ok(None);
        }
        Delivery::Trickle(interval) => {
            stream.write_all(head.as_bytes())?;
            for byte in body {
                stream.write_all(&[*byte])?;
                if !shared.pause(Some(interval)) {
                    return Ok(None);
                }
            }
            return Ok(None);
        }
        Delivery::HangAfter(n) | Delivery::CloseAfter(n) | Delivery::ResetAfter(n) => {
            stream.write_all(head.as_bytes())?;
            stream.write_all(&body[..n.min(body.len())])?;
            stream.flush()?;
            match reply.delivery {
                Delivery::HangAfter(_) => {
                    shared.pause(None);
                }
                Delivery::CloseAfter(_) => stream.shutdown(Shutdown::Both)?,
                _ => reset(stream),
            }
            return Ok(None);
        }
    }
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()?;
    Ok(Some(stream))
}

/// Closes with SO_LINGER = 0, which makes the kernel send RST instead of FIN.
fn reset(stream: TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: the descriptor is open (owned by `stream`, closed only when it drops below), and
    // the option value is a valid `linger` whose size is passed alongside it.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    drop(stream);
}
