//! The audit log: who did what when, in the feedback database, append-only (triggers abort
//! UPDATE and DELETE), exportable as JSON lines.
//!
//! Entries are written by the store itself for `run` (record_run), `feedback` (review),
//! `export` (both exports) and `settings_change` (recalibration apply / revert); the app adds
//! `open_study` and `view` through [`super::Store::audit`].

use std::path::Path;

use rusqlite::{params, Connection};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{FeedbackError, Result, Store, NOW};

/// What was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    OpenStudy,
    Run,
    View,
    Feedback,
    Export,
    SettingsChange,
    /// A PACS search (server, keys; no credentials).
    PacsQuery,
    /// A PACS retrieve (server, study and series UIDs, where to).
    PacsRetrieve,
    /// Files sent to a PACS (server, SOP instances, accepted or refused).
    PacsSend,
}

impl AuditAction {
    pub const ALL: [AuditAction; 9] = [
        AuditAction::OpenStudy,
        AuditAction::Run,
        AuditAction::View,
        AuditAction::Feedback,
        AuditAction::Export,
        AuditAction::SettingsChange,
        AuditAction::PacsQuery,
        AuditAction::PacsRetrieve,
        AuditAction::PacsSend,
    ];
    /// open_study, run, view, feedback, export, settings_change, pacs_query, pacs_retrieve,
    /// pacs_send.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::OpenStudy => "open_study",
            AuditAction::Run => "run",
            AuditAction::View => "view",
            AuditAction::Feedback => "feedback",
            AuditAction::Export => "export",
            AuditAction::SettingsChange => "settings_change",
            AuditAction::PacsQuery => "pacs_query",
            AuditAction::PacsRetrieve => "pacs_retrieve",
            AuditAction::PacsSend => "pacs_send",
        }
    }
}

impl std::str::FromStr for AuditAction {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        AuditAction::ALL.into_iter().find(|a| a.as_str() == s).ok_or_else(|| format!("unknown audit action '{s}'"))
    }
}

/// One audit entry (one JSON line of the export).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditEntry {
    pub id: i64,
    /// UTC, RFC 3339 with milliseconds.
    pub at: String,
    /// Who: the reviewer name given, else the OS user.
    pub actor: Option<String>,
    pub action: AuditAction,
    pub detail: Value,
}

/// The OS user name ($USER / $USERNAME), the default actor.
pub fn os_user() -> Option<String> {
    std::env::var("USER").or_else(|_| std::env::var("USERNAME")).ok().filter(|u| !u.is_empty())
}

/// Insert an entry inside the caller's transaction.
pub(crate) fn insert(conn: &Connection, actor: Option<&str>, action: AuditAction, detail: &Value) -> rusqlite::Result<i64> {
    let actor = actor.map(str::to_string).or_else(os_user);
    conn.execute(
        &format!("INSERT INTO audit_log (created_at, actor, action, detail) VALUES ({NOW}, ?1, ?2, ?3)"),
        params![actor, action.as_str(), detail.to_string()],
    )?;
    Ok(conn.last_insert_rowid())
}

pub(crate) fn entries(store: &Store) -> Result<Vec<AuditEntry>> {
    let conn = store.connection();
    let mut st = store.sql(conn.prepare("SELECT id, created_at, actor, action, detail FROM audit_log ORDER BY id"))?;
    let rows = st
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
            ))
        })
        .and_then(|it| it.collect::<rusqlite::Result<Vec<_>>>());
    store
        .sql(rows)?
        .into_iter()
        .map(|(id, at, actor, action, detail)| {
            let action = action.parse().map_err(|e: String| FeedbackError::InvalidReview(format!("audit entry {id}: {e}")))?;
            Ok(AuditEntry { id, at, actor, action, detail: serde_json::from_str(&detail).unwrap_or(Value::String(detail)) })
        })
        .collect()
}

/// Write the whole audit log as JSON lines to `output` (and log the export itself, after the
/// lines are written, so the file holds every entry before it). Returns the number of lines.
pub fn export_jsonl(store: &mut Store, output: &Path, actor: Option<&str>) -> Result<usize> {
    let list = entries(store)?;
    let lines: Vec<String> = list.iter().map(|e| serde_json::to_string(e).unwrap_or_default()).collect();
    crate::files::write_lines(output, &lines)?;
    store.audit(
        actor,
        AuditAction::Export,
        &json!({"what": "audit", "lines": lines.len(), "output": output.file_name().map(|f| f.to_string_lossy().into_owned())}),
    )?;
    Ok(lines.len())
}
