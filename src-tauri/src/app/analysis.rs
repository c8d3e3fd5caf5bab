//! Analysis commands: run the zero-shot diagnosis on the loaded volume on a blocking thread,
//! with progress as `analysis-progress` events and cancellation through the run's CancelToken.
//! Heat maps are made on demand, one finding at a time (all 33 on a 512² CT take ~25 s and
//! ~1 GB), and served as binary by the `volume://` scheme.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;
use tauri::{AppHandle, Emitter, Manager, State};

use super::state::{self, AppState, Run};
use radbridge_model::analysis::{DiagnoseOptions, Engine};
use radbridge_volume::{CancelToken, Volume};

/// Payload of the `analysis-progress` event.
#[derive(Debug, Clone, Serialize)]
pub struct Progress {
    /// "load model", "preprocess", "encode image", "encode text", "score", "heat maps", "done".
    pub stage: String,
    pub fraction: f32,
    /// "analysis", "finding" or "heatmap".
    pub task: String,
}

/// What the UI gets back from `run_analysis` / `score_finding`.
#[derive(Debug, Clone, Serialize)]
pub struct AnalysisResult {
    /// `analysis::Diagnosis` as `radbridge diagnose --json` writes it.
    pub diagnosis: Value,
    pub model_dir: String,
    pub label_set: String,
    pub study_generation: u64,
    /// The run's id in the feedback store (None when the store could not record it).
    pub run_id: Option<i64>,
    pub store_error: Option<String>,
}

/// A heat map ready to fetch from `volume://localhost/heatmap/<id>`.
#[derive(Debug, Clone, Serialize)]
pub struct HeatmapRef {
    pub id: usize,
    pub label: String,
}

const TOP_K: usize = 5;

/// Forget the previous study's run (its heat maps no longer fit) and stop what is running.
pub fn reset_run(state: &AppState) {
    let mut run = state.run.lock().unwrap();
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
    let mut run = state.run.lock().unwrap();
    if run.dir.is_none() || run.generation != generation {
        if let Some(d) = run.dir.take() {
            let _ = std::fs::remove_dir_all(d);
        }
        run.generation = generation;
        run.heatmaps.clear();
        run.served.clear();
        run.dir = Some(session_dir().join(format!("study{generation}")));
    }
    run.dir.clone().unwrap()
}

enum Job {
    Full { label_set: Option<String> },
    Typed { text: String },
    Heatmap { label: String, custom: bool },
}

struct Done {
    diagnosis: radbridge_model::analysis::Diagnosis,
    model_dir: PathBuf,
    label_set: String,
    generation: u64,
    study: String,
}

fn execute(app: &AppHandle, job: Job, cancel: CancelToken) -> anyhow::Result<Done> {
    use anyhow::Context;
    let state = app.state::<AppState>();
    let task = match job {
        Job::Full { .. } => "analysis",
        Job::Typed { .. } => "finding",
        Job::Heatmap { .. } => "heatmap",
    };
    let emit = |stage: &str, fraction: f32| {
        let _ = app.emit("analysis-progress", Progress { stage: stage.to_string(), fraction, task: task.to_string() });
    };
    let (volume, generation, study): (Arc<Volume>, u64, String) = {
        let d = state.displayed.lock().unwrap();
        let d = d.as_ref().context("open a CT first")?;
        (d.volume.clone(), d.summary.generation, d.summary.path.clone())
    };
    let settings = state.settings.lock().unwrap().clone();
    let (dir, why) = state::resolve_model(settings.model_dir.as_deref());
    let dir = dir.with_context(|| format!("no model: {why}; choose a model folder in Settings or set RADBRIDGE_MODEL"))?;
    let mut guard = state.engine.lock().unwrap();
    if guard.as_ref().map(|(d, _)| d != &dir).unwrap_or(true) {
        emit("load model", 0.0);
        *guard = None;
        let engine = Engine::load(&dir).with_context(|| format!("{}: cannot load the model (from {why})", dir.display()))?;
        *guard = Some((dir.clone(), engine));
    }
    let (_, engine) = guard.as_mut().unwrap();
    if cancel.is_cancelled() {
        anyhow::bail!("cancelled");
    }
    let m = &engine.package.manifest;
    let set = settings.label_set.clone().unwrap_or_else(|| m.default_label_set.clone());
    let mut opts = DiagnoseOptions {
        top_k: TOP_K,
        cancel,
        // A heat map or typed finding on the study that is open reuses the image encoding of
        // the analysis; opening a study bumps the generation.
        image_key: Some(format!("{generation}:{study}")),
        ..Default::default()
    };
    match job {
        Job::Full { label_set } => {
            let set = label_set.unwrap_or(set.clone());
            opts.labels = m.labels(&set).with_context(|| {
                format!("unknown label set '{set}' (this model has: all, {})", m.label_sets.keys().cloned().collect::<Vec<_>>().join(", "))
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
            let n = state.run.lock().unwrap().heatmaps.len();
            opts.heatmap_dir = Some(dir.join(format!("h{n}")));
        }
    }
    let diagnosis = engine.diagnose(&volume, &opts, &|stage, f| emit(stage, f))?;
    Ok(Done { diagnosis, model_dir: dir, label_set: set, generation, study })
}

async fn spawn(app: AppHandle, job: Job) -> Result<Done, String> {
    let cancel = CancelToken::default();
    app.state::<AppState>().run.lock().unwrap().cancel = cancel.clone();
    let a = app.clone();
    let token = cancel.clone();
    tauri::async_runtime::spawn_blocking(move || execute(&a, job, cancel))
        .await
        .map_err(|e| format!("analysis stopped unexpectedly: {e}"))?
        .map_err(|e| {
            if token.is_cancelled() {
                "cancelled".to_string()
            } else {
                e.chain().map(|c| c.to_string()).collect::<Vec<_>>().join(": ")
            }
        })
}

fn result(d: Done, record: Option<&AppState>) -> Result<AnalysisResult, String> {
    let diagnosis = serde_json::to_value(&d.diagnosis).map_err(|e| e.to_string())?;
    let (run_id, store_error) = match record.map(|st| super::feedback::record_run(st, &diagnosis, &d.study, &d.model_dir)) {
        Some(Ok(id)) => (Some(id), None),
        Some(Err(e)) => (None, Some(e)),
        None => (None, None),
    };
    Ok(AnalysisResult {
        diagnosis,
        model_dir: d.model_dir.display().to_string(),
        label_set: d.label_set,
        study_generation: d.generation,
        run_id,
        store_error,
    })
}

/// Score every label of the chosen set (default: the settings' set, else the model's).
#[tauri::command]
pub async fn run_analysis(app: AppHandle, label_set: Option<String>) -> Result<AnalysisResult, String> {
    let d = spawn(app.clone(), Job::Full { label_set }).await?;
    let state = app.state::<AppState>();
    state.run.lock().unwrap().last = Some(d.diagnosis.clone());
    result(d, Some(&state))
}

/// Score one typed finding on the loaded study.
#[tauri::command]
pub async fn score_finding(app: AppHandle, text: String) -> Result<AnalysisResult, String> {
    let text = text.trim().to_string();
    if text.is_empty() {
        return Err("type a finding first".into());
    }
    result(spawn(app, Job::Typed { text }).await?, None)
}

/// Make the heat map of one finding (a label of the set, or a typed finding when `custom`).
#[tauri::command]
pub async fn finding_heatmap(app: AppHandle, label: String, custom: bool) -> Result<HeatmapRef, String> {
    let d = spawn(app.clone(), Job::Heatmap { label: label.clone(), custom }).await?;
    let path = d.diagnosis.findings.first().and_then(|f| f.heatmap.clone()).ok_or("this model makes no heat maps (CT-CLIP has none)")?;
    let state = app.state::<AppState>();
    let mut run = state.run.lock().unwrap();
    if run.generation != d.generation {
        return Err("the study changed while the heat map was made".into());
    }
    run.heatmaps.push(PathBuf::from(path));
    let id = run.heatmaps.len() - 1;
    drop(run);
    super::feedback::audit_event(&state, radbridge_store::AuditAction::View, serde_json::json!({"heatmap": label, "custom": custom}));
    Ok(HeatmapRef { id, label })
}

/// Stop the analysis in progress (it ends with the error "cancelled").
#[tauri::command]
pub fn cancel_analysis(state: State<'_, AppState>) {
    state.run.lock().unwrap().cancel.cancel();
}
