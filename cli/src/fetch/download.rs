//! One entry, start to finish: GET with timeouts, redirects followed by hand (so every hop is
//! checked), retries with backoff, the size limit on decoded bytes, and the atomic write.

use std::cell::{Cell, RefCell};
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
use super::output::{OutputDir, ResumeMeta, WriteError};
use super::polite::{Bandwidth, HostRate, Stopped};
use super::proxy::{Proxies, Route};
use super::resolver::CachingResolver;
use super::retry::{self, Backoff, MAX_RETRY_AFTER};
use super::stale::{self, TraceConnector};
use super::url::{redact, HttpUrl, UrlError};

/// The largest response head accepted (status line and headers), and so the size of each
/// connection's input buffer: Node.js's HTTP client default, and twice what nginx or Apache in
/// front of an application pass on by default. A larger head fails with a message naming this
/// limit. At -j 64 each halving of it is 1 MB.
const RESPONSE_HEAD_LIMIT: usize = 16 * 1024;

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
    /// `--continue`: keep partial files and resume them.
    pub(crate) resume: bool,
    /// `--rate`: requests per second per host.
    pub(crate) rate: Option<f64>,
    /// `--limit-rate`: bytes per second, all downloads together.
    pub(crate) limit_rate: Option<u64>,
    pub(crate) proxies: Proxies,
}

impl Default for DownloadSettings {
    /// The command's defaults.
    fn default() -> Self {
        DownloadSettings {
            timeouts: Timeouts {
                connect: Duration::from_secs(10),
                stall: Duration::from_secs(20),
                total: Duration::from_secs(60),
            },
            retries: 3,
            backoff: Duration::from_secs(1),
            max_size: 100 << 20,
            headers: Vec::new(),
            idle_connections: 10,
            resume: false,
            rate: None,
            limit_rate: None,
            proxies: Proxies::default(),
        }
    }
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
    #[error("truncated: the file has {received} of the {total} bytes its Content-Range announced (-c resumes it)")]
    TruncatedRange { received: u64, total: u64 },
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
    /// A resumed download the server answered with the wrong range: retried from zero.
    #[error("cannot resume: {0}; the next attempt starts from the beginning")]
    BadRange(String),
    #[error("proxy: {0}")]
    Proxy(String),
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
            | FetchError::TruncatedRange { .. }
            | FetchError::BadRange(_)
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

/// A saved response (or, after a 304, the file it confirmed).
#[derive(Debug, Clone)]
pub(crate) struct Saved {
    pub(crate) path: PathBuf,
    pub(crate) status: u16,
    /// Body bytes written by this attempt.
    pub(crate) bytes: u64,
    pub(crate) final_url: HttpUrl,
    /// A conditional request got 304: the file was left as it was.
    pub(crate) not_modified: bool,
    /// Bytes a previous run had left that this one continued after.
    pub(crate) resumed_from: u64,
    /// The final response's validators, for `--update`.
    pub(crate) etag: Option<String>,
    pub(crate) last_modified: Option<String>,
}

/// `--update`: the copy on disk and what its response said about its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Conditional {
    pub(crate) path: PathBuf,
    pub(crate) etag: Option<String>,
    pub(crate) last_modified: Option<String>,
}

/// A `--continue` request for the rest of a kept partial file.
#[derive(Debug, Clone)]
struct Resume {
    offset: u64,
    if_range: String,
}

/// Where an entry's response goes.
#[derive(Clone, Copy)]
pub(crate) struct Destination<'a> {
    /// The entry's index, which [`OutputDir::committed`] reports by.
    pub(crate) key: usize,
    /// Saved under its base, plus the Content-Type's extension when allowed.
    pub(crate) name: &'a EntryName,
    pub(crate) out: &'a OutputDir,
    /// Ask only for a newer version than this (`--update`).
    pub(crate) conditional: Option<&'a Conditional>,
    /// True while the orchestrator has already taken the `--rate` slot of the first request;
    /// the request that uses it sets it false.
    pub(crate) rate_prepaid: &'a Cell<bool>,
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
    rate: Option<HostRate>,
    bandwidth: Option<Bandwidth>,
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
            // ureq would read one proxy for every scheme from the environment; `Proxies`
            // chooses per request.
            .proxy(None)
            // ureq's 128 KiB per direction per connection is sized for a few connections; at
            // -j 64 it was most of the memory. The input buffer holds the whole response head,
            // so it is also the limit on it. The output buffer must hold the longest request
            // line: a URL of up to about 8 KiB.
            .input_buffer_size(RESPONSE_HEAD_LIMIT)
            // One byte less than the buffer: a full buffer without a complete head must read
            // as "too large", not as a connection that stopped making progress.
            .max_response_header_size(RESPONSE_HEAD_LIMIT - 1)
            .output_buffer_size(8 * 1024)
            .build();
        let connector = DefaultConnector::new().chain(TraceConnector);
        let agent = Agent::with_parts(config, connector, CachingResolver::default());
        Downloader {
            agent,
            rate: settings.rate.map(HostRate::new),
            bandwidth: settings.limit_rate.map(Bandwidth::new),
            settings,
        }
    }

    /// `--rate`'s buckets, which the orchestrator consults before it starts an entry.
    pub(crate) fn host_rate(&self) -> Option<&HostRate> {
        self.rate.as_ref()
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
            static BUFFER: RefCell<Vec<u8>> = RefCell::new(vec![0; 8 * 1024]);
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
        // The first request's `--rate` slot is waited for before the attempt's clock starts,
        // like a backoff; a redirect's must come before the attempt's deadline.
        self.take_rate_slot(url, destination.rate_prepaid, interrupt, None)?;
        let deadline = Instant::now()
            .checked_add(self.settings.timeouts.total)
            .unwrap_or_else(far_future);
        let resume = self.resume_point(url, destination);
        // A partial file is not the page: only a complete copy is asked about.
        let mut conditional = destination.conditional.filter(|_| resume.is_none());
        let mut current = url.clone();
        let mut visited = vec![url.clone()];
        loop {
            let request = Extra {
                conditional,
                resume: resume.as_ref(),
            };
            if visited.len() > 1 {
                let prepaid = destination.rate_prepaid;
                self.take_rate_slot(&current, prepaid, interrupt, Some(deadline))?;
            }
            let response = self.get(&current, url, deadline, request)?;
            let status = response.status().as_u16();
            match status {
                // The copy the 304 confirms was removed during the run: "not modified" would
                // report a file that is not there. Asked again, unconditionally (once: the
                // conditional is gone).
                304 if conditional.is_some_and(|known| !known.path.is_file()) => {
                    conditional = None;
                }
                304 if conditional.is_some() => {
                    let known = conditional.expect("checked");
                    let (etag, last_modified) = validators(response.headers());
                    return Ok(Saved {
                        path: known.path.clone(),
                        status,
                        bytes: 0,
                        final_url: current,
                        not_modified: true,
                        resumed_from: 0,
                        // A 304 may repeat the validators or leave them out.
                        etag: etag.or_else(|| known.etag.clone()),
                        last_modified: last_modified.or_else(|| known.last_modified.clone()),
                    });
                }
                416 if resume.is_some() => {
                    destination.out.discard_resumable(&destination.name.base);
                    return Err(FetchError::BadRange(
                        "the server refused the range of the kept partial file (HTTP 416)"
                            .to_owned(),
                    ));
                }
                200..=299 => {
                    let to = SaveTo {
                        destination,
                        original: url,
                        deadline,
                        resume: resume.as_ref(),
                    };
                    return self.save(response, current, to, interrupt, buffer);
                }
                301 | 302 | 303 | 307 | 308 => {
                    // Not `to_str`, which takes visible ASCII only: servers send raw UTF-8,
                    // which browsers and curl percent-encode and follow (`join` does).
                    let location = response
                        .headers()
                        .get(header::LOCATION)
                        .map(|v| String::from_utf8_lossy(v.as_bytes()))
                        .ok_or(FetchError::RedirectWithoutLocation(status))?;
                    let next = current.join(&location).map_err(FetchError::BadRedirect)?;
                    if visited.contains(&next) {
                        return Err(FetchError::RedirectLoop(next.to_string()));
                    }
                    if visited.len() > MAX_REDIRECTS as usize {
                        return Err(FetchError::TooManyRedirects);
                    }
                    visited.push(next.clone());
                    current = next;
                }
                // Only a proxy sends it (forwarding http:// URLs); CONNECT refusals come as
                // ureq's ConnectProxyFailed.
                407 => {
                    return Err(FetchError::Proxy(
                        "the proxy answered HTTP 407 Proxy Authentication Required (give its \
                         credentials as http://user:password@host:port)"
                            .to_owned(),
                    ))
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

    /// With `--continue`: the kept partial file of this entry, if it is of this URL and has a
    /// validator `If-Range` can use (a strong ETag, or else Last-Modified). Anything else is
    /// discarded, and the page is fetched whole.
    fn resume_point(&self, url: &HttpUrl, destination: Destination<'_>) -> Option<Resume> {
        if !self.settings.resume {
            return None;
        }
        let name = &destination.name.base;
        let (offset, meta) = destination.out.resumable(name)?;
        let if_range = meta
            .etag
            .filter(|etag| !etag.starts_with("W/"))
            .or(meta.last_modified);
        match if_range {
            Some(if_range) if offset > 0 && meta.url == url.to_string() => {
                Some(Resume { offset, if_range })
            }
            _ => {
                destination.out.discard_resumable(name);
                None
            }
        }
    }

    /// `--rate`: waits for `url`'s host's next request slot (unless the orchestrator took it
    /// already, `prepaid`), never past `deadline`.
    fn take_rate_slot(
        &self,
        url: &HttpUrl,
        prepaid: &Cell<bool>,
        interrupt: &Interrupt,
        deadline: Option<Instant>,
    ) -> Result<(), FetchError> {
        let Some(rate) = self.rate.as_ref().filter(|_| !prepaid.replace(false)) else {
            return Ok(());
        };
        rate.acquire(&url.host_key(), interrupt, deadline)
            .map_err(|stopped| match stopped {
                Stopped::Interrupted => FetchError::Interrupted,
                Stopped::Deadline => FetchError::TotalTimeout {
                    after: self.settings.timeouts.total,
                },
            })
    }

    fn get(
        &self,
        url: &HttpUrl,
        original: &HttpUrl,
        deadline: Instant,
        extra: Extra<'_>,
    ) -> Result<Response<Body>, FetchError> {
        let timeouts = self.settings.timeouts;
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(FetchError::TotalTimeout {
                after: timeouts.total,
            });
        }
        let route = self.settings.proxies.route(url);
        let (target, tunnel, forward) = match &route {
            Route::Direct => (url.as_str().to_owned(), None, None),
            Route::Tunnel(proxy) => (url.as_str().to_owned(), Some(proxy.clone()), None),
            // To the proxy, for the target's path; the transport wrapper puts the whole URL in
            // the request line.
            Route::Forward(forward) => {
                let path = &url.as_str()[url.origin_len()..];
                (format!("{}{path}", forward.base), None, Some(forward))
            }
        };
        let request = |fresh: bool| {
            let mut config = self
                .agent
                .get(&target)
                .config()
                .timeout_global(Some(remaining))
                .proxy(tunnel.clone());
            if fresh {
                // No pooled connection is old enough to qualify: a new one is made (and the
                // idle ones to this origin, as stale as the one that failed, are dropped).
                config = config.max_idle_age(Duration::ZERO);
            }
            let mut request = self.headers(config.build(), url, original, extra);
            if let Some(forward) = forward {
                request = request.header(header::HOST, url.authority());
                if let Some((user, password)) = &forward.credentials {
                    let token = base64(format!("{user}:{password}").as_bytes());
                    request = request.header(header::PROXY_AUTHORIZATION, format!("Basic {token}"));
                }
            }
            request
        };
        let send = |fresh: bool| {
            stale::forward_next_request(forward.map(|_| url.as_str().to_owned()));
            let result = request(fresh).call();
            // Not consumed if the call failed before sending: it must not reach another request.
            stale::forward_next_request(None);
            result
        };
        // Through a proxy, a failure to connect is the proxy's, not the target's; say which.
        let proxy_shown = match &route {
            Route::Direct => None,
            Route::Tunnel(proxy) => Some(proxy_address(proxy)),
            Route::Forward(forward) => Some(redact(&forward.base)),
        };
        let classify = |e| match (&proxy_shown, self.classify(e, url, None, 0)) {
            (Some(proxy), FetchError::Connect { reason, .. }) => {
                FetchError::Proxy(format!("cannot connect to {proxy}: {reason}"))
            }
            (Some(proxy), FetchError::ConnectTimeout { after, .. }) => FetchError::Proxy(format!(
                "no connection to {proxy} within {}",
                seconds(after)
            )),
            (Some(proxy), FetchError::Proxy(why)) => {
                FetchError::Proxy(connect_refused(proxy, &why))
            }
            (_, error) => error,
        };
        stale::begin();
        match send(false) {
            Err(error) if stale::is_stale(&error, stale::trace()) => send(true).map_err(classify),
            result => result.map_err(classify),
        }
    }

    fn headers(
        &self,
        mut request: ureq::RequestBuilder<ureq::typestate::WithoutBody>,
        url: &HttpUrl,
        original: &HttpUrl,
        extra: Extra<'_>,
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
        if let Some(known) = extra.conditional {
            if let Some(etag) = &known.etag {
                request = request.header(header::IF_NONE_MATCH, etag);
            }
            if let Some(date) = &known.last_modified {
                request = request.header(header::IF_MODIFIED_SINCE, date);
            }
        }
        if self.settings.resume {
            // Byte offsets must count the bytes as stored: no content coding.
            request = request.header(header::ACCEPT_ENCODING, "identity");
        }
        if let Some(resume) = extra.resume {
            request = request
                .header(header::RANGE, format!("bytes={}-", resume.offset))
                .header(header::IF_RANGE, &resume.if_range);
        }
        request
    }

    fn save(
        &self,
        mut response: Response<Body>,
        url: HttpUrl,
        to: SaveTo<'_>,
        interrupt: &Interrupt,
        buffer: &mut [u8],
    ) -> Result<Saved, FetchError> {
        let SaveTo {
            destination,
            original,
            deadline,
            resume,
        } = to;
        let status = response.status().as_u16();
        let headers = response.headers();
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let (etag, last_modified) = validators(headers);
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
        // 206: the rest of the kept file, checked against Content-Range; any other 2xx is the
        // whole page (the server ignored the range, or If-Range found the page changed).
        let (offset, total, expected) = match (status, resume) {
            (206, Some(resume)) => {
                let range = headers
                    .get(header::CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                // A server that ignores If-Range answers a Range with a 206 of its current
                // version: its validator must be the kept bytes' one, or the two versions
                // would be spliced into a file that looks complete.
                let is_etag = resume.if_range.starts_with('"') || resume.if_range.starts_with("W/");
                let version = if is_etag { &etag } else { &last_modified };
                let same_version = version.as_ref().is_none_or(|v| *v == resume.if_range);
                match parse_content_range(range) {
                    Some((start, end, total))
                        if start == resume.offset
                            && !encoded
                            && same_version
                            && expected.is_none_or(|e| e == end + 1 - start) =>
                    {
                        // The range's length bounds the body even without Content-Length:
                        // nothing beyond it may reach the kept file.
                        (start, total, Some(end + 1 - start))
                    }
                    _ => {
                        destination.out.discard_resumable(&destination.name.base);
                        let why = match same_version {
                            true => format!(
                                "asked for bytes from {}, the server sent Content-Range {range:?}",
                                resume.offset
                            ),
                            false => format!(
                                "the server sent part of another version ({} instead of {}) \
                                 and ignored If-Range",
                                version.as_deref().unwrap_or_default(),
                                resume.if_range
                            ),
                        };
                        return Err(FetchError::BadRange(why));
                    }
                }
            }
            (206, None) => {
                return Err(FetchError::Protocol(
                    "HTTP 206 Partial Content to a request for the whole page".to_owned(),
                ))
            }
            _ => (0, None, expected),
        };
        let max_size = self.settings.max_size;
        if expected.is_some_and(|length| offset.saturating_add(length) > max_size) {
            return Err(FetchError::TooLarge {
                limit: max_size,
                decoded: false,
            });
        }
        let strong_etag = etag.as_ref().filter(|e| !e.starts_with("W/"));
        let resumable =
            self.settings.resume && !encoded && (strong_etag.is_some() || last_modified.is_some());
        let mut partial = if resumable {
            // The entry's URL, not the redirect's target: the next attempt looks the kept
            // file up by the URL it starts from.
            let meta = ResumeMeta {
                url: original.to_string(),
                etag: etag.clone(),
                last_modified: last_modified.clone(),
            };
            let base = &destination.name.base;
            match destination
                .out
                .open_resumable(destination.key, base, offset > 0, &meta)
            {
                Ok(partial) => partial,
                // Something that is not our file sits under the resume name (a directory, a
                // symlink, which is never followed): `-c` only saves time, so the page is
                // still fetched, into an ordinary partial file. A 206 continues the kept
                // bytes and has nowhere else to go.
                Err(WriteError::Io { .. }) if offset == 0 => {
                    destination.out.create_partial(destination.key)?
                }
                Err(error) => return Err(error.into()),
            }
        } else {
            if resume.is_some() {
                destination.out.discard_resumable(&destination.name.base);
            }
            destination.out.create_partial(destination.key)?
        };
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
                    "the body is longer than announced (Content-Length or Content-Range)"
                        .to_owned(),
                ));
            }
            if offset + received > max_size {
                return Err(FetchError::TooLarge {
                    limit: max_size,
                    decoded: true,
                });
            }
            partial.write_all(&buffer[..n])?;
            if let Some(bandwidth) = &self.bandwidth {
                match bandwidth.consume(n, interrupt, deadline) {
                    Ok(()) => {}
                    Err(Stopped::Interrupted) => return Err(FetchError::Interrupted),
                    Err(Stopped::Deadline) => {
                        return Err(FetchError::TotalTimeout {
                            after: self.settings.timeouts.total,
                        })
                    }
                }
            }
        }
        if let Some(expected) = expected.filter(|&e| e != received) {
            return Err(FetchError::Truncated { received, expected });
        }
        if let Some(total) = total.filter(|&t| t != offset + received) {
            return Err(FetchError::TruncatedRange {
                received: offset + received,
                total,
            });
        }
        let name = destination.name.final_name(content_type.as_deref());
        let path = partial.commit(&name)?;
        Ok(Saved {
            path,
            status,
            bytes: received,
            final_url: url,
            not_modified: false,
            resumed_from: offset,
            etag,
            last_modified,
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
            ureq::Error::ConnectProxyFailed(why) => FetchError::Proxy(why),
            ureq::Error::Decompress(kind, e) => FetchError::Decode(format!("{kind}: {e}")),
            ureq::Error::Protocol(e) => FetchError::Protocol(e.to_string()),
            ureq::Error::LargeResponseHeader(..) => FetchError::Protocol(format!(
                "the response headers exceed this tool's limit of {} KiB",
                RESPONSE_HEAD_LIMIT / 1024
            )),
            other => FetchError::Protocol(other.to_string()),
        }
    }
}

/// Where and how a final response's body is saved.
#[derive(Clone, Copy)]
struct SaveTo<'a> {
    destination: Destination<'a>,
    /// The entry's URL (the response may come from a redirect's target).
    original: &'a HttpUrl,
    /// The attempt's deadline, which `--limit-rate` waits must not pass.
    deadline: Instant,
    resume: Option<&'a Resume>,
}

/// `scheme://host:port` of a proxy, without its credentials.
fn proxy_address(proxy: &ureq::Proxy) -> String {
    let scheme = match proxy.protocol() {
        ureq::ProxyProtocol::Https => "https",
        _ => "http",
    };
    let host = proxy.host();
    match host.contains(':') && !host.starts_with('[') {
        true => format!("{scheme}://[{host}]:{}", proxy.port()),
        false => format!("{scheme}://{host}:{}", proxy.port()),
    }
}

/// ureq's "proxy server responded 407/407" for a refused CONNECT, in the user's terms.
fn connect_refused(proxy: &str, why: &str) -> String {
    let status = why
        .strip_prefix("proxy server responded ")
        .and_then(|rest| rest.split('/').next())
        .and_then(|code| code.trim().parse::<u16>().ok());
    match status {
        Some(407) => format!(
            "{proxy} answered HTTP 407 Proxy Authentication Required to CONNECT (give its \
             credentials as http://user:password@host:port)"
        ),
        Some(status) => format!(
            "{proxy} refused to open a tunnel (CONNECT answered HTTP {status}{})",
            reason_suffix(status)
        ),
        None => format!("{proxy}: {why}"),
    }
}

/// What a request carries beyond the URL and the user's headers.
#[derive(Clone, Copy)]
struct Extra<'a> {
    conditional: Option<&'a Conditional>,
    resume: Option<&'a Resume>,
}

/// ETag and Last-Modified of a response.
fn validators(headers: &header::HeaderMap) -> (Option<String>, Option<String>) {
    let get = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    (get(header::ETAG), get(header::LAST_MODIFIED))
}

/// `bytes START-END/TOTAL` (TOTAL may be `*`): start, end (inclusive) and total.
fn parse_content_range(value: &str) -> Option<(u64, u64, Option<u64>)> {
    let range = value.trim().strip_prefix("bytes ")?;
    let (span, total) = range.split_once('/')?;
    let (start, end) = span.split_once('-')?;
    let (start, end): (u64, u64) = (start.trim().parse().ok()?, end.trim().parse().ok()?);
    let total = match total.trim() {
        "*" => None,
        n => Some(n.parse::<u64>().ok()?),
    };
    (start <= end && total.is_none_or(|t| end < t)).then_some((start, end, total))
}

/// A deadline a year away, for a `--timeout` too large to add to now (it never happens with
/// the parser's limit, but the sum is checked all the same).
fn far_future() -> Instant {
    let now = Instant::now();
    now.checked_add(Duration::from_secs(86_400 * 365))
        .unwrap_or(now)
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
    fn content_ranges() {
        use super::parse_content_range as parse;
        assert_eq!(parse("bytes 10-19/20"), Some((10, 19, Some(20))));
        assert_eq!(parse("bytes 0-0/*"), Some((0, 0, None)));
        assert_eq!(parse("bytes 10-19/15"), None);
        assert_eq!(parse("bytes 5-4/10"), None);
        assert_eq!(parse("items 0-1/2"), None);
        assert_eq!(parse(""), None);
    }

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
