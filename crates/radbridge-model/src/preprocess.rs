//! Model input preprocessing: resampling, crop/pad and intensity mapping, driven by a
//! `PreprocessConfig` so a model package can carry its own.
//!
//! Orientation. Both official pipelines read CT-RATE NIfTI files whose voxel axes are
//! (A0, A1, A2) = (patient right→left, anterior→posterior, inferior→superior), i.e. the
//! DICOM row direction, column direction and ascending slice position of an axial scan —
//! "LPS" in our orientation letters. Neither pipeline reorients, so we bring every volume to
//! that canonical LPS order first (`Volume::canonical`: an exact permutation/flip, no
//! interpolation). A volume stored in another order (e.g. RAS NIfTI) then reaches the model
//! the way a CT-RATE scan of the same patient would.
//!
//! BrgSA (spec §3, `preprocess/data_fix_metadata_valid.py`): SimpleITK ResampleImageFilter,
//! linear, to 1.5 × 1.5 × 3 mm with the same origin and direction, on the int16 HU image, so
//! each interpolated value is truncated toward zero (ITK's cast to the input pixel type); ITK
//! treats [-0.5, size-0.5) as inside and clamps neighbours at the edge; outside = 0;
//! size = round(size·spacing/target) (Python's round); centre crop (lower = ceil(excess/2)) /
//! pad (lower = pad/2, value -1024) to 256 × 256 × 128; clamp to [-1000, 1000];
//! x = (clip(HU/1000, -1, 1) - 0.4978) / 0.2449 in float32. Tensor (1, 1, A0, A1, A2) =
//! (1, 1, 256, 256, 128). The index mapping repeats ITK's double arithmetic (see `axis_plan`),
//! so that truncation lands where ITK's does.
//!
//! CT-CLIP (spec §7.1): clip to [-1000, 1000]; torch `F.interpolate(trilinear,
//! align_corners=False)` on nibabel's float64 array (so in double) to size
//! floor(n·spacing/target), target 0.75 × 0.75 × 1.5 mm;
//! /1000; centre crop (start = (n-t)/2) / pad (before = (t-n)/2, value -1) to 480 × 480 × 240;
//! tensor (1, 1, A2, A0, A1) = (1, 1, 240, 480, 480).

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use radbridge_volume::Volume;

pub use crate::error::PreprocessError;

/// Default bound on any grid preprocessing builds (the resampled grid and each intermediate
/// grid of the separable resampling): 2^28 voxels (2 GiB of f64).
pub const DEFAULT_MAX_VOXELS: usize = 1 << 28;

/// Largest target grid side a model may ask for, and the largest target spacing (mm).
const MAX_TARGET_SIDE: usize = 4096;
const MAX_TARGET_SPACING: f64 = 1000.0;

/// How samples between voxels are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resampler {
    /// SimpleITK `ResampleImageFilter` + `sitkLinear`, same origin/direction: output index n
    /// reads input continuous index n·target/spacing; outside [-0.5, size-0.5) → `outside_hu`.
    ItkLinear,
    /// torch `F.interpolate(mode="trilinear", align_corners=False)` to a given size: source
    /// coordinate (n+0.5)·in/out - 0.5, clamped at 0, neighbours clamped at the end.
    TorchTrilinear,
}

/// How the output grid size is derived from size·spacing/target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SizeRule {
    /// Python `round` (half to even).
    Round,
    /// Python `int()` of a positive number.
    Floor,
}

/// Where a centre crop starts when the excess is odd.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CropRule {
    /// lower = ceil(excess/2)
    CeilLower,
    /// lower = floor(excess/2)
    FloorLower,
}

/// Preprocessing for one model, in the order: [clip] → resample → crop/pad → clip → map.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreprocessConfig {
    /// Target voxel spacing (mm) along canonical (A0, A1, A2) = (L, P, S).
    pub target_spacing: [f64; 3],
    /// Output grid along (A0, A1, A2).
    pub target_shape: [usize; 3],
    pub resampler: Resampler,
    pub size_rule: SizeRule,
    pub crop_rule: CropRule,
    /// HU written where the resampler reads outside the input (ITK default pixel value).
    pub outside_hu: f32,
    /// For integer volumes (int16 HU), cast each resampled value back to an integer by
    /// truncation toward zero, as ITK's ResampleImageFilter does when its output pixel type is
    /// the input's integer type (the official BrgSA script resamples the int16 image it read).
    pub itk_integer_cast: bool,
    /// Clip HU to `hu_window` before resampling (CT-CLIP does; BrgSA does not).
    pub clip_before_resample: bool,
    /// HU given to padded voxels.
    pub pad_hu: f32,
    /// HU clamp applied after crop/pad.
    pub hu_window: [f32; 2],
    /// x = (clip(HU / hu_scale, -1, 1) - mean) / std.
    pub hu_scale: f32,
    /// Compute that mapping in float64 (CT-CLIP: the official script works on nibabel's float64
    /// array until the end) rather than float32 (BrgSA: MONAI transforms on float32).
    pub intensity_f64: bool,
    pub mean: f32,
    pub std: f32,
    /// Order of the spatial axes in the output tensor, as indices into (A0, A1, A2).
    pub output_axes: [usize; 3],
}

impl PreprocessConfig {
    pub fn brgsa() -> Self {
        PreprocessConfig {
            target_spacing: [1.5, 1.5, 3.0],
            target_shape: [256, 256, 128],
            resampler: Resampler::ItkLinear,
            size_rule: SizeRule::Round,
            crop_rule: CropRule::CeilLower,
            outside_hu: 0.0,
            itk_integer_cast: true,
            clip_before_resample: false,
            pad_hu: -1024.0,
            hu_window: [-1000.0, 1000.0],
            hu_scale: 1000.0,
            intensity_f64: false,
            mean: 0.4978,
            std: 0.2449,
            output_axes: [0, 1, 2],
        }
    }

    pub fn ctclip() -> Self {
        PreprocessConfig {
            target_spacing: [0.75, 0.75, 1.5],
            target_shape: [480, 480, 240],
            resampler: Resampler::TorchTrilinear,
            size_rule: SizeRule::Floor,
            crop_rule: CropRule::FloorLower,
            outside_hu: 0.0,
            itk_integer_cast: false,
            clip_before_resample: true,
            pad_hu: -1000.0,
            hu_window: [-1000.0, 1000.0],
            hu_scale: 1000.0,
            intensity_f64: true,
            mean: 0.0,
            std: 1.0,
            output_axes: [2, 0, 1],
        }
    }

    /// Preset by model name ("brgsa" or "ctclip").
    pub fn for_model(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().replace(['-', '_'], "").as_str() {
            "brgsa" => Some(Self::brgsa()),
            "ctclip" => Some(Self::ctclip()),
            _ => None,
        }
    }

    /// Check every setting is in range (a model.json is input like any other): target spacing
    /// finite and in (0, 1000] mm, target sides in 1..=4096 with at most
    /// [`DEFAULT_MAX_VOXELS`] voxels, `output_axes` a permutation of 0, 1, 2, `hu_window` finite
    /// with lo < hi, `hu_scale` and `std` finite and non-zero, the rest finite.
    pub fn validate(&self) -> Result<(), PreprocessError> {
        let bad = |field: &'static str, reason: String| Err(PreprocessError::Config { field, reason });
        for (a, &t) in self.target_spacing.iter().enumerate() {
            if !(t.is_finite() && t > 0.0 && t <= MAX_TARGET_SPACING) {
                return bad("target_spacing", format!("axis {a} is {t} mm; it must be finite and in (0, {MAX_TARGET_SPACING}]"));
            }
        }
        for (a, &n) in self.target_shape.iter().enumerate() {
            if n == 0 || n > MAX_TARGET_SIDE {
                return bad("target_shape", format!("axis {a} is {n}; it must be in 1..={MAX_TARGET_SIDE}"));
            }
        }
        let voxels: u128 = self.target_shape.iter().map(|&n| n as u128).product();
        if voxels > DEFAULT_MAX_VOXELS as u128 {
            return bad("target_shape", format!("{:?} is {voxels} voxels, over the limit of {DEFAULT_MAX_VOXELS}", self.target_shape));
        }
        let mut seen = [false; 3];
        for &a in &self.output_axes {
            if a >= 3 || seen[a] {
                return bad("output_axes", format!("{:?} is not a permutation of [0, 1, 2]", self.output_axes));
            }
            seen[a] = true;
        }
        let [lo, hi] = self.hu_window;
        if !(lo.is_finite() && hi.is_finite() && lo < hi) {
            return bad("hu_window", format!("[{lo}, {hi}] must be finite with lower < upper"));
        }
        for (field, v) in [("hu_scale", self.hu_scale), ("std", self.std)] {
            if !v.is_finite() || v == 0.0 {
                return bad(field, format!("{v} must be finite and non-zero"));
            }
        }
        for (field, v) in [("mean", self.mean), ("outside_hu", self.outside_hu), ("pad_hu", self.pad_hu)] {
            if !v.is_finite() {
                return bad(field, format!("{v} must be finite"));
            }
        }
        Ok(())
    }

    /// Output tensor shape (1, 1, ...spatial axes in output order).
    pub fn tensor_shape(&self) -> [usize; 5] {
        let s = self.target_shape;
        let o = self.output_axes;
        [1, 1, s[o[0]], s[o[1]], s[o[2]]]
    }
}

/// A model input: float32, C order, `shape` = (1, 1, d0, d1, d2).
#[derive(Debug, Clone)]
pub struct ModelInput {
    pub shape: [usize; 5],
    pub data: Vec<f32>,
    /// Resampled grid before crop/pad, along (A0, A1, A2).
    pub resampled_shape: [usize; 3],
    /// How model-input voxels relate to the source volume (for heatmaps).
    pub geometry: InputGeometry,
}

/// The mapping from the canonical (LPS-ordered) source volume to the model input, so that
/// anything computed on the model grid can be put back on the CT.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InputGeometry {
    /// Canonical source grid and its spacing (mm), along (A0, A1, A2).
    pub source_dims: [usize; 3],
    pub source_spacing: [f64; 3],
    pub target_spacing: [f64; 3],
    /// Model grid along (A0, A1, A2) before the output axis permutation.
    pub target_shape: [usize; 3],
    /// Model index t along axis a reads resampled index t + start[a] (negative: padding).
    pub start: [isize; 3],
    pub output_axes: [usize; 3],
}

impl InputGeometry {
    /// Continuous model-grid index (along A0, A1, A2) of a canonical source voxel index.
    pub fn model_index(&self, src: [f64; 3]) -> [f64; 3] {
        [0, 1, 2].map(|a| src[a] * self.source_spacing[a] / self.target_spacing[a] - self.start[a] as f64)
    }
}

/// The resampled size along one axis; None when n·spacing/target is not finite or beyond
/// 2^53 (no grid that size could be allocated anyway).
fn output_size(n: usize, spacing: f64, target: f64, rule: SizeRule) -> Option<usize> {
    let x = n as f64 * spacing / target;
    if !x.is_finite() || x > (1u64 << 53) as f64 {
        return None;
    }
    let v = match rule {
        SizeRule::Floor => x.floor(),
        SizeRule::Round => {
            // Python's round: half to even.
            let r = x.round();
            if (x - x.trunc()).abs() == 0.5 && r % 2.0 != 0.0 {
                r - x.signum()
            } else {
                r
            }
        }
    };
    Some((v.max(1.0)) as usize)
}

/// One linear sampling step: (1 - w)·in[i0] + w·in[i1] computed as in[i0] + (in[i1] - in[i0])·w,
/// the form both ITK and torch use; None when outside the input.
type Tap = Option<(usize, usize, f64)>;

/// 1-D sampling plan for one axis. `origin` is the volume origin's coordinate along this
/// axis (mm); `first_axis` marks the axis ITK walks along each output row.
///
/// ITK (ResampleImageFilter with a linear transform, as SimpleITK runs it) maps an output index
/// to a physical point `p = origin + target·n` and back to a continuous input index
/// `(p - origin) · (1/spacing)`, in double. Along the first axis it maps only the row's two
/// ends, n = 0 and n = N (one past the last voxel), and interpolates between them with
/// `n/N`. The round-off of those steps decides, after the integer cast, whether a value that
/// should be exactly an integer lands just below it, so we repeat them exactly.
fn axis_plan(n_in: usize, n_out: usize, spacing: f64, target: f64, origin: f64, first_axis: bool, r: Resampler) -> Vec<Tap> {
    let inv = 1.0 / spacing;
    let map = |n: f64| ((origin + target * n) - origin) * inv;
    let (start, end) = (map(0.0), map(n_out as f64));
    (0..n_out)
        .map(|o| match r {
            Resampler::ItkLinear => {
                let c = if first_axis { start + (o as f64 / n_out as f64) * (end - start) } else { map(o as f64) };
                if c.is_nan() || c < -0.5 || c >= n_in as f64 - 0.5 {
                    return None;
                }
                let base = c.floor();
                let w = c - base;
                let i0 = (base.max(0.0) as usize).min(n_in - 1);
                let i1 = ((base + 1.0).max(0.0) as usize).min(n_in - 1);
                Some((i0, i1, w))
            }
            Resampler::TorchTrilinear => {
                // The official script interpolates nibabel's float64 array: torch then works in
                // double, scale = in/out.
                let scale = n_in as f64 / n_out as f64;
                let src = ((o as f64 + 0.5) * scale - 0.5).max(0.0);
                let i0 = (src as usize).min(n_in - 1);
                let i1 = if i0 < n_in - 1 { i0 + 1 } else { i0 };
                let w = (src - i0 as f64).clamp(0.0, 1.0);
                Some((i0, i1, w))
            }
        })
        .collect()
}

/// Resample along one axis of a [nx, ny, nz] (i fastest) f64 grid. Samples outside the input
/// become NaN. `lerp` is the two-tap formula of the library being matched.
fn pass(src: &[f64], dims: [usize; 3], axis: usize, plan: &[Tap], lerp: fn(f64, f64, f64) -> f64) -> (Vec<f64>, [usize; 3]) {
    let [nx, ny, _] = dims;
    let mut od = dims;
    od[axis] = plan.len();
    let [ox, oy, _] = od;
    let mut out = vec![f64::NAN; od.iter().product()];
    match axis {
        0 => out.par_chunks_mut(ox).enumerate().for_each(|(row, dst)| {
            let s = &src[row * nx..(row + 1) * nx];
            for (d, tap) in dst.iter_mut().zip(plan) {
                if let Some((i0, i1, w)) = *tap {
                    *d = lerp(s[i0], s[i1], w);
                }
            }
        }),
        1 => out.par_chunks_mut(ox * oy).enumerate().for_each(|(k, dst)| {
            let plane = &src[k * nx * ny..(k + 1) * nx * ny];
            for (row, tap) in dst.chunks_mut(ox).zip(plan) {
                if let Some((j0, j1, w)) = *tap {
                    let (r0, r1) = (&plane[j0 * nx..(j0 + 1) * nx], &plane[j1 * nx..(j1 + 1) * nx]);
                    for x in 0..nx {
                        row[x] = lerp(r0[x], r1[x], w);
                    }
                }
            }
        }),
        _ => out.par_chunks_mut(nx * ny).zip(plan.par_iter()).for_each(|(dst, tap)| {
            if let Some((k0, k1, w)) = *tap {
                let (p0, p1) = (&src[k0 * nx * ny..(k0 + 1) * nx * ny], &src[k1 * nx * ny..(k1 + 1) * nx * ny]);
                for i in 0..nx * ny {
                    dst[i] = lerp(p0[i], p1[i], w);
                }
            }
        }),
    }
    (out, od)
}

/// Separable linear resampling in double precision, one axis at a time in the order the
/// matched library nests its formula: ITK interpolates along x, then y, then z as
/// a + (b - a)·w; torch's trilinear kernel along the last tensor axis first — for CT-CLIP's
/// (A2, A0, A1) tensor that is A1, then A0, then A2 — as a·(1 - w) + b·w. Samples outside the
/// input on any axis get `outside`; with `truncate`, values are cast to integers toward zero
/// (ITK's cast to an integer pixel type).
fn resample(src: Vec<f64>, dims: [usize; 3], plans: &[Vec<Tap>; 3], r: Resampler, outside: f64, truncate: bool) -> Vec<f64> {
    type Lerp = fn(f64, f64, f64) -> f64;
    let (order, lerp): ([usize; 3], Lerp) = match r {
        Resampler::ItkLinear => ([0, 1, 2], |a, b, w| a + (b - a) * w),
        Resampler::TorchTrilinear => ([1, 0, 2], |a, b, w| a * (1.0 - w) + b * w),
    };
    let (mut data, mut d) = (src, dims);
    for axis in order {
        let (next, nd) = pass(&data, d, axis, &plans[axis], lerp);
        data = next;
        d = nd;
    }
    data.par_iter_mut().for_each(|v| {
        *v = if v.is_nan() {
            outside
        } else if truncate {
            v.trunc()
        } else {
            *v
        }
    });
    data
}

/// The resampled grid of a volume of `dims` voxels of `spacing` mm, checked: every spacing
/// finite and positive, every size finite, and the output grid and each intermediate grid
/// of the separable resampling (one axis at a time, in the resampler's order) at most
/// `max_voxels`.
pub fn resampled_grid(
    dims: [usize; 3],
    spacing: [f64; 3],
    cfg: &PreprocessConfig,
    max_voxels: usize,
) -> Result<[usize; 3], PreprocessError> {
    if dims.contains(&0) {
        return Err(PreprocessError::EmptyVolume { dims });
    }
    for (axis, &s) in spacing.iter().enumerate() {
        if !(s.is_finite() && s > 0.0) {
            return Err(PreprocessError::Spacing { axis, spacing: s });
        }
    }
    let mut out = [0usize; 3];
    for a in 0..3 {
        let (size, spacing, target) = (dims[a], spacing[a], cfg.target_spacing[a]);
        out[a] = output_size(size, spacing, target, cfg.size_rule).ok_or(PreprocessError::GridSize {
            axis: a,
            size,
            spacing,
            target,
            value: size as f64 * spacing / target,
        })?;
    }
    let order = match cfg.resampler {
        Resampler::ItkLinear => [0, 1, 2],
        Resampler::TorchTrilinear => [1, 0, 2],
    };
    let mut grid = dims.map(|n| n as u128);
    let mut largest = 0u128;
    for axis in order {
        grid[axis] = out[axis] as u128;
        largest = largest.max(grid.iter().product());
    }
    if largest > max_voxels as u128 {
        return Err(PreprocessError::TooLarge { dims, spacing, target: cfg.target_spacing, voxels: largest, limit: max_voxels });
    }
    Ok(out)
}

/// Run a model's preprocessing on a volume (reoriented to canonical LPS first), with grids
/// bounded by [`DEFAULT_MAX_VOXELS`].
pub fn preprocess(volume: &Volume, cfg: &PreprocessConfig) -> Result<ModelInput, PreprocessError> {
    preprocess_with_limit(volume, cfg, DEFAULT_MAX_VOXELS)
}

/// [`preprocess`] with a caller's bound on the voxels of any grid it builds. The settings and
/// the resampled grid are checked before anything is allocated.
pub fn preprocess_with_limit(volume: &Volume, cfg: &PreprocessConfig, max_voxels: usize) -> Result<ModelInput, PreprocessError> {
    cfg.validate()?;
    // The grid the canonical volume will have (a permutation of this one's), checked before
    // the canonical copy is made.
    let (canon_dims, canon_spacing) = match volume.affine.canonical_plan(volume.dims) {
        Some(plan) => (plan.new_dims, plan.affine.spacing()),
        None => (volume.dims, volume.spacing()),
    };
    resampled_grid(canon_dims, canon_spacing, cfg, max_voxels)?;
    if volume.dims.iter().try_fold(1usize, |a, &b| a.checked_mul(b)) != Some(volume.voxels.len()) {
        return Err(PreprocessError::VoxelCount { dims: volume.dims, len: volume.voxels.len() });
    }
    let canon = volume.canonical();
    let dims = canon.dims;
    let spacing = canon.spacing();
    let canon_origin = canon.affine.origin();
    let [lo, hi] = cfg.hu_window;
    let integer_source = matches!(canon.voxels, radbridge_volume::Voxels::I16(_));
    let n = canon.voxel_count();
    let mut src: Vec<f64> = (0..n).into_par_iter().map(|i| canon.voxels.get_f32(i) as f64).collect();
    drop(canon);
    if cfg.clip_before_resample {
        src.par_iter_mut().for_each(|v| *v = v.clamp(lo as f64, hi as f64));
    }
    let out = resampled_grid(dims, spacing, cfg, max_voxels)?;
    let origin = canon_origin;
    let plans = [0, 1, 2].map(|a| axis_plan(dims[a], out[a], spacing[a], cfg.target_spacing[a], origin[a], a == 0, cfg.resampler));
    let truncate = cfg.itk_integer_cast && integer_source;
    let res = resample(src, dims, &plans, cfg.resampler, cfg.outside_hu as f64, truncate);

    // Crop/pad offsets: output index t reads resampled index t + start (negative = pad).
    let start: [isize; 3] = [0, 1, 2].map(|a| {
        let (n, t) = (out[a] as isize, cfg.target_shape[a] as isize);
        if n >= t {
            let excess = n - t;
            match cfg.crop_rule {
                CropRule::CeilLower => (excess + 1) / 2,
                CropRule::FloorLower => excess / 2,
            }
        } else {
            -((t - n) / 2)
        }
    });
    let shape = cfg.tensor_shape();
    let ts = cfg.target_shape;
    let o = cfg.output_axes;
    // Output is C order over (ts[o0], ts[o1], ts[o2]); the last axis is fastest.
    let (d1, d2) = (ts[o[1]], ts[o[2]]);
    let mut data = vec![0f32; ts.iter().product()];
    let map = |hu: f64| -> f32 {
        if cfg.intensity_f64 {
            let hu = hu.clamp(lo as f64, hi as f64);
            (((hu / cfg.hu_scale as f64).clamp(-1.0, 1.0) - cfg.mean as f64) / cfg.std as f64) as f32
        } else {
            let hu = (hu as f32).clamp(lo, hi);
            ((hu / cfg.hu_scale).clamp(-1.0, 1.0) - cfg.mean) / cfg.std
        }
    };
    data.par_chunks_mut(d1 * d2).enumerate().for_each(|(u0, block)| {
        let mut t = [0usize; 3];
        t[o[0]] = u0;
        for u1 in 0..d1 {
            t[o[1]] = u1;
            for u2 in 0..d2 {
                t[o[2]] = u2;
                let mut idx = [0usize; 3];
                let mut inside = true;
                for a in 0..3 {
                    let s = t[a] as isize + start[a];
                    if s < 0 || s >= out[a] as isize {
                        inside = false;
                        break;
                    }
                    idx[a] = s as usize;
                }
                let hu = if inside { res[idx[0] + out[0] * (idx[1] + out[1] * idx[2])] } else { cfg.pad_hu as f64 };
                block[u1 * d2 + u2] = map(hu);
            }
        }
    });
    let geometry = InputGeometry {
        source_dims: dims,
        source_spacing: spacing,
        target_spacing: cfg.target_spacing,
        target_shape: cfg.target_shape,
        start,
        output_axes: cfg.output_axes,
    };
    Ok(ModelInput { shape, data, resampled_shape: out, geometry })
}

/// Write a float32 C-order array as `.npy` (format version 1.0). The format is a short text
/// header and raw little-endian values; no crate needed for that.
pub fn write_npy(path: &std::path::Path, shape: &[usize], data: &[f32]) -> std::io::Result<()> {
    use std::io::Write;
    let dims = shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ");
    let dims = if shape.len() == 1 { format!("{dims},") } else { dims };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({dims}), }}");
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut w = radbridge_volume::atomic::AtomicFile::create(path)?;
    w.write_all(b"\x93NUMPY\x01\x00")?;
    w.write_all(&(header.len() as u16).to_le_bytes())?;
    w.write_all(header.as_bytes())?;
    for chunk in data.chunks(1 << 16) {
        let bytes: Vec<u8> = chunk.iter().flat_map(|v| v.to_le_bytes()).collect();
        w.write_all(&bytes)?;
    }
    w.commit()
}

/// Read a float32 (`<f4`), C-order `.npy` file: (shape, values).
pub fn read_npy(path: &std::path::Path) -> std::io::Result<(Vec<usize>, Vec<f32>)> {
    let bad = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: {m}", path.display()));
    let b = std::fs::read(path)?;
    if b.len() < 10 || &b[..6] != b"\x93NUMPY" {
        return Err(bad("not a .npy file".into()));
    }
    let (hl, off) = match b[6] {
        1 => (u16::from_le_bytes([b[8], b[9]]) as usize, 10),
        2 | 3 if b.len() >= 12 => (u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize, 12),
        v => return Err(bad(format!("unsupported .npy version {v}"))),
    };
    let header = std::str::from_utf8(b.get(off..off + hl).ok_or_else(|| bad("header cut short".into()))?)
        .map_err(|_| bad("header is not text".into()))?;
    if !header.contains("'descr': '<f4'") {
        return Err(bad(format!("values must be little-endian float32 ('<f4'); header: {}", header.trim())));
    }
    if header.contains("'fortran_order': True") {
        return Err(bad("Fortran-order arrays are not supported; save with C order".into()));
    }
    let shape_text = header
        .split("'shape':")
        .nth(1)
        .and_then(|r| r.split('(').nth(1))
        .and_then(|r| r.split(')').next())
        .ok_or_else(|| bad("no shape".into()))?;
    let shape: Vec<usize> = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|_| bad(format!("bad shape '{shape_text}'"))))
        .collect::<Result<_, _>>()?;
    let n: usize = shape.iter().product();
    let body = &b[off + hl..];
    if body.len() != n * 4 {
        return Err(bad(format!("expected {} bytes of data for shape {shape:?}, found {}", n * 4, body.len())));
    }
    Ok((shape, body.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_round_is_half_even() {
        assert_eq!(output_size(191, 1.5, 3.0, SizeRule::Round), Some(96)); // 95.5 → 96
        assert_eq!(output_size(189, 1.5, 3.0, SizeRule::Round), Some(94)); // 94.5 → 94
        assert_eq!(output_size(233, 1.5, 0.75, SizeRule::Floor), Some(466));
        assert_eq!(output_size(7, 1.0, 3.0, SizeRule::Floor), Some(2));
        assert_eq!(output_size(7, f64::INFINITY, 3.0, SizeRule::Floor), None);
        assert_eq!(output_size(7, 1e300, 1e-300, SizeRule::Round), None);
    }

    #[test]
    fn torch_plan_matches_half_pixel_rule() {
        // 4 → 8 upsampling: src = (o + 0.5)/2 - 0.5, clamped at 0.
        let p = axis_plan(4, 8, 1.0, 0.5, 0.0, true, Resampler::TorchTrilinear);
        assert_eq!(p[0], Some((0, 1, 0.0)));
        assert_eq!(p[1], Some((0, 1, 0.25)));
        assert_eq!(p[7], Some((3, 3, 0.25)));
    }

    #[test]
    fn itk_plan_marks_outside_and_clamps_edge() {
        // 5 voxels of 1 mm to 2 mm: indices 0, 2, 4 (inside).
        let p = axis_plan(5, 3, 1.0, 2.0, 0.0, false, Resampler::ItkLinear);
        assert_eq!(p, vec![Some((0, 1, 0.0)), Some((2, 3, 0.0)), Some((4, 4, 0.0))]);
        // 4 voxels of 1 mm to 1.5 mm: c = 0, 1.5, 3.0 (→ edge), 4.5 (outside).
        let p = axis_plan(4, 4, 1.0, 1.5, 0.0, false, Resampler::ItkLinear);
        assert_eq!(p[3], None);
        assert_eq!(p[2], Some((3, 3, 0.0)));
    }

    fn volume(dims: [usize; 3], spacing: [f64; 3]) -> Volume {
        use radbridge_volume::{Affine, SourceMeta, Voxels};
        let n = dims.iter().product();
        Volume {
            dims,
            voxels: Voxels::I16(vec![0; n]),
            affine: Affine::from_columns([[spacing[0], 0.0, 0.0], [0.0, spacing[1], 0.0], [0.0, 0.0, spacing[2]]], [0.0; 3]),
            meta: SourceMeta::default(),
            warnings: Vec::new(),
        }
    }

    #[test]
    fn a_huge_pixel_spacing_is_refused_before_allocating() {
        // 8×8×4 voxels of 1000 mm → 5333×5333×1333 at 1.5×1.5×3 mm: far over 2^28 voxels.
        let e = preprocess(&volume([8, 8, 4], [1000.0, 1000.0, 1000.0]), &PreprocessConfig::brgsa()).unwrap_err();
        assert!(matches!(e, PreprocessError::TooLarge { limit: DEFAULT_MAX_VOXELS, .. }), "{e:?}");
        assert!(e.to_string().contains("over the limit"), "{e}");
        // One axis alone may blow up an intermediate grid of the separable resampling.
        let e = preprocess_with_limit(&volume([4, 4, 4], [1.0, 1.0, 1.0]), &PreprocessConfig::brgsa(), 10).unwrap_err();
        assert!(matches!(e, PreprocessError::TooLarge { limit: 10, .. }), "{e:?}");
    }

    #[test]
    fn an_infinite_or_zero_spacing_is_refused() {
        let cfg = PreprocessConfig::ctclip();
        let e = preprocess(&volume([2, 2, 2], [1.0, f64::INFINITY, 1.0]), &cfg).unwrap_err();
        assert!(matches!(e, PreprocessError::Spacing { .. }), "{e:?}");
        let e = preprocess(&volume([2, 2, 2], [1.0, 1.0, 0.0]), &cfg).unwrap_err();
        assert!(matches!(e, PreprocessError::Spacing { axis: 2, .. }), "{e:?}");
        let e = preprocess(&volume([2, 2, 2], [1.0, f64::NAN, 1.0]), &cfg).unwrap_err();
        assert!(matches!(e, PreprocessError::Spacing { .. }), "{e:?}");
        // Finite but overflowing n·spacing/target.
        let e = resampled_grid([2, 2, 2], [1e300, 1.0, 1.0], &PreprocessConfig { target_spacing: [1e-300, 1.0, 1.0], ..cfg }, 1 << 20)
            .unwrap_err();
        assert!(matches!(e, PreprocessError::GridSize { axis: 0, .. }), "{e:?}");
    }

    #[test]
    fn an_empty_or_inconsistent_volume_is_refused() {
        let e = preprocess(&volume([0, 2, 2], [1.0; 3]), &PreprocessConfig::brgsa()).unwrap_err();
        assert!(matches!(e, PreprocessError::EmptyVolume { .. }), "{e:?}");
        let mut v = volume([2, 2, 2], [1.0; 3]);
        v.dims = [usize::MAX, 2, 2];
        let e = preprocess_with_limit(&v, &PreprocessConfig::brgsa(), usize::MAX).unwrap_err();
        assert!(matches!(e, PreprocessError::VoxelCount { .. } | PreprocessError::GridSize { .. }), "{e:?}");
    }

    #[test]
    fn hostile_settings_are_refused_naming_the_field() {
        let v = volume([4, 4, 4], [1.0; 3]);
        let field = |cfg: PreprocessConfig| match preprocess(&v, &cfg).unwrap_err() {
            PreprocessError::Config { field, .. } => field,
            e => panic!("{e:?}"),
        };
        let b = PreprocessConfig::brgsa;
        assert_eq!(field(PreprocessConfig { output_axes: [0, 1, 3], ..b() }), "output_axes");
        assert_eq!(field(PreprocessConfig { output_axes: [0, 0, 1], ..b() }), "output_axes");
        assert_eq!(field(PreprocessConfig { hu_window: [1000.0, -1000.0], ..b() }), "hu_window");
        assert_eq!(field(PreprocessConfig { hu_window: [f32::NAN, 0.0], ..b() }), "hu_window");
        assert_eq!(field(PreprocessConfig { target_spacing: [1.5, 0.0, 3.0], ..b() }), "target_spacing");
        assert_eq!(field(PreprocessConfig { target_spacing: [1.5, f64::INFINITY, 3.0], ..b() }), "target_spacing");
        assert_eq!(field(PreprocessConfig { target_shape: [0, 256, 128], ..b() }), "target_shape");
        assert_eq!(field(PreprocessConfig { target_shape: [4096, 4096, 4096], ..b() }), "target_shape");
        assert_eq!(field(PreprocessConfig { std: 0.0, ..b() }), "std");
        assert_eq!(field(PreprocessConfig { hu_scale: f32::INFINITY, ..b() }), "hu_scale");
        assert_eq!(field(PreprocessConfig { mean: f32::NAN, ..b() }), "mean");
        assert!(PreprocessConfig::brgsa().validate().is_ok() && PreprocessConfig::ctclip().validate().is_ok());
        // A small valid volume still preprocesses.
        let x = preprocess(&v, &PreprocessConfig { target_shape: [2, 3, 4], output_axes: [2, 0, 1], ..b() }).unwrap();
        assert_eq!(x.shape, [1, 1, 4, 2, 3]);
        assert_eq!(x.data.len(), 24);
    }
}
