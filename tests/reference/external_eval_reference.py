#!/usr/bin/env python3
"""Inputs and scikit-learn reference values for `radbridge eval --scores --labels` (external validation).

Writes tests/data/reference/external_eval/:
- scores.csv: VolumeName (ids without extension, valid_<i>_a_1 for i in 0..41) + 3 common labels + one
  label only in the scores ("Emphysema"); seeded random scores correlated with the labels, one empty cell
  and one "nan" (failed studies, excluded from that label);
- labels.csv: the CT-RATE layout (valid_<i>_a_1.nii.gz for i in 2..43, so 2 ids only in each file and no
  id matching exactly: the ids match with the extension stripped) + one label only here ("Atelectasis");
- thresholds.json: model-directory format, thresholds for two of the three common labels;
- expected.json: per common label, on the matched cases with a finite score: positives, negatives,
  excluded, roc_auc_score, average_precision_score, the ROC point closest to (0, 1) (np.argmin, the official
  protocol) and at it f1_score(average="weighted"), accuracy, precision, recall (zero_division=0), and the
  same four at the model threshold (read as float32, as radbridge stores thresholds); the unmatched ids and
  labels.

    target/refvenv/bin/python tests/reference/external_eval_reference.py

Byte-reproducible (fixed seed, scores rounded to 6 decimals so the CSV text is the value both sides read).
"""
import csv
import json
import os

import numpy as np
import sklearn
from sklearn.metrics import (accuracy_score, average_precision_score, f1_score, precision_score, recall_score,
                             roc_auc_score, roc_curve)

COMMON = ["Pleural effusion", "Cardiomegaly", "Bronchiectasis & <mosaic>"]
ONLY_SCORES = "Emphysema"
ONLY_LABELS = "Atelectasis"
THRESHOLDS = {"Pleural effusion": 0.125, "Cardiomegaly": 0.0625, ONLY_SCORES: 0.5}
OUT = os.path.join(os.path.dirname(__file__), "..", "data", "reference", "external_eval")


def strip(v):
    for ext in (".nii.gz", ".nii"):
        if v.lower().endswith(ext):
            return v[: -len(ext)]
    return v


def thresholded(y, s, thr):
    pred = (s > thr).astype(int)
    return {
        "f1_weighted": float(f1_score(y, pred, average="weighted", zero_division=0)),
        "accuracy": float(accuracy_score(y, pred)),
        "precision": float(precision_score(y, pred, zero_division=0)),
        "recall": float(recall_score(y, pred, zero_division=0)),
    }


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.RandomState(2024)
    n = 44
    truth = {l: (rng.rand(n) < p).astype(int) for l, p in zip(COMMON + [ONLY_LABELS], [0.35, 0.3, 0.4, 0.3])}
    scores = {}
    for l, w in zip(COMMON + [ONLY_SCORES], [0.35, 0.25, 0.15, 0.0]):
        y = truth.get(l, np.zeros(n, dtype=int))
        scores[l] = np.round(w * y + 0.2 * rng.randn(n), 6)
    score_ids = [f"valid_{i}_a_1" for i in range(0, 42)]
    label_ids = [f"valid_{i}_a_1.nii.gz" for i in range(2, 44)]
    failed = {("Cardiomegaly", 5): "", ("Cardiomegaly", 9): "nan"}

    with open(os.path.join(OUT, "scores.csv"), "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["VolumeName"] + COMMON + [ONLY_SCORES])
        for i in range(0, 42):
            w.writerow([score_ids[i]] + [failed.get((l, i), repr(float(scores[l][i]))) for l in COMMON + [ONLY_SCORES]])
    with open(os.path.join(OUT, "labels.csv"), "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["VolumeName", ONLY_LABELS] + COMMON[::-1])
        for i in range(2, 44):
            w.writerow([label_ids[i - 2], truth[ONLY_LABELS][i]] + [truth[l][i] for l in COMMON[::-1]])
    with open(os.path.join(OUT, "thresholds.json"), "w") as f:
        json.dump({"version": 1, "source": "external_eval_reference.py", "thresholds": THRESHOLDS}, f, indent=1)
        f.write("\n")

    # The reference side: read the files back and match them independently.
    with open(os.path.join(OUT, "scores.csv")) as f:
        srows = list(csv.DictReader(f))
    with open(os.path.join(OUT, "labels.csv")) as f:
        lrows = list(csv.DictReader(f))
    lmap = {strip(r["VolumeName"]): r for r in lrows}
    smap = {strip(r["VolumeName"]): r for r in srows}
    matched = [(r, lmap[strip(r["VolumeName"])]) for r in srows if strip(r["VolumeName"]) in lmap]
    labels = []
    for l in COMMON:
        y, s, excluded = [], [], 0
        for sr, lr in matched:
            v = float(sr[l]) if sr[l] != "" else float("nan")
            if not np.isfinite(v):
                excluded += 1
                continue
            y.append(int(lr[l]))
            s.append(v)
        y, s = np.array(y), np.array(s)
        fpr, tpr, th = roc_curve(y, s)
        i = int(np.argmin(np.sqrt((1 - tpr) ** 2 + fpr ** 2)))
        entry = {
            "label": l,
            "positives": int(y.sum()),
            "negatives": int(len(y) - y.sum()),
            "excluded": excluded,
            "auroc": float(roc_auc_score(y, s)),
            "auprc": float(average_precision_score(y, s)),
            "threshold": float(th[i]),
            "at_optimal": thresholded(y, s, th[i]),
            "at_model_threshold": None,
        }
        if l in THRESHOLDS:
            t = float(np.float32(THRESHOLDS[l]))
            entry["at_model_threshold"] = dict(threshold=t, **thresholded(y, s, t))
        labels.append(entry)
    expected = {
        "description": "scikit-learn reference for radbridge eval --scores (tests/reference/external_eval_reference.py)",
        "sklearn": sklearn.__version__,
        "numpy": np.__version__,
        "cases": len(matched),
        "only_in_scores": [r["VolumeName"] for r in srows if strip(r["VolumeName"]) not in lmap],
        "only_in_labels": [r["VolumeName"] for r in lrows if strip(r["VolumeName"]) not in smap],
        "labels_only_in_scores": [ONLY_SCORES],
        "labels_only_in_labels": [ONLY_LABELS],
        "labels": labels,
    }
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
        f.write("\n")
    print("wrote", os.path.normpath(OUT), [(e["label"], round(e["auroc"], 4)) for e in labels])


if __name__ == "__main__":
    main()
