//! `futurepool fetch` against hostile or broken servers: silence, trickles, bodies that stop
//! short, resets, lying lengths and gzip bombs. Each fails with a message naming the problem, and
//! no file appears under its final name.

mod support;

use std::time::Duration;

use support::{error_of, fetch_list, row, Delivery, Reply, Scratch, TestServer};

const NO_RETRY: [&str; 2] = ["--retries", "0"];

#[test]
fn a_server_that_never_answers_is_abandoned_after_the_stall_timeout() {
    let server = TestServer::routes(vec![(
        "/silent",
        Reply::html("never").delivered(Delivery::NeverAnswer),
    )]);
    let scratch = Scratch::new("silent");
    let (run, rows) = fetch_list(
        &scratch,
        &[server.url("/silent")],
        &[
            "--retries",
            "0",
            "--stall-timeout",
            "0.5",
            "--timeout",
            "600",
        ],
    );
    assert_eq!(run.code, Some(1));
    assert_eq!(
        error_of(row(&rows, 1)),
        "stalled: no data received for 0.5 s"
    );
    assert!(scratch.out_files().is_empty());
}

#[test]
fn a_body_that_stops_midway_is_abandoned_after_the_stall_timeout() {
    let server = TestServer::routes(vec![(
        "/half",
        Reply::html(&"x".repeat(1000)).delivered(Delivery::HangAfter(400)),
    )]);
    let scratch = Scratch::new("hang-body");
    let (run, rows) = fetch_list(
        &scratch,
        &[server.url("/half")],
        &["--retries", "0", "--stall-timeout", "0.5"],
    );
    assert_eq!(run.code, Some(1));
    assert_eq!(
        error_of(row(&rows, 1)),
        "stalled: no data received for 0.5 s"
    );
    assert!(
        scratch.out_files().is_empty(),
        "the partial file was not removed"
    );
}

#[test]
fn a_trickling_server_cannot_hold_a_worker_beyond_the_total_timeout() {
    // One byte every 200 ms never trips the stall timeout; the total deadline ends it.
    let server = TestServer::routes(vec![(
        "/trickle",
        Reply::html(&"x".repeat(10_000)).delivered(Delivery::Trickle(Duration::from_millis(200))),
    )]);
    let scratch = Scratch::new("trickle");
    let (run, rows) = fetch_list(
        &scratch,
        &[server.url("/trickle")],
        &["--retries", "0", "--stall-timeout", "5", "--timeout", "1"],
    );
    assert_eq!(run.code, Some(1));
    assert_eq!(
        error_of(row(&rows, 1)),
        "timeout: the attempt took longer than 1 s"
    );
    assert!(scratch.out_files().is_empty());
}

#[test]
fn timeouts_are_retried() {
    let server = TestServer::start(|_, earlier| {
        let reply = Reply::html("late but fine");
        if earlier == 0 {
            reply.delivered(Delivery::NeverAnswer)
        } else {
            reply
        }
    });
    let scratch = Scratch::new("timeout-retry");
    let (run, rows) = fetch_list(
        &scratch,
        &[server.url("/p")],
        &["--stall-timeout", "1", "--backoff", "0.01"],
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    // The first attempt stalls; a later one (normally the second) gets the page.
    let attempts = row(&rows, 1)["attempts"].as_u64().unwrap();
    assert!(attempts >= 2, "{attempts}");
    assert_eq!(server.requests().len() as u64, attempts);
}

#[test]
fn a_gzip_bomb_fails_on_decoded_bytes() {
    let bomb = vec![0u8; 16 << 20];
    let server = TestServer::routes(vec![
        ("/bomb", Reply::gzip(&bomb)),
        ("/small", Reply::gzip(b"<p>compressed page</p>")),
    ]);
    let scratch = Scratch::new("gzip");
    let (run, rows) = fetch_list(
        &scratch,
        &[
            format!("bomb {}", server.url("/bomb")),
            format!("small {}", server.url("/small")),
        ],
        &["--max-size", "1MiB", "--retries", "0"],
    );
    assert_eq!(run.code, Some(1));
    assert_eq!(
        error_of(row(&rows, 1)),
        "too large: the body exceeds --max-size 1 MiB (counting decoded bytes)"
    );
    assert_eq!(row(&rows, 1)["attempts"], 1, "too large is not retried");
    assert_eq!(scratch.out_files(), ["small.html"]);
    assert_eq!(
        std::fs::read_to_string(scratch.out().join("small.html")).unwrap(),
        "<p>compressed page</p>",
        "saved decoded"
    );
    assert_eq!(row(&rows, 2)["bytes"], 22);
}

#[test]
fn a_content_length_over_max_size_fails_before_the_body_is_read() {
    let server = TestServer::routes(vec![(
        "/big",
        Reply::html("small body").header("Content-Length", "2000000000"),
    )]);
    let scratch = Scratch::new("big-length");
    let (run, rows) = fetch_list(&scratch, &[server.url("/big")], &["--max-size", "1MiB"]);
    assert_eq!(run.code, Some(1));
    assert_eq!(
        error_of(row(&rows, 1)),
        "too large: the body exceeds --max-size 1 MiB (announced by Content-Length)"
    );
    assert!(scratch.out_files().is_empty());
}

#[test]
fn a_body_shorter_than_its_content_length_fails() {
    let server = TestServer::routes(vec![(
        "/short",
        Reply::html(&"x".repeat(1000)).delivered(Delivery::CloseAfter(500)),
    )]);
    let scratch = Scratch::new("short");
    let (run, rows) = fetch_list(&scratch, &[server.url("/short")], &NO_RETRY);
    assert_eq!(run.code, Some(1));
    assert_eq!(
        error_of(row(&rows, 1)),
        "truncated: the body ended after 500 of the 1000 bytes its Content-Length announced"
    );
    assert!(scratch.out_files().is_empty());
}

#[test]
fn a_lying_content_length_fails_even_when_retried() {
    let server = TestServer::routes(vec![(
        "/liar",
        Reply::html("only twenty-two bytes").header("Content-Length", "100"),
    )]);
    let scratch = Scratch::new("liar");
    let (run, rows) = fetch_list(
        &scratch,
        &[server.url("/liar")],
        &["--retries", "1", "--backoff", "0.01"],
    );
    assert_eq!(run.code, Some(1));
    let failed = row(&rows, 1);
    assert_eq!(failed["attempts"], 2, "a truncated body is retried");
    assert!(error_of(failed).starts_with("truncated: "), "{failed}");
    assert!(scratch.out_files().is_empty());
}

#[test]
fn a_reset_connection_fails() {
    let server = TestServer::routes(vec![(
        "/reset",
        Reply::html(&"x".repeat(100_000)).delivered(Delivery::ResetAfter(1000)),
    )]);
    let scratch = Scratch::new("reset");
    let (run, rows) = fetch_list(&scratch, &[server.url("/reset")], &NO_RETRY);
    assert_eq!(run.code, Some(1));
    let error = error_of(row(&rows, 1));
    assert!(
        error == "connection lost: the connection was reset by the server"
            || error.starts_with("truncated: "),
        "{error}"
    );
    assert!(scratch.out_files().is_empty());
}

#[test]
fn a_body_without_length_ends_with_the_connection() {
    let server = TestServer::routes(vec![(
        "/close",
        Reply::html("until close").without_length(),
    )]);
    let scratch = Scratch::new("no-length");
    let (run, rows) = fetch_list(&scratch, &[server.url("/close")], &NO_RETRY);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(row(&rows, 1)["bytes"], 11);
}

#[test]
fn a_server_chosen_path_cannot_escape_the_output_directory() {
    let server = TestServer::start(|_, _| Reply::html("payload"));
    let scratch = Scratch::new("escape");
    let lines = vec![
        server.url("/..%2F..%2Fescaped"),
        server.url("/%2e%2e"),
        server.url("/a/%2Fetc%2Fpasswd"),
    ];
    let (run, rows) = fetch_list(&scratch, &lines, &[]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(
        scratch.out_files(),
        ["_.._escaped", "_etc_passwd.html", "index.html"]
    );
    assert_eq!(
        support::files_in(&scratch.path),
        ["list.txt", "out", "report.jsonl"]
    );
    assert_eq!(rows.len(), 3);
}

#[test]
fn a_host_that_never_accepts_the_connection_fails_after_the_connect_timeout() {
    // A listener that never accepts, its queue filled: the kernel drops further SYNs, so a new
    // connection attempt hangs exactly like one to an unreachable host, without leaving loopback.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut queued = Vec::new();
    loop {
        // A loopback connection takes microseconds; one that takes a second had its SYN dropped.
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            Ok(stream) => queued.push(stream),
            Err(_) => break,
        }
        assert!(queued.len() < 10_000, "the accept queue never filled");
    }
    let scratch = Scratch::new("connect-timeout");
    let (run, rows) = fetch_list(
        &scratch,
        &[format!("http://{addr}/x")],
        &[
            "--retries",
            "0",
            "--connect-timeout",
            "0.5",
            "--stall-timeout",
            "30",
            "--timeout",
            "60",
        ],
    );
    assert_eq!(run.code, Some(1));
    assert_eq!(
        error_of(row(&rows, 1)),
        format!("connect timeout: no connection to {addr} within 0.5 s")
    );
    drop(queued);
}

#[test]
fn content_length_with_chunked_encoding_is_a_malformed_response() {
    let server = TestServer::routes(vec![(
        "/both",
        Reply::status(200)
            .header("Content-Type", "text/html")
            .header("Content-Length", "3")
            .header("Transfer-Encoding", "chunked")
            .body(b"5\r\nhello\r\n0\r\n\r\n".to_vec()),
    )]);
    let scratch = Scratch::new("length-and-chunked");
    let (run, rows) = fetch_list(&scratch, &[server.url("/both")], &NO_RETRY);
    assert_eq!(run.code, Some(1));
    let error = error_of(row(&rows, 1));
    assert!(error.starts_with("malformed response: "), "{error}");
    assert!(scratch.out_files().is_empty());
}

#[test]
fn response_headers_over_the_limit_are_named_as_such() {
    let server = TestServer::routes(vec![
        (
            "/big",
            Reply::html("x").header("X-Padding", &"p".repeat(20_000)),
        ),
        (
            "/fine",
            Reply::html("x").header("X-Padding", &"p".repeat(12_000)),
        ),
    ]);
    let scratch = Scratch::new("big-head");
    let (run, rows) = fetch_list(
        &scratch,
        &[server.url("/big"), server.url("/fine")],
        &NO_RETRY,
    );
    assert_eq!(run.code, Some(1));
    assert_eq!(
        error_of(row(&rows, 1)),
        "malformed response: the response headers exceed this tool's limit of 16 KiB"
    );
    assert!(row(&rows, 2)["error"].is_null(), "{:?}", row(&rows, 2));
}
