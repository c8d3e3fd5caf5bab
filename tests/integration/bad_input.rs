//! A corrupt-input corpus, made at test time from the real files: every bad input gives its
//! own named error that names the file, through the library and through the CLI (exit 1, one
//! line on stderr), and never a panic.

use std::path::{Path, PathBuf};
use std::process::Command;

use radbridge_tests::*;
use radbridge_volume::{self as volume, OpenOptions, VolumeError};

struct Corpus {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

fn write(p: &Path, bytes: &[u8]) -> PathBuf {
    std::fs::write(p, bytes).unwrap();
    p.to_path_buf()
}

fn corpus() -> Corpus {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let uncr = std::fs::read(data("pydicom-data/693_UNCR.dcm")).unwrap();
    let j2k = std::fs::read(data("pydicom-data/693_J2KR.dcm")).unwrap();
    let small = std::fs::read(data("pydicom/CT_small.dcm")).unwrap();
    let chest_gz = std::fs::read(data("totalsegmentator/chest_ct.nii.gz")).unwrap();
    let mut chest = Vec::new();
    std::io::Read::read_to_end(&mut flate2_reader(&chest_gz), &mut chest).unwrap();

    write(&root.join("empty.dcm"), b"");
    // Deterministic "random" bytes (xorshift).
    let mut x: u64 = 0x9E3779B97F4A7C15;
    let noise: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    write(&root.join("random.dcm"), &noise);
    write(&root.join("truncated.dcm"), &uncr[..uncr.len() / 2]);
    write(&root.join("truncated_j2k.dcm"), &j2k[..j2k.len() * 6 / 10]);
    // Header only: cut just before the Pixel Data element (7FE0,0010).
    let pd = small.windows(4).rposition(|w| w == [0xE0, 0x7F, 0x10, 0x00]).expect("pixel data tag");
    write(&root.join("no_pixels.dcm"), &small[..pd]);
    // DICOM magic overwritten.
    let mut bad_magic = small.clone();
    bad_magic[128..132].copy_from_slice(b"XXXX");
    write(&root.join("bad_magic.dcm"), &bad_magic);
    // NIfTI: wrong sizeof_hdr, wrong magic, cut voxel data, cut gzip, unsupported datatype.
    let mut n = chest.clone();
    n[0..4].copy_from_slice(&123i32.to_le_bytes());
    write(&root.join("bad_sizeof.nii"), &n);
    let mut n = chest.clone();
    n[344..348].copy_from_slice(b"abc\0");
    write(&root.join("bad_magic.nii"), &n);
    write(&root.join("truncated.nii"), &chest[..chest.len() / 3]);
    write(&root.join("truncated.nii.gz"), &chest_gz[..chest_gz.len() / 2]);
    let mut n = chest.clone();
    n[70..72].copy_from_slice(&32i16.to_le_bytes()); // complex64
    write(&root.join("complex.nii"), &n);
    write(&root.join("short.nii"), &chest[..100]);
    let junk = root.join("junk_folder");
    std::fs::create_dir(&junk).unwrap();
    write(&junk.join("notes.txt"), b"not an image");
    write(&junk.join("data.bin"), &noise[..512]);
    Corpus { _dir: dir, root }
}

fn flate2_reader(b: &[u8]) -> impl std::io::Read + '_ {
    radbridge_tests::gunzip(b)
}

fn open(p: &Path) -> VolumeError {
    match volume::open(p, &OpenOptions::default()) {
        Ok(l) => panic!("{} loaded ({:?}) but should fail", p.display(), l.volume.dims),
        Err(e) => e,
    }
}

#[test]
fn each_bad_file_gets_its_named_error() {
    let c = corpus();
    let r = &c.root;
    type Check = fn(&VolumeError) -> bool;
    let cases: Vec<(&str, Check)> = vec![
        ("empty.dcm", |e| matches!(e, VolumeError::EmptyFile { .. })),
        ("random.dcm", |e| matches!(e, VolumeError::NotDicom { .. })),
        ("truncated.dcm", |e| matches!(e, VolumeError::Corrupt { .. } | VolumeError::Decode { .. } | VolumeError::Truncated { .. })),
        ("truncated_j2k.dcm", |e| matches!(e, VolumeError::Corrupt { .. } | VolumeError::Decode { .. } | VolumeError::Truncated { .. })),
        ("no_pixels.dcm", |e| matches!(e, VolumeError::MissingPixelData { .. })),
        ("bad_magic.dcm", |e| matches!(e, VolumeError::NotDicom { .. })),
        ("bad_sizeof.nii", |e| matches!(e, VolumeError::NotNifti { .. })),
        ("bad_magic.nii", |e| matches!(e, VolumeError::NotNifti { .. })),
        ("truncated.nii", |e| matches!(e, VolumeError::Truncated { .. })),
        ("truncated.nii.gz", |e| matches!(e, VolumeError::Corrupt { .. })),
        ("complex.nii", |e| matches!(e, VolumeError::BadNiftiHeader { .. })),
        ("short.nii", |e| matches!(e, VolumeError::Truncated { .. })),
        ("junk_folder", |e| matches!(e, VolumeError::NoImages { scanned: 2, skipped: 2, .. })),
        ("does_not_exist.nii.gz", |e| matches!(e, VolumeError::NotFound { .. })),
    ];
    for (name, ok) in cases {
        let e = open(&r.join(name));
        assert!(ok(&e), "{name}: wrong error kind: {e:?}");
        assert!(e.to_string().contains(name), "{name}: message does not name the file: {e}");
    }
}

#[test]
fn wrong_modality_is_refused_unless_asked() {
    let p = data("pydicom-data/emri_small.dcm");
    let e = open(&p);
    assert!(matches!(&e, VolumeError::WrongModality { modality, .. } if modality == "MR"), "{e:?}");
    assert!(e.to_string().contains("emri_small.dcm"));
    let v = volume::open(&p, &OpenOptions { any_modality: true, ..Default::default() }).unwrap().volume;
    assert_eq!(v.dims, [64, 64, 10]);
    assert!(v.warnings.iter().any(|w| w.message.contains("not CT")));
}

#[test]
fn too_large_volumes_are_refused_before_decoding() {
    let o = OpenOptions { max_voxels: 1000, ..Default::default() };
    for rel in ["totalsegmentator/chest_ct.nii.gz", "totalsegmentator/example_ct_dicom"] {
        let e = volume::open(data(rel), &o).unwrap_err();
        assert!(matches!(e, VolumeError::TooLarge { .. }), "{rel}: {e:?}");
    }
}

#[test]
fn cli_gives_one_line_errors_and_exit_code_1() {
    let c = corpus();
    for name in
        ["empty.dcm", "random.dcm", "truncated.dcm", "no_pixels.dcm", "bad_magic.nii", "truncated.nii.gz", "complex.nii", "junk_folder"]
    {
        let p = c.root.join(name);
        for args in
            [vec!["inspect"], vec!["convert", "--output", "/dev/null"], vec!["preprocess", "--model", "brgsa", "--output", "/dev/null"]]
        {
            let out = Command::new(bin()).args(&args[..1]).arg(&p).args(&args[1..]).output().unwrap();
            assert_eq!(out.status.code(), Some(1), "{name} {args:?}");
            let err = String::from_utf8_lossy(&out.stderr);
            let lines: Vec<&str> = err.lines().collect();
            assert_eq!(lines.len(), 1, "{name}: expected one line, got {err}");
            assert!(lines[0].starts_with("error: ") && lines[0].contains(name), "{name}: {err}");
            assert!(!err.contains("panicked"), "{name}: {err}");
        }
    }
}

#[test]
fn a_bad_file_in_a_folder_is_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(data("pydicom/head_ct_series_CT2")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
    }
    std::fs::write(dir.path().join("README.txt"), b"scan notes").unwrap();
    std::fs::write(dir.path().join("empty"), b"").unwrap();
    let l = volume::open(dir.path(), &OpenOptions::default()).unwrap();
    assert_eq!(l.volume.dims[2], 4);
    assert_eq!(l.scan.non_dicom_skipped, 2);
    assert!(l.volume.warnings.iter().any(|w| w.message.contains("2 files in the folder were not DICOM")));
}

#[test]
fn a_truncated_copy_of_a_slice_is_named_by_the_library_and_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let mut files: Vec<PathBuf> = std::fs::read_dir(data("pydicom/head_ct_series_CT2")).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    for f in &files {
        std::fs::copy(f, dir.path().join(f.file_name().unwrap())).unwrap();
    }
    // A copy of one slice cut inside its pixel data, and a complete second copy of another.
    let bytes = std::fs::read(&files[1]).unwrap();
    std::fs::write(dir.path().join("cut_copy"), &bytes[..bytes.len() - 100]).unwrap();
    std::fs::copy(&files[2], dir.path().join("zz_duplicate")).unwrap();
    std::fs::write(dir.path().join("README.txt"), b"scan notes").unwrap();
    let l = volume::open(dir.path(), &OpenOptions::default()).unwrap();
    assert_eq!(l.volume.dims[2], 4, "the complete slices are all kept");
    let text: Vec<&str> = l.volume.warnings.iter().map(|w| w.message.as_str()).collect();
    for name in ["cut_copy", "zz_duplicate", "README.txt"] {
        assert!(text.iter().any(|m| m.contains(name)), "{name} not named: {text:#?}");
    }
    let out = Command::new(bin()).arg("inspect").arg(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for name in ["cut_copy", "zz_duplicate", "README.txt"] {
        assert!(stdout.contains(name), "inspect does not name {name}: {stdout}");
    }
    let out = Command::new(bin()).arg("inspect").arg("--json").arg(dir.path()).output().unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let skipped = json["skipped_files"].as_array().unwrap();
    assert!(skipped.iter().any(|s| s["path"].as_str().unwrap().ends_with("cut_copy")), "{skipped:?}");
}
