#!/usr/bin/env python3
"""Reference values for radbridge::eval (the official evaluation protocol, spec §6), from scikit-learn.

Writes tests/data/reference/metrics.json: fixed score/label columns (with ties, imbalance, a
perfect and an inverted ranking) and for each: roc_curve (drop_intermediate=True), roc_auc_score,
average_precision_score, the threshold of the ROC point closest to (0, 1) (np.argmin of
sqrt((1-tpr)^2 + fpr^2)), and at prediction = score > threshold: f1_score(average="weighted"),
accuracy_score, precision_score, recall_score (zero_division=0).

    target/refvenv/bin/python tests/reference/metrics_reference.py
"""
import json
import os

import numpy as np
import sklearn
from sklearn.metrics import (accuracy_score, average_precision_score, f1_score, precision_score, recall_score,
                             roc_auc_score, roc_curve)


def cases():
    rng = np.random.RandomState(7)
    out = []
    # Noisy scores, moderate imbalance.
    y = (rng.rand(60) < 0.3).astype(int)
    s = y * 0.8 + rng.randn(60)
    out.append(("noisy", y, s))
    # Heavy ties (scores rounded to one decimal).
    y = (rng.rand(80) < 0.5).astype(int)
    s = np.round(y * 0.3 + rng.rand(80), 1)
    out.append(("ties", y, s))
    # Rare positives.
    y = np.zeros(50, dtype=int)
    y[[3, 17, 41]] = 1
    s = rng.rand(50) + y * 0.4
    out.append(("rare", y, s))
    # Perfect and inverted rankings, cosine-like range.
    y = np.array([0, 0, 1, 0, 1, 1, 0, 1])
    s = np.array([-0.2, -0.1, 0.3, 0.0, 0.25, 0.4, 0.05, 0.2])
    out.append(("perfect", y, s))
    out.append(("inverted", y, -s))
    # Constant score.
    out.append(("constant", y, np.full(8, 0.1)))
    return out


def main():
    rows = []
    for name, y, s in cases():
        fpr, tpr, th = roc_curve(y, s)
        i = int(np.argmin(np.sqrt((1 - tpr) ** 2 + fpr ** 2)))
        thr = float(th[i])
        pred = (s > thr).astype(int)
        rows.append({
            "name": name,
            "y": y.tolist(),
            "score": s.tolist(),
            "roc": {"fpr": fpr.tolist(), "tpr": tpr.tolist(),
                    "thresholds": [None if not np.isfinite(t) else float(t) for t in th]},
            "auroc": float(roc_auc_score(y, s)),
            "auprc": float(average_precision_score(y, s)),
            "threshold": thr if np.isfinite(thr) else None,
            "f1_weighted": float(f1_score(y, pred, average="weighted", zero_division=0)),
            "accuracy": float(accuracy_score(y, pred)),
            "precision": float(precision_score(y, pred, zero_division=0)),
            "recall": float(recall_score(y, pred, zero_division=0)),
        })
    path = os.path.join(os.path.dirname(__file__), "..", "data", "reference", "metrics.json")
    with open(path, "w") as f:
        json.dump({"description": "scikit-learn reference for radbridge::eval (tests/reference/metrics_reference.py)",
                   "sklearn": sklearn.__version__, "numpy": np.__version__, "cases": rows}, f, indent=1)
        f.write("\n")
    print("wrote", os.path.normpath(path), [(r["name"], round(r["auroc"], 4)) for r in rows])


if __name__ == "__main__":
    main()
