//! The command line of `futurepool fetch`, and the parsers for its sizes, durations and headers.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use ureq::http::header::{HeaderName, HeaderValue};

/// Download pages in parallel into a directory, on futurepool's thread pool.
///
/// Pages come from URL arguments and from LIST files (`-` or no argument at all reads standard
/// input). A list has one entry per line: `URL`, `NAME URL`, or a JSON object
/// `{"name": ..., "url": ...}`; blank lines and lines starting with `#` are ignored. Each page is
/// saved as DIR/NAME (plus an extension from its Content-Type when NAME has none and that name
/// is no other entry's), or under a safe name derived from its URL. Names are decided before
/// anything is fetched, in list order, so reruns give the same names.
///
/// Nothing is written outside DIR, and a file appears under its final name only once complete.
/// Ctrl-C stops at once, removes partial files (keeps them with --continue) and still writes
/// the report.
///
/// Exit status: 0 when every entry was saved (or skipped, or not modified), 1 when some failed
/// (the rest are saved), 2 for bad usage or a bad list (nothing is fetched then), 130 when
/// interrupted.
#[derive(Debug, Args)]
#[command(after_help = AFTER_HELP)]
pub(crate) struct FetchArgs {
    /// URLs to fetch and LIST files to read (`-` reads standard input, as does giving neither).
    #[arg(value_name = "URL|LIST|-")]
    pub(crate) inputs: Vec<String>,

    /// Directory to save pages in (created if missing). Nothing is ever written outside it.
    #[arg(short, long, value_name = "DIR", default_value = ".")]
    pub(crate) output: PathBuf,

    /// Concurrent downloads: the thread pool's size.
    #[arg(short, long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub(crate) jobs: u32,

    /// Total time allowed for one attempt, redirects and body included.
    #[arg(long, value_name = "SECS", default_value = "60", value_parser = parse_seconds)]
    pub(crate) timeout: Duration,

    /// Time allowed to establish a connection.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_seconds)]
    pub(crate) connect_timeout: Duration,

    /// Longest wait for the next byte from the server before the attempt is abandoned.
    #[arg(long, value_name = "SECS", default_value = "20", value_parser = parse_seconds)]
    pub(crate) stall_timeout: Duration,

    /// Retries after a 408, 429 or 5xx status, a connection error or a timeout.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub(crate) retries: u32,

    /// First pause between retries; it doubles each time (with jitter), unless the server's
    /// Retry-After says otherwise.
    #[arg(long, value_name = "SECS", default_value = "1", value_parser = parse_seconds)]
    pub(crate) backoff: Duration,

    /// Largest body accepted, counted after decompression: bytes, or with a K/KiB, M/MiB, G/GiB
    /// (1024-based) or KB/MB/GB (1000-based) suffix.
    #[arg(long, value_name = "SIZE", default_value = "100MiB", value_parser = parse_size)]
    pub(crate) max_size: u64,

    /// Concurrent requests allowed to one host (host:port); default: no cap below --jobs.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) per_host: Option<u32>,

    /// Requests per second allowed to one host (host:port), redirects and retries included:
    /// `2`, `2/s`, `30/m`, `100/h`. Requests are spaced evenly (a token bucket holding one).
    #[arg(long, value_name = "N[/s]", value_parser = parse_rate)]
    pub(crate) rate: Option<f64>,

    /// Bandwidth for the whole run, all downloads together, in bytes per second (same units
    /// as --max-size: `500K`, `2MiB`).
    #[arg(long, value_name = "SIZE", value_parser = parse_bandwidth)]
    pub(crate) limit_rate: Option<u64>,

    /// Resume: a download that fails or is interrupted keeps its partial file, and the next
    /// run asks for the rest (Range + If-Range). A server that answers 200 instead of 206, or
    /// whose page changed, sends it whole again.
    #[arg(short = 'c', long = "continue")]
    pub(crate) resume: bool,

    /// Fetch only what changed: remember each entry's ETag and Last-Modified in
    /// DIR/.futurepool-state.json and ask with If-None-Match / If-Modified-Since; a 304 leaves
    /// the file untouched and is reported as not_modified.
    #[arg(short = 'N', long)]
    pub(crate) update: bool,

    /// Proxy for every request (`http://[user:pass@]host:port`), instead of the http_proxy,
    /// https_proxy, all_proxy and no_proxy environment variables.
    #[arg(long, value_name = "URL")]
    pub(crate) proxy: Option<String>,

    /// Write one JSON line per entry to FILE (fields listed below); `-` writes to standard
    /// output.
    #[arg(long, value_name = "FILE")]
    pub(crate) report: Option<PathBuf>,

    /// Skip entries whose file already exists in DIR.
    #[arg(long)]
    pub(crate) skip_existing: bool,

    /// Extra request header, `Name: value`; repeatable. Authorization and Cookie are not sent
    /// along a redirect to another host.
    #[arg(short = 'H', long = "header", value_name = "'K: V'", value_parser = parse_header)]
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,

    /// No progress bar and no summary (failures are still reported on stderr).
    #[arg(short, long)]
    pub(crate) quiet: bool,
}

pub(crate) const AFTER_HELP: &str = "\
Report fields (--report, one JSON object per entry, in list order):
  source        the LIST the entry came from (`<stdin>`, or `<args>` for URL arguments)
  line          its line in that list (its position among the URL arguments)
  url           the URL (normalized; never with a password)
  final_url     where the page was fetched from after redirects (null unless saved)
  name          the entry's name: its NAME, or the one derived from the URL
  path          the saved file (with any extension from the Content-Type); null on failure
  status        HTTP status of the final response, if one arrived
  bytes         body bytes written by this run (decoded)
  resumed_from  bytes already on disk that --continue resumed after (0 otherwise)
  attempts      attempts made (a resend after a stale pooled connection is not one)
  elapsed_ms    time spent on the entry
  error         null on success, else what went wrong
  skipped       true when --skip-existing found the file and nothing was fetched
  not_modified  true when --update's conditional request got 304 (file untouched)

Proxies: http_proxy for http:// URLs, https_proxy (or HTTPS_PROXY) for https://, all_proxy
(or ALL_PROXY) for both; no_proxy (or NO_PROXY) lists hosts to reach directly (`*`, a host, or
a domain, which covers its subdomains). --proxy overrides them all. http:// URLs are
forwarded to the proxy (`GET http://...`), https:// URLs tunnelled with CONNECT.

Examples:
  futurepool fetch https://example.com/a https://example.com/b
  futurepool fetch pages.txt more.txt -o out -j 20 --report report.jsonl
  futurepool fetch pages.txt -o out --update --rate 5/s -c";

/// A positive size, for `--limit-rate`.
fn parse_bandwidth(text: &str) -> Result<u64, String> {
    match parse_size(text)? {
        0 => Err(format!(
            "{text:?}: expected a positive number of bytes per second"
        )),
        n => Ok(n),
    }
}

/// Requests per second: `2`, `0.5`, `2/s`, `30/m`, `100/h`.
fn parse_rate(text: &str) -> Result<f64, String> {
    let (number, per) = match text.trim().split_once('/') {
        Some((n, unit)) => (n.trim(), unit.trim()),
        None => (text.trim(), "s"),
    };
    let seconds = match per {
        "s" | "sec" | "second" => 1.0,
        "m" | "min" | "minute" => 60.0,
        "h" | "hour" => 3600.0,
        _ => return Err(format!("{text:?}: expected N, N/s, N/m or N/h")),
    };
    let n: f64 = number
        .parse()
        .map_err(|_| format!("{text:?}: {number:?} is not a number"))?;
    if !(n > 0.0 && n <= 1e6) {
        return Err(format!("{text:?}: expected a positive rate"));
    }
    // Slower than one a day is a typo, and its interval would not fit a `Duration`.
    if n / seconds < 1.0 / 86_400.0 {
        return Err(format!("{text:?}: expected at least one request a day"));
    }
    Ok(n / seconds)
}

/// Seconds, fractions allowed: `30`, `0.5`.
fn parse_seconds(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if !(seconds > 0.0 && seconds <= 1e9) {
        return Err(format!("{text:?}: expected a positive number of seconds"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// A size with an optional unit: `1048576`, `512K`, `100MiB`, `2GB`.
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size (expected e.g. 500K, 100MiB, 2G)"))?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "ki" | "kib" => 1 << 10,
        "m" | "mi" | "mib" => 1 << 20,
        "g" | "gi" | "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        _ => {
            return Err(format!(
                "{text:?}: unknown size unit {unit:?} (use KiB, MiB or GiB)"
            ))
        }
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// A byte count the way people read it: `512 B`, `1 KiB`, `1.5 MiB`.
pub(crate) fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64;
    let mut unit = "B";
    for candidate in UNITS {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = candidate;
    }
    let text = format!("{value:.1}");
    let text = text.strip_suffix(".0").unwrap_or(&text);
    format!("{text} {unit}")
}

/// `Name: value`.
fn parse_header(text: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| format!("{text:?}: expected 'Name: value'"))?;
    let name = HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| format!("{text:?}: {:?} is not a valid header name", name.trim()))?;
    let value = HeaderValue::from_str(value.trim())
        .map_err(|_| format!("{text:?}: the value contains characters not allowed in a header"))?;
    Ok((name, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1000"), Ok(1000));
        assert_eq!(parse_size("4K"), Ok(4096));
        assert_eq!(parse_size("100MiB"), Ok(100 << 20));
        assert_eq!(parse_size("2 gib"), Ok(2 << 30));
        assert_eq!(parse_size("3MB"), Ok(3_000_000));
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("99999999999999GiB").is_err());
    }

    #[test]
    fn sizes_read_back() {
        assert_eq!(format_size(512), "512 B");
        assert_eq!(format_size(1024), "1 KiB");
        assert_eq!(format_size(1536 * 1024), "1.5 MiB");
        assert_eq!(format_size(100 << 20), "100 MiB");
    }

    #[test]
    fn seconds() {
        assert_eq!(parse_seconds("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_seconds("30"), Ok(Duration::from_secs(30)));
        assert!(parse_seconds("0").is_err());
        assert!(parse_seconds("-1").is_err());
        assert!(parse_seconds("NaN").is_err());
        assert!(parse_seconds("soon").is_err());
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("2"), Ok(2.0));
        assert_eq!(parse_rate("2/s"), Ok(2.0));
        assert_eq!(parse_rate("30/m"), Ok(0.5));
        assert_eq!(parse_rate("3600/h"), Ok(1.0));
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("2/fortnight").is_err());
        assert!(parse_rate("fast").is_err());
        // 1e-300/s passed and panicked in Duration::from_secs_f64(1 / rate).
        assert!(parse_rate("1e-300").is_err());
        assert!(parse_rate("0.5/h").is_ok());
        assert!(parse_rate("0.01/h").is_err());
    }

    #[test]
    fn headers() {
        let (name, value) = parse_header("X-Token:  abc ").unwrap();
        assert_eq!((name.as_str(), value.to_str().unwrap()), ("x-token", "abc"));
        assert!(parse_header("no colon").is_err());
        assert!(parse_header("bad name: x").is_err());
        assert!(parse_header("X: a\u{7f}b").is_err());
    }
}
