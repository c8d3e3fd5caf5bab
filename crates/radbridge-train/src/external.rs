//! External validation (`radbridge eval --scores <CSV> --labels <CSV>`): a model's scores,
//! produced elsewhere (`radbridge batch`, or the `scores.csv` of `radbridge eval`), checked
//! against a hospital's own labels with the official protocol (`eval`), and at the model's own
//! stored thresholds.
//!
//! Inputs:
//! - scores CSV: `VolumeName` + one column per label (the official CT-RATE layout, as
//!   `eval_run::scores_csv` writes). A cell is a number; an empty cell, `NaN` or `±inf` is a
//!   failed study: that case is left out of that label only, and counted
//!   (`excluded.<label>.non_finite_score`). Any other text is an error naming file, row, column.
//! - labels CSV (CT-RATE layout): `VolumeName` + one column per label with `0`/`1` (`0.0`/`1.0`
//!   too). An empty cell is an unknown truth: left out of that label and counted
//!   (`excluded.<label>.missing_label`). A column whose every cell is empty is not a label
//!   (`ignored_label_columns`); any other value is an error naming file, row and column.
//!   Each excluded case is counted once, as `non_finite_score` when both apply.
//! - Labels are matched by column name; ids (`VolumeName`) exactly, or, when no id matches
//!   exactly, with a trailing `.nii.gz` / `.nii` (any case) stripped on both sides (CT-RATE
//!   names volumes `valid_1_a_1.nii.gz`; batch ids may lack the extension). The cases are the
//!   matched ids, in the order of the scores file. Ids and labels present in one file only are
//!   reported, never an error, unless nothing matches.
//! - model thresholds: `--thresholds FILE` (the model-directory `thresholds.json` format), else
//!   the `thresholds.json` named by the manifest of `--model` when given.
//!
//! Every input problem (unreadable or empty file, no `VolumeName` column, no label column, a
//! duplicate column or id, a bad cell, no matching id, no common label, a bad thresholds file)
//! is one [`ExternalError`] naming the file, raised before any metric is computed.
//!
//! Outputs ([`ExternalRun::write`]): `summary.json` ([`ExternalRun::summary`], the schema of
//! `eval_run::EvalRun::summary` plus the fields of external validation), `roc.svg` and
//! `report.html` (`eval_report`).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use radbridge_model::package::{ModelPackage, PackageError};
use radbridge_model::zeroshot::Thresholds;
use radbridge_model::ModelError;
use radbridge_volume::atomic;
use serde_json::{json, Value};

use crate::eval::{self, LabelResult};
use crate::eval_report::{self, ReportInput, ReportRow, RocCurve};

/// The id column of both files.
pub const ID_COLUMN: &str = "VolumeName";

/// How many ids of each unmatched list are printed (summary.json has them all).
pub const SHOW_IDS: usize = 5;

/// Errors of external validation; each names the file concerned.
#[derive(Debug, thiserror::Error)]
pub enum ExternalError {
    #[error("{path}: cannot read")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}: empty file")]
    Empty(PathBuf),
    #[error("{path}: invalid CSV")]
    Csv {
        path: PathBuf,
        #[source]
        source: csv::Error,
    },
    #[error("{0}: no {ID_COLUMN} column in the header")]
    NoIdColumn(PathBuf),
    #[error("{path}: column {column:?} appears twice in the header")]
    DuplicateColumn { path: PathBuf, column: String },
    #[error("{0}: no label column besides {ID_COLUMN}")]
    NoLabelColumns(PathBuf),
    #[error("{0}: no rows after the header")]
    NoRows(PathBuf),
    #[error("{path}: row {row}: empty {ID_COLUMN}")]
    EmptyId { path: PathBuf, row: u64 },
    #[error("{path}: row {row}: {ID_COLUMN} {id:?} repeats row {first}{}", if *.stripped { " (with .nii.gz/.nii stripped)" } else { "" })]
    DuplicateId { path: PathBuf, row: u64, first: u64, id: String, stripped: bool },
    #[error("{path}: row {row}, column {column:?}: {value:?} is not a number")]
    BadScore { path: PathBuf, row: u64, column: String, value: String },
    #[error("{path}: row {row}, column {column:?}: {value:?} is not 0 or 1")]
    BadLabel { path: PathBuf, row: u64, column: String, value: String },
    #[error(
        "{labels}: no {ID_COLUMN} matches one of {scores}, even with .nii.gz/.nii stripped (labels has {label_ids:?}…, scores has {score_ids:?}…)"
    )]
    NoMatchingIds { scores: PathBuf, labels: PathBuf, score_ids: Vec<String>, label_ids: Vec<String> },
    #[error("{labels}: no label column in common with {scores} (labels has {label_names:?}, scores has {score_names:?})")]
    NoCommonLabel { scores: PathBuf, labels: PathBuf, score_names: Vec<String>, label_names: Vec<String> },
    #[error("{0}: thresholds file not found")]
    ThresholdsMissing(PathBuf),
    #[error("{path}: cannot read the thresholds")]
    Thresholds {
        path: PathBuf,
        #[source]
        source: ModelError,
    },
    #[error("{path}: cannot open the model directory")]
    Model {
        path: PathBuf,
        #[source]
        source: PackageError,
    },
    #[error("{path}: cannot draw the ROC curves: {reason}")]
    Plot { path: PathBuf, reason: String },
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
}

/// A CSV table in the CT-RATE layout: ids, label columns and one value per cell (NaN for an
/// empty or non-finite cell).
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub path: PathBuf,
    pub ids: Vec<String>,
    /// The line of each id's row in the file (the header is line 1).
    pub rows: Vec<u64>,
    pub labels: Vec<String>,
    /// rows × labels.
    pub values: Vec<Vec<f64>>,
    /// Columns left out: in a labels file, those whose every cell is empty.
    pub ignored: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Scores,
    Labels,
}

fn parse_cell(kind: Kind, path: &Path, row: u64, column: &str, cell: &str) -> Result<f64, ExternalError> {
    if cell.is_empty() {
        return Ok(f64::NAN);
    }
    let parsed = cell.parse::<f64>();
    match kind {
        Kind::Scores => parsed.map_err(|_| ExternalError::BadScore {
            path: path.to_path_buf(),
            row,
            column: column.to_string(),
            value: cell.to_string(),
        }),
        Kind::Labels => match parsed {
            Ok(v) if v == 0.0 || v == 1.0 => Ok(v),
            _ => Err(ExternalError::BadLabel { path: path.to_path_buf(), row, column: column.to_string(), value: cell.to_string() }),
        },
    }
}

fn read_table(path: &Path, kind: Kind) -> Result<Table, ExternalError> {
    let bytes = std::fs::read(path).map_err(|source| ExternalError::Read { path: path.to_path_buf(), source })?;
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF".as_slice()).unwrap_or(&bytes);
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ExternalError::Empty(path.to_path_buf()));
    }
    let csv_err = |source| ExternalError::Csv { path: path.to_path_buf(), source };
    let mut rd = csv::ReaderBuilder::new().has_headers(true).trim(csv::Trim::All).from_reader(bytes);
    let header: Vec<String> = rd.headers().map_err(csv_err)?.iter().map(str::to_string).collect();
    let mut seen = std::collections::HashSet::new();
    for h in &header {
        if !seen.insert(h.as_str()) {
            return Err(ExternalError::DuplicateColumn { path: path.to_path_buf(), column: h.clone() });
        }
    }
    let id_col = header.iter().position(|h| h == ID_COLUMN).ok_or_else(|| ExternalError::NoIdColumn(path.to_path_buf()))?;
    let cols: Vec<usize> = (0..header.len()).filter(|&c| c != id_col).collect();
    if cols.is_empty() {
        return Err(ExternalError::NoLabelColumns(path.to_path_buf()));
    }
    let mut t = Table {
        path: path.to_path_buf(),
        ids: Vec::new(),
        rows: Vec::new(),
        labels: cols.iter().filter_map(|&c| header.get(c).cloned()).collect(),
        values: Vec::new(),
        ignored: Vec::new(),
    };
    let mut first_row: HashMap<String, u64> = HashMap::new();
    for rec in rd.records() {
        let rec = rec.map_err(csv_err)?;
        // Records have the header's length (the reader is not flexible).
        let row = rec.position().map_or(0, |p| p.line());
        let id = rec.get(id_col).unwrap_or_default();
        if id.is_empty() {
            return Err(ExternalError::EmptyId { path: path.to_path_buf(), row });
        }
        if let Some(&first) = first_row.get(id) {
            return Err(ExternalError::DuplicateId { path: path.to_path_buf(), row, first, id: id.to_string(), stripped: false });
        }
        first_row.insert(id.to_string(), row);
        let mut vals = Vec::with_capacity(cols.len());
        for (&c, name) in cols.iter().zip(&t.labels) {
            vals.push(parse_cell(kind, path, row, name, rec.get(c).unwrap_or_default())?);
        }
        t.ids.push(id.to_string());
        t.rows.push(row);
        t.values.push(vals);
    }
    if t.ids.is_empty() {
        return Err(ExternalError::NoRows(path.to_path_buf()));
    }
    if kind == Kind::Labels {
        let keep: Vec<bool> = (0..t.labels.len()).map(|j| t.values.iter().any(|r| r.get(j).is_some_and(|v| !v.is_nan()))).collect();
        if keep.iter().any(|k| !k) {
            let pick = |v: &[f64]| -> Vec<f64> { v.iter().zip(&keep).filter(|(_, &k)| k).map(|(x, _)| *x).collect() };
            t.ignored = t.labels.iter().zip(&keep).filter(|(_, &k)| !k).map(|(l, _)| l.clone()).collect();
            t.labels = t.labels.iter().zip(&keep).filter(|(_, &k)| k).map(|(l, _)| l.clone()).collect();
            t.values = t.values.iter().map(|r| pick(r)).collect();
            if t.labels.is_empty() {
                return Err(ExternalError::NoLabelColumns(path.to_path_buf()));
            }
        }
    }
    Ok(t)
}

/// Read a scores CSV (see the module doc).
pub fn read_scores(path: &Path) -> Result<Table, ExternalError> {
    read_table(path, Kind::Scores)
}

/// Read a labels CSV (see the module doc).
pub fn read_labels(path: &Path) -> Result<Table, ExternalError> {
    read_table(path, Kind::Labels)
}

/// `id` without a trailing `.nii.gz` or `.nii` (any case).
pub fn strip_extension(id: &str) -> &str {
    for ext in [".nii.gz", ".nii"] {
        let n = id.len();
        if n >= ext.len() {
            if let (Some(stem), Some(tail)) = (id.get(..n - ext.len()), id.get(n - ext.len()..)) {
                if tail.eq_ignore_ascii_case(ext) {
                    return stem;
                }
            }
        }
    }
    id
}

/// How the ids were matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdMatching {
    Exact,
    /// With `.nii.gz` / `.nii` stripped on both sides (no id matched exactly).
    ExtensionStripped,
}

impl IdMatching {
    pub fn name(self) -> &'static str {
        match self {
            IdMatching::Exact => "exact",
            IdMatching::ExtensionStripped => "extension_stripped",
        }
    }
}

/// Pairs of (scores row, labels row) for matched ids, with what matched nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct Matching {
    pub how: IdMatching,
    /// (scores row index, labels row index), in the order of the scores file.
    pub pairs: Vec<(usize, usize)>,
    pub only_in_scores: Vec<String>,
    pub only_in_labels: Vec<String>,
}

/// A map key → row index; a key seen twice is a duplicate id of `t` (only possible with
/// stripped keys: exact duplicates fail when reading).
fn index_of(t: &Table, strip: bool) -> Result<HashMap<&str, usize>, ExternalError> {
    let mut m: HashMap<&str, usize> = HashMap::with_capacity(t.ids.len());
    for (i, id) in t.ids.iter().enumerate() {
        let key = if strip { strip_extension(id) } else { id.as_str() };
        if let Some(&first) = m.get(key) {
            return Err(ExternalError::DuplicateId {
                path: t.path.clone(),
                row: t.rows.get(i).copied().unwrap_or(0),
                first: t.rows.get(first).copied().unwrap_or(0),
                id: id.clone(),
                stripped: strip,
            });
        }
        m.insert(key, i);
    }
    Ok(m)
}

fn pair_ids(scores: &Table, labels: &Table, strip: bool) -> Result<Vec<(usize, usize)>, ExternalError> {
    let idx = index_of(labels, strip)?;
    if strip {
        index_of(scores, true)?;
    }
    Ok(scores
        .ids
        .iter()
        .enumerate()
        .filter_map(|(i, id)| idx.get(if strip { strip_extension(id) } else { id.as_str() }).map(|&j| (i, j)))
        .collect())
}

/// Match the ids of the two tables: exactly, else with the extensions stripped.
pub fn match_ids(scores: &Table, labels: &Table) -> Result<Matching, ExternalError> {
    let mut how = IdMatching::Exact;
    let mut pairs = pair_ids(scores, labels, false)?;
    if pairs.is_empty() {
        how = IdMatching::ExtensionStripped;
        pairs = pair_ids(scores, labels, true)?;
    }
    if pairs.is_empty() {
        let first = |t: &Table| t.ids.iter().take(3).cloned().collect();
        return Err(ExternalError::NoMatchingIds {
            scores: scores.path.clone(),
            labels: labels.path.clone(),
            score_ids: first(scores),
            label_ids: first(labels),
        });
    }
    let mut in_s = vec![false; scores.ids.len()];
    let mut in_l = vec![false; labels.ids.len()];
    for &(i, j) in &pairs {
        if let Some(x) = in_s.get_mut(i) {
            *x = true;
        }
        if let Some(x) = in_l.get_mut(j) {
            *x = true;
        }
    }
    let unmatched =
        |t: &Table, used: &[bool]| -> Vec<String> { t.ids.iter().zip(used).filter(|(_, &u)| !u).map(|(id, _)| id.clone()).collect() };
    Ok(Matching { how, only_in_scores: unmatched(scores, &in_s), only_in_labels: unmatched(labels, &in_l), pairs })
}

/// Cases left out of one label.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Excluded {
    /// Empty, NaN or infinite score.
    pub non_finite_score: usize,
    /// Empty cell in the labels file.
    pub missing_label: usize,
}

/// One label's cases: truth and score, with the excluded ones counted.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelData {
    pub label: String,
    pub y: Vec<bool>,
    pub s: Vec<f64>,
    pub excluded: Excluded,
}

/// The label columns of both files, by name: (common in scores order, only in scores, only in
/// labels).
pub fn match_labels(scores: &Table, labels: &Table) -> (Vec<String>, Vec<String>, Vec<String>) {
    let common: Vec<String> = scores.labels.iter().filter(|l| labels.labels.contains(l)).cloned().collect();
    let only_s = scores.labels.iter().filter(|l| !common.contains(l)).cloned().collect();
    let only_l = labels.labels.iter().filter(|l| !common.contains(l)).cloned().collect();
    (common, only_s, only_l)
}

/// The cases of `label` over the matched pairs, leaving out non-finite scores and missing truth.
pub fn label_data(label: &str, scores: &Table, labels: &Table, pairs: &[(usize, usize)]) -> LabelData {
    let js = scores.labels.iter().position(|l| l == label);
    let jl = labels.labels.iter().position(|l| l == label);
    let mut d = LabelData { label: label.to_string(), y: Vec::new(), s: Vec::new(), excluded: Excluded::default() };
    for &(i, k) in pairs {
        let s = js.and_then(|j| scores.values.get(i)?.get(j).copied()).unwrap_or(f64::NAN);
        let y = jl.and_then(|j| labels.values.get(k)?.get(j).copied()).unwrap_or(f64::NAN);
        if !s.is_finite() {
            d.excluded.non_finite_score += 1;
        } else if y.is_nan() {
            d.excluded.missing_label += 1;
        } else {
            d.y.push(y == 1.0);
            d.s.push(s);
        }
    }
    d
}

/// What to evaluate.
#[derive(Debug, Clone)]
pub struct ExternalOptions {
    pub scores: PathBuf,
    pub labels: PathBuf,
    /// The model's thresholds (model-directory `thresholds.json` format); default: those of
    /// `model`.
    pub thresholds: Option<PathBuf>,
    /// The model directory the scores came from (its thresholds and name).
    pub model: Option<PathBuf>,
    /// Bootstrap resamples (0 = metrics on the full set only).
    pub bootstrap: usize,
}

/// The model named in summary.json.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    pub dir: PathBuf,
    pub name: String,
    pub weights_sha256: String,
}

/// One evaluated label: at the ROC-optimal threshold of this set, and at the model's.
#[derive(Debug, Clone)]
pub struct LabelOutcome {
    pub result: LabelResult,
    pub at_model_threshold: Option<LabelResult>,
    /// The ROC curve on all of the label's cases (for roc.svg).
    pub roc: eval::Roc,
}

/// The outcome of external validation.
#[derive(Debug, Clone)]
pub struct ExternalRun {
    pub opts: ExternalOptions,
    pub model: Option<ModelInfo>,
    /// The thresholds file used, if any.
    pub thresholds_path: Option<PathBuf>,
    pub matching: Matching,
    /// The labels of both files.
    pub labels: Vec<String>,
    pub labels_only_in_scores: Vec<String>,
    pub labels_only_in_labels: Vec<String>,
    /// Label columns of the labels file left out (every cell empty).
    pub ignored_label_columns: Vec<String>,
    pub outcomes: Vec<LabelOutcome>,
    /// Labels with a single class (or no case) after the exclusions.
    pub skipped: Vec<String>,
    pub excluded: BTreeMap<String, Excluded>,
    pub mean: BTreeMap<String, f64>,
    pub mean_at_model_thresholds: BTreeMap<String, f64>,
    /// Evaluated labels without a model threshold.
    pub without_model_threshold: Vec<String>,
}

/// Load the thresholds: `--thresholds FILE` (must exist), else the model's (none if its
/// manifest names none or the file is absent, as `analysis::Engine` does).
fn load_thresholds(opts: &ExternalOptions, package: Option<&ModelPackage>) -> Result<(Option<PathBuf>, Option<Thresholds>), ExternalError> {
    let path = match (&opts.thresholds, package) {
        (Some(p), _) => {
            if !p.is_file() {
                return Err(ExternalError::ThresholdsMissing(p.clone()));
            }
            p.clone()
        }
        (None, Some(pkg)) => match &pkg.manifest.thresholds {
            Some(t) => pkg.path(t),
            None => return Ok((None, None)),
        },
        (None, None) => return Ok((None, None)),
    };
    let t = Thresholds::load(&path).map_err(|source| ExternalError::Thresholds { path: path.clone(), source })?;
    Ok((t.is_some().then_some(path), t))
}

/// Read and match the inputs, then evaluate every common label. Every input error comes
/// before any metric.
pub fn run(opts: &ExternalOptions) -> Result<ExternalRun, ExternalError> {
    let package = match &opts.model {
        Some(d) => Some(ModelPackage::open(d).map_err(|source| ExternalError::Model { path: d.clone(), source })?),
        None => None,
    };
    let (thresholds_path, thresholds) = load_thresholds(opts, package.as_ref())?;
    let scores = read_scores(&opts.scores)?;
    let labels = read_labels(&opts.labels)?;
    let (common, labels_only_in_scores, labels_only_in_labels) = match_labels(&scores, &labels);
    if common.is_empty() {
        return Err(ExternalError::NoCommonLabel {
            scores: scores.path.clone(),
            labels: labels.path.clone(),
            score_names: scores.labels.clone(),
            label_names: labels.labels.clone(),
        });
    }
    let matching = match_ids(&scores, &labels)?;

    let mut outcomes = Vec::new();
    let mut skipped = Vec::new();
    let mut excluded = BTreeMap::new();
    let mut without_model_threshold = Vec::new();
    for l in &common {
        let d = label_data(l, &scores, &labels, &matching.pairs);
        excluded.insert(l.clone(), d.excluded);
        let (Some(result), Some(roc)) = (eval::evaluate_label(l, &d.y, &d.s, opts.bootstrap), eval::roc_curve(&d.y, &d.s)) else {
            skipped.push(l.clone());
            continue;
        };
        let model_thr = thresholds.as_ref().and_then(|t| t.get(l));
        let at_model_threshold = model_thr.and_then(|t| eval::evaluate_at(l, &d.y, &d.s, t as f64, opts.bootstrap));
        if at_model_threshold.is_none() {
            without_model_threshold.push(l.clone());
        }
        outcomes.push(LabelOutcome { result, at_model_threshold, roc });
    }
    let results: Vec<LabelResult> = outcomes.iter().map(|o| o.result.clone()).collect();
    let at_model: Vec<LabelResult> = outcomes.iter().filter_map(|o| o.at_model_threshold.clone()).collect();
    Ok(ExternalRun {
        opts: opts.clone(),
        model: package.map(|p| ModelInfo {
            dir: p.dir.clone(),
            name: p.manifest.name.clone(),
            weights_sha256: p.manifest.weights_sha256.clone(),
        }),
        thresholds_path,
        matching,
        labels: common,
        labels_only_in_scores,
        labels_only_in_labels,
        ignored_label_columns: labels.ignored.clone(),
        outcomes,
        skipped,
        excluded,
        mean: eval::mean_metrics(&results),
        mean_at_model_thresholds: eval::mean_metrics(&at_model),
        without_model_threshold,
    })
}

fn write_file(path: &Path, bytes: impl AsRef<[u8]>) -> Result<(), ExternalError> {
    atomic::write(path, bytes).map_err(|source| ExternalError::Write { path: path.to_path_buf(), source })
}

impl ExternalRun {
    /// Matched cases.
    pub fn cases(&self) -> usize {
        self.matching.pairs.len()
    }

    /// The `summary.json` document. The keys of `eval_run::EvalRun::summary` ("labels",
    /// "mean", "skipped", "prompts" = {}, "model" = {"dir", "name", "weights_sha256"} or null
    /// without `--model`, "data" = the labels file, "corpus_seed" = null, "cases", "bootstrap";
    /// "heatmap_in_mask" and "heatmap_peak_cell_overlaps_mask" = null: no masks here), each
    /// label object gaining "at_model_threshold" (a label object at the model's threshold with
    /// the same resamples, or null), plus "mean_at_model_thresholds" (over the labels with a
    /// model threshold), "model_thresholds" = {"file", "labels_without"}, "inputs" =
    /// {"scores", "labels", "thresholds"}, "id_matching" ("exact" | "extension_stripped"),
    /// "unmatched" = {"only_in_scores", "only_in_labels"}, "labels_only_in_scores",
    /// "labels_only_in_labels", "ignored_label_columns", "excluded" = {label:
    /// {"non_finite_score", "missing_label"}} for every common label.
    pub fn summary(&self) -> Value {
        let labels: Vec<Value> = self
            .outcomes
            .iter()
            .map(|o| {
                let mut v = serde_json::to_value(&o.result).unwrap_or(Value::Null);
                if let Value::Object(m) = &mut v {
                    let at = o.at_model_threshold.as_ref().and_then(|r| serde_json::to_value(r).ok()).unwrap_or(Value::Null);
                    m.insert("at_model_threshold".into(), at);
                }
                v
            })
            .collect();
        let path_str = |p: &Path| p.display().to_string();
        json!({
            "labels": labels,
            "mean": self.mean,
            "mean_at_model_thresholds": self.mean_at_model_thresholds,
            "skipped": self.skipped,
            "heatmap_in_mask": Value::Null,
            "heatmap_peak_cell_overlaps_mask": Value::Null,
            "prompts": {},
            "model": self.model.as_ref().map(|m| json!({"dir": path_str(&m.dir), "name": m.name, "weights_sha256": m.weights_sha256})),
            "model_thresholds": {
                "file": self.thresholds_path.as_deref().map(path_str),
                "labels_without": self.without_model_threshold,
            },
            "data": path_str(&self.opts.labels),
            "corpus_seed": Value::Null,
            "cases": self.cases(),
            "bootstrap": self.opts.bootstrap,
            "inputs": {
                "scores": path_str(&self.opts.scores),
                "labels": path_str(&self.opts.labels),
                "thresholds": self.thresholds_path.as_deref().map(path_str),
            },
            "id_matching": self.matching.how.name(),
            "unmatched": {"only_in_scores": self.matching.only_in_scores, "only_in_labels": self.matching.only_in_labels},
            "labels_only_in_scores": self.labels_only_in_scores,
            "labels_only_in_labels": self.labels_only_in_labels,
            "ignored_label_columns": self.ignored_label_columns,
            "excluded": self.excluded,
        })
    }

    /// `roc.svg`: one curve per evaluated label.
    pub fn roc_svg(&self) -> Result<String, String> {
        let curves: Vec<RocCurve> =
            self.outcomes.iter().map(|o| RocCurve { label: &o.result.label, roc: &o.roc, auroc: o.result.full_set.auroc }).collect();
        eval_report::roc_svg(&curves)
    }

    /// `report.html` around the `roc.svg` text.
    pub fn report_html(&self, svg: &str) -> String {
        let rows: Vec<ReportRow> = self
            .outcomes
            .iter()
            .map(|o| ReportRow {
                optimal: &o.result,
                at_model: o.at_model_threshold.as_ref(),
                excluded: self.excluded.get(&o.result.label).map_or(0, |x| x.non_finite_score + x.missing_label),
            })
            .collect();
        let scores = self.opts.scores.display().to_string();
        let labels = self.opts.labels.display().to_string();
        eval_report::report_html(&ReportInput {
            scores: &scores,
            labels: &labels,
            model: self.model.as_ref().map(|m| m.name.as_str()),
            cases: self.cases(),
            bootstrap: self.opts.bootstrap,
            rows: &rows,
            mean: &self.mean,
            mean_at_model: &self.mean_at_model_thresholds,
            only_in_scores: &self.matching.only_in_scores,
            only_in_labels: &self.matching.only_in_labels,
            labels_only_in_scores: &self.labels_only_in_scores,
            labels_only_in_labels: &self.labels_only_in_labels,
            skipped: &self.skipped,
            svg,
        })
    }

    /// Write `summary.json`, `roc.svg` and `report.html` into `output` (created if missing).
    pub fn write(&self, output: &Path) -> Result<(), ExternalError> {
        std::fs::create_dir_all(output).map_err(|source| ExternalError::CreateDir { path: output.to_path_buf(), source })?;
        let svg_path = output.join("roc.svg");
        let svg = self.roc_svg().map_err(|reason| ExternalError::Plot { path: svg_path.clone(), reason })?;
        let summary = serde_json::to_string_pretty(&self.summary()).unwrap_or_default() + "\n";
        write_file(&output.join("summary.json"), summary)?;
        write_file(&svg_path, &svg)?;
        write_file(&output.join("report.html"), self.report_html(&svg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn err_of(r: Result<Table, ExternalError>) -> ExternalError {
        r.expect_err("an error")
    }

    #[test]
    fn reads_both_layouts() {
        let d = tempfile::tempdir().unwrap();
        let s = read_scores(&file(d.path(), "s.csv", "\u{feff}VolumeName,A,B\na.nii.gz,0.5,-1e-3\nb.nii.gz, NaN ,\nc,inf,2\n")).unwrap();
        assert_eq!(s.labels, ["A", "B"]);
        assert_eq!(s.ids, ["a.nii.gz", "b.nii.gz", "c"]);
        assert_eq!(s.rows, [2, 3, 4]);
        assert_eq!(s.values[0], [0.5, -1e-3]);
        assert!(s.values[1].iter().all(|v| v.is_nan()));
        assert!(s.values[2][0].is_infinite());
        // Labels: 0/1 (1.0 too), an empty cell is missing, an all-empty column is ignored.
        let l = read_labels(&file(d.path(), "l.csv", "A,VolumeName,Note,B\n1,a,,0\n0.0,b,,\n1.0,c,,1\n")).unwrap();
        assert_eq!(l.labels, ["A", "B"]);
        assert_eq!(l.ignored, ["Note"]);
        assert_eq!(l.values[0], [1.0, 0.0]);
        assert!(l.values[1][1].is_nan());
    }

    #[test]
    fn each_input_problem_is_one_named_error() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        let e = err_of(read_scores(&file(p, "empty.csv", "  \n")));
        assert!(matches!(&e, ExternalError::Empty(f) if f.ends_with("empty.csv")), "{e}");
        let e = err_of(read_scores(&file(p, "noid.csv", "Name,A\nx,1\n")));
        assert!(matches!(&e, ExternalError::NoIdColumn(_)), "{e}");
        assert!(e.to_string().contains("noid.csv: no VolumeName column"), "{e}");
        let e = err_of(read_scores(&file(p, "nolab.csv", "VolumeName\nx\n")));
        assert!(matches!(&e, ExternalError::NoLabelColumns(_)), "{e}");
        let e = err_of(read_scores(&file(p, "norows.csv", "VolumeName,A\n")));
        assert!(matches!(&e, ExternalError::NoRows(_)), "{e}");
        let e = err_of(read_scores(&file(p, "dupcol.csv", "VolumeName,A,A\nx,1,2\n")));
        assert!(matches!(&e, ExternalError::DuplicateColumn { column, .. } if column == "A"), "{e}");
        let e = err_of(read_scores(&file(p, "dup.csv", "VolumeName,A\nx,1\ny,2\nx,3\n")));
        assert!(matches!(&e, ExternalError::DuplicateId { row: 4, first: 2, .. }), "{e}");
        assert!(e.to_string().contains("dup.csv: row 4: VolumeName \"x\" repeats row 2"), "{e}");
        let e = err_of(read_scores(&file(p, "emptyid.csv", "VolumeName,A\n,1\n")));
        assert!(matches!(&e, ExternalError::EmptyId { row: 2, .. }), "{e}");
        let e = err_of(read_scores(&file(p, "bad.csv", "VolumeName,A,B\nx,1,2\ny,0.3,high\n")));
        assert!(matches!(&e, ExternalError::BadScore { row: 3, column, value, .. } if column == "B" && value == "high"), "{e}");
        assert!(e.to_string().starts_with(&format!("{}: row 3, column \"B\"", p.join("bad.csv").display())), "{e}");
        let e = err_of(read_labels(&file(p, "badl.csv", "VolumeName,A\nx,1\ny,2\n")));
        assert!(matches!(&e, ExternalError::BadLabel { row: 3, value, .. } if value == "2"), "{e}");
        let e = err_of(read_labels(&file(p, "allempty.csv", "VolumeName,A\nx,\n")));
        assert!(matches!(&e, ExternalError::NoLabelColumns(_)), "{e}");
        let e = err_of(read_scores(&file(p, "ragged.csv", "VolumeName,A\nx,1,2\n")));
        assert!(matches!(&e, ExternalError::Csv { .. }), "{e}");
        let e = err_of(read_scores(&p.join("missing.csv")));
        assert!(matches!(&e, ExternalError::Read { .. }), "{e}");
    }

    fn table(path: &str, ids: &[&str], labels: &[&str], values: Vec<Vec<f64>>) -> Table {
        Table {
            path: PathBuf::from(path),
            ids: ids.iter().map(|s| s.to_string()).collect(),
            rows: (2..2 + ids.len() as u64).collect(),
            labels: labels.iter().map(|s| s.to_string()).collect(),
            values,
            ignored: Vec::new(),
        }
    }

    #[test]
    fn extensions() {
        assert_eq!(strip_extension("valid_1_a_1.nii.gz"), "valid_1_a_1");
        assert_eq!(strip_extension("x.NII"), "x");
        assert_eq!(strip_extension("x.gz"), "x.gz");
        assert_eq!(strip_extension(".nii"), "");
        assert_eq!(strip_extension("é"), "é");
    }

    #[test]
    fn matches_exactly_and_reports_the_rest() {
        let s = table("s.csv", &["a", "b", "c"], &["A"], vec![vec![0.1]; 3]);
        let l = table("l.csv", &["c", "a", "z"], &["A"], vec![vec![1.0]; 3]);
        let m = match_ids(&s, &l).unwrap();
        assert_eq!(m.how, IdMatching::Exact);
        assert_eq!(m.pairs, [(0, 1), (2, 0)]);
        assert_eq!(m.only_in_scores, ["b"]);
        assert_eq!(m.only_in_labels, ["z"]);
    }

    #[test]
    fn matches_without_extensions_when_nothing_matches_exactly() {
        let s = table("s.csv", &["valid_1_a_1", "valid_2_a_1", "extra"], &["A"], vec![vec![0.1]; 3]);
        let l = table("l.csv", &["valid_2_a_1.nii.gz", "valid_1_a_1.nii.gz", "other.nii"], &["A"], vec![vec![1.0]; 3]);
        let m = match_ids(&s, &l).unwrap();
        assert_eq!(m.how, IdMatching::ExtensionStripped);
        assert_eq!(m.pairs, [(0, 1), (1, 0)]);
        assert_eq!(m.only_in_scores, ["extra"]);
        assert_eq!(m.only_in_labels, ["other.nii"]);
        // An exact match wins: no stripping then.
        let s = table("s.csv", &["a.nii.gz", "b"], &["A"], vec![vec![0.1]; 2]);
        let l = table("l.csv", &["a.nii.gz", "b.nii.gz"], &["A"], vec![vec![1.0]; 2]);
        let m = match_ids(&s, &l).unwrap();
        assert_eq!((m.how, m.pairs.len()), (IdMatching::Exact, 1));
        assert_eq!(m.only_in_labels, ["b.nii.gz"]);
    }

    #[test]
    fn stripped_duplicates_and_no_match_are_named_errors() {
        let s = table("s.csv", &["a"], &["A"], vec![vec![0.1]]);
        let l = table("l.csv", &["a.nii", "a.nii.gz"], &["A"], vec![vec![1.0]; 2]);
        let e = match_ids(&s, &l).unwrap_err();
        assert!(matches!(&e, ExternalError::DuplicateId { stripped: true, row: 3, first: 2, .. }), "{e}");
        assert!(e.to_string().starts_with("l.csv: row 3"), "{e}");
        let l = table("l.csv", &["q.nii.gz"], &["A"], vec![vec![1.0]]);
        let e = match_ids(&s, &l).unwrap_err();
        assert!(matches!(&e, ExternalError::NoMatchingIds { .. }), "{e}");
        assert!(e.to_string().starts_with("l.csv: no VolumeName matches one of s.csv"), "{e}");
    }

    #[test]
    fn labels_match_by_name() {
        let s = table("s.csv", &["a"], &["B", "A", "S"], vec![vec![0.0; 3]]);
        let l = table("l.csv", &["a"], &["A", "L", "B"], vec![vec![0.0; 3]]);
        let (c, os, ol) = match_labels(&s, &l);
        assert_eq!(c, ["B", "A"]);
        assert_eq!(os, ["S"]);
        assert_eq!(ol, ["L"]);
    }

    #[test]
    fn non_finite_scores_and_missing_truth_are_excluded_per_label() {
        let s = table(
            "s.csv",
            &["a", "b", "c", "d"],
            &["A", "B"],
            vec![vec![0.9, f64::NAN], vec![f64::INFINITY, 0.2], vec![0.1, 0.3], vec![0.4, f64::NAN]],
        );
        let l = table(
            "l.csv",
            &["a", "b", "c", "d"],
            &["B", "A"],
            vec![vec![1.0, 1.0], vec![0.0, 0.0], vec![f64::NAN, 0.0], vec![f64::NAN, 1.0]],
        );
        let m = match_ids(&s, &l).unwrap();
        let a = label_data("A", &s, &l, &m.pairs);
        assert_eq!((a.y, a.s), (vec![true, false, true], vec![0.9, 0.1, 0.4]));
        assert_eq!(a.excluded, Excluded { non_finite_score: 1, missing_label: 0 });
        let b = label_data("B", &s, &l, &m.pairs);
        assert_eq!((b.y, b.s), (vec![false], vec![0.2]));
        // d: both a NaN score and a missing label, counted once as a score.
        assert_eq!(b.excluded, Excluded { non_finite_score: 2, missing_label: 1 });
    }

    fn write_inputs(d: &Path) -> ExternalOptions {
        let mut s = String::from("VolumeName,A,B,OnlyS\n");
        let mut l = String::from("VolumeName,B,A,OnlyL\n");
        for i in 0..20 {
            let y = i % 2;
            let score = if i == 3 { "nan".to_string() } else { format!("{}", y as f64 * 0.5 + (i % 5) as f64 * 0.1) };
            s.push_str(&format!("v{i},{score},{},0.1\n", 1.0 - (i % 3) as f64 * 0.2));
            l.push_str(&format!("v{i}.nii.gz,{},{y},1\n", (i % 3 == 0) as u8));
        }
        s.push_str("lonely,0.1,0.1,0.1\n");
        l.push_str("alone.nii.gz,0,1,0\n");
        let th = file(d, "thresholds.json", r#"{"version": 1, "thresholds": {"A": 0.3}}"#);
        ExternalOptions {
            scores: file(d, "scores.csv", &s),
            labels: file(d, "labels.csv", &l),
            thresholds: Some(th),
            model: None,
            bootstrap: 20,
        }
    }

    #[test]
    fn run_evaluates_and_writes_the_summary_svg_and_report() {
        let d = tempfile::tempdir().unwrap();
        let opts = write_inputs(d.path());
        let r = run(&opts).unwrap();
        assert_eq!(r.cases(), 20);
        assert_eq!(r.labels, ["A", "B"]);
        assert_eq!(r.matching.how, IdMatching::ExtensionStripped);
        assert_eq!(r.excluded["A"], Excluded { non_finite_score: 1, missing_label: 0 });
        let a = &r.outcomes[0];
        assert_eq!(a.result.positives + a.result.negatives, 19);
        let at = a.at_model_threshold.as_ref().unwrap();
        assert_eq!(at.threshold, 0.3f32 as f64);
        assert_eq!(at.full_set.auroc, a.result.full_set.auroc);
        assert!(r.outcomes[1].at_model_threshold.is_none());
        assert_eq!(r.without_model_threshold, ["B"]);
        let s = r.summary();
        assert_eq!(s["unmatched"]["only_in_scores"], json!(["lonely"]));
        assert_eq!(s["unmatched"]["only_in_labels"], json!(["alone.nii.gz"]));
        assert_eq!(s["labels_only_in_scores"], json!(["OnlyS"]));
        assert_eq!(s["labels_only_in_labels"], json!(["OnlyL"]));
        assert_eq!(s["labels"][0]["at_model_threshold"]["threshold"], json!(0.3f32 as f64));
        assert!(s["labels"][1]["at_model_threshold"].is_null());
        assert_eq!(s["id_matching"], "extension_stripped");
        for k in ["mean", "skipped", "model", "data", "cases", "bootstrap", "prompts", "heatmap_in_mask", "corpus_seed"] {
            assert!(s.get(k).is_some(), "summary lacks {k}");
        }
        let out = d.path().join("out");
        r.write(&out).unwrap();
        let svg = std::fs::read_to_string(out.join("roc.svg")).unwrap();
        let width = format!("stroke-width=\"{}\"", eval_report::CURVE_WIDTH);
        assert_eq!(svg.lines().filter(|l| l.starts_with("<polyline") && l.contains(&width)).count(), 2, "one curve per label");
        let html = std::fs::read_to_string(out.join("report.html")).unwrap();
        assert!(html.contains(radbridge_model::analysis::DISCLAIMER));
        assert!(!html.contains("http://") && !html.contains("https://") && !html.contains("<script"));
    }

    #[test]
    fn thresholds_and_common_labels_are_checked_first() {
        let d = tempfile::tempdir().unwrap();
        let mut opts = write_inputs(d.path());
        opts.thresholds = Some(d.path().join("nope.json"));
        assert!(matches!(run(&opts).unwrap_err(), ExternalError::ThresholdsMissing(_)));
        opts.thresholds = Some(file(d.path(), "bad.json", "{"));
        assert!(matches!(run(&opts).unwrap_err(), ExternalError::Thresholds { .. }));
        opts.thresholds = None;
        opts.labels = file(d.path(), "other.csv", "VolumeName,Z\nv1,1\n");
        let e = run(&opts).unwrap_err();
        assert!(matches!(e, ExternalError::NoCommonLabel { .. }), "{e}");
        opts.model = Some(d.path().join("no-model"));
        assert!(matches!(run(&opts).unwrap_err(), ExternalError::Model { .. }));
    }
}
