//! `futurepool fetch` being polite and going through proxies: `--rate` per host,
//! `--limit-rate` for the bandwidth, `http_proxy`/`https_proxy`/`no_proxy` and `--proxy`.
//!
//! Timing assertions are lower bounds only: a loaded machine makes requests later, never
//! earlier, so they cannot fail by chance.

mod support;

use std::time::{Duration, Instant};

use support::proxy::{forward_get, TestProxy};
use support::{error_of, fetch_list, fetch_list_env, row, Reply, Scratch, TestServer};

#[test]
fn rate_spaces_the_requests_to_one_host() {
    let server = TestServer::start(|_, _| Reply::html("x"));
    let other = TestServer::start(|_, _| Reply::html("y"));
    let scratch = Scratch::new("rate");
    let mut lines: Vec<String> = (0..5).map(|i| server.url(&format!("/p{i}"))).collect();
    lines.extend((0..5).map(|i| other.url(&format!("/q{i}"))));
    let (run, _) = fetch_list(&scratch, &lines, &["-j", "10", "--rate", "4/s"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    for server in [&server, &other] {
        let mut arrived: Vec<Instant> = server.requests().iter().map(|r| r.arrived).collect();
        arrived.sort();
        assert_eq!(arrived.len(), 5);
        for pair in arrived.windows(2) {
            let gap = pair[1] - pair[0];
            // 4 per second is one per 250 ms; allow for the clock of two processes.
            assert!(gap >= Duration::from_millis(200), "requests {gap:?} apart");
        }
    }
}

#[test]
fn a_host_waiting_for_its_rate_slot_holds_no_worker() {
    let slow = TestServer::start(|_, _| Reply::html("a"));
    let other = TestServer::start(|_, _| Reply::html("b"));
    let scratch = Scratch::new("rate-other-host");
    let mut lines: Vec<String> = (0..4).map(|i| slow.url(&format!("/a{i}"))).collect();
    lines.extend((0..2).map(|i| other.url(&format!("/b{i}"))));
    let (run, _) = fetch_list(&scratch, &lines, &["-j", "2", "--rate", "1/s"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let mut slow_arrivals: Vec<Instant> = slow.requests().iter().map(|r| r.arrived).collect();
    slow_arrivals.sort();
    // The first host's third request is due two seconds in; the other host's two requests do
    // not wait behind it for a worker.
    for request in other.requests() {
        assert!(
            request.arrived < slow_arrivals[2],
            "{} waited behind the rate-limited host",
            request.path
        );
    }
}

#[test]
fn limit_rate_caps_the_bandwidth_of_the_whole_run() {
    let page = vec![b'x'; 100 << 10];
    let server = TestServer::routes(vec![
        ("/a", Reply::bytes("application/octet-stream", page.clone())),
        ("/b", Reply::bytes("application/octet-stream", page)),
    ]);
    let scratch = Scratch::new("limit-rate");
    let started = Instant::now();
    let (run, rows) = fetch_list(
        &scratch,
        &[server.url("/a"), server.url("/b")],
        &["-j", "2", "--limit-rate", "400K"],
    );
    let took = started.elapsed();
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(rows.len(), 2);
    // 200 KiB at 400 KiB/s is half a second, less the 100 ms burst allowed.
    assert!(took >= Duration::from_millis(400), "took only {took:?}");
}

#[test]
fn http_proxy_forwards_http_urls_and_no_proxy_bypasses_it() {
    let server = TestServer::routes(vec![("/p", Reply::html("through the proxy"))]);
    let proxy = TestProxy::start();
    let scratch = Scratch::new("http-proxy");
    let lines = vec![server.url("/p")];
    let env = [("http_proxy", proxy.url())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (run, rows) = fetch_list_env(&scratch, &lines, &[], &env);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(row(&rows, 1)["error"].is_null());
    // Forwarded in absolute form, as curl and wget do for http:// (no CONNECT to port 80,
    // which squid and others refuse by default); the origin sees the right Host.
    let seen = proxy.requests();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].method, "GET");
    assert_eq!(seen[0].target, server.url("/p"));
    assert_eq!(
        server.requests_for("/p")[0].header("host"),
        Some(server.addr().to_string().as_str())
    );
    assert_eq!(
        std::fs::read_to_string(scratch.out().join("p.html")).unwrap(),
        "through the proxy"
    );

    // https_proxy is not for http:// URLs, and no_proxy names hosts reached directly.
    for env in [
        vec![("https_proxy", proxy.url())],
        vec![
            ("http_proxy", proxy.url()),
            ("no_proxy", "localhost,127.0.0.1".to_owned()),
        ],
    ] {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (run, _) = fetch_list_env(&scratch, &lines, &[], &env);
        assert_eq!(run.code, Some(0), "{}", run.stderr);
        assert_eq!(proxy.requests().len(), 1, "{env:?} went through the proxy");
    }

    // The fixture's forwarding, checked on its own.
    let forwarded = forward_get(&proxy, &server.url("/p"));
    assert!(forwarded.ends_with("through the proxy"), "{forwarded}");
}

#[test]
fn forwarding_carries_many_pages_through_one_proxy() {
    let server = TestServer::start(|request, _| Reply::html(&format!("page {}", request.path)));
    let proxy = TestProxy::start();
    let scratch = Scratch::new("forward-many");
    let lines: Vec<String> = (0..20).map(|i| server.url(&format!("/p{i}"))).collect();
    let (run, rows) = fetch_list(&scratch, &lines, &["--proxy", &proxy.url(), "-j", "4"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(rows.len(), 20);
    assert_eq!(proxy.requests().len(), 20);
    assert!(proxy
        .requests()
        .iter()
        .all(|r| r.method == "GET" && r.target.starts_with("http://")));
    for i in 0..20 {
        let saved = std::fs::read_to_string(scratch.out().join(format!("p{i}.html"))).unwrap();
        assert_eq!(saved, format!("page /p{i}"));
    }
}

#[test]
fn the_proxy_option_overrides_the_environment_and_its_password_is_never_shown() {
    let server = TestServer::routes(vec![("/p", Reply::html("p"))]);
    // "Basic " + base64("user:pw")
    let proxy = TestProxy::start_requiring(Some("Basic dXNlcjpwdw=="));
    let decoy = TestProxy::start();
    let scratch = Scratch::new("proxy-option");
    let with_password = proxy.url().replacen("http://", "http://user:pw@", 1);
    let env = [("http_proxy", decoy.url()), ("no_proxy", "*".to_owned())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (run, rows) = fetch_list_env(
        &scratch,
        &[server.url("/p")],
        &["--proxy", &with_password],
        &env,
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(row(&rows, 1)["error"].is_null());
    assert_eq!(proxy.requests().len(), 1);
    assert!(decoy.requests().is_empty());

    // Wrong password: the proxy's refusal is the entry's error, and the password stays hidden.
    let wrong = proxy.url().replacen("http://", "http://user:hunter2@", 1);
    let (run, rows) = fetch_list(
        &scratch,
        &[server.url("/p")],
        &["--proxy", &wrong, "--retries", "0"],
    );
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    let error = error_of(row(&rows, 1));
    assert!(error.starts_with("proxy: "), "{error}");
    assert!(error.contains("407"), "{error}");
    let report = std::fs::read_to_string(scratch.join("report.jsonl")).unwrap();
    assert!(!report.contains("hunter2") && !run.stderr.contains("hunter2"));
}

#[test]
fn https_urls_go_through_https_proxy_with_connect() {
    // No TLS server is needed to see the tunnel requested: the proxy logs the CONNECT, then
    // the TLS handshake with a plain HTTP server fails.
    let server = TestServer::routes(vec![]);
    let proxy = TestProxy::start();
    let scratch = Scratch::new("https-proxy");
    let url = format!("https://{}/secure", server.addr());
    let env = [("https_proxy", proxy.url())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (run, _) = fetch_list_env(&scratch, &[url], &["--retries", "0"], &env);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    let seen = proxy.requests();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(
        (seen[0].method.as_str(), seen[0].target.clone()),
        ("CONNECT", server.addr().to_string())
    );
}
