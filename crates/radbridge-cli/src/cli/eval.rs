//! `radbridge eval`: score a labelled corpus with a model directory and report the official
//! metrics (spec §6).
//!
//! Contract: `radbridge eval --model <DIR> --data <DIR> [--prompts <FILE.json>] [--bootstrap N]
//! [--ablation] [--labels a,b,...] [--max-cases N] [--save-thresholds] --output <DIR>` writes
//! - `summary.json`: `{"labels": [{"label", "auroc", "f1_weighted", "accuracy", "precision",
//!   "recall", "auprc", "ci95": {metric: [lo, hi]}, "full_set": {...}, "threshold", "positives",
//!   "negatives", "bootstrap"}], "mean": {metric: value}, "skipped": [labels with one class],
//!   "heatmap_in_mask": {"hits", "total", "rate", "per_label"} (peak voxel inside the mask),
//!   "heatmap_peak_cell_overlaps_mask": {...} (the peak patch cell holds a mask voxel; the patch
//!   grid is coarser than most masks), "ablation" (with --ablation):
//!   {"v_only"|"v_hat_only"|"brgsa": {"mean": {...}, "labels": {label: auroc}}}, "prompts",
//!   "model", "data", "cases", "bootstrap"}`. With resampling the headline values are the
//!   bootstrap means (the official "Overall"), `full_set` the values on all cases.
//! - `scores.csv`: VolumeName + one column per label (the official layout), BrgSA's score.
//! - `thresholds.json`: the full-set thresholds in the model-directory format.
//! - with `--ablation`: `scores_v.csv` (cos(v, t)) and `scores_v_hat.csv` (cos(v̂, t)).
//!
//! Scores come from `analysis::Engine` (image encoded once per case, prompts embedded once),
//! so they are the numbers the app shows. The heat-map check: for each present label with a
//! mask, the peak of the patch-text similarity (the heat map's maximum cell, mapped to the CT
//! grid) lies inside the mask.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use radbridge_model::analysis::{Engine, ImageCode, TextCode};
use radbridge_train::data::Corpus;
use radbridge_train::eval;
use radbridge_volume::{self as volume, OpenOptions};
use serde_json::{json, Value};

#[derive(Args)]
pub struct EvalArgs {
    /// Model directory
    #[arg(long)]
    pub model: PathBuf,
    /// Labelled corpus (`radbridge synth` layout: cases.jsonl with labels, volumes, masks)
    #[arg(long)]
    pub data: PathBuf,
    /// JSON object label → prompt text, replacing the model's template for those labels
    #[arg(long)]
    pub prompts: Option<PathBuf>,
    /// Bootstrap resamples (0 = metrics on the full set only)
    #[arg(long, default_value_t = 5000)]
    pub bootstrap: usize,
    /// Also evaluate cos(v, t) alone and cos(v̂, t) alone
    #[arg(long)]
    pub ablation: bool,
    /// Comma-separated labels (default: every corpus label the model has)
    #[arg(long, value_delimiter = ',')]
    pub labels: Option<Vec<String>>,
    /// Evaluate the first N cases only
    #[arg(long)]
    pub max_cases: Option<usize>,
    /// Output folder
    #[arg(long, short)]
    pub output: PathBuf,
    /// Also store the thresholds in the model directory (thresholds.json, recorded in
    /// model.json): run this on a validation corpus, never on the test corpus
    #[arg(long)]
    pub save_thresholds: bool,
    /// How heat maps (for the peak-in-mask rate) are computed: gradient (the default; the
    /// score's gradient × activation at the ViT's middle block) or patch-cosine
    #[arg(long, default_value = "gradient")]
    pub heatmap_method: radbridge_model::heatmap::Method,
    /// For --heatmap-method gradient: the ViT block whose attention input is attributed
    /// (default: the last block of the first half, block 1 of 4 in the demo model)
    #[arg(long)]
    pub heatmap_layer: Option<usize>,
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

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn write_csv(path: &std::path::Path, labels: &[String], names: &[String], scores: &[Vec<f64>]) -> Result<()> {
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
    std::fs::write(path, s).with_context(|| format!("{}: cannot write", path.display()))
}

/// Evaluate every label; returns (results, skipped labels).
fn evaluate(labels: &[String], truth: &[Vec<bool>], scores: &[Vec<f64>], n_boot: usize) -> (Vec<eval::LabelResult>, Vec<String>) {
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

pub fn run(a: &EvalArgs) -> Result<()> {
    let corpus = Corpus::open(&a.data)?;
    let mut engine = Engine::load(&a.model).with_context(|| format!("{}: cannot load the model", a.model.display()))?;
    let patch = match &engine.net {
        radbridge_model::analysis::Net::Brgsa(m) => m.config().vision.patch_size,
        radbridge_model::analysis::Net::Ctclip(_) => bail!("{}: eval supports BrgSA models", a.model.display()),
    };
    let model_labels = engine.package.manifest.labels("all").unwrap_or_default();
    let labels: Vec<String> = match &a.labels {
        Some(l) => l.clone(),
        None => corpus.labels.iter().filter(|l| model_labels.is_empty() || model_labels.contains(l)).cloned().collect(),
    };
    if labels.is_empty() {
        bail!("{}: no labels to evaluate", a.data.display());
    }
    let overrides: BTreeMap<String, String> = match &a.prompts {
        Some(p) => {
            let t = std::fs::read_to_string(p).with_context(|| format!("{}: cannot read", p.display()))?;
            serde_json::from_str(&t).with_context(|| format!("{}: expected a JSON object label → prompt", p.display()))?
        }
        None => BTreeMap::new(),
    };
    for l in overrides.keys() {
        if !labels.contains(l) {
            tracing::warn!("--prompts: label {l:?} is not evaluated");
        }
    }
    let tpl = engine.package.manifest.prompts.clone();
    let prompts: Vec<String> = labels.iter().map(|l| overrides.get(l).cloned().unwrap_or_else(|| tpl.positive_for(l))).collect();
    let codes = engine.embed_prompts(&prompts)?;
    let texts: Vec<&[f32]> = codes.iter().map(TextCode::embedding).collect();

    let mut cases: Vec<&radbridge_train::data::CaseEntry> = corpus.cases.iter().collect();
    if let Some(m) = a.max_cases {
        cases.truncate(m);
    }
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let pb = ProgressBar::with_draw_target(
        Some(cases.len() as u64),
        if tty { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() },
    );
    pb.set_style(
        ProgressStyle::with_template("scoring [{bar:30}] {pos}/{len} {elapsed_precise} ETA {eta_precise}").unwrap().progress_chars("=> "),
    );
    let mut names = Vec::new();
    let mut truth: Vec<Vec<bool>> = Vec::new();
    let (mut s_mean, mut s_v, mut s_vh): (Vec<Vec<f64>>, Vec<Vec<f64>>, Vec<Vec<f64>>) = (vec![], vec![], vec![]);
    let mut hm_hits: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut cell_hits: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for case in &cases {
        let p = corpus.path(&case.volume);
        let loaded = volume::open(&p, &OpenOptions::default()).with_context(|| format!("{}: cannot open", p.display()))?;
        let canon = loaded.volume.canonical();
        let input = engine.preprocess(&canon);
        let x = engine.tensor(&input)?;
        let image = engine.encode_image_keeping(&x, a.heatmap_layer)?;
        let ImageCode::Brgsa { v, v_hat, grid, .. } = &image else { bail!("not a BrgSA image code") };
        let (mut rm, mut rv, mut rvh) = (Vec::new(), Vec::new(), Vec::new());
        let mut row_truth = Vec::new();
        for (j, l) in labels.iter().enumerate() {
            let (cv, cvh, m) = radbridge_model::zeroshot::brgsa_score(v, v_hat, texts[j]);
            rm.push(m as f64);
            rv.push(cv as f64);
            rvh.push(cvh as f64);
            let present = case.labels.get(l).copied().unwrap_or(0) == 1;
            row_truth.push(present);
            if present {
                if let Some(mask_rel) = case.masks.get(l) {
                    let mp = corpus.path(mask_rel);
                    let mask_loaded = volume::open(&mp, &OpenOptions { any_modality: true, ..Default::default() })
                        .with_context(|| format!("{}: cannot open mask", mp.display()))?;
                    let mask = mask_loaded.volume.canonical();
                    if mask.dims != canon.dims {
                        bail!("{}: mask grid {:?} differs from the CT {:?}", mp.display(), mask.dims, canon.dims);
                    }
                    let sims = engine
                        .patch_maps(&image, &[texts[j]], a.heatmap_method)?
                        .and_then(|mut m| m.pop())
                        .context("no patch map for a BrgSA model")?;
                    if let Some(peak) = radbridge_model::heatmap::grid_peak(&sims, *grid, patch, &input.geometry, &canon) {
                        let [i0, i1, i2] = peak.voxel;
                        let idx = i0 + canon.dims[0] * (i1 + canon.dims[1] * i2);
                        let inside = mask.voxels.get_f32(idx) > 0.0;
                        let e = hm_hits.entry(l.clone()).or_default();
                        e.0 += inside as usize;
                        e.1 += 1;
                    }
                    // Coarser: does the highest patch cell contain any mask voxel?
                    if let Some(best) = first_max(&sims) {
                        let cell = [best / (grid[1] * grid[2]), (best / grid[2]) % grid[1], best % grid[2]];
                        let [nx, ny, nz] = canon.dims;
                        let mut overlap = false;
                        'search: for k in 0..nz {
                            for jj in 0..ny {
                                for i in 0..nx {
                                    if mask.voxels.get_f32(i + nx * (jj + ny * k)) <= 0.0 {
                                        continue;
                                    }
                                    let m = input.geometry.model_index([i as f64, jj as f64, k as f64]);
                                    if (0..3).all(|a| (m[a].round() / patch[a] as f64).floor() as i64 == cell[a] as i64) {
                                        overlap = true;
                                        break 'search;
                                    }
                                }
                            }
                        }
                        let e = cell_hits.entry(l.clone()).or_default();
                        e.0 += overlap as usize;
                        e.1 += 1;
                    }
                }
            }
        }
        names.push(format!("{}.nii.gz", case.id));
        truth.push(row_truth);
        s_mean.push(rm);
        s_v.push(rv);
        s_vh.push(rvh);
        pb.inc(1);
    }
    pb.finish_and_clear();

    std::fs::create_dir_all(&a.output).with_context(|| format!("{}: cannot create", a.output.display()))?;
    write_csv(&a.output.join("scores.csv"), &labels, &names, &s_mean)?;
    let (results, skipped) = evaluate(&labels, &truth, &s_mean, a.bootstrap);
    let mean = eval::mean_metrics(&results);
    let thresholds = radbridge_model::zeroshot::Thresholds {
        version: 1,
        source: format!("radbridge eval: ROC point closest to (0,1) on {} ({} cases)", a.data.display(), cases.len()),
        // A corner point at (0, 0) gives +∞ (everything negative): no finite threshold to store.
        thresholds: results.iter().filter(|r| r.threshold.is_finite()).map(|r| (r.label.clone(), r.threshold as f32)).collect(),
    };
    std::fs::write(a.output.join("thresholds.json"), serde_json::to_string_pretty(&thresholds)? + "\n")?;
    if a.save_thresholds {
        let p = a.model.join("thresholds.json");
        std::fs::write(&p, serde_json::to_string_pretty(&thresholds)? + "\n").with_context(|| format!("{}: cannot write", p.display()))?;
        let mut pkg = engine.package.clone();
        pkg.manifest.thresholds = Some("thresholds.json".into());
        pkg.write_manifest()?;
        eprintln!("stored {} thresholds in {}", thresholds.thresholds.len(), p.display());
    }

    let (hits, total) = hm_hits.values().fold((0, 0), |(h, t), (a, b)| (h + a, t + b));
    let (chits, ctotal) = cell_hits.values().fold((0, 0), |(h, t), (a, b)| (h + a, t + b));
    let mut summary = json!({
        "labels": results,
        "mean": mean,
        "skipped": skipped,
        "heatmap_in_mask": {
            "method": a.heatmap_method.name(),
            "hits": hits,
            "total": total,
            "rate": if total > 0 { hits as f64 / total as f64 } else { f64::NAN },
            "per_label": hm_hits.iter().map(|(l, (h, t))| (l.clone(), json!({"hits": h, "total": t}))).collect::<BTreeMap<_, _>>(),
        },
        "heatmap_peak_cell_overlaps_mask": {
            "hits": chits,
            "total": ctotal,
            "rate": if ctotal > 0 { Some(chits as f64 / ctotal as f64) } else { None },
            "per_label": cell_hits.iter().map(|(l, (h, t))| (l.clone(), json!({"hits": h, "total": t}))).collect::<BTreeMap<_, _>>(),
        },
        "prompts": labels.iter().zip(&prompts).map(|(l, p)| (l.clone(), p.clone())).collect::<BTreeMap<_, _>>(),
        "model": {"dir": a.model.display().to_string(), "name": engine.package.manifest.name, "weights_sha256": engine.package.manifest.weights_sha256},
        "data": a.data.display().to_string(),
        "corpus_seed": corpus.seed,
        "cases": cases.len(),
        "bootstrap": a.bootstrap,
    });
    if total == 0 {
        summary["heatmap_in_mask"]["rate"] = Value::Null;
    }
    if a.ablation {
        write_csv(&a.output.join("scores_v.csv"), &labels, &names, &s_v)?;
        write_csv(&a.output.join("scores_v_hat.csv"), &labels, &names, &s_vh)?;
        let mut ab = serde_json::Map::new();
        for (key, sc) in [("v_only", &s_v), ("v_hat_only", &s_vh), ("brgsa", &s_mean)] {
            let (r, _) = evaluate(&labels, &truth, sc, 0);
            ab.insert(
                key.into(),
                json!({
                    "mean": eval::mean_metrics(&r),
                    "labels": r.iter().map(|x| (x.label.clone(), x.auroc)).collect::<BTreeMap<_, _>>(),
                }),
            );
        }
        summary["ablation"] = Value::Object(ab);
    }
    let sp = a.output.join("summary.json");
    std::fs::write(&sp, serde_json::to_string_pretty(&summary)? + "\n").with_context(|| format!("{}: cannot write", sp.display()))?;
    eprintln!(
        "{} cases, {} labels ({} skipped): mean AUROC {:.4}, weighted F1 {:.4}, accuracy {:.4}; heat-map peak in mask {}/{}; wrote {}",
        cases.len(),
        results.len(),
        skipped.len(),
        mean.get("auroc").copied().unwrap_or(f64::NAN),
        mean.get("f1_weighted").copied().unwrap_or(f64::NAN),
        mean.get("accuracy").copied().unwrap_or(f64::NAN),
        hits,
        total,
        a.output.display()
    );
    if let Some(Value::Object(ab)) = summary.get("ablation") {
        for (k, v) in ab {
            eprintln!("  ablation {k}: mean AUROC {:.4}", v["mean"]["auroc"].as_f64().unwrap_or(f64::NAN));
        }
    }
    Ok(())
}
