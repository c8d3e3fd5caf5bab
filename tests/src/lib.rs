//! Shared helpers for the integration tests: where the test data and the CLI binary are, the
//! committed Python reference values, world-space comparison of a loaded volume with them, and
//! a real Orthanc for the PACS tests ([`orthanc`]).

pub mod orthanc;

use std::path::{Path, PathBuf};

use radbridge_volume::{Affine, Volume};
use serde_json::Value;

/// `tests/data/<rel>`.
pub fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data").join(rel)
}

/// The `radbridge` CLI built in the same target directory as this test binary
/// (`make test` builds it first).
pub fn bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test exe path");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let p = dir.join(format!("radbridge{}", std::env::consts::EXE_SUFFIX));
    assert!(p.exists(), "{} not found: build it first (cargo build -p radbridge-cli)", p.display());
    p
}

/// The committed reference values from `tests/reference/make_reference.py`.
pub fn volumes_reference() -> serde_json::Map<String, Value> {
    let text = std::fs::read_to_string(data("reference/volumes.json")).expect("reference/volumes.json");
    match serde_json::from_str::<Value>(&text).expect("valid JSON") {
        Value::Object(m) => m,
        _ => panic!("volumes.json is not an object"),
    }
}

pub fn json_file(rel: &str) -> Value {
    let text = std::fs::read_to_string(data(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    serde_json::from_str(&text).expect("valid JSON")
}

pub fn f64s(v: &Value) -> Vec<f64> {
    v.as_array().expect("array").iter().map(|x| x.as_f64().expect("number")).collect()
}

pub fn usizes(v: &Value) -> Vec<usize> {
    v.as_array().expect("array").iter().map(|x| x.as_u64().expect("integer") as usize).collect()
}

pub fn affine_of(v: &Value) -> Affine {
    let rows = v.as_array().expect("affine rows");
    let mut m = [[0.0; 4]; 4];
    for (r, row) in rows.iter().enumerate() {
        for (c, x) in f64s(row).iter().enumerate() {
            m[r][c] = *x;
        }
    }
    Affine(m)
}

/// For each reference sample (flat index into the reference grid), find the voxel of `vol`
/// at the same world position and return (reference value, our value) pairs. Panics if a
/// sample does not land on one of our voxel centres (geometry disagreement).
pub fn world_pairs(vol: &Volume, shape: &[usize], ref_affine: &Affine, indices: &[usize], values: &[f64]) -> Vec<(f64, f64)> {
    let inv = vol.affine.inverse().expect("invertible affine");
    let (nx, ny) = (shape[0], shape[1]);
    indices
        .iter()
        .zip(values)
        .map(|(&flat, &rv)| {
            let ijk = [(flat % nx) as f64, ((flat / nx) % ny) as f64, (flat / (nx * ny)) as f64];
            let w = ref_affine.apply(ijk);
            let o = inv.apply(w);
            let r = o.map(|x| x.round());
            for a in 0..3 {
                assert!((o[a] - r[a]).abs() < 1e-2, "sample {flat} maps to non-integer index {o:?}");
                assert!(r[a] >= 0.0 && (r[a] as usize) < vol.dims[a], "sample {flat} maps outside: {o:?} dims {:?}", vol.dims);
            }
            let idx = vol.index(r[0] as usize, r[1] as usize, r[2] as usize);
            (rv, vol.voxels.get_f32(idx) as f64)
        })
        .collect()
}

/// Mean of the voxel values as f64.
pub fn mean(vol: &Volume) -> f64 {
    let n = vol.voxel_count();
    (0..n).map(|i| vol.voxels.get_f32(i) as f64).sum::<f64>() / n as f64
}

/// A gzip decoder over bytes (for tests that need the raw NIfTI).
pub fn gunzip(b: &[u8]) -> impl std::io::Read + '_ {
    flate2::read::MultiGzDecoder::new(b)
}

/// The Python interpreter of the test venv (`make test` sets `RADBRIDGE_TEST_PYTHON`; it has
/// the packages of `tests/reference/requirements-test.txt`), else `target/testvenv/bin/python`.
pub fn test_python() -> PathBuf {
    if let Some(p) = std::env::var_os("RADBRIDGE_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("repo root");
    let p = root.join("target/testvenv/bin/python");
    assert!(p.exists(), "{} not found: run `make setup-test` (or set RADBRIDGE_TEST_PYTHON)", p.display());
    p
}

/// Import one of the tiny random-weight fixtures (`tests/data/models/{brgsa,ctclip}_tiny`, made by
/// `tests/reference/model_reference.py`) into `<dir>/<arch>` with `radbridge import-checkpoint`,
/// passing the dimensions the weights cannot tell; returns the model directory.
pub fn import_tiny(arch: &str, dir: &Path) -> PathBuf {
    let out = dir.join(arch);
    let (fixture, ckpt, extra): (&str, &str, &[&str]) = match arch {
        "brgsa" => ("brgsa_tiny", "best.ckpt", &["--vision-heads", "4", "--text-max-length", "24"]),
        "ctclip" => (
            "ctclip_tiny",
            "CT-CLIP_v2.pt",
            &["--patch-size", "4", "--temporal-patch-size", "2", "--heads", "2", "--dim-head", "8", "--text-max-length", "64"],
        ),
        other => panic!("no tiny fixture for '{other}'"),
    };
    let st = std::process::Command::new(bin())
        .args(["import-checkpoint", "--arch", arch, "--checkpoint"])
        .arg(data(&format!("models/{fixture}/{ckpt}")))
        .arg("--text-dir")
        .arg(data(&format!("models/{fixture}")))
        .arg("--output")
        .arg(&out)
        .args(extra)
        .output()
        .expect("run radbridge import-checkpoint");
    assert!(st.status.success(), "import-checkpoint {arch}: {}", String::from_utf8_lossy(&st.stderr));
    out
}
