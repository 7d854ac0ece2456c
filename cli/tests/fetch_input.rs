//! `futurepool fetch`: the list, its validation, names, exit codes and bad usage.

mod support;

use std::fs;

use support::{error_of, fetch, fetch_list, fetch_with_stdin, row, Reply, Scratch, TestServer};

#[test]
fn a_bad_list_exits_2_names_every_bad_line_and_fetches_nothing() {
    let server = TestServer::routes(vec![("/ok", Reply::html("ok"))]);
    let scratch = Scratch::new("bad-list");
    let ok = server.url("/ok");
    let lines = vec![
        ok.clone(),                                          // 1: fine
        format!(".. {ok}"),                                  // 2: leaves DIR
        format!("/etc/passwd {ok}"),                         // 3: absolute path
        format!("../escape {ok}"),                           // 4: separator
        "ftp://example.invalid/x".to_owned(),                // 5: scheme
        "file:///etc/passwd".to_owned(),                     // 6: scheme
        format!("one two {ok}"),                             // 7: malformed line
        format!("dup {ok}"),                                 // 8: first use of "dup"
        format!("dup {ok}"),                                 // 9: duplicate
        format!(r#"{{"name": "a\u0007b", "url": "{ok}"}}"#), // 10: control character
        format!(r#"{{"name": "", "url": "{ok}"}}"#),         // 11: empty
        r#"{"name": "x", "url": }"#.to_owned(),              // 12: malformed JSON
        "not a url".to_owned(),                              // 13: three fields
        "mailto:someone@example.invalid".to_owned(),         // 14: scheme
    ];
    let (run, rows) = fetch_list(&scratch, &lines, &[]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    for line in [2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14] {
        assert!(
            run.stderr.contains(&format!("list.txt:{line}: ")),
            "line {line} not named in:\n{}",
            run.stderr
        );
    }
    for line in [1, 8] {
        assert!(
            !run.stderr.contains(&format!("list.txt:{line}: ")),
            "{}",
            run.stderr
        );
    }
    assert!(run
        .stderr
        .contains("\"..\" would leave the output directory"));
    assert!(run
        .stderr
        .contains("\"../escape\" contains a path separator"));
    assert!(run
        .stderr
        .contains("duplicate name \"dup\" (first used on line 8)"));
    assert!(run.stderr.contains("only http and https"));
    assert!(run.stderr.contains("12 problems"), "{}", run.stderr);
    assert!(run.stderr.contains("nothing was fetched"));
    assert!(server.requests().is_empty(), "a request was made");
    assert!(!scratch.out().exists(), "the output directory was created");
    assert!(rows.is_empty(), "no report for a list that was refused");
}

#[test]
fn the_three_line_forms_comments_names_and_extensions() {
    let server = TestServer::routes(vec![
        ("/python", Reply::html("<p>python</p>")),
        ("/docs/intro.html", Reply::html("intro")),
        ("/data", Reply::bytes("application/json", b"{}".to_vec())),
        (
            "/raw",
            Reply::bytes("application/x-unknown", b"raw".to_vec()),
        ),
        ("/a/page", Reply::html("first")),
        ("/b/page", Reply::html("second")),
        ("/", Reply::html("root")),
    ]);
    let scratch = Scratch::new("forms");
    let lines = vec![
        "# the classic example's pages".to_owned(),
        format!("python {}", server.url("/python")),
        String::new(),
        format!("   {}   ", server.url("/docs/intro.html")),
        format!(r#"{{"name": "data", "url": "{}"}}"#, server.url("/data")),
        format!(r#"{{"url": "{}"}}"#, server.url("/raw")),
        server.url("/a/page"),
        server.url("/b/page#section"),
        server.url("/"),
    ];
    let (run, rows) = fetch_list(&scratch, &lines, &[]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(
        scratch.out_files(),
        [
            "data.json",
            "index.html",
            "intro.html",
            "page-2.html",
            "page.html",
            "python.html",
            "raw"
        ]
    );
    assert_eq!(
        fs::read_to_string(scratch.out().join("python.html")).unwrap(),
        "<p>python</p>"
    );
    assert_eq!(
        fs::read_to_string(scratch.out().join("page.html")).unwrap(),
        "first"
    );
    assert_eq!(
        fs::read_to_string(scratch.out().join("page-2.html")).unwrap(),
        "second"
    );
    assert_eq!(rows.len(), 7, "one row per entry");
    let python = row(&rows, 2);
    assert_eq!(
        python["name"], "python",
        "the entry's name; the file is `path`"
    );
    assert_eq!(python["status"], 200);
    assert_eq!(python["bytes"], 13);
    assert_eq!(python["attempts"], 1);
    assert!(python["elapsed_ms"].is_u64());
    assert!(python["error"].is_null());
    assert!(python["path"]
        .as_str()
        .unwrap()
        .ends_with("out/python.html"));
    assert!(run.stderr.contains("saved 7, failed 0"), "{}", run.stderr);
}

#[test]
fn reads_the_list_from_stdin() {
    let server = TestServer::routes(vec![("/p", Reply::html("p"))]);
    let scratch = Scratch::new("stdin");
    let out = scratch.out();
    let list = format!("page {}\n", server.url("/p"));
    for args in [
        vec!["-", "-o", out.to_str().unwrap()],
        vec!["-o", out.to_str().unwrap()],
    ] {
        let _ = fs::remove_dir_all(&out);
        let run = fetch_with_stdin(&args, &list);
        assert_eq!(run.code, Some(0), "{}", run.stderr);
        assert_eq!(scratch.out_files(), ["page.html"]);
    }
    let run = fetch_with_stdin(&["-o", out.to_str().unwrap()], "page ftp://x/\n");
    assert_eq!(run.code, Some(2));
    assert!(run.stderr.contains("<stdin>:1: "), "{}", run.stderr);
}

#[test]
fn exit_status_is_1_when_some_fail_and_the_rest_are_saved() {
    let server = TestServer::routes(vec![("/ok", Reply::html("ok"))]);
    let scratch = Scratch::new("exit1");
    let lines = vec![server.url("/ok"), server.url("/missing")];
    let (run, rows) = fetch_list(&scratch, &lines, &[]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert_eq!(scratch.out_files(), ["ok.html"]);
    assert_eq!(error_of(row(&rows, 2)), "HTTP 404 Not Found");
    assert!(
        run.stderr.contains("line 2: "),
        "failures are named: {}",
        run.stderr
    );
}

#[test]
fn bad_usage_exits_2() {
    let scratch = Scratch::new("usage");
    let list = scratch.list(&["http://127.0.0.1:9/".to_owned()]);
    let list = list.to_str().unwrap();
    let out = scratch.out();
    let out = out.to_str().unwrap();
    for (args, complaint) in [
        (
            vec![list, "-o", out, "--max-size", "12 parsecs"],
            "unknown size unit",
        ),
        (vec![list, "-o", out, "-H", "no colon"], "Name: value"),
        (vec![list, "-o", out, "-j", "0"], "--jobs"),
        (vec![list, "-o", out, "--timeout", "0"], "--timeout"),
        (vec![list, "-o", out, "--per-host", "0"], "--per-host"),
        (vec![list, "-o", out, "--rate", "fast"], "--rate"),
        (
            vec![list, "-o", out, "--limit-rate", "1 parsec"],
            "--limit-rate",
        ),
        (
            vec![list, "-o", out, "--proxy", "socks5://p:1"],
            "not supported",
        ),
        (vec!["-", "-", "-o", out], "more than once"),
        (vec![list, "-o", out, "--frobnicate"], "--frobnicate"),
    ] {
        let run = fetch(&args);
        assert_eq!(run.code, Some(2), "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains(complaint), "{args:?}: {}", run.stderr);
    }
    let missing = scratch.join("no-such-list.txt");
    let run = fetch(&[missing.to_str().unwrap(), "-o", out]);
    assert_eq!(run.code, Some(2));
    assert!(
        run.stderr.contains("cannot read the list"),
        "{}",
        run.stderr
    );
}

#[test]
fn an_output_that_is_a_file_or_a_report_in_a_missing_directory_is_refused() {
    let server = TestServer::routes(vec![]);
    let scratch = Scratch::new("bad-output");
    let list = scratch.list(&[server.url("/x")]);
    let file = scratch.join("a-file");
    fs::write(&file, "x").unwrap();
    let run = fetch(&[list.to_str().unwrap(), "-o", file.to_str().unwrap()]);
    assert_eq!(run.code, Some(2));
    assert!(run.stderr.contains("is not a directory"), "{}", run.stderr);
    let report = scratch.join("missing/report.jsonl");
    let out = scratch.out();
    let run = fetch(&[
        list.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
    ]);
    assert_eq!(run.code, Some(2));
    assert!(
        run.stderr.contains("its directory does not exist"),
        "{}",
        run.stderr
    );
    assert!(server.requests().is_empty());
}

#[test]
fn an_empty_list_saves_nothing_and_succeeds() {
    let scratch = Scratch::new("empty");
    let (run, rows) = fetch_list(&scratch, &["# nothing yet".to_owned()], &[]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(rows.is_empty());
    assert!(scratch.out_files().is_empty());
}

#[test]
fn the_report_can_go_to_stdout() {
    let server = TestServer::routes(vec![("/p", Reply::html("p"))]);
    let scratch = Scratch::new("report-stdout");
    let list = scratch.list(&[server.url("/p")]);
    let out = scratch.out();
    let run = fetch(&[
        list.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--report",
        "-",
        "-q",
    ]);
    assert_eq!(run.code, Some(0));
    let row: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(row["name"], "p");
    assert!(row["path"].as_str().unwrap().ends_with("p.html"));
    assert!(
        run.stderr.is_empty(),
        "-q prints no summary: {}",
        run.stderr
    );
}

#[test]
fn names_do_not_depend_on_which_download_finishes_first() {
    // Line 1 (`x`, served as HTML) finishes last; line 2 is explicitly `x.html`.
    let server = TestServer::routes(vec![
        (
            "/first",
            Reply::html("first").delivered(support::Delivery::Delay(
                std::time::Duration::from_millis(300),
            )),
        ),
        ("/second", Reply::html("second")),
        ("/x", Reply::html("third")),
    ]);
    let scratch = Scratch::new("names-race");
    let lines = vec![
        format!("x {}", server.url("/first")),
        format!("x.html {}", server.url("/second")),
        server.url("/x"),
    ];
    for _ in 0..2 {
        let (run, rows) = fetch_list(&scratch, &lines, &["-j", "3"]);
        assert_eq!(run.code, Some(0), "{}", run.stderr);
        assert_eq!(scratch.out_files(), ["x", "x-2.html", "x.html"]);
        let out = scratch.out();
        assert_eq!(fs::read_to_string(out.join("x.html")).unwrap(), "second");
        assert_eq!(fs::read_to_string(out.join("x")).unwrap(), "first");
        assert_eq!(fs::read_to_string(out.join("x-2.html")).unwrap(), "third");
        assert_eq!(row(&rows, 1)["name"], "x");
        assert_eq!(row(&rows, 2)["name"], "x.html");
        assert_eq!(row(&rows, 3)["name"], "x-2");
    }
    // Each entry finds its own file, not the other's.
    fs::remove_file(scratch.out().join("x")).unwrap();
    let (run, rows) = fetch_list(&scratch, &lines, &["--skip-existing"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(row(&rows, 1)["skipped"], false, "x.html is line 2's file");
    assert_eq!(row(&rows, 2)["skipped"], true);
    assert_eq!(row(&rows, 3)["skipped"], true);
    assert_eq!(server.requests_for("/first").len(), 3);
    assert_eq!(server.requests_for("/second").len(), 2);
}

#[test]
fn a_name_without_room_for_its_extension_is_refused_before_fetching() {
    let server = TestServer::routes(vec![("/p", Reply::html("p"))]);
    let scratch = Scratch::new("long-name");
    let lines = vec![
        format!("{} {}", "n".repeat(249), server.url("/p")),
        format!("{} {}", "n".repeat(251), server.url("/p")),
        format!("{}.txt {}", "t".repeat(251), server.url("/p")),
    ];
    let (run, _) = fetch_list(&scratch, &lines, &[]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("list.txt:2: "), "{}", run.stderr);
    assert!(
        run.stderr.contains("room for an extension"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("list.txt:1: ") && !run.stderr.contains("list.txt:3: "));
    assert!(server.requests().is_empty());
}

#[test]
fn names_with_direction_overrides_or_invisible_characters_are_refused() {
    let server = TestServer::routes(vec![("/p", Reply::html("p"))]);
    let scratch = Scratch::new("bidi-name");
    let url = server.url("/p");
    let lines = vec![
        format!("fine {url}"),
        format!("invoice\u{202e}gpj.exe {url}"),
        format!("zero\u{200b}width {url}"),
        format!(r#"{{"name": "iso\u2066late", "url": "{url}"}}"#),
        format!("bom\u{feff} {url}"),
    ];
    let (run, _) = fetch_list(&scratch, &lines, &[]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    for (line, code) in [(2, "U+202E"), (3, "U+200B"), (4, "U+2066"), (5, "U+FEFF")] {
        assert!(
            run.stderr.contains(&format!("list.txt:{line}: ")) && run.stderr.contains(code),
            "line {line}: {}",
            run.stderr
        );
    }
    assert!(server.requests().is_empty());
}

#[test]
fn urls_as_arguments_and_several_lists_go_to_the_current_directory_by_default() {
    let server = TestServer::routes(vec![
        ("/a", Reply::html("a")),
        ("/b", Reply::html("b")),
        ("/c", Reply::html("c")),
        ("/d", Reply::html("d")),
    ]);
    let scratch = Scratch::new("arguments");
    let first = scratch.join("first.txt");
    let second = scratch.join("second.txt");
    fs::write(&first, format!("b {}\n", server.url("/b"))).unwrap();
    fs::write(&second, format!("# comment\nc {}\n", server.url("/c"))).unwrap();
    let cwd = scratch.join("cwd");
    fs::create_dir_all(&cwd).unwrap();
    let report = scratch.join("report.jsonl");
    let run = support::fetch_in(
        &cwd,
        &[
            &server.url("/a"),
            first.to_str().unwrap(),
            second.to_str().unwrap(),
            &server.url("/d"),
            "--report",
            report.to_str().unwrap(),
        ],
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(
        support::files_in(&cwd),
        ["a.html", "b.html", "c.html", "d.html"],
        "-o defaults to the current directory"
    );
    let rows = support::read_report(&report);
    let places: Vec<(String, u64)> = rows
        .iter()
        .map(|r| {
            let source = r["source"].as_str().unwrap();
            let source = source.rsplit('/').next().unwrap().to_owned();
            (source, r["line"].as_u64().unwrap())
        })
        .collect();
    assert_eq!(
        places,
        [
            ("<args>".to_owned(), 1),
            ("<args>".to_owned(), 2),
            ("first.txt".to_owned(), 1),
            ("second.txt".to_owned(), 2)
        ]
    );
}

#[test]
fn a_name_used_in_two_lists_is_refused_with_both_places() {
    let server = TestServer::routes(vec![("/p", Reply::html("p"))]);
    let scratch = Scratch::new("two-lists");
    let first = scratch.join("first.txt");
    let second = scratch.join("second.txt");
    fs::write(&first, format!("same {}\n", server.url("/p"))).unwrap();
    fs::write(&second, format!("same {}\nftp://x/y\n", server.url("/p"))).unwrap();
    let out = scratch.out();
    let run = fetch(&[
        first.to_str().unwrap(),
        second.to_str().unwrap(),
        "not-a-scheme://h/",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr.contains("second.txt:1: duplicate name \"same\""),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("first.txt:1)"), "{}", run.stderr);
    assert!(
        run.stderr.contains("second.txt:2: unsupported scheme"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("URL argument 1: "), "{}", run.stderr);
    assert!(server.requests().is_empty());
}

#[test]
fn reading_the_list_from_a_terminal_prints_a_hint_instead_of_waiting_silently() {
    use std::io::{Read, Write};
    use std::os::fd::FromRawFd;
    use std::process::Stdio;

    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty writes two new descriptors; name, termios and winsize may be null.
    let opened = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(opened, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors are new and owned by nothing else; each File closes its own.
    let (mut terminal, slave) =
        unsafe { (fs::File::from_raw_fd(master), fs::File::from_raw_fd(slave)) };
    let scratch = Scratch::new("terminal");
    let out = scratch.out();
    let mut child = support::command()
        .args(["-o", out.to_str().unwrap()])
        .stdin(Stdio::from(slave))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let (said, heard) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = Vec::new();
        let mut byte = [0u8; 1];
        while let Ok(1) = stderr.read(&mut byte) {
            text.push(byte[0]);
            if text.ends_with(b"Ctrl-D") {
                let _ = said.send(String::from_utf8_lossy(&text).into_owned());
            }
        }
    });
    let hint = heard
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("no hint on stderr while reading the list from a terminal");
    assert!(
        hint.contains("reading the list from the terminal"),
        "{hint}"
    );
    terminal.write_all(b"\x04").unwrap(); // Ctrl-D on an empty line: end of input
    let output = support::wait_bounded(child);
    assert_eq!(
        output.status.code(),
        Some(0),
        "an empty list from the terminal"
    );
}
