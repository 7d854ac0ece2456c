//! Which proxy a request goes through: `--proxy`, or the variables curl and wget read —
//! `http_proxy` for http:// URLs (lower case only, as curl: `HTTP_PROXY` can be set by a web
//! server's CGI environment), `https_proxy`/`HTTPS_PROXY` for https://, `all_proxy`/`ALL_PROXY`
//! for both, and `no_proxy`/`NO_PROXY` for the hosts reached directly.
//!
//! ureq itself reads one proxy for every scheme from the environment; the agent is built with
//! none and each request gets its own route here: https:// URLs are tunnelled with CONNECT
//! (ureq's proxy support), http:// URLs are forwarded in absolute form (`GET http://host/path`),
//! as curl and wget do — many proxies (squid by default) allow CONNECT to port 443 only.
//! ureq cannot forward, so `Downloader::get` sends the request to the proxy and `stale.rs`'s
//! transport wrapper rewrites its request line.

use std::net::IpAddr;

use ureq::Proxy;

use super::url::{redact, HttpUrl};

/// Why a proxy setting was refused (before anything is fetched).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the proxy {url:?} (from {from}) is not usable: {reason}")]
pub(crate) struct ProxyError {
    url: String,
    from: String,
    reason: String,
}

/// How one request travels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    Direct,
    /// CONNECT through this proxy (https:// URLs).
    Tunnel(Proxy),
    /// Absolute-form request to this proxy (http:// URLs).
    Forward(Forward),
}

/// A proxy that http:// requests are sent to in absolute form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Forward {
    /// `http://host:port` (or https://, for a TLS proxy).
    pub(crate) base: String,
    /// For `Proxy-Authorization: Basic`.
    pub(crate) credentials: Option<(String, String)>,
}

/// The proxy settings of a run.
#[derive(Debug, Clone, Default)]
pub(crate) struct Proxies {
    http: Option<Proxy>,
    https: Option<Proxy>,
    /// `no_proxy` entries, lower-cased; `*` matches every host.
    direct: Vec<String>,
}

impl Proxies {
    /// `--proxy URL`: every request, whatever the environment says.
    pub(crate) fn given(url: &str) -> Result<Proxies, ProxyError> {
        let proxy = parse(url, "--proxy")?;
        Ok(Proxies {
            http: Some(proxy.clone()),
            https: Some(proxy),
            direct: Vec::new(),
        })
    }

    /// From the environment of this process.
    pub(crate) fn from_env() -> Result<Proxies, ProxyError> {
        Proxies::from_vars(|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()))
    }

    fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Proxies, ProxyError> {
        let first = |names: &[&'static str]| -> Result<Option<Proxy>, ProxyError> {
            for name in names {
                if let Some(value) = var(name) {
                    return parse(&value, name).map(Some);
                }
            }
            Ok(None)
        };
        let all = first(&["all_proxy", "ALL_PROXY"])?;
        let http = first(&["http_proxy"])?.or_else(|| all.clone());
        let https = first(&["https_proxy", "HTTPS_PROXY"])?.or(all);
        let direct = var("no_proxy")
            .or_else(|| var("NO_PROXY"))
            .map(|list| {
                list.split(',')
                    .map(|entry| ascii_entry(&entry.trim().to_ascii_lowercase()))
                    .filter(|entry| !entry.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        Ok(Proxies {
            http,
            https,
            direct,
        })
    }

    /// The proxy for `url`, or `None` to connect directly.
    pub(crate) fn for_url(&self, url: &HttpUrl) -> Option<Proxy> {
        let proxy = if url.is_https() {
            self.https.as_ref()
        } else {
            self.http.as_ref()
        }?;
        (!self.is_direct(url.host())).then(|| proxy.clone())
    }

    /// How a request for `url` travels.
    pub(crate) fn route(&self, url: &HttpUrl) -> Route {
        match self.for_url(url) {
            None => Route::Direct,
            Some(proxy) if url.is_https() => Route::Tunnel(proxy),
            Some(proxy) => {
                let host = proxy.host();
                let host = if host.contains(':') && !host.starts_with('[') {
                    format!("[{host}]")
                } else {
                    host.to_owned()
                };
                let scheme = match proxy.protocol() {
                    ureq::ProxyProtocol::Https => "https",
                    _ => "http",
                };
                let credentials = proxy.username().map(|user| {
                    (
                        user.to_owned(),
                        proxy.password().unwrap_or_default().to_owned(),
                    )
                });
                Route::Forward(Forward {
                    base: format!("{scheme}://{host}:{}", proxy.port()),
                    credentials,
                })
            }
        }
    }

    /// curl's no_proxy rules: `*` matches everything; an entry matches the host itself and,
    /// as a domain, its subdomains (`example.com` and `.example.com` both cover
    /// `www.example.com`); a `:port` suffix on an entry is ignored. An IP address is matched
    /// only by the same address or a CIDR range holding it (`10.0.0.0/8`, `::1/128`), never
    /// by a suffix: `0.0.1` is no domain of `127.0.0.1`.
    fn is_direct(&self, host: &str) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        // `example.com.` (fully qualified) is `example.com`.
        let host = host.strip_suffix('.').unwrap_or(host);
        let host_ip = host.parse::<IpAddr>().ok();
        self.direct.iter().any(|entry| {
            if entry == "*" {
                return true;
            }
            let entry = entry.trim_start_matches("*.").trim_start_matches('.');
            let entry = without_port(entry);
            let entry = entry.strip_suffix('.').unwrap_or(entry);
            if let Some(ip) = host_ip {
                return match entry.split_once('/') {
                    Some((network, bits)) => in_network(ip, network, bits),
                    None => entry.parse::<IpAddr>() == Ok(ip),
                };
            }
            host == entry
                || host
                    .strip_suffix(entry)
                    .is_some_and(|rest| rest.ends_with('.'))
        })
    }
}

/// A no_proxy entry as hosts are compared: URL hosts are IDNA-encoded (`bücher.example` is
/// `xn--bcher-kva.example` on the wire), so a non-ASCII entry is encoded the same way.
fn ascii_entry(entry: &str) -> String {
    if entry.is_ascii() {
        return entry.to_owned();
    }
    let (prefix, domain) = match entry.strip_prefix('.') {
        Some(domain) => (".", domain),
        None => ("", entry),
    };
    match url::Host::parse(domain) {
        Ok(url::Host::Domain(ascii)) => format!("{prefix}{ascii}"),
        _ => entry.to_owned(),
    }
}

/// A no_proxy entry without its `:port` and brackets: `[::1]:80` → `::1`, `h:80` → `h`; a
/// bare IPv6 address (`::1`) is left whole.
fn without_port(entry: &str) -> &str {
    if let Some(rest) = entry.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    if entry.parse::<IpAddr>().is_ok() || entry.matches(':').count() > 1 {
        return entry;
    }
    match entry.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => entry,
    }
}

/// Whether `ip` is in `network/bits` (both of one family).
fn in_network(ip: IpAddr, network: &str, bits: &str) -> bool {
    let (Ok(network), Ok(bits)) = (network.parse::<IpAddr>(), bits.parse::<u32>()) else {
        return false;
    };
    let (ip, network, width) = match (ip, network) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => {
            (u128::from(ip.to_bits()), u128::from(net.to_bits()), 32)
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) => (ip.to_bits(), net.to_bits(), 128),
        _ => return false,
    };
    if bits > width {
        return false;
    }
    let shift = width - bits;
    // `bits == 0` matches everything of the family; checked_shr keeps a 128-bit shift defined.
    ip.checked_shr(shift).unwrap_or(0) == network.checked_shr(shift).unwrap_or(0)
}

fn parse(url: &str, from: &str) -> Result<Proxy, ProxyError> {
    let url = url.trim();
    // A bare `host:port`, as people often set it, means http://.
    let full = if url.contains("://") {
        url.to_owned()
    } else {
        format!("http://{url}")
    };
    let refuse = |reason: String| ProxyError {
        url: redact(url),
        from: from.to_owned(),
        reason,
    };
    let scheme = full
        .split("://")
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err(refuse(format!(
            "{scheme}:// proxies are not supported (use an http:// proxy)"
        )));
    }
    Proxy::new(&full).map_err(|e| refuse(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &'static [(&'static str, &'static str)]) -> Proxies {
        Proxies::from_vars(|name| {
            pairs
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        })
        .unwrap()
    }

    fn host_of(proxy: Option<Proxy>) -> Option<String> {
        proxy.map(|p| format!("{}:{}", p.host(), p.port()))
    }

    fn url(s: &str) -> HttpUrl {
        HttpUrl::parse(s).unwrap()
    }

    #[test]
    fn each_scheme_has_its_variable_and_all_proxy_covers_both() {
        let proxies = vars(&[("http_proxy", "http://p1:3128"), ("HTTPS_PROXY", "p2:8080")]);
        assert_eq!(
            host_of(proxies.for_url(&url("http://h/"))),
            Some("p1:3128".into())
        );
        assert_eq!(
            host_of(proxies.for_url(&url("https://h/"))),
            Some("p2:8080".into())
        );
        let all = vars(&[("all_proxy", "http://p3:1")]);
        assert_eq!(host_of(all.for_url(&url("http://h/"))), Some("p3:1".into()));
        assert_eq!(
            host_of(all.for_url(&url("https://h/"))),
            Some("p3:1".into())
        );
        let upper_http = vars(&[("HTTP_PROXY", "http://cgi:1")]);
        assert_eq!(
            upper_http.for_url(&url("http://h/")),
            None,
            "HTTP_PROXY is ignored"
        );
        assert_eq!(Proxies::default().for_url(&url("http://h/")), None);
    }

    #[test]
    fn http_urls_are_forwarded_and_https_urls_tunnelled() {
        let proxies = Proxies::given("http://u:p@proxy:3128").unwrap();
        assert_eq!(
            proxies.route(&url("http://h/")),
            Route::Forward(Forward {
                base: "http://proxy:3128".into(),
                credentials: Some(("u".into(), "p".into())),
            })
        );
        assert!(matches!(
            proxies.route(&url("https://h/")),
            Route::Tunnel(_)
        ));
        assert_eq!(Proxies::default().route(&url("http://h/")), Route::Direct);
    }

    #[test]
    fn no_proxy_matches_hosts_and_their_subdomains() {
        let proxies = vars(&[
            ("all_proxy", "http://p:1"),
            ("no_proxy", "localhost, .internal,example.com:8080,[::1]"),
        ]);
        for direct in [
            "http://localhost/",
            "http://a.internal/",
            "http://example.com/",
            "http://www.example.com/",
            "http://[::1]:9/",
        ] {
            assert_eq!(proxies.for_url(&url(direct)), None, "{direct}");
        }
        for proxied in ["http://notexample.com/", "http://internal.org/"] {
            assert!(proxies.for_url(&url(proxied)).is_some(), "{proxied}");
        }
        let star = vars(&[("all_proxy", "http://p:1"), ("NO_PROXY", "*")]);
        assert_eq!(star.for_url(&url("http://any/")), None);
    }

    #[test]
    fn no_proxy_matches_ip_addresses_exactly_or_by_cidr_never_by_suffix() {
        let proxies = vars(&[
            ("all_proxy", "http://p:1"),
            (
                "no_proxy",
                "0.0.1,.0.0.2,10.0.0.0/8,::1,[fe80::1]:80,192.168.1.7:8080,fd00::/8",
            ),
        ]);
        for direct in [
            "http://10.1.2.3/",
            "http://[::1]:9/",
            "http://[fe80::1]/",
            "http://192.168.1.7/",
            "http://[fd12::3]/",
        ] {
            assert_eq!(proxies.for_url(&url(direct)), None, "{direct}");
        }
        for proxied in [
            "http://127.0.0.1/",
            "http://127.0.0.2/",
            "http://11.0.0.1/",
            "http://[::2]/",
            "http://[fe00::1]/",
        ] {
            assert!(proxies.for_url(&url(proxied)).is_some(), "{proxied}");
        }
        let idna = vars(&[
            ("all_proxy", "http://p:1"),
            ("no_proxy", ".B\u{fc}cher.example"),
        ]);
        assert_eq!(idna.for_url(&url("http://www.b\u{fc}cher.example/")), None);
        assert_eq!(idna.for_url(&url("http://xn--bcher-kva.example/")), None);
        assert_eq!(
            idna.for_url(&url("http://www.xn--bcher-kva.example./")),
            None
        );
        let dotted = vars(&[("all_proxy", "http://p:1"), ("no_proxy", "localhost.")]);
        assert_eq!(dotted.for_url(&url("http://localhost/")), None);
        let everything = vars(&[
            ("all_proxy", "http://p:1"),
            ("no_proxy", "0.0.0.0/0,bad/99"),
        ]);
        assert_eq!(everything.for_url(&url("http://8.8.8.8/")), None);
        assert!(everything.for_url(&url("http://[::1]/")).is_some());
    }

    #[test]
    fn a_bad_proxy_is_refused_without_showing_its_password() {
        let error = Proxies::given("socks5://u:secret@p:1").unwrap_err();
        assert!(error.to_string().contains("not supported"), "{error}");
        assert!(!error.to_string().contains("secret"), "{error}");
    }
}
