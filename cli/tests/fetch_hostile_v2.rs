//! An adversary's cases for fetch v2 (issue 11): names, `-c` against servers that lie about
//! ranges, `--update` with hostile state files, politeness values at the edges, proxies that
//! misbehave, redirects that try to carry credentials away. Every case ends with a clear
//! per-entry error or a whole file; nothing partial looks complete; nothing hangs (every run
//! of the binary is bounded by `support::wait_bounded`).

mod support;

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use support::{error_of, fetch_list, fetch_list_env, row, Delivery, Reply, Scratch, TestServer};

const OCTETS: &str = "application/octet-stream";

fn blob(n: usize) -> Vec<u8> {
    (0..n).map(|i| b'a' + (i % 26) as u8).collect()
}

// ---------------------------------------------------------------- names

#[test]
fn names_that_differ_only_by_case_or_normal_form_are_distinct_files() {
    let server = TestServer::start(|request, _| Reply::bytes(OCTETS, request.path.clone().into()));
    let scratch = Scratch::new("case");
    let lines = vec![
        format!("Page.bin {}", server.url("/1")),
        format!("page.bin {}", server.url("/2")),
        format!("\u{e9}.bin {}", server.url("/3")),
        format!("e\u{301}.bin {}", server.url("/4")),
    ];
    let (run, rows) = fetch_list(&scratch, &lines, &[]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    for (line, path) in [(1, "/1"), (2, "/2"), (3, "/3"), (4, "/4")] {
        let saved = row(&rows, line)["path"].as_str().unwrap().to_owned();
        assert_eq!(fs::read_to_string(&saved).unwrap(), path, "line {line}");
    }
}

#[test]
fn trailing_dots_in_names_are_kept_as_given() {
    let server = TestServer::start(|_, _| Reply::html("x"));
    let scratch = Scratch::new("trailing");
    let lines = vec![
        format!("x. {}", server.url("/1")),
        format!("y... {}", server.url("/2")),
    ];
    let (run, rows) = fetch_list(&scratch, &lines, &[]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let names: Vec<String> = [1, 2]
        .iter()
        .map(|&l| {
            let p = row(&rows, l)["path"].as_str().unwrap().to_owned();
            p.rsplit('/').next().unwrap().to_owned()
        })
        .collect();
    // A trailing dot is an (empty) extension: nothing is added, nothing is trimmed.
    assert_eq!(names, ["x.", "y..."]);
    assert_eq!(scratch.out_files(), ["x.", "y..."]);
}

#[test]
fn reserved_names_are_refused_before_anything_is_fetched() {
    let server = TestServer::start(|_, _| Reply::html("x"));
    let scratch = Scratch::new("reserved");
    for name in [
        ".futurepool-state.json",
        ".futurepool-resume-0000000000000000.part",
        ".futurepool-resume-0000000000000000.meta",
        ".FUTUREPOOL-state.json",
    ] {
        let lines = vec![format!("{name} {}", server.url("/x"))];
        let (run, _) = fetch_list(&scratch, &lines, &[]);
        if name.starts_with(".futurepool-") {
            assert_eq!(run.code, Some(2), "{name}: {}", run.stderr);
            assert!(run.stderr.contains("reserved"), "{}", run.stderr);
        }
    }
}

/// Names derived from URLs are numbered in list order (`page`, `page-2`), so an edited list
/// can give a name to another URL. Without a state file nothing records which URL a file
/// holds (wget -nc is the same); once `--update` has written one, neither `--skip-existing`
/// nor `--update` trusts a file the state says holds another URL's page, whatever the runs
/// in between did.
#[test]
fn skip_existing_never_skips_a_file_the_state_says_holds_another_url() {
    let server = TestServer::start(|request, _| Reply::bytes(OCTETS, request.path.clone().into()));
    let scratch = Scratch::new("stable-names");
    let url = |p: &str| format!("{}/{p}/page", server.url(""));
    let (a, b, c, d) = (url("a"), url("b"), url("c"), url("d"));
    let (run, _) = fetch_list(&scratch, &[a.clone(), b.clone(), c.clone()], &["--update"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let check = |rows: &[serde_json::Value], n: u64| {
        for line in 1..=n {
            let r = row(rows, line);
            let body = fs::read_to_string(r["path"].as_str().unwrap()).unwrap();
            let url = r["url"].as_str().unwrap();
            assert!(
                url.ends_with(&body),
                "line {line}: {url} is in a file holding {body} ({r})"
            );
        }
    };
    // The first entry removed, the rest reordered and a new one added; then a plain run
    // (neither option) in between, then the first list again.
    let (run, rows) = fetch_list(
        &scratch,
        &[c.clone(), d.clone(), b.clone()],
        &["--skip-existing"],
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    check(&rows, 3);
    let (run, rows) = fetch_list(&scratch, &[d.clone(), c.clone()], &[]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    check(&rows, 2);
    for args in [&["--skip-existing"][..], &["--update"][..]] {
        let (run, rows) = fetch_list(&scratch, &[a.clone(), b.clone(), c.clone()], args);
        assert_eq!(run.code, Some(0), "{}", run.stderr);
        check(&rows, 3);
    }
    // An unchanged list is still skipped.
    let (_, rows) = fetch_list(&scratch, &[a, b, c], &["--skip-existing"]);
    assert!(
        (1..=3).all(|l| row(&rows, l)["skipped"] == true),
        "{rows:#?}"
    );
}

// ---------------------------------------------------------------- -c / --continue

/// A page of `SIZE` bytes with a strong ETag; its first response is cut after `CUT` bytes,
/// later ones are answered by `resumed`.
fn cut_then(
    resumed: impl Fn(&support::server::Request) -> Reply + Send + Sync + 'static,
) -> TestServer {
    TestServer::start(move |request, earlier| {
        if earlier == 0 {
            return Reply::bytes(OCTETS, blob(100))
                .header("ETag", "\"e1\"")
                .delivered(Delivery::CloseAfter(40));
        }
        resumed(request)
    })
}

fn continue_twice(
    server: &TestServer,
    scratch: &Scratch,
) -> (support::Run, Vec<serde_json::Value>) {
    let lines = vec![format!("blob {}", server.url("/blob"))];
    let (run, _) = fetch_list(scratch, &lines, &["-c", "--retries", "0"]);
    assert_eq!(run.code, Some(1), "the first run is cut: {}", run.stderr);
    fetch_list(scratch, &lines, &["-c", "--retries", "0"])
}

fn assert_no_wrong_final_file(scratch: &Scratch) {
    if let Ok(body) = fs::read(scratch.out().join("blob")) {
        assert_eq!(
            body,
            blob(100),
            "a file under the final name is the whole page"
        );
    }
}

#[test]
fn continue_against_a_server_that_ignores_range_restarts_from_zero() {
    let server = cut_then(|_| Reply::bytes(OCTETS, blob(100)).header("ETag", "\"e1\""));
    let scratch = Scratch::new("c-200");
    let (run, rows) = continue_twice(&server, &scratch);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(row(&rows, 1)["resumed_from"], 0);
    assert_eq!(fs::read(scratch.out().join("blob")).unwrap(), blob(100));
    assert_eq!(scratch.out_files(), ["blob"]);
}

#[test]
fn continue_refuses_a_206_without_content_range_or_with_a_wrong_total() {
    for (tag, content_range) in [
        ("none", None),
        ("wrong-total", Some("bytes 40-99/1000")),
        ("star-total", Some("bytes 40-99/*")),
        ("end-past-total", Some("bytes 40-199/100")),
        ("garbage", Some("bytes=40-99/100")),
    ] {
        let server = cut_then(move |_| {
            let r = Reply::bytes(OCTETS, blob(100)[40..].to_vec())
                .header("ETag", "\"e1\"")
                .status_code(206);
            match content_range {
                Some(v) => r.header("Content-Range", v),
                None => r,
            }
        });
        let scratch = Scratch::new(&format!("c-206-{tag}"));
        let (run, rows) = continue_twice(&server, &scratch);
        if tag == "star-total" {
            assert_eq!(run.code, Some(0), "{tag}: {}", run.stderr);
        } else if tag == "wrong-total" {
            // The range was honoured, but the file is short of the announced total.
            assert_eq!(run.code, Some(1), "{tag}: {}", run.stderr);
            let e = error_of(row(&rows, 1));
            assert!(
                e.contains("of the 1000 bytes its Content-Range announced"),
                "{e}"
            );
        } else {
            assert_eq!(run.code, Some(1), "{tag}: {}", run.stderr);
            let e = error_of(row(&rows, 1));
            assert!(!e.is_empty(), "{tag}");
        }
        assert_no_wrong_final_file(&scratch);
    }
}

#[test]
fn continue_after_a_416_restarts_whole() {
    let server = cut_then(|request| match request.header("range") {
        Some(_) => Reply::status(416).header("Content-Range", "bytes */100"),
        None => Reply::bytes(OCTETS, blob(100)).header("ETag", "\"e1\""),
    });
    let scratch = Scratch::new("c-416");
    let lines = vec![format!("blob {}", server.url("/blob"))];
    let (run, _) = fetch_list(&scratch, &lines, &["-c", "--retries", "0"]);
    assert_eq!(run.code, Some(1));
    let (run, rows) = fetch_list(
        &scratch,
        &lines,
        &["-c", "--retries", "1", "--backoff", "0.01"],
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(row(&rows, 1)["resumed_from"], 0);
    assert_eq!(fs::read(scratch.out().join("blob")).unwrap(), blob(100));
    assert_eq!(scratch.out_files(), ["blob"]);
}

#[test]
fn continue_resumes_an_entry_that_redirects() {
    let server = TestServer::start(|request, _| {
        if request.path == "/start" {
            return Reply::redirect(302, "/real");
        }
        let full = blob(100);
        match request.header("range") {
            Some("bytes=40-") => Reply::bytes(OCTETS, full[40..].to_vec())
                .header("ETag", "\"e1\"")
                .header("Content-Range", "bytes 40-99/100")
                .status_code(206),
            Some(other) => panic!("unexpected range {other}"),
            None => Reply::bytes(OCTETS, full)
                .header("ETag", "\"e1\"")
                .delivered(Delivery::CloseAfter(40)),
        }
    });
    let scratch = Scratch::new("c-redirect");
    let lines = vec![format!("blob {}", server.url("/start"))];
    let (run, _) = fetch_list(&scratch, &lines, &["-c", "--retries", "0"]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    let (run, rows) = fetch_list(&scratch, &lines, &["-c", "--retries", "0"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(row(&rows, 1)["resumed_from"], 40, "{}", row(&rows, 1));
    assert_eq!(fs::read(scratch.out().join("blob")).unwrap(), blob(100));
}

fn resume_part(scratch: &Scratch) -> std::path::PathBuf {
    let name = scratch
        .out_files()
        .into_iter()
        .find(|n| n.ends_with(".part"))
        .expect("a kept partial file");
    scratch.out().join(name)
}

fn range_server() -> TestServer {
    cut_then(|request| {
        let full = blob(100);
        let start = request
            .header("range")
            .and_then(|r| r.strip_prefix("bytes="))
            .and_then(|r| r.strip_suffix('-'))
            .and_then(|s| s.parse::<usize>().ok());
        match start {
            Some(start) if start < 100 => Reply::bytes(OCTETS, full[start..].to_vec())
                .header("ETag", "\"e1\"")
                .header("Content-Range", &format!("bytes {start}-99/100"))
                .status_code(206),
            Some(_) => Reply::status(416).header("Content-Range", "bytes */100"),
            None => Reply::bytes(OCTETS, full).header("ETag", "\"e1\""),
        }
    })
}

#[test]
fn continue_after_the_partial_file_was_truncated_resumes_from_what_is_left() {
    let server = range_server();
    let scratch = Scratch::new("c-truncated");
    let lines = vec![format!("blob {}", server.url("/blob"))];
    let (run, _) = fetch_list(&scratch, &lines, &["-c", "--retries", "0"]);
    assert_eq!(run.code, Some(1));
    let part = resume_part(&scratch);
    fs::OpenOptions::new()
        .write(true)
        .open(&part)
        .unwrap()
        .set_len(7)
        .unwrap();
    let (run, rows) = fetch_list(&scratch, &lines, &["-c", "--retries", "0"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(row(&rows, 1)["resumed_from"], 7);
    assert_eq!(fs::read(scratch.out().join("blob")).unwrap(), blob(100));
}

#[test]
fn continue_with_a_partial_file_replaced_by_a_symlink_or_a_directory_still_saves_the_page() {
    for kind in ["symlink", "dir"] {
        let server = range_server();
        let scratch = Scratch::new(&format!("c-planted-{kind}"));
        let victim = scratch.join("victim");
        fs::write(&victim, b"precious").unwrap();
        let lines = vec![format!("blob {}", server.url("/blob"))];
        let (run, _) = fetch_list(&scratch, &lines, &["-c", "--retries", "0"]);
        assert_eq!(run.code, Some(1));
        let part = resume_part(&scratch);
        fs::remove_file(&part).unwrap();
        match kind {
            "symlink" => std::os::unix::fs::symlink(&victim, &part).unwrap(),
            _ => fs::create_dir(&part).unwrap(),
        }
        let (run, rows) = fetch_list(&scratch, &lines, &["-c", "--retries", "0"]);
        assert_eq!(fs::read(&victim).unwrap(), b"precious", "{kind}");
        // -c only saves time: the page is still fetched whole, without writing through or
        // into what was planted.
        assert_eq!(
            run.code,
            Some(0),
            "{kind}: {} {}",
            run.stderr,
            row(&rows, 1)
        );
        assert_eq!(fs::read(scratch.out().join("blob")).unwrap(), blob(100));
    }
}

// ---------------------------------------------------------------- --update

fn etag_server() -> TestServer {
    TestServer::start(|request, _| {
        if request.header("if-none-match") == Some("\"v1\"") {
            return Reply::status(304).header("ETag", "\"v1\"").without_length();
        }
        Reply::html("v1").header("ETag", "\"v1\"")
    })
}

#[test]
fn update_with_a_state_file_that_is_a_fifo_does_not_hang() {
    let server = etag_server();
    let scratch = Scratch::new("state-fifo");
    fs::create_dir_all(scratch.out()).unwrap();
    let state = scratch.out().join(".futurepool-state.json");
    let c = std::ffi::CString::new(state.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo(3) on a NUL-terminated path we own.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let lines = vec![format!("page {}", server.url("/p"))];
    let started = Instant::now();
    let (run, rows) = fetch_list(&scratch, &lines, &["--update"]);
    assert!(started.elapsed() < Duration::from_secs(60));
    assert_eq!(row(&rows, 1)["status"], 200, "{}", run.stderr);
    assert!(
        run.stderr.contains(".futurepool-state.json"),
        "{}",
        run.stderr
    );
}

#[test]
fn update_with_a_state_file_that_is_a_symlink_to_dev_zero_does_not_read_forever() {
    let server = etag_server();
    let scratch = Scratch::new("state-zero");
    fs::create_dir_all(scratch.out()).unwrap();
    let state = scratch.out().join(".futurepool-state.json");
    std::os::unix::fs::symlink("/dev/zero", &state).unwrap();
    let lines = vec![format!("page {}", server.url("/p"))];
    let (run, rows) = fetch_list(&scratch, &lines, &["--update"]);
    assert_eq!(row(&rows, 1)["status"], 200, "{}", run.stderr);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
}

#[test]
fn update_with_truncated_or_hostile_state_files_fetches_whole() {
    let server = etag_server();
    let scratch = Scratch::new("state-hostile");
    let lines = vec![format!("page {}", server.url("/p"))];
    let (run, _) = fetch_list(&scratch, &lines, &["--update"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let state_path = scratch.out().join(".futurepool-state.json");
    let good = fs::read_to_string(&state_path).unwrap();
    let url = server.url("/p");
    for (tag, text) in [
        ("truncated", good[..good.len() / 2].to_owned()),
        ("empty", String::new()),
        (
            "wrong-types",
            r#"{"version":1,"entries":{"page":{"url":1,"file":[]}}}"#.to_owned(),
        ),
        ("version-2", r#"{"version":2,"entries":{}}"#.to_owned()),
        (
            "deep",
            format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)),
        ),
        (
            "escape",
            format!(
                r#"{{"version":1,"entries":{{"page":{{"url":"{url}","file":"../../etc/passwd","etag":"\"v1\""}}}}}}"#
            ),
        ),
        (
            "crlf-etag",
            format!(
                r#"{{"version":1,"entries":{{"page":{{"url":"{url}","file":"page.html","etag":"\"v1\"\r\nX-Evil: 1"}}}}}}"#
            ),
        ),
    ] {
        fs::write(&state_path, &text).unwrap();
        let (run, rows) = fetch_list(&scratch, &lines, &["--update"]);
        assert_eq!(run.code, Some(0), "{tag}: {}", run.stderr);
        assert_eq!(row(&rows, 1)["status"], 200, "{tag}");
        assert_eq!(
            fs::read_to_string(scratch.out().join("page.html")).unwrap(),
            "v1"
        );
        // A rerun from the state this run wrote is conditional again.
        let (_, rows) = fetch_list(&scratch, &lines, &["--update"]);
        assert_eq!(row(&rows, 1)["not_modified"], true, "{tag}");
    }
    assert!(server
        .requests()
        .iter()
        .all(|r| r.header("x-evil").is_none()));
}

#[test]
fn a_304_to_an_unconditional_request_is_an_error_not_a_saved_file() {
    let server =
        TestServer::start(|_, _| Reply::status(304).header("ETag", "\"v1\"").without_length());
    let scratch = Scratch::new("stray-304");
    let lines = vec![format!("page {}", server.url("/p"))];
    for args in [&[][..], &["--update"][..]] {
        let (run, rows) = fetch_list(&scratch, &lines, args);
        assert_eq!(run.code, Some(1), "{}", run.stderr);
        assert!(error_of(row(&rows, 1)).contains("304"), "{}", row(&rows, 1));
        assert_eq!(row(&rows, 1)["not_modified"], false);
        assert!(scratch
            .out_files()
            .iter()
            .all(|n| n.starts_with(".futurepool-state")));
    }
}

#[test]
fn update_with_a_weak_etag_or_only_last_modified_asks_conditionally() {
    let date = "Wed, 02 Dec 2026 10:00:00 GMT";
    let server = TestServer::start(move |request, _| match request.path.as_str() {
        "/weak" if request.header("if-none-match") == Some("W/\"w1\"") => {
            Reply::status(304).without_length()
        }
        "/weak" => Reply::html("weak").header("ETag", "W/\"w1\""),
        "/date" if request.header("if-modified-since") == Some(date) => {
            Reply::status(304).without_length()
        }
        _ => Reply::html("date").header("Last-Modified", date),
    });
    let scratch = Scratch::new("update-weak");
    let lines = vec![server.url("/weak"), server.url("/date")];
    let (run, _) = fetch_list(&scratch, &lines, &["--update"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let (run, rows) = fetch_list(&scratch, &lines, &["--update"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(row(&rows, 1)["not_modified"], true);
    assert_eq!(row(&rows, 2)["not_modified"], true);
    // Both files removed: the 304-happy server is not asked conditionally.
    for f in ["weak.html", "date.html"] {
        fs::remove_file(scratch.out().join(f)).unwrap();
    }
    let (run, rows) = fetch_list(&scratch, &lines, &["--update"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(row(&rows, 1)["not_modified"], false);
    assert_eq!(
        fs::read_to_string(scratch.out().join("weak.html")).unwrap(),
        "weak"
    );
}

#[test]
fn update_never_writes_a_password_into_the_state_file() {
    let server = etag_server();
    let scratch = Scratch::new("state-password");
    let url = server.url("/p").replace("http://", "http://user:s3cret@");
    let (run, _) = fetch_list(&scratch, &[format!("page {url}")], &["--update", "-c"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    for name in scratch.out_files() {
        let text = fs::read(scratch.out().join(&name)).unwrap();
        assert!(!String::from_utf8_lossy(&text).contains("s3cret"), "{name}");
    }
}

// ---------------------------------------------------------------- politeness

#[test]
fn rate_and_limit_rate_values_at_the_edges_are_refused_or_bounded() {
    let server = TestServer::start(|_, _| Reply::html("x"));
    let scratch = Scratch::new("rate-edges");
    let lines = vec![server.url("/a")];
    for bad in [
        "--rate=0",
        "--rate=-1",
        "--rate=nan",
        "--rate=inf",
        "--rate=1e-300",
        "--rate=1e-300/h",
        "--rate=0.5/d",
        "--limit-rate=0",
        "--limit-rate=-5",
        "--rate=",
    ] {
        let (run, _) = fetch_list(&scratch, &lines, &[bad]);
        assert_eq!(run.code, Some(2), "{bad:?} accepted: {}", run.stderr);
        let option = bad.split('=').next().unwrap();
        assert!(run.stderr.contains(option), "{bad:?}: {}", run.stderr);
    }
    // Absurdly large values are no limit worth the name, but must not break anything.
    for big in [
        ["--rate", "1e300"],
        ["--limit-rate", "99999999T"],
        ["--rate", "18446744073709551615"],
    ] {
        let (run, rows) = fetch_list(&scratch, &lines, &big);
        if run.code == Some(0) {
            assert_eq!(row(&rows, 1)["status"], 200);
        } else {
            assert_eq!(run.code, Some(2), "{big:?}: {}", run.stderr);
        }
    }
}

#[test]
fn a_tiny_limit_rate_still_ends_at_the_total_timeout() {
    let server = TestServer::start(|_, _| Reply::bytes(OCTETS, blob(64 * 1024)));
    let scratch = Scratch::new("limit-tiny");
    let lines = vec![server.url("/a")];
    let started = Instant::now();
    let (run, rows) = fetch_list(
        &scratch,
        &lines,
        &["--limit-rate", "1", "--timeout", "2", "--retries", "0"],
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        error_of(row(&rows, 1)).contains("timeout"),
        "{}",
        row(&rows, 1)
    );
    assert!(scratch.out_files().is_empty(), "{:?}", scratch.out_files());
}

#[test]
fn a_slow_rate_still_ends_at_the_total_timeout() {
    let server = TestServer::start(|request, _| {
        if request.path == "/r" {
            Reply::redirect(302, "/a")
        } else {
            Reply::html("x")
        }
    });
    let scratch = Scratch::new("rate-slow");
    // One request per 100 s: the redirect's second request would wait for 100 s.
    let lines = vec![server.url("/r")];
    let started = Instant::now();
    let (run, rows) = fetch_list(
        &scratch,
        &lines,
        &["--rate", "0.01", "--timeout", "2", "--retries", "0"],
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        error_of(row(&rows, 1)).contains("timeout"),
        "{}",
        row(&rows, 1)
    );
}

#[test]
fn rate_with_many_hosts_keeps_each_host_to_its_own_bucket() {
    let servers: Vec<TestServer> = (0..8)
        .map(|_| TestServer::start(|_, _| Reply::html("x")))
        .collect();
    let scratch = Scratch::new("rate-hosts");
    let lines: Vec<String> = servers.iter().map(|s| s.url("/a")).collect();
    let started = Instant::now();
    let (run, _) = fetch_list(&scratch, &lines, &["--rate", "0.05", "-j", "8"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    // One request per host: none waits for another host's slot (8 × 20 s otherwise).
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------- proxies

/// A "proxy" that answers every connection with `answer` and closes.
fn scripted_proxy(answer: &'static [u8]) -> (String, thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    let handle = thread::spawn(move || {
        let give_up = Instant::now() + Duration::from_secs(60);
        while Instant::now() < give_up {
            match listener.accept() {
                Ok((stream, _)) => {
                    stream.set_nonblocking(false).unwrap();
                    stream
                        .set_read_timeout(Some(Duration::from_secs(10)))
                        .unwrap();
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut line = String::new();
                    while reader.read_line(&mut line).map(|n| n > 2).unwrap_or(false) {
                        line.clear();
                    }
                    let mut stream = stream;
                    let _ = stream.write_all(answer);
                    let _ = stream.flush();
                    if answer.is_empty() {
                        return;
                    }
                }
                Err(_) => thread::sleep(Duration::from_millis(10)),
            }
        }
    });
    (format!("http://proxyuser:pr0xypass@{addr}"), handle)
}

#[test]
fn proxies_that_refuse_demand_auth_or_hang_up_give_clear_errors_without_the_password() {
    for (tag, answer) in [
        (
            "403",
            &b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n"[..],
        ),
        (
            "407",
            &b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n"[..],
        ),
        ("close", &b""[..]),
        ("garbage", &b"SSH-2.0-OpenSSH_9.6\r\n\r\n"[..]),
    ] {
        let (proxy, _server) = scripted_proxy(answer);
        let scratch = Scratch::new(&format!("proxy-{tag}"));
        for url in ["http://example.invalid/a", "https://example.invalid/a"] {
            let (run, rows) = fetch_list(
                &scratch,
                &[url.to_owned()],
                &["--proxy", &proxy, "--retries", "0", "--timeout", "10"],
            );
            assert_eq!(run.code, Some(1), "{tag} {url}: {}", run.stderr);
            let e = error_of(row(&rows, 1));
            assert!(!e.is_empty(), "{tag} {url}");
            assert!(
                !run.stderr.contains("pr0xypass") && !run.stdout.contains("pr0xypass"),
                "{tag}: {}",
                run.stderr
            );
            let report = fs::read_to_string(scratch.join("report.jsonl")).unwrap();
            assert!(!report.contains("pr0xypass"), "{tag}: {report}");
            // A forwarded http:// request's 403 may be the origin's; a CONNECT refusal and
            // any 407 are the proxy's and say so.
            // A CONNECT refused, or a proxy that cannot be reached, names the proxy (not the
            // target) and the status.
            let https = url.starts_with("https");
            if tag == "407" || (https && tag != "garbage") {
                assert!(e.contains("proxy"), "{tag} {url}: {e}");
                assert!(!e.contains("example.invalid"), "{tag} {url}: {e}");
            }
            if tag == "407" || tag == "403" {
                assert!(e.contains(tag), "{tag} {url}: {e}");
            }
        }
    }
}

#[test]
fn a_proxy_that_injects_a_response_to_a_connect_is_not_the_page() {
    // 200 to CONNECT followed by an HTTP response inside the "tunnel": for https this is TLS
    // garbage, never saved.
    let (proxy, _server) = scripted_proxy(
        b"HTTP/1.1 200 Connection established\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nEVIL!",
    );
    let scratch = Scratch::new("proxy-inject");
    let (run, rows) = fetch_list(
        &scratch,
        &["https://example.invalid/a".to_owned()],
        &["--proxy", &proxy, "--retries", "0", "--timeout", "10"],
    );
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(!error_of(row(&rows, 1)).is_empty());
    assert!(scratch.out_files().is_empty(), "{:?}", scratch.out_files());
}

#[test]
fn no_proxy_patterns_for_ips_and_ports() {
    let server = TestServer::start(|_, _| Reply::html("direct"));
    // A dead proxy: anything sent to it fails.
    let dead = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let proxy = format!("http://{dead_addr}");
    let port = server.addr().port();
    let scratch = Scratch::new("no-proxy");
    let lines = vec![server.url("/a")];
    for (no_proxy, direct) in [
        ("*", true),
        ("127.0.0.1", true),
        (" 127.0.0.1 ,other", true),
        (&*format!("127.0.0.1:{port}"), true),
        ("localhost", false),
        ("0.0.1", false),
        (".0.0.1", false),
        ("27.0.0.1", false),
        ("127.0.0.0/8", true),
    ] {
        let (run, rows) = fetch_list_env(
            &scratch,
            &lines,
            &["--retries", "0"],
            &[("http_proxy", &proxy), ("no_proxy", no_proxy)],
        );
        let saved = run.code == Some(0);
        assert_eq!(
            saved,
            direct,
            "no_proxy={no_proxy:?}: {} {}",
            run.stderr,
            row(&rows, 1)
        );
    }
}

// ---------------------------------------------------------------- redirects

#[test]
fn credentials_never_follow_a_redirect_to_another_host_port_or_scheme() {
    let other = TestServer::start(|_, _| Reply::html("other"));
    let target = other.url("/land");
    let server = TestServer::start(move |request, _| match request.path.as_str() {
        "/start" => Reply::redirect(302, &target),
        _ => Reply::html("x"),
    });
    let scratch = Scratch::new("redirect-creds");
    let url = server
        .url("/start")
        .replace("http://", "http://alice:hunter2@");
    let (run, rows) = fetch_list(&scratch, &[url], &["-H", "Cookie: c=1"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let landed = &other.requests()[0];
    assert!(landed.header("authorization").is_none(), "{landed:?}");
    assert!(landed.header("cookie").is_none(), "{landed:?}");
    assert!(server.requests()[0].header("authorization").is_some());
    let report = fs::read_to_string(scratch.join("report.jsonl")).unwrap();
    assert!(!report.contains("hunter2") && !run.stderr.contains("hunter2"));
    let _ = rows;
}

#[test]
fn redirects_to_other_schemes_and_loops_are_per_entry_errors() {
    let server = TestServer::start(|request, _| match request.path.as_str() {
        "/file" => Reply::redirect(302, "file:///etc/passwd"),
        "/ftp" => Reply::redirect(301, "ftp://example.com/x"),
        "/js" => Reply::redirect(302, "javascript:alert(1)"),
        "/data" => Reply::redirect(302, "data:text/html,hi"),
        "/empty" => Reply::redirect(302, ""),
        "/self" => Reply::redirect(302, "/self"),
        "/a" => Reply::redirect(302, "/b"),
        "/b" => Reply::redirect(302, "/a?"),
        "/a?" => Reply::redirect(302, "/a"),
        "/nohost" => Reply::redirect(302, "http:///x"),
        "/creds" => Reply::redirect(302, "http://u:leak@127.0.0.1:1/x"),
        _ => Reply::html("ok"),
    });
    let scratch = Scratch::new("redirect-bad");
    let paths = [
        "/file", "/ftp", "/js", "/data", "/empty", "/self", "/a", "/nohost", "/creds",
    ];
    let lines: Vec<String> = paths.iter().map(|p| server.url(p)).collect();
    let (run, rows) = fetch_list(
        &scratch,
        &lines,
        &["--retries", "0", "--connect-timeout", "2"],
    );
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    for (i, path) in paths.iter().enumerate() {
        let r = row(&rows, i as u64 + 1);
        assert!(!error_of(r).is_empty(), "{path}: {r}");
    }
    let report = fs::read_to_string(scratch.join("report.jsonl")).unwrap();
    assert!(
        !report.contains("leak") && !run.stderr.contains("leak"),
        "{report}"
    );
    assert!(scratch.out_files().is_empty(), "{:?}", scratch.out_files());
}

// ---------------------------------------------------------------- stale connections

#[test]
fn many_stale_connections_at_once_are_all_resent() {
    let server = TestServer::start_with(support::Keepalive::DropReused, |request, _| {
        if request.path.starts_with("/r") {
            Reply::redirect(302, &format!("/p{}", &request.path[2..]))
        } else {
            Reply::html("page")
        }
    });
    let scratch = Scratch::new("stale-many");
    let lines: Vec<String> = (0..64)
        .map(|i| format!("p{i} {}", server.url(&format!("/r{i}"))))
        .collect();
    let (run, rows) = fetch_list(&scratch, &lines, &["-j", "32", "--retries", "0"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    for line in 1..=64 {
        assert_eq!(row(&rows, line)["attempts"], 1);
    }
}

/// Some servers (and caches) ignore If-Range and answer any Range with a 206: a 206 naming
/// another version than the kept bytes' would splice two versions into one "complete" file.
#[test]
fn a_206_of_another_version_than_the_kept_bytes_is_refused() {
    for (tag, validator) in [("etag", "ETag"), ("date", "Last-Modified")] {
        let server = TestServer::start(move |request, earlier| {
            let (v1, v2) = match validator {
                "ETag" => ("\"e1\"", "\"e2\""),
                _ => (
                    "Wed, 01 Dec 2026 10:00:00 GMT",
                    "Wed, 02 Dec 2026 10:00:00 GMT",
                ),
            };
            if earlier == 0 {
                return Reply::bytes(OCTETS, blob(100))
                    .header(validator, v1)
                    .delivered(Delivery::CloseAfter(40));
            }
            // Version 2 is all 'Z'; the range is honoured, If-Range is not.
            let full = vec![b'Z'; 100];
            match request.header("range") {
                Some("bytes=40-") => Reply::bytes(OCTETS, full[40..].to_vec())
                    .header(validator, v2)
                    .header("Content-Range", "bytes 40-99/100")
                    .status_code(206),
                _ => Reply::bytes(OCTETS, full).header(validator, v2),
            }
        });
        let scratch = Scratch::new(&format!("c-206-other-{tag}"));
        let lines = vec![format!("blob {}", server.url("/blob"))];
        let (run, _) = fetch_list(&scratch, &lines, &["-c", "--retries", "0"]);
        assert_eq!(run.code, Some(1));
        let (run, rows) = fetch_list(
            &scratch,
            &lines,
            &["-c", "--retries", "1", "--backoff", "0.01"],
        );
        let saved = fs::read(scratch.out().join("blob"));
        if let Ok(body) = &saved {
            assert_eq!(
                body,
                &vec![b'Z'; 100],
                "{tag}: two versions spliced: {}",
                row(&rows, 1)
            );
        }
        assert_eq!(run.code, Some(0), "{tag}: {}", run.stderr);
    }
}

/// Servers send raw UTF-8 in `Location` (browsers and curl percent-encode it and follow).
#[test]
fn a_redirect_to_a_raw_utf8_location_is_followed() {
    let server = TestServer::start(|request, _| match request.path.as_str() {
        "/start" => Reply::redirect(302, "/caf\u{e9}.html"),
        "/caf%C3%A9.html" => Reply::html("caf\u{e9}"),
        other => Reply::status(404).body(other.as_bytes().to_vec()),
    });
    let scratch = Scratch::new("utf8-location");
    let (run, rows) = fetch_list(&scratch, &[format!("cafe {}", server.url("/start"))], &[]);
    assert_eq!(run.code, Some(0), "{} {}", run.stderr, row(&rows, 1));
    assert!(row(&rows, 1)["final_url"]
        .as_str()
        .unwrap()
        .ends_with("/caf%C3%A9.html"));
}

#[test]
fn update_with_a_state_file_over_the_size_limit_fetches_whole_with_a_warning() {
    let server = etag_server();
    let scratch = Scratch::new("state-huge");
    fs::create_dir_all(scratch.out()).unwrap();
    let state = scratch.out().join(".futurepool-state.json");
    // Sparse: 300 MiB of nothing costs no disk.
    fs::File::create(&state)
        .unwrap()
        .set_len(300 << 20)
        .unwrap();
    let lines = vec![format!("page {}", server.url("/p"))];
    let (run, rows) = fetch_list(&scratch, &lines, &["--update"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(row(&rows, 1)["status"], 200);
    assert!(run.stderr.contains("larger than 256 MiB"), "{}", run.stderr);
    // Replaced by this run's state: the next run is conditional.
    let (_, rows) = fetch_list(&scratch, &lines, &["--update"]);
    assert_eq!(row(&rows, 1)["not_modified"], true);
}

#[test]
fn a_proxy_that_accepts_and_never_answers_is_abandoned_within_the_timeouts() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy = format!("http://{}", listener.local_addr().unwrap());
    // Accepts (the kernel does, from the backlog) and never reads or answers; held until
    // the test ends.
    let _held = thread::spawn(move || {
        let mut streams = Vec::new();
        listener.set_nonblocking(true).unwrap();
        let give_up = Instant::now() + Duration::from_secs(60);
        while Instant::now() < give_up {
            if let Ok((s, _)) = listener.accept() {
                streams.push(s);
            }
            thread::sleep(Duration::from_millis(20));
        }
    });
    let scratch = Scratch::new("proxy-silent");
    let lines = vec![
        "http://example.invalid/a".to_owned(),
        "https://example.invalid/b".to_owned(),
    ];
    let started = Instant::now();
    let (run, rows) = fetch_list(
        &scratch,
        &lines,
        &[
            "--proxy",
            &proxy,
            "--retries",
            "0",
            "--stall-timeout",
            "1",
            "--timeout",
            "3",
        ],
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    for line in [1, 2] {
        assert!(!error_of(row(&rows, line)).is_empty());
    }
}

/// The file an `--update` run would confirm is deleted while the request is in flight: a
/// 304 must not report `not_modified` for a file that is not there.
#[test]
fn a_304_for_a_file_deleted_during_the_run_fetches_it_again() {
    let scratch = Arc::new(Scratch::new("304-deleted"));
    let page = scratch.out().join("page.html");
    let server = TestServer::start(move |request, _| {
        if request.header("if-none-match") == Some("\"v1\"") {
            let _ = fs::remove_file(&page);
            return Reply::status(304).header("ETag", "\"v1\"").without_length();
        }
        Reply::html("v1").header("ETag", "\"v1\"")
    });
    let lines = vec![format!("page {}", server.url("/p"))];
    let (run, _) = fetch_list(&scratch, &lines, &["--update"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let (run, rows) = fetch_list(&scratch, &lines, &["--update"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(row(&rows, 1)["not_modified"], false, "{}", row(&rows, 1));
    assert_eq!(
        fs::read_to_string(scratch.out().join("page.html")).unwrap(),
        "v1"
    );
}

/// A redirect (or an error) whose body never ends must not hold the entry: the body of a
/// response that is not saved is not read.
#[test]
fn a_redirect_with_an_endless_body_is_followed_at_once() {
    let server = TestServer::start(|request, _| match request.path.as_str() {
        "/start" => Reply::redirect(302, "/end")
            .body(vec![b'x'; 10_000])
            .delivered(Delivery::Trickle(Duration::from_millis(100))),
        "/gone" => Reply::status(404)
            .body(vec![b'x'; 10_000])
            .delivered(Delivery::Trickle(Duration::from_millis(100))),
        _ => Reply::html("end"),
    });
    let scratch = Scratch::new("redirect-endless");
    let started = Instant::now();
    let (run, rows) = fetch_list(
        &scratch,
        &[server.url("/start"), server.url("/gone")],
        &["--retries", "0", "--timeout", "30"],
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(row(&rows, 1)["status"], 200, "{}", run.stderr);
    assert_eq!(row(&rows, 2)["status"], 404, "{}", run.stderr);
}

/// Ctrl-C in the middle of a `-c --update` download: exit 130, nothing under the final name,
/// the kept bytes and a valid state file survive, and the next run resumes.
#[test]
fn ctrl_c_during_a_resumable_download_with_update_leaves_nothing_that_looks_complete() {
    use std::process::Stdio;
    let server = TestServer::start(|request, earlier| {
        let full = blob(100);
        match (earlier, request.header("range")) {
            (0, _) => Reply::bytes(OCTETS, full)
                .header("ETag", "\"e1\"")
                .delivered(Delivery::HangAfter(40)),
            (_, Some("bytes=40-")) => Reply::bytes(OCTETS, full[40..].to_vec())
                .header("ETag", "\"e1\"")
                .header("Content-Range", "bytes 40-99/100")
                .status_code(206),
            _ => Reply::bytes(OCTETS, full).header("ETag", "\"e1\""),
        }
    });
    let scratch = Scratch::new("ctrl-c-resume");
    let fast = TestServer::start(|request, _| match request.header("if-none-match") {
        Some("\"f\"") => Reply::status(304).without_length(),
        _ => Reply::html("fast").header("ETag", "\"f\""),
    });
    let lines = vec![
        format!("blob {}", server.url("/blob")),
        format!("fast {}", fast.url("/f")),
    ];
    let list = scratch.list(&lines);
    let out = scratch.out();
    let child = support::command()
        .args([
            list.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "-c",
            "--update",
        ])
        .args(["--timeout", "600", "--stall-timeout", "600"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    support::eventually("40 bytes are kept", || {
        support::files_in(&out)
            .iter()
            .filter(|n| n.ends_with(".part") && n.contains("resume"))
            .any(|n| {
                fs::metadata(out.join(n))
                    .map(|m| m.len() == 40)
                    .unwrap_or(false)
            })
    });
    support::eventually("the fast page is saved", || out.join("fast.html").exists());
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGINT);
    }
    let output = support::wait_bounded(child);
    assert_eq!(output.status.code(), Some(130));
    assert!(!out.join("blob").exists());
    let state = fs::read_to_string(out.join(".futurepool-state.json")).unwrap();
    let _: serde_json::Value = serde_json::from_str(&state).unwrap();
    assert!(!state.contains("\"blob\""), "{state}");
    assert!(state.contains("fast.html"), "{state}");
    let (run, rows) = fetch_list(&scratch, &lines, &["-c", "--update", "--retries", "0"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(row(&rows, 1)["resumed_from"], 40);
    assert_eq!(row(&rows, 2)["not_modified"], true);
    assert_eq!(fs::read(out.join("blob")).unwrap(), blob(100));
    assert_eq!(
        support::files_in(&out),
        [".futurepool-state.json", "blob", "fast.html"]
    );
}

/// A server (or a forwarding proxy) that sends a second, unasked-for response after the first
/// on a keep-alive connection: the next request on that connection must not take the
/// injected response as its answer.
#[test]
fn a_response_injected_after_the_first_on_a_kept_connection_is_not_the_next_page() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    let _server = thread::spawn(move || {
        let give_up = Instant::now() + Duration::from_secs(60);
        while Instant::now() < give_up {
            let Ok((stream, _)) = listener.accept() else {
                thread::sleep(Duration::from_millis(5));
                continue;
            };
            thread::spawn(move || {
                stream.set_nonblocking(false).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut writer = stream;
                let mut first = true;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
                    loop {
                        let mut header = String::new();
                        if reader.read_line(&mut header).unwrap_or(0) <= 2 {
                            break;
                        }
                    }
                    let body = path.as_bytes();
                    let mut answer =
                        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len())
                            .into_bytes();
                    answer.extend_from_slice(body);
                    if first {
                        answer
                            .extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nEVIL");
                        first = false;
                    }
                    // Delay the genuine answers, so the injected bytes are there first.
                    if path != "/a" {
                        thread::sleep(Duration::from_millis(200));
                    }
                    if writer.write_all(&answer).is_err() {
                        return;
                    }
                }
            });
        }
    });
    let scratch = Scratch::new("injected");
    let lines: Vec<String> = ["/a", "/b", "/c"]
        .iter()
        .map(|p| format!("http://{addr}{p}"))
        .collect();
    let (run, rows) = fetch_list(&scratch, &lines, &["-j", "1", "--retries", "0"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    for line in 1..=3 {
        let r = row(&rows, line);
        if let Some(path) = r["path"].as_str() {
            let body = fs::read_to_string(path).unwrap();
            assert_ne!(body, "EVIL", "line {line}: {r} {}", run.stderr);
            assert!(
                r["url"].as_str().unwrap().ends_with(&body),
                "line {line}: {r}"
            );
        }
    }
}

/// Two runs on one directory at once (an overlapping cron job): the kept partial file that
/// the other run is writing is neither resumed from nor truncated; this run saves the page
/// whole through an ordinary partial file.
#[test]
fn a_kept_partial_file_another_run_is_writing_is_left_alone() {
    use std::os::fd::AsRawFd;
    let server = range_server();
    let scratch = Scratch::new("c-locked");
    let lines = vec![format!("blob {}", server.url("/blob"))];
    let (run, _) = fetch_list(&scratch, &lines, &["-c", "--retries", "0"]);
    assert_eq!(run.code, Some(1));
    let part = resume_part(&scratch);
    // The other run: holds the file locked, as a writing run does.
    let other = fs::OpenOptions::new().write(true).open(&part).unwrap();
    // SAFETY: flock(2) on a descriptor `other` owns and keeps open for the whole test.
    assert_eq!(
        unsafe { libc::flock(other.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) },
        0
    );
    let (run, rows) = fetch_list(&scratch, &lines, &["-c", "--retries", "0"]);
    assert_eq!(run.code, Some(0), "{} {}", run.stderr, row(&rows, 1));
    assert!(
        server.requests()[1].header("range").is_none(),
        "resumed another run's file"
    );
    assert_eq!(
        fs::metadata(&part).unwrap().len(),
        40,
        "the other run's bytes are intact"
    );
    assert_eq!(fs::read(scratch.out().join("blob")).unwrap(), blob(100));
    drop(other);
}
