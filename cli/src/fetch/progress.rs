//! The progress bar: on a terminal only, and never with `-q`.

use std::cell::Cell;
use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::args::format_size;

/// A progress bar over the entries of a run, or nothing at all.
pub(crate) struct Progress {
    bar: Option<ProgressBar>,
    bytes: Cell<u64>,
}

impl Progress {
    /// A bar for `total` entries, drawn on stderr if `wanted` and stderr is a terminal.
    pub(crate) fn new(total: usize, wanted: bool) -> Progress {
        if !wanted || !std::io::stderr().is_terminal() {
            return Progress {
                bar: None,
                bytes: Cell::new(0),
            };
        }
        let bar = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{bar:40.cyan/blue} {pos}/{len} pages  {msg}  {elapsed}")
                .expect("the template is valid")
                .progress_chars("█▉▊▋▌▍▎▏ "),
        );
        Progress {
            bar: Some(bar),
            bytes: Cell::new(0),
        }
    }

    /// One more entry done, with `bytes` saved.
    pub(crate) fn advance(&self, bytes: u64) {
        if let Some(bar) = &self.bar {
            self.bytes.set(self.bytes.get() + bytes);
            bar.inc(1);
            let seconds = bar.elapsed().as_secs_f64().max(1e-3);
            bar.set_message(format!(
                "{}  {:.0} pages/s",
                format_size(self.bytes.get()),
                bar.position() as f64 / seconds
            ));
        }
    }

    pub(crate) fn is_visible(&self) -> bool {
        self.bar.is_some()
    }

    /// Redraws the bar (elapsed time and rate move even when no entry finishes).
    pub(crate) fn tick(&self) {
        if let Some(bar) = &self.bar {
            bar.tick();
        }
    }

    /// Prints a line above the bar (or plainly on stderr without one).
    pub(crate) fn println(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
