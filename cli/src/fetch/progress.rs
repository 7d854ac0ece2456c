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
        let template = format!(
            "{{bar:{}.cyan/blue}} {{pos}}/{{len}} pages  {{msg}}  {{elapsed}}",
            bar_width(terminal_columns(), total)
        );
        bar.set_style(
            ProgressStyle::with_template(&template)
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

/// Columns of the terminal on stderr (80 if unknown).
fn terminal_columns() -> usize {
    // SAFETY: all-zero is a valid `winsize` (four integers).
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes one `winsize` through the pointer, which is valid for writes.
    let ok = unsafe { libc::ioctl(libc::STDERR_FILENO, libc::TIOCGWINSZ, &mut size) } == 0;
    if ok && size.ws_col > 0 {
        usize::from(size.ws_col)
    } else {
        80
    }
}

/// The bar's width, so that the whole line stays a few columns short of the terminal's: a line
/// that fills it leaves the cursor in the last column, where the terminal's echo of `^C` wraps
/// onto a new line, and clearing the bar then clears that line and leaves the stale bar above
/// the summary.
fn bar_width(columns: usize, total: usize) -> usize {
    // " 123/456 pages  1023.5 MiB  1234 pages/s  00:00:00" plus the ^C echo and a margin.
    let digits = total.max(1).ilog10() as usize + 1;
    let rest = 1 + 2 * digits + 1 + " pages  1023.5 MiB  12345 pages/s  00:00:00".len() + 4;
    columns.saturating_sub(rest).clamp(5, 40)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_leaves_room_for_the_ctrl_c_echo() {
        assert_eq!(bar_width(200, 10), 40);
        for columns in [60, 80, 100] {
            let width = bar_width(columns, 5000);
            assert!(width + 1 + 9 + 40 + 4 <= columns, "{columns}: {width}");
        }
        assert_eq!(bar_width(10, 5000), 5, "a tiny terminal still gets a bar");
    }
}
