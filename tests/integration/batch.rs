//! `radbridge batch` and `batch merge` end to end on a small synthetic cohort with the tiny
//! random-weight models: the contract files, equality with `diagnose`, failures recorded with
//! diagnose's named error, resume and `--force`, shards merged into the single-process result,
//! the shard chosen from Slurm's and Kubernetes' environment, and one named error for bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use radbridge_tests::{bin, data, import_tiny};
use radbridge_train::batch::read_embeddings;
use serde_json::Value;

/// A synthetic cohort (6 CTs) and the tiny BrgSA and CT-CLIP models, made once per test binary.
pub struct Fixture {
    pub dir: PathBuf,
    pub cases: Vec<PathBuf>,
    pub brgsa: PathBuf,
    pub ctclip: PathBuf,
}

pub fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        // Fixtures of earlier runs (kept for the life of a test binary) are removed.
        if let Ok(entries) = std::fs::read_dir(env!("CARGO_TARGET_TMPDIR")) {
            for e in entries.flatten() {
                let old = e.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok()).is_some_and(|a| a.as_secs() > 3600);
                if old && e.file_name().to_string_lossy().starts_with("batch-fixture") {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let dir = tempfile::Builder::new().prefix("batch-fixture").tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap().keep();
        let corpus = dir.join("corpus");
        let out = Command::new(bin())
            .args(["synth", "--count", "6", "--seed", "77", "--chest-fraction", "0", "--output"])
            .arg(&corpus)
            .output()
            .unwrap();
        assert!(out.status.success(), "synth: {}", String::from_utf8_lossy(&out.stderr));
        let cases = (1..=6).map(|i| corpus.join(format!("case_{i:04}/ct.nii.gz"))).collect();
        let (brgsa, ctclip) = (import_tiny("brgsa", &dir), import_tiny("ctclip", &dir));
        // The tiny models keep the full-size preprocessing (a 480×480×240 input makes the tiny
        // CT-CLIP take minutes a study): give both the input size of their fixtures' input.npy.
        for (m, shape, spacing) in [(&brgsa, [64, 64, 32], [6.0, 6.0, 12.0]), (&ctclip, [16, 16, 8], [24.0, 24.0, 48.0])] {
            let p = m.join("model.json");
            let mut j: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
            j["preprocess"]["target_shape"] = serde_json::json!(shape);
            j["preprocess"]["target_spacing"] = serde_json::json!(spacing);
            std::fs::write(&p, serde_json::to_string_pretty(&j).unwrap()).unwrap();
        }
        Fixture { brgsa, ctclip, cases, dir }
    })
}

pub fn radbridge(args: &[&str], paths: &[(&str, &Path)]) -> Output {
    radbridge_env(args, paths, &[])
}

/// [`radbridge`] with these scheduler variables set (the others removed).
fn radbridge_env(args: &[&str], paths: &[(&str, &Path)], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(bin());
    c.args(args);
    for (flag, p) in paths {
        if !flag.is_empty() {
            c.arg(flag);
        }
        c.arg(p);
    }
    c.env("RADBRIDGE_CACHE_DIR", fixture().dir.join("cache"))
        .env_remove("SLURM_ARRAY_TASK_ID")
        .env_remove("SLURM_ARRAY_TASK_COUNT")
        .env_remove("JOB_COMPLETION_INDEX")
        .envs(env.iter().copied());
    c.output().expect("run radbridge")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// A manifest (`id,path,site`) in `dir`.
pub fn manifest(dir: &Path, rows: &[(&str, &Path)]) -> PathBuf {
    let p = dir.join("manifest.csv");
    let mut s = String::from("id,path,site\n");
    for (id, path) in rows {
        s.push_str(&format!("{id},{},x\n", path.display()));
    }
    std::fs::write(&p, s).unwrap();
    p
}

/// scores.csv as (ids, header, rows of numbers).
pub fn scores(path: &Path) -> (Vec<String>, Vec<String>, Vec<Vec<f64>>) {
    let mut r = csv_rows(path);
    let header = r.remove(0);
    let ids = r.iter().map(|row| row[0].clone()).collect();
    let vals = r.iter().map(|row| row[1..].iter().map(|v| v.parse().unwrap()).collect()).collect();
    (ids, header, vals)
}

fn csv_rows(path: &Path) -> Vec<Vec<String>> {
    // The files hold no quoted separators in these tests except the error column, which is last.
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let mut parts: Vec<String> = Vec::new();
            let mut rest = l;
            while let Some(i) = rest.find(',') {
                if rest.starts_with('"') {
                    break;
                }
                parts.push(rest[..i].to_string());
                rest = &rest[i + 1..];
            }
            parts.push(rest.trim_matches('"').replace("\"\"", "\""));
            parts
        })
        .collect()
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

#[test]
fn batch_matches_diagnose_records_failures_and_resumes() {
    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nowhere/ct.nii.gz");
    let bad = data("corrupt/nifti/dim0_nine.nii");
    let m = manifest(
        tmp.path(),
        &[("site-A/case 1", &f.cases[0]), ("broken", &bad), ("case2", &f.cases[1]), ("gone", &missing), ("case3", &f.cases[2])],
    );
    let out = tmp.path().join("out");
    let o = radbridge(
        &["batch", "--labels", "ct-rate", "--finding", "a large mass"],
        &[("--model", &f.brgsa), ("--manifest", &m), ("--output", &out)],
    );
    assert_eq!(o.status.code(), Some(3), "some failed: {}", stderr(&o));

    // scores.csv: the successes in manifest order, a column per label and typed finding.
    let (ids, header, vals) = scores(&out.join("scores.csv"));
    assert_eq!(ids, ["site-A/case 1", "case2", "case3"]);
    assert_eq!(header[0], "VolumeName");
    assert_eq!(header.len(), 1 + 18 + 1, "18 CT-RATE labels and the typed finding: {header:?}");
    assert_eq!(header.last().unwrap(), "a large mass");

    // Each record is diagnose's: the same scores for the same CT.
    let rec = json(&out.join("studies/site-A_case_1.json"));
    let dj = tmp.path().join("d.json");
    let o = radbridge(
        &["diagnose", "--labels", "ct-rate", "--finding", "a large mass"],
        &[("", &f.cases[0]), ("--model", &f.brgsa), ("--json", &dj)],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let d = json(&dj);
    assert_eq!(rec["model"], d["model"]);
    assert_eq!(rec["source"]["path"], d["source"]["path"]);
    let (rf, df) = (rec["findings"].as_array().unwrap(), d["findings"].as_array().unwrap());
    assert_eq!(rf.len(), df.len());
    for (k, (a, b)) in rf.iter().zip(df).enumerate() {
        assert_eq!(a["label"], b["label"]);
        let (x, y) = (a["score"].as_f64().unwrap(), b["score"].as_f64().unwrap());
        assert!((x - y).abs() < 1e-5, "{}: batch {x} vs diagnose {y}", a["label"]);
        assert!((vals[0][k] - x).abs() < 1e-6, "scores.csv = the record");
    }
    assert_eq!(rec["image_bank_top"], d["image_bank_top"]);

    // failures.csv: the study, its path and the error diagnose gives for it.
    let fails = csv_rows(&out.join("failures.csv"));
    assert_eq!(fails[0], ["id", "path", "error"]);
    assert_eq!(fails.len(), 3);
    assert_eq!(fails[1][0], "broken");
    let o = radbridge(&["diagnose"], &[("", &bad), ("--model", &f.brgsa)]);
    let diag_err = stderr(&o).trim().trim_start_matches("error: ").to_string();
    assert_eq!(fails[1][2], diag_err);
    assert_eq!(fails[2][0], "gone");
    assert!(fails[2][2].contains("nowhere/ct.nii.gz"), "{}", fails[2][2]);

    // embeddings.safetensors: v and v_hat, a row per success, the ids in the metadata.
    let (t, meta) = read_embeddings(&out.join("embeddings.safetensors")).unwrap();
    let ids_meta: Vec<String> = serde_json::from_str(&meta["ids"]).unwrap();
    assert_eq!(ids_meta, ids);
    assert_eq!(t.keys().collect::<Vec<_>>(), ["v", "v_hat"]);
    assert_eq!(t["v"].0[0], 3);
    let (one, _) = read_embeddings(&out.join("parts/embeddings/case3.safetensors")).unwrap();
    let dim = t["v"].0[1];
    assert_eq!(t["v"].1[2 * dim..3 * dim], one["v"].1[..], "row 2 is the third success");

    // run.json: counts, model, prompts, timing.
    let run = json(&out.join("run.json"));
    assert_eq!(run["counts"]["studies"], 5);
    assert_eq!(run["counts"]["succeeded"], 3);
    assert_eq!(run["counts"]["failed"], 2);
    assert_eq!(run["counts"]["done"], 3);
    assert_eq!(run["counts"]["skipped"], 0);
    assert_eq!(run["model"]["weights_sha256"], d["model"]["weights_sha256"]);
    assert_eq!(run["label_set"], "ct-rate");
    assert_eq!(run["prompts"].as_array().unwrap().len(), 19);
    assert!(run["studies_per_hour"].as_f64().unwrap() > 0.0);
    assert!(run["seconds"]["stages"]["encode image"].as_f64().unwrap() > 0.0);

    // Resume: nothing recomputed, the files unchanged.
    let rec_path = out.join("studies/case2.json");
    let before = std::fs::metadata(&rec_path).unwrap().modified().unwrap();
    let scores_before = std::fs::read(out.join("scores.csv")).unwrap();
    let o = radbridge(
        &["batch", "--labels", "ct-rate", "--finding", "a large mass"],
        &[("--model", &f.brgsa), ("--manifest", &m), ("--output", &out)],
    );
    assert_eq!(o.status.code(), Some(3));
    assert!(stderr(&o).contains("0 done, 2 failed, 3 already done"), "{}", stderr(&o));
    assert_eq!(std::fs::metadata(&rec_path).unwrap().modified().unwrap(), before);
    assert_eq!(std::fs::read(out.join("scores.csv")).unwrap(), scores_before);
    // Other prompts are another run: the studies are computed again.
    let o = radbridge(&["batch", "--labels", "ct-rate"], &[("--model", &f.brgsa), ("--manifest", &m), ("--output", &out)]);
    assert!(stderr(&o).contains("3 done, 2 failed, 0 already done"), "{}", stderr(&o));
    assert_eq!(scores(&out.join("scores.csv")).1.len(), 19);
    // --force recomputes.
    let o = radbridge(&["batch", "--labels", "ct-rate", "--force"], &[("--model", &f.brgsa), ("--manifest", &m), ("--output", &out)]);
    assert!(stderr(&o).contains("3 done, 2 failed, 0 already done"), "{}", stderr(&o));
    assert!(!out.read_dir().unwrap().any(|e| e.unwrap().file_name().to_string_lossy().ends_with(".tmp")), "no temporary left");
}

#[test]
fn shards_merge_into_the_single_process_result() {
    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let bad = data("corrupt/nifti/gz_cut.nii.gz");
    let rows: Vec<(String, PathBuf)> =
        f.cases.iter().enumerate().map(|(i, p)| (format!("s{i}"), p.clone())).chain([("bad".to_string(), bad)]).collect();
    let rows_ref: Vec<(&str, &Path)> = rows.iter().map(|(a, b)| (a.as_str(), b.as_path())).collect();
    let m = manifest(tmp.path(), &rows_ref);
    let single = tmp.path().join("single");
    let o = radbridge(&["batch"], &[("--model", &f.ctclip), ("--manifest", &m), ("--output", &single)]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));

    let sharded = tmp.path().join("sharded");
    for i in 0..2 {
        let o = radbridge(
            &["batch", "--shard-index", &i.to_string(), "--shard-count", "3"],
            &[("--model", &f.ctclip), ("--manifest", &m), ("--output", &sharded)],
        );
        assert!(o.status.code() == Some(0) || o.status.code() == Some(3), "{}", stderr(&o));
        assert!(!sharded.join("scores.csv").exists(), "a shard writes only its own files");
    }
    // Shard 2 has not run: merge says which studies are missing.
    let o = radbridge(&["batch", "merge"], &[("", &sharded)]);
    assert_eq!(o.status.code(), Some(3));
    assert!(stderr(&o).contains("missing: s2 (shard 2)") && stderr(&o).contains("missing: s5 (shard 2)"), "{}", stderr(&o));
    let fails = csv_rows(&sharded.join("failures.csv"));
    assert!(fails.iter().any(|r| r[0] == "s2" && r[2].contains("shard 2 of 3")), "{fails:?}");

    let o = radbridge(
        &["batch", "--shard-index", "2", "--shard-count", "3"],
        &[("--model", &f.ctclip), ("--manifest", &m), ("--output", &sharded)],
    );
    assert!(o.status.success(), "s2, s5 succeed: {}", stderr(&o));
    let o = radbridge(&["batch", "merge"], &[("", &sharded)]);
    assert_eq!(o.status.code(), Some(3), "the bad study failed: {}", stderr(&o));
    let (a, b) = (scores(&single.join("scores.csv")), scores(&sharded.join("scores.csv")));
    assert_eq!(a.0, b.0);
    assert_eq!(a.1, b.1);
    for (x, y) in a.2.iter().flatten().zip(b.2.iter().flatten()) {
        assert!((x - y).abs() < 1e-6, "{x} vs {y}");
    }
    assert_eq!(csv_rows(&single.join("failures.csv")), csv_rows(&sharded.join("failures.csv")));
    let (ea, ma) = read_embeddings(&single.join("embeddings.safetensors")).unwrap();
    let (eb, mb) = read_embeddings(&sharded.join("embeddings.safetensors")).unwrap();
    assert_eq!(ma["ids"], mb["ids"]);
    assert_eq!(ea.keys().collect::<Vec<_>>(), ["latent"], "CT-CLIP: the latent");
    assert_eq!(ea["latent"].0, eb["latent"].0);
    for (x, y) in ea["latent"].1.iter().zip(&eb["latent"].1) {
        assert!((x - y).abs() < 1e-6);
    }
    let run = json(&sharded.join("run.json"));
    assert_eq!(run["shards"].as_array().unwrap().len(), 3);
    assert_eq!(run["counts"]["succeeded"], 6);
}

#[test]
fn the_scheduler_environment_selects_the_shard() {
    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    // Studies that fail at once (missing files) show which ones a shard took.
    let paths: Vec<PathBuf> = (0..7).map(|i| tmp.path().join(format!("missing{i}.nii.gz"))).collect();
    let rows: Vec<(String, &Path)> = paths.iter().enumerate().map(|(i, p)| (format!("m{i}"), p.as_path())).collect();
    let rows_ref: Vec<(&str, &Path)> = rows.iter().map(|(a, b)| (a.as_str(), *b)).collect();
    let m = manifest(tmp.path(), &rows_ref);
    let taken = |out: &Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(out.join("parts/failures"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().trim_end_matches(".json").to_string())
            .collect();
        v.sort();
        v
    };
    // Kubernetes Indexed Job: JOB_COMPLETION_INDEX with --shard-count.
    let out = tmp.path().join("k8s");
    let o = radbridge_env(
        &["batch", "--shard-count", "3"],
        &[("--model", &f.brgsa), ("--manifest", &m), ("--output", &out)],
        &[("JOB_COMPLETION_INDEX", "1")],
    );
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert_eq!(taken(&out), ["m1", "m4"]);
    assert!(out.join("parts/shard-1-of-3.json").is_file());
    // Slurm job array --array=1-3: task 3 is shard 2.
    let out = tmp.path().join("slurm");
    let o = radbridge_env(
        &["batch"],
        &[("--model", &f.brgsa), ("--manifest", &m), ("--output", &out)],
        &[("SLURM_ARRAY_TASK_ID", "3"), ("SLURM_ARRAY_TASK_COUNT", "3"), ("SLURM_ARRAY_TASK_MIN", "1")],
    );
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert_eq!(taken(&out), ["m2", "m5"]);
    // JOB_COMPLETION_INDEX without a shard count is a named error.
    let o = radbridge_env(
        &["batch"],
        &[("--model", &f.brgsa), ("--manifest", &m), ("--output", &tmp.path().join("x"))],
        &[("JOB_COMPLETION_INDEX", "1")],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--shard-count"), "{}", stderr(&o));
}

#[test]
fn bad_batch_input_is_one_named_error_before_any_work() {
    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let cases: Vec<(Vec<&str>, PathBuf, &str)> = vec![
        (vec![], tmp.path().join("absent.csv"), "absent.csv: cannot read the manifest"),
        (
            vec![],
            {
                let p = tmp.path().join("cols.csv");
                std::fs::write(&p, "name,file\na,b\n").unwrap();
                p
            },
            "cols.csv: the header must name the columns 'id' and 'path'",
        ),
        (
            vec![],
            {
                let p = tmp.path().join("dup.csv");
                std::fs::write(&p, "id,path\na,x\na,y\n").unwrap();
                p
            },
            "dup.csv: line 3: the id 'a' is already on line 2",
        ),
        (vec!["--labels", "no-such-set"], manifest(tmp.path(), &[("a", &f.cases[0])]), "unknown label set 'no-such-set'"),
    ];
    for (extra, m, want) in cases {
        let mut args = vec!["batch"];
        args.extend(extra);
        let o = radbridge(&args, &[("--model", &f.brgsa), ("--manifest", &m), ("--output", &out)]);
        assert_eq!(o.status.code(), Some(1), "{want}: {}", stderr(&o));
        let e = stderr(&o);
        assert_eq!(e.trim().lines().count(), 1, "one line: {e}");
        assert!(e.contains(want), "want '{want}': {e}");
        assert!(!out.join("studies").exists(), "no work started for '{want}'");
    }
    // A model folder that is not a model.
    let m = manifest(tmp.path(), &[("a", &f.cases[0])]);
    let o = radbridge(&["batch"], &[("--model", tmp.path()), ("--manifest", &m), ("--output", &out)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("cannot load the model"), "{}", stderr(&o));
    // merge of a folder with no run.
    let o = radbridge(&["batch", "merge"], &[("", tmp.path())]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no batch run here"), "{}", stderr(&o));
}

#[test]
fn batch_scores_feed_external_validation() {
    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let rows: Vec<(String, PathBuf)> = f.cases.iter().enumerate().map(|(i, p)| (format!("case_{:04}", i + 1), p.clone())).collect();
    let rows_ref: Vec<(&str, &Path)> = rows.iter().map(|(a, b)| (a.as_str(), b.as_path())).collect();
    let m = manifest(tmp.path(), &rows_ref);
    let out = tmp.path().join("out");
    let o = radbridge(&["batch", "--labels", "all"], &[("--model", &f.brgsa), ("--manifest", &m), ("--output", &out)]);
    assert!(o.status.success(), "{}", stderr(&o));
    // The synthetic corpus' labels.csv names volumes case_0001.nii.gz: matched without the extension.
    let labels = f.cases[0].parent().unwrap().parent().unwrap().join("labels.csv");
    let ev = tmp.path().join("eval");
    let o = radbridge(&["eval", "--bootstrap", "20"], &[("--scores", &out.join("scores.csv")), ("--labels", &labels), ("--output", &ev)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = json(&ev.join("summary.json"));
    assert_eq!(s["cases"], 6, "{s}");
    assert_eq!(s["id_matching"], "extension_stripped");
    assert!(!s["labels"].as_array().unwrap().is_empty(), "labels with both classes are evaluated");
    assert!(ev.join("roc.svg").is_file() && ev.join("report.html").is_file());
}

#[test]
fn an_interrupted_batch_keeps_what_it_finished_and_resumes() {
    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let rows: Vec<(String, PathBuf)> = (0..400).map(|i| (format!("r{i:03}"), f.cases[i % 6].clone())).collect();
    let rows_ref: Vec<(&str, &Path)> = rows.iter().map(|(a, b)| (a.as_str(), b.as_path())).collect();
    let m = manifest(tmp.path(), &rows_ref);
    let out = tmp.path().join("out");
    let child = Command::new(bin())
        .args(["batch", "--model"])
        .arg(&f.brgsa)
        .arg("--manifest")
        .arg(&m)
        .arg("--output")
        .arg(&out)
        .env("RADBRIDGE_CACHE_DIR", f.dir.join("cache"))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until some studies are finished, then Ctrl-C.
    let t = std::time::Instant::now();
    while std::fs::read_dir(out.join("studies")).map(|d| d.count()).unwrap_or(0) < 3 {
        assert!(t.elapsed().as_secs() < 120, "no study finished");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    assert!(stderr(&o).contains("the same command resumes"), "{}", stderr(&o));
    let kept: Vec<PathBuf> = std::fs::read_dir(out.join("studies")).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(kept.len() >= 3 && kept.len() < 400, "{} records", kept.len());
    for p in &kept {
        assert_eq!(p.extension().unwrap(), "json", "only whole records: {}", p.display());
        json(p);
    }
    let rec = json(&out.join("parts/shard-0-of-1.json"));
    assert!(rec["finished"].is_null(), "the record says the shard did not finish");
    assert_eq!(rec["done"].as_u64().unwrap() as usize, kept.len());
    // The same command resumes: the kept studies are skipped.
    let o = radbridge(&["batch"], &[("--model", &f.brgsa), ("--manifest", &m), ("--output", &out)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains(&format!("{} already done", kept.len())), "{}", stderr(&o));
    assert_eq!(scores(&out.join("scores.csv")).0.len(), 400);
}
