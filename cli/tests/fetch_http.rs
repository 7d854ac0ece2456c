//! `futurepool fetch` against well-formed but unhelpful servers: error statuses, retries with
//! backoff and Retry-After, redirects, headers, and the concurrency caps.

mod support;

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use support::{error_of, fetch_list, row, Reply, Scratch, TestServer};

#[test]
fn http_errors_are_recorded_with_their_status_and_nothing_is_saved() {
    let server = TestServer::routes(vec![
        ("/ok", Reply::html("ok")),
        ("/gone", Reply::status(410).body(b"gone".to_vec())),
        ("/forbidden", Reply::status(403)),
    ]);
    let scratch = Scratch::new("status");
    let lines = vec![
        server.url("/ok"),
        server.url("/missing"),
        server.url("/gone"),
        server.url("/forbidden"),
    ];
    let (run, rows) = fetch_list(&scratch, &lines, &["--retries", "3"]);
    assert_eq!(run.code, Some(1));
    assert_eq!(scratch.out_files(), ["ok.html"]);
    for (line, status, message) in [
        (2, 404, "HTTP 404 Not Found"),
        (3, 410, "HTTP 410 Gone"),
        (4, 403, "HTTP 403 Forbidden"),
    ] {
        let failed = row(&rows, line);
        assert_eq!(failed["status"], status);
        assert_eq!(error_of(failed), message);
        assert!(failed["path"].is_null());
        assert_eq!(
            failed["attempts"], 1,
            "a 4xx other than 408/429 is not retried"
        );
    }
}

#[test]
fn a_503_is_retried_after_the_servers_retry_after() {
    let server = TestServer::start(|request, earlier| match (request.path.as_str(), earlier) {
        ("/busy", 0) => Reply::status(503).header("Retry-After", "1"),
        ("/busy", _) => Reply::html("finally"),
        _ => Reply::status(404),
    });
    let scratch = Scratch::new("retry-after");
    let (run, rows) = fetch_list(&scratch, &[server.url("/busy")], &["--backoff", "0.01"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(row(&rows, 1)["attempts"], 2);
    let requests = server.requests_for("/busy");
    assert_eq!(requests.len(), 2);
    let pause = requests[1].arrived - requests[0].arrived;
    assert!(
        pause >= Duration::from_secs(1),
        "retried after {pause:?}, before Retry-After"
    );
}

#[test]
fn failures_back_off_exponentially_between_attempts() {
    let server = TestServer::start(|_, earlier| {
        if earlier < 3 {
            Reply::status([500, 502, 408][earlier])
        } else {
            Reply::html("ok")
        }
    });
    let scratch = Scratch::new("backoff");
    let (run, rows) = fetch_list(
        &scratch,
        &[server.url("/flaky")],
        &["--retries", "3", "--backoff", "0.2"],
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(row(&rows, 1)["attempts"], 4);
    let arrived: Vec<_> = server.requests().iter().map(|r| r.arrived).collect();
    // Pauses are 0.2 s, 0.4 s, 0.8 s, each scaled by a jitter factor in [0.5, 1].
    for (retry, minimum) in [(1, 100), (2, 200), (3, 400)] {
        let pause = arrived[retry] - arrived[retry - 1];
        assert!(
            pause >= Duration::from_millis(minimum),
            "retry {retry} came after {pause:?}"
        );
    }
}

#[test]
fn retries_stop_after_the_limit_and_name_the_last_error() {
    let server = TestServer::start(|_, _| Reply::status(503));
    let scratch = Scratch::new("retry-limit");
    let (run, rows) = fetch_list(
        &scratch,
        &[server.url("/down")],
        &["--retries", "2", "--backoff", "0.01"],
    );
    assert_eq!(run.code, Some(1));
    let failed = row(&rows, 1);
    assert_eq!(failed["attempts"], 3);
    assert_eq!(failed["status"], 503);
    assert_eq!(error_of(failed), "HTTP 503 Service Unavailable");
    assert_eq!(server.requests().len(), 3);
}

#[test]
fn a_retry_after_longer_than_a_minute_fails_at_once() {
    let server = TestServer::start(|_, _| Reply::status(429).header("Retry-After", "3600"));
    let scratch = Scratch::new("retry-after-long");
    let (run, rows) = fetch_list(&scratch, &[server.url("/slow-down")], &[]);
    assert_eq!(run.code, Some(1));
    let failed = row(&rows, 1);
    assert_eq!(failed["attempts"], 1);
    assert_eq!(failed["status"], 429);
    assert!(error_of(failed).contains("retry after 3600 s"), "{failed}");
}

#[test]
fn connection_refused_is_retried_then_reported() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let scratch = Scratch::new("refused");
    let (run, rows) = fetch_list(
        &scratch,
        &[format!("http://127.0.0.1:{port}/x")],
        &["--retries", "2", "--backoff", "0.01"],
    );
    assert_eq!(run.code, Some(1));
    let failed = row(&rows, 1);
    assert_eq!(failed["attempts"], 3);
    assert!(failed["status"].is_null());
    assert!(
        error_of(failed).starts_with("cannot connect to 127.0.0.1:"),
        "{failed}"
    );
}

#[test]
fn relative_redirects_are_followed() {
    let server = TestServer::start(|request, _| match request.path.as_str() {
        "/start" => Reply::redirect(301, "/middle/one"),
        "/middle/one" => Reply::redirect(303, "two?x=1"),
        "/middle/two?x=1" => Reply::html("arrived"),
        _ => Reply::status(404),
    });
    let scratch = Scratch::new("redirects");
    let (run, rows) = fetch_list(&scratch, &[format!("start {}", server.url("/start"))], &[]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let saved = row(&rows, 1);
    assert_eq!(saved["final_url"], server.url("/middle/two?x=1"));
    assert_eq!(
        std::fs::read_to_string(scratch.out().join("start.html")).unwrap(),
        "arrived"
    );
}

#[test]
fn redirects_to_other_schemes_loops_and_endless_chains_fail() {
    let server = TestServer::start(|request, _| {
        let path = request.path.as_str();
        match path {
            "/to-file" => Reply::redirect(302, "file:///etc/passwd"),
            "/to-ftp" => Reply::redirect(301, "ftp://127.0.0.1/x"),
            "/loop-a" => Reply::redirect(302, "/loop-b"),
            "/loop-b" => Reply::redirect(302, "/loop-a"),
            "/no-location" => Reply::status(302),
            _ => match path
                .strip_prefix("/chain/")
                .and_then(|n| n.parse::<u32>().ok())
            {
                Some(n) => Reply::redirect(302, &format!("/chain/{}", n + 1)),
                None => Reply::status(404),
            },
        }
    });
    let scratch = Scratch::new("bad-redirects");
    let lines = vec![
        server.url("/to-file"),
        server.url("/to-ftp"),
        server.url("/loop-a"),
        server.url("/chain/0"),
        server.url("/no-location"),
    ];
    let (run, rows) = fetch_list(&scratch, &lines, &[]);
    assert_eq!(run.code, Some(1));
    assert!(scratch.out_files().is_empty());
    assert!(error_of(row(&rows, 1)).contains("redirect refused: unsupported scheme \"file\""));
    assert!(error_of(row(&rows, 2)).contains("unsupported scheme \"ftp\""));
    assert!(error_of(row(&rows, 3)).starts_with("redirect loop: "));
    assert!(error_of(row(&rows, 3)).contains("/loop-a was already visited"));
    assert_eq!(error_of(row(&rows, 4)), "too many redirects (more than 10)");
    assert_eq!(
        server.requests_for("/chain/10").len(),
        1,
        "ten redirects are followed"
    );
    assert!(server.requests_for("/chain/11").is_empty());
    assert_eq!(
        error_of(row(&rows, 5)),
        "HTTP 302 redirect without a Location header"
    );
    for line in 1..=5 {
        assert_eq!(
            row(&rows, line)["attempts"],
            1,
            "redirect failures are not retried"
        );
    }
}

#[test]
fn headers_are_sent_and_credentials_do_not_follow_a_redirect_to_another_host() {
    let other = TestServer::routes(vec![("/landing", Reply::html("other host"))]);
    let landing = other.url("/landing");
    let server = TestServer::start(move |request, _| match request.path.as_str() {
        "/direct" => Reply::html("direct"),
        "/away" => Reply::redirect(302, &landing),
        _ => Reply::status(404),
    });
    let scratch = Scratch::new("headers");
    let (run, _) = fetch_list(
        &scratch,
        &[server.url("/direct"), server.url("/away")],
        &[
            "-H",
            "X-Token: abc",
            "-H",
            "Authorization: Bearer secret",
            "-H",
            "User-Agent: tests/1",
        ],
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let direct = &server.requests_for("/direct")[0];
    assert_eq!(direct.header("x-token"), Some("abc"));
    assert_eq!(direct.header("authorization"), Some("Bearer secret"));
    assert_eq!(direct.header("user-agent"), Some("tests/1"));
    let landed = &other.requests_for("/landing")[0];
    assert_eq!(landed.header("x-token"), Some("abc"));
    assert_eq!(
        landed.header("authorization"),
        None,
        "credentials leaked to another host"
    );
}

/// A server whose every request waits until `wanted` requests are in flight at once (or a few
/// seconds pass), recording the most it ever saw: a client that runs fewer in parallel shows up
/// as a smaller maximum, one that runs more as a larger one.
fn concurrency_probe(
    wanted: usize,
    patience: Duration,
) -> (TestServer, Arc<Mutex<(usize, usize)>>) {
    let state = Arc::new((Mutex::new((0usize, 0usize)), Condvar::new()));
    let seen = Arc::new(Mutex::new((0, 0)));
    let (probe_state, probe_seen) = (state.clone(), seen.clone());
    let server = TestServer::start(move |_, _| {
        let (lock, condvar) = &*probe_state;
        let mut counts = lock.lock().unwrap();
        counts.0 += 1;
        counts.1 = counts.1.max(counts.0);
        *probe_seen.lock().unwrap() = *counts;
        condvar.notify_all();
        let (mut counts, _) = condvar
            .wait_timeout_while(counts, patience, |c| c.0 < wanted)
            .unwrap();
        counts.0 -= 1;
        Reply::html("x")
    });
    (server, seen)
}

#[test]
fn jobs_requests_run_at_once() {
    let (server, seen) = concurrency_probe(4, Duration::from_secs(5));
    let scratch = Scratch::new("jobs");
    let lines: Vec<String> = (0..8).map(|i| server.url(&format!("/p{i}"))).collect();
    let (run, _) = fetch_list(&scratch, &lines, &["-j", "4"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(
        seen.lock().unwrap().1,
        4,
        "-j 4 runs exactly four requests at once"
    );
}

#[test]
fn per_host_caps_concurrent_requests_to_one_host() {
    let (server, seen) = concurrency_probe(2, Duration::from_secs(5));
    // Would take three at once; each waits a second for a third that never comes.
    let (other, other_seen) = concurrency_probe(3, Duration::from_secs(1));
    let scratch = Scratch::new("per-host");
    let mut lines: Vec<String> = (0..6).map(|i| server.url(&format!("/a{i}"))).collect();
    lines.extend((0..3).map(|i| other.url(&format!("/b{i}"))));
    let (run, rows) = fetch_list(&scratch, &lines, &["-j", "8", "--per-host", "2"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(rows.len(), 9);
    assert_eq!(seen.lock().unwrap().1, 2);
    assert_eq!(
        other_seen.lock().unwrap().1,
        2,
        "the cap holds even when the server would take 3"
    );
}

#[test]
fn passwords_in_urls_are_never_printed_or_reported() {
    let other = TestServer::routes(vec![("/landing", Reply::html("landed"))]);
    let landing = format!("http://intruder:hunter2@{}/landing", other.addr());
    let server = TestServer::start(move |request, _| match request.path.as_str() {
        "/away" => Reply::redirect(302, &landing),
        "/private" => Reply::html("private"),
        "/missing" => Reply::status(404),
        _ => Reply::status(404),
    });
    let scratch = Scratch::new("credentials");
    let with_password = |path: &str| {
        server
            .url(path)
            .replacen("http://", "http://alice:s3cret@", 1)
    };
    let lines = vec![
        with_password("/away"),
        with_password("/private"),
        with_password("/missing"),
    ];
    let (run, rows) = fetch_list(&scratch, &lines, &["--retries", "0"]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    let report = std::fs::read_to_string(scratch.join("report.jsonl")).unwrap();
    for secret in ["s3cret", "hunter2", "alice", "intruder"] {
        assert!(!report.contains(secret), "{secret} in the report: {report}");
        assert!(
            !run.stderr.contains(secret),
            "{secret} printed: {}",
            run.stderr
        );
    }
    assert_eq!(row(&rows, 1)["final_url"], other.url("/landing"));
    // The list's credentials are Basic auth for their own origin, and go nowhere else.
    let private = &server.requests_for("/private")[0];
    assert_eq!(
        private.header("authorization"),
        Some("Basic YWxpY2U6czNjcmV0"),
        "alice:s3cret"
    );
    let landed = &other.requests_for("/landing")[0];
    assert_eq!(
        landed.header("authorization"),
        None,
        "forwarded to another host"
    );
}

#[test]
fn an_unknown_host_reads_cannot_resolve_host() {
    let scratch = Scratch::new("dns");
    let (run, rows) = fetch_list(
        &scratch,
        &["http://no-such-host.invalid/page".to_owned()],
        &["--connect-timeout", "20"],
    );
    assert_eq!(run.code, Some(1));
    let failed = row(&rows, 1);
    assert_eq!(error_of(failed), "cannot resolve host no-such-host.invalid");
    assert_eq!(
        failed["attempts"], 1,
        "a name that does not resolve is not retried"
    );
}
