//! The abnormalities, drawn the way they look on CT, each claiming the voxels it writes
//! (`Canvas::owner`) so its mask is exactly what changed in the image.

use super::anatomy::{add, clamp01, coverage, for_box, for_segment, lerp, norm, scale, smoothstep, sub, unit, wall_angle, Anatomy, P3};
use super::{lab, tissue, Canvas, Finding, Rng, Side, N_LABELS};

/// Deterministic value noise in [-1, 1] (trilinear over a hashed lattice of `cell` mm).
pub fn vnoise(p: P3, cell: f64, seed: u64) -> f64 {
    let q = [p[0] / cell, p[1] / cell, p[2] / cell];
    let f = q.map(|v| v.floor());
    let t = [q[0] - f[0], q[1] - f[1], q[2] - f[2]].map(|v| v * v * (3.0 - 2.0 * v));
    let h = |x: i64, y: i64, z: i64| -> f64 {
        let mut k = seed
            ^ (x as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ (y as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F)
            ^ (z as u64).wrapping_mul(0x1656_67B1_9E37_79F9);
        k = (k ^ (k >> 31)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        k ^= k >> 29;
        (k >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    };
    let (x0, y0, z0) = (f[0] as i64, f[1] as i64, f[2] as i64);
    let mut acc = 0.0;
    for dz in 0..2 {
        for dy in 0..2 {
            for dx in 0..2 {
                let w = (if dx == 1 { t[0] } else { 1.0 - t[0] })
                    * (if dy == 1 { t[1] } else { 1.0 - t[1] })
                    * (if dz == 1 { t[2] } else { 1.0 - t[2] });
                acc += w * h(x0 + dx, y0 + dy, z0 + dz);
            }
        }
    }
    acc
}

/// A deformed ellipsoid: normalised radius s(p) < 1 inside.
pub struct Blob {
    pub c: P3,
    pub r: P3,
    waves: [(P3, f64, f64, f64); 3],
}

impl Blob {
    /// `irregular` 0 = smooth ellipsoid … 1 = strongly lobulated.
    // 6.28 is the range of a random phase; the corpus is drawn with it (not with τ).
    #[allow(clippy::approx_constant)]
    pub fn new(rng: &mut Rng, c: P3, r: P3, irregular: f64) -> Blob {
        let mut w = [([0.0; 3], 0.0, 0.0, 0.0); 3];
        for x in w.iter_mut() {
            *x = (rng.unit(), rng.range(1.5, 4.5), irregular * rng.range(0.04, 0.16), rng.range(0.0, 6.28));
        }
        Blob { c, r, waves: w }
    }
    pub fn s(&self, p: P3) -> f64 {
        let q = [(p[0] - self.c[0]) / self.r[0], (p[1] - self.c[1]) / self.r[1], (p[2] - self.c[2]) / self.r[2]];
        let n = norm(q);
        if n < 1e-9 {
            return 0.0;
        }
        let u = scale(q, 1.0 / n);
        let mut m = 1.0;
        for (d, f, a, ph) in &self.waves {
            m += a * (f * super::anatomy::dot(u, *d) * std::f64::consts::PI + ph).sin();
        }
        n / m.max(0.3)
    }
    pub fn rmax(&self) -> f64 {
        self.r[0].max(self.r[1]).max(self.r[2]) * 1.6
    }
    /// Signed distance estimate in mm (negative inside).
    pub fn sd(&self, p: P3) -> f64 {
        let rmean = (self.r[0] + self.r[1] + self.r[2]) / 3.0;
        (self.s(p) - 1.0) * rmean
    }
}

/// Visit voxels of a blob's bounding box: f(canvas, idx, p, signed distance mm).
fn for_blob(c: &mut Canvas, b: &Blob, mut f: impl FnMut(&mut Canvas, usize, P3, f64)) {
    let r = b.rmax() + 3.0;
    for_box(c, sub(b.c, [r; 3]), add(b.c, [r; 3]), |c, idx, p| {
        let sd = b.sd(p);
        if sd < 3.0 {
            f(c, idx, p, sd)
        }
    });
}

#[inline]
fn claim(c: &mut Canvas, idx: usize, inst: u16) {
    c.owner[idx] = inst;
}

#[inline]
fn free_lung(c: &Canvas, idx: usize) -> bool {
    tissue::is_lung(c.tissue[idx]) && c.owner[idx] == 0
}

fn side_index(s: Side) -> usize {
    if s == Side::Left {
        1
    } else {
        0
    }
}

fn rand_side(rng: &mut Rng) -> Side {
    if rng.chance(0.5) {
        Side::Right
    } else {
        Side::Left
    }
}

/// Lung position helpers: (t, h) = (anterior 0 → posterior 1, base 0 → apex 1) of a point.
fn th(an: &Anatomy, p: P3, side: Side) -> (f64, f64) {
    let s = side_index(side);
    let (z0, z1) = an.lung_z[s];
    let (y0, y1) = an.lung_y[s];
    (clamp01((p[1] - y0) / (y1 - y0).max(1.0)), clamp01((p[2] - z0) / (z1 - z0).max(1.0)))
}

/// A random free lung voxel of `side` whose (t, h, depth) pass `ok`.
fn sample_lung(c: &Canvas, an: &Anatomy, rng: &mut Rng, side: Side, ok: impl Fn(f64, f64, f64) -> bool) -> Option<P3> {
    let list = &an.lung_voxels[side_index(side)];
    if list.is_empty() {
        return None;
    }
    for _ in 0..400 {
        let idx = list[rng.int(0, list.len())] as usize;
        if !free_lung(c, idx) {
            continue;
        }
        let p = c.grid.world_of(idx);
        let (t, h) = th(an, p, side);
        if ok(t, h, an.depth[idx] as f64) {
            return Some(p);
        }
    }
    None
}

/// Largest run (mm) of an instance's voxels along y (effusion / pneumothorax thickness).
pub fn max_thickness(c: &Canvas, inst: u16, _label: usize) -> f64 {
    let g = c.grid;
    let [nx, ny, nz] = g.dims;
    let mut best = 0usize;
    for k in 0..nz {
        for i in 0..nx {
            let mut run = 0;
            for j in 0..ny {
                if c.owner[g.idx(i, j, k)] == inst {
                    run += 1;
                    best = best.max(run);
                } else {
                    run = 0;
                }
            }
        }
    }
    best as f64 * g.spacing[1]
}

/// Draw every wanted abnormality in a fixed order; returns what was drawn.
pub fn draw_all(c: &mut Canvas, an: &Anatomy, want: &[bool; N_LABELS], rng: &mut Rng) -> Vec<Finding> {
    use lab::*;
    let mut out = Vec::new();
    let order = [
        CARDIOMEGALY,
        RIB_FRACTURE,
        SPONDYLOSIS,
        OSTEOPHYTE,
        PLEURAL_EFFUSION,
        EMPYEMA,
        PNEUMOTHORAX,
        PLEURAL_CALC,
        EMPHYSEMA,
        MOSAIC,
        SEPTAL,
        FIBROSIS,
        FIBROTIC_SEQUELA,
        ATELECTASIS,
        LUNG_OPACITY,
        PNEUMONIA,
        CONSOLIDATION,
        BRONCHIECTASIS,
        PERIBRONCHIAL,
        BRONCHIAL_THICKENING,
        TUBERCULOSIS,
        LUNG_CYST,
        LUNG_MASS,
        LUNG_NODULE,
        PERICARDIAL_EFFUSION,
        PERICARDIAL_CALC,
        CORONARY_CALC,
        ARTERIAL_CALC,
        ATHEROSCLEROSIS,
        LYMPHADENOPATHY,
        HIATAL_HERNIA,
        PNEUMOMEDIASTINUM,
        MEDICAL_MATERIAL,
    ];
    debug_assert_eq!(order.len(), N_LABELS);
    for &l in &order {
        if !want[l] {
            continue;
        }
        // each lesion gets its own sub-stream so adding one does not shift the others
        let mut r = Rng::new(rng.u64(), l as u64, 7);
        draw(l, c, an, want, &mut r, &mut out);
    }
    out
}

fn draw(l: usize, c: &mut Canvas, an: &Anatomy, want: &[bool; N_LABELS], rng: &mut Rng, out: &mut Vec<Finding>) {
    use lab::*;
    let proc_ = an.procedural;
    match l {
        CARDIOMEGALY if proc_ => {
            let inst = c.instance(l);
            let mut xmin = f64::MAX;
            let mut xmax = f64::MIN;
            for idx in 0..c.tissue.len() {
                if c.tissue[idx] == tissue::HEART {
                    claim(c, idx, inst);
                    let x = c.grid.world_of(idx)[0];
                    xmin = xmin.min(x);
                    xmax = xmax.max(x);
                }
            }
            let mut f = Finding::new(l, inst, Side::Midline, "heart", "");
            f.extra = (xmax - xmin + c.grid.spacing[0]) / (2.0 * an.cavity_ab.0 + 8.0);
            out.push(f);
        }
        RIB_FRACTURE if proc_ => rib_fracture(c, an, rng, out),
        SPONDYLOSIS | OSTEOPHYTE if proc_ => spine(l, c, an, rng, out),
        PLEURAL_EFFUSION => {
            let both = rng.chance(0.35);
            let first = rand_side(rng);
            let sides: Vec<Side> = if both { vec![Side::Right, Side::Left] } else { vec![first] };
            let big = rng.range(0.0, 1.0);
            for s in sides {
                let d = lerp(14.0, 60.0, big * rng.range(0.6, 1.0));
                effusion(c, an, rng, s, d, out);
            }
        }
        EMPYEMA => empyema(c, an, rng, out),
        PNEUMOTHORAX => pneumothorax(c, an, rng, out),
        PLEURAL_CALC => pleural_plaques(c, an, rng, out),
        EMPHYSEMA => emphysema(c, an, rng, out),
        MOSAIC => mosaic(c, an, rng, out),
        SEPTAL => reticulation(l, c, an, rng, out),
        FIBROSIS => reticulation(l, c, an, rng, out),
        FIBROTIC_SEQUELA => fibrotic_bands(c, an, rng, out),
        ATELECTASIS => atelectasis(c, an, rng, want, out),
        LUNG_OPACITY => {
            for _ in 0..rng.int(1, 3) {
                ggo(c, an, rng, l, out);
            }
        }
        PNEUMONIA => pneumonia(c, an, rng, out),
        CONSOLIDATION => consolidation(c, an, rng, out),
        BRONCHIECTASIS | PERIBRONCHIAL | BRONCHIAL_THICKENING => airways(l, c, an, rng, out),
        TUBERCULOSIS => tuberculosis(c, an, rng, out),
        LUNG_CYST => {
            for _ in 0..rng.int(1, 3) {
                cyst(c, an, rng, out);
            }
        }
        LUNG_MASS => mass(c, an, rng, out),
        LUNG_NODULE => {
            let n = if rng.chance(0.6) { 1 } else { rng.int(2, 4) };
            for _ in 0..n {
                nodule(c, an, rng, out);
            }
        }
        PERICARDIAL_EFFUSION if proc_ => pericardial_effusion(c, an, rng, out),
        PERICARDIAL_CALC if proc_ => pericardial_calc(c, an, rng, want, out),
        CORONARY_CALC if proc_ => coronary(c, an, rng, out),
        ARTERIAL_CALC | ATHEROSCLEROSIS if proc_ => aortic_plaques(l, c, an, rng, out),
        LYMPHADENOPATHY if proc_ => nodes(c, an, rng, out),
        HIATAL_HERNIA if proc_ => hernia(c, an, rng, out),
        PNEUMOMEDIASTINUM if proc_ => pneumomediastinum(c, an, rng, out),
        MEDICAL_MATERIAL => device(c, an, rng, out),
        _ => {}
    }
}

// ---------------------------------------------------------------- pleura

fn effusion(c: &mut Canvas, an: &Anatomy, rng: &mut Rng, side: Side, depth: f64, out: &mut Vec<Finding>) {
    let Some(lt) = side.lung_tissue() else { return };
    let inst = c.instance(lab::PLEURAL_EFFUSION);
    let g = c.grid;
    let [nx, ny, nz] = g.dims;
    let s = side_index(side);
    let (z0, z1) = an.lung_z[s];
    let (x0, x1) = an.lung_x[s];
    let fluid = rng.range(4.0, 18.0) as f32;
    let reach = rng.range(0.45, 0.85);
    for k in 0..nz {
        let z = g.origin[2] + k as f64 * g.spacing[2];
        let h = (z - z0) / (z1 - z0).max(1.0);
        let wz = clamp01(1.0 - h / reach);
        if wz <= 0.0 {
            continue;
        }
        for i in 0..nx {
            let x = g.origin[0] + i as f64 * g.spacing[0];
            let lat = clamp01(((x - x0) / (x1 - x0).max(1.0) - 0.5).abs() * 2.0);
            let th = depth * wz.sqrt() * (0.55 + 0.45 * lat);
            // posterior-most lung voxel of this column
            let mut jmax = None;
            for j in (0..ny).rev() {
                if c.tissue[g.idx(i, j, k)] == lt {
                    jmax = Some(j);
                    break;
                }
            }
            let Some(jm) = jmax else { continue };
            let ym = g.origin[1] + jm as f64 * g.spacing[1] + 0.5 * g.spacing[1];
            for j in (0..=jm).rev() {
                let idx = g.idx(i, j, k);
                let y = g.origin[1] + j as f64 * g.spacing[1];
                let inside = ym - y; // mm from the posterior wall
                if inside > th + 1.4 {
                    break;
                }
                if c.tissue[idx] != lt {
                    continue;
                }
                let cov = coverage(inside - th) as f32;
                if cov < 0.5 || th < 5.0 {
                    c.hu[idx] += (fluid - c.hu[idx]) * cov;
                    continue;
                }
                c.hu[idx] = fluid;
                c.tissue[idx] = tissue::PLEURAL_FLUID;
                claim(c, idx, inst);
            }
        }
    }
    let mut f = Finding::new(lab::PLEURAL_EFFUSION, inst, side, format!("{} hemithorax", side.word()), "");
    f.uncertain = depth < 18.0 && rng.chance(0.3);
    out.push(f);
}

/// A chest-wall point of the lung on `side`: a shell voxel (depth ≤ 3 mm) matching `ok`.
fn wall_point(c: &Canvas, an: &Anatomy, rng: &mut Rng, side: Side, ok: impl Fn(f64, f64) -> bool) -> Option<P3> {
    sample_lung(c, an, rng, side, |t, h, d| d <= 3.0 && ok(t, h))
}

/// Inward unit normal (in-plane) at a lung shell point: towards the lung's axial centre.
fn inward(an: &Anatomy, p: P3, side: Side) -> P3 {
    let s = side_index(side);
    let cx = 0.5 * (an.lung_x[s].0 + an.lung_x[s].1);
    let cy = 0.5 * (an.lung_y[s].0 + an.lung_y[s].1);
    unit([cx - p[0], cy - p[1], 0.0])
}

fn empyema(c: &mut Canvas, an: &Anatomy, rng: &mut Rng, out: &mut Vec<Finding>) {
    let side = rand_side(rng);
    let Some(p) = wall_point(c, an, rng, side, |t, h| t > 0.45 && h < 0.6 && h > 0.1) else {
        return;
    };
    let inst = c.instance(lab::EMPYEMA);
    let n = inward(an, p, side);
    let thick = rng.range(12.0, 24.0);
    let (len, hgt) = (rng.range(30.0, 55.0), rng.range(30.0, 55.0));
    let centre = add(p, scale(n, -0.15 * thick));
    let content = rng.range(14.0, 28.0) as f32;
    let wall_hu = rng.range(60.0, 85.0) as f32;
    let gas = rng.chance(0.3);
    let tang = [-n[1], n[0], 0.0];
    let r = len.max(hgt).max(thick) + 4.0;
    for_box(c, sub(centre, [r; 3]), add(centre, [r; 3]), |c, idx, q| {
        let d = sub(q, centre);
        let a = super::anatomy::dot(d, n);
        let b = super::anatomy::dot(d, tang);
        let s = ((a / thick).powi(2) + (b / (0.5 * len)).powi(2) + (d[2] / (0.5 * hgt)).powi(2)).sqrt();
        if s >= 1.0 || a < -0.4 * thick {
            return;
        }
        let t = c.tissue[idx];
        if !(tissue::is_lung(t) || t == tissue::PLEURAL_FLUID) {
            return;
        }
        let mut v = if s > 0.8 { wall_hu } else { content };
        if gas && s < 0.5 && d[1] < -0.2 * thick {
            v = -950.0;
        }
        c.hu[idx] = v;
        c.tissue[idx] = tissue::PLEURAL_FLUID;
        claim(c, idx, inst);
    });
    let mut f =
        Finding::new(lab::EMPYEMA, inst, side, format!("{} posterolateral pleural space", side.word()), if gas { "gas" } else { "" });
    f.uncertain = rng.chance(0.35);
    out.push(f);
}

fn pneumothorax(c: &mut Canvas, an: &Anatomy, rng: &mut Rng, out: &mut Vec<Finding>) {
    let side = rand_side(rng);
    let Some(lt) = side.lung_tissue() else { return };
    let inst = c.instance(lab::PNEUMOTHORAX);
    let depth = rng.range(8.0, 32.0);
    let g = c.grid;
    let [nx, ny, nz] = g.dims;
    let s = side_index(side);
    let (z0, z1) = an.lung_z[s];
    for k in 0..nz {
        let z = g.origin[2] + k as f64 * g.spacing[2];
        let h = (z - z0) / (z1 - z0).max(1.0);
        if !(0.05..=0.95).contains(&h) {
            continue;
        }
        let wz = smoothstep(0.05, 0.3, h) * (1.0 - smoothstep(0.75, 0.95, h));
        let th = depth * wz;
        for i in 0..nx {
            let mut jmin = None;
            for j in 0..ny {
                if c.tissue[g.idx(i, j, k)] == lt {
                    jmin = Some(j);
                    break;
                }
            }
            let Some(j0) = jmin else { continue };
            let y0 = g.origin[1] + j0 as f64 * g.spacing[1] - 0.5 * g.spacing[1];
            let mut line = false;
            for j in j0..ny {
                let idx = g.idx(i, j, k);
                let y = g.origin[1] + j as f64 * g.spacing[1];
                if c.tissue[idx] != lt {
                    break;
                }
                if y - y0 < th {
                    c.hu[idx] = -1000.0;
                    c.tissue[idx] = tissue::PLEURAL_AIR;
                    claim(c, idx, inst);
                    line = true;
                } else {
                    if line {
                        // visceral pleural line at the collapsed lung's edge
                        c.hu[idx] = c.hu[idx].max(-620.0);
                    }
                    break;
                }
            }
        }
    }
    out.push(Finding::new(lab::PNEUMOTHORAX, inst, side, format!("{} hemithorax", side.word()), "anterior"));
}

fn pleural_plaques(c: &mut Canvas, an: &Anatomy, rng: &mut Rng, out: &mut Vec<Finding>) {
    let both = rng.chance(0.5);
    let inst = c.instance(lab::PLEURAL_CALC);
    let mut sides = vec![];
    for _ in 0..rng.int(2, 5) {
        let side = if both { rand_side(rng) } else { Side::Right };
        let side = if !both && rng.chance(0.5) { Side::Left } else { side };
        let Some(p) = wall_point(c, an, rng, side, |t, h| (t > 0.3 || h < 0.25) && h < 0.8) else {
            continue;
        };
        let r = rng.range(12.0, 26.0);
        let hu = rng.range(500.0, 900.0) as f32;
        let lt = side.lung_tissue().unwrap_or(tissue::LUNG_R);
        let an_depth = &an.depth;
        for_box(c, sub(p, [r; 3]), add(p, [r; 3]), |c, idx, q| {
            if c.tissue[idx] == lt && an_depth[idx] <= 6.0 && norm(sub(q, p)) < r {
                c.hu[idx] = hu;
                c.tissue[idx] = tissue::LESION;
                claim(c, idx, inst);
            }
        });
        if !sides.contains(&side) {
            sides.push(side);
        }
    }
    let side = if sides.len() > 1 { Side::Both } else { sides.first().copied().unwrap_or(Side::Right) };
    let mut f = Finding::new(lab::PLEURAL_CALC, inst, side, "pleura", "plaques");
    f.count = 2;
    out.push(f);
}

// ---------------------------------------------------------------- diffuse lung

fn emphysema(c: &mut Canvas, an: &Anatomy, rng: &mut Rng, out: &mut Vec<Finding>) {
    let kind = *rng.pick(&["centrilobular", "centrilobular", "paraseptal", "panlobular"]);
    let severe = rng.chance(0.4);
    let inst = c.instance(lab::EMPHYSEMA);
    let n = if severe { rng.int(60, 110) } else { rng.int(25, 55) };
    for _ in 0..n {
        let side = rand_side(rng);
        let p = match kind {
            "paraseptal" => sample_lung(c, an, rng, side, |_, h, d| d < 8.0 && h > 0.35),
            "panlobular" => sample_lung(c, an, rng, side, |_, h, d| d > 4.0 && h < 0.6),
            _ => sample_lung(c, an, rng, side, |_, h, d| d > 5.0 && h > 0.4),
        };
        let Some(p) = p else { continue };
        let r = if severe { rng.range(5.0, 12.0) } else { rng.range(4.0, 8.0) };
        let b = Blob::new(rng, p, [r, r, r * 0.8], 0.6);
        let v = rng.range(-1000.0, -975.0) as f32;
        for_blob(c, &b, |c, idx, _, sd| {
            if sd < 0.0 && tissue::is_lung(c.tissue[idx]) && (c.owner[idx] == 0 || c.owner[idx] == inst) {
                c.hu[idx] = v;
                claim(c, idx, inst);
            }
        });
    }
    let mut f = Finding::new(lab::EMPHYSEMA, inst, Side::Both, if kind == "panlobular" { "lower lobes" } else { "upper lobes" }, kind);
    f.extra = if severe { 2.0 } else { 1.0 };
    f.uncertain = !severe && rng.chance(0.2);
    out.push(f);
}

fn mosaic(c: &mut Canvas, an: &Anatomy, rng: &mut Rng, out: &mut Vec<Finding>) {
    let inst = c.instance(lab::MOSAIC);
    let seed = rng.u64();
    let cell = rng.range(16.0, 26.0);
    let lower_only = rng.chance(0.5);
    for s in 0..2 {
        for n in 0..an.lung_voxels[s].len() {
            let idx = an.lung_voxels[s][n] as usize;
            if !free_lung(c, idx) {
                continue;
            }
            let p = c.grid.world_of(idx);
            let side = if s == 0 { Side::Right } else { Side::Left };
            let (_, h) = th(an, p, side);
            if lower_only && h > 0.6 {
                continue;
            }
            let v = vnoise(p, cell, seed);
            if v > 0.18 {
                c.hu[idx] = (c.hu[idx] - 85.0).max(-990.0);
                claim(c, idx, inst);
            } else if v < -0.18 {
                c.hu[idx] += 75.0;
                claim(c, idx, inst);
            }
        }
    }
    out.push(Finding::new(lab::MOSAIC, inst, Side::Both, if lower_only { "lower lobes" } else { "both lungs" }, ""));
}

fn reticulation(l: usize, c: &mut Canvas, an: &Anatomy, rng: &mut Rng, out: &mut Vec<Finding>) {
    let fibrosis = l == lab::FIBROSIS;
    let inst = c.instance(l);
    let seed = rng.u64();
    let cell = if fibrosis { rng.range(6.0, 9.0) } else { rng.range(10.0, 15.0) };
    let band = if fibrosis { rng.range(14.0, 22.0) } else { rng.range(12.0, 22.0) };
    let hmax = if fibrosis { 0.5 } else { rng.range(0.5, 1.0) };
    let line_hu = if fibrosis { -150.0 } else { -300.0 };
    let bilateral = fibrosis || rng.chance(0.7);
    let one = rand_side(rng);
    for s in 0..2 {
        let side = if s == 0 { Side::Right } else { Side::Left };
        if !bilateral && side != one {
            continue;
        }
        for n in 0..an.lung_voxels[s].len() {
            let idx = an.lung_voxels[s][n] as usize;
            if !free_lung(c, idx) || an.depth[idx] as f64 > band {
                continue;
            }
            let p = c.grid.world_of(idx);
            let (t, h) = th(an, p, side);
            if h > hmax || (fibrosis && t < 0.35) {
                continue;
            }
            let amp = 0.45 * cell;
            let w = [
                p[0] + amp * vnoise(p, 1.6 * cell, seed),
                p[1] + amp * vnoise(p, 1.6 * cell, seed ^ 1),
                p[2] + amp * vnoise(p, 1.6 * cell, seed ^ 4),
            ];
            let dl = |v: f64| {
                let f = v / cell - (v / cell).round();
                f.abs() * cell
            };
            let d = dl(w[0]).min(dl(w[1])).min(dl(w[2] * 0.6));
            if d < 1.2 {
                c.hu[idx] = c.hu[idx].max(line_hu as f32 + 30.0 * vnoise(p, 5.0, seed ^ 2) as f32);
                claim(c, idx, inst);
            } else if fibrosis && an.depth[idx] < 9.0 && vnoise(p, 4.0, seed ^ 3) > 0.25 {
                // honeycomb cyst
                c.hu[idx] = -975.0;
                claim(c, idx, inst);
            } else if fibrosis {
                c.hu[idx] += 60.0;
                claim(c, idx, inst);
            }
        }
    }
    let side = if bilateral { Side::Both } else { one };
    let loc = if fibrosis {
        "subpleural basal"
    } else if hmax > 0.8 {
        "subpleural"
    } else {
        "lower lobes"
    };
    let mut f = Finding::new(l, inst, side, loc, if fibrosis { "honeycombing" } else { "smooth" });
    f.uncertain = fibrosis && rng.chance(0.25);
    out.push(f);
}

// ---------------------------------------------------------------- focal lung

fn fibrotic_bands(c: &mut Canvas, an: &Anatomy, rng: &mut Rng, out: &mut Vec<Finding>) {
    let side = rand_side(rng);
    let inst = c.instance(lab::FIBROTIC_SEQUELA);
    let mut loc = String::new();
    for _ in 0..rng.int(1, 4) {
        let apical = rng.chance(0.5);
        let Some(p) = sample_lung(c, an, rng, side, |t, h, d| d > 6.0 && d < 30.0 && if apical { h > 0.75 } else { h < 0.5 && t < 0.6 })
        else {
            continue;
        };
        if loc.is_empty() {
            loc = an.lobe(p, side);
        }
        let dir = unit(add(scale(inward(an, p, side), -1.0), scale(rng.unit(), 0.5)));
        let len = rng.range(22.0, 45.0);
        let a = sub(p, scale(dir, 0.4 * len));
        let b = add(p, scale(dir, 0.6 * len + 10.0));
        let r = rng.range(1.4, 2.4);
        let hu = rng.range(-60.0, 20.0) as f32;
        for_segment(c, a, b, r, r * 0.8, 0.0, |c, idx, sd, _| {
            if !tissue::is_lung(c.tissue[idx]) || (c.owner[idx] != 0 && c.owner[idx] != inst) {
                return;
            }
            let cov = coverage(sd) as f32;
            if cov > 0.3 {
                c.hu[idx] = c.hu[idx].max(c.hu[idx] + (hu - c.hu[idx]) * cov);
                claim(c, idx, inst);
            }
        });
    }
    if loc.is_empty() {
        return;
    }
    out.push(Finding::new(lab::FIBROTIC_SEQUELA, inst, side, loc, "band"));
}

fn atelectasis(c: &mut Canvas, an: &Anatomy, rng: &mut Rng, want: &[bool; N_LABELS], out: &mut Vec<Finding>) {
    let side = rand_side(rng);
    let inst = c.instance(lab::ATELECTASIS);
    let plate = rng.chance(0.4);
    let hu = rng.range(10.0, 45.0) as f32;
    let loc;
    if plate {
        let Some(p) = sample_lung(c, an, rng, side, |_, h, d| h < 0.45 && h > 0.1 && d > 10.0) else {
            return;
        };
        loc = an.lobe(p, side);
        let n = inward(an, p, side);
        let tang = [-n[1], n[0], rng.range(-0.25, 0.25)];
        let len = rng.range(30.0, 55.0);
        let a = sub(p, scale(unit(tang), 0.5 * len));
        let b = add(p, scale(unit(tang), 0.5 * len));
        let r = rng.range(3.5, 5.0);
        for_segment(c, a, b, r, r, 0.0, |c, idx, sd, _| {
            if free_lung(c, idx) || c.owner[idx] == inst {
                let cov = coverage(sd) as f32;
                if cov >= 0.5 {
                    c.hu[idx] += (hu - c.hu[idx]) * cov;
                    claim(c, idx, inst);
                }
            }
        });
    } else {
        let Some(p) = sample_lung(c, an, rng, side, |t, h, d| t > 0.7 && h < 0.3 && d < 12.0) else {
            return;
        };
        loc = an.lobe(p, side);
        let r = rng.range(18.0, 32.0);
        let b = Blob::new(rng, add(p, [0.0, 6.0, 0.0]), [r, r * 0.6, r * 0.8], 0.5);
        for_blob(c, &b, |c, idx, _, sd| {
            if sd < 0.0 && free_lung(c, idx) {
                c.hu[idx] = hu;
                c.tissue[idx] = tissue::LESION;
                claim(c, idx, inst);
            }
        });
    }
    let kind = if plate {
        "plate-like"
    } else if want[lab::PLEURAL_EFFUSION] {
        "compressive"
    } else {
        "subsegmental"
    };
    out.push(Finding::new(lab::ATELECTASIS, inst, side, loc, kind));
}

fn ggo(c: &mut Canvas, an: &Anatomy, rng: &mut Rng, l: usize, out: &mut Vec<Finding>) {
    let side = rand_side(rng);
    let Some(p) = sample_lung(c, an, rng, side, |_, _, d| d > 8.0) else {
        return;
    };
    let inst = c.instance(l);
    let r = rng.range(14.0, 34.0);
    let ry = r * rng.range(0.7, 1.0);
    let b = Blob::new(rng, p, [r, ry, r * 0.8], 0.8);
    let target = rng.range(-560.0, -380.0) as f32;
    let seed = rng.u64();
    for_blob(c, &b, |c, idx, q, sd| {
        if !free_lung(c, idx) {
            return;
        }
        let w = clamp01(-sd / 6.0) as f32;
        if w <= 0.15 {
            return;
        }
        let v = target + 60.0 * vnoise(q, 6.0, seed) as f32;
        let nv = c.hu[idx] + (v - c.hu[idx]) * w;
        c.hu[idx] = c.hu[idx].max(nv);
        claim(c, idx, inst);
    });
    let mut f = Finding::new(l, inst, side, an.lobe(p, side), "ground-glass");
    f.uncertain = rng.chance(0.2);
    out.push(f);
}

fn air_bronchograms(c: &mut Canvas, rng: &mut Rng, centre: P3, r: f64, inst: u16) {
    for _ in 0..rng.int(2, 5) {
        let d = rng.unit();
        let a = add(centre, scale(d, -0.7 * r));
        let b = add(centre, scale(unit(add(d, scale(rng.unit(), 0.3))), 0.7 * r));
        let rad = rng.range(1.4, 2.4);
        for_segment(c, a, b, rad, rad * 0.7, 0.0, |c, idx, sd, _| {
            if c.owner[idx] == inst {
                let cov = coverage(sd) as f32;
                c.hu[idx] += (-900.0 - c.hu[idx]) * cov * 0.9;
            }
        });
    }
}

fn consolidation(c: &mut Canvas, an: &Anatomy, rng: &mut Rng, out: &mut Vec<Finding>) {
    let side = rand_side(rng);
    let Some(p) = sample_lung(c, an, rng, side, |_, _, d| d > 6.0 && d < 35.0) else {
        return;
    };
    let inst = c.instance(lab::CONSOLIDATION);
    let r = rng.range(18.0, 38.0);
    let (ry, rz) = (r * rng.range(0.7, 1.0), r * rng.range(0.7, 1.1));
    let b = Blob::new(rng, p, [r, ry, rz], 0.7);
    let hu = rng.range(22.0, 45.0) as f32;
    for_blob(c, &b, |c, idx, _, sd| {
        if sd < 0.0 && free_lung(c, idx) {
            c.hu[idx] = hu;
            c.tissue[idx] = tissue::LESION;
            claim(c, idx, inst);
        }
    });
    air_bronchograms(c, rng, p, r, inst);
    let mut f = Finding::new(lab::CONSOLIDATION, inst, side, an.lobe(p, side), "air bronchograms");
    f.uncertain = rng.chance(0.15);
    out.push(f);
}

fn pneumonia(c: &mut Canvas, an: &Anatomy, rng: &mut Rng, out: &mut Vec<Finding>) {
    let inst = c.instance(lab::PNEUMONIA);
    let mut sides = Vec::new();
    let mut loc = String::new();
    let seed = rng.u64();
    for _ in 0..rng.int(2, 4) {
        let side = rand_side(rng);
        let Some(p) = sample_lung(c, an, rng, side, |_, h, d| d > 5.0 && h < 0.8) else {
            continue;
        };
        if loc.is_empty() {
            loc = an.lobe(p, side);
        }
        if !sides.contains(&side) {
            sides.push(side);
        }
        let r = rng.range(10.0, 18.0);
        let b = Blob::new(rng, p, [r, r, r * 0.9], 0.8);
        let core = rng.range(15.0, 40.0) as f32;
        for_blob(c, &b, |c, idx, q, sd| {
            if !(free_lung(c, idx) || c.owner[idx] == inst) {
                return;
            }
            if sd < 0.0 {
                c.hu[idx] = core;
                c.tissue[idx] = tissue::LESION;
                claim(c, idx, inst);
            } else if sd < 0.9 * r {
                // ground-glass halo, vessels kept
                let w = (1.0 - sd / (0.9 * r)) as f32;
                let v = -480.0 + 50.0 * vnoise(q, 5.0, seed) as f32;
                let nv = c.hu[idx] + (v - c.hu[idx]) * w;
                if w > 0.2 {
                    c.hu[idx] = c.hu[idx].max(nv);
                    claim(c, idx, inst);
                }
            }
        });
        air_bronchograms(c, rng, p, r, inst);
    }
    if sides.is_empty() {
        return;
    }
    let side = if sides.len() > 1 { Side::Both } else { sides[0] };
    let mut f = Finding::new(lab::PNEUMONIA, inst, side, loc, "multifocal");
    f.uncertain = rng.chance(0.3);
    out.push(f);
}

/// Tubes in the lung: (a, b, lumen radius, wall thickness).
#[allow(clippy::too_many_arguments)] // the tube, its wall and where it may be drawn: one call site per airway kind
fn draw_bronchus(c: &mut Canvas, a: P3, b: P3, lumen: f64, wall: f64, wall_hu: f32, inst: u16, allow_med: bool) {
    for_segment(c, a, b, lumen + wall, lumen + wall, 0.0, |c, idx, sd, _| {
        let t = c.tissue[idx];
        let ok = free_lung(c, idx) || c.owner[idx] == inst || (allow_med && (t == tissue::MEDIASTINUM || t == tissue::AIRWAY));
        if !ok {
            return;
        }
        if sd < -wall {
            let cov = coverage(sd + wall) as f32;
            c.hu[idx] += (-1000.0 - c.hu[idx]) * cov;
            claim(c, idx, inst);
        } else {
            let cov = coverage(sd) as f32;
            if cov > 0.3 {
                c.hu[idx] = c.hu[idx].max(c.hu[idx] + (wall_hu - c.hu[idx]) * cov);
                claim(c, idx, inst);
            }
        }
    });
}

fn airways(l: usize, c: &mut Canvas, an: &Anatomy, rng: &mut Rng, out: &mut Vec<Finding>) {
    let inst = c.instance(l);
    let bilateral = rng.chance(0.6);
    let one = rand_side(rng);
    let mut loc = String::new();
    let n = match l {
        lab::BRONCHIECTASIS => rng.int(3, 7),
        lab::PERIBRONCHIAL => rng.int(8, 15),
        _ => rng.int(3, 6),
    };
    if l == lab::BRONCHIAL_THICKENING && an.procedural {
        // thick walls of the main and lobar bronchi
        let w = rng.range(3.5, 5.0);
        for &(a, b, r) in &an.central_bronchi {
            draw_bronchus(c, a, b, r * 0.8, w, 35.0, inst, true);
        }
    }
    for _ in 0..n {
        let side = if bilateral { rand_side(rng) } else { one };
        let p = match l {
            lab::BRONCHIECTASIS => sample_lung(c, an, rng, side, |_, h, d| h < 0.55 && d > 14.0),
            lab::PERIBRONCHIAL => sample_lung(c, an, rng, side, |_, h, d| h < 0.8 && d > 10.0),
            _ => sample_lung(c, an, rng, side, |_, h, d| h > 0.25 && h < 0.7 && d > 18.0),
        };
        let Some(p) = p else { continue };
        if loc.is_empty() && !(l == lab::BRONCHIAL_THICKENING && an.procedural) {
            loc = an.lobe(p, side);
        }
        // run towards the pleura (away from the hilum)
        let dir = unit(add(scale(inward(an, p, side), -1.0), [0.0, 0.0, rng.range(-0.5, 0.3)]));
        let (len, lumen, wall, hu) = match l {
            lab::BRONCHIECTASIS => (rng.range(25.0, 45.0), rng.range(3.5, 6.0), rng.range(1.2, 2.0), 25.0),
            lab::PERIBRONCHIAL => (rng.range(14.0, 28.0), rng.range(1.2, 2.0), rng.range(2.5, 3.8), 15.0),
            _ => (rng.range(18.0, 30.0), rng.range(2.5, 3.5), rng.range(3.0, 4.5), 30.0),
        };
        let a = sub(p, scale(dir, 0.5 * len));
        let b = add(p, scale(dir, 0.5 * len));
        draw_bronchus(c, a, b, lumen, wall, hu, inst, false);
    }
    if loc.is_empty() && !(l == lab::BRONCHIAL_THICKENING && an.procedural) {
        return;
    }
    let side = if bilateral { Side::Both } else { one };
    if loc.is_empty() {
        loc = "main bronchi".into();
    }
    let kind = if l == lab::BRONCHIECTASIS { *rng.pick(&["cylindrical", "cylindrical", "varicose"]) } else { "" };
    let mut f = Finding::new(l, inst, side, loc, kind);
    f.uncertain = rng.chance(0.15);
    out.push(f);
}

fn tuberculosis(c: &mut Canvas, an: &Anatomy, rng: &mut Rng, out: &mut Vec<Finding>) {
    let side = rand_side(rng);
    let Some(p) = sample_lung(c, an, rng, side, |t, h, d| h > 0.65 && t > 0.3 && d > 12.0) else {
        return;
    };
    let inst = c.instance(lab::TUBERCULOSIS);
    let r = rng.range(11.0, 19.0);
    let wall = rng.range(4.0, 7.0);
    let b = Blob::new(rng, p, [r, r, r * 0.9], 0.5);
    for_blob(c, &b, |c, idx, _, sd| {
        if sd < 0.0 && free_lung(c, idx) {
            c.hu[idx] = if sd < -wall { -1000.0 } else { 35.0 };
            c.tissue[idx] = tissue::LESION;
            claim(c, idx, inst);
        }
    });
    // satellite centrilobular (tree-in-bud) nodules
    for _ in 0..rng.int(5, 12) {
        let q = add(p, scale(rng.unit(), rng.range(r + 6.0, r + 35.0)));
        let rr = rng.range(1.6, 3.0);
        for_box(c, sub(q, [rr + 2.0; 3]), add(q, [rr + 2.0; 3]), |c, idx, x| {
            if free_lung(c, idx) {
                let cov = coverage(norm(sub(x, q)) - rr) as f32;
                if cov > 0.3 {
                    c.hu[idx] += (20.0 - c.hu[idx]) * cov;
                    claim(c, idx, inst);
                }
            }
        });
    }
    let mut f = Finding::new(lab::TUBERCULOSIS, inst, side, an.lobe(p, side), "cavity");
    f.uncertain = rng.chance(0.5);
    f.extra = 2.0 * r;
    out.push(f);
}

fn cyst(c: &mut Canvas, an: &Anatomy, rng: &mut Rng, out: &mut Vec<Finding>) {
    let side = rand_side(rng);
    let r = rng.range(6.0, 20.0);
    let Some(p) = sample_lung(c, an, rng, side, |_, _, d| d > r * 0.8) else {
        return;
    };
    let inst = c.instance(lab::LUNG_CYST);
    for_box(c, sub(p, [r + 3.0; 3]), add(p, [r + 3.0; 3]), |c, idx, q| {
        if !free_lung(c, idx) {
            return;
        }
        let sd = norm(sub(q, p)) - r;
        if sd < -1.0 {
            c.hu[idx] = -1000.0;
            claim(c, idx, inst);
        } else if sd < 1.0 {
            c.hu[idx] = c.hu[idx].max(-450.0);
            claim(c, idx, inst);
        }
    });
    out.push(Finding::new(lab::LUNG_CYST, inst, side, an.lobe(p, side), "thin-walled"));
}

fn mass(c: &mut Canvas, an: &Anatomy, rng: &mut Rng, out: &mut Vec<Finding>) {
    let side = rand_side(rng);
    let d = rng.range(33.0, 68.0);
    let r = d / 2.0;
    let Some(p) = sample_lung(c, an, rng, side, |_, h, dep| dep > 0.6 * r && h > 0.15) else {
        return;
    };
    let inst = c.instance(lab::LUNG_MASS);
    let (ry, rz) = (r * rng.range(0.8, 1.0), r * rng.range(0.8, 1.0));
    let b = Blob::new(rng, p, [r, ry, rz], 1.0);
    let hu = rng.range(28.0, 45.0) as f32;
    let necrotic = rng.chance(0.3);
    for_blob(c, &b, |c, idx, _, sd| {
        if sd < 0.0 && (free_lung(c, idx) || c.tissue[idx] == tissue::LESION && c.owner[idx] == 0) {
            c.hu[idx] = if necrotic && sd < -0.45 * r { 12.0 } else { hu };
            c.tissue[idx] = tissue::LESION;
            claim(c, idx, inst);
        }
    });
    spicules(c, rng, p, r, inst);
    let mut f = Finding::new(lab::LUNG_MASS, inst, side, an.lobe(p, side), if necrotic { "necrotic" } else { "lobulated" });
    f.uncertain = rng.chance(0.25);
    out.push(f);
}

fn spicules(c: &mut Canvas, rng: &mut Rng, p: P3, r: f64, inst: u16) {
    for _ in 0..rng.int(3, 7) {
        let d = rng.unit();
        let d = unit([d[0], d[1], d[2] * 0.4]);
        let a = add(p, scale(d, r * 0.8));
        let b = add(p, scale(d, r + rng.range(5.0, 12.0)));
        for_segment(c, a, b, 1.3, 0.6, 0.0, |c, idx, sd, _| {
            if free_lung(c, idx) {
                let cov = coverage(sd) as f32;
                if cov > 0.3 {
                    c.hu[idx] += (0.0 - c.hu[idx]) * cov * 0.8;
                    if cov >= 0.5 {
                        claim(c, idx, inst);
                    }
                }
            }
        });
    }
}

fn nodule(c: &mut Canvas, an: &Anatomy, rng: &mut Rng, out: &mut Vec<Finding>) {
    let side = rand_side(rng);
    let d = 6.0 + 24.0 * rng.f64().powf(1.6);
    let r = d / 2.0;
    let juxta = rng.chance(0.2);
    let Some(p) = sample_lung(c, an, rng, side, |_, _, dep| if juxta { dep < r } else { dep > r + 2.0 }) else {
        return;
    };
    let inst = c.instance(lab::LUNG_NODULE);
    let calcified = rng.chance(0.1);
    let spic = !calcified && d > 10.0 && rng.chance(0.3);
    let hu = if calcified { rng.range(250.0, 450.0) } else { rng.range(20.0, 55.0) } as f32;
    let b = Blob::new(rng, p, [r, r, r], if spic { 0.7 } else { 0.25 });
    for_blob(c, &b, |c, idx, _, sd| {
        if !(free_lung(c, idx) || c.owner[idx] == inst) {
            return;
        }
        let cov = coverage(sd) as f32;
        if cov >= 0.5 {
            c.hu[idx] += (hu - c.hu[idx]) * cov.max(0.6);
            c.tissue[idx] = tissue::LESION;
            claim(c, idx, inst);
        } else if cov > 0.2 && d < 10.0 && free_lung(c, idx) {
            // partial volume around a small nodule (not part of its mask)
            c.hu[idx] += (hu - c.hu[idx]) * cov;
        }
    });
    if spic {
        spicules(c, rng, p, r, inst);
    }
    let kind = if calcified {
        "calcified"
    } else if spic {
        "spiculated"
    } else if juxta {
        "subpleural"
    } else {
        "solid"
    };
    let mut f = Finding::new(lab::LUNG_NODULE, inst, side, an.lobe(p, side), kind);
    f.uncertain = d < 9.0 && rng.chance(0.5);
    out.push(f);
}

// ---------------------------------------------------------------- heart and vessels

fn pericardial_effusion(c: &mut Canvas, an: &Anatomy, rng: &mut Rng, out: &mut Vec<Finding>) {
    let inst = c.instance(lab::PERICARDIAL_EFFUSION);
    let (hc, hr) = (an.heart_c, an.heart_r);
    let tmax = rng.range(10.0, 26.0);
    let fluid = rng.range(6.0, 20.0) as f32;
    let rmin = hr[0].min(hr[1]).min(hr[2]);
    let ext = add(hr, [tmax + 4.0; 3]);
    let mut drawn: f64 = 0.0;
    for_box(c, sub(hc, ext), add(hc, ext), |c, idx, p| {
        let q = [(p[0] - hc[0]) / hr[0], (p[1] - hc[1]) / hr[1], (p[2] - hc[2]) / hr[2]];
        let n = norm(q);
        let u = scale(q, 1.0 / n.max(1e-9));
        // thicker posteriorly and inferiorly (dependent)
        let t = tmax * (0.55 + 0.25 * clamp01(u[1]) + 0.2 * clamp01(-u[2]));
        let sd = (n - 1.0) * rmin;
        let cur = c.tissue[idx];
        if sd > 0.0 && sd < t && (cur == tissue::MEDIASTINUM || tissue::is_lung(cur)) && c.owner[idx] == 0 {
            c.hu[idx] = fluid;
            c.tissue[idx] = tissue::LESION;
            claim(c, idx, inst);
            drawn = drawn.max(sd);
        }
    });
    let mut f = Finding::new(lab::PERICARDIAL_EFFUSION, inst, Side::Midline, "pericardium", "");
    f.depth_mm = (drawn + 0.5 * c.grid.spacing[0]).round();
    f.uncertain = tmax < 13.0 && rng.chance(0.3);
    out.push(f);
}

fn pericardial_calc(c: &mut Canvas, an: &Anatomy, rng: &mut Rng, want: &[bool; N_LABELS], out: &mut Vec<Finding>) {
    let inst = c.instance(lab::PERICARDIAL_CALC);
    let (hc, hr) = (an.heart_c, an.heart_r);
    let rmin = hr[0].min(hr[1]).min(hr[2]);
    let off = if want[lab::PERICARDIAL_EFFUSION] { 26.0 } else { 4.0 };
    let ext = add(hr, [off + 8.0; 3]);
    let mut caps = Vec::new();
    for _ in 0..rng.int(1, 4) {
        let mut u = rng.unit();
        u[2] = u[2].min(0.2);
        caps.push((unit(u), rng.range(0.8, 0.93)));
    }
    let hu = rng.range(450.0, 850.0) as f32;
    for_box(c, sub(hc, ext), add(hc, ext), |c, idx, p| {
        let q = [(p[0] - hc[0]) / hr[0], (p[1] - hc[1]) / hr[1], (p[2] - hc[2]) / hr[2]];
        let n = norm(q);
        let u = scale(q, 1.0 / n.max(1e-9));
        let sd = (n - 1.0) * rmin;
        let cur = c.tissue[idx];
        if cur == tissue::BONE || cur == tissue::VESSEL || cur == tissue::AIRWAY {
            return;
        }
        let shell = if want[lab::PERICARDIAL_EFFUSION] {
            sd > 0.0 && c.owner[idx] == 0 && sd < off + 3.0 && sd > 2.0
        } else {
            sd > 1.0 && sd < off + 1.0
        };
        if shell && caps.iter().any(|(cu, cth)| super::anatomy::dot(u, *cu) > *cth) {
            // keep only the outermost layer next to the effusion
            c.hu[idx] = hu;
            claim(c, idx, inst);
        }
    });
    out.push(Finding::new(lab::PERICARDIAL_CALC, inst, Side::Midline, "pericardium", ""));
}

fn spot(c: &mut Canvas, p: P3, r: f64, hu: f32, inst: u16) {
    for_box(c, sub(p, [r + 3.0; 3]), add(p, [r + 3.0; 3]), |c, idx, q| {
        let t = c.tissue[idx];
        if t == tissue::BONE || t == tissue::OUT || t == tissue::CANAL {
            return;
        }
        let cov = coverage(norm(sub(q, p)) - r) as f32;
        if cov > 0.3 {
            let v = c.hu[idx] + (hu - c.hu[idx]) * cov;
            c.hu[idx] = c.hu[idx].max(v);
            claim(c, idx, inst);
        }
    });
}

fn coronary(c: &mut Canvas, an: &Anatomy, rng: &mut Rng, out: &mut Vec<Finding>) {
    let inst = c.instance(lab::CORONARY_CALC);
    let names = ["right coronary artery", "left anterior descending artery", "circumflex artery"];
    let mut used = Vec::new();
    for _ in 0..rng.int(2, 8) {
        let v = rng.int(0, an.coronaries.len());
        let path = &an.coronaries[v];
        let p = path[rng.int(0, path.len().min(6))];
        spot(c, p, rng.range(1.6, 3.2), rng.range(450.0, 900.0) as f32, inst);
        if !used.contains(&v) {
            used.push(v);
        }
    }
    used.sort();
    let loc = used.iter().map(|&v| names[v]).collect::<Vec<_>>().join(", ");
    let mut f = Finding::new(lab::CORONARY_CALC, inst, Side::Midline, loc, "");
    f.count = used.len();
    out.push(f);
}

fn aortic_plaques(l: usize, c: &mut Canvas, an: &Anatomy, rng: &mut Rng, out: &mut Vec<Finding>) {
    let inst = c.instance(l);
    let n = if l == lab::ATHEROSCLEROSIS { rng.int(12, 26) } else { rng.int(3, 9) };
    let mut arch = false;
    let mut desc = false;
    for _ in 0..n {
        let s = rng.int(1, an.aorta.len() - 1);
        let ((a, ra), (b, rb)) = (an.aorta[s], an.aorta[s + 1]);
        let t = rng.f64();
        let axis = add(a, scale(sub(b, a), t));
        let r = lerp(ra, rb, t);
        let dir = unit(sub(b, a));
        let mut u = rng.unit();
        let dd = super::anatomy::dot(u, dir);
        u = unit(sub(u, scale(dir, dd)));
        let p = add(axis, scale(u, r - 1.0));
        spot(c, p, rng.range(1.6, 3.4), rng.range(500.0, 1000.0) as f32, inst);
        if s <= 3 {
            arch = true;
        } else {
            desc = true;
        }
    }
    let loc = match (arch, desc) {
        (true, true) => "aortic arch and descending aorta",
        (true, false) => "ascending aorta and aortic arch",
        _ => "descending thoracic aorta",
    };
    let mut f = Finding::new(l, inst, Side::Midline, loc, if l == lab::ATHEROSCLEROSIS { "diffuse" } else { "" });
    f.count = n;
    out.push(f);
}

fn nodes(c: &mut Canvas, an: &Anatomy, rng: &mut Rng, out: &mut Vec<Finding>) {
    let inst = c.instance(lab::LYMPHADENOPATHY);
    let (ac, bc) = an.cavity_ab;
    let sy = an.spine_y;
    let cz = an.carina[2];
    let stations: [(&str, P3); 7] = [
        ("right paratracheal", [-17.0, sy - 44.0, cz + 22.0]),
        ("subcarinal", [2.0, sy - 24.0, cz - 16.0]),
        ("prevascular", [0.0, -0.55 * bc, cz + 28.0]),
        ("aortopulmonary window", [12.0, -0.02 * bc, cz + 10.0]),
        ("right hilar", add(an.hila[0], [-4.0, -6.0, 6.0])),
        ("left hilar", add(an.hila[1], [4.0, -6.0, 4.0])),
        ("left axillary", [ac + 14.0, -0.15 * bc, cz + 45.0]),
    ];
    let mut names = Vec::new();
    for _ in 0..rng.int(2, 5) {
        let (name, p) = stations[rng.int(0, stations.len())];
        let short = rng.range(11.0, 22.0) / 2.0;
        let jit = scale(rng.unit(), 3.0);
        let b = Blob::new(rng, add(p, jit), [short * 1.2, short, short * 1.4], 0.3);
        let hu = rng.range(32.0, 48.0) as f32;
        for_blob(c, &b, |c, idx, _, sd| {
            let t = c.tissue[idx];
            let ok = matches!(t, tissue::MEDIASTINUM | tissue::FAT | tissue::MUSCLE) || tissue::is_lung(t);
            if sd < 0.0 && ok && (c.owner[idx] == 0 || c.owner[idx] == inst) {
                c.hu[idx] = hu;
                c.tissue[idx] = tissue::LESION;
                claim(c, idx, inst);
            }
        });
        if !names.contains(&name) {
            names.push(name);
        }
    }
    let mut f = Finding::new(lab::LYMPHADENOPATHY, inst, Side::Midline, names.join(" and "), "");
    f.count = names.len();
    f.uncertain = rng.chance(0.2);
    out.push(f);
}

fn hernia(c: &mut Canvas, an: &Anatomy, rng: &mut Rng, out: &mut Vec<Finding>) {
    let inst = c.instance(lab::HIATAL_HERNIA);
    let zd = 0.5 * (an.domes.0 + an.domes.1);
    let r = rng.range(17.0, 30.0);
    let centre = [rng.range(6.0, 16.0), an.spine_y - 36.0, zd + 0.4 * r];
    let b = Blob::new(rng, centre, [r, r * 0.8, r * 1.2], 0.3);
    let air = rng.chance(0.7);
    for_blob(c, &b, |c, idx, p, sd| {
        let t = c.tissue[idx];
        let ok = matches!(t, tissue::MEDIASTINUM | tissue::ABDOMEN) || tissue::is_lung(t);
        if sd < 0.0 && ok && c.owner[idx] == 0 {
            c.hu[idx] = if sd > -3.0 {
                40.0
            } else if air && p[1] < centre[1] - 0.15 * r {
                -1000.0
            } else {
                22.0
            };
            c.tissue[idx] = tissue::LESION;
            claim(c, idx, inst);
        }
    });
    let mut f = Finding::new(lab::HIATAL_HERNIA, inst, Side::Midline, "oesophageal hiatus", if rng.chance(0.7) { "sliding" } else { "" });
    f.uncertain = rng.chance(0.15);
    out.push(f);
}

fn pneumomediastinum(c: &mut Canvas, an: &Anatomy, rng: &mut Rng, out: &mut Vec<Finding>) {
    let inst = c.instance(lab::PNEUMOMEDIASTINUM);
    let cz = an.carina[2];
    let mut placed = 0;
    for _ in 0..200 {
        if placed >= 14 {
            break;
        }
        let p = [rng.range(-30.0, 30.0), rng.range(-0.8 * an.cavity_ab.1, an.spine_y - 20.0), rng.range(cz - 40.0, cz + 80.0)];
        let v = c.grid.voxel(p).map(|x| x.round() as usize);
        let idx = c.grid.idx(v[0].min(c.grid.dims[0] - 1), v[1].min(c.grid.dims[1] - 1), v[2].min(c.grid.dims[2] - 1));
        if c.tissue[idx] != tissue::MEDIASTINUM {
            continue;
        }
        placed += 1;
        let r = rng.range(2.5, 5.5);
        let d = unit([rng.range(-0.3, 0.3), rng.range(-0.3, 0.3), 1.0]);
        let a = sub(p, scale(d, rng.range(3.0, 14.0)));
        let b = add(p, scale(d, rng.range(3.0, 14.0)));
        for_segment(c, a, b, r, r * 0.7, 0.0, |c, idx, sd, _| {
            if c.tissue[idx] == tissue::MEDIASTINUM {
                let cov = coverage(sd) as f32;
                if cov > 0.4 {
                    c.hu[idx] += (-1000.0 - c.hu[idx]) * cov;
                    claim(c, idx, inst);
                }
            }
        });
    }
    if placed == 0 {
        return;
    }
    out.push(Finding::new(lab::PNEUMOMEDIASTINUM, inst, Side::Midline, "mediastinum", ""));
}

// ---------------------------------------------------------------- bones

fn rib_fracture(c: &mut Canvas, an: &Anatomy, rng: &mut Rng, out: &mut Vec<Finding>) {
    let inst = c.instance(lab::RIB_FRACTURE);
    let side = rand_side(rng);
    let n = rng.int(3, 10);
    let rib = an.ribs[n];
    let (ac, bc) = an.cavity_ab;
    let phi_f = rng.range(0.7, 2.3);
    let disp = rng.range(3.5, 7.0) * if rng.chance(0.5) { 1.0 } else { -1.0 };
    let healing = rng.chance(0.3);
    let zc0 = super::anatomy::rib_centre(&rib, phi_f);
    let sx = if side == Side::Left { 1.0 } else { -1.0 };
    let lo = [-200.0, -200.0, zc0 - 40.0];
    let hi = [200.0, 200.0, zc0 + 40.0];
    let seg_mm = |dphi: f64| dphi * 0.5 * (ac + bc);
    for_box(c, lo, hi, |c, idx, p| {
        let (x, y, z) = (p[0], p[1], p[2]);
        if x * sx <= 0.0 {
            return;
        }
        let ec = (x / ac).powi(2) + (y / bc).powi(2);
        let er = (x / (ac + 11.0)).powi(2) + (y / (bc + 11.0)).powi(2);
        if !(ec > 1.0 && er <= 1.0) {
            return;
        }
        let phi = wall_angle(x, y, ac, bc);
        let arc = seg_mm(phi - phi_f);
        if arc.abs() > 14.0 {
            return;
        }
        let zc = super::anatomy::rib_centre(&rib, phi);
        let on_old = (z - zc).abs() < 5.5;
        let zc_new = if arc > 0.0 { zc + disp * smoothstep(0.0, 4.0, arc) } else { zc };
        let on_new = (z - zc_new).abs() < 5.5 && arc.abs() > 2.0;
        let near = (z - zc).abs() < 12.0;
        if !near {
            return;
        }
        if on_new {
            c.hu[idx] = 520.0;
            c.tissue[idx] = tissue::BONE;
            claim(c, idx, inst);
        } else if on_old || (healing && (z - zc).abs() < 8.0 && arc.abs() < 6.0) {
            c.hu[idx] = if healing { 300.0 } else { 50.0 };
            c.tissue[idx] = tissue::MUSCLE;
            claim(c, idx, inst);
        }
    });
    let arc_name = if phi_f < 1.2 {
        "posterior arc"
    } else if phi_f < 1.9 {
        "lateral arc"
    } else {
        "anterolateral arc"
    };
    let mut f = Finding::new(lab::RIB_FRACTURE, inst, side, arc_name, if healing { "healing" } else { "acute" });
    f.extra = (n + 1) as f64;
    f.uncertain = rng.chance(0.15);
    out.push(f);
}

fn spine(l: usize, c: &mut Canvas, an: &Anatomy, rng: &mut Rng, out: &mut Vec<Finding>) {
    let inst = c.instance(l);
    let sy = an.spine_y;
    let levels: Vec<f64> = an.vertebra_z.iter().copied().filter(|z| *z > -120.0 && *z < 120.0).collect();
    if levels.is_empty() {
        return;
    }
    let spond = l == lab::SPONDYLOSIS;
    let n = if spond { rng.int(3, 7) } else { rng.int(1, 3) };
    let vh = if an.vertebra_z.len() > 1 { an.vertebra_z[1] - an.vertebra_z[0] } else { 28.0 };
    for _ in 0..n {
        let z0 = levels[rng.int(0, levels.len())];
        for end in [z0 + vh - 6.0, z0] {
            // spurs at the anterolateral margins of the end plate
            for sgn in [-1.0, 1.0] {
                if !spond && rng.chance(0.5) {
                    continue;
                }
                let len = rng.range(4.0, 9.0);
                let p = [sgn * rng.range(8.0, 16.0), sy - 13.0, end];
                let d = unit([sgn * 0.6, -1.0, 0.0]);
                let a = p;
                let b = add(add(p, scale(d, len)), [0.0, 0.0, if end == z0 { -3.0 } else { 3.0 }]);
                for_segment(c, a, b, 3.2, 1.8, 0.0, |c, idx, sd, _| {
                    let t = c.tissue[idx];
                    if t == tissue::CANAL || t == tissue::OUT {
                        return;
                    }
                    let cov = coverage(sd) as f32;
                    if cov > 0.4 {
                        c.hu[idx] = c.hu[idx].max(600.0 * cov);
                        c.tissue[idx] = tissue::BONE;
                        claim(c, idx, inst);
                    }
                });
            }
        }
        if spond {
            // end-plate sclerosis
            let lo = [-20.0, sy - 17.0, z0 - 3.0];
            let hi = [20.0, sy + 17.0, z0 + 3.0];
            for_box(c, lo, hi, |c, idx, p| {
                let inside = (p[0] / 17.0).powi(2) + ((p[1] - sy) / 14.0).powi(2) <= 1.0;
                if inside && c.tissue[idx] == tissue::BONE {
                    c.hu[idx] = c.hu[idx].max(650.0);
                    claim(c, idx, inst);
                }
            });
        }
    }
    let kind = if spond { "degenerative" } else { "" };
    out.push(Finding::new(l, inst, Side::Midline, "thoracic vertebrae", kind));
}

// ---------------------------------------------------------------- devices

fn device(c: &mut Canvas, an: &Anatomy, rng: &mut Rng, out: &mut Vec<Finding>) {
    let inst = c.instance(lab::MEDICAL_MATERIAL);
    let g = c.grid;
    let left = rng.chance(0.75);
    let sx = if left { 1.0 } else { -1.0 };
    let port = rng.chance(0.35);
    // find the anterior body surface at (x, z)
    let xg = sx * rng.range(55.0, 85.0);
    let zs = an.lung_z[1].1.min(an.lung_z[0].1) - rng.range(15.0, 35.0);
    let v = g.voxel([xg, 0.0, zs]);
    let (i, k) = ((v[0].round() as usize).min(g.dims[0] - 1), (v[2].round() as usize).min(g.dims[2] - 1));
    let mut ysurf = None;
    for j in 0..g.dims[1] {
        if c.tissue[g.idx(i, j, k)] != tissue::OUT {
            ysurf = Some(g.origin[1] + j as f64 * g.spacing[1]);
            break;
        }
    }
    let Some(ys) = ysurf else { return };
    let centre = [xg, ys + 9.0, zs];
    let (hx, hy, hz) = if port { (12.0, 6.0, 12.0) } else { (22.0, 4.5, 20.0) };
    let metal = if port { 1400.0 } else { 3000.0 };
    for_box(c, sub(centre, [hx, hy, hz]), add(centre, [hx, hy, hz]), |c, idx, p| {
        let q = [(p[0] - centre[0]) / hx, (p[1] - centre[1]) / hy, (p[2] - centre[2]) / hz];
        if q[0].abs().max(q[2].abs()).powi(4) + q[1].powi(2) <= 1.0 {
            c.hu[idx] = metal;
            claim(c, idx, inst);
        }
    });
    // lead / catheter into the mediastinum
    let (hub, tip) = if an.procedural {
        let hc = an.heart_c;
        let hr = an.heart_r;
        let svc = [-20.0, -0.15 * an.cavity_ab.1, hc[2] + 1.2 * hr[2]];
        let tip = if port {
            [-20.0, -0.12 * an.cavity_ab.1, hc[2] + 0.8 * hr[2]]
        } else {
            [hc[0] + 0.2 * hr[0], hc[1] - 0.5 * hr[1], hc[2] - 0.3 * hr[2]]
        };
        (svc, tip)
    } else {
        let cx = 0.5 * (an.lung_x[0].1 + an.lung_x[1].0);
        let cy = 0.5 * (an.lung_y[0].0 + an.lung_y[0].1);
        ([cx - 15.0, cy - 20.0, zs - 20.0], [cx, cy - 10.0, zs - 70.0])
    };
    let path = [centre, [sx * 30.0, ys + 35.0, zs + 15.0], hub, tip];
    let wire = if port { 1.6 } else { 1.2 };
    for w in path.windows(2) {
        for_segment(c, w[0], w[1], wire, wire, 0.0, |c, idx, sd, _| {
            let cov = coverage(sd) as f32;
            if cov > 0.4 && c.tissue[idx] != tissue::OUT {
                let v = c.hu[idx] + (2200.0 - c.hu[idx]) * cov;
                c.hu[idx] = c.hu[idx].max(v);
                claim(c, idx, inst);
            }
        });
    }
    let side = if left { Side::Left } else { Side::Right };
    out.push(Finding::new(
        lab::MEDICAL_MATERIAL,
        inst,
        side,
        format!("{} anterior chest wall", side.word()),
        if port { "port catheter" } else { "pacemaker" },
    ));
}
