//! The study library end to end on a synthetic cohort: `batch` with the bundled demo model →
//! `library import` → `search`. The text ranking is the model's zero-shot score (the same
//! numbers as the batch's scores.csv, so the same AUROC against the labels), `--like` is
//! symmetric and finds the study itself, imports are idempotent and atomic, and every bad input
//! is one named error.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use radbridge_tests::{bin, data, import_tiny};
use serde_json::Value;

const LABEL: &str = "Pulmonary fibrosis";

struct Cohort {
    dir: PathBuf,
    out: PathBuf,
    /// case name (case_0001) → label of LABEL.
    labels: HashMap<String, bool>,
}

fn demo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/demo")
}

fn run(args: &[&str], dir: &Path) -> Output {
    Command::new(bin()).args(args).env("RADBRIDGE_CACHE_DIR", dir.join("cache")).output().expect("run radbridge")
}

fn ok(o: Output, what: &str) -> String {
    assert!(o.status.success(), "{what}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn err(o: Output) -> String {
    assert_eq!(o.status.code(), Some(1), "expected exit 1; stdout {}", String::from_utf8_lossy(&o.stdout));
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// 16 synthetic CTs (seed 31: three with pulmonary fibrosis), one batch run of the demo model.
fn cohort() -> &'static Cohort {
    static C: OnceLock<Cohort> = OnceLock::new();
    C.get_or_init(|| {
        let dir = tempfile::Builder::new().prefix("library-fixture").tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap().keep();
        let corpus = dir.join("corpus");
        let chest = data("totalsegmentator/chest_ct.nii.gz");
        let args = ["synth", "--count", "16", "--seed", "31", "--chest-ct", s(&chest), "--output", s(&corpus)];
        ok(run(&args, &dir), "synth");
        let mut manifest = String::from("id,path\n");
        for i in 1..=16 {
            manifest.push_str(&format!("case_{i:04},{}\n", corpus.join(format!("case_{i:04}/ct.nii.gz")).display()));
        }
        std::fs::write(dir.join("manifest.csv"), &manifest).unwrap();
        let out = dir.join("out");
        let demo = demo();
        let manifest = dir.join("manifest.csv");
        let args = ["batch", "--model", s(&demo), "--manifest", s(&manifest), "--output", s(&out)];
        ok(run(&args, &dir), "batch");
        let text = std::fs::read_to_string(corpus.join("labels.csv")).unwrap();
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap().split(',').collect();
        let col = header.iter().position(|h| *h == LABEL).unwrap();
        let labels = lines
            .map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                (f[0].split('.').next().unwrap().to_string(), f[col].parse::<f64>().unwrap() > 0.5)
            })
            .collect();
        Cohort { dir, out, labels }
    })
}

/// AUROC (Mann–Whitney, ties ½) of scores against labels.
fn auroc(pairs: &[(f64, bool)]) -> f64 {
    let pos: Vec<f64> = pairs.iter().filter(|p| p.1).map(|p| p.0).collect();
    let neg: Vec<f64> = pairs.iter().filter(|p| !p.1).map(|p| p.0).collect();
    assert!(!pos.is_empty() && !neg.is_empty(), "both classes are needed");
    let mut s = 0.0;
    for p in &pos {
        for n in &neg {
            s += if p > n {
                1.0
            } else if p == n {
                0.5
            } else {
                0.0
            };
        }
    }
    s / (pos.len() * neg.len()) as f64
}

/// scores.csv's column for LABEL, by case.
fn csv_scores(out: &Path) -> HashMap<String, f64> {
    let text = std::fs::read_to_string(out.join("scores.csv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = header.iter().position(|h| *h == LABEL).unwrap();
    lines.map(|l| l.split(',').collect::<Vec<_>>()).map(|f| (f[0].to_string(), f[col].parse().unwrap())).collect()
}

fn case_of(path: &str) -> String {
    Path::new(path).parent().unwrap().file_name().unwrap().to_string_lossy().to_string()
}

fn json(s: &str) -> Vec<Value> {
    serde_json::from_str::<Value>(s).unwrap().as_array().unwrap().clone()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn text_search_ranks_by_the_zero_shot_score_from_the_library_and_from_the_batch() {
    let c = cohort();
    let db = c.dir.join("text.sqlite3");
    let demo = demo();
    let import = ok(run(&["library", "import", s(&c.out), "--db", s(&db)], &c.dir), "import");
    let _ = import;
    let again = run(&["library", "import", s(&c.out), "--db", s(&db)], &c.dir);
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("0 added, 16 already in the library"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let list = json(&ok(run(&["library", "list", "--db", s(&db), "--json"], &c.dir), "list"));
    assert_eq!(list.len(), 16, "one library study per batch study, imported once");
    assert!(list.iter().all(|st| st["origin"] == "batch" && st["runs"] == 1 && st["status"] == "analysed"));
    let ids: Vec<i64> = list.iter().map(|st| st["id"].as_i64().unwrap()).collect();

    let expected = csv_scores(&c.out);
    let want_auroc = auroc(&expected.iter().map(|(k, v)| (*v, c.labels[k])).collect::<Vec<_>>());
    for from in [["--db", s(&db)], ["--batch", s(&c.out)]] {
        let args = ["search", "--model", s(&demo), "--text", LABEL, "--top", "100", "--json", from[0], from[1]];
        let hits = json(&ok(run(&args, &c.dir), "search"));
        assert_eq!(hits.len(), 16);
        let mut last = f64::INFINITY;
        let mut pairs = Vec::new();
        for h in &hits {
            let score = h["score"].as_f64().unwrap();
            assert!(score <= last, "best first");
            last = score;
            let case = case_of(h["path"].as_str().unwrap());
            // The search score is the finding's score (scores.csv), to float precision.
            assert!((score - expected[&case]).abs() < 1e-5, "{case}: search {score} vs scores.csv {}", expected[&case]);
            if from[0] == "--db" {
                assert!(ids.contains(&h["id"].as_i64().unwrap()), "--db ids are library ids");
            } else {
                assert_eq!(h["id"].as_str().unwrap(), case, "--batch ids are the manifest ids");
            }
            pairs.push((score, c.labels[&case]));
        }
        let got = auroc(&pairs);
        assert!((got - want_auroc).abs() < 1e-12, "ranking AUROC {got} vs scores.csv AUROC {want_auroc}");
        // The demo model separates this finding: the studies with it rank above those without.
        assert!(got >= 0.8, "{LABEL}: AUROC {got}");
        let top =
            json(&ok(run(&["search", "--model", s(&demo), "--text", LABEL, "--top", "3", "--json", from[0], from[1]], &c.dir), "top"));
        assert_eq!(top, hits[..3].to_vec(), "--top keeps the best");
    }
}

#[test]
fn like_finds_the_study_itself_and_is_symmetric() {
    let c = cohort();
    let demo = demo();
    let like = |id: &str, extra: &[&str]| {
        let mut a = vec!["search", "--model", s(&demo), "--like", id, "--top", "100", "--json", "--batch", s(&c.out)];
        a.extend_from_slice(extra);
        json(&ok(run(&a, &c.dir), "like"))
    };
    let with_self = like("case_0003", &["--include-self"]);
    assert_eq!(with_self[0]["id"], "case_0003");
    assert!((with_self[0]["score"].as_f64().unwrap() - 1.0).abs() < 1e-5);
    let others = like("case_0003", &[]);
    assert_eq!(others.len(), 15);
    assert!(others.iter().all(|h| h["id"] != "case_0003"), "the query study is left out by default");
    let b = others[4]["id"].as_str().unwrap().to_string();
    let back = like(&b, &[]);
    let ab = others[4]["score"].as_f64().unwrap();
    let ba = back.iter().find(|h| h["id"] == "case_0003").unwrap()["score"].as_f64().unwrap();
    assert!((ab - ba).abs() < 1e-6, "cos(a, b) {ab} = cos(b, a) {ba}");
}

#[test]
fn model_mismatch_and_bad_input_are_named_errors_and_a_failed_import_changes_nothing() {
    let c = cohort();
    let demo = demo();
    let tiny = import_tiny("brgsa", &c.dir.join("tiny"));
    // Another model's checksum: the batch is refused, the library reports nothing to search.
    let e = err(run(&["search", "--model", s(&tiny), "--text", LABEL, "--batch", s(&c.out)], &c.dir));
    assert!(e.contains("made by model 'brgsa-demo'") && e.contains("nothing was searched"), "{e}");
    let db = c.dir.join("bad.sqlite3");
    ok(run(&["library", "import", s(&c.out), "--db", s(&db)], &c.dir), "import");
    let e = err(run(&["search", "--model", s(&tiny), "--text", LABEL, "--db", s(&db)], &c.dir));
    assert!(e.contains("16 studies") && e.contains("skipped") && e.contains("no study has image embeddings from this model"), "{e}");
    // Empty sentence, unknown id.
    let e = err(run(&["search", "--model", s(&demo), "--text", "  ", "--db", s(&db)], &c.dir));
    assert!(e.contains("the sentence is empty"), "{e}");
    let e = err(run(&["search", "--model", s(&demo), "--like", "9999", "--db", s(&db)], &c.dir));
    assert!(e.contains("no study '9999'"), "{e}");
    // A batch folder without embeddings, a folder that is no batch output.
    let broken = c.dir.join("broken-batch");
    let _ = std::fs::remove_dir_all(&broken);
    copy_dir(&c.out, &broken);
    std::fs::remove_file(broken.join("embeddings.safetensors")).unwrap();
    let e = err(run(&["library", "import", s(&broken), "--db", s(&db)], &c.dir));
    assert!(e.contains("embeddings.safetensors") && e.contains("no embeddings"), "{e}");
    let e = err(run(&["library", "import", s(&c.dir.join("corpus")), "--db", s(&db)], &c.dir));
    assert!(e.contains("no run.json"), "{e}");
    // One damaged record: the import fails naming it, and nothing of it is kept.
    let _ = std::fs::remove_dir_all(&broken);
    copy_dir(&c.out, &broken);
    std::fs::write(broken.join("studies/case_0009.json"), "{not json").unwrap();
    let fresh = c.dir.join("atomic.sqlite3");
    let e = err(run(&["library", "import", s(&broken), "--db", s(&fresh)], &c.dir));
    assert!(e.contains("case_0009.json") && e.contains("not a diagnose record"), "{e}");
    let list = json(&ok(run(&["library", "list", "--db", s(&fresh), "--json"], &c.dir), "list"));
    assert!(list.is_empty(), "a failed import leaves the library unchanged");
    // A database from a newer Radbridge.
    let newer = c.dir.join("newer.sqlite3");
    std::fs::copy(&db, &newer).unwrap();
    rusqlite_set_version(&newer, 99);
    let e = err(run(&["library", "list", "--db", s(&newer)], &c.dir));
    assert!(e.contains("schema version 99 is newer"), "{e}");
}

fn rusqlite_set_version(db: &Path, v: i64) {
    let c = rusqlite::Connection::open(db).unwrap();
    c.execute_batch(&format!("PRAGMA user_version = {v};")).unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn diagnose_record_adds_the_study_and_a_later_import_joins_it() {
    let c = cohort();
    let demo = demo();
    let db = c.dir.join("diagnose.sqlite3");
    let ct = c.dir.join("corpus/case_0002/ct.nii.gz");
    let dj = c.dir.join("case_0002.json");
    ok(run(&["diagnose", s(&ct), "--model", s(&demo), "--json", s(&dj), "--record", "--db", s(&db)], &c.dir), "diagnose");
    let list = json(&ok(run(&["library", "list", "--db", s(&db), "--json"], &c.dir), "list"));
    assert_eq!(list.len(), 1);
    assert_eq!((list[0]["origin"].as_str(), list[0]["runs"].as_i64()), (Some("cli"), Some(1)));
    let d: Value = serde_json::from_str(&std::fs::read_to_string(&dj).unwrap()).unwrap();
    assert_eq!(d["model"]["device"], "cpu", "the device is recorded");
    // A device this build or machine lacks is one named error, before any work.
    for (dev, want) in [("tpu", "device 'tpu': unknown device"), ("cuda:0", "device 'cuda:0': ")] {
        let e = err(run(&["diagnose", s(&ct), "--model", s(&demo), "--device", dev], &c.dir));
        assert!(e.contains(want), "{e}");
    }
    let want = d["findings"].as_array().unwrap().iter().find(|f| f["label"] == LABEL).unwrap()["score"].as_f64().unwrap();
    let hits = json(&ok(run(&["search", "--model", s(&demo), "--text", LABEL, "--db", s(&db), "--json"], &c.dir), "search"));
    assert_eq!(hits.len(), 1);
    assert!((hits[0]["score"].as_f64().unwrap() - want).abs() < 1e-5, "search {} vs diagnose {want}", hits[0]["score"]);
    // The batch's result for the same file joins the same library study.
    ok(run(&["library", "import", s(&c.out), "--db", s(&db)], &c.dir), "import");
    let list = json(&ok(run(&["library", "list", "--db", s(&db), "--json"], &c.dir), "list"));
    assert_eq!(list.len(), 16);
    let st = list.iter().find(|st| st["path"].as_str().unwrap().ends_with("case_0002/ct.nii.gz")).unwrap();
    assert_eq!((st["origin"].as_str(), st["runs"].as_i64()), (Some("cli"), Some(2)));
}
