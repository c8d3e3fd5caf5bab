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
//! grid) lies inside the mask. The run, the metrics and the files are
//! `radbridge_train::eval_run`; this module parses the flags, shows progress and prints.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use radbridge_model::analysis::Engine;
use radbridge_train::data::Corpus;
use radbridge_train::eval_run::{self, EvalOptions};

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

pub fn run(a: &EvalArgs) -> Result<()> {
    let corpus = Corpus::open(&a.data)?;
    let mut engine = Engine::load(&a.model).with_context(|| format!("{}: cannot load the model", a.model.display()))?;
    let prompts: BTreeMap<String, String> = match &a.prompts {
        Some(p) => {
            let t = std::fs::read_to_string(p).with_context(|| format!("{}: cannot read", p.display()))?;
            serde_json::from_str(&t).with_context(|| format!("{}: expected a JSON object label → prompt", p.display()))?
        }
        None => BTreeMap::new(),
    };
    let opts = EvalOptions {
        labels: a.labels.clone(),
        prompts,
        max_cases: a.max_cases,
        bootstrap: a.bootstrap,
        ablation: a.ablation,
        heatmap_method: a.heatmap_method,
        heatmap_layer: a.heatmap_layer,
    };
    let n_cases = a.max_cases.map_or(corpus.cases.len(), |m| m.min(corpus.cases.len()));
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let pb =
        ProgressBar::with_draw_target(Some(n_cases as u64), if tty { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() });
    pb.set_style(
        ProgressStyle::with_template("scoring [{bar:30}] {pos}/{len} {elapsed_precise} ETA {eta_precise}").unwrap().progress_chars("=> "),
    );
    let r = eval_run::run(&mut engine, &a.model, &corpus, &opts, &|| pb.inc(1))?;
    pb.finish_and_clear();

    r.write(&a.output)?;
    if a.save_thresholds {
        let p = r.save_thresholds(&engine)?;
        eprintln!("stored {} thresholds in {}", r.thresholds.thresholds.len(), p.display());
    }
    let (in_mask, _) = r.heatmap_totals();
    eprintln!(
        "{} cases, {} labels ({} skipped): mean AUROC {:.4}, weighted F1 {:.4}, accuracy {:.4}; heat-map peak in mask {}/{}; wrote {}",
        r.cases,
        r.results.len(),
        r.skipped.len(),
        r.mean.get("auroc").copied().unwrap_or(f64::NAN),
        r.mean.get("f1_weighted").copied().unwrap_or(f64::NAN),
        r.mean.get("accuracy").copied().unwrap_or(f64::NAN),
        in_mask.hits,
        in_mask.total,
        a.output.display()
    );
    if let Some(ab) = &r.ablation {
        // By name, the order of the keys of summary.json's "ablation".
        let mut ab: Vec<_> = ab.iter().collect();
        ab.sort_by_key(|x| x.name);
        for x in ab {
            eprintln!("  ablation {}: mean AUROC {:.4}", x.name, x.mean.get("auroc").copied().unwrap_or(f64::NAN));
        }
    }
    Ok(())
}
