//! The feedback store: what the reader said about each finding, kept locally in SQLite.
//!
//! One database file (`radbridge.sqlite3` in [`default_dir`]: `$RADBRIDGE_DATA_DIR`, else the
//! platform's app-data folder + `radbridge/`) holds
//!
//! - **studies**: a de-identified key (salted SHA-256 of the StudyInstanceUID, else of the
//!   canonical path; the salt is random per database and never leaves it) and the local path;
//! - **runs** ([`RunRecord`]): model name and weights checksum, bank checksum, app version, time,
//!   label set, per-finding score / threshold / flagged, and the full `diagnose --json` document
//!   (kept as JSON so a report can be rebuilt from the run);
//! - **review events** ([`ReviewEvent`], [`ReviewAction`]): confirm, false positive (with an
//!   optional [`Reason`] and note), missed finding (with text), undo of an earlier event — each
//!   timestamped and linked to its run. Events are append-only (SQLite triggers abort UPDATE and
//!   DELETE); the current [`Verdict`] per label is derived from them;
//! - **threshold versions** ([`recalibrate`]): every applied or reverted recalibration, with the
//!   previous `thresholds.json` content so a revert restores it byte for byte;
//! - **audit log** ([`audit`]): who did what when (open_study, run, view, feedback, export,
//!   settings_change), append-only, exportable as JSON lines.
//!
//! The database runs in WAL mode with `synchronous=FULL`, foreign keys on and a busy timeout, so
//! the app and the CLI can have it open at once and a committed event survives a crash. The
//! schema is versioned (`PRAGMA user_version`, one transaction per migration, see [`schema`]).
//! A file that is not a SQLite database, a SQLite database of another application, or one with a
//! newer schema is refused with an error naming the file; it is never overwritten.
//!
//! ```no_run
//! use radbridge_store::{Reason, ReviewAction, RunRecord, Store};
//! # fn main() -> Result<(), radbridge_store::FeedbackError> {
//! let mut store = Store::open_default()?;
//! let diagnosis: serde_json::Value = serde_json::from_str(&std::fs::read_to_string("d.json").unwrap()).unwrap();
//! let run = RunRecord::from_diagnosis_json(diagnosis, Some("/data/ct1".as_ref()), Some("models/demo".as_ref()))?;
//! let run_id = store.record_run(&run)?;
//! let ev = store.review(run_id, "Pleural effusion", &ReviewAction::Confirm, Some("dr_a"))?;
//! store.review(run_id, "Emphysema", &ReviewAction::FalsePositive { reason: Some(Reason::Artefact), note: None }, Some("dr_a"))?;
//! store.review(run_id, "Pleural effusion", &ReviewAction::Undo { event: ev }, Some("dr_a"))?;
//! let verdicts = store.verdicts(run_id)?;       // one per reviewed label
//! # let _ = verdicts; Ok(()) }
//! ```
//!
//! `Store` wraps one `rusqlite::Connection` (Send, not Sync): the app keeps it in a `Mutex`.

pub mod audit;
pub mod export;
mod files;
pub mod library;
pub mod measurements;
pub mod pacs;
pub mod recalibrate;
pub mod schema;
pub mod site_words;

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use radbridge_model::analysis::Diagnosis;

pub use audit::{AuditAction, AuditEntry};
pub use pacs::PacsRetrieval;
pub use recalibrate::{Proposal, ThresholdsVersion};

/// Database file name inside the data folder.
pub const DB_FILE: &str = "radbridge.sqlite3";

/// Row id of a run.
pub type RunId = i64;
/// Row id of a review event.
pub type EventId = i64;

/// Errors of the feedback store. Every variant that concerns a file names it.
#[derive(Debug, thiserror::Error)]
pub enum FeedbackError {
    #[error("{path}: not a Radbridge feedback database (not a SQLite file); it was left untouched")]
    NotADatabase { path: PathBuf },
    #[error("{path}: damaged feedback database ({msg}); it was left untouched — restore it from a backup")]
    Corrupt { path: PathBuf, msg: String },
    #[error(
        "{path}: a SQLite database of another application (application_id {application_id:#x}, {tables} tables); it was left untouched"
    )]
    ForeignDatabase { path: PathBuf, application_id: i64, tables: i64 },
    #[error("{path}: schema version {found} is newer than this Radbridge supports ({supported}); update Radbridge")]
    NewerSchema { path: PathBuf, found: i64, supported: i64 },
    #[error("{path}: schema version {found} is not a version Radbridge ever wrote; it was left untouched")]
    InvalidSchemaVersion { path: PathBuf, found: i64 },
    #[error("{path}: not the feedback schema of version {version} ({msg}); it was left untouched")]
    WrongSchema { path: PathBuf, version: i64, msg: String },
    #[error("{path}: {source}")]
    Sqlite { path: PathBuf, source: rusqlite::Error },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("no data folder: set RADBRIDGE_DATA_DIR")]
    NoDataDir,
    #[error("run {0} is not in the feedback database")]
    NoSuchRun(RunId),
    #[error("undo: {0}")]
    InvalidUndo(String),
    #[error("invalid review: {0}")]
    InvalidReview(String),
    #[error("invalid diagnosis JSON: {0}")]
    InvalidDiagnosis(String),
    #[error("{path}: {msg}")]
    Thresholds { path: PathBuf, msg: String },
    #[error("{path}: {msg}")]
    Model { path: PathBuf, msg: String },
}

pub type Result<T, E = FeedbackError> = std::result::Result<T, E>;

/// Why a flagged finding was wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    AnatomyMimic,
    Artefact,
    Device,
    PostOperative,
    Other,
}

impl Reason {
    pub const ALL: [Reason; 5] = [Reason::AnatomyMimic, Reason::Artefact, Reason::Device, Reason::PostOperative, Reason::Other];
    /// The stored / CLI spelling: anatomy_mimic, artefact, device, post_operative, other.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::AnatomyMimic => "anatomy_mimic",
            Reason::Artefact => "artefact",
            Reason::Device => "device",
            Reason::PostOperative => "post_operative",
            Reason::Other => "other",
        }
    }
}

impl std::str::FromStr for Reason {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Reason::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown reason '{s}' (anatomy_mimic, artefact, device, post_operative, other)"))
    }
}

/// What a reviewer did to one label of one run. Serialised with a tag:
/// `{"action":"confirm"}`, `{"action":"false_positive","reason":"artefact","note":"…"}`,
/// `{"action":"missed","text":"…"}`, `{"action":"undo","event":12}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum ReviewAction {
    /// The finding is present (a true positive when flagged).
    Confirm,
    /// The finding is absent (flagged wrongly).
    FalsePositive {
        #[serde(default)]
        reason: Option<Reason>,
        #[serde(default)]
        note: Option<String>,
    },
    /// The finding is present but the model missed it (or it is not among the scored labels);
    /// `text` describes it.
    Missed { text: String },
    /// Withdraws an earlier event of the same run and label.
    Undo { event: EventId },
}

impl ReviewAction {
    fn kind(&self) -> &'static str {
        match self {
            ReviewAction::Confirm => "confirm",
            ReviewAction::FalsePositive { .. } => "false_positive",
            ReviewAction::Missed { .. } => "missed",
            ReviewAction::Undo { .. } => "undo",
        }
    }
}

/// One stored review event.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReviewEvent {
    pub id: EventId,
    pub run_id: RunId,
    pub label: String,
    #[serde(flatten)]
    pub action: ReviewAction,
    pub reviewer: Option<String>,
    /// UTC, RFC 3339 with milliseconds (`2026-11-28T11:02:47.123Z`).
    pub at: String,
}

/// The current verdict on a label, derived from the run's events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "snake_case")]
pub enum VerdictKind {
    Confirmed,
    FalsePositive,
    Missed,
}

/// Current verdict for one reviewed label of a run: the latest event that is not an undo and
/// has not been undone. Labels without such an event have no verdict (they are unreviewed).
#[derive(Debug, Clone, Serialize, Deserialize, ts_rs::TS)]
pub struct Verdict {
    pub label: String,
    pub verdict: VerdictKind,
    pub reason: Option<Reason>,
    pub note: Option<String>,
    /// Missed: the reviewer's text.
    pub text: Option<String>,
    /// The event that decides it.
    pub event: EventId,
    pub reviewer: Option<String>,
    pub at: String,
    /// The run's score / threshold / flag for this label (None for a label the run did not score).
    pub score: Option<f32>,
    pub threshold: Option<f32>,
    pub flagged: Option<bool>,
}

/// One scored finding of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunFinding {
    pub label: String,
    pub score: f32,
    pub threshold: Option<f32>,
    pub flagged: Option<bool>,
    #[serde(default)]
    pub custom: bool,
}

/// One analysis run. For [`Store::record_run`] fill everything but `id`, `study_key` and
/// `created_at` (the store sets them); [`RunRecord::from_diagnosis`] does that from a
/// [`Diagnosis`], [`RunRecord::from_diagnosis_json`] from a `diagnose --json` document.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    pub id: Option<RunId>,
    /// De-identified study key (set by the store).
    pub study_key: Option<String>,
    /// Local path of the study (never exported).
    pub study_path: String,
    /// StudyInstanceUID if known: only used to derive the key, never stored in clear
    /// (None when read back).
    #[serde(default)]
    pub study_uid: Option<String>,
    /// UTC time of recording (set by the store).
    pub created_at: Option<String>,
    pub model_name: String,
    /// `weights_sha256` of the model.
    pub model_checksum: String,
    /// SHA-256 of the model's bank file (bank.json) when it has one.
    pub bank_checksum: Option<String>,
    pub app_version: String,
    /// Label-set name when known (e.g. "ct-rate", "all").
    pub label_set: Option<String>,
    pub findings: Vec<RunFinding>,
    /// The full `diagnose --json` document.
    pub diagnosis: Value,
    /// The run's image embeddings by tensor name (BrgSA `v`, `v_hat`; CT-CLIP `latent`), kept
    /// for the library's searches ([`library`]). Not serialised; empty when read back.
    #[serde(skip)]
    pub embeddings: Vec<(String, Vec<f32>)>,
    /// Where the run was made (the library's origin of a study seen first here).
    #[serde(skip)]
    pub origin: library::Origin,
}

fn f32_of(v: &Value) -> Option<f32> {
    v.as_f64().map(|x| x as f32)
}

/// Absolute when it exists here, so the app can reopen it from anywhere.
fn canonical_study_path(path: String) -> String {
    std::fs::canonicalize(&path).map(|p| p.to_string_lossy().into_owned()).unwrap_or(path)
}

/// The StudyInstanceUID of a `diagnose --json` document's `source`, under any of the names
/// older documents used.
fn study_uid_of(src: &Value) -> Option<String> {
    ["study_instance_uid", "study_uid", "StudyInstanceUID"]
        .iter()
        .find_map(|k| src[k].as_str().or_else(|| src["study"][k].as_str()))
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// The model in `model_dir`: its name, weights checksum and the SHA-256 of its bank file.
fn model_facts(model_dir: &Path) -> Result<(String, String, Option<String>)> {
    let pkg = radbridge_model::package::ModelPackage::open(model_dir)
        .map_err(|e| FeedbackError::Model { path: model_dir.to_path_buf(), msg: e.to_string() })?;
    let mut bank_checksum = None;
    if let Some(b) = &pkg.manifest.bank {
        let bp = pkg.path(b);
        if bp.exists() {
            bank_checksum = Some(
                radbridge_model::package::sha256_file(&bp).map_err(|e| FeedbackError::Model { path: bp.clone(), msg: e.to_string() })?,
            );
        }
    }
    Ok((pkg.manifest.name.clone(), pkg.manifest.weights_sha256.clone(), bank_checksum))
}

impl RunRecord {
    /// What the store needs from a diagnosis. `study_path` overrides `source.path`;
    /// `model_dir` (the model directory) supplies the bank checksum. The record keeps the
    /// diagnosis as `diagnose --json` writes it.
    pub fn from_diagnosis(diagnosis: &Diagnosis, study_path: Option<&Path>, model_dir: Option<&Path>) -> Result<RunRecord> {
        let doc = serde_json::to_value(diagnosis).map_err(|e| FeedbackError::InvalidDiagnosis(e.to_string()))?;
        Self::from_typed(diagnosis, doc, study_path, model_dir)
    }

    /// `diagnosis` is the document `doc` read as a [`Diagnosis`]; `doc` is kept whole.
    fn from_typed(diagnosis: &Diagnosis, doc: Value, study_path: Option<&Path>, model_dir: Option<&Path>) -> Result<RunRecord> {
        let src = diagnosis.source.as_ref();
        let path = match study_path {
            Some(p) => Some(p.to_string_lossy().into_owned()),
            None => src.map(|s| s.path.clone()).filter(|p| !p.is_empty()),
        };
        let study_path = path
            .ok_or_else(|| FeedbackError::InvalidDiagnosis("no study path (no source.path in the document; give it explicitly)".into()))?;
        let study_uid = src.and_then(|s| s.study_instance_uid.clone()).filter(|s| !s.is_empty()).or_else(|| study_uid_of(&doc["source"]));
        let bank_checksum = match model_dir {
            Some(dir) => model_facts(dir)?.2,
            None => None,
        };
        let findings = diagnosis
            .findings
            .iter()
            .map(|f| RunFinding {
                label: f.finding.label.clone(),
                score: f.finding.score,
                threshold: f.finding.threshold,
                flagged: f.finding.flagged,
                custom: f.finding.custom,
            })
            .collect();
        Ok(RunRecord {
            id: None,
            study_key: None,
            study_path: canonical_study_path(study_path),
            study_uid,
            created_at: None,
            model_name: diagnosis.model.name.clone(),
            model_checksum: diagnosis.model.weights_sha256.clone(),
            bank_checksum,
            app_version: env!("CARGO_PKG_VERSION").to_string(),
            label_set: doc["label_set"].as_str().map(str::to_string),
            findings,
            diagnosis: doc,
            embeddings: Vec::new(),
            origin: Default::default(),
        })
    }

    /// Read what the store needs from a `diagnose --json` document (`feedback record
    /// --diagnosis FILE`). A document that fits [`Diagnosis`] is read as one; older documents
    /// are read tolerantly by key. Unknown fields are kept in `diagnosis` and ignored.
    /// `study_path` overrides `source.path` of the document; `model_dir` (the model directory)
    /// supplies the bank checksum and, if an old document lacks them, the model name and
    /// weights checksum.
    pub fn from_diagnosis_json(diagnosis: Value, study_path: Option<&Path>, model_dir: Option<&Path>) -> Result<RunRecord> {
        match serde_json::from_value::<Diagnosis>(diagnosis.clone()) {
            Ok(typed) => Self::from_typed(&typed, diagnosis, study_path, model_dir),
            Err(_) => Self::from_old_json(diagnosis, study_path, model_dir),
        }
    }

    /// The tolerant reading of documents that do not fit [`Diagnosis`] (older versions).
    fn from_old_json(diagnosis: Value, study_path: Option<&Path>, model_dir: Option<&Path>) -> Result<RunRecord> {
        if !diagnosis.is_object() {
            return Err(FeedbackError::InvalidDiagnosis("not a JSON object".into()));
        }
        let src = &diagnosis["source"];
        let path = match study_path {
            Some(p) => Some(p.to_string_lossy().into_owned()),
            None => ["path", "study_path"].iter().find_map(|k| src[k].as_str()).or_else(|| src.as_str()).map(str::to_string),
        };
        let study_path = path
            .ok_or_else(|| FeedbackError::InvalidDiagnosis("no study path (no source.path in the document; give it explicitly)".into()))?;
        let study_path = canonical_study_path(study_path);
        let study_uid = study_uid_of(src);

        let mut model_name = diagnosis["model"]["name"].as_str().map(str::to_string);
        let mut model_checksum = diagnosis["model"]["weights_sha256"].as_str().map(str::to_string);
        let mut bank_checksum = None;
        if let Some(dir) = model_dir {
            let (name, checksum, bank) = model_facts(dir)?;
            model_name.get_or_insert(name);
            model_checksum.get_or_insert(checksum);
            bank_checksum = bank;
        }
        let findings = diagnosis["findings"]
            .as_array()
            .ok_or_else(|| FeedbackError::InvalidDiagnosis("no findings array".into()))?
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let f = if f["finding"].is_object() { &f["finding"] } else { f };
                let label = f["label"].as_str().ok_or_else(|| FeedbackError::InvalidDiagnosis(format!("findings[{i}] has no label")))?;
                let score =
                    f32_of(&f["score"]).ok_or_else(|| FeedbackError::InvalidDiagnosis(format!("findings[{i}] ({label}) has no score")))?;
                Ok(RunFinding {
                    label: label.to_string(),
                    score,
                    threshold: f32_of(&f["threshold"]),
                    flagged: f["flagged"].as_bool(),
                    custom: f["custom"].as_bool().unwrap_or(false),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let label_set = diagnosis["label_set"].as_str().map(str::to_string);
        Ok(RunRecord {
            id: None,
            study_key: None,
            study_path,
            study_uid,
            created_at: None,
            model_name: model_name.ok_or_else(|| FeedbackError::InvalidDiagnosis("no model.name".into()))?,
            model_checksum: model_checksum.ok_or_else(|| FeedbackError::InvalidDiagnosis("no model.weights_sha256".into()))?,
            bank_checksum,
            app_version: env!("CARGO_PKG_VERSION").to_string(),
            label_set,
            findings,
            diagnosis,
            embeddings: Vec::new(),
            origin: Default::default(),
        })
    }

    /// The finding scored for `label` (the first one if a label was scored twice).
    pub fn finding(&self, label: &str) -> Option<&RunFinding> {
        self.findings.iter().find(|f| f.label == label)
    }
}

/// A run in a listing (no Diagnosis JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunSummary {
    pub id: RunId,
    pub study_key: String,
    pub study_path: String,
    pub created_at: String,
    pub model_name: String,
    pub model_checksum: String,
    pub flagged: usize,
    pub events: usize,
}

/// The data folder: `$RADBRIDGE_DATA_DIR`, else `<platform data dir>/radbridge`
/// (Linux `~/.local/share/radbridge`, macOS `~/Library/Application Support/radbridge`,
/// Windows `%APPDATA%\radbridge`).
pub fn default_dir() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("RADBRIDGE_DATA_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d));
    }
    dirs::data_dir().map(|d| d.join("radbridge")).ok_or(FeedbackError::NoDataDir)
}

/// `default_dir()/radbridge.sqlite3`.
pub fn default_path() -> Result<PathBuf> {
    Ok(default_dir()?.join(DB_FILE))
}

/// Current UTC time as SQLite writes it in the tables (RFC 3339, milliseconds).
pub(crate) const NOW: &str = "strftime('%Y-%m-%dT%H:%M:%fZ','now')";

/// An open feedback database.
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Open (creating if absent, with its folder) the database at `path` and bring its schema
    /// up to date. Refuses, without writing, a file that is not ours.
    pub fn open(path: impl AsRef<Path>) -> Result<Store> {
        let path = path.as_ref().to_path_buf();
        let conn = schema::open(&path)?;
        Ok(Store { conn, path })
    }

    /// [`Store::open`] at [`default_path`].
    pub fn open_default() -> Result<Store> {
        Store::open(default_path()?)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The underlying connection (for tests and read-only queries).
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    pub(crate) fn sql<T>(&self, r: rusqlite::Result<T>) -> Result<T> {
        r.map_err(|source| FeedbackError::Sqlite { path: self.path.clone(), source })
    }

    pub(crate) fn tx(&mut self) -> Result<rusqlite::Transaction<'_>> {
        let path = self.path.clone();
        self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|source| FeedbackError::Sqlite { path, source })
    }

    fn salt(&self) -> Result<String> {
        self.sql(self.conn.query_row("SELECT value FROM meta WHERE key = 'salt'", [], |r| r.get(0)))
    }

    /// The de-identified key of a study: salted SHA-256 of its StudyInstanceUID when known, else
    /// of its canonical path (32 hex digits). Stable within this database only.
    pub fn study_key(&self, study_uid: Option<&str>, study_path: &str) -> Result<String> {
        let salt = self.salt()?;
        let what = match study_uid {
            Some(uid) => format!("uid:{uid}"),
            None => {
                let p =
                    std::fs::canonicalize(study_path).map(|p| p.to_string_lossy().into_owned()).unwrap_or_else(|_| study_path.to_string());
                format!("path:{p}")
            }
        };
        let mut h = Sha256::new();
        h.update(salt.as_bytes());
        h.update([0u8]);
        h.update(what.as_bytes());
        let d = h.finalize();
        Ok(d[..16].iter().map(|b| format!("{b:02x}")).collect())
    }

    /// Record a run (its study is added on first sight, the library's view of it updated, its
    /// embeddings kept); also writes a `run` audit entry. One transaction.
    pub fn record_run(&mut self, run: &RunRecord) -> Result<RunId> {
        let key = self.study_key(run.study_uid.as_deref(), &run.study_path)?;
        let path = self.path.clone();
        let tx = self.tx()?;
        let id = insert_run(&tx, &path, &key, run, None)?;
        tx.commit().map_err(|source| FeedbackError::Sqlite { path: path.clone(), source })?;
        tracing::info!(run = id, study = %key, "recorded run");
        Ok(id)
    }

    fn run_exists(&self, run_id: RunId) -> Result<bool> {
        self.sql(self.conn.query_row("SELECT EXISTS(SELECT 1 FROM runs WHERE id = ?1)", [run_id], |r| r.get(0)))
    }

    /// Append a review event (and a `feedback` audit entry) in one transaction; returns its id
    /// once committed. An undo must name an earlier, not yet undone, non-undo event of the same
    /// run and label.
    pub fn review(&mut self, run_id: RunId, label: &str, action: &ReviewAction, reviewer: Option<&str>) -> Result<EventId> {
        if label.trim().is_empty() {
            return Err(FeedbackError::InvalidReview("empty label".into()));
        }
        if let ReviewAction::Missed { text } = action {
            if text.trim().is_empty() {
                return Err(FeedbackError::InvalidReview("a missed finding needs a text".into()));
            }
        }
        if !self.run_exists(run_id)? {
            return Err(FeedbackError::NoSuchRun(run_id));
        }
        let path = self.path.clone();
        let e = |source| FeedbackError::Sqlite { path: path.clone(), source };
        let tx = self.tx()?;
        let (reason, note, text, undo_of) = match action {
            ReviewAction::Confirm => (None, None, None, None),
            ReviewAction::FalsePositive { reason, note } => (reason.map(|r| r.as_str()), note.clone(), None, None),
            ReviewAction::Missed { text } => (None, None, Some(text.clone()), None),
            ReviewAction::Undo { event } => {
                let target: Option<(RunId, String, String)> = tx
                    .query_row("SELECT run_id, label, action FROM review_events WHERE id = ?1", [event], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    })
                    .optional()
                    .map_err(e)?;
                match target {
                    None => return Err(FeedbackError::InvalidUndo(format!("event {event} does not exist"))),
                    Some((r, l, _)) if r != run_id || l != label => {
                        return Err(FeedbackError::InvalidUndo(format!("event {event} belongs to run {r}, label '{l}'")))
                    }
                    Some((_, _, a)) if a == "undo" => return Err(FeedbackError::InvalidUndo(format!("event {event} is itself an undo"))),
                    _ => {}
                }
                let undone: bool =
                    tx.query_row("SELECT EXISTS(SELECT 1 FROM review_events WHERE undo_of = ?1)", [event], |r| r.get(0)).map_err(e)?;
                if undone {
                    return Err(FeedbackError::InvalidUndo(format!("event {event} is already undone")));
                }
                (None, None, None, Some(*event))
            }
        };
        tx.execute(
            &format!("INSERT INTO review_events (run_id, label, action, reason, note, text, undo_of, reviewer, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, {NOW})"),
            params![run_id, label, action.kind(), reason, note, text, undo_of, reviewer],
        )
        .map_err(e)?;
        let id = tx.last_insert_rowid();
        let mut detail = serde_json::to_value(action).unwrap_or(Value::Null);
        detail["run_id"] = json!(run_id);
        detail["label"] = json!(label);
        detail["event_id"] = json!(id);
        audit::insert(&tx, reviewer, AuditAction::Feedback, &detail).map_err(e)?;
        tx.commit().map_err(e)?;
        Ok(id)
    }

    /// A recorded run with its Diagnosis JSON.
    pub fn run(&self, run_id: RunId) -> Result<RunRecord> {
        let row = self.sql(
            self.conn
                .query_row(
                    "SELECT s.study_key, r.study_path, r.created_at, r.model_name, r.model_checksum, r.bank_checksum, r.app_version, r.label_set, r.diagnosis
                     FROM runs r JOIN studies s ON s.id = r.study_id WHERE r.id = ?1",
                    [run_id],
                    |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, String>(3)?,
                            r.get::<_, String>(4)?,
                            r.get::<_, Option<String>>(5)?,
                            r.get::<_, String>(6)?,
                            r.get::<_, Option<String>>(7)?,
                            r.get::<_, String>(8)?,
                        ))
                    },
                )
                .optional(),
        )?;
        let (key, spath, at, mname, msum, bsum, ver, lset, diag) = row.ok_or(FeedbackError::NoSuchRun(run_id))?;
        let diagnosis = serde_json::from_str(&diag).map_err(|e| FeedbackError::InvalidDiagnosis(format!("run {run_id}: {e}")))?;
        Ok(RunRecord {
            id: Some(run_id),
            study_key: Some(key),
            study_path: spath,
            study_uid: None,
            created_at: Some(at),
            model_name: mname,
            model_checksum: msum,
            bank_checksum: bsum,
            app_version: ver,
            label_set: lset,
            findings: self.findings(run_id)?,
            diagnosis,
            embeddings: Vec::new(),
            origin: Default::default(),
        })
    }

    fn findings(&self, run_id: RunId) -> Result<Vec<RunFinding>> {
        let mut st = self.sql(
            self.conn.prepare("SELECT label, score, threshold, flagged, custom FROM run_findings WHERE run_id = ?1 ORDER BY ordinal"),
        )?;
        let rows = self.sql(
            st.query_map([run_id], |r| {
                Ok(RunFinding {
                    label: r.get(0)?,
                    score: r.get::<_, f64>(1)? as f32,
                    threshold: r.get::<_, Option<f64>>(2)?.map(|t| t as f32),
                    flagged: r.get(3)?,
                    custom: r.get(4)?,
                })
            })
            .and_then(|it| it.collect::<rusqlite::Result<Vec<_>>>()),
        )?;
        Ok(rows)
    }

    /// Runs, newest first; only those of one study path when `study_path` is given.
    pub fn list_runs(&self, study_path: Option<&str>) -> Result<Vec<RunSummary>> {
        let mut st = self.sql(self.conn.prepare(
            "SELECT r.id, s.study_key, r.study_path, r.created_at, r.model_name, r.model_checksum,
                    (SELECT COUNT(*) FROM run_findings f WHERE f.run_id = r.id AND f.flagged = 1),
                    (SELECT COUNT(*) FROM review_events e WHERE e.run_id = r.id)
             FROM runs r JOIN studies s ON s.id = r.study_id
             WHERE ?1 IS NULL OR r.study_path = ?1 ORDER BY r.id DESC",
        ))?;
        let rows = st
            .query_map([study_path], |r| {
                Ok(RunSummary {
                    id: r.get(0)?,
                    study_key: r.get(1)?,
                    study_path: r.get(2)?,
                    created_at: r.get(3)?,
                    model_name: r.get(4)?,
                    model_checksum: r.get(5)?,
                    flagged: usize::try_from(r.get::<_, i64>(6)?).unwrap_or(0),
                    events: usize::try_from(r.get::<_, i64>(7)?).unwrap_or(0),
                })
            })
            .and_then(|it| it.collect::<rusqlite::Result<Vec<_>>>());
        self.sql(rows)
    }

    /// All review events of a run, oldest first.
    pub fn events(&self, run_id: RunId) -> Result<Vec<ReviewEvent>> {
        if !self.run_exists(run_id)? {
            return Err(FeedbackError::NoSuchRun(run_id));
        }
        self.query_events("WHERE run_id = ?1", [run_id])
    }

    pub(crate) fn query_events<P: rusqlite::Params>(&self, filter: &str, p: P) -> Result<Vec<ReviewEvent>> {
        let mut st = self.sql(self.conn.prepare(&format!(
            "SELECT id, run_id, label, action, reason, note, text, undo_of, reviewer, created_at FROM review_events {filter} ORDER BY id"
        )))?;
        let rows = st.query_map(p, event_from_row).and_then(|it| it.collect::<rusqlite::Result<Vec<_>>>());
        self.sql(rows)
    }

    /// The current verdict of every reviewed label of a run (ordered as the run's findings, then
    /// other labels — missed findings — by first event).
    pub fn verdicts(&self, run_id: RunId) -> Result<Vec<Verdict>> {
        let events = self.events(run_id)?;
        let findings = self.findings(run_id)?;
        let mut out = derive_verdicts(&events, &findings);
        let pos = |l: &str| findings.iter().position(|f| f.label == l).unwrap_or(usize::MAX);
        out.sort_by_key(|v| (pos(&v.label), v.event));
        Ok(out)
    }

    /// Append an audit entry (who, what, details). `record_run`, `review`, the exports and
    /// recalibration write their own; the app adds open_study, view and settings_change.
    pub fn audit(&mut self, actor: Option<&str>, action: AuditAction, detail: &Value) -> Result<i64> {
        let path = self.path.clone();
        let e = |source| FeedbackError::Sqlite { path: path.clone(), source };
        let tx = self.tx()?;
        let id = audit::insert(&tx, actor, action, detail).map_err(e)?;
        tx.commit().map_err(e)?;
        Ok(id)
    }

    /// Audit entries, oldest first.
    pub fn audit_entries(&self) -> Result<Vec<AuditEntry>> {
        audit::entries(self)
    }

    /// `PRAGMA integrity_check` ("ok" when sound).
    pub fn integrity_check(&self) -> Result<String> {
        let mut st = self.sql(self.conn.prepare("PRAGMA integrity_check"))?;
        let rows = self.sql(st.query_map([], |r| r.get::<_, String>(0)).and_then(|it| it.collect::<rusqlite::Result<Vec<_>>>()))?;
        Ok(rows.join("; "))
    }
}

/// Insert a run inside `tx` (see [`Store::record_run`]); `audit_extra` is merged into its
/// `run` audit entry.
pub(crate) fn insert_run(
    tx: &rusqlite::Transaction<'_>,
    db: &Path,
    key: &str,
    run: &RunRecord,
    audit_extra: Option<&Value>,
) -> Result<RunId> {
    let diag = serde_json::to_string(&run.diagnosis).map_err(|e| FeedbackError::InvalidDiagnosis(e.to_string()))?;
    let e = |source| FeedbackError::Sqlite { path: db.to_path_buf(), source };
    tx.execute(
        &format!("INSERT OR IGNORE INTO studies (study_key, path, created_at) VALUES (?1, ?2, {NOW})"),
        params![key, run.study_path],
    )
    .map_err(e)?;
    let study_id: i64 = tx.query_row("SELECT id FROM studies WHERE study_key = ?1", [&key], |r| r.get(0)).map_err(e)?;
    tx.execute(
        &format!(
            "INSERT INTO runs (study_id, study_path, created_at, model_name, model_checksum, bank_checksum, app_version, label_set, diagnosis)
             VALUES (?1, ?2, {NOW}, ?3, ?4, ?5, ?6, ?7, ?8)"
        ),
        params![study_id, run.study_path, run.model_name, run.model_checksum, run.bank_checksum, run.app_version, run.label_set, diag],
    )
    .map_err(e)?;
    let id = tx.last_insert_rowid();
    {
        let mut st = tx
            .prepare(
                "INSERT INTO run_findings (run_id, ordinal, label, score, threshold, flagged, custom) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .map_err(e)?;
        for (i, f) in run.findings.iter().enumerate() {
            st.execute(params![id, i as i64, f.label, f.score as f64, f.threshold.map(|t| t as f64), f.flagged, f.custom]).map_err(e)?;
        }
    }
    library::insert_embeddings(tx, id, &run.model_checksum, &run.embeddings).map_err(e)?;
    library::update_study_info(tx, key, study_id, run).map_err(e)?;
    let flagged: Vec<&str> = run.findings.iter().filter(|f| f.flagged == Some(true)).map(|f| f.label.as_str()).collect();
    let mut detail = json!({"run_id": id, "study_key": key, "model": run.model_name, "model_checksum": run.model_checksum, "findings": run.findings.len(), "flagged": flagged});
    if let (Some(Value::Object(extra)), Value::Object(d)) = (audit_extra, &mut detail) {
        d.extend(extra.clone());
    }
    audit::insert(tx, None, AuditAction::Run, &detail).map_err(e)?;
    Ok(id)
}

fn event_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ReviewEvent> {
    let kind: String = r.get(3)?;
    let reason: Option<String> = r.get(4)?;
    let action = match kind.as_str() {
        "confirm" => ReviewAction::Confirm,
        "false_positive" => ReviewAction::FalsePositive { reason: reason.and_then(|s| s.parse().ok()), note: r.get(5)? },
        "missed" => ReviewAction::Missed { text: r.get::<_, Option<String>>(6)?.unwrap_or_default() },
        _ => ReviewAction::Undo { event: r.get::<_, Option<i64>>(7)?.unwrap_or(0) },
    };
    Ok(ReviewEvent { id: r.get(0)?, run_id: r.get(1)?, label: r.get(2)?, action, reviewer: r.get(8)?, at: r.get(9)? })
}

/// Current verdicts from a run's events (in id order): per label, the latest event that is not
/// an undo and was not undone. Pure; used by [`Store::verdicts`] and recalibration.
pub fn derive_verdicts(events: &[ReviewEvent], findings: &[RunFinding]) -> Vec<Verdict> {
    let undone: std::collections::HashSet<EventId> =
        events.iter().filter_map(|e| if let ReviewAction::Undo { event } = e.action { Some(event) } else { None }).collect();
    let mut latest: Vec<&ReviewEvent> = Vec::new();
    for e in events.iter().filter(|e| !matches!(e.action, ReviewAction::Undo { .. }) && !undone.contains(&e.id)) {
        match latest.iter_mut().find(|l| l.label == e.label) {
            Some(l) if l.id < e.id => *l = e,
            Some(_) => {}
            None => latest.push(e),
        }
    }
    latest
        .into_iter()
        .filter_map(|e| {
            let f = findings.iter().find(|f| f.label == e.label);
            let (verdict, reason, note, text) = match &e.action {
                ReviewAction::Confirm => (VerdictKind::Confirmed, None, None, None),
                ReviewAction::FalsePositive { reason, note } => (VerdictKind::FalsePositive, *reason, note.clone(), None),
                ReviewAction::Missed { text } => (VerdictKind::Missed, None, None, Some(text.clone())),
                ReviewAction::Undo { .. } => return None, // filtered out above
            };
            Some(Verdict {
                label: e.label.clone(),
                verdict,
                reason,
                note,
                text,
                event: e.id,
                reviewer: e.reviewer.clone(),
                at: e.at.clone(),
                score: f.map(|f| f.score),
                threshold: f.and_then(|f| f.threshold),
                flagged: f.and_then(|f| f.flagged),
            })
        })
        .collect()
}

/// What the crate's unit tests share.
#[cfg(test)]
pub(crate) mod testing {
    use std::path::PathBuf;

    /// A fresh folder under the system temp dir (removed at the end of the test); `name` must
    /// be unique among the crate's tests.
    pub struct TempDir(pub PathBuf);
    impl TempDir {
        pub fn new(name: &str) -> TempDir {
            let d = std::env::temp_dir().join(format!("radbridge-feedback-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(&d).unwrap();
            TempDir(d)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testing::TempDir;

    #[cfg(unix)]
    #[test]
    fn a_new_database_and_its_folder_are_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let t = TempDir::new("mode");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let db = t.0.join("data").join("radbridge.sqlite3");
        let mut store = Store::open(&db).unwrap();
        store.audit(Some("someone"), AuditAction::Export, &json!({})).unwrap();
        assert_eq!(mode(&db), 0o600);
        assert_eq!(mode(&t.0.join("data")), 0o700);
        // SQLite gives its journal files the database's mode.
        for side in ["radbridge.sqlite3-wal", "radbridge.sqlite3-shm", "radbridge.sqlite3-journal"] {
            let p = t.0.join("data").join(side);
            if p.exists() {
                assert_eq!(mode(&p), 0o600, "{side}");
            }
        }
        drop(store);
        // Opened again: still a database (the empty file it started as was a new one).
        assert!(Store::open(&db).is_ok());
        assert_eq!(mode(&db), 0o600);
    }

    fn diagnosis() -> Value {
        json!({
            "disclaimer": "x",
            "model": {"name": "tiny", "weights_sha256": "abc123"},
            "findings": [
                {"label": "Emphysema", "prompt": "There is emphysema", "score": 0.7, "threshold": 0.5, "flagged": true, "custom": false},
                {"label": "Pleural effusion", "prompt": "p", "score": 0.2, "threshold": 0.5, "flagged": false, "custom": false},
                {"finding": {"label": "Nodule", "score": 0.55, "threshold": null, "flagged": null}}
            ],
            "some_future_field": {"kept": true}
        })
    }

    fn typed_diagnosis() -> Diagnosis {
        use radbridge_model::analysis::{ModelInfo, ScoredFinding, StudySource};
        use radbridge_model::zeroshot::{Finding, ScoringRule};
        let finding = |label: &str, score: f32, flagged: Option<bool>, custom: bool| ScoredFinding {
            finding: Finding {
                label: label.into(),
                prompt: format!("There is {label}"),
                score,
                threshold: flagged.map(|_| 0.5),
                flagged,
                custom,
            },
            bank: None,
            heatmap: None,
            peak: None,
        };
        Diagnosis {
            disclaimer: "x".into(),
            model: ModelInfo {
                name: "tiny".into(),
                architecture: radbridge_model::checkpoint::Arch::Brgsa,
                weights_sha256: "abc123".into(),
                synthetic: true,
                scoring: ScoringRule::BrgsaMeanCosine,
                device: "cpu".into(),
                notice: None,
            },
            findings: vec![finding("Emphysema", 0.7, Some(true), false), finding("a typed one", 0.25, None, true)],
            image_bank_top: vec![],
            timings: vec![("score".into(), 0.5)],
            source: Some(StudySource {
                path: "/data/ct9".into(),
                format: radbridge_volume::SourceFormat::Nifti,
                study_instance_uid: Some("1.2.3".into()),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn a_typed_diagnosis_and_its_json_make_the_same_record() {
        let d = typed_diagnosis();
        let r = RunRecord::from_diagnosis(&d, None, None).unwrap();
        assert_eq!(r.study_path, "/data/ct9");
        assert_eq!(r.study_uid.as_deref(), Some("1.2.3"));
        assert_eq!((r.model_name.as_str(), r.model_checksum.as_str()), ("tiny", "abc123"));
        assert_eq!(
            r.findings,
            vec![
                RunFinding { label: "Emphysema".into(), score: 0.7, threshold: Some(0.5), flagged: Some(true), custom: false },
                RunFinding { label: "a typed one".into(), score: 0.25, threshold: None, flagged: None, custom: true },
            ]
        );
        assert_eq!(r.diagnosis, serde_json::to_value(&d).unwrap(), "the record keeps the diagnose --json document");
        // The same document read from a file (it fits Diagnosis), with a label set the CLI added.
        let mut doc = serde_json::to_value(&d).unwrap();
        doc["label_set"] = json!("ct-rate");
        let j = RunRecord::from_diagnosis_json(doc.clone(), Some(Path::new("/elsewhere")), None).unwrap();
        assert_eq!(j.findings, r.findings);
        assert_eq!(j.study_uid, r.study_uid);
        assert_eq!(j.study_path, "/elsewhere");
        assert_eq!(j.label_set.as_deref(), Some("ct-rate"));
        assert_eq!(j.diagnosis, doc, "unknown fields are kept");
        // No path anywhere: refused, naming what is missing.
        let mut nosrc = d.clone();
        nosrc.source = None;
        let e = RunRecord::from_diagnosis(&nosrc, None, None).unwrap_err();
        assert!(e.to_string().contains("no study path"), "{e}");
    }

    fn record(store: &mut Store, path: &str) -> RunId {
        let r = RunRecord::from_diagnosis_json(diagnosis(), Some(Path::new(path)), None).unwrap();
        store.record_run(&r).unwrap()
    }

    #[test]
    fn record_review_and_derive_verdicts() {
        let t = TempDir::new("verdicts");
        let mut s = Store::open(t.0.join("sub/db.sqlite3")).unwrap();
        let run = record(&mut s, "/data/ct1");
        let back = s.run(run).unwrap();
        assert_eq!(back.findings.len(), 3);
        assert_eq!(back.findings[2], RunFinding { label: "Nodule".into(), score: 0.55, threshold: None, flagged: None, custom: false });
        assert_eq!(back.diagnosis, diagnosis(), "the full document is kept");
        assert_eq!(back.study_key.as_deref().map(str::len), Some(32));
        assert_eq!(back.model_checksum, "abc123");

        let e1 = s.review(run, "Emphysema", &ReviewAction::Confirm, Some("a")).unwrap();
        let e2 = s
            .review(
                run,
                "Emphysema",
                &ReviewAction::FalsePositive { reason: Some(Reason::Artefact), note: Some("streak".into()) },
                Some("b"),
            )
            .unwrap();
        let _ = s.review(run, "Rib fracture", &ReviewAction::Missed { text: "left 7th rib".into() }, None).unwrap();
        let v = s.verdicts(run).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(
            (v[0].label.as_str(), v[0].verdict, v[0].reason, v[0].event),
            ("Emphysema", VerdictKind::FalsePositive, Some(Reason::Artefact), e2)
        );
        assert_eq!(v[0].score, Some(0.7));
        assert_eq!((v[1].verdict, v[1].text.as_deref(), v[1].score), (VerdictKind::Missed, Some("left 7th rib"), None));
        // Undo the false positive: the confirm is current again; undo the confirm: unreviewed.
        s.review(run, "Emphysema", &ReviewAction::Undo { event: e2 }, Some("b")).unwrap();
        assert_eq!(s.verdicts(run).unwrap()[0].verdict, VerdictKind::Confirmed);
        s.review(run, "Emphysema", &ReviewAction::Undo { event: e1 }, Some("a")).unwrap();
        assert!(s.verdicts(run).unwrap().iter().all(|v| v.label != "Emphysema"));
        assert_eq!(s.events(run).unwrap().len(), 5);
    }

    #[test]
    fn bad_reviews_are_refused() {
        let t = TempDir::new("bad");
        let mut s = Store::open(t.0.join("db.sqlite3")).unwrap();
        let run = record(&mut s, "/data/ct1");
        let other = record(&mut s, "/data/ct2");
        let e = s.review(run, "Emphysema", &ReviewAction::Confirm, None).unwrap();
        assert!(matches!(s.review(999, "Emphysema", &ReviewAction::Confirm, None), Err(FeedbackError::NoSuchRun(999))));
        assert!(
            matches!(s.review(run, "Nodule", &ReviewAction::Undo { event: e }, None), Err(FeedbackError::InvalidUndo(_))),
            "other label"
        );
        assert!(
            matches!(s.review(other, "Emphysema", &ReviewAction::Undo { event: e }, None), Err(FeedbackError::InvalidUndo(_))),
            "other run"
        );
        assert!(matches!(s.review(run, "Emphysema", &ReviewAction::Undo { event: 12345 }, None), Err(FeedbackError::InvalidUndo(_))));
        let u = s.review(run, "Emphysema", &ReviewAction::Undo { event: e }, None).unwrap();
        assert!(matches!(s.review(run, "Emphysema", &ReviewAction::Undo { event: e }, None), Err(FeedbackError::InvalidUndo(_))), "twice");
        assert!(
            matches!(s.review(run, "Emphysema", &ReviewAction::Undo { event: u }, None), Err(FeedbackError::InvalidUndo(_))),
            "undo of undo"
        );
        assert!(matches!(s.review(run, "X", &ReviewAction::Missed { text: " ".into() }, None), Err(FeedbackError::InvalidReview(_))));
        assert!(matches!(s.review(run, "", &ReviewAction::Confirm, None), Err(FeedbackError::InvalidReview(_))));
    }

    #[test]
    fn append_only_tables_reject_update_and_delete() {
        let t = TempDir::new("append");
        let mut s = Store::open(t.0.join("db.sqlite3")).unwrap();
        let run = record(&mut s, "/data/ct1");
        s.review(run, "Emphysema", &ReviewAction::Confirm, None).unwrap();
        for sql in [
            "UPDATE review_events SET action = 'false_positive'",
            "DELETE FROM review_events",
            "UPDATE audit_log SET actor = 'x'",
            "DELETE FROM audit_log",
            "DELETE FROM runs",
            "UPDATE run_findings SET score = 0",
            "DELETE FROM studies",
        ] {
            let err = s.connection().execute(sql, []).unwrap_err();
            assert!(err.to_string().contains("append-only"), "{sql}: {err}");
        }
        assert_eq!(s.events(run).unwrap().len(), 1);
    }

    #[test]
    fn study_key_is_salted_and_stable() {
        let t = TempDir::new("key");
        let s1 = Store::open(t.0.join("a.sqlite3")).unwrap();
        let s2 = Store::open(t.0.join("b.sqlite3")).unwrap();
        let k = s1.study_key(Some("1.2.3"), "/x").unwrap();
        assert_eq!(k, s1.study_key(Some("1.2.3"), "/y").unwrap(), "the UID decides when known");
        assert_ne!(k, s2.study_key(Some("1.2.3"), "/x").unwrap(), "another database, another salt");
        assert_ne!(k, s1.study_key(None, "/x").unwrap());
        assert!(!k.contains("1.2.3"));
    }

    #[test]
    fn foreign_and_broken_files_are_refused_untouched() {
        let t = TempDir::new("foreign");
        let text = t.0.join("notes.sqlite3");
        std::fs::write(&text, b"these are my notes, not a database\n").unwrap();
        let err = Store::open(&text).unwrap_err();
        assert!(matches!(err, FeedbackError::NotADatabase { .. }) && err.to_string().contains("notes.sqlite3"), "{err}");
        assert_eq!(std::fs::read(&text).unwrap(), b"these are my notes, not a database\n");

        let other = t.0.join("other.sqlite3");
        {
            let c = Connection::open(&other).unwrap();
            c.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);").unwrap();
        }
        let before = std::fs::read(&other).unwrap();
        let err = Store::open(&other).unwrap_err();
        assert!(matches!(err, FeedbackError::ForeignDatabase { .. }), "{err}");
        assert_eq!(std::fs::read(&other).unwrap(), before);

        let newer = t.0.join("newer.sqlite3");
        drop(Store::open(&newer).unwrap());
        Connection::open(&newer).unwrap().execute_batch("PRAGMA user_version = 99;").unwrap();
        assert!(matches!(Store::open(&newer).unwrap_err(), FeedbackError::NewerSchema { found: 99, .. }));
    }

    #[test]
    fn hostile_schema_versions_and_schemas_are_typed_errors_naming_the_file() {
        let t = TempDir::new("hostile");
        // Ours, with a negative user_version (SQLite keeps a signed 32-bit value).
        let neg = t.0.join("negative.sqlite3");
        drop(Store::open(&neg).unwrap());
        Connection::open(&neg).unwrap().execute_batch("PRAGMA user_version = -5;").unwrap();
        let err = Store::open(&neg).unwrap_err();
        assert!(matches!(err, FeedbackError::InvalidSchemaVersion { found: -5, .. }), "{err:?}");
        assert!(err.to_string().contains("negative.sqlite3"), "{err}");
        Connection::open(&neg).unwrap().execute_batch(&format!("PRAGMA user_version = {};", i32::MIN)).unwrap();
        assert!(matches!(Store::open(&neg).unwrap_err(), FeedbackError::InvalidSchemaVersion { .. }));
        Connection::open(&neg).unwrap().execute_batch(&format!("PRAGMA user_version = {};", i32::MAX)).unwrap();
        assert!(matches!(Store::open(&neg).unwrap_err(), FeedbackError::NewerSchema { .. }));

        // Our application_id and version, but not our tables.
        let wrong = t.0.join("wrong.sqlite3");
        Connection::open(&wrong)
            .unwrap()
            .execute_batch(&format!("PRAGMA application_id = {}; PRAGMA user_version = 1; CREATE TABLE meta (x);", schema::APPLICATION_ID))
            .unwrap();
        let err = Store::open(&wrong).unwrap_err();
        assert!(matches!(err, FeedbackError::WrongSchema { version: 1, .. }), "{err:?}");
        assert!(err.to_string().contains("wrong.sqlite3") && err.to_string().contains("meta"), "{err}");
        // A table with a column missing.
        let cut = t.0.join("cut.sqlite3");
        drop(Store::open(&cut).unwrap());
        Connection::open(&cut).unwrap().execute_batch("DROP TABLE audit_log; CREATE TABLE audit_log (id INTEGER PRIMARY KEY);").unwrap();
        assert!(matches!(Store::open(&cut).unwrap_err(), FeedbackError::WrongSchema { .. }));

        // Garbage after a valid SQLite magic, and random bytes.
        let garbage = t.0.join("garbage.sqlite3");
        let mut bytes = b"SQLite format 3\0".to_vec();
        bytes.extend((0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8));
        std::fs::write(&garbage, &bytes).unwrap();
        let err = Store::open(&garbage).unwrap_err();
        assert!(err.to_string().contains("garbage.sqlite3"), "{err}");
        assert_eq!(std::fs::read(&garbage).unwrap(), bytes, "left untouched");
        let noise = t.0.join("noise.sqlite3");
        std::fs::write(&noise, (0..1000u32).map(|i| (i * 7) as u8).collect::<Vec<_>>()).unwrap();
        assert!(matches!(Store::open(&noise).unwrap_err(), FeedbackError::NotADatabase { .. }));
    }

    #[test]
    fn reopen_keeps_everything_and_two_openers_share_the_file() {
        let t = TempDir::new("reopen");
        let p = t.0.join("db.sqlite3");
        let mut a = Store::open(&p).unwrap();
        let mut b = Store::open(&p).unwrap();
        let run = record(&mut a, "/data/ct1");
        let e1 = b.review(run, "Emphysema", &ReviewAction::Confirm, None).unwrap();
        let e2 = a.review(run, "Nodule", &ReviewAction::Confirm, None).unwrap();
        drop((a, b));
        let s = Store::open(&p).unwrap();
        assert_eq!(s.events(run).unwrap().iter().map(|e| e.id).collect::<Vec<_>>(), vec![e1, e2]);
        let mode: String = s.connection().query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
        let fk: i64 = s.connection().query_row("PRAGMA foreign_keys", [], |r| r.get(0)).unwrap();
        assert_eq!(fk, 1);
        assert_eq!(s.integrity_check().unwrap(), "ok");
        let acts: Vec<AuditAction> = s.audit_entries().unwrap().iter().map(|e| e.action).collect();
        assert_eq!(acts, vec![AuditAction::Run, AuditAction::Feedback, AuditAction::Feedback]);
    }
}
