//! Feedback-store commands: record runs, review findings, audit what the reader did. The store
//! (`radbridge_store`, SQLite in $RADBRIDGE_DATA_DIR or the app-data folder) is opened on
//! first use; when it cannot be opened the UI keeps its review state in memory and says so.

use serde::Serialize;
use serde_json::Value;
use tauri::State;

use super::state::resolve_model;
use super::state::AppState;
use radbridge_store::recalibrate::{self, Proposal, ThresholdsVersion};
use radbridge_store::{audit, AuditAction, EventId, ReviewAction, RunId, RunRecord, Store, Verdict};

/// Run `f` on the store, opening it first if needed.
pub fn with_store<T>(state: &AppState, f: impl FnOnce(&mut Store) -> radbridge_store::Result<T>) -> Result<T, String> {
    let mut guard = state.store.lock().unwrap();
    if guard.is_none() {
        *guard = Some(Store::open_default().map_err(|e| e.to_string())?);
    }
    f(guard.as_mut().unwrap()).map_err(|e| e.to_string())
}

/// Best-effort audit entry (a failure is logged, not shown).
pub fn audit_event(state: &AppState, action: AuditAction, detail: Value) {
    if let Err(e) = with_store(state, |s| s.audit(audit::os_user().as_deref(), action, &detail)) {
        tracing::warn!("audit {}: {e}", action.as_str());
    }
}

/// Record a finished analysis; returns its run id.
pub fn record_run(state: &AppState, diagnosis: &Value, study: &str, model_dir: &std::path::Path) -> Result<RunId, String> {
    let rec = RunRecord::from_diagnosis(diagnosis.clone(), Some(study.as_ref()), Some(model_dir)).map_err(|e| e.to_string())?;
    with_store(state, |s| s.record_run(&rec))
}

#[derive(Debug, Clone, Serialize)]
pub struct ReviewResult {
    pub event_id: EventId,
    pub verdicts: Vec<Verdict>,
}

/// Confirm, mark false positive (reason, note), add a missed finding, or undo an event.
#[tauri::command]
pub fn review_finding(run_id: RunId, label: String, action: ReviewAction, state: State<'_, AppState>) -> Result<ReviewResult, String> {
    let reviewer = audit::os_user();
    with_store(&state, |s| {
        let event_id = s.review(run_id, &label, &action, reviewer.as_deref())?;
        Ok(ReviewResult { event_id, verdicts: s.verdicts(run_id)? })
    })
}

/// The current verdicts of a run.
#[tauri::command]
pub fn run_verdicts(run_id: RunId, state: State<'_, AppState>) -> Result<Vec<Verdict>, String> {
    with_store(&state, |s| s.verdicts(run_id))
}

#[derive(Debug, Clone, Serialize)]
pub struct Recalibration {
    pub model_dir: String,
    /// Per-label proposals from the recorded verdicts (after an apply/revert: against the new file).
    pub proposals: Vec<Proposal>,
    pub applied: Option<ThresholdsVersion>,
    pub reverted: Option<ThresholdsVersion>,
}

/// Threshold recalibration from the reviewer's verdicts for the current model (the same as
/// `radbridge feedback recalibrate`): `action` = "propose" | "apply" | "revert". Apply and revert
/// are versioned in the store; the next analysis reloads the model with the new thresholds.
#[tauri::command]
pub fn recalibrate_thresholds(action: String, state: State<'_, AppState>) -> Result<Recalibration, String> {
    let setting = state.settings.lock().unwrap().model_dir.clone();
    let dir = resolve_model(setting.as_deref()).0.ok_or("no model folder: choose one in Settings")?;
    let actor = audit::os_user();
    let (applied, reverted) = match action.as_str() {
        "propose" => (None, None),
        "apply" => (with_store(&state, |s| recalibrate::apply(s, &dir, actor.as_deref()))?, None),
        "revert" => (None, Some(with_store(&state, |s| recalibrate::revert(s, &dir, actor.as_deref()))?)),
        other => return Err(format!("unknown recalibration action '{other}'")),
    };
    if applied.is_some() || reverted.is_some() {
        *state.engine.lock().unwrap() = None;
    }
    let proposals = with_store(&state, |s| recalibrate::propose(s, &dir))?;
    Ok(Recalibration { model_dir: dir.display().to_string(), proposals, applied, reverted })
}
