//! A loopback HTTP proxy for tests: `CONNECT host:port` tunnels (what ureq, and so futurepool,
//! uses for every URL) and absolute-form forwarding (`GET http://host/path`, what curl and wget
//! use for http://). It can demand credentials, and logs each request's method, target and
//! `Proxy-Authorization`. Every socket operation has a timeout, so a test cannot hang on it.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// One request the proxy received.
#[derive(Debug, Clone)]
pub struct ProxyRequest {
    pub method: String,
    pub target: String,
    pub proxy_authorization: Option<String>,
}

struct Shared {
    log: Mutex<Vec<ProxyRequest>>,
    /// `Proxy-Authorization` value required, if any (else 407).
    required: Option<String>,
    stopping: AtomicBool,
}

/// The running proxy; stops accepting when dropped.
pub struct TestProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl TestProxy {
    pub fn start() -> TestProxy {
        TestProxy::start_requiring(None)
    }

    /// A proxy that answers 407 unless `Proxy-Authorization` is exactly `required`.
    pub fn start_requiring(required: Option<&str>) -> TestProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            log: Mutex::new(Vec::new()),
            required: required.map(str::to_owned),
            stopping: AtomicBool::new(false),
        });
        let accepting = shared.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                if accepting.stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let shared = accepting.clone();
                thread::spawn(move || {
                    let _ = serve(&shared, stream);
                });
            }
        });
        TestProxy { addr, shared }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<ProxyRequest> {
        self.shared.log.lock().unwrap().clone()
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve(shared: &Shared, client: TcpStream) -> std::io::Result<()> {
    client.set_read_timeout(Some(IO_TIMEOUT))?;
    client.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut reader = BufReader::new(client.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut fields = line.split_whitespace();
    let (method, target) = (
        fields.next().unwrap_or_default().to_owned(),
        fields.next().unwrap_or_default().to_owned(),
    );
    let mut head = Vec::new();
    let mut authorization = None;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 {
            return Ok(());
        }
        if header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.trim().eq_ignore_ascii_case("proxy-authorization") {
                authorization = Some(value.trim().to_owned());
                continue;
            }
        }
        head.push(header);
    }
    shared.log.lock().unwrap().push(ProxyRequest {
        method: method.clone(),
        target: target.clone(),
        proxy_authorization: authorization.clone(),
    });
    let mut client_out = client.try_clone()?;
    if shared.required.is_some() && authorization != shared.required {
        client_out.write_all(
            b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\n\
              Content-Length: 0\r\nConnection: close\r\n\r\n",
        )?;
        return Ok(());
    }
    if method == "CONNECT" {
        let upstream = connect(&target)?;
        client_out.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")?;
        // Bytes the client sent after its CONNECT head are already in `reader`'s buffer.
        let buffered = reader.buffer().to_vec();
        tunnel(reader.into_inner(), buffered, upstream)
    } else {
        // Absolute-form: `GET http://host:port/path HTTP/1.1` becomes `GET /path` upstream.
        let Some(rest) = target.strip_prefix("http://") else {
            client_out.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")?;
            return Ok(());
        };
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let path = if path.is_empty() { "/" } else { path };
        let mut upstream = connect(authority)?;
        let mut request = format!("{method} {path} HTTP/1.1\r\n");
        for header in head {
            if !header.to_ascii_lowercase().starts_with("connection:") {
                request.push_str(&header);
            }
        }
        request.push_str("Connection: close\r\n\r\n");
        upstream.write_all(request.as_bytes())?;
        let mut response = Vec::new();
        upstream.read_to_end(&mut response)?;
        client_out.write_all(&response)?;
        client_out.shutdown(Shutdown::Both)
    }
}

fn connect(authority: &str) -> std::io::Result<TcpStream> {
    let addr: SocketAddr = authority.parse().map_err(|_| {
        std::io::Error::other(format!("the test proxy takes IP:port, not {authority}"))
    })?;
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(stream)
}

/// Copies both ways until either side closes.
fn tunnel(client: TcpStream, buffered: Vec<u8>, upstream: TcpStream) -> std::io::Result<()> {
    let mut to_upstream = upstream.try_clone()?;
    to_upstream.write_all(&buffered)?;
    let mut from_client = client.try_clone()?;
    let forward = thread::spawn(move || {
        let _ = std::io::copy(&mut from_client, &mut to_upstream);
        let _ = to_upstream.shutdown(Shutdown::Write);
    });
    let (mut from_upstream, mut to_client) = (upstream, client);
    let _ = std::io::copy(&mut from_upstream, &mut to_client);
    let _ = to_client.shutdown(Shutdown::Both);
    let _ = forward.join();
    Ok(())
}

/// The proxy's own check of its forwarding mode (curl and wget's http:// mode; ureq tunnels).
pub fn forward_get(proxy: &TestProxy, url: &str) -> String {
    let mut stream = TcpStream::connect(proxy.addr).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    write!(stream, "GET {url} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}
