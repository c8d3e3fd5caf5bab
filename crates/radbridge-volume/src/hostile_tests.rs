//! Hostile inputs, built in code from the real test files: each gives its named error (or a
//! warning naming the file) and never a panic or an allocation larger than the file.

use std::path::{Path, PathBuf};

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;

use crate::dicom::{read_headers, HeaderOutcome};
use crate::{open, OpenOptions, VolumeError, WarningCode};

fn data(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data").join(rel)
}

/// A fresh empty folder under the system temporary folder.
fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("radbridge-hostile-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// CT_small.dcm with some elements replaced, written to `dst`.
fn patched_ct(dst: &Path, elements: Vec<DataElement<dicom_object::mem::InMemDicomObject>>) -> PathBuf {
    let mut obj = dicom_object::open_file(data("pydicom/CT_small.dcm")).unwrap();
    for e in elements {
        obj.put(e);
    }
    obj.write_to_file(dst).unwrap();
    dst.to_path_buf()
}

fn ds(tag: dicom_core::Tag, values: &[f64]) -> DataElement<dicom_object::mem::InMemDicomObject> {
    let s = values.iter().map(|v| format!("{v:e}")).collect::<Vec<_>>().join("\\");
    DataElement::new(tag, VR::DS, PrimitiveValue::from(s))
}

fn rejected(outcome: HeaderOutcome) -> VolumeError {
    match outcome {
        HeaderOutcome::Rejected(e) => e,
        HeaderOutcome::Image(h) => panic!("accepted with {} slice headers", h.len()),
        HeaderOutcome::NotImage(r) | HeaderOutcome::NotDicom(r) => panic!("skipped, not refused: {r}"),
    }
}

fn names(e: &VolumeError, file: &Path) {
    let name = file.file_name().unwrap().to_string_lossy();
    assert!(e.to_string().contains(name.as_ref()), "the message does not name {name}: {e}");
}

#[test]
fn number_of_frames_2_to_31_is_refused_before_any_slice_header() {
    let dir = scratch("frames");
    let p = patched_ct(&dir.join("frames.dcm"), vec![DataElement::new(tags::NUMBER_OF_FRAMES, VR::IS, PrimitiveValue::from("2147483648"))]);
    let e = rejected(read_headers(&p, &OpenOptions::default()));
    assert!(matches!(e, VolumeError::TooManyFrames { frames: 2147483648, .. }), "{e:?}");
    names(&e, &p);
    // Opened as a single file, the refusal is the error.
    let e = open(&p, &OpenOptions::default()).unwrap_err();
    assert!(matches!(e, VolumeError::TooManyFrames { .. }), "{e:?}");
    // Under the frame limit, but more frames than the native pixel data holds.
    let p = patched_ct(&dir.join("frames2.dcm"), vec![DataElement::new(tags::NUMBER_OF_FRAMES, VR::IS, PrimitiveValue::from("1000"))]);
    let e = rejected(read_headers(&p, &OpenOptions::default()));
    assert!(matches!(e, VolumeError::Truncated { what: "pixel data", .. }), "{e:?}");
    // Frames × rows × columns past max_voxels.
    let o = OpenOptions { max_voxels: 128 * 128 * 10, ..Default::default() };
    let e = rejected(read_headers(&p, &o));
    assert!(matches!(e, VolumeError::TooLarge { .. }), "{e:?}");
    // A negative count.
    let p = patched_ct(&dir.join("frames3.dcm"), vec![DataElement::new(tags::NUMBER_OF_FRAMES, VR::IS, PrimitiveValue::from("-5"))]);
    let e = rejected(read_headers(&p, &OpenOptions::default()));
    assert!(matches!(e, VolumeError::BadDicomHeader { .. }), "{e:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn rows_or_columns_zero_is_refused() {
    let dir = scratch("rows");
    for tag in [tags::ROWS, tags::COLUMNS] {
        let p = patched_ct(&dir.join("zero.dcm"), vec![DataElement::new(tag, VR::US, PrimitiveValue::from(0u16))]);
        let e = open(&p, &OpenOptions::default()).unwrap_err();
        assert!(matches!(&e, VolumeError::BadDicomHeader { reason, .. } if reason.contains("is 0")), "{e:?}");
        names(&e, &p);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The byte offset just after the first occurrence of `pattern`.
fn after(bytes: &[u8], pattern: &[u8]) -> usize {
    bytes.windows(pattern.len()).position(|w| w == pattern).expect("pattern") + pattern.len()
}

#[test]
fn a_declared_length_beyond_the_file_is_refused_before_parsing() {
    let dir = scratch("length");
    // A UT element (long form: 4-byte length) whose length is patched to almost 4 GiB.
    let p = patched_ct(&dir.join("len.dcm"), vec![DataElement::new(tags::TEXT_VALUE, VR::UT, PrimitiveValue::from("abcd"))]);
    let mut b = std::fs::read(&p).unwrap();
    let at = after(&b, &[0x40, 0x00, 0x60, 0xA1, b'U', b'T', 0, 0]);
    b[at..at + 4].copy_from_slice(&0xFFFF_FF00u32.to_le_bytes());
    std::fs::write(&p, &b).unwrap();
    let e = rejected(read_headers(&p, &OpenOptions::default()));
    assert!(matches!(&e, VolumeError::DeclaredLengthTooLarge { tag, declared: 0xFFFF_FF00, .. } if tag == "(0040,A160)"), "{e:?}");
    names(&e, &p);
    assert!(matches!(crate::dicom::open_full(&p), Err(VolumeError::DeclaredLengthTooLarge { .. })));
    // A short-form length (2 bytes) past the end of a file cut just after it.
    let small = std::fs::read(data("pydicom/CT_small.dcm")).unwrap();
    let at = after(&small, &[0x10, 0x00, 0x10, 0x00, b'P', b'N']);
    let cut = dir.join("cut.dcm");
    let mut c = small[..at + 2].to_vec();
    c[at..at + 2].copy_from_slice(&0xFFF0u16.to_le_bytes());
    std::fs::write(&cut, &c).unwrap();
    let e = rejected(read_headers(&cut, &OpenOptions::default()));
    assert!(matches!(&e, VolumeError::DeclaredLengthTooLarge { tag, .. } if tag == "(0010,0010)"), "{e:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A minimal DICOM file: preamble, meta group (explicit VR little endian), then `dataset`.
fn tiny_dicom(ts: &str, dataset: &[u8]) -> Vec<u8> {
    let mut ts = ts.as_bytes().to_vec();
    if ts.len() % 2 == 1 {
        ts.push(0);
    }
    let mut b = vec![0u8; 128];
    b.extend_from_slice(b"DICM");
    b.extend_from_slice(&[0x02, 0x00, 0x00, 0x00, b'U', b'L', 4, 0]);
    b.extend_from_slice(&(8 + ts.len() as u32).to_le_bytes());
    b.extend_from_slice(&[0x02, 0x00, 0x10, 0x00, b'U', b'I']);
    b.extend_from_slice(&(ts.len() as u16).to_le_bytes());
    b.extend_from_slice(&ts);
    b.extend_from_slice(dataset);
    b
}

#[test]
fn deep_sequences_and_long_fragments_are_refused_by_the_prescan() {
    let dir = scratch("prescan");
    // 40 nested undefined-length sequences (explicit VR little endian).
    let mut ds = Vec::new();
    for _ in 0..40 {
        ds.extend_from_slice(&[0x08, 0x00, 0x15, 0x11, b'S', b'Q', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF]);
        ds.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
    }
    let p = dir.join("deep.dcm");
    std::fs::write(&p, tiny_dicom("1.2.840.10008.1.2.1", &ds)).unwrap();
    let e = rejected(read_headers(&p, &OpenOptions::default()));
    assert!(matches!(&e, VolumeError::Corrupt { reason, .. } if reason.contains("nested")), "{e:?}");
    // Encapsulated pixel data whose fragment declares 1 GiB.
    let mut ds = vec![0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF];
    ds.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0, 0, 0, 0]);
    ds.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0]);
    ds.extend_from_slice(&(1u32 << 30).to_le_bytes());
    ds.extend_from_slice(&[1, 2, 3, 4]);
    let p = dir.join("fragment.dcm");
    std::fs::write(&p, tiny_dicom("1.2.840.10008.1.2.4.51", &ds)).unwrap();
    let e = rejected(read_headers(&p, &OpenOptions::default()));
    assert!(matches!(e, VolumeError::Truncated { what: "pixel data", expected: 1073741824, found: 4, .. }), "{e:?}");
    // A stray item delimiter at the top level (dicom-parser reads on past it), then a huge
    // element; and an item tag at element level with a huge length.
    for (name, first) in [("stray.dcm", [0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0]), ("item.dcm", [0xFE, 0xFF, 0x00, 0xE0, 0, 0, 0, 0x40])] {
        let mut ds = first.to_vec();
        ds.extend_from_slice(&[0x10, 0x00, 0x10, 0x00, b'U', b'T', 0, 0]);
        ds.extend_from_slice(&0x4000_0000u32.to_le_bytes());
        let p = dir.join(name);
        std::fs::write(&p, tiny_dicom("1.2.840.10008.1.2.1", &ds)).unwrap();
        let e = rejected(read_headers(&p, &OpenOptions::default()));
        assert!(matches!(e, VolumeError::DeclaredLengthTooLarge { .. }), "{name}: {e:?}");
    }
    // A file meta group element longer than the file.
    let mut b = tiny_dicom("1.2.840.10008.1.2.1", &[]);
    b.extend_from_slice(&[0x02, 0x00, 0x12, 0x00, b'U', b'N', 0, 0]);
    b.extend_from_slice(&0x8000_0000u32.to_le_bytes());
    let n = (b.len() - 144) as u32;
    b[140..144].copy_from_slice(&n.to_le_bytes());
    let p = dir.join("meta.dcm");
    std::fs::write(&p, &b).unwrap();
    let e = rejected(read_headers(&p, &OpenOptions::default()));
    assert!(matches!(&e, VolumeError::DeclaredLengthTooLarge { tag, .. } if tag == "(0002,0012)"), "{e:?}");
    // Implicit VR: an element with a 4-byte length past the end.
    let mut ds = vec![0x10, 0x00, 0x10, 0x00];
    ds.extend_from_slice(&0x7000_0000u32.to_le_bytes());
    let p = dir.join("implicit.dcm");
    std::fs::write(&p, tiny_dicom("1.2.840.10008.1.2", &ds)).unwrap();
    let e = rejected(read_headers(&p, &OpenOptions::default()));
    assert!(matches!(e, VolumeError::DeclaredLengthTooLarge { declared: 0x7000_0000, .. }), "{e:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn huge_orientation_or_positions_give_a_warning_not_a_panic() {
    let dir = scratch("iop");
    patched_ct(&dir.join("a.dcm"), vec![ds(tags::IMAGE_ORIENTATION_PATIENT, &[1e300, 0.0, 0.0, 0.0, 1e300, 0.0])]);
    patched_ct(
        &dir.join("b.dcm"),
        vec![
            ds(tags::IMAGE_ORIENTATION_PATIENT, &[1e300, 0.0, 0.0, 0.0, 1e300, 0.0]),
            ds(tags::IMAGE_POSITION_PATIENT, &[0.0, 0.0, 1e300]),
            DataElement::new(tags::SOP_INSTANCE_UID, VR::UI, PrimitiveValue::from("1.2.3.4.5")),
        ],
    );
    let l = open(&dir, &OpenOptions::default()).unwrap();
    assert_eq!(l.volume.dims[2], 2);
    assert!(l.volume.warnings.iter().any(|w| w.code == WarningCode::NoSpatialTransform), "{:?}", l.volume.warnings);
    assert!(l.volume.affine.0.iter().flatten().all(|v| v.is_finite()), "{:?}", l.volume.affine);
    // Positions far apart but finite, with a valid orientation.
    let dir2 = scratch("ipp");
    patched_ct(&dir2.join("a.dcm"), vec![ds(tags::IMAGE_POSITION_PATIENT, &[0.0, 0.0, 1.7e308])]);
    patched_ct(
        &dir2.join("b.dcm"),
        vec![
            ds(tags::IMAGE_POSITION_PATIENT, &[0.0, 0.0, -1.7e308]),
            DataElement::new(tags::SOP_INSTANCE_UID, VR::UI, PrimitiveValue::from("1.2.3.4.6")),
        ],
    );
    let l = open(&dir2, &OpenOptions::default()).unwrap();
    assert!(l.volume.warnings.iter().any(|w| w.code == WarningCode::NoSpatialTransform && w.message.contains("a.dcm")));
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(&dir2).unwrap();
}

#[test]
fn every_left_out_file_is_named_in_the_warnings() {
    let dir = scratch("named");
    let small = std::fs::read(data("pydicom/CT_small.dcm")).unwrap();
    std::fs::write(dir.join("slice.dcm"), &small).unwrap();
    // A copy cut inside its pixel data: the complete file is kept, the cut one named.
    std::fs::write(dir.join("slice_copy_cut.dcm"), &small[..small.len() - 1000]).unwrap();
    // A second copy, complete: a duplicate position, named with the file kept.
    std::fs::write(dir.join("slice_copy.dcm"), &small).unwrap();
    std::fs::write(dir.join("notes.txt"), b"not DICOM").unwrap();
    // Another series.
    patched_ct(&dir.join("other.dcm"), vec![DataElement::new(tags::SERIES_INSTANCE_UID, VR::UI, PrimitiveValue::from("1.9.99"))]);
    // (Its UID sorts after CT_small's, so the default choice is CT_small's series.)
    let l = open(&dir, &OpenOptions::default()).unwrap();
    let text: Vec<String> = l.volume.warnings.iter().map(|w| format!("{:?}: {}", w.code, w.message)).collect();
    let has = |code: WarningCode, needle: &str| l.volume.warnings.iter().any(|w| w.code == code && w.message.contains(needle));
    assert!(has(WarningCode::SkippedFiles, "slice_copy_cut.dcm"), "{text:#?}");
    assert!(has(WarningCode::SkippedFiles, "notes.txt"), "{text:#?}");
    assert!(has(WarningCode::DuplicatePositions, "slice_copy.dcm"), "{text:#?}");
    assert!(has(WarningCode::OtherSeries, "other.dcm"), "{text:#?}");
    assert_eq!(l.scan.rejected, 1);
    assert_eq!(l.volume.dims[2], 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[cfg(unix)]
#[test]
fn symlink_cycles_are_detected_and_the_walk_cancels() {
    let dir = scratch("cycle");
    std::fs::create_dir(dir.join("sub")).unwrap();
    std::fs::copy(data("pydicom/CT_small.dcm"), dir.join("sub/ct.dcm")).unwrap();
    std::os::unix::fs::symlink(&dir, dir.join("sub/loop")).unwrap();
    std::os::unix::fs::symlink(dir.join("sub/ct.dcm"), dir.join("link.dcm")).unwrap();
    let l = open(&dir, &OpenOptions::default()).unwrap();
    assert_eq!(l.volume.dims[2], 1);
    let has = |needle: &str| l.volume.warnings.iter().any(|w| w.code == WarningCode::SkippedFiles && w.message.contains(needle));
    assert!(has("loop") && has("link.dcm"), "{:?}", l.volume.warnings);
    let o = OpenOptions::default();
    o.cancel.cancel();
    assert!(open(&dir, &o).unwrap_err().is_cancelled());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A NIfTI-1 header (348 bytes + 4 extension bytes) for int16 data of `dims`.
fn nifti1(dims: [i16; 3], vox_offset: f32) -> Vec<u8> {
    let mut h = vec![0u8; 352];
    h[0..4].copy_from_slice(&348i32.to_le_bytes());
    h[40..42].copy_from_slice(&3i16.to_le_bytes());
    for (a, d) in dims.iter().enumerate() {
        h[42 + 2 * a..44 + 2 * a].copy_from_slice(&d.to_le_bytes());
    }
    h[70..72].copy_from_slice(&4i16.to_le_bytes());
    h[72..74].copy_from_slice(&16i16.to_le_bytes());
    h[108..112].copy_from_slice(&vox_offset.to_le_bytes());
    h[344..348].copy_from_slice(b"n+1\0");
    h
}

/// A NIfTI-2 header (540 bytes + 4) for int16 data of `dims`.
fn nifti2(dims: [i64; 3], vox_offset: i64) -> Vec<u8> {
    let mut h = vec![0u8; 544];
    h[0..4].copy_from_slice(&540i32.to_le_bytes());
    h[4..8].copy_from_slice(b"n+2\0");
    h[12..14].copy_from_slice(&4i16.to_le_bytes());
    h[14..16].copy_from_slice(&16i16.to_le_bytes());
    h[16..24].copy_from_slice(&3i64.to_le_bytes());
    for (a, d) in dims.iter().enumerate() {
        h[24 + 8 * a..32 + 8 * a].copy_from_slice(&d.to_le_bytes());
    }
    h[168..176].copy_from_slice(&vox_offset.to_le_bytes());
    h
}

#[test]
fn hostile_nifti_headers_are_refused_before_allocating() {
    let dir = scratch("nifti");
    let big = OpenOptions { max_voxels: u64::MAX, ..Default::default() };
    let check = |name: &str, bytes: Vec<u8>, o: &OpenOptions, ok: fn(&VolumeError) -> bool| {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        let e = open(&p, o).unwrap_err();
        assert!(ok(&e), "{name}: {e:?}");
        names(&e, &p);
    };
    // NIfTI-2: 2^40 per axis overflows the voxel count.
    check(
        "overflow.nii",
        nifti2([1 << 40, 1 << 40, 1 << 40], 544),
        &big,
        |e| matches!(e, VolumeError::BadNiftiHeader { reason, .. } if reason.contains("overflow")),
    );
    // A voxel count that fits, but bytes plus offset overflow.
    check("overflow_bytes.nii", nifti2([1 << 31, 1 << 31, 1 << 1], i64::MAX), &big, |e| matches!(e, VolumeError::BadNiftiHeader { .. }));
    // vox_offset NaN, infinite, huge.
    for (name, off) in [("nan.nii", f32::NAN), ("inf.nii", f32::INFINITY), ("huge.nii", 1e30)] {
        check(
            name,
            nifti1([2, 2, 2], off),
            &big,
            |e| matches!(e, VolumeError::BadNiftiHeader { reason, .. } if reason.contains("vox_offset")),
        );
    }
    // A vox_offset past the end of the file.
    check("far.nii", nifti1([2, 2, 2], 1e9), &big, |e| matches!(e, VolumeError::Truncated { .. }));
    // 4 GiB declared in a 352-byte file: refused by length, before any allocation.
    check(
        "declared.nii",
        nifti1([2048, 2048, 512], 352.0),
        &big,
        |e| matches!(e, VolumeError::Truncated { expected, found: 352, .. } if *expected == 352 + 2 * 2048 * 2048 * 512),
    );
    // The same, gzip-compressed: a small stream cannot inflate to 4 GiB.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &nifti1([2048, 2048, 512], 352.0)).unwrap();
    check(
        "declared.nii.gz",
        gz.finish().unwrap(),
        &big,
        |e| matches!(e, VolumeError::Corrupt { reason, .. } if reason.contains("cannot hold")),
    );
    // 4-D with a volume count that overflows.
    let mut h = nifti2([2, 2, 2], 544);
    h[16..24].copy_from_slice(&7i64.to_le_bytes());
    for a in 4..8 {
        h[16 + 8 * a..24 + 8 * a].copy_from_slice(&(1i64 << 40).to_le_bytes());
    }
    check("volumes.nii", h, &big, |e| matches!(e, VolumeError::BadNiftiHeader { reason, .. } if reason.contains("volume count")));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn every_real_dicom_file_passes_the_prescan_and_is_understood() {
    let mut files = Vec::new();
    for dir in [
        "generated",
        "pydicom",
        "pydicom-data",
        "pydicom/head_ct_series_CT2",
        "totalsegmentator/example_ct_dicom",
        "generated/dicomdir_head_ct2",
    ] {
        for e in std::fs::read_dir(data(dir)).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            if p.is_file() && !name.starts_with('.') && !name.ends_with(".md") {
                files.push(p);
            }
        }
    }
    assert!(files.len() > 50, "{}", files.len());
    for p in files {
        let len = std::fs::metadata(&p).unwrap().len();
        let r = crate::prescan::walk(&p, len).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        // bad_sequence.dcm is damaged on purpose (pydicom's test data).
        if !p.ends_with("bad_sequence.dcm") {
            assert!(r.understood, "{}: {r:?}", p.display());
        }
        if !p.ends_with("DICOMDIR") {
            assert!(r.pixel_data.is_some(), "{}: {r:?}", p.display());
        }
    }
}

#[test]
fn non_finite_or_degenerate_transforms_never_panic_downstream() {
    let dir = scratch("affine");
    // NIfTI: sform with NaN, qform with NaN quaternion; the volume still opens, with a warning,
    // and reorients without panicking.
    let mut h = nifti1([2, 3, 4], 352.0);
    h[254..256].copy_from_slice(&1i16.to_le_bytes()); // sform_code
    h[252..254].copy_from_slice(&1i16.to_le_bytes()); // qform_code
    h[256..260].copy_from_slice(&f32::NAN.to_le_bytes()); // quatern_b
    for k in 0..12 {
        h[280 + 4 * k..284 + 4 * k].copy_from_slice(&f32::NAN.to_le_bytes());
    }
    h.extend(std::iter::repeat_n(0u8, 2 * 2 * 3 * 4));
    let p = dir.join("nan_sform.nii");
    std::fs::write(&p, &h).unwrap();
    let v = open(&p, &OpenOptions::default()).unwrap().volume;
    assert!(v.warnings.iter().any(|w| w.code == WarningCode::NoSpatialTransform && w.message.contains("NaN")), "{:?}", v.warnings);
    assert!(v.affine.0.iter().flatten().all(|x| x.is_finite()));
    assert_eq!(v.into_canonical().voxels.len(), 24);
    // An affine made only of NaN still gives a permutation, never an out-of-range index.
    let nan = crate::Affine::from_columns([[f64::NAN; 3]; 3], [0.0; 3]);
    let mut seen: Vec<usize> = nan.axis_assignment().iter().map(|a| a.0).collect();
    seen.sort();
    assert_eq!(seen, [0, 1, 2]);
    // DICOM: PixelSpacing 0 (a singular affine) is refused, naming the attribute.
    let p = patched_ct(&dir.join("zero_spacing.dcm"), vec![ds(tags::PIXEL_SPACING, &[0.0, 0.0])]);
    let e = open(&p, &OpenOptions::default()).unwrap_err();
    assert!(matches!(&e, VolumeError::BadDicomHeader { reason, .. } if reason.contains("PixelSpacing")), "{e:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}
