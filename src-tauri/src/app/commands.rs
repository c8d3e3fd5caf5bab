//! Tauri commands: IPC ⇄ core calls, nothing more.

use std::path::PathBuf;
use std::sync::Arc;

use tauri::State;

use super::state::{AppState, Displayed, VolumeSummary};
use crate::volume::{self, OpenOptions, Voxels};

#[tauri::command]
pub fn startup_path(state: State<'_, AppState>) -> Option<String> {
    state.initial.as_ref().map(|p| p.display().to_string())
}

/// Open a DICOM folder/file or NIfTI file. On error the previously loaded volume stays.
#[tauri::command]
pub async fn open_path(path: String, series: Option<String>, state: State<'_, AppState>) -> Result<VolumeSummary, String> {
    let p = PathBuf::from(&path);
    let loaded = tauri::async_runtime::spawn_blocking(move || {
        volume::open(&p, &OpenOptions { series, ..Default::default() })
    })
    .await
    .map_err(|e| format!("loading stopped unexpectedly: {e}"))?
    .map_err(|e| e.to_string())?;
    let source_orientation = loaded.volume.orientation();
    let vol = loaded.volume.into_canonical();
    let (lo, hi) = vol.voxels.range().unwrap_or((0.0, 0.0));
    let voxels: Vec<i16> = match vol.voxels {
        Voxels::I16(v) => v,
        Voxels::F32(v) => v.iter().map(|x| x.round().clamp(i16::MIN as f32, i16::MAX as f32) as i16).collect(),
    };
    let generation = {
        let mut g = state.generation.lock().unwrap();
        *g += 1;
        *g
    };
    let summary = VolumeSummary {
        path,
        format: vol.meta.format.clone(),
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
        warnings: vol.warnings,
        generation,
    };
    *state.displayed.lock().unwrap() = Some(Displayed { summary: summary.clone(), voxels: Arc::new(voxels) });
    Ok(summary)
}

/// Native file or folder dialog; None when cancelled.
#[tauri::command]
pub async fn pick_path(folder: bool) -> Option<String> {
    let dialog = rfd::AsyncFileDialog::new().set_title(if folder { "Open a DICOM folder" } else { "Open a CT file" });
    let picked = if folder {
        dialog.pick_folder().await
    } else {
        dialog.add_filter("CT volume", &["nii", "gz", "dcm"]).add_filter("All files", &["*"]).pick_file().await
    };
    picked.map(|f| f.path().display().to_string())
}

fn notice_file() -> Option<PathBuf> {
    dirs::data_dir().map(|d| d.join("radbridge").join("research-use-notice-acknowledged"))
}

/// Has the research-use notice been acknowledged on this machine?
#[tauri::command]
pub fn notice_status() -> bool {
    notice_file().map(|f| f.exists()).unwrap_or(false)
}

/// Record the acknowledgement (time, app version).
#[tauri::command]
pub fn acknowledge_notice() -> Result<(), String> {
    let f = notice_file().ok_or("no data folder on this system")?;
    std::fs::create_dir_all(f.parent().unwrap()).map_err(|e| format!("{}: {e}", f.display()))?;
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    std::fs::write(&f, format!("acknowledged_unix={secs}\napp_version={}\n", env!("CARGO_PKG_VERSION"))).map_err(|e| format!("{}: {e}", f.display()))
}
