//! The desktop shell: a thin Tauri layer over the core. Commands only
//! translate between IPC and core calls; volumes and heat maps travel to the UI as binary over
//! the `volume://` URI scheme, never as JSON arrays.

mod analysis;
#[cfg(test)]
mod bindings;
mod commands;
mod error;
mod feedback;
mod library;
mod measure;
mod pacs;
mod report;
mod scheme;
mod state;

pub use state::AppState;

/// Start the app; `initial` is opened at start (a DICOM folder or a NIfTI file).
pub fn run(initial: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    tauri::Builder::default()
        .manage(AppState::new(initial))
        .setup(|app| {
            analysis::remove_stale_session_dirs();
            // File → Open… / Open folder… and Help → Keyboard shortcuts: the UI acts on a `menu` event.
            use tauri::menu::{MenuBuilder, SubmenuBuilder};
            let file = SubmenuBuilder::new(app, "File")
                .text("open-file", "Open file…")
                .text("open-folder", "Open DICOM folder…")
                .separator()
                .quit()
                .build()?;
            let help = SubmenuBuilder::new(app, "Help").text("help", "Keyboard shortcuts").build()?;
            app.set_menu(MenuBuilder::new(app).items(&[&file, &help]).build()?)?;
            app.on_menu_event(|app, event| {
                use tauri::Emitter;
                let _ = app.emit("menu", event.id().0.clone());
            });
            Ok(())
        })
        .register_asynchronous_uri_scheme_protocol("volume", scheme::handle)
        .invoke_handler(tauri::generate_handler![
            commands::startup_path,
            commands::open_path,
            commands::pick_path,
            commands::pick_model_dir,
            commands::notice_status,
            commands::acknowledge_notice,
            commands::get_settings,
            commands::set_settings,
            analysis::run_analysis,
            analysis::score_finding,
            analysis::finding_heatmap,
            analysis::cancel_analysis,
            feedback::review_finding,
            feedback::run_verdicts,
            feedback::recalibrate_thresholds,
            report::export_report,
            library::library_list,
            library::library_open,
            library::library_search,
            library::similar_studies,
            measure::measurement_add,
            measure::measurements_list,
            measure::measurement_delete,
            pacs::pacs_servers,
            pacs::pacs_save_server,
            pacs::pacs_remove_server,
            pacs::pacs_test_server,
            pacs::pacs_search,
            pacs::pacs_retrieve,
            pacs::pacs_cancel,
            pacs::pacs_send_preview,
            pacs::pacs_send_report,
        ])
        .build(tauri::generate_context!())
        .map_err(|e| anyhow::anyhow!("the app window could not start: {e}"))?
        .run(|app, event| match event {
            tauri::RunEvent::Exit => {
                // Heat maps of this session live in the temporary folder only while it runs.
                let _ = std::fs::remove_dir_all(analysis::session_dir());
            }
            tauri::RunEvent::WindowEvent { event: tauri::WindowEvent::DragDrop(tauri::DragDropEvent::Drop { paths, .. }), .. } => {
                // A drop is the user's choice: the page may open it (and only it).
                if let Some(p) = paths.first() {
                    use tauri::{Emitter, Manager};
                    app.state::<AppState>().grant(p);
                    let _ = app.emit("study-dropped", p.display().to_string());
                }
            }
            _ => {}
        });
    Ok(())
}
