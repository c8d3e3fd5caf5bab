//! Series discovery and stack checks: grouping (with and without SeriesInstanceUID), choosing,
//! ordering by position, and the warnings a reader must see (gaps, duplicates, uneven spacing,
//! gantry tilt, mixed sizes). Stacks with defects are made from copies of the real series with
//! dicom-object; the originals are never modified.

use std::path::{Path, PathBuf};

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use radbridge_tests::*;
use radbridge_volume::{self as volume, OpenOptions, VolumeError, WarningCode};

fn copy_dir(src: &Path, dst: &Path) -> Vec<PathBuf> {
    std::fs::create_dir_all(dst).unwrap();
    let mut out = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(src).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for p in entries {
        let d = dst.join(p.file_name().unwrap());
        std::fs::copy(&p, &d).unwrap();
        out.push(d);
    }
    out
}

fn codes(l: &volume::Loaded) -> Vec<WarningCode> {
    l.volume.warnings.iter().map(|w| w.code).collect()
}

/// Rewrite one header attribute of a DICOM file copy.
fn set_ds(path: &Path, tag: dicom_core::Tag, values: &[f64]) {
    let mut obj = dicom_object::open_file(path).unwrap();
    let s = values.iter().map(|v| format!("{v}")).collect::<Vec<_>>().join("\\");
    obj.put(DataElement::new(tag, VR::DS, PrimitiveValue::from(s)));
    obj.write_to_file(path).unwrap();
}

fn ipp(path: &Path) -> [f64; 3] {
    let obj = dicom_object::open_file(path).unwrap();
    let v = obj.element(tags::IMAGE_POSITION_PATIENT).unwrap().to_multi_float64().unwrap();
    [v[0], v[1], v[2]]
}

#[test]
fn anonymised_series_falls_back_to_frame_of_reference() {
    let l = volume::open(data("totalsegmentator/example_ct_dicom"), &OpenOptions::default()).unwrap();
    assert_eq!(l.series.len(), 1);
    assert_eq!(l.series[0].grouped_by, "fallback");
    assert_eq!(l.series[0].uid, "");
    assert_eq!(l.volume.dims, [512, 512, 20]);
    assert!(l.volume.warnings.is_empty(), "{:?}", l.volume.warnings);
    // Sorted by position: z rises by exactly 2 mm per slice from the lowest slice.
    let a = l.volume.affine;
    assert!((a.0[2][2] - 2.0).abs() < 1e-9 && (a.0[2][3] + 804.5).abs() < 1e-9, "{a:?}");
}

#[test]
fn folder_with_several_series_lists_them_and_picks_by_index_or_uid() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&data("totalsegmentator/example_ct_dicom"), &dir.path().join("a/abdomen"));
    copy_dir(&data("pydicom/head_ct_series_CT2"), &dir.path().join("b"));
    std::fs::copy(data("pydicom-data/emri_small.dcm"), dir.path().join("mr_no_extension")).unwrap();
    std::fs::write(dir.path().join("b/notes.txt"), "x").unwrap();
    let l = volume::open(dir.path(), &OpenOptions::default()).unwrap();
    assert_eq!(l.series.len(), 3, "{:#?}", l.series);
    assert_eq!(l.scan.files_scanned, 26);
    assert_eq!(l.scan.non_dicom_skipped, 1);
    // Default: the CT series with the most slices.
    assert_eq!(l.volume.dims, [512, 512, 20]);
    let head = l.series.iter().find(|s| s.slice_count == 4).unwrap();
    let by_index = volume::open(dir.path(), &OpenOptions { series: Some(head.index.to_string()), ..Default::default() }).unwrap();
    assert_eq!(by_index.volume.dims, [16, 16, 4]);
    let by_uid = volume::open(dir.path(), &OpenOptions { series: Some(head.uid.clone()), ..Default::default() }).unwrap();
    assert_eq!(by_uid.chosen, head.index);
    let mr = l.series.iter().find(|s| s.modality == "MR").unwrap();
    let e = volume::open(dir.path(), &OpenOptions { series: Some(mr.index.to_string()), ..Default::default() }).unwrap_err();
    assert!(matches!(e, VolumeError::WrongModality { .. }), "{e}");
    let e = volume::open(dir.path(), &OpenOptions { series: Some("1.2.3.nope".into()), ..Default::default() }).unwrap_err();
    assert!(matches!(e, VolumeError::SeriesNotFound { .. }) && e.to_string().contains("20 slices"), "{e}");
}

#[test]
fn uneven_head_series_is_ordered_by_position_and_warned() {
    let l = volume::open(data("pydicom/head_ct_series_CT2"), &OpenOptions::default()).unwrap();
    let c = codes(&l);
    assert!(c.contains(&WarningCode::UnevenSpacing) && c.contains(&WarningCode::MissingSlices), "{c:?}");
    let reference = volumes_reference();
    let positions = f64s(&reference["pydicom/head_ct_series_CT2"]["positions"]);
    assert!((l.volume.affine.0[2][3] - positions[0]).abs() < 1e-4);
}

#[test]
fn missing_and_duplicate_slices_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let files = copy_dir(&data("totalsegmentator/example_ct_dicom"), dir.path());
    // Remove two slices from the middle (by position).
    let mut by_z: Vec<(f64, PathBuf)> = files.iter().map(|f| (ipp(f)[2], f.clone())).collect();
    by_z.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
    std::fs::remove_file(&by_z[7].1).unwrap();
    std::fs::remove_file(&by_z[8].1).unwrap();
    // A second copy of one slice.
    std::fs::copy(&by_z[3].1, dir.path().join("dup")).unwrap();
    let l = volume::open(dir.path(), &OpenOptions::default()).unwrap();
    let c = codes(&l);
    assert!(c.contains(&WarningCode::MissingSlices), "{c:?}");
    assert!(c.contains(&WarningCode::DuplicatePositions), "{c:?}");
    let missing = l.volume.warnings.iter().find(|w| w.code == WarningCode::MissingSlices).unwrap();
    assert!(missing.message.contains("about 2 slices"), "{}", missing.message);
    assert_eq!(l.volume.dims[2], 18);
}

#[test]
fn gantry_tilt_is_reported_and_kept_in_the_affine() {
    let dir = tempfile::tempdir().unwrap();
    let files = copy_dir(&data("totalsegmentator/example_ct_dicom"), dir.path());
    // Shift each slice in y by 0.2 mm per 2 mm of z: a 5.71° tilt.
    for f in &files {
        let p = ipp(f);
        set_ds(f, tags::IMAGE_POSITION_PATIENT, &[p[0], p[1] + 0.1 * (p[2] + 804.5), p[2]]);
    }
    let l = volume::open(dir.path(), &OpenOptions::default()).unwrap();
    let tilt = l.volume.warnings.iter().find(|w| w.code == WarningCode::GantryTilt).expect("tilt warning");
    assert!(tilt.message.contains("5.71"), "{}", tilt.message);
    let col2 = l.volume.affine.column(2);
    assert!((col2[1] - 0.2).abs() < 1e-6 && (col2[2] - 2.0).abs() < 1e-6, "{col2:?}");
    assert!(!codes(&l).contains(&WarningCode::UnevenSpacing));
}

#[test]
fn mixed_sizes_in_one_series_are_split_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let files = copy_dir(&data("pydicom/head_ct_series_CT2"), dir.path());
    // One image claims a different matrix size (header only; its pixels are never decoded).
    let mut obj = dicom_object::open_file(&files[0]).unwrap();
    obj.put(DataElement::new(tags::ROWS, VR::US, PrimitiveValue::from(8u16)));
    obj.put(DataElement::new(tags::COLUMNS, VR::US, PrimitiveValue::from(8u16)));
    obj.write_to_file(&files[0]).unwrap();
    let l = volume::open(dir.path(), &OpenOptions::default()).unwrap();
    assert_eq!(l.series.len(), 2);
    for s in &l.series {
        assert!(s.warnings.iter().any(|w| w.code == WarningCode::MixedDimensions), "{:?}", s.warnings);
    }
    assert_eq!(l.volume.dims, [16, 16, 3]);
}

#[test]
fn enhanced_multiframe_ct_uses_per_frame_positions() {
    let l = volume::open(data("pydicom-data/eCT_Supplemental.dcm"), &OpenOptions::default()).unwrap();
    assert_eq!(l.volume.dims, [512, 512, 2]);
    let reference = volumes_reference();
    let frames = &reference["pydicom-data/eCT_Supplemental"]["frame_positions"];
    // Both frames' world positions appear as slice origins.
    let a = l.volume.affine;
    let z: Vec<f64> = (0..2).map(|k| a.apply([0.0, 0.0, k as f64])[2]).collect();
    for f in frames.as_array().unwrap() {
        let fz = f64s(f)[2];
        assert!(z.iter().any(|v| (v - fz).abs() < 1e-6), "{fz} not in {z:?}");
    }
}

#[derive(Default)]
struct Counter {
    stages: std::sync::Mutex<Vec<(String, u64)>>,
    done: std::sync::atomic::AtomicU64,
}

impl volume::Progress for Counter {
    fn stage(&self, name: &str, total: u64) {
        self.stages.lock().unwrap().push((name.to_string(), total));
    }
    fn advance(&self, n: u64) {
        self.done.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }
}

#[test]
fn loading_reports_progress_and_can_be_cancelled() {
    let counter = std::sync::Arc::new(Counter::default());
    let o = OpenOptions { progress: counter.clone(), ..Default::default() };
    volume::open(data("totalsegmentator/example_ct_dicom"), &o).unwrap();
    let stages = counter.stages.lock().unwrap().clone();
    assert_eq!(stages, vec![("scan".to_string(), 20), ("decode".to_string(), 20)]);
    assert_eq!(counter.done.load(std::sync::atomic::Ordering::Relaxed), 40);
    let o = OpenOptions::default();
    o.cancel.cancel();
    let e = volume::open(data("totalsegmentator/example_ct_dicom"), &o).unwrap_err();
    assert!(e.is_cancelled(), "{e:?}");
}

#[test]
fn a_dicomdir_is_recognised_and_not_needed() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&data("pydicom/head_ct_series_CT2"), &dir.path().join("CT2"));
    std::fs::copy(data("generated/dicomdir_head_ct2/DICOMDIR"), dir.path().join("DICOMDIR")).unwrap();
    let l = volume::open(dir.path(), &OpenOptions::default()).unwrap();
    assert_eq!(l.series.len(), 1);
    assert_eq!(l.volume.dims, [16, 16, 4]);
    assert_eq!(l.scan.non_image_skipped, 1, "the DICOMDIR is a DICOM file without an image");
    assert_eq!(l.scan.non_dicom_skipped, 0);
    assert!(!l.volume.warnings.iter().any(|w| w.code == WarningCode::SkippedFiles));
}
