//! The feedback store over the CLI: record a real `diagnose --json` run → review → show →
//! recalibrate (propose, --apply, --revert) → de-identified export → audit log; append-only
//! triggers; refusal of files that are not ours; and durability: writers killed with SIGKILL
//! mid-loop lose no acknowledged event and leave a sound database.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use radbridge_store::{ReviewAction, Store};
use radbridge_tests::*;
use serde_json::{json, Value};

fn run_cli(db: &Path, args: &[&str]) -> (i32, String, String) {
    let o = Command::new(bin())
        .arg("feedback")
        .arg("--db")
        .arg(db)
        .args(args)
        .env("RADBRIDGE_CACHE_DIR", db.with_extension("cache"))
        .output()
        .unwrap();
    (o.status.code().unwrap_or(-1), String::from_utf8_lossy(&o.stdout).into(), String::from_utf8_lossy(&o.stderr).into())
}

fn ok(db: &Path, args: &[&str]) -> String {
    let (code, out, err) = run_cli(db, args);
    assert_eq!(code, 0, "feedback {args:?}: {err}");
    out
}

/// The tiny BrgSA fixture imported into a model directory, with a described bank.
fn model_dir(dir: &Path) -> PathBuf {
    let out = radbridge_tests::import_tiny("brgsa", dir);
    let corpus = dir.join("corpus.jsonl");
    std::fs::write(
        &corpus,
        ["There is a small pleural effusion.", "Emphysema in both upper lobes.", "No pneumothorax.", "A nodule in the right lung."]
            .map(|s| json!(s).to_string())
            .join("\n"),
    )
    .unwrap();
    let st = Command::new(bin())
        .args(["bank", "describe", "--model"])
        .arg(&out)
        .arg("--corpus")
        .arg(&corpus)
        .env("RADBRIDGE_CACHE_DIR", dir.join("cache"))
        .output()
        .unwrap();
    assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
    out
}

fn diagnose(dir: &Path, model: &Path) -> Value {
    let json = dir.join("d.json");
    let st = Command::new(bin())
        .arg("diagnose")
        .arg(data("totalsegmentator/chest_ct.nii.gz"))
        .arg("--model")
        .arg(model)
        .arg("--json")
        .arg(&json)
        .env("RADBRIDGE_CACHE_DIR", dir.join("cache"))
        .output()
        .unwrap();
    assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
    serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap()
}

/// The real document with `label`'s score / threshold / flag set (the fixture's scores are all
/// near 0, so the recalibration cases are made on a copy of the real JSON).
fn with_score(doc: &Value, label: &str, score: f32, threshold: f32, checksum: Option<&str>) -> Value {
    let mut d = doc.clone();
    let f = d["findings"].as_array_mut().unwrap().iter_mut().find(|f| f["label"] == label).unwrap_or_else(|| panic!("{label} not scored"));
    f["score"] = json!(score);
    f["threshold"] = json!(threshold);
    f["flagged"] = json!(score > threshold);
    if let Some(c) = checksum {
        d["model"]["weights_sha256"] = json!(c);
    }
    d
}

fn record(dir: &Path, db: &Path, doc: &Value, name: &str, model: &Path) -> i64 {
    let p = dir.join(format!("{name}.json"));
    std::fs::write(&p, doc.to_string()).unwrap();
    let study = dir.join(format!("{name}.nii.gz"));
    ok(db, &["record", "--from-json", p.to_str().unwrap(), "--study", study.to_str().unwrap(), "--model", model.to_str().unwrap()])
        .trim()
        .parse()
        .expect("run id on stdout")
}

fn review(db: &Path, run: i64, label: &str, action: &[&str]) -> i64 {
    let r = run.to_string();
    let mut args = vec!["review", "--run", &r, "--label", label];
    args.extend_from_slice(action);
    args.extend_from_slice(&["--reviewer", "dr_test"]);
    ok(db, &args).trim().parse().expect("event id on stdout")
}

fn thresholds(model: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(model.join("thresholds.json")).unwrap()).unwrap()
}

fn jsonl(p: &Path) -> Vec<Value> {
    std::fs::read_to_string(p).unwrap().lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect()
}

#[test]
fn record_review_show_recalibrate_revert_export_audit() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let db = dir.join("data/radbridge.sqlite3");
    let model = model_dir(dir);
    let mut doc = diagnose(dir, &model);
    let checksum = doc["model"]["weights_sha256"].as_str().unwrap().to_string();
    // Identifying fields a DICOM source would carry: they must not reach the export.
    doc["source"]["patient"] = json!({"name": "DOE^JANE", "id": "PAT-778899"});

    // A real run: record, review, show.
    let real = dir.join("real.json");
    std::fs::write(&real, doc.to_string()).unwrap();
    let r0: i64 = ok(&db, &["record", "--from-json", real.to_str().unwrap(), "--model", model.to_str().unwrap()]).trim().parse().unwrap();
    let e_fp = review(&db, r0, "Medical material", &["--false-positive", "--reason", "device", "--note", "pacemaker lead"]);
    let e_c = review(&db, r0, "Emphysema", &["--confirm"]);
    review(&db, r0, "Rib fracture", &["--missed", "left 7th rib, healing"]);
    review(&db, r0, "Emphysema", &["--undo", &e_c.to_string()]);
    let show: Value = serde_json::from_str(&ok(&db, &["show", "--run", &r0.to_string(), "--json"])).unwrap();
    let run = &show["run"];
    assert_eq!(run["model_checksum"], json!(checksum));
    assert_eq!(run["bank_checksum"], json!(radbridge_model::package::sha256_file(&model.join("bank.json")).unwrap()));
    assert_eq!(run["diagnosis"], doc, "the full diagnose document is kept");
    assert_eq!(run["findings"].as_array().unwrap().len(), doc["findings"].as_array().unwrap().len());
    let ct = std::fs::canonicalize(data("totalsegmentator/chest_ct.nii.gz")).unwrap();
    assert_eq!(run["study_path"], json!(ct.to_str().unwrap()), "source.path of the document, made absolute");
    let v = show["verdicts"].as_array().unwrap();
    assert_eq!(v.len(), 2, "{v:?}");
    assert_eq!(
        (v[0]["label"].as_str(), v[0]["verdict"].as_str(), v[0]["reason"].as_str(), v[0]["event"].as_i64()),
        (Some("Medical material"), Some("false_positive"), Some("device"), Some(e_fp))
    );
    assert_eq!(
        (v[1]["label"].as_str(), v[1]["verdict"].as_str(), v[1]["text"].as_str()),
        (Some("Rib fracture"), Some("missed"), Some("left 7th rib, healing"))
    );
    assert_eq!(show["events"].as_array().unwrap().len(), 4);
    let text = ok(&db, &["show", "--run", &r0.to_string()]);
    assert!(text.contains("Medical material") && text.contains("FalsePositive (device)"), "{text}");

    // Recalibration cases on Emphysema (threshold 0.5): confirmed 0.7, 0.9, (0.6 confirmed
    // then undone), missed at 0.4; false positives 0.55, 0.62, 0.95; and a false positive at
    // 0.68 from other weights, which must not count. Expected: just above 0.62.
    let original =
        "{\n  \"version\": 1,\n  \"source\": \"test fixture\",\n  \"thresholds\": {\"Emphysema\": 0.5, \"Pleural effusion\": 0.3}\n}\n";
    std::fs::write(model.join("thresholds.json"), original).unwrap();
    let cases: &[(f32, &[&str])] = &[
        (0.7, &["--confirm"]),
        (0.9, &["--confirm"]),
        (0.55, &["--false-positive", "--reason", "artefact"]),
        (0.62, &["--false-positive"]),
        (0.95, &["--false-positive", "--reason", "anatomy_mimic"]),
        (0.4, &["--missed", "subtle centrilobular emphysema"]),
    ];
    for (i, (score, action)) in cases.iter().enumerate() {
        let r = record(dir, &db, &with_score(&doc, "Emphysema", *score, 0.5, None), &format!("case{i}"), &model);
        review(&db, r, "Emphysema", action);
    }
    let r_undo = record(dir, &db, &with_score(&doc, "Emphysema", 0.6, 0.5, None), "undone", &model);
    let e = review(&db, r_undo, "Emphysema", &["--confirm"]);
    let r_other = record(dir, &db, &with_score(&doc, "Emphysema", 0.68, 0.5, Some("0000other")), "other", &model);
    review(&db, r_other, "Emphysema", &["--false-positive"]);

    // With the 0.6 confirmation standing, 0.62 cannot be removed (it is above a confirmed finding) but 0.55 can.
    let p: Value = serde_json::from_str(&ok(&db, &["recalibrate", "--model", model.to_str().unwrap(), "--json"])).unwrap();
    let emph = p["proposals"].as_array().unwrap().iter().find(|p| p["label"] == "Emphysema").unwrap().clone();
    let next = |x: f32| f32::from_bits(x.to_bits() + 1);
    assert_eq!(emph["proposed"].as_f64().unwrap() as f32, next(0.55), "{emph}");
    review(&db, r_undo, "Emphysema", &["--undo", &e.to_string()]);

    let p: Value = serde_json::from_str(&ok(&db, &["recalibrate", "--model", model.to_str().unwrap(), "--json"])).unwrap();
    assert_eq!(p["applied"], Value::Null);
    assert_eq!(std::fs::read_to_string(model.join("thresholds.json")).unwrap(), original, "a proposal writes nothing");
    let props = p["proposals"].as_array().unwrap();
    let emph = props.iter().find(|p| p["label"] == "Emphysema").unwrap();
    assert_eq!(emph["changed"], json!(true));
    assert_eq!(emph["current"].as_f64().unwrap() as f32, 0.5);
    assert_eq!(emph["proposed"].as_f64().unwrap() as f32, next(0.62), "{emph}");
    assert_eq!((emph["positives"].as_u64(), emph["negatives"].as_u64()), (Some(3), Some(3)), "other weights' evidence ignored: {emph}");
    assert_eq!((emph["false_positives_flagged_before"].as_u64(), emph["false_positives_flagged_after"].as_u64()), (Some(3), Some(1)));
    assert_eq!(emph["sensitivity_before"], emph["sensitivity_after"]);
    let pe = props.iter().find(|p| p["label"] == "Pleural effusion").unwrap();
    assert_eq!((pe["changed"].as_bool(), pe["proposed"].as_f64()), (Some(false), Some(0.3f32 as f64)));

    // Apply: only Emphysema changes; the rest of the file is kept.
    let a: Value =
        serde_json::from_str(&ok(&db, &["recalibrate", "--model", model.to_str().unwrap(), "--apply", "--json", "--reviewer", "dr_cal"]))
            .unwrap();
    let version = a["applied"]["id"].as_i64().expect("a version id");
    let t = thresholds(&model);
    assert_eq!(t["thresholds"]["Emphysema"].as_f64().unwrap() as f32, next(0.62));
    assert_eq!(t["thresholds"]["Pleural effusion"].as_f64().unwrap() as f32, 0.3);
    assert_eq!((t["version"].as_i64(), t["source"].as_str()), (Some(1), Some("test fixture")));
    assert_eq!(t["recalibration"]["thresholds_version"].as_i64(), Some(version));
    let loaded = radbridge_model::zeroshot::Thresholds::load(&model.join("thresholds.json")).unwrap().unwrap();
    assert!(
        0.62f32 <= loaded.get("Emphysema").unwrap() && 0.7f32 > loaded.get("Emphysema").unwrap(),
        "0.62 no longer flagged, 0.7 still flagged"
    );
    assert_eq!(a["applied"]["previous_content"], json!(original));
    // Nothing left to apply at the new threshold.
    let again: Value = serde_json::from_str(&ok(&db, &["recalibrate", "--model", model.to_str().unwrap(), "--apply", "--json"])).unwrap();
    assert_eq!(again["applied"], Value::Null);

    // Revert restores the file byte for byte; a second revert has nothing to undo.
    let rv: Value = serde_json::from_str(&ok(&db, &["recalibrate", "--model", model.to_str().unwrap(), "--revert", "--json"])).unwrap();
    assert_eq!(rv["reverted"].as_i64(), Some(version));
    assert_eq!(std::fs::read_to_string(model.join("thresholds.json")).unwrap(), original);
    let (code, _, err) = run_cli(&db, &["recalibrate", "--model", model.to_str().unwrap(), "--revert"]);
    assert_ne!(code, 0);
    assert!(err.contains("thresholds.json") && err.contains("no applied recalibration"), "{err}");
    // A file edited by hand after an apply is not overwritten by a revert.
    ok(&db, &["recalibrate", "--model", model.to_str().unwrap(), "--apply"]);
    std::fs::write(model.join("thresholds.json"), original.replace("0.3", "0.35")).unwrap();
    let (code, _, err) = run_cli(&db, &["recalibrate", "--model", model.to_str().unwrap(), "--revert"]);
    assert_ne!(code, 0);
    assert!(err.contains("changed since"), "{err}");
    assert_eq!(std::fs::read_to_string(model.join("thresholds.json")).unwrap(), original.replace("0.3", "0.35"));

    // De-identified export.
    let out = dir.join("events.jsonl");
    ok(&db, &["export", "--output", out.to_str().unwrap()]);
    let raw = std::fs::read_to_string(&out).unwrap();
    let lines = jsonl(&out);
    assert_eq!(lines.len(), 4 + cases.len() + 3);
    for needle in ["DOE^JANE", "PAT-778899", "chest_ct", dir.to_str().unwrap(), "dr_test"] {
        assert!(!raw.contains(needle), "export leaks {needle}");
    }
    let keys: Vec<&str> = lines[0].as_object().unwrap().keys().map(String::as_str).collect();
    assert!(!keys.iter().any(|k| k.contains("path") || k.contains("reviewer") || k.contains("patient")), "{keys:?}");
    let fp = lines.iter().find(|l| l["event_id"].as_i64() == Some(e_fp)).unwrap();
    assert_eq!(
        (fp["action"].as_str(), fp["reason"].as_str(), fp["note"].as_str(), fp["current"].as_bool()),
        (Some("false_positive"), Some("device"), Some("pacemaker lead"), Some(true))
    );
    assert_eq!(fp["study_key"].as_str().map(str::len), Some(32));
    assert_eq!(fp["model_checksum"], json!(checksum));
    let c = lines.iter().find(|l| l["event_id"].as_i64() == Some(e_c)).unwrap();
    assert_eq!((c["undone"].as_bool(), c["current"].as_bool()), (Some(true), Some(false)));
    let s = lines
        .iter()
        .find(|l| l["action"] == "false_positive" && l["score"].as_f64().map(|x| x as f32) == Some(0.62))
        .expect("scores exported");
    assert_eq!(s["threshold"].as_f64().map(|x| x as f32), Some(0.5));
    assert_eq!(s["flagged"], json!(true));

    // Audit log: who / what / when for each kind of action done above.
    let audit = dir.join("audit.jsonl");
    ok(&db, &["audit", "--output", audit.to_str().unwrap(), "--reviewer", "auditor"]);
    let entries = jsonl(&audit);
    let count = |a: &str| entries.iter().filter(|e| e["action"] == a).count();
    assert_eq!(count("run"), 1 + cases.len() + 2);
    assert_eq!(count("feedback"), lines.len());
    assert_eq!(count("view"), 2);
    assert_eq!(count("settings_change"), 3, "apply, revert, apply");
    assert_eq!(count("export"), 1, "the events export (this audit export is logged after the file is written)");
    assert!(entries.iter().all(|e| e["at"].as_str().is_some_and(|t| t.ends_with('Z')) && e["id"].is_i64()));
    let fb = entries.iter().find(|e| e["action"] == "feedback" && e["detail"]["event_id"].as_i64() == Some(e_fp)).unwrap();
    assert_eq!(fb["actor"], json!("dr_test"));
    let sc = entries.iter().find(|e| e["action"] == "settings_change").unwrap();
    assert_eq!((sc["actor"].as_str(), sc["detail"]["kind"].as_str()), (Some("dr_cal"), Some("apply")));
    let store = Store::open(&db).unwrap();
    assert_eq!(store.audit_entries().unwrap().last().unwrap().detail["what"], json!("audit"));
}

#[test]
fn review_events_and_audit_log_are_append_only() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db.sqlite3");
    let mut store = Store::open(&db).unwrap();
    let doc = json!({"model": {"name": "m", "weights_sha256": "abc"}, "findings": [{"label": "Emphysema", "score": 0.7, "threshold": 0.5, "flagged": true}]});
    let run = store.record_run(&radbridge_store::RunRecord::from_diagnosis_json(doc, Some(Path::new("/x/ct")), None).unwrap()).unwrap();
    let e = store.review(run, "Emphysema", &ReviewAction::Confirm, Some("a")).unwrap();
    for sql in [
        "UPDATE review_events SET action = 'false_positive' WHERE id = 1",
        "DELETE FROM review_events",
        "UPDATE audit_log SET actor = 'someone else'",
        "DELETE FROM audit_log WHERE id > 0",
        "UPDATE runs SET diagnosis = '{}'",
        "DELETE FROM runs",
    ] {
        let err = store.connection().execute(sql, []).expect_err(sql);
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    drop(store);
    // The events are intact, also as seen through the CLI.
    let show: Value = serde_json::from_str(&ok(&db, &["show", "--run", &run.to_string(), "--json"])).unwrap();
    assert_eq!(show["events"][0]["id"].as_i64(), Some(e));
    assert_eq!(show["events"][0]["action"], json!("confirm"));
    assert_eq!(show["verdicts"][0]["verdict"], json!("confirmed"));
    let s = Store::open(&db).unwrap();
    assert_eq!(s.audit_entries().unwrap().len(), 3, "run, feedback, view");
}

#[test]
fn files_that_are_not_ours_are_refused_and_left_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    // Not SQLite at all.
    let notes = tmp.path().join("notes.sqlite3");
    let content = b"patient list - do not delete\n".repeat(100);
    std::fs::write(&notes, &content).unwrap();
    let (code, out, err) = run_cli(&notes, &["show", "--run", "1"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        err.starts_with("error: ") && err.contains(notes.to_str().unwrap()) && err.contains("not a Radbridge feedback database"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert_eq!(std::fs::read(&notes).unwrap(), content);
    assert!(!tmp.path().join("notes.sqlite3-wal").exists());

    // A SQLite database of another application.
    let other = tmp.path().join("other.sqlite3");
    {
        let s = Store::open(&other).unwrap();
        s.connection().execute_batch("PRAGMA application_id = 12345;").unwrap();
    }
    let before = std::fs::read(&other).unwrap();
    let json = tmp.path().join("x.json");
    std::fs::write(&json, json!({"model": {"name": "m", "weights_sha256": "abc"}, "findings": []}).to_string()).unwrap();
    let (code, _, err) = run_cli(&other, &["record", "--from-json", json.to_str().unwrap(), "--study", "/x"]);
    assert_eq!(code, 1);
    assert!(err.contains(other.to_str().unwrap()) && err.contains("another application"), "{err}");
    assert_eq!(std::fs::read(&other).unwrap(), before);

    // A truncated database (the header survives, the pages do not).
    let good = tmp.path().join("good.sqlite3");
    let r = record_minimal(&good);
    let mut bytes = std::fs::read(&good).unwrap();
    bytes.truncate(1024);
    let cut = tmp.path().join("cut.sqlite3");
    std::fs::write(&cut, &bytes).unwrap();
    let (code, _, err) = run_cli(&cut, &["show", "--run", &r.to_string()]);
    assert_eq!(code, 1);
    assert!(err.contains(cut.to_str().unwrap()), "{err}");
    assert_eq!(std::fs::read(&cut).unwrap(), bytes, "never rewritten");

    // Bad input to the commands: one-line errors, nothing recorded.
    let (code, _, err) = run_cli(&good, &["review", "--run", "999", "--label", "X", "--confirm"]);
    assert_eq!((code, err.trim()), (1, "error: run 999 is not in the feedback database"));
    let (code, _, err) = run_cli(&good, &["review", "--run", &r.to_string(), "--label", "X", "--false-positive", "--reason", "gremlins"]);
    assert_ne!(code, 0);
    assert!(err.contains("gremlins"), "{err}");
    let (code, _, err) = run_cli(&good, &["review", "--run", &r.to_string(), "--label", "X", "--confirm", "--reason", "device"]);
    assert_eq!(code, 1, "{err}");
    let (code, _, err) = run_cli(&good, &["record", "--from-json", notes.to_str().unwrap(), "--study", "/x"]);
    assert_eq!(code, 1);
    assert!(err.contains("notes.sqlite3") && err.contains("not JSON"), "{err}");
    assert_eq!(Store::open(&good).unwrap().events(r).unwrap().len(), 0);
}

fn record_minimal(db: &Path) -> i64 {
    let mut s = Store::open(db).unwrap();
    let doc = json!({"model": {"name": "m", "weights_sha256": "abc"}, "findings": [{"label": "Emphysema", "score": 0.7, "threshold": 0.5, "flagged": true}]});
    let r = s.record_run(&radbridge_store::RunRecord::from_diagnosis_json(doc, Some(Path::new("/x/ct")), None).unwrap()).unwrap();
    // Checkpoint so the main file holds everything (the truncation case reads it alone).
    s.connection().query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).unwrap();
    r
}

/// A child process that is killed if the test fails before killing it.
struct Killed(std::process::Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start `feedback stress` writers on one run, let each acknowledge `after` events, SIGKILL
/// them, and return every id they acknowledged.
fn stress_and_kill(db: &Path, run: i64, writers: usize, after: usize) -> Vec<i64> {
    let mut children: Vec<Killed> = (0..writers)
        .map(|w| {
            Command::new(bin())
                .args(["feedback", "--db"])
                .arg(db)
                .args(["stress", "--run", &run.to_string(), "--count", "1000000", "--label", &format!("stress{w}")])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map(Killed)
                .unwrap()
        })
        .collect();
    let mut readers: Vec<_> = children.iter_mut().map(|c| BufReader::new(c.0.stdout.take().unwrap()).lines()).collect();
    let mut acked = Vec::new();
    for (i, lines) in readers.iter_mut().enumerate() {
        for _ in 0..after {
            match lines.next() {
                Some(Ok(l)) => acked.push(l.trim().parse::<i64>().expect("an id per line")),
                other => {
                    let mut err = String::new();
                    let _ = std::io::Read::read_to_string(children[i].0.stderr.as_mut().unwrap(), &mut err);
                    panic!("writer {i} stopped early: {other:?}: {err}")
                }
            }
        }
    }
    for c in &mut children {
        c.0.kill().unwrap(); // SIGKILL on Unix: no destructors, no rollback handlers
    }
    // Lines already in the pipe were acknowledged too.
    for lines in readers {
        for l in lines.map_while(Result::ok) {
            if let Ok(id) = l.trim().parse::<i64>() {
                acked.push(id);
            }
        }
    }
    for mut c in children {
        let st = c.0.wait().unwrap();
        assert!(!st.success(), "the writer was killed, not finished");
    }
    acked
}

#[test]
fn killed_writers_lose_no_acknowledged_event() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db.sqlite3");
    let run = record_minimal(&db);
    let mut all = Vec::new();
    // Single writers killed after different numbers of events, then two at once (WAL + busy timeout).
    for (writers, after) in [(1, 5), (1, 40), (1, 150), (2, 60), (2, 25)] {
        let acked = stress_and_kill(&db, run, writers, after);
        assert!(acked.len() >= writers * after);
        let store = Store::open(&db).unwrap();
        assert_eq!(store.integrity_check().unwrap(), "ok");
        let stored: std::collections::HashSet<i64> = store.events(run).unwrap().iter().map(|e| e.id).collect();
        let missing: Vec<_> = acked.iter().filter(|id| !stored.contains(id)).collect();
        assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
        let fk: i64 = store.connection().query_row("SELECT COUNT(*) FROM pragma_foreign_key_check", [], |r| r.get(0)).unwrap();
        assert_eq!(fk, 0);
        all.extend(acked);
    }
    let n = all.len();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), n, "ids are unique across writers");
}
