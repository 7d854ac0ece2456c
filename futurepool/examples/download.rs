//! The classic `concurrent.futures` example in futurepool: download pages with ten worker threads
//! and save each as `NAME.html`, reporting them as they complete.
//!
//! Runs offline: it starts its own loopback server whose pages each take 100 ms to arrive, so the
//! twenty downloads take about 0.2 s instead of 2 s one after another.
//!
//! ```text
//! cargo run -p futurepool --example download
//! ```

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use futurepool::{as_completed, ThreadPool};

fn main() -> io::Result<()> {
    let pages = slow_loopback_site(20, Duration::from_millis(100))?;
    let dir = std::env::temp_dir().join("futurepool-example-download");
    std::fs::create_dir_all(&dir)?;
    let started = Instant::now();

    // ---- the example proper ----
    let pool = ThreadPool::new(10);
    let tasks: Vec<_> = pages
        .into_iter()
        .map(|(name, url)| {
            let path = dir.join(format!("{name}.html"));
            pool.submit_fallible(move || {
                let page = http_get(&url).map_err(|e| format!("{url}: {e}"))?;
                std::fs::write(&path, &page).map_err(|e| format!("{}: {e}", path.display()))?;
                Ok::<_, String>((name, page.len()))
            })
        })
        .collect();
    for task in as_completed(&tasks, None) {
        match task.expect("no timeout was given").result() {
            Ok((name, bytes)) => println!("{name}: {bytes} bytes"),
            Err(error) => println!("failed: {error}"),
        }
    }
    // ----------------------------

    println!("saved in {} in {:.2?}", dir.display(), started.elapsed());
    Ok(())
}

/// A minimal HTTP/1.0 GET: enough for the loopback server below, not for the web (use ureq there).
fn http_get(url: &str) -> io::Result<Vec<u8>> {
    let rest = url
        .strip_prefix("http://")
        .ok_or(io::ErrorKind::InvalidInput)?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut stream = TcpStream::connect(host)?;
    write!(stream, "GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n")?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let body_at = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or(io::ErrorKind::InvalidData)?;
    if !response.starts_with(b"HTTP/1.0 200") {
        return Err(io::Error::other("the server did not answer 200 OK"));
    }
    Ok(response.split_off(body_at + 4))
}

/// Serves `count` pages on a free loopback port, each after `latency`; returns `(name, url)`
/// pairs. The server thread lives until the example exits.
fn slow_loopback_site(count: usize, latency: Duration) -> io::Result<Vec<(String, String)>> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            // One thread per connection, so slow answers overlap as a real server's do.
            std::thread::spawn(move || answer_after(stream, latency));
        }
    });
    Ok((1..=count)
        .map(|i| {
            let name = format!("page-{i:02}");
            let url = format!("http://{addr}/{name}");
            (name, url)
        })
        .collect())
}

fn answer_after(mut stream: TcpStream, latency: Duration) {
    let mut request = [0u8; 1024];
    let Ok(n) = stream.read(&mut request) else {
        return;
    };
    let path = String::from_utf8_lossy(&request[..n])
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .to_string();
    std::thread::sleep(latency);
    let body = format!("<!doctype html><title>{path}</title><h1>{path}</h1>\n");
    let _ = write!(
        stream,
        "HTTP/1.0 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
}
