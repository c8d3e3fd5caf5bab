//! The desktop shell (feature `desktop`): a thin Tauri layer over the core. Commands only
//! translate between IPC and core calls; volumes travel to the UI as binary over the
//! `volume://` URI scheme, never as JSON arrays.

mod commands;
mod scheme;
mod state;

pub use state::AppState;

/// Start the app; `initial` is opened at start (a DICOM folder or a NIfTI file).
pub fn run(initial: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    tauri::Builder::default()
        .manage(AppState::new(initial))
        .register_asynchronous_uri_scheme_protocol("volume", scheme::handle)
        .invoke_handler(tauri::generate_handler![
            commands::startup_path,
            commands::open_path,
            commands::pick_path,
            commands::notice_status,
            commands::acknowledge_notice,
        ])
        .run(tauri::generate_context!())
        .map_err(|e| anyhow::anyhow!("the app window could not start: {e}"))
}
