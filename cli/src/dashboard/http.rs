//! Just enough HTTP/1.1 for a read-only dashboard: `GET` and `HEAD`, one request per connection
//! (`Connection: close`), every read and write bounded in size and time.
//!
//! Hostile or broken clients cost at most one pool thread for [`IO_TIMEOUT`] each, and at most
//! [`MAX_HEAD`] bytes of memory; a request that is too big, too slow or not HTTP gets an error
//! status (or nothing, if it never finished its head) and is closed.

use std::io::{self, Read, Write};
use std::net::{IpAddr, TcpStream};
use std::time::{Duration, Instant};

/// The longest request head read (request line and headers).
pub const MAX_HEAD: usize = 16 * 1024;
/// How long a client may take to send its whole request head, or to take the answer (a total,
/// not per read: a client trickling a byte at a time is cut off too).
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// A parsed request: only what the dashboard looks at.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The path, without the query string.
    pub path: String,
    /// The `Host` header, if any.
    pub host: Option<String>,
}

/// An answer to send.
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            content_type,
            body: body.into(),
        }
    }

    pub fn text(status: u16, body: impl Into<String>) -> Response {
        let mut body = body.into();
        body.push('\n');
        Response::new(status, "text/plain; charset=utf-8", body)
    }
}

/// Why a request could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// The connection failed, timed out or closed before the head ended: nothing to answer.
    Closed,
    /// The head is larger than [`MAX_HEAD`].
    TooLarge,
    /// Not an HTTP/1.x request.
    Malformed(&'static str),
}

/// Reads one request head from `stream` (the body, if any, is ignored: no route takes one).
pub fn read_request(stream: &mut TcpStream) -> Result<Request, ReadError> {
    let deadline = Instant::now()
        .checked_add(IO_TIMEOUT)
        .expect("now + 5 s is representable");
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        if let Some(end) = find_head_end(&head) {
            head.truncate(end);
            break;
        }
        if head.len() > MAX_HEAD {
            return Err(ReadError::TooLarge);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ReadError::Closed);
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(|_| ReadError::Closed)?;
        let n = stream.read(&mut chunk).map_err(|_| ReadError::Closed)?;
        if n == 0 {
            return Err(ReadError::Closed);
        }
        head.extend_from_slice(&chunk[..n]);
    }
    if head.len() > MAX_HEAD {
        return Err(ReadError::TooLarge);
    }
    parse_head(&head)
}

fn find_head_end(bytes: &[u8]) -> Option<usize> {
    bytes.windows(4).position(|w| w == b"\r\n\r\n")
}

/// Parses a request head (without its final blank line).
pub fn parse_head(head: &[u8]) -> Result<Request, ReadError> {
    let head = std::str::from_utf8(head).map_err(|_| ReadError::Malformed("not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or("");
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ReadError::Malformed(
            "the request line is not METHOD TARGET VERSION",
        ));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(ReadError::Malformed("not HTTP/1.x"));
    }
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(ReadError::Malformed("bad method"));
    }
    let path = target.split(['?', '#']).next().unwrap_or("").to_string();
    if !path.starts_with('/') {
        return Err(ReadError::Malformed("the target is not a path"));
    }
    let mut host = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(ReadError::Malformed("a header line without ':'"));
        };
        if name.eq_ignore_ascii_case("host") {
            host = Some(value.trim().to_string());
        }
    }
    Ok(Request {
        method: method.to_string(),
        path,
        host,
    })
}

/// True if `host` (a `Host` header) names this machine by a literal address or as `localhost`.
///
/// The dashboard answers only such requests: a page on some web site that points its own host
/// name at 127.0.0.1 (DNS rebinding) sends its name in `Host`, and is refused, so it cannot read
/// the dashboard from inside the user's browser.
pub fn host_is_literal_or_localhost(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(name, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                name
            } else {
                host
            }
        })
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<IpAddr>().is_ok()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// Writes `response` (only its head for `HEAD`) and closes the exchange.
pub fn write_response(
    stream: &mut TcpStream,
    response: &Response,
    head_only: bool,
) -> io::Result<()> {
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\
         Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n\
         Content-Security-Policy: default-src 'none'; script-src 'self'; connect-src 'self'; \
         style-src 'self'; img-src 'self'\r\n{}\r\n",
        response.status,
        reason(response.status),
        response.content_type,
        response.body.len(),
        if response.status == 405 {
            "Allow: GET, HEAD\r\n"
        } else {
            ""
        }
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(&response.body);
    }
    stream.write_all(&out)?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_head_parses_to_method_path_and_host() {
        let request =
            parse_head(b"GET /metrics?x=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nAccept: */*")
                .unwrap();
        assert_eq!(
            request,
            Request {
                method: "GET".into(),
                path: "/metrics".into(),
                host: Some("127.0.0.1:8080".into()),
            }
        );
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        for head in [
            &b""[..],
            b"GET",
            b"GET / SPDY/3",
            b"get / HTTP/1.1",
            b"GET noslash HTTP/1.1",
            b"GET / HTTP/1.1\r\nno colon here",
            b"\xff\xfe / HTTP/1.1",
        ] {
            assert!(parse_head(head).is_err(), "{head:?}");
        }
    }

    #[test]
    fn only_literal_addresses_and_localhost_are_accepted_hosts() {
        for ok in [
            "127.0.0.1:8080",
            "localhost",
            "LOCALHOST:1",
            "[::1]:80",
            "10.0.0.2",
        ] {
            assert!(host_is_literal_or_localhost(ok), "{ok}");
        }
        for bad in [
            "evil.example:8080",
            "evil.example",
            "127.0.0.1.evil.example",
            "",
        ] {
            assert!(!host_is_literal_or_localhost(bad), "{bad}");
        }
    }
}
