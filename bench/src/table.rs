//! The result type every benchmark area shares: rows of {workload, tool, value, unit}, printed as
//! a text table with ratios, emitted as JSON (`--json`) for `report`, and rendered as Markdown.
//!
//! A ratio always reads "how many times better futurepool is than this tool" on the row's
//! workload: ours / theirs when higher is better (throughput), theirs / ours when lower is better
//! (time, memory). Above 1 futurepool wins; futurepool's own rows read 1.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// The tool name that ratios are computed against.
pub const OURS: &str = "futurepool";

/// Which direction of a value is good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Better {
    /// Throughput, speedup: more is better.
    Higher,
    /// Time, memory, latency: less is better.
    Lower,
}

/// One measurement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// What was measured, e.g. "1,000,000 no-op tasks, 2 workers".
    pub workload: String,
    /// Who was measured: `futurepool` or a peer ("tokio spawn_blocking", "curl --parallel").
    pub tool: String,
    /// The figure.
    pub value: f64,
    /// Its unit: "tasks/s", "s", "bytes/task", ...
    pub unit: String,
    /// Which direction is good.
    pub better: Better,
    /// futurepool's advantage over this tool on this workload (see the module docs); `None`
    /// when the workload has no futurepool row.
    pub ratio: Option<f64>,
    /// A short remark ("failed: too many open files", "not installed").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One benchmark area's results (`threads`, `processes`, `fetch`, `cluster`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Table {
    /// The area, as its subcommand is named.
    pub area: String,
    /// A sentence saying what was run, on how many workers.
    pub description: String,
    /// Measurements, grouped by workload in the order they were added.
    pub rows: Vec<Row>,
}

impl Table {
    /// An empty table for `area`.
    pub fn new(area: impl Into<String>, description: impl Into<String>) -> Self {
        Table {
            area: area.into(),
            description: description.into(),
            rows: Vec::new(),
        }
    }

    /// Adds a measurement; ratios are recomputed for its workload.
    pub fn push(
        &mut self,
        workload: &str,
        tool: &str,
        value: f64,
        unit: &str,
        better: Better,
    ) -> &mut Row {
        self.rows.push(Row {
            workload: workload.to_string(),
            tool: tool.to_string(),
            value,
            unit: unit.to_string(),
            better,
            ratio: None,
            note: None,
        });
        self.compute_ratios();
        let last = self.rows.len() - 1;
        &mut self.rows[last]
    }

    /// Recomputes every ratio from futurepool's row of the same workload.
    pub fn compute_ratios(&mut self) {
        let ours: Vec<(String, f64)> = self
            .rows
            .iter()
            .filter(|r| r.tool == OURS && r.note.is_none())
            .map(|r| (r.workload.clone(), r.value))
            .collect();
        for row in &mut self.rows {
            let our_value = ours
                .iter()
                .find(|(w, _)| *w == row.workload)
                .map(|(_, v)| *v);
            let measured = row.value > 0.0; // false for zero and NaN alike
            row.ratio = match (our_value, row.better) {
                _ if row.note.is_some() || !measured => None,
                (Some(ours), Better::Higher) => Some(ours / row.value),
                (Some(ours), Better::Lower) if ours > 0.0 => Some(row.value / ours),
                _ => None,
            };
        }
    }

    /// The workloads, each once, in the order they were first measured.
    pub fn workloads(&self) -> Vec<&str> {
        let mut seen: Vec<&str> = Vec::new();
        for row in &self.rows {
            if !seen.contains(&row.workload.as_str()) {
                seen.push(&row.workload);
            }
        }
        seen
    }

    /// The rows of one workload.
    pub fn rows_of<'a>(&'a self, workload: &'a str) -> impl Iterator<Item = &'a Row> + 'a {
        self.rows.iter().filter(move |r| r.workload == workload)
    }

    /// The table for a terminal: one block per workload, columns aligned.
    pub fn to_text(&self) -> String {
        let mut out = format!("{}: {}\n", self.area, self.description);
        let tool_width = self
            .rows
            .iter()
            .map(|r| r.tool.chars().count())
            .max()
            .unwrap_or(4)
            .max(4);
        for workload in self.workloads() {
            let _ = writeln!(out, "\n  {workload}");
            for row in self.rows_of(workload) {
                let _ = writeln!(
                    out,
                    "    {:<tool_width$}  {:>14} {:<12} {:>8}{}",
                    row.tool,
                    format_value(row.value),
                    row.unit,
                    row.ratio.map(format_ratio).unwrap_or_default(),
                    row.note
                        .as_deref()
                        .map(|n| format!("  ({n})"))
                        .unwrap_or_default()
                );
            }
        }
        out
    }

    /// The table as Markdown: one table for the area, ratios in their own column.
    pub fn to_markdown(&self) -> String {
        let mut out = String::from("| workload | tool | value | unit | futurepool's advantage |\n");
        out.push_str("| --- | --- | ---: | --- | ---: |\n");
        for workload in self.workloads() {
            for (i, row) in self.rows_of(workload).enumerate() {
                let workload_cell = if i == 0 {
                    escape_cell(workload)
                } else {
                    String::new()
                };
                let tool = if row.tool == OURS {
                    format!("**{}**", escape_cell(&row.tool))
                } else {
                    escape_cell(&row.tool)
                };
                let measured = row.value > 0.0;
                let value = match &row.note {
                    Some(note) if !measured => escape_cell(note),
                    Some(note) => format!("{} ({})", format_value(row.value), escape_cell(note)),
                    None => format_value(row.value),
                };
                let _ = writeln!(
                    out,
                    "| {workload_cell} | {tool} | {value} | {} | {} |",
                    escape_cell(&row.unit),
                    row.ratio.map(format_ratio).unwrap_or_default()
                );
            }
        }
        out
    }
}

/// A figure with about four significant digits and thousands separators.
pub fn format_value(value: f64) -> String {
    if !value.is_finite() {
        return "-".to_string();
    }
    let magnitude = value.abs();
    if magnitude >= 1000.0 {
        group_thousands(value.round() as i64)
    } else if magnitude >= 100.0 {
        format!("{value:.0}")
    } else if magnitude >= 10.0 {
        format!("{value:.1}")
    } else if magnitude >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}

/// A ratio as `12.3×`.
pub fn format_ratio(ratio: f64) -> String {
    if ratio >= 100.0 {
        format!("{ratio:.0}×")
    } else if ratio >= 10.0 {
        format!("{ratio:.1}×")
    } else {
        format!("{ratio:.2}×")
    }
}

fn group_thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        out.insert(0, '-');
    }
    out
}

fn escape_cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Table {
        let mut table = Table::new("threads", "no-op tasks on 2 workers");
        table.push(
            "1M no-op tasks",
            "tokio spawn_blocking",
            1_000_000.0,
            "tasks/s",
            Better::Higher,
        );
        table.push(
            "1M no-op tasks",
            OURS,
            2_500_000.0,
            "tasks/s",
            Better::Higher,
        );
        table.push("memory", OURS, 100.0, "bytes/task", Better::Lower);
        table.push(
            "memory",
            "tokio spawn_blocking",
            400.0,
            "bytes/task",
            Better::Lower,
        );
        table
    }

    #[test]
    fn ratios_say_how_much_better_futurepool_is_in_either_direction() {
        let table = sample();
        let ratios: Vec<Option<f64>> = table.rows.iter().map(|r| r.ratio).collect();
        assert_eq!(ratios, [Some(2.5), Some(1.0), Some(1.0), Some(4.0)]);
    }

    #[test]
    fn a_row_with_a_note_and_no_value_has_no_ratio() {
        let mut table = sample();
        table
            .push(
                "1M no-op tasks",
                "procspawn",
                0.0,
                "tasks/s",
                Better::Higher,
            )
            .note = Some("failed: too many open files".into());
        table.compute_ratios();
        assert_eq!(table.rows.last().unwrap().ratio, None);
        assert!(table.to_markdown().contains("failed: too many open files"));
    }

    #[test]
    fn json_round_trips() {
        let table = sample();
        let json = serde_json::to_string(&table).unwrap();
        assert_eq!(serde_json::from_str::<Table>(&json).unwrap(), table);
    }

    #[test]
    fn markdown_groups_rows_by_workload() {
        let markdown = sample().to_markdown();
        let lines: Vec<&str> = markdown.lines().collect();
        assert_eq!(lines.len(), 2 + 4);
        assert_eq!(
            lines[2],
            "| 1M no-op tasks | tokio spawn_blocking | 1,000,000 | tasks/s | 2.50× |"
        );
        assert_eq!(
            lines[3],
            "|  | **futurepool** | 2,500,000 | tasks/s | 1.00× |"
        );
    }

    #[test]
    fn values_are_readable() {
        assert_eq!(format_value(1_234_567.8), "1,234,568");
        assert_eq!(format_value(123.4), "123");
        assert_eq!(format_value(1.14), "1.14");
        assert_eq!(format_value(0.0261), "0.026");
        assert_eq!(format_ratio(12.34), "12.3×");
    }
}
