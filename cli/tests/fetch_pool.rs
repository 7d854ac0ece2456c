//! `futurepool fetch` and pooled connections a server closes without saying so: a request that
//! fails on a reused connection before any response byte is sent again on a new connection,
//! without costing an attempt (issue 11, case 2).

mod support;

use support::{error_of, fetch_list, row, Keepalive, Reply, Scratch, TestServer};

/// `/chain/I/N` redirects to `/chain/I/N+1` until `HOPS`, which answers with a page.
const HOPS: usize = 4;

fn chains(keepalive: Keepalive) -> TestServer {
    TestServer::start_with(keepalive, |request, _| {
        let parts: Vec<&str> = request.path.trim_start_matches('/').split('/').collect();
        match parts[..] {
            ["chain", chain, hop] => match hop.parse::<usize>() {
                Ok(hop) if hop < HOPS => {
                    Reply::redirect(302, &format!("/chain/{chain}/{}", hop + 1))
                }
                Ok(_) => Reply::html(&format!("chain {chain}")),
                Err(_) => Reply::status(404),
            },
            _ => Reply::status(404),
        }
    })
}

fn thirty_chains(server: &TestServer) -> Vec<String> {
    (0..30)
        .map(|i| server.url(&format!("/chain/{i}/0")))
        .collect()
}

fn assert_all_saved_in_one_attempt(server: &TestServer, tag: &str) {
    let scratch = Scratch::new(tag);
    let (run, rows) = fetch_list(
        &scratch,
        &thirty_chains(server),
        &["-j", "30", "--retries", "0"],
    );
    assert_eq!(rows.len(), 30);
    let failed: Vec<String> = rows
        .iter()
        .filter(|r| !r["error"].is_null())
        .map(|r| format!("line {}: {}", r["line"], error_of(r)))
        .collect();
    assert!(failed.is_empty(), "{} failed: {failed:#?}", failed.len());
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    for line in 1..=30 {
        assert_eq!(
            row(&rows, line)["attempts"],
            1,
            "a stale connection cost an attempt"
        );
    }
    assert_eq!(scratch.out_files().len(), 30);
}

#[test]
fn redirect_chains_survive_a_server_that_closes_after_each_response_silently() {
    let server = chains(Keepalive::CloseSilently);
    assert_all_saved_in_one_attempt(&server, "close-silently");
}

#[test]
fn a_request_failing_on_a_reused_connection_is_resent_once_on_a_new_one() {
    // Every reuse fails (the server resets a kept connection when the next request arrives), so
    // every hop after the first of a chain needs the resend.
    let server = chains(Keepalive::DropReused);
    assert_all_saved_in_one_attempt(&server, "drop-reused");
    for chain in 0..30 {
        for hop in 0..=HOPS {
            let path = format!("/chain/{chain}/{hop}");
            assert_eq!(
                server.requests_for(&path).len(),
                1,
                "{path} was not served once"
            );
        }
    }
}

#[test]
fn a_fresh_connection_that_fails_is_still_an_error() {
    // The resend is for reused connections only: a server that resets every new connection
    // before answering still fails the entry, after its attempts.
    let server = TestServer::routes(vec![(
        "/reset",
        Reply::html("x").delivered(support::Delivery::ResetAfter(0)),
    )]);
    let scratch = Scratch::new("fresh-reset");
    let (run, rows) = fetch_list(&scratch, &[server.url("/reset")], &["--retries", "0"]);
    assert_eq!(run.code, Some(1));
    assert_eq!(row(&rows, 1)["attempts"], 1);
    assert_eq!(
        server.requests_for("/reset").len(),
        1,
        "a fresh failure was resent"
    );
}
