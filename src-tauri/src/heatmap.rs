//! Where a finding fired: the cosine of each projected patch token with the finding's text
//! embedding, on the model's patch grid, upsampled trilinearly (PyTorch's align_corners=False
//! rule) and put back on the CT voxel grid through the preprocessing geometry, so it overlays
//! the source volume voxel for voxel.

use rayon::prelude::*;

use crate::preprocess::InputGeometry;
use crate::volume::{SourceMeta, Volume, Voxels};
use crate::zeroshot::cosine;

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
pub fn to_volume(values: &[f32], grid: [usize; 3], patch: [usize; 3], geom: &InputGeometry, source: &Volume, name: &str) -> Volume {
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
            format: "heatmap".into(),
            format_detail: format!("patch-text cosine for '{name}'"),
            ..Default::default()
        },
        warnings: vec![],
    }
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
}
