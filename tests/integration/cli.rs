//! The CLI contract: subcommands, flags, JSON fields, and that a converted NIfTI carries the
//! same patient geometry and HU as the DICOM it came from.

use std::process::Command;

use radbridge_tests::*;
use radbridge_volume::{self as volume, OpenOptions};
use serde_json::Value;

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin()).args(args).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn inspect_json_has_the_contract_fields() {
    let p = data("totalsegmentator/example_ct_dicom");
    let (code, out, err) = run(&["inspect", p.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "{err}");
    let j: Value = serde_json::from_str(&out).unwrap();
    for k in ["path", "format", "files_scanned", "non_dicom_skipped", "series", "chosen", "volume", "warnings"] {
        assert!(j.get(k).is_some(), "missing {k}");
    }
    let s = &j["series"][0];
    for k in ["index", "uid", "modality", "description", "slice_count", "dimensions", "spacing", "warnings"] {
        assert!(s.get(k).is_some(), "series missing {k}");
    }
    let v = &j["volume"];
    for k in ["dimensions", "spacing", "affine_lps", "orientation", "hu_min", "hu_max", "dtype"] {
        assert!(v.get(k).is_some(), "volume missing {k}");
    }
    assert_eq!(v["orientation"], "LPS");
    assert_eq!(v["hu_min"].as_f64(), Some(-1024.0));
    assert_eq!(usizes(&v["dimensions"]), vec![512, 512, 20]);
    // No patient identifiers in the output.
    let text = out.to_lowercase();
    assert!(!text.contains("patient_name") && !text.contains("patientname"));
}

#[test]
fn inspect_text_names_warnings() {
    let p = data("pydicom/head_ct_series_CT2");
    let (code, out, _) = run(&["inspect", p.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(out.contains("uneven_spacing") && out.contains("orientation LPS"), "{out}");
}

#[test]
fn convert_keeps_geometry_and_hu() {
    let dir = tempfile::tempdir().unwrap();
    for (src, int16) in
        [("totalsegmentator/example_ct_dicom", true), ("pydicom-data/eCT_Supplemental.dcm", true), ("nibabel/functional.nii", false)]
    {
        let out = dir.path().join("out.nii.gz");
        let (code, _, err) = run(&["convert", data(src).to_str().unwrap(), "--output", out.to_str().unwrap()]);
        assert_eq!(code, 0, "{src}: {err}");
        let a = volume::open(data(src), &OpenOptions::default()).unwrap().volume;
        let b = volume::open(&out, &OpenOptions::default()).unwrap().volume;
        assert_eq!(a.dims, b.dims, "{src}");
        assert_eq!(b.voxels.dtype(), if int16 { "int16" } else { "float32" }, "{src}");
        assert_eq!(a.voxels, b.voxels, "{src}: voxels");
        assert!(a.affine.max_abs_diff(&b.affine) < 1e-3, "{src}: {:?} vs {:?}", a.affine, b.affine);
        assert_eq!(a.orientation(), b.orientation());
    }
}

#[test]
fn convert_picks_a_series() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("s.nii");
    let p = data("pydicom/head_ct_series_CT2");
    let (code, _, err) = run(&["convert", p.to_str().unwrap(), "--output", out.to_str().unwrap(), "--series", "0"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run(&["convert", p.to_str().unwrap(), "--output", out.to_str().unwrap(), "--series", "7"]);
    assert_eq!(code, 1);
    assert!(err.starts_with("error: ") && err.contains("no series matches '7'"), "{err}");
}

fn read_npy_header(path: &std::path::Path) -> (String, usize) {
    let b = std::fs::read(path).unwrap();
    assert_eq!(&b[..8], b"\x93NUMPY\x01\x00");
    let hl = u16::from_le_bytes([b[8], b[9]]) as usize;
    assert_eq!((10 + hl) % 64, 0, "header aligned to 64 bytes");
    (String::from_utf8(b[10..10 + hl].to_vec()).unwrap(), b.len() - 10 - hl)
}

#[test]
fn preprocess_writes_the_documented_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let p = data("totalsegmentator/chest_ct.nii.gz");
    for (model, shape) in [("brgsa", "(1, 1, 256, 256, 128)"), ("ctclip", "(1, 1, 240, 480, 480)")] {
        let out = dir.path().join(format!("{model}.npy"));
        let (code, _, err) = run(&["preprocess", p.to_str().unwrap(), "--model", model, "--output", out.to_str().unwrap()]);
        assert_eq!(code, 0, "{err}");
        let (h, body) = read_npy_header(&out);
        assert!(h.contains("'descr': '<f4'") && h.contains("'fortran_order': False") && h.contains(shape), "{h}");
        let n: usize = shape.trim_matches(|c| c == '(' || c == ')').split(", ").map(|x| x.parse::<usize>().unwrap()).product();
        assert_eq!(body, n * 4);
    }
    let (code, _, err) = run(&["preprocess", p.to_str().unwrap(), "--model", "resnet", "--output", "/dev/null"]);
    assert_eq!(code, 1);
    assert!(err.contains("unknown model 'resnet'"), "{err}");
}

#[test]
fn bench_load_json_fields() {
    let p = data("totalsegmentator/chest_ct.nii.gz");
    let (code, out, err) = run(&["bench", "load", p.to_str().unwrap(), "--json", "--repeats", "1"]);
    assert_eq!(code, 0, "{err}");
    let j: Value = serde_json::from_str(&out).unwrap();
    for k in
        ["path", "files", "slices", "file_bytes", "voxel_bytes", "seconds_median", "mb_per_s", "slices_per_s", "repeats", "peak_rss_bytes"]
    {
        assert!(j.get(k).is_some(), "missing {k}");
    }
    assert_eq!(j["slices"], 191);
    assert_eq!(j["voxel_bytes"].as_u64(), Some(233 * 167 * 191 * 2));
    assert!(j["mb_per_s"].as_f64().unwrap() > 0.0);
}
