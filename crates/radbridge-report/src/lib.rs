//! Findings reports: one [`Report`] built from a diagnosis (`analysis::Diagnosis`, as
//! `diagnose --json` writes it and the feedback store keeps it) and the reviewers' verdicts,
//! written as PDF ([`pdf`]), JSON ([`json`], schema in `report.schema.json`) or a DICOM
//! Comprehensive SR ([`sr`]).
//!
//! Every export is de-identified unless the caller turns it off ([`deidentify`]: PS3.15 Basic
//! Application Level Confidentiality Profile for the fields a report carries, UIDs remapped
//! under `2.25.`, dates shifted by a per-study offset; the local path of the study is dropped).
//! Flagged findings must each carry a verdict, or the caller must say "export anyway"; those
//! without one are then marked unconfirmed.
//!
//! Key images (the slice at the heat-map peak of each flagged finding, with the heat map laid
//! over it, or a marker when no heat map was written) are rendered from the study again
//! ([`images`]), so the study must still be where the diagnosis found it.
//!
//! ```no_run
//! use radbridge_report::{self as report, Format, ReportOptions};
//! # fn main() -> Result<(), radbridge_report::ReportError> {
//! let text = std::fs::read_to_string("d.json").unwrap();
//! let d: radbridge_model::analysis::Diagnosis = serde_json::from_str(&text).unwrap();
//! let opts = ReportOptions { export_anyway: true, ..Default::default() };
//! report::export(&d, None, Format::Pdf, "report.pdf".as_ref(), &opts)?;
//! # Ok(()) }
//! ```

pub mod deidentify;
pub mod images;
pub mod json;
pub mod pdf;
pub mod sr;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use radbridge_model::analysis::{Diagnosis, InstanceUids, ModelInfo, Peak, SourceFormat, StudySource};
use radbridge_store::{Verdict, VerdictKind};

pub use deidentify::Deidentifier;
pub use images::KeyImage;
pub use json::write_json;
pub use pdf::write_pdf;
pub use sr::write_sr;

/// Identifies the JSON layout (`report.schema.json`).
pub const REPORT_FORMAT: &str = "radbridge-report-1";

/// Errors of report export. Variants about a file name it.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{} flagged finding(s) have no reviewer verdict: {}. Review them, or export anyway (--export-anyway) to mark them unconfirmed", .0.len(), .0.join(", "))]
    Unreviewed(Vec<String>),
    #[error("the diagnosis has no source study (written before `source` existed): run diagnose again")]
    NoSource,
    #[error("{path}: cannot load the study for the key images: {reason}")]
    Study { path: PathBuf, reason: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: cannot write the DICOM SR: {reason}")]
    Dicom { path: PathBuf, reason: String },
    #[error("cannot encode a key image: {0}")]
    Image(String),
    #[error("{path}: invalid verdicts: {reason}")]
    Verdicts { path: PathBuf, reason: String },
    /// A diagnosis document with values no analysis writes (a hand-edited or hostile file).
    #[error("invalid diagnosis: {0}")]
    InvalidDiagnosis(String),
    #[error("unknown report format '{0}' (pdf, json, sr)")]
    UnknownFormat(String),
    #[error("no data folder for the de-identification key: set RADBRIDGE_DATA_DIR")]
    NoDataDir,
}

pub type Result<T, E = ReportError> = std::result::Result<T, E>;

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Pdf,
    Json,
    Sr,
}

impl std::str::FromStr for Format {
    type Err = ReportError;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "pdf" => Ok(Format::Pdf),
            "json" => Ok(Format::Json),
            "sr" | "dcm" | "dicom" => Ok(Format::Sr),
            _ => Err(ReportError::UnknownFormat(s.to_string())),
        }
    }
}

/// How to build a report.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// De-identify (default). Off only when the user asks (`--no-deidentify`).
    pub deidentify: bool,
    /// Export although flagged findings lack a verdict (they are marked unconfirmed).
    pub export_anyway: bool,
    /// De-identification key; None: the local key in the data folder (created on first use).
    pub secret: Option<[u8; 32]>,
    /// Who exports (shown with the review).
    pub exported_by: Option<String>,
    /// The feedback-store run this report comes from.
    pub run_id: Option<i64>,
    /// Render key images (needs the study on disk).
    pub key_images: bool,
    /// Keep the reviewers' names and the exporter's login in a de-identified export (off by
    /// default: they are replaced by keyed pseudonyms, `Reviewer-…`).
    pub include_reviewer_names: bool,
    /// The reader's measurements on the study (listed in the JSON and the PDF).
    pub measurements: Vec<ReportMeasurement>,
}

impl Default for ReportOptions {
    fn default() -> Self {
        ReportOptions {
            deidentify: true,
            export_anyway: false,
            secret: None,
            exported_by: None,
            run_id: None,
            key_images: true,
            include_reviewer_names: false,
            measurements: Vec::new(),
        }
    }
}

/// A reviewer's verdict on one finding, as the report shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FindingReview {
    /// "confirmed", "false_positive" or "missed".
    pub verdict: VerdictKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default)]
    pub reviewer: Option<String>,
    /// UTC, RFC 3339.
    pub at: String,
}

impl From<&Verdict> for FindingReview {
    fn from(v: &Verdict) -> Self {
        FindingReview {
            verdict: v.verdict,
            reason: v.reason.map(|r| r.as_str().to_string()),
            note: v.note.clone(),
            text: v.text.clone(),
            reviewer: v.reviewer.clone(),
            at: v.at.clone(),
        }
    }
}

/// A knowledge-bank entry shared by the image and a finding, in words where described.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KnowledgeEntry {
    pub index: usize,
    pub image_weight: Option<f32>,
    pub finding_weight: Option<f32>,
    pub description: Option<String>,
}

/// A finding's review state in a report: the reviewer's verdict (the store's `VerdictKind`),
/// or none yet. Serialized as one string: "confirmed", "false_positive", "missed" (the
/// verdict's own names) or "unreviewed".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FindingStatus {
    Reviewed(VerdictKind),
    Unreviewed,
}

impl FindingStatus {
    /// The serialized name.
    pub fn as_str(self) -> &'static str {
        match self {
            FindingStatus::Reviewed(VerdictKind::Confirmed) => "confirmed",
            FindingStatus::Reviewed(VerdictKind::FalsePositive) => "false_positive",
            FindingStatus::Reviewed(VerdictKind::Missed) => "missed",
            FindingStatus::Unreviewed => "unreviewed",
        }
    }

    const ALL: [FindingStatus; 4] = [
        FindingStatus::Reviewed(VerdictKind::Confirmed),
        FindingStatus::Reviewed(VerdictKind::FalsePositive),
        FindingStatus::Reviewed(VerdictKind::Missed),
        FindingStatus::Unreviewed,
    ];
}

impl From<Option<VerdictKind>> for FindingStatus {
    fn from(v: Option<VerdictKind>) -> Self {
        v.map_or(FindingStatus::Unreviewed, FindingStatus::Reviewed)
    }
}

impl std::fmt::Display for FindingStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for FindingStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for FindingStatus {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        FindingStatus::ALL
            .into_iter()
            .find(|x| x.as_str() == s)
            .ok_or_else(|| serde::de::Error::unknown_variant(&s, &["confirmed", "false_positive", "missed", "unreviewed"]))
    }
}

/// One finding of the report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReportFinding {
    pub label: String,
    pub prompt: String,
    pub custom: bool,
    pub score: f32,
    pub threshold: Option<f32>,
    pub flagged: Option<bool>,
    /// "confirmed", "false_positive", "missed", or "unreviewed" (flagged findings exported
    /// without a verdict are "unreviewed" and shown as UNCONFIRMED).
    pub status: FindingStatus,
    pub review: Option<FindingReview>,
    pub peak: Option<Peak>,
    /// Index into `key_images`.
    pub key_image: Option<usize>,
    pub knowledge: Vec<KnowledgeEntry>,
}

/// A finding a reviewer added as missed for a label the run did not score.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MissedFinding {
    pub label: String,
    pub text: Option<String>,
    pub reviewer: Option<String>,
    pub at: String,
}

/// A measurement the reader made on the study (computed in patient space by the app).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportMeasurement {
    /// distance, angle, ellipse or rectangle.
    pub kind: String,
    /// The headline value: mm, degrees, or mean HU for a region.
    pub value: f64,
    pub unit: String,
    /// As the app lists it, e.g. "23.4 mm" or "mean 41.2 HU, SD 12.0, …".
    pub text: String,
}

/// Patient and study as exported (de-identified unless `deidentified` is false).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReportStudy {
    pub patient_name: Option<String>,
    pub patient_id: Option<String>,
    pub patient_birth_date: Option<String>,
    pub patient_sex: Option<String>,
    pub patient_age: Option<String>,
    pub study_date: Option<String>,
    pub study_time: Option<String>,
    pub study_id: Option<String>,
    pub accession_number: Option<String>,
    pub study_description: Option<String>,
    pub referring_physician: Option<String>,
    pub institution: Option<String>,
    pub manufacturer: Option<String>,
    pub study_instance_uid: Option<String>,
    pub series_instance_uid: Option<String>,
    pub frame_of_reference_uid: Option<String>,
    pub modality: Option<String>,
    pub series_description: Option<String>,
    /// "dicom" or "nifti".
    pub source_format: SourceFormat,
    /// Local path of the study: only in identified exports.
    pub source_path: Option<String>,
    /// Canonical grid size of the CT.
    pub dims: [usize; 3],
    /// SOP class / instance UIDs of the source series (remapped when de-identified).
    pub instances: Vec<InstanceUids>,
}

/// What de-identification did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Deidentification {
    /// "YES" (DICOM PatientIdentityRemoved).
    pub patient_identity_removed: String,
    /// DICOM DeidentificationMethod values.
    pub method: Vec<String>,
    /// (code value, coding scheme, meaning) of DeidentificationMethodCodeSequence.
    pub method_codes: Vec<(String, String, String)>,
}

/// Review state of the whole report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReviewSummary {
    /// Distinct reviewers of the verdicts, in order of appearance.
    pub reviewers: Vec<String>,
    /// Time of the latest verdict.
    pub last_reviewed_at: Option<String>,
    /// Flagged findings without a verdict (exported only with "export anyway").
    pub unreviewed_flagged: Vec<String>,
    pub exported_anyway: bool,
    pub exported_by: Option<String>,
    pub run_id: Option<i64>,
}

/// The report: everything the PDF, the JSON and the SR show.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub format: String,
    pub disclaimer: String,
    /// UTC, RFC 3339.
    pub created: String,
    pub deidentified: bool,
    pub deidentification: Option<Deidentification>,
    pub study: ReportStudy,
    pub model: ModelInfo,
    pub findings: Vec<ReportFinding>,
    pub missed: Vec<MissedFinding>,
    /// The reader's measurements on the study.
    #[serde(default)]
    pub measurements: Vec<ReportMeasurement>,
    /// Knowledge-bank entries the image uses most, in words where described.
    pub image_knowledge: Vec<KnowledgeEntry>,
    pub key_images: Vec<KeyImage>,
    pub review: ReviewSummary,
    pub generator: String,
    /// Why the key images were left out of this export (a de-identified export of a series
    /// with BurnedInAnnotation YES), else null.
    #[serde(default)]
    pub key_images_withheld: Option<String>,
    /// The fields holding text a person typed (reviewer notes, findings the reviewers added,
    /// findings typed by the user), which de-identification cannot check: e.g.
    /// `findings[Emphysema].review.note`, `missed[Nodule].text`.
    #[serde(default)]
    pub free_text_fields: Vec<String>,
}

/// The note of a report whose key images were withheld because of burned-in annotation.
pub const BURNED_IN_WITHHELD: &str = "the source images carry burned-in annotation";

/// Current UTC time: (RFC 3339, DICOM DA, DICOM TM).
pub fn now_utc() -> (String, String, String) {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = deidentify::civil_from_days(days);
    let (hh, mm, ss) = (rem / 3600, (rem / 60) % 60, rem % 60);
    (format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z"), format!("{y:04}{m:02}{d:02}"), format!("{hh:02}{mm:02}{ss:02}"))
}

/// Every number a report prints must be finite (JSON has no NaN, but 1e39 reads as an
/// infinite f32).
fn check_numbers(d: &Diagnosis) -> Result<()> {
    for f in &d.findings {
        let label = &f.finding.label;
        let bad = |what: &str, x: f64| ReportError::InvalidDiagnosis(format!("finding '{label}': {what} {x} is not a finite number"));
        if !f.finding.score.is_finite() {
            return Err(bad("score", f.finding.score as f64));
        }
        if let Some(t) = f.finding.threshold.filter(|t| !t.is_finite()) {
            return Err(bad("threshold", t as f64));
        }
        if let Some(p) = &f.peak {
            if let Some(x) = p.lps_mm.iter().copied().chain([p.value as f64]).find(|x| !x.is_finite()) {
                return Err(bad("peak value or position", x));
            }
        }
    }
    Ok(())
}

/// Flagged findings without any verdict.
pub fn unreviewed_flagged(d: &Diagnosis, verdicts: Option<&[Verdict]>) -> Vec<String> {
    d.findings
        .iter()
        .filter(|f| f.finding.flagged == Some(true))
        .filter(|f| !verdicts.unwrap_or(&[]).iter().any(|v| v.label == f.finding.label))
        .map(|f| f.finding.label.clone())
        .collect()
}

impl Report {
    /// Build the report. Fails when flagged findings lack a verdict and `opts.export_anyway`
    /// is false, or when key images are asked for and the study cannot be loaded.
    pub fn build(d: &Diagnosis, verdicts: Option<&[Verdict]>, opts: &ReportOptions) -> Result<Report> {
        let unreviewed = unreviewed_flagged(d, verdicts);
        if !unreviewed.is_empty() && !opts.export_anyway {
            return Err(ReportError::Unreviewed(unreviewed));
        }
        check_numbers(d)?;
        let source = d.source.as_ref().ok_or(ReportError::NoSource)?;
        let verdicts = verdicts.unwrap_or(&[]);
        let (mut created, _, _) = now_utc();

        let mut findings: Vec<ReportFinding> = d
            .findings
            .iter()
            .map(|f| {
                let v = verdicts.iter().find(|v| v.label == f.finding.label);
                ReportFinding {
                    label: f.finding.label.clone(),
                    prompt: f.finding.prompt.clone(),
                    custom: f.finding.custom,
                    score: f.finding.score,
                    threshold: f.finding.threshold,
                    flagged: f.finding.flagged,
                    status: v.map(|v| v.verdict).into(),
                    review: v.map(FindingReview::from),
                    peak: f.peak.clone(),
                    key_image: None,
                    knowledge: f
                        .bank
                        .as_ref()
                        .map(|b| {
                            b.shared
                                .iter()
                                .map(|e| KnowledgeEntry {
                                    index: e.entry.index,
                                    image_weight: Some(e.entry.image_weight),
                                    finding_weight: Some(e.entry.text_weight),
                                    description: e.description.clone(),
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                }
            })
            .collect();
        let mut missed: Vec<MissedFinding> = verdicts
            .iter()
            .filter(|v| v.verdict == VerdictKind::Missed && !d.findings.iter().any(|f| f.finding.label == v.label))
            .map(|v| MissedFinding { label: v.label.clone(), text: v.text.clone(), reviewer: v.reviewer.clone(), at: v.at.clone() })
            .collect();

        let burned_in = |v: &Option<String>| v.as_deref().is_some_and(|b| b.trim().eq_ignore_ascii_case("YES"));
        let mut key_images_withheld = None;
        let key_images = if !opts.key_images {
            vec![]
        } else if opts.deidentify && burned_in(&source.study.burned_in_annotation) {
            key_images_withheld = Some(BURNED_IN_WITHHELD.to_string());
            vec![]
        } else {
            let (images, study_burned_in) = images::key_images_checked(d, source)?;
            if opts.deidentify && burned_in(&study_burned_in) && !images.is_empty() {
                key_images_withheld = Some(BURNED_IN_WITHHELD.to_string());
                vec![]
            } else {
                images
            }
        };
        for (n, k) in key_images.iter().enumerate() {
            if let Some(f) = findings.iter_mut().find(|f| f.label == k.label && f.key_image.is_none()) {
                f.key_image = Some(n);
            }
        }

        let mut reviewers: Vec<String> = Vec::new();
        for r in verdicts.iter().filter_map(|v| v.reviewer.clone()) {
            if !reviewers.contains(&r) {
                reviewers.push(r);
            }
        }
        let mut last_reviewed_at = verdicts.iter().map(|v| v.at.clone()).max();
        let mut exported_by = opts.exported_by.clone();

        let mut study = study_of(source);
        let mut deid = None;
        if opts.deidentify {
            let key = match opts.secret {
                Some(s) => Deidentifier::new(s),
                None => Deidentifier::local()?,
            };
            deid = Some(key.apply(&mut study, source));
            // Every date and time of the export moves with the study's dates (PS3.15 Modified
            // Dates option): the review, the verdicts and the export itself.
            let shift = key.study_shift_days(source);
            let ts = |t: &str| deidentify::shift_timestamp(t, shift).unwrap_or_else(|| DATE_WITHHELD.to_string());
            created = ts(&created);
            last_reviewed_at = last_reviewed_at.as_deref().map(ts);
            for r in findings.iter_mut().filter_map(|f| f.review.as_mut()) {
                r.at = ts(&r.at);
            }
            for m in &mut missed {
                m.at = ts(&m.at);
            }
            if !opts.include_reviewer_names {
                let who = |n: &mut Option<String>| {
                    if let Some(x) = n.as_mut() {
                        *x = key.reviewer(x);
                    }
                };
                for r in findings.iter_mut().filter_map(|f| f.review.as_mut()) {
                    who(&mut r.reviewer);
                }
                for m in &mut missed {
                    who(&mut m.reviewer);
                }
                who(&mut exported_by);
                for r in &mut reviewers {
                    *r = key.reviewer(r);
                }
            }
        }
        let free_text_fields = free_text_fields(&findings, &missed);
        // Nothing identifying in the model block; heat-map paths are not exported at all.
        let model = d.model.clone();
        Ok(Report {
            format: REPORT_FORMAT.into(),
            disclaimer: radbridge_model::analysis::DISCLAIMER.into(),
            created,
            deidentified: opts.deidentify,
            deidentification: deid,
            study,
            model,
            findings,
            missed,
            measurements: opts.measurements.clone(),
            image_knowledge: d
                .image_bank_top
                .iter()
                .map(|e| KnowledgeEntry {
                    index: e.entry.index,
                    image_weight: Some(e.entry.weight),
                    finding_weight: None,
                    description: e.description.clone(),
                })
                .collect(),
            key_images,
            review: ReviewSummary {
                reviewers,
                last_reviewed_at,
                unreviewed_flagged: unreviewed,
                exported_anyway: opts.export_anyway,
                exported_by,
                run_id: opts.run_id,
            },
            generator: format!("Radbridge {}", env!("CARGO_PKG_VERSION")),
            key_images_withheld,
            free_text_fields,
        })
    }

    /// Flagged findings exported without a verdict.
    pub fn unconfirmed(&self) -> impl Iterator<Item = &ReportFinding> {
        self.findings.iter().filter(|f| f.flagged == Some(true) && f.review.is_none())
    }
}

/// What a de-identified export shows for a time it cannot shift (not an RFC 3339 timestamp).
pub const DATE_WITHHELD: &str = "(date withheld)";

/// The fields of a report holding text a person typed.
fn free_text_fields(findings: &[ReportFinding], missed: &[MissedFinding]) -> Vec<String> {
    let mut out = Vec::new();
    for f in findings {
        if f.custom {
            out.push(format!("findings[{}].prompt", f.label));
        }
        if let Some(r) = &f.review {
            if r.note.as_deref().is_some_and(|t| !t.trim().is_empty()) {
                out.push(format!("findings[{}].review.note", f.label));
            }
            if r.text.as_deref().is_some_and(|t| !t.trim().is_empty()) {
                out.push(format!("findings[{}].review.text", f.label));
            }
        }
    }
    for m in missed {
        if m.text.as_deref().is_some_and(|t| !t.trim().is_empty()) {
            out.push(format!("missed[{}].text", m.label));
        }
    }
    out
}

/// The study fields of a source, as they are (identified).
fn study_of(s: &StudySource) -> ReportStudy {
    ReportStudy {
        patient_name: s.patient.name.clone(),
        patient_id: s.patient.id.clone(),
        patient_birth_date: s.patient.birth_date.clone(),
        patient_sex: s.patient.sex.clone(),
        patient_age: s.patient.age.clone(),
        study_date: s.study.date.clone(),
        study_time: s.study.time.clone(),
        study_id: s.study.id.clone(),
        accession_number: s.study.accession_number.clone(),
        study_description: s.study.description.clone(),
        referring_physician: s.study.referring_physician.clone(),
        institution: s.study.institution.clone(),
        manufacturer: s.study.manufacturer.clone(),
        study_instance_uid: s.study_instance_uid.clone(),
        series_instance_uid: s.series_instance_uid.clone(),
        frame_of_reference_uid: s.frame_of_reference_uid.clone(),
        modality: s.modality.clone(),
        series_description: s.series_description.clone(),
        source_format: s.format,
        source_path: Some(s.path.clone()),
        dims: s.dims,
        instances: s.instances.clone(),
    }
}

/// Build a report and write it in one format: the library entry point of the CLI and the
/// app's Export button.
pub fn export(d: &Diagnosis, verdicts: Option<&[Verdict]>, format: Format, output: &Path, opts: &ReportOptions) -> Result<Report> {
    let report = Report::build(d, verdicts, opts)?;
    write(&report, format, output)?;
    Ok(report)
}

/// Write a built report.
pub fn write(report: &Report, format: Format, output: &Path) -> Result<()> {
    match format {
        Format::Pdf => pdf::write_pdf(report, output),
        Format::Json => json::write_json(report, output),
        Format::Sr => sr::write_sr(report, output),
    }
}

/// Verdicts from a JSON file: an array of `feedback::Verdict`, or of the short form
/// `{"label", "verdict": "confirmed"|"false_positive"|"missed", "reviewer", "at", "reason", "note", "text"}`.
pub fn read_verdicts(path: &Path) -> Result<Vec<Verdict>> {
    #[derive(Deserialize)]
    struct Short {
        label: String,
        verdict: VerdictKind,
        #[serde(default)]
        reason: Option<radbridge_store::Reason>,
        #[serde(default)]
        note: Option<String>,
        #[serde(default)]
        text: Option<String>,
        #[serde(default)]
        reviewer: Option<String>,
        #[serde(default)]
        at: Option<String>,
    }
    let text = std::fs::read_to_string(path).map_err(|e| ReportError::Io { path: path.to_path_buf(), source: e })?;
    let items: Vec<Short> =
        serde_json::from_str(&text).map_err(|e| ReportError::Verdicts { path: path.to_path_buf(), reason: e.to_string() })?;
    Ok(items
        .into_iter()
        .enumerate()
        .map(|(n, s)| Verdict {
            label: s.label,
            verdict: s.verdict,
            reason: s.reason,
            note: s.note,
            text: s.text,
            event: n as i64,
            reviewer: s.reviewer,
            at: s.at.unwrap_or_else(|| now_utc().0),
            score: None,
            threshold: None,
            flagged: None,
        })
        .collect())
}

/// Text with characters outside printable ASCII replaced (the PDF's built-in fonts and the SR's
/// default character repertoire).
/// Write an export atomically; the error names the file.
pub(crate) fn write_file(output: &Path, bytes: impl AsRef<[u8]>) -> Result<()> {
    radbridge_volume::atomic::write(output, bytes).map_err(|e| ReportError::Io { path: output.to_path_buf(), source: e })
}

pub(crate) fn ascii(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            ' '..='~' => c.to_string(),
            '×' => "x".into(),
            '–' | '—' | '−' => "-".into(),
            '≥' => ">=".into(),
            '≤' => "<=".into(),
            '‘' | '’' => "'".into(),
            '“' | '”' => "\"".into(),
            'é' | 'è' | 'ê' => "e".into(),
            'ä' => "ae".into(),
            'ö' => "oe".into(),
            'ü' => "ue".into(),
            '\n' | '\t' => " ".into(),
            _ => "?".into(),
        })
        .collect()
}

#[cfg(test)]
mod finding_status_tests {
    use super::*;

    #[test]
    fn finding_status_keeps_the_verdict_strings() {
        let cases = [
            (Some(VerdictKind::Confirmed), "confirmed"),
            (Some(VerdictKind::FalsePositive), "false_positive"),
            (Some(VerdictKind::Missed), "missed"),
            (None, "unreviewed"),
        ];
        for (v, name) in cases {
            let st = FindingStatus::from(v);
            assert_eq!(serde_json::to_value(st).unwrap(), serde_json::json!(name));
            assert_eq!(serde_json::from_value::<FindingStatus>(serde_json::json!(name)).unwrap(), st);
            // A reviewed status serialises as the store's own VerdictKind does.
            if let Some(v) = v {
                assert_eq!(serde_json::to_value(v).unwrap(), serde_json::json!(name));
            }
        }
        assert!(serde_json::from_value::<FindingStatus>(serde_json::json!("pending")).is_err());
    }
}

#[cfg(test)]
mod hostile_json_tests {
    use super::*;
    use serde_json::json;

    fn diagnosis(score: Value) -> Value {
        json!({
            "disclaimer": "x",
            "model": {"name": "m", "architecture": "brgsa", "weights_sha256": "0", "synthetic": true, "scoring": "brgsa_mean_cosine"},
            "findings": [{"label": "Emphysema", "prompt": "p", "score": score, "threshold": 0.1, "flagged": false, "custom": false}],
            "timings": [],
            "source": {"path": "/nonexistent", "format": "nifti"}
        })
    }
    use serde_json::Value;

    fn opts() -> ReportOptions {
        ReportOptions { deidentify: false, export_anyway: true, key_images: false, ..Default::default() }
    }

    #[test]
    fn hostile_diagnosis_json_is_an_error_never_a_panic() {
        // Deep nesting: serde_json's recursion limit.
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(serde_json::from_str::<Diagnosis>(&deep).is_err());
        // Missing fields, wrong types, negative or huge integers.
        assert!(serde_json::from_str::<Diagnosis>("{}").is_err());
        let mut d = diagnosis(json!(0.5));
        d["source"]["dims"] = json!([-1, 2, 3]);
        assert!(serde_json::from_value::<Diagnosis>(d).is_err());
        let mut d = diagnosis(json!(0.5));
        d["source"]["dims"] = json!([1e30, 2, 3]);
        assert!(serde_json::from_value::<Diagnosis>(d).is_err());
        assert!(serde_json::from_str::<Diagnosis>(&diagnosis(json!(0.5)).to_string().replace("0.5", "NaN")).is_err());
        // A huge number reads as an infinite f32: refused when the report is built.
        let d: Diagnosis = serde_json::from_str(&diagnosis(json!(0.5)).to_string().replace("0.5", "1e39")).unwrap();
        let e = Report::build(&d, None, &opts()).unwrap_err();
        assert!(matches!(e, ReportError::InvalidDiagnosis(_)) && e.to_string().contains("Emphysema"), "{e}");
        let mut v = diagnosis(json!(0.5));
        v["findings"][0]["peak"] = json!({"voxel": [0, 0, 0], "lps_mm": [0.0, 1e308, 0.0], "value": 1e39, "from": "patch_grid"});
        if let Ok(d) = serde_json::from_value::<Diagnosis>(v) {
            assert!(matches!(Report::build(&d, None, &opts()).unwrap_err(), ReportError::InvalidDiagnosis(_)));
        }
        // A sane one builds, and its JSON and SR render.
        let d: Diagnosis = serde_json::from_value(diagnosis(json!(0.5))).unwrap();
        let r = Report::build(&d, None, &opts()).unwrap();
        assert!(json::to_string(&r).contains("Emphysema"));
    }

    #[test]
    fn a_key_image_of_a_volume_with_a_broken_spacing_stays_bounded() {
        use radbridge_volume::{Affine, SourceMeta, Volume, Voxels};
        for s in [0.0, f64::INFINITY, f64::NAN, 1e-300] {
            let ct = Volume {
                dims: [4, 3, 2],
                voxels: Voxels::I16(vec![0; 24]),
                affine: Affine::from_columns([[s, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], [0.0; 3]),
                meta: SourceMeta::default(),
                warnings: vec![],
            };
            let peak = Peak { voxel: [1, 1, 1], lps_mm: [0.0; 3], value: 1.0, from: radbridge_model::heatmap::PeakSource::PatchGrid };
            let (rgb, w, h) = images::render(&ct, None, &peak);
            assert!(w <= images::MAX_SIDE && h <= images::MAX_SIDE && rgb.len() == w * h * 3, "{s}: {w}×{h}");
        }
    }
}

#[cfg(test)]
mod privacy_tests {
    use super::*;
    use serde_json::json;

    const KEY: [u8; 32] = [7; 32];

    fn diagnosis(burned_in: Option<&str>) -> Diagnosis {
        let mut study = json!({"date": "20251231", "time": "101112", "id": "S1"});
        if let Some(b) = burned_in {
            study["burned_in_annotation"] = json!(b);
        }
        serde_json::from_value(json!({
            "disclaimer": "x",
            "model": {"name": "m", "architecture": "brgsa", "weights_sha256": "0", "synthetic": true, "scoring": "brgsa_mean_cosine"},
            "findings": [
                {"label": "Emphysema", "prompt": "p", "score": 0.9, "threshold": 0.1, "flagged": true, "custom": false,
                 "peak": {"voxel": [0, 0, 0], "lps_mm": [0.0, 0.0, 0.0], "value": 1.0, "from": "patch_grid"}},
                {"label": "Typed thing", "prompt": "a thing the user typed", "score": 0.05, "threshold": 0.1, "flagged": false, "custom": true}
            ],
            "timings": [],
            "source": {"path": "/nonexistent/study", "format": "dicom", "study_instance_uid": "1.2.3.4",
                       "patient": {"name": "Doe^Jane", "id": "P77"}, "study": study}
        }))
        .unwrap()
    }

    fn verdict(label: &str, kind: VerdictKind, who: &str, at: &str, note: Option<&str>, text: Option<&str>) -> Verdict {
        Verdict {
            label: label.into(),
            verdict: kind,
            reason: None,
            note: note.map(str::to_string),
            text: text.map(str::to_string),
            event: 1,
            reviewer: Some(who.into()),
            at: at.into(),
            score: None,
            threshold: None,
            flagged: None,
        }
    }

    fn verdicts() -> Vec<Verdict> {
        vec![
            verdict("Emphysema", VerdictKind::Confirmed, "dr.house", "2026-01-02T03:04:05Z", Some("looks typical"), None),
            verdict("Nodule", VerdictKind::Missed, "dr.wilson", "2026-01-03T04:05:06.5Z", None, Some("small nodule, right upper lobe")),
        ]
    }

    fn opts(deidentify: bool, names: bool) -> ReportOptions {
        ReportOptions {
            deidentify,
            secret: Some(KEY),
            exported_by: Some("alice.login".into()),
            key_images: false,
            include_reviewer_names: names,
            ..Default::default()
        }
    }

    /// JSON text, SR bytes (as a string, lossy) and PDF text and bytes of a report.
    fn outputs(r: &Report) -> Vec<(&'static str, String)> {
        let obj = sr::build(r);
        let file = obj
            .with_meta(
                dicom_object::meta::FileMetaTableBuilder::new().transfer_syntax(dicom_dictionary_std::uids::EXPLICIT_VR_LITTLE_ENDIAN),
            )
            .unwrap();
        let mut sr_bytes = Vec::new();
        file.write_all(&mut sr_bytes).unwrap();
        vec![
            ("json", json::to_string(r)),
            ("sr", String::from_utf8_lossy(&sr_bytes).into_owned()),
            ("pdf text", pdf::text(r)),
            ("pdf bytes", String::from_utf8_lossy(&pdf::to_bytes(r)).into_owned()),
        ]
    }

    #[test]
    fn a_deidentified_export_keeps_no_real_date_and_no_reviewer_name() {
        let d = diagnosis(None);
        let r = Report::build(&d, Some(&verdicts()), &opts(true, false)).unwrap();
        let key = Deidentifier::new(KEY);
        let shift = key.study_shift_days(d.source.as_ref().unwrap());
        assert!(shift < 0);
        let (now, today, _) = now_utc();
        let today_dashed = &now[..10];
        let originals = ["20251231", "2025-12-31", "20260102", "2026-01-02", "20260103", "2026-01-03", &today, today_dashed];
        let shifted_study = deidentify::shift_date("20251231", shift).unwrap();
        let shifted_verdict = deidentify::shift_timestamp("2026-01-02T03:04:05Z", shift).unwrap();
        let shifted_missed = deidentify::shift_timestamp("2026-01-03T04:05:06.5Z", shift).unwrap();
        let shifted_today = deidentify::shift_date(&today, shift).unwrap();
        for s in [&shifted_study, &shifted_verdict, &shifted_missed, &shifted_today] {
            assert!(!originals.iter().any(|o| s.contains(o)), "a shifted date equals an original one: {s}");
        }
        assert_eq!(r.findings[0].review.as_ref().unwrap().at, shifted_verdict);
        assert_eq!(r.missed[0].at, shifted_missed);
        assert_eq!(r.review.last_reviewed_at.as_deref(), Some(shifted_missed.as_str()));
        assert!(
            r.created.starts_with(&format!("{}-{}-{}T", &shifted_today[..4], &shifted_today[4..6], &shifted_today[6..])),
            "{}",
            r.created
        );
        let house = key.reviewer("dr.house");
        for (what, out) in outputs(&r) {
            for o in originals {
                assert!(!out.contains(o), "{what}: the original date {o} is in the export");
            }
            for name in ["dr.house", "dr.wilson", "alice.login", "Doe^Jane", "P77"] {
                assert!(!out.contains(name), "{what}: {name} is in the export");
            }
            if what == "pdf bytes" {
                continue; // compressed streams
            }
            assert!(out.contains(&house), "{what}: no reviewer pseudonym");
            let study_date = if what == "pdf text" {
                format!("{}-{}-{}", &shifted_study[..4], &shifted_study[4..6], &shifted_study[6..])
            } else {
                shifted_study.clone()
            };
            assert!(out.contains(&study_date), "{what}: no shifted study date {study_date}");
            if what == "sr" {
                // InstanceCreationDate / ContentDate: the report's own (shifted) date.
                assert!(out.contains(&shifted_today), "sr: no shifted content date");
                assert!(out.contains(&shifted_verdict), "sr: no shifted verdict time");
            } else {
                // The PDF shows the missed finding's time and the last verdict's (the same here).
                assert!(out.contains(&shifted_missed), "{what}: no shifted review time");
                assert!(what == "pdf text" || out.contains(&shifted_verdict), "{what}: no shifted verdict time");
                assert!(out.contains(&key.reviewer("alice.login")), "{what}: no exporter pseudonym");
            }
        }
        assert_eq!(r.review.reviewers, vec![house.clone(), key.reviewer("dr.wilson")]);
        assert_eq!(r.review.exported_by, Some(key.reviewer("alice.login")));
    }

    #[test]
    fn measurements_are_listed_in_the_json_and_the_pdf() {
        let d = diagnosis(None);
        let mut o = opts(true, false);
        o.measurements = vec![
            ReportMeasurement { kind: "distance".into(), value: 23.44, unit: "mm".into(), text: "23.4 mm".into() },
            ReportMeasurement { kind: "ellipse".into(), value: 41.2, unit: "HU".into(), text: "mean 41.2 HU, SD 12.0".into() },
        ];
        let r = Report::build(&d, Some(&verdicts()), &o).unwrap();
        let j: serde_json::Value = serde_json::from_str(&json::to_string(&r)).unwrap();
        assert_eq!(j["measurements"][0]["value"], 23.44);
        assert_eq!(j["measurements"][1]["kind"], "ellipse");
        let text = pdf::text(&r);
        assert!(text.contains("Measurements") && text.contains("distance: 23.4 mm") && text.contains("ellipse: mean 41.2 HU"), "{text}");
        // None: no section.
        let r = Report::build(&d, Some(&verdicts()), &opts(true, false)).unwrap();
        assert!(!pdf::text(&r).contains("Measurements"));
    }

    #[test]
    fn reviewer_names_stay_when_asked_for_or_when_not_deidentified() {
        let d = diagnosis(None);
        let r = Report::build(&d, Some(&verdicts()), &opts(true, true)).unwrap();
        assert_eq!(r.review.reviewers, vec!["dr.house".to_string(), "dr.wilson".to_string()]);
        assert_eq!(r.review.exported_by.as_deref(), Some("alice.login"));
        assert_ne!(r.findings[0].review.as_ref().unwrap().at, "2026-01-02T03:04:05Z", "dates shift all the same");
        let r = Report::build(&d, Some(&verdicts()), &opts(false, false)).unwrap();
        assert_eq!(r.findings[0].review.as_ref().unwrap().reviewer.as_deref(), Some("dr.house"));
        assert_eq!(r.findings[0].review.as_ref().unwrap().at, "2026-01-02T03:04:05Z");
        assert_eq!(r.study.study_date.as_deref(), Some("20251231"));
        assert!(json::to_string(&r).contains("alice.login"));
    }

    #[test]
    fn an_unparsable_review_time_is_withheld_not_exported() {
        let mut v = verdicts();
        v[0].at = "last tuesday".into();
        let r = Report::build(&diagnosis(None), Some(&v), &opts(true, false)).unwrap();
        assert_eq!(r.findings[0].review.as_ref().unwrap().at, DATE_WITHHELD);
        assert!(!json::to_string(&r).contains("last tuesday"));
    }

    #[test]
    fn free_text_fields_are_listed() {
        let r = Report::build(&diagnosis(None), Some(&verdicts()), &opts(true, false)).unwrap();
        assert_eq!(r.free_text_fields, vec!["findings[Emphysema].review.note", "findings[Typed thing].prompt", "missed[Nodule].text"]);
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["free_text_fields"][2], "missed[Nodule].text");
        assert!(pdf::text(&r).contains("missed[Nodule].text"));
        let r = Report::build(&diagnosis(None), None, &ReportOptions { export_anyway: true, ..opts(true, false) }).unwrap();
        assert_eq!(r.free_text_fields, vec!["findings[Typed thing].prompt"]);
    }

    #[test]
    fn burned_in_annotation_withholds_key_images_of_a_deidentified_export() {
        // The study is not on disk: loading it for key images would fail, so a report that
        // builds did not try.
        let d = diagnosis(Some("YES"));
        let o = ReportOptions { key_images: true, ..opts(true, false) };
        let r = Report::build(&d, Some(&verdicts()), &o).unwrap();
        assert!(r.key_images.is_empty());
        assert_eq!(r.key_images_withheld.as_deref(), Some(BURNED_IN_WITHHELD));
        assert_eq!(serde_json::to_value(&r).unwrap()["key_images_withheld"], BURNED_IN_WITHHELD);
        assert!(pdf::text(&r).contains(BURNED_IN_WITHHELD));
        assert!(outputs(&r)[1].1.contains(BURNED_IN_WITHHELD));
        // Not de-identified, or burned-in NO: the images are wanted (and the missing study is
        // an error).
        assert!(matches!(
            Report::build(&d, Some(&verdicts()), &ReportOptions { key_images: true, ..opts(false, false) }),
            Err(ReportError::Study { .. })
        ));
        let d = diagnosis(Some("NO"));
        assert!(matches!(Report::build(&d, Some(&verdicts()), &o), Err(ReportError::Study { .. })));
        // Old reports without the new fields still parse.
        let mut v = serde_json::to_value(&r).unwrap();
        v.as_object_mut().unwrap().remove("key_images_withheld");
        v.as_object_mut().unwrap().remove("free_text_fields");
        let back: Report = serde_json::from_value(v).unwrap();
        assert!(back.key_images_withheld.is_none() && back.free_text_fields.is_empty());
    }
}
