//! The pictures and the page of external validation (`radbridge eval --scores`): `roc.svg`,
//! one ROC curve per label with its AUROC in the legend (drawn with `plotters`' SVG backend),
//! and `report.html`, a self-contained page (inline CSS, the SVG inlined, no external URL, no
//! script) with the research-use disclaimer, the metrics per label at the ROC-optimal and at
//! the model's thresholds, the mean, the case counts and the curves. Every string that comes
//! from the input files (label names, ids, paths) is HTML-escaped. Pure functions of their
//! inputs (they know nothing of the CSV files); `external` decides what to show.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use plotters::prelude::*;
use radbridge_model::analysis::DISCLAIMER;

use crate::eval::{LabelResult, Roc};

/// One curve of `roc.svg`.
#[derive(Debug, Clone, Copy)]
pub struct RocCurve<'a> {
    pub label: &'a str,
    pub roc: &'a Roc,
    pub auroc: f64,
}

/// Line colours, in turn (Tableau 20 order: distinct on white).
const COLOURS: [(u8, u8, u8); 20] = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
    (174, 199, 232),
    (255, 187, 120),
    (152, 223, 138),
    (255, 152, 150),
    (197, 176, 213),
    (196, 156, 148),
    (247, 182, 210),
    (199, 199, 199),
    (219, 219, 141),
    (158, 218, 229),
];

/// The colour of curve `i`.
pub fn colour(i: usize) -> RGBColor {
    let (r, g, b) = COLOURS[i % COLOURS.len()];
    RGBColor(r, g, b)
}

/// Text safe in XML 1.0: control characters (not allowed there) become U+FFFD.
fn xml_text(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { '\u{fffd}' } else { c }).collect()
}

/// Stroke width of the curves: in `roc.svg` each curve is one `<polyline>` of this width (the
/// axes, the ticks and the chance diagonal are polylines of width 1).
pub const CURVE_WIDTH: u32 = 2;

/// `roc.svg`: the chance diagonal (grey) and one polyline per curve, the legend giving each
/// label with its AUROC. The text is escaped by the SVG backend.
pub fn roc_svg(curves: &[RocCurve]) -> Result<String, String> {
    let mut buf = String::new();
    let height = 560 + 18 * curves.len().min(40) as u32;
    {
        let root = SVGBackend::with_string(&mut buf, (640, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .caption("ROC curves", ("sans-serif", 20))
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(52)
            .build_cartesian_2d(0f64..1f64, 0f64..1f64)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("False-positive rate (1 − specificity)")
            .y_desc("True-positive rate (sensitivity)")
            .draw()
            .map_err(|e| e.to_string())?;
        chart.draw_series(LineSeries::new([(0.0, 0.0), (1.0, 1.0)], RGBColor(170, 170, 170).stroke_width(1))).map_err(|e| e.to_string())?;
        for (i, c) in curves.iter().enumerate() {
            let col = colour(i);
            let points: Vec<(f64, f64)> = c.roc.fpr.iter().zip(&c.roc.tpr).map(|(&x, &y)| (x, y)).collect();
            chart
                .draw_series(LineSeries::new(points, col.stroke_width(CURVE_WIDTH)))
                .map_err(|e| e.to_string())?
                .label(format!("{} (AUROC {:.3})", xml_text(c.label), c.auroc))
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], col.filled()));
        }
        if !curves.is_empty() {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::LowerRight)
                .label_font(("sans-serif", 13))
                .background_style(WHITE.mix(0.9))
                .border_style(BLACK)
                .draw()
                .map_err(|e| e.to_string())?;
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(buf)
}

/// HTML-escape text for element content and double-quoted attribute values (the page uses no
/// single-quoted attribute, so `'` stays as it is: the disclaimer reads literally).
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// One row of the table.
#[derive(Debug, Clone, Copy)]
pub struct ReportRow<'a> {
    /// At the ROC-optimal threshold of this set (the official protocol).
    pub optimal: &'a LabelResult,
    /// At the model's own threshold, if it has one for the label.
    pub at_model: Option<&'a LabelResult>,
    /// Cases left out of this label (non-finite score or missing truth).
    pub excluded: usize,
}

/// What `report.html` shows.
#[derive(Debug, Clone, Copy)]
pub struct ReportInput<'a> {
    pub scores: &'a str,
    pub labels: &'a str,
    pub model: Option<&'a str>,
    pub cases: usize,
    pub bootstrap: usize,
    pub rows: &'a [ReportRow<'a>],
    pub mean: &'a BTreeMap<String, f64>,
    pub mean_at_model: &'a BTreeMap<String, f64>,
    pub only_in_scores: &'a [String],
    pub only_in_labels: &'a [String],
    pub labels_only_in_scores: &'a [String],
    pub labels_only_in_labels: &'a [String],
    pub skipped: &'a [String],
    /// The `roc.svg` text, inlined.
    pub svg: &'a str,
}

const CSS: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222}\
.disclaimer{border:2px solid #b00;background:#fee;padding:.6em 1em;font-weight:600}\
table{border-collapse:collapse;margin:1em 0;font-size:.9em}th,td{border:1px solid #bbb;padding:.25em .5em;text-align:right}\
th{background:#eee}td.l{text-align:left}tr.mean td{font-weight:700;background:#f6f6f6}\
.muted{color:#777}";

fn num(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.3}")
    } else {
        "–".to_string()
    }
}

fn metric_cells(out: &mut String, r: Option<&LabelResult>) {
    match r {
        Some(r) => {
            for v in [r.threshold, r.f1_weighted, r.accuracy, r.precision, r.recall] {
                let _ = write!(out, "<td>{}</td>", num(v));
            }
        }
        None => out.push_str("<td class=\"muted\" colspan=\"5\">no model threshold</td>"),
    }
}

fn mean_cells(out: &mut String, m: &BTreeMap<String, f64>) {
    if m.is_empty() {
        out.push_str("<td colspan=\"5\"></td>");
        return;
    }
    out.push_str("<td></td>");
    for k in ["f1_weighted", "accuracy", "precision", "recall"] {
        let _ = write!(out, "<td>{}</td>", m.get(k).map_or("–".into(), |&v| num(v)));
    }
}

fn list(items: &[String], max: usize) -> String {
    if items.is_empty() {
        return "none".into();
    }
    let shown: Vec<String> = items.iter().take(max).map(|s| escape_html(s)).collect();
    let more = if items.len() > max { format!(" … ({} more, all in summary.json)", items.len() - max) } else { String::new() };
    format!("{}: {}{more}", items.len(), shown.join(", "))
}

/// The SVG document as an element of the page: without an XML declaration, and without the
/// SVG namespace attribute (implied in HTML, and the page holds no URL at all).
fn inline_svg(svg: &str) -> String {
    let svg = svg.trim_start();
    let svg = svg.strip_prefix("<?xml").and_then(|s| s.find("?>").and_then(|i| s.get(i + 2..))).unwrap_or(svg);
    svg.replacen(" xmlns=\"http://www.w3.org/2000/svg\"", "", 1)
}

/// `report.html`.
pub fn report_html(r: &ReportInput) -> String {
    let mut h = String::new();
    let _ = writeln!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>External validation</title><style>{CSS}</style></head><body>"
    );
    let _ = writeln!(h, "<h1>External validation</h1>\n<p class=\"disclaimer\">{}</p>", escape_html(DISCLAIMER));
    let _ = writeln!(
        h,
        "<p>Scores: <code>{}</code><br>Labels: <code>{}</code><br>Model: {}</p>",
        escape_html(r.scores),
        escape_html(r.labels),
        r.model.map_or("not given".into(), escape_html)
    );
    let _ = writeln!(
        h,
        "<p>{} cases matched. Ids only in the scores: {}. Ids only in the labels: {}.<br>Labels only in the scores: {}. Labels only in the labels: {}. Skipped (one class): {}.</p>",
        r.cases,
        list(r.only_in_scores, 10),
        list(r.only_in_labels, 10),
        list(r.labels_only_in_scores, 20),
        list(r.labels_only_in_labels, 20),
        list(r.skipped, 20),
    );
    let how = if r.bootstrap > 0 {
        format!(
            "Values are bootstrap means over {} resamples with 95 % percentile intervals (full-set values in summary.json).",
            r.bootstrap
        )
    } else {
        "Values are on the full set (no resampling).".to_string()
    };
    let _ = writeln!(
        h,
        "<p>{how} The ROC-optimal threshold is the point of this set's ROC curve closest to (0, 1), the official protocol; the model threshold is the model's stored one. Prediction: score &gt; threshold.</p>"
    );
    h.push_str(
        "<table><thead><tr><th rowspan=\"2\">Label</th><th rowspan=\"2\">n pos</th><th rowspan=\"2\">n neg</th><th rowspan=\"2\">excluded</th><th rowspan=\"2\">AUROC (95 % CI)</th>\
<th colspan=\"5\">at the ROC-optimal threshold</th><th colspan=\"5\">at the model threshold</th></tr>\n<tr>",
    );
    for _ in 0..2 {
        h.push_str("<th>threshold</th><th>F1 (weighted)</th><th>accuracy</th><th>precision</th><th>recall</th>");
    }
    h.push_str("</tr></thead><tbody>\n");
    for row in r.rows {
        let o = row.optimal;
        let ci = o.ci95.get("auroc").map_or(String::new(), |[lo, hi]| format!(" ({}–{})", num(*lo), num(*hi)));
        let _ = write!(
            h,
            "<tr><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}{ci}</td>",
            escape_html(&o.label),
            o.positives,
            o.negatives,
            row.excluded,
            num(o.auroc)
        );
        metric_cells(&mut h, Some(o));
        metric_cells(&mut h, row.at_model);
        h.push_str("</tr>\n");
    }
    let _ = write!(
        h,
        "<tr class=\"mean\"><td class=\"l\">mean</td><td></td><td></td><td></td><td>{}</td>",
        r.mean.get("auroc").map_or("–".into(), |&v| num(v))
    );
    mean_cells(&mut h, r.mean);
    mean_cells(&mut h, r.mean_at_model);
    h.push_str("</tr>\n</tbody></table>\n");
    h.push_str("<p class=\"muted\">Excluded: cases left out of that label (a failed study: empty or non-finite score; or an empty label cell). The mean at the model thresholds is over the labels that have one.</p>\n");
    let _ = writeln!(h, "<h2>ROC curves</h2>\n<p class=\"muted\">Each curve and the AUROC in its legend are on all of the label's cases (with resampling, the table shows bootstrap means).</p>\n<div>{}</div>\n</body></html>", inline_svg(r.svg));
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval;

    fn curve_polylines(svg: &str) -> usize {
        svg.lines().filter(|l| l.starts_with("<polyline") && l.contains(&format!("stroke-width=\"{CURVE_WIDTH}\""))).count()
    }

    #[test]
    fn escapes_html() {
        assert_eq!(escape_html("<b a=\"x\">&'</b>"), "&lt;b a=&quot;x&quot;&gt;&amp;'&lt;/b&gt;");
        assert_eq!(escape_html("Pleural effusion"), "Pleural effusion");
    }

    fn result(label: &str) -> (LabelResult, Roc) {
        let y = [false, true, false, true, true, false];
        let s = [0.1, 0.7, 0.4, 0.35, 0.9, 0.2];
        (eval::evaluate_label(label, &y, &s, 10).unwrap(), eval::roc_curve(&y, &s).unwrap())
    }

    #[test]
    fn svg_has_one_polyline_per_curve_and_escaped_legend() {
        let (a, ra) = result("<script>alert(1)</script>");
        let (b, rb) = result("B & \u{1}C");
        let curves = [RocCurve { label: &a.label, roc: &ra, auroc: a.auroc }, RocCurve { label: &b.label, roc: &rb, auroc: b.auroc }];
        let svg = roc_svg(&curves).unwrap();
        assert_eq!(curve_polylines(&svg), 2);
        assert!(!svg.contains("<script"));
        assert!(svg.contains("&lt;script&gt;"));
        assert!(svg.contains("B &amp; \u{fffd}C"));
        assert!(!svg.contains('\u{1}'));
        assert!(svg.contains("AUROC"));
    }

    #[test]
    fn report_escapes_input_strings_and_is_self_contained() {
        let (a, ra) = result("<img src=x onerror=alert(1)>");
        let svg = roc_svg(&[RocCurve { label: &a.label, roc: &ra, auroc: a.auroc }]).unwrap();
        let rows = [ReportRow { optimal: &a, at_model: None, excluded: 3 }];
        let mean = eval::mean_metrics(std::slice::from_ref(&a));
        let ids = vec!["<id>".to_string()];
        let html = report_html(&ReportInput {
            scores: "s&.csv",
            labels: "l.csv",
            model: Some("m<1>"),
            cases: 6,
            bootstrap: 10,
            rows: &rows,
            mean: &mean,
            mean_at_model: &BTreeMap::new(),
            only_in_scores: &ids,
            only_in_labels: &[],
            labels_only_in_scores: &[],
            labels_only_in_labels: &[],
            skipped: &[],
            svg: &svg,
        });
        assert!(html.contains(DISCLAIMER));
        assert!(!html.contains("<img"));
        assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"));
        assert!(html.contains("&lt;id&gt;") && html.contains("m&lt;1&gt;") && html.contains("s&amp;.csv"));
        assert!(html.contains("no model threshold"));
        assert!(html.contains("<svg"));
        assert!(!html.contains("<?xml"));
        assert!(!html.contains("http://") && !html.contains("https://") && !html.contains("<script") && !html.contains("<link"));
    }
}
