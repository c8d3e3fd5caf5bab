//! Fuzz targets: every reader Radbridge points at a file it did not write.
//!
//! Each target takes raw bytes, turns them into the file (or folder) the reader expects, and
//! calls the same library entry points the CLI and the app call. A target passes when the
//! reader returns — `Ok` or a typed error — without a panic, an abort, a hang, or an
//! allocation over [`MEMORY_CAP`] (the [`CappedAllocator`] turns such an allocation into an
//! abort, so the fuzzer records it as a crash).
//!
//! The same functions run three ways (tests/fuzz/README.md):
//! - `cargo test -p radbridge-fuzz`: replays `corpus/<target>/*` and `regressions/<target>/*`,
//!   then a few thousand inputs that bolero generates as edits of the corpus files;
//! - `cargo afl build --features afl` + `afl-fuzz`: the long runs (`src/bin/fuzz_target.rs`);
//! - `fuzz-target <name> <file>` without AFL: one input, to reproduce a crash.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use radbridge_volume::OpenOptions;

/// Live heap a fuzz process may hold: the "no input over 1 GiB".
pub const MEMORY_CAP: usize = 1 << 30;

/// A global allocator that refuses (returns null, which Rust turns into an abort with
/// "memory allocation of N bytes failed") any allocation that would take the live heap over
/// [`MEMORY_CAP`]. Install it with `#[global_allocator]` in every fuzz binary.
pub struct CappedAllocator;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

impl CappedAllocator {
    fn reserve(size: usize) -> bool {
        let before = LIVE.fetch_add(size, Ordering::Relaxed);
        let after = before.saturating_add(size);
        if after > MEMORY_CAP {
            LIVE.fetch_sub(size, Ordering::Relaxed);
            return false;
        }
        PEAK.fetch_max(after, Ordering::Relaxed);
        true
    }

    /// Highest live heap seen so far (bytes).
    pub fn peak() -> usize {
        PEAK.load(Ordering::Relaxed)
    }
}

// SAFETY: every method forwards to the system allocator with the caller's layout; the counter
// only decides whether to forward.
unsafe impl GlobalAlloc for CappedAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !Self::reserve(layout.size()) {
            return std::ptr::null_mut();
        }
        let p = System.alloc(layout);
        if p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !Self::reserve(layout.size()) {
            return std::ptr::null_mut();
        }
        let p = System.alloc_zeroed(layout);
        if p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old = layout.size();
        if new_size > old && !Self::reserve(new_size - old) {
            return std::ptr::null_mut();
        }
        let p = System.realloc(ptr, layout, new_size);
        if p.is_null() {
            if new_size > old {
                LIVE.fetch_sub(new_size - old, Ordering::Relaxed);
            }
        } else if new_size < old {
            LIVE.fetch_sub(old - new_size, Ordering::Relaxed);
        }
        p
    }
}

/// A fuzz target: bytes in, whether the reader accepted them.
pub type Target = fn(&[u8]) -> bool;

/// The targets, by the name used for corpus folders and on the command line. Each returns
/// whether the reader accepted the input (the seed corpus must be accepted, so the targets are
/// known to reach past the first checks).
pub const TARGETS: &[(&str, Target)] = &[
    ("dicom_file", dicom_file),
    ("dicom_folder", dicom_folder),
    ("jpeg12", jpeg12),
    ("nifti", nifti),
    ("checkpoint", checkpoint),
    ("model_dir", model_dir),
    ("report_json", report_json),
    ("feedback_db", feedback_db),
];

/// The target called `name`.
pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

/// Separates the files of a multi-file input (a DICOM folder, a model directory).
pub const PART_SEPARATOR: &[u8] = b"\n--radbridge-fuzz-part--\n";

/// Split a multi-file input at [`PART_SEPARATOR`].
pub fn parts(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    while let Some(i) = rest.windows(PART_SEPARATOR.len()).position(|w| w == PART_SEPARATOR) {
        out.push(&rest[..i]);
        rest = &rest[i + PART_SEPARATOR.len()..];
    }
    out.push(rest);
    out
}

/// Join files into one multi-file input (the inverse of [`parts`]).
pub fn join_parts(files: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, f) in files.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(PART_SEPARATOR);
        }
        out.extend_from_slice(f);
    }
    out
}

/// Limits for fuzzing: the app's defaults would let a valid 512³ volume through, which is
/// correct but slow; a smaller voxel limit keeps each execution short without hiding a bug
/// (the check that refuses it is the code under test).
fn options() -> OpenOptions {
    OpenOptions { max_voxels: 1 << 24, ..OpenOptions::default() }
}

fn tempdir() -> tempfile::TempDir {
    // A fuzz run cannot go on without scratch space; this is the harness, not the code under test.
    tempfile::tempdir().expect("a temporary folder for the fuzz input")
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).expect("write the fuzz input to the temporary folder");
}

/// One DICOM file, opened as the app opens a dropped file.
pub fn dicom_file(data: &[u8]) -> bool {
    let dir = tempdir();
    let p = dir.path().join("input.dcm");
    write(&p, data);
    radbridge_volume::open(&p, &options()).is_ok()
}

/// A DICOM folder: the parts are files in one folder (the series scan, sorting and stacking).
pub fn dicom_folder(data: &[u8]) -> bool {
    let dir = tempdir();
    let root = dir.path().join("study");
    std::fs::create_dir(&root).expect("create the study folder");
    for (i, part) in parts(data).iter().take(64).enumerate() {
        write(&root.join(format!("IM{i:04}")), part);
    }
    radbridge_volume::open(&root, &options()).is_ok()
}

/// The 12-bit JPEG (process 4) decoder on a raw JPEG stream.
pub fn jpeg12(data: &[u8]) -> bool {
    radbridge_volume::jpeg12::decode(data).is_ok()
}

/// A NIfTI-1/-2 file; gzip-compressed when it starts with the gzip magic.
pub fn nifti(data: &[u8]) -> bool {
    let dir = tempdir();
    let name = if data.starts_with(&[0x1f, 0x8b]) { "input.nii.gz" } else { "input.nii" };
    let p = dir.path().join(name);
    write(&p, data);
    radbridge_volume::open(&p, &options()).is_ok()
}

/// Checkpoint import: a PyTorch zip (`PK`), else a safetensors file; then the architecture
/// inference of both models on whatever tensors it held.
pub fn checkpoint(data: &[u8]) -> bool {
    use radbridge_model::checkpoint::{self, Arch, Overrides};
    let dir = tempdir();
    let name = if data.starts_with(b"PK") { "input.pt" } else { "input.safetensors" };
    let p = dir.path().join(name);
    write(&p, data);
    let text_base = serde_json::json!({});
    let _ = checkpoint::import(&p, Arch::Brgsa, &text_base, &Overrides::default());
    let _ = checkpoint::import(&p, Arch::Ctclip, &text_base, &Overrides::default());
    checkpoint::read_tensors(&p).is_ok()
}

/// The template model directory (the tiny CT-CLIP fixture, imported once per process), the
/// small volume the model directory's preprocessing runs on.
struct ModelTemplate {
    _dir: tempfile::TempDir,
    weights: PathBuf,
    vocab: PathBuf,
    volume: radbridge_volume::Volume,
}

fn model_template() -> &'static ModelTemplate {
    static T: OnceLock<ModelTemplate> = OnceLock::new();
    T.get_or_init(|| {
        use radbridge_model::checkpoint::{self, Arch, Overrides};
        let fixture = repo_path("tests/data/models/ctclip_tiny");
        let o = Overrides {
            patch_size: Some(4),
            temporal_patch_size: Some(2),
            heads: Some(2),
            dim_head: Some(8),
            text_max_length: Some(64),
            ..Overrides::default()
        };
        let (tensors, inferred, _) = checkpoint::import(&fixture.join("CT-CLIP_v2.pt"), Arch::Ctclip, &serde_json::json!({}), &o)
            .expect("import the tiny CT-CLIP fixture");
        let dir = tempdir();
        let pkg = radbridge_model::package::create(&dir.path().join("pkg"), "tiny", &tensors, &inferred, &fixture, serde_json::json!({}))
            .expect("write the template model directory");
        let volume = radbridge_volume::open(repo_path("tests/data/nibabel/anatomical.nii"), &OpenOptions::default())
            .expect("open the small NIfTI the preprocessing runs on")
            .volume;
        ModelTemplate { weights: pkg.weights_path(), vocab: pkg.path("vocab.txt"), _dir: dir, volume }
    })
}

/// A path in the repository (the fuzz crate is at tests/fuzz).
pub fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(rel)
}

/// A model directory: parts are model.json, config.json (BERT), bank.json, thresholds.json
/// and the cached text embeddings; the weights and vocabulary are the tiny fixture's. Opens
/// the engine (all validation of the package), preprocesses a small volume with the
/// package's settings, and embeds a typed finding (the text cache path).
pub fn model_dir(data: &[u8]) -> bool {
    let t = model_template();
    let dir = tempdir();
    let pkg = dir.path().join("pkg");
    std::fs::create_dir(&pkg).expect("create the model folder");
    let p = parts(data);
    for (name, bytes) in ["model.json", "config.json", "bank.json", "thresholds.json"].iter().zip(p.iter()) {
        write(&pkg.join(name), bytes);
    }
    std::fs::copy(&t.weights, pkg.join("model.safetensors")).expect("copy the template weights");
    std::fs::copy(&t.vocab, pkg.join("vocab.txt")).expect("copy the template vocabulary");
    // The engine's text cache: <cache>/text-embeddings/<checksum>.json, one folder per process.
    let cache = cache_dir().join("text-embeddings");
    let _ = std::fs::remove_dir_all(&cache);
    if let (Some(bytes), Some(sha)) = (p.get(4), weights_sha(p[0])) {
        std::fs::create_dir_all(&cache).expect("create the cache folder");
        write(&cache.join(format!("{sha}.json")), bytes);
    }
    let device = candle_core::Device::Cpu;
    let Ok(mut engine) = radbridge_model::analysis::Engine::load_with_cache(&pkg, &device, Some(&cache_dir())) else {
        return false;
    };
    let _ = engine.preprocess(&t.volume);
    engine.embed_prompts(&["a small pleural effusion".to_string()]).is_ok()
}

/// This process's text-cache folder (one per process, so parallel fuzzers do not share it).
fn cache_dir() -> PathBuf {
    std::env::temp_dir().join(format!("radbridge-fuzz-cache-{}", std::process::id()))
}

fn weights_sha(model_json: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(model_json).ok()?;
    let s = v.get("weights_sha256")?.as_str()?;
    // Only a plain hex name becomes a file name in the harness.
    s.chars().all(|c| c.is_ascii_hexdigit()).then(|| s.to_string()).filter(|s| !s.is_empty() && s.len() <= 64)
}

/// `radbridge report --from-json`: a diagnosis document (part 0) and a verdicts file (part 1)
/// into all three report formats, de-identified, without key images.
pub fn report_json(data: &[u8]) -> bool {
    use radbridge_report::{self as report, Format, ReportOptions};
    let p = parts(data);
    let Ok(d) = serde_json::from_slice::<radbridge_model::analysis::Diagnosis>(p[0]) else {
        return false;
    };
    let dir = tempdir();
    let verdicts = match p.get(1) {
        Some(v) => {
            let vp = dir.path().join("verdicts.json");
            write(&vp, v);
            match report::read_verdicts(&vp) {
                Ok(v) => Some(v),
                Err(_) => return false,
            }
        }
        None => None,
    };
    let opts = ReportOptions { secret: Some([7; 32]), key_images: false, export_anyway: true, ..ReportOptions::default() };
    let mut ok = true;
    for (format, name) in [(Format::Json, "r.json"), (Format::Pdf, "r.pdf"), (Format::Sr, "r.dcm")] {
        ok &= report::export(&d, verdicts.as_deref(), format, &dir.path().join(name), &opts).is_ok();
    }
    ok
}

/// Opening a feedback database file and reading what the CLI and the app read first.
pub fn feedback_db(data: &[u8]) -> bool {
    let dir = tempdir();
    let p = dir.path().join("feedback.sqlite");
    write(&p, data);
    let Ok(store) = radbridge_store::Store::open(&p) else {
        return false;
    };
    let Ok(runs) = store.list_runs(None) else {
        return false;
    };
    for r in runs.iter().take(20) {
        let _ = store.run(r.id);
        let _ = store.verdicts(r.id);
        let _ = store.events(r.id);
    }
    store.audit_entries().is_ok() && !runs.is_empty()
}
