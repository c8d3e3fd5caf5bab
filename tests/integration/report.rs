//! `radbridge report` end to end: the tiny BrgSA fixture diagnoses the real chest CT (NIfTI, with
//! heat maps) and a real GE head-CT series (DICOM with patient fields, no heat maps); the reports
//! are checked with independent readers: poppler (pdftotext, pdfimages, pdftoppm), Python
//! `jsonschema` against the committed schema, pydicom and dicom3tools' `dciodvfy` for the SR.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use radbridge_tests::*;
use serde_json::Value;

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    model: PathBuf,
    /// diagnose --json of the chest CT (with --heatmaps).
    chest: PathBuf,
    /// diagnose --json of the head-CT DICOM series (no heat maps).
    head: PathBuf,
}

/// Flagged by the thresholds written into the fixture model.
const FLAGGED: [&str; 2] = ["Cardiomegaly", "Emphysema"];

fn run_in(root: &Path, data_dir: &Path, args: &[&str]) -> (i32, String, String) {
    let o =
        Command::new(bin()).args(args).env("RADBRIDGE_CACHE_DIR", root.join("cache")).env("RADBRIDGE_DATA_DIR", data_dir).output().unwrap();
    (o.status.code().unwrap_or(-1), String::from_utf8_lossy(&o.stdout).into(), String::from_utf8_lossy(&o.stderr).into())
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let model = root.join("brgsa");
        let data_dir = root.join("data");
        let s = |v: &Path| v.to_str().unwrap().to_string();
        let (code, _, err) = run_in(
            &root,
            &data_dir,
            &[
                "import-checkpoint",
                "--arch",
                "brgsa",
                "--checkpoint",
                &s(&data("models/brgsa_tiny/best.ckpt")),
                "--text-dir",
                &s(&data("models/brgsa_tiny")),
                "--output",
                &s(&model),
                "--vision-heads",
                "4",
                "--text-max-length",
                "24",
            ],
        );
        assert_eq!(code, 0, "{err}");
        // Thresholds that flag two labels, and words for the bank entries.
        std::fs::write(
            model.join("thresholds.json"),
            r#"{"version":1,"source":"test","thresholds":{"Cardiomegaly":-1.0,"Emphysema":-1.0,"Lung nodule":1.0}}"#,
        )
        .unwrap();
        let mut manifest: Value = serde_json::from_str(&std::fs::read_to_string(model.join("model.json")).unwrap()).unwrap();
        manifest["thresholds"] = "thresholds.json".into();
        std::fs::write(model.join("model.json"), serde_json::to_string_pretty(&manifest).unwrap()).unwrap();
        let corpus = root.join("corpus.jsonl");
        let sentences = [
            "The heart is enlarged.",
            "There is emphysema in both upper lobes.",
            "No pleural effusion.",
            "A small nodule in the right lower lobe.",
            "The aorta is of normal calibre.",
            "Bronchial walls are thickened.",
            "Calcified plaques in the coronary arteries.",
            "The lungs are clear.",
        ];
        std::fs::write(&corpus, sentences.iter().map(|t| serde_json::to_string(t).unwrap()).collect::<Vec<_>>().join("\n")).unwrap();
        let (code, _, err) = run_in(&root, &data_dir, &["bank", "describe", "--model", &s(&model), "--corpus", &s(&corpus)]);
        assert_eq!(code, 0, "{err}");
        let chest = root.join("chest.json");
        let (code, _, err) = run_in(
            &root,
            &data_dir,
            &[
                "diagnose",
                &s(&data("totalsegmentator/chest_ct.nii.gz")),
                "--model",
                &s(&model),
                "--labels",
                "ct-rate",
                "--json",
                &s(&chest),
                "--heatmaps",
                &s(&root.join("heatmaps")),
            ],
        );
        assert_eq!(code, 0, "{err}");
        let head = root.join("head.json");
        let (code, _, err) = run_in(
            &root,
            &data_dir,
            &["diagnose", &s(&data("pydicom/head_ct_series_CT2")), "--model", &s(&model), "--labels", "ct-rate", "--json", &s(&head)],
        );
        assert_eq!(code, 0, "{err}");
        Fixture { _dir: dir, root, model, chest, head }
    })
}

/// A fresh folder for one test's outputs and data dir (de-identification key).
fn scratch(name: &str) -> PathBuf {
    let d = fixture().root.join(name);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn report(out_dir: &Path, args: &[&str]) -> (i32, String, String) {
    run_in(&fixture().root, &out_dir.join("data"), &[&["report"], args].concat())
}

fn read_json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn tool(cmd: &str, args: &[&str]) -> String {
    let o = Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("{cmd}: {e} (apt-get install poppler-utils dicom3tools)"));
    assert!(o.status.success(), "{cmd} {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
}

fn python(script: &str, args: &[&str]) -> (bool, String) {
    let o = Command::new(test_python()).arg("-c").arg(script).args(args).output().unwrap();
    (o.status.success(), String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr))
}

#[test]
fn diagnose_json_records_the_source_and_peaks() {
    let f = fixture();
    let d = read_json(&f.chest);
    let src = &d["source"];
    assert_eq!(src["format"], "nifti");
    assert!(src["path"].as_str().unwrap().ends_with("chest_ct.nii.gz"));
    assert_eq!(src["dims"], serde_json::json!([233, 167, 191]));
    for x in d["findings"].as_array().unwrap() {
        let p = &x["peak"];
        assert_eq!(p["from"], "heatmap", "{x}");
        // The peak is the maximum of the heat map written for the finding.
        let hm = radbridge_volume::open(x["heatmap"].as_str().unwrap(), &Default::default()).unwrap().volume;
        let (_, hi) = hm.voxels.range().unwrap();
        let v = usizes(&p["voxel"]);
        assert_eq!(hm.voxels.get_f32(hm.index(v[0], v[1], v[2])), hi);
        assert!((p["value"].as_f64().unwrap() - hi as f64).abs() < 1e-6);
        let w = hm.affine.apply([v[0] as f64, v[1] as f64, v[2] as f64]);
        for a in 0..3 {
            assert!((p["lps_mm"][a].as_f64().unwrap() - w[a]).abs() < 1e-6);
        }
    }
    let h = read_json(&f.head);
    let src = &h["source"];
    assert_eq!(src["format"], "dicom");
    assert_eq!(src["modality"], "CT");
    assert_eq!(src["series_instance_uid"], "1.3.6.1.4.1.5962.1.1.0.0.0.1196530851.28319.0.2");
    assert_eq!(src["study_instance_uid"], "1.3.6.1.4.1.5962.1.1.0.0.0.1196530851.28319.0.1");
    assert_eq!(src["patient"]["name"], "Doe^Archibald");
    assert_eq!(src["study"]["date"], "19950903");
    assert_eq!(src["instances"].as_array().unwrap().len(), 4);
    // Without heat maps only flagged findings get a (patch-grid) peak: a gradient map costs a
    // backward pass per finding.
    assert!(h["findings"].as_array().unwrap().iter().all(|x| x.get("heatmap").is_none()));
    assert!(h["findings"].as_array().unwrap().iter().any(|x| x["flagged"] == true));
    for x in h["findings"].as_array().unwrap() {
        if x["flagged"] == true {
            assert_eq!(x["peak"]["from"], "patch_grid", "{x}");
        } else {
            assert!(x.get("peak").is_none(), "{x}");
        }
    }
}

#[test]
fn export_without_verdicts_is_refused_and_names_the_flagged_findings() {
    let f = fixture();
    let out = scratch("refused");
    let pdf = out.join("r.pdf");
    let (code, _, err) = report(&out, &["--from-json", f.chest.to_str().unwrap(), "--format", "pdf", "--output", pdf.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.starts_with("error: ") && !err.contains("panicked"), "{err}");
    for l in FLAGGED {
        assert!(err.contains(l), "{err}");
    }
    assert!(err.contains("--export-anyway") && !err.contains("Lung nodule"), "{err}");
    assert!(!pdf.exists());
}

#[test]
fn pdf_has_the_text_the_key_images_and_the_heat_map() {
    let f = fixture();
    let out = scratch("pdf");
    let pdf = out.join("r.pdf");
    let (code, _, err) = report(
        &out,
        &[
            "--from-json",
            f.chest.to_str().unwrap(),
            "--format",
            "pdf",
            "--output",
            pdf.to_str().unwrap(),
            "--export-anyway",
            "--reviewer",
            "dr_test",
            "--include-reviewer-names",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("2 flagged finding(s) UNCONFIRMED"), "{err}");
    let text = tool("pdftotext", &["-layout", pdf.to_str().unwrap(), "-"]);
    let d = read_json(&f.chest);
    for needle in [
        "Radbridge findings report",
        "Research use only. Not for diagnostic use",
        "Cardiomegaly",
        "Emphysema",
        "UNCONFIRMED",
        "Key image: Cardiomegaly",
        "Key image: Emphysema",
        "dr_test",
        "Matched knowledge entries",
        d["model"]["weights_sha256"].as_str().unwrap(),
        d["model"]["name"].as_str().unwrap(),
    ] {
        assert!(text.contains(needle), "'{needle}' missing from the PDF text:\n{text}");
    }
    // The knowledge page lists, for each flagged finding, the bank entries it shares with the
    // image (`findings[].bank.shared`), each in words (bank describe ran on the fixture corpus),
    // then the entries the image uses most (`image_bank_top`), as the diagnosis JSON has them.
    let knowledge = knowledge_section(&text);
    let mut checked = vec![];
    for x in d["findings"].as_array().unwrap().iter().filter(|x| x["flagged"] == true) {
        let label = x["label"].as_str().unwrap();
        checked.push(label);
        let shared = x["bank"]["shared"].as_array().unwrap_or_else(|| panic!("{label}: no shared bank entries in {x}"));
        assert!(!shared.is_empty(), "{label}: no shared bank entries");
        let heading = format!("{label} (score {:.4}, UNCONFIRMED)", f32_of(&x["score"]));
        assert!(knowledge.contains(&heading), "'{heading}' missing from the knowledge page:\n{knowledge}");
        for e in shared {
            let line = knowledge_line(e, &format!("image {:.3} x finding {:.3}", f32_of(&e["image_weight"]), f32_of(&e["text_weight"])));
            assert!(knowledge.contains(&line), "'{line}' ({label}) missing from the knowledge page:\n{knowledge}");
        }
    }
    checked.sort();
    assert_eq!(checked, FLAGGED);
    let image_top = d["image_bank_top"].as_array().unwrap();
    assert!(!image_top.is_empty());
    for e in image_top {
        let line = knowledge_line(e, &format!("weight {:.3}", f32_of(&e["weight"])));
        assert!(knowledge.contains(&line), "'{line}' (image) missing from the knowledge page:\n{knowledge}");
    }
    // De-identified by default: the study path is not there.
    assert!(!text.contains("chest_ct") && !text.contains(f.root.to_str().unwrap()), "{text}");
    // One embedded image per flagged finding.
    let list = tool("pdfimages", &["-list", pdf.to_str().unwrap()]);
    let images = list.lines().skip(2).filter(|l| l.contains("image")).count();
    assert_eq!(images, 2, "{list}");
    // Rendered, a key-image page shows the heat map in colour (red to yellow).
    let prefix = out.join("page");
    tool("pdftoppm", &["-r", "40", "-f", "3", "-l", "3", pdf.to_str().unwrap(), prefix.to_str().unwrap()]);
    let ppm = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "ppm"))
        .expect("rendered page");
    let (w, h, px) = read_ppm(&ppm);
    // Heat (orange to yellow: red high, green well above blue) — not the red text, not the cyan ring.
    let hot = px.chunks(3).filter(|c| c[0] > 150 && c[1] as i32 > c[2] as i32 + 60).count();
    let grey = px.chunks(3).filter(|c| c[0] == c[1] && c[1] == c[2] && c[0] > 20 && c[0] < 235).count();
    // (A gradient map is concentrated on a few patch cells: about 160 hot pixels at 40 dpi.)
    assert!(hot > 100, "{hot} heat pixels on {w}x{h}");
    assert!(grey > 10000, "{grey} CT pixels on {w}x{h}");
}

/// A weight as the report holds it (f32; JSON keeps the shortest representation of the f32).
fn f32_of(v: &Value) -> f32 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}")) as f32
}

/// A bank entry as the PDF prints it: "#index (weights): description", with the description
/// the diagnosis JSON gives for the entry (every entry must have one: bank describe ran).
fn knowledge_line(e: &Value, weights: &str) -> String {
    let description = e["description"].as_str().unwrap_or_else(|| panic!("bank entry without a description: {e}"));
    assert!(!description.trim().is_empty(), "{e}");
    normalise(&format!("#{} ({weights}): {description}", e["index"]))
}

/// Whitespace collapsed to single spaces: the report wraps long lines and pdftotext -layout
/// pads columns, neither of which changes the words or their order.
fn normalise(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The text of the "Matched knowledge entries" page (the last section of the PDF), without the
/// page footers, whitespace collapsed.
fn knowledge_section(text: &str) -> String {
    let start = text.rfind("Matched knowledge entries").unwrap_or_else(|| panic!("no knowledge page in:\n{text}"));
    let body: Vec<&str> =
        text[start..].lines().filter(|l| !l.contains("Research use only") && !l.trim_start().starts_with("Radbridge ")).collect();
    normalise(&body.join("\n"))
}

fn read_ppm(p: &Path) -> (usize, usize, Vec<u8>) {
    let b = std::fs::read(p).unwrap();
    // "P6\n<w> <h>\n255\n" then RGB bytes.
    let mut fields = Vec::new();
    let mut i = 0;
    while fields.len() < 4 {
        while b[i].is_ascii_whitespace() {
            i += 1;
        }
        let s = i;
        while !b[i].is_ascii_whitespace() {
            i += 1;
        }
        fields.push(String::from_utf8_lossy(&b[s..i]).into_owned());
    }
    assert_eq!(fields[0], "P6");
    let (w, h): (usize, usize) = (fields[1].parse().unwrap(), fields[2].parse().unwrap());
    let data = b[i + 1..].to_vec();
    assert_eq!(data.len(), w * h * 3);
    (w, h, data)
}

const VALIDATE: &str = r#"
import json, sys, jsonschema
schema = json.load(open(sys.argv[1]))
jsonschema.Draft202012Validator.check_schema(schema)
errors = 0
for path in sys.argv[2:]:
    doc = json.load(open(path))
    for e in jsonschema.Draft202012Validator(schema).iter_errors(doc):
        errors += 1
        print(path, e.json_path, e.message[:300])
sys.exit(1 if errors else 0)
"#;

fn schema_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/radbridge-report/src/report.schema.json")
}

#[test]
fn json_follows_the_schema_and_carries_the_verdicts() {
    let f = fixture();
    let out = scratch("json");
    let verdicts = out.join("verdicts.json");
    std::fs::write(
        &verdicts,
        r#"[{"label":"Cardiomegaly","verdict":"confirmed","reviewer":"dr_a","at":"2026-11-28T10:00:00Z"},
            {"label":"Emphysema","verdict":"false_positive","reason":"artefact","reviewer":"dr_b","at":"2026-11-28T10:05:00Z"},
            {"label":"Rib fracture","verdict":"missed","text":"left 5th rib","reviewer":"dr_a","at":"2026-11-28T10:06:00Z"}]"#,
    )
    .unwrap();
    let deid = out.join("deid.json");
    let ident = out.join("ident.json");
    let head = out.join("head.json");
    let (code, _, err) = report(
        &out,
        &[
            "--from-json",
            f.chest.to_str().unwrap(),
            "--verdicts",
            verdicts.to_str().unwrap(),
            "--format",
            "json",
            "--output",
            deid.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("warning: free text") && err.contains("missed[Rib fracture].text"), "{err}");
    let (code, _, err) = report(
        &out,
        &[
            "--from-json",
            f.chest.to_str().unwrap(),
            "--verdicts",
            verdicts.to_str().unwrap(),
            "--format",
            "json",
            "--output",
            ident.to_str().unwrap(),
            "--no-deidentify",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let (code, _, err) =
        report(&out, &["--from-json", f.head.to_str().unwrap(), "--format", "json", "--output", head.to_str().unwrap(), "--export-anyway"]);
    assert_eq!(code, 0, "{err}");
    let (ok, msg) =
        python(VALIDATE, &[schema_path().to_str().unwrap(), deid.to_str().unwrap(), ident.to_str().unwrap(), head.to_str().unwrap()]);
    assert!(ok, "{msg}");

    let r = read_json(&deid);
    assert_eq!(r["disclaimer"], radbridge_model::analysis::DISCLAIMER);
    let by = |l: &str| r["findings"].as_array().unwrap().iter().find(|x| x["label"] == l).unwrap().clone();
    assert_eq!(by("Cardiomegaly")["status"], "confirmed");
    // De-identified: reviewers pseudonymised (keyed, one per name), review times shifted.
    let dr_a = by("Cardiomegaly")["review"]["reviewer"].as_str().unwrap().to_string();
    assert!(dr_a.starts_with("Reviewer-"), "{dr_a}");
    assert!(!by("Cardiomegaly")["review"]["at"].as_str().unwrap().starts_with("2026-11-28"));
    assert!(!std::fs::read_to_string(&deid).unwrap().contains("dr_a"));
    assert_eq!(
        read_json(&ident)["findings"].as_array().unwrap().iter().find(|x| x["label"] == "Cardiomegaly").unwrap()["review"]["reviewer"],
        "dr_a"
    );
    assert_eq!(by("Emphysema")["status"], "false_positive");
    assert_eq!(by("Emphysema")["review"]["reason"], "artefact");
    assert_eq!(by("Lung nodule")["flagged"], false);
    assert_eq!(by("Lung nodule")["status"], "unreviewed");
    assert_eq!(r["missed"][0]["label"], "Rib fracture");
    let reviewers = r["review"]["reviewers"].as_array().unwrap();
    assert_eq!(reviewers.len(), 2);
    assert_eq!(reviewers[0], dr_a.as_str());
    assert!(reviewers[1].as_str().unwrap().starts_with("Reviewer-") && reviewers[1] != reviewers[0]);
    assert!(
        r["free_text_fields"].as_array().unwrap().contains(&serde_json::json!("missed[Rib fracture].text")),
        "{}",
        r["free_text_fields"]
    );
    assert_eq!(r["review"]["unreviewed_flagged"], serde_json::json!([]));
    let k = r["key_images"].as_array().unwrap();
    assert_eq!(k.len(), 2);
    assert!(k.iter().all(|k| k["overlay"] == "heatmap"));
    let ki = by("Cardiomegaly")["key_image"].as_u64().unwrap() as usize;
    assert_eq!(k[ki]["label"], "Cardiomegaly");
    assert_eq!(k[ki]["slice"], by("Cardiomegaly")["peak"]["voxel"][2]);
    assert!(by("Cardiomegaly")["knowledge"].as_array().unwrap().iter().any(|e| e["description"].is_string()));
    // No local path in a de-identified export; the identified one has it.
    let text = std::fs::read_to_string(&deid).unwrap();
    assert!(!text.contains("chest_ct") && !text.contains(f.root.to_str().unwrap()) && !text.contains("heatmaps"));
    assert!(read_json(&ident)["study"]["source_path"].as_str().unwrap().ends_with("chest_ct.nii.gz"));

    // The schema can fail: an identified path in a "de-identified" report is refused.
    let mut bad = r.clone();
    bad["study"]["source_path"] = "/home/x/ct".into();
    bad["findings"][0]["status"] = "maybe".into();
    let badp = out.join("bad.json");
    std::fs::write(&badp, serde_json::to_string(&bad).unwrap()).unwrap();
    let (ok, msg) = python(VALIDATE, &[schema_path().to_str().unwrap(), badp.to_str().unwrap()]);
    assert!(!ok && msg.contains("source_path") && msg.contains("maybe"), "{msg}");

    // The head CT without heat maps: key images with a marker at the patch-grid peak.
    let h = read_json(&head);
    assert!(h["key_images"].as_array().unwrap().iter().all(|k| k["overlay"] == "marker" && k["peak"]["from"] == "patch_grid"));
    assert_eq!(h["review"]["unreviewed_flagged"], serde_json::json!(FLAGGED));
    assert!(h["findings"].as_array().unwrap().iter().filter(|x| x["flagged"] == true).all(|x| x["status"] == "unreviewed"));
}

const IDENTIFIERS: [&str; 7] = ["Doe^Archibald", "Archibald", "77654033", "1.3.6.1.4.1.5962", "19950903", "LightSpeed", "HEAD/BRAIN"];

#[test]
fn deidentification_removes_identifiers_and_maps_consistently() {
    let f = fixture();
    let out = scratch("deid");
    let files: Vec<PathBuf> = ["a.json", "b.json", "a.pdf", "a.dcm"].iter().map(|n| out.join(n)).collect();
    for (p, fmt) in files.iter().zip(["json", "json", "pdf", "sr"]) {
        let (code, _, err) =
            report(&out, &["--from-json", f.head.to_str().unwrap(), "--format", fmt, "--output", p.to_str().unwrap(), "--export-anyway"]);
        assert_eq!(code, 0, "{err}");
    }
    let pdf_text = tool("pdftotext", &[files[2].to_str().unwrap(), "-"]);
    let dcm = String::from_utf8_lossy(&std::fs::read(&files[3]).unwrap()).into_owned();
    let texts = [std::fs::read_to_string(&files[0]).unwrap(), pdf_text, dcm];
    let dicom_dir = data("pydicom/head_ct_series_CT2");
    for t in &texts {
        for id in IDENTIFIERS.iter().filter(|i| **i != "LightSpeed") {
            assert!(!t.contains(id), "'{id}' left in a de-identified export");
        }
        assert!(!t.contains(dicom_dir.to_str().unwrap()) && !t.contains("head_ct_series"), "study path left in a de-identified export");
    }
    let (a, b) = (read_json(&files[0]), read_json(&files[1]));
    let s = &a["study"];
    assert_eq!(s["study_instance_uid"], b["study"]["study_instance_uid"]);
    assert_eq!(s["study_date"], b["study"]["study_date"]);
    assert_eq!(s["patient_id"], b["study"]["patient_id"]);
    assert_eq!(s["instances"], b["study"]["instances"]);
    assert!(s["study_instance_uid"].as_str().unwrap().starts_with("2.25."));
    assert!(s["series_instance_uid"].as_str().unwrap().starts_with("2.25."));
    let date = s["study_date"].as_str().unwrap();
    assert!(("19850903".."19950903").contains(&date), "shifted date {date}");
    assert_eq!(s["study_time"], "173032");
    for k in [
        "patient_birth_date",
        "accession_number",
        "referring_physician",
        "institution",
        "study_id",
        "patient_age",
        "study_description",
        "source_path",
    ] {
        assert!(s[k].is_null(), "{k}: {}", s[k]);
    }
    assert_eq!(a["deidentification"]["patient_identity_removed"], "YES");
    // A different local key maps the same study to different UIDs and dates.
    let other = scratch("deid_other");
    let c = other.join("c.json");
    let (code, _, err) =
        report(&other, &["--from-json", f.head.to_str().unwrap(), "--format", "json", "--output", c.to_str().unwrap(), "--export-anyway"]);
    assert_eq!(code, 0, "{err}");
    assert_ne!(read_json(&c)["study"]["study_instance_uid"], s["study_instance_uid"]);
    // --no-deidentify keeps them.
    let id = out.join("ident.json");
    let (code, _, err) = report(
        &out,
        &[
            "--from-json",
            f.head.to_str().unwrap(),
            "--format",
            "json",
            "--output",
            id.to_str().unwrap(),
            "--export-anyway",
            "--no-deidentify",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let t = std::fs::read_to_string(&id).unwrap();
    assert!(t.contains("Doe^Archibald") && t.contains("19950903") && t.contains("1.3.6.1.4.1.5962.1.1.0.0.0.1196530851.28319.0.1"));
    assert!(read_json(&id)["deidentification"].is_null());
}

const READ_SR: &str = r#"
import json, sys, pydicom
ds = pydicom.dcmread(sys.argv[1])
def walk(items, out):
    for it in items:
        out.append(it)
        if "ContentSequence" in it:
            walk(it.ContentSequence, out)
    return out
items = walk(ds.ContentSequence, [])
ev = []
for st in ds.get("CurrentRequestedProcedureEvidenceSequence", []):
    for se in st.ReferencedSeriesSequence:
        for sop in se.ReferencedSOPSequence:
            ev.append([st.StudyInstanceUID, se.SeriesInstanceUID, sop.ReferencedSOPClassUID, sop.ReferencedSOPInstanceUID])
print(json.dumps({
    "sop_class": ds.SOPClassUID, "modality": ds.Modality, "value_type": ds.ValueType,
    "title": ds.ConceptNameCodeSequence[0].CodeMeaning,
    "patient_name": str(ds.PatientName), "patient_id": ds.PatientID, "study_uid": ds.StudyInstanceUID,
    "identity_removed": ds.get("PatientIdentityRemoved", ""), "method": list(ds.get("DeidentificationMethod", [])) if ds.get("DeidentificationMethod") else [],
    "completion": ds.CompletionFlag, "evidence": ev,
    "nums": [[float(i.MeasuredValueSequence[0].NumericValue), i.ConceptNameCodeSequence[0].CodeMeaning] for i in items if i.ValueType == "NUM"],
    "texts": [[i.ConceptNameCodeSequence[0].CodeMeaning, i.TextValue] for i in items if i.ValueType == "TEXT"],
    "images": [i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID for i in items if i.ValueType == "IMAGE"],
}))
"#;

fn dciodvfy(p: &Path) -> String {
    let o = Command::new("dciodvfy").arg(p).output().expect("dciodvfy (apt-get install dicom3tools)");
    String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
}

#[test]
fn sr_is_read_by_pydicom_and_valid_for_dciodvfy() {
    let f = fixture();
    let out = scratch("sr");
    let head = out.join("head.dcm");
    let chest = out.join("chest.dcm");
    let (code, _, err) =
        report(&out, &["--from-json", f.head.to_str().unwrap(), "--format", "sr", "--output", head.to_str().unwrap(), "--export-anyway"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = report(
        &out,
        &[
            "--from-json",
            f.chest.to_str().unwrap(),
            "--format",
            "sr",
            "--output",
            chest.to_str().unwrap(),
            "--export-anyway",
            "--no-deidentify",
        ],
    );
    assert_eq!(code, 0, "{err}");
    for p in [&head, &chest] {
        let v = dciodvfy(p);
        let errors: Vec<&str> = v.lines().filter(|l| l.contains("Error")).collect();
        assert!(errors.is_empty(), "{}: dciodvfy errors:\n{v}", p.display());
    }
    let (ok, msg) = python(READ_SR, &[head.to_str().unwrap()]);
    assert!(ok, "{msg}");
    let sr: Value = serde_json::from_str(msg.trim()).unwrap();
    assert_eq!(sr["sop_class"], "1.2.840.10008.5.1.4.1.1.88.33");
    assert_eq!(sr["modality"], "SR");
    assert_eq!(sr["value_type"], "CONTAINER");
    assert_eq!(sr["identity_removed"], "YES");
    assert_eq!(sr["completion"], "PARTIAL");
    assert!(!sr["method"].as_array().unwrap().is_empty());
    // The evidence lists the four source images under their remapped UIDs, as the JSON does.
    let j = out.join("head.json");
    let (code, _, err) =
        report(&out, &["--from-json", f.head.to_str().unwrap(), "--format", "json", "--output", j.to_str().unwrap(), "--export-anyway"]);
    assert_eq!(code, 0, "{err}");
    let r = read_json(&j);
    let ev = sr["evidence"].as_array().unwrap();
    assert_eq!(ev.len(), 4);
    for (e, inst) in ev.iter().zip(r["study"]["instances"].as_array().unwrap()) {
        assert_eq!(e[0], r["study"]["study_instance_uid"]);
        assert_eq!(e[1], r["study"]["series_instance_uid"]);
        assert_eq!(e[2], "1.2.840.10008.5.1.4.1.1.2");
        assert_eq!(e[3], inst["sop_instance_uid"]);
    }
    assert_eq!(sr["study_uid"], r["study"]["study_instance_uid"]);
    assert_eq!(sr["patient_name"], r["study"]["patient_name"]);
    // One score per finding, equal to the JSON's.
    let scores: Vec<f64> =
        sr["nums"].as_array().unwrap().iter().filter(|n| n[1] == "Zero-shot score").map(|n| n[0].as_f64().unwrap()).collect();
    let findings = r["findings"].as_array().unwrap();
    assert_eq!(scores.len(), findings.len());
    for (s, f) in scores.iter().zip(findings) {
        assert!((s - f["score"].as_f64().unwrap()).abs() < 1e-6);
    }
    let texts = sr["texts"].as_array().unwrap();
    assert!(texts.iter().any(|t| t[0] == "Comment" && t[1].as_str().unwrap().starts_with("Research use only")));
    assert_eq!(texts.iter().filter(|t| t[0] == "Reviewer verdict" && t[1] == "UNCONFIRMED").count(), 2);
    // Key images point at the source slice of each flagged finding's peak.
    let images = sr["images"].as_array().unwrap();
    assert_eq!(images.len(), 2);
    let uids: Vec<&Value> = r["study"]["instances"].as_array().unwrap().iter().map(|i| &i["sop_instance_uid"]).collect();
    assert!(images.iter().all(|u| uids.contains(&u)));
    // Identified chest SR (NIfTI source: no evidence to reference).
    let (ok, msg) = python(READ_SR, &[chest.to_str().unwrap()]);
    assert!(ok, "{msg}");
    let c: Value = serde_json::from_str(msg.trim()).unwrap();
    assert_eq!(c["identity_removed"], "");
    assert!(c["evidence"].as_array().unwrap().is_empty());
}

#[test]
fn a_feedback_run_gives_the_verdicts_to_the_report() {
    let f = fixture();
    let out = scratch("run");
    let db = out.join("fb.sqlite3");
    let dbs = db.to_str().unwrap();
    let (code, stdout, err) = run_in(
        &f.root,
        &out.join("data"),
        &["feedback", "--db", dbs, "record", "--from-json", f.chest.to_str().unwrap(), "--model", f.model.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{err}");
    let run = stdout.trim().to_string();
    let pdf = out.join("r.pdf");
    // Unreviewed: refused.
    let (code, _, err) = report(&out, &["--run", &run, "--db", dbs, "--format", "pdf", "--output", pdf.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("Cardiomegaly") && err.contains("Emphysema"), "{err}");
    for (label, how) in [("Cardiomegaly", "--confirm"), ("Emphysema", "--false-positive")] {
        let (code, _, err) = run_in(
            &f.root,
            &out.join("data"),
            &["feedback", "--db", dbs, "review", "--run", &run, "--label", label, how, "--reviewer", "dr_run"],
        );
        assert_eq!(code, 0, "{err}");
    }
    let (code, _, err) =
        report(&out, &["--run", &run, "--db", dbs, "--format", "pdf", "--output", pdf.to_str().unwrap(), "--include-reviewer-names"]);
    assert_eq!(code, 0, "{err}");
    let text = tool("pdftotext", &["-layout", pdf.to_str().unwrap(), "-"]);
    assert!(
        text.contains("confirmed (dr_run)") && text.contains("false positive (dr_run)") && text.contains("2 flagged, 0 unconfirmed"),
        "{text}"
    );
    assert!(!text.lines().any(|l| l.contains("yes") && l.contains("UNCONFIRMED")), "{text}");
    let j = out.join("r.json");
    let (code, _, err) =
        report(&out, &["--run", &run, "--db", dbs, "--format", "json", "--output", j.to_str().unwrap(), "--include-reviewer-names"]);
    assert_eq!(code, 0, "{err}");
    let r = read_json(&j);
    assert_eq!(r["review"]["run_id"].to_string(), run);
    assert_eq!(r["review"]["reviewers"], serde_json::json!(["dr_run"]));
}
