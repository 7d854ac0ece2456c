//! `futurepool fetch` and the file system: atomic writes, Ctrl-C, `--skip-existing`, a full disk.

mod support;

use std::fs;
use std::process::{Command, Stdio};

use support::{
    binary, error_of, eventually, fetch_list, files_in, read_report, row, wait_bounded, Delivery,
    Reply, Scratch, TestServer,
};

#[test]
fn ctrl_c_stops_at_once_removes_partial_files_and_still_writes_the_report() {
    let server = TestServer::routes(vec![
        ("/fast1", Reply::html("one")),
        ("/fast2", Reply::html("two")),
        ("/fast3", Reply::html("three")),
        (
            "/hang",
            Reply::html(&"x".repeat(1000)).delivered(Delivery::HangAfter(500)),
        ),
        (
            "/never",
            Reply::html("never").delivered(Delivery::NeverAnswer),
        ),
    ]);
    let scratch = Scratch::new("ctrl-c");
    let list = scratch.list(&[
        server.url("/fast1"),
        format!("hung {}", server.url("/hang")),
        server.url("/never"),
        server.url("/fast2"),
        server.url("/fast3"),
    ]);
    let report = scratch.join("report.jsonl");
    let out = scratch.out();
    let child = Command::new(binary())
        .args(["fetch", list.to_str().unwrap(), "-o", out.to_str().unwrap()])
        .args(["--report", report.to_str().unwrap(), "-j", "3"])
        // Only Ctrl-C can end this run early.
        .args(["--timeout", "600", "--stall-timeout", "600"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // Wait until the two slow requests hold two workers, the third worker has saved every fast
    // page, and the half-received body sits in a partial file.
    server.wait_for_requests("/hang", 1);
    server.wait_for_requests("/never", 1);
    eventually("the fast pages are saved", || {
        ["fast1.html", "fast2.html", "fast3.html"]
            .iter()
            .all(|name| out.join(name).exists())
    });
    eventually("a partial file holds the half body", || {
        files_in(&out)
            .iter()
            .any(|name| name.starts_with(".futurepool-") && name.ends_with(".part"))
    });
    assert!(
        !files_in(&out).iter().any(|name| name.starts_with("hung")),
        "an incomplete file has its final name"
    );

    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGINT);
    }
    let output = wait_bounded(child);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert_eq!(
        files_in(&out),
        ["fast1.html", "fast2.html", "fast3.html"],
        "partial files were left behind"
    );
    let rows = read_report(&report);
    assert_eq!(rows.len(), 5, "one row per entry");
    for line in [1, 4, 5] {
        assert!(row(&rows, line)["error"].is_null());
    }
    for line in [2, 3] {
        let cut = row(&rows, line);
        assert_eq!(error_of(cut), "interrupted");
        assert!(cut["path"].is_null());
        assert_eq!(cut["attempts"], 1, "the attempt in flight counts: {cut}");
        assert!(cut["elapsed_ms"].as_u64().unwrap() > 0, "{cut}");
    }
    assert_eq!(row(&rows, 2)["name"], "hung");
    assert!(stderr.contains("interrupted"), "{stderr}");
}

#[test]
fn skip_existing_fetches_only_what_is_missing() {
    let server = TestServer::routes(vec![
        ("/a", Reply::html("a")),
        ("/b.txt", Reply::bytes("text/plain", b"b".to_vec())),
        ("/c", Reply::html("c")),
    ]);
    let scratch = Scratch::new("skip");
    let first = vec![format!("alpha {}", server.url("/a")), server.url("/b.txt")];
    let (run, _) = fetch_list(&scratch, &first, &[]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(scratch.out_files(), ["alpha.html", "b.txt"]);

    let mut second = first.clone();
    second.push(server.url("/c"));
    let (run, rows) = fetch_list(&scratch, &second, &["--skip-existing"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(
        server.requests_for("/a").len(),
        1,
        "an existing file was fetched again"
    );
    assert_eq!(server.requests_for("/b.txt").len(), 1);
    assert_eq!(server.requests_for("/c").len(), 1);
    for line in [1, 2] {
        assert_eq!(row(&rows, line)["skipped"], true);
        assert!(row(&rows, line)["path"].is_string());
    }
    assert_eq!(row(&rows, 1)["name"], "alpha");
    assert_eq!(row(&rows, 3)["skipped"], false);
    assert!(
        run.stderr.contains("saved 1, failed 0, skipped 2"),
        "{}",
        run.stderr
    );

    let (run, _) = fetch_list(&scratch, &first, &[]);
    assert_eq!(run.code, Some(0));
    assert_eq!(
        server.requests_for("/a").len(),
        2,
        "without the flag, files are refreshed"
    );
}

#[test]
fn a_rerun_replaces_files_whole() {
    let server = TestServer::start(|_, earlier| Reply::html(&format!("version {earlier}")));
    let scratch = Scratch::new("replace");
    for expected in ["version 0", "version 1"] {
        let (run, _) = fetch_list(&scratch, &[format!("page {}", server.url("/p"))], &[]);
        assert_eq!(run.code, Some(0));
        assert_eq!(
            fs::read_to_string(scratch.out().join("page.html")).unwrap(),
            expected
        );
        assert_eq!(scratch.out_files(), ["page.html"]);
    }
}

/// A full disk, made for real: the output directory is a 256 KiB tmpfs mounted in a private user
/// and mount namespace (`unshare -rm`, no privileges needed). Each page is 200 KiB, so the first
/// fits and the second does not.
#[test]
fn a_full_disk_is_a_clear_error_and_stops_the_run() {
    let probe = Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "true"])
        .status();
    assert!(
        probe.is_ok_and(|s| s.success()),
        "this test needs `unshare --user --map-root-user --mount` (util-linux, unprivileged user \
         namespaces); the error mapping itself is unit-tested in src/fetch/output.rs"
    );
    let page = "x".repeat(200 << 10);
    let server = TestServer::routes(vec![
        ("/1", Reply::html(&page)),
        ("/2", Reply::html(&page)),
        ("/3", Reply::html(&page)),
        ("/4", Reply::html(&page)),
    ]);
    let scratch = Scratch::new("disk-full");
    let list = scratch.list(
        &(1..=4)
            .map(|i| server.url(&format!("/{i}")))
            .collect::<Vec<_>>(),
    );
    let report = scratch.join("report.jsonl");
    let listing = scratch.join("listing.txt");
    let out = scratch.out();
    fs::create_dir_all(&out).unwrap();
    let script = r#"mount -t tmpfs -o size=256k tmpfs "$2" || exit 99
"$1" fetch "$3" -o "$2" --report "$4" -j 1 --retries 0
code=$?
ls -A "$2" > "$5"
exit $code"#;
    let child = Command::new("unshare")
        .args([
            "--user",
            "--map-root-user",
            "--mount",
            "sh",
            "-c",
            script,
            "sh",
        ])
        .args([binary(), out.to_str().unwrap(), list.to_str().unwrap()])
        .args([report.to_str().unwrap(), listing.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let output = wait_bounded(child);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let rows = read_report(&report);
    assert!(row(&rows, 1)["error"].is_null());
    let full = error_of(row(&rows, 2));
    assert!(full.starts_with("disk full: no space left for "), "{full}");
    // Entry 3 was queued when entry 2 failed: cancelled, unless the worker had already taken it.
    let third = error_of(row(&rows, 3));
    assert!(
        third == "not attempted: the disk is full" || third.starts_with("disk full: "),
        "{third}"
    );
    assert_eq!(error_of(row(&rows, 4)), "not attempted: the disk is full");
    assert!(stderr.contains("disk full"), "{stderr}");
    assert_eq!(
        fs::read_to_string(&listing)
            .unwrap()
            .lines()
            .collect::<Vec<_>>(),
        ["1.html"],
        "only the complete page is there; no partial file"
    );
}

#[test]
fn ctrl_c_with_continue_keeps_the_partial_file_and_the_next_run_resumes_it() {
    let page: Vec<u8> = (0..1000).map(|i| b'a' + (i % 26) as u8).collect();
    let served = page.clone();
    let server = TestServer::start(move |request, _| match request.header("range") {
        None => Reply::bytes("text/plain", served.clone())
            .header("ETag", "\"same\"")
            .delivered(Delivery::HangAfter(500)),
        Some(_) => Reply::bytes("text/plain", served[500..].to_vec())
            .header("ETag", "\"same\"")
            .header("Content-Range", "bytes 500-999/1000")
            .status_code(206),
    });
    let scratch = Scratch::new("ctrl-c-continue");
    let list = scratch.list(&[format!("big {}", server.url("/big"))]);
    let out = scratch.out();
    let child = support::command()
        .args([list.to_str().unwrap(), "-o", out.to_str().unwrap(), "-c"])
        .args(["--timeout", "600", "--stall-timeout", "600"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    eventually("half the body is on disk", || {
        files_in(&out).iter().any(|name| {
            name.ends_with(".part") && fs::metadata(out.join(name)).is_ok_and(|m| m.len() == 500)
        })
    });
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGINT);
    }
    let output = wait_bounded(child);
    assert_eq!(output.status.code(), Some(130));
    let kept = files_in(&out);
    assert_eq!(
        kept.len(),
        2,
        "the partial file and its sidecar stay: {kept:?}"
    );

    let (run, rows) = fetch_list(&scratch, &[format!("big {}", server.url("/big"))], &["-c"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(row(&rows, 1)["resumed_from"], 500);
    assert_eq!(fs::read(out.join("big.txt")).unwrap(), page);
    assert_eq!(files_in(&out), ["big.txt"]);
}
