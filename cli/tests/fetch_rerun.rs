//! `futurepool fetch` run again on the same list: `--update` (conditional requests from the
//! state file, 304 leaves the file alone) and `-c/--continue` (Range + If-Range resumes a
//! partial file, a changed page restarts from zero).

mod support;

use std::fs;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use support::server::Request;
use support::{error_of, fetch_list, row, Delivery, Reply, Scratch, TestServer};

/// A page whose version the test sets; it answers conditional requests like a real server:
/// 304 when If-None-Match names the current ETag (or, without it, If-Modified-Since is the
/// current Last-Modified).
fn versioned(version: Arc<AtomicUsize>) -> TestServer {
    TestServer::start(move |request, _| {
        let v = version.load(Ordering::SeqCst);
        let etag = format!("\"v{v}\"");
        let date = format!("Wed, 0{v} Dec 2026 10:00:00 GMT");
        let unchanged = match request.header("if-none-match") {
            Some(tag) => tag == etag,
            None => request.header("if-modified-since") == Some(date.as_str()),
        };
        if unchanged {
            return Reply::status(304).header("ETag", &etag).without_length();
        }
        Reply::html(&format!("version {v} of {}", request.path))
            .header("ETag", &etag)
            .header("Last-Modified", &date)
    })
}

fn conditional(request: &Request) -> bool {
    request.header("if-none-match").is_some() || request.header("if-modified-since").is_some()
}

#[test]
fn update_asks_conditionally_and_a_304_leaves_the_file_untouched() {
    let version = Arc::new(AtomicUsize::new(1));
    let server = versioned(version.clone());
    let scratch = Scratch::new("update");
    let lines = vec![format!("page {}", server.url("/p")), server.url("/q")];

    let (run, rows) = fetch_list(&scratch, &lines, &["--update"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(server.requests().iter().all(|r| !conditional(r)));
    assert_eq!(row(&rows, 1)["not_modified"], false);
    let state = fs::read_to_string(scratch.out().join(".futurepool-state.json")).unwrap();
    assert!(
        state.contains(r#""etag":"\"v1\"""#) && state.contains("page.html"),
        "{state}"
    );
    let page = scratch.out().join("page.html");
    let before = fs::metadata(&page).unwrap().modified().unwrap();

    // Unchanged: two conditional requests, no body, files untouched.
    let (run, rows) = fetch_list(&scratch, &lines, &["--update"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let second: Vec<Request> = server.requests().into_iter().skip(2).collect();
    assert_eq!(second.len(), 2);
    assert!(second
        .iter()
        .all(|r| r.header("if-none-match") == Some("\"v1\"")
            && r.header("if-modified-since") == Some("Wed, 01 Dec 2026 10:00:00 GMT")));
    for line in [1, 2] {
        let not_modified = row(&rows, line);
        assert_eq!(not_modified["not_modified"], true, "{not_modified}");
        assert_eq!(not_modified["status"], 304);
        assert_eq!(not_modified["bytes"], 0);
        assert!(not_modified["error"].is_null());
    }
    assert!(row(&rows, 1)["path"]
        .as_str()
        .unwrap()
        .ends_with("page.html"));
    assert_eq!(fs::metadata(&page).unwrap().modified().unwrap(), before);
    assert!(
        run.stderr.contains("saved 0, failed 0, not modified 2"),
        "{}",
        run.stderr
    );

    // Changed: saved again, and the new version is remembered.
    version.store(2, Ordering::SeqCst);
    let (run, rows) = fetch_list(&scratch, &lines, &["--update"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(row(&rows, 1)["not_modified"], false);
    assert_eq!(fs::read_to_string(&page).unwrap(), "version 2 of /p");
    let state = fs::read_to_string(scratch.out().join(".futurepool-state.json")).unwrap();
    assert!(
        state.contains(r#"\"v2\""#) && !state.contains(r#"\"v1\""#),
        "{state}"
    );
    assert_eq!(
        scratch.out_files(),
        [".futurepool-state.json", "page.html", "q.html"],
        "nothing else is left in DIR"
    );
}

#[test]
fn update_fetches_whole_what_the_state_cannot_vouch_for() {
    let version = Arc::new(AtomicUsize::new(1));
    let server = versioned(version);
    let scratch = Scratch::new("update-missing");
    let lines = vec![format!("page {}", server.url("/p"))];
    let (run, _) = fetch_list(&scratch, &lines, &["--update"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    // The file is gone: asking "changed?" would leave nothing on disk.
    fs::remove_file(scratch.out().join("page.html")).unwrap();
    let (run, rows) = fetch_list(&scratch, &lines, &["--update"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(!conditional(&server.requests()[1]));
    assert_eq!(row(&rows, 1)["not_modified"], false);
    // A different URL under the same name, and a state file that is garbage.
    fs::write(scratch.out().join(".futurepool-state.json"), "garbage").unwrap();
    let (run, _) = fetch_list(
        &scratch,
        &[format!("page {}", server.url("/other"))],
        &["--update"],
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stderr.contains("not a valid state file"),
        "{}",
        run.stderr
    );
    assert!(!conditional(&server.requests()[2]));
}

/// A page of `SIZE` bytes whose ETag is `"vN"` for the version the test sets; honours `Range`
/// when `If-Range` names the current ETag (206 with Content-Range), else sends it whole. The
/// first request of each version stops after `CUT` bytes.
const SIZE: usize = 10_000;
const CUT: usize = 3_000;

fn body(version: usize) -> Vec<u8> {
    (0..SIZE)
        .map(|i| b'a' + ((i + version) % 26) as u8)
        .collect()
}

fn resumable(version: Arc<AtomicUsize>) -> TestServer {
    let cut_done = Arc::new(AtomicUsize::new(0));
    TestServer::start(move |request, _| {
        let v = version.load(Ordering::SeqCst);
        let etag = format!("\"v{v}\"");
        let full = body(v);
        let range = request
            .header("range")
            .and_then(|r| r.strip_prefix("bytes="))
            .and_then(|r| r.strip_suffix('-'))
            .and_then(|start| start.parse::<usize>().ok())
            .filter(|_| request.header("if-range") == Some(etag.as_str()));
        if let Some(start) = range {
            return Reply::bytes("application/octet-stream", full[start..].to_vec())
                .header("ETag", &etag)
                .header(
                    "Content-Range",
                    &format!("bytes {start}-{}/{SIZE}", SIZE - 1),
                )
                .status_code(206);
        }
        let reply = Reply::bytes("application/octet-stream", full).header("ETag", &etag);
        if cut_done.fetch_max(v, Ordering::SeqCst) < v {
            reply.delivered(Delivery::CloseAfter(CUT))
        } else {
            reply
        }
    })
}

#[test]
fn continue_resumes_a_partial_file_with_range_and_if_range() {
    let version = Arc::new(AtomicUsize::new(1));
    let server = resumable(version);
    let scratch = Scratch::new("continue");
    let lines = vec![format!("blob {}", server.url("/blob"))];
    let (run, rows) = fetch_list(&scratch, &lines, &["-c", "--retries", "0"]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(error_of(row(&rows, 1)).starts_with("truncated: "));
    let kept = scratch.out_files();
    assert_eq!(kept.len(), 2, "the partial file and its sidecar: {kept:?}");
    assert!(kept.iter().all(|n| n.starts_with(".futurepool-resume-")));

    let (run, rows) = fetch_list(&scratch, &lines, &["-c", "--retries", "0"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let resumed = &server.requests()[1];
    assert_eq!(
        resumed.header("range"),
        Some(format!("bytes={CUT}-").as_str())
    );
    assert_eq!(resumed.header("if-range"), Some("\"v1\""));
    assert_eq!(row(&rows, 1)["resumed_from"], CUT);
    assert_eq!(row(&rows, 1)["bytes"], SIZE - CUT);
    assert_eq!(row(&rows, 1)["status"], 206);
    assert_eq!(fs::read(scratch.out().join("blob")).unwrap(), body(1));
    assert_eq!(
        scratch.out_files(),
        ["blob"],
        "the partial file became the page"
    );
}

#[test]
fn continue_within_one_run_resumes_on_the_retry() {
    let version = Arc::new(AtomicUsize::new(1));
    let server = resumable(version);
    let scratch = Scratch::new("continue-retry");
    let lines = vec![format!("blob {}", server.url("/blob"))];
    let (run, rows) = fetch_list(&scratch, &lines, &["-c", "--backoff", "0.01"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(row(&rows, 1)["attempts"], 2);
    assert_eq!(row(&rows, 1)["resumed_from"], CUT);
    assert_eq!(fs::read(scratch.out().join("blob")).unwrap(), body(1));
}

#[test]
fn continue_restarts_from_zero_when_the_page_changed() {
    let version = Arc::new(AtomicUsize::new(1));
    let server = resumable(version.clone());
    let scratch = Scratch::new("continue-changed");
    let lines = vec![format!("blob {}", server.url("/blob"))];
    let (run, _) = fetch_list(&scratch, &lines, &["-c", "--retries", "0"]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    // The page changes between runs: If-Range "v1" no longer matches, the server sends v2
    // whole (its first v2 response is cut too, so this takes the retry).
    version.store(2, Ordering::SeqCst);
    let (run, rows) = fetch_list(&scratch, &lines, &["-c", "--backoff", "0.01"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(server.requests()[1].header("if-range"), Some("\"v1\""));
    assert_eq!(row(&rows, 1)["status"], 206, "v2 resumed after its own cut");
    assert_eq!(
        fs::read(scratch.out().join("blob")).unwrap(),
        body(2),
        "no v1 bytes"
    );
    assert_eq!(scratch.out_files(), ["blob"]);
}

#[test]
fn a_206_that_does_not_continue_the_file_is_refused() {
    let server = TestServer::start(|request, earlier| {
        let reply =
            Reply::bytes("application/octet-stream", vec![b'x'; 100]).header("ETag", "\"e\"");
        match (earlier, request.header("range")) {
            (0, _) => reply.delivered(Delivery::CloseAfter(40)),
            // Claims to continue, but from the wrong byte.
            (_, Some(_)) => Reply::bytes("application/octet-stream", vec![b'y'; 90])
                .header("ETag", "\"e\"")
                .header("Content-Range", "bytes 10-99/100")
                .status_code(206),
            (_, None) => reply,
        }
    });
    let scratch = Scratch::new("bad-range");
    let lines = vec![format!("blob {}", server.url("/blob"))];
    let (run, rows) = fetch_list(
        &scratch,
        &lines,
        &["-c", "--retries", "2", "--backoff", "0.01"],
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(row(&rows, 1)["attempts"], 3, "cut, bad range, whole");
    assert_eq!(
        fs::read(scratch.out().join("blob")).unwrap(),
        vec![b'x'; 100]
    );
    assert!(run.stderr.is_empty() || !run.stderr.contains("yyyy"));
}

#[test]
fn update_remembers_what_was_saved_before_ctrl_c() {
    use std::process::Stdio;
    let server = TestServer::routes(vec![
        ("/fast", Reply::html("fast").header("ETag", "\"f1\"")),
        (
            "/never",
            Reply::html("never").delivered(Delivery::NeverAnswer),
        ),
    ]);
    let scratch = Scratch::new("update-ctrl-c");
    let list = scratch.list(&[
        format!("fast {}", server.url("/fast")),
        format!("never {}", server.url("/never")),
    ]);
    let out = scratch.out();
    let child = support::command()
        .args([
            list.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--update",
        ])
        .args(["--timeout", "600", "--stall-timeout", "600"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    server.wait_for_requests("/never", 1);
    support::eventually("the fast page is saved", || out.join("fast.html").exists());
    // The worker posts its outcome just after the rename; without a progress bar nothing
    // wakes the orchestrator for it, so the interrupt is what makes it read it.
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGINT);
    }
    let output = support::wait_bounded(child);
    assert_eq!(output.status.code(), Some(130));
    let state = fs::read_to_string(out.join(".futurepool-state.json")).unwrap();
    assert!(
        state.contains("fast.html") && state.contains("f1"),
        "{state}"
    );
    assert!(!state.contains("never"), "{state}");
}

#[test]
fn a_206_body_longer_than_its_range_never_reaches_the_kept_file() {
    let page: Vec<u8> = (0..100).map(|i| b'a' + (i % 26) as u8).collect();
    let served = page.clone();
    let server = TestServer::start(move |request, earlier| {
        let whole =
            Reply::bytes("application/octet-stream", served.clone()).header("ETag", "\"e\"");
        match (earlier, request.header("range")) {
            (0, _) => whole.delivered(Delivery::CloseAfter(40)),
            // The right range, but no length and far more body than it covers.
            (1, Some(_)) => Reply::bytes("application/octet-stream", vec![b'!'; 500])
                .header("ETag", "\"e\"")
                .header("Content-Range", "bytes 40-99/100")
                .status_code(206)
                .without_length(),
            (_, Some(_)) => Reply::bytes("application/octet-stream", served[40..].to_vec())
                .header("ETag", "\"e\"")
                .header("Content-Range", "bytes 40-99/100")
                .status_code(206),
            (_, None) => whole,
        }
    });
    let scratch = Scratch::new("long-206");
    let lines = vec![format!("blob {}", server.url("/blob"))];
    let args = ["-c", "--retries", "0"];
    let (run, _) = fetch_list(&scratch, &lines, &args);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    let (run, rows) = fetch_list(&scratch, &lines, &args);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        error_of(row(&rows, 1)).starts_with("malformed response: "),
        "{rows:?}"
    );
    let kept: Vec<u64> = scratch
        .out_files()
        .iter()
        .filter(|n| n.ends_with(".part"))
        .map(|n| fs::metadata(scratch.out().join(n)).unwrap().len())
        .collect();
    assert!(
        kept.iter().all(|&len| len <= 60),
        "bytes beyond the range were kept: {kept:?}"
    );
    let (run, _) = fetch_list(&scratch, &lines, &args);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(fs::read(scratch.out().join("blob")).unwrap(), page);
}

#[test]
fn a_state_file_naming_a_file_outside_the_entry_is_not_trusted() {
    let version = Arc::new(AtomicUsize::new(1));
    let server = versioned(version);
    let scratch = Scratch::new("update-hostile-state");
    let outside = scratch.join("outside.html");
    fs::write(&outside, "not the page").unwrap();
    fs::create_dir_all(scratch.out()).unwrap();
    let state = format!(
        r#"{{"version":1,"entries":{{"page":{{"url":"{}","file":"../outside.html","etag":"\"v1\""}}}}}}"#,
        server.url("/p")
    );
    fs::write(scratch.out().join(".futurepool-state.json"), state).unwrap();
    let (run, rows) = fetch_list(
        &scratch,
        &[format!("page {}", server.url("/p"))],
        &["--update"],
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        !conditional(&server.requests()[0]),
        "asked about a file outside DIR"
    );
    assert_eq!(row(&rows, 1)["not_modified"], false);
    assert!(row(&rows, 1)["path"]
        .as_str()
        .unwrap()
        .ends_with("out/page.html"));
}
