//! The study library: every study the app, `feedback record` or a batch import has seen, with
//! what a worklist shows (modality, date, description, series, the latest analysis, its review
//! status) and the image embeddings of every run, for text-to-study and similar-study search.
//!
//! Kept in the feedback database (schema version 2, see [`crate::schema`]): `study_info` is
//! the current view of each study (updated as runs are recorded), `run_embeddings` holds each
//! run's image embeddings as little-endian float32 blobs with the model's weights checksum and
//! the dimension, and `batch_imports` records which batch results were imported, so importing a
//! batch output twice adds nothing. The review status is derived, never stored: it follows the
//! review events and the report exports of the study's latest run.
//!
//! Identifiers: the library holds nothing the store did not already hold (paths, the
//! diagnosis JSON); [`LibraryStudy`] carries no patient name or ID.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use radbridge_model::retrieval::{EmbeddingIndex, EmbeddingMatrix};
use rusqlite::{params, OptionalExtension, Transaction};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::{derive_verdicts, FeedbackError, Result, RunFinding, RunId, RunRecord, Store, NOW};

/// Where a study entered the library.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// Opened and analysed in the app.
    #[default]
    App,
    /// Recorded from the command line (`feedback record`, `diagnose --record`).
    Cli,
    /// Imported from a batch output (`library import`).
    Batch,
    /// Retrieved from a PACS.
    Pacs,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::App => "app",
            Origin::Cli => "cli",
            Origin::Batch => "batch",
            Origin::Pacs => "pacs",
        }
    }
    fn parse(s: &str) -> Origin {
        match s {
            "cli" => Origin::Cli,
            "batch" => Origin::Batch,
            "pacs" => Origin::Pacs,
            _ => Origin::App,
        }
    }
}

/// Where a study stands in review, derived from its latest run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "snake_case")]
pub enum ReviewStatus {
    /// In the library without an analysis.
    New,
    /// Analysed; no verdict yet.
    Analysed,
    /// Some verdicts; a flagged finding still has none.
    InReview,
    /// Every flagged finding has a verdict.
    Reviewed,
    /// A findings report of the latest run was exported.
    Reported,
}

/// One series of a study as the library lists it (no UIDs: `key` is a salted digest).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
pub struct LibrarySeries {
    pub key: String,
    pub modality: Option<String>,
    pub description: Option<String>,
    /// Canonical grid size.
    pub dims: [usize; 3],
}

/// One row of the worklist.
#[derive(Debug, Clone, Serialize, Deserialize, ts_rs::TS)]
pub struct LibraryStudy {
    /// The library's study id (what `search --db` prints and `--like` takes).
    pub id: i64,
    /// Local path of the study.
    pub path: String,
    pub origin: Origin,
    pub modality: Option<String>,
    /// DICOM StudyDate (YYYYMMDD) when known.
    pub study_date: Option<String>,
    pub description: Option<String>,
    pub series: Vec<LibrarySeries>,
    /// Number of recorded analyses.
    pub runs: usize,
    /// The latest analysis.
    pub last_run: Option<RunId>,
    pub model_name: Option<String>,
    pub model_checksum: Option<String>,
    /// When the latest analysis was recorded (UTC, RFC 3339).
    pub analysed_at: Option<String>,
    /// Flagged findings of the latest analysis.
    pub flagged: usize,
    /// Flagged findings of the latest analysis that have a verdict.
    pub decided: usize,
    pub status: ReviewStatus,
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ImportSummary {
    /// Results added as new runs.
    pub added: usize,
    /// Results already in the library (imported before, unchanged).
    pub unchanged: usize,
    /// Library studies the results belong to.
    pub studies: usize,
}

/// One result of a batch to import: the batch's id for it and the run (with embeddings).
#[derive(Debug, Clone)]
pub struct BatchResult {
    pub id: String,
    pub run: RunRecord,
}

/// The embeddings of one model over the library's studies (latest run by that model per study).
#[derive(Debug, Clone, Default)]
pub struct LibraryIndex {
    /// Ids are the library study ids, as text.
    pub index: EmbeddingIndex,
    /// Each study's path, by row.
    pub paths: Vec<String>,
    /// Studies with analyses by other models only (not searched).
    pub skipped: usize,
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn f32_of_bytes(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

/// Store a run's embeddings (inside the run's transaction).
pub(crate) fn insert_embeddings(
    tx: &Transaction<'_>,
    run_id: RunId,
    model_checksum: &str,
    tensors: &[(String, Vec<f32>)],
) -> rusqlite::Result<()> {
    let mut st = tx.prepare("INSERT INTO run_embeddings (run_id, name, model_checksum, dim, data) VALUES (?1, ?2, ?3, ?4, ?5)")?;
    for (name, v) in tensors.iter().filter(|(_, v)| !v.is_empty()) {
        st.execute(params![run_id, name, model_checksum, v.len() as i64, f32_bytes(v)])?;
    }
    Ok(())
}

fn digest(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Bring the library's view of a study up to date with a newly recorded run (inside its
/// transaction): modality, date and description from the run's source when it has them, and
/// its series added to the study's list.
pub(crate) fn update_study_info(tx: &Transaction<'_>, study_key: &str, study_id: i64, run: &RunRecord) -> rusqlite::Result<()> {
    let src = &run.diagnosis["source"];
    let text = |v: &Value| v.as_str().map(str::trim).filter(|s| !s.is_empty()).map(str::to_string);
    let modality = text(&src["modality"]);
    let date = text(&src["study"]["date"]);
    let description = text(&src["study"]["description"]).or_else(|| text(&src["series_description"]));
    let old: Option<String> = tx.query_row("SELECT series FROM study_info WHERE study_id = ?1", [study_id], |r| r.get(0)).optional()?;
    let mut series: Vec<LibrarySeries> = old.and_then(|s| serde_json::from_str(&s).ok()).unwrap_or_default();
    if src.is_object() {
        // The series' identity: its UID where known, else the path that was opened.
        let what = text(&src["series_instance_uid"]).unwrap_or_else(|| run.study_path.clone());
        let key = digest(&[study_key.as_bytes(), what.as_bytes()])[..16].to_string();
        if !series.iter().any(|s| s.key == key) {
            let dims = src["dims"].as_array().map(|a| [0, 1, 2].map(|i| a.get(i).and_then(Value::as_u64).unwrap_or(0) as usize));
            series.push(LibrarySeries {
                key,
                modality: modality.clone(),
                description: text(&src["series_description"]),
                dims: dims.unwrap_or([0; 3]),
            });
        }
    }
    let series = serde_json::to_string(&series).unwrap_or_else(|_| "[]".into());
    tx.execute(
        &format!(
            "INSERT INTO study_info (study_id, origin, modality, study_date, description, series, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, {NOW})
             ON CONFLICT(study_id) DO UPDATE SET
                modality = coalesce(excluded.modality, modality),
                study_date = coalesce(excluded.study_date, study_date),
                description = coalesce(excluded.description, description),
                series = excluded.series,
                updated_at = excluded.updated_at"
        ),
        params![study_id, run.origin.as_str(), modality, date, description, series],
    )?;
    Ok(())
}

/// The content digest of a batch result: its scores and embeddings (a re-run with the same
/// model and prompts gives the same digest, so a second import adds nothing).
fn result_digest(r: &BatchResult) -> String {
    let findings = serde_json::to_vec(&r.run.findings).unwrap_or_default();
    let mut parts: Vec<Vec<u8>> = vec![r.run.model_checksum.as_bytes().to_vec(), r.run.study_path.as_bytes().to_vec(), findings];
    for (name, v) in &r.run.embeddings {
        parts.push(name.as_bytes().to_vec());
        parts.push(f32_bytes(v));
    }
    digest(&parts.iter().map(Vec::as_slice).collect::<Vec<_>>())
}

fn status(flagged: &[String], decided: usize, events: usize, reported: bool, has_run: bool) -> ReviewStatus {
    if !has_run {
        ReviewStatus::New
    } else if reported {
        ReviewStatus::Reported
    } else if events == 0 {
        ReviewStatus::Analysed
    } else if decided < flagged.len() {
        ReviewStatus::InReview
    } else {
        ReviewStatus::Reviewed
    }
}

impl Store {
    fn err(&self) -> impl Fn(rusqlite::Error) -> FeedbackError + '_ {
        move |source| FeedbackError::Sqlite { path: self.path.clone(), source }
    }

    /// Every study in the library, oldest first, with its latest analysis and review status.
    pub fn library(&self) -> Result<Vec<LibraryStudy>> {
        self.library_where(None)
    }

    /// One study of the library.
    pub fn library_study(&self, id: i64) -> Result<LibraryStudy> {
        self.library_where(Some(id))?.pop().ok_or_else(|| FeedbackError::InvalidReview(format!("no study {id} in the library")))
    }

    fn library_where(&self, only: Option<i64>) -> Result<Vec<LibraryStudy>> {
        let e = self.err();
        // Latest run per study, with its counts.
        let mut st = self
            .conn
            .prepare(
                "WITH last AS (SELECT study_id, max(id) AS run_id, count(*) AS runs FROM runs GROUP BY study_id)
                 SELECT s.id, s.path, i.origin, i.modality, i.study_date, i.description, i.series,
                        coalesce(last.runs, 0), last.run_id, r.model_name, r.model_checksum, r.created_at,
                        (SELECT count(*) FROM review_events ev WHERE ev.run_id = last.run_id)
                 FROM studies s
                 LEFT JOIN study_info i ON i.study_id = s.id
                 LEFT JOIN last ON last.study_id = s.id
                 LEFT JOIN runs r ON r.id = last.run_id
                 WHERE ?1 IS NULL OR s.id = ?1
                 ORDER BY s.id",
            )
            .map_err(&e)?;
        #[allow(clippy::type_complexity)]
        let rows: Vec<(LibraryStudy, usize)> = st
            .query_map([only], |r| {
                let series: Option<String> = r.get(6)?;
                Ok((
                    LibraryStudy {
                        id: r.get(0)?,
                        path: r.get(1)?,
                        origin: Origin::parse(&r.get::<_, Option<String>>(2)?.unwrap_or_default()),
                        modality: r.get(3)?,
                        study_date: r.get(4)?,
                        description: r.get(5)?,
                        series: series.and_then(|s| serde_json::from_str(&s).ok()).unwrap_or_default(),
                        runs: usize::try_from(r.get::<_, i64>(7)?).unwrap_or(0),
                        last_run: r.get(8)?,
                        model_name: r.get(9)?,
                        model_checksum: r.get(10)?,
                        analysed_at: r.get(11)?,
                        flagged: 0,
                        decided: 0,
                        status: ReviewStatus::New,
                    },
                    usize::try_from(r.get::<_, i64>(12)?).unwrap_or(0),
                ))
            })
            .and_then(|it| it.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(&e)?;
        let last_runs: HashSet<RunId> = rows.iter().filter_map(|(s, _)| s.last_run).collect();

        // Flagged findings of the latest runs.
        let mut flagged: HashMap<RunId, Vec<String>> = HashMap::new();
        let mut st = self
            .conn
            .prepare(
                "SELECT f.run_id, f.label FROM run_findings f
                 WHERE f.flagged = 1 AND f.run_id IN (SELECT max(id) FROM runs GROUP BY study_id) ORDER BY f.run_id, f.ordinal",
            )
            .map_err(&e)?;
        let found = st.query_map([], |r| Ok((r.get::<_, RunId>(0)?, r.get::<_, String>(1)?))).map_err(&e)?;
        for row in found {
            let (run, label) = row.map_err(&e)?;
            if last_runs.contains(&run) {
                flagged.entry(run).or_default().push(label);
            }
        }
        // Verdicts of the latest runs that have events.
        // (One query for all of them: a worklist of 10,000 studies is one round trip.)
        let mut events_by_run: HashMap<RunId, Vec<crate::ReviewEvent>> = HashMap::new();
        let filter = match only {
            Some(_) => "WHERE run_id IN (SELECT max(id) FROM runs WHERE study_id = ?1)",
            None => "WHERE run_id IN (SELECT max(id) FROM runs GROUP BY study_id) AND ?1 IS NULL",
        };
        for e in self.query_events(filter, [only])? {
            events_by_run.entry(e.run_id).or_default().push(e);
        }
        let mut decided: HashMap<RunId, usize> = HashMap::new();
        for (run, events) in events_by_run {
            let labels = flagged.get(&run).cloned().unwrap_or_default();
            let findings: Vec<RunFinding> = labels
                .iter()
                .map(|l| RunFinding { label: l.clone(), score: 0.0, threshold: None, flagged: Some(true), custom: false })
                .collect();
            let verdicts = derive_verdicts(&events, &findings);
            decided.insert(run, labels.iter().filter(|l| verdicts.iter().any(|v| &v.label == *l)).count());
        }
        // Runs whose findings report was exported.
        let mut st = self
            .conn
            .prepare("SELECT DISTINCT json_extract(detail, '$.run_id') FROM audit_log WHERE action = 'export' AND json_extract(detail, '$.run_id') IS NOT NULL")
            .map_err(&e)?;
        let reported: HashSet<RunId> = st
            .query_map([], |r| r.get::<_, Option<i64>>(0))
            .and_then(|it| it.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(&e)?
            .into_iter()
            .flatten()
            .collect();

        Ok(rows
            .into_iter()
            .map(|(mut s, events)| {
                let labels = s.last_run.and_then(|r| flagged.get(&r)).cloned().unwrap_or_default();
                let d = s.last_run.and_then(|r| decided.get(&r)).copied().unwrap_or(0);
                s.flagged = labels.len();
                s.decided = d;
                s.status = status(&labels, d, events, s.last_run.is_some_and(|r| reported.contains(&r)), s.last_run.is_some());
                s
            })
            .collect())
    }

    /// Import the results of a batch (`batch_dir` is its output folder) in one transaction:
    /// each result becomes a run of its study (found by StudyInstanceUID or path, added when
    /// new) with its embeddings; a result imported before, unchanged, is skipped. A failure
    /// changes nothing.
    pub fn import_batch(&mut self, batch_dir: &Path, results: &[BatchResult]) -> Result<ImportSummary> {
        let dir = std::fs::canonicalize(batch_dir).unwrap_or_else(|_| batch_dir.to_path_buf()).to_string_lossy().into_owned();
        let keys =
            results.iter().map(|r| self.study_key(r.run.study_uid.as_deref(), &r.run.study_path)).collect::<Result<Vec<String>>>()?;
        let db = self.path.clone();
        let e = |source| FeedbackError::Sqlite { path: db.clone(), source };
        let tx = self.tx()?;
        let mut summary = ImportSummary::default();
        let mut studies = HashSet::new();
        for (r, key) in results.iter().zip(&keys) {
            let sha = result_digest(r);
            let seen: bool = tx
                .query_row(
                    "SELECT EXISTS(SELECT 1 FROM batch_imports WHERE batch_dir = ?1 AND batch_id = ?2 AND content_sha256 = ?3)",
                    params![dir, r.id, sha],
                    |row| row.get(0),
                )
                .map_err(e)?;
            studies.insert(key.clone());
            if seen {
                summary.unchanged += 1;
                continue;
            }
            let mut run = r.run.clone();
            run.origin = Origin::Batch;
            let id = super::insert_run(&tx, &db, key, &run, Some(&json!({"imported_from": "batch"})))?;
            tx.execute(
                &format!(
                    "INSERT INTO batch_imports (run_id, batch_dir, batch_id, content_sha256, created_at) VALUES (?1, ?2, ?3, ?4, {NOW})"
                ),
                params![id, dir, r.id, sha],
            )
            .map_err(e)?;
            summary.added += 1;
        }
        tx.commit().map_err(e)?;
        summary.studies = studies.len();
        Ok(summary)
    }

    /// The embeddings `names` of the latest run of each study analysed by the model with
    /// `model_checksum`, as one index (ids: library study ids). Studies analysed only by other
    /// models are counted in `skipped`.
    pub fn embedding_index(&self, model_checksum: &str, names: &[&str]) -> Result<LibraryIndex> {
        let e = self.err();
        let mut st = self
            .conn
            .prepare(
                "SELECT r.study_id, r.id, e.name, e.dim, e.data FROM run_embeddings e JOIN runs r ON r.id = e.run_id
                 WHERE e.model_checksum = ?1 ORDER BY r.study_id, r.id",
            )
            .map_err(&e)?;
        // Latest run per study (rows come in run order within a study).
        let mut latest: Vec<(i64, RunId, HashMap<String, Vec<f32>>)> = Vec::new();
        let mut rows = st.query([model_checksum]).map_err(&e)?;
        while let Some(row) = rows.next().map_err(&e)? {
            let (study, run, name): (i64, RunId, String) = (row.get(0).map_err(&e)?, row.get(1).map_err(&e)?, row.get(2).map_err(&e)?);
            if !names.contains(&name.as_str()) {
                continue;
            }
            let data: Vec<u8> = row.get(4).map_err(&e)?;
            match latest.last_mut() {
                Some((s, r, m)) if *s == study && *r == run => {
                    m.insert(name, f32_of_bytes(&data));
                }
                Some((s, r, m)) if *s == study => {
                    *r = run;
                    m.clear();
                    m.insert(name, f32_of_bytes(&data));
                }
                _ => latest.push((study, run, HashMap::from([(name, f32_of_bytes(&data))]))),
            }
        }
        drop(rows);
        let paths: HashMap<i64, String> = {
            let mut st = self.conn.prepare("SELECT id, path FROM studies").map_err(&e)?;
            let it =
                st.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).and_then(|it| it.collect::<rusqlite::Result<Vec<_>>>()).map_err(&e)?;
            it.into_iter().collect()
        };
        let analysed: i64 = self.conn.query_row("SELECT count(DISTINCT study_id) FROM runs", [], |r| r.get(0)).map_err(&e)?;
        let mut out = LibraryIndex::default();
        out.index.numeric_ids = true;
        for name in names {
            let dim = latest.iter().find_map(|(_, _, m)| m.get(*name).map(Vec::len)).unwrap_or(0);
            out.index.tensors.insert(name.to_string(), EmbeddingMatrix::with_capacity(dim, latest.len()));
        }
        for (study, _, m) in latest {
            // Only studies with every tensor, of the common dimension.
            let ok = names.iter().all(|n| m.get(*n).is_some_and(|v| out.index.tensors.get(*n).is_some_and(|t| t.dim() == v.len())));
            if !ok {
                continue;
            }
            for n in names {
                if let (Some(t), Some(v)) = (out.index.tensors.get_mut(*n), m.get(*n)) {
                    t.push(v);
                }
            }
            out.index.ids.push(study.to_string());
            out.paths.push(paths.get(&study).cloned().unwrap_or_default());
        }
        out.skipped = usize::try_from(analysed).unwrap_or(0).saturating_sub(out.index.len());
        Ok(out)
    }

    /// The latest run of a library study (by any model when `model_checksum` is None).
    pub fn latest_run(&self, study_id: i64, model_checksum: Option<&str>) -> Result<Option<RunId>> {
        self.sql(self.conn.query_row(
            "SELECT max(id) FROM runs WHERE study_id = ?1 AND (?2 IS NULL OR model_checksum = ?2)",
            params![study_id, model_checksum],
            |r| r.get(0),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ReviewAction;

    fn tmp(name: &str) -> crate::testing::TempDir {
        crate::testing::TempDir::new(&format!("library-{name}"))
    }

    fn run(path: &str, uid: Option<&str>, flagged: &[&str], emb: &[f32]) -> RunRecord {
        let findings: Vec<Value> = ["Emphysema", "Cardiomegaly", "Pleural effusion"]
            .iter()
            .enumerate()
            .map(|(i, l)| json!({"label": l, "score": 0.1 * i as f64, "threshold": 0.15, "flagged": flagged.contains(l)}))
            .collect();
        let doc = json!({
            "model": {"name": "m", "weights_sha256": "abc"},
            "findings": findings,
            "source": {"path": path, "modality": "CT", "study": {"date": "20240102", "description": "CHEST"}, "series_description": "AX 1mm",
                       "study_instance_uid": uid, "series_instance_uid": "1.2.3", "dims": [4, 5, 6]},
        });
        let mut r = RunRecord::from_diagnosis_json(doc, None, None).unwrap();
        r.embeddings = vec![("v".into(), emb.to_vec()), ("v_hat".into(), emb.iter().map(|x| -x).collect())];
        r
    }

    #[test]
    fn runs_fill_the_library_and_the_status_follows_the_review() {
        let t = tmp("status");
        let mut s = Store::open(t.0.join("db.sqlite3")).unwrap();
        let a = s.record_run(&run("/x/a", Some("1.1"), &["Cardiomegaly", "Pleural effusion"], &[1.0, 0.0])).unwrap();
        s.record_run(&run("/x/b", None, &[], &[0.0, 1.0])).unwrap();
        let lib = s.library().unwrap();
        assert_eq!(lib.len(), 2);
        assert_eq!(
            (lib[0].modality.as_deref(), lib[0].study_date.as_deref(), lib[0].description.as_deref()),
            (Some("CT"), Some("20240102"), Some("CHEST"))
        );
        assert_eq!((lib[0].flagged, lib[0].status, lib[0].series.len(), lib[0].series[0].dims), (2, ReviewStatus::Analysed, 1, [4, 5, 6]));
        let ev = s.review(a, "Cardiomegaly", &ReviewAction::Confirm, None).unwrap();
        assert_eq!(s.library_study(lib[0].id).unwrap().status, ReviewStatus::InReview);
        s.review(a, "Pleural effusion", &ReviewAction::FalsePositive { reason: None, note: None }, None).unwrap();
        assert_eq!(s.library_study(lib[0].id).unwrap().status, ReviewStatus::Reviewed);
        s.review(a, "Cardiomegaly", &ReviewAction::Undo { event: ev }, None).unwrap();
        assert_eq!(s.library_study(lib[0].id).unwrap().status, ReviewStatus::InReview, "an undone verdict no longer counts");
        s.review(a, "Cardiomegaly", &ReviewAction::Confirm, None).unwrap();
        s.audit(None, crate::AuditAction::Export, &json!({"run_id": a, "format": "pdf"})).unwrap();
        assert_eq!(s.library_study(lib[0].id).unwrap().status, ReviewStatus::Reported);
        // A second run of the same study (same UID, other path) is the same library study.
        let a2 = s.record_run(&run("/y/a-again", Some("1.1"), &[], &[0.5, 0.5])).unwrap();
        let st = s.library_study(lib[0].id).unwrap();
        assert_eq!((st.runs, st.last_run, st.status), (2, Some(a2), ReviewStatus::Analysed));
        assert_eq!(s.library().unwrap().len(), 2);
    }

    #[test]
    fn a_version_1_database_is_migrated_with_nothing_lost() {
        let t = tmp("migrate");
        let db = t.0.join("db.sqlite3");
        {
            let c = rusqlite::Connection::open(&db).unwrap();
            c.execute_batch(crate::schema::MIGRATIONS[0]).unwrap();
            c.execute_batch(&format!("PRAGMA application_id = {}; PRAGMA user_version = 1;", crate::schema::APPLICATION_ID)).unwrap();
            c.execute_batch(
                r#"INSERT INTO studies (study_key, path, created_at) VALUES ('k1', '/old/study', '2026-01-01T00:00:00.000Z');
                   INSERT INTO runs (study_id, study_path, created_at, model_name, model_checksum, app_version, diagnosis)
                   VALUES (1, '/old/study', '2026-01-01T00:00:00.000Z', 'm', 'abc', '0.1.0',
                           '{"findings": [], "source": {"modality": "CT", "study": {"date": "20200101", "description": "OLD CHEST"}}}');
                   INSERT INTO run_findings (run_id, ordinal, label, score, threshold, flagged) VALUES (1, 0, 'Emphysema', 0.4, 0.3, 1);
                   INSERT INTO review_events (run_id, label, action, created_at) VALUES (1, 'Emphysema', 'confirm', '2026-01-01T00:00:01.000Z');"#,
            )
            .unwrap();
        }
        let s = Store::open(&db).unwrap();
        let v: i64 = s.connection().query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(v, crate::schema::latest_version());
        let lib = s.library().unwrap();
        assert_eq!(lib.len(), 1);
        let st = &lib[0];
        assert_eq!(
            (st.path.as_str(), st.modality.as_deref(), st.study_date.as_deref(), st.description.as_deref()),
            ("/old/study", Some("CT"), Some("20200101"), Some("OLD CHEST"))
        );
        assert_eq!((st.runs, st.flagged, st.decided, st.status), (1, 1, 1, ReviewStatus::Reviewed));
        assert_eq!(s.events(1).unwrap().len(), 1);
        // The new tables are append-only too.
        assert!(s.connection().execute("DELETE FROM run_embeddings", []).is_ok(), "nothing to delete is fine");
        drop(s);
        let mut s = Store::open(&db).unwrap();
        let r = s.record_run(&run("/x/new", None, &[], &[1.0, 2.0])).unwrap();
        assert!(s.connection().execute("DELETE FROM run_embeddings WHERE run_id = ?1", [r]).is_err());
    }

    #[test]
    fn the_index_holds_the_latest_run_per_study_of_one_model() {
        let t = tmp("index");
        let mut s = Store::open(t.0.join("db.sqlite3")).unwrap();
        s.record_run(&run("/x/a", None, &[], &[1.0, 0.0])).unwrap();
        s.record_run(&run("/x/a", None, &[], &[0.0, 2.0])).unwrap();
        s.record_run(&run("/x/b", None, &[], &[3.0, 0.0])).unwrap();
        let mut other = run("/x/c", None, &[], &[1.0, 1.0]);
        other.model_checksum = "other".into();
        s.record_run(&other).unwrap();
        let ix = s.embedding_index("abc", &["v", "v_hat"]).unwrap();
        assert_eq!((ix.index.len(), ix.skipped), (2, 1));
        assert_eq!(ix.index.tensors["v"].row(0).unwrap(), &[0.0, 2.0], "latest run of study a");
        assert_eq!(ix.index.tensors["v_hat"].row(1).unwrap(), &[-3.0, -0.0]);
        assert!(ix.paths[0].ends_with("/x/a"));
        assert_eq!(s.embedding_index("nope", &["v"]).unwrap().index.len(), 0);
    }

    #[test]
    fn a_batch_import_is_idempotent_and_atomic() {
        let t = tmp("import");
        let mut s = Store::open(t.0.join("db.sqlite3")).unwrap();
        let results = vec![
            BatchResult { id: "s1".into(), run: run("/x/1", None, &["Emphysema"], &[1.0, 0.0]) },
            BatchResult { id: "s2".into(), run: run("/x/2", None, &[], &[0.0, 1.0]) },
        ];
        let first = s.import_batch(&t.0, &results).unwrap();
        assert_eq!(first, ImportSummary { added: 2, unchanged: 0, studies: 2 });
        let again = s.import_batch(&t.0, &results).unwrap();
        assert_eq!(again, ImportSummary { added: 0, unchanged: 2, studies: 2 });
        assert!(s.library().unwrap().iter().all(|l| l.origin == Origin::Batch && l.runs == 1));
        // A changed result is a new run; a failing result rolls the whole import back.
        let mut changed = results.clone();
        changed[0].run.embeddings[0].1 = vec![0.9, 0.1];
        let mut bad = changed[1].clone();
        bad.id = "s3".into();
        bad.run.embeddings = vec![("v".into(), vec![1.0]), ("v".into(), vec![2.0])]; // duplicate tensor name
        bad.run.study_path = "/x/3".into();
        changed.push(bad);
        assert!(s.import_batch(&t.0, &changed).is_err());
        assert_eq!(s.library().unwrap().len(), 2, "nothing of the failed import is kept");
        assert_eq!(s.library().unwrap().iter().map(|l| l.runs).sum::<usize>(), 2);
        changed.pop();
        assert_eq!(s.import_batch(&t.0, &changed).unwrap(), ImportSummary { added: 1, unchanged: 1, studies: 2 });
    }
}
