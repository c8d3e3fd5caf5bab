//! The report as PDF (A4, built-in Helvetica): a summary page (disclaimer, study, model,
//! review, de-identification), the findings table, one page per key image with the finding's
//! knowledge-bank entries in words, and the knowledge entries of the image. Every page carries
//! the research-use notice and its page number.

use std::path::Path;

use printpdf::{
    BuiltinFont, Color, Line, LinePoint, Op, PdfDocument, PdfFontHandle, PdfPage, PdfSaveOptions, Point, Pt, RawImage, RawImageData,
    RawImageFormat, Rect, Rgb, TextItem, XObjectTransform,
};

use super::{ascii, KeyImage, Report, ReportFinding, Result};

const W: f32 = 595.28;
const H: f32 = 841.89;
const LEFT: f32 = 50.0;
const RIGHT: f32 = W - 50.0;
const TOP: f32 = H - 50.0;
const BOTTOM: f32 = 70.0;

fn rgb(r: f32, g: f32, b: f32) -> Color {
    Color::Rgb(Rgb { r, g, b, icc_profile: None })
}

/// Lays text and images out top to bottom, page after page.
struct Layout {
    pages: Vec<Vec<Op>>,
    ops: Vec<Op>,
    y: f32,
}

impl Layout {
    fn new() -> Self {
        Layout { pages: vec![], ops: vec![], y: TOP }
    }

    fn new_page(&mut self) {
        if !self.ops.is_empty() {
            self.pages.push(std::mem::take(&mut self.ops));
        }
        self.y = TOP;
    }

    fn ensure(&mut self, height: f32) {
        if self.y - height < BOTTOM {
            self.new_page();
        }
    }

    fn text_at(&mut self, x: f32, y: f32, size: f32, bold: bool, color: Color, s: &str) {
        self.ops.extend([
            Op::StartTextSection,
            Op::SetFillColor { col: color },
            Op::SetFont {
                font: PdfFontHandle::Builtin(if bold { BuiltinFont::HelveticaBold } else { BuiltinFont::Helvetica }),
                size: Pt(size),
            },
            Op::SetTextCursor { pos: Point { x: Pt(x), y: Pt(y) } },
            Op::ShowText { items: vec![TextItem::Text(ascii(s))] },
            Op::EndTextSection,
        ]);
    }

    /// Wrapped paragraph at the left margin (+ indent).
    fn para(&mut self, size: f32, bold: bool, color: Color, indent: f32, s: &str) {
        let width = RIGHT - LEFT - indent;
        // Helvetica's mean advance is about half an em.
        let max_chars = ((width / (0.5 * size)) as usize).max(10);
        for line in wrap(&ascii(s), max_chars) {
            self.ensure(size * 1.35);
            self.y -= size * 1.35;
            self.text_at(LEFT + indent, self.y, size, bold, color.clone(), &line);
        }
    }

    fn heading(&mut self, s: &str) {
        self.ensure(40.0);
        self.y -= 10.0;
        self.para(14.0, true, rgb(0.1, 0.2, 0.45), 0.0, s);
        self.y -= 4.0;
        self.rule();
    }

    fn rule(&mut self) {
        let y = self.y;
        self.ops.extend([
            Op::SetOutlineColor { col: rgb(0.6, 0.6, 0.6) },
            Op::SetOutlineThickness { pt: Pt(0.5) },
            Op::DrawLine {
                line: Line {
                    points: vec![
                        LinePoint { p: Point { x: Pt(LEFT), y: Pt(y) }, bezier: false },
                        LinePoint { p: Point { x: Pt(RIGHT), y: Pt(y) }, bezier: false },
                    ],
                    is_closed: false,
                },
            },
        ]);
        self.y -= 4.0;
    }

    /// "key: value" line.
    fn field(&mut self, key: &str, value: &str) {
        self.ensure(14.0);
        self.y -= 13.0;
        self.text_at(LEFT, self.y, 10.0, true, rgb(0.0, 0.0, 0.0), key);
        let max_chars = ((RIGHT - LEFT - 150.0) / 5.0) as usize;
        let mut lines = wrap(&ascii(value), max_chars).into_iter();
        if let Some(first) = lines.next() {
            self.text_at(LEFT + 150.0, self.y, 10.0, false, rgb(0.0, 0.0, 0.0), &first);
        }
        for l in lines {
            self.ensure(13.0);
            self.y -= 13.0;
            self.text_at(LEFT + 150.0, self.y, 10.0, false, rgb(0.0, 0.0, 0.0), &l);
        }
    }

    fn finish(mut self) -> Vec<Vec<Op>> {
        if !self.ops.is_empty() {
            self.pages.push(std::mem::take(&mut self.ops));
        }
        self.pages
    }
}

/// Greedy word wrap to at most `max` characters per line (long words are cut).
fn wrap(s: &str, max: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut line = String::new();
    for word in s.split_whitespace() {
        let mut word = word.to_string();
        while word.len() > max {
            if !line.is_empty() {
                out.push(std::mem::take(&mut line));
            }
            let rest = word.split_off(max);
            out.push(word);
            word = rest;
        }
        if !line.is_empty() && line.len() + 1 + word.len() > max {
            out.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(&word);
    }
    if !line.is_empty() || out.is_empty() {
        out.push(line);
    }
    out
}

fn opt(s: &Option<String>) -> String {
    s.clone().filter(|x| !x.is_empty()).unwrap_or_else(|| "-".into())
}

fn fmt_date(d: &Option<String>) -> String {
    match d.as_deref() {
        Some(x) if x.len() == 8 && x.bytes().all(|b| b.is_ascii_digit()) => format!("{}-{}-{}", &x[..4], &x[4..6], &x[6..]),
        _ => opt(d),
    }
}

/// The verdict column of a finding.
pub fn verdict_text(f: &ReportFinding) -> String {
    match &f.review {
        Some(r) => {
            let who = r.reviewer.as_deref().map(|w| format!(" ({w})")).unwrap_or_default();
            let v = match r.verdict {
                radbridge_store::VerdictKind::Confirmed => "confirmed".to_string(),
                radbridge_store::VerdictKind::FalsePositive => {
                    format!("false positive{}", r.reason.as_deref().map(|x| format!(": {}", x.replace('_', " "))).unwrap_or_default())
                }
                radbridge_store::VerdictKind::Missed => "missed".to_string(),
            };
            format!("{v}{who}")
        }
        None if f.flagged == Some(true) => "UNCONFIRMED".into(),
        None => "-".into(),
    }
}

fn summary(l: &mut Layout, r: &Report) {
    l.y -= 6.0;
    l.para(20.0, true, rgb(0.0, 0.0, 0.0), 0.0, "Radbridge findings report");
    l.y -= 8.0;
    // Disclaimer box.
    let box_h = 34.0;
    l.ops.extend([
        Op::SetFillColor { col: rgb(1.0, 0.93, 0.9) },
        Op::DrawRectangle { rectangle: Rect::from_xywh(Pt(LEFT), Pt(l.y - box_h), Pt(RIGHT - LEFT), Pt(box_h)) },
    ]);
    l.y -= 6.0;
    l.para(10.5, true, rgb(0.7, 0.0, 0.0), 8.0, &r.disclaimer);
    l.y -= box_h - 20.0;
    if let Some(n) = &r.model.notice {
        l.para(10.5, true, rgb(0.7, 0.0, 0.0), 8.0, n);
    }

    l.heading("Study");
    let s = &r.study;
    l.field("Patient", &format!("{} (ID {})", opt(&s.patient_name), opt(&s.patient_id)));
    l.field("Birth date / sex / age", &format!("{} / {} / {}", fmt_date(&s.patient_birth_date), opt(&s.patient_sex), opt(&s.patient_age)));
    l.field("Study date", &format!("{} {}", fmt_date(&s.study_date), opt(&s.study_time)));
    l.field("Accession / study ID", &format!("{} / {}", opt(&s.accession_number), opt(&s.study_id)));
    l.field("Study description", &opt(&s.study_description));
    l.field("Institution / referrer", &format!("{} / {}", opt(&s.institution), opt(&s.referring_physician)));
    l.field("Modality / series", &format!("{} / {}", opt(&s.modality), opt(&s.series_description)));
    l.field("Study UID", &opt(&s.study_instance_uid));
    l.field("Series UID", &opt(&s.series_instance_uid));
    l.field(
        "Source",
        &format!(
            "{} {}, grid {}x{}x{}",
            s.source_format,
            s.source_path.as_deref().unwrap_or("(path withheld)"),
            s.dims[0],
            s.dims[1],
            s.dims[2]
        ),
    );

    l.heading("Model");
    let m = &r.model;
    l.field("Model", &format!("{}{}", m.name, if m.synthetic { " (demo model trained on synthetic data)" } else { "" }));
    let name = |v: serde_json::Value| v.as_str().map(str::to_string).unwrap_or_default();
    l.field("Architecture / scoring", &format!("{} / {}", name(serde_json::json!(m.architecture)), name(serde_json::json!(m.scoring))));
    l.field("Weights SHA-256", &m.weights_sha256);

    l.heading("Review");
    let flagged = r.findings.iter().filter(|f| f.flagged == Some(true)).count();
    l.field("Findings", &format!("{} scored, {} flagged, {} unconfirmed", r.findings.len(), flagged, r.review.unreviewed_flagged.len()));
    l.field("Reviewers", &if r.review.reviewers.is_empty() { "none".to_string() } else { r.review.reviewers.join(", ") });
    l.field("Last verdict", &opt(&r.review.last_reviewed_at));
    l.field("Exported", &format!("{} by {}", r.created, r.review.exported_by.as_deref().unwrap_or("-")));
    if let Some(id) = r.review.run_id {
        l.field("Run", &id.to_string());
    }
    if r.review.exported_anyway && !r.review.unreviewed_flagged.is_empty() {
        l.y -= 4.0;
        l.para(
            10.0,
            true,
            rgb(0.7, 0.0, 0.0),
            0.0,
            &format!(
                "Exported without review of {} flagged finding(s), marked UNCONFIRMED: {}",
                r.review.unreviewed_flagged.len(),
                r.review.unreviewed_flagged.join(", ")
            ),
        );
    }

    l.heading("De-identification");
    match &r.deidentification {
        Some(d) => {
            l.para(
                9.5,
                false,
                rgb(0.0, 0.0, 0.0),
                0.0,
                &format!("Patient identity removed: {}. Method: {}.", d.patient_identity_removed, d.method.join("; ")),
            );
            l.para(9.5, false, rgb(0.0, 0.0, 0.0), 0.0, "Names and IDs replaced by a pseudonym; birth date, sex, age, accession, study ID, institution, referring physician and descriptions removed; UIDs remapped under 2.25; dates shifted by a per-study offset (also the review and export dates); the local path withheld.");
        }
        None => l.para(
            9.5,
            true,
            rgb(0.7, 0.0, 0.0),
            0.0,
            "NOT de-identified (exported with --no-deidentify): this document identifies the patient.",
        ),
    }
    if let Some(why) = &r.key_images_withheld {
        l.para(9.5, true, rgb(0.7, 0.0, 0.0), 0.0, &format!("Key images withheld: {why}."));
    }
    if !r.free_text_fields.is_empty() {
        l.para(
            9.5,
            true,
            rgb(0.7, 0.0, 0.0),
            0.0,
            &format!("Free text, not checked by de-identification: {}.", r.free_text_fields.join(", ")),
        );
    }
}

fn findings_table(l: &mut Layout, r: &Report) {
    l.new_page();
    l.heading("Findings");
    let cols = [LEFT, LEFT + 235.0, LEFT + 290.0, LEFT + 350.0, LEFT + 400.0];
    let header = |l: &mut Layout| {
        l.ensure(16.0);
        l.y -= 13.0;
        for (x, h) in cols.iter().zip(["Finding", "Score", "Threshold", "Flagged", "Reviewer verdict"]) {
            l.text_at(*x, l.y, 9.0, true, rgb(0.0, 0.0, 0.0), h);
        }
        l.y -= 3.0;
        l.rule();
    };
    header(l);
    let mut rows: Vec<&ReportFinding> = r.findings.iter().collect();
    // Flagged first, then by score.
    rows.sort_by(|a, b| {
        (b.flagged == Some(true)).cmp(&(a.flagged == Some(true))).then(b.score.partial_cmp(&a.score).unwrap_or(std::cmp::Ordering::Equal))
    });
    for f in rows {
        if l.y - 13.0 < BOTTOM {
            l.new_page();
            l.heading("Findings (continued)");
            header(l);
        }
        l.y -= 12.0;
        let flagged = f.flagged == Some(true);
        let black = rgb(0.0, 0.0, 0.0);
        let mut label = format!("{}{}", f.label, if f.custom { " *" } else { "" });
        if label.len() > 46 {
            label.truncate(44);
            label.push_str("..");
        }
        l.text_at(cols[0], l.y, 8.5, flagged, black.clone(), &label);
        l.text_at(cols[1], l.y, 8.5, false, black.clone(), &format!("{:.4}", f.score));
        l.text_at(cols[2], l.y, 8.5, false, black.clone(), &f.threshold.map(|t| format!("{t:.4}")).unwrap_or_else(|| "-".into()));
        l.text_at(
            cols[3],
            l.y,
            8.5,
            flagged,
            black.clone(),
            match f.flagged {
                Some(true) => "yes",
                Some(false) => "no",
                None => "-",
            },
        );
        let v = verdict_text(f);
        let col = if v == "UNCONFIRMED" { rgb(0.75, 0.0, 0.0) } else { black };
        l.text_at(cols[4], l.y, 8.5, v == "UNCONFIRMED", col, &v);
    }
    l.y -= 8.0;
    l.para(
        8.0,
        false,
        rgb(0.3, 0.3, 0.3),
        0.0,
        "* a finding typed by the user. Flagged: score above the model's threshold for the label. UNCONFIRMED: flagged, exported without a reviewer's verdict.",
    );
    if !r.measurements.is_empty() {
        l.heading("Measurements");
        for m in &r.measurements {
            l.para(9.5, false, rgb(0.0, 0.0, 0.0), 0.0, &format!("{}: {}", m.kind, m.text));
        }
    }
    if !r.missed.is_empty() {
        l.heading("Findings the reviewers added (missed by the model)");
        for m in &r.missed {
            l.para(
                9.5,
                false,
                rgb(0.0, 0.0, 0.0),
                0.0,
                &format!("{}: {} ({}, {})", m.label, m.text.as_deref().unwrap_or(""), m.reviewer.as_deref().unwrap_or("-"), m.at),
            );
        }
    }
}

fn knowledge_lines(l: &mut Layout, entries: &[super::KnowledgeEntry]) {
    if entries.is_empty() {
        l.para(9.5, false, rgb(0.3, 0.3, 0.3), 10.0, "(no knowledge-bank entries: not a BrgSA model)");
    }
    for e in entries {
        let w = match (e.image_weight, e.finding_weight) {
            (Some(i), Some(f)) => format!("image {i:.3} x finding {f:.3}"),
            (Some(i), None) => format!("weight {i:.3}"),
            _ => String::new(),
        };
        l.para(
            9.5,
            false,
            rgb(0.0, 0.0, 0.0),
            10.0,
            &format!("#{} ({w}): {}", e.index, e.description.as_deref().unwrap_or("(not described: run `radbridge bank describe`)")),
        );
    }
}

fn key_image_page(l: &mut Layout, doc: &mut PdfDocument, r: &Report, k: &KeyImage) {
    l.new_page();
    l.heading(&format!("Key image: {}", k.label));
    let f = r.findings.iter().find(|f| f.label == k.label);
    if let Some(f) = f {
        l.field("Score / threshold", &format!("{:.4} / {}", f.score, f.threshold.map(|t| format!("{t:.4}")).unwrap_or_else(|| "-".into())));
        let v = verdict_text(f);
        l.field("Reviewer verdict", &v);
    }
    let p = &k.peak;
    l.field(
        "Peak",
        &format!(
            "voxel [{}, {}, {}], LPS ({:.1}, {:.1}, {:.1}) mm, value {:.4}",
            p.voxel[0], p.voxel[1], p.voxel[2], p.lps_mm[0], p.lps_mm[1], p.lps_mm[2], p.value
        ),
    );
    l.y -= 8.0;
    let max_w = RIGHT - LEFT;
    let max_h = 380.0;
    let scale = (max_w / k.width as f32).min(max_h / k.height as f32);
    let (dw, dh) = (k.width as f32 * scale, k.height as f32 * scale);
    l.ensure(dh + 10.0);
    let img = RawImage {
        pixels: RawImageData::U8(k.rgb.clone()),
        width: k.width as usize,
        height: k.height as usize,
        data_format: RawImageFormat::RGB8,
        tag: vec![],
    };
    let id = doc.add_image(&img);
    let x = LEFT + (max_w - dw) / 2.0;
    l.y -= dh;
    l.ops.push(Op::UseXobject {
        id,
        transform: XObjectTransform {
            translate_x: Some(Pt(x)),
            translate_y: Some(Pt(l.y)),
            dpi: Some(k.width as f32 * 72.0 / dw),
            ..Default::default()
        },
    });
    l.ops.extend([
        Op::SetOutlineColor { col: rgb(0.4, 0.4, 0.4) },
        Op::SetOutlineThickness { pt: Pt(0.5) },
        Op::DrawRectangle {
            rectangle: Rect { mode: Some(printpdf::PaintMode::Stroke), ..Rect::from_xywh(Pt(x), Pt(l.y), Pt(dw), Pt(dh)) },
        },
    ]);
    l.y -= 4.0;
    let caption = format!(
        "Axial slice {} (patient right on the image left, anterior up), {}. {}",
        k.slice,
        k.window,
        if k.overlay == "heatmap" {
            "Heat map overlaid (red to yellow: slice median to peak); ring: the peak."
        } else {
            "No heat map was written for this run: the ring marks the peak."
        }
    );
    l.para(8.5, false, rgb(0.3, 0.3, 0.3), 0.0, &caption);
    if let Some(f) = f {
        l.y -= 6.0;
        l.para(10.0, true, rgb(0.0, 0.0, 0.0), 0.0, "Knowledge-bank entries shared by the image and this finding:");
        knowledge_lines(l, &f.knowledge);
    }
}

fn knowledge_page(l: &mut Layout, r: &Report) {
    l.new_page();
    l.heading("Matched knowledge entries");
    let flagged: Vec<&ReportFinding> = r.findings.iter().filter(|f| f.flagged == Some(true)).collect();
    let shown: Vec<&ReportFinding> = if flagged.is_empty() {
        let mut all: Vec<&ReportFinding> = r.findings.iter().collect();
        all.sort_by(|a, b| b.score.partial_cmp(&a.score).unwrap_or(std::cmp::Ordering::Equal));
        all.into_iter().take(3).collect()
    } else {
        flagged
    };
    if shown.is_empty() {
        l.para(9.5, false, rgb(0.3, 0.3, 0.3), 0.0, "(no findings)");
    }
    for f in shown {
        l.y -= 4.0;
        l.para(10.5, true, rgb(0.0, 0.0, 0.0), 0.0, &format!("{} (score {:.4}, {})", f.label, f.score, verdict_text(f)));
        knowledge_lines(l, &f.knowledge);
    }
    if !r.image_knowledge.is_empty() {
        l.y -= 6.0;
        l.para(10.5, true, rgb(0.0, 0.0, 0.0), 0.0, "Entries the image uses most:");
        knowledge_lines(l, &r.image_knowledge);
    }
}

/// The text of every page of a report's PDF, in drawing order (what a reader of the PDF
/// sees; the PDF streams themselves are compressed).
pub fn text(r: &Report) -> String {
    let mut doc = PdfDocument::new("Radbridge findings report");
    let mut out = String::new();
    for ops in pages(r, &mut doc) {
        for op in ops {
            if let Op::ShowText { items } = op {
                for i in items {
                    if let TextItem::Text(t) = i {
                        out.push_str(&t);
                        out.push('\n');
                    }
                }
            }
        }
    }
    out
}

/// The PDF bytes of a report.
pub fn to_bytes(r: &Report) -> Vec<u8> {
    let mut doc = PdfDocument::new("Radbridge findings report");
    let pages: Vec<PdfPage> =
        pages(r, &mut doc).into_iter().map(|ops| PdfPage::new(printpdf::Mm(210.0), printpdf::Mm(297.0), ops)).collect();
    let mut warnings = Vec::new();
    let bytes = doc.with_pages(pages).save(&PdfSaveOptions::default(), &mut warnings);
    for w in warnings.iter().take(5) {
        tracing::debug!("pdf: {w:?}");
    }
    bytes
}

/// The pages of a report, footers included (images are added to `doc`).
fn pages(r: &Report, doc: &mut PdfDocument) -> Vec<Vec<Op>> {
    let mut l = Layout::new();
    summary(&mut l, r);
    findings_table(&mut l, r);
    for k in &r.key_images {
        key_image_page(&mut l, doc, r, k);
    }
    knowledge_page(&mut l, r);
    let pages = l.finish();
    let n = pages.len();
    pages
        .into_iter()
        .enumerate()
        .map(|(i, mut ops)| {
            let mut foot = Layout::new();
            foot.text_at(LEFT, 40.0, 8.0, true, rgb(0.7, 0.0, 0.0), &r.disclaimer);
            foot.text_at(RIGHT - 60.0, 28.0, 8.0, false, rgb(0.3, 0.3, 0.3), &format!("page {} / {}", i + 1, n));
            foot.text_at(LEFT, 28.0, 8.0, false, rgb(0.3, 0.3, 0.3), &format!("{} - {}", r.generator, r.created));
            ops.extend(foot.ops);
            ops
        })
        .collect()
}

pub fn write_pdf(report: &Report, output: &Path) -> Result<()> {
    crate::write_file(output, to_bytes(report))
}

#[cfg(test)]
mod tests {
    use super::wrap;

    #[test]
    fn wrap_keeps_words_and_cuts_long_ones() {
        assert_eq!(wrap("a bb ccc dddd", 6), vec!["a bb", "ccc", "dddd"]);
        assert_eq!(wrap("abcdefghij", 4), vec!["abcd", "efgh", "ij"]);
        assert_eq!(wrap("", 4), vec![""]);
    }
}
