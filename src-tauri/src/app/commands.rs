//! Tauri commands for opening studies, the research-use notice and settings: IPC ⇄ core calls,
//! nothing more. Analysis commands are in `analysis.rs`.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;
use tauri::State;
use ts_rs::TS;

use super::error::{AppError, AppResult, ErrorCode};
use super::state::{self, lock, AppState, Displayed, Settings, VolumeSummary};
use radbridge_volume::{self as volume, OpenOptions};

#[tauri::command]
pub async fn startup_path(state: State<'_, AppState>) -> AppResult<Option<String>> {
    Ok(startup(&state))
}

fn startup(state: &AppState) -> Option<String> {
    state.initial.as_ref().map(|p| p.display().to_string())
}

/// Open a DICOM folder/file or NIfTI file. On error the previously loaded volume stays. Only a
/// path the user chose outside the page (command line, dialog, drop) is opened.
#[tauri::command]
pub async fn open_path(path: String, series: Option<String>, state: State<'_, AppState>) -> AppResult<VolumeSummary> {
    if !state.is_granted(std::path::Path::new(&path)) {
        return Err(AppError::new(
            ErrorCode::NotPermitted,
            format!("{path}: not opened (choose it with File → Open, drop it on the window, or give it on the command line)"),
        ));
    }
    open_volume(&state, path, series, serde_json::json!({})).await
}

/// Load `path` (the series `series`, by index or UID) and make it the displayed study: what
/// `open_path` does once the path is allowed, and what the library opens. The previous run is
/// forgotten; an `open_study` audit entry gets `audit` merged into its detail.
pub async fn open_volume(state: &AppState, path: String, series: Option<String>, audit: serde_json::Value) -> AppResult<VolumeSummary> {
    let p = PathBuf::from(&path);
    let loaded = tauri::async_runtime::spawn_blocking(move || volume::open(&p, &OpenOptions { series, ..Default::default() }))
        .await
        .map_err(|e| AppError::internal("loading", e))??;
    let source_orientation = loaded.volume.orientation();
    let vol = loaded.volume.into_canonical();
    let (lo, hi) = vol.voxels.range().unwrap_or((0.0, 0.0));
    let generation = {
        let mut g = lock(&state.generation);
        *g += 1;
        *g
    };
    let summary = VolumeSummary {
        path,
        format: vol.meta.format,
        format_detail: vol.meta.format_detail.clone(),
        modality: vol.meta.modality.clone(),
        description: vol.meta.series_description.clone(),
        dims: vol.dims,
        spacing: vol.affine.spacing(),
        orientation: vol.affine.axcodes_string(),
        source_orientation,
        affine_lps: vol.affine.0,
        hu_min: lo,
        hu_max: hi,
        series: loaded.series,
        chosen: loaded.chosen,
        files_scanned: loaded.scan.files_scanned,
        non_dicom_skipped: loaded.scan.non_dicom_skipped,
        warnings: vol.warnings.clone(),
        generation,
    };
    *lock(&state.displayed) = Some(Displayed { summary: summary.clone(), volume: Arc::new(vol) });
    super::analysis::reset_run(state);
    let detail = merged(serde_json::json!({"path": summary.path, "series": summary.chosen, "format": summary.format}), audit);
    super::feedback::audit_event(state, radbridge_store::AuditAction::OpenStudy, detail);
    Ok(summary)
}

/// `base` with the fields of `extra` added (an `extra` that is not an object adds nothing).
fn merged(mut base: serde_json::Value, extra: serde_json::Value) -> serde_json::Value {
    if let (Some(b), serde_json::Value::Object(extra)) = (base.as_object_mut(), extra) {
        b.extend(extra);
    }
    base
}

/// Native file or folder dialog; None when cancelled. The chosen path may then be opened.
#[tauri::command]
pub async fn pick_path(folder: bool, state: State<'_, AppState>) -> AppResult<Option<String>> {
    let picked = pick(folder).await;
    if let Some(p) = &picked {
        state.grant(std::path::Path::new(p));
    }
    Ok(picked)
}

async fn pick(folder: bool) -> Option<String> {
    let dialog = rfd::AsyncFileDialog::new().set_title(if folder { "Open a DICOM folder" } else { "Open a CT file" });
    let picked = if folder {
        dialog.pick_folder().await
    } else {
        dialog.add_filter("CT volume", &["nii", "gz", "dcm"]).add_filter("All files", &["*"]).pick_file().await
    };
    picked.map(|f| f.path().display().to_string())
}

/// Native folder dialog for a model directory; None when cancelled. The chosen folder may then
/// be set as the model.
#[tauri::command]
pub async fn pick_model_dir(state: State<'_, AppState>) -> AppResult<Option<String>> {
    let picked = rfd::AsyncFileDialog::new()
        .set_title("Choose a model folder (with model.json)")
        .pick_folder()
        .await
        .map(|f| f.path().display().to_string());
    if let Some(p) = &picked {
        state.grant(std::path::Path::new(p));
    }
    Ok(picked)
}

fn notice_file() -> Option<PathBuf> {
    state::data_dir().map(|d| d.join("research-use-notice-acknowledged"))
}

/// Has the research-use notice been acknowledged on this machine?
#[tauri::command]
pub async fn notice_status() -> bool {
    notice_file().map(|f| f.exists()).unwrap_or(false)
}

/// Record the acknowledgement (time, app version).
#[tauri::command]
pub async fn acknowledge_notice() -> AppResult<()> {
    let f = notice_file().ok_or_else(|| AppError::new(ErrorCode::Io, "no data folder on this system"))?;
    let io = |e: std::io::Error| AppError::new(ErrorCode::Io, format!("{}: {e}", f.display()));
    if let Some(dir) = f.parent() {
        radbridge_volume::atomic::create_private_dir_all(dir).map_err(io)?;
    }
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    radbridge_volume::atomic::write_private(&f, format!("acknowledged_unix={secs}\napp_version={}\n", env!("CARGO_PKG_VERSION")))
        .map_err(io)
}

/// The settings and the model they resolve to.
#[derive(Debug, Clone, Serialize, TS)]
pub struct SettingsView {
    pub model_dir: Option<String>,
    pub label_set: Option<String>,
    /// The model directory an analysis will use, and why (RADBRIDGE_MODEL, settings, demo model, …).
    pub resolved_model: Option<String>,
    pub resolved_from: String,
    pub model_ok: bool,
}

fn view(s: &Settings) -> SettingsView {
    let (dir, why) = state::resolve_model(s.model_dir.as_deref());
    SettingsView {
        model_dir: s.model_dir.clone(),
        label_set: s.label_set.clone(),
        model_ok: dir.as_ref().map(|d| d.join("model.json").is_file()).unwrap_or(false),
        resolved_model: dir.map(|d| d.display().to_string()),
        resolved_from: why.to_string(),
    }
}

#[tauri::command]
pub async fn get_settings(state: State<'_, AppState>) -> AppResult<SettingsView> {
    Ok(settings_view(&state))
}

fn settings_view(state: &AppState) -> SettingsView {
    view(&lock(&state.settings))
}

/// Change the model folder and/or the label set (empty string: back to the default).
#[tauri::command]
pub async fn set_settings(model_dir: Option<String>, label_set: Option<String>, state: State<'_, AppState>) -> AppResult<SettingsView> {
    if let Some(m) = model_dir.as_deref().filter(|m| !m.is_empty()) {
        // The page may switch back to the current model, or to a folder the user chose.
        let current = lock(&state.settings).model_dir.clone();
        if current.as_deref() != Some(m) && !state.is_granted(std::path::Path::new(m)) {
            return Err(AppError::new(ErrorCode::NotPermitted, format!("{m}: not used as the model (choose the folder with the dialog)")));
        }
    }
    let mut s = lock(&state.settings);
    if let Some(m) = model_dir {
        s.model_dir = Some(m).filter(|m| !m.is_empty());
    }
    if let Some(l) = label_set {
        s.label_set = Some(l).filter(|l| !l.is_empty());
    }
    state::save_settings(&s)?;
    let v = view(&s);
    drop(s);
    super::feedback::audit_event(
        &state,
        radbridge_store::AuditAction::SettingsChange,
        serde_json::json!({"model_dir": v.model_dir, "label_set": v.label_set}),
    );
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_open_from_the_library_adds_its_fields_to_the_audit_detail() {
        let base = json!({"path": "/d/ct.nii.gz", "series": 0, "format": "nifti"});
        assert_eq!(
            merged(base.clone(), json!({"study_id": 4, "from": "library"})),
            json!({"path": "/d/ct.nii.gz", "series": 0, "format": "nifti", "study_id": 4, "from": "library"})
        );
        assert_eq!(merged(base.clone(), json!({})), base);
        assert_eq!(merged(base.clone(), json!(null)), base);
    }
}
