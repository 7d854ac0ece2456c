//! URLs the downloader accepts: absolute `http` and `https` only, and how a redirect's `Location`
//! resolves against the URL that sent it.

use std::fmt;

use ureq::http::uri::{Scheme, Uri};

/// Why a URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum UrlError {
    /// Not a URL at all (the parser's complaint is included).
    #[error("malformed URL {url:?}: {reason}")]
    Malformed { url: String, reason: String },
    /// A scheme other than http or https, e.g. `file://` or `ftp://`.
    #[error("unsupported scheme {scheme:?} in {url:?}: only http and https are fetched")]
    UnsupportedScheme { url: String, scheme: String },
    /// `http:///path` and the like.
    #[error("URL {url:?} has no host")]
    NoHost { url: String },
}

/// An absolute `http` or `https` URL.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct HttpUrl {
    uri: Uri,
}

impl HttpUrl {
    /// Parses `text`, refusing anything but an absolute http(s) URL with a host.
    pub(crate) fn parse(text: &str) -> Result<HttpUrl, UrlError> {
        let malformed = |reason: &dyn fmt::Display| UrlError::Malformed {
            url: text.to_owned(),
            reason: reason.to_string(),
        };
        // Named before parsing: the parser refuses `file:///x` as malformed, but the user should
        // hear that the scheme is the problem.
        if let Some((scheme, _)) = text.split_once(':').filter(|(s, _)| is_scheme_name(s)) {
            if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
                return Err(UrlError::UnsupportedScheme {
                    url: text.to_owned(),
                    scheme: scheme.to_owned(),
                });
            }
        }
        // A fragment is never sent to the server; dropping it here keeps the parser (which rejects
        // '#') from refusing perfectly good links copied from a browser.
        let without_fragment = text.split('#').next().unwrap_or_default();
        let uri: Uri = without_fragment.parse().map_err(|e| malformed(&e))?;
        let Some(scheme) = uri.scheme() else {
            return Err(malformed(
                &"not an absolute URL (expected http://… or https://…)",
            ));
        };
        if *scheme != Scheme::HTTP && *scheme != Scheme::HTTPS {
            return Err(UrlError::UnsupportedScheme {
                url: text.to_owned(),
                scheme: scheme.as_str().to_owned(),
            });
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err(UrlError::NoHost {
                url: text.to_owned(),
            });
        }
        Ok(HttpUrl { uri })
    }

    /// The URL as sent on the wire.
    pub(crate) fn as_uri(&self) -> &Uri {
        &self.uri
    }

    /// `host:port`, lower-cased, with the scheme's default port filled in: the unit of `--per-host`.
    pub(crate) fn host_key(&self) -> String {
        let host = self.uri.host().unwrap_or_default().to_ascii_lowercase();
        let port = self.uri.port_u16().unwrap_or(self.default_port());
        format!("{host}:{port}")
    }

    fn default_port(&self) -> u16 {
        if self.uri.scheme() == Some(&Scheme::HTTPS) {
            443
        } else {
            80
        }
    }

    /// Scheme, host and port: a redirect that changes any of them leaves the origin the user's
    /// credentials were meant for.
    pub(crate) fn same_origin(&self, other: &HttpUrl) -> bool {
        self.uri.scheme() == other.uri.scheme() && self.host_key() == other.host_key()
    }

    /// The path without its query, percent-encoded as in the URL.
    pub(crate) fn path(&self) -> &str {
        self.uri.path()
    }

    /// Resolves a `Location` header value against this URL (RFC 3986 §5.2, the cases servers
    /// send: absolute, scheme-relative, absolute-path, relative-path and query-only).
    pub(crate) fn join(&self, location: &str) -> Result<HttpUrl, UrlError> {
        let location = location.trim();
        let scheme = self.uri.scheme_str().unwrap_or("http");
        let authority = self.uri.authority().map(|a| a.as_str()).unwrap_or_default();
        let has_scheme = location
            .split_once(':')
            .is_some_and(|(s, _)| is_scheme_name(s));
        let absolute = if has_scheme {
            location.to_owned()
        } else if let Some(rest) = location.strip_prefix("//") {
            format!("{scheme}://{rest}")
        } else if location.starts_with('/') {
            format!("{scheme}://{authority}{location}")
        } else if location.starts_with('?') {
            format!("{scheme}://{authority}{}{location}", self.uri.path())
        } else if location.is_empty() {
            return Err(UrlError::Malformed {
                url: location.to_owned(),
                reason: "empty Location".to_owned(),
            });
        } else {
            let path = self.uri.path();
            let directory = &path[..path.rfind('/').map_or(0, |i| i + 1)];
            format!(
                "{scheme}://{authority}{}",
                remove_dot_segments(&format!("{directory}{location}"))
            )
        };
        HttpUrl::parse(&absolute)
    }
}

/// RFC 3986 §3.1: `ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`.
fn is_scheme_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// Collapses `.` and `..` segments of a relative reference merged with its base path.
fn remove_dot_segments(path_and_query: &str) -> String {
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').collect();
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match *segment {
            "." => {
                if last {
                    out.push("");
                }
            }
            ".." => {
                if out.len() > 1 {
                    out.pop();
                }
                if last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    let mut joined = out.join("/");
    if !joined.starts_with('/') {
        joined.insert(0, '/');
    }
    match query {
        Some(q) => format!("{joined}?{q}"),
        None => joined,
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.uri.fmt(f)
    }
}

impl fmt::Debug for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HttpUrl({})", self.uri)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> HttpUrl {
        HttpUrl::parse(s).unwrap()
    }

    #[test]
    fn accepts_http_and_https_only() {
        assert!(HttpUrl::parse("http://example.com/").is_ok());
        assert!(HttpUrl::parse("HTTPS://example.com:8443/a?b=c").is_ok());
        assert!(matches!(
            HttpUrl::parse("file:///etc/passwd"),
            Err(UrlError::UnsupportedScheme { .. })
        ));
        assert!(matches!(
            HttpUrl::parse("ftp://example.com/x"),
            Err(UrlError::UnsupportedScheme { .. })
        ));
        assert!(matches!(
            HttpUrl::parse("example.com/x"),
            Err(UrlError::Malformed { .. })
        ));
        assert!(HttpUrl::parse("http://exa mple.com/").is_err());
    }

    #[test]
    fn drops_the_fragment() {
        assert_eq!(url("http://h/p#frag").to_string(), "http://h/p");
    }

    #[test]
    fn host_key_fills_in_default_ports_and_lowercases() {
        assert_eq!(url("http://Example.COM/x").host_key(), "example.com:80");
        assert_eq!(url("https://example.com/x").host_key(), "example.com:443");
        assert_eq!(url("http://127.0.0.1:8080/").host_key(), "127.0.0.1:8080");
    }

    #[test]
    fn joins_every_kind_of_location() {
        let base = url("http://h:1/a/b/c?q=1");
        let joined = |l: &str| base.join(l).unwrap().to_string();
        assert_eq!(joined("https://other/x"), "https://other/x");
        assert_eq!(joined("//other:2/y"), "http://other:2/y");
        assert_eq!(joined("/root"), "http://h:1/root");
        assert_eq!(joined("?z=2"), "http://h:1/a/b/c?z=2");
        assert_eq!(joined("d"), "http://h:1/a/b/d");
        assert_eq!(joined("../d?x"), "http://h:1/a/d?x");
        assert_eq!(joined("../../../../d"), "http://h:1/d");
        assert_eq!(joined("./"), "http://h:1/a/b/");
    }

    #[test]
    fn a_redirect_to_another_scheme_is_refused() {
        let base = url("http://h/");
        assert!(base.join("file:///etc/passwd").is_err());
        assert!(base.join("gopher://h/").is_err());
        assert!(base.join("").is_err());
    }

    #[test]
    fn origin_covers_scheme_host_and_port() {
        assert!(url("http://h/a").same_origin(&url("http://H:80/b")));
        assert!(!url("http://h/a").same_origin(&url("https://h/a")));
        assert!(!url("http://h/a").same_origin(&url("http://h:81/a")));
    }
}
