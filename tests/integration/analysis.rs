//! The model CLI contract end to end on the tiny PyTorch fixtures: import → `embed` (values
//! against PyTorch) → `diagnose` on a real CT (findings, bank matches, heat maps on the CT grid).

use std::path::{Path, PathBuf};
use std::process::Command;

use radbridge_model::preprocess::{preprocess, PreprocessConfig};
use radbridge_tests::*;
use radbridge_volume::{self as volume, OpenOptions};
use serde_json::Value;

fn import(arch: &str, dir: &Path) -> PathBuf {
    radbridge_tests::import_tiny(arch, dir)
}

fn run(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let o = Command::new(bin()).args(args).env("RADBRIDGE_CACHE_DIR", dir.join("cache")).output().unwrap();
    (o.status.code().unwrap_or(-1), String::from_utf8_lossy(&o.stdout).into(), String::from_utf8_lossy(&o.stderr).into())
}

fn max_abs(a: &Value, b: &Value) -> f64 {
    f64s(a).iter().zip(f64s(b)).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

/// Prompts of the fixture that fit on one line (the file format is one prompt per line).
fn prompts(expected: &Value) -> Vec<Value> {
    expected["prompts"].as_array().unwrap().iter().filter(|p| !p["text"].as_str().unwrap().contains('\n')).cloned().collect()
}

#[test]
fn brgsa_embed_matches_pytorch() {
    let dir = tempfile::tempdir().unwrap();
    let model = import("brgsa", dir.path());
    let exp = json_file("models/brgsa_tiny/expected.json");
    let ps = prompts(&exp);
    let pfile = dir.path().join("prompts.txt");
    std::fs::write(&pfile, ps.iter().map(|p| p["text"].as_str().unwrap()).collect::<Vec<_>>().join("\n")).unwrap();
    let out = dir.path().join("e.json");
    let (code, _, err) = run(
        dir.path(),
        &[
            "embed",
            "--model",
            model.to_str().unwrap(),
            "--volume",
            data("models/brgsa_tiny/input.npy").to_str().unwrap(),
            "--prompts",
            pfile.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    let e: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert!(max_abs(&e["image"]["v"], &exp["image"]["v"]) <= 1e-4);
    assert!(max_abs(&e["image"]["v_hat"], &exp["image"]["v_hat"]) <= 1e-4);
    let top = e["image"]["bank_top"].as_array().unwrap();
    assert!(top.len() >= 5);
    let w: Vec<f64> = top.iter().map(|x| x["weight"].as_f64().unwrap()).collect();
    assert!(w.windows(2).all(|p| p[0] >= p[1]), "bank_top sorted by weight");
    let z = f64s(&exp["image"]["z"]);
    assert!((w[0] - z.iter().cloned().fold(f64::MIN, f64::max)).abs() < 1e-5);
    let got = e["prompts"].as_array().unwrap();
    assert_eq!(got.len(), ps.len());
    for (g, r) in got.iter().zip(&ps) {
        assert_eq!(g["text"], r["text"]);
        for k in ["t", "t_hat"] {
            assert!(max_abs(&g[k], &r[k]) <= 1e-4, "{}: {k}", r["text"]);
        }
        for k in ["cos_v_t", "cos_vhat_t", "score"] {
            assert!((g[k].as_f64().unwrap() - r[k].as_f64().unwrap()).abs() <= 1e-5, "{}: {k}", r["text"]);
        }
    }
    // A second run reads the prompts from the text-embedding cache and gives the same numbers.
    let out2 = dir.path().join("e2.json");
    let (code, _, _) = run(
        dir.path(),
        &[
            "embed",
            "--model",
            model.to_str().unwrap(),
            "--volume",
            data("models/brgsa_tiny/input.npy").to_str().unwrap(),
            "--prompts",
            pfile.to_str().unwrap(),
            "--output",
            out2.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0);
    assert!(std::fs::read_dir(dir.path().join("cache/text-embeddings")).unwrap().count() == 1);
    let e2: Value = serde_json::from_str(&std::fs::read_to_string(&out2).unwrap()).unwrap();
    assert_eq!(e2["prompts"], e["prompts"]);
}

#[test]
fn ctclip_embed_matches_pytorch() {
    let dir = tempfile::tempdir().unwrap();
    let model = import("ctclip", dir.path());
    let exp = json_file("models/ctclip_tiny/expected.json");
    let ps = prompts(&exp);
    let pfile = dir.path().join("prompts.txt");
    std::fs::write(&pfile, ps.iter().map(|p| p["text"].as_str().unwrap()).collect::<Vec<_>>().join("\n")).unwrap();
    let out = dir.path().join("e.json");
    let (code, _, err) = run(
        dir.path(),
        &[
            "embed",
            "--model",
            model.to_str().unwrap(),
            "--volume",
            data("models/ctclip_tiny/input.npy").to_str().unwrap(),
            "--prompts",
            pfile.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    let e: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert!(max_abs(&e["image"]["latent"], &exp["image"]["latent"]) <= 1e-4);
    for (g, r) in e["prompts"].as_array().unwrap().iter().zip(&ps) {
        assert!(max_abs(&g["latent"], &r["latent"]) <= 1e-4, "{}", r["text"]);
        assert!((g["logit"].as_f64().unwrap() - r["logit"].as_f64().unwrap()).abs() <= 1e-5, "{}", r["text"]);
    }
}

#[test]
fn embed_refuses_a_tensor_of_the_wrong_rank() {
    let dir = tempfile::tempdir().unwrap();
    let model = import("brgsa", dir.path());
    let npy = dir.path().join("bad.npy");
    radbridge_model::preprocess::write_npy(&npy, &[1, 64, 64, 32], &vec![0.0; 64 * 64 * 32]).unwrap();
    let (code, _, err) = run(
        dir.path(),
        &[
            "embed",
            "--model",
            model.to_str().unwrap(),
            "--volume",
            npy.to_str().unwrap(),
            "--output",
            dir.path().join("x.json").to_str().unwrap(),
        ],
    );
    assert_eq!(code, 1);
    assert!(err.starts_with("error: ") && err.contains("bad.npy") && !err.contains("panicked"), "{err}");
}

#[test]
fn diagnose_scores_explains_and_maps_a_real_ct() {
    let dir = tempfile::tempdir().unwrap();
    let model = import("brgsa", dir.path());
    let ct = data("totalsegmentator/chest_ct.nii.gz");
    let json = dir.path().join("d.json");
    let hm = dir.path().join("heatmaps");
    let (code, out, err) = run(
        dir.path(),
        &[
            "diagnose",
            ct.to_str().unwrap(),
            "--model",
            model.to_str().unwrap(),
            "--labels",
            "ct-rate",
            "--finding",
            "small nodule in the left lung",
            "--json",
            json.to_str().unwrap(),
            "--heatmaps",
            hm.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Research use only") && out.contains("timings:"), "{out}");
    let d: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let f = d["findings"].as_array().unwrap();
    assert_eq!(f.len(), 19);
    assert_eq!(f[18]["label"], "small nodule in the left lung");
    assert_eq!(f[18]["custom"], true);
    assert_eq!(f[2]["prompt"], "There is Cardiomegaly");
    for x in f {
        let s = x["score"].as_f64().unwrap();
        assert!((-1.0..=1.0).contains(&s));
        assert_eq!(x["bank"]["shared"].as_array().unwrap().len(), 5);
    }
    assert_eq!(d["image_bank_top"].as_array().unwrap().len(), 5);
    // Heat maps lie on the CT's own grid with its affine.
    let ctv = volume::open(&ct, &OpenOptions::default()).unwrap().volume;
    let h = volume::open(f[2]["heatmap"].as_str().unwrap(), &OpenOptions::default()).unwrap().volume;
    assert_eq!(h.dims, ctv.dims);
    assert!(h.affine.max_abs_diff(&ctv.affine) < 1e-3);
    let (lo, hi) = h.voxels.range().unwrap();
    assert!(-1.0 <= lo && hi <= 1.0 && hi > lo);
}

#[test]
fn heatmap_cells_land_where_the_model_saw_them() {
    // A patch grid whose value is its own A2 cell index, put back on the chest CT: each CT
    // slice k must read the cell its model-grid position falls in (BrgSA: 3 mm slices, 8 per
    // patch, 16 cells), interpolated between cell centres.
    let v = volume::open(data("totalsegmentator/chest_ct.nii.gz"), &OpenOptions::default()).unwrap().volume;
    let input = preprocess(&v, &PreprocessConfig::brgsa()).unwrap();
    let grid = [16usize, 16, 16];
    let sims: Vec<f32> = (0..16 * 16 * 16).map(|n| (n % 16) as f32).collect();
    let hm = radbridge_model::heatmap::to_volume(
        &sims,
        grid,
        [16, 16, 8],
        &input.geometry,
        &v,
        "z",
        radbridge_model::heatmap::Method::PatchCosine,
    );
    let g = &input.geometry;
    for k in [0usize, 50, 100, 190] {
        let m = k as f64 * 1.5 / 3.0 - g.start[2] as f64;
        let expect = ((m + 0.5) / 8.0 - 0.5).clamp(0.0, 15.0);
        let got = hm.voxels.get_f32(hm.index(100, 80, k)) as f64;
        assert!((got - expect).abs() < 1e-4, "slice {k}: {got} vs {expect}");
    }
}

/// The tiny BrgSA fixture loaded in-process (text cache in a temporary folder) and the chest CT.
fn tiny_engine_and_chest_ct() -> (tempfile::TempDir, radbridge_volume::Volume, radbridge_model::analysis::Engine) {
    let dir = tempfile::tempdir().unwrap();
    std::env::set_var("RADBRIDGE_CACHE_DIR", dir.path().join("cache"));
    let model = import("brgsa", dir.path());
    let ct = volume::open(data("totalsegmentator/chest_ct.nii.gz"), &OpenOptions::default()).unwrap().volume;
    let engine = radbridge_model::analysis::Engine::load(&model).unwrap();
    (dir, ct, engine)
}

#[test]
fn a_heat_map_on_the_open_study_reuses_the_image_encoding() {
    // The app's click-a-finding path: a full analysis, then one label with a heat map under the
    // same image key. The second call must skip the image encoder, give the same score and the
    // same peak, and a new key must encode again.
    use radbridge_model::analysis::DiagnoseOptions;
    let (dir, ct, mut engine) = tiny_engine_and_chest_ct();
    let labels: Vec<String> = ["Cardiomegaly", "Lung nodule", "Pleural effusion"].map(String::from).to_vec();
    let key = Some("1:chest_ct.nii.gz".to_string());
    let stages = |d: &radbridge_model::analysis::Diagnosis| d.timings.iter().map(|(s, _)| s.clone()).collect::<Vec<_>>();
    let full = engine
        .diagnose(&ct, &DiagnoseOptions { labels: labels.clone(), top_k: 3, image_key: key.clone(), ..Default::default() }, &|_, _| {})
        .unwrap();
    assert!(stages(&full).contains(&"encode image".to_string()), "{:?}", stages(&full));
    let hm_dir = dir.path().join("hm");
    let one = engine
        .diagnose(
            &ct,
            &DiagnoseOptions {
                labels: vec!["Lung nodule".into()],
                top_k: 3,
                image_key: key.clone(),
                heatmap_dir: Some(hm_dir.clone()),
                ..Default::default()
            },
            &|_, _| {},
        )
        .unwrap();
    let st = stages(&one);
    assert!(st.contains(&"encode image (reused)".to_string()) && !st.contains(&"encode image".to_string()), "{st:?}");
    assert_eq!(one.findings[0].finding.score, full.findings[1].finding.score);
    assert_eq!(one.findings[0].bank.as_ref().unwrap().shared.len(), 3);
    // Without heat maps, gradient peaks are computed for flagged findings only.
    for f in &full.findings {
        assert_eq!(f.peak.is_some(), f.finding.flagged == Some(true), "{:?}", f.finding);
    }
    // The heat map is on the CT grid and its peak is its maximum there, inside the CT.
    let h = volume::open(one.findings[0].heatmap.as_ref().unwrap(), &OpenOptions::default()).unwrap().volume;
    assert_eq!(h.dims, ct.dims);
    let p_one = one.findings[0].peak.as_ref().unwrap();
    assert_eq!(p_one.from, radbridge_model::heatmap::PeakSource::Heatmap);
    assert_eq!(h.voxels.get_f32(h.index(p_one.voxel[0], p_one.voxel[1], p_one.voxel[2])), h.voxels.range().unwrap().1);
    // Another key (another study or generation) encodes again; no key never caches.
    let other = engine
        .diagnose(
            &ct,
            &DiagnoseOptions { labels: vec!["Lung nodule".into()], top_k: 3, image_key: Some("2:x".into()), ..Default::default() },
            &|_, _| {},
        )
        .unwrap();
    assert!(stages(&other).contains(&"encode image".to_string()));
    assert_eq!(other.findings[0].finding.score, full.findings[1].finding.score);
    let none =
        engine.diagnose(&ct, &DiagnoseOptions { labels: vec!["Lung nodule".into()], top_k: 3, ..Default::default() }, &|_, _| {}).unwrap();
    assert!(stages(&none).contains(&"encode image".to_string()));
    let again = engine
        .diagnose(
            &ct,
            &DiagnoseOptions { labels: vec!["Lung nodule".into()], top_k: 3, image_key: Some("2:x".into()), ..Default::default() },
            &|_, _| {},
        )
        .unwrap();
    assert!(stages(&again).contains(&"encode image".to_string()), "a call without a key must drop the cached encoding");
}

#[test]
fn a_cancelled_analysis_stops_at_the_next_stage_and_leaves_the_engine_usable() {
    // Cancel from the progress callback as each stage starts (what the app's Cancel button
    // does from another thread): diagnose returns the cancellation, and the next analysis of
    // the same study runs to the end with the same scores as one never cancelled.
    use radbridge_model::analysis::DiagnoseOptions;
    let (_dir, ct, mut engine) = tiny_engine_and_chest_ct();
    let opts = || DiagnoseOptions {
        labels: vec!["Cardiomegaly".into(), "Lung nodule".into()],
        top_k: 2,
        image_key: Some("1:ct".into()),
        ..Default::default()
    };
    let reference = engine.diagnose(&ct, &DiagnoseOptions { image_key: None, ..opts() }, &|_, _| {}).unwrap();
    for stage in ["preprocess", "encode image", "encode text", "score"] {
        let o = opts();
        let token = o.cancel.clone();
        let err = engine
            .diagnose(&ct, &o, &|s, _| {
                if s.as_str() == stage {
                    token.cancel()
                }
            })
            .unwrap_err();
        assert!(err.to_string().to_lowercase().contains("cancel"), "{stage}: {err:#}");
        let d = engine.diagnose(&ct, &opts(), &|_, _| {}).unwrap();
        let scores = |d: &radbridge_model::analysis::Diagnosis| d.findings.iter().map(|f| f.finding.score).collect::<Vec<_>>();
        assert_eq!(scores(&d), scores(&reference), "after cancelling at {stage}");
    }
}
