//! PACS commands: the named servers (settings; secrets kept apart by `radbridge_pacs::servers`),
//! search, retrieve into the data folder with progress and cancel (the study then joins the
//! library and opens like any library study), and sending the reviewed findings report (a
//! DICOM SR carrying the study's real identifiers, so the PACS files it into the patient's
//! study) after the user confirmed the patient, study and server. Every query, retrieve and
//! send is audited, without credentials. The page names servers by name and studies by UID;
//! it never names a path.

use std::path::PathBuf;

use serde::Serialize;
use tauri::{AppHandle, Emitter, Manager, State};
use ts_rs::TS;

use super::error::{AppError, AppResult, ErrorCode};
use super::feedback::{audit_event, with_store};
use super::state::{blocking, lock, AppState};
use radbridge_pacs::servers::{Registry, ServerEntry};
use radbridge_pacs::{PacsError, Progress, Server, StudyMatch, StudyQuery};
use radbridge_report::{self as report, Format, ReportOptions};
use radbridge_store::{audit, AuditAction};
use radbridge_volume::CancelToken;

/// A retrieved study, now in the library.
#[derive(Debug, Clone, Serialize, TS)]
pub struct PacsRetrieved {
    /// The library's study id (what `library_open` takes).
    pub study_id: i64,
    pub instances: u64,
    /// Of which fetched now (the rest were complete from an earlier, interrupted retrieve).
    pub fetched: u64,
}

/// What the confirmation before a send names: the patient, the study and the server.
#[derive(Debug, Clone, Serialize, TS)]
pub struct SendPreview {
    pub server: String,
    pub address: String,
    pub patient_name: Option<String>,
    pub patient_id: Option<String>,
    pub study_date: Option<String>,
    pub study_description: Option<String>,
    pub study_uid: Option<String>,
}

/// What the server did with the report.
#[derive(Debug, Clone, Serialize, TS)]
pub struct SendResult {
    pub sop_instance_uid: String,
    pub accepted: bool,
    pub detail: String,
}

fn pacs_error(e: PacsError) -> AppError {
    let code = match e.kind {
        radbridge_pacs::ErrorKind::Cancelled => ErrorCode::Cancelled,
        radbridge_pacs::ErrorKind::Dimse(radbridge_pacs::dimse::DimseError::Cancelled) => ErrorCode::Cancelled,
        _ => ErrorCode::Pacs,
    };
    AppError::new(code, e.to_string())
}

fn registry() -> AppResult<Registry> {
    Ok(Registry::new(&radbridge_store::default_dir()?))
}

fn server(name: &str) -> AppResult<Server> {
    registry()?.get(name).map_err(pacs_error)
}

/// The named servers (no secrets).
#[tauri::command]
pub async fn pacs_servers() -> AppResult<Vec<ServerEntry>> {
    blocking("the PACS settings", || registry()?.list().map_err(pacs_error)).await
}

/// Add or edit a server; `secret` (password or token) is kept in the owner-only secrets file,
/// None keeps the stored one.
#[tauri::command]
pub async fn pacs_save_server(entry: ServerEntry, secret: Option<String>, app: AppHandle) -> AppResult<ServerEntry> {
    let saved =
        blocking("the PACS settings", move || registry()?.put(entry, secret.as_deref().filter(|s| !s.is_empty())).map_err(pacs_error))
            .await?;
    let detail = serde_json::json!({"pacs_server": saved.name, "address": saved.address, "auth": saved.auth});
    audit_event(&app.state::<AppState>(), AuditAction::SettingsChange, detail);
    Ok(saved)
}

#[tauri::command]
pub async fn pacs_remove_server(name: String, app: AppHandle) -> AppResult<()> {
    let n = name.clone();
    let removed = blocking("the PACS settings", move || registry()?.remove(&n).map_err(pacs_error)).await?;
    if !removed {
        return Err(AppError::new(ErrorCode::BadInput, format!("no server named {name:?}")));
    }
    audit_event(&app.state::<AppState>(), AuditAction::SettingsChange, serde_json::json!({"pacs_server_removed": name}));
    Ok(())
}

/// Test the connection (C-ECHO, or a QIDO-RS query for nothing); the answer says what answered.
#[tauri::command]
pub async fn pacs_test_server(name: String) -> AppResult<String> {
    blocking("the connection test", move || {
        let s = server(&name)?;
        radbridge_pacs::echo(&s).map_err(pacs_error)?;
        Ok(format!("{} answers ({})", s.name, s.kind()))
    })
    .await
}

/// Studies matching `query` on server `name`, each with its series.
#[tauri::command]
pub async fn pacs_search(name: String, query: StudyQuery, app: AppHandle) -> AppResult<Vec<StudyMatch>> {
    blocking("the PACS search", move || {
        let s = server(&name)?;
        let found = radbridge_pacs::search(&s, &query);
        let mut detail = serde_json::json!({"server": s.name, "address": s.address(), "protocol": s.kind(), "query": query});
        match &found {
            Ok(v) => {
                detail["studies"] = v.len().into();
                detail["outcome"] = "ok".into();
            }
            Err(e) => detail["outcome"] = e.kind.to_string().into(),
        }
        audit_event(&app.state::<AppState>(), AuditAction::PacsQuery, detail);
        found.map_err(pacs_error)
    })
    .await
}

/// Where retrieved studies go: `<data folder>/pacs/<study uid>`.
fn retrieve_dir(study_uid: &str) -> AppResult<PathBuf> {
    Ok(radbridge_store::default_dir()?.join("pacs").join(study_uid))
}

/// Retrieve a study (or one series) from server `name` into the data folder, emitting
/// `pacs-progress` ([`Progress`]) after each instance; cancellable with `pacs_cancel`. The
/// study is then in the library: open it with `library_open(study_id)`.
#[tauri::command]
pub async fn pacs_retrieve(name: String, study_uid: String, series_uid: Option<String>, app: AppHandle) -> AppResult<PacsRetrieved> {
    let cancel = CancelToken::default();
    *lock(&app.state::<AppState>().pacs_cancel) = Some(cancel.clone());
    let a = app.clone();
    blocking("the retrieve", move || {
        let state = a.state::<AppState>();
        let s = server(&name)?;
        let output = retrieve_dir(&study_uid)?;
        let req = radbridge_pacs::RetrieveRequest { study_uid: study_uid.clone(), series_uid: series_uid.clone(), output: output.clone() };
        let emitter = a.clone();
        let mut progress = move |p: &Progress| {
            let _ = emitter.emit("pacs-progress", p.clone());
        };
        let result = radbridge_pacs::retrieve::retrieve(&s, &req, &mut progress, &cancel);
        let o = match result {
            Ok(o) => o,
            Err(e) => {
                let detail = serde_json::json!({"server": s.name, "address": s.address(), "study_uid": study_uid,
                                                "series_uid": series_uid, "outcome": e.kind.to_string()});
                audit_event(&state, AuditAction::PacsRetrieve, detail);
                return Err(pacs_error(e));
            }
        };
        let instances = o.series.iter().map(|x| x.instances).sum();
        let fetched = o.series.iter().map(|x| x.fetched).sum();
        let rec = radbridge_store::PacsRetrieval {
            server: s.name.clone(),
            address: s.address(),
            study_uid: study_uid.clone(),
            series_uids: o.series.iter().map(|x| x.series_uid.clone()).collect(),
            path: output.display().to_string(),
            instances,
            ..Default::default()
        };
        let study_id = with_store(&state, |st| st.record_pacs_retrieval(&rec, audit::os_user().as_deref()))?;
        Ok(PacsRetrieved { study_id, instances, fetched })
    })
    .await
}

/// Stop the retrieve in progress (it ends with an error whose code is `cancelled`; what was
/// complete stays, and a second retrieve fetches only the rest).
#[tauri::command]
pub fn pacs_cancel(state: State<'_, AppState>) {
    if let Some(c) = lock(&state.pacs_cancel).as_ref() {
        c.cancel();
    }
}

/// What a send of the current report to server `name` would name: the confirmation shows it.
#[tauri::command]
pub async fn pacs_send_preview(name: String, state: State<'_, AppState>) -> AppResult<SendPreview> {
    let diagnosis = lock(&state.run).last.clone().ok_or_else(|| AppError::new(ErrorCode::NoStudy, "run an analysis first"))?;
    let s = blocking("the PACS settings", move || server(&name)).await?;
    let src = diagnosis.source.unwrap_or_default();
    Ok(SendPreview {
        server: s.name.clone(),
        address: s.address(),
        patient_name: src.patient.name.clone(),
        patient_id: src.patient.id.clone(),
        study_date: src.study.date.clone(),
        study_description: src.study.description.clone(),
        study_uid: src.study_instance_uid.clone(),
    })
}

/// Send the reviewed findings report of the current analysis to server `name` as a DICOM SR
/// with the study's real identifiers (not de-identified: it goes back into the patient's
/// record, inside the hospital). The page asks the user to confirm first (`pacs_send_preview`).
#[tauri::command]
pub async fn pacs_send_report(
    name: String,
    run_id: Option<i64>,
    export_anyway: Option<bool>,
    app: AppHandle,
) -> AppResult<Vec<SendResult>> {
    let state = app.state::<AppState>();
    let diagnosis = lock(&state.run).last.clone().ok_or_else(|| AppError::new(ErrorCode::NoStudy, "run an analysis first"))?;
    if diagnosis.source.as_ref().and_then(|s| s.study_instance_uid.as_ref()).is_none() {
        return Err(AppError::new(ErrorCode::BadInput, "this study has no DICOM Study Instance UID: a PACS cannot file a report of it"));
    }
    let verdicts = match run_id {
        Some(id) => Some(with_store(&state, |s| s.verdicts(id))?),
        None => None,
    };
    let a = app.clone();
    blocking("the send", move || {
        let state = a.state::<AppState>();
        let s = server(&name)?;
        let dir = tempfile_dir()?;
        let file = dir.join("radbridge-report.dcm");
        let opts = ReportOptions {
            deidentify: false,
            export_anyway: export_anyway.unwrap_or(false),
            exported_by: audit::os_user(),
            run_id,
            ..Default::default()
        };
        report::export(&diagnosis, verdicts.as_deref(), Format::Sr, &file, &opts)?;
        let sent = radbridge_pacs::send::send(&s, std::slice::from_ref(&file));
        let _ = std::fs::remove_dir_all(&dir);
        let detail = match &sent {
            Ok(v) => serde_json::json!({"server": s.name, "address": s.address(), "run_id": run_id, "format": "sr",
                "files": v.iter().map(|o| serde_json::json!({"sop_instance_uid": o.sop_instance_uid, "accepted": o.accepted})).collect::<Vec<_>>()}),
            Err(e) => serde_json::json!({"server": s.name, "address": s.address(), "run_id": run_id, "outcome": e.kind.to_string()}),
        };
        audit_event(&state, AuditAction::PacsSend, detail);
        let sent = sent.map_err(pacs_error)?;
        Ok(sent.into_iter().map(|o| SendResult { sop_instance_uid: o.sop_instance_uid, accepted: o.accepted, detail: o.detail }).collect())
    })
    .await
}

/// A private temporary folder for the SR being sent.
fn tempfile_dir() -> AppResult<PathBuf> {
    let d = super::analysis::session_dir().join(format!("send-{}", std::process::id()));
    radbridge_volume::atomic::create_private_dir_all(&d).map_err(|e| AppError::new(ErrorCode::Io, format!("{}: {e}", d.display())))?;
    Ok(d)
}
