//! Study-library commands: the worklist, reopening a study with its latest analysis restored
//! (no model run), text-to-study search and similar studies. The library itself, its review
//! status and the embedding index are the store's (`radbridge_store::library`); the ranking is
//! the model crate's (`radbridge_model::retrieval`). These commands only translate.

use std::collections::HashMap;

use serde::Serialize;
use tauri::{AppHandle, Manager};
use ts_rs::TS;

use super::analysis::{model_dir, with_engine, AnalysisResult};
use super::error::{AppError, AppResult, ErrorCode};
use super::feedback::with_store;
use super::state::{blocking, lock, AppState, VolumeSummary};
use radbridge_model::analysis::Diagnosis;
use radbridge_model::retrieval::{tensors_for, Hit, RetrievalError};
use radbridge_store::library::{LibraryIndex, LibraryStudy, ReviewStatus};
use radbridge_store::{RunRecord, Verdict};

/// How many studies a search answers when the page does not say.
const DEFAULT_TOP: usize = 20;

/// One study found by a search.
#[derive(Debug, Clone, Serialize, TS)]
pub struct SearchHit {
    /// The library's study id (what `library_open` takes).
    pub study_id: i64,
    /// Text search: the study's zero-shot score for the sentence (the score the finding would
    /// get in the app); similar studies: the cosine of the image embeddings.
    pub score: f32,
    pub path: String,
    pub description: Option<String>,
    pub study_date: Option<String>,
    pub status: ReviewStatus,
}

/// What a search answers: the ranked studies, and how many were not searched.
#[derive(Debug, Clone, Serialize, TS)]
pub struct SearchResult {
    pub hits: Vec<SearchHit>,
    /// Studies searched (analysed with the current model).
    pub searched: usize,
    /// Studies analysed with other models only: their embeddings do not compare with this
    /// model's (analyse them again with it to include them).
    pub skipped: usize,
    /// The model that ranked them.
    pub model_name: String,
}

/// A library study opened for viewing, with its latest analysis as recorded.
#[derive(Debug, Clone, Serialize, TS)]
pub struct OpenedStudy {
    pub volume: VolumeSummary,
    pub study: LibraryStudy,
    /// The latest run, restored from the store (None when the study was never analysed).
    pub result: Option<AnalysisResult>,
    /// That run's current verdicts.
    pub verdicts: Vec<Verdict>,
    /// Why the latest run could not be restored (a document an older version recorded), if
    /// so: the study is open without it.
    pub restore_error: Option<String>,
}

/// Every study of the library (oldest first), with its latest analysis and review status.
#[tauri::command]
pub async fn library_list(app: AppHandle) -> AppResult<Vec<LibraryStudy>> {
    blocking("the library", move || with_store(&app.state::<AppState>(), |s| s.library())).await
}

/// The series to reopen for a run: the one it analysed (by UID, else by index).
fn series_of(diagnosis: &Diagnosis) -> Option<String> {
    let src = diagnosis.source.as_ref()?;
    src.series_instance_uid.clone().filter(|u| !u.is_empty()).or_else(|| src.series_index.map(|i| i.to_string()))
}

/// The stored diagnosis of a run, typed (an unreadable one is a store error naming the run).
fn stored_diagnosis(rec: &RunRecord, run_id: i64) -> AppResult<Diagnosis> {
    serde_json::from_value(rec.diagnosis.clone())
        .map_err(|e| AppError::new(ErrorCode::Store, format!("run {run_id}: the stored diagnosis cannot be read back: {e}")))
}

/// Open a library study for viewing, as `open_path` opens a path, and restore its latest
/// analysis and verdicts from the store without running the model: the findings list, review
/// and report export then work on that run as after "Run analysis". The page names a study id,
/// never a path: only a path the library holds (one analysed or imported before) is opened.
#[tauri::command]
pub async fn library_open(study_id: i64, app: AppHandle) -> AppResult<OpenedStudy> {
    let a = app.clone();
    // Read the store first: a study it cannot give leaves the open one on screen.
    let (study, run) = blocking("the library", move || {
        with_store(&a.state::<AppState>(), |s| {
            let study = s.library_study(study_id)?;
            let run = match study.last_run {
                Some(id) => Some((id, s.run(id)?, s.verdicts(id)?)),
                None => None,
            };
            Ok((study, run))
        })
    })
    .await?;
    // The run's diagnosis, typed (one an older version recorded may not be).
    let run = run.map(|(id, rec, verdicts)| {
        let diagnosis = stored_diagnosis(&rec, id);
        (id, rec, verdicts, diagnosis)
    });
    let (path, series) = match &run {
        Some((_, rec, _, d)) if !rec.study_path.is_empty() => (rec.study_path.clone(), d.as_ref().ok().and_then(series_of)),
        _ => (study.path.clone(), None),
    };
    let state = app.state::<AppState>();
    let detail = serde_json::json!({"study_id": study_id, "from": "library", "run_id": study.last_run});
    let volume = super::commands::open_volume(&state, path.clone(), series, detail).await?;
    // The reader chose it in the library: its other series may be opened by path too.
    state.grant(std::path::Path::new(&path));
    let (run_id, rec, verdicts, diagnosis) = match run {
        None => return Ok(OpenedStudy { volume, study, result: None, verdicts: Vec::new(), restore_error: None }),
        Some((_, _, verdicts, Err(e))) => return Ok(OpenedStudy { volume, study, result: None, verdicts, restore_error: Some(e.message) }),
        Some((id, rec, verdicts, Ok(d))) => (id, rec, verdicts, d),
    };
    // As a finished analysis leaves it: the report exports this run.
    lock(&state.run).last = Some(diagnosis.clone());
    let model_dir = model_dir(&state).map(|(d, _)| d.display().to_string()).unwrap_or_default();
    let result = AnalysisResult {
        diagnosis,
        model_dir,
        label_set: rec.label_set.unwrap_or_default(),
        study_generation: volume.generation,
        run_id: Some(run_id),
        store_error: None,
    };
    Ok(OpenedStudy { volume, study, result: Some(result), verdicts, restore_error: None })
}

fn retrieval_error(e: RetrievalError) -> AppError {
    AppError::new(ErrorCode::Model, format!("the library's embeddings do not fit the model: {e}"))
}

/// The hits with what the worklist shows of each study.
fn hits(ranked: Vec<Hit>, index: &LibraryIndex, studies: &[LibraryStudy]) -> Vec<SearchHit> {
    let by_id: HashMap<i64, &LibraryStudy> = studies.iter().map(|s| (s.id, s)).collect();
    ranked
        .into_iter()
        .filter_map(|h| {
            let id: i64 = h.id.parse().ok()?;
            let s = by_id.get(&id);
            Some(SearchHit {
                study_id: id,
                score: h.score,
                path: s.map(|s| s.path.clone()).or_else(|| index.paths.get(h.row).cloned()).unwrap_or_default(),
                description: s.and_then(|s| s.description.clone()),
                study_date: s.and_then(|s| s.study_date.clone()),
                status: s.map_or(ReviewStatus::Analysed, |s| s.status),
            })
        })
        .collect()
}

/// The studies of the library ranked by a sentence: each study's zero-shot score for it as a
/// typed finding (from the stored image embeddings; no image is re-encoded), best first.
/// Only studies analysed with the current model are searched; the others are counted in
/// `skipped`.
#[tauri::command]
pub async fn library_search(text: String, top: Option<usize>, app: AppHandle) -> AppResult<SearchResult> {
    let text = text.trim().to_string();
    if text.is_empty() {
        return Err(AppError::new(ErrorCode::BadInput, "type a sentence first"));
    }
    blocking("the search", move || {
        let state = app.state::<AppState>();
        // The model embeds the sentence (engine locked), then the store gives the embeddings
        // (store locked): never both at once.
        let (query, checksum, model_name) = with_engine(
            &state,
            || {},
            |_, engine| {
                let q = engine.text_query(&text).map_err(|e| AppError::from_chain(&e, ErrorCode::Model))?;
                let m = &engine.package.manifest;
                Ok((q, m.weights_sha256.clone(), m.name.clone()))
            },
        )?;
        let names = tensors_for(query.rule()).0;
        let (index, studies) = with_store(&state, |s| Ok((s.embedding_index(&checksum, names)?, s.library()?)))?;
        if index.index.is_empty() {
            return Ok(SearchResult { hits: Vec::new(), searched: 0, skipped: index.skipped, model_name });
        }
        let scores = index.index.text_scores(&query).map_err(retrieval_error)?;
        let ranked = index.index.rank(&scores, Some(top.unwrap_or(DEFAULT_TOP)), None);
        Ok(SearchResult { hits: hits(ranked, &index, &studies), searched: index.index.len(), skipped: index.skipped, model_name })
    })
    .await
}

/// The studies most like `study_id`: cosine of its image embedding (BrgSA `v`, CT-CLIP
/// `latent`) with each other study's, by the current model; the study itself left out.
#[tauri::command]
pub async fn similar_studies(study_id: i64, top: Option<usize>, app: AppHandle) -> AppResult<SearchResult> {
    blocking("the search", move || {
        let state = app.state::<AppState>();
        // Only the model's manifest is needed (its checksum and rule), not its weights.
        let (dir, _) = model_dir(&state)?;
        let pkg = radbridge_model::package::ModelPackage::open(&dir)
            .map_err(|e| AppError::new(ErrorCode::NoModel, format!("{}: cannot read the model: {e}", dir.display())))?;
        let m = &pkg.manifest;
        let (names, like) = tensors_for(m.scoring);
        let (index, studies) = with_store(&state, |s| {
            s.library_study(study_id)?;
            Ok((s.embedding_index(&m.weights_sha256, names)?, s.library()?))
        })?;
        let id = study_id.to_string();
        if !index.index.ids.contains(&id) {
            return Err(AppError::new(
                ErrorCode::BadInput,
                format!("study {study_id} has no image embeddings from the model {} (run the analysis with it first)", m.name),
            ));
        }
        let scores = index.index.like_scores(&id, like).map_err(retrieval_error)?;
        let ranked = index.index.rank(&scores, Some(top.unwrap_or(DEFAULT_TOP)), Some(&id));
        Ok(SearchResult {
            hits: hits(ranked, &index, &studies),
            searched: index.index.len(),
            skipped: index.skipped,
            model_name: m.name.clone(),
        })
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use radbridge_model::retrieval::{EmbeddingIndex, EmbeddingMatrix};
    use radbridge_store::library::Origin;

    fn study(id: i64, status: ReviewStatus) -> LibraryStudy {
        LibraryStudy {
            id,
            path: format!("/data/s{id}"),
            origin: Origin::App,
            modality: Some("CT".into()),
            study_date: Some("20240102".into()),
            description: Some(format!("study {id}")),
            series: vec![],
            runs: 1,
            last_run: Some(id * 10),
            model_name: Some("m".into()),
            model_checksum: Some("abc".into()),
            analysed_at: None,
            flagged: 0,
            decided: 0,
            status,
        }
    }

    #[test]
    fn hits_carry_what_the_worklist_shows_and_skip_foreign_ids() {
        let mut v = EmbeddingMatrix::new(1);
        for x in [1.0, 2.0, 3.0] {
            assert!(v.push(&[x]));
        }
        let index = LibraryIndex {
            index: EmbeddingIndex {
                ids: vec!["1".into(), "2".into(), "x".into()],
                tensors: [("v".to_string(), v)].into(),
                numeric_ids: true,
            },
            paths: vec!["/data/s1".into(), "/index/s2".into(), "/index/x".into()],
            skipped: 0,
        };
        let ranked = index.index.rank(&[0.2, 0.9, 0.5], None, None);
        let out = hits(ranked, &index, &[study(1, ReviewStatus::Reviewed)]);
        // "x" is no library id; study 2 is not in the list given: its path comes from the index.
        assert_eq!(out.iter().map(|h| h.study_id).collect::<Vec<_>>(), [2, 1]);
        assert_eq!((out[0].path.as_str(), out[0].description.as_deref()), ("/index/s2", None));
        assert_eq!((out[1].status, out[1].description.as_deref(), out[1].score), (ReviewStatus::Reviewed, Some("study 1"), 0.2));
    }

    #[test]
    fn a_run_reopens_the_series_it_analysed() {
        let mut d: Diagnosis = serde_json::from_value(serde_json::json!({
            "disclaimer": "", "model": {"name": "m", "architecture": "brgsa", "weights_sha256": "abc", "synthetic": true, "scoring": "brgsa_mean_cosine"},
            "findings": [], "image_bank_top": [], "timings": [],
            "source": {"path": "/d", "format": "dicom", "series_index": 2}
        }))
        .unwrap();
        assert_eq!(series_of(&d).as_deref(), Some("2"));
        d.source.as_mut().unwrap().series_instance_uid = Some("1.2.3".into());
        assert_eq!(series_of(&d).as_deref(), Some("1.2.3"), "the UID names the series even if the folder changed");
        d.source = None;
        assert_eq!(series_of(&d), None);
    }

    #[test]
    fn an_unreadable_stored_diagnosis_is_a_store_error_naming_the_run() {
        let rec = RunRecord::from_diagnosis_json(
            serde_json::json!({"model": {"name": "m", "weights_sha256": "abc"}, "findings": []}),
            Some(std::path::Path::new("/d")),
            None,
        )
        .unwrap();
        let e = stored_diagnosis(&rec, 42).unwrap_err();
        assert_eq!(e.code, ErrorCode::Store);
        assert!(e.message.starts_with("run 42: the stored diagnosis cannot be read back"), "{}", e.message);
    }

    #[test]
    fn search_results_serialise_with_the_wire_names() {
        let r = SearchResult {
            hits: vec![SearchHit {
                study_id: 3,
                score: 0.5,
                path: "/d".into(),
                description: None,
                study_date: Some("20240102".into()),
                status: ReviewStatus::InReview,
            }],
            searched: 4,
            skipped: 1,
            model_name: "m".into(),
        };
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            serde_json::json!({"hits": [{"study_id": 3, "score": 0.5, "path": "/d", "description": null, "study_date": "20240102", "status": "in_review"}],
                               "searched": 4, "skipped": 1, "model_name": "m"})
        );
    }
}
