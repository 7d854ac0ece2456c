//! Which URLs the downloader follows — the policy only; parsing, joining, IDNA hosts and
//! percent-encoding are the `url` crate's (WHATWG URL, what browsers and reqwest follow).
//!
//! The policy: absolute `http` and `https` URLs with a host; credentials (`user:pass@`) are
//! never part of a request line, a message or the report. A list URL's credentials become a
//! Basic `Authorization` header sent to that origin only; a redirect's are dropped.

use std::fmt;

use ureq::http::Uri;
use url::Url;

/// Why a URL was refused. Every URL in a message has its credentials removed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum UrlError {
    /// Not a URL at all (the parser's complaint is included).
    #[error("malformed URL {url:?}: {reason}")]
    Malformed { url: String, reason: String },
    /// A scheme other than http or https, e.g. `file://` or `ftp://`.
    #[error("unsupported scheme {scheme:?} in {url:?}: only http and https are fetched")]
    UnsupportedScheme { url: String, scheme: String },
    /// `http://:80/` and the like.
    #[error("URL {url:?} has no host")]
    NoHost { url: String },
}

/// An absolute `http` or `https` URL, without fragment and without credentials; the
/// credentials it was written with, if any, are kept apart.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct HttpUrl {
    /// Credentials removed, fragment removed: what is sent and shown.
    url: Url,
    /// `user:password` from the URL as written, percent-decoded (boxed: rare, and a list holds
    /// thousands of URLs).
    credentials: Option<Box<(String, String)>>,
}

impl HttpUrl {
    /// Parses `text`, refusing anything but an absolute http(s) URL with a host.
    pub(crate) fn parse(text: &str) -> Result<HttpUrl, UrlError> {
        HttpUrl::from_url(Url::parse(text.trim()), text)
    }

    fn from_url(parsed: Result<Url, url::ParseError>, text: &str) -> Result<HttpUrl, UrlError> {
        let malformed = |reason: &dyn fmt::Display| UrlError::Malformed {
            url: redact(text),
            reason: reason.to_string(),
        };
        let mut url = parsed.map_err(|e| match e {
            url::ParseError::RelativeUrlWithoutBase => {
                malformed(&"not an absolute URL (expected http://… or https://…)")
            }
            url::ParseError::EmptyHost => UrlError::NoHost { url: redact(text) },
            other => malformed(&other),
        })?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(UrlError::UnsupportedScheme {
                url: redact(text),
                scheme: url.scheme().to_owned(),
            });
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(UrlError::NoHost { url: redact(text) });
        }
        // A fragment is never sent to the server.
        url.set_fragment(None);
        let credentials = (!url.username().is_empty() || url.password().is_some()).then(|| {
            Box::new((
                decode(url.username()),
                decode(url.password().unwrap_or_default()),
            ))
        });
        // Cannot fail for an http(s) URL with a host.
        let _ = url.set_username("");
        let _ = url.set_password(None);
        // What ureq will parse it into, checked now rather than at request time.
        url.as_str().parse::<Uri>().map_err(|e| malformed(&e))?;
        Ok(HttpUrl { url, credentials })
    }

    /// The URL as sent on the wire (no credentials, no fragment); [`parse`](Self::parse)
    /// checked that it is a valid `http::Uri`.
    pub(crate) fn as_str(&self) -> &str {
        self.url.as_str()
    }

    /// `user` and `password` the URL was written with, percent-decoded.
    pub(crate) fn credentials(&self) -> Option<(&str, &str)> {
        self.credentials
            .as_ref()
            .map(|pair| (pair.0.as_str(), pair.1.as_str()))
    }

    /// The host as sent (lower-cased, IDNA-encoded, IPv6 in brackets), without port.
    pub(crate) fn host(&self) -> &str {
        self.url.host_str().unwrap_or_default()
    }

    /// The port, the scheme's default filled in.
    pub(crate) fn port(&self) -> u16 {
        self.url.port_or_known_default().unwrap_or(80)
    }

    /// `host[:port]` as in the URL (the port only if not the scheme's default): a Host header.
    pub(crate) fn authority(&self) -> String {
        match self.url.port() {
            Some(port) => format!("{}:{port}", self.host()),
            None => self.host().to_owned(),
        }
    }

    /// Bytes of `scheme://authority` at the start of [`as_str`](Self::as_str); the rest is the
    /// path and query.
    pub(crate) fn origin_len(&self) -> usize {
        self.url.as_str().len() - self.url[url::Position::BeforePath..].len()
    }

    pub(crate) fn is_https(&self) -> bool {
        self.url.scheme() == "https"
    }

    /// `host:port`, with the scheme's default port filled in: the unit of `--per-host` and
    /// `--rate`.
    pub(crate) fn host_key(&self) -> String {
        format!("{}:{}", self.host(), self.port())
    }

    /// Scheme, host and port: a redirect that changes any of them leaves the origin the user's
    /// credentials were meant for.
    pub(crate) fn same_origin(&self, other: &HttpUrl) -> bool {
        self.url.origin() == other.url.origin()
    }

    /// The path without its query, percent-encoded as in the URL.
    pub(crate) fn path(&self) -> &str {
        self.url.path()
    }

    /// Resolves a `Location` header value against this URL. Credentials in it are dropped:
    /// a server cannot make this tool send a password the user did not give for that origin.
    pub(crate) fn join(&self, location: &str) -> Result<HttpUrl, UrlError> {
        let location = location.trim();
        if location.is_empty() {
            return Err(UrlError::Malformed {
                url: String::new(),
                reason: "empty Location".to_owned(),
            });
        }
        let mut joined = HttpUrl::from_url(self.url.join(location), location)?;
        joined.credentials = None;
        Ok(joined)
    }
}

fn decode(text: &str) -> String {
    String::from_utf8_lossy(&percent_decode(text)).into_owned()
}

/// `%XX` sequences to bytes; a `%` not followed by two hex digits stays as it is.
pub(crate) fn percent_decode(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// `text` with any `user:pass@` after the scheme removed, for messages about URLs that did not
/// even parse.
pub(crate) fn redact(text: &str) -> String {
    let Some(start) = text.find("://").map(|i| i + 3) else {
        return text.to_owned();
    };
    let rest = &text[start..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}{}", &text[..start], &rest[at + 1..]),
        None => text.to_owned(),
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.url.as_str())
    }
}

impl fmt::Debug for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HttpUrl({})", self.url)
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
            HttpUrl::parse("mailto:someone@example.com"),
            Err(UrlError::UnsupportedScheme { .. })
        ));
        assert!(matches!(
            HttpUrl::parse("example.com/x"),
            Err(UrlError::Malformed { .. })
        ));
        assert!(HttpUrl::parse("http://exa mple.com/").is_err());
        assert!(HttpUrl::parse("http://:80/").is_err());
    }

    #[test]
    fn authority_and_path_split_where_the_path_starts() {
        let u = url("http://h:8080/a/b?c=d");
        assert_eq!(u.authority(), "h:8080");
        assert_eq!(&u.as_str()[u.origin_len()..], "/a/b?c=d");
        assert_eq!(url("http://h/").authority(), "h");
        assert_eq!(url("http://[::1]:9/").authority(), "[::1]:9");
    }

    #[test]
    fn drops_the_fragment() {
        assert_eq!(url("http://h/p#frag").to_string(), "http://h/p");
    }

    #[test]
    fn international_hosts_are_idna_encoded() {
        assert_eq!(
            url("http://Bücher.example/").host(),
            "xn--bcher-kva.example"
        );
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

    #[test]
    fn credentials_are_kept_apart_and_never_shown() {
        let with = url("http://us%40er:p%3Ass@h/x");
        assert_eq!(with.to_string(), "http://h/x");
        assert_eq!(with.as_str(), "http://h/x");
        assert_eq!(with.credentials(), Some(("us@er", "p:ss")));
        let redirected = url("http://h/").join("http://u:secret@other/y").unwrap();
        assert_eq!(redirected.to_string(), "http://other/y");
        assert_eq!(redirected.credentials(), None, "a redirect's are dropped");
        let refused = HttpUrl::parse("ftp://u:secret@h/x").unwrap_err();
        assert!(!refused.to_string().contains("secret"), "{refused}");
        assert_eq!(redact("http://u:p@h/a@b"), "http://h/a@b");
        assert_eq!(redact("not a url"), "not a url");
    }
}
