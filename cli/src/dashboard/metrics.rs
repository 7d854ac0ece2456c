//! `/metrics`: the figures of `futurepool cluster status` in the Prometheus text exposition
//! format (version 0.0.4), one series per pool (and per worker, and per task that reports
//! progress), labelled `pool` (and `worker`, or `task`). The per-task series are bounded: a
//! status holds at most [`MAX_PROGRESS`](futurepool::cluster::MAX_PROGRESS) tasks' progress.

use std::fmt::Write;

use futurepool::cluster::Status;

/// What one scrape found: each pool's status, or why the broker could not be asked.
pub struct Scrape<'a> {
    pub pools: &'a [(String, Status)],
    /// Set when the broker could not be asked at all: `futurepool_broker_up` is 0 then.
    pub error: Option<&'a str>,
}

/// One metric family: its help, its type, and a function giving each pool's samples.
struct Family {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    value: fn(&Status) -> f64,
}

const POOL_FAMILIES: &[Family] = &[
    Family {
        name: "futurepool_queued",
        kind: "gauge",
        help: "Tasks waiting for a worker.",
        value: |s| s.queued as f64,
    },
    Family {
        name: "futurepool_in_flight",
        kind: "gauge",
        help: "Tasks delivered to a worker and not yet finished.",
        value: |s| s.in_flight as f64,
    },
    Family {
        name: "futurepool_workers",
        kind: "gauge",
        help: "Workers that announced themselves and have not stopped cleanly.",
        value: |s| s.workers.len() as f64,
    },
    Family {
        name: "futurepool_dead_lettered",
        kind: "gauge",
        help: "Tasks in the dead-letter stream.",
        value: |s| s.dead_lettered as f64,
    },
    Family {
        name: "futurepool_malformed_total",
        kind: "counter",
        help: "Queue entries that were not runnable tasks and were dead-lettered.",
        value: |s| s.malformed as f64,
    },
    Family {
        name: "futurepool_submitted_total",
        kind: "counter",
        help: "Tasks ever queued (a re-submitted task id counts once).",
        value: |s| s.submitted as f64,
    },
    Family {
        name: "futurepool_published_total",
        kind: "counter",
        help: "Outcomes published (the first completion of each task).",
        value: |s| s.published as f64,
    },
    Family {
        name: "futurepool_duplicates_total",
        kind: "counter",
        help: "Late duplicate completions that were discarded.",
        value: |s| s.duplicates as f64,
    },
    Family {
        name: "futurepool_released_total",
        kind: "counter",
        help: "Tasks put back in the queue by workers that stopped cleanly.",
        value: |s| s.released as f64,
    },
    Family {
        name: "futurepool_chained",
        kind: "gauge",
        help: "Tasks chained after others, waiting on the broker for those to finish.",
        value: |s| s.chained as f64,
    },
    Family {
        name: "futurepool_lease_seconds",
        kind: "gauge",
        help: "How long a worker may stay silent before its tasks are given to another.",
        value: |s| s.lease.as_secs_f64(),
    },
    Family {
        name: "futurepool_max_deliveries",
        kind: "gauge",
        help: "How many times a task is delivered before it is dead-lettered.",
        value: |s| f64::from(s.max_deliveries),
    },
];

/// A metric family with one series per worker, or per task, of each pool.
struct ItemFamily {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    /// The label naming the item (`worker`, `task`).
    label: &'static str,
    /// Each item's label value and sample; an item without a sample is left out.
    samples: fn(&Status) -> Vec<(&str, f64)>,
}

const ITEM_FAMILIES: &[ItemFamily] = &[
    ItemFamily {
        name: "futurepool_worker_in_flight",
        kind: "gauge",
        help: "Tasks a worker holds: running, or fetched and about to run.",
        label: "worker",
        samples: |s| {
            s.workers
                .iter()
                .map(|w| (w.name.as_str(), w.in_flight as f64))
                .collect()
        },
    },
    ItemFamily {
        name: "futurepool_worker_heartbeat_age_seconds",
        kind: "gauge",
        help:
            "Seconds since the worker's last heartbeat (broker clock); absent if it never sent one.",
        label: "worker",
        samples: |s| {
            s.workers
                .iter()
                .filter_map(|w| Some((w.name.as_str(), w.last_heartbeat?.as_secs_f64())))
                .collect()
        },
    },
    ItemFamily {
        name: "futurepool_task_progress_ratio",
        kind: "gauge",
        help: "Done / total of a running task's latest progress report (a bounded number of tasks \
               per pool).",
        label: "task",
        samples: |s| {
            s.progress
                .iter()
                .map(|p| (p.task_id.as_str(), p.ratio()))
                .collect()
        },
    },
];

/// Renders a scrape.
pub fn render(scrape: &Scrape<'_>) -> String {
    let mut out = String::new();
    family_head(
        &mut out,
        "futurepool_broker_up",
        "gauge",
        "1 if the broker answered this scrape, else 0.",
    );
    let _ = writeln!(
        out,
        "futurepool_broker_up {}",
        if scrape.error.is_some() { 0 } else { 1 }
    );
    for family in POOL_FAMILIES {
        family_head(&mut out, family.name, family.kind, family.help);
        for (pool, status) in scrape.pools {
            let _ = writeln!(
                out,
                "{}{{pool=\"{}\"}} {}",
                family.name,
                escape(pool),
                number((family.value)(status))
            );
        }
    }
    for family in ITEM_FAMILIES {
        family_head(&mut out, family.name, family.kind, family.help);
        for (pool, status) in scrape.pools {
            for (item, value) in (family.samples)(status) {
                let _ = writeln!(
                    out,
                    "{}{{pool=\"{}\",{}=\"{}\"}} {}",
                    family.name,
                    escape(pool),
                    family.label,
                    escape(item),
                    number(value)
                );
            }
        }
    }
    out
}

fn family_head(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A label value escaped as the format requires: backslash, double quote and newline.
pub fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A sample value: integers without a fraction, others as Rust prints them (which the format
/// accepts: it is Go's `ParseFloat` syntax).
fn number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_cannot_break_out_of_their_quotes() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn a_scrape_without_a_broker_says_it_is_down() {
        let text = render(&Scrape {
            pools: &[],
            error: Some("connection refused"),
        });
        assert!(text.contains("\nfuturepool_broker_up 0\n"), "{text}");
        assert!(text.contains("# TYPE futurepool_queued gauge"), "{text}");
    }
}
