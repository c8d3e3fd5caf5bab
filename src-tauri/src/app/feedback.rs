//! Feedback-store commands: record runs, review findings, audit what the reader did. The store
//! (`radbridge_store`, SQLite in $RADBRIDGE_DATA_DIR or the app-data folder) is opened on
//! first use; when it cannot be opened the UI keeps its review state in memory and says so.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tauri::State;
use ts_rs::TS;

use super::error::{AppError, AppResult, ErrorCode};
use super::state::{lock, resolve_model, AppState};
use radbridge_model::analysis::Diagnosis;
use radbridge_store::recalibrate::{self, Proposal, ThresholdsVersion};
use radbridge_store::{audit, AuditAction, EventId, ReviewAction, RunId, RunRecord, Store, Verdict};

/// Run `f` on the store, opening it first if needed.
pub fn with_store<T>(state: &AppState, f: impl FnOnce(&mut Store) -> radbridge_store::Result<T>) -> AppResult<T> {
    let mut guard = lock(&state.store);
    let store = match guard.as_mut() {
        Some(s) => s,
        None => guard.insert(Store::open_default()?),
    };
    Ok(f(store)?)
}

/// Best-effort audit entry (a failure is logged, not shown).
pub fn audit_event(state: &AppState, action: AuditAction, detail: Value) {
    if let Err(e) = with_store(state, |s| s.audit(audit::os_user().as_deref(), action, &detail)) {
        tracing::warn!("audit {}: {e}", action.as_str());
    }
}

/// Record a finished analysis; returns its run id.
pub fn record_run(
    state: &AppState,
    diagnosis: &Diagnosis,
    study: &str,
    model_dir: &std::path::Path,
    embeddings: &[(String, Vec<f32>)],
) -> AppResult<RunId> {
    let mut rec = RunRecord::from_diagnosis(diagnosis, Some(study.as_ref()), Some(model_dir))?;
    rec.embeddings = embeddings.to_vec();
    with_store(state, |s| s.record_run(&rec))
}

#[derive(Debug, Clone, Serialize, TS)]
pub struct ReviewResult {
    pub event_id: EventId,
    pub verdicts: Vec<Verdict>,
}

/// Confirm, mark false positive (reason, note), add a missed finding, or undo an event.
#[tauri::command]
pub async fn review_finding(run_id: RunId, label: String, action: ReviewAction, state: State<'_, AppState>) -> AppResult<ReviewResult> {
    let reviewer = audit::os_user();
    with_store(&state, |s| {
        let event_id = s.review(run_id, &label, &action, reviewer.as_deref())?;
        Ok(ReviewResult { event_id, verdicts: s.verdicts(run_id)? })
    })
}

/// The current verdicts of a run.
#[tauri::command]
pub async fn run_verdicts(run_id: RunId, state: State<'_, AppState>) -> AppResult<Vec<Verdict>> {
    with_store(&state, |s| s.verdicts(run_id))
}

#[derive(Debug, Clone, Serialize, TS)]
pub struct Recalibration {
    pub model_dir: String,
    /// Per-label proposals from the recorded verdicts (after an apply/revert: against the new file).
    pub proposals: Vec<Proposal>,
    pub applied: Option<ThresholdsVersion>,
    pub reverted: Option<ThresholdsVersion>,
}

/// What `recalibrate_thresholds` does (the same as `radbridge feedback recalibrate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum RecalibrationAction {
    /// Only compute the proposals.
    Propose,
    /// Write the proposed thresholds (versioned in the store).
    Apply,
    /// Restore the thresholds before the last apply.
    Revert,
}

/// Threshold recalibration from the reviewer's verdicts for the current model. Apply and revert
/// are versioned in the store; the next analysis reloads the model with the new thresholds.
#[tauri::command]
pub async fn recalibrate_thresholds(action: RecalibrationAction, state: State<'_, AppState>) -> AppResult<Recalibration> {
    let setting = lock(&state.settings).model_dir.clone();
    let dir =
        resolve_model(setting.as_deref()).0.ok_or_else(|| AppError::new(ErrorCode::NoModel, "no model folder: choose one in Settings"))?;
    let actor = audit::os_user();
    let (applied, reverted) = match action {
        RecalibrationAction::Propose => (None, None),
        RecalibrationAction::Apply => (with_store(&state, |s| recalibrate::apply(s, &dir, actor.as_deref()))?, None),
        RecalibrationAction::Revert => (None, Some(with_store(&state, |s| recalibrate::revert(s, &dir, actor.as_deref()))?)),
    };
    if applied.is_some() || reverted.is_some() {
        *state.engine() = None;
    }
    let proposals = with_store(&state, |s| recalibrate::propose(s, &dir))?;
    Ok(Recalibration { model_dir: dir.display().to_string(), proposals, applied, reverted })
}
