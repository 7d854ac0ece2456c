//! Telling a stale pooled connection from a failing server.
//!
//! A server may close an idle keep-alive connection at any moment, without `Connection: close`.
//! ureq probes a pooled connection before reusing it, but the server's FIN can arrive just after
//! the probe (a redirect is followed within microseconds of its response): the request then
//! goes to a socket the server has closed, and fails before any byte of a response. That is not
//! the server's answer to this request, so it must not cost an attempt — curl and browsers send
//! it again on a new connection, and so does `Downloader::get`, once.
//!
//! The evidence comes from a transport wrapper at the end of ureq's connector chain, which
//! records, per thread (ureq runs a call on its caller's thread, connectors included), whether
//! the current call made a new connection and whether any response byte arrived.

use std::cell::Cell;
use std::io;
use std::time::{Duration, Instant};

use ureq::unversioned::transport::{Buffers, ConnectionDetails, Connector, NextTimeout, Transport};

thread_local! {
    static TRACE: Cell<Trace> = const { Cell::new(Trace { connected: false, received: false }) };
    /// The absolute URL the next request line on this thread must carry (forwarding through
    /// an http proxy); taken by the first transmit.
    static FORWARD: Cell<Option<String>> = const { Cell::new(None) };
}

/// Makes the next request sent on this thread go out in absolute form, `GET http://… HTTP/1.1`
/// (or, with `None`, cancels that).
pub(crate) fn forward_next_request(absolute: Option<String>) {
    FORWARD.with(|f| f.set(absolute));
}

/// What the current thread's call did on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Trace {
    /// A connection was established for it (so it did not run on a pooled one only).
    pub(crate) connected: bool,
    /// Some bytes were received.
    pub(crate) received: bool,
}

/// Starts tracing a call on this thread.
pub(crate) fn begin() {
    TRACE.with(|t| {
        t.set(Trace {
            connected: false,
            received: false,
        })
    });
}

/// What the call since [`begin`] did.
pub(crate) fn trace() -> Trace {
    TRACE.with(Cell::get)
}

/// True if `error`, from a call that [`trace`] describes, is a pooled connection the server
/// had already closed: it failed on a reused connection, with a connection-level error, before
/// any response byte.
pub(crate) fn is_stale(error: &ureq::Error, trace: Trace) -> bool {
    if trace.connected || trace.received {
        return false;
    }
    matches!(error, ureq::Error::Io(e) if matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::NotConnected
    ))
}

/// The last link of the connector chain: wraps each new transport in a [`Traced`].
#[derive(Debug, Default)]
pub(crate) struct TraceConnector;

impl Connector<Box<dyn Transport>> for TraceConnector {
    type Out = Box<dyn Transport>;

    fn connect(
        &self,
        _details: &ConnectionDetails,
        chained: Option<Box<dyn Transport>>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        Ok(chained.map(|inner| {
            TRACE.with(|t| {
                t.set(Trace {
                    connected: true,
                    ..t.get()
                })
            });
            Box::new(Traced {
                inner,
                io_since_probe: true,
                probed_open_at: None,
            }) as Box<dyn Transport>
        }))
    }
}

/// A transport that notes on its thread's [`Trace`] when bytes arrive.
#[derive(Debug)]
struct Traced {
    inner: Box<dyn Transport>,
    /// Whether bytes went either way since the last liveness probe (see `is_open`).
    io_since_probe: bool,
    /// When the last probe found the connection open.
    probed_open_at: Option<Instant>,
}

/// How long a probe that found a connection open stands for the next one, when no byte went
/// either way in between (see `Traced::is_open`).
const PROBE_STANDS_FOR: Duration = Duration::from_millis(100);

impl Traced {
    fn note(made_progress: Result<bool, ureq::Error>) -> Result<bool, ureq::Error> {
        if let Ok(true) = made_progress {
            TRACE.with(|t| {
                t.set(Trace {
                    received: true,
                    ..t.get()
                })
            });
        }
        made_progress
    }
}

impl Transport for Traced {
    fn buffers(&mut self) -> &mut dyn Buffers {
        self.inner.buffers()
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        self.io_since_probe = true;
        let Some(absolute) = FORWARD.with(Cell::take) else {
            return self.inner.transmit_output(amount, timeout);
        };
        // The request head starts here: its target (`/path?query`) becomes the absolute URL.
        // The line grows, so the bytes go out through the output buffer in pieces.
        let written = &self.inner.buffers().output()[..amount];
        let head = absolute_form(written, &absolute);
        let mut sent = 0;
        while sent < head.len() {
            let buffer = self.inner.buffers().output();
            let n = buffer.len().min(head.len() - sent);
            buffer[..n].copy_from_slice(&head[sent..sent + n]);
            self.inner.transmit_output(n, timeout)?;
            sent += n;
        }
        Ok(())
    }

    fn maybe_await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        self.io_since_probe = true;
        Traced::note(self.inner.maybe_await_input(timeout))
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        self.io_since_probe = true;
        Traced::note(self.inner.await_input(timeout))
    }

    /// ureq probes a connection twice between two requests: when the response is done (before
    /// pooling it: bytes after the body mean it must not be reused) and when it takes it from
    /// the pool — the second time holding the pool's one lock, for three system calls
    /// (non-blocking on, read, off). At `-j 64` that lock was the run's most contended one. So
    /// the second probe is answered from the first when nothing was sent or received since and
    /// the first is recent: a FIN that arrives in between (a server that closes after every
    /// response) then fails the request before any response byte, and `Downloader::get` sends it
    /// again on a new connection, as it does for a FIN that arrives just after a probe.
    fn is_open(&mut self) -> bool {
        let recent = self
            .probed_open_at
            .is_some_and(|at| at.elapsed() < PROBE_STANDS_FOR);
        if !self.io_since_probe && recent {
            return true;
        }
        let open = self.inner.is_open();
        self.io_since_probe = false;
        self.probed_open_at = open.then(Instant::now);
        open
    }

    fn is_tls(&self) -> bool {
        self.inner.is_tls()
    }
}

/// `METHOD /path HTTP/1.1\r\n…` with the target replaced by `absolute`; anything that does not
/// look like a request line is left alone.
fn absolute_form(head: &[u8], absolute: &str) -> Vec<u8> {
    let Some(first) = head.iter().position(|&b| b == b' ') else {
        return head.to_vec();
    };
    let rest = &head[first + 1..];
    let Some(end) = rest.iter().position(|&b| b == b' ') else {
        return head.to_vec();
    };
    if !rest.starts_with(b"/") {
        return head.to_vec();
    }
    let mut out = Vec::with_capacity(head.len() + absolute.len());
    out.extend_from_slice(&head[..=first]);
    out.extend_from_slice(absolute.as_bytes());
    out.extend_from_slice(&rest[end..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_line_gets_the_absolute_url() {
        let head = b"GET /a?b=c HTTP/1.1\r\nHost: h\r\n\r\n";
        assert_eq!(
            absolute_form(head, "http://h:8/a?b=c"),
            b"GET http://h:8/a?b=c HTTP/1.1\r\nHost: h\r\n\r\n"
        );
        assert_eq!(absolute_form(b"garbage", "http://h/"), b"garbage");
    }

    #[test]
    fn only_a_silent_failure_on_a_reused_connection_is_stale() {
        let reset = || ureq::Error::Io(io::ErrorKind::ConnectionReset.into());
        let reused = Trace {
            connected: false,
            received: false,
        };
        assert!(is_stale(&reset(), reused));
        assert!(is_stale(
            &ureq::Error::Io(io::ErrorKind::UnexpectedEof.into()),
            reused
        ));
        assert!(!is_stale(
            &reset(),
            Trace {
                connected: true,
                ..reused
            }
        ));
        assert!(!is_stale(
            &reset(),
            Trace {
                received: true,
                ..reused
            }
        ));
        assert!(!is_stale(
            &ureq::Error::Timeout(ureq::Timeout::PerRead),
            reused
        ));
    }
}
