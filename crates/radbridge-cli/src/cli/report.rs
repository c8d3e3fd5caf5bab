//! `radbridge report`: a findings report (PDF, JSON or DICOM SR) from a feedback-store run or a
//! `diagnose --json` file, de-identified unless `--no-deidentify`. Contract: the flag names
//! below.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use radbridge_model::analysis::{Diagnosis, SourceFormat, StudySource};
use radbridge_report::{self as report, Format, ReportOptions};
use radbridge_store::{self as feedback, AuditAction, Store};
use serde_json::json;

#[derive(Args)]
pub struct ReportArgs {
    /// A run of the feedback store (its diagnosis and the reviewers' verdicts)
    #[arg(long, value_name = "RUN-ID", conflicts_with = "from_json", required_unless_present = "from_json")]
    run: Option<i64>,
    /// A file written by `radbridge diagnose --json` (verdicts: none, or --verdicts)
    #[arg(long, value_name = "FILE")]
    from_json: Option<PathBuf>,
    /// pdf, json or sr (DICOM Comprehensive SR)
    #[arg(long)]
    format: String,
    #[arg(long, short, value_name = "FILE")]
    output: PathBuf,
    /// Keep names, IDs, dates, UIDs and the study path (the export then identifies the patient)
    #[arg(long)]
    no_deidentify: bool,
    /// Export although flagged findings have no verdict (they are marked unconfirmed)
    #[arg(long)]
    export_anyway: bool,
    /// Verdicts for --from-json: a JSON array of {"label", "verdict": confirmed|false_positive|missed, "reviewer", "at", ...}
    #[arg(long, value_name = "FILE", requires = "from_json")]
    verdicts: Option<PathBuf>,
    /// Keep the reviewers' names and the exporter's login in a de-identified export (default:
    /// replaced by keyed pseudonyms, Reviewer-...)
    #[arg(long)]
    include_reviewer_names: bool,
    /// Who exports (default: the OS user)
    #[arg(long, value_name = "NAME")]
    reviewer: Option<String>,
    /// Feedback database for --run (default: $RADBRIDGE_DATA_DIR/radbridge.sqlite3, else the platform's app-data folder)
    #[arg(long, value_name = "FILE")]
    db: Option<PathBuf>,
}

pub fn run(a: &ReportArgs) -> Result<()> {
    let format: Format = a.format.parse()?;
    let exported_by = a.reviewer.clone().or_else(feedback::audit::os_user);
    let opts = |run_id| ReportOptions {
        deidentify: !a.no_deidentify,
        export_anyway: a.export_anyway,
        exported_by: exported_by.clone(),
        run_id,
        include_reviewer_names: a.include_reviewer_names,
        ..Default::default()
    };
    let report = if let Some(id) = a.run {
        let mut store = match &a.db {
            Some(p) => Store::open(p)?,
            None => Store::open_default()?,
        };
        let rec = store.run(id)?;
        let mut d: Diagnosis = serde_json::from_value(rec.diagnosis.clone())
            .with_context(|| format!("run {id}: the stored diagnosis is not a `diagnose --json` document"))?;
        if let Some(src) = d.source.as_mut() {
            // The store's study path wins (`feedback record --study` may have corrected it).
            src.path = rec.study_path.clone();
        } else {
            // A run recorded from an older diagnosis: the store still knows the study path.
            d.source = Some(StudySource {
                path: rec.study_path.clone(),
                format: SourceFormat::of_path(rec.study_path.as_ref()),
                ..Default::default()
            });
        }
        let verdicts = store.verdicts(id)?;
        let r = report::export(&d, Some(&verdicts), format, &a.output, &opts(Some(id))).with_context(|| format!("run {id}"))?;
        store.audit(
            exported_by.as_deref(),
            AuditAction::Export,
            &json!({"run": id, "format": a.format, "deidentified": r.deidentified, "unconfirmed": r.review.unreviewed_flagged}),
        )?;
        r
    } else {
        let path = a.from_json.as_ref().expect("clap: --run or --from-json");
        let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
        let d: Diagnosis =
            serde_json::from_str(&text).with_context(|| format!("{}: not a `radbridge diagnose --json` file", path.display()))?;
        let verdicts = match &a.verdicts {
            Some(v) => Some(report::read_verdicts(v)?),
            None => None,
        };
        report::export(&d, verdicts.as_deref(), format, &a.output, &opts(None)).with_context(|| path.display().to_string())?
    };
    if let Some(w) = free_text_warning(&report) {
        eprintln!("{w}");
    }
    if let Some(why) = &report.key_images_withheld {
        eprintln!("key images withheld: {why}");
    }
    let unconfirmed = report.review.unreviewed_flagged.len();
    eprintln!(
        "wrote {} ({} findings, {} key image(s){}{})",
        a.output.display(),
        report.findings.len(),
        report.key_images.len(),
        if report.deidentified { ", de-identified" } else { ", NOT de-identified" },
        if unconfirmed > 0 { format!(", {unconfirmed} flagged finding(s) UNCONFIRMED") } else { String::new() }
    );
    Ok(())
}

/// The warning a de-identified export with free text gets: de-identification cannot check
/// what people typed.
fn free_text_warning(report: &report::Report) -> Option<String> {
    (report.deidentified && !report.free_text_fields.is_empty()).then(|| {
        format!(
            "warning: free text is exported as typed, not de-identified; check it for names or dates: {}",
            report.free_text_fields.join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ReportArgs,
    }

    #[test]
    fn include_reviewer_names_is_a_flag_off_by_default() {
        let a = Cli::try_parse_from(["x", "--from-json", "d.json", "--format", "pdf", "-o", "r.pdf"]).unwrap().args;
        assert!(!a.include_reviewer_names && !a.no_deidentify);
        let a =
            Cli::try_parse_from(["x", "--from-json", "d.json", "--format", "pdf", "-o", "r.pdf", "--include-reviewer-names"]).unwrap().args;
        assert!(a.include_reviewer_names);
    }

    #[test]
    fn the_free_text_warning_names_the_fields_of_deidentified_exports_only() {
        let d: Diagnosis = serde_json::from_value(json!({
            "disclaimer": "x",
            "model": {"name": "m", "architecture": "brgsa", "weights_sha256": "0", "synthetic": true, "scoring": "brgsa_mean_cosine"},
            "findings": [{"label": "Typed", "prompt": "typed by the user", "score": 0.1, "threshold": 0.5, "flagged": false, "custom": true}],
            "timings": [],
            "source": {"path": "/nonexistent", "format": "nifti"}
        }))
        .unwrap();
        let opts = ReportOptions { secret: Some([1; 32]), key_images: false, ..Default::default() };
        let r = report::Report::build(&d, None, &opts).unwrap();
        let w = free_text_warning(&r).unwrap();
        assert!(w.starts_with("warning: free text") && w.contains("findings[Typed].prompt"), "{w}");
        let r = report::Report::build(&d, None, &ReportOptions { deidentify: false, ..opts }).unwrap();
        assert_eq!(free_text_warning(&r), None);
    }
}
