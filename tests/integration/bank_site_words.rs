//! `bank describe --feedback`: the site's confirmed findings and missed-finding texts join the
//! corpus and are marked in bank.json; undone reviews do not; `--db` needs `--feedback`; an
//! empty feedback database is an error naming it.

use std::path::Path;
use std::process::Command;

use radbridge_store::{ReviewAction, RunRecord, Store};
use radbridge_tests::*;
use serde_json::{json, Value};

const CONFIRMED_TYPED: &str = "ground glass opacity in the left lower lobe";
const MISSED: &str = "old healed fracture of the left seventh rib";
const UNDONE: &str = "spiculated mass that was withdrawn";

fn describe(dir: &Path, args: &[&str]) -> (i32, String) {
    let o = Command::new(bin())
        .args(["bank", "describe"])
        .args(args)
        .env("RADBRIDGE_CACHE_DIR", dir.join("cache"))
        .env("RADBRIDGE_DATA_DIR", dir.join("no-data-dir"))
        .output()
        .unwrap();
    (o.status.code().unwrap_or(-1), String::from_utf8_lossy(&o.stderr).into())
}

fn bank_json(model: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(model.join("bank.json")).unwrap()).unwrap()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect()).unwrap_or_default()
}

#[test]
fn bank_describe_feedback_adds_and_marks_the_site_sentences() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let model = import_tiny("brgsa", dir);
    let corpus = dir.join("corpus.jsonl");
    std::fs::write(
        &corpus,
        ["There is a small pleural effusion.", "Emphysema in both upper lobes.", "No pneumothorax."]
            .map(|s| json!(s).to_string())
            .join("\n"),
    )
    .unwrap();
    let (m, c) = (model.to_str().unwrap(), corpus.to_str().unwrap());

    // Without --feedback: as before, no site fields.
    let (code, err) = describe(dir, &["--model", m, "--corpus", c]);
    assert_eq!(code, 0, "{err}");
    let plain = bank_json(&model);
    assert_eq!(plain["sentences"], 3);
    assert!(plain.get("site_sentences").is_none(), "{plain}");
    assert!(plain["entries"].as_array().unwrap().iter().all(|e| e.get("site_examples").is_none()));

    // --db without --feedback: a usage error.
    let db = dir.join("feedback.sqlite3");
    let (code, err) = describe(dir, &["--model", m, "--corpus", c, "--db", db.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--feedback"), "{err}");

    // An empty database: nothing to add, exit 1 naming it.
    drop(Store::open(&db).unwrap());
    let (code, err) = describe(dir, &["--model", m, "--corpus", c, "--feedback", "--db", db.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&format!("no confirmed or missed findings in {}; nothing to add", db.display())), "{err}");
    // A database that is not there is not created.
    let absent = dir.join("absent.sqlite3");
    let (code, err) = describe(dir, &["--model", m, "--corpus", c, "--feedback", "--db", absent.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("absent.sqlite3") && !absent.exists(), "{err}");
    // A file that is not a database: the store's error, naming it.
    let notes = dir.join("notes.sqlite3");
    std::fs::write(&notes, "not a database\n").unwrap();
    let (code, err) = describe(dir, &["--model", m, "--corpus", c, "--feedback", "--db", notes.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("notes.sqlite3") && err.contains("not a Radbridge feedback database"), "{err}");

    // Two runs: a confirmed typed finding, a confirmed corpus sentence (already in the corpus,
    // in another case), a missed finding, and reviews that were undone.
    let mut s = Store::open(&db).unwrap();
    let doc = json!({
        "model": {"name": "m", "weights_sha256": "abc"},
        "findings": [
            {"label": "Emphysema", "score": 0.7, "threshold": 0.5, "flagged": true},
            {"label": CONFIRMED_TYPED, "score": 0.3, "threshold": null, "flagged": null, "custom": true}
        ]
    });
    let r1 = s.record_run(&RunRecord::from_diagnosis_json(doc.clone(), Some(Path::new("/x/ct1")), None).unwrap()).unwrap();
    let r2 = s.record_run(&RunRecord::from_diagnosis_json(doc, Some(Path::new("/x/ct2")), None).unwrap()).unwrap();
    s.review(r1, CONFIRMED_TYPED, &ReviewAction::Confirm, Some("dr_a")).unwrap();
    s.review(r1, "Rib fracture", &ReviewAction::Missed { text: MISSED.into() }, Some("dr_a")).unwrap();
    s.review(r2, "Emphysema", &ReviewAction::Missed { text: "emphysema in both upper lobes.".into() }, None).unwrap();
    let u = s.review(r2, "Mass", &ReviewAction::Missed { text: UNDONE.into() }, None).unwrap();
    s.review(r2, "Mass", &ReviewAction::Undo { event: u }, None).unwrap();
    let u = s.review(r2, "Emphysema", &ReviewAction::Confirm, None).unwrap();
    s.review(r2, "Emphysema", &ReviewAction::Undo { event: u }, None).unwrap();
    drop(s);

    let (code, err) = describe(dir, &["--model", m, "--corpus", c, "--feedback", "--db", db.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("2 sentence(s) added (1 already in the corpus)"), "{err}");
    let d = bank_json(&model);
    assert_eq!(d["sentences"], 5, "{d}");
    assert_eq!(strings(&d["site_sentences"]), vec![CONFIRMED_TYPED.to_string(), MISSED.to_string()]);
    let entries = d["entries"].as_array().unwrap();
    let marked: Vec<&Value> = entries.iter().filter(|e| e.get("site_examples").is_some()).collect();
    assert!(!marked.is_empty(), "some entry names a site sentence: {d}");
    let n = marked.len();
    assert!(err.contains(&format!("{n} entries now name at least one site sentence")), "{err}");
    for e in entries {
        let examples: Vec<String> = e["examples"].as_array().unwrap().iter().map(|x| x[0].as_str().unwrap().to_string()).collect();
        let site = strings(&e["site_examples"]);
        // Exactly the site sentences among the examples, in their order.
        let expect: Vec<String> = examples.iter().filter(|x| x.as_str() == CONFIRMED_TYPED || x.as_str() == MISSED).cloned().collect();
        assert_eq!(site, expect, "{e}");
    }
    let text = std::fs::read_to_string(model.join("bank.json")).unwrap();
    assert!(!text.contains(UNDONE), "an undone review is not a site sentence");
    assert!(!text.contains("dr_a") && !text.contains("/x/ct1"), "no reviewers or paths leave the store");

    // The analysis reports the site words per entry.
    let json = dir.join("d.json");
    let st = Command::new(bin())
        .arg("diagnose")
        .arg(data("totalsegmentator/chest_ct.nii.gz"))
        .args(["--model", m, "--json"])
        .arg(&json)
        .env("RADBRIDGE_CACHE_DIR", dir.join("cache"))
        .output()
        .unwrap();
    assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
    let diag: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let described: Vec<&Value> = diag["image_bank_top"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(diag["findings"].as_array().unwrap().iter().flat_map(|f| f["bank"]["text_top"].as_array().into_iter().flatten()))
        .collect();
    assert!(!described.is_empty(), "{diag}");
    for e in described {
        let idx = e["index"].as_u64().unwrap();
        let entry = entries.iter().find(|x| x["index"].as_u64() == Some(idx));
        let want = entry.map(|x| strings(&x["site_examples"])).unwrap_or_default();
        assert_eq!(strings(&e["site_words"]), want, "entry {idx}: {e}");
    }
}
