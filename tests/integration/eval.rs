//! `radbridge eval`: the metrics against scikit-learn (tests/reference/metrics_reference.py →
//! tests/data/reference/metrics.json), the bootstrap's determinism, and the CLI end to end on a
//! tiny synthetic corpus with a tiny trained model (summary.json contract, score CSV layout,
//! thresholds, ablation and heat-map fields, prompt overrides, the label filter); external
//! validation (`radbridge eval --scores --labels`) against scikit-learn
//! (tests/reference/external_eval_reference.py → tests/data/reference/external_eval/), its
//! roc.svg and report.html, and its one-line input errors.

use std::path::Path;
use std::process::Command;

use radbridge_tests::{bin, data, import_tiny, json_file, test_python};
use radbridge_train::eval;
use serde_json::Value;

fn close(a: f64, b: f64, what: &str) {
    assert!((a - b).abs() <= 1e-9 * b.abs().max(1.0), "{what}: {a} vs scikit-learn {b}");
}

#[test]
fn metrics_match_scikit_learn() {
    let r = json_file("reference/metrics.json");
    let cases = r["cases"].as_array().unwrap();
    assert!(cases.len() >= 6);
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let y: Vec<bool> = c["y"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap() == 1).collect();
        let s: Vec<f64> = c["score"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        let roc = eval::roc_curve(&y, &s).unwrap();
        let want = |k: &str| -> Vec<f64> { c["roc"][k].as_array().unwrap().iter().map(|v| v.as_f64().unwrap_or(f64::INFINITY)).collect() };
        assert_eq!(roc.fpr.len(), want("fpr").len(), "{name}: ROC points");
        for (k, got) in [("fpr", &roc.fpr), ("tpr", &roc.tpr), ("thresholds", &roc.thresholds)] {
            for (a, b) in got.iter().zip(want(k)) {
                if b.is_infinite() {
                    assert!(a.is_infinite());
                } else {
                    close(*a, b, &format!("{name} {k}"));
                }
            }
        }
        close(eval::roc_auc(&y, &s).unwrap(), c["auroc"].as_f64().unwrap(), &format!("{name} auroc"));
        close(eval::average_precision(&y, &s).unwrap(), c["auprc"].as_f64().unwrap(), &format!("{name} auprc"));
        let thr = eval::closest_to_corner_threshold(&y, &s).unwrap();
        match c["threshold"].as_f64() {
            Some(t) => close(thr, t, &format!("{name} threshold")),
            None => assert!(thr.is_infinite(), "{name}: threshold {thr}"),
        }
        let (f1, acc, p, rc) = eval::thresholded(&y, &s, thr);
        close(f1, c["f1_weighted"].as_f64().unwrap(), &format!("{name} f1_weighted"));
        close(acc, c["accuracy"].as_f64().unwrap(), &format!("{name} accuracy"));
        close(p, c["precision"].as_f64().unwrap(), &format!("{name} precision"));
        close(rc, c["recall"].as_f64().unwrap(), &format!("{name} recall"));
    }
}

#[test]
fn bootstrap_is_deterministic_and_brackets_the_full_set() {
    let r = json_file("reference/metrics.json");
    let c = &r["cases"][0];
    let y: Vec<bool> = c["y"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap() == 1).collect();
    let s: Vec<f64> = c["score"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    let a = eval::evaluate_label("x", &y, &s, 300).unwrap();
    let b = eval::evaluate_label("x", &y, &s, 300).unwrap();
    assert_eq!(a.auroc, b.auroc);
    assert_eq!(a.ci95, b.ci95);
    let [lo, hi] = a.ci95["auroc"];
    assert!(lo < a.full_set.auroc && a.full_set.auroc < hi, "{lo} {} {hi}", a.full_set.auroc);
    assert!((a.auroc - a.full_set.auroc).abs() < 0.05);
    assert_eq!(a.bootstrap, 300);
    // Without resampling the headline values are the full-set ones.
    let p = eval::evaluate_label("x", &y, &s, 0).unwrap();
    assert_eq!(p.auroc, p.full_set.auroc);
    assert!(p.ci95.is_empty());
    // A single class cannot be evaluated.
    assert!(eval::evaluate_label("x", &[true; 5], &[0.1, 0.2, 0.3, 0.4, 0.5], 10).is_none());
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run radbridge");
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{:?} failed: {err}", cmd);
    err
}

/// A tiny corpus and a tiny model trained on it (a few seconds).
fn tiny_model(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let corpus = dir.join("corpus");
    run(Command::new(bin()).args(["synth", "--count", "6", "--seed", "4242", "--chest-fraction", "0", "--output"]).arg(&corpus));
    let model = dir.join("model");
    run(Command::new(bin())
        .args(["train", "--config"])
        .arg(data("train/tiny-config.json"))
        .arg("--data")
        .arg(&corpus)
        .arg("--output")
        .arg(&model)
        .args(["--epochs", "2"]));
    (corpus, model)
}

#[test]
fn eval_cli_writes_the_contract_files() {
    let tmp = tempfile::tempdir().unwrap();
    let (corpus, model) = tiny_model(tmp.path());
    let out = tmp.path().join("eval");
    let prompts = tmp.path().join("prompts.json");
    std::fs::write(&prompts, r#"{"Pleural effusion": "Fluid is seen in the pleural space", "Cardiomegaly": "The heart is enlarged"}"#)
        .unwrap();
    run(Command::new(bin())
        .env("RADBRIDGE_CACHE_DIR", tmp.path().join("cache"))
        .args(["eval", "--model"])
        .arg(&model)
        .arg("--data")
        .arg(&corpus)
        .args(["--bootstrap", "50", "--ablation", "--output"])
        .arg(&out));
    let summary: Value = serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let labels = summary["labels"].as_array().unwrap();
    assert!(!labels.is_empty());
    for l in labels {
        for k in ["label", "auroc", "f1_weighted", "accuracy", "precision", "recall", "auprc", "ci95"] {
            assert!(l.get(k).is_some(), "label entry lacks {k}: {l}");
        }
        let a = l["auroc"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&a));
    }
    for k in ["auroc", "f1_weighted", "accuracy", "precision", "recall", "auprc"] {
        assert!(summary["mean"][k].as_f64().is_some(), "mean.{k}");
    }
    for k in ["v_only", "v_hat_only", "brgsa"] {
        assert!(summary["ablation"][k]["mean"]["auroc"].as_f64().is_some(), "ablation.{k}");
    }
    assert!(summary["heatmap_in_mask"]["total"].as_u64().unwrap() > 0, "synthetic cases have masks");
    assert_eq!(summary["heatmap_peak_cell_overlaps_mask"]["total"], summary["heatmap_in_mask"]["total"]);
    assert_eq!(summary["heatmap_in_mask"]["method"], "gradient");
    // Score CSV in the official layout: VolumeName + one column per label, one row per case.
    let csv = std::fs::read_to_string(out.join("scores.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(header[0], "VolumeName");
    assert_eq!(lines.count(), 6);
    assert!(header.contains(&"Pleural effusion"));
    // thresholds.json in the model-directory format.
    let th: radbridge_model::zeroshot::Thresholds =
        serde_json::from_str(&std::fs::read_to_string(out.join("thresholds.json")).unwrap()).unwrap();
    assert!(!th.thresholds.is_empty());

    // Prompt overrides change the scores of the overridden labels only.
    let out2 = tmp.path().join("eval2");
    run(Command::new(bin())
        .env("RADBRIDGE_CACHE_DIR", tmp.path().join("cache"))
        .args(["eval", "--model"])
        .arg(&model)
        .arg("--data")
        .arg(&corpus)
        .args(["--bootstrap", "0", "--labels", "Pleural effusion,Emphysema", "--prompts"])
        .arg(&prompts)
        .arg("--output")
        .arg(&out2));
    let csv2 = std::fs::read_to_string(out2.join("scores.csv")).unwrap();
    let col = |csv: &str, name: &str| -> Vec<String> {
        let mut l = csv.lines();
        let h: Vec<&str> = l.next().unwrap().split(',').collect();
        let i = h.iter().position(|x| *x == name).unwrap();
        l.map(|r| r.split(',').nth(i).unwrap().to_string()).collect()
    };
    assert_ne!(col(&csv, "Pleural effusion"), col(&csv2, "Pleural effusion"));
    assert_eq!(col(&csv, "Emphysema"), col(&csv2, "Emphysema"));
    // The comma-separated label filter of this mode.
    assert_eq!(csv2.lines().next().unwrap(), "VolumeName,Pleural effusion,Emphysema");
    let s2: Value = serde_json::from_str(&std::fs::read_to_string(out2.join("summary.json")).unwrap()).unwrap();
    assert_eq!(s2["prompts"]["Pleural effusion"], "Fluid is seen in the pleural space");
}

/// The external-validation inputs committed by tests/reference/external_eval_reference.py.
fn external(name: &str) -> std::path::PathBuf {
    data(&format!("reference/external_eval/{name}"))
}

#[test]
fn eval_scores_matches_scikit_learn_and_writes_the_report() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("ext");
    let err = run(Command::new(bin())
        .args(["eval", "--scores"])
        .arg(external("scores.csv"))
        .arg("--labels")
        .arg(external("labels.csv"))
        .arg("--thresholds")
        .arg(external("thresholds.json"))
        .args(["--bootstrap", "200", "--output"])
        .arg(&out));
    let want = json_file("reference/external_eval/expected.json");
    let s: Value = serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(s["cases"], want["cases"]);
    assert_eq!(s["bootstrap"], 200);
    assert_eq!(s["id_matching"], "extension_stripped");
    assert_eq!(s["unmatched"]["only_in_scores"], want["only_in_scores"]);
    assert_eq!(s["unmatched"]["only_in_labels"], want["only_in_labels"]);
    assert_eq!(s["labels_only_in_scores"], want["labels_only_in_scores"]);
    assert_eq!(s["labels_only_in_labels"], want["labels_only_in_labels"]);
    assert_eq!(s["skipped"], serde_json::json!([]));
    // stderr names the unmatched ids and labels.
    for id in ["valid_0_a_1", "valid_43_a_1.nii.gz", "Emphysema", "Atelectasis"] {
        assert!(err.contains(id), "stderr lacks {id}: {err}");
    }
    // The keys of the corpus mode's summary.json are all there.
    for k in [
        "labels",
        "mean",
        "skipped",
        "heatmap_in_mask",
        "heatmap_peak_cell_overlaps_mask",
        "prompts",
        "model",
        "data",
        "corpus_seed",
        "cases",
        "bootstrap",
    ] {
        assert!(s.get(k).is_some(), "summary.json lacks {k}");
    }
    let got = s["labels"].as_array().unwrap();
    let want_labels = want["labels"].as_array().unwrap();
    assert_eq!(got.len(), want_labels.len());
    let f = |v: &Value, what: &str| v.as_f64().unwrap_or_else(|| panic!("{what}: not a number: {v}"));
    for w in want_labels {
        let name = w["label"].as_str().unwrap();
        let g = got.iter().find(|g| g["label"] == name).unwrap_or_else(|| panic!("no result for {name}"));
        assert_eq!(g["positives"], w["positives"], "{name}");
        assert_eq!(g["negatives"], w["negatives"], "{name}");
        let ex = &s["excluded"][name];
        assert_eq!(
            ex["non_finite_score"].as_u64().unwrap() + ex["missing_label"].as_u64().unwrap(),
            w["excluded"].as_u64().unwrap(),
            "{name}"
        );
        close(f(&g["full_set"]["auroc"], name), f(&w["auroc"], name), &format!("{name} auroc"));
        close(f(&g["full_set"]["auprc"], name), f(&w["auprc"], name), &format!("{name} auprc"));
        close(f(&g["threshold"], name), f(&w["threshold"], name), &format!("{name} threshold"));
        for k in ["f1_weighted", "accuracy", "precision", "recall"] {
            close(f(&g["full_set"][k], name), f(&w["at_optimal"][k], name), &format!("{name} {k} at the ROC-optimal threshold"));
        }
        assert_eq!(g["bootstrap"], 200, "{name}: every resample has both classes");
        let at = &g["at_model_threshold"];
        if w["at_model_threshold"].is_null() {
            assert!(at.is_null(), "{name}: no model threshold, got {at}");
            continue;
        }
        assert_eq!(f(&at["threshold"], name), f(&w["at_model_threshold"]["threshold"], name), "{name}");
        for k in ["f1_weighted", "accuracy", "precision", "recall"] {
            close(f(&at["full_set"][k], name), f(&w["at_model_threshold"][k], name), &format!("{name} {k} at the model threshold"));
        }
        // Same resamples as the ROC-optimal evaluation: the AUROC intervals agree.
        assert_eq!(at["ci95"]["auroc"], g["ci95"]["auroc"], "{name}");
        assert_eq!(at["bootstrap"], g["bootstrap"], "{name}");
        for k in ["f1_weighted", "accuracy", "precision", "recall"] {
            let [lo, hi] = [f(&at["ci95"][k][0], k), f(&at["ci95"][k][1], k)];
            assert!(lo <= hi, "{name} {k}: {lo} > {hi}");
        }
    }
    for k in ["auroc", "f1_weighted", "accuracy", "precision", "recall", "auprc"] {
        assert!(s["mean"][k].as_f64().is_some(), "mean.{k}");
        assert!(s["mean_at_model_thresholds"][k].as_f64().is_some(), "mean_at_model_thresholds.{k}");
    }

    // roc.svg is XML with one curve (a polyline of width 2) per label.
    let script = "import sys, xml.etree.ElementTree as ET\n\
root = ET.parse(sys.argv[1]).getroot()\n\
lines = [e for e in root.iter('{http://www.w3.org/2000/svg}polyline') if e.get('stroke-width') == sys.argv[2]]\n\
print(len(lines))";
    let o = Command::new(test_python())
        .arg("-c")
        .arg(script)
        .arg(out.join("roc.svg"))
        .arg(radbridge_train::eval_report::CURVE_WIDTH.to_string())
        .output()
        .unwrap();
    assert!(o.status.success(), "roc.svg does not parse: {}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), want_labels.len().to_string());

    // report.html: self-contained, the disclaimer, every label (escaped), the counts.
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains(radbridge_model::analysis::DISCLAIMER));
    for w in want_labels {
        let name = w["label"].as_str().unwrap();
        assert!(html.contains(&radbridge_train::eval_report::escape_html(name)), "report.html lacks {name}");
    }
    assert!(html.contains("Bronchiectasis &amp; &lt;mosaic&gt;") && !html.contains("<mosaic>"));
    assert!(html.contains("<svg") && html.contains("40 cases matched"));
    for bad in ["http://", "https://", "<script", "<link", "src="] {
        assert!(!html.contains(bad), "report.html holds {bad}");
    }
}

/// Run the CLI expecting exit status 1 and one line on stderr; returns the line.
fn one_line_error(cmd: &mut Command) -> String {
    let o = cmd.output().expect("run radbridge");
    let err = String::from_utf8_lossy(&o.stderr).trim_end().to_string();
    assert_eq!(o.status.code(), Some(1), "{cmd:?}: {err}");
    assert_eq!(err.lines().count(), 1, "not one line: {err}");
    assert!(err.starts_with("error: "), "{err}");
    err
}

#[test]
fn eval_scores_input_errors_are_one_named_line() {
    let tmp = tempfile::tempdir().unwrap();
    let scores = external("scores.csv");
    let eval = |labels: &Path| {
        let mut c = Command::new(bin());
        c.args(["eval", "--scores"]).arg(&scores).arg("--labels").arg(labels).arg("--output").arg(tmp.path().join("out"));
        c
    };
    let nomatch = tmp.path().join("nomatch.csv");
    std::fs::write(&nomatch, "VolumeName,Cardiomegaly\ntrain_1_a_1.nii.gz,1\ntrain_2_a_1.nii.gz,0\n").unwrap();
    let e = one_line_error(&mut eval(&nomatch));
    assert!(e.contains(&format!("{}: no VolumeName matches", nomatch.display())) && e.contains("scores.csv"), "{e}");
    let noid = tmp.path().join("noid.csv");
    std::fs::write(&noid, "AccessionNo,Cardiomegaly\nvalid_2_a_1.nii.gz,1\n").unwrap();
    let e = one_line_error(&mut eval(&noid));
    assert!(e.contains(&format!("{}: no VolumeName column", noid.display())), "{e}");
    // Nothing was written.
    assert!(!tmp.path().join("out").exists());
    // In this mode --labels is one path.
    let e = one_line_error(eval(&noid).arg("--labels").arg(&nomatch));
    assert!(e.contains("--labels takes exactly one path"), "{e}");
    // Neither mode.
    let e = one_line_error(Command::new(bin()).args(["eval", "--output"]).arg(tmp.path().join("out")));
    assert!(e.contains("--scores") && e.contains("--data"), "{e}");
}

#[test]
fn eval_scores_takes_the_thresholds_of_model() {
    let tmp = tempfile::tempdir().unwrap();
    let model = import_tiny("brgsa", tmp.path());
    // The model's thresholds.json, recorded in its manifest.
    std::fs::copy(external("thresholds.json"), model.join("thresholds.json")).unwrap();
    let mpath = model.join("model.json");
    let mut manifest: Value = serde_json::from_str(&std::fs::read_to_string(&mpath).unwrap()).unwrap();
    manifest["thresholds"] = Value::from("thresholds.json");
    std::fs::write(&mpath, serde_json::to_string_pretty(&manifest).unwrap()).unwrap();
    let out = tmp.path().join("ext");
    run(Command::new(bin())
        .args(["eval", "--scores"])
        .arg(external("scores.csv"))
        .arg("--labels")
        .arg(external("labels.csv"))
        .arg("--model")
        .arg(&model)
        .args(["--bootstrap", "0", "--output"])
        .arg(&out));
    let s: Value = serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(s["model"]["name"], manifest["name"]);
    assert_eq!(s["model_thresholds"]["file"].as_str().unwrap(), model.join("thresholds.json").display().to_string());
    let pe = s["labels"].as_array().unwrap().iter().find(|l| l["label"] == "Pleural effusion").unwrap();
    assert_eq!(pe["at_model_threshold"]["threshold"], 0.125);
    assert_eq!(s["model_thresholds"]["labels_without"], serde_json::json!(["Bronchiectasis & <mosaic>"]));
}
