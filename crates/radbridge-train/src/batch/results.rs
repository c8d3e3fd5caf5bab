//! Reading a merged batch output back: the cohort's embeddings with their ids and the model
//! that made them (for `search --batch`), and each study's `diagnose` record with its
//! embeddings (for `library import`).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use radbridge_model::analysis::Diagnosis;
use serde_json::Value;

use super::embeddings::read_embeddings;
use super::layout::ModelRef;
use super::{plan, safe_names, BatchError, Source};

/// The merged embeddings of a batch.
#[derive(Debug, Clone)]
pub struct Cohort {
    /// The model of the run (`run.json`).
    pub model: ModelRef,
    /// Study ids, row order.
    pub ids: Vec<String>,
    /// Tensor name → (row length, rows × row length values).
    pub tensors: BTreeMap<String, (usize, Vec<f32>)>,
    /// The run's source (manifest or input folder), when `run.json` names it.
    source: Option<Source>,
}

/// One study's result.
#[derive(Debug, Clone)]
pub struct StudyResult {
    pub id: String,
    pub diagnosis: Diagnosis,
    pub embeddings: Vec<(String, Vec<f32>)>,
}

impl Cohort {
    /// Row `i` of each tensor.
    pub fn row(&self, i: usize) -> Vec<(String, Vec<f32>)> {
        self.tensors.iter().filter_map(|(n, (dim, v))| v.get(i * dim..(i + 1) * dim).map(|r| (n.clone(), r.to_vec()))).collect()
    }
}

/// Read `<out>/run.json` and `<out>/embeddings.safetensors`.
pub fn read_cohort(out: &Path) -> Result<Cohort, BatchError> {
    let bad = |path: &Path, reason: String| BatchError::Record { path: path.to_path_buf(), reason };
    if !out.is_dir() {
        return Err(bad(out, "not a batch output folder (no such folder)".into()));
    }
    let run_path = out.join("run.json");
    let text = std::fs::read_to_string(&run_path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => bad(out, "not a merged batch output: no run.json (run `radbridge batch merge` on it)".into()),
        _ => BatchError::Io { path: run_path.clone(), what: "read", source: e },
    })?;
    let run: Value = serde_json::from_str(&text).map_err(|e| bad(&run_path, format!("not JSON: {e}")))?;
    let model: ModelRef =
        serde_json::from_value(run["model"].clone()).map_err(|e| bad(&run_path, format!("no model of the run in it: {e}")))?;
    let source = serde_json::from_value::<Source>(run["source"].clone()).ok();
    let emb = out.join("embeddings.safetensors");
    if !emb.is_file() {
        return Err(bad(&emb, "no embeddings: the batch has no successful study, or it was not merged (`radbridge batch merge`)".into()));
    }
    let (tensors, meta) = read_embeddings(&emb)?;
    let ids: Vec<String> = meta
        .get("ids")
        .and_then(|s| serde_json::from_str(s).ok())
        .ok_or_else(|| bad(&emb, "no study ids in its metadata (key 'ids')".into()))?;
    let mut out_tensors = BTreeMap::new();
    for (name, (shape, values)) in tensors {
        match shape.as_slice() {
            [rows, dim] if *rows == ids.len() && *dim > 0 => {
                out_tensors.insert(name, (*dim, values));
            }
            _ => return Err(bad(&emb, format!("tensor '{name}' has shape {shape:?}, expected [{}, D]", ids.len()))),
        }
    }
    if out_tensors.is_empty() {
        return Err(bad(&emb, "no tensors".into()));
    }
    Ok(Cohort { model, ids, tensors: out_tensors, source })
}

/// Every study of the cohort with its record (`studies/<safe>.json`) and embeddings, in row
/// order. The file-safe names come from the run's manifest or input folder; when that is no
/// longer readable they are recomputed from the merged ids (the same names unless a failed
/// study's id collided with a successful one's).
pub fn study_results(out: &Path, cohort: &Cohort) -> Result<Vec<StudyResult>, BatchError> {
    let from_plan: Option<HashMap<String, String>> =
        cohort.source.as_ref().and_then(|s| plan(s).ok()).map(|studies| studies.into_iter().map(|s| (s.id, s.safe)).collect());
    let fallback = safe_names(&cohort.ids);
    cohort
        .ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let safe = from_plan.as_ref().and_then(|m| m.get(id).cloned()).unwrap_or_else(|| fallback[i].clone());
            let path = out.join("studies").join(format!("{safe}.json"));
            let text = std::fs::read_to_string(&path).map_err(BatchError::io(&path, "read the study's record"))?;
            let diagnosis: Diagnosis = serde_json::from_str(&text)
                .map_err(|e| BatchError::Record { path: path.clone(), reason: format!("not a diagnose record: {e}") })?;
            if diagnosis.model.weights_sha256 != cohort.model.weights_sha256 {
                return Err(BatchError::Record {
                    path,
                    reason: format!(
                        "made by another model ({}) than the run's ({})",
                        diagnosis.model.weights_sha256, cohort.model.weights_sha256
                    ),
                });
            }
            Ok(StudyResult { id: id.clone(), diagnosis, embeddings: cohort.row(i) })
        })
        .collect()
}
