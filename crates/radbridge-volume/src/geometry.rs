//! Patient geometry: the voxel-to-patient affine in DICOM's LPS frame (x → patient Left,
//! y → Posterior, z → Superior, millimetres), orientation letters, and reorientation to the
//! canonical axis order used for display and for the models.
//!
//! Voxel axes are (i, j, k) with i fastest in memory. The affine maps (i, j, k, 1) to LPS mm;
//! its columns 0..3 are the world step of one voxel along i, j, k and column 3 is the position
//! of voxel (0, 0, 0)'s centre.

use serde::{Deserialize, Serialize};

/// A 4×4 voxel-to-LPS affine, row-major.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Affine(pub [[f64; 4]; 4]);

impl Affine {
    pub fn identity() -> Self {
        let mut m = [[0.0; 4]; 4];
        for (d, row) in m.iter_mut().enumerate() {
            row[d] = 1.0;
        }
        Affine(m)
    }

    /// Build from three axis step vectors (world mm per voxel along i, j, k) and an origin.
    pub fn from_columns(cols: [[f64; 3]; 3], origin: [f64; 3]) -> Self {
        let mut m = Self::identity().0;
        for r in 0..3 {
            for (c, col) in cols.iter().enumerate() {
                m[r][c] = col[r];
            }
            m[r][3] = origin[r];
        }
        Affine(m)
    }

    /// The world step of one voxel along axis `a` (0 = i, 1 = j, 2 = k).
    pub fn column(&self, a: usize) -> [f64; 3] {
        [self.0[0][a], self.0[1][a], self.0[2][a]]
    }

    pub fn origin(&self) -> [f64; 3] {
        [self.0[0][3], self.0[1][3], self.0[2][3]]
    }

    /// Voxel spacing along each voxel axis (mm): the norms of the first three columns.
    pub fn spacing(&self) -> [f64; 3] {
        [0, 1, 2].map(|a| norm(self.column(a)))
    }

    /// Unit direction of each voxel axis in LPS (columns of the direction matrix).
    pub fn directions(&self) -> [[f64; 3]; 3] {
        [0, 1, 2].map(|a| {
            let c = self.column(a);
            let n = norm(c);
            if n > 0.0 {
                c.map(|v| v / n)
            } else {
                [0.0; 3]
            }
        })
    }

    /// World (LPS mm) position of a continuous voxel index.
    pub fn apply(&self, ijk: [f64; 3]) -> [f64; 3] {
        let m = &self.0;
        [0, 1, 2].map(|r| m[r][0] * ijk[0] + m[r][1] * ijk[1] + m[r][2] * ijk[2] + m[r][3])
    }

    /// Convert between the RAS frame of NIfTI and the LPS frame of DICOM (its own inverse).
    pub fn flip_xy(&self) -> Self {
        let mut m = self.0;
        for c in 0..4 {
            m[0][c] = -m[0][c];
            m[1][c] = -m[1][c];
        }
        Affine(m)
    }

    /// Orientation letters: for each voxel axis, the patient direction it points towards as the
    /// index grows (L/R, P/A, S/I), e.g. "LPS". Same rule as nibabel's `aff2axcodes`: each voxel
    /// axis is assigned the world axis it is most aligned with, strongest first, so the three
    /// letters always name three different world axes.
    pub fn axcodes(&self) -> [char; 3] {
        self.axis_assignment().map(|(w, sign)| match (w, sign > 0.0) {
            (0, true) => 'L',
            (0, false) => 'R',
            (1, true) => 'P',
            (1, false) => 'A',
            (2, true) => 'S',
            _ => 'I',
        })
    }

    pub fn axcodes_string(&self) -> String {
        self.axcodes().iter().collect()
    }

    /// For each voxel axis, the world axis (0 = x, 1 = y, 2 = z) it maps to and the sign.
    /// Greedy on the largest absolute direction cosine, so the assignment is a permutation.
    pub fn axis_assignment(&self) -> [(usize, f64); 3] {
        let dirs = self.directions();
        let mut used_vox = [false; 3];
        let mut used_world = [false; 3];
        let mut out = [(0usize, 1.0f64); 3];
        for _ in 0..3 {
            // Always an unused (voxel, world) pair, even when directions are NaN (read as 0),
            // so the assignment stays a permutation.
            let mut best: Option<(usize, usize, f64)> = None;
            for (a, d) in dirs.iter().enumerate() {
                if used_vox[a] {
                    continue;
                }
                for (w, v) in d.iter().enumerate() {
                    let m = if v.is_nan() { 0.0 } else { v.abs() };
                    if !used_world[w] && best.is_none_or(|b| m > b.2) {
                        best = Some((a, w, m));
                    }
                }
            }
            let Some((a, w, _)) = best else { break };
            used_vox[a] = true;
            used_world[w] = true;
            out[a] = (w, if dirs[a][w] < 0.0 { -1.0 } else { 1.0 });
        }
        out
    }

    /// The plan that brings this volume's axes to canonical LPS order (axis 0 → L, 1 → P,
    /// 2 → S). `None` when the volume is already canonical.
    pub fn canonical_plan(&self, dims: [usize; 3]) -> Option<Reorientation> {
        let assign = self.axis_assignment();
        // new axis w takes old axis `src[w]`, flipped when the old axis points the other way.
        let mut src = [0usize; 3];
        let mut flip = [false; 3];
        for (a, &(w, sign)) in assign.iter().enumerate() {
            src[w] = a;
            flip[w] = sign < 0.0;
        }
        if src == [0, 1, 2] && flip == [false; 3] {
            return None;
        }
        let new_dims = [dims[src[0]], dims[src[1]], dims[src[2]]];
        // new index n maps to old index o: o[src[w]] = flip[w] ? dims-1-n[w] : n[w].
        let mut cols = [[0.0; 3]; 3];
        let mut origin = self.origin();
        for w in 0..3 {
            let c = self.column(src[w]);
            if flip[w] {
                let steps = (dims[src[w]] as f64) - 1.0;
                for r in 0..3 {
                    origin[r] += c[r] * steps;
                }
                cols[w] = c.map(|v| -v);
            } else {
                cols[w] = c;
            }
        }
        Some(Reorientation { src, flip, new_dims, affine: Affine::from_columns(cols, origin) })
    }

    /// The inverse affine (LPS mm → continuous voxel index); None when singular.
    pub fn inverse(&self) -> Option<Affine> {
        let m = &self.0;
        let a = [[m[0][0], m[0][1], m[0][2]], [m[1][0], m[1][1], m[1][2]], [m[2][0], m[2][1], m[2][2]]];
        let det = a[0][0] * (a[1][1] * a[2][2] - a[1][2] * a[2][1]) - a[0][1] * (a[1][0] * a[2][2] - a[1][2] * a[2][0])
            + a[0][2] * (a[1][0] * a[2][1] - a[1][1] * a[2][0]);
        if det.abs() < 1e-12 {
            return None;
        }
        let mut inv = [[0.0; 3]; 3];
        for r in 0..3 {
            for c in 0..3 {
                // Cofactor of (c, r), divided by the determinant.
                let (r1, r2) = ((c + 1) % 3, (c + 2) % 3);
                let (c1, c2) = ((r + 1) % 3, (r + 2) % 3);
                inv[r][c] = (a[r1][c1] * a[r2][c2] - a[r1][c2] * a[r2][c1]) / det;
            }
        }
        let t = self.origin();
        let mut out = Self::identity().0;
        for r in 0..3 {
            out[r][..3].copy_from_slice(&inv[r]);
            out[r][3] = -(inv[r][0] * t[0] + inv[r][1] * t[1] + inv[r][2] * t[2]);
        }
        Some(Affine(out))
    }

    /// Maximum absolute difference between two affines' entries.
    pub fn max_abs_diff(&self, other: &Affine) -> f64 {
        let mut d: f64 = 0.0;
        for r in 0..4 {
            for c in 0..4 {
                d = d.max((self.0[r][c] - other.0[r][c]).abs());
            }
        }
        d
    }
}

/// How to permute and flip voxel axes: new axis `w` is old axis `src[w]`, reversed if `flip[w]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reorientation {
    pub src: [usize; 3],
    pub flip: [bool; 3],
    pub new_dims: [usize; 3],
    pub affine: Affine,
}

impl Reorientation {
    /// Apply to a voxel buffer of `old_dims` (i fastest), giving the buffer in the new order.
    pub fn apply<T: Copy + Default + Send + Sync>(&self, data: &[T], old_dims: [usize; 3]) -> Vec<T> {
        use rayon::prelude::*;
        let [nx, ny, nz] = self.new_dims;
        let old_strides = [1usize, old_dims[0], old_dims[0] * old_dims[1]];
        // For new axis w: the step in the old buffer, and where index 0 starts.
        let mut start: isize = 0;
        let mut step = [0isize; 3];
        for w in 0..3 {
            let s = old_strides[self.src[w]] as isize;
            if self.flip[w] {
                start += s * (old_dims[self.src[w]] as isize - 1);
                step[w] = -s;
            } else {
                step[w] = s;
            }
        }
        let mut out = vec![T::default(); nx * ny * nz];
        out.par_chunks_mut(nx * ny).enumerate().for_each(|(k, plane)| {
            for (j, row) in plane.chunks_mut(nx).enumerate() {
                let base = start + step[2] * k as isize + step[1] * j as isize;
                for (i, v) in row.iter_mut().enumerate() {
                    *v = data[(base + step[0] * i as isize) as usize];
                }
            }
        });
        out
    }
}

pub fn norm(v: [f64; 3]) -> f64 {
    (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt()
}

pub fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

pub fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]
}

pub fn sub(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

/// Angle in degrees between two vectors (0..180).
pub fn angle_deg(a: [f64; 3], b: [f64; 3]) -> f64 {
    let c = (dot(a, b) / (norm(a) * norm(b))).clamp(-1.0, 1.0);
    c.acos().to_degrees()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axcodes_of_identity_and_flips() {
        assert_eq!(Affine::identity().axcodes_string(), "LPS");
        // RAS identity seen in LPS is R, A, S.
        assert_eq!(Affine::identity().flip_xy().axcodes_string(), "RAS");
        // Permuted: i → S, j → L, k → A.
        let a = Affine::from_columns([[0.0, 0.0, 2.0], [1.0, 0.0, 0.0], [0.0, -3.0, 0.0]], [0.0; 3]);
        assert_eq!(a.axcodes_string(), "SLA");
        assert_eq!(a.spacing(), [2.0, 1.0, 3.0]);
    }

    #[test]
    fn canonical_plan_maps_every_voxel_to_the_same_world_point() {
        let dims = [4, 3, 2];
        let a = Affine::from_columns([[0.0, 0.0, 2.0], [-1.0, 0.0, 0.0], [0.0, -3.0, 0.1]], [5.0, 6.0, 7.0]);
        let plan = a.canonical_plan(dims).unwrap();
        assert_eq!(plan.affine.axcodes_string(), "LPS");
        let data: Vec<usize> = (0..24).collect();
        let out = plan.apply(&data, dims);
        let [nx, ny, _] = plan.new_dims;
        for (n, &old) in out.iter().enumerate() {
            let (ni, nj, nk) = (n % nx, (n / nx) % ny, n / (nx * ny));
            let (oi, oj, ok) = (old % 4, (old / 4) % 3, old / 12);
            let pn = plan.affine.apply([ni as f64, nj as f64, nk as f64]);
            let po = a.apply([oi as f64, oj as f64, ok as f64]);
            for r in 0..3 {
                assert!((pn[r] - po[r]).abs() < 1e-9, "voxel {n}: {pn:?} vs {po:?}");
            }
        }
        assert!(Affine::identity().canonical_plan(dims).is_none());
        let inv = a.inverse().unwrap();
        let p = inv.apply(a.apply([1.0, 2.0, 3.0]));
        assert!((p[0] - 1.0).abs() < 1e-12 && (p[1] - 2.0).abs() < 1e-12 && (p[2] - 3.0).abs() < 1e-12, "{p:?}");
    }
}
