//! Where a finding fired, on the model's patch grid, upsampled trilinearly (PyTorch's
//! align_corners=False rule) and put back on the CT voxel grid through the preprocessing
//! geometry, so it overlays the source volume voxel for voxel.
//!
//! Two maps ([`Method`]): the gradient of the finding's zero-shot score with respect to the
//! patch tokens entering the attention of the ViT's middle block, times the tokens (Grad-CAM
//! for a ViT; see `Brgsa::patch_relevance` and `Brgsa::default_relevance_layer`), the default; and the cosine of each projected patch token
//! with the finding's text embedding. BrgSA scores the class token only and never trains the
//! patch tokens against text, so the cosine map says little about what drove the score.

use rayon::prelude::*;

use crate::preprocess::InputGeometry;
use crate::zeroshot::cosine;
use radbridge_volume::{SourceMeta, Volume, Voxels};
use serde::{Deserialize, Serialize};

/// The maximum of a finding's heat map on the canonical (LPS-ordered) CT grid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
pub struct Peak {
    /// Canonical voxel index [i, j, k] (i → patient left, j → posterior, k → superior).
    pub voxel: [usize; 3],
    /// The voxel centre in patient LPS millimetres.
    pub lps_mm: [f64; 3],
    /// The heat-map value there (see [`Method`]).
    pub value: f32,
    /// Which map the peak was taken from.
    pub from: PeakSource,
}

/// Which map a [`Peak`] was taken from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "snake_case")]
pub enum PeakSource {
    /// The maximum of the written heat map on the CT grid.
    Heatmap,
    /// The centre of the highest patch cell inside the CT (when no heat map was written).
    PatchGrid,
}

/// How a heat map is computed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// Gradient × activation of the score at the attention input of the ViT's middle block.
    #[default]
    Gradient,
    /// Cosine of each projected patch token with the text embedding.
    PatchCosine,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Gradient => "gradient",
            Method::PatchCosine => "patch-cosine",
        }
    }
}

impl std::str::FromStr for Method {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "gradient" => Ok(Method::Gradient),
            "patch-cosine" => Ok(Method::PatchCosine),
            _ => Err(format!("unknown heat-map method {s:?} (expected gradient or patch-cosine)")),
        }
    }
}

/// Patch-text similarity on the patch grid, flattened row-major over `grid` (A0 slowest).
pub fn patch_similarity(patch_proj: &[Vec<f32>], text: &[f32]) -> Vec<f32> {
    patch_proj.par_iter().map(|p| cosine(p, text)).collect()
}

/// Sample a grid of values (row-major over `grid`, last axis fastest) at a continuous index,
/// with linear interpolation and clamping at the edges.
fn sample(values: &[f32], grid: [usize; 3], u: [f64; 3]) -> f32 {
    let mut idx = [(0usize, 0usize, 0f64); 3];
    for a in 0..3 {
        let n = grid[a];
        let x = u[a].clamp(0.0, (n - 1) as f64);
        let i0 = x.floor() as usize;
        let i1 = (i0 + 1).min(n - 1);
        idx[a] = (i0, i1, x - i0 as f64);
    }
    let at = |a: usize, b: usize, c: usize| values[(a * grid[1] + b) * grid[2] + c] as f64;
    let mut acc = 0.0;
    for (ia, wa) in [(idx[0].0, 1.0 - idx[0].2), (idx[0].1, idx[0].2)] {
        for (ib, wb) in [(idx[1].0, 1.0 - idx[1].2), (idx[1].1, idx[1].2)] {
            for (ic, wc) in [(idx[2].0, 1.0 - idx[2].2), (idx[2].1, idx[2].2)] {
                acc += wa * wb * wc * at(ia, ib, ic);
            }
        }
    }
    acc as f32
}

/// Put a patch-grid map on the canonical source grid of `source` (a canonical, LPS-ordered
/// volume): each CT voxel takes the value at its position on the model grid. `grid` and
/// `patch` are along (A0, A1, A2) of the model grid.
pub fn to_volume(
    values: &[f32],
    grid: [usize; 3],
    patch: [usize; 3],
    geom: &InputGeometry,
    source: &Volume,
    name: &str,
    method: Method,
) -> Volume {
    let [nx, ny, nz] = geom.source_dims;
    let mut out = vec![0f32; nx * ny * nz];
    out.par_chunks_mut(nx * ny).enumerate().for_each(|(k, plane)| {
        for j in 0..ny {
            for i in 0..nx {
                let m = geom.model_index([i as f64, j as f64, k as f64]);
                // Model voxel m lies in patch cell (m + 0.5)/p - 0.5 (cell centres).
                let u = [0, 1, 2].map(|a| (m[a] + 0.5) / patch[a] as f64 - 0.5);
                plane[j * nx + i] = sample(values, grid, u);
            }
        }
    });
    Volume {
        dims: geom.source_dims,
        voxels: Voxels::F32(out),
        affine: source.affine,
        meta: SourceMeta {
            path: source.meta.path.clone(),
            format: radbridge_volume::SourceFormat::Heatmap,
            format_detail: match method {
                Method::Gradient => format!("score gradient × activation for '{name}'"),
                Method::PatchCosine => format!("patch-text cosine for '{name}'"),
            },
            ..Default::default()
        },
        warnings: vec![],
    }
}

/// The maximum of a heat map volume (on the canonical grid, as `to_volume` writes it): the
/// first voxel holding the largest finite value, with its LPS position.
pub fn volume_peak(hm: &Volume) -> Option<Peak> {
    let n = hm.voxel_count();
    let mut best: Option<(usize, f32)> = None;
    for idx in 0..n {
        let v = hm.voxels.get_f32(idx);
        if v.is_finite() && best.is_none_or(|(_, b)| v > b) {
            best = Some((idx, v));
        }
    }
    let (idx, value) = best?;
    let [nx, ny, _] = hm.dims;
    let voxel = [idx % nx, (idx / nx) % ny, idx / (nx * ny)];
    Some(Peak { voxel, lps_mm: hm.affine.apply(voxel.map(|x| x as f64)), value, from: PeakSource::Heatmap })
}

/// The peak without the full heat map: the highest patch cell that overlaps the CT, at the
/// canonical voxel of `source` (canonical volume) nearest to the cell centre.
pub fn grid_peak(values: &[f32], grid: [usize; 3], patch: [usize; 3], geom: &InputGeometry, source: &Volume) -> Option<Peak> {
    let mut best: Option<([usize; 3], f32)> = None;
    for c0 in 0..grid[0] {
        for c1 in 0..grid[1] {
            for c2 in 0..grid[2] {
                let v = values[(c0 * grid[1] + c1) * grid[2] + c2];
                if !v.is_finite() || best.is_some_and(|(_, b)| v <= b) {
                    continue;
                }
                let cell = [c0, c1, c2];
                // Model index → canonical source index (the inverse of `InputGeometry::model_index`).
                let to_src = |a: usize, m: f64| (m + geom.start[a] as f64) * geom.target_spacing[a] / geom.source_spacing[a];
                let overlaps = (0..3).all(|a| {
                    let lo = to_src(a, cell[a] as f64 * patch[a] as f64 - 0.5);
                    let hi = to_src(a, (cell[a] + 1) as f64 * patch[a] as f64 - 0.5);
                    hi > -0.5 && lo < geom.source_dims[a] as f64 - 0.5
                });
                if overlaps {
                    let voxel = [0, 1, 2].map(|a| {
                        let c = to_src(a, (cell[a] as f64 + 0.5) * patch[a] as f64 - 0.5);
                        (c.round().max(0.0) as usize).min(geom.source_dims[a] - 1)
                    });
                    best = Some((voxel, v));
                }
            }
        }
    }
    let (voxel, value) = best?;
    Some(Peak { voxel, lps_mm: source.affine.apply(voxel.map(|x| x as f64)), value, from: PeakSource::PatchGrid })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_is_exact_at_cell_centres_and_clamped_outside() {
        let grid = [2, 2, 2];
        let v: Vec<f32> = (0..8).map(|x| x as f32).collect();
        assert_eq!(sample(&v, grid, [1.0, 0.0, 1.0]), 5.0);
        assert_eq!(sample(&v, grid, [-3.0, -3.0, -3.0]), 0.0);
        assert!((sample(&v, grid, [0.5, 0.5, 0.5]) - 3.5).abs() < 1e-6);
    }

    #[test]
    fn grid_peak_takes_the_best_cell_over_the_ct_and_its_centre_voxel() {
        // Model grid = source grid (same spacing, no crop), 4 cells of 2 voxels per axis.
        let mut geom = InputGeometry {
            source_dims: [8, 8, 8],
            source_spacing: [1.0; 3],
            target_spacing: [1.0; 3],
            target_shape: [8, 8, 8],
            start: [0, 0, 0],
            output_axes: [0, 1, 2],
        };
        let grid = [4, 4, 4];
        let mut values = vec![0f32; 64];
        values[(4 + 2) * 4 + 3] = 0.9;
        values[(3 * 4 + 3) * 4] = 0.5;
        let src = Volume {
            dims: [8, 8, 8],
            voxels: Voxels::F32(vec![0.0; 512]),
            affine: radbridge_volume::Affine::identity(),
            meta: Default::default(),
            warnings: vec![],
        };
        let p = grid_peak(&values, grid, [2, 2, 2], &geom, &src).unwrap();
        // Cell centre (c + 0.5)·2 − 0.5 = 2.5, 4.5, 6.5 → nearest voxel (half away from zero).
        assert_eq!((p.voxel, p.value, p.from), ([3, 5, 7], 0.9, PeakSource::PatchGrid));
        assert_eq!(p.lps_mm, [3.0, 5.0, 7.0]);
        // Padding before the CT along A2 (model index 0..4 is outside): the 0.9 cell at A2 = 3
        // now ends past the CT's last slice, the 0.5 cell at A2 = 0 lies before its first one,
        // so the best overlapping cell is a zero one.
        geom.start = [0, 0, -4];
        geom.source_dims = [8, 8, 2];
        let src2 = Volume { dims: [8, 8, 2], voxels: Voxels::F32(vec![0.0; 128]), ..src };
        let p = grid_peak(&values, grid, [2, 2, 2], &geom, &src2).unwrap();
        assert_eq!(p.value, 0.0);
        assert!(p.voxel[2] < 2);
    }

    #[test]
    fn volume_peak_finds_the_maximum_and_its_position() {
        let mut v = vec![0f32; 4 * 3 * 2];
        v[1 + 4 * (2 + 3)] = 0.9;
        v[0] = f32::NAN;
        let mut a = radbridge_volume::Affine::identity();
        a.0[0][0] = 2.0;
        a.0[0][3] = 10.0;
        let hm = Volume { dims: [4, 3, 2], voxels: Voxels::F32(v), affine: a, meta: Default::default(), warnings: vec![] };
        let p = volume_peak(&hm).unwrap();
        assert_eq!(p.voxel, [1, 2, 1]);
        assert_eq!(p.lps_mm, [12.0, 2.0, 1.0]);
        assert_eq!(p.value, 0.9);
    }
}
