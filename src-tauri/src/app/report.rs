//! Report export: the last analysis with the reviewers' verdicts from the feedback store, as
//! PDF, JSON or DICOM SR (`radbridge_report`), de-identified unless the user turns it off.

use serde::Serialize;
use tauri::State;
use ts_rs::TS;

use super::error::{AppError, AppResult, ErrorCode};
use super::feedback::{audit_event, with_store};
use super::state::{lock, AppState};
use radbridge_report::{self as report, Format, ReportOptions};
use radbridge_store::{audit, AuditAction};

#[derive(Debug, Clone, Serialize, TS)]
pub struct ExportResult {
    pub path: String,
    /// The file's extension: "pdf", "json" or "dcm".
    pub format: String,
    /// Fields holding text a person typed (reviewer notes, added or typed findings), exported
    /// as typed: the dialog asks the user to check them (`Report::free_text_fields`).
    pub free_text: Vec<String>,
    /// Why the key images were left out (burned-in annotation), if they were.
    pub key_images_withheld: Option<String>,
}

/// Ask where to save (the native dialog, opened here: the page never names the file), then
/// write the report; None when the dialog was cancelled.
///
/// For the end-to-end tests, which cannot drive a native dialog: when the app was started with
/// `RADBRIDGE_TEST_SAVE_DIR` set, the report goes to `<that folder>/radbridge-report.<ext>`
/// without a dialog. The variable comes from whoever started the app, never from the page.
#[tauri::command]
pub async fn export_report(
    format: Format,
    deidentify: bool,
    run_id: Option<i64>,
    export_anyway: Option<bool>,
    state: State<'_, AppState>,
) -> AppResult<Option<ExportResult>> {
    let fmt = format;
    let diagnosis = lock(&state.run).last.clone().ok_or_else(|| AppError::new(ErrorCode::NoStudy, "run an analysis first"))?;
    let verdicts = match run_id {
        Some(id) => Some(with_store(&state, |s| s.verdicts(id))?),
        None => None,
    };
    let ext = match fmt {
        Format::Pdf => "pdf",
        Format::Json => "json",
        Format::Sr => "dcm",
    };
    let path = match std::env::var_os("RADBRIDGE_TEST_SAVE_DIR") {
        Some(dir) => std::path::PathBuf::from(dir).join(format!("radbridge-report.{ext}")),
        None => {
            let picked = rfd::AsyncFileDialog::new()
                .set_title("Export the findings report")
                .set_file_name(format!("radbridge-report.{ext}"))
                .add_filter(ext, &[ext])
                .save_file()
                .await;
            match picked {
                Some(f) => f.path().to_path_buf(),
                None => return Ok(None),
            }
        }
    };
    let opts = ReportOptions {
        deidentify,
        export_anyway: export_anyway.unwrap_or(false),
        exported_by: audit::os_user(),
        run_id,
        measurements: super::measure::for_report(&state),
        ..Default::default()
    };
    let out = path.clone();
    let built = tauri::async_runtime::spawn_blocking(move || report::export(&diagnosis, verdicts.as_deref(), fmt, &out, &opts))
        .await
        .map_err(|e| AppError::internal("export", e))??;
    audit_event(
        &state,
        AuditAction::Export,
        serde_json::json!({"run_id": run_id, "format": ext, "deidentified": deidentify, "path": path.display().to_string()}),
    );
    Ok(Some(ExportResult {
        path: path.display().to_string(),
        format: ext.to_string(),
        free_text: built.free_text_fields,
        key_images_withheld: built.key_images_withheld,
    }))
}
