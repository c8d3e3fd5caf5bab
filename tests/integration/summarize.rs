//! Report summarisation (`radbridge_train::summarize`, `radbridge summarize`): accuracy on real
//! CT-RATE reports with manual labels (held-out half, so lexicon regressions fail), the CLI's
//! JSON-lines contract, the chat-endpoint path against a stub server written here, the
//! bundled sentence corpus behind `bank describe`, and the extended label set.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;

use radbridge_model::zeroshot;
use radbridge_tests::*;
use radbridge_train::summarize::{endpoint::SYSTEM_PROMPT, Builtin, Status, Summarizer};
use serde_json::Value;

/// Minimal RFC 4180 reader (quoted fields with "" escapes and newlines).
fn read_csv(path: &Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    field.push('"');
                    chars.next();
                }
                '"' => quoted = false,
                _ => field.push(c),
            }
        } else {
            match c {
                '"' => quoted = true,
                ',' => row.push(std::mem::take(&mut field)),
                '\n' => {
                    row.push(std::mem::take(&mut field));
                    rows.push(std::mem::take(&mut row));
                }
                '\r' => {}
                _ => field.push(c),
            }
        }
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    rows
}

/// Macro-F1 over the 18 CT-RATE labels ("uncertain" counts as present) and per-label F1.
fn macro_f1(rows: &[Vec<String>], header: &[String]) -> (f64, Vec<(String, f64)>) {
    let b = Builtin::new();
    let summaries: Vec<_> = rows.iter().map(|r| b.summarize(&r[1]).unwrap()).collect();
    let mut per = Vec::new();
    for label in zeroshot::CT_RATE {
        let col = header.iter().position(|h| h == label).unwrap_or_else(|| panic!("no column {label}"));
        let (mut tp, mut fp, mut fn_) = (0.0, 0.0, 0.0);
        for (r, s) in rows.iter().zip(&summaries) {
            let truth = r[col].trim() == "1";
            let pred = s.status(label).unwrap() != Status::Absent;
            match (truth, pred) {
                (true, true) => tp += 1.0,
                (false, true) => fp += 1.0,
                (true, false) => fn_ += 1.0,
                _ => {}
            }
        }
        let f1 = if tp == 0.0 { 0.0 } else { 2.0 * tp / (2.0 * tp + fp + fn_) };
        per.push((label.to_string(), f1));
    }
    (per.iter().map(|x| x.1).sum::<f64>() / per.len() as f64, per)
}

fn manual18() -> (Vec<String>, Vec<Vec<String>>) {
    let mut rows = read_csv(&data("ct-rate/manual-18/train.csv"));
    let header = rows.remove(0);
    assert_eq!(rows.len(), 800);
    assert_eq!(header[0], "AccessionNo");
    assert_eq!(header[1], "report_text");
    (header, rows)
}

/// The headline number: rows 401-800 were never looked at while the lexicon was tuned.
/// Measured 0.935 (tests/reference/summarizer_eval.py); the floor sits a little below.
#[test]
fn held_out_manual_labels_macro_f1_stays_above_the_floor() {
    let (header, rows) = manual18();
    let (m, per) = macro_f1(&rows[400..], &header);
    eprintln!("held-out macro-F1 {m:.4}: {per:?}");
    assert!(m >= 0.91, "held-out macro-F1 {m:.4} < 0.91: {per:?}");
    // No label collapses.
    for (l, f) in &per {
        assert!(*f >= 0.75, "{l}: F1 {f:.3}");
    }
}

#[test]
fn dev_half_macro_f1_stays_above_the_floor() {
    let (header, rows) = manual18();
    let (m, per) = macro_f1(&rows[..400], &header);
    assert!(m >= 0.92, "dev macro-F1 {m:.4} < 0.92: {per:?}");
}

/// The 16 CT-RATE-LT reports with weak labels: micro-F1 over the 240 report-label pairs.
#[test]
fn ct_rate_lt_weak_labels_micro_f1() {
    let recs: Value = json_file("ct-rate/labelled_reports_shared.json");
    let recs = recs.as_array().unwrap();
    assert_eq!(recs.len(), 16);
    let b = Builtin::new();
    let (mut tp, mut fp, mut fn_) = (0.0, 0.0, 0.0);
    for r in recs {
        let s = b.summarize(r["report_text"].as_str().unwrap()).unwrap();
        for (label, v) in r["labels"].as_object().unwrap() {
            assert!(zeroshot::CT_RATE_LT.contains(&label.as_str()), "{label}");
            let truth = v.as_i64() == Some(1);
            let pred = s.status(label).unwrap() != Status::Absent;
            match (truth, pred) {
                (true, true) => tp += 1.0,
                (false, true) => fp += 1.0,
                (true, false) => fn_ += 1.0,
                _ => {}
            }
        }
    }
    let f1 = 2.0 * tp / (2.0 * tp + fp + fn_);
    eprintln!("CT-RATE-LT micro-F1 {f1:.4} (tp {tp}, fp {fp}, fn {fn_})");
    // Measured 0.936 (0.79 before the LT wording was added to the lexicon: these 16 reports
    // were used for that, so this is no held-out number).
    assert!(f1 >= 0.85, "micro-F1 {f1:.4}");
}

fn run(args: &[&str], envs: &[(&str, &str)]) -> (i32, String, String) {
    let mut c = Command::new(bin());
    c.args(args).env_remove("RADBRIDGE_SUMMARY_ENDPOINT");
    for (k, v) in envs {
        c.env(k, v);
    }
    let o = c.output().unwrap();
    (o.status.code().unwrap_or(-1), String::from_utf8_lossy(&o.stdout).into(), String::from_utf8_lossy(&o.stderr).into())
}

fn all_labels() -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for set in ["ct-rate", "ct-rate-lt", "ct-rate-extended"] {
        for l in zeroshot::label_set(set).unwrap() {
            if !v.contains(&l) {
                v.push(l);
            }
        }
    }
    v
}

fn check_contract(line: &str) -> Value {
    let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    let obj = v.as_object().unwrap();
    let mut keys: Vec<&String> = obj.keys().collect();
    keys.sort();
    assert_eq!(keys, vec!["findings", "id", "sentences"]);
    assert!(v["sentences"].as_array().unwrap().iter().all(|s| s.as_str().is_some_and(|s| s.starts_with("There "))));
    let f = v["findings"].as_array().unwrap();
    let labels: Vec<&str> = f.iter().map(|x| x["label"].as_str().unwrap()).collect();
    assert_eq!(labels, all_labels().iter().map(String::as_str).collect::<Vec<_>>());
    for x in f {
        let st = x["status"].as_str().unwrap();
        assert!(["present", "absent", "uncertain"].contains(&st), "{st}");
        assert!(x["evidence"].is_string());
        if st != "absent" {
            assert!(!x["evidence"].as_str().unwrap().is_empty());
        }
    }
    v
}

fn status_of<'a>(v: &'a Value, label: &str) -> (&'a str, &'a str) {
    let f = v["findings"].as_array().unwrap().iter().find(|x| x["label"] == label).unwrap();
    (f["status"].as_str().unwrap(), f["evidence"].as_str().unwrap())
}

#[test]
fn cli_jsonl_contract() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("r.jsonl");
    std::fs::write(
        &p,
        concat!(
            r#"{"id": "a", "text": "Sliding type hiatal hernia was observed. Pleural effusion-thickening was not detected. Findings suspicious for pneumonia."}"#,
            "\n\n",
            r#"{"id": 7, "text": "No pleural effusion or pneumothorax. Stable nodule in the right upper lobe."}"#,
            "\n"
        ),
    )
    .unwrap();
    let (code, out, err) = run(&["summarize", "--jsonl", p.to_str().unwrap(), "--json"], &[]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2);
    let a = check_contract(lines[0]);
    assert_eq!(a["id"], "a");
    assert_eq!(status_of(&a, "Hiatal hernia"), ("present", "Sliding type hiatal hernia was observed"));
    assert_eq!(status_of(&a, "Pleural effusion").0, "absent");
    assert_eq!(status_of(&a, "Pleural thickening").0, "absent");
    assert_eq!(status_of(&a, "Pneumonia").0, "uncertain");
    assert_eq!(status_of(&a, "Cardiomegaly"), ("absent", ""));
    assert!(a["sentences"].as_array().unwrap().contains(&Value::from("There is sliding type hiatal hernia.")));
    let b = check_contract(lines[1]);
    assert_eq!(b["id"], "7");
    assert_eq!(status_of(&b, "Pneumothorax").0, "absent");
    assert_eq!(status_of(&b, "Lung nodule").0, "present");
    assert!(b["sentences"].as_array().unwrap().contains(&Value::from("There is no pneumothorax.")), "{}", b["sentences"]);

    // A single text file: the id is the file name; text output without --json.
    let t = dir.path().join("case_12.txt");
    std::fs::write(&t, "There is cardiomegaly.\n").unwrap();
    let (code, out, err) = run(&["summarize", t.to_str().unwrap(), "--json"], &[]);
    assert_eq!(code, 0, "{err}");
    let v = check_contract(out.trim());
    assert_eq!(v["id"], "case_12");
    assert_eq!(status_of(&v, "Cardiomegaly").0, "present");
    let (code, out, _) = run(&["summarize", t.to_str().unwrap()], &[]);
    assert_eq!(code, 0);
    assert!(out.contains("There is cardiomegaly.") && out.contains("present"), "{out}");
}

#[test]
fn cli_bad_input_is_one_error_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.jsonl");
    std::fs::write(&p, "{\"id\": 1, \"text\": \"Emphysema.\"}\nnot json\n").unwrap();
    let (code, _, err) = run(&["summarize", "--jsonl", p.to_str().unwrap(), "--json"], &[]);
    assert_eq!(code, 1);
    assert!(err.starts_with("error: ") && err.contains("bad.jsonl:2") && err.trim().lines().count() == 1, "{err}");
    std::fs::write(&p, "{\"id\": 1}\n").unwrap();
    let (code, _, err) = run(&["summarize", "--jsonl", p.to_str().unwrap()], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("bad.jsonl:1") && err.contains("text"), "{err}");
    let (code, _, err) = run(&["summarize", dir.path().join("missing.txt").to_str().unwrap()], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("missing.txt"), "{err}");
}

/// Read one HTTP request (headers + Content-Length body).
fn read_request(stream: &mut std::net::TcpStream) -> (String, Vec<(String, String)>, String) {
    let mut r = BufReader::new(stream.try_clone().unwrap());
    let mut start = String::new();
    r.read_line(&mut start).unwrap();
    let mut headers = Vec::new();
    loop {
        let mut l = String::new();
        r.read_line(&mut l).unwrap();
        let l = l.trim_end().to_string();
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(':').unwrap();
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let len: usize = headers.iter().find(|(k, _)| k == "content-length").map(|(_, v)| v.parse().unwrap()).expect("Content-Length");
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).unwrap();
    (start.trim_end().to_string(), headers, String::from_utf8(body).unwrap())
}

fn respond(stream: &mut std::net::TcpStream, status: &str, body: &str) {
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    stream.flush().unwrap();
}

/// The chat-endpoint path against a local stub OpenAI-compatible server: the request carries
/// the documented prompt, the model name, every label and the report; the answer is read
/// into the same contract.
#[test]
fn chat_endpoint_against_a_stub_server() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let (start, headers, body) = read_request(&mut s);
        let answer = serde_json::json!({
            "sentences": ["There is a small right pleural effusion.", "There is no pneumothorax."],
            "findings": [
                {"label": "Pleural effusion", "status": "present", "evidence": "small right pleural effusion"},
                {"label": "pneumothorax", "status": "absent", "evidence": "no pneumothorax"},
                {"label": "Lung nodule", "status": "uncertain", "evidence": "possible nodule"},
                {"label": "Not a label", "status": "present", "evidence": "x"}
            ]
        });
        let content = format!("```json\n{answer}\n```");
        let resp = serde_json::json!({"id": "x", "object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}]});
        respond(&mut s, "200 OK", &resp.to_string());
        (start, headers, body)
    });
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("r1.txt");
    let report = "Small right pleural effusion. No pneumothorax. Possible nodule in the left lower lobe.";
    std::fs::write(&t, report).unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let (code, out, err) = run(&["summarize", t.to_str().unwrap(), "--json", "--endpoint", &url, "--endpoint-model", "stub-model"], &[]);
    let (start, headers, body) = server.join().unwrap();
    assert_eq!(code, 0, "{err}");
    assert_eq!(start, "POST /v1/chat/completions HTTP/1.1");
    assert!(headers.iter().any(|(k, v)| k == "content-type" && v.starts_with("application/json")));
    let req: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(req["model"], "stub-model");
    assert_eq!(req["temperature"], 0);
    assert_eq!(req["messages"][0]["role"], "system");
    assert_eq!(req["messages"][0]["content"], SYSTEM_PROMPT);
    let user = req["messages"][1]["content"].as_str().unwrap();
    assert!(user.ends_with(report), "{user}");
    for l in all_labels() {
        assert!(user.lines().any(|x| x == l), "label {l} missing from the prompt");
    }
    let v = check_contract(out.trim());
    assert_eq!(v["id"], "r1");
    assert_eq!(v["sentences"][0], "There is a small right pleural effusion.");
    assert_eq!(status_of(&v, "Pleural effusion"), ("present", "small right pleural effusion"));
    assert_eq!(status_of(&v, "Pneumothorax").0, "absent");
    assert_eq!(status_of(&v, "Lung nodule").0, "uncertain");
    assert_eq!(status_of(&v, "Emphysema"), ("absent", ""));
}

#[test]
fn chat_endpoint_errors_name_the_endpoint() {
    // HTTP 500.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let _ = read_request(&mut s);
        respond(&mut s, "500 Internal Server Error", "{\"error\":\"model not loaded\"}");
    });
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("r.txt");
    std::fs::write(&t, "Emphysema.").unwrap();
    let url = format!("http://127.0.0.1:{port}/v1");
    let (code, _, err) = run(&["summarize", t.to_str().unwrap(), "--json"], &[("RADBRIDGE_SUMMARY_ENDPOINT", &url)]);
    server.join().unwrap();
    assert_eq!(code, 1);
    assert!(err.contains(&format!("127.0.0.1:{port}")) && err.contains("500") && err.contains("model not loaded"), "{err}");

    // A server that never answers: the timeout ends the wait.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let hold = std::thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        std::thread::sleep(std::time::Duration::from_secs(4));
        drop(s);
    });
    let t0 = std::time::Instant::now();
    let (code, _, err) =
        run(&["summarize", t.to_str().unwrap(), "--endpoint", &format!("http://127.0.0.1:{port}"), "--endpoint-timeout", "1"], &[]);
    assert_eq!(code, 1, "{err}");
    assert!(t0.elapsed().as_secs_f64() < 3.5, "timeout not applied: {:?}", t0.elapsed());
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    hold.join().unwrap();

    // Nothing listening.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (code, _, err) = run(&["summarize", t.to_str().unwrap(), "--endpoint", &format!("http://127.0.0.1:{port}")], &[]);
    assert_eq!(code, 1);
    assert!(err.starts_with("error: ") && err.contains("chat endpoint"), "{err}");
}

fn import_tiny(dir: &Path) -> std::path::PathBuf {
    radbridge_tests::import_tiny("brgsa", dir)
}

fn repo_root() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// `bank describe` without --corpus reads the bundled corpus of summarised CT-RATE sentences and
/// records it and its license in bank.json (existing fields unchanged).
#[test]
fn bank_describe_uses_the_bundled_corpus_and_records_its_license() {
    let corpus = repo_root().join("models/corpus/ct-rate-valid-sentences.jsonl");
    let lines: Vec<Value> = std::fs::read_to_string(&corpus).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(lines.len() > 1000, "{} sentences", lines.len());
    assert!(lines
        .iter()
        .all(|l| l["text"].as_str().is_some_and(|t| t.starts_with("There ")) && l["count"].as_u64().is_some_and(|c| c >= 1)));
    let meta: Value =
        serde_json::from_str(&std::fs::read_to_string(repo_root().join("models/corpus/ct-rate-valid-sentences.meta.json")).unwrap())
            .unwrap();
    assert_eq!(meta["sentences"].as_u64().unwrap() as usize, lines.len());
    assert!(repo_root().join("models/corpus/NOTICE").is_file());

    let dir = tempfile::tempdir().unwrap();
    let model = import_tiny(dir.path());
    let o = Command::new(bin()).args(["bank", "describe", "--model"]).arg(&model).env_remove("RADBRIDGE_CORPUS").output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let bank: Value = serde_json::from_str(&std::fs::read_to_string(model.join("bank.json")).unwrap()).unwrap();
    assert_eq!(bank["corpus"], "models/corpus/ct-rate-valid-sentences.jsonl");
    assert_eq!(bank["sentences"].as_u64().unwrap() as usize, lines.len());
    assert!(bank["corpus_license"].as_str().unwrap().contains("CC-BY-NC-SA 4.0"));
    assert!(bank["corpus_source"].as_str().unwrap().contains("CT-RATE"));
    let entries = bank["entries"].as_array().unwrap();
    assert!(!entries.is_empty());
    let texts: std::collections::HashSet<&str> = lines.iter().map(|l| l["text"].as_str().unwrap()).collect();
    for e in entries {
        assert!(texts.contains(e["description"].as_str().unwrap()));
        assert!(e["index"].is_u64() && e["examples"].is_array());
    }
    let manifest: Value = serde_json::from_str(&std::fs::read_to_string(model.join("model.json")).unwrap()).unwrap();
    assert_eq!(manifest["bank"], "bank.json");

    // An explicit corpus without metadata: no license recorded, path kept.
    let c = dir.path().join("mine.jsonl");
    std::fs::write(&c, "\"There is emphysema.\"\n{\"text\": \"There is no pneumothorax.\"}\n").unwrap();
    let o = Command::new(bin()).args(["bank", "describe", "--model"]).arg(&model).arg("--corpus").arg(&c).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let bank: Value = serde_json::from_str(&std::fs::read_to_string(model.join("bank.json")).unwrap()).unwrap();
    assert_eq!(bank["sentences"], 2);
    assert!(bank.get("corpus_license").is_none());
}

/// The 88 extended findings resolve as a label set even though the model's model.json lists
/// only ct-rate and ct-rate-lt.
#[test]
fn extended_label_set_resolves_for_models_without_it() {
    let ext = zeroshot::label_set("ct-rate-extended").unwrap();
    assert_eq!(ext.len(), 88);
    let file: Value = json_file("ct-rate/CT-RATE_valid_GPT4Modify_text.json");
    for (i, l) in ext.iter().enumerate() {
        assert_eq!(file[i.to_string()][0].as_str().unwrap(), format!("There is {l}"));
    }
    let dir = tempfile::tempdir().unwrap();
    let model = import_tiny(dir.path());
    let pkg = radbridge_model::package::ModelPackage::open(&model).unwrap();
    assert!(!pkg.manifest.label_sets.contains_key("ct-rate-extended"));
    assert_eq!(pkg.manifest.labels("ct-rate-extended").unwrap(), ext);
    assert!(pkg.manifest.labels("no-such-set").is_none());
}
