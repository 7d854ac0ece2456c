//! Name resolution without a thread per request.
//!
//! ureq's default resolver bounds a lookup by running it on a new thread whenever any timeout
//! applies, and it resolves before every request, pooled connection or not: with a deadline on
//! every attempt that is one thread spawned per page, even for `127.0.0.1`. This resolver answers
//! IP literals directly and remembers each name's addresses for a minute, so a lookup (and its
//! thread) happens once per host, not once per page.
//!
//! It plugs into ureq's `unversioned` resolver API, which ureq does not cover by semver; the
//! lock file pins the version it was written against.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::NextTimeout;

/// How long a looked-up name's addresses are reused.
const REMEMBER_FOR: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
pub(crate) struct CachingResolver {
    lookup: DefaultResolver,
    known: Mutex<HashMap<String, (Instant, Vec<SocketAddr>)>>,
}

impl Resolver for CachingResolver {
    fn resolve(
        &self,
        uri: &Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let host = uri.host().unwrap_or_default();
        let default_port = if uri.scheme_str() == Some("https") {
            443
        } else {
            80
        };
        let port = uri.port_u16().unwrap_or(default_port);
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = literal.parse::<IpAddr>() {
            let mut addresses = self.empty();
            addresses.push(SocketAddr::new(ip, port));
            return Ok(addresses);
        }
        let key = format!("{}:{port}", host.to_ascii_lowercase());
        let remembered = self
            .known
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            .filter(|(when, _)| when.elapsed() < REMEMBER_FOR)
            .map(|(_, addresses)| addresses.clone());
        if let Some(remembered) = remembered {
            let mut addresses = self.empty();
            for address in remembered {
                addresses.push(address);
            }
            return Ok(addresses);
        }
        // getaddrinfo's failures ("failed to lookup address information: …") all mean the
        // name did not resolve; a timeout stays a timeout.
        let addresses = self
            .lookup
            .resolve(uri, config, timeout)
            .map_err(|e| match e {
                ureq::Error::Io(_) => ureq::Error::HostNotFound,
                other => other,
            })?;
        self.known
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, (Instant::now(), addresses.to_vec()));
        Ok(addresses)
    }
}
