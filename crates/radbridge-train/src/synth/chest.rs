//! The real chest CT as a base for lesion insertion: loaded once, resampled (trilinear) to the
//! case grid, with a tissue map (outside air by flood fill from the border, lungs as the two
//! largest low-density components with their vessels filled in per slice, bone, fat, soft
//! tissue).

use std::collections::VecDeque;
use std::path::Path;

use super::anatomy::Anatomy;
use super::{tissue, Canvas, Grid, SynthError};
use radbridge_volume::{self as volume, OpenOptions};

pub struct BaseCt {
    pub hu: Vec<f32>,
    pub tissue: Vec<u8>,
    pub anatomy: Anatomy,
}

impl BaseCt {
    pub fn load(path: &Path) -> super::Result<BaseCt> {
        let bad = |reason: String| SynthError::Base { path: path.to_path_buf(), reason };
        let loaded = volume::open(path, &OpenOptions::default())?;
        let vol = loaded.volume.into_canonical();
        let sp = vol.spacing();
        let dims = vol.dims;
        let aff = vol.affine;
        let inv = aff.inverse().ok_or_else(|| bad("singular affine".into()))?;
        let centre = aff.apply([0, 1, 2].map(|a| (dims[a] as f64 - 1.0) / 2.0));
        let grid = Grid::centred(centre);
        let src = vol.voxels.to_f32();
        let [sx, sy, sz] = dims;
        let at = |i: usize, j: usize, k: usize| src[i + sx * (j + sy * k)];
        let mut hu = vec![-1000f32; grid.len()];
        for k in 0..grid.dims[2] {
            for j in 0..grid.dims[1] {
                for i in 0..grid.dims[0] {
                    let w = grid.world(i, j, k);
                    let mut v = inv.apply(w);
                    if (0..2).any(|a| v[a] < 0.0 || v[a] > dims[a] as f64 - 1.0) {
                        continue;
                    }
                    // beyond the scanned range along z: repeat the end slices
                    v[2] = v[2].clamp(0.0, dims[2] as f64 - 1.0);
                    // average over the slab the coarse voxel covers along z (thick slice),
                    // trilinear in-plane
                    let mut acc = 0.0f32;
                    let mut n = 0.0f32;
                    let half = (grid.spacing[2] / sp[2] / 2.0).floor() as i64;
                    for dz in -half..=half {
                        let z = v[2] + dz as f64;
                        if z < 0.0 || z > sz as f64 - 1.0 {
                            continue;
                        }
                        let (x0, y0, z0) = (v[0].floor() as usize, v[1].floor() as usize, z.floor() as usize);
                        let (x1, y1, z1) = ((x0 + 1).min(sx - 1), (y0 + 1).min(sy - 1), (z0 + 1).min(sz - 1));
                        let (fx, fy, fz) = ((v[0] - x0 as f64) as f32, (v[1] - y0 as f64) as f32, (z - z0 as f64) as f32);
                        let l = |a: f32, b: f32, t: f32| a + (b - a) * t;
                        let c00 = l(at(x0, y0, z0), at(x1, y0, z0), fx);
                        let c10 = l(at(x0, y1, z0), at(x1, y1, z0), fx);
                        let c01 = l(at(x0, y0, z1), at(x1, y0, z1), fx);
                        let c11 = l(at(x0, y1, z1), at(x1, y1, z1), fx);
                        acc += l(l(c00, c10, fy), l(c01, c11, fy), fz);
                        n += 1.0;
                    }
                    if n > 0.0 {
                        hu[grid.idx(i, j, k)] = acc / n;
                    }
                }
            }
        }
        let tissue_map = segment(&grid, &hu).map_err(bad)?;
        let mut c = Canvas::new(grid);
        c.hu = hu;
        c.tissue = tissue_map;
        let mut an = Anatomy::procedural_free(grid);
        an.index_lungs(&c);
        if an.lung_voxels[0].len() < 2000 || an.lung_voxels[1].len() < 2000 {
            return Err(bad("could not find both lungs (threshold + connected components)".into()));
        }
        Ok(BaseCt { hu: c.hu, tissue: c.tissue, anatomy: an })
    }

    /// A fresh canvas holding the base image.
    pub fn canvas(&self) -> Canvas {
        let mut c = Canvas::new(self.anatomy.grid);
        c.hu.copy_from_slice(&self.hu);
        c.tissue.copy_from_slice(&self.tissue);
        c
    }
}

impl Anatomy {
    /// Anatomy record for the real CT: no procedural geometry, light noise (the image has its own).
    pub fn procedural_free(grid: Grid) -> Self {
        let mut a = Anatomy::empty(grid);
        a.noise_sigma = 6.0;
        a.blur = false;
        a
    }
}

/// 6-connected components of `fg` reachable from `seeds`.
fn flood(grid: &Grid, fg: &[bool], seeds: impl Iterator<Item = usize>) -> Vec<bool> {
    let [nx, ny, nz] = grid.dims;
    let mut seen = vec![false; fg.len()];
    let mut q = VecDeque::new();
    for s in seeds {
        if fg[s] && !seen[s] {
            seen[s] = true;
            q.push_back(s);
        }
    }
    while let Some(idx) = q.pop_front() {
        let [i, j, k] = grid.ijk(idx);
        let mut push = |n: usize| {
            if fg[n] && !seen[n] {
                seen[n] = true;
                q.push_back(n);
            }
        };
        if i > 0 {
            push(idx - 1);
        }
        if i + 1 < nx {
            push(idx + 1);
        }
        if j > 0 {
            push(idx - nx);
        }
        if j + 1 < ny {
            push(idx + nx);
        }
        if k > 0 {
            push(idx - nx * ny);
        }
        if k + 1 < nz {
            push(idx + nx * ny);
        }
    }
    seen
}

fn segment(grid: &Grid, hu: &[f32]) -> Result<Vec<u8>, String> {
    let [nx, ny, nz] = grid.dims;
    let n = grid.len();
    let low: Vec<bool> = hu.iter().map(|&v| v < -500.0).collect();
    // outside air: low-density voxels connected to the in-plane border
    let mut border = Vec::new();
    for k in 0..nz {
        for j in 0..ny {
            for i in 0..nx {
                if i == 0 || j == 0 || i == nx - 1 || j == ny - 1 {
                    border.push(grid.idx(i, j, k));
                }
            }
        }
    }
    let outside = flood(grid, &low, border.into_iter());
    // components of the remaining low-density voxels
    let inner: Vec<bool> = (0..n).map(|i| low[i] && !outside[i]).collect();
    let mut comp = vec![0u32; n];
    let mut sizes = vec![0usize];
    for s in 0..n {
        if inner[s] && comp[s] == 0 {
            let id = sizes.len() as u32;
            let reach = flood(grid, &inner, std::iter::once(s));
            let mut cnt = 0;
            for (i, r) in reach.iter().enumerate() {
                if *r {
                    comp[i] = id;
                    cnt += 1;
                }
            }
            sizes.push(cnt);
        }
    }
    let mut order: Vec<usize> = (1..sizes.len()).collect();
    order.sort_by_key(|&c| std::cmp::Reverse(sizes[c]));
    // the largest component is a lung (or both, joined through the trachea); the second
    // counts only when it is lung-sized too (not bowel gas)
    let mut keep: Vec<u32> = Vec::new();
    if let Some(&first) = order.first() {
        if sizes[first] > 3000 {
            keep.push(first as u32);
            if let Some(&second) = order.get(1) {
                if sizes[second] * 4 > sizes[first] {
                    keep.push(second as u32);
                }
            }
        }
    }
    if keep.is_empty() {
        return Err("no lung-sized low-density component".into());
    }
    let mut lung = vec![false; n];
    let mut xsum = 0.0;
    let mut cnt = 0.0;
    for i in 0..n {
        if keep.contains(&comp[i]) {
            lung[i] = true;
            xsum += grid.world_of(i)[0];
            cnt += 1.0;
        }
    }
    let xmid = xsum / cnt;
    // fill vessels: per slice, non-lung regions not reachable from the slice border
    for k in 0..nz {
        let sl = nx * ny;
        let base = k * sl;
        let mut seen = vec![false; sl];
        let mut q = VecDeque::new();
        for j in 0..ny {
            for i in 0..nx {
                if (i == 0 || j == 0 || i == nx - 1 || j == ny - 1) && !lung[base + i + nx * j] {
                    seen[i + nx * j] = true;
                    q.push_back(i + nx * j);
                }
            }
        }
        while let Some(p) = q.pop_front() {
            let (i, j) = (p % nx, p / nx);
            let mut nb = Vec::with_capacity(4);
            if i > 0 {
                nb.push(p - 1);
            }
            if i + 1 < nx {
                nb.push(p + 1);
            }
            if j > 0 {
                nb.push(p - nx);
            }
            if j + 1 < ny {
                nb.push(p + nx);
            }
            for m in nb {
                if !seen[m] && !lung[base + m] {
                    seen[m] = true;
                    q.push_back(m);
                }
            }
        }
        for p in 0..sl {
            if !seen[p] {
                lung[base + p] = true;
            }
        }
    }
    let mut t = vec![tissue::OUT; n];
    for i in 0..n {
        t[i] = if outside[i] {
            tissue::OUT
        } else if lung[i] {
            if grid.world_of(i)[0] >= xmid {
                tissue::LUNG_L
            } else {
                tissue::LUNG_R
            }
        } else if hu[i] > 250.0 {
            tissue::BONE
        } else if hu[i] < -30.0 {
            if hu[i] < -500.0 {
                tissue::AIRWAY
            } else {
                tissue::FAT
            }
        } else {
            tissue::MUSCLE
        };
    }
    Ok(t)
}
