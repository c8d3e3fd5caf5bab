//! `radbridge synth`: a synthetic chest-CT corpus for training and testing the demo model.
//!
//! Each case is a small chest CT (128 × 128 × 64 voxels at 2.8 × 2.8 × 5 mm, int16 HU, LPS),
//! either procedural (body wall, lungs with vessels and airways, heart, aorta, spine, ribs,
//! upper abdomen) or the real chest CT of the test data resampled to the same kind of grid,
//! with a random subset of the CT-RATE / CT-RATE-LT abnormalities drawn into it the way they
//! look on CT, one mask per abnormality, 0/1 labels, and a free-text report written in the
//! style of the CT-RATE reports (findings + impression, negations, hedges, laterality, sizes
//! measured on the masks).
//!
//! Layout of the output folder (the contract in notes/interfaces.md, format "radbridge-synth-1"):
//! `corpus.json`, `cases.jsonl`, `labels.csv`, and per case `<id>/ct.nii.gz`,
//! `<id>/masks/<slug>.nii.gz`, `<id>/report.txt`.
//!
//! Determinism: every case draws from its own ChaCha8 stream seeded from (seed, case index), so
//! the same seed gives byte-identical files whatever the number of threads.

pub mod anatomy;
pub mod chest;
pub mod lesions;
pub mod report;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::Serialize;

use radbridge_model::zeroshot::{CT_RATE, CT_RATE_LT};
use radbridge_volume::{self as volume, atomic, Affine, CancelToken, Cancelled, Volume, Voxels};

/// Format name written to corpus.json.
pub const FORMAT: &str = "radbridge-synth-1";
/// Bumped whenever the output for a given seed changes.
pub const GENERATOR_VERSION: &str = "1.0.0";
/// Voxel grid of every case (i → patient left, j → posterior, k → superior).
pub const DIMS: [usize; 3] = [128, 128, 64];
/// Voxel spacing (mm).
pub const SPACING: [f64; 3] = [2.8, 2.8, 5.0];
/// Default share of cases built on the real chest CT.
pub const DEFAULT_CHEST_FRACTION: f64 = 0.25;
/// Largest corpus one call may write.
pub const MAX_COUNT: usize = 100_000;

/// Errors of the generator.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error("--count must be at least 1 (got {0})")]
    ZeroCount(usize),
    #[error("--count {0} is larger than the limit of {MAX_COUNT}")]
    TooMany(usize),
    #[error("--chest-fraction must be between 0 and 1 (got {0})")]
    BadFraction(f64),
    #[error("--prevalence-scale must be above 0 and at most 4 (got {0})")]
    BadPrevalenceScale(f64),
    #[error("{path}: output folder is not empty (choose a new folder)")]
    OutputNotEmpty { path: PathBuf },
    #[error("{path}: output path exists and is not a folder")]
    OutputNotDir { path: PathBuf },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("base chest CT {path}: {reason}")]
    Base { path: PathBuf, reason: String },
    #[error(transparent)]
    Volume(#[from] volume::VolumeError),
    #[error("generation cancelled")]
    Cancelled(#[from] Cancelled),
}

impl SynthError {
    /// Whether generation stopped because it was cancelled.
    pub fn is_cancelled(&self) -> bool {
        match self {
            SynthError::Cancelled(_) => true,
            SynthError::Volume(e) => e.is_cancelled(),
            _ => false,
        }
    }
}

pub type Result<T> = std::result::Result<T, SynthError>;

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SynthError + '_ {
    move |source| SynthError::Io { path: path.to_path_buf(), source }
}

/// Every label the generator can draw: the 18 CT-RATE labels then the 15 CT-RATE-LT labels,
/// exactly as in `zeroshot.rs`.
pub fn all_labels() -> Vec<&'static str> {
    CT_RATE.iter().chain(CT_RATE_LT.iter()).copied().collect()
}

/// Number of labels.
pub const N_LABELS: usize = 33;

/// Index of a label string in `all_labels()`.
pub fn label_index(label: &str) -> Option<usize> {
    all_labels().iter().position(|l| *l == label)
}

/// File-name slug of a label: "Pleural effusion" → "pleural_effusion".
pub fn slug(label: &str) -> String {
    label.to_ascii_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect()
}

/// Label indices by name (compile-time positions in `all_labels()`).
pub mod lab {
    pub const MEDICAL_MATERIAL: usize = 0;
    pub const ARTERIAL_CALC: usize = 1;
    pub const CARDIOMEGALY: usize = 2;
    pub const PERICARDIAL_EFFUSION: usize = 3;
    pub const CORONARY_CALC: usize = 4;
    pub const HIATAL_HERNIA: usize = 5;
    pub const LYMPHADENOPATHY: usize = 6;
    pub const EMPHYSEMA: usize = 7;
    pub const ATELECTASIS: usize = 8;
    pub const LUNG_NODULE: usize = 9;
    pub const LUNG_OPACITY: usize = 10;
    pub const FIBROTIC_SEQUELA: usize = 11;
    pub const PLEURAL_EFFUSION: usize = 12;
    pub const MOSAIC: usize = 13;
    pub const PERIBRONCHIAL: usize = 14;
    pub const CONSOLIDATION: usize = 15;
    pub const BRONCHIECTASIS: usize = 16;
    pub const SEPTAL: usize = 17;
    pub const PNEUMONIA: usize = 18;
    pub const PNEUMOTHORAX: usize = 19;
    pub const EMPYEMA: usize = 20;
    pub const TUBERCULOSIS: usize = 21;
    pub const FIBROSIS: usize = 22;
    pub const LUNG_CYST: usize = 23;
    pub const BRONCHIAL_THICKENING: usize = 24;
    pub const LUNG_MASS: usize = 25;
    pub const OSTEOPHYTE: usize = 26;
    pub const RIB_FRACTURE: usize = 27;
    pub const ATHEROSCLEROSIS: usize = 28;
    pub const PERICARDIAL_CALC: usize = 29;
    pub const SPONDYLOSIS: usize = 30;
    pub const PLEURAL_CALC: usize = 31;
    pub const PNEUMOMEDIASTINUM: usize = 32;
}

/// Drawing one label implies another (the image shows both): pneumonia is an opacity with
/// consolidation,
/// atherosclerosis shows as arterial wall calcification, spondylosis has osteophytes, an
/// empyema is a pleural collection.
pub const IMPLIES: [(usize, usize); 5] = [
    (lab::PNEUMONIA, lab::LUNG_OPACITY),
    (lab::PNEUMONIA, lab::CONSOLIDATION),
    (lab::ATHEROSCLEROSIS, lab::ARTERIAL_CALC),
    (lab::SPONDYLOSIS, lab::OSTEOPHYTE),
    (lab::EMPYEMA, lab::PLEURAL_EFFUSION),
];

/// Prevalence of each label when drawn on its own (implications raise a few).
fn prevalence(l: usize) -> f64 {
    use lab::*;
    match l {
        LUNG_OPACITY | OSTEOPHYTE | PLEURAL_EFFUSION | CONSOLIDATION => 0.16,
        ARTERIAL_CALC => 0.18,
        ATHEROSCLEROSIS | SPONDYLOSIS => 0.21,
        PNEUMONIA | EMPYEMA => 0.15,
        l if supported_on_chest(l) => 0.21,
        _ => 0.25,
    }
}

/// Labels that can be drawn into the real chest CT (those that only need the lungs, the
/// pleura or the chest wall); the others need the procedural anatomy.
fn supported_on_chest(l: usize) -> bool {
    use lab::*;
    matches!(
        l,
        MEDICAL_MATERIAL
            | EMPHYSEMA
            | ATELECTASIS
            | LUNG_NODULE
            | LUNG_OPACITY
            | FIBROTIC_SEQUELA
            | PLEURAL_EFFUSION
            | MOSAIC
            | PERIBRONCHIAL
            | CONSOLIDATION
            | BRONCHIECTASIS
            | SEPTAL
            | PNEUMONIA
            | PNEUMOTHORAX
            | EMPYEMA
            | TUBERCULOSIS
            | FIBROSIS
            | LUNG_CYST
            | BRONCHIAL_THICKENING
            | LUNG_MASS
            | PLEURAL_CALC
    )
}

/// A seeded random stream with our own (version-stable) sampling on top of ChaCha8.
pub struct Rng(ChaCha8Rng);

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    /// The stream of case `index` (and sub-stream `stream`) of a corpus seed.
    pub fn new(seed: u64, index: u64, stream: u64) -> Self {
        let mut key = [0u8; 32];
        let mut s = splitmix(seed ^ 0x5241_4442_5249_4447); // "RADBRIDG"
        for (n, chunk) in key.chunks_mut(8).enumerate() {
            s = splitmix(s ^ index.wrapping_mul(0x9E37_79B9) ^ (stream << 32) ^ n as u64);
            chunk.copy_from_slice(&s.to_le_bytes());
        }
        Rng(ChaCha8Rng::from_seed(key))
    }
    pub fn u64(&mut self) -> u64 {
        self.0.next_u64()
    }
    /// Uniform in [0, 1).
    pub fn f64(&mut self) -> f64 {
        (self.u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
    /// Uniform in [a, b).
    pub fn range(&mut self, a: f64, b: f64) -> f64 {
        a + (b - a) * self.f64()
    }
    /// Uniform integer in [a, b).
    pub fn int(&mut self, a: usize, b: usize) -> usize {
        if b <= a {
            return a;
        }
        a + (self.u64() % (b - a) as u64) as usize
    }
    pub fn chance(&mut self, p: f64) -> bool {
        self.f64() < p
    }
    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.f64().max(1e-300);
        let u2 = self.f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.int(0, xs.len())]
    }
    /// A random unit vector.
    pub fn unit(&mut self) -> [f64; 3] {
        loop {
            let v = [self.range(-1.0, 1.0), self.range(-1.0, 1.0), self.range(-1.0, 1.0)];
            let n = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
            if n > 0.05 && n <= 1.0 {
                return v.map(|x| x / n);
            }
        }
    }
}

/// The voxel grid of a case: world (LPS mm) = origin + index × spacing.
#[derive(Debug, Clone, Copy)]
pub struct Grid {
    pub dims: [usize; 3],
    pub spacing: [f64; 3],
    pub origin: [f64; 3],
}

impl Grid {
    /// The standard grid centred on `centre`.
    pub fn centred(centre: [f64; 3]) -> Self {
        let origin = [0, 1, 2].map(|a| centre[a] - (DIMS[a] as f64 - 1.0) / 2.0 * SPACING[a]);
        Grid { dims: DIMS, spacing: SPACING, origin }
    }
    pub fn len(&self) -> usize {
        self.dims[0] * self.dims[1] * self.dims[2]
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    #[inline]
    pub fn idx(&self, i: usize, j: usize, k: usize) -> usize {
        i + self.dims[0] * (j + self.dims[1] * k)
    }
    #[inline]
    pub fn ijk(&self, idx: usize) -> [usize; 3] {
        let nx = self.dims[0];
        let ny = self.dims[1];
        [idx % nx, (idx / nx) % ny, idx / (nx * ny)]
    }
    #[inline]
    pub fn world(&self, i: usize, j: usize, k: usize) -> [f64; 3] {
        [
            self.origin[0] + i as f64 * self.spacing[0],
            self.origin[1] + j as f64 * self.spacing[1],
            self.origin[2] + k as f64 * self.spacing[2],
        ]
    }
    #[inline]
    pub fn world_of(&self, idx: usize) -> [f64; 3] {
        let [i, j, k] = self.ijk(idx);
        self.world(i, j, k)
    }
    /// Continuous voxel index of a world point.
    pub fn voxel(&self, p: [f64; 3]) -> [f64; 3] {
        [0, 1, 2].map(|a| (p[a] - self.origin[a]) / self.spacing[a])
    }
    /// Inclusive voxel-index box around a world box, clipped to the grid (None when outside).
    pub fn bbox(&self, lo: [f64; 3], hi: [f64; 3]) -> Option<([usize; 3], [usize; 3])> {
        let mut a = [0usize; 3];
        let mut b = [0usize; 3];
        for d in 0..3 {
            let l = ((lo[d] - self.origin[d]) / self.spacing[d]).floor();
            let h = ((hi[d] - self.origin[d]) / self.spacing[d]).ceil();
            let n = self.dims[d] as f64 - 1.0;
            if h < 0.0 || l > n {
                return None;
            }
            a[d] = l.max(0.0) as usize;
            b[d] = h.min(n) as usize;
        }
        Some((a, b))
    }
    pub fn affine(&self) -> Affine {
        Affine::from_columns([[self.spacing[0], 0.0, 0.0], [0.0, self.spacing[1], 0.0], [0.0, 0.0, self.spacing[2]]], self.origin)
    }
}

/// Tissue classes of the label map kept beside the HU field.
pub mod tissue {
    pub const OUT: u8 = 0;
    pub const FAT: u8 = 1;
    pub const MUSCLE: u8 = 2;
    pub const BONE: u8 = 3;
    pub const LUNG_R: u8 = 4;
    pub const LUNG_L: u8 = 5;
    pub const MEDIASTINUM: u8 = 6;
    pub const HEART: u8 = 7;
    pub const VESSEL: u8 = 8;
    pub const AIRWAY: u8 = 9;
    pub const ABDOMEN: u8 = 10;
    pub const CANAL: u8 = 11;
    pub const PLEURAL_FLUID: u8 = 12;
    pub const PLEURAL_AIR: u8 = 13;
    pub const LESION: u8 = 14;
    #[inline]
    pub fn is_lung(t: u8) -> bool {
        t == LUNG_R || t == LUNG_L
    }
}

/// Patient side of a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Right,
    Left,
    Both,
    Midline,
}

impl Side {
    pub fn of_x(x: f64) -> Side {
        if x >= 0.0 {
            Side::Left
        } else {
            Side::Right
        }
    }
    pub fn lung_tissue(self) -> Option<u8> {
        match self {
            Side::Right => Some(tissue::LUNG_R),
            Side::Left => Some(tissue::LUNG_L),
            _ => None,
        }
    }
    pub fn word(self) -> &'static str {
        match self {
            Side::Right => "right",
            Side::Left => "left",
            Side::Both => "bilateral",
            Side::Midline => "midline",
        }
    }
}

/// The HU field of a case being drawn, with its tissue map and, per voxel, the lesion
/// instance that last wrote it (0 = none).
pub struct Canvas {
    pub grid: Grid,
    pub hu: Vec<f32>,
    pub tissue: Vec<u8>,
    pub owner: Vec<u16>,
    /// Lesion instances: instance id − 1 → label index.
    pub instances: Vec<usize>,
}

impl Canvas {
    pub fn new(grid: Grid) -> Self {
        let n = grid.len();
        Canvas { grid, hu: vec![-1000.0; n], tissue: vec![tissue::OUT; n], owner: vec![0; n], instances: Vec::new() }
    }
    /// Register a new lesion instance of `label`; returns its id (≥ 1).
    pub fn instance(&mut self, label: usize) -> u16 {
        self.instances.push(label);
        self.instances.len() as u16
    }
}

/// What a lesion painter drew: enough for the report (location, size, descriptors).
#[derive(Debug, Clone)]
pub struct Finding {
    pub label: usize,
    pub instance: u16,
    pub side: Side,
    /// Anatomic location phrase, e.g. "upper lobe of the right lung".
    pub location: String,
    /// A descriptor the report may use (e.g. "spiculated", "loculated", "centrilobular").
    pub kind: String,
    /// Number of lesions of this instance (nodules, nodes, plaques…).
    pub count: usize,
    /// Sizes in mm measured on the final mask (filled in after drawing).
    pub size_mm: [f64; 3],
    /// Thickness in mm measured on the final mask for layered findings (effusions).
    pub depth_mm: f64,
    /// Hedged wording in the report ("possible", "suspicious for").
    pub uncertain: bool,
    /// A finding-specific number (cardiothoracic ratio, rib number, …).
    pub extra: f64,
}

impl Finding {
    pub fn new(label: usize, instance: u16, side: Side, location: impl Into<String>, kind: impl Into<String>) -> Self {
        Finding {
            label,
            instance,
            side,
            location: location.into(),
            kind: kind.into(),
            count: 1,
            size_mm: [0.0; 3],
            depth_mm: 0.0,
            uncertain: false,
            extra: 0.0,
        }
    }
}

/// One generated case in memory.
pub struct Case {
    pub id: String,
    pub base: &'static str,
    pub grid: Grid,
    pub hu: Vec<i16>,
    pub labels: [bool; N_LABELS],
    /// label → mask (same grid, 0/1).
    pub masks: Vec<(usize, Vec<u8>)>,
    pub findings: Vec<Finding>,
    pub report: String,
}

/// Per-case record of cases.jsonl.
#[derive(Debug, Clone, Serialize)]
pub struct CaseRecord {
    pub id: String,
    pub volume: String,
    pub report: String,
    pub labels: serde_json::Map<String, serde_json::Value>,
    pub masks: serde_json::Map<String, serde_json::Value>,
    pub base: String,
}

/// Options of one corpus.
#[derive(Debug, Clone)]
pub struct SynthOptions {
    pub count: usize,
    pub seed: u64,
    pub output: PathBuf,
    /// The real chest CT to insert lesions into (None: procedural only).
    pub chest_ct: Option<PathBuf>,
    pub chest_fraction: f64,
    /// Every label's prevalence is multiplied by this (1 = the default mix, about 6.8
    /// findings per case; smaller values give fewer findings per case).
    pub prevalence_scale: f64,
    /// The command line recorded in corpus.json.
    pub command: String,
}

/// What a finished corpus holds.
#[derive(Debug, Clone, Serialize)]
pub struct CorpusSummary {
    pub count: usize,
    pub chest_ct_cases: usize,
    /// Positive cases per label.
    pub positives: Vec<(String, usize)>,
    pub bytes: u64,
}

/// Generate one case in memory (deterministic in (seed, index)).
pub fn make_case(seed: u64, index: usize, base: Option<&chest::BaseCt>, chest_fraction: f64) -> Case {
    make_case_scaled(seed, index, base, chest_fraction, 1.0)
}

/// `make_case` with every label's prevalence multiplied by `prevalence_scale` (1.0 gives
/// exactly `make_case`'s output).
pub fn make_case_scaled(seed: u64, index: usize, base: Option<&chest::BaseCt>, chest_fraction: f64, prevalence_scale: f64) -> Case {
    let mut rng = Rng::new(seed, index as u64, 0);
    let on_chest = base.is_some() && rng.chance(chest_fraction);
    let mut want = [false; N_LABELS];
    for (l, w) in want.iter_mut().enumerate() {
        let p = prevalence(l) * prevalence_scale;
        let draw = rng.chance(p);
        *w = draw && (!on_chest || supported_on_chest(l));
    }
    let owned;
    let (mut canvas, ctx) = match (on_chest, base) {
        (true, Some(b)) => (b.canvas(), &b.anatomy),
        _ => {
            let (c, a) = anatomy::build(&mut rng, &want);
            owned = a;
            (c, &owned)
        }
    };
    let mut findings = lesions::draw_all(&mut canvas, ctx, &want, &mut rng);
    // Final labels: a finding counts only where its mask is not empty.
    let n = canvas.grid.len();
    let ninst = canvas.instances.len();
    let mut counts = vec![0usize; ninst + 1];
    let mut lo = vec![[usize::MAX; 3]; ninst + 1];
    let mut hi = vec![[0usize; 3]; ninst + 1];
    for idx in 0..n {
        let o = canvas.owner[idx] as usize;
        if o > 0 {
            counts[o] += 1;
            let ijk = canvas.grid.ijk(idx);
            for d in 0..3 {
                lo[o][d] = lo[o][d].min(ijk[d]);
                hi[o][d] = hi[o][d].max(ijk[d]);
            }
        }
    }
    findings.retain(|f| counts[f.instance as usize] > 0);
    for f in findings.iter_mut() {
        let o = f.instance as usize;
        for d in 0..3 {
            f.size_mm[d] = (hi[o][d] - lo[o][d] + 1) as f64 * canvas.grid.spacing[d];
        }
        if f.label == lab::PLEURAL_EFFUSION || f.label == lab::PNEUMOTHORAX {
            f.depth_mm = lesions::max_thickness(&canvas, f.instance, f.label);
        }
    }
    let mut labels = [false; N_LABELS];
    for f in &findings {
        labels[f.label] = true;
    }
    for (a, b) in IMPLIES {
        if labels[a] {
            labels[b] = true;
        }
    }
    // Masks: voxels owned by an instance of the label (or of a label implying it).
    let mut masks = Vec::new();
    for (l, &on) in labels.iter().enumerate() {
        if !on {
            continue;
        }
        let mut member = vec![false; ninst + 1];
        for (i, &il) in canvas.instances.iter().enumerate() {
            if il == l || IMPLIES.iter().any(|&(a, b)| b == l && a == il) {
                member[i + 1] = counts[i + 1] > 0;
            }
        }
        let m: Vec<u8> = canvas.owner.iter().map(|&o| member[o as usize] as u8).collect();
        masks.push((l, m));
    }
    let hu = anatomy::finish(&canvas, ctx, &mut Rng::new(seed, index as u64, 1));
    let mut rrng = Rng::new(seed, index as u64, 2);
    let report = report::write(&findings, &labels, on_chest, &mut rrng);
    Case {
        id: case_id(index),
        base: if on_chest { "chest_ct" } else { "procedural" },
        grid: canvas.grid,
        hu,
        labels,
        masks,
        findings,
        report,
    }
}

pub fn case_id(index: usize) -> String {
    format!("case_{:04}", index + 1)
}

fn volume_of(grid: &Grid, voxels: Voxels) -> Volume {
    Volume { dims: grid.dims, voxels, affine: grid.affine(), meta: Default::default(), warnings: Vec::new() }
}

/// Write a uint8 mask as NIfTI-1 (.nii.gz) on the case grid (sform and qform, RAS).
pub fn write_mask(grid: &Grid, mask: &[u8], path: &Path) -> Result<()> {
    let mut h = vec![0u8; 352];
    let put_i16 = |h: &mut Vec<u8>, o: usize, v: i16| h[o..o + 2].copy_from_slice(&v.to_le_bytes());
    let put_f32 = |h: &mut Vec<u8>, o: usize, v: f64| h[o..o + 4].copy_from_slice(&(v as f32).to_le_bytes());
    h[0..4].copy_from_slice(&348i32.to_le_bytes());
    put_i16(&mut h, 40, 3);
    for a in 0..3 {
        put_i16(&mut h, 42 + 2 * a, grid.dims[a] as i16);
    }
    for a in 4..8 {
        put_i16(&mut h, 40 + 2 * a, 1);
    }
    put_i16(&mut h, 70, 2); // uint8
    put_i16(&mut h, 72, 8);
    put_f32(&mut h, 76, 1.0); // qfac
    for a in 0..3 {
        put_f32(&mut h, 80 + 4 * a, grid.spacing[a]);
    }
    put_f32(&mut h, 108, 352.0);
    put_f32(&mut h, 112, 1.0);
    h[123] = 2;
    let descrip = b"radbridge synth mask";
    h[148..148 + descrip.len()].copy_from_slice(descrip);
    // LPS diagonal → RAS: x and y flip sign. The rotation diag(-1,-1,1) is the quaternion
    // (b, c, d) = (0, 0, 1).
    let ras_origin = [-grid.origin[0], -grid.origin[1], grid.origin[2]];
    put_i16(&mut h, 252, 1);
    put_f32(&mut h, 256, 0.0);
    put_f32(&mut h, 260, 0.0);
    put_f32(&mut h, 264, 1.0);
    for (i, v) in ras_origin.iter().enumerate() {
        put_f32(&mut h, 268 + 4 * i, *v);
    }
    put_i16(&mut h, 254, 1);
    let rows = [
        [-grid.spacing[0], 0.0, 0.0, ras_origin[0]],
        [0.0, -grid.spacing[1], 0.0, ras_origin[1]],
        [0.0, 0.0, grid.spacing[2], ras_origin[2]],
    ];
    for (r, row) in rows.iter().enumerate() {
        for (k, v) in row.iter().enumerate() {
            put_f32(&mut h, 280 + 16 * r + 4 * k, *v);
        }
    }
    h[344..348].copy_from_slice(b"n+1\0");
    let mut file = atomic::AtomicFile::create(path).map_err(io_err(path))?;
    let mut enc = flate2::write::GzEncoder::new(&mut file, flate2::Compression::new(6));
    enc.write_all(&h).map_err(io_err(path))?;
    enc.write_all(mask).map_err(io_err(path))?;
    enc.finish().map_err(io_err(path))?;
    file.commit().map_err(io_err(path))
}

/// Write one case's files under `dir` and return its record.
pub fn write_case(case: &Case, dir: &Path) -> Result<CaseRecord> {
    let cdir = dir.join(&case.id);
    let mdir = cdir.join("masks");
    std::fs::create_dir_all(&mdir).map_err(io_err(&mdir))?;
    let vol = volume_of(&case.grid, Voxels::I16(case.hu.clone()));
    volume::nifti::write_described(&vol, &cdir.join("ct.nii.gz"), radbridge_model::analysis::SYNTHETIC_CT_DESCRIPTION)?;
    let labels_all = all_labels();
    let mut masks = serde_json::Map::new();
    for (l, m) in &case.masks {
        let rel = format!("{}/masks/{}.nii.gz", case.id, slug(labels_all[*l]));
        write_mask(&case.grid, m, &dir.join(&rel))?;
        masks.insert(labels_all[*l].to_string(), rel.into());
    }
    let rp = cdir.join("report.txt");
    atomic::write(&rp, format!("{}\n", case.report)).map_err(io_err(&rp))?;
    let mut labels = serde_json::Map::new();
    for (l, name) in labels_all.iter().enumerate() {
        labels.insert(name.to_string(), (case.labels[l] as u8).into());
    }
    Ok(CaseRecord {
        id: case.id.clone(),
        volume: format!("{}/ct.nii.gz", case.id),
        report: format!("{}/report.txt", case.id),
        labels,
        masks,
        base: case.base.to_string(),
    })
}

fn dir_size(p: &Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => total += dir_size(&e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

/// Generate a whole corpus into `opts.output` (which must be absent or empty). Cases are
/// made in parallel; `progress(done, total)` is called after each; `cancel` stops early.
pub fn generate(opts: &SynthOptions, progress: &(dyn Fn(usize, usize) + Sync), cancel: &CancelToken) -> Result<CorpusSummary> {
    if opts.count == 0 {
        return Err(SynthError::ZeroCount(0));
    }
    if opts.count > MAX_COUNT {
        return Err(SynthError::TooMany(opts.count));
    }
    if !(0.0..=1.0).contains(&opts.chest_fraction) || opts.chest_fraction.is_nan() {
        return Err(SynthError::BadFraction(opts.chest_fraction));
    }
    if !(opts.prevalence_scale > 0.0 && opts.prevalence_scale <= 4.0) {
        return Err(SynthError::BadPrevalenceScale(opts.prevalence_scale));
    }
    let out = &opts.output;
    if out.exists() {
        if !out.is_dir() {
            return Err(SynthError::OutputNotDir { path: out.clone() });
        }
        if std::fs::read_dir(out).map_err(io_err(out))?.next().is_some() {
            return Err(SynthError::OutputNotEmpty { path: out.clone() });
        }
    }
    let base = match (&opts.chest_ct, opts.chest_fraction > 0.0) {
        (Some(p), true) => Some(chest::BaseCt::load(p)?),
        _ => None,
    };
    std::fs::create_dir_all(out).map_err(io_err(out))?;
    let done = AtomicUsize::new(0);
    let records: Vec<Result<CaseRecord>> = (0..opts.count)
        .into_par_iter()
        .map(|i| {
            if cancel.is_cancelled() {
                return Err(Cancelled.into());
            }
            let case = make_case_scaled(opts.seed, i, base.as_ref(), opts.chest_fraction, opts.prevalence_scale);
            let rec = write_case(&case, out)?;
            let d = done.fetch_add(1, Ordering::Relaxed) + 1;
            progress(d, opts.count);
            Ok(rec)
        })
        .collect();
    let records: Vec<CaseRecord> = records.into_iter().collect::<Result<_>>()?;
    let labels_all = all_labels();
    // cases.jsonl
    let mut jl = String::new();
    for r in &records {
        jl.push_str(&serde_json::to_string(r).expect("record serialises"));
        jl.push('\n');
    }
    let p = out.join("cases.jsonl");
    atomic::write(&p, jl).map_err(io_err(&p))?;
    // labels.csv (CT-RATE layout)
    let mut csv = String::from("VolumeName");
    for l in &labels_all {
        csv.push(',');
        csv.push_str(l);
    }
    csv.push('\n');
    let mut positives = vec![0usize; N_LABELS];
    for r in &records {
        csv.push_str(&format!("{}.nii.gz", r.id));
        for (li, l) in labels_all.iter().enumerate() {
            let v = r.labels.get(*l).and_then(|v| v.as_u64()).unwrap_or(0);
            positives[li] += v as usize;
            csv.push_str(&format!(",{v}"));
        }
        csv.push('\n');
    }
    let p = out.join("labels.csv");
    atomic::write(&p, csv).map_err(io_err(&p))?;
    let corpus = serde_json::json!({
        "format": FORMAT,
        "seed": opts.seed,
        "count": opts.count,
        "generator_version": GENERATOR_VERSION,
        "labels": labels_all,
        "command": opts.command,
        "grid": {"dims": DIMS, "spacing_mm": SPACING, "orientation": "LPS"},
        "chest_fraction": opts.chest_fraction,
        "chest_ct": opts.chest_ct.as_ref().filter(|_| opts.chest_fraction > 0.0).map(|p| p.display().to_string()),
    });
    let mut corpus = corpus;
    if opts.prevalence_scale != 1.0 {
        corpus["prevalence_scale"] = opts.prevalence_scale.into();
    }
    let p = out.join("corpus.json");
    atomic::write(&p, serde_json::to_string_pretty(&corpus).expect("json") + "\n").map_err(io_err(&p))?;
    Ok(CorpusSummary {
        count: records.len(),
        chest_ct_cases: records.iter().filter(|r| r.base == "chest_ct").count(),
        positives: labels_all.iter().zip(positives).map(|(l, n)| (l.to_string(), n)).collect(),
        bytes: dir_size(out),
    })
}
