//! Evaluation of zero-shot scores (spec §6, BrgSA's `bootstrap_evaluation`): per label a
//! decision threshold at the ROC point closest to (FPR 0, TPR 1) on the full set, prediction =
//! score > threshold, and AUROC, weighted F1 (scikit-learn `average="weighted"`: per-class F1
//! weighted by support), accuracy, precision and recall of the positive class, AUPRC (average
//! precision); bootstrap means and 95 % percentile intervals over resamples with fixed seeds.
//!
//! The curve functions follow scikit-learn's definitions exactly (`roc_curve` with
//! `drop_intermediate=True`, `auc`, `average_precision_score`), checked against scikit-learn by
//! `tests/reference/metrics_reference.py`. Pure functions; the CLI (`radbridge eval`) scores
//! the volumes with `analysis::Engine`.

use std::collections::BTreeMap;

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Metric names, in the order of [`Metrics::values`].
pub const METRICS: [&str; 6] = ["auroc", "f1_weighted", "accuracy", "precision", "recall", "auprc"];

/// scikit-learn's `_binary_clf_curve`: for each distinct score (descending) the cumulative
/// false and true positives of `score >= that value`. Returns (fps, tps, thresholds).
pub fn binary_clf_curve(y: &[bool], s: &[f64]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut idx: Vec<usize> = (0..s.len()).collect();
    idx.sort_by(|&a, &b| s[b].partial_cmp(&s[a]).unwrap_or(std::cmp::Ordering::Equal));
    let (mut fps, mut tps, mut th) = (Vec::new(), Vec::new(), Vec::new());
    let (mut tp, mut fp) = (0f64, 0f64);
    for (k, &i) in idx.iter().enumerate() {
        if y[i] {
            tp += 1.0;
        } else {
            fp += 1.0;
        }
        let last = k + 1 == idx.len() || s[idx[k + 1]] != s[i];
        if last {
            fps.push(fp);
            tps.push(tp);
            th.push(s[i]);
        }
    }
    (fps, tps, th)
}

/// A ROC curve: false-positive rates, true-positive rates and the thresholds (the first is +∞).
#[derive(Debug, Clone, PartialEq)]
pub struct Roc {
    pub fpr: Vec<f64>,
    pub tpr: Vec<f64>,
    pub thresholds: Vec<f64>,
}

/// scikit-learn `roc_curve(y, s, drop_intermediate=True)`. Needs both classes.
pub fn roc_curve(y: &[bool], s: &[f64]) -> Option<Roc> {
    let (mut fps, mut tps, mut th) = binary_clf_curve(y, s);
    if fps.is_empty() {
        return None;
    }
    if fps.len() > 2 {
        // Keep the end points and every point where the curve bends.
        let n = fps.len();
        let keep: Vec<bool> = (0..n)
            .map(|i| {
                if i == 0 || i == n - 1 {
                    return true;
                }
                let d2 = |v: &[f64]| v[i + 1] - 2.0 * v[i] + v[i - 1];
                d2(&fps) != 0.0 || d2(&tps) != 0.0
            })
            .collect();
        let filt = |v: &[f64]| v.iter().zip(&keep).filter(|(_, &k)| k).map(|(x, _)| *x).collect::<Vec<f64>>();
        fps = filt(&fps);
        tps = filt(&tps);
        th = filt(&th);
    }
    let (fmax, tmax) = (*fps.last().unwrap(), *tps.last().unwrap());
    if fmax == 0.0 || tmax == 0.0 {
        return None;
    }
    let mut fpr = vec![0.0];
    let mut tpr = vec![0.0];
    let mut thresholds = vec![f64::INFINITY];
    fpr.extend(fps.iter().map(|f| f / fmax));
    tpr.extend(tps.iter().map(|t| t / tmax));
    thresholds.extend(th);
    Some(Roc { fpr, tpr, thresholds })
}

/// Trapezoidal area under (x, y) with x monotonic (scikit-learn `auc`).
pub fn auc(x: &[f64], y: &[f64]) -> f64 {
    let mut a = 0.0;
    for i in 1..x.len() {
        a += (x[i] - x[i - 1]) * (y[i] + y[i - 1]) / 2.0;
    }
    if x.len() > 1 && x[x.len() - 1] < x[0] {
        -a
    } else {
        a
    }
}

/// scikit-learn `roc_auc_score` (None with a single class).
pub fn roc_auc(y: &[bool], s: &[f64]) -> Option<f64> {
    roc_curve(y, s).map(|r| auc(&r.fpr, &r.tpr))
}

/// scikit-learn `average_precision_score`: Σ (Rₙ − Rₙ₋₁)·Pₙ over the thresholds (None without
/// positives).
pub fn average_precision(y: &[bool], s: &[f64]) -> Option<f64> {
    let (fps, tps, _) = binary_clf_curve(y, s);
    let pos = *tps.last()?;
    if pos == 0.0 {
        return None;
    }
    let mut ap = 0.0;
    let mut prev_recall = 0.0;
    for (f, t) in fps.iter().zip(&tps) {
        let precision = if t + f > 0.0 { t / (t + f) } else { 0.0 };
        let recall = t / pos;
        ap += (recall - prev_recall) * precision;
        prev_recall = recall;
    }
    Some(ap)
}

/// The official threshold: the ROC threshold whose point is closest to (0, 1), the first one
/// in scikit-learn's order (descending thresholds) on ties (`np.argmin`).
pub fn closest_to_corner_threshold(y: &[bool], s: &[f64]) -> Option<f64> {
    let r = roc_curve(y, s)?;
    let mut best = (f64::INFINITY, 0usize);
    for i in 0..r.fpr.len() {
        let d = ((1.0 - r.tpr[i]).powi(2) + r.fpr[i].powi(2)).sqrt();
        if d < best.0 {
            best = (d, i);
        }
    }
    Some(r.thresholds[best.1])
}

/// Metrics of one label on one sample.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub auroc: f64,
    pub f1_weighted: f64,
    pub accuracy: f64,
    pub precision: f64,
    pub recall: f64,
    pub auprc: f64,
}

impl Metrics {
    pub fn values(&self) -> [f64; 6] {
        [self.auroc, self.f1_weighted, self.accuracy, self.precision, self.recall, self.auprc]
    }
    pub fn from_values(v: [f64; 6]) -> Metrics {
        Metrics { auroc: v[0], f1_weighted: v[1], accuracy: v[2], precision: v[3], recall: v[4], auprc: v[5] }
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        0.0
    }
}

/// The thresholded metrics for predictions `score > threshold` (scikit-learn's zero_division
/// = 0 convention): (f1_weighted, accuracy, precision, recall).
pub fn thresholded(y: &[bool], s: &[f64], threshold: f64) -> (f64, f64, f64, f64) {
    let (mut tp, mut fp, mut tn, mut fneg) = (0f64, 0f64, 0f64, 0f64);
    for (&t, &x) in y.iter().zip(s) {
        match (t, x > threshold) {
            (true, true) => tp += 1.0,
            (false, true) => fp += 1.0,
            (false, false) => tn += 1.0,
            (true, false) => fneg += 1.0,
        }
    }
    let n = tp + fp + tn + fneg;
    let f1_pos = ratio(2.0 * tp, 2.0 * tp + fp + fneg);
    let f1_neg = ratio(2.0 * tn, 2.0 * tn + fneg + fp);
    let (npos, nneg) = (tp + fneg, tn + fp);
    let f1_weighted = ratio(f1_pos * npos + f1_neg * nneg, npos + nneg);
    (f1_weighted, ratio(tp + tn, n), ratio(tp, tp + fp), ratio(tp, tp + fneg))
}

/// All metrics of one label at a given threshold (None with a single class).
pub fn metrics_at(y: &[bool], s: &[f64], threshold: f64) -> Option<Metrics> {
    let auroc = roc_auc(y, s)?;
    let auprc = average_precision(y, s)?;
    let (f1_weighted, accuracy, precision, recall) = thresholded(y, s, threshold);
    Some(Metrics { auroc, f1_weighted, accuracy, precision, recall, auprc })
}

/// numpy `percentile(v, q)` with linear interpolation (v need not be sorted).
pub fn percentile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let pos = q / 100.0 * (s.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    s[lo] + (s[hi] - s[lo]) * (pos - lo as f64)
}

/// Resample indices for bootstrap round `i` (n draws with replacement from a ChaCha8 stream
/// seeded with `i`, so every label and every run uses the same resamples).
pub fn bootstrap_indices(i: u64, n: usize) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(i);
    (0..n).map(|_| ((rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * n as f64) as usize).map(|k| k.min(n - 1)).collect()
}

/// One label's evaluation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabelResult {
    pub label: String,
    pub auroc: f64,
    pub f1_weighted: f64,
    pub accuracy: f64,
    pub precision: f64,
    pub recall: f64,
    pub auprc: f64,
    /// metric → [2.5 %, 97.5 %] over the bootstrap resamples.
    pub ci95: BTreeMap<String, [f64; 2]>,
    /// The full-set values (the headline values above are bootstrap means when resampling).
    pub full_set: Metrics,
    pub threshold: f64,
    pub positives: usize,
    pub negatives: usize,
    /// Resamples used (those with both classes).
    pub bootstrap: usize,
}

/// Evaluate one label: threshold on the full set, then `n_boot` resamples (0 = none; then the
/// headline values are the full-set ones and the intervals are absent). None when the label
/// has a single class.
pub fn evaluate_label(label: &str, y: &[bool], s: &[f64], n_boot: usize) -> Option<LabelResult> {
    let threshold = closest_to_corner_threshold(y, s)?;
    evaluate_at(label, y, s, threshold, n_boot)
}

/// Evaluate one label at a given `threshold` (a model's stored one, say) with the resamples of
/// [`evaluate_label`] (the same indices for the same number of cases). None when the label has
/// a single class.
pub fn evaluate_at(label: &str, y: &[bool], s: &[f64], threshold: f64, n_boot: usize) -> Option<LabelResult> {
    let full = metrics_at(y, s, threshold)?;
    let positives = y.iter().filter(|&&b| b).count();
    let mut samples: Vec<[f64; 6]> = Vec::with_capacity(n_boot);
    for i in 0..n_boot {
        let idx = bootstrap_indices(i as u64, y.len());
        let yb: Vec<bool> = idx.iter().map(|&k| y[k]).collect();
        let sb: Vec<f64> = idx.iter().map(|&k| s[k]).collect();
        if let Some(m) = metrics_at(&yb, &sb, threshold) {
            samples.push(m.values());
        }
    }
    let (head, ci95) = if samples.is_empty() {
        (full, BTreeMap::new())
    } else {
        let mut mean = [0f64; 6];
        let mut ci = BTreeMap::new();
        for (k, name) in METRICS.iter().enumerate() {
            let col: Vec<f64> = samples.iter().map(|v| v[k]).collect();
            mean[k] = col.iter().sum::<f64>() / col.len() as f64;
            ci.insert(name.to_string(), [percentile(&col, 2.5), percentile(&col, 97.5)]);
        }
        (Metrics::from_values(mean), ci)
    };
    Some(LabelResult {
        label: label.to_string(),
        auroc: head.auroc,
        f1_weighted: head.f1_weighted,
        accuracy: head.accuracy,
        precision: head.precision,
        recall: head.recall,
        auprc: head.auprc,
        ci95,
        full_set: full,
        threshold,
        positives,
        negatives: y.len() - positives,
        bootstrap: samples.len(),
    })
}

/// Mean of each metric over labels.
pub fn mean_metrics(results: &[LabelResult]) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    if results.is_empty() {
        return out;
    }
    let vals: Vec<[f64; 6]> = results.iter().map(|r| [r.auroc, r.f1_weighted, r.accuracy, r.precision, r.recall, r.auprc]).collect();
    for (k, name) in METRICS.iter().enumerate() {
        out.insert(name.to_string(), vals.iter().map(|v| v[k]).sum::<f64>() / vals.len() as f64);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_and_inverted_scores() {
        let y = [false, false, true, true];
        assert_eq!(roc_auc(&y, &[0.1, 0.2, 0.8, 0.9]), Some(1.0));
        assert_eq!(roc_auc(&y, &[0.9, 0.8, 0.2, 0.1]), Some(0.0));
        assert_eq!(roc_auc(&y, &[0.5; 4]), Some(0.5));
        assert_eq!(roc_auc(&[true, true], &[0.1, 0.2]), None);
        // The corner threshold of a perfect ranking is the lowest positive score: 0.8 itself
        // is then predicted negative by "score > threshold", as the official rule does.
        assert_eq!(closest_to_corner_threshold(&y, &[0.1, 0.2, 0.8, 0.9]), Some(0.8));
        let (f1, acc, p, r) = thresholded(&y, &[0.1, 0.2, 0.8, 0.9], 0.5);
        assert_eq!((f1, acc, p, r), (1.0, 1.0, 1.0, 1.0));
    }

    #[test]
    fn percentile_interpolates_like_numpy() {
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 50.0), 2.5);
        assert!((percentile(&[0.0, 10.0], 2.5) - 0.25).abs() < 1e-12);
    }
}
