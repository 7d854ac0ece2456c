//! One entry, start to finish: GET with timeouts, redirects followed by hand (so every hop is
//! checked), retries with backoff, the size limit on decoded bytes, and the atomic write.

use std::cell::RefCell;
use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime};

use ureq::http::header::{self, HeaderName, HeaderValue};
use ureq::http::Response;
use ureq::unversioned::transport::{Connector, DefaultConnector};
use ureq::{Agent, Body, Timeout};

use super::interrupt::Interrupt;
use super::naming::EntryName;
use super::output::{OutputDir, WriteError};
use super::resolver::CachingResolver;
use super::retry::{self, Backoff, MAX_RETRY_AFTER};
use super::stale::{self, TraceConnector};
use super::url::{HttpUrl, UrlError};

/// Redirects followed before giving up (curl's and browsers' order of magnitude).
pub(crate) const MAX_REDIRECTS: u32 = 10;

/// Request headers a redirect to another origin must not carry: they were meant for the first.
const CREDENTIAL_HEADERS: [HeaderName; 3] = [
    header::AUTHORIZATION,
    header::COOKIE,
    header::PROXY_AUTHORIZATION,
];

/// How each attempt is bounded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Timeouts {
    /// Establishing the TCP (and TLS) connection.
    pub(crate) connect: Duration,
    /// Longest wait for the next byte, headers or body.
    pub(crate) stall: Duration,
    /// Whole attempt, redirects included.
    pub(crate) total: Duration,
}

/// Everything that decides how one entry is downloaded.
#[derive(Debug, Clone)]
pub(crate) struct DownloadSettings {
    pub(crate) timeouts: Timeouts,
    pub(crate) retries: u32,
    pub(crate) backoff: Duration,
    /// Limit on decoded body bytes.
    pub(crate) max_size: u64,
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    /// Connections kept open per host; the pool should hold one per concurrent request.
    pub(crate) idle_connections: usize,
}

/// Why an entry was not saved. The message is what the user and the report see.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FetchError {
    #[error("HTTP {status}{}", reason_suffix(*status))]
    Status {
        status: u16,
        retry_after: Option<Duration>,
    },
    #[error("HTTP {status}{}: the server asked to retry after {} s, longer than the {} s this tool waits", reason_suffix(*status), wait.as_secs(), MAX_RETRY_AFTER.as_secs())]
    RetryAfterTooLong { status: u16, wait: Duration },
    #[error("cannot resolve host {host}")]
    Resolve { host: String },
    #[error("cannot connect to {host}: {reason}")]
    Connect { host: String, reason: String },
    #[error("connect timeout: no connection to {host} within {}", seconds(*after))]
    ConnectTimeout { host: String, after: Duration },
    #[error("stalled: no data received for {}", seconds(*after))]
    Stalled { after: Duration },
    #[error("timeout: the attempt took longer than {}", seconds(*after))]
    TotalTimeout { after: Duration },
    #[error("truncated: the body ended after {received} of the {expected} bytes its Content-Length announced")]
    Truncated { received: u64, expected: u64 },
    #[error("connection lost: {0}")]
    ConnectionLost(String),
    #[error("too large: the body exceeds --max-size {} ({})", super::args::format_size(*limit), if *decoded { "counting decoded bytes" } else { "announced by Content-Length" })]
    TooLarge { limit: u64, decoded: bool },
    #[error("redirect loop: {0} was already visited")]
    RedirectLoop(String),
    #[error("too many redirects (more than {MAX_REDIRECTS})")]
    TooManyRedirects,
    #[error("redirect refused: {0}")]
    BadRedirect(UrlError),
    #[error("HTTP {0} redirect without a Location header")]
    RedirectWithoutLocation(u16),
    #[error("unexpected HTTP {0} response")]
    UnexpectedStatus(u16),
    #[error("malformed response: {0}")]
    Protocol(String),
    #[error("cannot decode the body: {0}")]
    Decode(String),
    #[error(transparent)]
    Write(WriteError),
    #[error("interrupted")]
    Interrupted,
}

impl FetchError {
    /// 408, 429, 5xx, connection failures and timeouts may well succeed on another try.
    pub(crate) fn is_retryable(&self) -> bool {
        match self {
            FetchError::Status { status, .. } => retry::is_retryable_status(*status),
            FetchError::Connect { .. }
            | FetchError::ConnectTimeout { .. }
            | FetchError::Stalled { .. }
            | FetchError::TotalTimeout { .. }
            | FetchError::Truncated { .. }
            | FetchError::ConnectionLost(_) => true,
            _ => false,
        }
    }

    /// The HTTP status this error carries, for the report.
    pub(crate) fn status(&self) -> Option<u16> {
        match self {
            FetchError::Status { status, .. }
            | FetchError::RetryAfterTooLong { status, .. }
            | FetchError::UnexpectedStatus(status)
            | FetchError::RedirectWithoutLocation(status) => Some(*status),
            _ => None,
        }
    }

    pub(crate) fn is_disk_full(&self) -> bool {
        matches!(self, FetchError::Write(e) if e.is_disk_full())
    }
}

impl From<WriteError> for FetchError {
    fn from(error: WriteError) -> Self {
        match error {
            WriteError::Closed => FetchError::Interrupted,
            other => FetchError::Write(other),
        }
    }
}

fn reason_suffix(status: u16) -> String {
    ureq::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .map(|r| format!(" {r}"))
        .unwrap_or_default()
}

fn seconds(d: Duration) -> String {
    format!("{} s", d.as_secs_f64())
}

/// A saved response.
#[derive(Debug, Clone)]
pub(crate) struct Saved {
    pub(crate) path: PathBuf,
    pub(crate) status: u16,
    pub(crate) bytes: u64,
    pub(crate) final_url: HttpUrl,
}

/// Where an entry's response goes.
#[derive(Clone, Copy)]
pub(crate) struct Destination<'a> {
    /// The entry's index, which [`OutputDir::committed`] reports by.
    pub(crate) key: usize,
    /// Saved under its base, plus the Content-Type's extension when allowed.
    pub(crate) name: &'a EntryName,
    pub(crate) out: &'a OutputDir,
}

/// What happened to one entry, over all its attempts.
#[derive(Debug)]
pub(crate) struct Fetched {
    pub(crate) result: Result<Saved, FetchError>,
    pub(crate) attempts: u32,
}

/// Downloads entries; shared by all workers (the agent's connection pool is shared too).
pub(crate) struct Downloader {
    agent: Agent,
    settings: DownloadSettings,
}

impl Downloader {
    pub(crate) fn new(settings: DownloadSettings) -> Downloader {
        let config = Agent::config_builder()
            .http_status_as_error(false)
            // Followed by hand, to check each hop's scheme and catch loops by name.
            .max_redirects(0)
            .timeout_resolve(Some(settings.timeouts.connect))
            .timeout_connect(Some(settings.timeouts.connect))
            .timeout_per_read(Some(settings.timeouts.stall))
            .timeout_per_write(Some(settings.timeouts.stall))
            .max_idle_connections(settings.idle_connections.max(1))
            .max_idle_connections_per_host(settings.idle_connections.max(1))
            .user_agent(concat!("futurepool/", env!("CARGO_PKG_VERSION")))
            // ureq's 128 KiB per direction per connection is sized for a few connections; at
            // -j 64 it was most of the memory. The input buffer still holds the largest response
            // head accepted (64 KiB); the output buffer holds a request head.
            .input_buffer_size(64 * 1024)
            .output_buffer_size(16 * 1024)
            .build();
        let connector = DefaultConnector::new().chain(TraceConnector);
        let agent = Agent::with_parts(config, connector, CachingResolver::default());
        Downloader { agent, settings }
    }

    /// Fetches `url` to its destination, retrying what is worth retrying.
    ///
    /// `attempts` counts attempts as they start, so an interrupted entry reports how many it made.
    pub(crate) fn fetch(
        &self,
        url: &HttpUrl,
        destination: Destination<'_>,
        interrupt: &Interrupt,
        attempts: &AtomicU32,
    ) -> Fetched {
        thread_local! {
            /// Each worker's read buffer, allocated (and zeroed) once per thread, not per page.
            static BUFFER: RefCell<Vec<u8>> = RefCell::new(vec![0; 32 * 1024]);
        }
        BUFFER.with_borrow_mut(|buffer| {
            self.fetch_with(url, destination, interrupt, attempts, buffer)
        })
    }

    fn fetch_with(
        &self,
        url: &HttpUrl,
        destination: Destination<'_>,
        interrupt: &Interrupt,
        started: &AtomicU32,
        buffer: &mut [u8],
    ) -> Fetched {
        let backoff = Backoff {
            base: self.settings.backoff,
        };
        let mut attempts = 0;
        loop {
            if interrupt.is_triggered() {
                return Fetched {
                    result: Err(FetchError::Interrupted),
                    attempts,
                };
            }
            attempts += 1;
            started.store(attempts, Ordering::Relaxed);
            let result = self.attempt(url, destination, interrupt, buffer);
            let error = match result {
                Err(error) if error.is_retryable() && attempts <= self.settings.retries => error,
                result => return Fetched { result, attempts },
            };
            let pause = match error {
                FetchError::Status {
                    status,
                    retry_after: Some(wait),
                } => {
                    if wait > MAX_RETRY_AFTER {
                        return Fetched {
                            result: Err(FetchError::RetryAfterTooLong { status, wait }),
                            attempts,
                        };
                    }
                    wait
                }
                _ => backoff.delay(attempts),
            };
            if interrupt.sleep(pause) {
                return Fetched {
                    result: Err(FetchError::Interrupted),
                    attempts,
                };
            }
        }
    }

    /// One attempt: follow redirects to a final response, then save its body.
    fn attempt(
        &self,
        url: &HttpUrl,
        destination: Destination<'_>,
        interrupt: &Interrupt,
        buffer: &mut [u8],
    ) -> Result<Saved, FetchError> {
        let deadline = Instant::now() + self.settings.timeouts.total;
        let mut current = url.clone();
        let mut visited = vec![url.clone()];
        loop {
            let response = self.get(&current, url, deadline)?;
            let status = response.status().as_u16();
            match status {
                200..=299 => {
                    return self.save(response, current, destination, interrupt, buffer);
                }
                301 | 302 | 303 | 307 | 308 => {
                    let location = response
                        .headers()
                        .get(header::LOCATION)
                        .and_then(|v| v.to_str().ok())
                        .ok_or(FetchError::RedirectWithoutLocation(status))?;
                    let next = current.join(location).map_err(FetchError::BadRedirect)?;
                    if visited.contains(&next) {
                        return Err(FetchError::RedirectLoop(next.to_string()));
                    }
                    if visited.len() > MAX_REDIRECTS as usize {
                        return Err(FetchError::TooManyRedirects);
                    }
                    visited.push(next.clone());
                    current = next;
                }
                400.. => {
                    let retry_after = response
                        .headers()
                        .get(header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| retry::parse_retry_after(v, SystemTime::now()));
                    return Err(FetchError::Status {
                        status,
                        retry_after,
                    });
                }
                _ => return Err(FetchError::UnexpectedStatus(status)),
            }
        }
    }

    fn get(
        &self,
        url: &HttpUrl,
        original: &HttpUrl,
        deadline: Instant,
    ) -> Result<Response<Body>, FetchError> {
        let timeouts = self.settings.timeouts;
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(FetchError::TotalTimeout {
                after: timeouts.total,
            });
        }
        let request = |fresh: bool| {
            let mut config = self
                .agent
                .get(url.as_uri())
                .config()
                .timeout_global(Some(remaining));
            if fresh {
                // No pooled connection is old enough to qualify: a new one is made (and the
                // idle ones to this origin, as stale as the one that failed, are dropped).
                config = config.max_idle_age(Duration::ZERO);
            }
            self.headers(config.build(), url, original)
        };
        stale::begin();
        match request(false).call() {
            Err(error) if stale::is_stale(&error, stale::trace()) => request(true)
                .call()
                .map_err(|e| self.classify(e, url, None, 0)),
            result => result.map_err(|e| self.classify(e, url, None, 0)),
        }
    }

    fn headers(
        &self,
        mut request: ureq::RequestBuilder<ureq::typestate::WithoutBody>,
        url: &HttpUrl,
        original: &HttpUrl,
    ) -> ureq::RequestBuilder<ureq::typestate::WithoutBody> {
        let same_origin = url.same_origin(original);
        for (name, value) in &self.settings.headers {
            if same_origin || !CREDENTIAL_HEADERS.contains(name) {
                request = request.header(name, value);
            }
        }
        // `user:pass@` in the list's URL: Basic auth for that origin only, unless -H gave one.
        if let Some((user, password)) = original.credentials() {
            let given = self
                .settings
                .headers
                .iter()
                .any(|(name, _)| name == header::AUTHORIZATION);
            if same_origin && !given {
                let token = base64(format!("{user}:{password}").as_bytes());
                request = request.header(header::AUTHORIZATION, format!("Basic {token}"));
            }
        }
        request
    }

    fn save(
        &self,
        mut response: Response<Body>,
        url: HttpUrl,
        destination: Destination<'_>,
        interrupt: &Interrupt,
        buffer: &mut [u8],
    ) -> Result<Saved, FetchError> {
        let status = response.status().as_u16();
        let headers = response.headers();
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let encoded = headers.contains_key(header::CONTENT_ENCODING);
        // RFC 9112 §6.3: a sender must not send both; a response that does is a smuggling
        // vector, and neither length can be trusted.
        if headers.contains_key(header::TRANSFER_ENCODING)
            && headers.contains_key(header::CONTENT_LENGTH)
        {
            return Err(FetchError::Protocol(
                "the response has both Content-Length and Transfer-Encoding".to_owned(),
            ));
        }
        // Only an unencoded length counts body bytes as they will be written.
        let expected = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|_| !encoded);
        let max_size = self.settings.max_size;
        if expected.is_some_and(|length| length > max_size) {
            return Err(FetchError::TooLarge {
                limit: max_size,
                decoded: false,
            });
        }
        let mut partial = destination.out.create_partial(destination.key)?;
        let mut reader = response.body_mut().as_reader();
        let mut received: u64 = 0;
        loop {
            if interrupt.is_triggered() {
                return Err(FetchError::Interrupted);
            }
            let n = match reader.read(buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.classify(e.into(), &url, expected, received)),
            };
            received += n as u64;
            if expected.is_some_and(|e| received > e) {
                return Err(FetchError::Protocol(
                    "the body is longer than its Content-Length".to_owned(),
                ));
            }
            if received > max_size {
                return Err(FetchError::TooLarge {
                    limit: max_size,
                    decoded: true,
                });
            }
            partial.write_all(&buffer[..n])?;
        }
        if let Some(expected) = expected.filter(|&e| e != received) {
            return Err(FetchError::Truncated { received, expected });
        }
        let name = destination.name.final_name(content_type.as_deref());
        let path = partial.commit(&name)?;
        Ok(Saved {
            path,
            status,
            bytes: received,
            final_url: url,
        })
    }

    /// Turns ureq's error into one that names the problem in the user's terms.
    fn classify(
        &self,
        error: ureq::Error,
        url: &HttpUrl,
        expected: Option<u64>,
        received: u64,
    ) -> FetchError {
        let timeouts = self.settings.timeouts;
        let host = url.host_key();
        match error {
            ureq::Error::Timeout(Timeout::Connect | Timeout::Resolve) => {
                FetchError::ConnectTimeout {
                    host,
                    after: timeouts.connect,
                }
            }
            ureq::Error::Timeout(Timeout::PerRead | Timeout::PerWrite) => FetchError::Stalled {
                after: timeouts.stall,
            },
            ureq::Error::Timeout(_) => FetchError::TotalTimeout {
                after: timeouts.total,
            },
            ureq::Error::HostNotFound => FetchError::Resolve {
                host: url.host().to_owned(),
            },
            ureq::Error::ConnectionFailed => FetchError::Connect {
                host,
                reason: "connection failed".to_owned(),
            },
            ureq::Error::Io(e) => match e.kind() {
                io::ErrorKind::ConnectionRefused | io::ErrorKind::AddrNotAvailable => {
                    FetchError::Connect {
                        host,
                        reason: e.to_string(),
                    }
                }
                io::ErrorKind::UnexpectedEof => match expected {
                    Some(expected) => FetchError::Truncated { received, expected },
                    None => FetchError::ConnectionLost(
                        "the server closed the connection before the response was complete"
                            .to_owned(),
                    ),
                },
                io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => {
                    FetchError::ConnectionLost("the connection was reset by the server".to_owned())
                }
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => FetchError::Stalled {
                    after: timeouts.stall,
                },
                _ => FetchError::ConnectionLost(e.to_string()),
            },
            ureq::Error::Decompress(kind, e) => FetchError::Decode(format!("{kind}: {e}")),
            ureq::Error::Protocol(e) => FetchError::Protocol(e.to_string()),
            ureq::Error::LargeResponseHeader(size, limit) => FetchError::Protocol(format!(
                "response headers of {size} bytes exceed the {limit}-byte limit"
            )),
            other => FetchError::Protocol(other.to_string()),
        }
    }
}

/// Standard base64 with padding (RFC 4648 §4), for the Basic scheme: a dozen lines instead of
/// a dependency.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> shift) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_rfc_4648() {
        for (input, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("Aladdin:open sesame", "QWxhZGRpbjpvcGVuIHNlc2FtZQ=="),
        ] {
            assert_eq!(super::base64(input.as_bytes()), encoded);
        }
    }

    use super::*;

    #[test]
    fn messages_name_the_problem() {
        let status = FetchError::Status {
            status: 404,
            retry_after: None,
        };
        assert_eq!(status.to_string(), "HTTP 404 Not Found");
        assert_eq!(status.status(), Some(404));
        assert!(!status.is_retryable());
        let busy = FetchError::Status {
            status: 503,
            retry_after: Some(Duration::from_secs(1)),
        };
        assert!(busy.is_retryable());
        assert_eq!(
            FetchError::Truncated {
                received: 5,
                expected: 10
            }
            .to_string(),
            "truncated: the body ended after 5 of the 10 bytes its Content-Length announced"
        );
        assert_eq!(
            FetchError::TooLarge {
                limit: 1024,
                decoded: true
            }
            .to_string(),
            "too large: the body exceeds --max-size 1 KiB (counting decoded bytes)"
        );
        assert!(FetchError::Stalled {
            after: Duration::from_millis(500)
        }
        .to_string()
        .contains("0.5 s"));
    }

    #[test]
    fn an_interrupt_while_writing_is_not_a_write_error() {
        assert!(matches!(
            FetchError::from(WriteError::Closed),
            FetchError::Interrupted
        ));
    }
}
