//! The evaluation run (spec §6): a BrgSA model over a labelled corpus. Every case's image is
//! encoded once and scored against one prompt per label (the numbers the app shows, from
//! `analysis::Engine`); the metrics per label come from `eval` (thresholds, bootstrap
//! intervals), and for each present label with a mask the heat map's peak is checked against
//! the mask. `radbridge eval` parses flags, calls [`run`], prints and writes [`EvalRun::write`].
//!
//! Files written (the contract of `radbridge eval`):
//! - `summary.json`: [`EvalRun::summary`];
//! - `scores.csv`: VolumeName + one column per label (the official layout), BrgSA's score;
//! - `thresholds.json`: the full-set thresholds in the model-directory format;
//! - with the ablation: `scores_v.csv` (cos(v, t)) and `scores_v_hat.csv` (cos(v̂, t)).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use radbridge_model::analysis::{Engine, ImageCode, Net, TextCode};
use radbridge_model::heatmap::Method;
use radbridge_model::preprocess::InputGeometry;
use radbridge_model::zeroshot::Thresholds;
use radbridge_volume::{self as volume, atomic, OpenOptions, VolumeError};
use serde_json::{json, Value};

use crate::data::{CaseEntry, Corpus};
use crate::eval::{self, LabelResult};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Errors of an evaluation run; each names the file or folder concerned.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("{0}: eval supports BrgSA models")]
    NotBrgsa(PathBuf),
    #[error("{0}: no labels to evaluate")]
    NoLabels(PathBuf),
    #[error("{path}: cannot open")]
    Open {
        path: PathBuf,
        #[source]
        source: VolumeError,
    },
    #[error("{path}: cannot open mask")]
    OpenMask {
        path: PathBuf,
        #[source]
        source: VolumeError,
    },
    #[error("{path}: mask grid {mask:?} differs from the CT {ct:?}")]
    MaskGrid { path: PathBuf, mask: [usize; 3], ct: [usize; 3] },
    /// The model failed on a case (or on the prompts: `path` is then the model directory).
    #[error("{path}")]
    Model {
        path: PathBuf,
        #[source]
        source: BoxError,
    },
    #[error("{path}: cannot write")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: cannot create")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: cannot update the model manifest")]
    Manifest {
        path: PathBuf,
        #[source]
        source: BoxError,
    },
}

fn model_err<E: Into<BoxError>>(path: &Path) -> impl FnOnce(E) -> EvalError + '_ {
    move |e| EvalError::Model { path: path.to_path_buf(), source: e.into() }
}

/// What to evaluate and how.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// Labels to evaluate (default: every corpus label the model has).
    pub labels: Option<Vec<String>>,
    /// Label → prompt text, replacing the model's template for those labels.
    pub prompts: BTreeMap<String, String>,
    /// Evaluate the first N cases only.
    pub max_cases: Option<usize>,
    /// Bootstrap resamples (0 = metrics on the full set only).
    pub bootstrap: usize,
    /// Also evaluate cos(v, t) alone and cos(v̂, t) alone.
    pub ablation: bool,
    /// How heat maps (for the peak-in-mask rate) are computed.
    pub heatmap_method: Method,
    /// For gradient heat maps: the ViT block whose attention input is attributed.
    pub heatmap_layer: Option<usize>,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            labels: None,
            prompts: BTreeMap::new(),
            max_cases: None,
            bootstrap: 5000,
            ablation: false,
            heatmap_method: Method::Gradient,
            heatmap_layer: None,
        }
    }
}

/// Hits out of checks, for one label or in all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HitCount {
    pub hits: usize,
    pub total: usize,
}

impl HitCount {
    fn add(&mut self, hit: bool) {
        self.hits += hit as usize;
        self.total += 1;
    }

    /// Hits over checks (None without checks).
    pub fn rate(&self) -> Option<f64> {
        (self.total > 0).then(|| self.hits as f64 / self.total as f64)
    }

    /// The sum over labels.
    pub fn sum(per_label: &BTreeMap<String, HitCount>) -> HitCount {
        per_label.values().fold(HitCount::default(), |a, b| HitCount { hits: a.hits + b.hits, total: a.total + b.total })
    }
}

/// Scores of every case (rows) and label (columns), with the truth.
#[derive(Debug, Clone, Default)]
pub struct CaseScores {
    /// VolumeName of each case (`<id>.nii.gz`).
    pub names: Vec<String>,
    pub truth: Vec<Vec<bool>>,
    /// BrgSA's score (the mean of both cosines).
    pub brgsa: Vec<Vec<f64>>,
    /// cos(v, t).
    pub v: Vec<Vec<f64>>,
    /// cos(v̂, t).
    pub v_hat: Vec<Vec<f64>>,
}

/// The ablation of one score: mean metrics and AUROC per label.
#[derive(Debug, Clone)]
pub struct Ablation {
    /// "v_only", "v_hat_only" or "brgsa".
    pub name: &'static str,
    pub mean: BTreeMap<String, f64>,
    pub auroc: BTreeMap<String, f64>,
}

/// The outcome of an evaluation run.
#[derive(Debug, Clone)]
pub struct EvalRun {
    pub labels: Vec<String>,
    /// The prompt used for each label (same order).
    pub prompts: Vec<String>,
    pub scores: CaseScores,
    /// Per label with at least one resolvable mask: the heat map's peak voxel is inside it.
    pub peak_in_mask: BTreeMap<String, HitCount>,
    /// Per label: the peak patch cell holds a mask voxel (the patch grid is coarser than
    /// most masks).
    pub peak_cell_overlaps_mask: BTreeMap<String, HitCount>,
    pub results: Vec<LabelResult>,
    /// Labels with a single class in the evaluated cases.
    pub skipped: Vec<String>,
    pub mean: BTreeMap<String, f64>,
    /// The full-set thresholds (finite ones only), in the model-directory format.
    pub thresholds: Thresholds,
    /// With the ablation: "v_only", "v_hat_only", "brgsa".
    pub ablation: Option<Vec<Ablation>>,
    pub heatmap_method: Method,
    pub bootstrap: usize,
    pub model_dir: PathBuf,
    pub model_name: String,
    pub weights_sha256: String,
    pub data_dir: PathBuf,
    pub corpus_seed: Option<u64>,
    pub cases: usize,
}

/// Index of the first largest finite value.
fn first_max(v: &[f32]) -> Option<usize> {
    let mut best: Option<(usize, f32)> = None;
    for (i, &x) in v.iter().enumerate() {
        if x.is_finite() && best.is_none_or(|(_, b)| x > b) {
            best = Some((i, x));
        }
    }
    best.map(|(i, _)| i)
}

/// Evaluate every label; returns (results, skipped labels).
pub fn evaluate(labels: &[String], truth: &[Vec<bool>], scores: &[Vec<f64>], n_boot: usize) -> (Vec<LabelResult>, Vec<String>) {
    let mut results = Vec::new();
    let mut skipped = Vec::new();
    for (j, l) in labels.iter().enumerate() {
        let y: Vec<bool> = truth.iter().map(|r| r[j]).collect();
        let s: Vec<f64> = scores.iter().map(|r| r[j]).collect();
        match eval::evaluate_label(l, &y, &s, n_boot) {
            Some(r) => results.push(r),
            None => skipped.push(l.clone()),
        }
    }
    (results, skipped)
}

/// The labels evaluated: the requested ones, else every corpus label the model has.
fn labels_of(engine: &Engine, corpus: &Corpus, opts: &EvalOptions) -> Vec<String> {
    let model_labels = engine.package.manifest.labels("all").unwrap_or_default();
    match &opts.labels {
        Some(l) => l.clone(),
        None => corpus.labels.iter().filter(|l| model_labels.is_empty() || model_labels.contains(l)).cloned().collect(),
    }
}

/// Run the evaluation of the model `engine` (loaded from `model_dir`) on `corpus`.
/// `on_case` is called after each case.
pub fn run(engine: &mut Engine, model_dir: &Path, corpus: &Corpus, opts: &EvalOptions, on_case: &dyn Fn()) -> Result<EvalRun, EvalError> {
    let patch = match &engine.net {
        Net::Brgsa(m) => m.config().vision.patch_size,
        Net::Ctclip(_) => return Err(EvalError::NotBrgsa(model_dir.to_path_buf())),
    };
    let labels = labels_of(engine, corpus, opts);
    if labels.is_empty() {
        return Err(EvalError::NoLabels(corpus.dir.clone()));
    }
    for l in opts.prompts.keys() {
        if !labels.contains(l) {
            tracing::warn!("--prompts: label {l:?} is not evaluated");
        }
    }
    let tpl = engine.package.manifest.prompts.clone();
    let prompts: Vec<String> = labels.iter().map(|l| opts.prompts.get(l).cloned().unwrap_or_else(|| tpl.positive_for(l))).collect();
    let codes = engine.embed_prompts(&prompts).map_err(model_err(model_dir))?;
    let texts: Vec<&[f32]> = codes.iter().map(TextCode::embedding).collect();

    let mut cases: Vec<&CaseEntry> = corpus.cases.iter().collect();
    if let Some(m) = opts.max_cases {
        cases.truncate(m);
    }
    let mut scores = CaseScores::default();
    let mut peak_in_mask: BTreeMap<String, HitCount> = BTreeMap::new();
    let mut peak_cell_overlaps_mask: BTreeMap<String, HitCount> = BTreeMap::new();
    let ctx = CaseContext { engine, corpus, opts, labels: &labels, texts: &texts, patch };
    for case in &cases {
        let row = ctx.score_case(case, &mut peak_in_mask, &mut peak_cell_overlaps_mask)?;
        scores.names.push(format!("{}.nii.gz", case.id));
        scores.truth.push(row.truth);
        scores.brgsa.push(row.brgsa);
        scores.v.push(row.v);
        scores.v_hat.push(row.v_hat);
        on_case();
    }

    let (results, skipped) = evaluate(&labels, &scores.truth, &scores.brgsa, opts.bootstrap);
    let mean = eval::mean_metrics(&results);
    let thresholds = Thresholds {
        version: 1,
        source: format!("radbridge eval: ROC point closest to (0,1) on {} ({} cases)", corpus.dir.display(), cases.len()),
        // A corner point at (0, 0) gives +∞ (everything negative): no finite threshold to store.
        thresholds: results.iter().filter(|r| r.threshold.is_finite()).map(|r| (r.label.clone(), r.threshold as f32)).collect(),
    };
    let ablation = opts.ablation.then(|| {
        [("v_only", &scores.v), ("v_hat_only", &scores.v_hat), ("brgsa", &scores.brgsa)]
            .into_iter()
            .map(|(name, sc)| {
                let (r, _) = evaluate(&labels, &scores.truth, sc, 0);
                Ablation { name, mean: eval::mean_metrics(&r), auroc: r.iter().map(|x| (x.label.clone(), x.auroc)).collect() }
            })
            .collect()
    });
    let manifest = &engine.package.manifest;
    Ok(EvalRun {
        labels,
        prompts,
        scores,
        peak_in_mask,
        peak_cell_overlaps_mask,
        results,
        skipped,
        mean,
        thresholds,
        ablation,
        heatmap_method: opts.heatmap_method,
        bootstrap: opts.bootstrap,
        model_dir: model_dir.to_path_buf(),
        model_name: manifest.name.clone(),
        weights_sha256: manifest.weights_sha256.clone(),
        data_dir: corpus.dir.clone(),
        corpus_seed: corpus.seed,
        cases: cases.len(),
    })
}

/// What scoring one case needs.
struct CaseContext<'a> {
    engine: &'a Engine,
    corpus: &'a Corpus,
    opts: &'a EvalOptions,
    labels: &'a [String],
    texts: &'a [&'a [f32]],
    patch: [usize; 3],
}

/// One case's row of scores and truth.
struct CaseRow {
    truth: Vec<bool>,
    brgsa: Vec<f64>,
    v: Vec<f64>,
    v_hat: Vec<f64>,
}

impl CaseContext<'_> {
    /// Score one case against every label; for present labels with a mask, count the heat
    /// map's peak hits.
    fn score_case(
        &self,
        case: &CaseEntry,
        peak_in_mask: &mut BTreeMap<String, HitCount>,
        peak_cell_overlaps_mask: &mut BTreeMap<String, HitCount>,
    ) -> Result<CaseRow, EvalError> {
        let engine = self.engine;
        let p = self.corpus.path(&case.volume);
        let loaded = volume::open(&p, &OpenOptions::default()).map_err(|source| EvalError::Open { path: p.clone(), source })?;
        let canon = loaded.volume.canonical();
        let input = engine.preprocess(&canon).map_err(model_err(&p))?;
        let x = engine.tensor(&input).map_err(model_err(&p))?;
        let image = engine.encode_image_keeping(&x, self.opts.heatmap_layer).map_err(model_err(&p))?;
        let ImageCode::Brgsa { v, v_hat, grid, .. } = &image else {
            return Err(EvalError::Model { path: p, source: "not a BrgSA image code".into() });
        };
        let mut row = CaseRow { truth: Vec::new(), brgsa: Vec::new(), v: Vec::new(), v_hat: Vec::new() };
        for (j, l) in self.labels.iter().enumerate() {
            let (cv, cvh, m) = radbridge_model::zeroshot::brgsa_score(v, v_hat, self.texts[j]);
            row.brgsa.push(m as f64);
            row.v.push(cv as f64);
            row.v_hat.push(cvh as f64);
            let present = case.labels.get(l).copied().unwrap_or(0) == 1;
            row.truth.push(present);
            if !present {
                continue;
            }
            let Some(mask_rel) = case.masks.get(l) else { continue };
            let mp = self.corpus.path(mask_rel);
            let mask_loaded = volume::open(&mp, &OpenOptions { any_modality: true, ..Default::default() })
                .map_err(|source| EvalError::OpenMask { path: mp.clone(), source })?;
            let mask = mask_loaded.volume.canonical();
            if mask.dims != canon.dims {
                return Err(EvalError::MaskGrid { path: mp, mask: mask.dims, ct: canon.dims });
            }
            let sims = engine
                .patch_maps(&image, &[self.texts[j]], self.opts.heatmap_method)
                .map_err(model_err(&p))?
                .and_then(|mut m| m.pop())
                .ok_or_else(|| EvalError::Model { path: p.clone(), source: "no patch map for a BrgSA model".into() })?;
            if let Some(peak) = radbridge_model::heatmap::grid_peak(&sims, *grid, self.patch, &input.geometry, &canon) {
                let [i0, i1, i2] = peak.voxel;
                let idx = i0 + canon.dims[0] * (i1 + canon.dims[1] * i2);
                peak_in_mask.entry(l.clone()).or_default().add(mask.voxels.get_f32(idx) > 0.0);
            }
            // Coarser: does the highest patch cell contain any mask voxel?
            if let Some(best) = first_max(&sims) {
                let cell = [best / (grid[1] * grid[2]), (best / grid[2]) % grid[1], best % grid[2]];
                let overlap = cell_overlaps_mask(&mask, cell, self.patch, &input.geometry);
                peak_cell_overlaps_mask.entry(l.clone()).or_default().add(overlap);
            }
        }
        Ok(row)
    }
}

/// Whether the patch cell `cell` of the model input holds a voxel of `mask` (on the CT grid).
fn cell_overlaps_mask(mask: &volume::Volume, cell: [usize; 3], patch: [usize; 3], geometry: &InputGeometry) -> bool {
    let [nx, ny, nz] = mask.dims;
    for k in 0..nz {
        for jj in 0..ny {
            for i in 0..nx {
                if mask.voxels.get_f32(i + nx * (jj + ny * k)) <= 0.0 {
                    continue;
                }
                let m = geometry.model_index([i as f64, jj as f64, k as f64]);
                if (0..3).all(|a| (m[a].round() / patch[a] as f64).floor() as i64 == cell[a] as i64) {
                    return true;
                }
            }
        }
    }
    false
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Scores as CSV: VolumeName + one column per label (the official layout).
pub fn scores_csv(labels: &[String], names: &[String], scores: &[Vec<f64>]) -> String {
    let mut s = String::from("VolumeName");
    for l in labels {
        s.push(',');
        s.push_str(&csv_field(l));
    }
    s.push('\n');
    for (name, row) in names.iter().zip(scores) {
        s.push_str(&csv_field(name));
        for v in row {
            s.push_str(&format!(",{v}"));
        }
        s.push('\n');
    }
    s
}

fn hits_json(per_label: &BTreeMap<String, HitCount>) -> BTreeMap<String, Value> {
    per_label.iter().map(|(l, c)| (l.clone(), json!({"hits": c.hits, "total": c.total}))).collect()
}

fn write_file(path: &Path, bytes: impl AsRef<[u8]>) -> Result<(), EvalError> {
    atomic::write(path, bytes).map_err(|source| EvalError::Write { path: path.to_path_buf(), source })
}

impl EvalRun {
    /// The headline rates: (peak voxel in the mask, peak cell overlaps the mask), over all labels.
    pub fn heatmap_totals(&self) -> (HitCount, HitCount) {
        (HitCount::sum(&self.peak_in_mask), HitCount::sum(&self.peak_cell_overlaps_mask))
    }

    /// The `summary.json` document: `{"labels": [LabelResult], "mean", "skipped",
    /// "heatmap_in_mask": {"method", "hits", "total", "rate", "per_label"},
    /// "heatmap_peak_cell_overlaps_mask": {...}, "prompts", "model": {"dir", "name",
    /// "weights_sha256"}, "data", "corpus_seed", "cases", "bootstrap", "ablation" (when run):
    /// {"v_only"|"v_hat_only"|"brgsa": {"mean", "labels": {label: auroc}}}}`.
    pub fn summary(&self) -> Value {
        let (in_mask, cell) = self.heatmap_totals();
        let mut summary = json!({
            "labels": self.results,
            "mean": self.mean,
            "skipped": self.skipped,
            "heatmap_in_mask": {
                "method": self.heatmap_method.name(),
                "hits": in_mask.hits,
                "total": in_mask.total,
                "rate": in_mask.rate().unwrap_or(f64::NAN),
                "per_label": hits_json(&self.peak_in_mask),
            },
            "heatmap_peak_cell_overlaps_mask": {
                "hits": cell.hits,
                "total": cell.total,
                "rate": cell.rate(),
                "per_label": hits_json(&self.peak_cell_overlaps_mask),
            },
            "prompts": self.labels.iter().zip(&self.prompts).map(|(l, p)| (l.clone(), p.clone())).collect::<BTreeMap<_, _>>(),
            "model": {"dir": self.model_dir.display().to_string(), "name": self.model_name, "weights_sha256": self.weights_sha256},
            "data": self.data_dir.display().to_string(),
            "corpus_seed": self.corpus_seed,
            "cases": self.cases,
            "bootstrap": self.bootstrap,
        });
        if in_mask.total == 0 {
            summary["heatmap_in_mask"]["rate"] = Value::Null;
        }
        if let Some(ab) = &self.ablation {
            let ab: serde_json::Map<String, Value> =
                ab.iter().map(|a| (a.name.to_string(), json!({"mean": a.mean, "labels": a.auroc}))).collect();
            summary["ablation"] = Value::Object(ab);
        }
        summary
    }

    /// Write `scores.csv`, `thresholds.json`, with the ablation `scores_v.csv` and
    /// `scores_v_hat.csv`, and `summary.json` into `output` (created if missing).
    pub fn write(&self, output: &Path) -> Result<(), EvalError> {
        std::fs::create_dir_all(output).map_err(|source| EvalError::CreateDir { path: output.to_path_buf(), source })?;
        let s = &self.scores;
        write_file(&output.join("scores.csv"), scores_csv(&self.labels, &s.names, &s.brgsa))?;
        write_file(&output.join("thresholds.json"), self.thresholds_json())?;
        if self.ablation.is_some() {
            write_file(&output.join("scores_v.csv"), scores_csv(&self.labels, &s.names, &s.v))?;
            write_file(&output.join("scores_v_hat.csv"), scores_csv(&self.labels, &s.names, &s.v_hat))?;
        }
        let summary = serde_json::to_string_pretty(&self.summary()).expect("the summary serialises") + "\n";
        write_file(&output.join("summary.json"), summary)
    }

    fn thresholds_json(&self) -> String {
        serde_json::to_string_pretty(&self.thresholds).expect("thresholds serialise") + "\n"
    }

    /// Store the thresholds in the model directory (thresholds.json, recorded in model.json);
    /// returns the file written. For a validation corpus, never the test corpus.
    pub fn save_thresholds(&self, engine: &Engine) -> Result<PathBuf, EvalError> {
        let p = self.model_dir.join("thresholds.json");
        write_file(&p, self.thresholds_json())?;
        let mut pkg = engine.package.clone();
        pkg.manifest.thresholds = Some("thresholds.json".into());
        pkg.write_manifest().map_err(|e| EvalError::Manifest { path: self.model_dir.join("model.json"), source: e.into() })?;
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_fields_with_separators() {
        let csv = scores_csv(&["a,b".into(), "c".into()], &["x\"1".into()], &[vec![0.5, -1.0]]);
        assert_eq!(csv, "VolumeName,\"a,b\",c\n\"x\"\"1\",0.5,-1\n");
    }

    #[test]
    fn first_max_skips_non_finite() {
        assert_eq!(first_max(&[f32::NAN, 1.0, 3.0, 3.0, f32::INFINITY]), Some(2));
        assert_eq!(first_max(&[f32::NAN]), None);
    }

    #[test]
    fn hit_counts_sum_and_rate() {
        let mut m: BTreeMap<String, HitCount> = BTreeMap::new();
        m.entry("a".into()).or_default().add(true);
        m.entry("a".into()).or_default().add(false);
        m.entry("b".into()).or_default().add(true);
        let t = HitCount::sum(&m);
        assert_eq!(t, HitCount { hits: 2, total: 3 });
        assert_eq!(t.rate(), Some(2.0 / 3.0));
        assert_eq!(HitCount::default().rate(), None);
    }

    #[test]
    fn evaluate_skips_single_class_labels() {
        let labels = vec!["both".to_string(), "one".to_string()];
        let truth = vec![vec![true, true], vec![false, true], vec![true, true], vec![false, true]];
        let scores = vec![vec![0.9, 0.1], vec![0.2, 0.2], vec![0.8, 0.3], vec![0.1, 0.4]];
        let (r, skipped) = evaluate(&labels, &truth, &scores, 0);
        assert_eq!(skipped, vec!["one".to_string()]);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].label, "both");
        assert_eq!(r[0].auroc, 1.0);
    }
}
