//! `radbridge eval`: the official metrics (spec §6), in two modes.
//!
//! Contract 1, a model over a labelled corpus: `radbridge eval --model <DIR> --data <DIR>
//! [--prompts <FILE.json>] [--bootstrap N] [--ablation] [--labels a,b,...] [--max-cases N]
//! [--save-thresholds] --output <DIR>` writes
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
//! Here `--labels` is a comma-separated label filter (repeatable).
//!
//! Contract 2, external validation of scores made elsewhere (`radbridge batch`, or contract 1's
//! `scores.csv`) on a hospital's own labels: `radbridge eval --scores <scores.csv> --labels
//! <labels.csv> [--thresholds <FILE.json>] [--model <DIR>] [--bootstrap N] --output <DIR>`.
//! With `--scores`, `--labels` is one path: the labels CSV (VolumeName + one 0/1 column per
//! label, the CT-RATE layout); `--model` is optional (its `thresholds.json` and its name in
//! summary.json), `--thresholds` (model-directory format) overrides the model's thresholds,
//! and `--data`, `--prompts`, `--ablation`, `--max-cases`, `--save-thresholds` and the heat-map
//! flags are refused. It writes `summary.json` (contract 1's keys, heat-map ones null, each
//! label gaining "at_model_threshold", plus "mean_at_model_thresholds", "model_thresholds",
//! "inputs", "id_matching", "unmatched": {"only_in_scores", "only_in_labels"},
//! "labels_only_in_scores", "labels_only_in_labels", "ignored_label_columns", "excluded"),
//! `roc.svg` and `report.html`. Matching, exclusions and every input error:
//! `radbridge_train::external`; the plot and the page: `radbridge_train::eval_report`. Any
//! input problem is one line naming the file, exit status 1.
//!
//! Contract 1's scores come from `analysis::Engine` (image encoded once per case, prompts
//! embedded once), so they are the numbers the app shows. The heat-map check: for each present
//! label with a mask, the peak of the patch-text similarity (the heat map's maximum cell,
//! mapped to the CT grid) lies inside the mask. The run, the metrics and the files are
//! `radbridge_train::eval_run`; this module parses the flags, shows progress and prints.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use radbridge_model::analysis::Engine;
use radbridge_train::data::Corpus;
use radbridge_train::eval_run::{self, EvalOptions};
use radbridge_train::external::{self, ExternalOptions, SHOW_IDS};

#[derive(Args)]
pub struct EvalArgs {
    /// Model directory (required with --data; with --scores optional: its thresholds.json and
    /// its name in summary.json)
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Labelled corpus (`radbridge synth` layout: cases.jsonl with labels, volumes, masks)
    #[arg(long, conflicts_with = "scores")]
    pub data: Option<PathBuf>,
    /// External validation: a scores CSV (VolumeName + one column per label, the official
    /// layout) made by `radbridge batch` or an earlier `radbridge eval`; needs --labels <CSV>
    #[arg(long, requires = "labels")]
    pub scores: Option<PathBuf>,
    /// With --scores: the model's thresholds (model-directory thresholds.json format; default:
    /// those of --model)
    #[arg(long, requires = "scores")]
    pub thresholds: Option<PathBuf>,
    /// JSON object label → prompt text, replacing the model's template for those labels
    #[arg(long, conflicts_with = "scores")]
    pub prompts: Option<PathBuf>,
    /// Bootstrap resamples (0 = metrics on the full set only)
    #[arg(long, default_value_t = 5000)]
    pub bootstrap: usize,
    /// Also evaluate cos(v, t) alone and cos(v̂, t) alone
    #[arg(long, conflicts_with = "scores")]
    pub ablation: bool,
    /// With --data: comma-separated labels (default: every corpus label the model has). With
    /// --scores: the labels CSV (VolumeName + one 0/1 column per label), one path
    #[arg(long)]
    pub labels: Option<Vec<String>>,
    /// Evaluate the first N cases only
    #[arg(long, conflicts_with = "scores")]
    pub max_cases: Option<usize>,
    /// Output folder
    #[arg(long, short)]
    pub output: PathBuf,
    /// Also store the thresholds in the model directory (thresholds.json, recorded in
    /// model.json): run this on a validation corpus, never on the test corpus
    #[arg(long, conflicts_with = "scores")]
    pub save_thresholds: bool,
    /// How heat maps (for the peak-in-mask rate) are computed: gradient (the default; the
    /// score's gradient × activation at the ViT's middle block) or patch-cosine
    #[arg(long, default_value = "gradient", conflicts_with = "scores")]
    pub heatmap_method: radbridge_model::heatmap::Method,
    /// For --heatmap-method gradient: the ViT block whose attention input is attributed
    /// (default: the last block of the first half, block 1 of 4 in the demo model)
    #[arg(long, conflicts_with = "scores")]
    pub heatmap_layer: Option<usize>,
}

/// The label filter of contract 1: every `--labels` value split at commas.
fn label_filter(labels: &Option<Vec<String>>) -> Option<Vec<String>> {
    labels.as_ref().map(|v| v.iter().flat_map(|s| s.split(',')).map(str::to_string).collect())
}

pub fn run(a: &EvalArgs) -> Result<()> {
    if let Some(scores) = &a.scores {
        return run_external(a, scores);
    }
    let (Some(model), Some(data)) = (&a.model, &a.data) else {
        bail!("eval: give --model <DIR> --data <DIR> (a labelled corpus), or --scores <CSV> --labels <CSV> (external validation)");
    };
    let corpus = Corpus::open(data)?;
    let mut engine = Engine::load(model).with_context(|| format!("{}: cannot load the model", model.display()))?;
    let prompts: BTreeMap<String, String> = match &a.prompts {
        Some(p) => {
            let t = std::fs::read_to_string(p).with_context(|| format!("{}: cannot read", p.display()))?;
            serde_json::from_str(&t).with_context(|| format!("{}: expected a JSON object label → prompt", p.display()))?
        }
        None => BTreeMap::new(),
    };
    let opts = EvalOptions {
        labels: label_filter(&a.labels),
        prompts,
        max_cases: a.max_cases,
        bootstrap: a.bootstrap,
        ablation: a.ablation,
        heatmap_method: a.heatmap_method,
        heatmap_layer: a.heatmap_layer,
    };
    let n_cases = a.max_cases.map_or(corpus.cases.len(), |m| m.min(corpus.cases.len()));
    let pb = super::common::counter_bar(n_cases as u64, "scoring [{bar:30}] {pos}/{len} {elapsed_precise} ETA {eta_precise}");
    let r = eval_run::run(&mut engine, model, &corpus, &opts, &|| pb.inc(1))?;
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

/// The first `SHOW_IDS` of `ids`, with how many more.
fn first_ids(ids: &[String]) -> String {
    let shown: Vec<&str> = ids.iter().take(SHOW_IDS).map(String::as_str).collect();
    let more = ids.len().saturating_sub(SHOW_IDS);
    if more > 0 {
        format!("{} … and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

/// Contract 2: external validation of a scores CSV against a labels CSV.
fn run_external(a: &EvalArgs, scores: &std::path::Path) -> Result<()> {
    let labels = match a.labels.as_deref() {
        Some([one]) => PathBuf::from(one),
        _ => bail!("eval --scores: --labels takes exactly one path, the labels CSV (VolumeName + one 0/1 column per label)"),
    };
    let opts = ExternalOptions {
        scores: scores.to_path_buf(),
        labels,
        thresholds: a.thresholds.clone(),
        model: a.model.clone(),
        bootstrap: a.bootstrap,
    };
    let r = external::run(&opts)?;
    let m = &r.matching;
    if m.how == external::IdMatching::ExtensionStripped {
        eprintln!("no id matched exactly: matched with .nii.gz/.nii stripped");
    }
    if !m.only_in_scores.is_empty() {
        eprintln!("{} ids only in {}: {}", m.only_in_scores.len(), opts.scores.display(), first_ids(&m.only_in_scores));
    }
    if !m.only_in_labels.is_empty() {
        eprintln!("{} ids only in {}: {}", m.only_in_labels.len(), opts.labels.display(), first_ids(&m.only_in_labels));
    }
    if !r.labels_only_in_scores.is_empty() {
        eprintln!("labels only in {}: {}", opts.scores.display(), r.labels_only_in_scores.join(", "));
    }
    if !r.labels_only_in_labels.is_empty() {
        eprintln!("labels only in {}: {}", opts.labels.display(), r.labels_only_in_labels.join(", "));
    }
    if !r.ignored_label_columns.is_empty() {
        eprintln!("empty columns of {} ignored: {}", opts.labels.display(), r.ignored_label_columns.join(", "));
    }
    for (l, x) in &r.excluded {
        if x.non_finite_score + x.missing_label > 0 {
            eprintln!(
                "{l}: {} cases excluded ({} without a finite score, {} without a label)",
                x.non_finite_score + x.missing_label,
                x.non_finite_score,
                x.missing_label
            );
        }
    }
    if !r.skipped.is_empty() {
        eprintln!("skipped (one class): {}", r.skipped.join(", "));
    }
    match &r.thresholds_path {
        None => eprintln!("no model thresholds (give --thresholds or --model): at_model_threshold is null"),
        Some(p) if !r.without_model_threshold.is_empty() => {
            eprintln!("{}: no threshold for {}", p.display(), r.without_model_threshold.join(", "))
        }
        Some(_) => {}
    }
    r.write(&a.output)?;
    let get = |m: &BTreeMap<String, f64>, k: &str| m.get(k).copied().unwrap_or(f64::NAN);
    eprintln!(
        "{} cases, {} labels ({} skipped): mean AUROC {:.4}, weighted F1 {:.4} (ROC-optimal thresholds), {} (model thresholds); wrote {}",
        r.cases(),
        r.outcomes.len(),
        r.skipped.len(),
        get(&r.mean, "auroc"),
        get(&r.mean, "f1_weighted"),
        r.mean_at_model_thresholds.get("f1_weighted").map_or("n/a".to_string(), |v| format!("{v:.4}")),
        a.output.display()
    );
    Ok(())
}
