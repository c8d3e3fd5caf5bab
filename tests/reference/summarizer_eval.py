#!/usr/bin/env python3
"""Measure the built-in report summariser (`radbridge summarize --jsonl --json`).

Standard library only (no PyPI packages). Run from the repository root:

    cargo build -p radbridge-cli
    python3 tests/reference/summarizer_eval.py [--bin target/debug/radbridge] [--json OUT.json]
        [--synth DIR]   # a `radbridge synth` corpus (cases.jsonl + report.txt files)

Measurements (a report's label is "predicted present" when its status is "present" OR
"uncertain"; "absent" is negative):

1. CT-RATE manual labels (tests/data/ct-rate/manual-18/train.csv, 800 reports, 18 labels, labelled
   by hand by the CT-RATE authors): fixed split by row order, rows 1-400 = "dev" (the lexicon was
   tuned on these), rows 401-800 = "test" (held out; the headline number). Per-label precision,
   recall, F1 and the macro-F1 over the 18 labels, for both halves.
2. CT-RATE-LT weak labels (tests/data/ct-rate/labelled_reports_shared.json, 16 reports x 15
   labels): micro-F1 over all 240 report-label pairs, and per-label counts.
3. radlabels (PyPI radlabels 0.2.0 samples, 40 synthetic chest X-ray reports; default path
   /work/shared/data/radlabels, skipped when absent): present/absent accuracy over the labelled
   (report, finding) pairs whose finding maps onto one of our labels (MAPPING below); the ground
   truth "uncertain" pairs are reported separately and not counted in the accuracy.
4. `radbridge synth` corpora (--synth DIR): per-label accuracy and F1 of the summariser against
   the generator's labels (cases.jsonl).
"""

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.path.join(ROOT, "tests", "data", "ct-rate")

CT_RATE = [
    "Medical material", "Arterial wall calcification", "Cardiomegaly", "Pericardial effusion",
    "Coronary artery wall calcification", "Hiatal hernia", "Lymphadenopathy", "Emphysema", "Atelectasis",
    "Lung nodule", "Lung opacity", "Pulmonary fibrotic sequela", "Pleural effusion", "Mosaic attenuation pattern",
    "Peribronchial thickening", "Consolidation", "Bronchiectasis", "Interlobular septal thickening",
]

# radlabels finding name -> our label (only where the meaning corresponds). Not mapped: radlabels'
# "emphysema" (it also fires on subcutaneous emphysema, which our Emphysema excludes), tortuous aorta,
# congestion/edema, subcutaneous emphysema, pleural_other, interstitial thickening and other findings
# with no CT-RATE / CT-RATE-LT / extended counterpart.
MAPPING = {
    "atelectasis": "Atelectasis",
    "lobar_segmental_collapse": "Atelectasis",
    "cardiomegaly": "Cardiomegaly",
    "consolidation": "Consolidation",
    "pleural_effusion": "Pleural effusion",
    "pneumothorax": "Pneumothorax",
    "pneumonia": "Pneumonia",
    "pneumomediastinum": "Pneumomediastinum",
    "lung_opacity": "Lung opacity",
    "air_space_opacity": "Lung opacity",
    "ground_glass_opacity": "Ground glass opacity",
    "hiatus_hernia": "Hiatal hernia",
    "calcification_of_the_aorta": "Arterial wall calcification",
    "pleural_thickening": "Pleural thickening",
    "pulmonary_fibrosis": "Pulmonary fibrosis",
    "acute_rib_fracture": "Rib fracture",
    "non_acute_rib_fracture": "Rib fracture",
    "fracture_generic": "Fracture",
    "lung_nodule_or_mass": "Lung nodule",
    "hilar_lymphadenopathy": "Lymphadenopathy",
    "central_venous_catheter": "Medical material",
    "endotracheal_tube": "Medical material",
    "enteric_tube": "Medical material",
    "intercostal_drain": "Medical material",
    "tracheostomy_tube": "Medical material",
    "pacemaker_electronic_cardiac_device_or_wires": "Medical material",
    "support_devices_generic": "Medical material",
    "implantable_electronic_device": "Medical material",
    "peribronchial_cuffing": "Peribronchial thickening",
    "hyperinflation": "Pulmonary hypertrophy",
}


def summarize(binary, records):
    """records: list of (id, text) -> {id: {label: status}}, {id: summary}."""
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
        for rid, text in records:
            f.write(json.dumps({"id": rid, "text": text}) + "\n")
        path = f.name
    try:
        out = subprocess.run([binary, "summarize", "--jsonl", path, "--json"], check=True, capture_output=True, text=True).stdout
    finally:
        os.unlink(path)
    status, full = {}, {}
    for line in out.splitlines():
        s = json.loads(line)
        status[s["id"]] = {f["label"]: f["status"] for f in s["findings"]}
        full[s["id"]] = s
    return status, full


def positive(st):
    return st in ("present", "uncertain")


def prf(tp, fp, fn):
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


def manual18(binary, errors_out=None):
    rows = list(csv.DictReader(open(os.path.join(DATA, "manual-18", "train.csv"), newline="", encoding="utf-8")))
    assert len(rows) == 800, len(rows)
    status, full = summarize(binary, [(r["AccessionNo"], r["report_text"]) for r in rows])
    result = {}
    for name, part in (("dev", rows[:400]), ("test", rows[400:])):
        per = {}
        for label in CT_RATE:
            tp = fp = fn = tn = 0
            for r in part:
                truth = r[label].strip() == "1"
                pred = positive(status[r["AccessionNo"]][label])
                tp += truth and pred
                fp += (not truth) and pred
                fn += truth and not pred
                tn += (not truth) and not pred
            p, rec, f = prf(tp, fp, fn)
            per[label] = {"precision": round(p, 4), "recall": round(rec, 4), "f1": round(f, 4), "tp": tp, "fp": fp, "fn": fn, "tn": tn}
        macro = sum(v["f1"] for v in per.values()) / len(per)
        result[name] = {"reports": len(part), "macro_f1": round(macro, 4), "labels": per}
    if errors_out:
        with open(errors_out, "w") as f:
            for r in rows[:400]:
                s = status[r["AccessionNo"]]
                for label in CT_RATE:
                    truth = r[label].strip() == "1"
                    pred = positive(s[label])
                    if truth != pred:
                        ev = next(x["evidence"] for x in full[r["AccessionNo"]]["findings"] if x["label"] == label)
                        f.write(f"{'FN' if truth else 'FP'}\t{label}\t{r['AccessionNo']}\t{ev}\n")
    return result


def lt16(binary):
    recs = json.load(open(os.path.join(DATA, "labelled_reports_shared.json"), encoding="utf-8"))
    status, _ = summarize(binary, [(r["report_id"], r["report_text"]) for r in recs])
    tp = fp = fn = 0
    per = {}
    for r in recs:
        for label, v in r["labels"].items():
            truth = int(v) == 1
            pred = positive(status[r["report_id"]][label])
            tp += truth and pred
            fp += (not truth) and pred
            fn += truth and not pred
            d = per.setdefault(label, {"tp": 0, "fp": 0, "fn": 0})
            d["tp"] += truth and pred
            d["fp"] += (not truth) and pred
            d["fn"] += truth and not pred
    p, r, f = prf(tp, fp, fn)
    return {"reports": len(recs), "pairs": len(recs) * 15, "micro_precision": round(p, 4), "micro_recall": round(r, 4), "micro_f1": round(f, 4), "tp": tp, "fp": fp, "fn": fn, "labels": per}


def radlabels(binary, root):
    labels = json.load(open(os.path.join(root, "synthetic_labels.json")))
    rep_dir = os.path.join(root, "synthetic_reports")
    ids = sorted(f[:-4] for f in os.listdir(rep_dir) if f.endswith(".txt"))
    status, _ = summarize(binary, [(i, open(os.path.join(rep_dir, i + ".txt"), encoding="utf-8").read()) for i in ids])
    correct = total = 0
    unc = {"pairs": 0, "predicted_uncertain": 0}
    per = {}
    for i in ids:
        for finding, truth in labels.get(i, {}).items():
            ours = MAPPING.get(finding)
            if ours is None:
                continue
            st = status[i][ours]
            if truth == "uncertain":
                unc["pairs"] += 1
                unc["predicted_uncertain"] += st == "uncertain"
                continue
            t = truth == "definitely present"
            ok = positive(st) == t
            correct += ok
            total += 1
            d = per.setdefault(finding, {"label": ours, "n": 0, "correct": 0})
            d["n"] += 1
            d["correct"] += ok
    return {"reports": len(ids), "pairs": total, "accuracy": round(correct / total, 4) if total else None, "uncertain_truth": unc, "findings": per, "mapping": MAPPING}


def synth(binary, root):
    cases = [json.loads(l) for l in open(os.path.join(root, "cases.jsonl"), encoding="utf-8") if l.strip()]
    recs = [(c["id"], open(os.path.join(root, c["report"]), encoding="utf-8").read()) for c in cases]
    status, _ = summarize(binary, recs)
    per = {}
    correct = total = 0
    for c in cases:
        for label, v in c["labels"].items():
            if label not in status[c["id"]]:
                continue
            truth = int(v) == 1
            pred = positive(status[c["id"]][label])
            d = per.setdefault(label, {"tp": 0, "fp": 0, "fn": 0, "tn": 0})
            d["tp" if truth and pred else "fp" if pred else "fn" if truth else "tn"] += 1
            correct += truth == pred
            total += 1
    for d in per.values():
        d["f1"] = round(prf(d["tp"], d["fp"], d["fn"])[2], 4)
    return {"cases": len(cases), "pairs": total, "accuracy": round(correct / total, 4) if total else None, "labels": per}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "debug", "radbridge"))
    ap.add_argument("--radlabels", default="/work/shared/data/radlabels")
    ap.add_argument("--synth", default=None, help="a `radbridge synth` output folder")
    ap.add_argument("--json", default=None, help="write all numbers here")
    ap.add_argument("--errors", default=None, help="write the dev-half errors (FN/FP, label, id, evidence) here")
    a = ap.parse_args()
    out = {"binary": os.path.relpath(a.bin, ROOT), "uncertain_counts_as": "present", "manual18": manual18(a.bin, a.errors), "ct_rate_lt_16": lt16(a.bin)}
    if os.path.isdir(a.radlabels):
        out["radlabels"] = radlabels(a.bin, a.radlabels)
    if a.synth:
        out["synth"] = synth(a.bin, a.synth)
    for name in ("dev", "test"):
        m = out["manual18"][name]
        print(f"manual-18 {name} ({m['reports']} reports): macro-F1 {m['macro_f1']:.4f}")
        for label, v in sorted(m["labels"].items(), key=lambda kv: kv[1]["f1"]):
            print(f"  {label:<36} P {v['precision']:.3f}  R {v['recall']:.3f}  F1 {v['f1']:.3f}  (tp {v['tp']}, fp {v['fp']}, fn {v['fn']})")
    lt = out["ct_rate_lt_16"]
    print(f"CT-RATE-LT 16 reports: micro-F1 {lt['micro_f1']:.4f} (P {lt['micro_precision']:.3f}, R {lt['micro_recall']:.3f}; tp {lt['tp']}, fp {lt['fp']}, fn {lt['fn']})")
    if "radlabels" in out:
        r = out["radlabels"]
        print(f"radlabels {r['reports']} reports: present/absent accuracy {r['accuracy']} over {r['pairs']} mapped pairs; "
              f"{r['uncertain_truth']['predicted_uncertain']}/{r['uncertain_truth']['pairs']} 'uncertain' pairs read as uncertain")
    if "synth" in out:
        s = out["synth"]
        print(f"synth {s['cases']} cases: accuracy {s['accuracy']} over {s['pairs']} label pairs")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1, sort_keys=True)
            f.write("\n")


if __name__ == "__main__":
    sys.exit(main())
