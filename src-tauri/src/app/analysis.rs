//! Analysis commands: run the zero-shot diagnosis on the loaded volume on a blocking thread,
//! with progress as `analysis-progress` events and cancellation through the run's CancelToken.
//! Heat maps are made on demand, one finding at a time (all 33 on a 512² CT take ~25 s and
//! ~1 GB), and served as binary by the `volume://` scheme.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;
use tauri::{AppHandle, Emitter, Manager, State};
use ts_rs::TS;

use super::error::{chain_message, AppError, AppResult, ErrorCode};
use super::state::{self, lock, AppState, Run};
use radbridge_model::analysis::{DiagnoseOptions, Diagnosis, Engine};
use radbridge_volume::{CancelToken, Volume};

/// The stages of an analysis are the engine's (one enum, its serde names are the events' strings).
pub use radbridge_model::analysis::Stage;

/// Which command an `analysis-progress` event belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// `run_analysis`
    Analysis,
    /// `score_finding`
    Finding,
    /// `finding_heatmap`
    Heatmap,
}

/// Payload of the `analysis-progress` event.
#[derive(Debug, Clone, Serialize, TS)]
pub struct Progress {
    pub stage: Stage,
    pub fraction: f32,
    pub task: Task,
}

/// What the UI gets back from `run_analysis` / `score_finding`.
#[derive(Debug, Clone, Serialize, TS)]
pub struct AnalysisResult {
    /// The diagnosis. It goes over IPC as the JSON value the store keeps (`serde_json::Value`
    /// of it: f32 numbers widened to f64), exactly as before it was typed here.
    #[serde(serialize_with = "as_json_value")]
    pub diagnosis: Diagnosis,
    pub model_dir: String,
    pub label_set: String,
    pub study_generation: u64,
    /// The run's id in the feedback store (None when the store could not record it).
    pub run_id: Option<i64>,
    pub store_error: Option<String>,
}

fn as_json_value<S: serde::Serializer>(d: &Diagnosis, s: S) -> Result<S::Ok, S::Error> {
    serde_json::to_value(d).map_err(serde::ser::Error::custom)?.serialize(s)
}

/// A heat map ready to fetch from `volume://localhost/heatmap/<id>`.
#[derive(Debug, Clone, Serialize, TS)]
pub struct HeatmapRef {
    pub id: usize,
    pub label: String,
}

const TOP_K: usize = 5;

/// Forget the previous study's run (its heat maps no longer fit) and stop what is running.
pub fn reset_run(state: &AppState) {
    let mut run = lock(&state.run);
    run.cancel.cancel();
    if let Some(d) = run.dir.take() {
        let _ = std::fs::remove_dir_all(d);
    }
    *run = Run::default();
}

/// This process's folder for heat maps (removed when the app exits).
pub fn session_dir() -> PathBuf {
    std::env::temp_dir().join(format!("radbridge-{}", std::process::id()))
}

/// Remove the heat-map folders of earlier sessions that ended without cleaning up (killed).
pub fn remove_stale_session_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix("radbridge-").and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        let alive = pid == std::process::id() || (cfg!(target_os = "linux") && std::path::Path::new(&format!("/proc/{pid}")).exists());
        if !alive && cfg!(target_os = "linux") {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

fn run_dir(state: &AppState, generation: u64) -> PathBuf {
    let mut run = lock(&state.run);
    match &run.dir {
        Some(d) if run.generation == generation => d.clone(),
        _ => {
            if let Some(d) = run.dir.take() {
                let _ = std::fs::remove_dir_all(d);
            }
            run.generation = generation;
            run.heatmaps.clear();
            run.served.clear();
            let d = session_dir().join(format!("study{generation}"));
            run.dir = Some(d.clone());
            d
        }
    }
}

enum Job {
    Full { label_set: Option<String> },
    Typed { text: String },
    Heatmap { label: String, custom: bool },
}

struct Done {
    diagnosis: Diagnosis,
    model_dir: PathBuf,
    label_set: String,
    generation: u64,
    study: String,
    /// The image embeddings of the analysis (kept in the library for search).
    embeddings: Vec<(String, Vec<f32>)>,
}

fn execute(app: &AppHandle, job: Job, cancel: CancelToken) -> AppResult<Done> {
    let state = app.state::<AppState>();
    let task = match job {
        Job::Full { .. } => Task::Analysis,
        Job::Typed { .. } => Task::Finding,
        Job::Heatmap { .. } => Task::Heatmap,
    };
    let emit = |stage: Stage, fraction: f32| {
        let _ = app.emit("analysis-progress", Progress { stage, fraction, task });
    };
    let (volume, generation, study): (Arc<Volume>, u64, String) = {
        let d = lock(&state.displayed);
        let d = d.as_ref().ok_or_else(|| AppError::new(ErrorCode::NoStudy, "open a CT first"))?;
        (d.volume.clone(), d.summary.generation, d.summary.path.clone())
    };
    let settings = lock(&state.settings).clone();
    with_engine(
        &state,
        || emit(Stage::LoadModel, 0.0),
        |dir, engine| {
            if cancel.is_cancelled() {
                return Err(AppError::new(ErrorCode::Cancelled, "cancelled"));
            }
            let m = &engine.package.manifest;
            let set = settings.label_set.clone().unwrap_or_else(|| m.default_label_set.clone());
            let mut opts = DiagnoseOptions {
                top_k: TOP_K,
                cancel: cancel.clone(),
                // A heat map or typed finding on the study that is open reuses the image encoding of
                // the analysis; opening a study bumps the generation.
                image_key: Some(format!("{generation}:{study}")),
                ..Default::default()
            };
            match job {
                Job::Full { label_set } => {
                    let set = label_set.unwrap_or(set.clone());
                    opts.labels = m.labels(&set).ok_or_else(|| {
                        AppError::new(
                            ErrorCode::BadInput,
                            format!(
                                "unknown label set '{set}' (this model has: all, {})",
                                m.label_sets.keys().cloned().collect::<Vec<_>>().join(", ")
                            ),
                        )
                    })?;
                }
                Job::Typed { text } => opts.findings = vec![text],
                Job::Heatmap { label, custom } => {
                    if custom {
                        opts.findings = vec![label];
                    } else {
                        opts.labels = vec![label];
                    }
                    let dir = run_dir(&state, generation);
                    let n = lock(&state.run).heatmaps.len();
                    opts.heatmap_dir = Some(dir.join(format!("h{n}")));
                }
            }
            let progress = |stage: Stage, f: f32| emit(stage, f);
            let diagnosis = engine.diagnose(&volume, &opts, &progress).map_err(|e| {
                // Cancellation is a `Cancelled` in the error chain, or the token itself.
                let fallback = if cancel.is_cancelled() { ErrorCode::Cancelled } else { ErrorCode::Model };
                match AppError::from_chain(&e, fallback) {
                    // The message a cancelled analysis has always answered.
                    e if e.code == ErrorCode::Cancelled => AppError::new(ErrorCode::Cancelled, "cancelled"),
                    e => e,
                }
            })?;
            let embeddings =
                engine.last_image().map(|i| i.embeddings().into_iter().map(|(n, v)| (n.to_string(), v)).collect()).unwrap_or_default();
            Ok(Done { diagnosis, model_dir: dir.to_path_buf(), label_set: set, generation, study, embeddings })
        },
    )
}

/// The model directory the settings resolve to (RADBRIDGE_MODEL, the settings' folder, the
/// demo model, …) and why; `no_model` when there is none.
pub fn model_dir(state: &AppState) -> AppResult<(PathBuf, &'static str)> {
    let setting = lock(&state.settings).model_dir.clone();
    let (dir, why) = state::resolve_model(setting.as_deref());
    let dir = dir.ok_or_else(|| {
        AppError::new(ErrorCode::NoModel, format!("no model: {why}; choose a model folder in Settings or set RADBRIDGE_MODEL"))
    })?;
    Ok((dir, why))
}

/// Run `f` with the model the settings resolve to: the cached engine when it is that model's,
/// else the model loaded now (`on_load` is called first). The engine stays locked while `f`
/// runs (one model computation at a time); callers hold no other lock meanwhile.
pub fn with_engine<T>(
    state: &AppState,
    on_load: impl FnOnce(),
    f: impl FnOnce(&std::path::Path, &mut Engine) -> AppResult<T>,
) -> AppResult<T> {
    let (dir, why) = model_dir(state)?;
    let mut guard = state.engine();
    let engine = match guard.take() {
        Some((d, engine)) if d == dir => guard.insert((d, engine)),
        _ => {
            on_load();
            let engine = Engine::load(&dir).map_err(|e| {
                // A folder without model.json is no model at all; one that has it failed to load.
                let code = if dir.join("model.json").is_file() { ErrorCode::Model } else { ErrorCode::NoModel };
                AppError::new(code, format!("{}: cannot load the model (from {why}): {}", dir.display(), chain_message(&e)))
            })?;
            guard.insert((dir.clone(), engine))
        }
    };
    f(&dir, &mut engine.1)
}

async fn spawn(app: AppHandle, job: Job) -> AppResult<Done> {
    let cancel = CancelToken::default();
    lock(&app.state::<AppState>().run).cancel = cancel.clone();
    let a = app.clone();
    tauri::async_runtime::spawn_blocking(move || execute(&a, job, cancel)).await.map_err(|e| AppError::internal("analysis", e))?
}

fn result(d: Done, record: Option<&AppState>) -> AnalysisResult {
    let (run_id, store_error) = match record.map(|st| super::feedback::record_run(st, &d.diagnosis, &d.study, &d.model_dir, &d.embeddings))
    {
        Some(Ok(id)) => (Some(id), None),
        Some(Err(e)) => (None, Some(e.message)),
        None => (None, None),
    };
    AnalysisResult {
        diagnosis: d.diagnosis,
        model_dir: d.model_dir.display().to_string(),
        label_set: d.label_set,
        study_generation: d.generation,
        run_id,
        store_error,
    }
}

/// Score every label of the chosen set (default: the settings' set, else the model's).
#[tauri::command]
pub async fn run_analysis(app: AppHandle, label_set: Option<String>) -> AppResult<AnalysisResult> {
    let d = spawn(app.clone(), Job::Full { label_set }).await?;
    let state = app.state::<AppState>();
    lock(&state.run).last = Some(d.diagnosis.clone());
    Ok(result(d, Some(&state)))
}

/// Score one typed finding on the loaded study.
#[tauri::command]
pub async fn score_finding(app: AppHandle, text: String) -> AppResult<AnalysisResult> {
    let text = text.trim().to_string();
    if text.is_empty() {
        return Err(AppError::new(ErrorCode::BadInput, "type a finding first"));
    }
    Ok(result(spawn(app, Job::Typed { text }).await?, None))
}

/// Make the heat map of one finding (a label of the set, or a typed finding when `custom`).
#[tauri::command]
pub async fn finding_heatmap(app: AppHandle, label: String, custom: bool) -> AppResult<HeatmapRef> {
    let d = spawn(app.clone(), Job::Heatmap { label: label.clone(), custom }).await?;
    let path = d
        .diagnosis
        .findings
        .first()
        .and_then(|f| f.heatmap.clone())
        .ok_or_else(|| AppError::new(ErrorCode::Model, "this model makes no heat maps (CT-CLIP has none)"))?;
    let state = app.state::<AppState>();
    let mut run = lock(&state.run);
    if run.generation != d.generation {
        return Err(AppError::new(ErrorCode::NoStudy, "the study changed while the heat map was made"));
    }
    run.heatmaps.push(PathBuf::from(path));
    let id = run.heatmaps.len() - 1;
    drop(run);
    super::feedback::audit_event(&state, radbridge_store::AuditAction::View, serde_json::json!({"heatmap": label, "custom": custom}));
    Ok(HeatmapRef { id, label })
}

/// Stop the analysis in progress (it ends with an error whose code is `cancelled`).
#[tauri::command]
pub fn cancel_analysis(state: State<'_, AppState>) {
    lock(&state.run).cancel.cancel();
}

#[cfg(test)]
mod tests {
    use super::*;
    use radbridge_model::analysis::{ModelInfo, ScoredFinding, StudySource};
    use radbridge_model::heatmap::{Peak, PeakSource};
    use radbridge_model::zeroshot::{Finding, ScoringRule};

    fn diagnosis() -> Diagnosis {
        Diagnosis {
            disclaimer: radbridge_model::analysis::DISCLAIMER.into(),
            model: ModelInfo {
                name: "tiny".into(),
                architecture: radbridge_model::checkpoint::Arch::Brgsa,
                weights_sha256: "abc".into(),
                synthetic: true,
                scoring: ScoringRule::BrgsaMeanCosine,
                device: "cpu".into(),
                notice: None,
            },
            findings: vec![ScoredFinding {
                finding: Finding {
                    label: "Emphysema".into(),
                    prompt: "There is emphysema".into(),
                    score: 0.7,
                    threshold: Some(0.1),
                    flagged: Some(true),
                    custom: false,
                },
                bank: None,
                heatmap: Some("/tmp/h0/emphysema.nii.gz".into()),
                peak: Some(Peak { voxel: [1, 2, 3], lps_mm: [-10.5, 20.25, 3.0], value: 0.3, from: PeakSource::Heatmap }),
            }],
            image_bank_top: vec![],
            timings: vec![("score".into(), 0.12)],
            source: Some(StudySource {
                path: "/data/ct.nii.gz".into(),
                format: radbridge_volume::SourceFormat::Nifti,
                ..Default::default()
            }),
        }
    }

    /// What `run_analysis` answered before the diagnosis was typed (`diagnosis: Value`).
    #[derive(Serialize)]
    struct Before {
        diagnosis: serde_json::Value,
        model_dir: String,
        label_set: String,
        study_generation: u64,
        run_id: Option<i64>,
        store_error: Option<String>,
    }

    #[test]
    fn the_ui_receives_the_same_json_as_before() {
        let d = diagnosis();
        let now = AnalysisResult {
            diagnosis: d.clone(),
            model_dir: "/m".into(),
            label_set: "all".into(),
            study_generation: 3,
            run_id: Some(9),
            store_error: None,
        };
        let before = Before {
            diagnosis: serde_json::to_value(&d).unwrap(),
            model_dir: "/m".into(),
            label_set: "all".into(),
            study_generation: 3,
            run_id: Some(9),
            store_error: None,
        };
        assert_eq!(serde_json::to_string(&now).unwrap(), serde_json::to_string(&before).unwrap());
    }

    #[test]
    fn progress_keeps_the_stage_strings() {
        let p = Progress { stage: Stage::HeatMaps, fraction: 0.5, task: Task::Heatmap };
        assert_eq!(serde_json::to_value(&p).unwrap(), serde_json::json!({"stage": "heat maps", "fraction": 0.5, "task": "heatmap"}));
        let names: Vec<String> = Stage::ALL.iter().map(|s| serde_json::to_value(s).unwrap().as_str().unwrap().to_string()).collect();
        assert_eq!(names, ["load model", "preprocess", "encode image", "encode text", "score", "heat maps", "done"]);
        for s in Stage::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
    }
}
