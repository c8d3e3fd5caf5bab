//! `radbridge synth`: the synthetic chest-CT corpus (format "radbridge-synth-1").
//!
//! A small corpus is written once through the library and read back through
//! `radbridge_volume::open` (volumes, masks) and as text (cases.jsonl, labels.csv, reports);
//! more cases are made in memory for the per-finding HU checks; the CLI is run for its
//! contract and its errors.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use radbridge_tests::{bin, data};
use radbridge_train::synth::{self, chest::BaseCt, lab, report, SynthOptions};
use radbridge_volume::{self as volume, CancelToken, OpenOptions, Volume, Voxels};
use serde_json::Value;

const SEED: u64 = 20261128;
const COUNT: usize = 8;

fn tmpdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("radbridge-synth-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn chest_ct() -> PathBuf {
    data("totalsegmentator/chest_ct.nii.gz")
}

fn generate(dir: &Path, seed: u64, count: usize, fraction: f64) {
    let opts = SynthOptions {
        count,
        seed,
        output: dir.to_path_buf(),
        chest_ct: Some(chest_ct()),
        chest_fraction: fraction,
        prevalence_scale: 1.0,
        command: format!("radbridge synth --count {count} --seed {seed} --output corpus"),
    };
    synth::generate(&opts, &|_, _| {}, &CancelToken::default()).expect("generate");
}

/// The shared corpus (half of the cases on the real chest CT so both kinds are covered).
fn corpus() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tmpdir("corpus");
        generate(&dir, SEED, COUNT, 0.5);
        dir
    })
}

fn base() -> &'static BaseCt {
    static B: OnceLock<BaseCt> = OnceLock::new();
    B.get_or_init(|| BaseCt::load(&chest_ct()).expect("base chest CT"))
}

fn cases(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("cases.jsonl"))
        .expect("cases.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

fn load(path: &Path) -> Volume {
    volume::open(path, &OpenOptions::default()).unwrap_or_else(|e| panic!("{}: {e}", path.display())).volume
}

fn median(mut v: Vec<f32>) -> f32 {
    assert!(!v.is_empty());
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

#[test]
fn corpus_files_and_labels_csv_agree() {
    let dir = corpus();
    let meta: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("corpus.json")).unwrap()).unwrap();
    assert_eq!(meta["format"], "radbridge-synth-1");
    assert_eq!(meta["seed"], SEED);
    assert_eq!(meta["count"], COUNT);
    assert!(meta["generator_version"].as_str().is_some_and(|s| !s.is_empty()));
    assert_eq!(meta["command"], format!("radbridge synth --count {COUNT} --seed {SEED} --output corpus"));
    let labels: Vec<String> = meta["labels"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    let expect: Vec<String> =
        radbridge_model::zeroshot::CT_RATE.iter().chain(radbridge_model::zeroshot::CT_RATE_LT.iter()).map(|s| s.to_string()).collect();
    assert_eq!(labels, expect, "labels are the CT-RATE then CT-RATE-LT strings of zeroshot.rs");

    let cs = cases(dir);
    assert_eq!(cs.len(), COUNT);
    let csv = std::fs::read_to_string(dir.join("labels.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(header[0], "VolumeName");
    assert_eq!(header[1..], labels.iter().map(|s| s.as_str()).collect::<Vec<_>>()[..]);
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), COUNT);
    let mut bases = BTreeMap::new();
    for (i, (c, row)) in cs.iter().zip(&rows).enumerate() {
        let id = c["id"].as_str().unwrap();
        assert_eq!(id, format!("case_{:04}", i + 1));
        assert_eq!(row[0], format!("{id}.nii.gz"));
        assert_eq!(c["volume"], format!("{id}/ct.nii.gz"));
        assert_eq!(c["report"], format!("{id}/report.txt"));
        *bases.entry(c["base"].as_str().unwrap().to_string()).or_insert(0) += 1;
        let lab = c["labels"].as_object().unwrap();
        assert_eq!(lab.len(), labels.len(), "{id}: every label listed");
        for (l, cell) in labels.iter().zip(&row[1..]) {
            let v = lab[l].as_u64().unwrap();
            assert!(v <= 1);
            assert_eq!(cell.parse::<u64>().unwrap(), v, "{id} {l}: labels.csv vs cases.jsonl");
        }
        assert!(dir.join(c["volume"].as_str().unwrap()).is_file());
        assert!(dir.join(c["report"].as_str().unwrap()).is_file());
        // masks: exactly the positive labels that have a location, files present, nothing else
        let masks = c["masks"].as_object().unwrap();
        for (l, rel) in masks {
            assert_eq!(lab[l], 1, "{id}: mask for negative label {l}");
            assert_eq!(rel.as_str().unwrap(), format!("{id}/masks/{}.nii.gz", synth::slug(l)));
            assert!(dir.join(rel.as_str().unwrap()).is_file());
        }
        for (l, v) in lab {
            if v == 1 {
                assert!(masks.contains_key(l), "{id}: positive {l} without a mask");
            }
        }
        let on_disk = std::fs::read_dir(dir.join(id).join("masks")).unwrap().count();
        assert_eq!(on_disk, masks.len(), "{id}: stray mask files");
    }
    assert!(bases.contains_key("procedural") && bases.contains_key("chest_ct"), "both kinds of base: {bases:?}");
}

#[test]
fn volumes_and_masks_load_with_sane_values() {
    let dir = corpus();
    for c in cases(dir) {
        let id = c["id"].as_str().unwrap();
        let ct = load(&dir.join(c["volume"].as_str().unwrap()));
        assert_eq!(ct.dims, synth::DIMS, "{id}");
        assert!(matches!(ct.voxels, Voxels::I16(_)), "{id}: int16");
        assert_eq!(ct.orientation(), "LPS");
        let sp = ct.spacing();
        for a in 0..3 {
            assert!((sp[a] - synth::SPACING[a]).abs() < 1e-4, "{id}: spacing {sp:?}");
        }
        let v = ct.voxels.to_f32();
        // air outside the body (the first rows are anterior to the patient)
        let [nx, ny, nz] = ct.dims;
        let corner: Vec<f32> =
            (0..nz).flat_map(|k| (0..4).flat_map(move |j| (0..nx).map(move |i| i + nx * (j + ny * k)))).map(|i| v[i]).collect();
        let air = median(corner);
        assert!((-1030.0..=-960.0).contains(&air), "{id}: outside air {air}");
        let frac = |lo: f32, hi: f32| v.iter().filter(|&&x| x >= lo && x <= hi).count() as f64 / v.len() as f64;
        assert!(frac(-950.0, -700.0) > 0.04, "{id}: lung parenchyma {:.3}", frac(-950.0, -700.0));
        assert!(frac(0.0, 80.0) > 0.05, "{id}: soft tissue {:.3}", frac(0.0, 80.0));
        assert!(frac(300.0, 3100.0) > 0.002, "{id}: bone {:.4}", frac(300.0, 3100.0));
        assert!(frac(-1024.0, 3071.0) == 1.0, "{id}: values within the CT range");
        for (l, rel) in c["masks"].as_object().unwrap() {
            let m = load(&dir.join(rel.as_str().unwrap()));
            assert_eq!(m.dims, ct.dims, "{id} {l}");
            assert!(m.affine.max_abs_diff(&ct.affine) < 1e-3, "{id} {l}: mask affine");
            let mv = m.voxels.to_f32();
            assert!(mv.iter().all(|&x| x == 0.0 || x == 1.0), "{id} {l}: binary mask");
            assert!(mv.contains(&1.0), "{id} {l}: empty mask");
        }
    }
}

/// Median HU under each positive label's mask, over cases made in memory.
#[test]
fn masks_hold_the_finding_hu() {
    let labels = synth::all_labels();
    let mut checked = BTreeMap::new();
    for i in 0..28 {
        let base = if i % 4 == 3 { Some(base()) } else { None };
        let case = synth::make_case(SEED ^ 0x55, i, base, if base.is_some() { 1.0 } else { 0.0 });
        let hu: Vec<f32> = case.hu.iter().map(|&x| x as f32).collect();
        let has = |l: usize| case.labels[l];
        for (l, m) in &case.masks {
            let under: Vec<f32> = m.iter().zip(&hu).filter(|(m, _)| **m == 1).map(|(_, h)| *h).collect();
            assert!(!under.is_empty(), "{}: {} mask empty", case.id, labels[*l]);
            let med = median(under.clone());
            let below = |t: f32| under.iter().filter(|&&x| x < t).count() as f64 / under.len() as f64;
            let name = labels[*l];
            let ok = match *l {
                lab::PLEURAL_EFFUSION | lab::PERICARDIAL_EFFUSION | lab::EMPYEMA => (-20.0..=50.0).contains(&med),
                lab::EMPHYSEMA => below(-900.0) > 0.7,
                lab::PNEUMOTHORAX => med < -930.0,
                lab::LUNG_CYST => med < -700.0,
                // small nodules are partial-volumed at 2.8 × 2.8 × 5 mm; a nodule drawn into an
                // area already taken by a diffuse lesion (fibrosis, emphysema, mosaic, septal
                // lines) keeps only the free voxels (generator 1.0.0), so only its solid core is
                // required there
                lab::LUNG_NODULE => {
                    let diffuse = [lab::FIBROSIS, lab::EMPHYSEMA, lab::MOSAIC, lab::SEPTAL].iter().any(|&d| has(d));
                    let max = under.iter().cloned().fold(f32::MIN, f32::max);
                    max > -100.0 && (med > -300.0 || diffuse)
                }
                lab::LUNG_MASS => med > -150.0,
                lab::CONSOLIDATION if !has(lab::PNEUMONIA) => med > -300.0,
                lab::ATELECTASIS => med > -350.0,
                lab::LUNG_OPACITY if !has(lab::PNEUMONIA) => (-720.0..=-150.0).contains(&med),
                lab::CARDIOMEGALY | lab::LYMPHADENOPATHY => (0.0..=80.0).contains(&med),
                lab::MEDICAL_MATERIAL
                | lab::ARTERIAL_CALC
                | lab::CORONARY_CALC
                | lab::PLEURAL_CALC
                | lab::OSTEOPHYTE
                | lab::PERICARDIAL_CALC => med > 200.0,
                lab::PNEUMOMEDIASTINUM => med < -300.0,
                _ => continue,
            };
            assert!(ok, "{}: {name} mask median {med} HU (below -900: {:.2})", case.id, below(-900.0));
            *checked.entry(name).or_insert(0) += 1;
        }
        // negatives have no mask
        for (l, &on) in case.labels.iter().enumerate() {
            assert_eq!(on, case.masks.iter().any(|(ml, _)| *ml == l), "{}: {} mask iff positive", case.id, labels[l]);
        }
    }
    assert!(checked.len() >= 12, "too few finding kinds checked: {checked:?}");
}

fn sentences(report: &str) -> Vec<String> {
    report.split(['.', ';', '\n']).map(|s| s.trim().to_lowercase()).filter(|s| !s.is_empty()).collect()
}

fn negated(s: &str) -> bool {
    s.starts_with("no ") || s.contains(" no ") || s.contains(" not ") || s.starts_with("there is no") || s.contains("without")
}

#[test]
fn reports_mention_positives_and_negate_negatives() {
    let labels = synth::all_labels();
    let mut negations = 0;
    let mut hedges = 0;
    let mut sized = 0;
    for i in 0..24 {
        let base = if i % 4 == 3 { Some(base()) } else { None };
        let case = synth::make_case(SEED, i, base, if base.is_some() { 1.0 } else { 0.0 });
        let r = &case.report;
        assert!(r.starts_with("Findings: ") && r.contains("\n\nImpression: "), "{}: sections\n{r}", case.id);
        let (findings, impression) = r.split_once("\n\nImpression: ").unwrap();
        let low = r.to_lowercase();
        for (l, &on) in case.labels.iter().enumerate() {
            let kws = report::keywords(l);
            let hit = |text: &str| kws.iter().any(|k| text.to_lowercase().contains(k));
            if on {
                assert!(hit(findings), "{}: positive {} not in the findings\n{r}", case.id, labels[l]);
                assert!(
                    hit(impression)
                        || l == lab::LUNG_OPACITY
                        || l == lab::ARTERIAL_CALC
                        || l == lab::OSTEOPHYTE
                        || l == lab::PLEURAL_EFFUSION
                        || l == lab::CONSOLIDATION,
                    "{}: positive {} not in the impression\n{r}",
                    case.id,
                    labels[l]
                );
            } else {
                for s in sentences(r) {
                    if kws.iter().any(|k| s.contains(k)) {
                        assert!(negated(&s), "{}: negative {} mentioned without negation: {s}", case.id, labels[l]);
                        negations += 1;
                    }
                }
            }
        }
        if ["possible", "suspicious for", "compatible with", "in favor of"].iter().any(|h| low.contains(h)) {
            hedges += 1;
        }
        // sizes in the report agree with the mask (nodule: largest axial extent, mass: AxB)
        for f in &case.findings {
            if f.label == lab::LUNG_MASS && case.findings.iter().filter(|g| g.label == lab::LUNG_MASS).count() == 1 {
                let a = f.size_mm[0].max(f.size_mm[1]).round() as i64;
                let b = f.size_mm[0].min(f.size_mm[1]).round() as i64;
                assert!(r.contains(&format!("{a}x{b} mm")), "{}: mass size {a}x{b} mm not in\n{r}", case.id);
                // and the measured extent is the mask's
                let m = &case.masks.iter().find(|(l, _)| *l == lab::LUNG_MASS).unwrap().1;
                let g = synth::Grid::centred([0.0; 3]);
                let (mut lo, mut hi) = ([usize::MAX; 2], [0usize; 2]);
                for (idx, &v) in m.iter().enumerate() {
                    if v == 1 {
                        let ijk = g.ijk(idx);
                        for d in 0..2 {
                            lo[d] = lo[d].min(ijk[d]);
                            hi[d] = hi[d].max(ijk[d]);
                        }
                    }
                }
                let ext = [(hi[0] - lo[0] + 1) as f64 * 2.8, (hi[1] - lo[1] + 1) as f64 * 2.8];
                // the mass mask may also hold a second mass-like lesion only if one was drawn; one here
                assert!((ext[0].max(ext[1]) - a as f64).abs() <= 3.0, "{}: mask extent {ext:?} vs {a} mm", case.id);
                sized += 1;
            }
        }
    }
    assert!(negations > 20, "few negated mentions: {negations}");
    assert!(hedges > 2, "few hedged reports: {hedges}");
    assert!(sized > 0, "no single-mass case to check sizes");
}

#[test]
fn same_seed_same_bytes_other_seed_differs() {
    let files = |dir: &Path| -> BTreeMap<String, Vec<u8>> {
        let mut out = BTreeMap::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    out.insert(p.strip_prefix(dir).unwrap().display().to_string(), std::fs::read(&p).unwrap());
                }
            }
        }
        out
    };
    let (a, b, c) = (tmpdir("det-a"), tmpdir("det-b"), tmpdir("det-c"));
    generate(&a, 77, 4, 0.5);
    generate(&b, 77, 4, 0.5);
    generate(&c, 78, 4, 0.5);
    let (fa, fb, fc) = (files(&a), files(&b), files(&c));
    assert!(fa.len() > 4 * 3);
    assert_eq!(fa.keys().collect::<Vec<_>>(), fb.keys().collect::<Vec<_>>());
    for (k, v) in &fa {
        assert!(v == &fb[k], "{k} differs between two runs with the same seed");
    }
    for id in ["case_0001", "case_0002", "case_0003", "case_0004"] {
        let k = format!("{id}/ct.nii.gz");
        assert_ne!(fa[&k], fc[&k], "{k}: another seed gave the same volume");
    }
    for d in [a, b, c] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn cli_writes_a_corpus_and_refuses_bad_arguments() {
    let out = tmpdir("cli");
    let run = |args: &[&str]| Command::new(bin()).args(args).current_dir(data("..").join("..")).output().expect("run radbridge");
    let o = run(&["synth", "--count", "2", "--seed", "5", "--output", out.to_str().unwrap(), "--threads", "1"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let meta: Value = serde_json::from_str(&std::fs::read_to_string(out.join("corpus.json")).unwrap()).unwrap();
    assert_eq!(meta["command"], format!("radbridge synth --count 2 --seed 5 --output {}", out.display()));
    assert_eq!(cases(&out).len(), 2);

    let err = |args: &[&str], needle: &str| {
        let o = run(args);
        assert!(!o.status.success(), "{args:?} should fail");
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(e.contains(needle), "{args:?}: stderr lacks {needle:?}: {e}");
        assert!(!e.contains("panicked"), "{args:?}: panic: {e}");
    };
    let fresh = tmpdir("cli-fresh");
    let f = fresh.to_str().unwrap();
    err(&["synth", "--count", "2", "--seed", "5", "--output", out.to_str().unwrap()], "not empty");
    err(&["synth", "--count", "0", "--seed", "5", "--output", f], "--count must be at least 1");
    err(&["synth", "--count", "2", "--seed", "-3", "--output", f], "--seed");
    err(&["synth", "--count", "two", "--seed", "5", "--output", f], "--count");
    err(&["synth", "--count", "2", "--output", f], "--seed");
    err(&["synth", "--count", "2", "--seed", "5", "--output", f, "--chest-fraction", "1.5"], "--chest-fraction");
    err(&["synth", "--count", "2", "--seed", "5", "--output", f, "--chest-ct", "/nonexistent/ct.nii.gz"], "/nonexistent/ct.nii.gz");
    let file = tmpdir("cli-file");
    std::fs::write(&file, b"x").unwrap();
    err(&["synth", "--count", "1", "--seed", "5", "--output", file.to_str().unwrap()], "not a folder");
    assert!(!fresh.exists(), "a failed run left {f} behind");
    let _ = std::fs::remove_dir_all(&out);
    let _ = std::fs::remove_file(&file);
}

/// `--prevalence-scale`: 1.0 is the default generator exactly; a smaller scale draws fewer
/// findings per case (the demo model's corpus uses 0.35).
#[test]
fn prevalence_scale_thins_the_findings() {
    let n = 24;
    let (mut full, mut thin) = (0usize, 0usize);
    for i in 0..n {
        let a = synth::make_case(SEED ^ 0x77, i, None, 0.0);
        let same = synth::make_case_scaled(SEED ^ 0x77, i, None, 0.0, 1.0);
        assert_eq!(a.labels, same.labels);
        assert!(a.hu == same.hu && a.report == same.report, "case {i}: scale 1.0 changed the case");
        full += a.labels.iter().filter(|&&x| x).count();
        thin += synth::make_case_scaled(SEED ^ 0x77, i, None, 0.0, 0.35).labels.iter().filter(|&&x| x).count();
    }
    let (full, thin) = (full as f64 / n as f64, thin as f64 / n as f64);
    assert!(full > 4.5 && thin < 0.6 * full && thin > 0.5, "findings per case: {full:.2} at 1.0, {thin:.2} at 0.35");
}
