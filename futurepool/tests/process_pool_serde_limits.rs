//! Types that serde accepts but postcard cannot carry, and closures, fail on a process pool with
//! an error that names the likely cause and the fix (issue 12, "docs that are not true").

mod support;

use std::time::Duration;

use futurepool::{ProcessPool, TaskError, ThreadPool};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
enum Loose {
    Number(u64),
    Text(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Sparse {
    id: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
    after: u64,
}

fn read_loose(value: Loose) -> u64 {
    match value {
        Loose::Number(n) => n,
        Loose::Text(t) => t.len() as u64,
    }
}
fn make_sparse(id: u64) -> Sparse {
    Sparse {
        id,
        note: None,
        after: 7,
    }
}
futurepool::register!(read_loose, make_sparse);
futurepool::test_support!();

const LIMIT: Duration = Duration::from_secs(60);

fn transfer_reason<T: std::fmt::Debug>(outcome: Result<T, TaskError>) -> String {
    match outcome {
        Err(TaskError::Transfer(reason)) => reason.to_string(),
        other => panic!("expected a transfer error, got {other:?}"),
    }
}

#[test]
fn untagged_enum_argument_fails_with_transfer_naming_the_likely_cause() {
    support::within(LIMIT, "an untagged argument", || {
        // Works on threads: nothing is serialized there.
        let threads = ThreadPool::new(1);
        assert_eq!(
            threads.submit(|| read_loose(Loose::Number(3))).result(),
            Ok(3)
        );

        let pool = ProcessPool::new(1).unwrap();
        let why = transfer_reason(pool.submit(read_loose, Loose::Number(3)).result());
        assert!(why.contains("untagged"), "{why}");
    });
}

#[test]
fn skip_serializing_if_result_fails_with_transfer_naming_the_likely_cause() {
    support::within(LIMIT, "a result with a skipped field", || {
        let pool = ProcessPool::new(1).unwrap();
        let why = transfer_reason(pool.submit(make_sparse, 1).result());
        assert!(why.contains("skip_serializing_if"), "{why}");
    });
}

#[test]
fn a_closure_submitted_to_a_process_pool_says_to_make_it_a_named_fn() {
    support::within(LIMIT, "a closure on a process pool", || {
        let pool = ProcessPool::new(1).unwrap();
        let why = transfer_reason(pool.submit(|n: u64| n + 1, 1).result());
        assert!(why.contains("a closure cannot be registered"), "{why}");
        assert!(why.contains("named `fn"), "{why}");
    });
}
