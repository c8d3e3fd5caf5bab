//! De-identified export of the review events with their scores, as JSON lines, for retraining
//! and knowledge-bank updates.
//!
//! Each line: `study_key`, `run_id`, `event_id`, `at`, `label`, `action` (+ `reason`, `note`,
//! `text`, `undo_of` as applicable), `undone` (a later undo withdrew it), `current` (it is the
//! label's current verdict), `score`, `threshold`, `flagged`, `custom`, `model_name`,
//! `model_checksum`, `bank_checksum`, `app_version`, `run_at`. No paths, no reviewer names, no
//! DICOM patient fields: the study is named only by its salted key. (Free text typed by the
//! reviewer — `note`, `text` — is exported as typed.)

use std::collections::{HashMap, HashSet};
use std::path::Path;

use serde::Serialize;
use serde_json::json;

use super::{audit::AuditAction, derive_verdicts, EventId, Reason, Result, ReviewAction, RunId, Store};

/// One exported line.
#[derive(Debug, Clone, Serialize)]
pub struct ExportedEvent {
    pub study_key: String,
    pub run_id: RunId,
    pub event_id: EventId,
    pub at: String,
    pub label: String,
    pub action: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub undo_of: Option<EventId>,
    pub undone: bool,
    pub current: bool,
    pub score: Option<f32>,
    pub threshold: Option<f32>,
    pub flagged: Option<bool>,
    pub custom: bool,
    pub model_name: String,
    pub model_checksum: String,
    pub bank_checksum: Option<String>,
    pub app_version: String,
    pub run_at: String,
}

/// All review events, de-identified, oldest first.
pub fn review_events(store: &Store) -> Result<Vec<ExportedEvent>> {
    let events = store.query_events("", [])?;
    let mut runs = HashMap::new();
    let mut out = Vec::with_capacity(events.len());
    let undone: HashSet<EventId> =
        events.iter().filter_map(|e| if let ReviewAction::Undo { event } = e.action { Some(event) } else { None }).collect();
    let mut current: HashSet<EventId> = HashSet::new();
    let mut by_run: HashMap<RunId, Vec<_>> = HashMap::new();
    for e in &events {
        by_run.entry(e.run_id).or_default().push(e.clone());
    }
    for (run_id, evs) in &by_run {
        let run = store.run(*run_id)?;
        current.extend(derive_verdicts(evs, &run.findings).iter().map(|v| v.event));
        runs.insert(*run_id, run);
    }
    for e in events {
        let Some(run) = runs.get(&e.run_id) else { continue };
        let f = run.finding(&e.label);
        let (action, reason, note, text, undo_of) = match &e.action {
            ReviewAction::Confirm => ("confirm", None, None, None, None),
            ReviewAction::FalsePositive { reason, note } => ("false_positive", *reason, note.clone(), None, None),
            ReviewAction::Missed { text } => ("missed", None, None, Some(text.clone()), None),
            ReviewAction::Undo { event } => ("undo", None, None, None, Some(*event)),
        };
        out.push(ExportedEvent {
            study_key: run.study_key.clone().unwrap_or_default(),
            run_id: e.run_id,
            event_id: e.id,
            at: e.at.clone(),
            label: e.label.clone(),
            action,
            reason,
            note,
            text,
            undo_of,
            undone: undone.contains(&e.id),
            current: current.contains(&e.id),
            score: f.map(|f| f.score),
            threshold: f.and_then(|f| f.threshold),
            flagged: f.and_then(|f| f.flagged),
            custom: f.map(|f| f.custom).unwrap_or(false),
            model_name: run.model_name.clone(),
            model_checksum: run.model_checksum.clone(),
            bank_checksum: run.bank_checksum.clone(),
            app_version: run.app_version.clone(),
            run_at: run.created_at.clone().unwrap_or_default(),
        });
    }
    Ok(out)
}

/// Write the de-identified review events to `output` as JSON lines (and an `export` audit
/// entry). Returns the number of lines.
pub fn export_jsonl(store: &mut Store, output: &Path, actor: Option<&str>) -> Result<usize> {
    let events = review_events(store)?;
    let lines: Vec<String> = events.iter().map(|e| serde_json::to_string(e).unwrap_or_default()).collect();
    crate::files::write_lines(output, &lines)?;
    store.audit(
        actor,
        AuditAction::Export,
        &json!({"what": "review_events", "lines": lines.len(), "output": output.file_name().map(|f| f.to_string_lossy().into_owned())}),
    )?;
    Ok(lines.len())
}
