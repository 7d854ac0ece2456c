//! Hand-written SVG charts for the benchmark report: grouped horizontal bars (a tool's figure
//! against its peers, one group per workload) and a line chart (speedup against worker count).
//!
//! Plain strings, no dependency: the charts are a few dozen shapes, and SVG text renders on
//! GitHub, in browsers and in editors alike.

use std::fmt::Write as _;

const FONT: &str = "font-family=\"-apple-system,Segoe UI,Helvetica,Arial,sans-serif\"";
const OURS_COLOR: &str = "#d9480f";
const PEER_COLOR: &str = "#adb5bd";
const TEXT_COLOR: &str = "#212529";
const MUTED_COLOR: &str = "#6c757d";

/// One bar: a tool's figure.
pub struct Bar {
    pub label: String,
    pub value: f64,
    /// Drawn in the accent colour (futurepool's own bar).
    pub highlight: bool,
    /// Printed after the bar, e.g. "2,400,000 tasks/s (2.1×)".
    pub text: String,
}

/// Bars measured on one workload, scaled against the longest of them.
pub struct BarGroup {
    pub title: String,
    pub bars: Vec<Bar>,
}

/// A line chart series.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub color: &'static str,
    pub dashed: bool,
}

/// Grouped horizontal bars; each group is scaled on its own, so workloads with different units
/// share one picture.
pub fn bar_groups(title: &str, subtitle: &str, groups: &[BarGroup]) -> String {
    // SVG cannot measure text, so widths are estimated from character counts (a sans-serif
    // character is about 0.6 em wide; bold labels a little more).
    let bars = groups.iter().flat_map(|g| g.bars.iter());
    let longest_label = bars
        .clone()
        .map(|b| b.label.chars().count())
        .max()
        .unwrap_or(0);
    let longest_text = bars.map(|b| b.text.chars().count()).max().unwrap_or(0);
    let longest_title = groups
        .iter()
        .map(|g| g.title.chars().count())
        .max()
        .unwrap_or(0);
    let label_width = 24.0 + longest_label as f64 * 8.0;
    let bar_area = 400.0;
    let width = (label_width + bar_area + 16.0 + longest_text as f64 * 6.8)
        .max(32.0 + longest_title as f64 * 8.6)
        .max(32.0 + title.chars().count() as f64 * 10.5)
        .ceil();
    let bar_height = 18.0;
    let bar_gap = 6.0;
    let mut y = 68.0;
    let mut body = String::new();
    for group in groups {
        let _ = writeln!(
            body,
            r#"<text x="16" y="{y}" {FONT} font-size="14" font-weight="600" fill="{TEXT_COLOR}">{}</text>"#,
            escape(&group.title)
        );
        y += 10.0;
        let longest = group.bars.iter().map(|b| b.value).fold(0.0, f64::max);
        for bar in &group.bars {
            let length = if longest > 0.0 && bar.value > 0.0 {
                (bar.value / longest * bar_area).max(1.0)
            } else {
                0.0
            };
            let color = if bar.highlight {
                OURS_COLOR
            } else {
                PEER_COLOR
            };
            let weight = if bar.highlight { "600" } else { "400" };
            let text_y = y + bar_height * 0.75;
            let _ = writeln!(
                body,
                r#"<text x="{}" y="{text_y}" {FONT} font-size="13" font-weight="{weight}" fill="{TEXT_COLOR}" text-anchor="end">{}</text>"#,
                label_width - 8.0,
                escape(&bar.label)
            );
            let _ = writeln!(
                body,
                r#"<rect x="{label_width}" y="{y}" width="{length:.1}" height="{bar_height}" rx="2" fill="{color}"/>"#
            );
            let _ = writeln!(
                body,
                r#"<text x="{:.1}" y="{text_y}" {FONT} font-size="12" fill="{MUTED_COLOR}">{}</text>"#,
                label_width + length + 6.0,
                escape(&bar.text)
            );
            y += bar_height + bar_gap;
        }
        y += 18.0;
    }
    let height = y + 4.0;
    document(width, height, title, subtitle, &body)
}

/// A line chart of `series` over integer x values, y from 0.
pub fn line_chart(
    title: &str,
    subtitle: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
) -> String {
    let (plot_w, height) = (420.0, 400.0);
    let (left, top, bottom) = (64.0, 60.0, 52.0);
    // The legend sits on the right; its width follows the longest name (about 0.55 em a char).
    let longest_name = series
        .iter()
        .map(|s| s.name.chars().count())
        .max()
        .unwrap_or(0);
    let right = 70.0 + longest_name as f64 * 7.2;
    let width = (left + plot_w + right)
        .max(32.0 + subtitle.chars().count() as f64 * 6.6)
        .ceil();
    let plot_h = height - top - bottom;
    let points = series.iter().flat_map(|s| s.points.iter());
    let x_min = points.clone().map(|p| p.0).fold(f64::INFINITY, f64::min);
    let x_max = points
        .clone()
        .map(|p| p.0)
        .fold(f64::NEG_INFINITY, f64::max);
    // A little headroom so the top point does not sit on the frame.
    let y_max = nice_ceiling(points.map(|p| p.1).fold(1.0, f64::max) * 1.08);
    let (x_min, x_max) = if x_min.is_finite() && x_max > x_min {
        (x_min, x_max)
    } else {
        (0.0, 1.0)
    };
    let sx = |x: f64| left + (x - x_min) / (x_max - x_min) * plot_w;
    let sy = |y: f64| top + plot_h - y / y_max * plot_h;

    let mut body = String::new();
    // Grid and y ticks.
    let step = tick_step(y_max);
    let mut tick = 0.0;
    while tick <= y_max + 1e-9 {
        let y = sy(tick);
        let _ = writeln!(
            body,
            r##"<line x1="{left}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#e9ecef"/>"##,
            left + plot_w
        );
        let _ = writeln!(
            body,
            r#"<text x="{:.1}" y="{:.1}" {FONT} font-size="12" fill="{MUTED_COLOR}" text-anchor="end">{}×</text>"#,
            left - 6.0,
            y + 4.0,
            trim_number(tick)
        );
        tick += step;
    }
    // X ticks at integers.
    let mut x = x_min.ceil();
    while x <= x_max + 1e-9 {
        let _ = writeln!(
            body,
            r#"<text x="{:.1}" y="{:.1}" {FONT} font-size="12" fill="{MUTED_COLOR}" text-anchor="middle">{}</text>"#,
            sx(x),
            top + plot_h + 18.0,
            trim_number(x)
        );
        x += 1.0;
    }
    let _ = writeln!(
        body,
        r##"<line x1="{left}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#495057"/>"##,
        top + plot_h,
        left + plot_w,
        top + plot_h
    );
    let _ = writeln!(
        body,
        r#"<text x="{:.1}" y="{:.1}" {FONT} font-size="13" fill="{TEXT_COLOR}" text-anchor="middle">{}</text>"#,
        left + plot_w / 2.0,
        height - 12.0,
        escape(x_label)
    );
    let _ = writeln!(
        body,
        r#"<text x="16" y="{:.1}" {FONT} font-size="13" fill="{TEXT_COLOR}" text-anchor="middle" transform="rotate(-90 16 {:.1})">{}</text>"#,
        top + plot_h / 2.0,
        top + plot_h / 2.0,
        escape(y_label)
    );
    // Series and legend.
    for (i, s) in series.iter().enumerate() {
        let path: Vec<String> = s
            .points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
            .collect();
        let dash = if s.dashed {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        let _ = writeln!(
            body,
            r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2.5"{dash}/>"#,
            path.join(" "),
            s.color
        );
        if !s.dashed {
            for &(x, y) in &s.points {
                let _ = writeln!(
                    body,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{}"/>"#,
                    sx(x),
                    sy(y),
                    s.color
                );
            }
        }
        let ly = top + 10.0 + i as f64 * 22.0;
        let lx = left + plot_w + 16.0;
        let _ = writeln!(
            body,
            r#"<line x1="{lx}" y1="{ly}" x2="{:.1}" y2="{ly}" stroke="{}" stroke-width="2.5"{dash}/>"#,
            lx + 24.0,
            s.color
        );
        let _ = writeln!(
            body,
            r#"<text x="{:.1}" y="{:.1}" {FONT} font-size="13" fill="{TEXT_COLOR}">{}</text>"#,
            lx + 30.0,
            ly + 4.0,
            escape(&s.name)
        );
    }
    document(width, height, title, subtitle, &body)
}

fn document(width: f64, height: f64, title: &str, subtitle: &str, body: &str) -> String {
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height:.0}" viewBox="0 0 {width} {height:.0}">
<rect width="100%" height="100%" fill="#ffffff"/>
<text x="16" y="24" {FONT} font-size="17" font-weight="700" fill="{TEXT_COLOR}">{}</text>
<text x="16" y="42" {FONT} font-size="12" fill="{MUTED_COLOR}">{}</text>
{body}</svg>
"##,
        escape(title),
        escape(subtitle)
    )
}

/// The smallest of 1, 2, 2.5, 5 × 10^k that is at least `value`.
fn nice_ceiling(value: f64) -> f64 {
    let magnitude = 10f64.powf(value.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|&nice| nice >= value - 1e-9)
        .unwrap_or(10.0 * magnitude)
}

/// A grid step giving four to ten lines up to `max`.
fn tick_step(max: f64) -> f64 {
    let mut step = nice_ceiling(max / 5.0);
    if max / step > 10.0 {
        step *= 2.0;
    }
    step
}

fn trim_number(x: f64) -> String {
    if (x - x.round()).abs() < 1e-9 {
        format!("{}", x.round() as i64)
    } else {
        format!("{x:.1}")
    }
}

/// Escapes text for SVG (XML) content and attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(escape(r#"a<b & "c""#), "a&lt;b &amp; &quot;c&quot;");
        let svg = bar_groups(
            "T <1>",
            "",
            &[BarGroup {
                title: "w & x".into(),
                bars: vec![Bar {
                    label: "curl".into(),
                    value: 1.0,
                    highlight: false,
                    text: "1".into(),
                }],
            }],
        );
        assert!(svg.contains("T &lt;1&gt;") && svg.contains("w &amp; x"));
        assert!(!svg.contains("<1>"));
    }

    #[test]
    fn bars_scale_within_their_group() {
        let group = |values: &[f64]| BarGroup {
            title: "g".into(),
            bars: values
                .iter()
                .map(|&value| Bar {
                    label: "t".into(),
                    value,
                    highlight: false,
                    text: String::new(),
                })
                .collect(),
        };
        let svg = bar_groups("", "", &[group(&[10.0, 5.0]), group(&[1000.0])]);
        let widths: Vec<&str> = svg
            .match_indices("width=\"")
            .skip(2) // the document's and the background's
            .map(|(i, _)| svg[i + 7..].split('"').next().unwrap())
            .collect();
        assert_eq!(widths, ["400.0", "200.0", "400.0"]);
    }

    #[test]
    fn nice_axis_bounds() {
        assert_eq!(nice_ceiling(1.9), 2.0);
        assert_eq!(nice_ceiling(2.2), 2.5);
        assert_eq!(nice_ceiling(3.9), 5.0);
        assert_eq!(nice_ceiling(4.0), 5.0);
        assert_eq!(nice_ceiling(7.0), 10.0);
        assert_eq!(tick_step(2.0), 0.5);
    }

    #[test]
    fn line_chart_has_one_polyline_per_series() {
        let svg = line_chart(
            "Speedup",
            "",
            "workers",
            "speedup",
            &[
                Series {
                    name: "threads".into(),
                    points: vec![(1.0, 1.0), (2.0, 1.9)],
                    color: OURS_COLOR,
                    dashed: false,
                },
                Series {
                    name: "ideal".into(),
                    points: vec![(1.0, 1.0), (2.0, 2.0)],
                    color: PEER_COLOR,
                    dashed: true,
                },
            ],
        );
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    }
}
