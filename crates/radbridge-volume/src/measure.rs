//! Measurements on a volume, in patient space: distances and angles between voxel positions,
//! and HU statistics with the area of ellipse and rectangle regions drawn on a slice. Positions
//! are continuous voxel coordinates of the volume's grid (voxel centres at integers); millimetres
//! come from its affine, so oblique and anisotropic grids measure right. A region holds the
//! voxels whose centres fall inside it; its SD is the population SD (numpy's default, ddof = 0).

use serde::{Deserialize, Serialize};

use crate::Volume;

/// The slice a region is drawn on: which voxel axis is held fixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "lowercase")]
pub enum SlicePlane {
    /// Axis 2 fixed; the region's (u, v) are axes 0 and 1.
    Axial,
    /// Axis 1 fixed; (u, v) are axes 0 and 2.
    Coronal,
    /// Axis 0 fixed; (u, v) are axes 1 and 2.
    Sagittal,
}

impl SlicePlane {
    /// (u axis, v axis, fixed axis).
    pub fn axes(self) -> (usize, usize, usize) {
        match self {
            SlicePlane::Axial => (0, 1, 2),
            SlicePlane::Coronal => (0, 2, 1),
            SlicePlane::Sagittal => (1, 2, 0),
        }
    }
}

/// HU statistics of a region.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ts_rs::TS)]
pub struct RoiStats {
    pub mean: f64,
    /// Population standard deviation.
    pub sd: f64,
    pub min: f64,
    pub max: f64,
    /// Voxels in the region × the in-plane voxel area (mm²).
    pub area_mm2: f64,
    #[ts(type = "number")]
    pub voxels: u64,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MeasureError {
    #[error("the point ({}, {}, {}) is outside the volume ({} × {} × {} voxels)", .point[0], .point[1], .point[2], .dims[0], .dims[1], .dims[2])]
    Outside { point: [f64; 3], dims: [usize; 3] },
    #[error("slice {slice} is outside the volume ({count} slices in that direction)")]
    SliceOutside { slice: i64, count: usize },
    #[error("the region holds no voxel centre (draw it larger)")]
    Empty,
    #[error("an angle needs three distinct points")]
    Degenerate,
}

fn inside(vol: &Volume, p: [f64; 3]) -> Result<(), MeasureError> {
    let ok = (0..3).all(|a| p[a].is_finite() && p[a] >= -0.5 && p[a] <= vol.dims[a] as f64 - 0.5);
    if ok {
        Ok(())
    } else {
        Err(MeasureError::Outside { point: p, dims: vol.dims })
    }
}

fn sub(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

fn norm(v: [f64; 3]) -> f64 {
    (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt()
}

/// The distance in mm between two voxel positions.
pub fn distance_mm(vol: &Volume, a: [f64; 3], b: [f64; 3]) -> Result<f64, MeasureError> {
    inside(vol, a)?;
    inside(vol, b)?;
    Ok(norm(sub(vol.affine.apply(a), vol.affine.apply(b))))
}

/// The angle in degrees at `vertex` between the lines to `a` and `b`, in patient space.
pub fn angle_deg(vol: &Volume, a: [f64; 3], vertex: [f64; 3], b: [f64; 3]) -> Result<f64, MeasureError> {
    for p in [a, vertex, b] {
        inside(vol, p)?;
    }
    let (o, pa, pb) = (vol.affine.apply(vertex), vol.affine.apply(a), vol.affine.apply(b));
    let (u, v) = (sub(pa, o), sub(pb, o));
    let (nu, nv) = (norm(u), norm(v));
    if nu < 1e-9 || nv < 1e-9 {
        return Err(MeasureError::Degenerate);
    }
    let c = ((u[0] * v[0] + u[1] * v[1] + u[2] * v[2]) / (nu * nv)).clamp(-1.0, 1.0);
    Ok(c.acos().to_degrees())
}

/// The region's shape on its slice, in the slice's (u, v) voxel coordinates.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ts_rs::TS)]
#[serde(tag = "shape", rename_all = "lowercase")]
pub enum Region {
    /// Centre and semi-axes along u and v (voxels).
    Ellipse { center: [f64; 2], radii: [f64; 2] },
    /// Two opposite corners.
    Rectangle { a: [f64; 2], b: [f64; 2] },
}

/// HU statistics and area of `region` on slice `slice` of `plane`.
pub fn region_stats(vol: &Volume, plane: SlicePlane, slice: i64, region: Region) -> Result<RoiStats, MeasureError> {
    let (ua, va, fa) = plane.axes();
    let count = vol.dims[fa];
    if slice < 0 || slice as u64 >= count as u64 {
        return Err(MeasureError::SliceOutside { slice, count });
    }
    let (lo, hi) = match region {
        Region::Ellipse { center, radii } => {
            if !(radii[0].is_finite() && radii[1].is_finite() && radii[0] > 0.0 && radii[1] > 0.0) {
                return Err(MeasureError::Empty);
            }
            ([center[0] - radii[0], center[1] - radii[1]], [center[0] + radii[0], center[1] + radii[1]])
        }
        Region::Rectangle { a, b } => ([a[0].min(b[0]), a[1].min(b[1])], [a[0].max(b[0]), a[1].max(b[1])]),
    };
    if !lo.iter().chain(hi.iter()).all(|x| x.is_finite()) {
        return Err(MeasureError::Empty);
    }
    // Only voxel centres inside the volume count; a region must at least touch it.
    let corner = |u: f64, v: f64| {
        let mut p = [0.0; 3];
        p[ua] = u;
        p[va] = v;
        p[fa] = slice as f64;
        p
    };
    let (nu, nv) = (vol.dims[ua], vol.dims[va]);
    let u0 = lo[0].ceil().max(0.0);
    let v0 = lo[1].ceil().max(0.0);
    let u1 = hi[0].floor().min(nu as f64 - 1.0);
    let v1 = hi[1].floor().min(nv as f64 - 1.0);
    if u0 > u1 || v0 > v1 {
        if (lo[0] > nu as f64 - 0.5) || (lo[1] > nv as f64 - 0.5) || hi[0] < -0.5 || hi[1] < -0.5 {
            return Err(MeasureError::Outside { point: corner(lo[0], lo[1]), dims: vol.dims });
        }
        return Err(MeasureError::Empty);
    }
    let (mut n, mut sum, mut sum2, mut min, mut max) = (0u64, 0.0f64, 0.0f64, f64::INFINITY, f64::NEG_INFINITY);
    for v in v0 as usize..=v1 as usize {
        for u in u0 as usize..=u1 as usize {
            if let Region::Ellipse { center, radii } = region {
                let du = (u as f64 - center[0]) / radii[0];
                let dv = (v as f64 - center[1]) / radii[1];
                if du * du + dv * dv > 1.0 {
                    continue;
                }
            }
            let mut ijk = [0usize; 3];
            ijk[ua] = u;
            ijk[va] = v;
            ijk[fa] = slice as usize;
            let x = vol.voxels.get_f32(vol.index(ijk[0], ijk[1], ijk[2])) as f64;
            n += 1;
            sum += x;
            sum2 += x * x;
            min = min.min(x);
            max = max.max(x);
        }
    }
    if n == 0 {
        return Err(MeasureError::Empty);
    }
    let mean = sum / n as f64;
    let var = (sum2 / n as f64 - mean * mean).max(0.0);
    // In-plane voxel area: |column u × column v| of the affine.
    let cu = sub(vol.affine.apply(corner(1.0, 0.0)), vol.affine.apply(corner(0.0, 0.0)));
    let cv = sub(vol.affine.apply(corner(0.0, 1.0)), vol.affine.apply(corner(0.0, 0.0)));
    let cross = [cu[1] * cv[2] - cu[2] * cv[1], cu[2] * cv[0] - cu[0] * cv[2], cu[0] * cv[1] - cu[1] * cv[0]];
    Ok(RoiStats { mean, sd: var.sqrt(), min, max, area_mm2: n as f64 * norm(cross), voxels: n })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::Affine;
    use crate::{SourceMeta, Voxels};

    /// 4 × 3 × 2 voxels of 2 × 3 × 5 mm, value = i + 10 j + 100 k.
    fn vol() -> Volume {
        let dims = [4, 3, 2];
        let mut v = Vec::new();
        for k in 0..2 {
            for j in 0..3 {
                for i in 0..4 {
                    v.push((i + 10 * j + 100 * k) as i16);
                }
            }
        }
        let mut m = Affine::identity();
        m.0[0][0] = 2.0;
        m.0[1][1] = 3.0;
        m.0[2][2] = 5.0;
        Volume { dims, voxels: Voxels::I16(v), affine: m, meta: SourceMeta::default(), warnings: vec![] }
    }

    #[test]
    fn distances_and_angles_are_in_millimetres() {
        let v = vol();
        assert!((distance_mm(&v, [0.0, 0.0, 0.0], [3.0, 2.0, 1.0]).unwrap() - (36.0f64 + 36.0 + 25.0).sqrt()).abs() < 1e-12);
        assert!((angle_deg(&v, [1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 1.0, 0.0]).unwrap() - 90.0).abs() < 1e-9);
        assert!(matches!(distance_mm(&v, [0.0, 0.0, 0.0], [4.0, 0.0, 0.0]), Err(MeasureError::Outside { .. })));
        assert!(matches!(distance_mm(&v, [f64::NAN, 0.0, 0.0], [1.0, 0.0, 0.0]), Err(MeasureError::Outside { .. })));
        assert_eq!(angle_deg(&v, [1.0, 1.0, 1.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]), Err(MeasureError::Degenerate));
    }

    #[test]
    fn regions_take_the_voxel_centres_inside() {
        let v = vol();
        // The whole axial slice 1: values 100..=123.
        let r = region_stats(&v, SlicePlane::Axial, 1, Region::Rectangle { a: [-0.5, -0.5], b: [3.5, 2.5] }).unwrap();
        assert_eq!((r.voxels, r.min, r.max), (12, 100.0, 123.0));
        assert!((r.mean - 111.5).abs() < 1e-9 && (r.area_mm2 - 72.0).abs() < 1e-9);
        // An ellipse of radius 1 around (1, 1): the centre and its 4 neighbours.
        let e = region_stats(&v, SlicePlane::Axial, 0, Region::Ellipse { center: [1.0, 1.0], radii: [1.0, 1.0] }).unwrap();
        assert_eq!(e.voxels, 5);
        assert!((e.mean - 11.0).abs() < 1e-9);
        let sd = ((0.0f64 + 100.0 + 1.0 + 1.0 + 100.0) / 5.0).sqrt();
        assert!((e.sd - sd).abs() < 1e-9, "{} {sd}", e.sd);
        // Coronal (axes 0 and 2 at j = 2): 2 mm × 5 mm voxels.
        let c = region_stats(&v, SlicePlane::Coronal, 2, Region::Rectangle { a: [0.0, 0.0], b: [1.0, 1.0] }).unwrap();
        assert_eq!((c.voxels, c.area_mm2, c.min, c.max), (4, 40.0, 20.0, 121.0));
        assert!(matches!(
            region_stats(&v, SlicePlane::Axial, 2, Region::Rectangle { a: [0.0, 0.0], b: [1.0, 1.0] }),
            Err(MeasureError::SliceOutside { .. })
        ));
        assert!(matches!(
            region_stats(&v, SlicePlane::Axial, 0, Region::Rectangle { a: [10.0, 10.0], b: [12.0, 12.0] }),
            Err(MeasureError::Outside { .. })
        ));
        assert!(matches!(
            region_stats(&v, SlicePlane::Axial, 0, Region::Ellipse { center: [1.2, 1.2], radii: [0.1, 0.1] }),
            Err(MeasureError::Empty)
        ));
        assert!(matches!(
            region_stats(&v, SlicePlane::Axial, 0, Region::Ellipse { center: [1.0, 1.0], radii: [0.0, 1.0] }),
            Err(MeasureError::Empty)
        ));
    }
}
